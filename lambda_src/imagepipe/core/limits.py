"""Resource caps the engine enforces on every input and output."""

from __future__ import annotations

import os
from dataclasses import dataclass

from imagepipe.errors import InternalError

_ENV = {
    "max_pixels": "IMAGEPIPE_MAX_PIXELS",
    "max_bytes": "IMAGEPIPE_MAX_UPLOAD_BYTES",
    "max_frames": "IMAGEPIPE_MAX_FRAMES",
    "max_output_bytes": "IMAGEPIPE_MAX_OUTPUT_BYTES",
}


@dataclass(frozen=True)
class Limits:
    """Caps: pixels per frame, input bytes, animation frames, encoded output bytes."""

    max_pixels: int = 50_000_000
    max_bytes: int = 25 * 1024 * 1024
    max_frames: int = 300
    max_output_bytes: int = 50 * 1024 * 1024

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Limits:
        """Read ``IMAGEPIPE_MAX_PIXELS``, ``IMAGEPIPE_MAX_UPLOAD_BYTES``, ``IMAGEPIPE_MAX_FRAMES``,
        ``IMAGEPIPE_MAX_OUTPUT_BYTES`` (unset = default; a non-positive or non-integer value is a
        configuration bug and raises ``InternalError`` naming the variable)."""
        env = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for field, var in _ENV.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                value = int(raw)
            except ValueError:
                raise InternalError(f"{var} must be an integer, got {raw!r}") from None
            if value <= 0:
                raise InternalError(f"{var} must be positive, got {value}")
            values[field] = value
        return cls(**values)
