"""Classify botocore failures: throttling, 5xx and connection problems become
:class:`~imagepipe.errors.TransientError` (retried); everything else passes through."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from imagepipe.errors import ImagePipeError, Throttled, TransientError

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "TransactionInProgressException",
    }
)

F = TypeVar("F", bound=Callable[..., Any])


def classify(exc: BaseException) -> ImagePipeError | None:
    """The transient ImagePipe error for ``exc``, or ``None`` when it is not transient."""
    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return TransientError(f"AWS endpoint unreachable: {exc}")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in THROTTLING_CODES or status == 429:
            return Throttled(f"AWS throttled the request ({code or status})")
        if status >= 500 or code in {"InternalError", "ServiceUnavailable", "InternalServerError"}:
            return TransientError(f"AWS service error {code or status}: {err.get('Message', '')}".strip())
    return None


def translate_aws_errors(fn: F) -> F:
    """Decorator: re-raise transient botocore failures as ``TransientError``/``Throttled``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ImagePipeError:
            raise
        except Exception as exc:
            mapped = classify(exc)
            if mapped is None:
                raise
            raise mapped from exc

    return wrapper  # type: ignore[return-value]
