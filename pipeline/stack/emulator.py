"""The AWS emulator: moto's server (S3, DynamoDB, SQS) behind POST-policy and journal middleware.

It runs in its own process (``python -m pipeline.stack.emulator``) so that each stack has
its own moto state (moto's backends are process-global), moto's request handling does not
compete for the GIL with the API handler, and a stack can be stopped and started again
within one Python process. :class:`Emulator` starts and stops that process; the child
exits on its own when its parent's pipe closes (even if the parent was SIGKILLed).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

DEFAULT_CREDENTIALS = {"testing": "testing"}
READY_PREFIX = "EMULATOR_READY "
ERROR_PREFIX = "EMULATOR_ERROR "
log = logging.getLogger("imagepipe.stack.emulator")


# ----------------------------------------------------------------------------- child side
def build_app(data_dir: Path, credentials: Mapping[str, str]) -> tuple[Any, Any, dict[str, int]]:
    """moto's WSGI app wrapped by the middleware, with the journal replayed into it.

    Returns ``(wsgi_app, journal_middleware, replay_counts)``.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from pipeline.stack import moto_counters, moto_query, moto_speedups, moto_transactions
    from pipeline.stack.journal import Journal
    from pipeline.stack.persistence import JournalMiddleware, replay
    from pipeline.stack.post_policy import PostPolicyMiddleware

    moto_speedups.install()  # same responses, less per-request work (see the module)
    moto_transactions.install()  # transactions undo item by item, not by copying whole tables
    moto_counters.install()  # a rollup's counter ADDs skip moto's generic expression engine
    moto_query.install()  # a query reads its partition, not a sorted copy of the whole table
    moto_app = DomainDispatcherApplication(create_backend_app)
    journal = Journal(data_dir)
    records = journal.open()
    started = time.perf_counter()
    counts = replay(moto_app, records)
    counts["replay_ms"] = int((time.perf_counter() - started) * 1000)
    counts["torn_bytes"] = journal.torn_bytes
    counts["records"] = len(records)
    middleware = JournalMiddleware(moto_app, journal)
    middleware.compact = lambda: compact_journal(journal)  # type: ignore[attr-defined]
    middleware.activate()
    from pipeline.stack.faults import wrap_if_enabled  # test-only, off unless IMAGEPIPE_TEST_FAULTS=1

    return wrap_if_enabled(PostPolicyMiddleware(middleware, credentials), os.environ), middleware, counts


def compact_journal(journal: Any) -> str:
    """Compact on a clean stop: fold the SQS ledger; when the journal holds at least
    ``IMAGEPIPE_COMPACT_MIN_RECORDS`` (default 500) DynamoDB item writes, also replace them by
    one ``PutItem`` per live item, if a replay of the result in a fresh process reproduces the
    live state exactly. Returns what was done."""
    from pipeline.stack.compaction import _is_ddb_item_write, compact, digest, verify
    from pipeline.stack.persistence import compacted

    records = records_since_open(journal)
    threshold = max(1, int(os.environ.get("IMAGEPIPE_COMPACT_MIN_RECORDS", "500")))
    if sum(1 for r in records if r.header.get("t") == "http" and _is_ddb_item_write(r)) >= threshold:
        candidate = compact(records)
        if verify(candidate, digest()):
            journal.rewrite(candidate)
            return "full"
        log.warning("compacted journal did not reproduce the live state; keeping the full history")
    journal.rewrite(compacted(records))
    return "sqs"


def records_since_open(journal: Any) -> list[Any]:
    """Every intact record currently in the journal file."""
    from pipeline.stack.journal import iter_file

    return list(iter_file(journal.path))


def _quiet_handler() -> type:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietHandler(MotoRequestHandler):
        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            return None

    return QuietHandler


def serve(
    host: str, port: int, data_dir: Path, credentials: Mapping[str, str], compact: bool, ready_out: IO[str]
) -> None:
    """Run the emulator until stdin closes or SIGTERM/SIGINT arrives."""
    from werkzeug.serving import make_server

    lock = _lock_data_dir(data_dir)
    if lock is None:
        ready_out.write(f"{ERROR_PREFIX}data dir {data_dir} is in use by another running stack\n")
        ready_out.flush()
        raise SystemExit(3)
    app, middleware, counts = build_app(data_dir, credentials)
    server = make_server(host, port, app, threaded=True, request_handler=_quiet_handler())
    gc.collect()
    gc.freeze()  # moto's modules and the replayed state are long-lived: keep them out of GC scans
    real_port = server.server_address[1]
    stop = threading.Event()

    def _shutdown(*_args: Any) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    def _watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read(1):
                pass
        except (OSError, ValueError):
            pass
        _shutdown()

    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    threading.Thread(target=_watch_stdin, daemon=True, name="stdin-watch").start()
    ready_out.write(
        READY_PREFIX + json.dumps({"port": real_port, "pid": os.getpid(), "replay": counts}) + "\n"
    )
    ready_out.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        with middleware.lock:  # no mutation in flight while the journal closes
            if compact:
                try:
                    middleware.compact()
                except Exception as exc:  # compaction is an optimisation; the journal stays valid
                    log.warning("journal compaction failed: %s", exc)
            middleware.journal.close()


def _lock_data_dir(data_dir: Path) -> IO[str] | None:
    """Hold an exclusive lock on the data dir for this process's lifetime (None if taken).

    Two emulators appending to one journal would corrupt it; the kernel drops the lock when
    the process dies, even on SIGKILL.
    """
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    fh = open(data_dir / "LOCK", "a+", encoding="utf-8")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def parse_credentials(raw: str | None) -> dict[str, str]:
    """``"AKID:SECRET,AKID2:SECRET2"`` -> dict (default: the local stack's dummy credentials)."""
    if not raw:
        return dict(DEFAULT_CREDENTIALS)
    out: dict[str, str] = {}
    for pair in raw.split(","):
        key, _, secret = pair.partition(":")
        if key and secret:
            out[key.strip()] = secret.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the emulator process."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.stack.emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--no-compact", action="store_true", help="do not compact the journal on shutdown")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s emulator %(levelname)s %(message)s")
    creds = parse_credentials(os.environ.get("IMAGEPIPE_EMULATOR_CREDENTIALS"))
    serve(args.host, args.port, Path(args.data_dir), creds, not args.no_compact, sys.stdout)
    return 0


# ---------------------------------------------------------------------------- parent side
class EmulatorError(RuntimeError):
    """The emulator process failed to start."""


class Emulator:
    """Starts/stops the emulator process and knows its endpoint."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Mapping[str, str] | None = None,
        compact: bool = True,
        start_timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.credentials = dict(credentials or DEFAULT_CREDENTIALS)
        self.compact = compact
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.replay_counts: dict[str, int] = {}
        self._log: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Emulator:
        """Spawn the process, wait for its ready line (the journal has been replayed by then)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["IMAGEPIPE_EMULATOR_CREDENTIALS"] = ",".join(f"{k}:{v}" for k, v in self.credentials.items())
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
        )
        cmd = [
            sys.executable,
            "-m",
            "pipeline.stack.emulator",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        if not self.compact:
            cmd.append("--no-compact")
        self._log = open(self.data_dir / "emulator.log", "ab")  # noqa: SIM115 - kept for the child's lifetime
        # its own session: a terminal's Ctrl-C reaches the stack, which stops the emulator last
        # (by closing its stdin), after the workers that still talk to it
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line_box: list[bytes] = []
        reader = threading.Thread(
            target=lambda: line_box.append(self.proc.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(self.start_timeout)
        line = line_box[0].decode() if line_box else ""
        if line.startswith(ERROR_PREFIX):
            self.stop()
            raise EmulatorError(line[len(ERROR_PREFIX) :].strip())
        if not line.startswith(READY_PREFIX):
            self.stop()
            tail = (self.data_dir / "emulator.log").read_text(errors="replace")[-2000:]
            raise EmulatorError(f"emulator did not start (got {line!r}); log tail:\n{tail}")
        info = json.loads(line[len(READY_PREFIX) :])
        self.port = int(info["port"])
        self.replay_counts = info.get("replay", {})
        return self

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 120.0) -> None:
        """Graceful stop (close its stdin: it finishes in-flight requests and closes the journal)."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the process (fault tests: a hard crash of the emulator)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.stop()


if __name__ == "__main__":
    raise SystemExit(main())
