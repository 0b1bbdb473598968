"""The plugin host: one pluggy PluginManager, plugins loaded lazily and once from the
``steerkit`` entry-point group, and one registry per kind of thing plugins provide.

``STEERKIT_PLUGINS`` (comma-separated entry-point names) restricts loading to an allow-list;
``STEERKIT_PLUGINS=""`` loads none. A plugin that fails to import, or whose hook raises, is
recorded by name in ``plugin_errors()`` and a warning; the host keeps working with the rest.

Built-ins load first, then other plugins by entry-point name, so the order is the same on every
machine. Hooks are read in that load order, whatever ``tryfirst``/``trylast`` a plugin sets, so
a plugin can never replace a built-in. When two plugins register the same name (or the same CLI
command, or two distributions the same entry-point name), the first one keeps it; the later one
is ignored, with a warning and an entry in ``plugin_clashes()``. A hook that raises registers
nothing (all or nothing per plugin and hook)."""

from __future__ import annotations

import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .errors import UnknownPluginError

ENTRY_POINT_GROUP = "steerkit"
ALLOW_LIST_ENV = "STEERKIT_PLUGINS"
_HOOK_OF_KIND = {"strategy": "register_strategies", "backend": "register_backends", "aligner": "register_aligners",
                 "dataset": "register_datasets", "trainer": "register_trainers", "classifier": "register_classifiers"}
KINDS = tuple(_HOOK_OF_KIND)


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
_distributions: dict[str, str] = {}  # entry-point name -> the distribution that provided it
_clashes: list["Clash"] = []  # registry clashes (rebuilt with the registries)
_entry_point_clashes: list["Clash"] = []  # two distributions, one entry-point name
_command_clashes: list["Clash"] = []
_commands_by: dict[str, list[str]] = {}  # plugin -> CLI commands it added
_populated: set[int] = set()  # ids of click groups the plugins' commands were added to
BUILTIN_DISTRIBUTION = "steerkit-align"


@dataclass(frozen=True)
class Clash:
    """Two plugins registered one name: ``kept`` owns it, ``ignored``'s registration was dropped."""

    kind: str
    name: str
    kept: str
    ignored: str

    def __str__(self) -> str:
        return (f"{self.kind} {self.name!r} is registered by both {self.kept!r} and {self.ignored!r}; "
                f"{self.kept!r} keeps it (loaded first)")


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
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_load_order):
            if allowed is not None and ep.name not in allowed:
                continue
            if pm.get_plugin(ep.name) is not None:
                _entry_point_clash(ep)
                continue
            try:
                module = ep.load()
                pm.register(module, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the host down
                _failed(ep.name, "", exc, f"({ep.value}) failed to load and was skipped")
            else:
                dist = getattr(ep, "dist", None)
                if dist is not None:
                    _versions[ep.name] = dist.version
                    _distributions[ep.name] = dist.name


def _load_order(ep: Any) -> tuple[bool, str, str]:
    """Built-ins first, then third-party plugins by entry-point name, then distribution name
    (deterministic clashes)."""
    dist = getattr(getattr(ep, "dist", None), "name", None) or ""
    return (dist != BUILTIN_DISTRIBUTION, ep.name, dist)


def _entry_point_clash(ep: Any) -> None:
    """A second distribution offers an entry-point name already loaded: report, do not load."""
    kept = _distributions.get(ep.name, ep.name)
    ignored = getattr(getattr(ep, "dist", None), "name", None) or ep.value
    _clash(_entry_point_clashes, Clash("plugin", ep.name, kept, ignored), "; uninstall one of the two distributions")


def _clash(found: list[Clash], clash: Clash, fix: str = "") -> None:
    if clash not in found:
        found.append(clash)
        warnings.warn(f"steerkit plugins clash: {clash}{fix}", RuntimeWarning, stacklevel=4)


def _failed(plugin: str, hook: str, exc: Exception, consequence: str) -> None:
    """Record a plugin's failure (``plugin_errors()``) and warn; the host goes on without it."""
    what = f"{hook} failed: " if hook else ""
    _errors[plugin] = f"{what}{type(exc).__name__}: {exc}"
    warnings.warn(f"steerkit plugin {plugin!r}: {hook + ' failed, ' if hook else ''}{consequence}: "
                  f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=4)


def _ordered(impls: list[Any]) -> list[Any]:
    """Hook implementations in plugin load order (built-ins first). pluggy's own order puts
    ``trylast`` implementations first and ``tryfirst`` last, which would let a plugin's flag
    decide who keeps a name."""
    rank = {id(plugin): i for i, (_, plugin) in enumerate(pm.list_name_plugin())}
    return sorted(impls, key=lambda impl: rank.get(id(impl.plugin), len(rank)))


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object or module at run time (tests, notebooks). Returns its name."""
    load_plugins()
    with _lock:
        name = pm.register(plugin, name=name)
        _reset_registries()
        return name


def unregister_plugin(name: str) -> None:
    """Remove a plugin; its recorded failure goes with it (it no longer affects the host)."""
    with _lock:
        pm.unregister(name=name)
        _errors.pop(name, None)
        _reset_registries()


def _reset_registries() -> None:
    global _registries
    _registries = None
    _registered_by.clear()
    _clashes.clear()


def reset() -> None:
    """Forget loaded plugins so the next use reloads them (tests of the loader use this)."""
    global _loaded
    with _lock:
        for name, _ in list(pm.list_name_plugin()):
            pm.unregister(name=name)
        _loaded = False
        _errors.clear()
        _versions.clear()
        _distributions.clear()
        _entry_point_clashes.clear()
        _commands_by.clear()
        _command_clashes.clear()
        _populated.clear()
        _reset_registries()


def _build_registries() -> dict[str, dict[str, Any]]:
    global _registries
    load_plugins()
    with _lock:
        if _registries is not None:
            return _registries
        registries: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
        owner: dict[tuple[str, str], str] = {}
        for kind, hook_name in _HOOK_OF_KIND.items():
            hook = getattr(pm.hook, hook_name)
            for impl in _ordered(hook.get_hookimpls()):  # load order: the first plugin keeps a name
                plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
                pending: list[tuple[str, Any]] = []
                try:
                    impl.function(register=lambda name, value: pending.append((name, value)))
                except Exception as exc:  # nothing it registered before raising is kept
                    _failed(plugin_name, hook_name, exc, "nothing it registered there is kept")
                    continue
                for name, value in pending:
                    if (kind, name) in owner:
                        _clash(_clashes, Clash(kind, name, owner[(kind, name)], plugin_name))
                        continue
                    owner[(kind, name)] = plugin_name
                    registries[kind][name] = value
                    _registered_by.setdefault(plugin_name, {}).setdefault(kind, []).append(name)
        _registries = registries
        return registries


def registry(kind: str) -> dict[str, Any]:
    """All registered things of one kind: name -> factory (or function)."""
    return _build_registries()[kind]


def lookup(kind: str, name: str) -> Any:
    reg = registry(kind)
    if name not in reg:
        err = UnknownPluginError(kind, name, reg)
        if _errors:  # the name may belong to a plugin that failed: say which, and why
            failed = "; ".join(f"{plugin}: {why}" for plugin, why in sorted(_errors.items()))
            err.args = (f"{err.args[0]} Plugins that failed to load (one may provide it): {failed}",)
        raise err
    return reg[name]


def get_aligner(name: str) -> Any:
    return lookup("aligner", name)


def plugin_errors() -> dict[str, str]:
    """Plugins that failed to import or whose hook raised: name -> what went wrong."""
    load_plugins()
    return dict(_errors)


def plugin_clashes() -> list[Clash]:
    """Names (and CLI commands) registered by more than one plugin, and which plugin kept each."""
    _build_registries()
    return list(_entry_point_clashes) + list(_clashes) + list(_command_clashes)


def list_plugins() -> list[PluginInfo]:
    """Loaded plugins with versions and what each registered (for ``steerkit plugins``)."""
    _build_registries()
    out = []
    for name, plugin in pm.list_name_plugin():
        module = getattr(plugin, "__name__", type(plugin).__name__)
        version = _versions.get(name) or _module_version(plugin)
        registered = {k: list(v) for k, v in _registered_by.get(name, {}).items()}
        if _commands_by.get(name):
            registered["command"] = list(_commands_by[name])
        out.append(PluginInfo(name, module, version, registered))
    return sorted(out, key=lambda p: p.name)


def _module_version(plugin: Any) -> str | None:
    """A plugin registered at run time: its own ``__version__`` or its top package's."""
    top = sys.modules.get(getattr(plugin, "__name__", "").split(".")[0])
    version = getattr(plugin, "__version__", None) or getattr(top, "__version__", None)
    return str(version) if version else None


def add_cli_commands(cli: Any) -> None:
    """Let each plugin add click commands to ``cli``, one at a time, so a plugin that raises
    is reported (``plugin_errors()``, a warning) and the rest of the CLI still works. Records
    which commands each plugin added; a command name that is taken keeps its first owner."""
    load_plugins()
    with _lock:
        _populated.add(id(cli))
        owners: dict[str, str] = cli.__dict__.setdefault("steerkit_command_owners", {})  # lives with the group
        for impl in _ordered(pm.hook.register_commands.get_hookimpls()):
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            before = dict(cli.commands)
            try:
                impl.function(cli=cli)
            except Exception as exc:
                cli.commands.clear()
                cli.commands.update(before)  # no half-registered plugin
                _failed(plugin_name, "register_commands", exc, "its commands are not available")
                continue
            added = [n for n, c in cli.commands.items() if before.get(n) is not c]
            mine = []
            for name in added:
                first = owners.get(name, "steerkit" if name in before else None)
                if first is not None and first != plugin_name:
                    if name in before:
                        cli.commands[name] = before[name]
                    else:
                        del cli.commands[name]
                    _clash(_command_clashes, Clash("command", name, first, plugin_name))
                    continue
                owners[name] = plugin_name
                mine.append(name)
            if mine:
                known = _commands_by.setdefault(plugin_name, [])
                known.extend(n for n in mine if n not in known)


def ensure_cli_commands(cli: Any) -> None:
    """``add_cli_commands`` once per loaded host (the CLI's entry point and ``steerkit plugins``)."""
    load_plugins()
    with _lock:
        if id(cli) not in _populated:
            add_cli_commands(cli)
