"""The embedded local AWS stack (see docs/local-stack.md).

``LocalStack`` (in :mod:`pipeline.stack.serve`) starts the emulator (moto: S3, DynamoDB,
SQS, with POST-policy enforcement and a durable journal), provisions the resources of
``template.yaml``, runs the processor and reconciler in a local Lambda runtime fed by an
SQS event source mapping and a timer, and serves the API handler behind a local API
Gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.stack.serve import LocalStack

__all__ = ["LocalStack"]


def __getattr__(name: str) -> Any:
    if name == "LocalStack":
        from pipeline.stack.serve import LocalStack

        return LocalStack
    raise AttributeError(name)
