"""The stack's resource definitions, read from the SAM template (``template.yaml``).

The local stack provisions the same logical resources as AWS (see docs/architecture.md),
with fixed local names. Intrinsics are resolved only as far as the local stack needs:
``Ref`` to parameters (their defaults, or overrides), ``Fn::FindInMap``; references to
resources map to the local names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline import PROJECT_ROOT

TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"

#: fixed local physical names per logical id
LOCAL_NAMES = {
    "SourceBucket": "imagepipe-source",
    "DestinationBucket": "imagepipe-destination",
    "MetadataTable": "imagepipe-metadata",
    "ProcessingQueue": "imagepipe-processing",
    "ProcessingDLQ": "imagepipe-processing-dlq",
}
ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags (``!Ref x``) into ``{"Ref": x}``."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: str | Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Parse the SAM template (CloudFormation tags tolerated)."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass with tag constructors only
    if not isinstance(data, dict) or "Resources" not in data:
        raise ValueError(f"{path} is not a CloudFormation/SAM template")
    return data


def arn_of(logical_id: str) -> str:
    """Local ARN of a provisioned resource."""
    name = LOCAL_NAMES[logical_id]
    if logical_id.endswith("Bucket"):
        return f"arn:aws:s3:::{name}"
    if logical_id == "MetadataTable":
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
    return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"


class Resolver:
    """Resolves the intrinsics the local stack needs."""

    def __init__(self, template: dict[str, Any], overrides: dict[str, Any] | None = None) -> None:
        self.params = {k: v.get("Default") for k, v in (template.get("Parameters") or {}).items()}
        self.params.update({k: v for k, v in (overrides or {}).items() if v is not None})
        self.mappings = template.get("Mappings") or {}
        self.queue_urls: dict[str, str] = {}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                if arg in self.params:
                    return self.params[arg]
                if arg in self.queue_urls:
                    return self.queue_urls[arg]
                if arg in LOCAL_NAMES:
                    return LOCAL_NAMES[arg]
                return None
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
                if attr == "Arn" and logical in LOCAL_NAMES:
                    return arn_of(logical)
                return None
            if key == "Fn::FindInMap":
                m, k1, k2 = (self(a) for a in arg)
                return self.mappings[m][str(k1)][k2]
            return None  # Sub, If, Select ...: not needed locally
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        return value


@dataclass(frozen=True)
class FunctionDef:
    """A Lambda function as the local runtime runs it."""

    logical_id: str
    handler: str
    timeout: int
    memory_mb: int
    batch_size: int = 10
    report_batch_item_failures: bool = False
    schedule: str | None = None


@dataclass
class StackDefinition:
    """Everything the local stack provisions and runs, from the template."""

    params: dict[str, Any]
    buckets: dict[str, dict[str, Any]]  # logical id -> {"name", "cors": [...]}
    table: dict[str, Any]  # CreateTable kwargs
    queues: dict[str, dict[str, Any]]  # logical id -> {"name", "attributes"}
    notification: dict[str, Any]  # {"bucket", "queue", "events", "prefix"}
    functions: dict[str, FunctionDef]
    static_env: dict[str, str] = field(default_factory=dict)


def _int(v: Any, default: int) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def read_definition(
    template: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> StackDefinition:
    """Build the local :class:`StackDefinition` from the template (parameter ``overrides`` win)."""
    template = template if template is not None else load_template()
    res = template["Resources"]
    r = Resolver(template, overrides)

    buckets: dict[str, dict[str, Any]] = {}
    notification: dict[str, Any] = {}
    for lid in ("SourceBucket", "DestinationBucket"):
        props = res[lid].get("Properties", {})
        cors = [_cors_rule(rule) for rule in r((props.get("CorsConfiguration") or {}).get("CorsRules") or [])]
        buckets[lid] = {"name": LOCAL_NAMES[lid], "cors": cors}
        for qc in (props.get("NotificationConfiguration") or {}).get("QueueConfigurations") or []:
            rules = (((qc.get("Filter") or {}).get("S3Key") or {}).get("Rules")) or []
            prefix = next((x["Value"] for x in rules if str(x.get("Name")).lower() == "prefix"), "")
            notification = {
                "bucket": LOCAL_NAMES[lid],
                "queue_arn": r(qc["Queue"]),
                "events": [qc["Event"]],
                "prefix": prefix,
            }

    tprops = res["MetadataTable"]["Properties"]
    table: dict[str, Any] = {
        "TableName": LOCAL_NAMES["MetadataTable"],
        "AttributeDefinitions": tprops["AttributeDefinitions"],
        "KeySchema": tprops["KeySchema"],
        "BillingMode": tprops.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if tprops.get("GlobalSecondaryIndexes"):
        table["GlobalSecondaryIndexes"] = [
            {"IndexName": g["IndexName"], "KeySchema": g["KeySchema"], "Projection": g["Projection"]}
            for g in tprops["GlobalSecondaryIndexes"]
        ]

    queues: dict[str, dict[str, Any]] = {}
    for lid in ("ProcessingDLQ", "ProcessingQueue"):
        props = r(res[lid].get("Properties", {}))
        attrs: dict[str, str] = {}
        for key in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "ReceiveMessageWaitTimeSeconds",
        ):
            if props.get(key) is not None:
                attrs[key] = str(props[key])
        redrive = props.get("RedrivePolicy")
        if redrive:
            attrs["RedrivePolicy"] = _redrive_json(redrive)
        queues[lid] = {"name": LOCAL_NAMES[lid], "attributes": attrs}

    functions: dict[str, FunctionDef] = {}
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    for lid, body in res.items():
        if body.get("Type") != "AWS::Serverless::Function":
            continue
        props = body.get("Properties", {})
        batch, rbif, schedule = 10, False, None
        for ev in (props.get("Events") or {}).values():
            ep = ev.get("Properties") or {}
            if ev.get("Type") == "SQS":
                batch = _int(r(ep.get("BatchSize")), 10)
                rbif = "ReportBatchItemFailures" in (ep.get("FunctionResponseTypes") or [])
            elif ev.get("Type") == "Schedule":
                schedule = r(ep.get("Schedule"))
        functions[lid] = FunctionDef(
            logical_id=lid,
            handler=props.get("Handler") or globals_fn.get("Handler", ""),
            timeout=_int(r(props.get("Timeout", globals_fn.get("Timeout"))), 3),
            memory_mb=_int(r(props.get("MemorySize", globals_fn.get("MemorySize"))), 128),
            batch_size=batch,
            report_batch_item_failures=rbif,
            schedule=schedule,
        )

    static_env: dict[str, str] = {}
    for name, value in ((globals_fn.get("Environment") or {}).get("Variables") or {}).items():
        resolved = r(value)
        if isinstance(resolved, str | int | float) and not isinstance(resolved, bool):
            static_env[name] = str(resolved)
    return StackDefinition(
        params=r.params,
        buckets=buckets,
        table=table,
        queues=queues,
        notification=notification,
        functions=functions,
        static_env=static_env,
    )


def _redrive_json(redrive: dict[str, Any]) -> str:
    import json

    return json.dumps(
        {
            "deadLetterTargetArn": redrive["deadLetterTargetArn"],
            "maxReceiveCount": str(redrive["maxReceiveCount"]),
        }
    )


_CORS_KEYS = {"MaxAge": "MaxAgeSeconds", "Id": "ID", "ExposedHeaders": "ExposeHeaders"}


def _cors_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation CorsRule as the S3 API spells it."""
    return {_CORS_KEYS.get(k, k): v for k, v in rule.items()}
