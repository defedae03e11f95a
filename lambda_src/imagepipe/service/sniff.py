"""What kind of image some bytes are, from their first bytes (magic numbers), for uploads whose
declared content type is missing, generic or not to be trusted (bucket drops, ``POST /images``)."""

from __future__ import annotations

#: content types S3 clients send when they do not know better
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream",
                           "application/x-www-form-urlencoded"})
#: how many leading bytes :func:`sniff_image_type` needs
SNIFF_BYTES = 64


def sniff_image_type(head: bytes) -> str | None:
    """``image/jpeg|png|gif|webp|avif|heic|heif|jxl`` from the leading bytes, ``None`` for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and (head[8:12] in (b"avif", b"avis") or b"avif" in head[8:SNIFF_BYTES]):
        return "image/avif"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"):
        return "image/heic"
    if head[4:8] == b"ftyp" and head[8:12] in (b"mif1", b"msf1"):
        return "image/heif"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "image/jxl"
    return None


def content_type_of(declared: str | None, head: bytes) -> str:
    """The declared type (lower-cased, parameters dropped) unless it is generic; then the sniffed
    image type, else ``application/octet-stream``."""
    ct = (declared or "").split(";", 1)[0].strip().lower()
    if ct not in GENERIC_TYPES:
        return ct
    return sniff_image_type(head) or "application/octet-stream"
