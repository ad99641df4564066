"""`llm-gateway channels ...` (API.md 7): one JSON object per command, credentials by name only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.fakes.openai_upstream import OPERATOR_KEY
from tests.served import gateway_env

SECRET = "sk-channel-secret-value-never-printed-000000000000"


@pytest.fixture
def cli(tmp_path):
    env = gateway_env(tmp_path, {"CH_KEY": OPERATOR_KEY, "CH_WRONG": SECRET})

    def run(*args: str) -> tuple[int, dict]:
        done = subprocess.run([sys.executable, "-m", "llm_gateway.cli", "channels", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        lines = done.stdout.strip().splitlines()
        assert len(lines) == 1, done.stdout + done.stderr
        assert SECRET not in done.stdout + done.stderr and OPERATOR_KEY not in done.stdout + done.stderr
        return done.returncode, json.loads(lines[0])

    return run


def test_a_channel_is_added_changed_listed_disabled_enabled_and_deleted(cli):
    rc, added = cli("add", "oa-1", "--provider", "openai", "--api-key-env", "CH_WRONG", "--models", "gpt-4o,gpt-5*",
                    "--map", "gpt-4o=gpt-4o-2024-08-06", "--priority", "2", "--weight", "3")
    assert rc == 0
    assert added == {"name": "oa-1", "provider": "openai", "base_url": None, "api_key_env": "CH_WRONG",
                     "models": ["gpt-4o", "gpt-5*"], "map": {"gpt-4o": "gpt-4o-2024-08-06"}, "priority": 2,
                     "weight": 3, "region": None, "api_version": None, "enabled": True}
    rc, changed = cli("set", "oa-1", "--weight", "5", "--base-url", "http://127.0.0.1:9/v1")
    assert rc == 0 and changed["weight"] == 5 and changed["priority"] == 2 and changed["base_url"].endswith("/v1")
    assert cli("disable", "oa-1")[1]["enabled"] is False
    rc, listed = cli("list")
    assert rc == 0 and [c["name"] for c in listed["channels"]] == ["oa-1"]
    assert listed["channels"][0]["enabled"] is False and listed["channels"][0]["api_key_env"] == "CH_WRONG"
    assert cli("enable", "oa-1")[1]["enabled"] is True
    assert cli("delete", "oa-1") == (0, {"deleted": "oa-1"})
    assert cli("list")[1]["channels"] == []


def test_refusals_exit_non_zero_with_an_error_object(cli):
    cli("add", "oa-1", "--provider", "openai")
    rc, out = cli("add", "oa-1", "--provider", "openai")
    assert rc == 1 and "exists" in out["error"]
    assert cli("set", "none", "--weight", "2")[0] == 1
    assert cli("delete", "none")[0] == 1
    rc, out = cli("add", "x", "--provider", "nope")
    assert rc == 2 and "unknown provider" in out["error"]
    assert cli("add", "y")[0] == 2  # --provider is required to add
    rc, out = cli("add", "z", "--provider", "openai", "--api-key-env", "sk-abc def")
    assert rc == 2 and "names a variable" in out["error"]
    assert cli("add", "w", "--provider", "openai", "--map", "no-equals")[0] == 2


def test_channels_test_makes_one_real_call_and_reports_it(cli, fake_openai):
    base = fake_openai.url + "/v1"
    cli("add", "good", "--provider", "openai", "--base-url", base, "--api-key-env", "CH_KEY", "--models", "gpt-4o",
        "--map", "gpt-4o=chan-test-good")
    rc, out = cli("test", "good")
    assert rc == 0 and out["ok"] is True and out["status"] == 200 and out["error"] is None
    assert isinstance(out["latency_ms"], int)
    [sent] = fake_openai.requests_for("chan-test-good")
    assert sent.body["max_tokens"] == 1 and sent.headers["authorization"] == f"Bearer {OPERATOR_KEY}"

    cli("add", "bad", "--provider", "openai", "--base-url", base, "--api-key-env", "CH_WRONG", "--models", "gpt-4o")
    rc, out = cli("test", "bad")
    assert rc == 1 and out["ok"] is False and out["status"] == 502 and "credentials" in out["error"]

    cli("add", "unset", "--provider", "openai", "--base-url", base, "--api-key-env", "CH_MISSING", "--models", "gpt-4o")
    rc, out = cli("test", "unset")
    assert rc == 1 and out["ok"] is False and "CH_MISSING" in out["error"]
