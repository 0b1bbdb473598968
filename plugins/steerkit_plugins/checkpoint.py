"""``checkpoint``: serve a model trained by ``steerkit train`` as a strategy, prompted exactly as
it was trained.

``Steerer(strategy="checkpoint", path="runs/vk-grpo")`` or
``steerkit eval --strategy checkpoint -o path=runs/vk-grpo --dataset vk --split val`` (``val``:
the run's own held-out items, rebuilt from its manifest; see ``validation_split``).

The folder's manifest (``manifest.py``) says how the model was trained; everything is checked
before any weights load (typed ``CheckpointError``): a folder that is not a finished steerkit
run, a prompt style or version this steerkit does not know, pickle-only weights (refused:
unpickling can run code), a LoRA run whose base model is missing, items of another task.

The model served is the checkpoint: the strategy names it through ``Strategy.required_model``
and the Steerer's backend loads it (naming another model is an error). A LoRA run is merged
into its base once with peft and saved as safetensors in the steerkit cache dir, keyed by the
adapter's and the base's content, so any backend can serve it (per-request LoRA adapters on
vLLM are a later step). The cache key's model part is the backend's content fingerprint of the
served folder, so retraining into the same folder never serves old answers.

Prompting (``train_prompts.py``): style "answer" -> the letter under a choice constraint right
after the user turn (the SFT completion is the letter alone); style "cot" -> reason freely
(the ``cot`` strategy's prompt and reasoning cut), then the letter under a choice constraint
after "\\nAnswer:". The letter is constrained with its leading space (" A"), because that is
how "Answer: A" was tokenised in training.

Options: ``path`` (required), ``samples`` (cot checkpoints: majority vote over samples at
``temperature``/``top_p``, as in the paper's evaluation; default 1, greedy), ``max_tokens``
(reasoning length; default: the run's ``max_completion_length``, else its ``eval_max_tokens``, else 256).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import steerkit
from steerkit import CheckpointError, Scenario, Selection
from steerkit.plugin import CacheRecord, RunContext

from .cot import ANSWER_PREFIX, LETTERS, ChainOfThought, letters_for
from .manifest import PICKLE_SUFFIXES, read_manifest
from .train_prompts import PROMPT_VERSION, STYLES, TASKS, task_of, train_prompt

MERGE_MARKER = "steerkit-merged.json"  # written last: a merged folder without it is unfinished
MERGE_VERSION = "1"


def _pickled(folder: Path) -> list[str]:
    return sorted(p.name for suffix in PICKLE_SUFFIXES for p in folder.glob(f"*{suffix}"))


def check_weights(folder: Path, lora: bool) -> None:
    """The folder holds safetensors weights of the kind the manifest says; pickle-only refused."""
    need = "adapter_model.safetensors" if lora else "*.safetensors"
    config = "adapter_config.json" if lora else "config.json"
    if not any(folder.glob(need)):
        pickled = _pickled(folder)
        if pickled:
            raise CheckpointError(
                f"{folder} holds pickle-only weights ({', '.join(pickled)}): steerkit loads safetensors "
                "only, because unpickling can run code. Re-save the weights with "
                "save_pretrained(..., safe_serialization=True), or retrain with `steerkit train`"
            )
        kind = "a LoRA adapter (adapter_model.safetensors)" if lora else "model weights (*.safetensors)"
        raise CheckpointError(f"{folder} has no {kind}: the run did not save its weights; retrain it")
    if not (folder / config).is_file():
        raise CheckpointError(f"{folder} has no {config}: it is not a complete checkpoint; retrain it")


def resolve_base(folder: Path, base: str | None) -> Any:
    """The base model of a LoRA run as a (lazy) transformers backend; CheckpointError if missing."""
    try:
        return steerkit.plugin.lookup("backend", "transformers")(model=base)
    except steerkit.ModelNotFoundError as exc:
        raise CheckpointError(
            f"LoRA checkpoint {folder}: its base model {base!r} cannot be found ({exc}). Put the base "
            "model back where it was trained from, or merge the adapter yourself and serve the folder"
        ) from exc


def content_hash(*files: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def merged_folder(adapter: Path, base: Any) -> Path:
    """``adapter`` merged into ``base`` (a transformers backend), saved once as safetensors under
    the cache dir, keyed by the adapter's bytes and the base's fingerprint; file-locked so
    concurrent processes merge once."""
    from filelock import FileLock

    key = content_hash(adapter / "adapter_config.json", adapter / "adapter_model.safetensors",
                       extra=f"{MERGE_VERSION}:{base.fingerprint()}")
    target = steerkit.default_cache_dir() / "merged" / f"{adapter.name}-{key}"
    if (target / MERGE_MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / MERGE_MARKER).exists():
            return target
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        print(f"steerkit: merging LoRA adapter {adapter} into its base (once; kept in {target})",
              file=sys.stderr, flush=True)
        base_dir = base.model_dir()
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        has_tokenizer = (adapter / "tokenizer_config.json").exists()
        tokenizer = AutoTokenizer.from_pretrained(adapter if has_tokenizer else base_dir)
        tmp = Path(tempfile.mkdtemp(prefix=".merge-", dir=target.parent))
        try:
            merged.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / MERGE_MARKER).write_text(json.dumps({"adapter": str(adapter), "base": str(base_dir)}))
            if target.exists():  # left by a crash before the marker
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def reasoned_answers(run: RunContext, prompts: Sequence[Any], reasonings: Sequence[str],
                     letter_sets: Sequence[Sequence[str]], what: str) -> list[Any]:
    """Per prompt the letter after its reasoning and "\\nAnswer:", constrained as " A", " B", ...
    (how "Answer: A" was tokenised in training, as the ``cot`` strategy does); a ModelOutputError
    in place of an answer that is not a letter (so the batch's other answers are kept)."""
    answer_prompts = [[*p, {"role": "assistant", "content": (r + "\nAnswer:").lstrip("\n")}]
                      for p, r in zip(prompts, reasonings)]
    return run.choose(answer_prompts, letter_sets, what=what, strict=False, prefix=ANSWER_PREFIX)


def validation_split(path: str | os.PathLike[str], dataset: str) -> steerkit.Dataset:
    """The items a run held out for validation (its manifest's file, limit, seed and grouping),
    so ``steerkit eval --strategy checkpoint -o path=RUN --dataset vk --split val`` scores exactly
    what the model never saw."""
    from .train_data import validation_dataset

    folder = Path(path).expanduser()
    manifest = read_manifest(folder)
    name = (manifest.get("dataset") or {}).get("name")
    if name != dataset:
        raise CheckpointError(
            f"{folder} was trained on {name!r}, so its validation split is of {name!r}, not {dataset!r}: "
            f"use --dataset {name}, or another --split to score {dataset} items"
        )
    return validation_dataset(manifest)


class CheckpointStrategy(ChainOfThought):
    """A trained checkpoint folder as a perspective strategy (cot's keys, voting and selections;
    the checkpoint's own prompts and model)."""

    name = "checkpoint"
    prompt_version = "1"
    target_kinds: ClassVar[frozenset[str]] = frozenset({"perspective"})

    def __init__(self, path: str | os.PathLike[str] | None = None, samples: int = 1, max_tokens: int | None = None,
                 temperature: float = 0.7, top_p: float = 0.95, **options: Any):
        if options:
            raise steerkit.InvalidOptionError(
                f"checkpoint got unknown option(s) {sorted(options)}; it takes path, samples, max_tokens, "
                "temperature, top_p"
            )
        if path is None or not str(path).strip():
            raise steerkit.InvalidOptionError(
                "checkpoint needs path=<folder written by `steerkit train --out`> (CLI: -o path=runs/vk-sft)"
            )
        self.folder = Path(path).expanduser().resolve()
        self.manifest = read_manifest(self.folder)  # missing, not a checkpoint, unfinished: CheckpointError
        if self.manifest.get("method") == "community":
            raise CheckpointError(
                f"{self.folder} is a community LoRA adapter (`steerkit train community`), not a trained "
                "strategy: put it in a modular pool (strategy 'modular', -o adapters='{\"name\": \"FOLDER\"}' "
                "or a pool file naming the folder)"
            )
        self.style = self.manifest.get("prompt_style")
        self.task = self.manifest.get("task")
        version = self.manifest.get("prompt_version")
        if self.style not in STYLES or self.task not in TASKS:
            raise CheckpointError(
                f"{self.folder}: manifest prompt_style {self.style!r} / task {self.task!r} unknown to this "
                f"steerkit (styles {STYLES}, tasks {TASKS}): use the steerkit version that trained it"
            )
        if version != PROMPT_VERSION:
            raise CheckpointError(
                f"{self.folder} was trained with prompts {version!r}; this steerkit prompts with "
                f"{PROMPT_VERSION!r}: retrain it, or use the steerkit version in its manifest"
            )
        self.lora = self.manifest.get("weights", "full") == "lora"
        check_weights(self.folder, self.lora)
        self.base = resolve_base(self.folder, self.manifest.get("base_model")) if self.lora else None
        if self.style == "answer" and int(samples) != 1:
            raise steerkit.InvalidOptionError(
                f"{self.folder} is an answer-only checkpoint ({self.manifest.get('method')}): it answers "
                "with one constrained letter, so samples must be 1 (samples applies to cot checkpoints)"
            )
        if max_tokens is None:  # as long as the run's completions were (GRPO), or as it was validated
            hp = self.manifest.get("hyperparameters") or {}
            max_tokens = int(hp.get("max_completion_length") or hp.get("eval_max_tokens") or 256)
        super().__init__(format=self.task, samples=samples, max_tokens=max_tokens, temperature=temperature, top_p=top_p)
        self._model: str | None = None

    def required_model(self) -> str:
        """The folder the backend loads: the checkpoint itself, or its LoRA merged into the base."""
        if self._model is None:
            self._model = str(merged_folder(self.folder, self.base) if self.lora else self.folder)
        return self._model

    def cache_options(self) -> dict[str, Any]:
        opts = super().cache_options()  # samples, max_tokens, sampling settings when sampling
        opts.pop("distribution", None)
        opts.update(style=self.style, prompt_version=self.manifest.get("prompt_version"))
        if self.style == "answer":
            opts.pop("max_tokens", None)  # no reasoning step
        return opts

    def prompt(self, fmt: str, scenario: Scenario, target: Any) -> list[dict[str, str]]:
        return train_prompt(self.style, scenario, target, fmt)

    def _compute(self, run: RunContext, items: list[tuple[int, int, str, Scenario, Any]]) -> list[Any]:
        """A cot checkpoint reasons and answers as the cot strategy does (with its own prompts);
        an answer-only one writes the constrained letter right after the question."""
        if self.style == "cot":
            return super()._compute(run, items)
        prompts = [self.prompt(fmt, sc, target) for _, _, fmt, sc, target in items]
        answers = run.choose(prompts, [letters_for(len(it[3].responses)) for it in items], what=self.name, strict=False)
        return [a if isinstance(a, BaseException) else [CacheRecord(
            score=float(LETTERS.index(a)), reasoning="",
            payload={"letter": a, "distribution": None, "had_parsable_answer": None, "format": it[2]},
        )] for a, it in zip(answers, items)]

    def select_many(self, run: RunContext, scenarios: Sequence[Scenario], targets: Sequence[Any]) -> list[Selection]:
        for s in scenarios:  # before any model loads
            declared = s.meta.get("task")
            if declared and task_of(str(declared)) != self.task:
                raise CheckpointError(
                    f"{self.folder} was trained for {self.task!r} items, but scenario {s.label!r} is a "
                    f"{declared!r} item: evaluate it on {self.task} data, or train a checkpoint on {declared}"
                )
        selections = super().select_many(run, scenarios, targets)
        for sel in selections:
            sel.extra.update(checkpoint=str(self.folder), method=self.manifest.get("method"), prompt_style=self.style)
        return selections


@steerkit.plugin.hookimpl
def register_strategies(register):
    register("checkpoint", CheckpointStrategy)
