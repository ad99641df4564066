"""The Responses API on Claude: what translating Anthropic's stream into Responses events costs.

In process, no I/O: the cost per upstream stream event of the translated `/v1/responses` plan's
translator (observe usage, map the Messages event to Responses events with their sequence numbers,
frame them as SSE), next to the forwarded (OpenAI) relay's cost per event; and the translation's
share of the first byte (request translation, translator set-up, first event).

Target: ≤ 20 µs per event, like the chat translation. Run: `python -m bench.responses_translation`;
prints JSON.
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

from bench._loadgen import pct  # noqa: E402
from bench.claude_translation import CLAUDE_MODEL, _anthropic_events  # noqa: E402


def _openai_events(deltas: int) -> list[dict[str, Any]]:
    """A forwarded Responses stream of `deltas` text deltas."""
    ref = {"item_id": "msg_1", "output_index": 0}
    response = {"id": "resp_bench", "object": "response", "status": "in_progress", "output": []}
    events = [{"type": "response.created", "response": response},
              {"type": "response.in_progress", "response": response},
              {"type": "response.output_item.added", "output_index": 0, "item": {"id": "msg_1", "type": "message"}},
              {"type": "response.content_part.added", **ref, "content_index": 0, "part": {"type": "output_text"}},
              *({"type": "response.output_text.delta", **ref, "content_index": 0, "delta": f"word{i} "}
                for i in range(deltas)),
              {"type": "response.completed", "response": {**response, "status": "completed",
                                                          "usage": {"input_tokens": 25, "output_tokens": deltas}}}]
    for n, event in enumerate(events):
        event["sequence_number"] = n
    return events


def in_process(rounds: int = 300, deltas: int = 200) -> dict[str, Any]:
    from llm_gateway.catalog import Catalog, default_catalog
    from llm_gateway.relay.passthrough import OpenAIResponsesPassthrough
    from llm_gateway.relay.plans import plan_for
    from llm_gateway.translate.responses_claude import response_shell, responses_to_chat

    spec = Catalog(default_catalog()).get(CLAUDE_MODEL)
    body = {"model": CLAUDE_MODEL, "stream": True, "instructions": "Be brief.", "input": "Say hello to the benchmark."}

    def plan():
        chat = responses_to_chat(body, model=spec.upstream_model)
        shell = response_shell(body, response_id="resp_bench", model=spec.name, created_at=1)
        return plan_for("responses", spec, body, True, chat=chat, shell=shell)

    def per_event(make_translator, events) -> list[float]:
        samples = []
        for _ in range(rounds):
            translator = make_translator()
            batch = [json.loads(json.dumps(e)) for e in events]  # fresh events, copied outside the timing
            start = time.perf_counter()
            for event in batch:
                translator.feed(event)
            translator.finish()
            samples.append((time.perf_counter() - start) / len(batch) * 1e6)
        return samples

    claude_events = _anthropic_events(deltas)
    translated = per_event(plan().translator, claude_events)
    forwarded = per_event(OpenAIResponsesPassthrough(body, "gpt-4o").translator, _openai_events(deltas))
    first = []
    for _ in range(rounds * 10):
        start_event = json.loads(json.dumps(claude_events[0]))
        start = time.perf_counter()
        plan().translator().feed(start_event)
        first.append((time.perf_counter() - start) * 1e6)
    return {
        "events_per_stream": len(claude_events),
        "translated_us_per_event_p50": round(statistics.median(translated), 2),
        "translated_us_per_event_p99": round(pct(translated, 99), 2),
        "forwarded_us_per_event_p50": round(statistics.median(forwarded), 2),
        "translation_first_byte_us_p50": round(statistics.median(first), 1),
        "translation_first_byte_us_p99": round(pct(first, 99), 1),
    }


if __name__ == "__main__":
    print(json.dumps(in_process(), indent=1))
