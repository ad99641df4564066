"""Claude through the chat route: what translating Anthropic's stream into OpenAI chunks costs.

Two measurements:
- in process, no I/O: the cost per stream event of the chat plan's translator (observe usage, map the
  event to a chunk, frame it as SSE), next to the OpenAI passthrough relay's cost per chunk; and the
  translation's share of the first byte (request translation, translator set-up, first event);
- end to end (`measure`, used by bench/overhead.py): time to first byte and to the end of a
  streamed Claude chat request, direct to a fake Anthropic upstream vs through the gateway.

Targets: translation ≤ 20 µs per chunk, ≤ 1 ms added to the first byte.
Run alone (`python -m bench.claude_translation`) for the in-process part; prints JSON.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "gateway"))

from bench._loadgen import PHASE_CAP_S, Connection, pct  # noqa: E402

ANTHROPIC_KEY = "sk-ant-operator-upstream-credential-000000000000"
CLAUDE_MODEL = "claude-haiku-4-5"
FAKE_UPSTREAM = "anthropic_upstream.FakeAnthropic"  # for bench.overhead.start_upstream


def gateway_env(port: int) -> dict[str, str]:
    """What the gateway needs to reach the fake Anthropic upstream."""
    return {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}"}


# --------------------------------------------------------------------------------------- in process


def _anthropic_events(deltas: int) -> list[dict[str, Any]]:
    words = [f"word{i} " for i in range(deltas)]
    return [
        {"type": "message_start", "message": {
            "id": "msg_bench", "type": "message", "role": "assistant", "model": CLAUDE_MODEL, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}} for w in words),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": deltas}},
        {"type": "message_stop"},
    ]


def _openai_chunks(deltas: int) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "system_fingerprint": "fp", "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                         "finish_reason": finish}]}
    return [chunk({"role": "assistant", "content": ""}),
            *(chunk({"content": f"word{i} "}) for i in range(deltas)),
            chunk({}, "stop"),
            {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
             "choices": [], "usage": {"prompt_tokens": 25, "completion_tokens": deltas, "total_tokens": 25 + deltas}}]


def in_process(rounds: int = 300, deltas: int = 200) -> dict[str, Any]:
    from llm_gateway.catalog import Catalog, default_catalog
    from llm_gateway.relay.passthrough import OpenAIPassthrough
    from llm_gateway.relay.translated import claude_chat_plan

    spec = Catalog(default_catalog()).get(CLAUDE_MODEL)
    body = {"model": CLAUDE_MODEL, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Say hello to the benchmark."}]}
    claude_events = _anthropic_events(deltas)
    openai_chunks = _openai_chunks(deltas)

    def per_event(make_translator, events) -> list[float]:
        samples = []
        for _ in range(rounds):
            translator = make_translator()
            # Streams hand the translator freshly parsed events; copying is outside the timing.
            batch = [json.loads(json.dumps(e)) for e in events]
            start = time.perf_counter()
            for event in batch:
                translator.feed(event)
            translator.finish()
            samples.append((time.perf_counter() - start) / len(batch) * 1e6)
        return samples

    plan = claude_chat_plan(spec, body, True)
    relay = OpenAIPassthrough(body, "gpt-4o-mini", True)
    translated = per_event(plan.translator, claude_events)
    passthrough = per_event(relay.translator, openai_chunks)

    first = []
    for _ in range(rounds * 10):
        start_event = json.loads(json.dumps(claude_events[0]))
        start = time.perf_counter()
        fresh = claude_chat_plan(spec, body, True)
        fresh.translator().feed(start_event)
        first.append((time.perf_counter() - start) * 1e6)
    return {
        "events_per_stream": len(claude_events),
        "translated_us_per_chunk_p50": round(statistics.median(translated), 2),
        "translated_us_per_chunk_p99": round(pct(translated, 99), 2),
        "passthrough_us_per_chunk_p50": round(statistics.median(passthrough), 2),
        "translation_first_byte_us_p50": round(statistics.median(first), 1),
        "translation_first_byte_us_p99": round(pct(first, 99), 1),
    }


# ---------------------------------------------------------------------------------------- end to end


async def measure(anthropic_port: int, gateway_port: int, key: str, n: int) -> dict[str, Any]:
    """Sequential streamed requests: direct to the fake Anthropic upstream vs Claude through chat."""
    direct, gw = Connection("127.0.0.1", anthropic_port), Connection("127.0.0.1", gateway_port)
    direct_h = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    gw_h = {"Authorization": f"Bearer {key}"}
    messages = [{"role": "user", "content": "Say hello to the benchmark."}]
    direct_body = json.dumps({"model": CLAUDE_MODEL, "max_tokens": 64, "stream": True, "messages": messages}).encode()
    gw_body = json.dumps({"model": CLAUDE_MODEL, "max_tokens": 64, "stream": True, "messages": messages}).encode()
    added_first, added_total = [], []
    deadline = time.monotonic() + PHASE_CAP_S
    for i in range(n + 20):
        s1, f1, t1, _ = await direct.post("/v1/messages", direct_body, direct_h)
        s2, f2, t2, data = await gw.post("/v1/chat/completions", gw_body, gw_h)
        assert s1 == 200 and s2 == 200 and data.rstrip().endswith(b"data: [DONE]"), (s1, s2, data[-200:])
        if i >= 20:  # warm-up
            added_first.append((f2 - f1) * 1000)
            added_total.append((t2 - t1) * 1000)
        if time.monotonic() > deadline:
            break
    direct.close()
    gw.close()
    result = {
        "requests": len(added_first),
        "added_first_byte_p50_ms": round(pct(added_first, 50), 3),
        "added_first_byte_p99_ms": round(pct(added_first, 99), 3),
        "added_total_p50_ms": round(pct(added_total, 50), 3),
        "added_total_p99_ms": round(pct(added_total, 99), 3),
    }
    result["in_process"] = in_process()
    result["targets"] = {
        "translation_le_20_us_per_chunk": result["in_process"]["translated_us_per_chunk_p50"] <= 20,
        "translation_first_byte_le_1_ms": result["in_process"]["translation_first_byte_us_p50"] <= 1000,
    }
    return result


def main() -> None:
    import os

    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / "layers" / "tiktoken"))
    print(json.dumps(in_process(), indent=2))


if __name__ == "__main__":
    main()
