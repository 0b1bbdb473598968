"""steerkit: steerable pluralistic alignment behind one API.

Public API: everything a user or plugin author needs is importable from ``steerkit``."""

from .backend import Backend, ChatPrompt, Completion, Constraint, Message, Request, Sampling
from .cache import CacheKey, CacheRecord, ScoreCache, default_cache_dir, default_cache_path
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
from .hookspecs import hookimpl
from .host import (
    list_plugins,
    load_plugins,
    lookup,
    plugin_clashes,
    plugin_errors,
    register_plugin,
    registry,
    unregister_plugin,
)
from .progress import progress_bar
from .scoretable import Alignment, ScoreTable, pick_nearest
from .steerer import Steerer
from .strategy import AttributeStrategy, ResponseScore, RunContext, ScoreJob, Strategy
from .types import AttributeTarget, Perspective, Scenario, Selection, Target, coerce_target, text_hash

__version__ = "0.1.0"

__all__ = [
    "Alignment", "AttributeStrategy", "AttributeTarget", "Backend", "BackendError", "CacheError", "CheckpointError",
    "CacheKey", "CacheRecord", "ChatPrompt", "Completion", "Constraint", "Dataset", "DatasetError",
    "InvalidOptionError", "InvalidScenarioError", "InvalidTargetError", "Message", "ModelNotFoundError",
    "ModelOutputError", "PartialBatchError", "Perspective", "Request", "ResponseScore", "RunContext", "Sampling", "Scenario",
    "ScoreCache", "ScoreJob", "ScoreTable", "ScoreTableError", "Selection", "Steerer", "SteerkitError", "Strategy",
    "Target", "UnknownAttributeError", "UnknownPluginError", "UnsupportedTargetError",
    "coerce_target", "default_cache_dir", "default_cache_path", "hookimpl", "list_plugins",
    "load_plugins", "lookup", "pick_nearest", "plugin_clashes", "plugin_errors", "progress_bar", "register_plugin",
    "registry", "text_hash", "unregister_plugin",
]
