"""Where a backend's model comes from, decided without loading it or touching the network:
a local path, or a hub name that must already be in the local Hugging Face cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import steerkit


def looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or model.endswith(".gguf") or os.path.exists(model)


def hub_snapshot(name: str) -> Path | None:
    """The local snapshot folder of a hub model, if it is in the HF cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    found = try_to_load_from_cache(name, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def resolve_hub_name(model: str) -> dict[str, Any]:
    """A hub name as a model source; offline, it must be cached already."""
    snapshot = hub_snapshot(model)
    if snapshot is None and os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise steerkit.ModelNotFoundError(
            f"hub model {model!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
            "download it first (huggingface-cli download), pass a local folder, or use the embedded default"
        )
    return {"kind": "hub", "path": snapshot, "name": model}


def folder_digest(path: str | os.PathLike[str]) -> str:
    """Cheap identity of an HF folder: config bytes plus weight file names and sizes."""
    path = Path(path)
    h = hashlib.sha256()
    for name in ("config.json", "generation_config.json"):
        if (path / name).exists():
            h.update((path / name).read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return h.hexdigest()[:16]
