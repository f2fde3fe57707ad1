"""Storage: the model registry (PostgreSQL or files), the Parquet archive, replay readers.

Nothing here connects at import time.
"""

from huracan.storage.errors import (
    InvalidModelMetadata,
    InvalidStatusTransition,
    MigrationError,
    ModelAlreadyRegistered,
    ModelFileMissing,
    ModelIntegrityError,
    ModelNotFound,
    RegistryClosed,
    RegistryConfigError,
    RegistryCorrupted,
    RegistryError,
    RegistryUnavailable,
    StorageError,
)
from huracan.storage.model_registry import (
    ModelMetadata,
    ModelRegistry,
    ModelRegistryStore,
    ModelStatus,
)
from huracan.storage.registry_stores import (
    FileModelRegistryStore,
    PostgresModelRegistryStore,
    redact_dsn,
)

__all__ = [
    "FileModelRegistryStore",
    "InvalidModelMetadata",
    "InvalidStatusTransition",
    "MigrationError",
    "ModelAlreadyRegistered",
    "ModelFileMissing",
    "ModelIntegrityError",
    "ModelMetadata",
    "ModelNotFound",
    "ModelRegistry",
    "ModelRegistryStore",
    "ModelStatus",
    "PostgresModelRegistryStore",
    "RegistryClosed",
    "RegistryConfigError",
    "RegistryCorrupted",
    "RegistryError",
    "RegistryUnavailable",
    "StorageError",
    "redact_dsn",
]
