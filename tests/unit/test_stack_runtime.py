"""The local Lambda runtime: init, context, env, and crash/timeout/OOM as failed invocations."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.stack.runtime import (
    HANDLER_ERROR,
    INIT_ERROR,
    WORKER_CRASHED,
    WORKER_OOM,
    WORKER_TIMEOUT,
    FunctionSpec,
    LambdaRuntime,
)

H = "pipeline.stack._selftest_handlers."


def _rt(handler: str, timeout: float = 10, memory: int = 512, workers: int = 1, **env: str) -> LambdaRuntime:
    spec = FunctionSpec("selftest", H + handler, timeout, memory, {"SELFTEST_VALUE": "42", **env})
    return LambdaRuntime(spec, workers=workers)


def test_invocation_gets_event_context_and_env():
    with _rt("echo", timeout=7) as rt:
        first = rt.invoke({"hello": "world"})
        second = rt.invoke({"n": 2})
    assert first.ok, first.error
    v = first.value
    assert v["event"] == {"hello": "world"}
    assert v["env"]["SELFTEST_VALUE"] == "42"
    assert v["env"]["AWS_PROFILE"] is None
    assert v["function_name"] == "selftest" and v["memory"] == 512
    assert v["arn"].endswith(":function:selftest")
    assert 0 < v["remaining_ms"] <= 7000
    assert v["request_id"] == first.request_id
    # the same warm worker serves the next invocation; the module was imported once
    assert second.value["pid"] == v["pid"] == v["init_pid"]


def test_handler_exception_is_a_function_error_and_the_worker_stays():
    with _rt("fail") as rt:
        pid = rt.pids()[0]
        res = rt.invoke({})
        assert not res.ok and res.reason == HANDLER_ERROR
        assert res.error["errorType"] == "ValueError" and res.error["errorMessage"] == "boom"
        assert rt.pids() == [pid]


def test_crash_is_a_failed_invocation_and_the_worker_is_replaced():
    with _rt("crash") as rt:
        pid = rt.pids()[0]
        res = rt.invoke({})
        assert not res.ok and res.reason == WORKER_CRASHED
        assert "exit code 3" in res.error["errorMessage"]
        assert rt.pids()[0] != pid
        again = rt.invoke({})  # the replacement serves (and crashes) again: the runtime lives on
        assert again.reason == WORKER_CRASHED
        assert rt.stats[WORKER_CRASHED] == 2


def test_timeout_kills_the_worker():
    with _rt("sleep", timeout=1) as rt:
        res = rt.invoke({"seconds": 30})
        assert not res.ok and res.reason == WORKER_TIMEOUT
        assert "timed out after 1.00 seconds" in res.error["errorMessage"]
        ok = rt.invoke({"seconds": 0})
        assert ok.ok and ok.value == "slept"


def test_a_slow_init_does_not_count_against_the_timeout():
    """As on AWS, the timeout starts when the event is handed over, not while the first
    invocation waits for a (replacement) worker's init: a loaded machine made a 0 s invocation
    time out after a kill because its replacement's init took longer than the timeout."""
    with _rt("sleep", timeout=1, SELFTEST_INIT_SLEEP_S="1.5") as rt:
        killed = rt.invoke({"seconds": 30})  # times out: the worker is replaced (a 1.5 s init)
        assert killed.reason == WORKER_TIMEOUT
        res = rt.invoke({"seconds": 0})  # waits for the replacement's init, then runs at once
    assert res.ok and res.value == "slept", res
    assert res.duration_ms >= 1000  # the caller still waited for the init


def test_out_of_memory_is_detected_and_killed():
    with _rt("hog", timeout=30, memory=256) as rt:
        res = rt.invoke({"mb": 2048})
        assert not res.ok and res.reason == WORKER_OOM, res
        assert res.peak_rss_mb > 256
        assert rt.stats["peak_rss_mb"] >= res.peak_rss_mb > 256
        small = rt.invoke({"mb": 32})  # a fresh worker serves a small request fine
        assert small.ok and small.value == 1


def test_import_error_fails_every_invocation_with_init_error():
    spec = FunctionSpec("broken", "pipeline.stack._no_such_module.handler", 5, 256)
    with LambdaRuntime(spec, workers=1) as rt:
        res = rt.invoke({})
    assert not res.ok and res.reason == INIT_ERROR
    assert res.error["errorType"] == "ModuleNotFoundError"


def test_two_workers_run_concurrently():
    import threading

    with _rt("sleep", timeout=20, workers=2) as rt:
        results = []
        threads = [
            threading.Thread(target=lambda: results.append(rt.invoke({"seconds": 0.5}))) for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.ok for r in results] == [True, True]
        assert {r.worker_pid for r in results} == set(rt.pids())


def test_stopped_runtime_refuses_invocations():
    rt = _rt("echo").start()
    rt.stop()
    with pytest.raises(RuntimeError):
        rt.invoke({})


def test_a_replacement_spawned_while_the_runtime_stops_is_not_left_running(monkeypatch):
    # a worker crashed and its replacement is starting when stop() swaps the pool out:
    # the replacement must not survive as a process nobody will ever close
    import time

    import pipeline.stack.runtime as runtime_mod

    rt = _rt("echo").start()
    spawned: list[Any] = []

    class _StopDuringSpawn(runtime_mod._Worker):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            spawned.append(self)
            rt.stop()

    monkeypatch.setattr(runtime_mod, "_Worker", _StopDuringSpawn)
    rt._replace(rt._workers[0])
    assert len(spawned) == 1
    deadline = time.monotonic() + 10
    while spawned[0].proc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not spawned[0].proc.is_alive()


def test_runtime_peak_keeps_the_sampled_fraction(monkeypatch):
    """The runtime's peak is the same figure as the invocation's, never rounded below it."""
    import pipeline.stack.runtime as runtime

    rt = runtime.LambdaRuntime.__new__(runtime.LambdaRuntime)
    rt.stats = {"peak_rss_mb": 0.0}
    worker = SimpleNamespace(pid=1, peak_rss_mb=0.0)
    monkeypatch.setattr(runtime, "tree_rss_mb", lambda pid: 256.7)  # the sampler reads the worker + children
    assert rt._sample_rss(worker) == 256.7
    assert worker.peak_rss_mb == rt.stats["peak_rss_mb"] == 256.7
    monkeypatch.setattr(runtime, "tree_rss_mb", lambda pid: 100.0)
    rt._sample_rss(worker)  # a lower sample lowers neither peak
    assert worker.peak_rss_mb == rt.stats["peak_rss_mb"] == 256.7
