"""The cold-start data loader of llm_gateway.awsclients returns exactly what botocore's own loader does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import botocore
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
    assert "dynamodb" in names and "no-such-service" not in names
    for odd in ("../dynamodb", "..", ".", ""):
        assert odd not in names
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


# --- the layer's trimmed endpoint table (layers/gateway/trim_endpoints.py) -----------------------

ROOT = Path(__file__).resolve().parent.parent
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1", "us-iso-east-1")


def _session(data_dir: str | None) -> botocore.session.Session:
    session = botocore.session.Session()
    extra = [data_dir] if data_dir else []
    session.register_component("data_loader", awsclients.Loader(extra_search_paths=extra,
                                                                file_loader=awsclients.JSONFiles()))
    return session


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    (site / "botocore").symlink_to(Path(botocore.__file__).parent)
    script = ROOT / "layers" / "gateway" / "trim_endpoints.py"
    subprocess.run([sys.executable, str(script), str(site), *awsclients.SERVICES], check=True)
    return site / "llm_gateway" / "awsdata"


def test_trimmed_table_holds_only_the_gateways_services(trimmed):
    table = json.loads((trimmed / "endpoints.json").read_text())
    full = botocore.loaders.create_loader().load_data("endpoints")
    assert [p["partition"] for p in table["partitions"]] == [p["partition"] for p in full["partitions"]]
    for mine, theirs in zip(table["partitions"], full["partitions"]):
        assert set(mine["services"]) == set(awsclients.SERVICES) & set(theirs["services"])
        assert {k: v for k, v in mine.items() if k != "services"} == {k: v for k, v in theirs.items() if k != "services"}
    assert (trimmed / "endpoints.json").stat().st_size < 200_000


@pytest.mark.parametrize("service", awsclients.SERVICES)
def test_trimmed_table_resolves_every_region_as_botocore_does(trimmed, service, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_ENDPOINT_URL", f"AWS_ENDPOINT_URL_{service.upper()}"):
        monkeypatch.delenv(name, raising=False)
    mine, stock = _session(str(trimmed)), _session(None)
    assert mine.get_component("data_loader").load_data("endpoints") != stock.get_component("data_loader").load_data("endpoints")
    assert mine.get_available_regions(service) == stock.get_available_regions(service)
    for region in REGIONS:
        a, b = mine.create_client(service, region_name=region), stock.create_client(service, region_name=region)
        assert (a.meta.endpoint_url, a.meta.region_name, a.meta.partition) == \
               (b.meta.endpoint_url, b.meta.region_name, b.meta.partition), region


def test_layer_build_trims_for_every_service_the_gateway_uses():
    makefile = (ROOT / "layers" / "gateway" / "Makefile").read_text()
    line = next(row for row in makefile.splitlines() if row.startswith("AWS_SERVICES :="))
    assert tuple(line.split(":=")[1].split()) == awsclients.SERVICES
    assert "trim_endpoints.py" in makefile
