"""The whole local stack in one object: emulator, provisioning, runtimes, triggers, gateway.

    with LocalStack(data_dir=".imagepipe", port=0) as stack:
        print(stack.api_url, stack.api_key)

``python -m pipeline serve`` wraps this with flags and signal handling (:func:`main`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.stack.apigw import ApiConfig, ApiGatewayServer, Route
from pipeline.stack.emulator import DEFAULT_CREDENTIALS, Emulator
from pipeline.stack.event_source import ScheduledTrigger, SqsEventSource
from pipeline.stack.provision import Provisioned, clients, expected_resources, provision
from pipeline.stack.resources import REGION, FunctionDef, StackDefinition, load_template, read_definition
from pipeline.stack.runtime import FunctionSpec, LambdaRuntime

log = logging.getLogger("imagepipe.stack")

DEFAULT_PORT = 8787
API_KEY_FILE = "api_key"


def _load_or_create_api_key(data_dir: Path, explicit: str | None) -> str:
    """``explicit`` > ``IMAGEPIPE_API_KEY`` > the key persisted in the data dir > a new one (persisted)."""
    if explicit:
        return explicit
    if os.environ.get("IMAGEPIPE_API_KEY"):
        return os.environ["IMAGEPIPE_API_KEY"]
    path = data_dir / API_KEY_FILE
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key
    key = secrets.token_urlsafe(30)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(key + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return key


_ENV_LOCK = threading.Lock()


def _restore_env(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _import_handler(dotted: str, env: dict[str, str]) -> Any:
    """Import the API handler with ``env`` applied to ``os.environ`` (its init phase).

    Any ``imagepipe.service`` and ``imagepipe.handlers`` modules already loaded in this process
    (a previous stack, or other code that imported them and cached its configuration) are
    dropped first, so the new stack gets a cold start with configuration and clients bound to
    its own emulator (the engine and the errors module are kept).
    """
    os.environ.update(env)
    module_name, _, func = dotted.rpartition(".")
    for name in [m for m in sys.modules if m.startswith(("imagepipe.service", "imagepipe.handlers"))]:
        del sys.modules[name]
    return getattr(importlib.import_module(module_name), func)


class LocalStack:
    """The embedded local AWS stack (start/stop; usable as a context manager)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = ".imagepipe",
        host: str = "127.0.0.1",
        port: int = 0,
        workers: int | None = None,
        api_key: str | None = None,
        visibility_timeout: int | None = None,
        max_receive_count: int | None = None,
        processor_timeout: int | None = None,
        processor_memory_mb: int | None = None,
        reconcile_interval: float = 10.0,
        poll_wait_seconds: int = 1,
        batch_size: int | None = None,
        extra_env: dict[str, str] | None = None,
        template_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._api_key_arg = api_key
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.processor_timeout = processor_timeout
        self.processor_memory_mb = processor_memory_mb
        self.reconcile_interval = reconcile_interval
        self.poll_wait_seconds = poll_wait_seconds
        self.batch_size = batch_size
        self.extra_env = dict(extra_env or {})
        self.template_path = template_path
        self.api_key = ""
        self.emulator: Emulator | None = None
        self.definition: StackDefinition | None = None
        self.resources: Provisioned | None = None
        self.processor: LambdaRuntime | None = None
        self.reconciler: LambdaRuntime | None = None
        self.event_source: SqsEventSource | None = None
        self.schedule: ScheduledTrigger | None = None
        self.gateway: ApiGatewayServer | None = None
        self._env: dict[str, str] = {}
        self._aws: dict[str, Any] | None = None
        self.started_at: float | None = None
        self.startup_ms: dict[str, int] = {}

    # -- properties --------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """Base URL of the local HTTP API."""
        if self.gateway is None:
            raise RuntimeError("stack not started")
        return self.gateway.url

    @property
    def endpoint_url(self) -> str:
        """The emulator's endpoint (``AWS_ENDPOINT_URL``)."""
        if self.emulator is None:
            raise RuntimeError("stack not started")
        return self.emulator.endpoint_url

    @property
    def env(self) -> dict[str, str]:
        """The environment the stack's functions get."""
        return dict(self._env)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LocalStack:
        """Start everything; returns when the API answers and the workers are initialised."""
        t0 = time.perf_counter()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.api_key = _load_or_create_api_key(self.data_dir, self._api_key_arg)
        template = load_template(self.template_path) if self.template_path else load_template()
        overrides = {
            "ProcessorTimeout": self.processor_timeout,
            "ProcessorMemorySize": self.processor_memory_mb,
            "MaxReceiveCount": self.max_receive_count,
        }
        if self.processor_timeout is not None and str(self.processor_timeout) not in (
            template.get("Mappings", {}).get("QueueVisibility", {})
        ):
            template.setdefault("Mappings", {}).setdefault("QueueVisibility", {})[
                str(self.processor_timeout)
            ] = {"Seconds": 6 * int(self.processor_timeout)}
        definition = read_definition(template, overrides)
        if self.visibility_timeout is not None:
            definition.queues["ProcessingQueue"]["attributes"]["VisibilityTimeout"] = str(
                self.visibility_timeout
            )
        self.definition = definition
        try:
            self.emulator = Emulator(self.data_dir / "emulator", credentials=DEFAULT_CREDENTIALS).start()
            self.startup_ms["emulator"] = int((time.perf_counter() - t0) * 1000)
            # names and URLs are deterministic: workers and the API init while provisioning runs
            expected = expected_resources(self.emulator.endpoint_url, definition)
            self.resources = expected
            self._env = self._function_env()
            self._spawn_runtimes()
            api_box: list[Any] = []
            api_thread = threading.Thread(target=self._import_api, args=(api_box,), name="api-init")
            api_thread.start()
            try:
                self.resources = provision(self.emulator.endpoint_url, definition)
            finally:
                api_thread.join()
            self.startup_ms["provision"] = int((time.perf_counter() - t0) * 1000)
            if self.resources != expected:
                raise RuntimeError(f"provisioned {self.resources} but the functions were told {expected}")
            if isinstance(api_box[0], BaseException):
                raise api_box[0]
            self._start_triggers()
            self.startup_ms["workers"] = int((time.perf_counter() - t0) * 1000)
            self._start_gateway(api_box[0], template)
        except BaseException:
            self.stop()
            raise
        self.started_at = time.time()
        self.startup_ms["total"] = int((time.perf_counter() - t0) * 1000)
        return self

    def _function_env(self) -> dict[str, str]:
        d, r = self.definition, self.resources
        assert d is not None and r is not None and self.emulator is not None
        env = dict(d.static_env)
        env.update(
            {
                "AWS_ENDPOINT_URL": self.emulator.endpoint_url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
                "IMAGEPIPE_SOURCE_BUCKET": r.source_bucket,
                "IMAGEPIPE_DEST_BUCKET": r.dest_bucket,
                "IMAGEPIPE_TABLE": r.table,
                "IMAGEPIPE_QUEUE_URL": r.queue_url,
                "IMAGEPIPE_DLQ_URL": r.dlq_url,
                "IMAGEPIPE_API_KEY": self.api_key,
                "IMAGEPIPE_MAX_UPLOAD_BYTES": str(d.params.get("MaxUploadBytes", 26214400)),
                "IMAGEPIPE_MAX_RECEIVE_COUNT": str(d.params.get("MaxReceiveCount", 3)),
            }
        )
        env.setdefault("IMAGEPIPE_UPLOAD_PREFIX", d.notification.get("prefix") or "uploads/")
        env.setdefault("IMAGEPIPE_OUTPUT_PREFIX", "outputs/")
        env.setdefault("POWERTOOLS_SERVICE_NAME", "imagepipe")
        if os.environ.get("IMAGEPIPE_LOG_LEVEL"):
            env["POWERTOOLS_LOG_LEVEL"] = os.environ["IMAGEPIPE_LOG_LEVEL"]
        if os.environ.get("IMAGEPIPE_PRESETS"):  # the template's PresetsOverride, locally
            env["IMAGEPIPE_PRESETS"] = os.environ["IMAGEPIPE_PRESETS"]
        env.update(self.extra_env)
        return env

    def _fn_env(self, fn: FunctionDef, memory_mb: int, timeout: int) -> dict[str, str]:
        env = dict(self._env)
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": f"imagepipe-{fn.logical_id}",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout),
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12_local",
            }
        )
        return env

    def _clients(self) -> dict[str, Any]:
        """boto3 clients for the emulator, built once per start (boto3 clients are thread-safe)."""
        if self._aws is None:
            self._aws = clients(self.endpoint_url)
        return self._aws

    def sqs_client(self) -> Any:
        """A boto3 SQS client for the emulator."""
        return self._clients()["sqs"]

    def _spawn_runtimes(self) -> None:
        d = self.definition
        assert d is not None
        proc_def = d.functions["ProcessorFunction"]
        timeout = int(d.params.get("ProcessorTimeout", proc_def.timeout))
        memory = int(d.params.get("ProcessorMemorySize", proc_def.memory_mb))
        self.processor = LambdaRuntime(
            FunctionSpec(
                "imagepipe-processor",
                proc_def.handler,
                timeout,
                memory,
                self._fn_env(proc_def, memory, timeout),
            ),
            workers=self.workers,
        ).start(wait_ready=False)
        rec_def = d.functions["ReconcilerFunction"]
        self.reconciler = LambdaRuntime(
            FunctionSpec(
                "imagepipe-reconciler",
                rec_def.handler,
                rec_def.timeout,
                rec_def.memory_mb,
                self._fn_env(rec_def, rec_def.memory_mb, rec_def.timeout),
            ),
            workers=1,
        ).start(wait_ready=False)

    def _start_triggers(self) -> None:
        d, r = self.definition, self.resources
        assert d is not None and r is not None and self.processor is not None and self.reconciler is not None
        self.processor.wait_ready()
        self.reconciler.wait_ready()
        proc_def = d.functions["ProcessorFunction"]
        vt = int(d.queues["ProcessingQueue"]["attributes"].get("VisibilityTimeout", 30))
        self.event_source = SqsEventSource(
            self.processor,
            lambda: clients(self.endpoint_url)["sqs"],
            r.queue_url,
            r.queue_arn,
            batch_size=self.batch_size or proc_def.batch_size,
            report_batch_item_failures=proc_def.report_batch_item_failures,
            visibility_timeout=vt,
            # one poller more than workers: the next batch is already in hand when a worker
            # frees up, so receiving and deleting messages overlap the work instead of idling
            # a worker between invocations (its heartbeat keeps the waiting batch invisible)
            pollers=self.workers + 1,
            wait_seconds=self.poll_wait_seconds,
        ).start()
        self.schedule = ScheduledTrigger(
            self.reconciler, "imagepipe-reconciler-schedule", self.reconcile_interval
        ).start()

    def _import_api(self, box: list[Any]) -> None:
        """Import the API handler (its init phase); the result or the error goes into ``box``."""
        d = self.definition
        assert d is not None
        api_def = d.functions["ApiFunction"]
        env = self._fn_env(api_def, api_def.memory_mb, api_def.timeout)
        with _ENV_LOCK:
            saved = {k: os.environ.get(k) for k in env}
            try:
                box.append(_import_handler(api_def.handler, env))
            except BaseException as exc:  # re-raised by start()
                box.append(exc)
            finally:
                # The handler read its config and built its clients at import (endpoint, region,
                # credentials are bound now). Put the host's environment back, so the stack does
                # not leak AWS_ENDPOINT_URL & co. into the embedding process (tests, dashboard).
                _restore_env(saved)

    def _start_gateway(self, handler: Any, template: dict[str, Any]) -> None:
        d = self.definition
        assert d is not None
        api_def = d.functions["ApiFunction"]
        routes, cors = _api_routes_and_cors(template)
        config = ApiConfig(
            routes=routes,
            function_name="imagepipe-api",
            memory_mb=api_def.memory_mb,
            timeout_s=api_def.timeout,
            cors_origins=cors,
        )
        self.gateway = ApiGatewayServer(self.host, self.port, handler, config).start()

    def stop(self, grace: float = 5.0) -> None:
        """Stop everything (idempotent): gateway, triggers, workers, then the emulator."""
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.schedule is not None:
            self.schedule.stop()
            self.schedule = None
        if self.event_source is not None:
            self.event_source.stop(timeout=grace)
        for rt in (self.processor, self.reconciler):
            if rt is not None:
                rt.stop()
        if self.event_source is not None:
            self.event_source.stop(timeout=2)
            self.event_source = None
        self.processor = self.reconciler = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        self._aws = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- health ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """A snapshot: API, buckets, table, queue depths, workers."""
        out: dict[str, Any] = {
            "api": {"url": self.gateway.url if self.gateway else None, "up": self.gateway is not None}
        }
        if self.emulator is None or self.resources is None:
            out["emulator"] = {"up": False}
            return out
        out["emulator"] = {
            "up": self.emulator.alive(),
            "endpoint": self.emulator.endpoint_url,
            "replay": self.emulator.replay_counts,
        }
        r = self.resources
        try:
            c = self._clients()
            c["s3"].head_bucket(Bucket=r.source_bucket)
            c["s3"].head_bucket(Bucket=r.dest_bucket)
            out["buckets"] = {"source": r.source_bucket, "destination": r.dest_bucket, "ok": True}
            tbl = c["dynamodb"].describe_table(TableName=r.table)["Table"]
            out["table"] = {"name": r.table, "status": tbl.get("TableStatus"), "items": tbl.get("ItemCount")}
            for key, url in (("queue", r.queue_url), ("dlq", r.dlq_url)):
                a = c["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
                out[key] = {
                    "url": url,
                    "visible": int(a.get("ApproximateNumberOfMessages", 0)),
                    "in_flight": int(a.get("ApproximateNumberOfMessagesNotVisible", 0)),
                }
        except Exception as exc:  # health must report, not raise
            out["error"] = f"{type(exc).__name__}: {exc}"
        if self.processor is not None:
            out["workers"] = {
                "size": self.processor.size,
                "alive": self.processor.alive(),
                "busy": self.processor.busy(),
                "stats": dict(self.processor.stats),
            }
        if self.event_source is not None:
            out["event_source"] = dict(self.event_source.stats)
        if self.schedule is not None:
            out["reconciler"] = dict(self.schedule.stats)
        out["ok"] = bool(
            out["api"]["up"]
            and out["emulator"]["up"]
            and "error" not in out
            and out.get("workers", {}).get("alive", 0) > 0
        )
        return out


def _api_routes_and_cors(template: dict[str, Any]) -> tuple[list[Route], list[str]]:
    """Routes of ``ApiFunction``'s HttpApi events and the HttpApi's CORS origins."""
    from pipeline.stack.resources import Resolver

    res = template["Resources"]
    resolve = Resolver(template)
    routes: list[Route] = []
    for ev in (res.get("ApiFunction", {}).get("Properties", {}).get("Events") or {}).values():
        if ev.get("Type") == "HttpApi":
            p = ev.get("Properties") or {}
            path, method = p.get("Path"), p.get("Method")
            routes.append(
                Route(
                    (method or "ANY").upper().replace("X-AMAZON-APIGATEWAY-ANY-METHOD", "ANY"),
                    path or "$default",
                )
            )
    cors: list[str] = []
    for body in res.values():
        if body.get("Type") == "AWS::Serverless::HttpApi":
            cc = resolve((body.get("Properties") or {}).get("CorsConfiguration") or {})
            cors = [o for o in (cc.get("AllowOrigins") or []) if isinstance(o, str)]
    return routes or [Route("ANY", "$default")], cors


# ------------------------------------------------------------------------------ CLI
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Flags of ``python -m pipeline serve``."""
    p = parser or argparse.ArgumentParser(prog="python -m pipeline serve")
    p.add_argument("--host", default="127.0.0.1", help="interface of the local API (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"API port (default {DEFAULT_PORT}; 0 = any)"
    )
    p.add_argument("--data-dir", default=".imagepipe", help="state directory (default ./.imagepipe)")
    p.add_argument("--workers", type=int, default=None, help="processor workers (default: CPU count)")
    p.add_argument(
        "--api-key", default=None, help="API key (default: IMAGEPIPE_API_KEY or the persisted one)"
    )
    p.add_argument(
        "--visibility-timeout",
        type=int,
        default=None,
        help="processing queue visibility timeout, s (default: template, 6 x processor timeout)",
    )
    p.add_argument(
        "--processor-timeout", type=int, default=None, help="processor timeout, s (default: template)"
    )
    p.add_argument(
        "--processor-memory", type=int, default=None, help="processor memory limit, MB (default: template)"
    )
    p.add_argument("--max-receive-count", type=int, default=None, help="redrive limit (default: template)")
    p.add_argument("--reconcile-interval", type=float, default=10.0, help="reconciler period, s (default 10)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the stack in the foreground until SIGINT/SIGTERM."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("IMAGEPIPE_STACK_LOG", "WARNING"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    stack = LocalStack(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        workers=args.workers,
        api_key=args.api_key,
        visibility_timeout=args.visibility_timeout,
        processor_timeout=args.processor_timeout,
        processor_memory_mb=args.processor_memory,
        max_receive_count=args.max_receive_count,
        reconcile_interval=args.reconcile_interval,
    )
    try:
        stack.start()
    except Exception as exc:
        print(f"ERROR: local stack failed to start: {exc}", file=sys.stderr, flush=True)
        stack.stop()
        return 1
    print(f"API_URL={stack.api_url}", flush=True)
    print(f"API_KEY={stack.api_key}", flush=True)
    print(f"AWS_ENDPOINT_URL={stack.endpoint_url}", flush=True)
    print(f"SOURCE_BUCKET={stack.env['IMAGEPIPE_SOURCE_BUCKET']}", flush=True)
    print(f"DESTINATION_BUCKET={stack.env['IMAGEPIPE_DEST_BUCKET']}", flush=True)
    print(f"DATA_DIR={stack.data_dir}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        stack.stop()
        print("STOPPED", flush=True)
    return 0
