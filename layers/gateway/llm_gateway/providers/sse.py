"""Reading an upstream's server-sent events from its bytes (the WHATWG event-stream format).

Every streamed chunk of every upstream passes through here, so it works on bytes as they arrive
and does per event only what the format asks: split lines (CR LF, LF or CR), gather `data` lines,
note `event`, skip comments and the fields the gateway has no use for (`id`, `retry`), and hand
over an event at each blank line. An event cut off by the end of the stream is dropped, as the
format says.
"""

from __future__ import annotations

__all__ = ["SSEReader"]


class SSEReader:
    """Feed it chunks of bytes; get back the complete events, as (event type or "", data bytes)."""

    __slots__ = ("_rest", "_data", "_event")

    def __init__(self) -> None:
        self._rest = b""  # the start of a line not ended yet
        self._data: list[bytes] = []
        self._event = b""

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        text = self._rest + chunk if self._rest else chunk
        # lines end at LF, CR LF or CR; a CR last may be the first half of a CR LF: keep it for later
        end = len(text) - 1 if text.endswith(b"\r") else len(text)
        cut = max(text.rfind(b"\n", 0, end), text.rfind(b"\r", 0, end)) + 1
        self._rest = text[cut:]
        if not cut:
            return []
        body = text[:cut]
        if b"\r" in body:
            body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        out: list[tuple[str, bytes]] = []
        data, event = self._data, self._event
        for line in body[:-1].split(b"\n"):
            if not line:
                if data:
                    out.append((event.decode("utf-8", "replace"), b"\n".join(data)))
                    data = []
                event = b""
            elif line[0] == 58:  # ":" a comment (a keep-alive)
                continue
            else:
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    data.append(value)
                elif name == b"event":
                    event = value
        self._data, self._event = data, event
        return out
