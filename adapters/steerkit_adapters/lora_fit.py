"""Whether a LoRA adapter folder fits a model, decided from its files before any engine loads
it (``lora.check_adapter`` has already found the folder valid): its rank, and the shape of the
base model its ``adapter_config.json`` names. An engine that fails to load an adapter mid-batch
can take the whole call down with it (vLLM: its engine process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import steerkit

from .model_source import hub_snapshot, looks_like_path

# config fields that decide whether weights fit a model: a LoRA made for a model that differs
# in any of them cannot apply (its matrices have other shapes, or there are other layers)
SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "intermediate_size", "vocab_size")


def adapter_config(folder: str | Path) -> dict[str, Any]:
    config = json.loads((Path(folder) / "adapter_config.json").read_text(encoding="utf-8"))
    return config if isinstance(config, dict) else {}


def adapter_rank(config: dict[str, Any]) -> int:
    """The largest LoRA rank in the adapter (``r`` and any per-module ``rank_pattern``)."""
    ranks = [config.get("r") or 0, *(config.get("rank_pattern") or {}).values()]
    return max(int(r) for r in ranks if isinstance(r, (int, float)))


def _shape(config: dict[str, Any]) -> dict[str, Any]:
    cfg = config.get("text_config") or config
    return {k: cfg[k] for k in SHAPE_KEYS if cfg.get(k) is not None}


def base_config(name: str | None) -> dict[str, Any]:
    """The config of the model an adapter names as its base when it is found without the
    network (a local folder, or a hub name in the local cache); {} when unknown."""
    if not name:
        return {}
    folder = Path(name).expanduser() if looks_like_path(name) else hub_snapshot(name)
    try:
        config = json.loads((folder / "config.json").read_text()) if folder is not None else {}
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def check_base(folder: str | Path, config: dict[str, Any], model_config: dict[str, Any], model_name: str) -> None:
    """Refuse an adapter whose ``base_model_name_or_path`` is clearly another model: its config,
    found locally, differs in shape from the served model's. A base that cannot be found, or a
    served model whose config is unknown, is accepted (the engine has the last word)."""
    named = config.get("base_model_name_or_path")
    theirs, ours = _shape(base_config(named)), _shape(model_config)
    clash = {k: (theirs[k], ours[k]) for k in theirs.keys() & ours.keys() if theirs[k] != ours[k]}
    if clash:
        detail = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in sorted(clash.items()))
        raise steerkit.BackendError(
            f"LoRA adapter {str(folder)!r} was made for {named!r}, another model than {model_name!r} ({detail}): "
            "use an adapter trained on this model, or serve the model it was trained on"
        )
