"""Typed errors with a stable machine code and a human sentence.

Every error a client can see is a :class:`WardgateError`. The HTTP layer maps them to
OpenAI-style error bodies in exactly one place (``wardgate.gateway.errors``), so the code
that raises never has to think about wire formats, and clients can branch on ``code``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class WardgateError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` the stable machine code."""

    status: int = 500
    code: str = "internal_error"
    type: str = "server_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})

    def to_body(self) -> dict[str, object]:
        """The OpenAI error envelope; never contains request content."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a configuration: where (a dotted YAML path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(WardgateError):
    """The configuration is invalid; raised at start-up, never per request.

    ``problems`` lists every problem found, each printable as one ``yaml.path: problem``
    line; ``message`` is the one-sentence summary.
    """

    code = "config_error"

    def __init__(
        self, message: str, *, problems: Iterable[ConfigProblem] = (), **kwargs: object
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)

    def lines(self) -> list[str]:
        """The problems as ``path: problem`` lines (the message itself when there are none)."""
        return [str(p) for p in self.problems] or [self.message]


class InvalidRequest(WardgateError):
    status = 400
    code = "invalid_request"
    type = "invalid_request_error"


class UnsupportedParameter(InvalidRequest):
    """The request asks for a feature Wardgate does not implement; ``param`` names it.

    Refusing is the honest answer: silently dropping ``tools`` or ``response_format`` would
    return a 200 that is not what the client asked for.
    """

    code = "unsupported_parameter"


class NotFound(InvalidRequest):
    """No such route (OpenAI answers an unknown URL with a 404 ``invalid_request_error``)."""

    status = 404
    code = "not_found"


class MethodNotAllowed(InvalidRequest):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class ClientClosedRequest(InvalidRequest):
    """The client went away before its request was read in full (nginx's 499)."""

    status = 499
    code = "client_disconnected"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class AuthenticationFailed(WardgateError):
    status = 401
    code = "invalid_api_key"
    type = "authentication_error"


class KeyNotUsable(AuthenticationFailed):
    """A key the gateway knows but may no longer accept (revoked, expired).

    ``key_id`` names it for the audit record, so an operator can see *which* key is still
    being presented after it was revoked; the client sees only the usual 401 body.
    """

    def __init__(self, message: str, *, key_id: str, code: str) -> None:
        super().__init__(message, code=code)
        self.key_id = key_id


class PermissionDenied(WardgateError):
    status = 403
    code = "model_not_allowed"
    type = "permission_error"


class ModelNotFound(WardgateError):
    status = 404
    code = "model_not_found"
    type = "invalid_request_error"


class RateLimited(WardgateError):
    status = 429
    code = "rate_limit_exceeded"
    type = "rate_limit_error"


class Overloaded(WardgateError):
    """A bounded queue is full; the client should retry after ``Retry-After``."""

    status = 503
    code = "overloaded"
    type = "server_error"


class UpstreamError(WardgateError):
    """A backend failed. ``retryable`` drives failover (429/5xx/connection errors)."""

    status = 502
    code = "upstream_error"
    type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        upstream_status: int | None = None,
        retry_after: float | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retryable = retryable
        self.upstream_status = upstream_status
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class CircuitOpen(UpstreamError):
    status = 503
    code = "circuit_open"


class GuardBlocked(WardgateError):
    """A guard refused the request or response; ``code`` names the policy, never the content."""

    status = 400
    code = "guard_blocked"
    type = "invalid_request_error"


class RoutingRefused(WardgateError):
    """No model allowed by the routing policy can serve this request."""

    status = 400
    code = "no_allowed_model"
    type = "invalid_request_error"


class ModelVerificationFailed(ConfigError):
    """Weights did not match their pinned digest or signature; the model is not loaded."""

    code = "model_verification_failed"
