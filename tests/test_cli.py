"""The operator command: one JSON object per command, exit codes, and live effect on a server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal

import httpx
import pytest

from tests.served import gateway_env, serve


@pytest.fixture
def cli(tmp_path):
    env = gateway_env(tmp_path)

    def run(*args: str) -> tuple[int, dict]:
        done = subprocess.run([sys.executable, "-m", "llm_gateway.cli", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        lines = done.stdout.strip().splitlines()
        assert len(lines) == 1, done.stdout + done.stderr
        return done.returncode, json.loads(lines[0])

    return run


def test_users_lifecycle(cli):
    rc, user = cli("users", "create", "alice", "--tier", "vip", "--balance", "12.5", "--membership-days", "30")
    assert rc == 0
    assert user["user_id"] == "alice" and user["tier"] == "vip" and user["effective_tier"] == "vip"
    assert user["balance"] == "12.5" and user["membership_expire_date"].endswith("Z")
    assert cli("users", "topup", "alice", "0.000001")[1]["balance"] == "12.500001"
    rc, shown = cli("users", "set-tier", "alice", "premium", "--membership-days", "0")
    assert rc == 0 and shown["tier"] == "premium" and shown["effective_tier"] == "regular"
    assert cli("users", "show", "alice")[1]["balance"] == "12.500001"


def test_failures_exit_non_zero_with_an_error_object(cli):
    assert cli("users", "show", "nobody") == (1, {"error": "no user 'nobody'"})
    cli("users", "create", "bob")
    rc, out = cli("users", "create", "bob")
    assert rc == 1 and "exists" in out["error"]


@pytest.mark.parametrize("args", [
    ("users", "create"),
    ("users", "create", "x", "--tier", "gold"),
    ("users", "create", "x", "--balance", "1.0000001"),
    ("users", "create", "x", "--balance", "lots"),
    ("keys", "create", "x", "--expires", "tomorrow"),
    ("models", "set", "gpt-4o", "--rpm", "gold=5"),
    ("tiers", "set", "vip", "--multiplier", "abc"),
    ("tiers", "set", "vip", "--rpm", "0"),
    ("users", "debit", "x", "1"),
    ("serve", "--port", "0"),
    ("serve", "--port", "65536"),
    ("serve", "--workers", "0"),
    ("frobnicate",),
])
def test_bad_usage_exits_2(cli, args):
    if args[:2] == ("keys", "create"):
        cli("users", "create", "x")
    rc, out = cli(*args)
    assert rc == 2 and set(out) == {"error"}


def test_keys_lifecycle(cli):
    cli("users", "create", "carol")
    rc, key = cli("keys", "create", "carol", "--models", "gpt-4o,claude-*", "--remark", "ci", "--rpm", "30",
                  "--max-fee", "5", "--expires", "2030-01-01T00:00:00Z")
    assert rc == 0
    assert key["key"].startswith("sk-") and len(key["key"]) == 48
    assert key["key_id"].startswith("key_") and len(key["key_id"]) == 16
    assert key["permissions"] == ["gpt-4o", "claude-*"] and key["rpm"] == 30
    assert key["max_fee"] == "5" and key["expired_at"] == "2030-01-01T00:00:00Z" and key["is_admin"] is False
    listed = cli("keys", "list", "carol")[1]["keys"]
    assert len(listed) == 1
    assert listed[0]["key"] == key["key"][:8] + "..." + key["key"][-4:]
    assert cli("keys", "disable", key["key_id"])[1]["is_disabled"] is True
    assert cli("keys", "delete", key["key_id"]) == (0, {"deleted": key["key_id"]})
    assert cli("keys", "list", "carol")[1]["keys"] == []
    assert cli("keys", "delete", key["key_id"])[0] == 1


def test_only_key_hashes_are_stored(cli, tmp_path):
    import sqlite3

    cli("users", "create", "dave")
    full = cli("keys", "create", "dave")[1]["key"]
    raw = (tmp_path / "gateway.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("gateway.db-*"))
    assert full.encode() not in raw and full[3:30].encode() not in raw
    rows = sqlite3.connect(tmp_path / "gateway.db").execute("SELECT key_hash FROM keys").fetchall()
    assert len(rows) == 1 and len(rows[0][0]) == 64


def test_models_and_tiers(cli):
    catalog = cli("models", "list")[1]
    for name in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-3.5-turbo", "gpt-3.5-turbo-instruct",
                 "claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5", "claude-2-web", "mock-gpt", "gpt-5"):
        assert name in catalog["models"], name
        assert catalog["models"][name]["price_source"]["date"]
    web = catalog["models"]["claude-2-web"]
    assert web["serialize_messages"] and web["max_input_tokens"] == 90000
    assert web["rpm"] == {"regular": 12, "vip": 60, "premium": 90}
    assert catalog["tiers"] == {"regular": {"rpm": 60, "multiplier": "1"}, "vip": {"rpm": 300, "multiplier": "1"},
                                "premium": {"rpm": 600, "multiplier": "1"}}
    rc, m = cli("models", "set", "my-model", "--provider", "openai", "--upstream-model", "gpt-4o", "--input", "1.5",
                "--output", "6", "--max-input-tokens", "1000", "--rpm", "vip=7")
    assert rc == 0 and m["input"] == "1.5" and m["output"] == "6" and m["rpm"]["vip"] == 7
    assert m["rpm"]["regular"] == 60
    rc, m = cli("models", "set", "my-model", "--rpm", "regular=3", "--rpm", "premium=9")
    assert rc == 0 and (m["rpm"]["regular"], m["rpm"]["vip"], m["rpm"]["premium"]) == (3, 7, 9)
    rc, t = cli("tiers", "set", "vip", "--rpm", "400", "--multiplier", "0.9")
    assert rc == 0 and t == {"tier": "vip", "rpm": 400, "multiplier": "0.9"}


def test_models_set_refuses_a_new_model_without_a_provider_and_writes_nothing(cli):
    before = cli("models", "list")[1]
    for args in (("typo-model", "--input", "1"), ("claude-next", "--output", "2"), ("mock-new", "--per-request", "1")):
        rc, out = cli("models", "set", *args)
        assert rc == 2 and set(out) == {"error"} and "--provider" in out["error"]
    rc, out = cli("models", "set", "typo-model", "--provider", "openia", "--input", "1")
    assert rc == 2 and all(name in out["error"] for name in ("openai", "anthropic", "azure", "mock"))
    assert cli("models", "list")[1] == before
    rc, m = cli("models", "set", "azure-gpt", "--provider", "azure", "--upstream-model", "my-deployment")
    assert rc == 0 and (m["provider"], m["upstream_model"]) == ("azure", "my-deployment")
    # Once added, later changes need no --provider again.
    rc, m = cli("models", "set", "azure-gpt", "--input", "2")
    assert rc == 0 and (m["provider"], m["input"]) == ("azure", "2")


def test_the_provider_list_is_the_registry_s(cli):
    from llm_gateway.providers import PROVIDERS

    for provider in PROVIDERS:
        rc, m = cli("models", "set", f"new-{provider}", "--provider", provider)
        assert rc == 0 and m["provider"] == provider


@pytest.mark.parametrize("args", [
    ("--input", "-1"),
    ("--per-request", "-0.5"),
    ("--max-input-tokens", "0"),
    ("--max-output-tokens", "-5"),
    ("--rpm", "vip=0"),
    ("--rpm", "vip=10000000000"),
    ("--kind", "video"),
    ("--audio-input", "-1"),
    ("--audio-output", "lots"),
    ("--per-1m-chars", "1.0000001"),
    ("--per-request", "0.1", "0.2"),
    ("--per-request", "FAST=0.05", "0.1"),
    ("--per-request", "FAST=-0.05"),
    ("--per-request", "FA ST=0.05"),
    ("--per-request", "=0.05"),
    ("--per-image", "1024x1024=0.04"),
    ("--per-image", "1024x1024/hd"),
    ("--per-image", "1024x1024/hd=-0.04"),
    ("--per-image", "a/b/c=0.04"),
    ("--per-image", "/hd=0.04"),
])
def test_models_set_refuses_values_the_gateway_cannot_use(cli, args):
    before = cli("models", "list")[1]
    rc, out = cli("models", "set", "gpt-4o", *args)
    assert rc == 2 and set(out) == {"error"}
    assert cli("models", "list")[1] == before


def test_models_set_prices_every_unit(cli):
    rc, m = cli("models", "set", "my-painter", "--provider", "mock", "--kind", "image", "--input", "5",
                "--per-image", "1024x1024/standard=0.04", "*/hd=0.08", "--per-image", "*/*=0.2",
                "--per-request", "FAST=0.05", "NORMAL=0.03", "--audio-input", "32", "--audio-output", "64",
                "--per-1m-chars", "15")
    assert rc == 0, m
    assert (m["kind"], m["input"], m["audio_input"], m["audio_output"], m["per_1m_chars"]) == (
        "image", "5", "32", "64", "15")
    assert m["per_image"] == {"1024x1024/standard": "0.04", "*/hd": "0.08", "*": "0.2"}
    assert m["per_request"] == {"FAST": "0.05", "NORMAL": "0.03"}
    # Pools and sizes not named keep their prices; a single price replaces the pools.
    rc, m = cli("models", "set", "my-painter", "--per-request", "NORMAL=0.02", "--per-image", "*/hd=0.09")
    assert m["per_request"] == {"FAST": "0.05", "NORMAL": "0.02"}
    assert m["per_image"] == {"1024x1024/standard": "0.04", "*/hd": "0.09", "*": "0.2"}
    rc, m = cli("models", "set", "my-painter", "--per-request", "0.01")
    assert (rc, m["per_request"], m["kind"]) == (0, "0.01", "image")
    assert cli("models", "list")[1]["models"]["my-painter"] == {k: v for k, v in m.items() if k != "model"}


def test_models_set_on_a_default_model_changes_only_what_it_names(cli):
    before = cli("models", "list")[1]["models"]["gpt-image-1"]
    assert before["kind"] == "image" and before["per_image"]["1024x1024/low"] == "0.011"
    rc, m = cli("models", "set", "gpt-image-1", "--per-image", "1024x1024/low=0.02")
    assert rc == 0
    assert m["per_image"] == {**before["per_image"], "1024x1024/low": "0.02"}
    assert {k: v for k, v in m.items() if k not in ("model", "per_image")} == {
        k: v for k, v in before.items() if k != "per_image"}
    rc, m = cli("models", "set", "tts-1", "--per-1m-chars", "16")
    assert (rc, m["kind"], m["per_1m_chars"]) == (0, "speech", "16")


def test_models_list_shows_kinds_and_every_price(cli):
    models = cli("models", "list")[1]["models"]
    assert {k: models["gpt-4o"][k] for k in ("kind", "input", "output", "cache_read", "cache_write", "audio_input",
                                             "audio_output", "per_request", "per_image", "per_1m_chars")} == {
        "kind": "chat", "input": "2.5", "output": "10", "cache_read": "1.25", "cache_write": "0",
        "audio_input": "0", "audio_output": "0", "per_request": "0", "per_image": {}, "per_1m_chars": "0"}
    assert (models["dall-e-3"]["kind"], models["dall-e-3"]["per_image"]["1792x1024/hd"]) == ("image", "0.12")
    assert (models["tts-1-hd"]["kind"], models["tts-1-hd"]["per_1m_chars"]) == ("speech", "30")
    assert (models["gpt-realtime"]["kind"], models["gpt-realtime"]["audio_output"]) == ("realtime", "64")
    assert (models["mock-image"]["kind"], models["mock-image"]["per_image"]) == ("image", {"*": "0"})


def test_models_delete(cli):
    default = cli("models", "list")[1]["models"]["gpt-4o"]
    # An added model is gone.
    cli("models", "set", "my-model", "--provider", "mock", "--input", "1")
    assert cli("models", "delete", "my-model") == (0, {"deleted": "my-model", "restored": None})
    assert "my-model" not in cli("models", "list")[1]["models"]
    # A default model goes back to its defaults, every overridden field at once.
    cli("models", "set", "gpt-4o", "--input", "99", "--rpm", "vip=7", "--upstream-model", "other")
    assert cli("models", "list")[1]["models"]["gpt-4o"] != default
    assert cli("models", "delete", "gpt-4o") == (0, {"deleted": "gpt-4o", "restored": default})
    assert cli("models", "list")[1]["models"]["gpt-4o"] == default
    # Deleting a default model that has no override leaves it as it is.
    assert cli("models", "delete", "gpt-4o") == (0, {"deleted": "gpt-4o", "restored": default})
    # An unknown model (or one already deleted) is an error.
    assert cli("models", "delete", "my-model") == (1, {"error": "no model 'my-model'"})
    assert cli("models", "delete", "no-such-model") == (1, {"error": "no model 'no-such-model'"})


@pytest.mark.parametrize("args", [
    ("--rpm", "0"),
    ("--rpm", "-3"),
    ("--max-fee", "-1"),
    ("--max-fee", "1e400"),
    ("--max-fee", "1000000001"),
    ("--expires", "10000-01-01"),
    ("--expires", "9999-12-31T23:59:59-01:00"),
    ("--expires", "1969-12-31T23:59:59Z"),
    ("--remark", "x" * 1025),
])
def test_keys_create_refuses_what_the_api_refuses_and_creates_no_key(cli, args):
    cli("users", "create", "kim")
    rc, out = cli("keys", "create", "kim", *args)
    assert rc == 2 and set(out) == {"error"}
    assert cli("keys", "list", "kim")[1]["keys"] == []
    assert cli("users", "show", "kim")[1]["key_count"] == 0


@pytest.mark.parametrize("args", [
    ("--balance", "-5"),
    ("--balance", "1000000001"),
    ("--membership-days", "-36501"),
    ("--membership-days", "36501"),
    ("--membership-days", "1e300"),
    ("--membership-days", "nan"),
])
def test_users_create_refuses_what_the_api_refuses_and_creates_no_user(cli, args):
    rc, out = cli("users", "create", "lee", *args)
    assert rc == 2 and set(out) == {"error"}
    assert cli("users", "show", "lee") == (1, {"error": "no user 'lee'"})


@pytest.mark.parametrize("args", [
    ("topup", "mo", "-5"),
    ("topup", "mo", "0"),
    ("topup", "mo", "1e400"),
    ("set-tier", "mo", "vip", "--membership-days", "-1e300"),
    ("set-tier", "mo", "vip", "--membership-days", "1e300"),
    ("set-tier", "mo", "vip", "--membership-days", "inf"),
    ("debit", "mo", "-1", "--reason", "x"),
    ("debit", "mo", "0", "--reason", "x"),
    ("debit", "mo", "1", "--reason", " "),
    ("debit", "mo", "1", "--reason", "x" * 1025),
])
def test_refused_money_and_membership_changes_write_nothing(cli, args):
    before = cli("users", "create", "mo", "--balance", "10", "--membership-days", "3")[1]
    rc, out = cli("users", *args)
    assert rc == 2 and set(out) == {"error"}
    assert cli("users", "show", "mo")[1] == before
    assert cli("usage", "mo")[1]["total"] == 0


def test_users_debit_takes_money_with_a_reason_in_the_usage_history(cli):
    cli("users", "create", "nia", "--balance", "10")
    rc, user = cli("users", "debit", "nia", "2.5", "--reason", "chargeback #41")
    assert rc == 0 and user["user_id"] == "nia" and user["balance"] == "7.5"
    usage = cli("usage", "nia")[1]
    assert usage["total"] == 1 and usage["sum"]["cost"] == "2.5"
    [rec] = usage["records"]
    assert (rec["route"], rec["key_id"], rec["model"], rec["cost"]) == ("debit", "operator", "chargeback #41", "2.5")
    assert cli("usage", "nia", "--model", "chargeback #41")[1]["total"] == 1
    # More than the balance is refused whole: nothing taken, nothing recorded.
    rc, out = cli("users", "debit", "nia", "7.500001", "--reason", "too much")
    assert rc == 1 and "does not cover" in out["error"]
    assert cli("users", "show", "nia")[1]["balance"] == "7.5"
    assert cli("usage", "nia")[1]["total"] == 1
    # The whole balance may be taken, down to exactly zero.
    assert cli("users", "debit", "nia", "7.5", "--reason", "close account")[1]["balance"] == "0"
    assert cli("users", "debit", "nobody", "1", "--reason", "x") == (1, {"error": "no user 'nobody'"})


def test_debit_of_a_missing_user_says_so_and_records_nothing(tmp_path):
    from llm_gateway import accounts
    from llm_gateway.store import NotFound
    from llm_gateway.store.sqlite import SQLiteStore

    store = SQLiteStore(str(tmp_path / "gateway.db"))
    store.init()
    with pytest.raises(NotFound):
        accounts.debit(store, "nobody", 1_000_000, "x")
    assert store.list_usage("nobody").total == 0


def test_usage_command_sums_records(cli):
    cli("users", "create", "erin")
    out = cli("usage", "erin")[1]
    assert out["total"] == 0 and out["sum"] == {"cost": "0", "input_tokens": 0, "output_tokens": 0, "requests": 0}


def test_usage_command_pages_with_cursors(cli, tmp_path):
    from llm_gateway.store.base import UsageRecord
    from llm_gateway.store.sqlite import SQLiteStore

    cli("users", "create", "fay")
    store = SQLiteStore(str(tmp_path / "gateway.db"))
    store.init()
    for i in range(3):
        store.settle(UsageRecord(request_id=f"req_{i}", user_id="fay", key_id="key_x", model="m",
                                 created_at=1_800_000_000.0 + i, cost=1_000))
    rc, first = cli("usage", "fay", "--limit", "2")
    assert rc == 0 and first["user_id"] == "fay" and first["total"] == 3 and first["sum"]["cost"] == "0.003"
    assert [r["request_id"] for r in first["records"]] == ["req_2", "req_1"] and first["next_cursor"]
    rc, last = cli("usage", "fay", "--limit", "2", "--cursor", first["next_cursor"])
    assert rc == 0 and [r["request_id"] for r in last["records"]] == ["req_0"] and last["next_cursor"] is None
    assert last["total"] == 3
    rc, out = cli("usage", "fay", "--cursor", "garbage")
    assert rc == 2 and set(out) == {"error"} and "--cursor" in out["error"]
    rc, out = cli("usage", "fay", "--model", "m", "--cursor", first["next_cursor"])
    assert rc == 2 and "--cursor" in out["error"]


def test_readme_start_command_on_an_empty_folder_answers_with_the_printed_admin_key(tmp_path):
    server = serve(tmp_path, gateway_env(tmp_path / ".gateway"))
    try:
        assert server.banner["admin_user"] == "admin"
        key = server.banner["admin_key"]
        r = httpx.post(server.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hello"}]})
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "This is a mock response to: hello"
        # The admin user exists once: a second start prints no new key.
        rc, admin = server.cli("users", "show", "admin")
        assert admin["tier"] == "premium" and admin["balance"] == "0"
        assert server.cli("keys", "list", "admin")[1]["keys"][0]["is_admin"] is True
    finally:
        server.stop()
    again = serve(tmp_path, gateway_env(tmp_path / ".gateway"))
    try:
        assert "admin_key" not in again.banner
    finally:
        again.stop()


def test_catalog_changes_reach_a_running_server_within_five_seconds(tmp_path):
    server = serve(tmp_path, gateway_env(tmp_path))
    try:
        key = server.banner["admin_key"]
        headers = {"Authorization": f"Bearer {key}"}
        assert server.cli("models", "set", "mock-priced", "--provider", "mock", "--per-request", "0.5")[0] == 0
        server.cli("users", "topup", "admin", "10")
        started = time.monotonic()
        while "mock-priced" not in [m["id"] for m in httpx.get(server.base_url + "/models", headers=headers).json()["data"]]:
            assert time.monotonic() - started < 5
            time.sleep(0.1)
        body = {"model": "mock-priced", "messages": [{"role": "user", "content": "x"}]}
        assert httpx.post(server.base_url + "/chat/completions", headers=headers, json=body).status_code == 200
        assert Decimal(server.cli("users", "show", "admin")[1]["balance"]) == Decimal("9.5")
        server.cli("tiers", "set", "premium", "--multiplier", "2")
        time.sleep(5)
        assert httpx.post(server.base_url + "/chat/completions", headers=headers, json=body).status_code == 200
        assert Decimal(server.cli("users", "show", "admin")[1]["balance"]) == Decimal("8.5")
    finally:
        server.stop()


def _serve_cli(tmp_path, port: int, workers: int = 1) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "llm_gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        env=gateway_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize(("workers", "shared"), [(1, False), (2, False), (2, True)])
def test_serve_on_a_port_in_use_prints_one_error_and_writes_nothing(cli, tmp_path, workers, shared):
    import socket

    with socket.socket() as taken:
        if shared:  # taken by a server open to others on its port, as serve's workers are
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve_cli(tmp_path, port, workers)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 1
    lines = out.strip().splitlines()
    assert len(lines) == 1, out + err
    error = json.loads(lines[0])
    assert set(error) == {"error"} and f"127.0.0.1:{port}" in error["error"]
    assert "Traceback" not in out + err
    # Nothing was set up before the port was found taken: no admin (nor its once-shown key) was created.
    assert cli("users", "show", "admin") == (1, {"error": "no user 'admin'"})


def test_serve_announces_only_once_the_port_accepts_connections(tmp_path):
    import socket
    import threading

    from tests.fakes.server import free_port

    port = free_port()
    proc = _serve_cli(tmp_path, port)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=60)
        assert lines and lines[0], "serve printed nothing"
        banner = json.loads(lines[0])
        assert banner["status"] == "serving" and banner["url"] == f"http://127.0.0.1:{port}"
        # The socket is listening before the line is printed: a connection made right now succeeds.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not come up"
            time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=15)


def test_models_list_speaks_the_operators_currency(tmp_path):
    """One currency, the operator's (GATEWAY_CURRENCY): the catalog carries none of its own."""
    env = {**gateway_env(tmp_path), "GATEWAY_CURRENCY": "EUR"}
    done = subprocess.run([sys.executable, "-m", "llm_gateway.cli", "models", "list"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout)["currency"] == "EUR"
