"""Errors of :mod:`huracan.storage`.

Every message is safe to log: a DSN's password never appears in one (the stores redact it
before building a message, and wrapped driver errors are redacted and not chained).
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by :mod:`huracan.storage`."""


class RegistryError(StorageError):
    """Base class of the model registry's errors."""


class RegistryConfigError(RegistryError, ValueError):
    """The registry was configured wrongly (e.g. a ``metadata_db`` that is not a PostgreSQL DSN)."""


class InvalidModelMetadata(RegistryError, ValueError):
    """An argument of a registry call is invalid; the message names the field and the value."""


class ModelAlreadyRegistered(RegistryError):
    """A model with this ``(coin, version)`` is already registered; the first record stands."""

    def __init__(self, coin: str, version: int) -> None:
        super().__init__(
            f"model {coin!r} version {version} is already registered; "
            "versions are immutable, register a new version instead"
        )
        self.coin = coin
        self.version = version


class ModelNotFound(RegistryError, LookupError):
    """No model is registered under this coin (and version)."""

    def __init__(self, coin: str, version: int | None = None) -> None:
        what = f"model {coin!r}" + ("" if version is None else f" version {version}")
        super().__init__(f"{what} is not registered")
        self.coin = coin
        self.version = version


class ModelIntegrityError(RegistryError):
    """A model file does not match the sha256 recorded at registration (or cannot be read)."""

    def __init__(
        self, message: str, *, path: str, expected: str | None = None, actual: str | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.expected = expected
        self.actual = actual


class ModelFileMissing(ModelIntegrityError):
    """The model file does not exist (at registration, or when its path is asked for)."""


class InvalidStatusTransition(RegistryError):
    """The requested status change is not allowed (a retired model cannot come back)."""


class RegistryUnavailable(RegistryError):
    """The registry's store cannot be reached (PostgreSQL down, refused, timed out, auth failed).

    The message names host, port, database and user; never the password.
    """


class MigrationError(RegistryError):
    """A schema migration failed, or an applied migration's file changed since it was applied."""


class RegistryCorrupted(RegistryError):
    """A stored record cannot be read back (truncated or hand-edited file, bad row)."""


class RegistryClosed(RegistryError):
    """The registry (or its store) was closed and cannot be used any more."""
