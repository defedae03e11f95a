"""Concurrent requests must each get their own answer.

Lambda runs one request at a time per execution environment, and handlers rely on that
(Powertools' resolver keeps the current event and route arguments on a module-level app).
The local API Gateway serves many connections at once, so it must not let two requests into
the same handler instance concurrently. Found by the load test: a 500 "get_job() missing
1 required positional argument" under 16 concurrent clients.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.reliability.conftest import upload, wait_jobs

N_IMAGES = 6
ROUNDS = 60


@pytest.mark.slow
def test_concurrent_requests_never_mix_up_route_arguments(local_stack):
    replies = [upload(local_stack, b"not an image", f"c{i}.jpg", recipe={"format": "png"})
               for i in range(N_IMAGES)]
    wait_jobs(local_stack, [r["job_id"] for r in replies])
    targets = [(f"/jobs/{r['job_id']}", "job_id", r["job_id"]) for r in replies]
    targets += [(f"/images/{r['image_id']}", "image_id", r["image_id"]) for r in replies]
    headers = {"x-api-key": local_stack.api_key}

    def hit(i: int) -> tuple[str, int, str | None]:
        path, field, want = targets[i % len(targets)]
        with httpx.Client(base_url=local_stack.api_url, headers=headers, timeout=30) as c:
            r = c.get(path)
        got = r.json().get(field) if r.status_code == 200 else None
        return f"{path} -> {r.status_code} {got}", r.status_code, None if got == want else want

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(hit, range(len(targets) * ROUNDS)))
    wrong = [line for line, status, mismatch in results if status != 200 or mismatch]
    assert wrong == [], f"{len(wrong)} of {len(results)} concurrent requests got a wrong answer: {wrong[:5]}"
