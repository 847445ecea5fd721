"""Errors of the job service, each knowing how REST and gRPC report it.

The service layer raises these; `api/rest.py` and `api/grpc_api.py` only translate them, so both APIs
reject the same inputs with the same messages.
"""

from __future__ import annotations

import grpc


class ApiError(Exception):
    http_status = 500
    code = "INTERNAL_ERROR"
    grpc_status = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(ApiError):
    http_status = 400
    code = "VALIDATION_ERROR"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class InvalidJsonError(ApiError):
    http_status = 400
    code = "INVALID_JSON"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class PayloadTooLargeError(InvalidInputError):
    # The seed's code set has no dedicated code; the status says what happened.
    http_status = 413


class JobNotFoundError(ApiError):
    http_status = 404
    code = "JOB_NOT_FOUND"
    grpc_status = grpc.StatusCode.NOT_FOUND

    def __init__(self, message: str = "job not found") -> None:
        super().__init__(message)


class WrongJobStateError(ApiError):
    """The job exists but cannot do this now (no video yet, already finished, ...)."""

    http_status = 409
    code = "VALIDATION_ERROR"
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION


class StateUnavailableError(ApiError):
    """The job database or the shared job files cannot be reached just now; retrying may work."""

    http_status = 503
    code = "JOB_FETCH_FAILED"
    grpc_status = grpc.StatusCode.UNAVAILABLE


class CreationFailedError(ApiError):
    """A backend the gateway needs to accept the job is unreachable."""

    http_status = 503
    code = "JOB_CREATION_FAILED"
    grpc_status = grpc.StatusCode.UNAVAILABLE


class IdempotencyConflictError(ApiError):
    """An Idempotency-Key already used with another request (or still being used by one)."""

    http_status = 409
    code = "IDEMPOTENCY_CONFLICT"
    grpc_status = grpc.StatusCode.ALREADY_EXISTS


class StreamNotReadyError(ApiError):
    """The live stream has nothing to show yet (the recording is still being cut)."""

    http_status = 503
    code = "STREAM_NOT_READY"
    grpc_status = grpc.StatusCode.UNAVAILABLE
class UnauthorizedError(ApiError):
    """No API key, or one the gateway does not know."""

    http_status = 401
    code = "UNAUTHORIZED"
    grpc_status = grpc.StatusCode.UNAUTHENTICATED


class RateLimitedError(ApiError):
    """A limit was reached (requests per second, jobs in flight, upload bytes); try again later."""

    http_status = 429
    code = "RATE_LIMITED"
    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_sec: float) -> None:
        super().__init__(message)
        self.retry_after_sec = retry_after_sec

    @property
    def retry_after(self) -> str:
        """Whole seconds, at least 1, as the Retry-After header wants them."""
        return str(max(1, int(-(-self.retry_after_sec // 1))))


class RequestTimeoutError(ApiError):
    """The client stopped sending its request body."""

    http_status = 408
    code = "REQUEST_TIMEOUT"
    grpc_status = grpc.StatusCode.DEADLINE_EXCEEDED


class UnsupportedMediaTypeError(InvalidInputError):
    http_status = 415
