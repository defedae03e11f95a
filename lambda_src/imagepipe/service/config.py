"""Service configuration, read from the environment once (see docs/architecture.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

#: Content types ``POST /uploads`` accepts.
ALLOWED_CONTENT_TYPES: frozenset[str] = frozenset(
    {"image/jpeg", "image/png", "image/webp", "image/gif", "image/avif",
     "image/jxl", "image/heic", "image/heif"}
)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Config:
    """Everything the service reads from its environment."""

    region: str
    source_bucket: str
    dest_bucket: str
    table: str
    queue_url: str
    dlq_url: str
    api_key: str
    upload_prefix: str = "uploads/"
    output_prefix: str = "outputs/"
    max_upload_bytes: int = 26_214_400
    presign_expires: int = 900
    max_receive_count: int = 3
    service_name: str = "imagepipe"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Build the config from ``env`` (default ``os.environ``); missing names become ``""``."""
        env = os.environ if env is None else env
        expires = _int(env, "IMAGEPIPE_PRESIGN_EXPIRES", 900)
        if not 1 <= expires <= 900:
            raise ValueError("IMAGEPIPE_PRESIGN_EXPIRES must be between 1 and 900 seconds")
        upload_prefix = env.get("IMAGEPIPE_UPLOAD_PREFIX") or "uploads/"
        output_prefix = env.get("IMAGEPIPE_OUTPUT_PREFIX") or "outputs/"
        return cls(
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            source_bucket=env.get("IMAGEPIPE_SOURCE_BUCKET", ""),
            dest_bucket=env.get("IMAGEPIPE_DEST_BUCKET", ""),
            table=env.get("IMAGEPIPE_TABLE", ""),
            queue_url=env.get("IMAGEPIPE_QUEUE_URL", ""),
            dlq_url=env.get("IMAGEPIPE_DLQ_URL", ""),
            api_key=env.get("IMAGEPIPE_API_KEY", ""),
            upload_prefix=upload_prefix if upload_prefix.endswith("/") else upload_prefix + "/",
            output_prefix=output_prefix if output_prefix.endswith("/") else output_prefix + "/",
            max_upload_bytes=_int(env, "IMAGEPIPE_MAX_UPLOAD_BYTES", 26_214_400),
            presign_expires=expires,
            max_receive_count=max(1, _int(env, "IMAGEPIPE_MAX_RECEIVE_COUNT", 3)),
            service_name=env.get("POWERTOOLS_SERVICE_NAME") or "imagepipe",
        )


@lru_cache(maxsize=1)
def get_config() -> Config:
    """The process-wide config, read from ``os.environ`` on first call and then cached."""
    return Config.from_env()
