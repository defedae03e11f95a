"""A local Lambda runtime: long-lived worker processes running one handler, like Lambda.

Each worker is a ``spawn`` process that sets the function's environment, puts
``lambda_src`` first on ``sys.path``, imports the handler by dotted path once (the init
phase) and then serves invocations one at a time. The parent enforces the function's
timeout and memory limit: a watchdog samples each busy worker's RSS from
``/proc/<pid>/status`` every ~50 ms and SIGKILLs it over the limit. A worker that dies,
times out or runs out of memory is a *failed invocation* with a typed reason; the worker
is replaced and the runtime keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from pipeline import LAMBDA_SRC
from pipeline.stack.resources import ACCOUNT_ID, REGION

log = logging.getLogger("imagepipe.stack.runtime")

#: failure reasons (stable strings; the worker_* ones match imagepipe.errors.WorkerFailure codes)
HANDLER_ERROR = "handler_error"
INIT_ERROR = "init_error"
WORKER_CRASHED = "worker_crashed"
WORKER_TIMEOUT = "worker_timeout"
WORKER_OOM = "worker_out_of_memory"

_SCRUBBED_ENV = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
)


class LambdaContext:
    """The attributes and method of Lambda's Python context object that handlers use."""

    def __init__(
        self,
        aws_request_id: str,
        function_name: str,
        memory_limit_in_mb: int,
        deadline_epoch_ms: float,
        function_version: str = "$LATEST",
    ) -> None:
        self.aws_request_id = aws_request_id
        self.function_name = function_name
        self.function_version = function_version
        self.memory_limit_in_mb = memory_limit_in_mb
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/{os.getpid()}"
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_epoch_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the runtime kills this invocation."""
        return max(0, int(self._deadline_ms - time.time() * 1000))


@dataclass(frozen=True)
class FunctionSpec:
    """What the runtime needs to know about a function."""

    name: str
    handler: str  # dotted path: package.module.function
    timeout_s: float
    memory_mb: int
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class InvocationResult:
    """The outcome of one invocation."""

    request_id: str
    ok: bool
    value: Any = None
    reason: str | None = None  # None when ok; else one of the reason constants above
    error: dict[str, Any] | None = None  # {"errorType", "errorMessage", "stackTrace"?}
    duration_ms: float = 0.0
    peak_rss_mb: float = 0.0
    worker_pid: int | None = None


# ------------------------------------------------------------------------------ worker
def _load_handler(path: str) -> Any:
    import importlib

    module_name, _, func = path.rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, func)


def _worker_main(conn: Connection, handler_path: str, env: dict[str, str], code_root: str) -> None:
    """Worker process body: init once, then serve invocations until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    for name in _SCRUBBED_ENV:
        os.environ.pop(name, None)
    os.environ.update(env)
    if code_root in sys.path:
        sys.path.remove(code_root)
    sys.path.insert(0, code_root)
    init_error: dict[str, Any] | None = None
    handler = None
    try:
        handler = _load_handler(handler_path)
    except Exception as exc:  # reported on every invocation, like Runtime.ImportModuleError
        init_error = {
            "errorType": type(exc).__name__,
            "errorMessage": str(exc),
            "stackTrace": traceback.format_exc().splitlines(),
        }
    conn.send(("ready", os.getpid(), init_error is None))
    while True:
        try:
            request_id, event, function_name, memory_mb, deadline_ms = conn.recv()
        except (EOFError, OSError):
            return
        if init_error is not None or handler is None:
            conn.send(("init_error", init_error))
            continue
        ctx = LambdaContext(request_id, function_name, memory_mb, deadline_ms)
        try:
            value = handler(event, ctx)
            try:
                conn.send(("ok", value))
            except Exception as exc:  # e.g. an unpicklable return value
                conn.send(
                    ("error", {"errorType": type(exc).__name__, "errorMessage": f"bad return value: {exc}"})
                )
        except Exception as exc:
            conn.send(
                (
                    "error",
                    {
                        "errorType": type(exc).__name__,
                        "errorMessage": str(exc),
                        "stackTrace": traceback.format_exc().splitlines(),
                    },
                )
            )


def read_rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB from /proc (0.0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            return [int(c) for c in fh.read().split()]
    except (OSError, ValueError):
        return []


def _pss_mb(pid: int) -> float:
    """Proportional set size of ``pid`` in MiB (shared pages split between their users)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return read_rss_mb(pid)


def tree_rss_mb(pid: int) -> float:
    """Memory of ``pid`` and its descendants (MiB): a Lambda's memory limit covers the whole
    sandbox, so a child the handler forks (the engine's stoppable encodes) counts too. Alone,
    ``pid``'s RSS; with children, the sum of their proportional set sizes, so the pages a forked
    child still shares with its parent (copy-on-write) count once, as in the sandbox's cgroup."""
    kids = _children(pid)
    if not kids:
        return read_rss_mb(pid)
    total, todo, seen = _pss_mb(pid), kids, {pid}
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _pss_mb(p)
        todo.extend(_children(p))
    return total


# ------------------------------------------------------------------------------ parent
class _Worker:
    """One worker process and its pipe."""

    def __init__(self, ctx: Any, spec: FunctionSpec, slot: int) -> None:
        self.slot = slot
        parent, child = ctx.Pipe()
        self.conn: Connection = parent
        self.proc = ctx.Process(
            target=_worker_main,
            args=(child, spec.handler, dict(spec.env), str(LAMBDA_SRC)),
            name=f"{spec.name}-worker-{slot}",
            daemon=True,
        )
        self.proc.start()
        child.close()
        self.pid: int = self.proc.pid or 0
        self.ready = False
        self.busy = False
        self.oom = False
        self.peak_rss_mb = 0.0
        self.invocations = 0

    def wait_ready(self, timeout: float) -> bool:
        """Wait for the init phase to finish (True if the worker came up)."""
        if self.ready:
            return True
        ready = wait([self.conn, self.proc.sentinel], timeout)
        if self.conn in ready:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return False
            self.ready = msg[0] == "ready"
        return self.ready

    def kill(self) -> None:
        """SIGKILL and reap."""
        try:
            if self.proc.is_alive():
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
        self.proc.join(5)
        self.conn.close()

    def close(self, timeout: float = 3.0) -> None:
        """Close the pipe (the worker exits at its next recv), then make sure it is gone."""
        with contextlib.suppress(OSError):
            self.conn.close()
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2)
        if self.proc.is_alive():
            self.kill()


class LambdaRuntime:
    """A pool of worker processes for one function."""

    def __init__(
        self,
        spec: FunctionSpec,
        workers: int | None = None,
        watchdog_interval: float = 0.05,
        init_timeout: float = 60.0,
    ) -> None:
        self.spec = spec
        self.size = max(1, workers or os.cpu_count() or 1)
        self.watchdog_interval = watchdog_interval
        self.init_timeout = init_timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.stats = {
            "invocations": 0,
            "failures": 0,
            WORKER_CRASHED: 0,
            WORKER_TIMEOUT: 0,
            WORKER_OOM: 0,
            "replaced": 0,
            "peak_rss_mb": 0.0,  # highest RSS sampled in any busy worker (MiB, as sampled)
        }

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, wait_ready: bool = True) -> LambdaRuntime:
        """Spawn the workers (their init runs in parallel) and start the memory watchdog."""
        self._stop.clear()
        with self._lock:
            self._workers = [_Worker(self._ctx, self.spec, i) for i in range(self.size)]
        if wait_ready:
            self.wait_ready()
        for w in self._workers:
            self._idle.put(w)
        self._watchdog = threading.Thread(target=self._watch, name=f"{self.spec.name}-watchdog", daemon=True)
        self._watchdog.start()
        return self

    def wait_ready(self) -> int:
        """Wait until every worker finished its init phase; returns how many came up."""
        with self._lock:
            workers = list(self._workers)
        return sum(1 for w in workers if w.wait_ready(self.init_timeout))

    def stop(self) -> None:
        """Stop every worker (busy ones are killed) and the watchdog."""
        self._stop.set()
        with self._lock:
            workers, self._workers = self._workers, []
        for w in workers:  # signal all first, then reap: workers exit in parallel
            if w.busy:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(w.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                w.conn.close()
        for w in workers:
            w.close()
        while not self._idle.empty():
            self._idle.get_nowait()
        if self._watchdog is not None:
            self._watchdog.join(2)

    def __enter__(self) -> LambdaRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- status ----------------------------------------------------------------------------
    def alive(self) -> int:
        """Worker processes currently running."""
        with self._lock:
            return sum(1 for w in self._workers if w.proc.is_alive())

    def busy(self) -> int:
        """Workers currently running an invocation."""
        with self._lock:
            return sum(1 for w in self._workers if w.busy)

    def pids(self) -> list[int]:
        """PIDs of the current workers (fault tests kill one of these)."""
        with self._lock:
            return [w.pid for w in self._workers]

    def busy_pids(self) -> list[int]:
        """PIDs of the workers running an invocation right now."""
        with self._lock:
            return [w.pid for w in self._workers if w.busy]

    # -- invoke ----------------------------------------------------------------------------
    def invoke(self, event: Any, acquire_timeout: float | None = None) -> InvocationResult:
        """Run one invocation on an idle worker; never raises for function failures."""
        if self._stop.is_set():
            raise RuntimeError("runtime is stopped")
        waited = 0.0
        while True:
            try:
                worker = self._idle.get(timeout=0.25)
                break
            except queue.Empty:
                waited += 0.25
                if self._stop.is_set():
                    raise RuntimeError("runtime is stopped") from None
                if acquire_timeout is not None and waited >= acquire_timeout:
                    raise TimeoutError(f"no idle {self.spec.name} worker within {acquire_timeout}s") from None
        request_id = str(uuid.uuid4())
        try:
            return self._run(worker, request_id, event)
        finally:
            if not self._stop.is_set():
                self._idle.put(self._current(worker))

    def _current(self, worker: _Worker) -> _Worker:
        with self._lock:
            return self._workers[worker.slot] if worker.slot < len(self._workers) else worker

    def _run(self, worker: _Worker, request_id: str, event: Any) -> InvocationResult:
        spec = self.spec
        started = time.monotonic()
        if not worker.wait_ready(self.init_timeout):
            # the worker died during init (e.g. a crashing import); replace it
            return self._fail(worker, request_id, WORKER_CRASHED, "worker died during init", started)
        # The timeout runs from the moment the event is handed over, as on AWS, where a cold
        # start's init phase is not part of the function timeout: waiting for a replacement
        # worker's init (slow on a loaded machine) must not eat into the invocation's time.
        end = time.monotonic() + spec.timeout_s
        deadline_ms = time.time() * 1000 + spec.timeout_s * 1000
        worker.oom = False
        worker.peak_rss_mb = 0.0
        self._sample_rss(worker)
        worker.busy = True
        self.stats["invocations"] += 1
        worker.invocations += 1
        try:
            worker.conn.send((request_id, event, spec.name, spec.memory_mb, deadline_ms))
        except (OSError, ValueError) as exc:
            worker.busy = False
            return self._fail(
                worker, request_id, WORKER_CRASHED, f"could not reach the worker: {exc}", started
            )
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                worker.busy = False
                return self._fail(
                    worker,
                    request_id,
                    WORKER_TIMEOUT,
                    f"Task timed out after {spec.timeout_s:.2f} seconds",
                    started,
                )
            ready = wait([worker.conn, worker.proc.sentinel], min(remaining, 0.5))
            if worker.conn in ready:
                try:
                    kind, payload = worker.conn.recv()
                except (EOFError, OSError):
                    ready = [worker.proc.sentinel]
                else:
                    worker.busy = False
                    elapsed = (time.monotonic() - started) * 1000
                    if kind == "ok":
                        return InvocationResult(
                            request_id,
                            True,
                            value=payload,
                            duration_ms=elapsed,
                            peak_rss_mb=worker.peak_rss_mb,
                            worker_pid=worker.pid,
                        )
                    self.stats["failures"] += 1
                    reason = INIT_ERROR if kind == "init_error" else HANDLER_ERROR
                    return InvocationResult(
                        request_id,
                        False,
                        reason=reason,
                        error=payload,
                        duration_ms=elapsed,
                        peak_rss_mb=worker.peak_rss_mb,
                        worker_pid=worker.pid,
                    )
            if worker.proc.sentinel in ready:
                worker.busy = False
                worker.proc.join(1)
                if worker.oom:
                    return self._fail(
                        worker,
                        request_id,
                        WORKER_OOM,
                        f"Runtime exited: memory {worker.peak_rss_mb:.0f} MB over the "
                        f"{spec.memory_mb} MB limit",
                        started,
                    )
                code = worker.proc.exitcode
                return self._fail(
                    worker, request_id, WORKER_CRASHED, f"Runtime exited with exit code {code}", started
                )

    def _fail(
        self, worker: _Worker, request_id: str, reason: str, message: str, started: float
    ) -> InvocationResult:
        self.stats["failures"] += 1
        self.stats[reason] = self.stats.get(reason, 0) + 1
        peak = worker.peak_rss_mb
        pid = worker.pid
        worker.kill()
        self._replace(worker)
        log.warning("%s invocation %s failed: %s (%s)", self.spec.name, request_id, reason, message)
        return InvocationResult(
            request_id,
            False,
            reason=reason,
            error={"errorType": reason, "errorMessage": message},
            duration_ms=(time.monotonic() - started) * 1000,
            peak_rss_mb=peak,
            worker_pid=pid,
        )

    def _replace(self, worker: _Worker) -> None:
        if self._stop.is_set():
            return
        fresh = _Worker(self._ctx, self.spec, worker.slot)
        with self._lock:
            # stop() may have swapped the pool out while the process was spawning
            kept = not self._stop.is_set() and worker.slot < len(self._workers)
            if kept:
                self._workers[worker.slot] = fresh
        if not kept:
            fresh.close()
            return
        self.stats["replaced"] += 1

    # -- memory watchdog ---------------------------------------------------------------------
    def _sample_rss(self, worker: _Worker) -> float:
        """Read the worker's RSS and raise its invocation peak and the runtime's peak together:
        one figure, never rounded, so the runtime's peak is never below an invocation's."""
        rss = tree_rss_mb(worker.pid)  # with its forked children, as a Lambda sandbox counts
        if rss > worker.peak_rss_mb:
            worker.peak_rss_mb = rss
            if rss > self.stats["peak_rss_mb"]:
                self.stats["peak_rss_mb"] = rss
        return rss

    def _watch(self) -> None:
        limit = float(self.spec.memory_mb)
        while not self._stop.wait(self.watchdog_interval):
            with self._lock:
                busy = [w for w in self._workers if w.busy]
            for w in busy:
                rss = self._sample_rss(w)
                if rss > limit and not w.oom:
                    w.oom = True
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(w.pid, signal.SIGKILL)
