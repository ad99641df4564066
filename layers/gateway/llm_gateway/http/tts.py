"""Azure text to speech (API.md 5.4): the voice list, and synthesis from SSML or from text.

Synthesis takes SSML as the body (`application/ssml+xml`), or JSON/form `{ssml}` or `{text, voice}`
(the text XML-escaped into SSML for that voice). The SSML is checked before anything is reserved or
sent: well-formed XML, no DOCTYPE (no entities to expand), a `speak` root. It is billed per
character of the text it speaks (model `azure-tts`, `per_1m_chars`; the key needs that model), and
the audio is relayed as it arrives, in the format `X-Microsoft-OutputFormat` asks for.
"""

from __future__ import annotations

import time
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..admission.gate import require_kind
from ..admission.keys import Caller
from ..billing.usage import Usage
from ..errors import invalid
from ..relay.calls import serve_bytes
from ..relay.passthrough import AudioPlan
from ..runtime import Runtime
from .body import field, parse_body, read_body
from .deps import caller, runtime
from .responses import JSON

router = APIRouter()

TTS = "/api/v1/openapi/azure/tts"
MODEL = "azure-tts"  # the catalog model whose price and permission synthesis uses
DEFAULT_VOICE = "en-US-AvaMultilingualNeural"
DEFAULT_OUTPUT_FORMAT = "audio-24khz-48kbitrate-mono-mp3"
VOICES_CACHE_S = 3600.0

_voices: dict[str, tuple[float, list[Any]]] = {}  # provider name -> (fetched at, list), per process


@router.get(f"{TTS}/voices/list/v1")
async def voices(who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    """Azure's voice list as it answers it; free, any key; fetched at most once an hour per process."""
    spec = rt.catalogs.current().get(MODEL)
    provider_name = spec.provider if spec is not None else "azure-speech"
    cached = _voices.get(provider_name)
    if cached is None or time.monotonic() - cached[0] > VOICES_CACHE_S:
        cached = (time.monotonic(), await rt.providers.get(provider_name).voices())
        _voices[provider_name] = cached
    return JSON(cached[1])


@router.post(f"{TTS}/v1")
async def synthesize(request: Request, who: Caller = Depends(caller), rt: Runtime = Depends(runtime)) -> Response:
    ssml = await _ssml(request, rt)
    spoken = _spoken_characters(ssml)
    spec = rt.gate.model_for(who, MODEL)
    require_kind(spec, "speech", request.scope["path"])
    output_format = request.headers.get("x-microsoft-outputformat") or DEFAULT_OUTPUT_FORMAT
    plan = AudioPlan("speech", {"ssml": ssml, "output_format": output_format}, Usage(characters=spoken))
    return await serve_bytes(request, rt, who, spec, plan, route="azure_tts")


async def _ssml(request: Request, rt: Runtime) -> str:
    """The SSML a request asks to speak: its body, or built from `{ssml}` or `{text, voice}`."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/ssml+xml", "application/xml", "text/xml"):
        raw = await read_body(request, rt.settings.max_body_bytes)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("The SSML body is not UTF-8 text.", "ssml") from None
    body = await parse_body(request, rt.settings.max_body_bytes)
    unknown = [name for name in body if name not in ("ssml", "text", "voice")]
    if unknown:
        raise invalid(f"Unknown parameter '{unknown[0]}': this route takes ssml, or text and voice.", unknown[0])
    ssml = field(body, "ssml", str)
    if ssml is not None:
        return ssml
    text = field(body, "text", str)
    if not text or not text.strip():
        raise invalid("Missing required parameter: 'text' (or 'ssml').", "text")
    voice = field(body, "voice", str) or DEFAULT_VOICE
    return (
        '<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US">'
        f"<voice name={quoteattr(voice)}>{escape(text)}</voice></speak>"
    )


def _spoken_characters(ssml: str) -> int:
    """The characters of text the SSML speaks (its tags are not spoken); 400 unless it is SSML."""
    if "<!DOCTYPE" in ssml.upper() or "<!ENTITY" in ssml.upper():
        raise invalid("The SSML must not declare a DOCTYPE or entities.", "ssml")
    try:
        root = ElementTree.fromstring(ssml)
    except ElementTree.ParseError as exc:
        raise invalid(f"The SSML is not well-formed XML ({exc}).", "ssml") from None
    if root.tag.rsplit("}", 1)[-1] != "speak":
        raise invalid("The SSML's root element must be <speak>.", "ssml")
    spoken = " ".join("".join(root.itertext()).split())
    if not spoken:
        raise invalid("The SSML speaks no text.", "ssml")
    return len(spoken)
