"""Where a backend's model comes from, decided without loading it or touching the network:
a local path, or a hub name that must already be in the local Hugging Face cache."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
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


# Files of an HF folder that cannot change what the model outputs: docs, licences, steerkit's
# own bookkeeping (the trainer's manifest gains metrics after training; the conversion marker
# names the source path, which differs per machine). Hidden files and sub-folders (a
# trainer's ``.resume/``, ``.cache/``) are skipped too.
IGNORED_NAMES = frozenset({"steerkit_manifest.json", "steerkit-converted.json", "LICENSE", "LICENSE.txt", "NOTICE", "USE_POLICY.md"})
DIGESTS_NAME = "file-digests.json"
_memo: dict[str, dict[str, Any]] | None = None
_memo_lock = threading.Lock()


def hub_revision(snapshot: Path | None) -> str | None:
    """The commit hash of a hub snapshot folder (``.../snapshots/<commit>``)."""
    return snapshot.name if snapshot is not None and snapshot.parent.name == "snapshots" else None


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, memoized by what any write changes.

    A content hash (not a name, size or date) is the identity: weights saved over a folder
    change it, and the same weights copied to another path or machine keep it, so a shared
    cache still hits. Hashing is paid once per file version (~0.4 s for the embedded model's
    540 MB here, ~10 s for 16 GB): the digest is kept in ``<cache dir>/file-digests.json`` keyed
    by path, size, mtime_ns, ctime_ns and inode. Any write changes mtime and ctime (ctime cannot
    be set back by a user), a file replaced by rename gets a new inode, so a stale entry is never
    used; an unreadable or read-only memo only costs re-hashing."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    memo = _load_memo()
    entry = memo.get(str(path))
    if entry is not None and entry.get("stamp") == stamp:
        return entry["sha256"]
    h = hashlib.sha256()
    with path.open("rb") as f:  # hashlib.file_digest is Python 3.11+
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if st.st_size >= MEMO_MIN_BYTES:
        _remember(str(path), {"stamp": stamp, "sha256": digest})
    return digest


MEMO_MIN_BYTES = 1 << 20  # smaller files are hashed every time (microseconds)


def _memo_path() -> Path:
    return steerkit.default_cache_dir() / DIGESTS_NAME


def _load_memo() -> dict[str, dict[str, Any]]:
    global _memo
    with _memo_lock:
        if _memo is None:
            try:
                _memo = json.loads(_memo_path().read_text())
                if not isinstance(_memo, dict):
                    _memo = {}
            except (OSError, ValueError):
                _memo = {}
        return _memo


def _remember(key: str, entry: dict[str, Any]) -> None:
    """Add an entry and write the memo atomically (other processes may write it too: the last
    writer wins, and a lost entry is only hashed again)."""
    with _memo_lock:
        assert _memo is not None
        try:
            on_disk = json.loads(_memo_path().read_text())
            if isinstance(on_disk, dict):
                _memo.update({k: v for k, v in on_disk.items() if k not in _memo})
        except (OSError, ValueError):
            pass
        _memo[key] = entry
        for gone in [k for k in _memo if not os.path.exists(k)]:  # deleted files (temporary folders)
            del _memo[gone]
        try:
            path = _memo_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".digests-", dir=path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(_memo, f)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache dir: digests are recomputed next time


def model_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The files of an HF folder that can change the model's output: weights, config, generation
    config, tokenizer files, chat template (everything at the top level but docs, hidden files
    and steerkit's bookkeeping)."""
    return sorted(
        p for p in Path(folder).iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in IGNORED_NAMES
        and not p.name.lower().endswith(".md")
    )


def folder_digest(path: str | os.PathLike[str]) -> str:
    """Identity of an HF folder: the name and content digest of each of its ``model_files``."""
    h = hashlib.sha256()
    for f in model_files(path):
        h.update(f"{f.name}:{file_digest(f)}\n".encode())
    return h.hexdigest()[:16]


def source_digest(source: dict[str, Any]) -> str:
    """Identity of a resolved model source: a GGUF's bytes, a folder's files, or a hub name at
    the commit found in the local cache (a snapshot is immutable per commit)."""
    kind, path = source["kind"], source.get("path")
    if kind in ("embedded", "gguf"):
        return file_digest(source.get("gguf") or path)[:16]
    if kind == "hub":
        revision = hub_revision(path or hub_snapshot(source["name"]))  # downloaded since resolving?
        return f"{source['name']}@{revision}" if revision else f"{source['name']}@unresolved"
    return folder_digest(path)
