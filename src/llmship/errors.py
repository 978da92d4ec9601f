"""The one exception tree of llmship.

Every error a user can cause or meet is one of these. Each class knows the HTTP
status it maps to and renders the OpenAI error shape
``{"error": {"message", "type", "param", "code"}}``; the CLI prints the message
and exits non-zero.

    LlmshipError                     500 server_error
    ├── InvalidRequestError          400 invalid_request_error
    │   ├── ContextLengthError       400 (code context_length_exceeded)
    │   ├── SpecError                400 (a release spec or config file is invalid)
    │   ├── UnprocessableError       422 (well-formed, but a value is invalid: feedback)
    │   ├── RequestTooLargeError     413 (code request_too_large: the body is over the limit)
    │   └── HeadersTooLargeError     431 (code headers_too_large: the headers are over the limit)
    ├── AuthenticationError          401 authentication_error (no bearer token)
    ├── PermissionDeniedError        403 permission_error (a wrong token)
    ├── NotFoundError                404 (unknown release, alias, model)
    ├── ConflictError                409 (registering a changed version, ...)
    │   ├── GateError                409 (code gates_missing: promotion without passing gates)
    │   └── FencedError              409 (code fenced: a newer controller holds the lease)
    ├── QueueFullError               429 rate_limit_error (carries Retry-After)
    ├── NotReadyError                503 (model not loaded yet)
    ├── UpstreamError                502 (an OpenAI-compatible upstream failed)
    ├── GenerationTimeoutError       504 timeout_error
    ├── IntegrityError               500 (weights do not match the recorded sha256)
    ├── RegistryUnavailableError     503 (the registry database cannot be opened)
    └── NotConfiguredError           503 (a feature needs a setting first: the admin token)
"""

from __future__ import annotations

from typing import Any


class LlmshipError(Exception):
    """Base of every llmship error."""

    status_code = 500
    error_type = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI-style error body."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        """Extra response headers this error carries."""
        return {}


class InvalidRequestError(LlmshipError):
    """The request or input is malformed; the message says what to fix."""

    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthError(InvalidRequestError):
    """The prompt does not fit in the model's context window."""

    default_code = "context_length_exceeded"


class SpecError(InvalidRequestError):
    """A release spec or configuration file is invalid."""

    default_code = "invalid_spec"


class UnprocessableError(InvalidRequestError):
    """The request is well-formed JSON but a value is invalid (HTTP 422)."""

    status_code = 422
    default_code = "invalid_value"


class NothingCheckedError(UnprocessableError):
    """A gate that checked nothing (no metric measured, no request made): the run is
    recorded as an error, and is neither a pass nor a fail."""

    default_code = "gate_checked_nothing"


class RequestTooLargeError(InvalidRequestError):
    """The request body is larger than the ``max_body_bytes`` setting (HTTP 413)."""

    status_code = 413
    default_code = "request_too_large"


class HeadersTooLargeError(InvalidRequestError):
    """The request's headers are larger than the ``max_header_bytes`` setting (HTTP 431)."""

    status_code = 431
    default_code = "headers_too_large"


class AuthenticationError(LlmshipError):
    """No credentials where they are required (HTTP 401)."""

    status_code = 401
    error_type = "authentication_error"
    default_code = "missing_token"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class PermissionDeniedError(LlmshipError):
    """Credentials that are not the right ones (HTTP 403)."""

    status_code = 403
    error_type = "permission_error"
    default_code = "invalid_token"


class NotFoundError(LlmshipError):
    """A release, alias or model that does not exist."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ConflictError(LlmshipError):
    """The change contradicts what is already recorded."""

    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class GateError(ConflictError):
    """A release lacks the passing gate runs ``llmship.yaml`` requires for production."""

    default_code = "gates_missing"


class FencedError(ConflictError):
    """A write carried a lease's fencing token that is no longer the current one: a newer
    leader (another controller) holds the lease, so the write was refused, in the
    transaction that would have made it, and nothing was written."""

    default_code = "fenced"


class QueueFullError(LlmshipError):
    """Too many requests are waiting for the model."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "queue_full"

    def __init__(self, message: str, *, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotReadyError(LlmshipError):
    """The model is still loading."""

    status_code = 503
    default_code = "not_ready"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class UpstreamError(LlmshipError):
    """An OpenAI-compatible upstream answered with an error or could not be reached."""

    status_code = 502
    default_code = "upstream_error"


class GenerationTimeoutError(LlmshipError):
    """Generation took longer than the per-request timeout."""

    status_code = 504
    error_type = "timeout_error"
    default_code = "timeout"


class IntegrityError(LlmshipError):
    """Weight files do not match the sha256 recorded at registration."""

    default_code = "integrity_error"


class RegistryUnavailableError(LlmshipError):
    """The registry database cannot be opened or migrated (down, wrong URL, too new)."""

    status_code = 503
    default_code = "registry_unavailable"


class NotConfiguredError(LlmshipError):
    """A feature is off until a setting is given (the admin API without a token)."""

    status_code = 503
    default_code = "not_configured"
