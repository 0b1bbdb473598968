"""The manifest of a trained checkpoint folder (``steerkit_manifest.json``): what was trained,
from what, on which data and how, so the ``checkpoint`` strategy can prompt it exactly as it
was trained and refuse a folder that is not a finished steerkit run before any weights load."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from steerkit import CheckpointError

MANIFEST_NAME = "steerkit_manifest.json"
FORMAT_VERSION = 1
METHODS = ("sft", "cot-sft", "synthetic-cot", "grpo")
# weight files that unpickle (can run code): a run never leaves them, the checkpoint strategy refuses them
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def manifest_path(folder: str | os.PathLike[str]) -> Path:
    return Path(folder) / MANIFEST_NAME


def write_manifest(folder: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    """Write atomically (a temporary file, then ``os.replace``): a reader never sees half a file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"format_version": FORMAT_VERSION, **manifest}
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False, default=str)
            fh.write("\n")
        os.replace(tmp, folder / MANIFEST_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / MANIFEST_NAME


def load_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest as written, complete or not (the trainer reads interrupted runs with this)."""
    folder = Path(folder)
    if not folder.exists():
        raise CheckpointError(f"checkpoint folder {folder} does not exist: train one with `steerkit train ...`")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder: a checkpoint is the folder `steerkit train --out` wrote")
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise CheckpointError(
            f"{folder} is not a steerkit checkpoint (no {MANIFEST_NAME}): train one with "
            "`steerkit train sft --dataset vk --out DIR`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}): retrain into a fresh folder") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object: retrain into a fresh folder")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has manifest format {data.get('format_version')!r}; this steerkit reads format "
            f"{FORMAT_VERSION}: retrain with this version or use the steerkit that wrote it"
        )
    return data


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a finished run; a typed ``CheckpointError`` for anything else."""
    data = load_manifest(folder)
    if data.get("complete") is not True:
        cmd = data.get("command") or "the same `steerkit train ...` command"
        raise CheckpointError(
            f"{folder} holds an interrupted training run (complete: false): rerun {cmd} "
            "to resume it from its last saved step"
        )
    return data
