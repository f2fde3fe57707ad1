"""Errors of :mod:`huracan.models`.

Loading never executes code from an artifact, so every failure is a data error: the message
names the artifact (when known) and the offending field, and :attr:`ModelArtifactError.field`
holds that field's dotted path (``"params.entry_z"``, ``"type"``…).
"""

from __future__ import annotations


class ModelsError(Exception):
    """Base class of every error raised by :mod:`huracan.models`."""


class ModelArtifactError(ModelsError, ValueError):
    """A model artifact is not a valid ``huracan.signal-model`` document.

    ``field`` is the dotted path of the bad field (``""`` when the document as a whole is bad,
    e.g. not JSON).
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class UnknownModelType(ModelArtifactError):
    """The artifact's ``type`` is not one this version of Huracan can load."""


class UnsupportedArtifactVersion(ModelArtifactError):
    """The artifact's ``format`` or ``format_version`` is not one this version can read."""


class ArtifactExists(ModelsError, FileExistsError):
    """An artifact file already exists at the path; artifacts are immutable once written."""
