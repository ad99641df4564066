"""Fake Google Custom Search (`GET /customsearch/v1`) and Serper (`POST /search`) upstreams.

Both record what they receive (method, path, the raw query string, headers, body) so tests can
assert what the gateway sent: the operator's credentials, never the client's key. Behaviour by query:
`behaviors[q] = {"status": N}` answers that HTTP status with the upstream's error shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

GOOGLE_OPERATOR_KEY = "AIza-operator-google-key-000000000000"
GOOGLE_OPERATOR_CX = "operator-cx-0123456789"
SERPER_OPERATOR_KEY = "serper-operator-key-0000000000000000"


@dataclass
class Seen:
    method: str
    path: str
    query_string: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class FakeSearch:
    behaviors: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: list[Seen] = field(default_factory=list)
    url: str = ""

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/customsearch/v1", self.google, methods=["GET"]),
            Route("/search", self.serper, methods=["POST"]),
        ])

    def for_query(self, q: str) -> list[Seen]:
        return [s for s in self.received
                if (s.params.get("q") == [q]) or (s.body is not None and s.body.get("q") == q)]

    @staticmethod
    def google_answer(params: dict[str, list[str]]) -> dict[str, Any]:
        q = params["q"][0]
        n = int(params.get("num", ["3"])[0])
        return {
            "kind": "customsearch#search",
            "queries": {"request": [{"searchTerms": q, "count": n, "cx": params["cx"][0]}]},
            "searchInformation": {"searchTime": 0.123, "formattedSearchTime": "0.12",
                                  "totalResults": "1230", "formattedTotalResults": "1,230"},
            "items": [{"kind": "customsearch#result", "title": f"Fake {i} – {q}", "link": f"https://fake.example/{i}",
                       "snippet": f"snippet {i} ✓", "pagemap": {"metatags": [{"x": i}]}} for i in range(1, n + 1)],
        }

    @staticmethod
    def serper_answer(body: dict[str, Any]) -> dict[str, Any]:
        q = body["q"]
        return {
            "searchParameters": {**body, "type": "search", "engine": "google"},
            "knowledgeGraph": {"title": q, "attributes": {"Ünïcode": "yes"}},
            "organic": [{"title": f"Fake {i} – {q}", "link": f"https://fake.example/{i}", "snippet": f"s{i}",
                         "position": i} for i in range(1, int(body.get("num", 3)) + 1)],
            "credits": 1,
        }

    async def google(self, request: Request) -> JSONResponse:
        query_string = request.scope.get("query_string", b"").decode()
        params = parse_qs(query_string, keep_blank_values=True)
        self.received.append(Seen("GET", request.url.path, query_string, params, dict(request.headers), None))
        if params.get("key") != [GOOGLE_OPERATOR_KEY] or params.get("cx") != [GOOGLE_OPERATOR_CX]:
            return JSONResponse({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                           "status": "INVALID_ARGUMENT"}}, status_code=400)
        behavior = self.behaviors.get(params.get("q", [""])[0], {})
        if "status" in behavior:
            status = behavior["status"]
            return JSONResponse({"error": {"code": status, "message": f"fake google error {status}"}},
                                status_code=status)
        return JSONResponse(self.google_answer(params))

    async def serper(self, request: Request) -> JSONResponse:
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        query_string = request.scope.get("query_string", b"").decode()
        self.received.append(Seen("POST", request.url.path, query_string, parse_qs(query_string),
                                  dict(request.headers), body))
        if request.headers.get("x-api-key") != SERPER_OPERATOR_KEY:
            return JSONResponse({"message": "Unauthorized.", "statusCode": 403}, status_code=403)
        behavior = self.behaviors.get(body.get("q", ""), {})
        if "status" in behavior:
            status = behavior["status"]
            return JSONResponse({"message": f"fake serper error {status}", "statusCode": status}, status_code=status)
        return JSONResponse(self.serper_answer(body))
