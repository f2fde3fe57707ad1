"""The signal-model artifact: a small JSON document, safe to load (no pickle, no code).

A model file in the registry is UTF-8 JSON of this shape::

    {"format": "huracan.signal-model", "format_version": 1,
     "type": "momentum",
     "params": {"warmup_ticks": 30, "entry_z": 1.5, "edge_per_z_bps": 4.0,
                "max_edge_bps": 60.0, "base_size_usd": 10000.0,
                "max_size_multiple": 3.0, "min_volatility_bps": 0.5}}

Types (the extension point is :data:`MODEL_TYPES`):

* ``momentum`` — the baseline rule of :mod:`huracan.domain.signals` with the given
  :class:`~huracan.domain.signals.BaselineParams`; every field is required, so a registered
  model never changes behaviour when a default changes.
* ``linear`` — ``z = bias + sum(weights[f] * features.f)`` over the bps features in
  :data:`LINEAR_FEATURES`, then the baseline's warm-up, entry, edge and size mapping
  (:class:`LinearParams`).

:func:`load_model` turns bytes into a :class:`~huracan.domain.signals.SignalModel` whose
``version`` is the caller's (the registry's identity of the model, e.g. ``"BTC:momentum@3"``), so
every signal records which model made it. It raises :class:`ModelArtifactError` (or a subclass)
naming the bad field; it never evaluates anything from the document.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from huracan.domain.features import FeatureVector
from huracan.domain.signals import (
    BaselineMomentumModel,
    BaselineParams,
    Signal,
    SignalModel,
    signal_from_score,
)
from huracan.models.errors import (
    ArtifactExists,
    ModelArtifactError,
    UnknownModelType,
    UnsupportedArtifactVersion,
)

ARTIFACT_FORMAT = "huracan.signal-model"
ARTIFACT_FORMAT_VERSION = 1
#: artifacts larger than this are refused before parsing (they are a few hundred bytes)
MAX_ARTIFACT_BYTES = 1 << 20
#: the FeatureVector fields a linear model may weigh (all in bps, so weights are scale-free)
LINEAR_FEATURES = ("ret_bps", "mean_ret_bps", "volatility_bps", "spread_bps", "momentum_bps")


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class MomentumModel(BaselineMomentumModel):
    """The baseline momentum rule with registry-given params and a registry identity."""

    def __init__(self, params: BaselineParams, version: str) -> None:
        super().__init__(params)
        self.version = version

    def __repr__(self) -> str:
        return f"MomentumModel(version={self.version!r}, params={self.params!r})"


@dataclass(frozen=True, slots=True)
class LinearParams:
    """Parameters of a ``linear`` model; the mapping fields mean what they do in the baseline.

    ``weights`` maps names in :data:`LINEAR_FEATURES` to finite floats (at least one).
    """

    weights: Mapping[str, float]
    bias: float = 0.0
    warmup_ticks: int = 30
    entry_z: float = 1.5
    edge_per_z_bps: float = 4.0
    max_edge_bps: float = 60.0
    base_size_usd: float = 10_000.0
    max_size_multiple: float = 3.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", MappingProxyType(dict(self.weights)))


class LinearModel:
    """``z`` from a weighted sum of features; signal only when ``|z| >= entry_z``."""

    def __init__(self, params: LinearParams, version: str) -> None:
        self.params = params
        self.version = version
        self._terms = tuple(params.weights.items())

    def __repr__(self) -> str:
        return f"LinearModel(version={self.version!r}, params={self.params!r})"

    def evaluate(self, features: FeatureVector) -> Signal | None:
        p = self.params
        if features.n_ticks < p.warmup_ticks:
            return None
        z = p.bias
        for name, weight in self._terms:
            z += weight * getattr(features, name)
        return signal_from_score(features, z, p, self.version)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _number(params: Mapping[str, Any], name: str, *, low: float, strict: bool) -> float:
    where = f"params.{name}"
    if name not in params:
        raise ModelArtifactError(f"{where} is missing", field=where)
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ModelArtifactError(f"{where} must be a finite number, got {value!r}", field=where)
    if value < low or (strict and value == low):
        bound = f"> {low}" if strict else f">= {low}"
        raise ModelArtifactError(f"{where} must be {bound}, got {value!r}", field=where)
    return float(value)


def _count(params: Mapping[str, Any], name: str) -> int:
    where = f"params.{name}"
    if name not in params:
        raise ModelArtifactError(f"{where} is missing", field=where)
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ModelArtifactError(
            f"{where} must be a non-negative integer, got {value!r}", field=where
        )
    return value


def _no_extra(params: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(params) - allowed)
    if extra:
        where = f"params.{extra[0]}"
        raise ModelArtifactError(
            f"{where} is not a parameter of this model type (allowed: {sorted(allowed)})",
            field=where,
        )


def _mapping_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """The warm-up/entry/edge/size fields shared by every type, validated."""
    return {
        "warmup_ticks": _count(params, "warmup_ticks"),
        "entry_z": _number(params, "entry_z", low=0.0, strict=True),
        "edge_per_z_bps": _number(params, "edge_per_z_bps", low=0.0, strict=False),
        "max_edge_bps": _number(params, "max_edge_bps", low=0.0, strict=False),
        "base_size_usd": _number(params, "base_size_usd", low=0.0, strict=True),
        "max_size_multiple": _number(params, "max_size_multiple", low=1.0, strict=False),
    }


def momentum_params(params: Mapping[str, Any]) -> BaselineParams:
    """Validate a ``momentum`` artifact's params; every :class:`BaselineParams` field required."""
    _no_extra(params, {f.name for f in fields(BaselineParams)})
    return BaselineParams(
        **_mapping_fields(params),
        min_volatility_bps=_number(params, "min_volatility_bps", low=0.0, strict=True),
    )


def linear_params(params: Mapping[str, Any]) -> LinearParams:
    """Validate a ``linear`` artifact's params (``bias`` and the mapping fields required)."""
    _no_extra(params, {f.name for f in fields(LinearParams)})
    weights = params.get("weights")
    if not isinstance(weights, Mapping) or not weights:
        raise ModelArtifactError(
            f"params.weights must be a non-empty object, got {weights!r}", field="params.weights"
        )
    checked: dict[str, float] = {}
    for name in weights:
        where = f"params.weights.{name}"
        if name not in LINEAR_FEATURES:
            raise ModelArtifactError(
                f"{where}: {name!r} is not a feature a linear model can weigh "
                f"(one of {list(LINEAR_FEATURES)})",
                field=where,
            )
        checked[name] = _finite_weight(weights[name], where)
    if "bias" not in params:
        raise ModelArtifactError("params.bias is missing", field="params.bias")
    bias = _finite_weight(params["bias"], "params.bias")
    return LinearParams(weights=checked, bias=bias, **_mapping_fields(params))


def _finite_weight(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ModelArtifactError(f"{where} must be a finite number, got {value!r}", field=where)
    return float(value)


@dataclass(frozen=True, slots=True)
class ModelType:
    """One loadable model type: how to validate its params and build the model."""

    name: str
    parse_params: Callable[[Mapping[str, Any]], Any]
    build: Callable[[Any, str], SignalModel]
    params_class: type = field(default=object)


#: every type :func:`load_model` knows; add an entry here to add a type
MODEL_TYPES: Mapping[str, ModelType] = MappingProxyType(
    {
        "momentum": ModelType("momentum", momentum_params, MomentumModel, BaselineParams),
        "linear": ModelType("linear", linear_params, LinearModel, LinearParams),
    }
)


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ModelArtifactError(f"duplicate key {key!r} in the artifact", field=key)
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ModelArtifactError(f"{name} is not allowed in an artifact (JSON numbers only)")


@dataclass(frozen=True, slots=True)
class ModelArtifact:
    """A validated artifact: its type and typed params (``BaselineParams``/``LinearParams``)."""

    model_type: str
    params: Any

    def build(self, version: str) -> SignalModel:
        """The model, identified by ``version`` in every signal it makes."""
        return MODEL_TYPES[self.model_type].build(self.params, version)


def parse_artifact(data: bytes) -> ModelArtifact:
    """Validate an artifact document. Raises :class:`ModelArtifactError` naming the bad field.

    Accepts only UTF-8 JSON objects of at most :data:`MAX_ARTIFACT_BYTES` bytes, without
    duplicate keys, NaN or infinities, whose ``format``/``format_version`` are
    :data:`ARTIFACT_FORMAT`/:data:`ARTIFACT_FORMAT_VERSION` and whose ``type`` is in
    :data:`MODEL_TYPES`.
    """
    if len(data) > MAX_ARTIFACT_BYTES:
        raise ModelArtifactError(
            f"artifact is {len(data)} bytes, more than the {MAX_ARTIFACT_BYTES} allowed"
        )
    try:
        doc = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except UnicodeDecodeError as exc:
        raise ModelArtifactError(f"artifact is not UTF-8: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise ModelArtifactError(f"artifact is not JSON: {exc}") from None
    except RecursionError:
        raise ModelArtifactError("artifact is nested too deeply") from None
    if not isinstance(doc, dict):
        raise ModelArtifactError(f"artifact must be a JSON object, got {type(doc).__name__}")
    if doc.get("format") != ARTIFACT_FORMAT:
        raise UnsupportedArtifactVersion(
            f"format must be {ARTIFACT_FORMAT!r}, got {doc.get('format')!r}", field="format"
        )
    version = doc.get("format_version")
    if version != ARTIFACT_FORMAT_VERSION or isinstance(version, bool):
        raise UnsupportedArtifactVersion(
            f"format_version must be {ARTIFACT_FORMAT_VERSION}, got {version!r}",
            field="format_version",
        )
    extra = sorted(set(doc) - {"format", "format_version", "type", "params"})
    if extra:
        raise ModelArtifactError(f"{extra[0]} is not an artifact field", field=extra[0])
    model_type = doc.get("type")
    if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
        raise UnknownModelType(
            f"type must be one of {sorted(MODEL_TYPES)}, got {model_type!r}", field="type"
        )
    params = doc.get("params")
    if not isinstance(params, dict):
        raise ModelArtifactError(f"params must be a JSON object, got {params!r}", field="params")
    return ModelArtifact(model_type, MODEL_TYPES[model_type].parse_params(params))


def load_model(data: bytes, version: str) -> SignalModel:
    """Validate ``data`` (see :func:`parse_artifact`) and build its model named ``version``."""
    return parse_artifact(data).build(version)


def _params_dict(model_type: str, params: object) -> dict[str, Any]:
    if model_type not in MODEL_TYPES:
        raise UnknownModelType(
            f"type must be one of {sorted(MODEL_TYPES)}, got {model_type!r}", field="type"
        )
    if isinstance(params, Mapping):
        out = dict(params)
    elif isinstance(params, MODEL_TYPES[model_type].params_class) and is_dataclass(params):
        out = {f.name: getattr(params, f.name) for f in fields(params)}
    else:
        raise ModelArtifactError(
            f"params of a {model_type} model must be a mapping or "
            f"{MODEL_TYPES[model_type].params_class.__name__}, got {type(params).__name__}",
            field="params",
        )
    if isinstance(out.get("weights"), Mapping):
        out["weights"] = dict(out["weights"])
    return out


def dump_artifact(model_type: str, params: object) -> bytes:
    """The artifact bytes for ``params`` (a mapping or the type's params class).

    The document is validated before it is returned, so a dumped artifact always loads; raises
    :class:`ModelArtifactError` otherwise. Keys are sorted: equal params give equal bytes (and
    an equal sha256).
    """
    doc = {
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_FORMAT_VERSION,
        "type": model_type,
        "params": _params_dict(model_type, params),
    }
    try:
        data = (json.dumps(doc, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as exc:
        raise ModelArtifactError(
            f"params are not JSON-serialisable: {exc}", field="params"
        ) from None
    parse_artifact(data)
    return data


def save_model_artifact(
    path: str | os.PathLike[str], model_type: str, params: object, *, overwrite: bool = False
) -> Path:
    """Write a validated artifact to ``path`` (parent folders created) and return the path.

    The file appears atomically (temporary file, fsync, then link or rename). Artifacts are
    immutable once registered, so an existing file is never replaced unless ``overwrite=True``:
    raises :class:`ArtifactExists` instead. Raises :class:`ModelArtifactError` for bad params.
    """
    data = dump_artifact(model_type, params)
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, final)
        else:
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise ArtifactExists(
                    f"{final} already exists; artifacts are immutable (pass overwrite=True "
                    "only for a file no registry record points at)"
                ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return final


__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_FORMAT_VERSION",
    "LINEAR_FEATURES",
    "MAX_ARTIFACT_BYTES",
    "MODEL_TYPES",
    "LinearModel",
    "LinearParams",
    "ModelArtifact",
    "ModelType",
    "MomentumModel",
    "dump_artifact",
    "linear_params",
    "load_model",
    "momentum_params",
    "parse_artifact",
    "save_model_artifact",
]
