"""Provider credentials at scale: by default every function that calls providers reads one Secrets
Manager secret, once per container (one GetSecretValue per cold start, no SSM call), and may read
nothing else; SSM Parameter Store is read only when a SecretsPath is given."""

from __future__ import annotations

import importlib.util
import json
import uuid

import boto3
import pytest

from llm_gateway import aws, awsclients
from llm_gateway.config import reset_settings
from tests.cfn import Stack
from tests.test_lambda_handlers import ROOT, lambda_env  # noqa: F401  (the fixture)
from tests.test_template import TEMPLATE, role_policies, translate

# the families whose routes call providers (and so need their credentials)
PROVIDER_FUNCTIONS = {"ChatFunction": "chat", "MessagesFunction": "messages", "MediaFunction": "media",
                      "SearchFunction": "search"}
SECRET = {"Fn::If": ["CreateProviderSecret", {"Ref": "ProviderSecret"}, {"Ref": "ProviderSecretArn"}]}


def _functions() -> dict[str, dict]:
    return {name: r["Properties"] for name, r in TEMPLATE["Resources"].items()
            if r["Type"] == "AWS::Serverless::Function"}


@pytest.fixture(scope="module")
def translated() -> dict:
    return translate(TEMPLATE)


def _statements(translated: dict, function: str) -> list[dict]:
    return [s for p in role_policies(translated, function) for s in p["PolicyDocument"]["Statement"]]


def _actions(statement: dict) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def test_secrets_manager_is_the_default_and_ssm_is_opt_in():
    params = TEMPLATE["Parameters"]
    assert params["ProviderSecretArn"]["Default"] == "" and params["SecretsPath"]["Default"] == ""
    default = Stack(TEMPLATE)
    assert default.exists("ProviderSecret") and not default.condition("ReadSecretsPath")
    secret = TEMPLATE["Resources"]["ProviderSecret"]
    assert json.loads(secret["Properties"]["SecretString"]) == {}
    assert secret["DeletionPolicy"] == "Delete" and "Name" not in secret["Properties"]
    given = Stack(TEMPLATE, {"ProviderSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:gw-AbC123",
                             "SecretsPath": "/llm-gateway"})
    assert not given.exists("ProviderSecret") and given.condition("ReadSecretsPath")
    assert given.value(SECRET) == "arn:aws:secretsmanager:us-east-1:123456789012:secret:gw-AbC123"
    assert "GATEWAY_SSM_PREFIX" not in TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]


def _told() -> set[str]:
    """The functions given the secret (GATEWAY_SECRETS_ARN): those whose routes call providers."""
    return {name for name, props in _functions().items()
            if "GATEWAY_SECRETS_ARN" in props.get("Environment", {}).get("Variables", {})}


def test_functions_that_call_providers_are_told_the_secret_and_no_other_is():
    assert set(PROVIDER_FUNCTIONS) <= _told()
    assert not _told() & {"ModelsFunction", "ManagementFunction"}  # they never call a provider
    for name, props in _functions().items():
        env = props.get("Environment", {}).get("Variables", {})
        if name in _told():
            assert env["GATEWAY_SECRETS_ARN"] == SECRET, name
            assert env["GATEWAY_SSM_PREFIX"] == {"Ref": "SecretsPath"}, name
        else:
            assert "GATEWAY_SSM_PREFIX" not in env, name


def test_only_those_functions_may_read_the_secret_and_only_it(translated):
    for name in _functions():
        statements = _statements(translated, name)
        secrets = [s for s in statements if any(a.startswith("secretsmanager:") for a in _actions(s))]
        if name in _told():
            assert secrets == [{"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": SECRET}]
        else:
            assert secrets == [], name
            assert not [s for s in statements if any(a.startswith("ssm:") for a in _actions(s))], name


def test_ssm_rights_exist_only_when_a_path_is_given(translated):
    for name in _told():
        role = translated["Resources"][translated["Resources"][name]["Properties"]["Role"]["Fn::GetAtt"][0]]
        for policy in role["Properties"]["Policies"]:
            granted = [policy] if "PolicyDocument" in policy else policy["Fn::If"][1:2]
            ssm = [s for p in granted for s in p["PolicyDocument"]["Statement"]
                   if any(a.startswith("ssm:") for a in _actions(s))]
            if ssm:
                assert policy["Fn::If"][0] == "ReadSecretsPath" and policy["Fn::If"][2] == {"Ref": "AWS::NoValue"}


# --- a cold start as deployed, against moto -----------------------------------------------------

@pytest.fixture
def aws_calls(monkeypatch):
    """(service, operation) of every AWS call made from now on, DynamoDB aside."""
    calls: list[tuple[str, str]] = []
    real = awsclients.client

    def recording(service_name, config=None):
        made = real(service_name, config)
        if service_name != "dynamodb":
            made.meta.events.register("before-call", lambda model, **_: calls.append((service_name, model.name)))
        return made

    monkeypatch.setattr(awsclients, "client", recording)
    return calls


def _cold_start(family: str):
    """The function's module loaded as Lambda loads it, and the app it serves."""
    entry = "app.py" if (ROOT / "functions" / family / "app.py").exists() else "main.py"
    spec = importlib.util.spec_from_file_location(f"cold_{family}_{uuid.uuid4().hex}", ROOT / "functions" / family / entry)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler.app if entry == "app.py" else module.app()


@pytest.mark.parametrize("function", sorted(PROVIDER_FUNCTIONS))
def test_a_cold_start_makes_one_get_secret_value_and_no_ssm_call(lambda_env, aws_calls, monkeypatch,  # noqa: F811
                                                                  function):
    arn = boto3.client("secretsmanager").create_secret(
        Name="gw-" + uuid.uuid4().hex[:8],
        SecretString=json.dumps({"OPENAI_API_KEY": "sk-from-the-secret", "ANTHROPIC_API_KEY": "sk-ant-secret"}),
    )["ARN"]
    stack = Stack(TEMPLATE, resources={"ProviderSecret": arn})  # the template's defaults
    env = _functions()[function]["Environment"]["Variables"]
    for name in ("GATEWAY_SECRETS_ARN", "GATEWAY_SSM_PREFIX"):
        monkeypatch.setenv(name, stack.value(env[name]))
    assert (arn, "") == (stack.value(env["GATEWAY_SECRETS_ARN"]), stack.value(env["GATEWAY_SSM_PREFIX"]))
    monkeypatch.setattr(aws, "_loaded", False)  # a new container
    reset_settings()

    app = _cold_start(PROVIDER_FUNCTIONS[function])
    assert aws_calls == [("secretsmanager", "GetSecretValue")]
    assert app.state.runtime.settings.secret("OPENAI_API_KEY") == "sk-from-the-secret"
    assert app.state.runtime.settings.secret("ANTHROPIC_API_KEY") == "sk-ant-secret"
    _cold_start(PROVIDER_FUNCTIONS[function])  # the same container: read once per process
    assert aws_calls == [("secretsmanager", "GetSecretValue")]


def test_with_a_secrets_path_too_both_are_read_and_the_secret_wins(lambda_env, aws_calls):  # noqa: F811
    arn = boto3.client("secretsmanager").create_secret(
        Name="gw-" + uuid.uuid4().hex[:8], SecretString=json.dumps({"OPENAI_API_KEY": "sk-from-the-secret"}),
    )["ARN"]
    path = "/" + uuid.uuid4().hex[:8]
    boto3.client("ssm").put_parameter(Name=f"{path}/OPENAI_API_KEY", Value="sk-from-ssm", Type="SecureString")
    boto3.client("ssm").put_parameter(Name=f"{path}/SERPER_API_KEY", Value="serper-from-ssm", Type="SecureString")
    env = {"GATEWAY_SECRETS_ARN": arn, "GATEWAY_SSM_PREFIX": path}
    assert aws.load_provider_secrets(env) == ["OPENAI_API_KEY", "SERPER_API_KEY"]
    assert (env["OPENAI_API_KEY"], env["SERPER_API_KEY"]) == ("sk-from-the-secret", "serper-from-ssm")
    assert sorted(aws_calls) == [("secretsmanager", "GetSecretValue"), ("ssm", "GetParametersByPath")]
