"""steerkit: steerable pluralistic alignment behind one API.

This module is what an application uses: the Steerer, scenarios and targets, selections and
score tables, datasets, every error, and the plugin listing. What a plugin author subclasses
and calls (strategy bases, the run context, backend requests, cache keys, hook markers) is in
``steerkit.plugin``."""

import warnings as _warnings

from .cache import default_cache_dir, default_cache_path
from .dataset import Dataset
from .errors import (
    BackendError,
    CacheError,
    CheckpointError,
    DatasetError,
    InvalidOptionError,
    InvalidScenarioError,
    InvalidTargetError,
    ModelNotFoundError,
    ModelOutputError,
    PartialBatchError,
    ScoreTableError,
    SteerkitError,
    UnknownAttributeError,
    UnknownPluginError,
    UnsupportedTargetError,
)
from .host import list_plugins, load_plugins
from .scoretable import Alignment, ScoreTable, pick_nearest
from .steerer import Steerer
from .types import AttributeTarget, Perspective, Scenario, Selection, Target, coerce_target
from . import plugin  # noqa: E402  (after the modules it re-exports)

__version__ = "0.1.0"

__all__ = [
    "Alignment", "AttributeTarget", "BackendError", "CacheError", "CheckpointError", "Dataset", "DatasetError",
    "InvalidOptionError", "InvalidScenarioError", "InvalidTargetError", "ModelNotFoundError", "ModelOutputError",
    "PartialBatchError", "Perspective", "Scenario", "ScoreTable", "ScoreTableError", "Selection", "Steerer",
    "SteerkitError", "Target", "UnknownAttributeError", "UnknownPluginError", "UnsupportedTargetError",
    "coerce_target", "default_cache_dir", "default_cache_path", "list_plugins", "load_plugins",
]


def __getattr__(name: str):
    """Plugin-API names that ``steerkit`` exported before 0.2 still resolve, with a
    DeprecationWarning, for one release: third-party plugins keep working meanwhile."""
    if name in plugin.__all__ and name not in ("Configurable", "Option", "declared_options"):  # new in 0.2
        _warnings.warn(f"steerkit.{name} moved to steerkit.plugin.{name}; importing it from steerkit "
                       "stops working in the next release", DeprecationWarning, stacklevel=2)
        return getattr(plugin, name)
    raise AttributeError(f"module 'steerkit' has no attribute {name!r}")
