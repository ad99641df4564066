"""The Lambda entries (functions/<family>/) run as Lambda runs them, against DynamoDB (moto).

Buffered families: the Mangum handler is imported from its file and called in-process with API
Gateway REST proxy events of the shape `sam local generate-event apigateway aws-proxy` produces
(tests/events). Streaming families: run.sh is started as the Lambda Web Adapter starts it (PORT set)
and must answer the readiness path and stream a completion chunk by chunk.
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

ROOT = Path(__file__).resolve().parent.parent
EVENT = json.loads((ROOT / "tests" / "events" / "apigateway-aws-proxy.json").read_text())
PROVIDER_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY")


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
    result = handler(event, LambdaContext())
    body = base64.b64decode(result["body"]) if result.get("isBase64Encoded") else result["body"].encode()
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    for k, values in (result.get("multiValueHeaders") or {}).items():
        headers[k.lower()] = values[-1]
    return result["statusCode"], headers, json.loads(body)


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
def chat_function(lambda_env):
    """functions/chat/run.sh started as the adapter starts it: PORT set, the stack's environment."""
    port = free_port()
    env = {**os.environ, "PORT": str(port),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT / "layers" / "gateway")}
    proc = subprocess.Popen([str(ROOT / "functions" / "chat" / "run.sh")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("run.sh exited: " + proc.stderr.read().decode()[-2000:])
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("run.sh did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


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
    gaps = [b - a for a, b in zip(content, content[1:])]
    assert sum(g >= 0.02 for g in gaps) >= len(gaps) // 2
