"""The text a stream has sent, kept for counting its tokens if the upstream never reports usage:
whole and in order, and in about the memory of the text itself, since every open stream holds it."""

from __future__ import annotations

import tracemalloc

from llm_gateway.relay.output import OutputText


def test_the_text_comes_back_whole_and_in_order():
    pieces = [f"c{i} " for i in range(1000)] + ["é", "", "🙂", "\n"]
    out = OutputText()
    for piece in pieces:
        out.append(piece)
    assert str(out) == "".join(pieces)
    assert str(out) == "".join(pieces)  # reading does not consume it
    assert str(OutputText()) == ""


def test_a_long_stream_holds_about_its_text_not_a_string_per_chunk():
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = OutputText()
        for i in range(3000):
            out.append(f"c{i} ")  # what a chunk of a long answer carries: a few characters
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    text = len(str(out))  # 16 890 characters
    # one string per chunk would hold ~190 KB: ~60 bytes each beside its characters
    assert held < 2 * text, (held, text)
