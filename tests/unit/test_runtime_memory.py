"""The local runtime counts a worker's forked children in its memory (as a Lambda sandbox's
cgroup does), pages shared copy-on-write once."""

from __future__ import annotations

import os
import time

from pipeline.stack.runtime import read_rss_mb, tree_rss_mb


def test_a_forked_childs_own_memory_counts_and_shared_pages_count_once():
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
        time.sleep(10)
        os._exit(0)
    try:
        os.read(r, 1)
        with_child = tree_rss_mb(os.getpid())
        assert with_child - alone > 100  # the child's own 128 MB
        assert with_child < read_rss_mb(os.getpid()) + read_rss_mb(pid)  # shared pages not twice
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
