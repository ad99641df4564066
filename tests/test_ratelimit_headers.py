"""OpenAI's request-rate headers on model calls: the tightest window's limit, hits left and reset."""

from __future__ import annotations

import re

import httpx
import openai

DURATION = re.compile(r"^(\d+m\d+s|\d+(\.\d+)?s)$")  # a Go duration, as OpenAI sends them


def _post(gateway, key: str, model: str, stream: bool = False) -> httpx.Response:
    return httpx.post(gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
                      timeout=30)


def _seconds(duration: str) -> float:
    if "m" in duration:
        minutes, seconds = duration.rstrip("s").split("m")
        return int(minutes) * 60 + float(seconds)
    return float(duration.rstrip("s"))


def test_each_call_says_its_windows_limit_hits_left_and_reset(gateway):
    model = gateway.model(rpm={"regular": 5})
    key = gateway.key(gateway.user())
    first, second = _post(gateway, key, model), _post(gateway, key, model, stream=True)
    assert first.status_code == second.status_code == 200
    for r in (first, second):
        assert r.headers["x-ratelimit-limit-requests"] == "5"
        assert DURATION.match(r.headers["x-ratelimit-reset-requests"])
        assert 0 < _seconds(r.headers["x-ratelimit-reset-requests"]) <= 60
    if "x-ratelimit-remaining-requests" in second.headers:  # DynamoDB knows it only for a window's opener
        assert second.headers["x-ratelimit-remaining-requests"] == "3"
    assert first.headers["x-ratelimit-remaining-requests"] == "4"


def test_the_tightest_window_is_the_one_shown(gateway):
    """A key limit of 2 under a model limit of 100: the key's window is what runs out first."""
    model = gateway.model(rpm={"regular": 100})
    key = gateway.key(gateway.user(), rpm=2)
    r = _post(gateway, key, model)
    assert r.status_code == 200
    assert (r.headers["x-ratelimit-limit-requests"], r.headers["x-ratelimit-remaining-requests"]) == ("2", "1")


def test_the_openai_sdk_reads_them(gateway):
    model = gateway.model(rpm={"regular": 7})
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key(gateway.user()), max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-ratelimit-limit-requests"] == "7"
    assert raw.headers["x-ratelimit-remaining-requests"] == "6"
    assert raw.parse().choices[0].message.content
