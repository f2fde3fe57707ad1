"""Signal models from the registry: a safe JSON artifact format and a cached, refreshing loader.

Nothing here connects at import time. See :mod:`huracan.models.artifact` for the artifact
format and :mod:`huracan.models.loader` for :class:`RegistryModels` and the publishing helpers.
"""

from huracan.models.artifact import (
    ARTIFACT_FORMAT,
    ARTIFACT_FORMAT_VERSION,
    LINEAR_FEATURES,
    MODEL_TYPES,
    LinearModel,
    LinearParams,
    ModelArtifact,
    MomentumModel,
    dump_artifact,
    load_model,
    parse_artifact,
    save_model_artifact,
)
from huracan.models.errors import (
    ArtifactExists,
    ModelArtifactError,
    ModelsError,
    UnknownModelType,
    UnsupportedArtifactVersion,
)
from huracan.models.loader import (
    DEFAULT_REFRESH_S,
    ModelsStatus,
    RegistryModels,
    model_version_label,
    register_linear_model,
    register_model_artifact,
    register_momentum_model,
)

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_FORMAT_VERSION",
    "DEFAULT_REFRESH_S",
    "LINEAR_FEATURES",
    "MODEL_TYPES",
    "ArtifactExists",
    "LinearModel",
    "LinearParams",
    "ModelArtifact",
    "ModelArtifactError",
    "ModelsError",
    "ModelsStatus",
    "MomentumModel",
    "RegistryModels",
    "UnknownModelType",
    "UnsupportedArtifactVersion",
    "dump_artifact",
    "load_model",
    "model_version_label",
    "parse_artifact",
    "register_linear_model",
    "register_model_artifact",
    "register_momentum_model",
    "save_model_artifact",
]
