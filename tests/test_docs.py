"""docs/ stays true: the routes, CLI commands and options, and settings it documents are exactly the
ones the code has, and the README points at it rather than at anything outside the repository."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

from fastapi.routing import APIRoute, APIWebSocketRoute

from llm_gateway.cli import build_parser
from llm_gateway.http.app import FAMILIES
from llm_gateway.http.health import router as health_router

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = ROOT / "layers" / "gateway" / "llm_gateway"


def _served_routes() -> set[tuple[str, str]]:
    routes = list(health_router.routes)
    for module in FAMILIES.values():
        routes.extend(importlib.import_module(module).router.routes)
    served = set()
    for route in routes:
        path = re.sub(r"\{(\w+):path\}", r"{\1}", route.path)
        if isinstance(route, APIRoute):
            served |= {(method, path) for method in route.methods}
        elif isinstance(route, APIWebSocketRoute):
            served.add(("WS", path))
    return served


def _documented_routes() -> set[tuple[str, str]]:
    text = (DOCS / "routes.md").read_text()
    return set(re.findall(r"^\| `(GET|POST|DELETE|PUT|PATCH|WS) (/[^`\s]*)` \|", text, re.M))


def test_every_route_is_documented_and_every_documented_route_exists():
    served, documented = _served_routes(), _documented_routes()
    assert served - documented == set(), "served but not in docs/routes.md"
    assert documented - served == set(), "in docs/routes.md but not served"


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if any(isinstance(a, argparse._SubParsersAction) for a in child._actions):
                    yield from _commands(child, (*path, name))
                else:
                    yield " ".join((*path, name)), child


def _cli_sections() -> dict[str, str]:
    text = (DOCS / "cli.md").read_text()
    parts = re.split(r"^### llm-gateway (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_cli_command_and_option_is_documented_and_nothing_more():
    sections = _cli_sections()
    commands = dict(_commands(build_parser()))
    assert set(commands) - set(sections) == set(), "commands missing from docs/cli.md"
    assert set(sections) - set(commands) == set(), "docs/cli.md documents commands that do not exist"
    for name, parser in commands.items():
        section = sections[name]
        real = {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
        written = set(re.findall(r"`(--[a-z0-9-]+)", section))
        assert real - written == set(), (name, "options missing from docs/cli.md")
        assert written - real == set(), (name, "docs/cli.md names options the command lacks")
        assert "Prints " in section, (name, "what the command prints")


def test_every_setting_the_package_reads_is_documented():
    names = set()
    for source in PACKAGE.rglob("*.py"):
        names |= set(re.findall(
            r"""["']((?:GATEWAY|OPENAI|ANTHROPIC|AZURE|GOOGLE_CSE|SERPER|MIDJOURNEY)_[A-Z0-9_]+)["']""",
            source.read_text()))
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (DOCS / "configuration.md").read_text()))
    assert len(names) > 30
    assert names - documented == set(), "settings missing from docs/configuration.md"


def test_docs_link_only_to_pages_that_exist_and_the_readme_points_at_them():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+\.md)\)", page.read_text()):
            assert (DOCS / target).is_file(), (page.name, target)
    readme = (ROOT / "README.md").read_text()
    assert "docs/README.md" in readme or "(docs/)" in readme
    assert "API.md" not in readme, "the README must not send readers to a file outside the repository"
