"""Start-up and exit of the batch CLI as a program (issue 14 start-up):

- it ends its process without the interpreter's teardown (``pipeline.cli.exit_now``) and loses
  nothing by it: the exit status, everything printed (stdout piped, so block-buffered) and the
  output files are all there;
- numpy's OpenBLAS gets one thread (``pipeline.cli.single_threaded_blas``), unless the user set
  ``OPENBLAS_NUM_THREADS``.

Each check runs in a fresh interpreter: both happen only at the command-line entry points, never
when ``main()`` is called in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit import imagegen as g

ROOT = Path(__file__).resolve().parents[2]

#: an ``atexit`` handler that prints: the interpreter's teardown runs it, ``os._exit`` does not
_ENTRY = ("import atexit, runpy, sys; sys.path[:0] = ['.']; "
          "atexit.register(lambda: print('TEARDOWN-RAN', flush=True)); "
          "sys.argv = ['pipeline', *{args!r}]; runpy.run_module('pipeline', run_name='__main__')")


def _python(code: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "IMAGEPIPE_ENGINE": "vips", **extra_env}
    return subprocess.run([sys.executable, "-I", "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_exit_now_flushes_and_keeps_the_status() -> None:
    r = _python("import atexit, sys; sys.path[:0] = ['.']; from pipeline.cli import exit_now; "
                "atexit.register(lambda: print('TEARDOWN-RAN')); "
                "print('summary line'); print('an error', file=sys.stderr); exit_now(3)")
    assert r.returncode == 3
    assert r.stdout == "summary line\n" and r.stderr == "an error\n"


def test_python_m_pipeline_process_skips_the_teardown_and_loses_nothing(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "a.jpg").write_bytes(g.photo_bytes(120, 80, "jpeg"))
    (src / "b.jpg").write_bytes(b"not a jpeg")
    r = _python(_ENTRY.format(args=["process", str(src), "-o", str(out), "--format", "webp", "-j", "1"]))
    assert r.returncode == 1, r.stderr  # one file failed
    assert "1/2 ok, 1 failed" in r.stdout and "a.jpg" in r.stdout  # the summary table and totals line
    assert "b.jpg" in r.stderr
    assert "TEARDOWN-RAN" not in r.stdout  # the process ended in exit_now
    assert sorted(p.name for p in out.iterdir()) == ["a.webp"]


def test_other_commands_keep_the_normal_exit() -> None:
    r = _python(_ENTRY.format(args=["--help"]))
    assert r.returncode == 0 and "TEARDOWN-RAN" in r.stdout


#: what the ``process`` command's ``main`` sees: the variable, and whether numpy was loaded yet
_SPY = ("import os, runpy, sys; sys.path[:0] = ['.']; import pipeline.cli as c; "
        "c.main = lambda argv=None: print(os.environ.get('OPENBLAS_NUM_THREADS'), "
        "'numpy' in sys.modules) or 0; "
        "sys.argv = ['pipeline', 'process', 'x']; runpy.run_module('pipeline', run_name='__main__')")


def test_the_process_command_sets_one_blas_thread_before_numpy_loads() -> None:
    r = _python(_SPY)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "False"]


def test_a_user_choice_of_blas_threads_is_kept() -> None:
    r = _python(_SPY, OPENBLAS_NUM_THREADS="3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["3", "False"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or (os.cpu_count() or 1) < 2,
                    reason="counts threads through /proc, on a machine where OpenBLAS would start more")
def test_numpy_then_starts_no_blas_threads() -> None:
    code = ("import os, sys; sys.path[:0] = ['.']; from pipeline.cli import single_threaded_blas; "
            "single_threaded_blas(); import numpy; print(len(os.listdir('/proc/self/task')))")
    assert _python(code).stdout.strip() == "1"
    # the control: without it OpenBLAS starts a thread per core
    plain = "import os, numpy; print(len(os.listdir('/proc/self/task')))"
    assert int(_python(plain).stdout.strip()) > 1
