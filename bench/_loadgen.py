"""A minimal keep-alive HTTP/1.1 load generator on asyncio streams.

The load generator shares two cores with the gateway and the upstream it measures, so it must cost
as little CPU per request as possible; a general HTTP client library spends more per request than
the gateway itself. It speaks just what the benchmark needs: POST with a JSON body, responses with
Content-Length or chunked bodies. Also here: what every end-to-end phase shares, its time cap and the
percentile it reports.
"""

from __future__ import annotations

import asyncio
import time

PHASE_CAP_S = 60.0  # every measured phase stops after this long, whatever its request count


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, float, float, bytes]:
        """Returns (status, seconds to first body byte, seconds to the end, body)."""
        if self.writer is None:
            await self.open()
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n" \
               "Content-Type: application/json\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        start = time.perf_counter()
        self.writer.write(head.encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        lower = raw.lower()
        first = None
        if b"transfer-encoding: chunked" in lower:
            parts = []
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.strip(), 16)
                if first is None:
                    first = time.perf_counter() - start
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size + 2))
            data = b"".join(p[:-2] for p in parts)
        else:
            idx = lower.index(b"content-length:")
            length = int(lower[idx + 15:lower.index(b"\r\n", idx)])
            data = await self.reader.readexactly(length)
            first = time.perf_counter() - start
        return status, first, time.perf_counter() - start, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
