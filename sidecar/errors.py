"""The sidecar's exception tree.

Every error the sidecar raises on purpose derives from :class:`BaselinedError`.
Each class names the gRPC status it maps to at the servicer edge; nothing
below the servicer knows about gRPC.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "BaselinedError",
    "ConfigError",
    "Conflict",
    "FailedPrecondition",
    "InvalidInput",
    "NotFound",
    "StoreUnavailable",
    "TooLarge",
]


class BaselinedError(Exception):
    """Base of every deliberate sidecar error. ``grpc_code`` names a grpc.StatusCode."""

    grpc_code = "INTERNAL"


class InvalidInput(BaselinedError):
    """The request is malformed: a field is missing, out of range or inconsistent."""

    grpc_code = "INVALID_ARGUMENT"


class TooLarge(BaselinedError):
    """The request exceeds a configured bound (message size, signals, slice values)."""

    grpc_code = "RESOURCE_EXHAUSTED"


class NotFound(BaselinedError):
    """The named baseline (or other object) does not exist."""

    grpc_code = "NOT_FOUND"


class AlreadyExists(BaselinedError):
    """An object with that id or name exists already; nothing was changed."""

    grpc_code = "ALREADY_EXISTS"


class Conflict(BaselinedError):
    """A compare-and-set lost a race: someone else changed the state first. Retry."""

    grpc_code = "ABORTED"


class FailedPrecondition(BaselinedError):
    """The operation is not allowed in the current state (retire the active baseline, ...)."""

    grpc_code = "FAILED_PRECONDITION"


class StoreUnavailable(BaselinedError):
    """The store (SQLite file, Redis) cannot be reached or answered with an error."""

    grpc_code = "UNAVAILABLE"


class ConfigError(BaselinedError):
    """A setting is invalid. The message names the field and what is wrong with it."""

    grpc_code = "INVALID_ARGUMENT"
