"""A batch of files being processed in the background while the page keeps rendering.

Each file goes upload -> queued -> running -> succeeded | failed on a small thread pool that
only calls ``pipeline.client`` (no Streamlit calls off the script thread). The Process page's
fragment re-renders the shared state every second, so results appear as they finish and a
failed file never stops the others.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from imagepipe.errors import ImagePipeError

#: stage -> (progress fraction, label)
STAGES: dict[str, tuple[float, str]] = {
    "pending": (0.0, "waiting"),
    "uploading": (0.15, "uploading"),
    "queued": (0.4, "queued"),
    "running": (0.65, "running"),
    "downloading": (0.9, "fetching result"),
    "succeeded": (1.0, "done"),
    "failed": (1.0, "failed"),
}
TERMINAL = frozenset({"succeeded", "failed"})
JOB_TIMEOUT_S = 180.0
UPLOAD_WORKERS = 3


@dataclass
class FileTask:
    """One file of a batch and everything known about it so far."""

    name: str
    data: bytes
    content_type: str
    task_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    stage: str = "pending"
    image_id: str | None = None
    job_id: str | None = None
    job: dict[str, Any] | None = None
    output: bytes | None = None
    error_code: str | None = None
    error_message: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def progress(self) -> float:
        """0..1 for the progress bar."""
        return STAGES.get(self.stage, (0.0, ""))[0]

    @property
    def label(self) -> str:
        """Human label of the current stage."""
        return STAGES.get(self.stage, (0.0, self.stage))[1]

    @property
    def done(self) -> bool:
        """True once the file succeeded or failed."""
        return self.stage in TERMINAL


def _field(obj: Any, name: str) -> Any:
    """``obj[name]`` / ``obj.name`` for dict- or object-shaped client results."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _as_id(value: Any, name: str) -> str:
    """The id from a client call that returns either the id itself or a dict/object holding it."""
    if isinstance(value, str):
        return value
    found = _field(value, name)
    if not found:
        raise ImagePipeError(f"the client returned no {name}")
    return str(found)


class Batch:
    """Runs ``tasks`` through ``client`` with ``recipe`` on background threads."""

    def __init__(
        self,
        client: Any,
        recipe: dict[str, Any],
        tasks: list[FileTask],
        label: str = "custom",
        preset: str | None = None,
        workers: int = UPLOAD_WORKERS,
        poll_s: float = 0.25,
        job_timeout_s: float = JOB_TIMEOUT_S,
    ) -> None:
        self.client = client
        self.recipe = recipe
        self.label = label
        self.preset = preset
        self.tasks = tasks
        self.batch_id = uuid.uuid4().hex[:8]
        self._poll_s = poll_s
        self._job_timeout_s = job_timeout_s
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(workers, len(tasks) or 1)), thread_name_prefix="imagepipe-batch"
        )
        self._lock = threading.Lock()

    def start(self) -> Batch:
        """Submit every file; returns immediately."""
        for task in self.tasks:
            self._pool.submit(self._guarded, task)
        self._pool.shutdown(wait=False)
        return self

    @property
    def done(self) -> bool:
        """True when every file reached a terminal stage."""
        return all(t.done for t in self.tasks)

    def counts(self) -> dict[str, int]:
        """Number of files per stage."""
        out: dict[str, int] = {}
        for t in self.tasks:
            out[t.stage] = out.get(t.stage, 0) + 1
        return out

    def wait(self, timeout: float, on_tick: Callable[[], None] | None = None) -> bool:
        """Block until done or ``timeout`` (used by tests and scripts, not by the page)."""
        deadline = time.monotonic() + timeout
        while not self.done and time.monotonic() < deadline:
            if on_tick:
                on_tick()
            time.sleep(0.1)
        return self.done

    # --- worker side --------------------------------------------------------------------

    def _guarded(self, task: FileTask) -> None:
        try:
            self._run(task)
        except ImagePipeError as exc:
            self._fail(task, exc.code, exc.message)
        except Exception as exc:  # an unexpected bug must still end the file visibly
            self._fail(task, "unexpected_error", f"{type(exc).__name__}: {exc}")

    def _fail(self, task: FileTask, code: str, message: str) -> None:
        task.error_code, task.error_message = code, message
        task.finished = time.monotonic()
        task.stage = "failed"

    def _run(self, task: FileTask) -> None:
        task.stage = "uploading"
        uploaded = self.client.upload(task.data, filename=task.name, content_type=task.content_type)
        task.image_id = _as_id(uploaded, "image_id")
        submitted = self.client.process(task.image_id, self.recipe, preset=self.preset)
        task.job_id = _as_id(submitted, "job_id")
        task.stage = "queued"
        deadline = time.monotonic() + self._job_timeout_s
        delay = self._poll_s
        while True:
            job = self.client.get_job(task.job_id)
            task.job = job if isinstance(job, dict) else dict(vars(job))
            status = str(task.job.get("status", "queued"))
            if status == "failed":
                err = task.job.get("error") or {}
                self._fail(task, str(err.get("code", "failed")), str(err.get("message", "the job failed")))
                return
            if status == "succeeded":
                break
            if status in ("queued", "running"):
                task.stage = status
            if time.monotonic() > deadline:
                self._fail(
                    task,
                    "wait_timeout",
                    f"job {task.job_id} did not finish within {self._job_timeout_s:.0f} s",
                )
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
        task.stage = "downloading"
        task.output = self.client.download(task.job)
        task.finished = time.monotonic()
        task.stage = "succeeded"
