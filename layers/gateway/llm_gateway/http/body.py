"""Request bodies: bounded reading, JSON / form / multipart parsing, and field checks.

Every check raises a 400 that names the field, so each family's router gets the same precise
messages without writing its own.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request

from ..errors import GatewayError, invalid
from ..money import MoneyError, to_micros
from ..times import parse_iso

_MISSING = object()


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it grows past `limit` (chunked bodies too)."""
    cached = getattr(request, "_body", None)
    if cached is not None:
        return cached
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise GatewayError("request_too_large", f"Request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # starlette's own cache slot: lets request.form() re-read it
    return body


async def parse_body(request: Request, limit: int, *, forms: bool = True) -> dict[str, Any]:
    """The body as a dict: a JSON object, or (when `forms`) a form-encoded or multipart body.

    A body that parses as JSON is JSON whatever its Content-Type says (`curl -d '{...}'` labels JSON
    as a form); one that is neither a JSON object nor a well-formed form is a 400, never read as an
    empty form whose missing fields then mean something else.
    """
    body = await read_body(request, limit)
    if not body.strip():
        if forms:
            return {}
        raise invalid("The request body is empty: send a JSON object.")
    if forms and body.lstrip()[:1] not in (b"{", b"["):
        return await _form(request, body)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON ({exc.args[0] if exc.args else 'parse error'}).") from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.")
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH:
        _check_depth(data)
    return data


# JSON nesting the gateway accepts: what it can re-encode for the upstream (orjson stops at 255).
MAX_DEPTH = 128


def _check_depth(data: Any) -> None:
    """Refuse a body nested deeper than MAX_DEPTH (only bodies with that many brackets get here)."""
    level: list[Any] = [data]
    for _ in range(MAX_DEPTH):
        level = [v for item in level for v in (item.values() if isinstance(item, dict) else item)
                 if isinstance(v, (dict, list))]
        if not level:
            return
    raise invalid(f"The request body is nested too deeply: at most {MAX_DEPTH} levels of arrays and objects.")


class FormFields(dict):
    """A body that came as a form: its values are text, to be read with the `loose_*` readers."""


async def _form(request: Request, body: bytes) -> FormFields:
    """A form-encoded or multipart body, refused when it is not well formed."""
    if is_multipart(request):
        # The parser skips whatever does not match the boundary, so a body that never names it
        # would read as an empty form.
        boundary = _boundary(request)
        if not boundary or b"--" + boundary.encode("latin-1") not in body:
            raise invalid("The multipart body could not be parsed: its boundary is missing or never used.")
        try:
            form = await request.form()
            out = FormFields()
            for key, value in form.multi_items():
                if hasattr(value, "read"):
                    value = (await value.read()).decode("utf-8", "replace")
                out[key] = value
        except Exception:
            raise invalid("The multipart body could not be parsed.") from None
        return out
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text.strip(), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise invalid(
            "The request body is neither a JSON object nor a form: send JSON (Content-Type: application/json)."
        ) from None
    return FormFields(pairs)


def _type_name(kind: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", list: "an array", dict: "an object",
             float: "a number"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def field(body: dict[str, Any], name: str, kind: Any, *, required: bool = False, default: Any = None) -> Any:
    """`body[name]` checked against `kind` (bool is never accepted as a number)."""
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise invalid(f"Missing required parameter: '{name}'.", name)
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and int not in kinds:
        kinds = (*kinds, int)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        raise invalid(f"Invalid type for '{name}': expected {_type_name(kind)}.", name)
    return value


def loose_bool(body: dict[str, Any], name: str, default: bool = False) -> bool:
    """A boolean that form bodies send as text ("true", "1", "false", "0")."""
    value = body.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
        return False
    if isinstance(value, int):
        return bool(value)
    raise invalid(f"Invalid type for '{name}': expected a boolean.", name)


def loose_int(
    body: dict[str, Any], name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """An integer that form bodies send as text."""
    value = _loose_number(body, name, int, int, "an integer")
    if value is None:
        return None
    if minimum is not None and value < minimum:
        raise invalid(f"Invalid value for '{name}': must be at least {minimum}.", name)
    if maximum is not None and value > maximum:
        raise invalid(f"Invalid value for '{name}': must be at most {maximum}.", name)
    return value


def loose_money(body: dict[str, Any], name: str) -> int | None:
    """A non-negative amount of currency as integer micros: a decimal string ("0.25") or a JSON number.

    JSON numbers arrive as floats; their shortest decimal form is what the client wrote, so it is
    read exactly, and more than six decimals is refused rather than rounded.
    """
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise invalid(f"Invalid type for '{name}': expected a decimal amount such as \"5\" or \"0.25\".", name)
    try:
        micros = to_micros(repr(value) if isinstance(value, float) else value)
    except MoneyError:
        raise invalid(
            f"Invalid value for '{name}': expected a decimal amount with at most 6 decimals.", name
        ) from None
    if micros < 0:
        raise invalid(f"Invalid value for '{name}': must not be negative.", name)
    return micros


def loose_time(body: dict[str, Any], name: str) -> float | None:
    """A point in time as epoch seconds: ISO-8601 (naive means UTC), or epoch seconds as a number.

    A number too large to be seconds (past the year 5000) is read as epoch milliseconds, which
    JavaScript clients send.
    """
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise invalid(f"Invalid type for '{name}': expected an ISO-8601 time.", name)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                return parse_iso(text)
            except ValueError:
                raise invalid(
                    f"Invalid value for '{name}': expected an ISO-8601 time such as 2030-01-31T00:00:00Z.", name
                ) from None
    if not math.isfinite(value) or value < 0:
        raise invalid(f"Invalid value for '{name}': expected an ISO-8601 time.", name)
    return value / 1000 if value > 1e11 else float(value)


def loose_float(body: dict[str, Any], name: str) -> float | None:
    """A number that form bodies send as text."""
    return _loose_number(body, name, float, (int, float), "a number")


def _loose_number(body: dict[str, Any], name: str, parse: Any, kinds: Any, expected: str) -> Any:
    """`body[name]` as a number of `kinds`, parsing text with `parse`; None when absent or empty."""
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise invalid(f"Invalid type for '{name}': expected {expected}.", name)
    if isinstance(value, str):
        try:
            value = parse(value.strip())
        except ValueError:
            raise invalid(f"Invalid type for '{name}': expected {expected}.", name) from None
    if not isinstance(value, kinds):
        raise invalid(f"Invalid type for '{name}': expected {expected}.", name)
    return value


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_multipart(request: Request) -> bool:
    return _content_type(request) == "multipart/form-data"


def _boundary(request: Request) -> str | None:
    for param in request.headers.get("content-type", "").split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"') or None
    return None
