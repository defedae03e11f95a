"""S3: presigned uploads and downloads, and the few object operations the service needs."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from imagepipe.errors import BadRequest, NotFound
from imagepipe.service.awserrors import translate_aws_errors
from imagepipe.service.config import Config

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_NAME_CHARS = 200


def safe_filename(name: str) -> str:
    """The user's file name made safe for a key: unicode kept, ``/``, ``\\`` and control
    characters removed, at most 200 characters; names of only dots become ``upload``."""
    name = unicodedata.normalize("NFC", name or "")
    name = _CONTROL.sub("", name).replace("/", "").replace("\\", "").strip()
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: MAX_NAME_CHARS - len(ext) - 1].rstrip() + "." + ext
        else:
            name = name[:MAX_NAME_CHARS].rstrip()
    if not name.strip("."):
        name = "upload"
    return name


def upload_key(config: Config, image_id: str, filename: str) -> str:
    """``uploads/{image_id}/{safe_name}``."""
    return f"{config.upload_prefix}{image_id}/{safe_filename(filename)}"


def output_key(config: Config, image_id: str, recipe_hash: str, extension: str) -> str:
    """``outputs/{image_id}/{recipe_hash}.{ext}``: deterministic, so retries overwrite."""
    return f"{config.output_prefix}{image_id}/{recipe_hash}.{extension.lstrip('.')}"


def content_disposition(filename: str, disposition: str = "inline") -> str:
    """A Content-Disposition value with an ASCII fallback and the RFC 5987 UTF-8 name."""
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace('"', "'").replace("?", "_")
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


@dataclass(frozen=True)
class Storage:
    """The source and destination buckets."""

    s3: Any
    config: Config

    @translate_aws_errors
    def presign_upload(self, key: str, content_type: str, max_bytes: int | None = None) -> dict[str, Any]:
        """A presigned POST pinning exactly ``key``, ``Content-Type`` and the size range
        ``1..max_bytes`` (the announced size; never above the upload cap)."""
        cfg = self.config
        limit = min(max_bytes, cfg.max_upload_bytes) if max_bytes else cfg.max_upload_bytes
        return self.s3.generate_presigned_post(
            Bucket=cfg.source_bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", 1, limit],
            ],
            ExpiresIn=cfg.presign_expires,
        )

    @translate_aws_errors
    def presign_download(self, bucket: str, key: str, filename: str | None = None) -> str:
        """A presigned GET URL valid for ``presign_expires`` seconds."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        return self.s3.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self.config.presign_expires
        )

    @translate_aws_errors
    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The object's metadata, or ``None`` when it does not exist."""
        try:
            return self.s3.head_object(Bucket=bucket, Key=key)
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    @translate_aws_errors
    def get_source(self, bucket: str, key: str) -> bytes:
        """Download an original; refuses any bucket but the source bucket and any key
        outside the upload prefix (so a processor can never read its own outputs)."""
        cfg = self.config
        if bucket != cfg.source_bucket:
            raise BadRequest(f"refusing to read from bucket {bucket!r}: only the source bucket is processed")
        if not key.startswith(cfg.upload_prefix):
            raise BadRequest(f"refusing key {key!r}: outside the upload prefix {cfg.upload_prefix!r}")
        try:
            obj = self.s3.get_object(Bucket=bucket, Key=key)
        except self.s3.exceptions.NoSuchKey as exc:
            raise NotFound(f"the original s3://{bucket}/{key} does not exist") from exc
        return obj["Body"].read()

    @translate_aws_errors
    def peek_source(self, key: str, nbytes: int) -> tuple[bytes, str | None, str | None] | None:
        """The first ``nbytes`` of an original, its stored ``Content-Type`` and its ETag (no quotes)
        in one ranged GET (``None`` when the object is gone); the prefix guard of :meth:`get_source`."""
        cfg = self.config
        if not key.startswith(cfg.upload_prefix):
            raise BadRequest(f"refusing key {key!r}: outside the upload prefix {cfg.upload_prefix!r}")
        try:
            obj = self.s3.get_object(Bucket=cfg.source_bucket, Key=key, Range=f"bytes=0-{max(0, nbytes - 1)}")
        except self.s3.exceptions.NoSuchKey:
            return None
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":  # an empty object
                return b"", None, None
            raise
        return obj["Body"].read(), obj.get("ContentType"), (obj.get("ETag") or "").strip('"') or None

    def put_original(self, key: str, data: bytes, content_type: str) -> None:
        """Store an original sent to ``POST /images`` (its S3 event then runs the upload job)."""
        self._put(self.config.source_bucket, self.config.upload_prefix, "upload", key, data, content_type)

    def put_output(self, key: str, data: bytes, content_type: str) -> None:
        """Write an output to the destination bucket (the only bucket outputs ever go to)."""
        self._put(self.config.dest_bucket, self.config.output_prefix, "output", key, data, content_type)

    @translate_aws_errors
    def _put(self, bucket: str, prefix: str, what: str, key: str, data: bytes, content_type: str) -> None:
        """``PutObject`` of ``key``, refused unless it lies under ``prefix`` (``what`` names it)."""
        if not key.startswith(prefix):
            raise BadRequest(f"refusing to write {key!r}: outside the {what} prefix")
        self.s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    @translate_aws_errors
    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many were deleted."""
        deleted = 0
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if not keys:
                continue
            resp = self.s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            errors = resp.get("Errors") or []
            if errors:
                raise RuntimeError(f"could not delete {len(errors)} objects under {prefix!r}: {errors[0]}")
            deleted += len(keys)
        return deleted

    @translate_aws_errors
    def check_bucket(self, bucket: str) -> None:
        """HeadBucket (raises when the bucket is unreachable)."""
        self.s3.head_bucket(Bucket=bucket)
