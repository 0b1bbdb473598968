"""LoRA adapter folders named by requests: checked before any model loads, identified by content.

An adapter is a peft folder (``adapter_config.json`` + ``adapter_model.safetensors``). Its
identity in cache keys is the digest of its files, so retraining into the same folder never
serves stale answers."""

from __future__ import annotations

import json
from pathlib import Path

import steerkit

from .model_source import folder_digest


def check_adapter(adapter: str) -> Path:
    """The adapter's folder, or ModelNotFoundError naming what is wrong and the fix."""
    path = Path(adapter).expanduser()
    if not path.is_dir():
        raise steerkit.ModelNotFoundError(
            f"LoRA adapter folder {adapter!r} does not exist: pass a peft adapter folder "
            "(adapter_config.json + adapter_model.safetensors), e.g. one made by `steerkit train community`"
        )
    config = path / "adapter_config.json"
    if not config.is_file():
        raise steerkit.ModelNotFoundError(
            f"{adapter!r} is not a peft adapter folder (no adapter_config.json): pass the folder a peft "
            "model was saved to (model.save_pretrained(folder))"
        )
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise steerkit.ModelNotFoundError(f"{config} cannot be read ({exc}): save the adapter again") from None
    if not (path / "adapter_model.safetensors").is_file():
        pickles = [p.name for p in path.glob("adapter_model.*")]
        raise steerkit.ModelNotFoundError(
            f"adapter folder {adapter!r} has no adapter_model.safetensors"
            + (f" (only {pickles}: pickles are not loaded, they can run code)" if pickles else "")
            + ": save it with safe_serialization=True"
        )
    return path


def adapter_base(adapter: str) -> str | None:
    """The base model the adapter says it was trained on (``base_model_name_or_path``)."""
    config = json.loads((Path(adapter).expanduser() / "adapter_config.json").read_text(encoding="utf-8"))
    return config.get("base_model_name_or_path") if isinstance(config, dict) else None


def adapter_fingerprint(adapter: str | None) -> str:
    """Content identity of an adapter folder for cache keys ('' for the base model)."""
    if adapter is None:
        return ""
    return "lora:" + folder_digest(check_adapter(adapter))[:16]


MANIFEST_NAME = "steerkit_manifest.json"  # written by steerkit's trainer beside the adapter


def adapter_expected_base(path: Path) -> str | None:
    """The backend fingerprint of the base model a steerkit-trained adapter was made on
    (``base_fingerprint`` in its manifest), or None when the folder does not say."""
    manifest = path / MANIFEST_NAME
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("base_fingerprint") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None
