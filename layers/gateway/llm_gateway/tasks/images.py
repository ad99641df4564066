"""Resized and converted copies of stored images, with wsrv.nl's parameter names: `w`, `h`, `fit`
(`inside` default, `outside`, `cover`, `fill`, `contain`), `output` (`webp`, `jpg`, `png`) and `q`
(1-100). Pillow is imported here only, on the first variant a process makes."""

from __future__ import annotations

import io
from dataclasses import dataclass

from ..errors import invalid

FITS = ("inside", "outside", "cover", "fill", "contain")
OUTPUTS = {"webp": ("WEBP", "image/webp"), "jpg": ("JPEG", "image/jpeg"), "jpeg": ("JPEG", "image/jpeg"),
           "png": ("PNG", "image/png")}
MAX_SIDE = 4096


@dataclass(frozen=True)
class Variant:
    w: int | None = None
    h: int | None = None
    fit: str = "inside"
    output: str | None = None
    q: int | None = None

    @property
    def name(self) -> str:
        """The variant's name beside its original: one per distinct set of parameters."""
        return f"{self.w or 0}x{self.h or 0}-{self.fit}-{self.output or 'same'}-q{self.q or 0}"


def _number(params: dict[str, str], name: str, low: int, high: int) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise invalid(f"Invalid value for '{name}': expected an integer.", name) from None
    if not low <= value <= high:
        raise invalid(f"Invalid value for '{name}': must be between {low} and {high}.", name)
    return value


def variant_of(params: dict[str, str]) -> Variant | None:
    """The variant asked for by a request's query (None: the original)."""
    w, h = _number(params, "w", 1, MAX_SIDE), _number(params, "h", 1, MAX_SIDE)
    q = _number(params, "q", 1, 100)
    fit = params.get("fit") or "inside"
    if fit not in FITS:
        raise invalid(f"Invalid value for 'fit': one of {', '.join(FITS)}.", "fit")
    output = (params.get("output") or "").lower() or None
    if output is not None and output not in OUTPUTS:
        raise invalid("Invalid value for 'output': one of webp, jpg, png.", "output")
    if w is None and h is None and output is None and q is None:
        return None
    return Variant(w, h, fit, "jpg" if output == "jpeg" else output, q)


def render(data: bytes, variant: Variant) -> bytes:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGBA") if opened.mode in ("P", "LA", "RGBA") else opened.convert("RGB")
    width, height = image.size
    if variant.w and variant.h:
        box = (variant.w, variant.h)
    elif variant.w:
        box = (variant.w, max(1, round(height * variant.w / width)))
    else:
        box = (max(1, round(width * (variant.h or height) / height)), variant.h or height)
    if variant.w and variant.h:
        if variant.fit == "fill":
            image = image.resize(box, Image.Resampling.LANCZOS)
        elif variant.fit == "cover":
            image = ImageOps.fit(image, box, Image.Resampling.LANCZOS)
        elif variant.fit == "contain":
            image = ImageOps.pad(image.convert("RGBA"), box, Image.Resampling.LANCZOS, color=(0, 0, 0, 0))
        else:
            scale = (max if variant.fit == "outside" else min)(box[0] / width, box[1] / height)
            image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                 Image.Resampling.LANCZOS)
    elif variant.w or variant.h:
        image = image.resize(box, Image.Resampling.LANCZOS)
    fmt = OUTPUTS[variant.output][0] if variant.output else (Image.open(io.BytesIO(data)).format or "PNG")
    if fmt == "JPEG" and image.mode != "RGB":
        image = image.convert("RGB")
    out = io.BytesIO()
    options = {"quality": variant.q} if variant.q and fmt in ("JPEG", "WEBP") else {}
    image.save(out, format=fmt, **options)
    return out.getvalue()
