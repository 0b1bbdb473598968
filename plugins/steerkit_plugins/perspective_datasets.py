"""Perspective datasets: Value Kaleidoscope (``vk``) and OpinionQA (``opinionqa``).

Each item becomes a ``Scenario`` whose responses are the answer options, a ``Perspective``
(``Dataset.perspectives[i]``), the gold option index in ``meta['gold']`` and the task name in
``meta['task']`` (the ``cot`` strategy picks its prompt format from it).

Formats read:
- VK: the steerable test file released with Modular Pluralism (``{situation, vrd, label_text,
  label, id}``) and ValuePrism-style tables (CSV, JSON or JSONL) with ``situation``, the value
  text in ``vrd``/``text``/``value`` (``vrd`` may be the kind: Value/Right/Duty) and the label in
  ``label``/``label_text``/``valence`` (Supports/Opposes/Either, or A/B/C).
- OpinionQA: the steerable test file (``{question, options, attribute, gold_distribution}``);
  the authors' release (Santurkar et al. 2023: ``American_Trends_Panel_W*/`` folders with
  ``info.csv``, ``metadata.csv`` and per-respondent ``responses.csv``), from which each group's
  survey-weighted answer distribution is computed; and two flat forms of our own: per-question
  ``{question, options, distributions: {"POLIDEOLOGY_Liberal": [...], ...}}`` (one item per
  group) or ``{question, options, attribute, group, distribution}``.

Everything is read from local files: nothing is downloaded (Hugging Face ``datasets`` folders
saved with ``save_to_disk`` are not read; export them to JSONL or CSV first).

Default location: ``$STEERKIT_DATA`` or ``../shared/data`` relative to the working directory.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import steerkit
from steerkit import Dataset, DatasetError, Perspective, Scenario

DATA_ENV = "STEERKIT_DATA"

VK_OPTIONS = ("Support", "Oppose", "Either")
_VK_LABEL = {
    "a": 0, "support": 0, "supports": 0, "supported": 0,
    "b": 1, "oppose": 1, "opposes": 1, "opposed": 1,
    "c": 2, "either": 2,
}
VRD_KINDS = {"value": "Value", "right": "Right", "duty": "Duty"}

# Pew American Trends Panel attribute codes used by OpinionQA (Santurkar et al. 2023).
OPINIONQA_CATEGORIES = {
    "AGE": "Age",
    "CITIZEN": "Citizenship",
    "CREGION": "Region",
    "EDUCATION": "Education",
    "INCOME": "Income",
    "MARITAL": "Marital status",
    "POLIDEOLOGY": "Political ideology",
    "POLPARTY": "Political party",
    "RACE": "Race",
    "RELIG": "Religion",
    "RELIGATTEND": "Religious attendance",
    "SEX": "Sex",
}


# -- locating and reading files ---------------------------------------------------------
def default_data_dir() -> Path:
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path.cwd().parent / "shared" / "data"


def _resolve(path: str | os.PathLike[str] | None, folder: str, split: str) -> Path:
    base = Path(path) if path is not None else default_data_dir()
    if not base.exists():
        hint = f" (set ${DATA_ENV} or pass path=...)" if path is None else ""
        raise DatasetError(f"data not found: {base} does not exist{hint}")
    if base.is_file():
        return base
    # `steerkit eval` asks for the "eval" split; VK and OpinionQA call theirs "test"
    for name_split in (split, "test") if split == "eval" else (split,):
        for candidate in (base / folder, base):
            for name in (f"steerable_{name_split}.json", f"{name_split}.json", f"{name_split}.jsonl", f"{name_split}.csv"):
                if (candidate / name).is_file():
                    return candidate / name
    raise DatasetError(
        f"no {split!r} split found under {base}: looked for steerable_{split}.json, {split}.json, "
        f"{split}.jsonl or {split}.csv in {base / folder} and {base}"
    )


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON list (or ``{"data": [...]}``), JSONL or CSV file."""
    try:
        if path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                return [dict(r) for r in csv.DictReader(fh)]
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}; it must be UTF-8 JSON, JSON Lines or CSV: fix the file "
                           "or pass another one") from exc
    if isinstance(data, Mapping):
        for key in ("data", "items", "rows"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
        raise DatasetError(f"{path}: expected a list of records (objects), got {type(data).__name__}")
    return [dict(r) for r in data]


def _first(record: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        v = record.get(n)
        if v is not None and not (isinstance(v, str) and not v.strip()):
            return v
    return None


# -- VK ---------------------------------------------------------------------------------
def vk_label_index(label: Any, where: str) -> int:
    key = str(label).strip().lower().rstrip(".")
    if key not in _VK_LABEL:
        raise DatasetError(f"{where}: unknown VK label {label!r}; expected Supports, Opposes or Either (or A/B/C)")
    return _VK_LABEL[key]


def vk_from_records(records: Iterable[Mapping[str, Any]], name: str = "vk", source: str = "") -> Dataset:
    scenarios, perspectives = [], []
    for n, r in enumerate(records):
        where = f"{source or name} item {n} (id {r.get('id', n)})"
        situation = _first(r, "situation", "action", "question")
        if situation is None:
            raise DatasetError(f"{where}: no situation text")
        vrd = _first(r, "vrd")
        text = _first(r, "text", "value")
        kind = None
        if isinstance(vrd, str) and vrd.strip().lower() in VRD_KINDS and text is not None:
            kind, perspective_text = VRD_KINDS[vrd.strip().lower()], text  # ValuePrism: kind + text
        else:
            perspective_text = vrd if vrd is not None else text
        if not isinstance(perspective_text, str) or not perspective_text.strip():
            raise DatasetError(f"{where}: the value/right/duty (perspective) is missing or empty")
        label = _first(r, "label_text", "label", "valence")
        if label is None:
            raise DatasetError(f"{where}: no label (Supports/Opposes/Either)")
        gold = vk_label_index(label, where)
        sid = str(r.get("id", n))
        scenarios.append(Scenario(
            str(situation).strip(), VK_OPTIONS, id=sid,
            meta={"task": "vk", "gold": gold, "label_text": ("Supports", "Opposes", "Either")[gold],
                  "vrd_kind": kind},
        ))
        perspectives.append(Perspective(perspective_text.strip(), kind))
    if not scenarios:
        raise DatasetError(f"{source or name}: no items")
    return Dataset(name, scenarios, perspectives=perspectives,
                   info={"task": "vk", "source": source, "labels": ["Supports", "Opposes", "Either"], "skipped": {}})


def load_vk(path: str | os.PathLike[str] | None = None, split: str = "test", limit: int | None = None, **options: Any) -> Dataset:
    """Value Kaleidoscope steerable items: situation + value/right/duty -> Support/Oppose/Either."""
    file = _resolve(path, "valuekaleidoscope", split)
    records = read_records(file)
    if limit is not None:
        records = records[: int(limit)]
    return vk_from_records(records, "vk", str(file))


# -- OpinionQA --------------------------------------------------------------------------
def split_attribute(code: str, where: str) -> tuple[str, str]:
    """'POLIDEOLOGY_Liberal' -> ('Political ideology', 'Liberal'); unknown codes are errors."""
    if not isinstance(code, str) or "_" not in code:
        raise DatasetError(f"{where}: attribute {code!r} is not CATEGORY_group (e.g. POLIDEOLOGY_Liberal)")
    cat, group = code.split("_", 1)
    if cat not in OPINIONQA_CATEGORIES:
        raise DatasetError(
            f"{where}: unknown attribute category code {cat!r} in {code!r}; known codes: "
            f"{', '.join(sorted(OPINIONQA_CATEGORIES))}"
        )
    if not group.strip():
        raise DatasetError(f"{where}: attribute {code!r} names no group (the perspective is empty)")
    return OPINIONQA_CATEGORIES[cat], group.strip()


_OPTIONS_LINE = re.compile(r"\n\s*Options:.*$", re.S)


def question_text(raw: str) -> str:
    """The survey question without the 'Question:' prefix and the lettered options/Answer lines."""
    text = _OPTIONS_LINE.sub("", raw.strip())
    text = re.sub(r"\n\s*Answer:\s*$", "", text)
    return re.sub(r"^\s*Question:\s*", "", text).strip()


def _parse_list(value: Any) -> Any:
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            try:
                return json.loads(s)
            except json.JSONDecodeError:
                return value
        if "|" in s:
            return [p.strip() for p in s.split("|")]
    return value


def _expand_opinionqa(records: Iterable[Mapping[str, Any]]) -> Iterable[tuple[int, dict[str, Any]]]:
    """Flatten per-question group distributions into one record per (question, group)."""
    for n, r in enumerate(records):
        dists = r.get("distributions")
        if isinstance(dists, Mapping):
            for code, dist in dists.items():
                item = {k: v for k, v in r.items() if k != "distributions"}
                item["attribute"], item["gold_distribution"] = code, dist
                yield n, item
        else:
            item = dict(r)
            if "attribute" in item and "group" in item and "_" not in str(item["attribute"]):
                item["attribute"] = f"{item['attribute']}_{item['group']}"
            yield n, item


def opinionqa_from_records(records: Iterable[Mapping[str, Any]], name: str = "opinionqa", source: str = "") -> Dataset:
    scenarios, perspectives = [], []
    skipped: Counter[str] = Counter()
    normalised = 0
    for n, r in _expand_opinionqa(records):
        where = f"{source or name} item {n} (id {r.get('id', n)})"
        raw_q = _first(r, "question", "prompt")
        if raw_q is None:
            raise DatasetError(f"{where}: no question text")
        options = _parse_list(_first(r, "options", "references"))
        if not isinstance(options, list) or len(options) < 2:
            skipped["fewer than 2 options"] += 1
            continue
        options = [str(o).strip() for o in options]
        code = _first(r, "attribute", "subgroup")
        if code is None:
            raise DatasetError(f"{where}: no demographic attribute (the perspective is missing)")
        category, group = split_attribute(str(code), where)
        dist = _parse_list(_first(r, "gold_distribution", "distribution"))
        if dist is None:
            raise DatasetError(f"{where}: no gold distribution")
        try:
            dist = np.asarray([float(x) for x in dist], dtype=float)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: gold distribution {dist!r} is not a list of numbers") from None
        if len(dist) != len(options):
            raise DatasetError(f"{where}: gold distribution has {len(dist)} values for {len(options)} options")
        if np.any(dist < 0) or not np.isfinite(dist).all() or dist.sum() <= 0:
            raise DatasetError(f"{where}: gold distribution {dist.tolist()} is not a distribution")
        if abs(dist.sum() - 1.0) > 1e-6:
            normalised += 1
            dist = dist / dist.sum()
        try:
            scenario = Scenario(
                question_text(str(raw_q)), tuple(options), id=str(r.get("id", n)),
                meta={"task": "opinionqa", "gold": int(np.argmax(dist)), "gold_distribution": dist.tolist(),
                      "attribute": str(code)},
            )
        except steerkit.InvalidScenarioError:
            skipped["invalid options (empty or duplicate)"] += 1
            continue
        scenarios.append(scenario)
        perspectives.append(Perspective(group, category))
    if skipped:
        warnings.warn(
            f"{source or name}: skipped {sum(skipped.values())} item(s): "
            + ", ".join(f"{v} with {k}" for k, v in skipped.items()),
            RuntimeWarning, stacklevel=3,
        )
    if normalised:
        warnings.warn(
            f"{source or name}: {normalised} gold distribution(s) did not sum to 1 and were normalised",
            RuntimeWarning, stacklevel=3,
        )
    if not scenarios:
        raise DatasetError(f"{source or name}: no usable items")
    return Dataset(name, scenarios, perspectives=perspectives,
                   info={"task": "opinionqa", "source": source, "skipped": dict(skipped), "normalised": normalised})


# -- OpinionQA release layout (Santurkar et al. 2023) ------------------------------------
_WAVE = re.compile(r"American_Trends_Panel_W(\d+)$")


def release_waves(base: Path) -> list[Path]:
    """Survey wave folders of the OpinionQA release under ``base`` (a wave folder itself, a
    folder of ``American_Trends_Panel_W*`` folders, or one holding ``human_resp/``)."""
    if (base / "info.csv").is_file() and (base / "responses.csv").is_file():
        return [base]
    for root in (base, base / "human_resp", base / "opinionqa" / "human_resp"):
        waves = sorted(d for d in root.glob("American_Trends_Panel_W*") if d.is_dir()) if root.is_dir() else []
        if waves:
            return waves
    return []


def _literal_list(value: str, where: str) -> list[Any]:
    """A Python-literal list cell (the release writes lists with repr, not JSON)."""
    try:
        out = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise DatasetError(f"{where}: {value[:80]!r} is not a list") from None
    if not isinstance(out, (list, tuple)):
        raise DatasetError(f"{where}: {value[:80]!r} is not a list")
    return list(out)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"OpinionQA release: {path} is missing (each wave folder needs info.csv, "
                           "metadata.csv and responses.csv)")
    return read_records(path)


def _wave_items(folder: Path, skipped: Counter[str]) -> Iterable[tuple[Scenario, Perspective]]:
    """Per (question, attribute, group): the group's survey-weighted answer distribution over
    the substantive options (refusals dropped), gold = its argmax."""
    m = _WAVE.search(folder.name)
    info, meta = _read_csv(folder / "info.csv"), _read_csv(folder / "metadata.csv")
    responses = _read_csv(folder / "responses.csv")
    columns = set(responses[0]) if responses else set()
    weight = f"WEIGHT_W{m.group(1)}" if m else None
    if weight is None or weight not in columns:
        found = sorted(c for c in columns if c.startswith("WEIGHT_W"))
        if m is not None or len(found) != 1:
            raise DatasetError(f"{folder / 'responses.csv'}: no survey weight column "
                               f"{weight or 'WEIGHT_W<wave>'} (found {found or 'none'})")
        weight = found[0]
    weights = np.array([float(r[weight]) if r.get(weight) else np.nan for r in responses])
    has_weight = np.isfinite(weights)
    groups: dict[str, tuple[list[str], np.ndarray]] = {}  # attribute -> (groups, group index per respondent)
    for row in meta:
        key = (row.get("key") or "").strip()
        if key in OPINIONQA_CATEGORIES and key in columns:
            names = [str(g) for g in _literal_list(row.get("options", ""), f"{folder}/metadata.csv {key}")]
            pos = {g: j for j, g in enumerate(names)}
            groups[key] = (names, np.array([pos.get(r.get(key, ""), -1) for r in responses], dtype=int))
    for row in info:
        qkey = (row.get("key") or "").strip()
        where = f"{folder}/info.csv {qkey}"
        if qkey not in columns:
            skipped["question not in responses.csv"] += 1
            continue
        refs = [str(r) for r in _literal_list(row.get("references", ""), where)]
        if row.get("option_ordinal"):  # the substantive options come first; the rest are refusals
            options = refs[: len(_literal_list(row["option_ordinal"], where))]
        else:
            options = [r for r in refs if r.strip().lower() != "refused"]
        if len(options) < 2:
            skipped["fewer than 2 options"] += 1
            continue
        index = {o: j for j, o in enumerate(options)}
        # answer index per respondent: -1 a refusal or other non-substantive answer, -2 not asked
        answers = np.array([index.get(r.get(qkey, ""), -1) if r.get(qkey) else -2 for r in responses], dtype=int)
        for attr, (names, member) in groups.items():
            asked = has_weight & (member >= 0) & (answers != -2)
            answered = np.bincount(member[asked], weights=weights[asked], minlength=len(names))
            ok = asked & (answers >= 0)
            totals = np.zeros((len(names), len(options)))
            np.add.at(totals, (member[ok], answers[ok]), weights[ok])
            for j, g in enumerate(names):
                dist = totals[j]
                if dist.sum() <= 0:
                    skipped["group with no substantive answer"] += 1
                    continue
                code = f"{attr}_{g}"
                try:
                    scenario = Scenario(
                        row["question"].strip(), tuple(options), id=f"{qkey}|{code}",
                        meta={"task": "opinionqa", "gold": int(np.argmax(dist)),
                              "gold_distribution": (dist / dist.sum()).tolist(), "attribute": code,
                              "question_key": qkey, "refusal_share": float(1 - dist.sum() / answered[j])},
                    )
                except steerkit.InvalidScenarioError:
                    skipped["invalid options (empty or duplicate)"] += 1
                    continue
                yield scenario, Perspective(g, OPINIONQA_CATEGORIES[attr])


def opinionqa_from_release(path: str | os.PathLike[str], name: str = "opinionqa") -> Dataset:
    """OpinionQA from the authors' release layout: per wave folder ``info.csv`` (key, question,
    references, option_ordinal), ``metadata.csv`` (attribute key, its groups) and
    ``responses.csv`` (one row per respondent: answers per question key, attributes, and the
    survey weight ``WEIGHT_W<wave>``). The release has no train/test split: every
    (question, attribute, group) with answers becomes an item."""
    base = Path(path)
    waves = release_waves(base)
    if not waves:
        raise DatasetError(f"{base}: no OpinionQA release wave folder (American_Trends_Panel_W*/ with "
                           "info.csv, metadata.csv, responses.csv)")
    scenarios, perspectives = [], []
    skipped: Counter[str] = Counter()
    for wave in waves:
        for scenario, perspective in _wave_items(wave, skipped):
            scenarios.append(scenario)
            perspectives.append(perspective)
    if not scenarios:
        raise DatasetError(f"{base}: no usable items in the OpinionQA release ({dict(skipped)})")
    return Dataset(name, scenarios, perspectives=perspectives,
                   info={"task": "opinionqa", "source": str(base), "format": "opinionqa-release",
                         "waves": [w.name for w in waves], "skipped": dict(skipped), "normalised": 0})


def load_opinionqa(path: str | os.PathLike[str] | None = None, split: str = "test", limit: int | None = None, **options: Any) -> Dataset:
    """OpinionQA steerable items: survey question + demographic group -> the group's answer.

    ``path`` may also be the authors' release (``human_resp/`` or its wave folders), read with
    ``opinionqa_from_release``; that layout has no splits, so ``split`` does not apply to it."""
    base = Path(path) if path is not None else default_data_dir()
    if base.is_dir() and release_waves(base):
        ds = opinionqa_from_release(base)
    else:
        file = _resolve(path, "opinionqa", split)
        ds = opinionqa_from_records(read_records(file), "opinionqa", str(file))
    return ds.head(int(limit)) if limit is not None else ds


@steerkit.plugin.hookimpl
def register_datasets(register):
    register("vk", load_vk)
    register("opinionqa", load_opinionqa)
