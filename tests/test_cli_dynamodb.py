"""The operator command against DynamoDB (moto) behaves as against SQLite, so an operator can set up
a deployed stack from a laptop: `store init`, users, keys, models, tiers, usage."""

from __future__ import annotations

import httpx
import pytest

from llm_gateway.admission.keys import hash_key
from llm_gateway.config import Settings
from llm_gateway.http.app import create_app
from llm_gateway.runtime import Runtime
from llm_gateway.store.dynamodb import DynamoDBStore
from tests.conftest import gateway_server
from tests.dynamo import table_prefix
from tests.served import gateway_env, run_cli


@pytest.fixture
def prefix(moto_dynamodb) -> str:
    return table_prefix()


@pytest.fixture
def cli(prefix, tmp_path):
    """`llm-gateway` with the AWS environment of the session (moto) and the stack's store URL."""
    env = gateway_env(tmp_path, {"GATEWAY_STORE_URL": f"dynamodb://{prefix}"})
    return lambda *args: run_cli(env, *args, cwd=tmp_path)


def test_store_init_creates_the_tables_idempotently(cli, prefix):
    assert cli("store", "init") == (0, {"status": "ok", "store": f"dynamodb://{prefix}"})
    assert cli("store", "init")[0] == 0
    assert DynamoDBStore(prefix).count_users() == 0


def test_users_keys_models_and_usage_on_dynamodb(cli, prefix):
    cli("store", "init")
    rc, user = cli("users", "create", "alice", "--tier", "vip", "--balance", "12.5", "--membership-days", "30")
    assert rc == 0 and (user["tier"], user["effective_tier"], user["balance"]) == ("vip", "vip", "12.5")
    assert cli("users", "topup", "alice", "0.000001")[1]["balance"] == "12.500001"
    assert cli("users", "set-tier", "alice", "premium", "--membership-days", "0")[1]["effective_tier"] == "regular"
    assert cli("users", "create", "alice")[0] == 1
    assert cli("users", "show", "nobody") == (1, {"error": "no user 'nobody'"})

    rc, key = cli("keys", "create", "alice", "--models", "gpt-4o,claude-*", "--rpm", "30", "--max-fee", "5")
    assert rc == 0 and key["key"].startswith("sk-") and key["permissions"] == ["gpt-4o", "claude-*"]
    assert key["max_fee"] == "5" and key["rpm"] == 30
    listed = cli("keys", "list", "alice")[1]["keys"]
    assert [k["key_id"] for k in listed] == [key["key_id"]] and listed[0]["key"] != key["key"]
    assert cli("keys", "disable", key["key_id"])[1]["is_disabled"] is True
    assert cli("keys", "delete", key["key_id"]) == (0, {"deleted": key["key_id"]})
    assert cli("keys", "delete", key["key_id"])[0] == 1
    assert cli("keys", "list", "alice")[1]["keys"] == []

    rc, model = cli("models", "set", "my-model", "--provider", "mock", "--input", "1.5", "--output", "3",
                    "--rpm", "vip=7")
    assert rc == 0 and (model["input"], model["output"], model["rpm"]["vip"]) == ("1.5", "3", 7)
    assert cli("models", "list")[1]["models"]["my-model"]["provider"] == "mock"
    assert cli("tiers", "set", "vip", "--multiplier", "0.9")[1]["multiplier"] == "0.9"
    rc, usage = cli("usage", "alice")
    assert rc == 0 and usage["total"] == 0


def test_first_admin_key_bootstrapped_from_the_cli_works_on_the_deployed_tables(cli, prefix, fake_openai):
    cli("store", "init")
    cli("users", "create", "admin", "--tier", "premium")
    full = cli("keys", "create", "admin", "--admin", "--remark", "bootstrap")[1]["key"]
    store = DynamoDBStore(prefix)
    assert store.get_key_by_hash(hash_key(full)).is_admin is True
    runtime = Runtime.build(Settings(store_url=f"dynamodb://{prefix}"), store)
    server = gateway_server(create_app(runtime=runtime))
    try:
        r = httpx.post(server.url + "/api/v1/user/admin/get-api-tokens", headers={"Authorization": f"Bearer {full}"})
        assert r.status_code == 200, r.text
        assert [k["remark"] for k in r.json()["data"]] == ["bootstrap"]
    finally:
        server.stop()


def test_debit_and_refused_changes_on_dynamodb(cli, prefix):
    cli("store", "init")
    before = cli("users", "create", "bo", "--balance", "10")[1]
    for args in (("users", "topup", "bo", "-5"), ("users", "set-tier", "bo", "vip", "--membership-days", "1e300"),
                 ("keys", "create", "bo", "--rpm", "0"), ("keys", "create", "bo", "--max-fee", "1e400"),
                 ("keys", "create", "bo", "--expires", "9999-12-31T23:59:59-01:00"),
                 ("users", "debit", "bo", "0", "--reason", "x")):
        rc, out = cli(*args)
        assert rc == 2 and set(out) == {"error"}, args
    assert cli("users", "show", "bo")[1] == before
    assert cli("keys", "list", "bo")[1]["keys"] == []
    assert cli("users", "create", "cy", "--balance", "-5")[0] == 2
    assert cli("users", "show", "cy")[0] == 1

    rc, user = cli("users", "debit", "bo", "2.5", "--reason", "chargeback #41")
    assert rc == 0 and user["balance"] == "7.5"
    rc, out = cli("users", "debit", "bo", "7.500001", "--reason", "too much")
    assert rc == 1 and "does not cover" in out["error"]
    assert DynamoDBStore(prefix).get_user("bo").balance == 7_500_000
    usage = cli("usage", "bo")[1]
    assert usage["total"] == 1 and usage["sum"]["cost"] == "2.5"
    [rec] = usage["records"]
    assert (rec["route"], rec["key_id"], rec["model"], rec["cost"]) == ("debit", "operator", "chargeback #41", "2.5")


def test_models_delete_on_dynamodb(cli, prefix):
    cli("store", "init")
    default = cli("models", "list")[1]["models"]["gpt-4o"]
    assert cli("models", "set", "typo", "--input", "1")[0] == 2
    cli("models", "set", "my-model", "--provider", "mock", "--input", "1")
    cli("models", "set", "gpt-4o", "--input", "99")
    version = DynamoDBStore(prefix).catalog_version()
    assert cli("models", "delete", "my-model") == (0, {"deleted": "my-model", "restored": None})
    assert cli("models", "delete", "gpt-4o") == (0, {"deleted": "gpt-4o", "restored": default})
    assert DynamoDBStore(prefix).catalog_version() == version + 2
    models = cli("models", "list")[1]["models"]
    assert "my-model" not in models and models["gpt-4o"] == default
    assert cli("models", "delete", "my-model") == (1, {"error": "no model 'my-model'"})
