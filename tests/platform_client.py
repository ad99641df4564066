"""Calling the platform routes (`/api/v1/...`) as OhMyGPT clients do: JSON, form or multipart bodies.

The platform tests also start an extra gateway (`extra_gateway`, from conftest) with its own settings
(a small key cap, another currency, a tier multiplier) or over another gateway's store.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

ENCODINGS = ("json", "form", "multipart")
ADMIN = "/api/v1/user/admin"


def as_text(value: Any) -> str:
    """How a form client writes a value: booleans as true/false, arrays as JSON, null as empty."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    if value is None:
        return ""
    return str(value)


def post(base: str, path: str, key: str | None, fields: dict[str, Any] | None = None,
         encoding: str = "json") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = base + path
    fields = fields or {}
    if encoding == "json":
        return httpx.post(url, headers=headers, json=fields)
    text = {k: as_text(v) for k, v in fields.items()}
    if encoding == "form":
        return httpx.post(url, headers=headers, data=text)
    assert encoding == "multipart", encoding
    if not text:  # httpx sends no body for no parts: a well-formed multipart body with none
        boundary = "llm-gateway-test"
        return httpx.post(url, headers={**headers, "content-type": f"multipart/form-data; boundary={boundary}"},
                          content=f"--{boundary}--\r\n".encode())
    return httpx.post(url, headers=headers, files={k: (None, v) for k, v in text.items()})


def get(base: str, path: str, key: str | None, params: dict[str, Any] | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(base + path, headers=headers, params=params)


def data(response: httpx.Response) -> Any:
    """The envelope's payload of a success, checking the envelope on the way."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["statusCode"] == 200 and isinstance(body["message"], str), body
    return body["data"]


def refusal(response: httpx.Response, status: int, error_type: str) -> str:
    """The message of a platform error, checking its status and envelope."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status and body["errorType"] == error_type and body["data"] is None, body
    return body["message"]


def chat(base: str, key: str, model: str) -> httpx.Response:
    return httpx.post(base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
