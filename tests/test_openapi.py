"""`/openapi.json` and `/docs`: the real shapes, every route, nothing from another origin, and a
bounded Schemathesis run over every operation it describes (no answer is a 500)."""

from __future__ import annotations

import importlib
import re

import httpx
import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings

from llm_gateway.http.app import FAMILIES
from llm_gateway.http.openapi import openapi_schema

SCHEMA = openapi_schema()
FUZZED = schemathesis.openapi.from_dict(SCHEMA)
OPERATIONS = {op.ok().label: op.ok() for op in FUZZED.get_all_operations()}


def test_the_schema_lists_every_route_of_every_family(gateway):
    documented = {(m.upper(), p) for p, ops in httpx.get(gateway.url + "/openapi.json").json()["paths"].items()
                  for m in ops}
    real = set()
    for module in FAMILIES.values():
        for route in importlib.import_module(module).router.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                real |= {(m, route.path_format) for m in route.methods}
    assert real <= documented
    assert ("GET", "/healthz") in documented


def test_model_routes_describe_the_bodies_they_check_and_answer(gateway):
    schema = httpx.get(gateway.url + "/openapi.json").json()
    paths, defs = schema["paths"], schema["components"]["schemas"]

    def body(path: str, method: str = "post") -> dict:
        ref = paths[path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        return defs[ref.rsplit("/", 1)[1]]

    def answer(path: str, status: str = "200", method: str = "post") -> dict:
        ref = paths[path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        return defs[ref.rsplit("/", 1)[1]]

    assert body("/v1/chat/completions")["required"] == ["model", "messages"]
    assert body("/v1/messages")["required"] == ["model", "messages", "max_tokens"]
    assert "choices" in answer("/v1/chat/completions")["properties"]
    assert "text/event-stream" in paths["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert answer("/v1/messages")["properties"]["type"]["const"] == "message"
    assert set(answer("/v1/messages", "402")["properties"]) == {"type", "error"}  # Anthropic's error body
    assert set(answer("/v1/chat/completions", "401")["properties"]) == {"error"}
    usage = paths["/api/v1/user/usage"]["get"]
    assert {p["name"] for p in usage["parameters"]} >= {"since", "until", "model", "cursor", "pageSize"}
    created = answer("/api/v1/user/admin/new-api-token")
    assert set(created["properties"]) == {"statusCode", "message", "data"}
    assert {"bearer", "x-api-key"} <= set(schema["components"]["securitySchemes"])


def test_docs_page_loads_nothing_from_another_origin(gateway):
    page = httpx.get(gateway.url + "/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert urls and not [u for u in urls if re.match(r"(https?:)?//", u)], urls
    assert "'validatorUrl': null" in page.text.replace('"', "'")
    for url in urls:
        asset = httpx.get(gateway.url + "/" + url)
        assert asset.status_code == 200, url
    assert "swagger" in httpx.get(gateway.url + "/docs/swagger-ui-bundle.js").text[:5000].lower()
    assert "Apache License" in httpx.get(gateway.url + "/docs/LICENSE").text
    missing = httpx.get(gateway.url + "/docs/../../etc/passwd")
    assert missing.status_code == 404
    assert httpx.get(gateway.url + "/docs/VERSION").status_code == 404


@pytest.fixture(scope="module")
def fuzz_key(gateway):
    return gateway.key(gateway.user(balance="1000"), is_admin=True)


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_fuzzed_requests_never_get_a_500(gateway, fuzz_key, label):
    """Schemathesis draws requests from the schema (valid and not) for each operation, on loopback,
    bounded: at most 12 requests an operation."""
    operation = OPERATIONS[label]
    auth = {"Authorization": f"Bearer {fuzz_key}"}

    @settings(max_examples=12, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case):
        response = case.call(base_url=gateway.url, headers=auth, timeout=10)
        assert response.status_code < 500 or response.status_code in (502, 503, 504), (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}")

    run()


# Routes the schema lists with FastAPI's defaults only: pages and files, and the upstream's callback.
UNDESCRIBED = {("get", "/console"), ("get", "/console/{asset}"), ("get", "/api/v1/f/pub/{file_id}"),
               ("post", "/api/v1/ai/draw/mj/callback/{secret}")}


def test_every_api_operation_has_its_shapes_described():
    """A new route must get its request and answer into http/openapi.py's table (or be named above)."""
    for path, operations in SCHEMA["paths"].items():
        for method, op in operations.items():
            if (method, path) in UNDESCRIBED:
                continue
            assert op.get("summary") and "responses" in op and "401" in op["responses"] or path == "/healthz", (
                method, path)
            ok = op["responses"]["200"]["content"]
            assert ok and all(c.get("schema") for c in ok.values()), (method, path)
            if method == "post" and not path.startswith("/api/v1/user/admin/get-") and path not in (
                    "/api/v1/user/admin/balance",):
                assert "requestBody" in op, (method, path)
