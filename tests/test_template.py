"""template.yaml, translated offline by the SAM translator into what CloudFormation would deploy.

`sam validate --lint` passes templates that deploy something other than what was meant (a streaming
route that silently buffers, an invoke permission open to every stage, a log group nobody set a
retention on), so these tests read the generated resources themselves: the REST API's routes and
their integrations, the stage, the permissions, the roles, the tables, the logs and the alarms.
"""

from __future__ import annotations

import copy
import importlib
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

from llm_gateway.http.app import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())
# Lambda's "6 MB" per synchronous invocation, as its refusal states it: "Request must be smaller than
# 6291556 bytes for the InvokeFunction operation"
LAMBDA_PAYLOAD_LIMIT = 6_291_556


def translate(template: dict) -> dict:
    """No network: the template uses SAM policy templates only, so no managed-policy lookup is made."""
    translator = Translator(managed_policy_map={}, sam_parser=Parser(),
                            boto_session=boto3.session.Session(region_name="us-east-1"))
    packaged = copy.deepcopy(template)
    for name, resource in packaged["Resources"].items():  # what `sam package` does to local code
        for prop in ("CodeUri", "ContentUri"):
            if prop in resource.get("Properties", {}):
                resource["Properties"][prop] = f"s3://artifacts/{name}.zip"
    return translator.translate(packaged, parameter_values={})


@pytest.fixture(scope="module")
def translated() -> dict:
    return translate(TEMPLATE)


def _functions() -> dict[str, dict]:
    return {name: r["Properties"] for name, r in TEMPLATE["Resources"].items()
            if r["Type"] == "AWS::Serverless::Function"}


def _streaming() -> set[str]:
    return {name for name, props in _functions().items() if props["Handler"] == "run.sh"}


def _of_type(translated: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in translated["Resources"].items() if r["Type"] == kind}


def _only(translated: dict, kind: str) -> dict:
    (resource,) = _of_type(translated, kind).values()
    return resource


def _tables() -> dict[str, str]:
    """table logical id -> its suffix (users, keys, ...)."""
    return {name: re.fullmatch(r"\$\{TablePrefix\}-(\w+)", r["Properties"]["TableName"]["Fn::Sub"]).group(1)
            for name, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"}


def _routes(translated: dict) -> list[tuple[str, str, str, dict]]:
    """(function, method, path, integration) for every route of the REST API (CORS preflights aside)."""
    api = _only(translated, "AWS::ApiGateway::RestApi")
    out = []
    for path, methods in api["Properties"]["Body"]["paths"].items():
        for method, spec in methods.items():
            integration = spec["x-amazon-apigateway-integration"]
            if method == "options":
                continue
            uri = integration["uri"]["Fn::Sub"]
            function = re.search(r"\$\{(\w+)\.Arn\}", uri).group(1)
            out.append((function, method.upper(), path, integration))
    return out


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


# --- routes and streaming -----------------------------------------------------------------------

def test_every_streaming_route_streams(translated):
    streaming = [r for r in _routes(translated) if r[0] in _streaming()]
    assert {r[0] for r in streaming} == {"ChatFunction", "MessagesFunction", "MediaFunction"}
    for _, method, path, integration in streaming:
        assert integration["uri"]["Fn::Sub"].endswith("/response-streaming-invocations"), (method, path)
        assert "/2021-11-15/functions/" in integration["uri"]["Fn::Sub"], (method, path)
        assert integration.get("responseTransferMode") == "STREAM", (method, path)
        assert integration.get("timeoutInMillis") == 900000, (method, path)


def test_no_buffered_route_streams(translated):
    buffered = [r for r in _routes(translated) if r[0] not in _streaming()]
    assert {r[0] for r in buffered} == {"ModelsFunction", "ManagementFunction", "SearchFunction", "TasksFunction"}
    for _, method, path, integration in buffered:
        assert integration["uri"]["Fn::Sub"].endswith("/invocations"), (method, path)
        assert "response-streaming" not in integration["uri"]["Fn::Sub"], (method, path)
        assert "responseTransferMode" not in integration, (method, path)


def test_every_integration_is_a_lambda_proxy_in_the_stacks_partition(translated):
    for _, method, path, integration in _routes(translated):
        assert (integration["type"], integration["httpMethod"]) == ("aws_proxy", "POST"), (method, path)
        assert integration["uri"]["Fn::Sub"].startswith("arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:")


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
        if family not in FAMILIES:  # a worker (settlements), reached by its queue, never by a route
            assert name not in by_function, name
            continue
        try:
            router = importlib.import_module(FAMILIES[family]).router
        except ModuleNotFoundError:
            continue  # a family still being written; its routes are in the template already
        served = {(m, re.sub(r"\{\w+\+\}", "{+}", _app_path(r.path)))
                  for r in router.routes if isinstance(r, APIRoute) for m in r.methods}
        assert by_function[name] == served, name
        checked += 1
    assert checked >= 2


# --- the stage and who may invoke what -----------------------------------------------------------

def test_the_api_has_one_stage_the_named_one(translated):
    """SAM adds a stage called "Stage" unless OpenApiVersion is set; only StageName may exist."""
    assert TEMPLATE["Globals"]["Api"]["OpenApiVersion"]
    stage = _only(translated, "AWS::ApiGateway::Stage")
    assert stage["Properties"]["StageName"] == {"Ref": "StageName"}
    for deployment in _of_type(translated, "AWS::ApiGateway::Deployment").values():
        assert "StageName" not in deployment["Properties"]


def test_invoke_permissions_name_the_real_stage_only(translated):
    """SAM's event permissions allow every stage (`__Stage__: "*"`); these name the API's one stage."""
    permissions = _of_type(translated, "AWS::Lambda::Permission")
    allowed = {}
    for name, permission in permissions.items():
        props = permission["Properties"]
        if props["Principal"] == "events.amazonaws.com":  # a schedule (settlements, the task sweep)
            assert props["FunctionName"] in ({"Ref": "SettlementFunction"}, {"Ref": "TasksFunction"}), name
            continue
        assert (props["Action"], props["Principal"]) == ("lambda:InvokeFunction", "apigateway.amazonaws.com")
        source = props["SourceArn"]["Fn::Sub"]
        assert isinstance(source, str), f"{name}: a Sub with its own variables (SAM's `__Stage__`?)"
        assert source == ("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                          "${GatewayApi}/${StageName}/*/*"), name
        allowed[props["FunctionName"]["Fn::GetAtt"][0]] = name
    assert {r[0] for r in _routes(translated)} == set(allowed), "each function with routes, one permission"


def test_the_web_adapter_layer_is_named_only_where_it_is_published():
    """The public arm64 adapter layer is in the aws partition; elsewhere a rule asks for its ARN."""
    for name in _streaming():
        (adapter,) = [layer for layer in _functions()[name]["Layers"] if "Fn::If" in layer]
        condition, public, given = adapter["Fn::If"]
        assert condition == "PublicWebAdapter" and given == {"Ref": "WebAdapterLayerArn"}
        assert re.fullmatch(r"arn:\$\{AWS::Partition\}:lambda:\$\{AWS::Region\}:753240598075:"
                            r"layer:LambdaAdapterLayerArm64:\d+", public["Fn::Sub"])
        assert TEMPLATE["Globals"]["Function"]["Architectures"] == ["arm64"]
    assert TEMPLATE["Conditions"]["PublicWebAdapter"] == {"Fn::Equals": [{"Ref": "WebAdapterLayerArn"}, ""]}
    rules = [r for r in TEMPLATE["Rules"].values()
             if r["RuleCondition"] == TEMPLATE["Conditions"]["PublicWebAdapter"]]
    assert [a["Assert"] for r in rules for a in r["Assertions"]] == [
        {"Fn::Equals": [{"Ref": "AWS::Partition"}, "aws"]}]


# --- tables ---------------------------------------------------------------------------------------

def test_tables_are_on_demand_with_recovery(translated):
    tables = [r["Properties"] for r in _of_type(translated, "AWS::DynamoDB::Table").values()]
    assert len(tables) == 6
    for table in tables:
        assert table["BillingMode"] == "PAY_PER_REQUEST"
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_table_keys_match_the_store_adapter():
    from llm_gateway.store.dynamodb import TABLES

    assert set(_tables().values()) == set(TABLES)
    for suffix, (keys, ttl) in TABLES.items():
        resource = next(r["Properties"] for r in TEMPLATE["Resources"].values()
                        if r["Type"] == "AWS::DynamoDB::Table"
                        and r["Properties"]["TableName"] == {"Fn::Sub": f"${{TablePrefix}}-{suffix}"})
        assert [k["AttributeName"] for k in resource["KeySchema"]] == keys
        assert resource.get("TimeToLiveSpecification", {}).get("AttributeName") == ttl


def test_tables_outlive_redeploys_and_deletes_and_are_protected(translated):
    """Kept on delete and on replacement, deleted only by the rollback of the deploy that made them."""
    assert TEMPLATE["Parameters"]["TableDeletionProtection"]["Default"] == "true"
    assert TEMPLATE["Conditions"]["ProtectTables"] == {
        "Fn::Equals": [{"Ref": "TableDeletionProtection"}, "true"]}
    for name, table in _of_type(translated, "AWS::DynamoDB::Table").items():
        assert table["DeletionPolicy"] == "RetainExceptOnCreate", name
        assert table["UpdateReplacePolicy"] == "Retain", name
        assert table["Properties"]["DeletionProtectionEnabled"] == {"Fn::If": ["ProtectTables", True, False]}


def test_a_stack_can_run_on_tables_kept_from_another(translated):
    """With UseExistingTables the tables are not created, and nothing else needs them as resources:
    every reference to a table is by name (`${TablePrefix}-x`), never Ref/GetAtt."""
    assert TEMPLATE["Conditions"]["CreateTables"] == {"Fn::Equals": [{"Ref": "UseExistingTables"}, "false"]}
    tables = set(_tables())
    for name, resource in translated["Resources"].items():
        if name in tables:
            assert resource["Condition"] == "CreateTables"
            continue
        for node in _walk(resource):
            if isinstance(node, dict):
                assert node.get("Ref") not in tables, name
                assert (node.get("Fn::GetAtt") or [None])[0] not in tables, name
                sub = node.get("Fn::Sub")
                assert not (isinstance(sub, str) and re.search(r"\$\{\w+Table[.}]", sub)), name


def test_on_demand_throughput_cap_is_optional(translated):
    assert TEMPLATE["Parameters"]["TableMaxReadRequestUnits"]["Default"] == 0
    assert TEMPLATE["Parameters"]["TableMaxWriteRequestUnits"]["Default"] == 0
    for name, table in _of_type(translated, "AWS::DynamoDB::Table").items():
        condition, cap, none = table["Properties"]["OnDemandThroughput"]["Fn::If"]
        assert (condition, none) == ("CapThroughput", {"Ref": "AWS::NoValue"}), name
        assert cap == {
            "MaxReadRequestUnits": {"Fn::If": ["CapReads", {"Ref": "TableMaxReadRequestUnits"},
                                               {"Ref": "AWS::NoValue"}]},
            "MaxWriteRequestUnits": {"Fn::If": ["CapWrites", {"Ref": "TableMaxWriteRequestUnits"},
                                                {"Ref": "AWS::NoValue"}]},
        }, name


# --- throttling, concurrency ----------------------------------------------------------------------

def _encoded(path: str) -> str:
    return "/" + path.replace("/", "~1")


def test_stage_and_route_throttling(translated):
    settings = _only(translated, "AWS::ApiGateway::Stage")["Properties"]["MethodSettings"]
    first, *per_route = settings
    assert first == {"ResourcePath": "/*", "HttpMethod": "*", "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
                     "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"}}
    limits = {(s["HttpMethod"], s["ResourcePath"]): (s["ThrottlingRateLimit"]["Ref"], s["ThrottlingBurstLimit"]["Ref"])
              for s in per_route}
    expected = {}
    for function, method, path, _ in _routes(translated):
        if function in _streaming() or function == "SearchFunction":  # search calls are priced model calls
            expected[(method, _encoded(path))] = ("ModelCallRateLimit", "ModelCallBurstLimit")
        elif function == "ManagementFunction":
            expected[(method, _encoded(path))] = ("ManagementRateLimit", "ManagementBurstLimit")
        elif function == "TasksFunction" and path.rsplit("/", 1)[1] in ("imagine", "blend", "describe", "action"):
            expected[(method, _encoded(path))] = ("ModelCallRateLimit", "ModelCallBurstLimit")  # priced submissions
    assert limits == expected
    for parameter in ("ThrottlingRateLimit", "ThrottlingBurstLimit", "ModelCallRateLimit", "ModelCallBurstLimit",
                      "ManagementRateLimit", "ManagementBurstLimit"):
        assert TEMPLATE["Parameters"][parameter]["Type"] == "Number"


def test_management_has_reserved_concurrency(translated):
    props = translated["Resources"]["ManagementFunction"]["Properties"]
    assert props["ReservedConcurrentExecutions"] == {
        "Fn::If": ["ReserveManagement", {"Ref": "ManagementReservedConcurrency"}, {"Ref": "AWS::NoValue"}]}
    assert TEMPLATE["Parameters"]["ManagementReservedConcurrency"]["Default"] > 0
    for name in _streaming():  # the model calls share what is not reserved
        assert "ReservedConcurrentExecutions" not in translated["Resources"][name]["Properties"]


# --- logs, tracing, alarms -------------------------------------------------------------------------

def test_api_access_logs_go_to_a_log_group_with_retention(translated):
    stage = _only(translated, "AWS::ApiGateway::Stage")["Properties"]
    setting = stage["AccessLogSetting"]
    (group,) = [n for n, r in _of_type(translated, "AWS::Logs::LogGroup").items()
                if setting["DestinationArn"] == {"Fn::GetAtt": [n, "Arn"]}]
    assert translated["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    line = json.loads(setting["Format"])  # one JSON object per request
    assert line["requestId"] == "$context.requestId" and line["status"] == "$context.status"
    assert not any("authorization" in v.lower() or "apikey" in v.lower() for v in line.values())


def test_api_gateway_may_write_logs(translated):
    """Access logging needs the account's API Gateway CloudWatch role; the stage waits for it."""
    account = translated["Resources"]["ApiGatewayAccount"]
    assert account["Condition"] == "CreateLoggingRole"
    role = translated["Resources"][account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]]
    assert role["DeletionPolicy"] == "Retain"  # the account setting outlives the stack
    api = translated["Resources"]["GatewayApi"]
    ready = translated["Resources"][api["DependsOn"]]
    assert ready["Metadata"]["AccountLoggingRole"]["Fn::If"][:2] == ["CreateLoggingRole", {"Ref": "ApiGatewayAccount"}]


def test_every_function_logs_to_its_own_group_with_retention(translated):
    groups = _of_type(translated, "AWS::Logs::LogGroup")
    used = []
    for name, function in _of_type(translated, "AWS::Lambda::Function").items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert groups[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
        used.append(group)
    assert len(set(used)) == len(used) == len(_functions())
    assert all(group["DeletionPolicy"] == "Delete" for group in groups.values())


def test_tracing_is_on_for_functions_and_the_api(translated):
    for name, function in _of_type(translated, "AWS::Lambda::Function").items():
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}, name
    assert _only(translated, "AWS::ApiGateway::Stage")["Properties"]["TracingEnabled"] is True


def _alarms(translated: dict) -> dict[str, dict]:
    return {n: r["Properties"] for n, r in _of_type(translated, "AWS::CloudWatch::Alarm").items()}


def test_alarms_notify_the_topic_and_exist_only_with_one(translated):
    assert TEMPLATE["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    for name, alarm in _of_type(translated, "AWS::CloudWatch::Alarm").items():
        assert alarm["Condition"] == "HasAlarmTopic", name
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopicArn"}], name
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching", name


def test_alarms_cover_api_errors_latency_and_lambda_throttles(translated):
    alarms = _alarms(translated)
    api = _only(translated, "AWS::ApiGateway::RestApi")["Properties"]
    api_dimensions = [{"Name": "ApiName", "Value": api["Name"]}, {"Name": "Stage", "Value": {"Ref": "StageName"}}]
    by_metric: dict[tuple[str, str], list[dict]] = {}
    for alarm in alarms.values():
        if isinstance(alarm.get("Namespace"), str):
            by_metric.setdefault((alarm["Namespace"], alarm["MetricName"]), []).append(alarm)
    (errors,) = by_metric[("AWS/ApiGateway", "5XXError")]
    (latency,) = by_metric[("AWS/ApiGateway", "Latency")]
    assert errors["Dimensions"] == latency["Dimensions"] == api_dimensions
    assert latency["Threshold"] == {"Ref": "ApiLatencyAlarmMilliseconds"}
    throttled = {a["Dimensions"][0]["Value"]["Ref"] for a in by_metric[("AWS/Lambda", "Throttles")]}
    assert throttled == set(_functions())


def test_alarms_cover_dynamodb_throttled_requests_of_every_table(translated):
    queries = [m["Expression"]["Fn::Sub"] for a in _alarms(translated).values() for m in a.get("Metrics", [])]
    covered = set()
    for query in queries:
        match = re.fullmatch(r'SELECT SUM\(ThrottledRequests\) FROM SCHEMA\("AWS/DynamoDB", Operation, TableName\) '
                             r"WHERE TableName = '\$\{TablePrefix\}-(\w+)'", query)
        assert match, query
        covered.add(match.group(1))
    assert covered == set(_tables().values())


def _matches(pattern: str, line: str) -> bool:
    """CloudWatch Logs JSON filter patterns of the form `{ $.field = "value" }`."""
    match = re.fullmatch(r'\{ \$\.(\w+) = "([^"]*)" \}', pattern)
    assert match, f"pattern not understood here: {pattern}"
    try:
        event = json.loads(line)
    except ValueError:
        return False
    return isinstance(event, dict) and event.get(match.group(1)) == match.group(2)


def _settlement_failed_line() -> str:
    """The line the gateway writes when a charge cannot be written, produced by the code that writes it."""
    from llm_gateway.billing.settle import write
    from llm_gateway.store.base import UsageRecord

    class FailingStore:  # nothing takes the charge: neither the settlement nor its parking
        def settle(self, record):
            raise RuntimeError("store unreachable")

        park_settlement = settle

    lines = log_lines(lambda: write(FailingStore(), UsageRecord(request_id="req_1", user_id="u", key_id="k",
                                                                model="m", created_at=1.0)))
    (line,) = [ln for ln in lines if ln["msg"] == "settlement failed"]
    return json.dumps(line)


def log_lines(run) -> list[dict]:
    """The gateway's log lines (parsed) while `run()` runs."""
    from llm_gateway import logs

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs._JSONFormatter())
    logger = logging.getLogger("llm_gateway")
    logger.addHandler(handler)
    try:
        run()
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_settlement_failures_are_counted_from_every_function_log_and_alarmed(translated):
    line = _settlement_failed_line()
    filters = _of_type(translated, "AWS::Logs::MetricFilter")
    groups = {f["Properties"]["LogGroupName"]["Ref"] for f in filters.values()}
    assert groups == {f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
                      for f in _of_type(translated, "AWS::Lambda::Function").values()}
    metrics = set()
    for name, metric_filter in filters.items():
        props = metric_filter["Properties"]
        assert _matches(props["FilterPattern"], line), name
        assert not _matches(props["FilterPattern"], json.dumps({"msg": "request", "status": 200}))
        (transform,) = props["MetricTransformations"]
        metrics.add((json.dumps(transform["MetricNamespace"]), transform["MetricName"]))
    (metric,) = metrics
    (alarm,) = [a for a in _alarms(translated).values()
                if (json.dumps(a.get("Namespace")), a.get("MetricName")) == metric]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum", 1, "GreaterThanOrEqualToThreshold")


# --- least privilege -------------------------------------------------------------------------------

def role_policies(translated: dict, function: str) -> list[dict]:
    """The inline policies of the function's role; one under a condition (`Fn::If` with
    AWS::NoValue) counts as granted, as it is when its condition holds."""
    role = translated["Resources"][translated["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]]
    out = []
    for policy in role["Properties"].get("Policies", []):
        if "Fn::If" in policy:
            out += [branch for branch in policy["Fn::If"][1:] if "PolicyDocument" in branch]
        else:
            out.append(policy)
    return out


def dynamodb_rights(translated: dict, function: str) -> set[tuple[str, str]]:
    """(action, table suffix) pairs the function's role allows; fails on any DynamoDB grant it cannot
    name exactly (a wildcard action or resource, an index, another account's table)."""
    rights = set()
    for policy in role_policies(translated, function):
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            dynamodb = [a for a in actions if a.startswith("dynamodb:")]
            if not dynamodb:
                continue
            assert statement["Effect"] == "Allow" and "*" not in "".join(dynamodb), statement
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for resource in resources:
                arn = resource["Fn::Sub"] if isinstance(resource, dict) else resource
                match = re.fullmatch(r"arn:\$\{AWS::Partition\}:dynamodb:\$\{AWS::Region\}:\$\{AWS::AccountId\}:"
                                     r"table/\$\{TablePrefix\}-(\w+)", arn)
                assert match, f"{function}: {arn}"
                rights |= {(a.removeprefix("dynamodb:"), match.group(1)) for a in dynamodb}
    return rights


def test_least_privilege_policies(translated):
    tables = set(_tables().values())
    ssm_only = {"SSMParameterWithSlashPrefixReadPolicy"}
    for name, props in _functions().items():
        for policy in props["Policies"]:
            if "SQSSendMessagePolicy" in policy:  # the parked settlements' queue; the tasks function's webhooks
                queues = ["SettlementQueue", "WebhookQueue"] if name == "TasksFunction" else ["SettlementQueue"]
                assert policy in [{"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": [q, "QueueName"]}}}
                                  for q in queues], name
                continue
            if "Fn::If" in policy:  # the optional SSM path or Bedrock models, granted only when given
                condition, policy, none = policy["Fn::If"]
                assert condition in ("ReadSecretsPath", "InvokeBedrock") and none == {"Ref": "AWS::NoValue"}, name
            assert set(policy) <= ssm_only | {"Statement"}, (name, policy)  # no SAM DynamoDB*Policy (Scan, Delete)
        rights = dynamodb_rights(translated, name)
        assert {t for _, t in rights} <= tables
        # no function may scan or wipe the state; only the catalog is read whole (a few overrides)
        assert not {(a, t) for a, t in rights if a == "Scan" and t != "catalog"}, name
        assert not {a for a, _ in rights} & {"BatchWriteItem", "PartiQLDelete", "PartiQLUpdate", "PartiQLInsert",
                                             "DeleteTable", "UpdateTable", "CreateTable"}, name
    model_calls = {"GetItem", "PutItem", "UpdateItem", "ConditionCheckItem", "Query"}
    for name in _streaming():
        rights = dynamodb_rights(translated, name)
        assert {a for a, t in rights if t != "catalog"} <= model_calls, name
        assert {a for a, t in rights if t == "catalog"} <= {"GetItem", "Query", "Scan"}, name
    assert {a for a, _ in dynamodb_rights(translated, "ModelsFunction")} <= {"GetItem", "Query", "Scan"}
    # deleting items is the management function's alone, and only keys; the settlement function's,
    # of the parked settlements only, and the tasks function's, of the open-task items only (a
    # condition on the table's leading key)
    allowed = {"ManagementFunction": {"keys"}, "SettlementFunction": {"usage"}, "TasksFunction": {"tasks"}}
    for name in _functions():
        deletes = {t for a, t in dynamodb_rights(translated, name) if a == "DeleteItem"}
        assert deletes <= allowed.get(name, set()), name
    for function, partition in (("SettlementFunction", "parked"), ("TasksFunction", "open")):
        (deleting,) = [s for p in role_policies(translated, function) for s in p["PolicyDocument"]["Statement"]
                       if "dynamodb:DeleteItem" in s["Action"]]
        assert deleting["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [partition]}}


def test_bedrock_is_invoked_only_by_the_model_functions_only_on_the_named_models_only_when_named(translated):
    granted = {}
    for name in _functions():
        statements = [s for s in _statements(translated, name) if any(
            a.startswith("bedrock:") for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))]
        if statements:
            granted[name] = statements
    assert set(granted) == {"ChatFunction", "MessagesFunction"}
    for statements in granted.values():
        assert statements == [{"Effect": "Allow", "Resource": {"Ref": "BedrockModelArns"},
                               "Action": ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]}]
    template = TEMPLATE
    assert template["Parameters"]["BedrockModelArns"]["Default"] == ""
    assert template["Conditions"]["InvokeBedrock"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": [",", {"Ref": "BedrockModelArns"}]}, ""]}]}


def _statements(translated: dict, function: str) -> list[dict]:
    return [s for p in role_policies(translated, function) for s in p["PolicyDocument"]["Statement"]]


def test_only_the_tasks_function_touches_the_files_bucket_and_only_its_files(translated):
    for name in _functions():
        s3 = [s for s in _statements(translated, name)
              if any(a.startswith("s3:") for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))]
        if name != "TasksFunction":
            assert s3 == [], name
            continue
        assert sorted((s["Effect"], tuple(s["Action"]), json.dumps(s["Resource"])) for s in s3) == sorted([
            ("Allow", ("s3:GetObject", "s3:PutObject"),
             json.dumps({"Fn::Sub": "arn:${AWS::Partition}:s3:::${TaskFilesBucket}/files/*"})),
            ("Allow", ("s3:ListBucket",), json.dumps({"Fn::GetAtt": ["TaskFilesBucket", "Arn"]})),
        ])
    env = translated["Resources"]["TasksFunction"]["Properties"]["Environment"]["Variables"]
    assert env["GATEWAY_FILES_URL"] == {"Fn::Sub": "s3://${TaskFilesBucket}/files"}  # the prefix granted
    assert env["GATEWAY_WEBHOOK_QUEUE_URL"] == {"Ref": "WebhookQueue"}


def test_the_files_bucket_is_private_encrypted_tls_only_and_expires_its_objects(translated):
    bucket = _only(translated, "AWS::S3::Bucket")
    props = bucket["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    assert all(props["PublicAccessBlockConfiguration"][k] is True for k in (
        "BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
    expire, abort = props["LifecycleConfiguration"]["Rules"]
    assert expire["Status"] == {"Fn::If": ["ExpireTaskFiles", "Enabled", "Disabled"]}
    assert expire["ExpirationInDays"] == {"Fn::If": ["ExpireTaskFiles", {"Ref": "TaskFileRetentionDays"}, 1]}
    assert TEMPLATE["Conditions"]["ExpireTaskFiles"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "TaskFileRetentionDays"}, 0]}]}
    assert TEMPLATE["Parameters"]["TaskFileRetentionDays"]["Default"] > 0
    assert abort == {"Id": "abort-incomplete-uploads", "Status": "Enabled",
                     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}
    (statement,) = _only(translated, "AWS::S3::BucketPolicy")["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"], statement["Condition"]) == (
        "Deny", "s3:*", {"Bool": {"aws:SecureTransport": "false"}})


def test_webhooks_go_through_a_fifo_queue_to_their_function_with_a_dead_letter_queue(translated):
    resources = translated["Resources"]
    queue = resources["WebhookQueue"]["Properties"]
    assert queue["FifoQueue"] is True and queue["SqsManagedSseEnabled"] is True
    dead = resources[queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]["Properties"]
    assert dead["FifoQueue"] is True  # a FIFO queue's dead letters go to a FIFO queue
    (mapping,) = [m["Properties"] for m in _of_type(translated, "AWS::Lambda::EventSourceMapping").values()
                  if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["WebhookQueue", "Arn"]}]
    assert mapping["FunctionName"] == {"Ref": "WebhookFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    function = resources["WebhookFunction"]["Properties"]
    assert queue["VisibilityTimeout"] >= function["Timeout"]  # else Lambda refuses the mapping
    assert dynamodb_rights(translated, "WebhookFunction") == set()
    assert not any("secretsmanager:GetSecretValue" in json.dumps(s) for s in _statements(translated, "WebhookFunction"))
    assert any(a["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["WebhookDeadLetterQueue", "QueueName"]}}]
               for a in _alarms(translated).values() if a.get("Namespace") == "AWS/SQS")


def test_the_task_sweep_runs_on_a_schedule_of_the_tasks_function(translated):
    (rule,) = [r["Properties"] for r in _of_type(translated, "AWS::Events::Rule").values()
               if r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["TasksFunction", "Arn"]}]
    assert rule["ScheduleExpression"].startswith("rate(")


# --- environment ------------------------------------------------------------------------------------

def test_body_limit_is_the_gateways_own_413_below_lambdas_payload_limit(translated):
    for name, function in _of_type(translated, "AWS::Lambda::Function").items():
        limit = int(function["Properties"]["Environment"]["Variables"]["GATEWAY_MAX_BODY_BYTES"])
        # the event around the body (headers, context, JSON escaping) needs room too
        assert 5 * 1024 * 1024 <= limit <= LAMBDA_PAYLOAD_LIMIT - 256 * 1024, name


def test_usage_retention_reaches_every_function(translated):
    assert TEMPLATE["Parameters"]["UsageRetentionDays"]["Type"] == "Number"
    for name, function in _of_type(translated, "AWS::Lambda::Function").items():
        env = function["Properties"]["Environment"]["Variables"]
        assert env["GATEWAY_USAGE_RETENTION_DAYS"] == {"Ref": "UsageRetentionDays"}, name


# --- CORS -----------------------------------------------------------------------------------------

def test_api_gateway_answers_preflights_with_the_cors_origins(translated):
    paths = _only(translated, "AWS::ApiGateway::RestApi")["Properties"]["Body"]["paths"]
    for path, methods in paths.items():
        integration = methods["options"]["x-amazon-apigateway-integration"]
        assert integration["type"] == "mock", path
        headers = integration["responses"]["default"]["responseParameters"]
        assert headers["method.response.header.Access-Control-Allow-Origin"] == {"Fn::Sub": "'${CorsOrigins}'"}
        assert "Authorization" in headers["method.response.header.Access-Control-Allow-Headers"]
        allowed = set(headers["method.response.header.Access-Control-Allow-Methods"].strip("'").split(","))
        assert {m for m in methods if m != "options"} <= {m.lower() for m in allowed}, path
    for function in _of_type(translated, "AWS::Lambda::Function").values():
        assert function["Properties"]["Environment"]["Variables"]["GATEWAY_CORS_ORIGINS"] == {"Ref": "CorsOrigins"}


@pytest.mark.parametrize("value,accepted", [
    ("*", True), ("https://app.example.com", True), ("http://localhost:3000", True),
    ("https://a.example.com,https://b.example.com", False), ("'*'", False), ("", False),
])
def test_cors_origins_is_one_origin_or_any(value, accepted):
    """A preflight's Access-Control-Allow-Origin is one fixed value; a list would be sent as is."""
    pattern = TEMPLATE["Parameters"]["CorsOrigins"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


# --- lint -------------------------------------------------------------------------------------------

def test_template_passes_cfn_lint():
    """The same linter `sam validate --lint` runs (in .ci/run), so `make test` catches it too."""
    from cfnlint.api import ManualArgs, lint

    matches = lint((ROOT / "template.yaml").read_text(), config=ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []
