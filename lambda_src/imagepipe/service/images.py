"""Looking up an image record for an operation on it (a job, a sweep): 404 when unknown,
409 while its original is not in the source bucket yet."""

from __future__ import annotations

from typing import Any

from imagepipe.errors import Conflict, NotFound
from imagepipe.service.backend import Backend


def image_or_404(backend: Backend, image_id: str) -> dict[str, Any]:
    image = backend.records.get_image(image_id)  # None for a malformed id too
    if image is None:
        raise NotFound(f"no image {image_id!r}")
    return image


def uploaded_image(backend: Backend, image_id: str) -> dict[str, Any]:
    """The image record of an original that is in the source bucket (404 unknown, 409 not yet)."""
    return require_uploaded(backend, image_or_404(backend, image_id))


def require_uploaded(backend: Backend, image: dict[str, Any]) -> dict[str, Any]:
    if image.get("status") == "uploaded":
        return image
    # The S3 event (the one writer of "uploaded") may not have been handled yet: ask S3.
    if backend.storage.head(backend.config.source_bucket, image["key"]) is None:
        raise Conflict(f"image {image['image_id']} is not uploaded yet; "
                       "POST the file to its upload URL first")
    return image
