"""Every error ImagePipe raises, in one place.

Each class carries a stable ``code`` (what clients match on, never reworded), an HTTP
status for the API, and whether the failure is *permanent* (retrying cannot help: bad
image, bad recipe) or *transient* (a retry may succeed: throttling, a network blip).

    ImagePipeError
    ├── ImageError                  permanent, the input or recipe is at fault
    │   ├── UnsupportedFormat       unsupported_format   415
    │   ├── CorruptImage            corrupt_image        422
    │   ├── TooManyPixels           too_many_pixels      413
    │   ├── TooLarge                too_large            413
    │   ├── TooManyFrames           too_many_frames      413
    │   ├── OutputTooLarge          output_too_large     422
    │   ├── InvalidRecipe           invalid_recipe       422
    │   ├── TargetUnreachable       target_unreachable   422
    │   └── OverBudget              (base) the invocation cannot afford the encode
    │       ├── OverTimeBudget      over_time_budget     422   (no encoder setting fits the time left)
    │       └── OverMemoryBudget    over_memory_budget   422   (the encode needs more memory than is free)
    ├── RequestError                permanent, the API request is at fault
    │   ├── BadRequest              bad_request          400
    │   ├── Unauthorized            unauthorized         401
    │   ├── NotFound                not_found            404
    │   ├── MethodNotAllowed        method_not_allowed   405
    │   ├── Conflict                conflict             409
    │   ├── PayloadTooLarge         payload_too_large    413
    │   └── UnsupportedMediaType    unsupported_media_type 415
    ├── TransientError              transient_error      503   (retried)
    │   └── Throttled               throttled            429
    ├── RetriesExhausted            retries_exhausted    500   (a transient failure that never cleared)
    ├── JobTimeout                  timeout              504   (stopped at the deadline; not retried)
    ├── AttemptKilled               attempt_killed       500   (a killed attempt; not rerun)
    ├── WorkerFailure               worker_crashed / worker_timeout / worker_out_of_memory
    ├── InternalError               internal_error       500
    └── ClientError                 raised only by pipeline.client
        ├── TransportError          transport_error      (could not reach the API)
        └── WaitTimeout             wait_timeout         (a job did not finish in time)
"""

from __future__ import annotations

from typing import Any


class ImagePipeError(Exception):
    """Base of every ImagePipe error: a stable code, a human message, optional details."""

    code: str = "internal_error"
    http_status: int = 500
    permanent: bool = True

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        self.message = message or self.__class__.__doc__ or self.code
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """The API's error body: ``{"code", "message"}`` plus ``details`` when present."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(code={self.code!r}, message={self.message!r})"


# --- image and recipe errors (permanent) ------------------------------------------------


class ImageError(ImagePipeError):
    """The image or the recipe cannot be processed."""

    http_status = 422


class UnsupportedFormat(ImageError):
    """The bytes are not an image format ImagePipe accepts."""

    code = "unsupported_format"
    http_status = 415


class CorruptImage(ImageError):
    """The image is truncated or damaged and cannot be decoded."""

    code = "corrupt_image"


class TooManyPixels(ImageError):
    """The image has more pixels than the configured cap."""

    code = "too_many_pixels"
    http_status = 413


class TooLarge(ImageError):
    """The input has more bytes than the configured cap."""

    code = "too_large"
    http_status = 413


class TooManyFrames(ImageError):
    """The animation has more frames than the configured cap."""

    code = "too_many_frames"
    http_status = 413


class OutputTooLarge(ImageError):
    """The encoded output is larger than the configured output cap."""

    code = "output_too_large"


class InvalidRecipe(ImageError):
    """The recipe is invalid; ``details`` lists each bad field."""

    code = "invalid_recipe"


class TargetUnreachable(ImageError):
    """No setting meets the requested quality or size target."""

    code = "target_unreachable"


class OverBudget(ImageError):
    """The invocation cannot afford this encode (time or memory); deterministic, not retried."""


class OverTimeBudget(OverBudget):
    """No encoder setting can finish in the time the invocation has left; ``details`` names the
    limit, the estimate and what to change (resize, a faster setting, another format)."""

    code = "over_time_budget"


class OverMemoryBudget(OverBudget):
    """The encode would need more memory than the invocation has free; ``details`` names the
    limit, the estimate and what to change (resize, another format, more processor memory)."""

    code = "over_memory_budget"


# --- API request errors (permanent) -----------------------------------------------------


class RequestError(ImagePipeError):
    """The API request itself is wrong."""

    http_status = 400


class BadRequest(RequestError):
    """The request body or parameters are malformed."""

    code = "bad_request"


class Unauthorized(RequestError):
    """Missing or wrong API key."""

    code = "unauthorized"
    http_status = 401


class NotFound(RequestError):
    """No such image, job or sweep."""

    code = "not_found"
    http_status = 404


class MethodNotAllowed(RequestError):
    """The path exists but does not accept this HTTP method."""

    code = "method_not_allowed"
    http_status = 405


class Conflict(RequestError):
    """The resource is not in a state that allows this request."""

    code = "conflict"
    http_status = 409


class PayloadTooLarge(RequestError):
    """The announced upload is larger than the byte cap."""

    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(RequestError):
    """The announced content type is not an accepted image type."""

    code = "unsupported_media_type"
    http_status = 415


# --- transient and infrastructure errors --------------------------------------------------


class TransientError(ImagePipeError):
    """A dependency failed in a way a retry may fix."""

    code = "transient_error"
    http_status = 503
    permanent = False


class Throttled(TransientError):
    """Too many requests; back off and retry."""

    code = "throttled"
    http_status = 429


class RetriesExhausted(ImagePipeError):
    """A transient failure persisted through every retry; the message went to the DLQ."""

    code = "retries_exhausted"


class JobTimeout(ImagePipeError):
    """The work was stopped at the invocation's deadline. Deterministic work would be stopped
    again, so it is not retried; the message says what to change."""

    code = "timeout"
    http_status = 504


class AttemptKilled(ImagePipeError):
    """Earlier attempts of this job were killed before their deadline (out of memory or a
    crash); running the same work again would be killed again, so the job fails instead."""

    code = "attempt_killed"


class WorkerFailure(ImagePipeError):
    """The Lambda worker crashed, timed out or ran out of memory."""

    code = "worker_crashed"
    permanent = False

    def __init__(self, message: str | None = None, *, code: str = "worker_crashed", details: Any = None):
        super().__init__(message, details=details)
        self.code = code


class InternalError(ImagePipeError):
    """An unexpected bug; the message is safe to show, the traceback is in the logs."""

    code = "internal_error"


# --- client-side errors ---------------------------------------------------------------------


class ClientError(ImagePipeError):
    """Raised by ``pipeline.client`` when the API cannot be used."""

    code = "client_error"


class TransportError(ClientError):
    """The API could not be reached (connection refused, DNS, TLS, timeout)."""

    code = "transport_error"
    permanent = False


class WaitTimeout(ClientError):
    """A job or sweep did not finish within the wait timeout."""

    code = "wait_timeout"


def _all_subclasses(cls: type[ImagePipeError]) -> list[type[ImagePipeError]]:
    out: list[type[ImagePipeError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


#: code -> class, for turning an API error body back into the same exception type.
ERRORS_BY_CODE: dict[str, type[ImagePipeError]] = {
    cls.code: cls
    for cls in _all_subclasses(ImagePipeError)
    if "code" in cls.__dict__ and cls is not WorkerFailure
}


def from_code(code: str, message: str, details: Any = None) -> ImagePipeError:
    """Rebuild the typed exception for an error ``code`` received over the wire."""
    if code.startswith("worker_"):
        return WorkerFailure(message, code=code, details=details)
    cls = ERRORS_BY_CODE.get(code, ImagePipeError)
    err = cls(message, details=details)
    if cls is ImagePipeError:
        err.code = code
    return err
