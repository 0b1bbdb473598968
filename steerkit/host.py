"""The plugin host: one pluggy PluginManager, plugins loaded lazily and once from the
``steerkit`` entry-point group, and one registry per kind of thing plugins provide.

``STEERKIT_PLUGINS`` (comma-separated entry-point names) restricts loading to an allow-list;
``STEERKIT_PLUGINS=""`` loads none. A plugin that fails to import is recorded by name in
``plugin_errors()`` and a warning; the host keeps working with the rest."""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .errors import UnknownPluginError

ENTRY_POINT_GROUP = "steerkit"
ALLOW_LIST_ENV = "STEERKIT_PLUGINS"
KINDS = ("strategy", "backend", "aligner", "dataset", "trainer", "classifier")
_HOOK_OF_KIND = {
    "strategy": "register_strategies",
    "backend": "register_backends",
    "aligner": "register_aligners",
    "dataset": "register_datasets",
    "trainer": "register_trainers",
    "classifier": "register_classifiers",
}


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str | None
    registered: dict[str, list[str]] = field(default_factory=dict)


pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
pm.add_hookspecs(hookspecs)

_lock = threading.RLock()
_loaded = False
_errors: dict[str, str] = {}
_registries: dict[str, dict[str, Any]] | None = None
_registered_by: dict[str, dict[str, list[str]]] = {}
_versions: dict[str, str] = {}


def _allow_list() -> set[str] | None:
    raw = os.environ.get(ALLOW_LIST_ENV)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def load_plugins() -> None:
    """Load entry-point plugins once (idempotent, thread-safe)."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        allowed = _allow_list()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
                pm.register(module, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the host down
                _errors[ep.name] = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"steerkit plugin {ep.name!r} ({ep.value}) failed to load and was skipped: "
                    f"{type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                dist = getattr(ep, "dist", None)
                if dist is not None:
                    _versions[ep.name] = dist.version



def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object or module at run time (tests, notebooks). Returns its name."""
    load_plugins()
    with _lock:
        name = pm.register(plugin, name=name)
        _reset_registries()
        return name


def unregister_plugin(name: str) -> None:
    with _lock:
        pm.unregister(name=name)
        _reset_registries()


def _reset_registries() -> None:
    global _registries
    _registries = None
    _registered_by.clear()


def reset() -> None:
    """Forget loaded plugins so the next use reloads them (tests of the loader use this)."""
    global _loaded
    with _lock:
        for name, _ in list(pm.list_name_plugin()):
            pm.unregister(name=name)
        _loaded = False
        _errors.clear()
        _versions.clear()
        _reset_registries()


def _build_registries() -> dict[str, dict[str, Any]]:
    global _registries
    load_plugins()
    with _lock:
        if _registries is not None:
            return _registries
        registries: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
        for kind, hook_name in _HOOK_OF_KIND.items():
            hook = getattr(pm.hook, hook_name)
            for impl in reversed(hook.get_hookimpls()):
                plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)

                def register(name: str, value: Any, _kind=kind, _plugin=plugin_name) -> None:
                    registries[_kind][name] = value
                    _registered_by.setdefault(_plugin, {}).setdefault(_kind, []).append(name)

                try:
                    impl.function(register=register)
                except Exception as exc:
                    _errors[plugin_name] = f"{hook_name} failed: {type(exc).__name__}: {exc}"
                    warnings.warn(f"steerkit plugin {plugin_name!r}: {hook_name} failed: {exc}", RuntimeWarning, stacklevel=2)
        _registries = registries
        return registries


def registry(kind: str) -> dict[str, Any]:
    """All registered things of one kind: name -> factory (or function)."""
    return _build_registries()[kind]


def lookup(kind: str, name: str) -> Any:
    reg = registry(kind)
    if name not in reg:
        raise UnknownPluginError(kind, name, reg)
    return reg[name]


def get_aligner(name: str) -> Callable[..., Any]:
    return lookup("aligner", name)


def plugin_errors() -> dict[str, str]:
    load_plugins()
    return dict(_errors)


def list_plugins() -> list[PluginInfo]:
    """Loaded plugins with versions and what each registered (for ``steerkit plugins``)."""
    _build_registries()
    out = []
    for name, plugin in pm.list_name_plugin():
        module = getattr(plugin, "__name__", type(plugin).__name__)
        version = _versions.get(name) or _module_version(plugin)
        out.append(PluginInfo(name, module, version, dict(_registered_by.get(name, {}))))
    return sorted(out, key=lambda p: p.name)


def _module_version(plugin: Any) -> str | None:
    version = getattr(plugin, "__version__", None)
    if version:
        return str(version)
    top = getattr(plugin, "__name__", "").split(".")[0]
    if top:
        try:
            return getattr(importlib.import_module(top), "__version__", None)
        except Exception:
            return None
    return None


def add_cli_commands(cli: Any) -> None:
    load_plugins()
    pm.hook.register_commands(cli=cli)
