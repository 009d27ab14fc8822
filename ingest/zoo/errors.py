"""The zoo's errors (a leaf module: `specs` and `preprocessing` both raise them)."""

from __future__ import annotations

from catalog.errors import CircuitsError

__all__ = ["ModelLoadError", "PreprocessingError", "UnknownModel", "ZooError"]


class ZooError(CircuitsError):
    """A model cannot be built, loaded or fed as asked."""


class UnknownModel(ZooError):
    """The model name is neither in the zoo nor a user factory."""


class ModelLoadError(ZooError):
    """A user model factory cannot be imported or does not build a module."""


class PreprocessingError(ZooError):
    """A preprocessing setting, or an image that the preprocessing cannot take."""
