"""What the mock provider answers for embeddings, images and speech: real, small, deterministic.

Vectors are unit length and the same for the same input (so demos and tests can compare them); the
image is a real PNG; speech is a real WAV or raw PCM tone, and MPEG audio (silent frames) for the
formats that need an encoder this package does not carry.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import time
import zlib
from typing import Any

from .. import tokens

EMBEDDING_DIMENSIONS = 256
ENCODING = "o200k_base"


def _unit_vector(text: str, dims: int) -> list[float]:
    values: list[float] = []
    block = 0
    while len(values) < dims:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        values.extend(v / 2**31 - 1.0 for v in struct.unpack("<8I", digest))
        block += 1
    values = values[:dims]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embeddings(body: dict[str, Any], model: str) -> dict[str, Any]:
    raw = body.get("input")
    items = raw if isinstance(raw, list) and not all(isinstance(i, int) for i in raw) else [raw]
    dims = body.get("dimensions") or EMBEDDING_DIMENSIONS
    dims = max(1, min(dims, EMBEDDING_DIMENSIONS))
    data, used = [], 0
    for index, item in enumerate(items):
        text = " ".join(map(str, item)) if isinstance(item, list) else str(item)
        used += len(item) if isinstance(item, list) else tokens.count_text(text, ENCODING)
        vector = _unit_vector(text, dims)
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": used, "total_tokens": used}}


def png(width: int = 64, height: int = 64, seed: str = "") -> bytes:
    """A real PNG: a colour gradient, tinted by `seed`."""
    tint = hashlib.sha256(seed.encode()).digest()
    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in (
            (x * 255 // max(width - 1, 1)) ^ tint[0], (y * 255 // max(height - 1, 1)) ^ tint[1], tint[2]))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def images(body: dict[str, Any]) -> dict[str, Any]:
    n = body.get("n") or 1
    picture = base64.b64encode(png(seed=str(body.get("prompt")))).decode()
    item = {"url": "data:image/png;base64," + picture} if body.get("response_format") == "url" else {
        "b64_json": picture}
    return {"created": int(time.time()), "data": [dict(item, revised_prompt=body.get("prompt")) for _ in range(n)]}


SPEECH_TYPES = {"mp3": "audio/mpeg", "opus": "audio/mpeg", "aac": "audio/mpeg", "flac": "audio/mpeg",
                "wav": "audio/wav", "pcm": "audio/pcm"}
_RATE = 24_000  # OpenAI's speech is 24 kHz, 16-bit, mono


def _tone(seconds: float) -> bytes:
    frames = int(_RATE * seconds)
    return b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / _RATE))) for i in range(frames))


def speech(body: dict[str, Any]) -> tuple[str, bytes]:
    """(media type, audio) for a speech request: about 60 ms of audio per word, at most 3 s."""
    fmt = body.get("response_format") or "mp3"
    seconds = min(3.0, 0.2 + 0.06 * len(str(body.get("input") or "").split()))
    if fmt == "pcm":
        return SPEECH_TYPES[fmt], _tone(seconds)
    if fmt == "wav":
        pcm = _tone(seconds)
        header = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt " + struct.pack(
            "<IHHIIHH", 16, 1, 1, _RATE, _RATE * 2, 2, 16) + b"data" + struct.pack("<I", len(pcm))
        return SPEECH_TYPES[fmt], header + pcm
    # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono: silent frames of 417 bytes, 26 ms each
    frame = b"\xff\xfb\x90\xc4" + bytes(413)
    return SPEECH_TYPES["mp3"], frame * max(1, int(seconds / 0.026))


# Azure's speech formats by family: RIFF (WAV) and raw PCM the mock can make; the rest get MPEG.
def from_ssml(body: dict[str, Any]) -> dict[str, Any]:
    """An Azure speech call (`ssml`, `output_format`) as the speech request the mock answers."""
    from xml.etree import ElementTree

    text = " ".join("".join(ElementTree.fromstring(str(body["ssml"])).itertext()).split())
    output = str(body.get("output_format") or "").lower()
    fmt = "wav" if output.startswith("riff-") else "pcm" if output.startswith("raw-") else "mp3"
    return {"input": text, "response_format": fmt}


VOICES = [
    {"Name": f"Microsoft Server Speech Text to Speech Voice ({locale}, {short})", "DisplayName": display,
     "LocalName": display, "ShortName": f"{locale}-{short}", "Gender": gender, "Locale": locale,
     "LocaleName": locale_name, "SampleRateHertz": "24000", "VoiceType": "Neural", "Status": "GA"}
    for locale, short, display, gender, locale_name in (
        ("en-US", "AvaMultilingualNeural", "Ava Multilingual", "Female", "English (United States)"),
        ("en-US", "AndrewMultilingualNeural", "Andrew Multilingual", "Male", "English (United States)"),
        ("en-GB", "SoniaNeural", "Sonia", "Female", "English (United Kingdom)"),
        ("zh-CN", "XiaoxiaoNeural", "Xiaoxiao", "Female", "Chinese (Mandarin, Simplified)"),
    )
]
