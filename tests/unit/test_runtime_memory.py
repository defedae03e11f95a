"""The local runtime counts a worker's forked children in its memory (as a Lambda sandbox's
cgroup does), pages shared copy-on-write once.

The measurement runs in a fresh interpreter: in the whole suite the pytest process has other
children (the session's local stack), which ``tree_rss_mb`` rightly counts too, so measuring
pytest's own tree would compare against the wrong bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MEASURE = r"""
import json, os, time
from pipeline.stack.runtime import read_rss_mb, tree_rss_mb

shared = bytearray(64 * 1024 * 1024)
for i in range(0, len(shared), 4096):
    shared[i] = 1
alone = tree_rss_mb(os.getpid())
r, w = os.pipe()
pid = os.fork()
if pid == 0:  # the child: 128 MB of its own, then wait to be measured
    own = bytearray(128 * 1024 * 1024)
    for i in range(0, len(own), 4096):
        own[i] = 1
    os.write(w, b"x")
    time.sleep(30)
    os._exit(0)
try:
    os.read(r, 1)
    print(json.dumps({"alone": alone, "with_child": tree_rss_mb(os.getpid()),
                      "parent_rss": read_rss_mb(os.getpid()), "child_rss": read_rss_mb(pid)}))
finally:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""


def test_a_forked_childs_own_memory_counts_and_shared_pages_count_once():
    out = subprocess.run([sys.executable, "-c", MEASURE], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    m = json.loads(out.stdout)
    assert m["with_child"] - m["alone"] > 100  # the child's own 128 MB
    assert m["with_child"] < m["parent_rss"] + m["child_rss"]  # the shared 64 MB not twice
