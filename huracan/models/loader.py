"""Signal models from the registry: the coin's active model, loaded once, served from memory.

:class:`RegistryModels` is the ``models`` callable the pipeline and the in-process engine take
(``coin -> SignalModel | None``; ``None`` means the built-in baseline). Calling it is one dict
lookup; all registry I/O happens in :meth:`RegistryModels.refresh`, which the owner schedules
(a Faust timer, an asyncio task via :meth:`RegistryModels.refresh_async`, or once before a
replay). Publishing a model is two lines::

    registry = ModelRegistry.from_config(cfg)
    register_momentum_model(registry, "BTC", BaselineParams(entry_z=2.0), sharpe_ratio=1.4)

A coin's active model is its best-ranked active version in the registry (highest Sharpe ratio,
ties to the newer version — the order of ``get_active_models``) whose artifact loads; a version
whose file is missing, altered (sha256 mismatch) or invalid is skipped, reported in
:meth:`RegistryModels.status` and retried on the next refresh, never cached. A model's
``version`` — recorded in every signal it makes — is ``"<coin>:<type>@<registry version>"``,
e.g. ``"BTC:momentum@3"``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from huracan.domain.signals import BaselineParams, SignalModel
from huracan.models.artifact import LinearParams, parse_artifact, save_model_artifact
from huracan.models.errors import ModelArtifactError
from huracan.storage.errors import ModelIntegrityError, ModelNotFound
from huracan.storage.model_registry import ModelMetadata, ModelRegistry

if TYPE_CHECKING:
    from huracan.config import HuracanConfig

log = logging.getLogger("huracan.models")

DEFAULT_REFRESH_S = 30.0


def model_version_label(coin: str, model_type: str, version: int) -> str:
    """The identity a registry model puts in ``Signal.model_version``: ``"BTC:momentum@3"``."""
    return f"{coin}:{model_type}@{version}"


@dataclass(frozen=True, slots=True)
class ModelsStatus:
    """What :meth:`RegistryModels.status` reports (for ``/health``).

    ``last_refresh_ok`` is ``None`` before the first refresh. Ages are seconds on the
    loader's clock (``None`` when it never happened). ``load_errors`` maps a coin to why its
    best active version could not be loaded (the coin then uses its next loadable active
    version, or the baseline).
    """

    models_loaded: int
    models: Mapping[str, str]
    last_refresh_ok: bool | None
    last_error: str | None
    last_success_age_s: float | None
    last_attempt_age_s: float | None
    refreshes: int
    failures: int
    load_errors: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def healthy(self) -> bool:
        """True when the last refresh reached the registry and every active model loaded."""
        return bool(self.last_refresh_ok) and not self.load_errors

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field plus ``healthy``."""
        return {
            "healthy": self.healthy,
            "models_loaded": self.models_loaded,
            "models": dict(self.models),
            "last_refresh_ok": self.last_refresh_ok,
            "last_error": self.last_error,
            "last_success_age_s": self.last_success_age_s,
            "last_attempt_age_s": self.last_attempt_age_s,
            "refreshes": self.refreshes,
            "failures": self.failures,
            "load_errors": dict(self.load_errors),
        }


_Key = tuple[str, int, str]  # coin, registry version, sha256


class RegistryModels:
    """``coin -> SignalModel | None`` backed by a :class:`ModelRegistry`.

    Contracts:

    * ``__call__`` never does I/O and never raises: it reads the map built by the last
      successful :meth:`refresh` (empty before the first one, so every coin gets ``None``, the
      baseline).
    * :meth:`refresh` never raises either. If the registry cannot be listed, or a model file
      cannot be read because the registry is unreachable, the previous map stays in service
      untouched and the error shows in :meth:`status`.
    * An artifact is loaded and its sha256 verified once per ``(coin, version, sha256)``; later
      refreshes reuse the loaded model.
    * Thread-safety: :meth:`refresh` may run in a worker thread while the event loop calls the
      instance; the map is replaced by one reference assignment, and refreshes are serialised.

    ``refresh_s`` is the minimum interval :meth:`refresh_if_due` keeps between refreshes;
    ``clock`` (monotonic seconds) is injected for tests; ``regime`` restricts the active
    models considered to that regime.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
        regime: str | None = None,
    ) -> None:
        if not refresh_s >= 0:
            raise ValueError(f"refresh_s must be >= 0, got {refresh_s!r}")
        self.registry = registry
        self.refresh_s = float(refresh_s)
        self.regime = regime
        self._clock = clock
        self._models: dict[str, SignalModel] = {}
        self._loaded: dict[_Key, SignalModel] = {}
        self._load_errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._last_ok: bool | None = None
        self._last_error: str | None = None
        self._last_success: float | None = None
        self._last_attempt: float | None = None
        self._refreshes = 0
        self._failures = 0

    @classmethod
    def from_config(
        cls, config: HuracanConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> RegistryModels:
        """Over ``ModelRegistry.from_config(config)``, refreshing every
        ``engine.model_registry.refresh_seconds``. Connects to nothing until :meth:`refresh`."""
        return cls(
            ModelRegistry.from_config(config),
            refresh_s=config.engine.model_registry.refresh_seconds,
            clock=clock,
        )

    def close(self) -> None:
        """Close the underlying registry (its connection pool); the loaded models stay served."""
        self.registry.close()

    def __call__(self, coin: str) -> SignalModel | None:
        """The coin's active model, or ``None`` for the baseline. A dict lookup."""
        return self._models.get(coin)

    def __repr__(self) -> str:
        return f"RegistryModels({self.registry!r}, models={len(self._models)})"

    @property
    def models(self) -> Mapping[str, SignalModel]:
        """The map in service now (read-only view)."""
        return MappingProxyType(self._models)

    # -- refreshing --------------------------------------------------------------------------

    def refresh_if_due(self) -> bool:
        """Refresh unless the last attempt was less than ``refresh_s`` ago, or another refresh
        is running (a slow registry never queues refreshes up); True if it ran."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            last = self._last_attempt
            if last is not None and self._clock() - last < self.refresh_s:
                return False
            self._refresh_locked()
            return True
        finally:
            self._lock.release()

    async def refresh_async(self) -> bool:
        """:meth:`refresh_if_due` in a worker thread, keeping registry I/O off the event loop."""
        return await asyncio.to_thread(self.refresh_if_due)

    def refresh(self) -> bool:
        """Re-read the active models now; return True if the registry could be read.

        Steps:
        1. list the active models (all coins, ``regime`` if set), best-ranked first;
        2. for each coin, walk its active versions in that order and take the first one that
           loads: already loaded ``(coin, version, sha256)`` -> reuse; else read the file
           through the registry (sha256 checked) and parse it. A missing, altered or invalid
           artifact is recorded against the coin and skipped;
        3. if step 1 or a file read failed because the registry is unreachable (any error
           other than a bad artifact), keep the old map, record the error and return False;
        4. otherwise swap in the new map (one assignment) and drop cached models no longer
           active.
        """
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> bool:
        """The steps of :meth:`refresh`; the caller holds ``self._lock``."""
        self._last_attempt = self._clock()
        self._refreshes += 1
        try:
            active = self.registry.get_active_models(regime=self.regime, limit=None)
            models, loaded, errors = self._load_all(active)
        except Exception as exc:  # noqa: BLE001 - a registry failure must not reach the caller
            self._failures += 1
            self._last_ok = False
            self._last_error = f"{type(exc).__name__}: {exc}"
            kept = len(self._models)
            log.warning("registry refresh failed, keeping %d models: %s", kept, exc)
            return False
        for coin, reason in errors.items():
            if self._load_errors.get(coin) != reason:
                log.error("model for %s not loaded: %s", coin, reason)
        changed = {c: m.version for c, m in models.items()} != {
            c: m.version for c, m in self._models.items()
        }
        self._models = models
        self._loaded = loaded
        self._load_errors = errors
        self._last_ok = True
        self._last_error = None
        self._last_success = self._last_attempt
        if changed:
            names = ", ".join(sorted(m.version for m in models.values())) or "none"
            log.info("serving %d registry models: %s", len(models), names)
        return True

    def _load_all(
        self, active: list[ModelMetadata]
    ) -> tuple[dict[str, SignalModel], dict[_Key, SignalModel], dict[str, str]]:
        models: dict[str, SignalModel] = {}
        loaded: dict[_Key, SignalModel] = {}
        errors: dict[str, str] = {}
        for meta in active:
            if meta.coin in models:
                continue  # a better-ranked version of this coin already loaded
            key = (meta.coin, meta.version, meta.sha256)
            model = self._loaded.get(key) or loaded.get(key)
            if model is None:
                try:
                    model = self._load(meta)
                except (ModelIntegrityError, ModelNotFound, ModelArtifactError) as exc:
                    errors.setdefault(meta.coin, f"version {meta.version}: {exc}")
                    continue
            models[meta.coin] = model
            loaded[key] = model
        return models, loaded, errors

    def _load(self, meta: ModelMetadata) -> SignalModel:
        data = self.registry.load_model_bytes(meta.coin, meta.version)
        artifact = parse_artifact(data)
        model = artifact.build(model_version_label(meta.coin, artifact.model_type, meta.version))
        log.info("loaded model %s (sha256 %s)", model.version, meta.sha256[:12])
        return model

    # -- reporting ---------------------------------------------------------------------------

    def status(self) -> ModelsStatus:
        """The loader's state for ``/health`` (see :class:`ModelsStatus`)."""
        now = self._clock()

        def age(t: float | None) -> float | None:
            return None if t is None else round(now - t, 3)

        models = self._models
        return ModelsStatus(
            models_loaded=len(models),
            models=MappingProxyType({c: m.version for c, m in sorted(models.items())}),
            last_refresh_ok=self._last_ok,
            last_error=self._last_error,
            last_success_age_s=age(self._last_success),
            last_attempt_age_s=age(self._last_attempt),
            refreshes=self._refreshes,
            failures=self._failures,
            load_errors=MappingProxyType(dict(self._load_errors)),
        )


# ---------------------------------------------------------------------------------------------
# Publishing
# ---------------------------------------------------------------------------------------------


def register_model_artifact(
    registry: ModelRegistry,
    coin: str,
    model_type: str,
    params: object,
    *,
    version: int | None = None,
    sharpe_ratio: float = 0.0,
    win_rate: float = 0.0,
    regime: str | None = None,
    performance_metrics: Mapping[str, Any] | None = None,
    activate: bool = True,
    path: str | Path | None = None,
) -> ModelMetadata:
    """Write a ``model_type`` artifact for ``params`` and register it for ``coin``.

    ``version`` defaults to one above the coin's highest registered version; ``path`` defaults
    to ``<storage_path>/<coin>/<model_type>_v<version>.json``. The model is active at once
    unless ``activate=False`` (other active versions of the coin stay active; the best-ranked
    one is served). Raises :class:`ModelArtifactError` for bad params (nothing written),
    :class:`~huracan.models.errors.ArtifactExists` if the file exists, and the registry's
    errors (``ModelAlreadyRegistered`` when another publisher took the version first).
    """
    if version is None:
        latest = registry.get_model_metadata(coin)
        version = 1 if latest is None else latest.version + 1
    target = (
        Path(path)
        if path is not None
        else registry.storage_path / coin / f"{model_type}_v{version}.json"
    )
    written = save_model_artifact(target, model_type, params)
    return registry.register_model(
        coin,
        version,
        sharpe_ratio,
        win_rate,
        model_path=written,
        regime=regime,
        performance_metrics=performance_metrics,
        is_active=activate,
    )


def register_momentum_model(
    registry: ModelRegistry,
    coin: str,
    params: BaselineParams | Mapping[str, Any] | None = None,
    **options: Any,
) -> ModelMetadata:
    """Publish a ``momentum`` model (default params: the baseline's); see
    :func:`register_model_artifact` for ``options``."""
    return register_model_artifact(
        registry, coin, "momentum", params if params is not None else BaselineParams(), **options
    )


def register_linear_model(
    registry: ModelRegistry,
    coin: str,
    params: LinearParams | Mapping[str, Any],
    **options: Any,
) -> ModelMetadata:
    """Publish a ``linear`` model; see :func:`register_model_artifact` for ``options``."""
    return register_model_artifact(registry, coin, "linear", params, **options)


__all__ = [
    "DEFAULT_REFRESH_S",
    "ModelsStatus",
    "RegistryModels",
    "model_version_label",
    "register_linear_model",
    "register_model_artifact",
    "register_momentum_model",
]
