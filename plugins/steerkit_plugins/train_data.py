"""Training data: items from any perspective dataset plugin (VK, OpinionQA, third-party
multiple-choice perspective sets), a seeded train/validation split grouped by situation (VK)
or question (OpinionQA) so no group is on both sides, human rationales for CoT-SFT, the rows
TRL trains on, and a hash of exactly what was trained on (recorded in the manifest)."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import steerkit
from steerkit import Dataset, DatasetError, Perspective, Scenario

from . import train_prompts
from .perspective_datasets import default_data_dir, read_records

VK_RATIONALES = Path("valuekaleidoscope") / "overton_test.json"


@dataclass(frozen=True)
class Example:
    scenario: Scenario
    perspective: Perspective
    gold: int
    group: str
    rationale: str | None = None

    @property
    def letter(self) -> str:
        return train_prompts.gold_letter(self.scenario)


@dataclass
class Split:
    train: list[Example]
    val: list[Example]
    info: dict[str, Any] = field(default_factory=dict)  # seed, val_fraction, group_by, n_train, n_val


def load_dataset(name: str, data: str | None = None, split: str | None = None) -> Dataset:
    """A registered dataset (``split`` None: the loader's own default file)."""
    loader = steerkit.plugin.lookup("dataset", name)
    kwargs: dict[str, Any] = {}
    if split is not None:
        kwargs["split"] = split
    if data:
        kwargs["path"] = data
    return loader(**kwargs)


def group_key(task: str, scenario: Scenario) -> str:
    """What must not straddle the split: the situation (VK), the survey question (OpinionQA)."""
    if task == "opinionqa":
        return str(scenario.meta.get("question_key") or scenario.question).strip().lower()
    return scenario.question.strip().lower()


def group_by_name(task: str) -> str:
    return {"vk": "situation", "opinionqa": "question"}.get(task, "question")


def examples(dataset: Dataset) -> list[Example]:
    """One example per item; a dataset without perspectives or gold answers cannot be trained on."""
    if dataset.perspectives is None:
        raise DatasetError(
            f"dataset {dataset.name!r} has no perspectives: the trainer needs a perspective task "
            "(vk, opinionqa or a multiple-choice perspective dataset)"
        )
    task = train_prompts.task_of(dataset)
    out = []
    for s, p in zip(dataset.scenarios, dataset.perspectives):
        gold = s.meta.get("gold")
        if gold is None:
            raise DatasetError(f"dataset {dataset.name!r} item {s.label!r} has no gold answer (meta['gold'])")
        out.append(Example(s, p, int(gold), group_key(task, s)))
    return out


def split_examples(items: list[Example], task: str, val_fraction: float, seed: int) -> Split:
    """Seeded split by group (scikit-learn's GroupShuffleSplit): a group is wholly on one side."""
    from sklearn.model_selection import GroupShuffleSplit

    if not 0 < val_fraction < 1:
        raise steerkit.InvalidOptionError(f"val_fraction must be in (0, 1), got {val_fraction}")
    groups = [e.group for e in items]
    if len(set(groups)) < 2:
        raise DatasetError(f"{len(items)} item(s) in {len(set(groups))} group(s): a grouped split needs at least 2 groups")
    splitter = GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    train_idx, val_idx = next(splitter.split(items, groups=groups))
    train, val = [items[i] for i in sorted(train_idx)], [items[i] for i in sorted(val_idx)]
    info = {"seed": seed, "val_fraction": val_fraction, "group_by": group_by_name(task),
            "n_train": len(train), "n_val": len(val), "n_groups": len(set(groups))}
    return Split(train, val, info)


# -- human rationales -------------------------------------------------------------------
def _pair(situation: Any, vrd: Any) -> tuple[str, str]:
    return str(situation).strip().lower(), str(vrd).strip().lower()


def read_rationales(path: str | os.PathLike[str]) -> dict[Any, str]:
    """Rationales keyed by item id and by (situation, value/right/duty).

    Reads the VK Overton file (``{situation, vrd: [...], explanation: [...]}``, ValuePrism's
    explanations per value) or a user JSON/JSONL/CSV file with ``rationale`` (or
    ``explanation``) and ``id`` or ``situation`` + ``vrd``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"rationales file {path} does not exist")
    out: dict[Any, str] = {}
    for n, r in enumerate(read_records(path)):
        values, texts = r.get("vrd"), r.get("explanation") if "rationale" not in r else r.get("rationale")
        if isinstance(values, list) and isinstance(texts, list):  # Overton: one explanation per value
            for v, t in zip(values, texts):
                if isinstance(t, str) and t.strip():
                    out[_pair(r.get("situation"), v)] = t.strip()
            continue
        if not isinstance(texts, str) or not texts.strip():
            raise DatasetError(f"{path} row {n}: no rationale (a 'rationale' or 'explanation' column)")
        if r.get("id") not in (None, ""):
            out[("id", str(r["id"]))] = texts.strip()
        if r.get("situation") and r.get("vrd"):
            out[_pair(r["situation"], r["vrd"])] = texts.strip()
        if r.get("id") in (None, "") and not (r.get("situation") and r.get("vrd")):
            raise DatasetError(f"{path} row {n}: give an 'id' or 'situation' and 'vrd' to match the rationale to an item")
    if not out:
        raise DatasetError(f"{path}: no rationales found")
    return out


def default_rationales(task: str, data: str | None) -> Path | None:
    """The VK explanations file beside the data (ValuePrism's, in ``overton_test.json``)."""
    if task != "vk":
        return None
    base = Path(data) if data else default_data_dir()
    for candidate in (base / VK_RATIONALES, base.parent / VK_RATIONALES.name, base / VK_RATIONALES.name):
        if candidate.is_file():
            return candidate
    return None


def attach_rationales(items: list[Example], rationales: dict[Any, str]) -> tuple[list[Example], int]:
    """(items that have a rationale, with it attached; how many were dropped for having none)."""
    kept = []
    for e in items:
        text = rationales.get(("id", str(e.scenario.id))) or rationales.get(_pair(e.scenario.question, e.perspective.text))
        if text:
            kept.append(Example(e.scenario, e.perspective, e.gold, e.group, text))
    return kept, len(items) - len(kept)


# -- rows for TRL ------------------------------------------------------------------------
def sft_rows(items: list[Example], style: str, task: str) -> list[dict[str, Any]]:
    """Conversational prompt-completion rows: TRL puts the loss on the completion only."""
    return [{
        "prompt": train_prompts.train_prompt(style, e.scenario, e.perspective, task),
        "completion": [{"role": "assistant", "content": train_prompts.completion(style, e.letter, e.rationale)}],
    } for e in items]


def grpo_rows(items: list[Example], style: str, task: str) -> list[dict[str, Any]]:
    """Prompt rows with the gold letter and option count (GRPO's reward reads both)."""
    return [{"prompt": train_prompts.train_prompt(style, e.scenario, e.perspective, task), "gold": e.letter,
             "n_options": len(e.scenario.responses)} for e in items]


def drop_long_prompts(rows: list[dict[str, Any]], tokenizer: Any,
                      max_prompt_length: int | None) -> tuple[list[dict[str, Any]], int]:
    """The rows whose prompt fits ``max_prompt_length`` tokens, and how many did not (dropped:
    GRPOConfig has no prompt limit in this trl, and a cut prompt would lose its options)."""
    if not max_prompt_length:
        return rows, 0
    kept = [row for row in rows if len(tokenizer.apply_chat_template(
        row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]) <= max_prompt_length]
    return kept, len(rows) - len(kept)


def data_hash(rows: list[dict[str, Any]], val: list[Example]) -> str:
    """Digest of the rows trained on and the validation items' ids: same hash, same data."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
    h.update(json.dumps([[e.scenario.id, e.scenario.question, e.perspective.text] for e in val]).encode())
    return h.hexdigest()[:16]


def label_counts(items: list[Example]) -> dict[str, int]:
    return dict(sorted(Counter(e.letter for e in items).items()))


def folder_hash(folder: Path) -> str:
    """Digest of a folder's files (names and bytes): a LoRA init is identified by its content."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and ".resume" not in p.parts:
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def validation_dataset(manifest: dict[str, Any]) -> Dataset:
    """The validation items of a run, rebuilt from its manifest (same file, limit, seed and
    grouping), as a ``Dataset`` to evaluate a checkpoint on exactly what it never saw."""
    info = manifest["dataset"]
    ds = load_dataset(info["name"], info.get("data"), info.get("file_split"))
    if info.get("limit") is not None:
        ds = ds.head(int(info["limit"]))
    split = info["split"]
    task = manifest.get("task") or train_prompts.task_of(ds)
    val = split_examples(examples(ds), task, float(split["val_fraction"]), int(split["seed"])).val
    val = val[: split.get("n_val_used", len(val))]
    return Dataset(f"{ds.name}-val", [e.scenario for e in val], perspectives=[e.perspective for e in val],
                   info={**ds.info, "split": "val", "task": task})
