"""The model registry's data and its port: :class:`ModelMetadata`, :class:`ModelStatus`, the
status transitions, the field validators and :class:`ModelRegistryStore`, the protocol every
store adapter implements (:mod:`huracan.storage.registry_stores`).

It imports no adapter and no registry, so the registry (:mod:`huracan.storage.model_registry`)
and the stores both depend on it and not on each other's internals.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from huracan.storage.errors import (
    InvalidModelMetadata,
    InvalidStatusTransition,
)

#: a coin names a directory in the file store, so it is restricted to a safe alphabet
COIN_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
#: the largest version both stores hold (PostgreSQL BIGINT)
MAX_VERSION = 2**63 - 1
DEFAULT_ACTIVE_LIMIT = 10


class ModelStatus(StrEnum):
    """Lifecycle of a registered model version.

    ``ACTIVE`` models are served (``is_active`` is true); ``INACTIVE`` ones are kept and may be
    activated again; ``RETIRED`` is final — a retired version cannot be activated or
    deactivated again (:class:`InvalidStatusTransition`); register a new version instead.
    """

    ACTIVE = "active"
    INACTIVE = "inactive"
    RETIRED = "retired"


def check_status_transition(coin: str, version: int, old: ModelStatus, new: ModelStatus) -> None:
    """Raise :class:`InvalidStatusTransition` unless ``old -> new`` is allowed.

    Every change is allowed except leaving ``RETIRED`` (retiring twice is a no-op).
    """
    if old is ModelStatus.RETIRED and new is not ModelStatus.RETIRED:
        raise InvalidStatusTransition(
            f"model {coin!r} version {version} is retired and cannot become {new.value}; "
            "register a new version instead"
        )


def validate_coin(coin: object) -> str:
    """Return ``coin`` if it is a valid coin name, else raise :class:`InvalidModelMetadata`."""
    if not isinstance(coin, str) or not COIN_PATTERN.match(coin):
        raise InvalidModelMetadata(
            f"coin must be 1-64 characters of letters, digits, '.', '_' or '-' starting with a "
            f"letter or digit, got {coin!r}"
        )
    return coin


def validate_version(version: object) -> int:
    """Return ``version`` if it is an int in ``[1, 2**63-1]``, else raise."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidModelMetadata(f"version must be an integer, got {version!r}")
    if not 1 <= version <= MAX_VERSION:
        raise InvalidModelMetadata(f"version must be >= 1, got {version}")
    return version


def _validate_regime(regime: object) -> str | None:
    if regime is None:
        return None
    if (
        not isinstance(regime, str)
        or not regime
        or regime != regime.strip()
        or len(regime) > 64
        or not regime.isprintable()
    ):
        raise InvalidModelMetadata(
            f"regime must be None or 1-64 printable characters without surrounding spaces, "
            f"got {regime!r}"
        )
    return regime


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidModelMetadata(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidModelMetadata(f"{name} must be finite, got {value!r}")
    return float(value)


def _frozen_metrics(metrics: object) -> Mapping[str, Any]:
    if metrics is None:
        return MappingProxyType({})
    if not isinstance(metrics, Mapping):
        raise InvalidModelMetadata(f"performance_metrics must be a mapping, got {metrics!r}")
    for key in metrics:
        if not isinstance(key, str):
            raise InvalidModelMetadata(f"performance_metrics keys must be strings, got {key!r}")
    try:
        copied = json.loads(json.dumps(dict(metrics), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidModelMetadata(
            f"performance_metrics must be JSON values without NaN or infinity: {exc}"
        ) from None
    return MappingProxyType(copied)


def _utc(name: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidModelMetadata(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class ModelMetadata:
    """One registered model version, as the registry stores it.

    Constructing one validates every field (:class:`InvalidModelMetadata`): ``version >= 1``,
    finite ``sharpe_ratio``, ``win_rate`` in ``[0, 1]``, JSON-able ``performance_metrics``
    (kept as a read-only copy), a 64-hex ``sha256``, timezone-aware timestamps (kept in UTC).
    """

    coin: str
    version: int
    sharpe_ratio: float
    win_rate: float
    regime: str | None
    model_path: str
    sha256: str
    status: ModelStatus
    created_at: datetime
    updated_at: datetime
    performance_metrics: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        validate_coin(self.coin)
        validate_version(self.version)
        set_ = object.__setattr__
        set_(self, "sharpe_ratio", _finite("sharpe_ratio", self.sharpe_ratio))
        win_rate = _finite("win_rate", self.win_rate)
        if not 0.0 <= win_rate <= 1.0:
            raise InvalidModelMetadata(f"win_rate must be within [0, 1], got {win_rate!r}")
        set_(self, "win_rate", win_rate)
        _validate_regime(self.regime)
        if not isinstance(self.model_path, str) or not self.model_path:
            raise InvalidModelMetadata(
                f"model_path must be a non-empty string, got {self.model_path!r}"
            )
        if not isinstance(self.sha256, str) or not _SHA256_PATTERN.match(self.sha256):
            raise InvalidModelMetadata(
                f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}"
            )
        try:
            set_(self, "status", ModelStatus(self.status))
        except ValueError:
            raise InvalidModelMetadata(
                f"status must be one of {[s.value for s in ModelStatus]}, got {self.status!r}"
            ) from None
        set_(self, "created_at", _utc("created_at", self.created_at))
        set_(self, "updated_at", _utc("updated_at", self.updated_at))
        set_(self, "performance_metrics", _frozen_metrics(self.performance_metrics))

    def __hash__(self) -> int:
        return hash((self.coin, self.version, self.sha256, self.status, self.updated_at))

    @property
    def is_active(self) -> bool:
        """True when the model is served (status ``ACTIVE``)."""
        return self.status is ModelStatus.ACTIVE

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field plus ``is_active`` (timestamps in ISO 8601)."""
        return {
            "coin": self.coin,
            "version": self.version,
            "sharpe_ratio": self.sharpe_ratio,
            "win_rate": self.win_rate,
            "regime": self.regime,
            "performance_metrics": dict(self.performance_metrics),
            "model_path": self.model_path,
            "sha256": self.sha256,
            "status": self.status.value,
            "is_active": self.is_active,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@runtime_checkable
class ModelRegistryStore(Protocol):
    """The registry's persistence port. Adapters: file and PostgreSQL.

    Stores persist and query :class:`ModelMetadata`; validation and file hashing stay in
    :class:`ModelRegistry`. Every method is safe to call from several threads at once.
    """

    def open(self) -> None:
        """Make the store ready (connect, migrate); idempotent. Raises ``RegistryUnavailable``."""
        ...

    def close(self) -> None:
        """Release connections; idempotent. Later calls raise ``RegistryClosed``."""
        ...

    def add(self, metadata: ModelMetadata) -> None:
        """Persist a new record; raise ``ModelAlreadyRegistered`` if ``(coin, version)`` exists.

        Atomic: of several concurrent adds of one ``(coin, version)`` exactly one succeeds.
        """
        ...

    def get(self, coin: str, version: int | None) -> ModelMetadata | None:
        """The record of ``(coin, version)``, or the highest version when ``version`` is None."""
        ...

    def list_active(
        self, coin: str | None, regime: str | None, limit: int | None
    ) -> list[ModelMetadata]:
        """Active records, filtered, ordered by sharpe desc, version desc, coin; ``limit`` max."""
        ...

    def list_models(self, coin: str | None) -> list[ModelMetadata]:
        """Every record (of ``coin``, if given), ordered by coin then version."""
        ...

    def set_status(
        self, coin: str, version: int, status: ModelStatus, updated_at: datetime
    ) -> ModelMetadata:
        """Change the status atomically and return the new record.

        Raises ``ModelNotFound`` or ``InvalidStatusTransition`` (see
        :func:`check_status_transition`).
        """
        ...


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of the file's bytes. Raises ``OSError`` when it cannot be read."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
