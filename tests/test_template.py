"""template.yaml, translated offline by the SAM translator into what CloudFormation would deploy.

A streaming route that silently buffers passes `sam validate --lint`, so these tests read the
generated REST API itself: every route of a streaming (Lambda Web Adapter) function must invoke
`response-streaming-invocations` with `responseTransferMode: STREAM`, and no buffered route may.
"""

from __future__ import annotations

import copy
import importlib
import re
from pathlib import Path

import pytest
import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

from llm_gateway.http.app import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())


@pytest.fixture(scope="module")
def translated() -> dict:
    """No network: the template uses SAM policy templates only, so no managed-policy lookup is made."""
    translator = Translator(managed_policy_map={}, sam_parser=Parser(),
                            boto_session=boto3.session.Session(region_name="us-east-1"))
    packaged = copy.deepcopy(TEMPLATE)
    for name, resource in packaged["Resources"].items():  # what `sam package` does to local code
        for prop in ("CodeUri", "ContentUri"):
            if prop in resource.get("Properties", {}):
                resource["Properties"][prop] = f"s3://artifacts/{name}.zip"
    return translator.translate(packaged, parameter_values={})


def _functions() -> dict[str, dict]:
    return {name: r["Properties"] for name, r in TEMPLATE["Resources"].items()
            if r["Type"] == "AWS::Serverless::Function"}


def _streaming() -> set[str]:
    return {name for name, props in _functions().items() if props["Handler"] == "run.sh"}


def _routes(translated: dict) -> list[tuple[str, str, str, dict]]:
    """(function, method, path, integration) for every route of the REST API."""
    api = next(r for r in translated["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi")
    out = []
    for path, methods in api["Properties"]["Body"]["paths"].items():
        for method, spec in methods.items():
            integration = spec["x-amazon-apigateway-integration"]
            uri = integration["uri"]["Fn::Sub"]
            function = re.search(r"\$\{(\w+)\.Arn\}", uri).group(1)
            out.append((function, method.upper(), path, integration))
    return out


def test_every_streaming_route_streams(translated):
    streaming = [r for r in _routes(translated) if r[0] in _streaming()]
    assert {r[0] for r in streaming} == {"ChatFunction", "MessagesFunction"}
    for function, method, path, integration in streaming:
        assert "/response-streaming-invocations" in integration["uri"]["Fn::Sub"], (method, path)
        assert integration.get("responseTransferMode") == "STREAM", (method, path)
        assert integration.get("timeoutInMillis") == 900000, (method, path)


def test_no_buffered_route_streams(translated):
    buffered = [r for r in _routes(translated) if r[0] not in _streaming()]
    assert {r[0] for r in buffered} == {"ModelsFunction", "ManagementFunction"}
    for function, method, path, integration in buffered:
        assert integration["uri"]["Fn::Sub"].endswith("/invocations"), (method, path)
        assert "response-streaming" not in integration["uri"]["Fn::Sub"], (method, path)
        assert "responseTransferMode" not in integration, (method, path)


def test_streaming_functions_run_behind_the_web_adapter():
    for name in _streaming():
        props = _functions()[name]
        env = props["Environment"]["Variables"]
        assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
        assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
        assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/healthz"
        assert (ROOT / props["CodeUri"] / "run.sh").stat().st_mode & 0o111, "run.sh must be executable"


def test_api_is_regional_and_functions_are_python313_on_arm64():
    api = TEMPLATE["Resources"]["GatewayApi"]["Properties"]
    assert api["EndpointConfiguration"]["Type"] == "REGIONAL"
    function_globals = TEMPLATE["Globals"]["Function"]
    assert (function_globals["Runtime"], function_globals["Architectures"]) == ("python3.13", ["arm64"])


def test_tables_are_on_demand_with_recovery(translated):
    tables = [r["Properties"] for r in translated["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table"]
    assert len(tables) == 5
    for table in tables:
        assert table["BillingMode"] == "PAY_PER_REQUEST"
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_table_keys_match_the_store_adapter():
    from llm_gateway.store.dynamodb import TABLES

    for suffix, (keys, ttl) in TABLES.items():
        resource = next(r["Properties"] for r in TEMPLATE["Resources"].values()
                        if r["Type"] == "AWS::DynamoDB::Table"
                        and r["Properties"]["TableName"] == {"Fn::Sub": f"${{TablePrefix}}-{suffix}"})
        assert [k["AttributeName"] for k in resource["KeySchema"]] == keys
        assert resource.get("TimeToLiveSpecification", {}).get("AttributeName") == ttl


def _app_path(path: str) -> str:
    """FastAPI's `{name:path}` is API Gateway's greedy `{name+}`."""
    return re.sub(r"\{(\w+):path\}", r"{\1+}", path)


def test_each_function_serves_exactly_its_familys_routes(translated):
    """The template lists every route of each family that exists, and nothing the family lacks."""
    from fastapi.routing import APIRoute

    by_function: dict[str, set[tuple[str, str]]] = {}
    for function, method, path, _ in _routes(translated):
        if path != "/healthz":
            by_function.setdefault(function, set()).add((method, re.sub(r"\{\w+\+\}", "{+}", path)))
    checked = 0
    for name, props in _functions().items():
        family = Path(props["CodeUri"]).name
        try:
            router = importlib.import_module(FAMILIES[family]).router
        except ModuleNotFoundError:
            continue  # a family still being written; its routes are in the template already
        served = {(m, re.sub(r"\{\w+\+\}", "{+}", _app_path(r.path)))
                  for r in router.routes if isinstance(r, APIRoute) for m in r.methods}
        assert by_function[name] == served, name
        checked += 1
    assert checked >= 2


def test_least_privilege_policies():
    functions = _functions()
    for name, props in functions.items():
        for policy in props["Policies"]:
            (kind, args), = policy.items()
            assert kind in ("DynamoDBCrudPolicy", "DynamoDBReadPolicy", "SSMParameterWithSlashPrefixReadPolicy")
            assert args != "*" and "*" not in str(args)
    read_only = {list(p.values())[0]["TableName"]["Ref"] for p in functions["ModelsFunction"]["Policies"]
                 if "DynamoDBReadPolicy" in p}
    assert read_only == {"UsersTable", "KeysTable", "CatalogTable"}
    assert not any("DynamoDBCrudPolicy" in p for p in functions["ModelsFunction"]["Policies"])
