"""``steerkit train``: SFT, CoT-SFT, synthetic CoT (STaR) and GRPO on TRL + accelerate, full or
LoRA, whose output folder is a checkpoint the ``checkpoint`` strategy serves by name.

One run = one output folder: the weights (safetensors only), the tokenizer and the manifest
(``manifest.py``). Everything about the input is checked before a model loads. The manifest is
written with ``complete: false`` first; trainer states go to ``<out>/.resume/`` every
``save_steps``, so rerunning the same command after an interrupt continues from the last one
(and says so); at the end the weights are saved, the validation split is scored, the manifest
says ``complete: true`` and ``.resume/`` is deleted (it holds pickled optimizer state).

``steerkit train community --corpus FILE --lora OUT`` (``CommunityTrainer``) makes a community LM
for the modular strategy: a LoRA adapter trained on plain text, with the same folder rules."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import difflib
import hashlib
import importlib.metadata
import json
import random
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

import steerkit
from steerkit import CheckpointError, InvalidOptionError

from . import cot, manifest as mf, train_data, train_presets, train_prompts

METHODS = mf.METHODS
STYLE_OF = {"sft": "answer", "cot-sft": "cot", "synthetic-cot": "cot"}  # grpo: --init's style, else cot
RESUME_DIR = ".resume"
FSDP_CONFIG = Path(__file__).parent / "data" / "accelerate_fsdp_a100x8.yaml"
DEFAULT_LORA_TARGETS = ("q_proj", "v_proj")


@dataclasses.dataclass
class Plan:
    """Everything resolved before a model loads."""

    method: str
    kind: str
    style: str
    task: str
    values: dict[str, Any]
    split: train_data.Split
    train_items: list[train_data.Example]
    rows: list[dict[str, Any]]
    data_hash: str
    dataset_info: dict[str, Any]
    base_model: str | None
    base_fingerprint: str
    base_folder: Callable[[], str]
    init: str | None
    init_weights: str | None
    lora: dict[str, Any] | None

    def run_key(self) -> str:
        """Same key, same run: a rerun with this key resumes or is already done."""
        ident = {"method": self.method, "task": self.task, "style": self.style, "data": self.data_hash,
                 "base": self.base_model, "base_fp": self.base_fingerprint, "init": self.init,
                 "lora": self.lora, "values": self.values}
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"steerkit": steerkit.__version__}
    for name in ("trl", "transformers", "torch", "peft", "accelerate", "datasets"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def has_pickles(folder: Path) -> list[str]:
    """Pickled files in a checkpoint folder (``.resume/`` excluded)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.suffix in mf.PICKLE_SUFFIXES and RESUME_DIR not in p.relative_to(folder).parts)


class _Progress:
    """Progress with ETA through ``steerkit.plugin.progress_bar`` (a rich bar, or periodic lines off a terminal)."""

    def __init__(self, description: str):
        from transformers import TrainerCallback

        outer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
                if state.is_world_process_zero:
                    outer.advance = outer.stack.enter_context(steerkit.plugin.progress_bar(description, state.max_steps))
                    outer.advance(state.global_step)

            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
                if outer.advance:
                    outer.advance(1)

            def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
                outer.stack.close()

        self.stack = contextlib.ExitStack()
        self.advance: Callable[[int], None] | None = None
        self.callback = Callback()


class _RunFolder:
    """One run = one output folder: refuse a folder holding anything else before any model is
    used, recognise this same run (to resume or report it) and find its last saved state.
    Subclasses set ``out`` and ``command()``."""

    out: Path

    def command(self) -> str:
        raise NotImplementedError

    def _check_out(self) -> None:
        """Refuse an output folder that holds anything but this run, before any model is used."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise CheckpointError(f"--out {out} is a file: give a folder")
        if not out.exists() or not any(out.iterdir()):
            return
        if not mf.manifest_path(out).is_file():
            raise CheckpointError(f"--out {out} is not empty and holds no steerkit run: give a new or empty folder")
        m = mf.load_manifest(out)
        if m.get("command") != self.command():
            self._different(m)

    def _different(self, m: dict[str, Any]) -> None:
        state = "completed" if m.get("complete") else "interrupted"
        source = (m.get("dataset") or {}).get("name") or (m.get("corpus") or {}).get("path")
        raise CheckpointError(
            f"--out {self.out} holds a different {state} run ({m.get('method')} on {source}, started with: "
            f"{m.get('command')}): give a new folder, or delete this one to retrain")

    def _same_run(self, run_key: str) -> dict[str, Any] | None:
        """The manifest of this same run in ``out``, None for a fresh folder."""
        self._check_out()
        if not mf.manifest_path(self.out).is_file():
            return None
        m = mf.load_manifest(self.out)
        if m.get("run_key") != run_key:  # same command, different data or base model
            self._different(m)
        return m

    def _last_checkpoint(self) -> Path | None:
        from transformers.trainer_utils import get_last_checkpoint

        folder = self.out / RESUME_DIR
        last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
        return Path(last) if last else None

    def _mark_complete(self, manifest: dict[str, Any]) -> None:
        """Drop the pickled TrainingArguments, refuse any pickle left, record the run as complete
        and remove its resume state (in that order: an interrupt before the manifest says
        complete leaves a resumable run)."""
        (self.out / "training_args.bin").unlink(missing_ok=True)
        left = has_pickles(self.out)
        if left:
            raise CheckpointError(f"pickled files in {self.out} after saving: {left}")
        manifest["complete"] = True
        mf.write_manifest(self.out, manifest)
        shutil.rmtree(self.out / RESUME_DIR, ignore_errors=True)

    def _train_resuming(self, trainer: Any, progress: Any) -> None:
        """Train from this folder's last saved state if an interrupted run left one (and say so);
        an interrupt leaves no live progress display behind."""
        last = self._last_checkpoint()
        if last is not None:
            self.echo(f"resuming the interrupted run in {self.out} from its step {last.name.split('-')[-1]}")
        try:
            trainer.train(resume_from_checkpoint=str(last) if last is not None else None)
        finally:
            progress.stack.close()


class Trainer(_RunFolder):
    """One training run. ``plan()`` validates and resolves (no model); ``train()`` runs it."""

    def __init__(self, method: str, *, dataset: str = "vk", out: str | Path | None = None, preset: str = "cpu-small",
                 model: str | None = None, init: str | Path | None = None, data: str | None = None,
                 split: str | None = None, limit: int | None = None, lora: bool = False, lora_r: int = 16,
                 lora_alpha: int = 32, lora_dropout: float = 0.05, lora_targets: Sequence[str] | None = None,
                 sets: dict[str, Any] | Sequence[str] | None = None, rationales: str | None = None,
                 style: str | None = None, teacher_backend: str = "transformers", teacher_model: str | None = None,
                 callbacks: Sequence[Any] = (), echo: Callable[[str], None] | None = None):
        if method not in METHODS:
            raise InvalidOptionError(f"unknown training method {method!r}; use one of {', '.join(METHODS)}")
        if out is None:
            raise InvalidOptionError("give the output folder (--out DIR)")
        if style is not None and style not in train_prompts.STYLES:
            raise InvalidOptionError(f"--style must be one of {', '.join(train_prompts.STYLES)}, got {style!r}")
        if style is not None and method != "grpo" and style != STYLE_OF[method]:
            raise InvalidOptionError(f"{method} trains the {STYLE_OF[method]!r} style; --style applies to grpo only")
        self.method, self.dataset, self.out, self.preset = method, dataset, Path(out), preset
        self.model, self.init, self.data, self.split_name, self.limit = model, init, data, split, limit
        self.lora = bool(lora)
        self.lora_cfg = {"r": int(lora_r), "alpha": int(lora_alpha), "dropout": float(lora_dropout),
                         "target_modules": list(lora_targets or DEFAULT_LORA_TARGETS)} if lora else None
        self.sets = train_presets.parse_sets(sets) if isinstance(sets, (list, tuple)) else dict(sets or {})
        self.rationales, self.style = rationales, style
        self.teacher_backend, self.teacher_model = teacher_backend, teacher_model
        self.callbacks = list(callbacks)
        self.echo = echo or (lambda msg: print(f"steerkit train: {msg}", file=sys.stderr, flush=True))
        self._plan: Plan | None = None

    # -- the command line that reproduces (and resumes) this run -------------------------
    def argv(self) -> list[str]:
        args = ["train", self.method, "--dataset", self.dataset, "--preset", self.preset, "--out", str(self.out)]
        for flag, value in (("--model", self.model), ("--init", self.init), ("--data", self.data),
                            ("--split", self.split_name), ("--limit", self.limit), ("--rationales", self.rationales),
                            ("--style", self.style)):
            if value is not None:
                args += [flag, str(value)]
        if self.method == "synthetic-cot":
            args += ["--teacher-backend", self.teacher_backend]
            if self.teacher_model:
                args += ["--teacher-model", self.teacher_model]
        if self.lora_cfg:
            c = self.lora_cfg
            args += ["--lora", "--lora-r", str(c["r"]), "--lora-alpha", str(c["alpha"]),
                     "--lora-dropout", str(c["dropout"]), "--lora-targets", ",".join(c["target_modules"])]
        for k, v in self.sets.items():
            args += ["--set", f"{k}={v}"]
        return args

    def command(self) -> str:
        return shlex.join(["steerkit", *self.argv()])

    def launch_command(self) -> str:
        """``accelerate launch`` with the shipped FSDP config (multi-GPU presets) or plain (CPU)."""
        values = train_presets.resolve(self.preset, self.method, train_prompts.task_of(self.dataset), self.sets)
        exe = shutil.which("steerkit") or "steerkit"
        launch = ["accelerate", "launch"]
        if values.get("num_processes", 1) > 1:
            launch += ["--config_file", str(FSDP_CONFIG), "--num_processes", str(values["num_processes"])]
        else:
            launch += ["--num_processes", "1"]
        return shlex.join([*launch, exe, *self.argv()])

    # -- resolving, no model ------------------------------------------------------------
    def resolved_values(self, task: str) -> dict[str, Any]:
        return train_presets.resolve(self.preset, self.method, task, self.sets)

    def plan(self) -> Plan:
        if self._plan is not None:
            return self._plan
        kind = train_presets.KINDS[self.method]
        self._check_out()
        ds = train_data.load_dataset(self.dataset, self.data, self.split_name)
        if self.limit is not None:
            ds = ds.head(int(self.limit))
        task = train_prompts.task_of(ds)
        values = self.resolved_values(task)
        init_manifest = self._check_init(task)
        style = self.style or STYLE_OF.get(self.method) or (init_manifest or {}).get("prompt_style") or "cot"
        base_model, base_fp, base_folder, init_weights = self._base(init_manifest)
        if self.lora_cfg and init_weights == "lora":
            raise InvalidOptionError(
                f"--init {self.init} is a LoRA run: without --lora it is merged and trained in full; "
                "--lora on top of a LoRA run is not supported (train it further in full, or init from a full run)")
        split = train_data.split_examples(train_data.examples(ds), task, values["val_fraction"], values["split_seed"])
        items = split.train
        info: dict[str, Any] = {"name": self.dataset, "source": ds.info.get("source") or self.data,
                                "data": self.data, "file_split": self.split_name, "limit": self.limit,
                                "split": dict(split.info)}
        if self.method == "cot-sft":
            items, info["rationales"] = self._human_rationales(items, task)
        elif self.method == "synthetic-cot":
            items, info["rationales"] = self._synthetic_rationales(items, task, values)
        items = _capped(items, values)
        if not items:
            raise steerkit.DatasetError(f"no training items left for {self.method} on {self.dataset}")
        max_val = values.get("max_val_items")
        if max_val is not None:
            split.val = split.val[: int(max_val)]
        info["split"].update(n_train_used=len(items), n_val_used=len(split.val),
                             train_labels=train_data.label_counts(items))
        rows = (train_data.sft_rows(items, style, task) if kind == "sft"
                else train_data.grpo_rows(items, style, task))
        info["data_hash"] = train_data.data_hash(rows, split.val)
        self._plan = Plan(self.method, kind, style, task, values, split, items, rows, info["data_hash"], info,
                          base_model, base_fp, base_folder, str(Path(self.init).resolve()) if self.init else None,
                          init_weights, self.lora_cfg)
        return self._plan

    def _check_init(self, task: str) -> dict[str, Any] | None:
        if self.init is None:
            return None
        m = mf.read_manifest(self.init)
        if m.get("task") != task:
            raise CheckpointError(
                f"--init {self.init} was trained for task {m.get('task')!r}, not {task!r} ({self.dataset}): "
                "start from a run on the same task")
        if self.model is not None:
            raise InvalidOptionError("give --model or --init, not both: --init names its own base model")
        return m

    def _base(self, init_manifest: dict[str, Any] | None) -> tuple[str | None, str, Callable[[], str], str | None]:
        """(base model as recorded, its fingerprint, a function giving its folder, init's weights kind)."""
        factory = steerkit.plugin.lookup("backend", "transformers")
        if init_manifest is None:
            backend = factory(self.model)  # checks the path or hub cache; loads nothing
            return self.model, backend.fingerprint(), lambda: str(backend.model_dir()), None
        init = str(Path(self.init).resolve())
        if init_manifest.get("weights") == "lora":
            backend = factory(init_manifest.get("base_model"))
            fp = f"{backend.fingerprint()}+lora:{train_data.folder_hash(Path(init))}"
            return init_manifest.get("base_model"), fp, lambda: str(backend.model_dir()), "lora"
        backend = factory(init)
        return init, backend.fingerprint(), lambda: init, "full"

    def _human_rationales(self, items: list[train_data.Example], task: str) -> tuple[list[train_data.Example], dict]:
        path = self.rationales or train_data.default_rationales(task, self.data)
        if path is None:
            raise steerkit.DatasetError(
                f"cot-sft needs human rationales: pass --rationales FILE (jsonl/csv with 'rationale' and 'id' or "
                f"'situation' + 'vrd'); only VK has a default (ValuePrism's explanations)")
        kept, dropped = train_data.attach_rationales(items, train_data.read_rationales(path))
        self.echo(f"rationales from {path}: {len(kept)} training items have one, {dropped} without one are left out")
        return kept, {"source": str(path), "kind": "human", "n_with": len(kept), "n_dropped": dropped}

    def _synthetic_rationales(self, items: list[train_data.Example], task: str,
                              values: dict[str, Any]) -> tuple[list[train_data.Example], dict]:
        from . import star

        items = _capped(items, values)  # generate only what will be trained on
        teacher = steerkit.plugin.lookup("backend", self.teacher_backend)(self.teacher_model)
        results = star.star_rationales(teacher, [(e.scenario, e.perspective, e.gold) for e in items], task=task,
                                       max_tokens=int(values["teacher_max_tokens"]))
        kept = [train_data.Example(e.scenario, e.perspective, e.gold, e.group, r.rationale)
                for e, r in zip(items, results) if r.usable]
        stats = {"kept": sum(r.status == star.KEPT for r in results),
                 "rationalised": sum(r.status == star.RATIONALISED for r in results),
                 "failed": sum(r.status == star.FAILED for r in results)}
        self.echo(f"STaR rationales from {teacher.model_name}: {stats}")
        return kept, {"source": f"star:{self.teacher_backend}:{teacher.model_name}", "kind": "synthetic",
                      "teacher_fingerprint": teacher.fingerprint(), **stats}

    # -- the output folder: see _RunFolder -------------------------------------------------
    def _existing(self, plan: Plan) -> dict[str, Any] | None:
        """The manifest of this same run in ``out`` (to resume or report), None for a fresh folder."""
        return self._same_run(plan.run_key())

    def manifest(self, plan: Plan, complete: bool, **extra: Any) -> dict[str, Any]:
        return {
            "complete": complete, "method": plan.method, "task": plan.task, "prompt_style": plan.style,
            "prompt_version": train_prompts.PROMPT_VERSION, "base_model": plan.base_model,
            "base_fingerprint": plan.base_fingerprint, "init": plan.init,
            "weights": "lora" if plan.lora else "full", "lora": plan.lora, "dataset": plan.dataset_info,
            "hyperparameters": plan.values, "preset": self.preset, "versions": versions(),
            "metrics": {"val": None}, "command": self.command(), "run_key": plan.run_key(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **extra,
        }

    # -- running ------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Run (or resume, or report a finished run); returns the final manifest."""
        plan = self.plan()
        existing = self._existing(plan)
        if existing is not None and existing.get("complete"):
            self.echo(f"{self.out} already holds this finished run; nothing to do")
            return existing
        manifest = self.manifest(plan, complete=False)
        if existing is not None:
            manifest["created"] = existing.get("created", manifest["created"])
        config = train_presets.build_config(plan.kind, plan.values, str(self.out / RESUME_DIR))
        model, tokenizer = self._load_model(plan)
        trainer = self._trl_trainer(plan, config, model, tokenizer, manifest)
        main = trainer.is_world_process_zero()
        if main:
            mf.write_manifest(self.out, manifest)
        self._train_resuming(trainer, self._progress)
        trainer.save_model(str(self.out))
        world_size = trainer.args.world_size
        manifest["train_log"] = _log_summary(trainer.state.log_history)
        del trainer, model  # free the training copy before the checkpoint is loaded to validate it
        if not main:
            return manifest
        self._mark_complete(manifest)
        manifest["metrics"]["val"] = self._validate(plan, world_size)
        mf.write_manifest(self.out, manifest)
        self.echo(f"done: {self.out} (validation: {_short_metrics(manifest['metrics']['val'])})")
        return manifest

    def _load_model(self, plan: Plan) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = plan.base_folder()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        if plan.init_weights == "lora":
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, plan.init).merge_and_unload()
        return model, tokenizer

    def _peft_config(self, plan: Plan) -> Any:
        if not plan.lora:
            return None
        from peft import LoraConfig

        c = plan.lora
        return LoraConfig(r=c["r"], lora_alpha=c["alpha"], lora_dropout=c["dropout"],
                          target_modules=c["target_modules"], task_type="CAUSAL_LM")

    def _trl_trainer(self, plan: Plan, config: Any, model: Any, tokenizer: Any, manifest: dict[str, Any]) -> Any:
        from datasets import Dataset as HFDataset

        self._progress = _Progress(f"train {plan.method}")
        callbacks = [self._progress.callback, *self.callbacks]
        if plan.kind == "sft":
            from trl import SFTTrainer

            return SFTTrainer(model=model, args=config, train_dataset=HFDataset.from_list(plan.rows),
                              processing_class=tokenizer, peft_config=self._peft_config(plan), callbacks=callbacks)
        from trl import GRPOTrainer

        limit = plan.values.get("max_prompt_length")
        rows, dropped = train_data.drop_long_prompts(plan.rows, tokenizer, limit)
        if dropped:
            self.echo(f"{dropped} prompt(s) longer than max_prompt_length={limit} tokens left out")
        if not rows:
            raise steerkit.DatasetError(f"every prompt is longer than max_prompt_length={limit}: raise it with --set")
        manifest["dataset"]["split"]["n_long_prompts_dropped"] = dropped
        return GRPOTrainer(model=model, reward_funcs=[answer_reward(plan.style)], args=config,
                           train_dataset=HFDataset.from_list(rows), processing_class=tokenizer,
                           peft_config=self._peft_config(plan), callbacks=callbacks)

    def _validate(self, plan: Plan, world_size: int) -> dict[str, Any] | None:
        """The finished checkpoint answers the validation split through the ``checkpoint``
        strategy, exactly as ``steerkit eval --strategy checkpoint`` would serve it."""
        import torch

        from . import perspective_eval

        if not plan.split.val:
            return None
        if world_size > 1:  # evaluate a sharded run afterwards, on one process
            return {"note": f"not scored in a {world_size}-process run: use `steerkit eval --strategy checkpoint`"}
        self.echo(f"scoring the validation split ({len(plan.split.val)} items) with the checkpoint strategy")
        val = steerkit.Dataset(f"{self.dataset}-val", [e.scenario for e in plan.split.val],
                               perspectives=[e.perspective for e in plan.split.val], info={"task": plan.task})
        device = "cuda" if torch.cuda.is_available() else "cpu"
        steerer = steerkit.Steerer(strategy="checkpoint", path=str(self.out), backend_options={"device": device},
                                   max_tokens=int(plan.values["eval_max_tokens"]))
        try:
            report = perspective_eval.evaluate_choice_dataset(steerer, val, print_table=False)
        finally:
            steerer.close()
        preds = [it["pred"] for it in report["items"]]
        return {**report["metrics"], "strategy": "checkpoint", "seconds": report["seconds"],
                "predicted": {cot.LETTERS[i]: preds.count(i) for i in sorted(set(preds))}}


def _capped(items: list[train_data.Example], values: dict[str, Any]) -> list[train_data.Example]:
    """At most ``max_train_items`` of ``items``: a sample seeded by ``split_seed``, in order."""
    cap = values.get("max_train_items")
    if cap is None or len(items) <= cap:
        return items
    keep = sorted(random.Random(values["split_seed"]).sample(range(len(items)), int(cap)))
    return [items[i] for i in keep]


def answer_reward(style: str) -> Callable[..., list[float]]:
    """GRPO's verifiable reward: 1.0 when the completion's final answer letter is the gold one,
    else 0.0 (no format reward)."""

    def answer_correct(prompts, completions, gold, n_options, **_: Any) -> list[float]:  # noqa: ANN001
        out = []
        for completion, g, n in zip(completions, gold, n_options):
            text = completion[-1]["content"] if isinstance(completion, list) else str(completion)
            out.append(1.0 if train_prompts.final_letter(style, text, cot.LETTERS[: int(n)]) == g else 0.0)
        return out

    return answer_correct


def _log_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    losses = [h["loss"] for h in history if "loss" in h]
    rewards = [h["reward"] for h in history if "reward" in h]
    final = next((h for h in reversed(history) if "train_runtime" in h), {})
    return {"steps": max((h.get("step", 0) for h in history), default=0), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "first_reward": rewards[0] if rewards else None,
            "last_reward": rewards[-1] if rewards else None, "runtime_s": final.get("train_runtime"),
            "mean_loss": final.get("train_loss"),  # logged even when a run is shorter than logging_steps
            "history": [h for h in history if "train_runtime" not in h]}


def _short_metrics(val: dict[str, Any] | None) -> str:
    if not val or "accuracy" not in val:
        return "none"
    return ", ".join(f"{k} {100 * val[k]:.1f}" for k in ("accuracy", "balanced_accuracy", "macro_f1"))


# -- community LMs (Modular Pluralism): a LoRA from plain text --------------------------------
COMMUNITY = "community"
# LoRA on plain text: a LoRA learning rate (10x full fine-tuning's), short sequences for a CPU;
# everything is a field of trl's SFTConfig and can be changed with --set.
COMMUNITY_DEFAULTS: dict[str, Any] = {
    "learning_rate": 2e-4, "num_train_epochs": 1, "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1, "max_length": 256, "lr_scheduler_type": "cosine", "warmup_steps": 0.1,
    "optim": "adamw_torch", "max_grad_norm": 1.0, "seed": 42, "report_to": "none", "save_strategy": "steps",
    "save_steps": 25, "save_total_limit": 2, "logging_steps": 5, "disable_tqdm": True,
    "dataloader_num_workers": 0, "dataset_text_field": "text", "packing": False,
}


def read_corpus(path: str | Path) -> list[str]:
    """A community's texts: a text file (paragraphs split at blank lines), a JSON list (of texts
    or objects with ``text``) or JSON Lines (same); DatasetError for a missing or empty corpus."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise steerkit.DatasetError(
            f"corpus {file} {'is a folder' if file.is_dir() else 'does not exist'}: give a text file of the "
            "community's writing (paragraphs separated by blank lines), or a .json/.jsonl of texts")
    try:
        raw = file.read_text(encoding="utf-8")
        if file.suffix in (".json", ".jsonl"):
            rows = ([json.loads(line) for line in raw.splitlines() if line.strip()] if file.suffix == ".jsonl"
                    else json.loads(raw))
            if not isinstance(rows, list):
                raise ValueError(f"expected a list of texts, got {type(rows).__name__}")
            texts = [r.get("text") if isinstance(r, dict) else r for r in rows]
            if not all(isinstance(t, str) for t in texts):
                raise ValueError("every entry must be a text or an object with a 'text' field")
        else:
            texts = re.split(r"\n\s*\n", raw)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise steerkit.DatasetError(f"cannot read corpus {file}: {exc}; give UTF-8 text, a JSON list of texts or "
                                    "JSON Lines with a 'text' field") from exc
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise steerkit.DatasetError(f"corpus {file} is empty: it needs at least one paragraph of the community's text")
    return texts


class CommunityTrainer(_RunFolder):
    """A community LM for Modular Pluralism: a peft LoRA trained on a text corpus by plain
    causal-LM loss (TRL's SFTTrainer on text), on the base model (default: the embedded model).
    The output folder is a peft adapter (adapter_config.json + adapter_model.safetensors) with a
    steerkit manifest naming the base model's fingerprint, so a backend refuses it on another
    model. Resumable like ``Trainer``: rerun the same command after an interrupt."""

    def __init__(self, corpus: str | Path, out: str | Path, *, model: str | None = None, lora_r: int = 16,
                 lora_alpha: int = 32, lora_dropout: float = 0.05, lora_targets: Sequence[str] | None = None,
                 sets: dict[str, Any] | Sequence[str] | None = None, name: str | None = None,
                 callbacks: Sequence[Any] = (), echo: Callable[[str], None] | None = None):
        self.corpus, self.out, self.model = Path(corpus), Path(out), model
        self.name = name or self.out.name
        self.lora_cfg = {"r": int(lora_r), "alpha": int(lora_alpha), "dropout": float(lora_dropout),
                         "target_modules": list(lora_targets or DEFAULT_LORA_TARGETS)}
        self.sets = train_presets.parse_sets(sets) if isinstance(sets, (list, tuple)) else dict(sets or {})
        self.callbacks = list(callbacks)
        self.echo = echo or (lambda msg: print(f"steerkit train: {msg}", file=sys.stderr, flush=True))

    def argv(self) -> list[str]:
        args = ["train", COMMUNITY, "--corpus", str(self.corpus), "--lora", str(self.out), "--name", self.name]
        if self.model is not None:
            args += ["--model", str(self.model)]
        c = self.lora_cfg
        args += ["--lora-r", str(c["r"]), "--lora-alpha", str(c["alpha"]), "--lora-dropout", str(c["dropout"]),
                 "--lora-targets", ",".join(c["target_modules"])]
        for k, v in self.sets.items():
            args += ["--set", f"{k}={v}"]
        return args

    def command(self) -> str:
        return shlex.join(["steerkit", *self.argv()])

    def values(self) -> dict[str, Any]:
        """COMMUNITY_DEFAULTS with typed ``--set`` overrides (SFTConfig fields only); CPU unless a GPU is there."""
        import torch

        values = {**COMMUNITY_DEFAULTS, "use_cpu": not torch.cuda.is_available(), "bf16": False}
        fields = train_presets.field_types("sft")
        for key, raw in self.sets.items():
            if key not in fields or key in train_presets.STEERKIT_FIELDS:
                close = difflib.get_close_matches(key, [f for f in fields if f not in train_presets.STEERKIT_FIELDS], n=3)
                raise InvalidOptionError(f"--set {key}: not a field of trl's SFTConfig."
                                         + (f" Did you mean {', '.join(close)}?" if close else ""))
            values[key] = train_presets.coerce(key, raw, fields[key])
        return values

    def plan(self) -> dict[str, Any]:
        """Everything checked and resolved before a model loads."""
        for key in ("r", "alpha"):
            if self.lora_cfg[key] < 1:
                raise InvalidOptionError(f"--lora-{key} {self.lora_cfg[key]}: give a whole number >= 1")
        if not self.lora_cfg["target_modules"]:
            raise InvalidOptionError("--lora-targets is empty: name the modules to adapt, e.g. q_proj,v_proj")
        self._check_out()
        texts = read_corpus(self.corpus)
        values = self.values()
        backend = steerkit.plugin.lookup("backend", "transformers")(self.model)  # checks the model; loads nothing
        config = train_presets.build_config("sft", values, str(self.out / RESUME_DIR))
        digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:16]
        corpus = {"path": str(self.corpus.resolve()), "sha256": digest, "n_texts": len(texts),
                  "n_chars": sum(len(t) for t in texts)}
        ident = {"method": COMMUNITY, "corpus": digest, "base": self.model, "base_fp": backend.fingerprint(),
                 "lora": self.lora_cfg, "values": values}
        key = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return {"texts": texts, "values": values, "config": config, "backend": backend, "corpus": corpus,
                "run_key": key}

    def train(self) -> dict[str, Any]:
        """Train (or resume, or report the finished run); returns the final manifest."""
        import torch
        from datasets import Dataset as HFDataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import SFTTrainer

        plan = self.plan()
        existing = self._same_run(plan["run_key"])
        if existing is not None and existing.get("complete"):
            self.echo(f"{self.out} already holds this finished community adapter; nothing to do")
            return existing
        backend = plan["backend"]
        manifest = {
            "complete": False, "method": COMMUNITY, "community": self.name, "task": None,
            "base_model": self.model, "base_fingerprint": backend.fingerprint(), "weights": "lora",
            "lora": self.lora_cfg, "corpus": plan["corpus"], "hyperparameters": plan["values"],
            "versions": versions(), "command": self.command(), "run_key": plan["run_key"],
            "created": (existing or {}).get("created")
            or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        folder = str(backend.model_dir())
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        c = self.lora_cfg
        peft_config = LoraConfig(r=c["r"], lora_alpha=c["alpha"], lora_dropout=c["dropout"],
                                 target_modules=c["target_modules"], task_type="CAUSAL_LM")
        progress = _Progress(f"train community {self.name}")
        trainer = SFTTrainer(model=model, args=plan["config"],
                             train_dataset=HFDataset.from_list([{"text": t} for t in plan["texts"]]),
                             processing_class=tokenizer, peft_config=peft_config,
                             callbacks=[progress.callback, *self.callbacks])
        mf.write_manifest(self.out, manifest)
        self._train_resuming(trainer, progress)
        trainer.save_model(str(self.out))
        manifest["train_log"] = _log_summary(trainer.state.log_history)
        self._mark_complete(manifest)
        log = manifest["train_log"]
        loss = (f"loss {log['first_loss']:.3f} -> {log['last_loss']:.3f}" if log["first_loss"] is not None
                else f"mean loss {log['mean_loss']:.3f}" if log.get("mean_loss") is not None else "no loss logged")
        self.echo(f"done: {self.out} (LoRA adapter on {backend.model_name}, {log['steps']} steps, {loss})")
        return manifest


# -- plugin hooks -------------------------------------------------------------------------
@steerkit.plugin.hookimpl
def register_trainers(register):
    for method in METHODS:
        register(method, _factory(method))
    register(COMMUNITY, CommunityTrainer)


def _factory(method: str) -> Callable[..., Trainer]:
    def make(**options: Any) -> Trainer:
        return Trainer(method, **options)

    make.__doc__ = f"{method} trainer (steerkit_plugins.trainer.Trainer)"
    return make


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--dataset", default="vk", show_default=True, help="perspective dataset: vk, opinionqa or a plugin's"),
        click.option("--data", default=None, help="dataset file or folder (default: $STEERKIT_DATA or ../shared/data)"),
        click.option("--split", default=None, help="dataset file split to read (default: the loader's own)"),
        click.option("--limit", type=int, default=None, help="first N dataset items only (before the train/val split)"),
        click.option("--preset", default="cpu-small", show_default=True, type=click.Choice(train_presets.PRESETS)),
        click.option("--out", required=True, help="output folder: the checkpoint (rerun the same command to resume)"),
        click.option("--model", default=None, help="base model: HF folder, .gguf or cached hub name (default: embedded)"),
        click.option("--init", default=None, help="start from this finished steerkit run (e.g. GRPO from an SFT run)"),
        click.option("--style", default=None, type=click.Choice(train_prompts.STYLES),
                     help="grpo: prompt style (default: --init's, else cot)"),
        click.option("--lora", is_flag=True, help="train a LoRA adapter (peft) instead of all weights"),
        click.option("--lora-r", type=int, default=16, show_default=True),
        click.option("--lora-alpha", type=int, default=32, show_default=True),
        click.option("--lora-dropout", type=float, default=0.05, show_default=True),
        click.option("--lora-targets", default=",".join(DEFAULT_LORA_TARGETS), show_default=True,
                     help="comma-separated module names"),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="override a preset field (any trl config field, typed), e.g. --set learning_rate=1e-5"),
        click.option("--rationales", default=None, help="cot-sft: rationale file (jsonl/csv: rationale + id or situation, vrd)"),
        click.option("--teacher-backend", default="transformers", show_default=True, help="synthetic-cot: teacher backend"),
        click.option("--teacher-model", default=None, help="synthetic-cot: teacher model (default: the backend's)"),
        click.option("--print-launch", is_flag=True, help="print the resolved config and the accelerate command; do not train"),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@steerkit.plugin.hookimpl
def register_commands(cli):
    @cli.group("train")
    def train_group() -> None:
        """Train a steerable checkpoint (SFT, CoT-SFT, synthetic CoT, GRPO) with TRL."""

    for method in METHODS:
        _add_method(train_group, method)
    _add_community(train_group)


def _add_method(group: click.Group, method: str) -> None:
    @group.command(method, help=f"{method}: {_HELP[method]}")
    @_options
    def command(print_launch: bool, lora_targets: str, sets: tuple[str, ...], **kwargs: Any) -> None:
        trainer = Trainer(method, lora_targets=[t.strip() for t in lora_targets.split(",") if t.strip()],
                          sets=list(sets), echo=lambda m: click.echo(f"steerkit train: {m}", err=True), **kwargs)
        if print_launch:
            task = train_prompts.task_of(kwargs["dataset"])
            click.echo(json.dumps(trainer.resolved_values(task), indent=2, sort_keys=True))
            click.echo(trainer.launch_command())
            return
        trainer.train()


def _add_community(group: click.Group) -> None:
    @group.command(COMMUNITY, help="a community LM for the modular strategy: a LoRA adapter trained on a text "
                   "corpus (plain causal-LM loss); rerun the same command to resume")
    @click.option("--corpus", required=True, help="the community's text: .txt (paragraphs at blank lines), "
                  ".json list or .jsonl of texts")
    @click.option("--lora", "--out", "out", required=True, help="output folder: the peft adapter (+ steerkit manifest)")
    @click.option("--name", default=None, help="community name recorded in the manifest (default: the folder name)")
    @click.option("--model", default=None, help="base model: HF folder, .gguf or cached hub name (default: embedded)")
    @click.option("--lora-r", type=int, default=16, show_default=True)
    @click.option("--lora-alpha", type=int, default=32, show_default=True)
    @click.option("--lora-dropout", type=float, default=0.05, show_default=True)
    @click.option("--lora-targets", default=",".join(DEFAULT_LORA_TARGETS), show_default=True,
                  help="comma-separated module names")
    @click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                  help="override a training field (any trl SFTConfig field, typed), e.g. --set max_steps=50")
    def command(corpus: str, out: str, lora_targets: str, sets: tuple[str, ...], **kwargs: Any) -> None:
        CommunityTrainer(corpus, out, lora_targets=[t.strip() for t in lora_targets.split(",") if t.strip()],
                         sets=list(sets), echo=lambda m: click.echo(f"steerkit train: {m}", err=True), **kwargs).train()


_HELP = {
    "sft": "answer-only fine-tuning (prompt -> the letter)",
    "cot-sft": "fine-tuning on human rationales, then 'Answer: X' (VK: ValuePrism's explanations)",
    "synthetic-cot": "STaR: a teacher's rationales (kept when right, else rationalised toward the gold), then CoT-SFT",
    "grpo": "GRPO with a 0/1 reward for the right final letter (start from an SFT run with --init)",
}
