"""The operator command as a person meets it: help on every command and option, the store it acts
on (found from the current folder upwards, named when new), and the listing and key commands."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llm_gateway.cli import build_parser
from tests.served import gateway_env


def _run(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", "llm_gateway.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout + done.stderr
    return done.returncode, json.loads(lines[0]), done.stderr


@pytest.fixture
def cli(tmp_path):
    env = gateway_env(tmp_path)

    def run(*args: str) -> tuple[int, dict]:
        rc, out, _ = _run(tmp_path, env, *args)
        return rc, out

    return run


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, its parser, the help its parent lists) for every runnable command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                nested = [a for a in child._actions if isinstance(a, argparse._SubParsersAction)]
                if nested:
                    assert helps.get(name), f"{' '.join((*path, name))} has no help"
                    yield from leaf_commands(child, (*path, name))
                else:
                    yield (*path, name), child, helps.get(name)


def test_every_command_and_option_has_help_and_every_command_an_example():
    commands = list(leaf_commands(build_parser()))
    assert len(commands) >= 20
    for words, parser, listed in commands:
        assert listed and parser.description, words
        assert parser.epilog and parser.epilog.startswith("example:") and "llm-gateway " in parser.epilog, words
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (words, action.dest)


def test_new_commands_list_users_and_tiers_and_change_keys(cli):
    assert cli("users", "list") == (0, {"users": []})
    cli("users", "create", "bob")
    cli("users", "create", "alice", "--balance", "3")
    rc, listed = cli("users", "list")
    assert rc == 0 and [u["user_id"] for u in listed["users"]] == ["alice", "bob"]
    assert listed["users"][0]["balance"] == "3"

    rc, tiers = cli("tiers", "list")
    assert rc == 0 and tiers["tiers"]["vip"] == {"rpm": 300, "multiplier": "1"}
    cli("tiers", "set", "vip", "--multiplier", "0.9")
    assert cli("tiers", "list")[1]["tiers"]["vip"]["multiplier"] == "0.9"

    key = cli("keys", "create", "alice", "--rpm", "5", "--max-fee", "2", "--models", "gpt-4o")[1]
    rc, changed = cli("keys", "update", key["key_id"], "--rpm", "none", "--max-fee", "7.5", "--models", "",
                      "--remark", "ci", "--expires", "2030-01-01T00:00:00Z")
    assert rc == 0
    assert (changed["rpm"], changed["max_fee"], changed["permissions"], changed["remark"], changed["expired_at"]) == (
        None, "7.5", [], "ci", "2030-01-01T00:00:00Z")
    assert cli("keys", "update", key["key_id"], "--expires", "never")[1]["expired_at"] is None
    assert cli("keys", "disable", key["key_id"])[1]["is_disabled"] is True
    assert cli("keys", "enable", key["key_id"])[1]["is_disabled"] is False
    assert cli("keys", "enable", "key_nope")[0] == 1
    rc, out = cli("keys", "update", key["key_id"])
    assert rc == 2 and "nothing to change" in out["error"]
    assert cli("keys", "update", key["key_id"], "--rpm", "0")[0] == 2
    assert cli("keys", "update", key["key_id"], "--max-fee", "-1")[0] == 2


def test_usage_until_bounds_the_records(cli, tmp_path):
    cli("users", "create", "carol", "--balance", "5")
    cli("users", "debit", "carol", "1", "--reason", "correction")
    assert cli("usage", "carol", "--until", "2000-01-01")[1]["total"] == 0
    assert cli("usage", "carol", "--until", "2999-01-01")[1]["total"] == 1
    assert cli("usage", "carol", "--until", "soon")[0] == 2


def test_the_store_is_found_from_a_subfolder_and_a_new_one_is_named(tmp_path):
    env = gateway_env(tmp_path)
    del env["GATEWAY_STORE_URL"]
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "src" / "deep").mkdir(parents=True)
    elsewhere.mkdir()

    rc, _, note = _run(project, env, "users", "create", "dave")
    assert rc == 0
    made = project / ".gateway" / "gateway.db"
    assert made.is_file() and json.loads(note)["store"] == f"sqlite:///{made}"

    rc, shown, note = _run(project / "src" / "deep", env, "users", "show", "dave")
    assert (rc, shown["user_id"], note) == (0, "dave", "")  # found upwards, nothing new to say
    assert not (project / "src" / "deep" / ".gateway").exists()

    rc, listed, note = _run(elsewhere, env, "users", "list")  # another folder: a new store, and it says so
    assert listed == {"users": []}
    assert "new, empty store" in json.loads(note)["note"] and str(elsewhere / ".gateway") in note

    rc, shown, _ = _run(elsewhere, {**env, "GATEWAY_STORE_URL": f"sqlite:///{made}"}, "users", "show", "dave")
    assert (rc, shown["user_id"]) == (0, "dave")  # the setting wins over any folder
