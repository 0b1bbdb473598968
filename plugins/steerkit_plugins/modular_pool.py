"""Community pools for the ``modular`` strategy (Modular Pluralism, Feng et al. 2024).

A community is the main backend's base model plus, optionally, a LoRA adapter folder (peft) and
a persona (a system message). A pool is a named list of at least two communities, read from a
TOML or JSON file, built in code, or named: ``perspective`` (news and reddit x left, center,
right) and ``culture`` (five continents) ship as persona-prompted pools for the embedded model,
so everything runs offline; the paper's LoRA adapters are named for them with ``adapters``.

Pool file (TOML; JSON with the same keys)::

    name = "my-pool"
    [[communities]]
    name = "news_left"
    persona = "You are a writer for a left-leaning news outlet ..."   # optional
    adapter = "loras/news_left"      # optional peft folder, relative to this file
    served = "news-left"             # optional: a LoRA an OpenAI-compatible server serves by name

Every problem (a file that does not parse, an unknown key, a missing adapter folder, fewer
than two communities, duplicate names) is a typed error raised before any model loads.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import steerkit
from steerkit.plugin import Backend, Request

POOLS_DIR = Path(__file__).parent / "data" / "pools"
COMMUNITY_KEYS = ("name", "persona", "adapter", "served", "model")
MANIFEST = "steerkit_manifest.json"  # written next to a LoRA by `steerkit train community`


def named_pools() -> list[str]:
    """The pools that ship with steerkit (files under data/pools)."""
    return sorted(p.stem for p in POOLS_DIR.glob("*.toml"))


@dataclass(frozen=True)
class Community:
    """One community LM: the base model with an optional LoRA adapter folder and/or persona.

    ``served`` names an adapter an OpenAI-compatible server serves (vLLM's ``--lora-modules``);
    ``model`` may only name the main backend's own model (one base model, loaded once)."""

    name: str
    persona: str | None = None
    adapter: str | None = None
    served: str | None = None
    model: str | None = None

    @property
    def request_adapter(self) -> str | None:
        """What goes in ``Request.adapter`` for this community."""
        return self.adapter or self.served

    def prompt(self, user_text: str) -> list[dict[str, str]]:
        """The chat prompt this community answers: its persona as the system message."""
        head = [{"role": "system", "content": self.persona}] if self.persona else []
        return [*head, {"role": "user", "content": user_text}]

    def fingerprint(self, backend: Backend) -> str:
        """Identity for cache keys: the adapter's content (as the backend fingerprints it) and
        the persona text, so a retrained adapter or an edited persona makes new messages."""
        parts = [backend.adapter_fingerprint(self.request_adapter), self.persona or ""]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Pool:
    name: str
    communities: tuple[Community, ...]
    source: str = "code"
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.communities]

    def __len__(self) -> int:
        return len(self.communities)

    def fingerprint(self, backend: Backend) -> str:
        """The pool's identity for cache keys: its communities' fingerprints, in order (the
        order numbers the comments). Not the names: no prompt shows them (they are joined to the
        cached records when read), so renaming a community costs no model call."""
        fps = [c.fingerprint(backend) for c in self.communities]
        return hashlib.sha256("|".join(fps).encode()).hexdigest()[:24]

    def check_backend(self, backend: Backend) -> None:
        """Refuse, before any model loads, a pool this backend cannot run: adapters on a
        backend without per-request adapters, an adapter trained on another base model, or a
        community on another model."""
        if any(c.request_adapter for c in self.communities) and not backend.supports_adapters:
            raise steerkit.BackendError(
                f"pool {self.name!r} has LoRA communities but backend {backend.name!r} cannot apply adapters per "
                "request: use the transformers or vllm backend (local adapter folders) or an OpenAI-compatible "
                "server that serves each adapter by name (served = ...)"
            )
        # the backend's own checks of the adapters it will be asked for (e.g. no safetensors)
        backend.check_adapters([Request([{"role": "user", "content": ""}], adapter=c.request_adapter)
                                for c in self.communities if c.adapter])
        for c in self.communities:
            if c.model is not None and not _same_model(c.model, backend.model):
                raise steerkit.InvalidOptionError(
                    f"pool {self.name!r}: community {c.name!r} names model {c.model!r}, but the communities share "
                    f"the main backend's base model ({backend.model_name}); make it a LoRA adapter of that model "
                    "(adapter = folder), or run the strategy on that model"
                )
            if c.adapter:
                base = _manifest_base(Path(c.adapter))
                if base is not None and base != backend.fingerprint():
                    raise steerkit.InvalidOptionError(
                        f"pool {self.name!r}: the adapter of community {c.name!r} ({c.adapter}) was trained on another "
                        f"base model (fingerprint {base}) than the backend serves ({backend.model_name}, "
                        f"{backend.fingerprint()}); run on its base model (--model) or retrain it with "
                        "`steerkit train community` on this one"
                    )


def _same_model(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a == b


def _manifest_base(folder: Path) -> str | None:
    """The base-model fingerprint a steerkit-trained adapter records, if it has a manifest."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise steerkit.InvalidOptionError(f"adapter {folder}: its {MANIFEST} cannot be read ({exc}); retrain it") from exc
    return data.get("base_fingerprint") if isinstance(data, dict) else None


def check_adapter_folder(folder: str | Path, community: str, where: str) -> str:
    """The adapter folder as an absolute path, or ModelNotFoundError saying what is missing."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise steerkit.ModelNotFoundError(
            f"{where}: the adapter folder of community {community!r} does not exist: {path}; train one with "
            "`steerkit train community --corpus FILE --lora OUT` or fix the path"
        )
    if not (path / "adapter_config.json").is_file():
        raise steerkit.ModelNotFoundError(
            f"{where}: {path} (community {community!r}) is not a peft LoRA adapter folder (no adapter_config.json); "
            "name the folder that `steerkit train community` or peft's save_pretrained wrote"
        )
    return str(path.resolve())


def _community(raw: Any, where: str, base: Path | None) -> Community:
    if isinstance(raw, Community):
        raw = {k: getattr(raw, k) for k in COMMUNITY_KEYS}
    if not isinstance(raw, Mapping):
        raise steerkit.InvalidOptionError(f"{where}: a community must be a table/object with a name, not {raw!r}")
    unknown = sorted(set(raw) - set(COMMUNITY_KEYS))
    if unknown:
        raise steerkit.InvalidOptionError(f"{where}: unknown community keys {unknown}; a community takes {', '.join(COMMUNITY_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise steerkit.InvalidOptionError(f"{where}: every community needs a name (a non-empty string), got {name!r}")
    for key in ("persona", "adapter", "served", "model"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise steerkit.InvalidOptionError(f"{where}: community {name!r}: {key} must be a non-empty string, got {value!r}")
    adapter = raw.get("adapter")
    if adapter is not None:
        folder = Path(adapter).expanduser()
        if base is not None and not folder.is_absolute():
            folder = base / folder
        adapter = check_adapter_folder(folder, name, where)
    return Community(name.strip(), raw.get("persona"), adapter, raw.get("served"), raw.get("model"))


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise steerkit.InvalidOptionError(f"pool file {path} cannot be read ({exc}); pass a UTF-8 TOML or JSON file") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise steerkit.InvalidOptionError(
            f"pool file {path} does not parse as {kind}: {exc}; see the pool file format in steerkit_plugins.modular_pool"
        ) from exc
    if not isinstance(data, dict):
        raise steerkit.InvalidOptionError(f"pool file {path}: expected a table with a 'communities' list, got {type(data).__name__}")
    return data


def load_pool(spec: Any = "perspective", adapters: Mapping[str, str] | None = None) -> Pool:
    """A checked Pool from a name (``perspective``, ``culture``), a .toml/.json file, a mapping
    ``{"name", "communities"}``, a list of communities (mappings or Community), or a Pool.

    ``adapters`` sets LoRA folders by community name (e.g. the paper's adapters for a named
    pool). Raises InvalidOptionError / ModelNotFoundError before any model loads."""
    base: Path | None = None
    if isinstance(spec, Pool):
        data: Any = {"name": spec.name, "communities": list(spec.communities), "description": spec.description}
        source = spec.source
    elif isinstance(spec, (str, Path)):
        text = str(spec)
        path = Path(text).expanduser()
        named = isinstance(spec, str) and "/" not in text and not path.suffix  # a bare name: never a stray folder
        if named and (POOLS_DIR / f"{text}.toml").is_file():
            path = POOLS_DIR / f"{text}.toml"
        elif not path.exists():
            if path.suffix.lower() in (".toml", ".json") or "/" in text:
                raise steerkit.InvalidOptionError(f"pool file {path} does not exist; pass a pool file or one of {named_pools()}")
            raise steerkit.InvalidOptionError(f"unknown pool {text!r}; pass one of {named_pools()} or a .toml/.json pool file")
        data, base, source = _read_file(path), path.parent, str(path)
    elif isinstance(spec, Mapping):
        data, source = dict(spec), "code"
    elif isinstance(spec, Sequence):
        data, source = {"name": "custom", "communities": list(spec)}, "code"
    else:
        raise steerkit.InvalidOptionError(f"pool={spec!r}: pass a pool name {named_pools()}, a pool file, or a list of communities")
    where = f"pool {source}" if source != "code" else "pool"
    unknown = sorted(set(data) - {"name", "description", "communities"})
    if unknown:
        raise steerkit.InvalidOptionError(f"{where}: unknown keys {unknown}; a pool takes name, description, communities")
    raw = data.get("communities")
    if not isinstance(raw, list):
        raise steerkit.InvalidOptionError(f"{where}: 'communities' must be a list of communities ([[communities]] in TOML)")
    communities = [_community(r, where, base) for r in raw]
    if len(communities) < 2:
        raise steerkit.InvalidOptionError(
            f"{where} has {len(communities)} communit{'y' if len(communities) == 1 else 'ies'}; modular pluralism needs at "
            f"least two to choose from or mix (e.g. pool='perspective' has 6)"
        )
    names = [c.name for c in communities]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise steerkit.InvalidOptionError(f"{where}: community names must be unique; repeated: {dups}")
    if adapters:
        if not isinstance(adapters, Mapping):
            raise steerkit.InvalidOptionError(f"adapters={adapters!r}: pass a mapping of community name to adapter folder")
        missing = sorted(set(adapters) - set(names))
        if missing:
            raise steerkit.InvalidOptionError(f"adapters names unknown communities {missing}; pool {data.get('name')!r} has {names}")
        communities = [
            Community(c.name, c.persona, check_adapter_folder(adapters[c.name], c.name, "adapters"), c.served, c.model)
            if c.name in adapters else c
            for c in communities
        ]
    name = data.get("name") or (Path(source).stem if source != "code" else "custom")
    return Pool(str(name), tuple(communities), source, str(data.get("description") or ""))
