"""An append-only, fsync'd journal of the emulator's state changes.

File format (``journal.bin`` in the data dir): a sequence of framed records::

    b"IPJ1" | u32 payload length | u32 crc32(payload) | payload
    payload = u32 header length | header (JSON, utf-8) | body (raw bytes)

A record is durable once :meth:`Journal.append` returns (write + flush + ``os.fsync``).
On open, records are read back until the first incomplete or corrupt frame (a torn write
from a hard kill); the file is truncated there so new records never follow garbage.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"IPJ1"
_FRAME = struct.Struct(">4sII")
_HLEN = struct.Struct(">I")
JOURNAL_NAME = "journal.bin"


@dataclass
class Record:
    """One journal entry: a JSON-able header and an opaque body."""

    header: dict[str, Any]
    body: bytes = field(default=b"")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray):
        return {"__b64__": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _json_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "__b64__" in obj:
        return base64.b64decode(obj["__b64__"])
    return obj


def encode(record: Record) -> bytes:
    """Frame one record."""
    header = json.dumps(record.header, default=_json_default, separators=(",", ":")).encode("utf-8")
    payload = _HLEN.pack(len(header)) + header + record.body
    return _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_stream(data: bytes) -> tuple[list[Record], int]:
    """Decode framed records; return them and the offset just past the last intact one."""
    records: list[Record] = []
    pos = 0
    while pos + _FRAME.size <= len(data):
        magic, length, crc = _FRAME.unpack_from(data, pos)
        start = pos + _FRAME.size
        end = start + length
        if magic != MAGIC or end > len(data):
            break
        payload = data[start:end]
        if zlib.crc32(payload) != crc or length < _HLEN.size:
            break
        (hlen,) = _HLEN.unpack_from(payload, 0)
        if _HLEN.size + hlen > length:
            break
        try:
            header = json.loads(payload[_HLEN.size : _HLEN.size + hlen], object_hook=_json_hook)
        except ValueError:
            break
        records.append(Record(header=header, body=payload[_HLEN.size + hlen :]))
        pos = end
    return records, pos


class Journal:
    """The journal file: read back once at open, then append-only and fsync'd per append."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / JOURNAL_NAME
        self._lock = threading.Lock()
        self._file: Any = None
        self.torn_bytes = 0
        self.appended = 0

    def open(self) -> list[Record]:
        """Read existing records (dropping a torn tail), then open for appending.

        The records are returned, not kept: they hold every object ever uploaded, and the
        emulator needs them only for the replay.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        data = self.path.read_bytes() if self.path.exists() else b""
        records, good = decode_stream(data)
        self.torn_bytes = len(data) - good
        fresh = not self.path.exists()
        self._file = open(self.path, "r+b" if not fresh else "w+b")  # noqa: SIM115 - held open until close()
        if self.torn_bytes:
            self._file.truncate(good)
            os.fsync(self._file.fileno())
        self._file.seek(0, os.SEEK_END)
        if fresh:
            _fsync_dir(self.dir)
        return records

    def append(self, records: Iterable[Record]) -> None:
        """Append records as one write and make them durable before returning."""
        blob = b"".join(encode(r) for r in records)
        if not blob:
            return
        with self._lock:
            if self._file is None:
                raise RuntimeError("journal is closed")
            self._file.write(blob)
            self._file.flush()
            os.fsync(self._file.fileno())
            self.appended += 1

    def rewrite(self, records: Iterable[Record]) -> None:
        """Atomically replace the whole journal with ``records`` (compaction)."""
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            for r in records:
                out.write(encode(r))
            out.flush()
            os.fsync(out.fileno())
        with self._lock:
            if self._file is not None:
                self._file.close()
            os.replace(tmp, self.path)
            _fsync_dir(self.dir)
            self._file = open(self.path, "r+b")  # noqa: SIM115 - held open until close()
            self._file.seek(0, os.SEEK_END)

    def close(self) -> None:
        """Flush and close (idempotent)."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None

    def size(self) -> int:
        """Current size of the journal file in bytes."""
        return self.path.stat().st_size if self.path.exists() else 0


def iter_file(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Read every intact record of a journal file (tools and tests)."""
    records, _ = decode_stream(Path(path).read_bytes())
    yield from records


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
