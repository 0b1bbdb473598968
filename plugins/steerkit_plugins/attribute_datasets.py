"""Attribute datasets: HelpSteer2 (``helpsteer2``) and the Moral Integrity Corpus (``mic``).

Every scenario carries per-response ``labels`` (attribute -> value in [0, 1]); the dataset
carries named attribute targets (``target_high``, ``target_low`` and sampled ones) and, in
``info["pool"]``, the training scenarios (the few-shot example pool).

Formats read
------------
``helpsteer2``
  (a) The steerable format of Adams et al. (AIES 2025), as in ``../shared/data/helpsteer2/``:
      a folder with ``train.json``, ``eval.json`` and ``targets.json`` (or one such file), each
      a list of ``{prompt, responses, labels[, reasonings]}``. ``reasonings`` (per response a
      dict attribute -> one sentence) goes to ``scenario.meta["reasonings"]``.
  (b) The original HelpSteer2 release (nvidia/HelpSteer2): JSONL / JSON / ``.jsonl.gz`` rows
      ``{prompt, response, helpfulness, correctness, coherence, complexity, verbosity}`` with
      Likert labels. The release uses 0-4; 1-5 is accepted too. The scale is detected ONCE
      over every split file of the dataset (train and validation together, so both splits
      always share one scale): a 0 anywhere means 0-4, a 5 anywhere means 1-5; if neither or
      both occur it is a DatasetError asking for ``scale=(lo, hi)``, which also overrides
      detection. Values become ``(x - lo) / (hi - lo)``. Rows
      are grouped by prompt (in file order); a prompt with at least two distinct responses is a
      scenario. Split files: ``train.jsonl[.gz]`` and ``validation.jsonl[.gz]`` (``split="eval"``
      reads the validation file).

``mic``
  The upstream ``MIC.csv`` (Ziems et al., ACL 2022; written by the authors'
  ``hit/Task_MoralEvaluation/prepare_MIC.py``). One row is one annotation: one worker's rule
  of thumb (RoT) for one chatbot answer. Columns read:
    - ``Q``: the prompt (question); ``A``: the chatbot's answer;
    - ``moral``: the RoT's moral foundations, ``|``-separated names from care, fairness,
      liberty, loyalty, authority, sanctity (``care-harm`` style names are accepted too);
      if ``moral`` is absent, ``moral-vector`` (a list of six 0/1 in that order) or
      ``rot-moral-foundations`` is used;
    - ``A_agrees``: whether the answer agrees with the RoT: 2 agrees, 1 neutral, 0 disagrees
      (the words agrees / neutral / disagrees are accepted too);
    - ``WorkerId`` (or ``worker_id``): the annotator; ``split``: train / dev / test;
    - ``rot``: kept in ``meta["rots"]`` (per response, the annotators' RoTs).
  Label construction (Adams et al.): for each annotation and each foundation f, the value is
  +1 if the RoT is grounded in f and the answer agrees with it, -1 if it is grounded in f and
  the answer disagrees, 0 otherwise (neutral, or f not among the RoT's foundations). The
  annotations of an answer are summed (range [-3, 3]) and normalised to [0, 1] as
  ``(sum + 3) / 6`` (7 levels). ``label_rule`` says which annotations and how exactly:
    - ``reference`` (default): as the AIES'25 reference repository's ``data/load_mic.py``: the
      first 3 annotation rows of an answer in file order (an answer with fewer keeps what it
      has), labels rounded to 2 decimals (levels 0, 0.17, 0.33, 0.5, 0.67, 0.83, 1); a question
      with a row lacking ``A_agrees`` is dropped whole (``info["dropped_missing_agreement"]``);
    - ``sixths``: exact sixths, and an answer needs three annotations from distinct workers
      (the first three such in file order; answers with fewer are dropped).
  Answers to the same question form a scenario when there are at least two distinct answers.
  Splits: upstream MIC splits by QA pair, so one question can have answers in train and in
  test. Answers are therefore grouped by question over the WHOLE file first, and each
  question then goes to one split: the split of most of its kept answers (a tie goes to
  test, then dev, then train). No evaluation question can appear in the example pool, and an
  evaluation scenario holds all the question's answers. ``info["mixed_split_questions"]``
  counts the questions whose answers spanned splits.
  ``split="eval"`` reads the ``test`` scenarios, and ``info["pool"]`` holds the ``train`` ones.
  Targets: ``target_high`` (all 1), ``target_low`` (all 0) and, with a fixed seed, 10 sampled
  targets for each number of attributes (1..6) over the 7 label levels.

Default location: ``$STEERKIT_DATA`` or ``../shared/data`` relative to the working directory
(then relative to the repository), in a ``helpsteer2/`` or ``mic/`` folder.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import steerkit
from steerkit import AttributeTarget, Dataset, DatasetError, Scenario

from .options import choice_option

DATA_ENV = "STEERKIT_DATA"
HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
MIC_ATTRIBUTES = ("care", "fairness", "liberty", "loyalty", "authority", "sanctity")
MIC_ANNOTATORS = 3
MIC_LABEL_RULES = {
    "reference": "the AIES'25 reference's load_mic.py: first 3 annotation rows of an answer, (sum + 3) / 6 "
                 "rounded to 2 decimals",
    "sixths": "3 annotations from distinct workers per answer, exact sixths (sum + 3) / 6",
}
SPLIT_ALIASES = {"eval": ("eval", "test", "validation", "val", "dev"), "test": ("test", "eval"),
                 "train": ("train",), "dev": ("dev", "validation", "val"), "validation": ("validation", "dev", "val")}


# -- locating files ---------------------------------------------------------------------
def default_data_dirs() -> list[Path]:
    """Where data is looked for when no path is given, in order."""
    env = os.environ.get(DATA_ENV)
    if env:
        return [Path(env)]
    repo = Path(__file__).resolve().parents[2]
    out = [Path.cwd().parent / "shared" / "data", repo.parent / "shared" / "data"]
    return list(dict.fromkeys(out))


def _base(path: str | os.PathLike[str] | None, folder: str) -> Path:
    if path is not None:
        base = Path(path).expanduser()
        if not base.exists():
            raise DatasetError(f"{folder} data not found: {base} does not exist; pass an existing file or folder")
        return base
    tried = []
    for root in default_data_dirs():
        for candidate in (root / folder, root):
            tried.append(candidate)
            if candidate.is_dir() and any(candidate.iterdir()):
                if candidate == root and not _looks_like(candidate, folder):
                    continue
                return candidate
    what = _HINTS.get(folder, "")
    raise DatasetError(
        f"{folder} data not found (looked in {', '.join(str(t) for t in tried)}); set "
        f"${DATA_ENV} to the folder holding {folder}/{what}, or pass path=... (--data PATH on the command line)"
    )


_HINTS = {
    "mic": " (with MIC.csv, from the MIC authors: github.com/SALT-NLP/mic)",
    "helpsteer2": " (train/eval/targets.json, or the release's train/validation.jsonl[.gz])",
}


def _looks_like(folder: Path, name: str) -> bool:
    if name == "mic":
        return (folder / "MIC.csv").exists()
    return any((folder / f).exists() for f in ("train.json", "eval.json", "train.jsonl", "train.jsonl.gz"))


def _split_file(base: Path, split: str, names: Sequence[str], what: str) -> Path:
    if base.is_file():
        return base
    for alias in SPLIT_ALIASES.get(split, (split,)):
        for pattern in names:
            candidate = base / pattern.format(split=alias)
            if candidate.is_file():
                return candidate
    raise DatasetError(
        f"no {split!r} split for {what} in {base}: expected one of "
        f"{sorted({p.format(split=a) for a in SPLIT_ALIASES.get(split, (split,)) for p in names})}"
    )


def _read_rows(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text ({exc}): save it as UTF-8 JSON or JSON Lines") from None
    except (OSError, EOFError) as exc:  # a damaged .gz ends early (EOFError) or is not gzip (OSError)
        raise DatasetError(f"cannot read {path}: {exc}; check the file (a .gz must be complete gzip)") from None
    stripped = text.lstrip()
    if not stripped:
        raise DatasetError(f"{path} is empty: expected a JSON list of scenarios or JSON Lines, one per row")
    line = 0
    try:
        if stripped.startswith("["):
            rows = json.loads(text)
        elif stripped.startswith("{") and "\n{" not in stripped.rstrip():
            data = json.loads(text)
            rows = data.get("data", data.get("rows", [data])) if isinstance(data, dict) else data
        else:
            rows = []
            for line, raw in enumerate(text.splitlines(), 1):
                if raw.strip():
                    rows.append(json.loads(raw))
    except json.JSONDecodeError as exc:
        where = f" at line {line}" if line else ""
        raise DatasetError(f"{path} is not valid JSON or JSON Lines{where} ({exc}): fix that line or pass another file") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DatasetError(f"{path}: expected a list of objects (one per row or scenario)")
    return rows


# -- targets ----------------------------------------------------------------------------
def read_targets(path: str | os.PathLike[str]) -> dict[str, AttributeTarget]:
    """Targets from JSON: ``{name: {attr: value}}``, ``{name: {"values": .., "weights": ..}}``
    or a list of either (named ``target{i}``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read targets from {path}: {exc}") from None
    if isinstance(data, list):
        data = {f"target{i:03d}": t for i, t in enumerate(data)}
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: targets must be a JSON object name -> target, or a list of targets")
    out = {}
    for name, t in data.items():
        target = steerkit.coerce_target(t)
        if not isinstance(target, AttributeTarget):
            raise DatasetError(f"{path}: target {name!r} is not an attribute target")
        out[str(name)] = target
    return out


def sampled_targets(attributes: Sequence[str], levels: Sequence[float], per_size: int = 10,
                    seed: int = 0) -> dict[str, AttributeTarget]:
    """``target_high``, ``target_low`` and ``per_size`` random targets for each number of
    attributes (names like HelpSteer2's ``3attributes_target07``), reproducible by seed."""
    rng = np.random.default_rng(seed)
    out = {"target_high": AttributeTarget({a: 1.0 for a in attributes}),
           "target_low": AttributeTarget({a: 0.0 for a in attributes})}
    for n in range(1, len(attributes) + 1):
        for j in range(per_size):
            chosen = rng.choice(len(attributes), size=n, replace=False)
            values = {attributes[i]: float(levels[rng.integers(len(levels))]) for i in sorted(chosen)}
            out[f"{n}attributes_target{j:02d}"] = AttributeTarget(values)
    return out


# -- HelpSteer2 -------------------------------------------------------------------------
def _check_labels(labels: Any, source: Path, i: int) -> None:
    """Labels are a list of objects attribute -> number (or null), one per response."""
    if labels is None:
        return
    if not isinstance(labels, list) or not all(isinstance(lab, dict) for lab in labels):
        raise DatasetError(f"{source}: item {i} has 'labels' of type {type(labels).__name__}; expected a list "
                           "with one object per response, e.g. [{\"helpfulness\": 3}, {\"helpfulness\": 1}]")
    for r, lab in enumerate(labels):
        for name, value in lab.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise DatasetError(f"{source}: item {i}, response {r}: label {name!r} is {value!r}; labels must be "
                                   "numbers (or null for a missing one)")


def _steerable_scenarios(rows: list[dict[str, Any]], source: Path, split: str) -> list[Scenario]:
    out = []
    for i, row in enumerate(rows):
        question = row.get("prompt", row.get("question"))
        meta: dict[str, Any] = {"source": str(source)}
        if row.get("reasonings") is not None:
            meta["reasonings"] = row["reasonings"]
        if "responses" not in row:
            raise DatasetError(f"{source}: item {i} has no 'responses': each item needs 'prompt' and a list of "
                               "at least two 'responses' (and 'labels', one object per response)")
        _check_labels(row.get("labels"), source, i)
        try:  # the responses as given: a string is refused by Scenario, not split into characters
            out.append(Scenario(question, row["responses"], id=str(row.get("id", f"{split}-{i}")),
                                labels=row.get("labels"), meta=meta))
        except steerkit.InvalidScenarioError as exc:
            raise DatasetError(f"{source}: item {i} is not a valid scenario ({exc})") from None
    return out


def detect_scale(values: Iterable[float], where: str = "the HelpSteer2 files") -> tuple[float, float]:
    """0-4 (the HelpSteer2 release) or 1-5 Likert, from the values present in ALL files of a
    dataset; neither 0 nor 5 (or both) cannot be told apart: DatasetError asking for scale=."""
    seen = {float(v) for v in values}
    if not seen:
        return (0.0, 4.0)
    lo, hi = min(seen), max(seen)
    if lo < 0 or hi > 5:
        raise DatasetError(f"HelpSteer2 labels in {where} range over [{lo:g}, {hi:g}]; expected a 0-4 or "
                           "1-5 Likert scale: pass scale=(lo, hi)")
    if lo == 0 and hi == 5:
        raise DatasetError(f"HelpSteer2 labels in {where} contain both 0 and 5: the scale is ambiguous; "
                           "pass scale=(lo, hi)")
    if hi == 5:
        return (1.0, 5.0)
    if lo == 0:
        return (0.0, 4.0)
    raise DatasetError(
        f"HelpSteer2 labels in {where} use neither 0 nor 5 (they range over {lo:g}-{hi:g}), so the scale "
        "cannot be told: pass scale=(0, 4) for the release's 0-4 labels or scale=(1, 5) for 1-5"
    )


def release_scenarios(rows: list[dict[str, Any]], source: Path, split: str,
                      scale: tuple[float, float] | None = None,
                      attributes: Sequence[str] = HELPSTEER2_ATTRIBUTES) -> list[Scenario]:
    """Group release rows (one response each) by prompt into labelled scenarios."""
    missing = [a for a in ("prompt", "response", *attributes) if rows and a not in rows[0]]
    if missing:
        raise DatasetError(f"{source}: HelpSteer2 release rows lack {missing}; expected "
                           f"{{prompt, response, {', '.join(attributes)}}}")
    if scale is None:
        scale = detect_scale(float(r[a]) for r in rows for a in attributes if r.get(a) is not None)
    lo, hi = float(scale[0]), float(scale[1])
    if hi <= lo:
        raise DatasetError(f"scale={scale!r}: the high end must exceed the low end")
    groups: OrderedDict[str, OrderedDict[str, dict[str, float]]] = OrderedDict()
    for i, r in enumerate(rows):
        prompt, response = str(r["prompt"]), str(r["response"])
        if not prompt.strip() or not response.strip():
            continue
        labels = {}
        for a in attributes:
            v = float(r[a])
            if not lo <= v <= hi:
                raise DatasetError(f"{source}: row {i} has {a}={v:g}, outside the scale {lo:g}-{hi:g}")
            labels[a] = (v - lo) / (hi - lo)
        groups.setdefault(prompt, OrderedDict()).setdefault(response.strip(), labels)
    out = []
    for j, (prompt, responses) in enumerate(groups.items()):
        if len(responses) < 2:
            continue
        out.append(Scenario(prompt, tuple(responses), id=f"{split}-{j}", labels=tuple(responses.values()),
                            meta={"source": str(source)}))
    return out


def _is_release(rows: list[dict[str, Any]]) -> bool:
    return bool(rows) and "response" in rows[0] and "responses" not in rows[0]


def _levels(scenarios: Sequence[Scenario], attributes: Sequence[str]) -> list[float]:
    vals = {round(float(l[a]), 9) for s in scenarios for l in (s.labels or ()) for a in attributes if l.get(a) is not None}
    return sorted(vals)


def load_helpsteer2(path: str | os.PathLike[str] | None = None, split: str = "eval", *,
                    scale: tuple[float, float] | None = None, pool: bool = True,
                    targets: str | os.PathLike[str] | None = None, **options: Any) -> Dataset:
    """HelpSteer2 as a steerable benchmark (see the module doc for the formats)."""
    if options:
        raise TypeError(f"helpsteer2 got unknown options {sorted(options)}; it takes path, split, scale, pool, targets")
    base = _base(path, "helpsteer2")
    names = ("{split}.json", "{split}.jsonl", "{split}.jsonl.gz", "{split}.json.gz")
    source = _split_file(base, split, names, "helpsteer2")
    rows = _read_rows(source)
    release = _is_release(rows)
    files = {source: rows}
    if base.is_dir():  # every split file of the dataset: the pool and the scale come from them
        for other in ("train", "eval"):
            try:
                f = _split_file(base, other, names, "helpsteer2")
            except DatasetError:
                continue
            if f not in files:
                files[f] = _read_rows(f)
    if release and scale is None:
        present = [r for f, rs in files.items() if _is_release(rs) for r in rs]
        scale = detect_scale((float(r[a]) for r in present for a in HELPSTEER2_ATTRIBUTES if r.get(a) is not None),
                             ", ".join(str(f) for f in files))
    read = (lambda rs, src, sp: release_scenarios(rs, src, sp, scale)) if release else _steerable_scenarios
    scenarios = read(rows, source, split)
    if not scenarios:
        raise DatasetError(f"{source}: no scenario with two or more responses; each item needs 'prompt' "
                           "and a list of at least two 'responses'")
    first = dict(scenarios[0].labels[0]) if scenarios[0].labels else {}
    attributes = [a for a in HELPSTEER2_ATTRIBUTES if a in first] + [a for a in first if a not in HELPSTEER2_ATTRIBUTES]
    attributes = attributes or list(HELPSTEER2_ATTRIBUTES)
    info: dict[str, Any] = {"source": str(source), "format": "release" if release else "steerable", "split": split}
    if pool and base.is_dir() and split != "train":
        try:
            train_file = _split_file(base, "train", names, "helpsteer2")
        except DatasetError:
            train_file = None
        if train_file is not None and train_file != source:
            info["pool"] = read(files[train_file], train_file, "train")
    target_file = Path(targets) if targets is not None else (base / "targets.json" if base.is_dir() else base.with_name("targets.json"))
    levels = _levels(scenarios, attributes) or [i / 4 for i in range(5)]
    if target_file.is_file():
        dataset_targets = read_targets(target_file)
    elif targets is not None:
        raise DatasetError(f"targets file {target_file} does not exist")
    else:
        dataset_targets = sampled_targets(attributes, [i / 4 for i in range(5)])
    info["levels"] = levels
    if release:
        info["scale"] = [float(scale[0]), float(scale[1])]  # type: ignore[index]
    return Dataset("helpsteer2", scenarios, attributes, dataset_targets, None, info)


# -- MIC --------------------------------------------------------------------------------
_MIC_ALIASES = {
    "care": "care", "care-harm": "care", "harm": "care",
    "fairness": "fairness", "fairness-cheating": "fairness", "cheating": "fairness",
    "liberty": "liberty", "liberty-oppression": "liberty", "oppression": "liberty",
    "loyalty": "loyalty", "loyalty-betrayal": "loyalty", "betrayal": "loyalty",
    "authority": "authority", "authority-subversion": "authority", "subversion": "authority",
    "sanctity": "sanctity", "sanctity-degradation": "sanctity", "degradation": "sanctity",
}
_AGREE = {"2": 1, "agrees": 1, "agree": 1, "1": 0, "neutral": 0, "0": -1, "disagrees": -1, "disagree": -1}


def _foundations(row: Mapping[str, str]) -> set[str]:
    text = row.get("moral")
    if text is None or text == "":
        vector = row.get("moral-vector")
        if vector:
            try:
                flags = json.loads(vector)
            except json.JSONDecodeError:
                flags = []
            return {a for a, f in zip(MIC_ATTRIBUTES, flags) if float(f) > 0}
        text = row.get("rot-moral-foundations") or ""
    out = set()
    for part in str(text).replace(",", "|").split("|"):
        name = _MIC_ALIASES.get(part.strip().lower())
        if name:
            out.add(name)
    return out


def mic_annotation_vector(row: Mapping[str, str]) -> dict[str, int]:
    """-1/0/+1 per foundation for one annotation (see the module doc)."""
    raw = str(row.get("A_agrees", "")).strip().lower()
    if raw.endswith(".0"):
        raw = raw[:-2]
    if raw not in _AGREE:
        raise DatasetError(f"MIC row has A_agrees={row.get('A_agrees')!r}; expected 0, 1 or 2")
    sign = _AGREE[raw]
    found = _foundations(row)
    return {a: (sign if a in found else 0) for a in MIC_ATTRIBUTES}


def _missing_agreement(row: Mapping[str, str]) -> bool:
    return str(row.get("A_agrees") or "").strip().lower() in ("", "nan")


def mic_label(total: int, rule: str) -> float:
    """(sum + 3) / 6 for a sum of annotations in [-3, 3]; the reference rounds it to 2 decimals
    (with numpy, as its code does)."""
    value = (total + MIC_ANNOTATORS) / (2 * MIC_ANNOTATORS)
    return float(np.round(value, 2)) if rule == "reference" else value


def mic_levels(rule: str) -> list[float]:
    return [mic_label(k, rule) for k in range(-MIC_ANNOTATORS, MIC_ANNOTATORS + 1)]


def _check_label_rule(rule: str) -> str:
    return choice_option("mic", "label_rule", rule, MIC_LABEL_RULES)


def read_mic(path: Path, stats: dict[str, int] | None = None, label_rule: str = "reference") -> dict[str, list[Scenario]]:
    """All MIC scenarios by split (train / dev / test / all), one split per question (see the
    module doc); ``stats`` gets ``mixed_split_questions`` and ``dropped_missing_agreement``."""
    reference = _check_label_rule(label_rule) == "reference"
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    with fh:
        reader = csv.DictReader(fh)
        needed = {"Q", "A", "A_agrees"}
        have = set(reader.fieldnames or ())
        if not needed <= have or not ({"moral", "moral-vector", "rot-moral-foundations"} & have):
            raise DatasetError(
                f"{path} does not look like MIC.csv: it needs columns Q, A, A_agrees and moral "
                f"(or moral-vector / rot-moral-foundations); found {sorted(have)}"
            )
        # question -> answer -> list of (worker, vector, rot), over the whole file (all splits)
        groups: OrderedDict[str, OrderedDict[str, list[tuple[str, dict[str, int], str]]]] = OrderedDict()
        answer_split: dict[tuple[str, str], str] = {}  # (question, answer) -> split of its first row
        missing: set[str] = set()  # questions with a row lacking A_agrees (the reference drops them)
        for n, row in enumerate(reader):
            q, a = (row.get("Q") or "").strip(), (row.get("A") or "").strip()
            if not q or not a:
                continue
            split = (row.get("split") or "all").strip().lower() or "all"
            answer_split.setdefault((q, a), split)
            worker = row.get("WorkerId") or row.get("worker_id") or row.get("worker-id") or f"row{n}"
            anns = groups.setdefault(q, OrderedDict()).setdefault(a, [])
            if reference and _missing_agreement(row):
                missing.add(q)
                continue
            if len(anns) >= MIC_ANNOTATORS or (not reference and any(w == worker for w, _, _ in anns)):
                continue
            anns.append((worker, mic_annotation_vector(row), (row.get("rot") or "").strip()))
    by_split: dict[str, list[Scenario]] = {}
    mixed = 0
    need = 1 if reference else MIC_ANNOTATORS
    for q, answers in groups.items():
        if q in missing:
            continue
        full = {a: anns for a, anns in answers.items() if len(anns) >= need}
        if len(full) < 2:
            continue
        split = question_split([answer_split[(q, a)] for a in full])
        mixed += len({answer_split[(q, a)] for a in full}) > 1
        labels = [{f: mic_label(sum(v[f] for _, v, _ in anns), label_rule) for f in MIC_ATTRIBUTES}
                  for anns in full.values()]
        rots = [[r for _, _, r in anns] for anns in full.values()]
        sid = f"mic-{split}-{len(by_split.get(split, []))}"
        by_split.setdefault(split, []).append(
            Scenario(q, tuple(full), id=sid, labels=tuple(labels), meta={"rots": rots}))
    if stats is not None:
        stats["mixed_split_questions"] = mixed
        stats["dropped_missing_agreement"] = len(missing)
    return by_split


_SPLIT_PRIORITY = ("test", "dev", "validation", "val", "train")


def question_split(splits: Sequence[str]) -> str:
    """The one split of a question: the split of most of its answers; a tie goes to test, then
    dev, then train (so a question never sits in both the pool and the evaluation set)."""
    counts: dict[str, int] = {}
    for sp in splits:
        counts[sp] = counts.get(sp, 0) + 1
    rank = {sp: i for i, sp in enumerate(_SPLIT_PRIORITY)}
    return min(counts, key=lambda sp: (-counts[sp], rank.get(sp, len(rank)), sp))


def load_mic(path: str | os.PathLike[str] | None = None, split: str = "eval", *, pool: bool = True,
             targets: str | os.PathLike[str] | None = None, label_rule: str = "reference", **options: Any) -> Dataset:
    """The Moral Integrity Corpus as a steerable benchmark (see the module doc)."""
    if options:
        raise TypeError(f"mic got unknown options {sorted(options)}; it takes path, split, pool, targets, label_rule")
    _check_label_rule(label_rule)
    base = _base(path, "mic")
    source = base if base.is_file() else base / "MIC.csv"
    if not source.is_file():
        raise DatasetError(f"MIC.csv not found in {base}; download it from the MIC authors "
                           f"(github.com/SALT-NLP/mic) and pass its path, or set ${DATA_ENV}")
    stats: dict[str, int] = {}
    by_split = read_mic(source, stats, label_rule)
    wanted = next((s for s in SPLIT_ALIASES.get(split, (split,)) if s in by_split), None)
    if wanted is None and set(by_split) == {"all"}:
        wanted = "all"
    if wanted is None:
        raise DatasetError(f"{source}: no scenarios in split {split!r} (splits present: {sorted(by_split)})")
    scenarios = by_split[wanted]
    info: dict[str, Any] = {"source": str(source), "split": wanted, "levels": mic_levels(label_rule),
                            "label_rule": f"{label_rule}: {MIC_LABEL_RULES[label_rule]}", **stats}
    if pool and wanted != "train" and by_split.get("train"):
        info["pool"] = by_split["train"]
    dataset_targets = read_targets(targets) if targets is not None else sampled_targets(MIC_ATTRIBUTES, info["levels"])
    return Dataset("mic", scenarios, list(MIC_ATTRIBUTES), dataset_targets, None, info)


@steerkit.plugin.hookimpl
def register_datasets(register):
    register("helpsteer2", load_helpsteer2)
    register("mic", load_mic)
