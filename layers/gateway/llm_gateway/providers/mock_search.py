"""The mock provider's search answers: deterministic, in Google Custom Search's and Serper's shapes."""

from __future__ import annotations

import hashlib
from typing import Any

OPERATIONS = ("google-search", "serper-search")


def _results(query: str, n: int) -> list[dict[str, str]]:
    slug = hashlib.sha256(query.encode()).hexdigest()[:8]
    return [
        {
            "title": f"Mock result {i} for {query}",
            "link": f"https://example.com/mock/{slug}/{i}",
            "snippet": f"This is mock search result {i} for the query: {query}.",
            "displayLink": "example.com",
        }
        for i in range(1, n + 1)
    ]


def _count(value: Any, default: int, cap: int) -> int:
    try:
        return max(1, min(int(value), cap))
    except (TypeError, ValueError):
        return default


def google(body: dict[str, Any]) -> dict[str, Any]:
    query = str(body.get("q") or "")
    n = _count(body.get("num"), 10, 10)
    start = _count(body.get("start"), 1, 100)
    items = [
        {"kind": "customsearch#result", "htmlTitle": r["title"], "htmlSnippet": r["snippet"],
         "formattedUrl": r["link"], **r}
        for r in _results(query, n)
    ]
    total = str(n)
    request = {"title": f"Google Custom Search - {query}", "totalResults": total, "searchTerms": query,
               "count": n, "startIndex": start, "inputEncoding": "utf8", "outputEncoding": "utf8",
               "safe": str(body.get("safe") or "off"), "cx": "mock"}
    return {
        "kind": "customsearch#search",
        "url": {"type": "application/json",
                "template": "https://www.googleapis.com/customsearch/v1?q={searchTerms}&num={count?}"},
        "queries": {"request": [request]},
        "context": {"title": "mock"},
        "searchInformation": {"searchTime": 0.01, "formattedSearchTime": "0.01", "totalResults": total,
                              "formattedTotalResults": total},
        "items": items,
    }


def serper(body: dict[str, Any]) -> dict[str, Any]:
    query = str(body.get("q") or "")
    n = _count(body.get("num"), 10, 100)
    parameters: dict[str, Any] = {"q": query, "gl": body.get("gl") or "us", "hl": body.get("hl") or "en",
                                  "type": "search", "num": n, "page": _count(body.get("page"), 1, 1000),
                                  "engine": "google"}
    organic = [{"title": r["title"], "link": r["link"], "snippet": r["snippet"], "position": i}
               for i, r in enumerate(_results(query, n), start=1)]
    return {"searchParameters": parameters, "organic": organic, "credits": 1}


def answer(operation: str, body: dict[str, Any]) -> dict[str, Any]:
    return google(body) if operation == "google-search" else serper(body)
