"""The Python client of the ImagePipe HTTP API (the dashboard and the CLI use only this).

    from pipeline.client import Client
    c = Client(api_url, api_key)
    job = c.upload_and_process("photo.jpg", {"format": "webp", "resize": {"width": 800}})
    data = c.download(job)

Every API error is raised as the typed exception for its code (``imagepipe.errors``);
connection failures as ``TransportError``; a wait that runs out as ``WaitTimeout``.
Connection errors, 429 and 5xx are retried with exponential backoff; 4xx never are. A POST
that is not idempotent (``/uploads``, ``/sweeps``: each call creates a new record) is retried
only when the API cannot have acted on it: a failed connect, or 429.
"""

from __future__ import annotations

import json
import mimetypes
import random
import time
import xml.etree.ElementTree as ET  # noqa: S405  (parses S3's own error replies, not untrusted XML files)
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

import pipeline  # noqa: F401  (puts lambda_src on sys.path for imagepipe.errors)
from imagepipe.errors import (
    BadRequest,
    ImagePipeError,
    PayloadTooLarge,
    TransientError,
    TransportError,
    WaitTimeout,
    from_code,
)
from imagepipe.service.sniff import SNIFF_BYTES, sniff_image_type

TERMINAL = ("succeeded", "failed")
MAX_BATCH_JOBS = 100  # items per POST /jobs/batch (the API refuses more)
USER_AGENT = "imagepipe-client/0.1"


def sniff_content_type(data: bytes, filename: str | None = None) -> str:
    """The image content type from magic bytes (the service's own sniffer, so the client and
    the API agree), else from the file name, else octet-stream."""
    sniffed = sniff_image_type(data[:SNIFF_BYTES])
    if sniffed is not None:
        return sniffed
    if filename:
        guessed, _ = mimetypes.guess_type(filename)
        if guessed:
            return guessed
    return "application/octet-stream"


def _s3_error(resp: httpx.Response) -> ImagePipeError:
    """Map an S3 POST rejection (XML) to a typed error."""
    code, message = "", resp.text[:300]
    try:
        root = ET.fromstring(resp.content)  # noqa: S314  (S3's reply to our own request)
        code = root.findtext("Code") or ""
        message = root.findtext("Message") or message
    except ET.ParseError:
        pass
    text = f"S3 rejected the upload ({resp.status_code} {code}): {message}".strip()
    if resp.status_code >= 500 or code in {"SlowDown", "ServiceUnavailable", "InternalError"}:
        return TransientError(text)
    if code == "EntityTooLarge":
        return PayloadTooLarge(text)
    return BadRequest(text)


#: POST routes that are safe to repeat: ``/jobs`` returns the same job for the same image + recipe.
IDEMPOTENT_POSTS = frozenset({"/jobs"})

class Client:
    """A small synchronous client for the ImagePipe API."""

    def __init__(self, api_url: str, api_key: str, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.2, transport: httpx.BaseTransport | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self._http = httpx.Client(timeout=timeout, transport=transport,
                                  headers={"user-agent": USER_AGENT})

    # --- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _sleep(self, attempt: int, resp: httpx.Response | None) -> None:
        delay = self.backoff * (2 ** attempt) * (0.5 + random.random())
        if resp is not None and resp.headers.get("retry-after", "").isdigit():
            delay = max(delay, float(resp.headers["retry-after"]))
        time.sleep(min(delay, 10.0))

    def _send(self, method: str, url: str, *, retry: bool = True, idempotent: bool = True,
              **kwargs: Any) -> httpx.Response:
        """Send with retries on connection errors, 429 and 5xx; returns the last response.

        ``idempotent=False`` narrows the retries to failures the server cannot have acted on
        (the connection never opened, or 429), so a retry never creates a second record.
        """
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                resp = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if last or not (idempotent or unsent):
                    raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
                self._sleep(attempt, None)
                continue
            retryable = resp.status_code == 429 or (idempotent and resp.status_code >= 500)
            if retryable and not last:
                self._sleep(attempt, resp)
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _api_error(resp: httpx.Response) -> ImagePipeError:
        try:
            err = resp.json()["error"]
            exc = from_code(str(err["code"]), str(err.get("message", "")), err.get("details"))
        except (ValueError, KeyError, TypeError):
            code = "transient_error" if resp.status_code >= 500 or resp.status_code == 429 else "bad_request"
            exc = from_code(code, f"HTTP {resp.status_code}: {resp.text[:300]}")
        exc.status_code = resp.status_code  # type: ignore[attr-defined]
        return exc

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                ok: tuple[int, ...] = (200, 201, 202, 204), retry: bool = True) -> Any:
        """Call the API; returns the decoded JSON body (``None`` for 204)."""
        headers = {"x-api-key": self.api_key}
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        idempotent = method != "POST" or path in IDEMPOTENT_POSTS
        resp = self._send(method, f"{self.api_url}{path}", retry=retry, idempotent=idempotent, json=json,
                          params=params, headers=headers)
        if resp.status_code not in ok:
            raise self._api_error(resp)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    # --- uploads and jobs ---------------------------------------------------------------------

    def upload(self, source: str | Path | bytes, filename: str | None = None, content_type: str | None = None,
               recipe: dict[str, Any] | None = None, preset: str | None = None) -> dict[str, Any]:
        """Presign, then POST the bytes straight to S3. With ``recipe`` the S3 event path
        processes the image by itself; the returned dict then carries its ``job_id``."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            filename = filename or "upload"
        else:
            path = Path(source)
            data = path.read_bytes()
            filename = filename or path.name
        content_type = content_type or sniff_content_type(data, filename)
        if filename == "upload" and content_type.startswith("image/"):
            filename = f"upload.{content_type.split('/')[1].replace('jpeg', 'jpg')}"
        body: dict[str, Any] = {"filename": filename, "content_type": content_type, "size": len(data)}
        if recipe is not None:
            body["recipe"] = recipe
        if preset is not None:
            body["preset"] = preset
        presigned = self.request("POST", "/uploads", json=body, ok=(201,))
        upload = presigned["upload"]
        resp = self._send("POST", upload["url"], data=upload["fields"],
                          files={"file": (filename, data, content_type)})
        if resp.status_code not in (200, 201, 204):
            raise _s3_error(resp)
        return {**presigned, "filename": filename, "content_type": content_type, "bytes": len(data)}

    def upload_direct(self, source: str | Path | bytes, filename: str | None = None,
                      content_type: str | None = None, recipe: dict[str, Any] | None = None,
                      preset: str | None = None, form: bool = True) -> dict[str, Any]:
        """``POST /images``: the bytes go to the API itself (up to its body cap, 4,706,304 bytes;
        larger files: :meth:`upload`). ``form`` sends ``multipart/form-data``, else the raw body
        with the options as query parameters. Returns the 201 body (``job_id`` with a recipe or
        preset). Not retried after a 5xx: each call creates an image."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            path = Path(source)
            data = path.read_bytes()
            filename = filename or path.name
        content_type = content_type or sniff_content_type(data, filename)
        headers = {"x-api-key": self.api_key}
        options: dict[str, str] = {}
        if filename:
            options["filename"] = filename
        if recipe is not None:
            options["recipe"] = json.dumps(recipe)
        if preset is not None:
            options["preset"] = preset
        url = f"{self.api_url}/images"
        if form:
            resp = self._send("POST", url, idempotent=False, headers=headers, data=options,
                              files={"file": (filename or "upload", data, content_type)})
        else:
            resp = self._send("POST", url, idempotent=False, params=options, content=data,
                              headers={**headers, "content-type": content_type})
        if resp.status_code != 201:
            raise self._api_error(resp)
        return resp.json()

    def presets(self) -> dict[str, Any]:
        """``GET /presets``: ``{"items": [{name, description, recipe, recipe_hash}], "default",
        "drop_rules", "drop_default"}``, what the service resolves preset names to."""
        return self.request("GET", "/presets")

    def process(self, image_id: str, recipe: dict[str, Any] | None = None,
                preset: str | None = None) -> dict[str, Any]:
        """Queue a job (202); a duplicate request returns the same ``job_id``."""
        return self.request("POST", "/jobs", json=_job_body(image_id, recipe, preset), ok=(202,))

    def process_many(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Queue many jobs (``{"image_id", "recipe", "preset"?}`` each) with ``POST /jobs/batch``,
        up to ``MAX_BATCH_JOBS`` per request. One outcome per item, in order: the accepted job
        (as :meth:`process` returns it) or ``{"image_id", "error": {"code", "message"}}``."""
        bodies = [_job_body(it["image_id"], it.get("recipe"), it.get("preset")) for it in items]
        out: list[dict[str, Any]] = []
        for start in range(0, len(bodies), MAX_BATCH_JOBS):
            resp = self.request("POST", "/jobs/batch", json={"items": bodies[start:start + MAX_BATCH_JOBS]},
                                ok=(202,))
            out.extend(resp["items"])
        return out

    def get_job(self, job_id: str) -> dict[str, Any]:
        """One job with its result (and a fresh ``download_url``) or error."""
        return self.request("GET", f"/jobs/{job_id}")

    def wait(self, job_id: str, timeout: float = 60.0, interval: float = 0.05,
             raise_on_failure: bool = False) -> dict[str, Any]:
        """Poll until the job is ``succeeded`` or ``failed``; ``WaitTimeout`` after ``timeout`` s.
        A failed job is returned (or raised as its typed error with ``raise_on_failure``).
        The first check comes ``interval`` s after the first read, then 1.5× later each time up
        to 1 s: a small job (≈ 0.1 s through the local stack) is seen done within ~50 ms of
        finishing, a long one costs about one request a second."""
        job = self._poll(lambda: self.get_job(job_id), timeout, interval,
                         lambda j: f"job {job_id} still {j.get('status')} after {timeout:g} s")
        if raise_on_failure and job["status"] == "failed":
            err = job.get("error") or {}
            raise from_code(err.get("code", "internal_error"), err.get("message", "job failed"))
        return job

    @staticmethod
    def _poll(fetch: Callable[[], dict[str, Any]], timeout: float, interval: float,
              timeout_message: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
        """Call ``fetch`` with growing pauses (up to 1 s) until its ``status`` is terminal;
        ``WaitTimeout`` with ``timeout_message(last)`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = interval
        while True:
            item = fetch()
            if item.get("status") in TERMINAL:
                return item
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(timeout_message(item))
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 1.0)

    def upload_and_process(self, source: str | Path | bytes, recipe: dict[str, Any] | None = None, *,
                           filename: str | None = None, content_type: str | None = None,
                           preset: str | None = None, via: str = "api", timeout: float = 60.0,
                           raise_on_failure: bool = False) -> dict[str, Any]:
        """Upload, process and wait. ``via="api"`` sends ``POST /jobs`` after the upload;
        ``via="s3"`` attaches the recipe to the upload so the S3 event starts the job."""
        if via not in ("api", "s3"):
            raise ValueError("via must be 'api' or 's3'")
        if via == "s3":
            up = self.upload(source, filename, content_type, recipe=recipe or {}, preset=preset)
            job_id = up["job_id"]
        else:
            up = self.upload(source, filename, content_type)
            job_id = self.process(up["image_id"], recipe, preset=preset)["job_id"]
        return self.wait(job_id, timeout=timeout, raise_on_failure=raise_on_failure)

    # --- listings, images -----------------------------------------------------------------

    def list_jobs(self, limit: int = 20, cursor: str | None = None, **filters: Any) -> dict[str, Any]:
        """One page of jobs, newest first: ``{"items", "next_cursor"}``. ``filters``: ``from``/``to``
        (``YYYY-MM-DD``; pass ``**{"from": ...}``), ``status``, ``format``, ``preset``, ``arrival``
        (a string or a list of values)."""
        return self.request("GET", "/jobs", params={"limit": limit, "cursor": cursor, **_filters(filters)})

    def stats(self, **filters: Any) -> dict[str, Any]:
        """History's figures from the rollups (``GET /stats``), filtered like :meth:`list_jobs`."""
        return self.request("GET", "/stats", params=_filters(filters))

    def create_export(self, **filters: Any) -> dict[str, Any]:
        """Start a server-side CSV export of every matching job (``POST /exports``)."""
        return self.request("POST", "/exports", json=_filters(filters))

    def get_export(self, export_id: str) -> dict[str, Any]:
        """An export's progress and, once done, its ``download_url``."""
        return self.request("GET", f"/exports/{export_id}")

    def list_images(self, limit: int = 20, cursor: str | None = None,
                    arrival: str | None = None) -> dict[str, Any]:
        """One page of images, newest first: ``{"items", "next_cursor"}`` (``arrival`` as for jobs)."""
        return self.request("GET", "/images", params={"limit": limit, "cursor": cursor, "arrival": arrival})

    def iter_jobs(self, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every job, newest first, fetching pages lazily."""
        yield from self._iter(self.list_jobs, page_size)

    def iter_images(self, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every image, newest first, fetching pages lazily."""
        yield from self._iter(self.list_images, page_size)

    @staticmethod
    def _iter(fetch: Any, page_size: int) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = fetch(limit=page_size, cursor=cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def get_image(self, image_id: str) -> dict[str, Any]:
        """An image: facts, the original's ``download_url`` and all its jobs."""
        return self.request("GET", f"/images/{image_id}")

    def delete_image(self, image_id: str) -> None:
        """Delete the original, its outputs and its records."""
        self.request("DELETE", f"/images/{image_id}", ok=(204,))

    def download(self, url_or_job: str | dict[str, Any]) -> bytes:
        """The bytes behind a presigned URL, a job dict or a job id."""
        if isinstance(url_or_job, dict):
            url = (url_or_job.get("result") or {}).get("download_url") or url_or_job.get("download_url")
            if not url and url_or_job.get("job_id"):
                url = (self.get_job(url_or_job["job_id"]).get("result") or {}).get("download_url")
        elif url_or_job.startswith(("http://", "https://")):
            url = url_or_job
        else:
            url = (self.get_job(url_or_job).get("result") or {}).get("download_url")
        if not url:
            raise BadRequest("nothing to download: the job has no result yet")
        resp = self._send("GET", url)  # presigned: no API key goes to S3
        if resp.status_code != 200:
            code = "not_found" if resp.status_code == 404 else (
                "transient_error" if resp.status_code >= 500 else "bad_request")
            raise from_code(code, f"download failed with HTTP {resp.status_code}: {resp.text[:200]}")
        return resp.content

    # --- sweeps (the compression lab, docs/lab.md) --------------------------------------------

    def sweep(self, image_id: str, grid: dict[str, Any],
              resize: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a sweep (202): ``{"sweep_id", "status", "parts", "cells"}``. ``grid`` is
        ``{"formats": [...], "qualities": [...], "option"?: {"name", "values"}}``."""
        body: dict[str, Any] = {"image_id": image_id, "grid": grid}
        if resize is not None:
            body["resize"] = resize
        return self.request("POST", "/sweeps", json=body, ok=(202,))

    def get_sweep(self, sweep_id: str) -> dict[str, Any]:
        """A sweep: ``status``, ``progress`` and the ``points`` measured so far."""
        return self.request("GET", f"/sweeps/{sweep_id}")

    def list_sweeps(self, limit: int = 20, cursor: str | None = None,
                    image_id: str | None = None) -> dict[str, Any]:
        """One page of sweeps, newest first (without points)."""
        return self.request("GET", "/sweeps", params={"limit": limit, "cursor": cursor, "image_id": image_id})

    def wait_sweep(self, sweep_id: str, timeout: float = 120.0, interval: float = 0.3) -> dict[str, Any]:
        """Poll until the sweep is ``succeeded`` or ``failed``; ``WaitTimeout`` after ``timeout`` s."""
        return self._poll(lambda: self.get_sweep(sweep_id), timeout, interval,
                          lambda s: f"sweep {sweep_id} still {s.get('status')} after {timeout:g} s "
                                    f"({(s.get('progress') or {}).get('fraction', 0):.0%} done)")

    def study(self, image_ids: list[str], grid: dict[str, Any], resize: dict[str, Any] | None = None,
              baseline: str = "jpeg:turbo", name: str | None = None) -> dict[str, Any]:
        """Start a corpus study (202): one sweep per image; ``{"study_id", "sweeps", "cells", ...}``."""
        body: dict[str, Any] = {"image_ids": list(image_ids), "grid": grid, "baseline": baseline}
        if resize is not None:
            body["resize"] = resize
        if name:
            body["name"] = name
        return self.request("POST", "/studies", json=body, ok=(202,))

    def get_study(self, study_id: str) -> dict[str, Any]:
        """A study: ``status``, ``progress``, per-image ``images``, the ``summary`` and ``versions``."""
        return self.request("GET", f"/studies/{study_id}")

    def list_studies(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of studies, newest first."""
        return self.request("GET", "/studies", params={"limit": limit, "cursor": cursor})

    def wait_study(self, study_id: str, timeout: float = 300.0, interval: float = 0.5) -> dict[str, Any]:
        """Poll until the study is ``succeeded`` or ``failed``; ``WaitTimeout`` after ``timeout`` s."""
        return self._poll(lambda: self.get_study(study_id), timeout, interval,
                          lambda s: f"study {study_id} still {s.get('status')} after {timeout:g} s "
                                    f"({(s.get('progress') or {}).get('fraction', 0):.0%} done)")

    def health(self) -> dict[str, Any]:
        """Component checks; returned for 200 (ok) and 503 (degraded) alike."""
        return self.request("GET", "/health", ok=(200, 503), retry=False)


def _filters(filters: Mapping[str, Any]) -> dict[str, str]:
    """History filters as the API takes them: lists become comma-separated, empties are dropped."""
    out: dict[str, str] = {}
    for name, value in filters.items():
        if value is None or value == "" or value == [] or value == ():
            continue
        out[name] = ",".join(str(v) for v in value) if isinstance(value, (list, tuple, set, frozenset)) \
            else str(value)
    return out


def _job_body(image_id: str, recipe: dict[str, Any] | None, preset: str | None) -> dict[str, Any]:
    """One job request as ``POST /jobs`` and each ``POST /jobs/batch`` item take it."""
    body: dict[str, Any] = {"image_id": image_id}
    if recipe is not None or preset is None:  # a preset alone resolves to its recipe server-side
        body["recipe"] = recipe or {}
    if preset is not None:
        body["preset"] = preset
    return body
