"""Attempts and deadlines on the job record (service/records.py, service/jobs.py) against moto:
a claim keeps its attempt's deadline, the next claim sees an attempt that never ended, a killed
attempt fails the job instead of rerunning it, a transient failure ends its attempt."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagepipe.core.budget import Budget
from imagepipe.errors import JobTimeout, TransientError
from imagepipe.service.jobs import JobRunner, new_job
from imagepipe.service.records import ISO_FORMAT, now_iso
from tests.unit.service_env import HASH, FakeEngine, mocked_backend


@pytest.fixture
def backend():
    with mocked_backend() as b:
        yield b


def _job(backend) -> str:
    image_id = uuid.uuid4().hex
    key = f"{backend.config.upload_prefix}{image_id}/a.png"
    image = {"image_id": image_id, "key": key, "filename": "a.png", "status": "uploaded",
             "created_at": now_iso(), "recipe": None, "recipe_hash": None}
    backend.records.put_image(image)
    backend.clients.s3.put_object(Bucket=backend.config.source_bucket, Key=key, Body=b"ORIGINAL")
    job = new_job(image, {"format": "webp"}, HASH, trigger="api", preset=None)
    backend.records.create_job(job)
    return job["job_id"]


def _iso(dt: datetime) -> str:
    return dt.strftime(ISO_FORMAT)


@dataclass
class BudgetEngine(FakeEngine):
    """A FakeEngine that also takes the budget (and remembers it)."""

    budgets: list[Any] | None = None

    def __call__(self, data: bytes, recipe: Any, limits: Any, budget: Any = None) -> Any:  # type: ignore[override]
        self.budgets = [*(self.budgets or []), budget]
        return super().__call__(data, recipe, limits)


def test_claims_keep_the_attempt_deadline_and_report_an_unended_previous_attempt(backend):
    job_id = _job(backend)
    d1 = _iso(datetime.now(UTC) + timedelta(seconds=60))
    first = backend.records.claim_job(job_id, d1)
    assert first["attempts"] == 1 and first["attempt_deadline_at"] == d1 and "previous_attempt" not in first
    assert backend.records.get_job(job_id)["attempt_deadline_at"] == d1
    second = backend.records.claim_job(job_id, _iso(datetime.now(UTC) + timedelta(seconds=120)))
    assert second["attempts"] == 2
    assert second["previous_attempt"] == {"attempt": 1, "started_at": first["started_at"], "deadline_at": d1}
    # an attempt that ended without a verdict (transient) is not reported by the next claim
    assert backend.records.end_attempt(job_id)
    assert "attempt_deadline_at" not in backend.records.get_job(job_id)
    third = backend.records.claim_job(job_id, d1)
    assert third["attempts"] == 3 and "previous_attempt" not in third
    # a claim without a deadline (no budget) leaves none behind
    assert "attempt_deadline_at" not in backend.records.claim_job(job_id)


def test_a_killed_attempt_fails_the_job_without_running_the_engine(backend):
    job_id = _job(backend)
    past = datetime.now(UTC) - timedelta(seconds=5)
    backend.records.claim_job(job_id, _iso(past))  # an attempt whose deadline passed, never ended
    engine = BudgetEngine()
    budget = Budget.from_remaining(30_000)
    assert JobRunner(backend, engine=engine).run(job_id, budget=budget) == "failed"
    job = backend.records.get_job(job_id)
    assert job["error"]["code"] == "attempt_killed" and job["attempts"] == 2
    assert engine.calls == []


def test_a_previous_attempt_still_within_its_deadline_runs_as_before(backend):
    job_id = _job(backend)
    backend.records.claim_job(job_id, _iso(datetime.now(UTC) + timedelta(seconds=60)))
    engine = BudgetEngine()
    budget = Budget.from_remaining(30_000)
    assert JobRunner(backend, engine=engine).run(job_id, budget=budget) == "succeeded"
    assert engine.budgets == [budget]  # the engine got the invocation's budget
    job = backend.records.get_job(job_id)
    deadline = datetime.strptime(job["attempt_deadline_at"], ISO_FORMAT).replace(tzinfo=UTC)
    assert 20 < (deadline - datetime.now(UTC)).total_seconds() <= 30  # this attempt's deadline


def test_a_timeout_fails_the_job_and_is_not_raised_for_a_retry(backend):
    job_id = _job(backend)
    runner = JobRunner(backend, engine=BudgetEngine(error=JobTimeout("stopped after 55 s")))
    assert runner.run_guarded(job_id, final_attempt=False, budget=Budget.from_remaining(30_000)) == "failed"
    assert backend.records.get_job(job_id)["error"]["code"] == "timeout"


def test_a_transient_failure_ends_the_attempt_so_the_redelivery_runs(backend):
    job_id = _job(backend)
    budget = Budget(deadline=time.monotonic() - 1, total_ms=1000)  # the redelivery comes after it
    runner = JobRunner(backend, engine=BudgetEngine(error=TransientError("S3 blip")))
    with pytest.raises(TransientError):
        runner.run_guarded(job_id, final_attempt=False, budget=budget)
    assert "attempt_deadline_at" not in backend.records.get_job(job_id)
    ok = JobRunner(backend, engine=BudgetEngine())
    assert ok.run_guarded(job_id, final_attempt=False, budget=Budget.from_remaining(30_000)) == "succeeded"


def test_the_processor_builds_the_budget_from_the_lambda_context():
    from imagepipe.handlers.processor import engine_budget
    from pipeline.stack.runtime import LambdaContext

    ctx = LambdaContext("req", "imagepipe-processor", 1024, time.time() * 1000 + 60_000)
    budget = engine_budget(ctx)
    assert budget is not None and budget.memory_mb == 1024.0
    assert 54_000 < budget.left_ms() <= 55_000  # 60 s minus the 5 s reserve
    assert engine_budget(object()) is None  # no context to ask: no budget
