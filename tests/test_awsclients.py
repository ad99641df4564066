"""The cold-start data loader of llm_gateway.awsclients returns exactly what botocore's own loader does."""

from __future__ import annotations

import botocore.loaders
import botocore.session
import pytest
from botocore.exceptions import UnknownServiceError

from llm_gateway import awsclients

SERVICES = ("dynamodb", "ssm", "secretsmanager")


@pytest.fixture(scope="module")
def loaders():
    return awsclients.Loader(file_loader=awsclients.JSONFiles()), botocore.loaders.create_loader()


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1", "paginators-1"])
def test_models_equal_botocores(loaders, service, type_name):
    fast, stock = loaders
    assert fast.load_service_model(service, type_name) == stock.load_service_model(service, type_name)


@pytest.mark.parametrize("name", ["endpoints", "partitions", "sdk-default-configuration", "_retry"])
def test_shared_data_equal_botocores(loaders, name):
    fast, stock = loaders
    assert fast.load_data(name) == stock.load_data(name)


def test_service_list_matches_botocores_scan(loaders):
    fast, stock = loaders
    names = fast.list_available_services("service-2")
    assert "dynamodb" in names and "no-such-service" not in names and "../dynamodb" not in names
    assert list(names) == stock.list_available_services("service-2")
    assert len(names) == len(stock.list_available_services("service-2")) > 300


def test_unknown_service_is_refused_as_botocore_does(loaders):
    fast, _ = loaders
    with pytest.raises(UnknownServiceError) as raised:
        fast.load_service_model("no-such-service", "service-2")
    assert "dynamodb" in str(raised.value)


def test_clients_share_one_session_and_work(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    dynamodb, ssm = awsclients.client("dynamodb"), awsclients.client("ssm")
    assert dynamodb.meta.region_name == ssm.meta.region_name == "eu-west-1"
    assert dynamodb.meta.endpoint_url == "https://dynamodb.eu-west-1.amazonaws.com"
    assert "transact_write_items" in dir(dynamodb) and "get_parameters_by_path" in dir(ssm)
    assert isinstance(awsclients._session.get_component("data_loader"), awsclients.Loader)
