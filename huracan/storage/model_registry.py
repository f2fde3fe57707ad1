"""The spec's model registry: per-coin model versions, their metrics, status and files.

:class:`ModelRegistry` is the spec's API (``register_model``, ``get_model_metadata``,
``get_active_models``, ``set_model_active``, ``get_model_path``) over one port,
:class:`ModelRegistryStore`, with two adapters in :mod:`huracan.storage.registry_stores`:
PostgreSQL (``metadata_db`` is a DSN) and files under ``storage_path/registry`` (``metadata_db``
empty or ``None``). Both pass the same contract test suite.

Contracts that hold for every store:

* ``(coin, version)`` is registered at most once. A second registration — sequential, from
  another thread or from another process — raises :class:`ModelAlreadyRegistered` and leaves the
  first record untouched. Versions are immutable; only the status changes.
* The model file's sha256 is recorded at registration, and :meth:`ModelRegistry.get_model_path`
  (and :meth:`ModelRegistry.load_model_bytes`) re-hash the file and refuse to hand it out
  (:class:`ModelIntegrityError`) unless it matches. The file must exist at registration
  (:class:`ModelFileMissing`) unless the caller passes the ``sha256`` it already knows.
* ``get_model_metadata(coin)`` without a version returns the highest registered version,
  whatever its status, or ``None`` when the coin has none (the spec's integration example tests
  ``if not model_metadata or not model_metadata.is_active``).
* ``get_active_models`` returns active models only, best Sharpe ratio first; ties go to the newer
  version, then to the coin name.
* Nothing connects at construction: a PostgreSQL store connects, and applies its SQL migrations,
  on first use or on :meth:`ModelRegistry.open`.
* The DSN's password never appears in a repr, an error message or a log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from pydantic import SecretStr

from huracan.storage.errors import (
    InvalidModelMetadata,
    InvalidStatusTransition,
    ModelFileMissing,
    ModelIntegrityError,
    ModelNotFound,
    RegistryConfigError,
)

if TYPE_CHECKING:
    from huracan.config import HuracanConfig

log = logging.getLogger("huracan.storage.registry")

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


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _is_postgres_dsn(dsn: str) -> bool:
    lowered = dsn.lower()
    return lowered.startswith(("postgresql://", "postgres://")) or ("://" not in dsn and "=" in dsn)


class ModelRegistry:
    """The spec's model registry.

    ``ModelRegistry(storage_path="/models/trained", metadata_db="postgresql://…")`` keeps the
    metadata in PostgreSQL (schema ``huracan_registry`` unless ``schema=`` or the DSN's
    ``options=-c search_path=…`` says otherwise); with ``metadata_db`` ``None`` or empty it keeps
    it in files under ``storage_path/registry``. ``store=`` plugs any
    :class:`ModelRegistryStore` in instead. ``metadata_db`` may be a ``str`` or a pydantic
    ``SecretStr``. Relative ``model_path`` values are taken relative to ``storage_path``.

    Nothing connects here: the PostgreSQL store connects and applies its migrations on first use,
    or on :meth:`open` for callers who want to fail fast at start-up. Use it as a context manager
    or call :meth:`close`. Thread-safe.

    Raises :class:`RegistryConfigError` for a ``metadata_db`` that is not a PostgreSQL DSN, or
    when both ``metadata_db`` and ``store`` are given.
    """

    def __init__(
        self,
        storage_path: str | os.PathLike[str] = "data/models",
        metadata_db: str | SecretStr | None = None,
        *,
        store: ModelRegistryStore | None = None,
        clock: Callable[[], datetime] | None = None,
        schema: str | None = None,
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        connect_timeout: float = 5.0,
    ) -> None:
        self.storage_path = Path(storage_path)
        self._clock = clock or _utc_now
        dsn = metadata_db.get_secret_value() if isinstance(metadata_db, SecretStr) else metadata_db
        dsn = (dsn or "").strip()
        if store is not None:
            if dsn:
                raise RegistryConfigError("give either metadata_db or store, not both")
            self.store: ModelRegistryStore = store
        elif dsn:
            if not _is_postgres_dsn(dsn):
                scheme = dsn.split("://", 1)[0] if "://" in dsn else "<no scheme>"
                raise RegistryConfigError(
                    "metadata_db must be a PostgreSQL DSN (postgresql://… or key=value "
                    f"conninfo) or empty for the file store; got scheme {scheme!r}"
                )
            from huracan.storage.registry_stores import PostgresModelRegistryStore

            self.store = PostgresModelRegistryStore(
                dsn,
                schema=schema,
                min_size=pool_min_size,
                max_size=pool_max_size,
                connect_timeout=connect_timeout,
            )
        else:
            from huracan.storage.registry_stores import FileModelRegistryStore

            self.store = FileModelRegistryStore(self.storage_path / "registry")

    @classmethod
    def from_config(
        cls, config: HuracanConfig, *, clock: Callable[[], datetime] | None = None
    ) -> ModelRegistry:
        """Build from ``engine.model_registry`` (and ``postgres.pool_*`` for the pool size)."""
        section = config.engine.model_registry
        return cls(
            storage_path=section.storage_path,
            metadata_db=section.metadata_db,
            clock=clock,
            pool_min_size=config.postgres.pool_min_size,
            pool_max_size=config.postgres.pool_max_size,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> Self:
        """Connect and migrate now instead of on first use; raises ``RegistryUnavailable``."""
        self.store.open()
        return self

    def close(self) -> None:
        """Release the store's connections; idempotent."""
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ModelRegistry(storage_path={str(self.storage_path)!r}, store={self.store!r})"

    # -- the spec's API ----------------------------------------------------------------------

    def register_model(
        self,
        coin: str,
        version: int,
        sharpe_ratio: float,
        win_rate: float,
        *,
        model_path: str | os.PathLike[str],
        regime: str | None = None,
        performance_metrics: Mapping[str, Any] | None = None,
        is_active: bool = False,
        sha256: str | None = None,
    ) -> ModelMetadata:
        """Register version ``version`` of ``coin``'s model and return its record.

        The file at ``model_path`` is hashed (sha256) and the hash recorded. If ``sha256`` is
        given it is recorded instead, and checked against the file when the file exists.
        New models are inactive unless ``is_active=True``.

        Raises :class:`InvalidModelMetadata` (bad argument), :class:`ModelFileMissing` (no file
        and no ``sha256``), :class:`ModelIntegrityError` (file differs from the given
        ``sha256``), :class:`ModelAlreadyRegistered` (``(coin, version)`` exists; the existing
        record is unchanged) or ``RegistryUnavailable``.
        """
        if not isinstance(is_active, bool):
            raise InvalidModelMetadata(f"is_active must be a bool, got {is_active!r}")
        path = self._resolve(model_path)
        now = self._clock()
        placeholder = "0" * 64
        draft = ModelMetadata(
            coin=coin,
            version=version,
            sharpe_ratio=sharpe_ratio,
            win_rate=win_rate,
            regime=regime,
            performance_metrics=performance_metrics or {},
            model_path=str(path),
            sha256=placeholder if sha256 is None else sha256,
            status=ModelStatus.ACTIVE if is_active else ModelStatus.INACTIVE,
            created_at=now,
            updated_at=now,
        )
        digest = self._hash_for_registration(draft, path, sha256)
        metadata = ModelMetadata(**{**_fields(draft), "sha256": digest})
        self.store.add(metadata)
        log.info(
            "registered model %s v%d (sha256 %s, status %s)",
            metadata.coin,
            metadata.version,
            metadata.sha256[:12],
            metadata.status.value,
        )
        return metadata

    def get_model_metadata(self, coin: str, version: int | None = None) -> ModelMetadata | None:
        """The record of ``coin``'s ``version``; the highest version when ``version`` is None.

        Returns ``None`` when there is no such model (any status counts as "there").
        """
        validate_coin(coin)
        if version is not None:
            validate_version(version)
        return self.store.get(coin, version)

    def get_active_models(
        self,
        coin: str | None = None,
        regime: str | None = None,
        limit: int | None = DEFAULT_ACTIVE_LIMIT,
    ) -> list[ModelMetadata]:
        """Active models, best Sharpe ratio first (ties: newer version, then coin).

        ``coin``/``regime`` filter when given (a regime filter matches that regime exactly);
        ``limit`` caps the list (``None``: no cap). Raises :class:`InvalidModelMetadata` for a
        bad coin, regime or a limit below 1.
        """
        if coin is not None:
            validate_coin(coin)
        _validate_regime(regime)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InvalidModelMetadata(f"limit must be an integer or None, got {limit!r}")
        if limit is not None and limit < 1:
            raise InvalidModelMetadata(f"limit must be >= 1, got {limit}")
        return self.store.list_active(coin, regime, limit)

    def set_model_active(self, coin: str, version: int, is_active: bool = True) -> ModelMetadata:
        """Activate (or deactivate) one version and return its new record.

        Other versions keep their status. Raises :class:`ModelNotFound` or
        :class:`InvalidStatusTransition` (the version is retired).
        """
        if not isinstance(is_active, bool):
            raise InvalidModelMetadata(f"is_active must be a bool, got {is_active!r}")
        status = ModelStatus.ACTIVE if is_active else ModelStatus.INACTIVE
        return self.set_model_status(coin, version, status)

    def retire_model(self, coin: str, version: int) -> ModelMetadata:
        """Retire one version for good (it can no longer be activated); returns its record."""
        return self.set_model_status(coin, version, ModelStatus.RETIRED)

    def set_model_status(self, coin: str, version: int, status: ModelStatus) -> ModelMetadata:
        """Set the status of one version (see :class:`ModelStatus` for the allowed changes)."""
        validate_coin(coin)
        validate_version(version)
        try:
            status = ModelStatus(status)
        except ValueError:
            raise InvalidModelMetadata(f"unknown model status {status!r}") from None
        updated = self.store.set_status(coin, version, status, self._clock())
        log.info("model %s v%d is now %s", coin, version, status.value)
        return updated

    def get_model_path(self, coin: str, version: int | None = None) -> Path:
        """The model file's path, after checking its sha256 against the recorded one.

        ``version`` None means the highest version. Raises :class:`ModelNotFound`,
        :class:`ModelFileMissing` or :class:`ModelIntegrityError` (the file changed since
        registration). The check re-hashes the file on every call; to rule out a swap between
        the check and the load, use :meth:`load_model_bytes`.
        """
        metadata = self._require(coin, version)
        path = Path(metadata.model_path)
        try:
            actual = sha256_of_file(path)
        except FileNotFoundError:
            raise ModelFileMissing(
                f"model {coin!r} version {metadata.version}: file {path} is missing",
                path=str(path),
                expected=metadata.sha256,
            ) from None
        except OSError as exc:
            raise ModelIntegrityError(
                f"model {coin!r} version {metadata.version}: cannot read {path}: "
                f"{exc.strerror or exc}",
                path=str(path),
                expected=metadata.sha256,
            ) from None
        self._check_digest(metadata, actual)
        return path

    def load_model_bytes(self, coin: str, version: int | None = None) -> bytes:
        """The model file's bytes, read once and checked against the recorded sha256.

        Same errors as :meth:`get_model_path`; the bytes returned are exactly the ones hashed.
        """
        metadata = self._require(coin, version)
        path = Path(metadata.model_path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelFileMissing(
                f"model {coin!r} version {metadata.version}: file {path} is missing",
                path=str(path),
                expected=metadata.sha256,
            ) from None
        except OSError as exc:
            raise ModelIntegrityError(
                f"model {coin!r} version {metadata.version}: cannot read {path}: "
                f"{exc.strerror or exc}",
                path=str(path),
                expected=metadata.sha256,
            ) from None
        self._check_digest(metadata, hashlib.sha256(data).hexdigest())
        return data

    def list_models(self, coin: str | None = None) -> list[ModelMetadata]:
        """Every registered version (of ``coin``, if given), by coin then version."""
        if coin is not None:
            validate_coin(coin)
        return self.store.list_models(coin)

    # -- helpers -----------------------------------------------------------------------------

    def _resolve(self, model_path: str | os.PathLike[str]) -> Path:
        if not isinstance(model_path, str | os.PathLike) or not os.fspath(model_path):
            raise InvalidModelMetadata(f"model_path must be a path, got {model_path!r}")
        path = Path(model_path)
        if not path.is_absolute():
            path = self.storage_path / path
        return Path(os.path.abspath(path))

    def _hash_for_registration(self, draft: ModelMetadata, path: Path, given: str | None) -> str:
        try:
            actual = sha256_of_file(path)
        except FileNotFoundError:
            if given is None:
                raise ModelFileMissing(
                    f"cannot register model {draft.coin!r} version {draft.version}: file {path} "
                    "does not exist (write the file first, or pass sha256= if it is stored "
                    "elsewhere)",
                    path=str(path),
                ) from None
            return draft.sha256
        except OSError as exc:
            raise ModelIntegrityError(
                f"cannot register model {draft.coin!r} version {draft.version}: cannot read "
                f"{path}: {exc.strerror or exc}",
                path=str(path),
            ) from None
        if given is not None and actual != draft.sha256:
            raise ModelIntegrityError(
                f"cannot register model {draft.coin!r} version {draft.version}: file {path} "
                f"has sha256 {actual}, not the given {draft.sha256}",
                path=str(path),
                expected=draft.sha256,
                actual=actual,
            )
        return actual

    def _require(self, coin: str, version: int | None) -> ModelMetadata:
        metadata = self.get_model_metadata(coin, version)
        if metadata is None:
            raise ModelNotFound(coin, version)
        return metadata

    @staticmethod
    def _check_digest(metadata: ModelMetadata, actual: str) -> None:
        if actual != metadata.sha256:
            log.error(
                "model %s v%d failed its integrity check (%s)",
                metadata.coin,
                metadata.version,
                metadata.model_path,
            )
            raise ModelIntegrityError(
                f"model {metadata.coin!r} version {metadata.version}: file "
                f"{metadata.model_path} has sha256 {actual} but {metadata.sha256} was registered; "
                "refusing to hand it out",
                path=metadata.model_path,
                expected=metadata.sha256,
                actual=actual,
            )


def _fields(metadata: ModelMetadata) -> dict[str, Any]:
    return {name: getattr(metadata, name) for name in ModelMetadata.__dataclass_fields__}
