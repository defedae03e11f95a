"""Enforce S3 presigned POST policies in front of moto (which accepts any form upload).

Implements what S3 checks on a browser-form POST (``multipart/form-data`` to a bucket):
SigV4 signature over the base64 policy, expiration, and every condition (exact match,
``eq``, ``starts-with``, ``content-length-range`` against the real size of the file part),
plus "every form field must be covered by a condition". Violations get S3's XML errors.

A multipart form is parsed here once, with the limits moto's own request applies, and the
result is left in the environ under :data:`SHARED_FORM`; ``moto_speedups`` makes moto's
request take it instead of parsing the same body again, so moto stores exactly the parts
the policy was checked against (without the speed-ups moto parses the body itself).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any
from xml.sax.saxutils import escape

from werkzeug.datastructures import FileStorage, ImmutableMultiDict, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, parse_form_data
from werkzeug.http import parse_options_header

from pipeline.stack.persistence import WSGIApp, read_body

#: fields that never need a policy condition (S3 docs: "Creating a POST policy")
_EXEMPT = frozenset({"policy", "x-amz-signature", "signature", "awsaccesskeyid", "file"})
#: environ key of the :class:`SharedForm` a checked multipart upload leaves for moto's request
SHARED_FORM = "imagepipe.post_policy.form"


@dataclass(frozen=True)
class SharedForm:
    """A multipart body parsed as moto's request would parse it: the parser's ``limits``
    (``max_form_memory_size``, ``max_content_length``, ``max_form_parts``, the dict class),
    the ``content_type`` and ``body`` it parsed, and werkzeug's ``(stream, form, files)``."""

    limits: tuple[Any, ...]
    content_type: str
    body: bytes
    data: tuple[IO[bytes], ImmutableMultiDict[str, str], ImmutableMultiDict[str, FileStorage]]


def moto_form_limits() -> tuple[Any, ...]:
    """The form-parsing limits of a request to moto's server (moto's ``MAX_FORM_MEMORY_SIZE``,
    Flask's default ``MAX_CONTENT_LENGTH`` and ``MAX_FORM_PARTS``, werkzeug's dict class)."""
    from flask import Flask
    from moto.settings import MAX_FORM_MEMORY_SIZE

    config = Flask.default_config
    return (MAX_FORM_MEMORY_SIZE, config["MAX_CONTENT_LENGTH"], config["MAX_FORM_PARTS"], ImmutableMultiDict)


def _memory_file(**_kwargs: Any) -> IO[bytes]:
    """Where a file part goes: the body is in memory already (werkzeug would spool it to disk)."""
    return io.BytesIO()


class PolicyError(Exception):
    """A rejected upload: HTTP status, S3 error code, message and extra XML elements."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def xml(self) -> bytes:
        """S3's error document."""
        parts = [f"<Code>{escape(self.code)}</Code>", f"<Message>{escape(self.message)}</Message>"]
        parts += [f"<{k}>{escape(str(v))}</{k}>" for k, v in self.extra.items()]
        parts.append("<RequestId>imagepipe-local</RequestId>")
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>").encode()


def _reason(status: int) -> str:
    return {400: "400 Bad Request", 403: "403 Forbidden", 411: "411 Length Required"}.get(
        status, f"{status} Error"
    )


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """SigV4 signing key: the HMAC chain over date, region, service and ``aws4_request``."""
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    k = hmac.new(k, region.encode(), hashlib.sha256).digest()
    k = hmac.new(k, service.encode(), hashlib.sha256).digest()
    return hmac.new(k, b"aws4_request", hashlib.sha256).digest()


def _parse_expiration(raw: str) -> float:
    text = raw.strip().replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def _denied(detail: str) -> PolicyError:
    return PolicyError(403, "AccessDenied", f"Invalid according to Policy: {detail}")


def _condition_failed(cond: Any) -> PolicyError:
    return _denied(f"Policy Condition failed: {json.dumps(cond)}")


def check_post(
    bucket: str,
    fields: Mapping[str, str],
    file_size: int | None,
    credentials: Mapping[str, str],
    now: float | None = None,
) -> None:
    """Raise :class:`PolicyError` unless the form upload satisfies its signed policy.

    ``fields`` are the form fields with lower-cased names (the file part excluded).
    """
    now = time.time() if now is None else now
    policy_b64 = fields.get("policy")
    if not policy_b64:
        raise PolicyError(403, "AccessDenied", "Access Denied (anonymous form uploads are not allowed)")
    _verify_signature(policy_b64, fields, credentials)
    try:
        policy = json.loads(base64.b64decode(policy_b64, validate=True))
        expiration = _parse_expiration(policy["expiration"])
        conditions = policy["conditions"]
        if not isinstance(conditions, list):
            raise TypeError("conditions must be a list")
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise PolicyError(400, "InvalidPolicyDocument", f"Invalid Policy: {exc}") from exc
    if now > expiration:
        raise _denied("Policy expired.")

    values = dict(fields)
    values["bucket"] = bucket
    covered: set[str] = {"bucket"}
    length_range: tuple[int, int] | None = None
    for cond in conditions:
        if isinstance(cond, dict):
            if len(cond) != 1:
                raise PolicyError(400, "InvalidPolicyDocument", f"Invalid Policy: bad condition {cond!r}")
            name, want = next(iter(cond.items()))
            name = name.lower()
            covered.add(name)
            if values.get(name, "") != str(want):
                raise _condition_failed(["eq", f"${name}", want])
        elif isinstance(cond, list) and cond and isinstance(cond[0], str):
            op = cond[0].lower()
            if op == "content-length-range" and len(cond) == 3:
                length_range = (int(cond[1]), int(cond[2]))
                continue
            if op not in ("eq", "starts-with") or len(cond) != 3 or not str(cond[1]).startswith("$"):
                raise PolicyError(400, "InvalidPolicyDocument", f"Invalid Policy: bad condition {cond!r}")
            name = str(cond[1])[1:].lower()
            covered.add(name)
            have = values.get(name, "")
            want = str(cond[2])
            if op == "eq" and have != want:
                raise _condition_failed(cond)
            if op == "starts-with":
                ok = have.startswith(want) or (
                    name == "content-type"
                    and want
                    and all(p.strip().startswith(want) for p in have.split(","))
                )
                if not ok:
                    raise _condition_failed(cond)
        else:
            raise PolicyError(400, "InvalidPolicyDocument", f"Invalid Policy: bad condition {cond!r}")

    extra = sorted(
        name
        for name in fields
        if name not in _EXEMPT and not name.startswith("x-ignore-") and name not in covered
    )
    if extra:
        raise _denied("Extra input fields: " + ", ".join(extra))
    if file_size is None:
        raise PolicyError(
            400,
            "InvalidArgument",
            "POST requires exactly one file upload per request.",
            ArgumentName="file",
            ArgumentValue=0,
        )
    if length_range is not None:
        low, high = length_range
        if file_size > high:
            raise PolicyError(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
                ProposedSize=file_size,
                MaxSizeAllowed=high,
            )
        if file_size < low:
            raise PolicyError(
                400,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size",
                ProposedSize=file_size,
                MinSizeAllowed=low,
            )


def _verify_signature(policy_b64: str, fields: Mapping[str, str], credentials: Mapping[str, str]) -> None:
    """SigV4 (``x-amz-*`` fields) or legacy SigV2 (``AWSAccessKeyId`` + ``signature``) over the policy."""
    if "x-amz-algorithm" not in fields and "awsaccesskeyid" in fields:
        access_key = fields["awsaccesskeyid"]
        secret = _secret(credentials, access_key)
        digest = hmac.new(secret.encode(), policy_b64.encode(), hashlib.sha1).digest()
        expected = base64.b64encode(digest).decode()
        given = fields.get("signature", "")
    else:
        if fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
            raise PolicyError(
                400, "InvalidRequest", "Only AWS4-HMAC-SHA256 (or legacy SigV2) POST policies are supported"
            )
        credential = fields.get("x-amz-credential", "")
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request" or parts[3] != "s3":
            raise PolicyError(400, "InvalidArgument", f"Invalid credential: {credential!r}")
        access_key, date, region = parts[0], parts[1], parts[2]
        secret = _secret(credentials, access_key)
        key = signing_key(secret, date, region, "s3")
        expected = hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()
        given = fields.get("x-amz-signature", "")
    if not hmac.compare_digest(expected, given):
        raise PolicyError(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )


def _secret(credentials: Mapping[str, str], access_key: str) -> str:
    secret = credentials.get(access_key)
    if secret is None:
        raise PolicyError(
            403,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            AWSAccessKeyId=access_key,
        )
    return secret


def _form_target_bucket(environ: Mapping[str, Any]) -> str | None:
    """The bucket of a browser-form POST, or ``None`` if this is not one.

    moto stores an object from any POST to a bucket whose body it parses as a form
    (``multipart/form-data`` or ``application/x-www-form-urlencoded``), path-style
    (``/bucket``) or virtual-hosted (``Host: bucket.s3...``, path ``/``). Signed API calls
    are left alone, except multipart ones: no S3 API call sends ``multipart/form-data``, so
    an ``Authorization`` header must not turn a form upload into an unchecked one.
    """
    if environ.get("REQUEST_METHOD", "").upper() != "POST":
        return None
    ctype = environ.get("CONTENT_TYPE", "").lower()
    multipart = ctype.startswith("multipart/form-data")
    if not multipart and not ctype.startswith("application/x-www-form-urlencoded"):
        return None
    if environ.get("HTTP_AUTHORIZATION") and not multipart:
        return None
    path = environ.get("PATH_INFO", "").strip("/")
    if path:
        return None if "/" in path or path.startswith("moto-api") else path
    from moto.s3.utils import bucket_name_from_url

    return bucket_name_from_url(f"http://{environ.get('HTTP_HOST') or environ.get('SERVER_NAME', '')}/")


class PostPolicyMiddleware:
    """Rejects S3 form uploads whose signed policy does not allow them."""

    def __init__(self, app: WSGIApp, credentials: Mapping[str, str], clock: Callable[[], float] = time.time):
        self.app = app
        self.credentials = dict(credentials)
        self.clock = clock
        self.rejected = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        bucket = _form_target_bucket(environ)
        if bucket is None:
            return self.app(environ, start_response)
        try:
            self._check(environ, bucket)
        except PolicyError as err:
            self.rejected += 1
            body = err.xml()
            start_response(
                _reason(err.status), [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
            )
            return [body]
        return self.app(environ, start_response)

    def _check(self, environ: dict[str, Any], bucket: str) -> None:
        if not (environ.get("CONTENT_LENGTH") or "").isdigit() and not environ.get("wsgi.input_terminated"):
            raise PolicyError(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        body = read_body(environ)
        _stream, form, files = _parse(environ, body)
        # moto reads fields by their exact name and stores the last file part of any name:
        # a field repeated (in any case) or a second file part would let it store something
        # other than what the policy was checked against
        fields: dict[str, str] = {}
        for name, values in form.lists():
            if name.lower() in fields or len(values) > 1:
                raise PolicyError(400, "InvalidArgument", f"Form field {name!r} given more than once.")
            fields[name.lower()] = values[0]
        parts = list(files.items(multi=True))
        if len(parts) > 1:
            raise PolicyError(
                400,
                "InvalidArgument",
                "POST requires exactly one file upload per request.",
                ArgumentName="file",
                ArgumentValue=len(parts),
            )
        size: int | None = None
        if parts and parts[0][0].lower() == "file":
            stream = parts[0][1].stream
            stream.seek(0, io.SEEK_END)
            size = stream.tell()
            stream.seek(0)  # moto reads the part from where it is
        environ["wsgi.input"] = io.BytesIO(body)
        check_post(bucket, fields, size, self.credentials, now=self.clock())


def _parse(
    environ: dict[str, Any], body: bytes
) -> tuple[IO[bytes], MultiDict[str, str], MultiDict[str, FileStorage]]:
    """The form, parsed once; a multipart one is left in ``environ`` for moto (:class:`SharedForm`).

    It is parsed with moto's limits; a body over them (moto answers 413) is parsed again
    without limits, as before, and moto parses it itself.
    """
    ctype = environ.get("CONTENT_TYPE", "")
    mimetype, params = parse_options_header(ctype)
    if mimetype == "multipart/form-data":
        limits = moto_form_limits()
        memory, length, parts, cls = limits
        parser = FormDataParser(
            stream_factory=_memory_file,
            max_form_memory_size=memory,
            max_content_length=length,
            max_form_parts=parts,
            cls=cls,
            silent=False,  # a malformed body fails here, as parse_form_data(silent=False) does
        )
        try:
            data = parser.parse(io.BytesIO(body), mimetype, len(body), params)
        except RequestEntityTooLarge:
            pass
        else:
            environ[SHARED_FORM] = SharedForm(limits, ctype, body, data)
            return data
    probe = {
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": ctype,
        "REQUEST_METHOD": "POST",
    }
    return parse_form_data(probe, silent=False)
