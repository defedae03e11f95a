"""Checks over the SAM template: least privilege, storage hardening, the queue wiring, and
parity of the functions' environment with docs/architecture.md and with the Lambda code.

The template is parsed with cfn-lint's decoder (it understands the short CFN tags) and,
where the generated resources matter, expanded with the real SAM translator.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode, decode_str

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
LAMBDA_PKG = ROOT / "lambda_src" / "imagepipe"

FUNCTIONS = {
    "ApiFunction": "imagepipe.handlers.api.handler",
    "ProcessorFunction": "imagepipe.handlers.processor.handler",
    "ReconcilerFunction": "imagepipe.handlers.reconciler.handler",
}
BUCKETS = ("SourceBucket", "DestinationBucket")


def _plain(node: Any) -> Any:
    """cfn-lint's str/dict nodes as plain JSON values."""
    return json.loads(json.dumps(node))


def load_template(text: str | None = None) -> dict[str, Any]:
    """The template (or ``text``) as plain dicts; fails on a parse error."""
    template, errors = decode(str(TEMPLATE)) if text is None else decode_str(text)
    assert not errors, [str(e) for e in errors]
    return _plain(template)


@pytest.fixture(scope="module")
def tpl() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(tpl: dict[str, Any]) -> dict[str, Any]:
    return tpl["Resources"]


# --------------------------------------------------------------------------- policy checker


def render(value: Any) -> str:
    """A resource/action expression as text: ``Fn::Sub`` keeps its ``${...}`` string,
    ``Fn::GetAtt`` becomes ``${X.Attr}``, ``Ref`` becomes ``${X}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Fn::Sub":
            return arg if isinstance(arg, str) else arg[0]
        if fn == "Fn::GetAtt":
            return "${" + (arg if isinstance(arg, str) else ".".join(arg)) + "}"
        if fn == "Ref":
            return "${" + arg + "}"
        if fn == "Fn::Join":
            return arg[0].join(render(v) for v in arg[1])
    return json.dumps(value)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# A wildcard is only acceptable as the last path segment under a named resource, e.g.
# "${SourceBucket.Arn}/uploads/*" or "${ApiLogGroup.Arn}:log-stream:*".
_SCOPED_TAIL = re.compile(
    r"^\$\{[A-Za-z0-9]+\.Arn\}(/[A-Za-z0-9_.-]+)+/\*$|^\$\{[A-Za-z0-9]+\.Arn\}:log-stream:\*$"
)


def statement_problems(stmt: dict[str, Any]) -> list[str]:
    """Why an IAM statement is too broad (empty list = fine). Deny statements only restrict,
    so a wildcard there (the TLS-only ``s3:*`` deny) is allowed."""
    problems: list[str] = []
    if stmt.get("Effect") != "Allow":
        return problems
    if "NotAction" in stmt:
        problems.append("NotAction in an Allow statement")
    if "NotResource" in stmt:
        problems.append("NotResource in an Allow statement")
    for action in _as_list(stmt.get("Action", [])):
        text = render(action)
        if "*" in text:
            problems.append(f"wildcard action {text!r}")
    principal = stmt.get("Principal")
    if principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS", []))):
        problems.append("Allow to principal '*'")
    is_trust = principal is not None and "Resource" not in stmt  # trust/resource policy
    if "Resource" not in stmt and not is_trust:
        problems.append("no Resource")
    for resource in _as_list(stmt.get("Resource", [])):
        text = render(resource)
        if "*" not in text:
            continue
        if not _SCOPED_TAIL.match(text):
            problems.append(f"wildcard resource {text!r}")
    return problems


_BROAD_MANAGED = re.compile(r"FullAccess|AdministratorAccess|PowerUserAccess")


_POLICY_DOC_TYPES = (
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
)


def iter_policy_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement in the template, with ``resource_id/where`` labels."""
    for rid, res in template.get("Resources", {}).items():
        props = res.get("Properties", {}) or {}
        rtype = res.get("Type", "")
        docs: list[tuple[str, Any]] = []
        if rtype == "AWS::IAM::Role":
            docs += [
                (f"{rid}/{p.get('PolicyName')}", p.get("PolicyDocument")) for p in props.get("Policies", [])
            ]
        elif rtype in _POLICY_DOC_TYPES:
            docs.append((rid, props.get("PolicyDocument")))
        elif rtype == "AWS::Serverless::Function":
            for i, pol in enumerate(_as_list(props.get("Policies", []))):
                if isinstance(pol, dict) and "Statement" in pol:
                    docs.append((f"{rid}/Policies[{i}]", pol))
        for label, doc in docs:
            for stmt in _as_list((doc or {}).get("Statement", [])):
                yield label, stmt


def policy_problems(template: dict[str, Any]) -> list[str]:
    """Every least-privilege violation in ``template`` (wildcards, SAM policy templates,
    managed FullAccess/admin policies)."""
    problems = [
        f"{label}: {p}" for label, stmt in iter_policy_statements(template) for p in statement_problems(stmt)
    ]
    for rid, res in template.get("Resources", {}).items():
        props = res.get("Properties", {}) or {}
        for arn in _as_list(props.get("ManagedPolicyArns", [])):
            if _BROAD_MANAGED.search(render(arn)):
                problems.append(f"{rid}: broad managed policy {render(arn)}")
        if res.get("Type") == "AWS::Serverless::Function":
            for pol in _as_list(props.get("Policies", [])):
                if isinstance(pol, str):
                    problems.append(f"{rid}: managed policy {pol} (use explicit statements)")
                elif isinstance(pol, dict) and "Statement" not in pol:
                    problems.append(f"{rid}: SAM policy template {sorted(pol)} grants broad actions")
    return problems


def test_template_has_no_wildcard_or_broad_policies(tpl: dict[str, Any]) -> None:
    assert policy_problems(tpl) == []


def test_policy_checker_sees_every_statement(tpl: dict[str, Any]) -> None:
    """Guard against a checker that passes because it finds nothing to check."""
    labels = {label.split("/")[0] for label, _ in iter_policy_statements(tpl)}
    assert {"ApiFunctionRole", "ProcessorFunctionRole", "ReconcilerFunctionRole"} <= labels
    assert {"SourceBucketPolicy", "DestinationBucketPolicy", "ProcessingQueuePolicy"} <= labels


_BAD_SNIPPET = """
Resources:
  R:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {{}}
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - Effect: Allow
                {body}
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Action: '*'\n                Resource: !GetAtt T.Arn", "wildcard action"),
        ("Action: 's3:*'\n                Resource: !Sub '${B.Arn}/uploads/*'", "wildcard action 's3:*'"),
        ("Action: ['dynamodb:*']\n                Resource: !GetAtt T.Arn", "wildcard action 'dynamodb:*'"),
        ("Action: 's3:Get*'\n                Resource: !Sub '${B.Arn}/uploads/*'", "wildcard action"),
        ("Action: sqs:SendMessage\n                Resource: '*'", "wildcard resource '*'"),
        ("Action: s3:GetObject\n                Resource: 'arn:aws:s3:::*'", "wildcard resource"),
        ("Action: s3:GetObject\n                Resource: !Sub '${B.Arn}/*'", "wildcard resource"),
        ("Action: s3:GetObject\n                Resource: !Sub 'arn:aws:s3:::${B}/*/x'", "wildcard resource"),
        ("NotAction: s3:DeleteObject\n                Resource: !GetAtt B.Arn", "NotAction"),
        ("Action: s3:GetObject\n                NotResource: !GetAtt B.Arn", "NotResource"),
    ],
)
def test_policy_checker_rejects_broad_statements(body: str, expected: str) -> None:
    bad = load_template(_BAD_SNIPPET.format(body=body))
    problems = policy_problems(bad)
    assert any(expected in p for p in problems), problems


def test_policy_checker_accepts_scoped_statement_and_tls_deny() -> None:
    good = load_template(
        _BAD_SNIPPET.format(
            body="Action: [s3:GetObject]\n                Resource: !Sub '${B.Arn}/uploads/*'"
        )
    )
    assert policy_problems(good) == []
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*"}
    assert statement_problems(deny) == []


@pytest.mark.parametrize(
    "policies",
    ["[S3CrudPolicy: {BucketName: !Ref B}]", "[AmazonS3FullAccess]", "[DynamoDBCrudPolicy: {TableName: x}]"],
)
def test_policy_checker_rejects_sam_policy_templates(policies: str) -> None:
    bad = load_template(
        "Resources:\n  F:\n    Type: AWS::Serverless::Function\n"
        f"    Properties:\n      Policies: {policies}\n"
    )
    assert policy_problems(bad), policies


def test_policy_checker_rejects_managed_full_access() -> None:
    bad = load_template(
        "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n"
        "      ManagedPolicyArns: [arn:aws:iam::aws:policy/AmazonDynamoDBFullAccess]\n"
    )
    assert any("broad managed policy" in p for p in policy_problems(bad))


def test_functions_use_explicit_roles_without_managed_policies(resources: dict[str, Any]) -> None:
    for name in FUNCTIONS:
        props = resources[name]["Properties"]
        assert "Policies" not in props, name
        role_id = props["Role"]["Fn::GetAtt"][0]
        role = resources[role_id]
        assert role["Type"] == "AWS::IAM::Role"
        assert "ManagedPolicyArns" not in role["Properties"], role_id


def test_s3_grants_are_prefix_scoped(tpl: dict[str, Any]) -> None:
    """Object actions only on ``uploads/*`` (source) and ``outputs/*`` (destination)."""
    seen = 0
    for label, stmt in iter_policy_statements(tpl):
        if stmt.get("Effect") != "Allow":
            continue
        actions = [render(a) for a in _as_list(stmt.get("Action", []))]
        if not any(a.startswith("s3:") and a != "s3:ListBucket" for a in actions):
            continue
        for resource in _as_list(stmt["Resource"]):
            text = render(resource)
            assert text in ("${SourceBucket.Arn}/uploads/*", "${DestinationBucket.Arn}/outputs/*"), (
                label,
                text,
            )
            seen += 1
    assert seen >= 4


def test_processor_cannot_write_the_source_bucket(tpl: dict[str, Any]) -> None:
    """The original is never changed: the processor has no write on the source bucket."""
    for label, stmt in iter_policy_statements(tpl):
        if not label.startswith("ProcessorFunctionRole") or stmt.get("Effect") != "Allow":
            continue
        actions = {render(a) for a in _as_list(stmt["Action"])}
        resources = {render(r) for r in _as_list(stmt["Resource"])}
        if any("SourceBucket" in r for r in resources):
            assert not actions & {"s3:PutObject", "s3:DeleteObject"}, (label, actions)


# --------------------------------------------------------------------------- buckets


@pytest.mark.parametrize("bucket", BUCKETS)
def test_bucket_blocks_public_access_and_encrypts(resources: dict[str, Any], bucket: str) -> None:
    props = resources[bucket]["Properties"]
    bpa = props["PublicAccessBlockConfiguration"]
    assert {
        k: bpa.get(k)
        for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    } == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules and all(
        r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms", "aws:kms:dsse"}
        for r in rules
    )
    assert props["OwnershipControls"]["Rules"][0]["ObjectOwnership"] == "BucketOwnerEnforced"


@pytest.mark.parametrize("bucket", BUCKETS)
def test_bucket_policy_denies_insecure_transport(resources: dict[str, Any], bucket: str) -> None:
    policies = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    assert len(policies) == 1
    denies = [
        s
        for s in policies[0]["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
        and s["Condition"].get("Bool", {}).get("aws:SecureTransport") in ("false", False)
        and "s3:*" in _as_list(s["Action"])
        and s["Principal"] == "*"
    ]
    assert len(denies) == 1
    covered = {render(r) for r in _as_list(denies[0]["Resource"])}
    assert covered == {f"${{{bucket}.Arn}}", f"${{{bucket}.Arn}}/*"}


@pytest.mark.parametrize("bucket", BUCKETS)
def test_bucket_cors_is_limited_to_the_dashboard_origin(resources: dict[str, Any], bucket: str) -> None:
    for rule in resources[bucket]["Properties"]["CorsConfiguration"]["CorsRules"]:
        assert rule["AllowedOrigins"] == [{"Ref": "DashboardOrigin"}]
        assert not {"PUT", "DELETE"} & set(rule["AllowedMethods"])


def test_lifecycle_cleans_stale_uploads_and_aborted_multipart(resources: dict[str, Any]) -> None:
    for bucket in BUCKETS:
        rules = resources[bucket]["Properties"]["LifecycleConfiguration"]["Rules"]
        assert any(
            r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1 for r in rules
        ), bucket
        assert all(r["Status"] == "Enabled" for r in rules)
    src_rules = resources["SourceBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    stale = [r for r in src_rules if r.get("Prefix") == "uploads/" and "ExpirationInDays" in r]
    assert stale and stale[0]["ExpirationInDays"] == {"Ref": "UploadRetentionDays"}


# --------------------------------------------------------------------------- queue wiring


def test_upload_notification_goes_to_the_queue_filtered_on_uploads(resources: dict[str, Any]) -> None:
    notif = resources["SourceBucket"]["Properties"]["NotificationConfiguration"]
    assert set(notif) == {"QueueConfigurations"}
    (cfg,) = notif["QueueConfigurations"]
    assert cfg["Event"] == "s3:ObjectCreated:*"
    assert cfg["Queue"] == {"Fn::GetAtt": ["ProcessingQueue", "Arn"]}
    assert cfg["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "uploads/"}]
    assert "DestinationBucket" not in json.dumps(
        resources["DestinationBucket"].get("Properties", {}).get("NotificationConfiguration", {})
    )


def test_queue_policy_admits_only_the_source_bucket(resources: dict[str, Any]) -> None:
    """No circular dependency: the policy names the bucket's ARN from the same !Sub as its
    BucketName, restricted by aws:SourceArn and aws:SourceAccount."""
    bucket = resources["SourceBucket"]
    assert "ProcessingQueuePolicy" in _as_list(bucket["DependsOn"])
    name_sub = bucket["Properties"]["BucketName"]["Fn::Sub"]
    (allow,) = [
        s
        for s in resources["ProcessingQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
    ]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    arn_sub = allow["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    assert arn_sub[0] == "arn:${AWS::Partition}:s3:::" + name_sub[0]
    assert arn_sub[1] == name_sub[1]
    assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert resources["ProcessingQueuePolicy"]["Properties"]["Queues"] == [{"Ref": "ProcessingQueue"}]


def test_queue_has_dead_letter_queue(resources: dict[str, Any]) -> None:
    redrive = resources["ProcessingQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["ProcessingDLQ", "Arn"]}
    assert redrive["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    dlq = resources["ProcessingDLQ"]["Properties"]
    assert dlq["MessageRetentionPeriod"] == 1209600
    assert (
        dlq["MessageRetentionPeriod"] > resources["ProcessingQueue"]["Properties"]["MessageRetentionPeriod"]
    )


def test_visibility_timeout_is_six_times_processor_timeout(tpl: dict[str, Any]) -> None:
    vis = tpl["Resources"]["ProcessingQueue"]["Properties"]["VisibilityTimeout"]
    assert vis == {"Fn::FindInMap": ["QueueVisibility", {"Ref": "ProcessorTimeout"}, "Seconds"]}
    param = tpl["Parameters"]["ProcessorTimeout"]
    table = tpl["Mappings"]["QueueVisibility"]
    assert param["Default"] in param["AllowedValues"]
    for timeout in param["AllowedValues"]:
        assert table[str(timeout)]["Seconds"] >= 6 * int(timeout)
        assert table[str(timeout)]["Seconds"] <= 43200  # SQS maximum


def test_processor_consumes_the_queue_with_partial_batch_failures(tpl: dict[str, Any],
                                                                   resources: dict[str, Any]) -> None:
    events = resources["ProcessorFunction"]["Properties"]["Events"]
    (sqs,) = [e for e in events.values() if e["Type"] == "SQS"]
    props = sqs["Properties"]
    assert props["Queue"] == {"Fn::GetAtt": ["ProcessingQueue", "Arn"]}
    assert props["BatchSize"] == {"Ref": "ProcessorBatchSize"}
    batch = tpl["Parameters"]["ProcessorBatchSize"]
    # 10 is SQS's limit for an event source without a batching window
    assert (batch["Default"], batch["MinValue"], batch["MaxValue"]) == (1, 1, 10)
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_reconciler_runs_on_a_schedule(resources: dict[str, Any]) -> None:
    events = resources["ReconcilerFunction"]["Properties"]["Events"]
    assert [e["Properties"]["Schedule"] for e in events.values() if e["Type"] == "Schedule"] == [
        "rate(5 minutes)"
    ]


# --------------------------------------------------------------------------- table, API, outputs


def test_metadata_table_matches_the_contract(resources: dict[str, Any]) -> None:
    props = resources["MetadataTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    attrs = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert attrs == {"pk": "S", "sk": "S", "gsi1pk": "S", "gsi1sk": "S"}
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    (gsi,) = props["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "gsi1"
    assert gsi["KeySchema"] == [
        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
    ]
    assert gsi["Projection"] == {"ProjectionType": "ALL"}


def test_functions_handlers_runtime_and_architecture(tpl: dict[str, Any]) -> None:
    glob = tpl["Globals"]["Function"]
    assert glob["Runtime"] in ("python3.12", "python3.13")
    assert glob["Architectures"] == ["arm64"]
    for name, handler in FUNCTIONS.items():
        props = tpl["Resources"][name]["Properties"]
        assert tpl["Resources"][name]["Type"] == "AWS::Serverless::Function"
        assert props["Handler"] == handler
        assert props["CodeUri"] == "lambda_src/"
    proc = tpl["Resources"]["ProcessorFunction"]["Properties"]
    assert proc["MemorySize"] == {"Ref": "ProcessorMemorySize"}
    assert proc["Timeout"] == {"Ref": "ProcessorTimeout"}
    assert tpl["Resources"]["ApiFunction"]["Properties"]["MemorySize"] == {"Ref": "ApiMemorySize"}


def test_parameters_defaults_match_the_contract(tpl: dict[str, Any]) -> None:
    params = tpl["Parameters"]
    assert params["MaxUploadBytes"]["Default"] == 26214400
    assert params["ProcessorMemorySize"]["Default"] == 1792  # peak RSS at the pixel cap + headroom
    assert params["ProcessorTimeout"]["Default"] == 60
    assert params["MaxReceiveCount"]["Default"] == 3
    for name in ("ApiMemorySize", "ReservedConcurrency", "DashboardOrigin"):
        assert name in params


def test_http_api_is_throttled_and_routes_to_the_api_function(resources: dict[str, Any]) -> None:
    api = resources["HttpApi"]
    assert api["Type"] == "AWS::Serverless::HttpApi"
    route = api["Properties"]["DefaultRouteSettings"]
    assert route["ThrottlingRateLimit"] and route["ThrottlingBurstLimit"]
    assert api["Properties"]["CorsConfiguration"]["AllowOrigins"] == [{"Ref": "DashboardOrigin"}]
    assert "x-api-key" in api["Properties"]["CorsConfiguration"]["AllowHeaders"]
    events = resources["ApiFunction"]["Properties"]["Events"]
    assert [e["Properties"]["ApiId"] for e in events.values() if e["Type"] == "HttpApi"] == [
        {"Ref": "HttpApi"}
    ]


def test_api_key_is_only_given_to_the_api_function(tpl: dict[str, Any]) -> None:
    assert "IMAGEPIPE_API_KEY" not in tpl["Globals"]["Function"]["Environment"]["Variables"]
    key = tpl["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]["IMAGEPIPE_API_KEY"]
    assert key["Fn::Sub"].startswith("{{resolve:secretsmanager:${ApiKeySecret}")
    assert (
        "api_key"
        in tpl["Resources"]["ApiKeySecret"]["Properties"]["GenerateSecretString"]["GenerateStringKey"]
    )


def test_outputs(tpl: dict[str, Any]) -> None:
    assert {
        "ApiUrl",
        "SourceBucketName",
        "DestinationBucketName",
        "MetadataTableName",
        "ProcessingQueueUrl",
    } <= set(tpl["Outputs"])


# --------------------------------------------------------------------------- environment parity


def architecture_env() -> dict[str, str]:
    """``{variable: default}`` from the configuration table of docs/architecture.md."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`([A-Z0-9_]+)`[^|]*\|\s*([^|]*)\|", section, flags=re.M)
    out: dict[str, str] = {}
    for name, default in rows:
        match = re.search(r"`([^`]*)`", default)
        out[name] = match.group(1) if match else ""
    assert "IMAGEPIPE_SOURCE_BUCKET" in out and "POWERTOOLS_SERVICE_NAME" in out, out
    return out


def function_env(tpl: dict[str, Any], name: str) -> dict[str, Any]:
    """Globals merged with the function's own variables (how SAM merges them)."""
    env = copy.deepcopy(tpl["Globals"]["Function"]["Environment"]["Variables"])
    env.update(tpl["Resources"][name]["Properties"].get("Environment", {}).get("Variables", {}))
    return env


def test_architecture_table_is_parsed() -> None:
    env = architecture_env()
    assert env["IMAGEPIPE_MAX_UPLOAD_BYTES"] == "26214400"
    assert env["IMAGEPIPE_UPLOAD_PREFIX"] == "uploads/"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_env_matches_architecture(tpl: dict[str, Any], name: str) -> None:
    """Every IMAGEPIPE_* variable of the contract is set (the API key only on the API
    function), nothing else but Powertools settings and numpy's OpenBLAS thread count; AWS_* are
    the runtime's own."""
    contract = architecture_env()
    env = function_env(tpl, name)
    expected = {k for k in contract if k.startswith("IMAGEPIPE_")}
    if name != "ApiFunction":
        expected.discard("IMAGEPIPE_API_KEY")
    assert {k for k in env if k.startswith("IMAGEPIPE_")} == expected
    others = {k for k in env if not k.startswith(("IMAGEPIPE_", "POWERTOOLS_"))}
    assert others == {"OPENBLAS_NUM_THREADS"}, sorted(env)
    assert env["OPENBLAS_NUM_THREADS"] == contract["OPENBLAS_NUM_THREADS"] == "1"
    assert env["POWERTOOLS_SERVICE_NAME"] == contract["POWERTOOLS_SERVICE_NAME"]


def test_env_values_match_architecture_defaults(tpl: dict[str, Any]) -> None:
    """Literal values equal the contract's defaults; parameter-backed ones default to it."""
    contract = architecture_env()
    env = function_env(tpl, "ApiFunction")
    params = tpl["Parameters"]
    checked = 0
    for name, value in env.items():
        default = contract.get(name, "")
        if not default:
            continue
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in params:
            value = params[value["Ref"]]["Default"]
        if isinstance(value, dict):
            continue
        assert str(value) == default, name
        checked += 1
    assert checked >= 9


def env_names_read_by_lambda_code() -> set[str]:
    """``IMAGEPIPE_*`` names appearing as string literals in lambda_src/imagepipe."""
    names: set[str] = set()
    for path in LAMBDA_PKG.rglob("*.py"):
        names |= set(re.findall(r"[\"'](IMAGEPIPE_[A-Z0-9_]+)[\"']", path.read_text(encoding="utf-8")))
    return names


def test_lambda_code_reads_every_variable_the_template_sets(tpl: dict[str, Any]) -> None:
    """Parity with the code: every IMAGEPIPE_* the template sets is read by lambda_src
    (service config or engine limits), and the code reads nothing the template omits."""
    set_by_template = set(function_env(tpl, "ApiFunction")) | set(function_env(tpl, "ProcessorFunction"))
    set_by_template = {k for k in set_by_template if k.startswith("IMAGEPIPE_")}
    read = env_names_read_by_lambda_code()
    assert set_by_template - read == set(), "set by the template but never read"
    assert read - set_by_template == set(), "read by the code but not set by the template"


# --------------------------------------------------------------------------- real SAM transform


@pytest.fixture(scope="module")
def transformed(tpl: dict[str, Any], monkeypatch_module: pytest.MonkeyPatch) -> dict[str, Any]:
    translator = pytest.importorskip("samtranslator.translator.transform")
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    sam = copy.deepcopy(tpl)
    sam["Globals"]["Function"]["CodeUri"] = "s3://bucket/code.zip"
    for name in FUNCTIONS:
        sam["Resources"][name]["Properties"]["CodeUri"] = "s3://bucket/code.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            raise AssertionError("the template must not need managed policies")

    return translator.transform(sam, {"AWS::Region": "us-east-1"}, NoManagedPolicies())


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_sam_transform_adds_no_broad_permissions(transformed: dict[str, Any]) -> None:
    res = transformed["Resources"]
    roles = sorted(k for k, v in res.items() if v["Type"] == "AWS::IAM::Role")
    assert roles == ["ApiFunctionRole", "ProcessorFunctionRole", "ReconcilerFunctionRole"]
    assert policy_problems(transformed) == []
    assert not any(r["Type"].startswith("AWS::Serverless::") for r in res.values())


def test_sam_transform_wires_the_event_sources(transformed: dict[str, Any]) -> None:
    res = transformed["Resources"]
    (esm,) = [r["Properties"] for r in res.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert esm["EventSourceArn"] == {"Fn::GetAtt": ["ProcessingQueue", "Arn"]}
    assert esm["FunctionName"] == {"Ref": "ProcessorFunction"}
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (stage,) = [r["Properties"] for r in res.values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    (rule,) = [r["Properties"] for r in res.values() if r["Type"] == "AWS::Events::Rule"]
    assert rule["ScheduleExpression"] == "rate(5 minutes)"
    for name in FUNCTIONS:
        assert res[name]["Properties"]["Architectures"] == ["arm64"]
        env = res[name]["Properties"]["Environment"]["Variables"]
        assert env["IMAGEPIPE_TABLE"] == {"Ref": "MetadataTable"}  # Globals merged by SAM
        assert ("IMAGEPIPE_API_KEY" in env) == (name == "ApiFunction")


def test_sam_transform_output_is_cfn_lint_clean(transformed: dict[str, Any]) -> None:
    from cfnlint.api import lint_all

    matches = lint_all(json.dumps(transformed))
    assert [str(m) for m in matches if m.rule.id[0] in "EW"] == []


# --------------------------------------------------------------------------- IAM vs. the code

#: boto3 call -> the IAM actions it needs. A call the code makes that is missing here fails
#: the test below, so a new AWS call cannot ship without a decision about its permission.
IAM_FOR_CALL: dict[str, tuple[str, ...]] = {
    "generate_presigned_post": ("s3:PutObject",),
    "generate_presigned_url": (),  # signing is local; the GET it signs is checked below
    "get_paginator": (),  # the paginated operation is checked by name
    "get_object": ("s3:GetObject",),
    "head_object": ("s3:GetObject", "s3:ListBucket"),  # ListBucket makes a missing key 404, not 403
    "put_object": ("s3:PutObject",),
    "delete_objects": ("s3:DeleteObject",),
    "delete_object": ("s3:DeleteObject",),
    "list_objects_v2": ("s3:ListBucket",),
    "head_bucket": ("s3:ListBucket",),
    "get_item": ("dynamodb:GetItem",),
    "put_item": ("dynamodb:PutItem",),
    "update_item": ("dynamodb:UpdateItem",),
    "delete_item": ("dynamodb:DeleteItem",),
    "query": ("dynamodb:Query",),
    "batch_writer": ("dynamodb:BatchWriteItem",),
    "batch_get_item": ("dynamodb:BatchGetItem",),
    # a job's terminal write + its rollup add, a deletion + its subtraction, sealing (put + deletes)
    "transact_write_items": ("dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"),
    # History's CSV exports (authorized as PutObject on the object)
    "create_multipart_upload": ("s3:PutObject",),
    "upload_part": ("s3:PutObject",),
    "complete_multipart_upload": ("s3:PutObject",),
    "batch_write_item": ("dynamodb:BatchWriteItem",),
    "send_message": ("sqs:SendMessage",),
    "send_message_batch": ("sqs:SendMessage",),  # SendMessageBatch is authorized as SendMessage
    "receive_message": ("sqs:ReceiveMessage",),
    "change_message_visibility": ("sqs:ChangeMessageVisibility",),
    "delete_message": ("sqs:DeleteMessage",),
    "get_queue_attributes": ("sqs:GetQueueAttributes",),
}


def boto_calls_in_lambda_code() -> dict[str, set[str]]:
    """``{operation: {files}}`` for every S3/SQS/DynamoDB call made in lambda_src/imagepipe."""
    from botocore import xform_name
    from botocore.session import get_session

    session = get_session()
    known = {"batch_writer", "generate_presigned_post", "generate_presigned_url", "get_paginator"}
    for service in ("s3", "sqs", "dynamodb"):
        known |= {xform_name(op) for op in session.get_service_model(service).operation_names}
    found: dict[str, set[str]] = {}
    for path in LAMBDA_PKG.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        names = re.findall(r"\.([a-z0-9_]+)\(", text)
        names += re.findall(r"(?:get_paginator|generate_presigned_url)\(\s*[\"']([a-z0-9_]+)[\"']", text)
        for name in names:
            if name in known:
                found.setdefault(name, set()).add(path.name)
    return found


def granted_actions(tpl: dict[str, Any]) -> set[str]:
    return {
        render(a)
        for label, stmt in iter_policy_statements(tpl)
        if label.split("/")[0].endswith("FunctionRole") and stmt.get("Effect") == "Allow"
        for a in _as_list(stmt.get("Action", []))
    }


def test_every_aws_call_in_the_code_is_permitted(tpl: dict[str, Any]) -> None:
    """The local stack does not enforce IAM, so this is what catches a missing permission."""
    calls = boto_calls_in_lambda_code()
    assert {"generate_presigned_post", "put_object", "update_item", "send_message"} <= set(calls), calls
    unknown = set(calls) - set(IAM_FOR_CALL)
    assert not unknown, f"new AWS calls {sorted(unknown)}: add them to IAM_FOR_CALL and the template"
    granted = granted_actions(tpl)
    missing = {call: a for call in calls for a in IAM_FOR_CALL[call] if a not in granted}
    assert not missing, missing


def test_presigning_roles_hold_the_permission_they_sign_for(tpl: dict[str, Any]) -> None:
    """A presigned POST/GET carries the API role's authority: it must hold the action."""
    api = [s for label, s in iter_policy_statements(tpl) if label.startswith("ApiFunctionRole")]
    grants = {
        (render(a), render(r)) for s in api for a in _as_list(s["Action"]) for r in _as_list(s["Resource"])
    }
    assert ("s3:PutObject", "${SourceBucket.Arn}/uploads/*") in grants
    assert ("s3:GetObject", "${SourceBucket.Arn}/uploads/*") in grants
    assert ("s3:GetObject", "${DestinationBucket.Arn}/outputs/*") in grants
