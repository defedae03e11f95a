"""Top-level fixtures: the embedded local stack for integration, app and browser tests.

- ``local_stack``   (session) one LocalStack on ephemeral ports in a temp data dir, with
                    short timeouts for tests; shared by every test that asks for it.
- ``serve_process`` (function) a factory for ``python -m pipeline serve`` subprocesses on a
                    given data dir: stop (SIGTERM) or kill (SIGKILL) and start again on the
                    same dir for restart and crash tests.
- ``make_stack``    (function) a factory for extra in-process LocalStacks (stopped at the end).

Tests under ``tests/integration`` get the ``integration`` marker automatically.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

#: settings for stacks started by tests: quick redelivery, bounded runs, a fast reconciler
TEST_STACK_SETTINGS: dict[str, Any] = {
    "workers": 2,
    "visibility_timeout": 3,
    "processor_timeout": 20,
    "max_receive_count": 3,
    "reconcile_interval": 1.0,
}
TEST_API_KEY = "test-api-key-0123456789abcdef"

_INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration as ``integration``."""
    for item in items:
        if _INTEGRATION_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The whole local stack (emulator, workers, reconciler, API) for the test session."""
    os.environ.setdefault("IMAGEPIPE_LOG_LEVEL", "WARNING")
    from pipeline.stack.serve import LocalStack

    data_dir = tmp_path_factory.mktemp("local-stack")
    stack = LocalStack(data_dir=data_dir, port=0, api_key=TEST_API_KEY, **TEST_STACK_SETTINGS)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: ``serve_process(data_dir=None, **kw)`` starts ``python -m pipeline serve``.

    Every process it started is stopped at the end of the test.
    """
    from pipeline.stack.testing import ServeProcess

    started: list[ServeProcess] = []

    def _start(data_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> ServeProcess:
        args = kwargs.pop("extra_args", None) or [
            "--visibility-timeout",
            str(TEST_STACK_SETTINGS["visibility_timeout"]),
            "--processor-timeout",
            str(TEST_STACK_SETTINGS["processor_timeout"]),
            "--max-receive-count",
            str(TEST_STACK_SETTINGS["max_receive_count"]),
            "--reconcile-interval",
            str(TEST_STACK_SETTINGS["reconcile_interval"]),
        ]
        kwargs.setdefault("api_key", TEST_API_KEY)
        kwargs.setdefault("env", {"IMAGEPIPE_LOG_LEVEL": "WARNING"})
        proc = ServeProcess(data_dir or tmp_path / "serve", extra_args=args, **kwargs)
        started.append(proc)
        return proc.start()

    yield _start
    for proc in started:
        proc.stop()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: ``make_stack(data_dir=None, **overrides)`` starts an extra in-process LocalStack.

    Prefer ``serve_process`` for restart/crash tests. Two in-process stacks can run at once
    (each has its own emulator process and workers), but the API handler modules are
    re-imported for the newest one, so keep their lifetimes simple.
    """
    from pipeline.stack.serve import LocalStack

    stacks: list[Any] = []

    def _start(data_dir: str | os.PathLike[str] | None = None, **overrides: Any) -> Any:
        settings = {**TEST_STACK_SETTINGS, "api_key": TEST_API_KEY, **overrides}
        stack = LocalStack(data_dir=data_dir or tmp_path / "stack", port=0, **settings)
        stacks.append(stack)
        return stack.start()

    yield _start
    for stack in stacks:
        stack.stop()
