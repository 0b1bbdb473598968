"""Training presets and ``--set`` overrides, resolved into a TRL config before any model loads.

``a100x8`` is the paper's setup to the digit (Zhang, McKeown, Muresan 2025; papers.md §1):
8×A100 80GB, FSDP full shard, 1 epoch, AdamW, one-cycle cosine with a 0.1 warm-up, LR decaying
to a tenth of its peak, global batch 256. ``cpu-small`` fits the embedded 135M model on a
2-core CPU. A few steerkit fields ride along (the split, the data cap, the GRPO prompt limit);
everything else is a field of trl's ``SFTConfig`` / ``GRPOConfig`` and is checked against it."""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from typing import Any

from steerkit import InvalidOptionError

PRESETS = ("cpu-small", "a100x8")
KINDS = {"sft": "sft", "cot-sft": "sft", "synthetic-cot": "sft", "grpo": "grpo"}

# steerkit's own fields (not trl's): name -> (type, help)
STEERKIT_FIELDS: dict[str, tuple[Any, str]] = {
    "val_fraction": (float, "share of groups (situations/questions) held out for validation"),
    "split_seed": (int, "seed of the grouped train/validation split"),
    "max_train_items": (int | None, "train on at most this many items (a seeded sample; null = all)"),
    "max_val_items": (int | None, "validate on at most this many items (null = all)"),
    "max_prompt_length": (int | None, "GRPO: prompts longer than this (tokens) are left out (trl 1.16 has no such field)"),
    "eval_max_tokens": (int, "reasoning tokens when validating a CoT-style model"),
    "teacher_max_tokens": (int, "synthetic-cot: reasoning tokens the STaR teacher writes per item"),
    "num_processes": (int, "processes `accelerate launch` starts (GPUs)"),
}

# one-cycle cosine with 0.1 warm-up, decaying to 0.1 x peak (warmup_steps < 1 is a ratio)
_SCHEDULE = {"lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
             "warmup_steps": 0.1, "num_train_epochs": 1, "optim": "adamw_torch"}
_COMMON = {"seed": 42, "report_to": "none", "save_strategy": "steps", "save_total_limit": 2,
           "disable_tqdm": True, "val_fraction": 0.1, "split_seed": 0, "max_train_items": None,
           "max_val_items": None, "eval_max_tokens": 256,
           "teacher_max_tokens": 256}

_A100 = {**_COMMON, **_SCHEDULE, "bf16": True, "gradient_checkpointing": True, "num_processes": 8,
         "logging_steps": 10, "save_steps": 50}
# bf16 stays off on CPU: on an AMX Xeon a bf16-autocast SFT step took 1.5x the float32 one
_CPU = {**_COMMON, **_SCHEDULE, "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
        "num_processes": 1, "logging_steps": 5, "save_steps": 25, "dataloader_num_workers": 0,
        "eval_max_tokens": 128, "teacher_max_tokens": 128}
# GRPO as in the paper: one iteration, PPO clip 0.2, KL 0.001, prompt 192, rollouts T=0.7 top-p 0.95
_GRPO = {"num_iterations": 1, "epsilon": 0.2, "beta": 0.001, "loss_type": "grpo", "max_prompt_length": 192,
         "temperature": 0.7, "top_p": 0.95}

_TABLE: dict[tuple[str, str], dict[str, Any]] = {
    # SFT / CoT-SFT: LR 2e-5 -> 2e-6, clip 5.0; global batch 256 = 8 GPUs x 8 x 4 accumulation
    ("a100x8", "sft"): {**_A100, "learning_rate": 2e-5, "max_grad_norm": 5.0,
                        "per_device_train_batch_size": 8, "gradient_accumulation_steps": 4},
    # GRPO: LR 1.5e-6 -> 1.5e-7, clip 3.0, group 16, one iteration, PPO clip 0.2, KL 0.001,
    # prompt 192 / response 448, rollouts T=0.7 top-p 0.95 on colocated vLLM. Batch 256 prompts
    # x 16 = 4096 rollouts per generation; minibatch 64 prompts = 1024 completions per optimizer
    # step (8 GPUs x 16 x 8 accumulation), so 4 optimizer steps per rollout batch.
    ("a100x8", "grpo"): {**_A100, **_GRPO, "learning_rate": 1.5e-6, "max_grad_norm": 3.0, "num_generations": 16,
                         "max_completion_length": 448,
                         "per_device_train_batch_size": 16, "gradient_accumulation_steps": 8,
                         "steps_per_generation": 32, "use_vllm": True, "vllm_mode": "colocate",
                         "vllm_gpu_memory_utilization": 0.3},
    # The embedded 135M model on 2 CPU cores: short sequences, a capped item count. Measured on
    # an idle 2-core Xeon: ~11 s per step of 8, so 150 steps take about half an hour.
    ("cpu-small", "sft"): {**_CPU, "learning_rate": 5e-5, "max_grad_norm": 5.0,
                           "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
                           "max_length": 256, "max_train_items": 1200},
    # GRPO on CPU: groups of 4, short responses; same clip/KL/sampling as the paper. From an
    # answer-only SFT run a step (2 prompts x 4 rollouts) took 5-8 s: 300 steps, under an hour;
    # CoT rollouts (up to 96 tokens) take longer.
    ("cpu-small", "grpo"): {**_CPU, **_GRPO, "learning_rate": 1e-5, "max_grad_norm": 3.0, "num_generations": 4,
                            "max_completion_length": 96,
                            "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
                            "max_train_items": 600},
}
# max input length per task (the paper: 384 VK, 512 OpinionQA)
_A100_MAX_LENGTH = {"vk": 384, "opinionqa": 512, "general": 512}


def config_class(kind: str) -> type:
    from trl import GRPOConfig, SFTConfig

    return GRPOConfig if kind == "grpo" else SFTConfig


def field_types(kind: str) -> dict[str, Any]:
    """Every settable field: trl's config fields and steerkit's own."""
    types_ = {f.name: f.type for f in dataclasses.fields(config_class(kind)) if f.init}
    types_.update({k: t for k, (t, _) in STEERKIT_FIELDS.items()})
    return types_


def _allowed(tp: Any) -> tuple[type, ...]:
    if isinstance(tp, str):  # a postponed annotation we cannot resolve: accept any JSON value
        return (object,)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        out: tuple[type, ...] = ()
        for a in typing.get_args(tp):
            out += _allowed(a)
        return out
    if tp is type(None) or tp is None:
        return (type(None),)
    if origin is not None:
        return (origin,)
    if tp is Any:
        return (object,)
    return (tp,) if isinstance(tp, type) else (object,)


def coerce(key: str, raw: Any, tp: Any) -> Any:
    """A ``--set`` value as its field's type ("1e-5" -> 1e-05, "true" -> True, "null" -> None)."""
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
    allowed = _allowed(tp)
    if object in allowed:
        return value
    if isinstance(value, bool) and bool not in allowed and (int in allowed or float in allowed):
        raise InvalidOptionError(f"--set {key}={raw}: expected a number, got a boolean")
    if isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and str in allowed and not (
            int in allowed or float in allowed):
        return str(raw)
    if isinstance(value, allowed):
        return value
    if str in allowed and isinstance(raw, str):
        return raw
    names = ", ".join(sorted({t.__name__ for t in allowed}))
    raise InvalidOptionError(f"--set {key}={raw}: expected {names}, got {type(value).__name__}")


def parse_sets(pairs: typing.Iterable[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidOptionError(f"--set {pair!r}: use KEY=VALUE, e.g. --set learning_rate=1e-5")
        out[key.strip()] = value.strip()
    return out


def resolve(preset: str, method: str, task: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preset's values for this method and task, with typed overrides; unknown keys refused."""
    if method not in KINDS:
        raise InvalidOptionError(f"unknown training method {method!r}; use one of {', '.join(KINDS)}")
    if preset not in PRESETS:
        raise InvalidOptionError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    kind = KINDS[method]
    values = json.loads(json.dumps(_TABLE[(preset, kind)]))  # a deep copy
    if preset == "a100x8" and kind == "sft":
        values["max_length"] = _A100_MAX_LENGTH.get(task, 512)
    valid = field_types(kind)
    for key, raw in (overrides or {}).items():
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise InvalidOptionError(
                f"--set {key}: not a field of trl's {config_class(kind).__name__} nor a steerkit training "
                f"field.{hint} Valid keys: {', '.join(sorted(valid))}"
            )
        values[key] = coerce(key, raw, valid[key])
    return values


def split_fields(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trl config kwargs, steerkit fields)."""
    ours = {k: v for k, v in values.items() if k in STEERKIT_FIELDS}
    return {k: v for k, v in values.items() if k not in STEERKIT_FIELDS}, ours


def build_config(kind: str, values: dict[str, Any], output_dir: str) -> Any:
    """The trl config object (its own validation runs here, still before any model loads)."""
    trl_kwargs, _ = split_fields(values)
    try:
        return config_class(kind)(output_dir=output_dir, **trl_kwargs)
    except (ValueError, TypeError) as exc:
        raise InvalidOptionError(f"the resolved training config is not valid for trl: {exc}") from exc
