"""The recipe: a validated, versioned description of what to do to one image.

``Recipe`` is the pydantic v2 model from docs/architecture.md; ``parse_recipe`` turns a dict /
JSON text / ``Recipe`` into a ``Recipe`` or raises ``InvalidRecipe`` whose ``details`` name each
bad field (``[{"field": "resize.width", "message": "..."}]``). ``Recipe.recipe_hash()`` is the
stable name of the outputs: 16 hex chars of sha256 over the canonical JSON of the model.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from imagepipe.errors import InvalidRecipe

Fit = Literal["contain", "cover", "fill", "inside"]
Filter = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]
Format = Literal["jpeg", "png", "webp", "avif", "gif", "jxl", "original", "best"]
#: formats an encoder exists for (``original`` and ``best`` resolve to one of these)
CONCRETE_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp", "avif", "gif", "jxl")
JpegEncoder = Literal["turbo", "mozjpeg", "jpegli"]
#: what ``format: best`` may choose from: a format, or a JPEG encoder by name (``jpeg`` alone
#: means the recipe's ``jpeg.encoder``)
Candidate = Literal["jpeg", "jpeg:turbo", "jpeg:mozjpeg", "jpeg:jpegli", "webp", "avif", "jxl", "png", "gif"]
Position = Literal["top-left", "top", "top-right", "left", "center", "right",
                   "bottom-left", "bottom", "bottom-right", "tiled"]

MAX_DIMENSION = 20_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Resize(_Model):
    """Target box. One of width/height may be omitted (the other side follows the aspect ratio)."""

    width: Annotated[int, Field(ge=1, le=MAX_DIMENSION)] | None = None
    height: Annotated[int, Field(ge=1, le=MAX_DIMENSION)] | None = None
    fit: Fit = "inside"
    upscale: bool = False
    filter: Filter = "lanczos"

    @model_validator(mode="after")
    def _one_side(self) -> Resize:
        if self.width is None and self.height is None:
            raise ValueError("resize needs width, height or both (or set resize to null)")
        if self.fit in ("cover", "fill") and (self.width is None or self.height is None):
            raise ValueError(f"fit|fit '{self.fit}' needs both width and height")
        return self


class JpegOptions(_Model):
    progressive: bool = True
    optimize: bool = True
    #: ``auto`` (turbo and mozjpeg): with ``quality: auto`` and a score target, the chroma
    #: (4:2:0 or 4:4:4) whose answer has fewer bytes; otherwise 4:4:4 from quality 90 up
    #: (libvips' rule), 4:2:0 below (see core/auto.py)
    subsampling: Literal["4:4:4", "4:2:2", "4:2:0", "auto"] = "4:2:0"
    #: ``turbo`` = Pillow's libjpeg-turbo; ``mozjpeg`` = libvips jpegsave with trellis
    #: quantisation, optimized scans, quant table 3, overshoot deringing; ``jpegli`` = pyjpegli
    encoder: JpegEncoder = "turbo"
    #: mozjpeg's option (like ``webp.method``, other encoders do not read it): libvips'
    #: ``quant_table`` 0–8 (None = 3, ImageMagick's; 2 = the MS-SSIM tuned table, fewer bytes at
    #: equal SSIMULACRA2 on the corpus, docs/lab.md "Encoder targets"); ``auto``: with ``quality:
    #: auto`` and a score target, the search tries each of ``QUANT_TABLE_CANDIDATES`` and keeps
    #: the answer with the fewest bytes (core/auto.py); without a target it is refused
    quant_table: Annotated[int, Field(ge=0, le=8)] | Literal["auto"] | None = None

    @field_validator("quant_table", mode="before")
    @classmethod
    def _quant_table(cls, v: Any) -> Any:
        """One message for the three shapes (else pydantic reports each member of the union)."""
        if v is None or v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 8):
            return v
        raise ValueError('quant_table must be an integer 0–8, "auto" or null')

    def chroma(self, quality: int | float) -> str:
        """The subsampling written at ``quality``: ``auto`` outside a search = 4:4:4 from 90 up."""
        if self.subsampling != "auto":
            return self.subsampling
        return "4:4:4" if quality >= 90 else "4:2:0"


class WebpOptions(_Model):
    method: Annotated[int, Field(ge=0, le=6)] = 4
    lossless: bool = False


class AvifOptions(_Model):
    speed: Annotated[int, Field(ge=0, le=10)] = 6
    #: ``auto``: as ``jpeg.subsampling: auto`` (the smaller of the 4:2:0 and 4:4:4 answers)
    subsampling: Literal["4:4:4", "4:2:0", "auto"] = "4:2:0"

    def chroma(self, quality: int | float) -> str:
        """The subsampling written at ``quality``: ``auto`` outside a search = 4:4:4 from 90 up."""
        if self.subsampling != "auto":
            return self.subsampling
        return "4:4:4" if quality >= 90 else "4:2:0"


class JxlOptions(_Model):
    """JPEG XL (libjxl through pillow-jxl-plugin): effort 1 (fast) – 9 (small); lossless ignores quality."""

    effort: Annotated[int, Field(ge=1, le=9)] = 7
    lossless: bool = False


class PngOptions(_Model):
    compress_level: Annotated[int, Field(ge=0, le=9)] = 6
    palette: bool = False
    colors: Annotated[int, Field(ge=2, le=256)] = 256


class Ops(_Model):
    grayscale: bool = False
    sharpen: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    blur: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0


class Watermark(_Model):
    """Text or a base64 PNG/WebP image, placed on a 3×3 grid or tiled."""

    text: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    image_b64: Annotated[str, Field(min_length=4, max_length=2_000_000)] | None = None
    position: Position = "bottom-right"
    opacity: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    scale: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25
    margin: Annotated[float, Field(ge=0.0, le=0.5)] = 0.02

    @model_validator(mode="after")
    def _exactly_one(self) -> Watermark:
        if (self.text is None) == (self.image_b64 is None):
            raise ValueError("watermark needs exactly one of text or image_b64")
        return self


class Animation(_Model):
    keep: bool = False
    max_frames: Annotated[int, Field(ge=1, le=1000)] = 100


class Target(_Model):
    metric: Literal["ssim", "ssimulacra2"] = "ssim"
    min: float

    @model_validator(mode="after")
    def _range(self) -> Target:
        lo, hi = (0.0, 1.0) if self.metric == "ssim" else (-100.0, 100.0)
        if not lo <= self.min <= hi:
            raise ValueError(f"min|target.min for {self.metric} must be within [{lo}, {hi}]")
        return self


class Recipe(_Model):
    """What to do to one image. ``Recipe()`` = auto-orient, strip metadata, keep the format."""

    version: Literal[1] = 1
    resize: Resize | None = None
    format: Format = "original"
    quality: int | Literal["auto"] = 80
    jpeg: JpegOptions = JpegOptions()
    webp: WebpOptions = WebpOptions()
    avif: AvifOptions = AvifOptions()
    jxl: JxlOptions = JxlOptions()
    png: PngOptions = PngOptions()
    metadata: Literal["strip", "keep", "keep_copyright_icc"] = "strip"
    color: Literal["srgb", "keep"] = "srgb"
    background: str = "#ffffff"
    ops: Ops = Ops()
    watermark: Watermark | None = None
    animation: Animation = Animation()
    target: Target | None = None
    max_bytes: Annotated[int, Field(ge=100)] | None = None
    #: ``format: best`` only: what it chooses from (default: jpeg, webp, avif; see core/auto.py)
    candidates: Annotated[list[Candidate], Field(min_length=1, max_length=9)] | None = None

    @field_validator("background")
    @classmethod
    def _background(cls, v: str) -> str:
        if not re.fullmatch(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})", v):
            raise ValueError('background must be a hex colour like "#fff" or "#ffffff"')
        return v.lower()

    @field_validator("quality", mode="before")
    @classmethod
    def _quality(cls, v: Any) -> Any:
        if v == "auto":
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError('quality must be an integer 1–100 or "auto"')
        if not 1 <= v <= 100:
            raise ValueError("quality must be within 1–100")
        return v

    @model_validator(mode="after")
    def _auto_needs_goal(self) -> Recipe:
        if self.quality == "auto" and self.target is None and self.max_bytes is None:
            raise ValueError('quality|quality "auto" needs a target or max_bytes')
        if self.target is not None and self.quality != "auto":
            raise ValueError('target|target needs quality "auto"')
        if self.jpeg.quant_table == "auto" and self.target is None:
            raise ValueError('jpeg.quant_table|jpeg.quant_table "auto" needs quality "auto" with a target '
                             '(the search keeps the table whose answer has the fewest bytes); at a fixed '
                             'quality or with only max_bytes choose a table 0–8')
        if self.candidates is not None:
            if self.format != "best":
                raise ValueError('candidates|candidates needs format "best"')
            if len(set(self.candidates)) != len(self.candidates):
                raise ValueError("candidates|duplicate candidate")
        return self

    def canonical_json(self) -> str:
        """The canonical JSON (sorted keys, no spaces) the hash is computed over.

        Fields added after the first release are left out while they hold their default, so a
        recipe that does not use them keeps the hash (and so the job ids and output keys) it had.
        """
        doc = self.model_dump(mode="json")
        for path, default in _LATER_DEFAULTS:
            *parents, leaf = path
            node = doc
            for k in parents:
                node = node[k]
            if node.get(leaf) == default:
                del node[leaf]
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def recipe_hash(self) -> str:
        """First 16 hex chars of sha256 over ``canonical_json()``: equal recipes, equal hash."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:16]

    def background_rgb(self) -> tuple[int, int, int]:
        """``background`` as an (r, g, b) tuple."""
        h = self.background[1:]
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


#: fields added after the first release, with the default at which they stay out of the hash
_LATER_DEFAULTS: tuple[tuple[tuple[str, ...], Any], ...] = (
    (("jpeg", "encoder"), "turbo"),
    (("jpeg", "quant_table"), None),
    (("avif", "subsampling"), "4:2:0"),
    (("jxl",), JxlOptions().model_dump(mode="json")),
    (("candidates",), None),
)


def _field_and_message(err: dict[str, Any]) -> tuple[str, str]:
    """Dotted field path + message; model-level checks name their field as ``"field|message"``."""
    skip = ("function-", "literal[")
    parts = [str(p) for p in err["loc"]
             if not (isinstance(p, str) and (p.startswith(skip) or p in ("int", "str", "float", "bool")))]
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if err.get("type") == "value_error" and "|" in msg:
        sub, msg = msg.split("|", 1)
        parts.append(sub)
    return ".".join(parts) or "recipe", msg


def parse_recipe(raw: Recipe | dict[str, Any] | str | bytes | None) -> Recipe:
    """Validate ``raw`` into a ``Recipe``; raise ``InvalidRecipe`` naming every bad field."""
    if isinstance(raw, Recipe):
        return raw
    if raw is None:
        return Recipe()
    if isinstance(raw, str | bytes | bytearray):
        try:
            raw = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRecipe("recipe is not valid JSON",
                                details=[{"field": "recipe", "message": str(exc)}]) from None
    if not isinstance(raw, dict):
        raise InvalidRecipe("recipe must be a JSON object",
                            details=[{"field": "recipe", "message": f"got {type(raw).__name__}"}])
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        details: list[dict[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for err in exc.errors(include_url=False):
            item = _field_and_message(dict(err))
            if item not in seen:
                seen.add(item)
                details.append({"field": item[0], "message": item[1]})
        fields = ", ".join(dict.fromkeys(d["field"] for d in details))
        raise InvalidRecipe(f"invalid recipe: {fields}", details=details) from None
