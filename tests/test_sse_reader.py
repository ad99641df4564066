"""Reading upstream server-sent events from bytes (providers/sse.py), however the bytes are cut."""

from __future__ import annotations

import json

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_gateway.providers.sse import SSEReader

# (the bytes of a stream, the events the format says it holds: (event type or "", data))
CASES = [
    (b'data: {"a":1}\n\ndata: {"b":2}\n\n', [("", '{"a":1}'), ("", '{"b":2}')]),
    (b": keep-alive\n\ndata: x\n\n", [("", "x")]),
    (b'event: message_start\ndata: {"t":1}\n\nevent: ping\ndata: {}\n\n',
     [("message_start", '{"t":1}'), ("ping", "{}")]),
    (b"data: a\r\ndata: b\r\n\r\ndata: c\r\rdata:d\n\n", [("", "a\nb"), ("", "c"), ("", "d")]),
    (b"data: [DONE]\n\n", [("", "[DONE]")]),
    (b"data: cut off by the end", []),
    (b"event: e\n\ndata: y\n\n", [("", "y")]),  # an event with no data is no event; its type resets
    (b"data:  two spaces\n\n", [("", " two spaces")]),  # only the first space after the colon goes
    (b"id: 5\nretry: 3\ndata: z\n\n", [("", "z")]),
    (b"data: x\r\n\r\n", [("", "x")]),
    (b"data\n\n", [("", "")]),  # a field with no colon: the whole line is its name
    (b'data: {"x":\ndata: 1}\n\n', [("", '{"x":\n1}')]),
]


def _read(stream: bytes, cuts: list[int]) -> list[tuple[str, str]]:
    reader, out, start = SSEReader(), [], 0
    for cut in sorted(set(cuts)) + [len(stream)]:
        if cut > start:
            out += reader.feed(stream[start:cut])
            start = cut
    return [(name, data.decode()) for name, data in out]


def test_each_case_whole():
    for stream, events in CASES:
        assert _read(stream, []) == events, stream


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CASES), st.lists(st.integers(min_value=1, max_value=80), max_size=12))
def test_the_same_events_wherever_the_bytes_are_cut(case, cuts):
    stream, events = case
    assert _read(stream, [c for c in cuts if c < len(stream)]) == events


def test_relayed_openai_chunks_are_the_upstreams_own(gateway):
    """Chunks without an `event:` field get no `type` added: the client sees the upstream's JSON."""
    model = gateway.model(input=1, output=2)
    key = gateway.key()
    with httpx.stream("POST", gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                      timeout=30) as r:
        assert r.status_code == 200
        chunks = [json.loads(line[6:]) for line in r.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    assert chunks and all(c["object"] == "chat.completion.chunk" and "type" not in c for c in chunks)
