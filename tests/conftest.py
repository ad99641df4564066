"""Shared fixtures: a fake OpenAI upstream and the gateway, both on 127.0.0.1.

The gateway runs in-process under uvicorn on a real port, so the official SDKs talk to it over
HTTP exactly as a client would. One server serves the whole session; each test makes its own users,
keys and models (unique names), so tests do not share limits, balances or prices.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "gateway"))
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / "layers" / "tiktoken"))

from llm_gateway import accounts  # noqa: E402
from llm_gateway.config import Settings  # noqa: E402
from llm_gateway.http.app import create_app  # noqa: E402
from llm_gateway.http.protocol import Protocol  # noqa: E402
from llm_gateway.money import to_micros  # noqa: E402
from llm_gateway.runtime import Runtime  # noqa: E402
from llm_gateway.store import open_store  # noqa: E402
from tests.dynamo import dynamo_gateway, dynamo_store, moto_dynamodb  # noqa: E402,F401  (DynamoDB fixtures)
from tests.fakes.anthropic_upstream import ANTHROPIC_OPERATOR_KEY, FakeAnthropic  # noqa: E402
from tests.fakes.openai_upstream import OPERATOR_KEY, FakeOpenAI  # noqa: E402
from tests.fakes.server import ServerThread  # noqa: E402


def gateway_server(app) -> ServerThread:
    """The gateway's app on a real port, under the HTTP protocol `serve` runs (the fakes use h11)."""
    return ServerThread(app, http=Protocol).start()

@pytest.fixture(scope="session")
def fake_openai():
    fake = FakeOpenAI()
    server = ServerThread(fake.app()).start()
    fake.url = server.url
    yield fake
    server.stop()


@pytest.fixture(scope="session")
def fake_anthropic():
    fake = FakeAnthropic()
    server = ServerThread(fake.app()).start()
    fake.url = server.url
    yield fake
    server.stop()


class Gateway:
    """The running gateway plus helpers that set up what a test needs, directly in its store."""

    def __init__(
        self, runtime: Runtime, url: str, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic | None = None
    ) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.url = url
        self.base_url = url + "/v1"
        self.fake_openai = fake_openai
        self.fake_anthropic = fake_anthropic

    def user(self, balance: str = "10", tier: str = "regular", membership_days: float | None = None) -> str:
        user_id = "u-" + uuid.uuid4().hex[:10]
        accounts.create_user(self.store, user_id, tier=tier, balance=to_micros(balance),
                             membership_days=membership_days)
        return user_id

    def key(self, user_id: str | None = None, **kwargs: Any) -> str:
        user_id = user_id or self.user()
        _, full = accounts.issue_key(self.store, user_id, **kwargs)
        return full

    def balance(self, user_id: str) -> int:
        return self.store.get_user(user_id).balance

    def model(self, *, provider: str = "openai", behavior: dict | None = None, **fields: Any) -> str:
        """A fresh catalog model (an override) served by `provider`; prices in USD per 1M tokens."""
        name = "t-" + uuid.uuid4().hex[:10]
        if behavior is not None:
            fake = self.fake_anthropic if provider == "anthropic" else self.fake_openai
            fake.behaviors[name] = behavior
        self.store.set_model_override(name, {"provider": provider, **fields})
        self.runtime.catalogs.refresh()
        return name

    def forget_caches(self) -> None:
        self.runtime.keys.forget()
        self.runtime.catalogs.refresh()


def gateway_settings(store_url: str, fake_url: str, anthropic_url: str | None = None, **extra: Any) -> Settings:
    env = {"OPENAI_API_KEY": OPERATOR_KEY, "OPENAI_BASE_URL": fake_url + "/v1"}
    if anthropic_url:
        env.update(ANTHROPIC_API_KEY=ANTHROPIC_OPERATOR_KEY, ANTHROPIC_BASE_URL=anthropic_url)
    env.update(extra.pop("env", {}))
    return Settings(store_url=store_url, env=env, **extra)


@contextmanager
def extra_gateway(template: Gateway, db: Path | None = None, **settings: Any) -> Iterator[Gateway]:
    """Another gateway process-alike: its own runtime and caches, over `db` (or `template`'s store),
    with `template`'s provider environment unless `settings` gives an `env` to use instead."""
    url = f"sqlite:///{db}" if db is not None else template.runtime.settings.store_url
    settings.setdefault("env", template.runtime.settings.env)
    settings.setdefault("upstream_timeout", 5.0)
    runtime = Runtime.build(Settings(store_url=url, **settings), open_store(url))
    server = gateway_server(create_app(runtime=runtime))
    try:
        yield Gateway(runtime, server.url, template.fake_openai, template.fake_anthropic)
    finally:
        server.stop()


# The spine's end-to-end modules and the platform API's run once per store: embedded SQLite and
# DynamoDB (moto on 127.0.0.1). test_management_keys stays on SQLite: its per-second rate-limit bursts
# must fit inside one second, which moto's one-request-at-a-time server cannot promise.
BOTH_STORES = {"test_chat_openai_sdk", "test_admission", "test_bad_requests", "test_upstream_failures", "test_hardening", "test_fuzz",
               "test_http_surface", "test_management_lifecycle", "test_management_account", "test_search", "test_midjourney",
               "test_ratelimit_headers"}


def pytest_generate_tests(metafunc):
    if "gateway" in metafunc.fixturenames:
        module = metafunc.module.__name__.rsplit(".", 1)[-1]
        stores = ["sqlite", "dynamodb"] if module in BOTH_STORES else ["sqlite"]
        metafunc.parametrize("gateway", stores, indirect=True, scope="session")


@pytest.fixture(scope="session")
def gateway(request, tmp_path_factory, fake_openai, fake_anthropic):
    if getattr(request, "param", "sqlite") == "dynamodb":
        from tests.dynamo import table_prefix

        request.getfixturevalue("moto_dynamodb")
        store_url = f"dynamodb://{table_prefix()}"
    else:
        store_url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'gateway.db'}"
    settings = gateway_settings(store_url, fake_openai.url, fake_anthropic.url, upstream_timeout=5.0)
    store = open_store(settings.store_url)
    store.init()
    runtime = Runtime.build(settings, store)
    server = gateway_server(create_app(runtime=runtime))
    yield Gateway(runtime, server.url, fake_openai, fake_anthropic)
    server.stop()
