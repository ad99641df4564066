"""The Lambda entries (functions/<family>/) run as Lambda runs them, against DynamoDB (moto).

Buffered families: the Mangum handler is imported from its file and called in-process with API
Gateway REST proxy events of the shape `sam local generate-event apigateway aws-proxy` produces
(tests/events). Streaming families: run.sh is started as the Lambda Web Adapter starts it (PORT set)
and must answer the readiness path and stream a completion chunk by chunk. Every function runs with
the template's own fixed settings (e.g. its body limit), and every DynamoDB call a family makes must
be one its function's role allows.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import boto3
import httpx
import pytest

from llm_gateway import accounts, aws
from llm_gateway.config import reset_settings
from llm_gateway.money import to_micros
from llm_gateway.store.dynamodb import DynamoDBStore
from tests.dynamo import table_prefix
from tests.fakes.server import free_port
from tests.test_template import TEMPLATE, dynamodb_rights, log_lines, translate

ROOT = Path(__file__).resolve().parent.parent
EVENT = json.loads((ROOT / "tests" / "events" / "apigateway-aws-proxy.json").read_text())
PROVIDER_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY")
# the gateway settings template.yaml fixes for every function (the others come from parameters)
TEMPLATE_SETTINGS = {name: value for name, value in TEMPLATE["Globals"]["Function"]["Environment"]["Variables"].items()
                     if name.startswith("GATEWAY_") and isinstance(value, str)}


class LambdaContext:
    function_name = "test"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    memory_limit_in_mb = 512

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def proxy_event(method: str, path: str, *, key: str | None = None, body: bytes | None = None,
                content_type: str | None = None, query: dict[str, str] | None = None,
                resource: str | None = None, path_parameters: dict[str, str] | None = None,
                base64_body: bool = False) -> dict:
    """The generated aws-proxy event, re-aimed at one route (headers, body and query as API Gateway sends them)."""
    event = copy.deepcopy(EVENT)
    headers = dict(event["headers"])
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if content_type:
        headers["Content-Type"] = content_type
    event.update(
        httpMethod=method, path=path, resource=resource or path, headers=headers,
        multiValueHeaders={k: [v] for k, v in headers.items()},
        queryStringParameters=query or None,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
        pathParameters=path_parameters, stageVariables=None,
        body=None if body is None else (base64.b64encode(body).decode() if base64_body else body.decode()),
        isBase64Encoded=bool(body is not None and base64_body),
    )
    event["requestContext"].update(httpMethod=method, path=f"/prod{path}", resourcePath=resource or path)
    return event


@pytest.fixture
def lambda_env(moto_dynamodb, monkeypatch):
    """A deployed stack's environment: tables, an SSM path with a provider key, the Globals variables."""
    prefix = table_prefix()
    store = DynamoDBStore(prefix)
    store.init()
    ssm_path = f"/{prefix}/secrets"
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=f"{ssm_path}/OPENAI_API_KEY", Value="sk-operator-from-ssm", Type="SecureString")
    for name in PROVIDER_VARS:
        monkeypatch.delenv(name, raising=False)  # restored afterwards, whatever the loader sets
    for name, value in TEMPLATE_SETTINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GATEWAY_STORE_URL", f"dynamodb://{prefix}")
    monkeypatch.setenv("GATEWAY_SSM_PREFIX", ssm_path)
    monkeypatch.setattr(aws, "_loaded", False)
    reset_settings()
    yield store
    reset_settings()


def load_handler(family: str):
    spec = importlib.util.spec_from_file_location(f"lambda_{family}_{uuid.uuid4().hex}",
                                                  ROOT / "functions" / family / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def invoke(handler, event: dict) -> tuple[int, dict, dict]:
    status, headers, body = invoke_raw(handler, event)
    return status, headers, json.loads(body)


def invoke_raw(handler, event: dict) -> tuple[int, dict, bytes]:
    result = handler(event, LambdaContext())
    body = base64.b64decode(result["body"]) if result.get("isBase64Encoded") else result["body"].encode()
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    for k, values in (result.get("multiValueHeaders") or {}).items():
        headers[k.lower()] = values[-1]
    return result["statusCode"], headers, body


def admin_key(store) -> tuple[str, str]:
    user_id = "u-" + uuid.uuid4().hex[:8]
    accounts.create_user(store, user_id, balance=to_micros("3.5"))
    return user_id, accounts.issue_key(store, user_id, is_admin=True)[1]


# --- buffered: Mangum ---------------------------------------------------------------------------

def test_models_handler_lists_models(lambda_env):
    _, key = admin_key(lambda_env)
    status, headers, body = invoke(load_handler("models"), proxy_event("GET", "/v1/models", key=key))
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert headers["x-request-id"].startswith("req_")
    assert body["object"] == "list" and "mock-gpt" in {m["id"] for m in body["data"]}


def test_models_handler_gets_one_model_through_the_greedy_path(lambda_env):
    _, key = admin_key(lambda_env)
    event = proxy_event("GET", "/v1/models/mock-gpt", key=key, resource="/v1/models/{model+}",
                        path_parameters={"model": "mock-gpt"})
    status, _, body = invoke(load_handler("models"), event)
    assert (status, body["id"], body["object"]) == (200, "mock-gpt", "model")


def test_models_handler_refuses_a_missing_key_in_the_openai_envelope(lambda_env):
    status, _, body = invoke(load_handler("models"), proxy_event("GET", "/v1/models"))
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"


def test_a_request_log_line_names_the_lambda_invocation_and_its_trace(lambda_env, monkeypatch):
    """As Powertools does: the Lambda request id (Mangum's context) and the X-Ray trace id."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "llm-gateway-models")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
    _, key = admin_key(lambda_env)
    handler = load_handler("models")
    lines = log_lines(lambda: invoke(handler, proxy_event("GET", "/v1/models", key=key)))
    (line,) = [ln for ln in lines if ln["msg"] == "request"]
    assert line["lambda_request_id"] == LambdaContext.aws_request_id
    assert line["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert key not in json.dumps(line)


def test_the_web_adapters_headers_name_the_invocation_on_streaming_functions(monkeypatch):
    from llm_gateway.http.middleware import lambda_fields

    scope = {"headers": [(b"x-amzn-trace-id", b"Root=1-abc-def;Sampled=0"),
                         (b"x-amzn-lambda-context", json.dumps({"request_id": "r-123", "deadline": 1}).encode())]}
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    assert lambda_fields(scope) == {"lambda_request_id": "r-123", "xray_trace_id": "1-abc-def"}
    assert lambda_fields({"headers": []}) == {}


def test_models_handler_loads_provider_secrets_from_ssm_at_cold_start(lambda_env):
    handler = load_handler("models")
    assert handler.app.state.runtime.settings.secret("OPENAI_API_KEY") == "sk-operator-from-ssm"


def test_management_handler_creates_a_key_from_a_base64_form_body(lambda_env):
    user_id, key = admin_key(lambda_env)
    form = urllib.parse.urlencode({"remark": "from lambda", "permissions": "mock-gpt,gpt-4o"}).encode()
    event = proxy_event("POST", "/api/v1/user/admin/new-api-token", key=key, body=form,
                        content_type="application/x-www-form-urlencoded", base64_body=True)
    status, _, body = invoke(load_handler("management"), event)
    assert status == 200, body
    data = body["data"]
    assert (data["remark"], data["permissions"], data["user_id"]) == ("from lambda", ["mock-gpt", "gpt-4o"], user_id)
    stored = {k.key_id: k for k in lambda_env.list_keys(user_id)}
    assert stored[data["key_id"]].remark == "from lambda"
    assert lambda_env.get_key_by_hash(accounts.hash_key(data["key"])).key_id == data["key_id"]


def test_management_handler_balance_and_usage(lambda_env):
    _, key = admin_key(lambda_env)
    handler = load_handler("management")
    status, _, body = invoke(handler, proxy_event("POST", "/api/v1/user/admin/balance", key=key,
                                                  body=b"{}", content_type="application/json"))
    assert (status, body["data"]["balance"], body["data"]["currency"]) == (200, "3.5", "USD")
    status, _, body = invoke(handler, proxy_event("GET", "/api/v1/user/usage", key=key, query={"pageSize": "5"}))
    assert status == 200 and body["data"]["total"] == 0


def test_management_handler_serves_the_console_with_its_policy(lambda_env):
    handler = load_handler("management")
    status, headers, page = invoke_raw(handler, proxy_event("GET", "/console"))
    assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert b'<script src="console/console.js" defer></script>' in page
    event = proxy_event("GET", "/console/console.js", resource="/console/{asset}", path_parameters={"asset": "console.js"})
    status, headers, script = invoke_raw(handler, event)
    assert (status, headers["content-type"]) == (200, "text/javascript; charset=utf-8")
    assert script.startswith(b"// llm-gateway console")


def test_management_handler_serves_the_whole_apis_schema_and_its_docs_page(lambda_env):
    """The management function alone holds the schema of every family's routes, and Swagger UI's files."""
    handler = load_handler("management")
    status, _, schema = invoke(handler, proxy_event("GET", "/openapi.json"))
    assert status == 200
    assert {"/v1/chat/completions", "/v1/messages", "/v1/models", "/api/v1/user/usage"} <= set(schema["paths"])
    status, headers, page = invoke_raw(handler, proxy_event("GET", "/docs"))
    assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert b"docs/swagger-ui-bundle.js" in page
    event = proxy_event("GET", "/docs/swagger-ui.css", resource="/docs/{asset}", path_parameters={"asset": "swagger-ui.css"})
    status, headers, css = invoke_raw(handler, event)
    assert (status, headers["content-type"]) == (200, "text/css; charset=utf-8") and b".swagger-ui" in css


def test_provider_secrets_from_secrets_manager_do_not_override_the_environment(moto_dynamodb):
    arn = boto3.client("secretsmanager").create_secret(
        Name="gw-" + uuid.uuid4().hex[:8],
        SecretString=json.dumps({"ANTHROPIC_API_KEY": "sk-ant-secret", "OPENAI_API_KEY": "sk-from-secret",
                                 "not a variable": "x"}),
    )["ARN"]
    env = {"GATEWAY_SECRETS_ARN": arn, "OPENAI_API_KEY": "sk-set-by-operator"}
    assert aws.load_provider_secrets(env) == ["ANTHROPIC_API_KEY"]
    assert env["ANTHROPIC_API_KEY"] == "sk-ant-secret"
    assert env["OPENAI_API_KEY"] == "sk-set-by-operator"
    assert "not a variable" not in env


# --- streaming: run.sh behind the Lambda Web Adapter ----------------------------------------------

@pytest.fixture
def web_adapter_function(lambda_env):
    """functions/<family>/run.sh started as the adapter starts it: PORT set, the stack's environment."""
    started: list[subprocess.Popen] = []

    def start(family: str) -> str:
        port = free_port()
        env = {**os.environ, "PORT": str(port),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               "PYTHONPATH": str(ROOT / "layers" / "gateway")}
        proc = subprocess.Popen([str(ROOT / "functions" / family / "run.sh")], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError("run.sh exited: " + proc.stderr.read().decode()[-2000:])
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("run.sh did not become ready")
            time.sleep(0.1)

    try:
        yield start
    finally:
        for proc in started:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)


@pytest.fixture
def chat_function(web_adapter_function):
    return web_adapter_function("chat")


def test_run_sh_answers_the_readiness_path(chat_function):
    r = httpx.get(chat_function + "/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_run_sh_streams_chunk_by_chunk(chat_function, lambda_env):
    _, key = admin_key(lambda_env)
    arrivals: list[tuple[float, dict]] = []
    body = {"model": "mock-slow-stream", "stream": True,
            "messages": [{"role": "user", "content": "one two three four five six"}]}
    with httpx.stream("POST", chat_function + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                arrivals.append((time.monotonic(), json.loads(line[6:])))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for _, c in arrivals if c.get("choices"))
    assert text == "This is a mock response to: one two three four five six"
    content = [t for t, c in arrivals if c.get("choices") and c["choices"][0]["delta"].get("content")]
    assert len(content) >= 8
    # 50 ms between chunks upstream: had the function buffered, they would all land at once
    assert content[-1] - content[0] >= 0.05 * (len(content) - 1) * 0.6
    gaps = [b - a for a, b in zip(content, content[1:], strict=False)]
    assert sum(g >= 0.02 for g in gaps) >= len(gaps) // 2


# --- the body limit: the gateway's own 413, before Lambda's 6 MB payload limit ---------------------

def _oversized() -> bytes:
    return b'{"pad": "' + b"x" * int(TEMPLATE_SETTINGS["GATEWAY_MAX_BODY_BYTES"]) + b'"}'


def test_an_oversized_body_is_the_platform_413_on_a_buffered_function(lambda_env):
    _, key = admin_key(lambda_env)
    body = _oversized()
    event = proxy_event("POST", "/api/v1/user/admin/new-api-token", key=key, body=body,
                        content_type="application/json")
    event["headers"]["Content-Length"] = str(len(body))  # as API Gateway passes the client's header
    event["multiValueHeaders"]["Content-Length"] = [str(len(body))]
    status, _, answer = invoke(load_handler("management"), event)
    assert status == 413
    assert (answer["statusCode"], answer["errorType"], answer["data"]) == (413, "request_too_large", None)


@pytest.mark.parametrize("family,path,shape", [
    ("chat", "/v1/chat/completions", "openai"),
    ("messages", "/v1/messages", "anthropic"),
    ("media", "/v1/embeddings", "openai"),
])
def test_an_oversized_body_is_the_familys_413_on_a_streaming_function(web_adapter_function, lambda_env,
                                                                      family, path, shape):
    _, key = admin_key(lambda_env)
    r = httpx.post(web_adapter_function(family) + path, content=_oversized(), timeout=30,
                   headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert r.status_code == 413
    if shape == "openai":
        assert r.json()["error"]["code"] == "request_too_large"
    else:
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "request_too_large"


# --- IAM: every DynamoDB call a family makes is one its function's role allows ---------------------

_TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                     "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}


def _record_dynamodb_calls(client, prefix: str) -> set[tuple[str, str]]:
    """(IAM action, table suffix) of every call the client makes from now on. A transaction is
    authorised item by item (Put needs PutItem, ...): there is no IAM action of its own for it."""
    calls: set[tuple[str, str]] = set()

    def table(name: str) -> str:
        assert name.startswith(prefix + "-"), name
        return name[len(prefix) + 1:]

    def record(params, model, **_):
        if model.name in ("TransactWriteItems", "TransactGetItems"):
            for item in params["TransactItems"]:
                ((kind, spec),) = item.items()
                calls.add((_TRANSACT_ACTIONS[kind], table(spec["TableName"])))
        elif model.name in ("BatchGetItem", "BatchWriteItem"):
            calls.update((model.name, table(name)) for name in params["RequestItems"])
        else:
            calls.add((model.name, table(params["TableName"])))

    client.meta.events.register("before-parameter-build.dynamodb", record)
    return calls


def _family_client(family: str, lambda_env):
    """The family's app as its function builds it, and the DynamoDB calls its store makes."""
    from starlette.testclient import TestClient

    app = aws.family_app([family])
    calls = _record_dynamodb_calls(app.state.runtime.store._client, lambda_env.prefix)
    return TestClient(app), calls


@pytest.fixture(scope="module")
def stack() -> dict:
    return translate(TEMPLATE)


def _chat_calls(client, key: str) -> None:
    for stream in (False, True):
        r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                        json={"model": "mock-gpt", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
    r = client.post("/v1/completions", headers={"Authorization": f"Bearer {key}"},
                    json={"model": "mock-gpt", "prompt": "hi"})
    assert r.status_code == 200, r.text
    auth = {"Authorization": f"Bearer {key}"}
    r = client.post("/v1/responses", headers=auth, json={"model": "mock-gpt", "input": "hi"})
    assert r.status_code == 200, r.text
    first = r.json()["id"]
    r = client.post("/v1/responses", headers=auth,
                    json={"model": "mock-gpt", "input": "again", "previous_response_id": first, "stream": True})
    assert r.status_code == 200, r.text
    for path in (f"/v1/responses/{first}", f"/v1/responses/{first}/input_items"):
        r = client.get(path, headers=auth)
        assert r.status_code == 200, (path, r.text)
    r = client.delete(f"/v1/responses/{first}", headers=auth)
    assert r.status_code == 200, r.text


def _messages_calls(client, key: str) -> None:
    for stream in (False, True):
        r = client.post("/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                        json={"model": "mock-claude", "max_tokens": 16, "stream": stream,
                              "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
    r = client.post("/v1/messages/count_tokens", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                    json={"model": "mock-claude", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text


def _media_calls(client, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    for path, body in (("/v1/embeddings", {"model": "mock-embedding", "input": "hi"}),
                       ("/v1/images/generations", {"model": "mock-image", "prompt": "a cat"}),
                       ("/v1/audio/speech", {"model": "mock-tts", "input": "hi", "voice": "alloy"}),
                       ("/api/v1/openapi/azure/tts/v1", {"text": "hi"})):
        r = client.post(path, headers=auth, json=body)
        assert r.status_code == 200, (path, r.text)
    r = client.get("/api/v1/openapi/azure/tts/voices/list/v1", headers=auth)
    assert r.status_code == 200, r.text


def _search_calls(client, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    for _ in range(2):  # the second answer comes from the store's cache
        r = client.get("/api/v1/openapi/search/google-search/v1", params={"q": "iam"}, headers=auth)
        assert r.status_code == 200, r.text
        r = client.post("/api/v1/openapi/search/serper/v1", headers=auth, json={"q": "iam", "cache": 60})
        assert r.status_code == 200, r.text


def _models_calls(client, key: str) -> None:
    for path in ("/v1/models", "/v1/models/mock-gpt", "/healthz"):
        r = client.get(path, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text


def _management_calls(client, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    admin = "/api/v1/user/admin"
    r = client.post(f"{admin}/new-api-token", headers=auth, json={"remark": "iam"})
    assert r.status_code == 200, r.text
    key_id = r.json()["data"]["key_id"]
    for path, body in ((f"{admin}/update-api-token", {"key_id": key_id, "remark": "changed"}),
                       (f"{admin}/get-api-tokens", {}), (f"{admin}/get-membership-expire-date", {}),
                       (f"{admin}/balance", {}), (f"{admin}/delete-api-token", {"key_id": key_id})):
        r = client.post(path, headers=auth, json=body)
        assert r.status_code == 200, (path, r.text)
    for path in ("/api/v1/user/usage", "/api/v1/pay/model-rates"):
        r = client.get(path, headers=auth)
        assert r.status_code == 200, (path, r.text)


@pytest.mark.parametrize("function,family,calls", [
    ("ChatFunction", "chat", _chat_calls),
    ("MessagesFunction", "messages", _messages_calls),
    ("MediaFunction", "media", _media_calls),
    ("SearchFunction", "search", _search_calls),
    ("ModelsFunction", "models", _models_calls),
    ("ManagementFunction", "management", _management_calls),
])
def test_each_functions_role_allows_every_dynamodb_call_of_its_family(stack, lambda_env, function, family, calls):
    _, key = admin_key(lambda_env)
    for model in ("azure-tts", "google-search", "serper-search"):  # served with no account
        lambda_env.set_model_override(model, {"provider": "mock"})
    client, made = _family_client(family, lambda_env)
    with client:
        calls(client, key)
    assert made, "the family made no DynamoDB call: the recording is broken"
    assert made <= dynamodb_rights(stack, function), sorted(made - dynamodb_rights(stack, function))


def test_a_refused_model_call_needs_no_other_right(stack, lambda_env):
    """Admission refused (rate limit, then funds): the cancellation paths read the counter."""
    user_id = "u-" + uuid.uuid4().hex[:8]
    accounts.create_user(lambda_env, user_id, balance=0)
    _, key = accounts.issue_key(lambda_env, user_id, rpm=1)
    client, made = _family_client("chat", lambda_env)
    with client:
        statuses = [client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}).status_code
                    for _ in range(2)]
    assert statuses[-1] == 429
    assert made <= dynamodb_rights(stack, "ChatFunction"), sorted(made - dynamodb_rights(stack, "ChatFunction"))
