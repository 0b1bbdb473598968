"""The plugin author's API: what a strategy, backend, dataset or command plugin subclasses and
calls. An application needs only ``steerkit``; a plugin imports from ``steerkit`` (targets,
scenarios, selections, errors) and from here, nothing else.

>>> from steerkit.plugin import AttributeStrategy, Configurable, Option, ResponseScore, hookimpl
"""

from .backend import Backend, ChatPrompt, Completion, Constraint, Message, Request, Sampling
from .cache import CacheKey, CacheRecord, ScoreCache
from .errors import BackendError, PartialBatchError
from .hookspecs import hookimpl
from .host import lookup, plugin_clashes, plugin_errors, register_plugin, registry, unregister_plugin
from .options import Configurable, Option, declared_options
from .progress import progress_bar
from .strategy import AttributeStrategy, ResponseScore, RunContext, ScoreJob, Strategy
from .types import text_hash

__all__ = [
    "AttributeStrategy", "Backend", "BackendError", "CacheKey", "CacheRecord", "ChatPrompt", "Completion",
    "Configurable", "Constraint", "Message", "Option", "PartialBatchError", "Request", "ResponseScore",
    "RunContext", "Sampling", "ScoreCache", "ScoreJob", "Strategy", "declared_options", "hookimpl", "lookup",
    "plugin_clashes", "plugin_errors", "progress_bar", "register_plugin", "registry", "text_hash",
    "unregister_plugin",
]
