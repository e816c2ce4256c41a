"""Errors the layer raises; the HTTP resolvers (outcall.api) map each to its status and the API's one
error body `{"code", "message", "requestId", "errors": [{"field", "message"}]}`. `details` becomes
`errors`: a list of `{"field", "message"}` as it is, a mapping of facts one entry per fact."""

from __future__ import annotations

from typing import Any


class OutcallError(Exception):
    status = 400
    code = "BadRequest"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(OutcallError):
    status = 404
    code = "NotFound"


class Conflict(OutcallError):
    status = 409
    code = "Conflict"


class Unprocessable(OutcallError):
    status = 422
    code = "ValidationError"


class ProviderError(OutcallError):
    """A provider refused or failed an operation; `reason` is the provider's own words."""

    status = 502
    code = "ProviderError"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        provider_code: str | int | None = None,
        retryable: bool = False,
        details: Any = None,
    ) -> None:
        super().__init__(message, details=details)
        self.provider = provider
        self.provider_code = provider_code
        self.retryable = retryable


class NotSupported(OutcallError):
    """The provider cannot do this at all (e.g. quanshi has no tasks, xswitch has no webhooks)."""

    status = 422
    code = "NotSupported"

    def __init__(self, provider: str, operation: str) -> None:
        super().__init__(f"provider {provider!r} does not support {operation}")
        self.provider = provider
        self.operation = operation


class InvalidSignature(OutcallError):
    status = 401
    code = "InvalidSignature"
