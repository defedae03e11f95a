"""Peak-memory probes for the current process (Linux ``/proc``), in KiB."""

from __future__ import annotations

import re
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def rss_kib() -> int:
    """Current resident set size."""
    return _status_kib("VmRSS")


def hwm_kib() -> int:
    """Peak resident set size since start or since the last :func:`reset_peak`."""
    return _status_kib("VmHWM")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when the kernel refuses."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return hwm_kib() <= rss_kib() + 64
