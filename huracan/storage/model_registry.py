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
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from pydantic import SecretStr

from huracan.storage.errors import (
    InvalidModelMetadata,
    ModelFileMissing,
    ModelIntegrityError,
    ModelNotFound,
    RegistryConfigError,
)

if TYPE_CHECKING:
    from huracan.config import HuracanConfig

from huracan.storage.model_metadata import (
    COIN_PATTERN,
    DEFAULT_ACTIVE_LIMIT,
    MAX_VERSION,
    ModelMetadata,
    ModelRegistryStore,
    ModelStatus,
    _validate_regime,
    check_status_transition,
    sha256_of_file,
    validate_coin,
    validate_version,
)

log = logging.getLogger("huracan.storage.registry")


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


__all__ = [
    "COIN_PATTERN",
    "DEFAULT_ACTIVE_LIMIT",
    "MAX_VERSION",
    "ModelMetadata",
    "ModelRegistry",
    "ModelRegistryStore",
    "ModelStatus",
    "check_status_transition",
    "sha256_of_file",
    "validate_coin",
    "validate_version",
]
