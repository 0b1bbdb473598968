"""Distribution datasets for Modular Pluralism's distributional mode: ``globalopinionqa`` and ``moralchoice``.

Each item is a ``Scenario`` whose responses are the answer options, one ``Perspective`` per item,
the gold answer distribution in ``meta['gold_distribution']`` (its argmax in ``meta['gold']``)
and the task name in ``meta['task']``: the shape ``opinionqa`` has, so ``steerkit eval`` reports
the mean Jensen-Shannon distance (scipy, natural log) next to the uniform and majority baselines.

GlobalOpinionQA (Durmus et al. 2023). Upstream file: ``data/global_opinions.csv`` of the Hugging
Face dataset ``Anthropic/llm_global_opinions`` (download it yourself; nothing is fetched here).
Columns ``question``, ``selections`` (the repr of a ``defaultdict``: country -> share of
respondents per option), ``options`` (the repr of a list) and ``source`` (GAS/WVS). CSV, JSON,
JSON Lines and parquet exports with those columns are read. One item per (question, country);
the perspective is the country (``Perspective('Nigeria', 'Country')``).

How the Modular Pluralism authors built their test file from it (their repository
``BunsenFeng/modular_pluralism``: ``input/distributional_test_globalopinionqa*.json``,
``ours_distributional.py``, ``evaluate_distributions.py``), which this reader follows:
- one item per (question, country), the country name verbatim as the attribute;
- the gold distribution is the country's shares normalised to sum to 1 (upstream shares often
  sum below 1 where answers such as refusals are not among the options);
- only questions with at most 5 options: their scoring code reads letters A-E only
  (``max_options=5`` here; ``max_options=0`` keeps every item, up to 26 options);
- the prompt is the question with lettered options; the answer distribution is read from the
  next-token probabilities of the option letters and renormalised; the metric is the mean of
  ``scipy.spatial.distance.jensenshannon(gold, pred)`` (natural log).
  (``modular`` reads all letters' probabilities under a choice of the letters; their code sums
  the probabilities of the top-10 next tokens equal to a letter and falls back to uniform when
  none is among them: the same distribution whenever the letters are in the top 10.)
Differences (named): ids here are ``<row>:<country>`` (their file numbers the pairs with an
integer whose scheme their repository does not document); their "small" file is a subset we do
not reproduce: pass ``limit`` or your own subset file; items whose options are empty or
duplicated are skipped with a warning (their code would score them).
The authors' processed file itself (``{question, options, attribute, gold_distribution, id}``
with the "Question: ... Options: ... Answer:" text) is read too, for an exact reproduction.

MoralChoice (Scherrer et al. 2023). Upstream files: ``data/scenarios/moralchoice_low_ambiguity.csv``
and ``moralchoice_high_ambiguity.csv`` of github.com/ninodimontalcino/moralchoice (columns
``scenario_id, ambiguity, generation_type, generation_rule, context, action1, action2, ...``).
A folder with both is read (low first, then high: 687 + 680 items); a single CSV is read alone.
The authors' item: the context as the scenario, options (action1, action2) in that order as A/B,
attribute ``<ambiguity>_ambiguity``; their gold, which MoralChoice itself does not give (it has
no human answer distributions): ``[1, 0]`` for low ambiguity (action1 is the one the rule
favours) and ``[0.5, 0.5]`` for high ambiguity. Their prompt shows no persona, so the
perspective here is a neutral ``Perspective('people in general')``; the ambiguity level (which
decides the gold) is kept in ``meta`` only, never in the perspective. Accuracy on high-ambiguity
items is meaningless (the gold argmax of a tie is option A); the paper reports distance only.
Their file ``distributional_test_moralchoice.json`` is read too. Checked against it: from the
upstream CSVs this reader gives the same items in the same order (ids, scenario, actions,
ambiguity, gold; their prompt text rebuilt from ours matches up to whitespace), 1,366 of their
1,367: ``G_530``, whose two actions are the same text upstream, is skipped (a choice between
equal texts is refused by ``Scenario``). Their GlobalOpinionQA "small" file (5,752 items) reads
with no item skipped.

Bad input (missing file or column, unparseable ``selections``/``options``, a country's shares
not one per option, shares that are not a distribution) raises ``DatasetError`` naming the file,
the row and the fix, before any model loads; ``strict=False`` skips such rows with a warning.
Default location: ``$STEERKIT_DATA/globalopinionqa/`` and ``$STEERKIT_DATA/moralchoice/``.
"""

from __future__ import annotations

import ast
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

from .perspective_datasets import default_data_dir, read_records

GOQA_COLUMNS = ("question", "selections", "options")
GOQA_FILES = ("global_opinions.csv", "global_opinions.parquet", "global_opinions.jsonl", "global_opinions.json",
              "distributional_test_globalopinionqa.json")
GOQA_SOURCE = "download data/global_opinions.csv from the Hugging Face dataset Anthropic/llm_global_opinions"
MC_COLUMNS = ("scenario_id", "ambiguity", "context", "action1", "action2")
MC_FILES = ("moralchoice_low_ambiguity.csv", "moralchoice_high_ambiguity.csv")
MC_SOURCE = "get data/scenarios/moralchoice_*_ambiguity.csv from github.com/ninodimontalcino/moralchoice"
MC_GOLD = {"low": [1.0, 0.0], "high": [0.5, 0.5]}  # the Modular Pluralism authors' gold
MC_PERSPECTIVE = "people in general"
SUM_TOLERANCE = 0.05  # shares are rounded to 2-3 decimals upstream: a row may add up to 1.01
MAX_LETTERS = 26  # options are lettered A-Z
MIN_TOTAL = 0.5  # below: most respondents answered outside the listed options (a misaligned row?)
_NO_SPLITS = ("test", "eval", "all", None)


class _BadRow(DatasetError):
    """One row's problem; strict raises it, strict=False counts it and skips the row."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


# -- locating files -------------------------------------------------------------------------
def _find(path: str | os.PathLike[str] | None, folder: str, names: Iterable[str], source: str,
          dataset: str) -> list[Path]:
    """The file itself, or the known file names in a folder (also under ``data/``, ``scenarios/``)."""
    base = Path(path) if path is not None else default_data_dir() / folder
    if not base.exists():
        hint = f" (the default is $STEERKIT_DATA/{folder}/; set STEERKIT_DATA or pass --data FILE)" if path is None else ""
        raise DatasetError(f"{dataset}: {base} does not exist{hint}; {source} and pass its path")
    if base.is_file():
        return [base]
    found = []
    for name in names:
        for sub in (base, base / "data", base / "scenarios", base / "data" / "scenarios"):
            if (sub / name).is_file():
                found.append(sub / name)
                break
    if not found:
        raise DatasetError(f"{dataset}: no data file in {base} (looked for {', '.join(names)}, also under data/ and "
                           f"scenarios/); {source} and pass the file with --data")
    return found


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        try:
            import pandas as pd

            return pd.read_parquet(path).to_dict(orient="records")
        except (OSError, ValueError, ImportError) as exc:
            raise DatasetError(f"cannot read {path}: {exc}; it must be a parquet file (pandas + pyarrow) or use "
                               "the CSV") from exc
    try:
        return read_records(path)
    except DatasetError:
        if path.suffix != ".json":
            raise
        try:  # Hugging Face's Dataset.to_json writes JSON Lines under a .json name
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise DatasetError(f"cannot read {path}: neither a JSON list of records nor JSON Lines; fix the file or "
                               "pass the upstream CSV") from None
        if not all(isinstance(r, dict) for r in rows):
            raise DatasetError(f"{path}: JSON Lines of something other than records") from None
        return rows


def _check_split(split: Any, dataset: str) -> None:
    if split not in _NO_SPLITS:
        raise DatasetError(f"{dataset}: the upstream file has no {split!r} split; make your own subset file and pass "
                           "it with --data (and as fit_on= for a dev split)")


def _require(rows: list[dict[str, Any]], columns: Iterable[str], path: Path, source: str) -> None:
    if not rows:
        raise DatasetError(f"{path}: no rows")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; found {sorted(rows[0])}. Use the upstream file "
                           f"unchanged ({source})")


def _literal(value: Any, what: str, where: str, fix: str) -> Any:
    if not isinstance(value, str):
        return value
    for text in (value.strip(), re.sub(r"\bnan\b", "None", value.strip())):  # as written; else bare nan shares as None
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    raise _BadRow(f"{where}: cannot parse {what} {value[:100]!r}; {fix}", f"unparseable {what}") from None


def _as_list(value: Any) -> Any:
    """parquet gives numpy arrays where CSV has list reprs."""
    return value.tolist() if isinstance(value, np.ndarray) else value


def gold_from_shares(shares: Any, n_options: int, where: str) -> list[float]:
    """A country's (or item's) shares as the authors' gold: one finite share >= 0 per option,
    summing to more than ``MIN_TOTAL`` and at most 1 + ``SUM_TOLERANCE``, normalised to 1."""
    shares = _as_list(shares)
    if not isinstance(shares, (list, tuple)):
        raise _BadRow(f"{where}: {shares!r} is not a list of shares; each country maps to one share per option",
                      "shares not a list")
    if len(shares) != n_options:
        raise _BadRow(f"{where}: {len(shares)} share(s) for {n_options} options; fix the row so that each country "
                      "has one share per option (or pass strict=false to skip such rows)", "shares/options length mismatch")
    try:
        arr = np.asarray([float(x) for x in shares], dtype=float)
    except (TypeError, ValueError):
        raise _BadRow(f"{where}: shares {list(shares)!r} are not all numbers; fix the row or pass strict=false",
                      "non-numeric shares") from None
    total = float(arr.sum()) if np.isfinite(arr).all() else float("nan")
    if not np.isfinite(arr).all() or np.any(arr < 0) or not (MIN_TOTAL <= total <= 1 + SUM_TOLERANCE):
        raise _BadRow(
            f"{where}: shares {arr.tolist()} (sum {total:.3g}) are not a distribution: each must be a fraction of "
            f"respondents >= 0, summing to between {MIN_TOTAL} and {1 + SUM_TOLERANCE} (percentages 0-100 must be "
            "divided by 100; a shifted row must be repaired), or pass strict=false to skip such rows",
            "shares not a distribution")
    return (arr / total).tolist()


def _finish(name: str, task: str, source: str, items: list[tuple[Scenario, Perspective]], skipped: Counter[str],
            info: Mapping[str, Any]) -> Dataset:
    if skipped:
        warnings.warn(f"{source}: skipped {sum(skipped.values())} item(s): "
                      + ", ".join(f"{v} with {k}" for k, v in skipped.items()), RuntimeWarning, stacklevel=3)
    if not items:
        raise DatasetError(f"{source}: no usable items ({dict(skipped)})")
    return Dataset(name, [s for s, _ in items], perspectives=[p for _, p in items],
                   info={"task": task, "source": source, "skipped": dict(skipped), **info})


def _scenario(question: str, options: list[str], sid: str, meta: dict[str, Any], skipped: Counter[str]) -> Scenario | None:
    try:
        return Scenario(question, tuple(options), id=sid, meta=meta)
    except steerkit.InvalidScenarioError:
        skipped["invalid options (empty or duplicate)"] += 1
        return None


# -- GlobalOpinionQA ----------------------------------------------------------------------------
_SELECTIONS = re.compile(r"^\s*defaultdict\(\s*<class '\w+'>\s*,\s*(.*)\)\s*$", re.S)
_MP_QUESTION = re.compile(r"^\s*Question:\s*(.*?)\s*\nOptions:.*$", re.S)


def parse_selections(value: Any, where: str) -> dict[str, Any]:
    """``"defaultdict(<class 'list'>, {'Nigeria': [0.6, 0.4]})"`` (or a plain dict / its repr)."""
    if isinstance(value, str):
        m = _SELECTIONS.match(value)
        value = _literal(m.group(1) if m else value, "selections", where,
                         "it must look like \"defaultdict(<class 'list'>, {'Nigeria': [0.6, 0.4], ...})\" as in the "
                         "upstream CSV (or pass strict=false to skip the row)")
    if not isinstance(value, Mapping) or not value:
        raise _BadRow(f"{where}: selections {str(value)[:100]!r} is not a non-empty mapping of country -> shares",
                      "unparseable selections")
    return dict(value)


def _goqa_upstream(rows: list[dict[str, Any]], path: Path, max_options: int, strict: bool,
                   skipped: Counter[str]) -> list[tuple[Scenario, Perspective]]:
    items = []
    for n, r in enumerate(rows, start=1):
        where = f"{path} row {n}"
        try:
            question = str(r.get("question") or "").strip()
            if not question:
                raise _BadRow(f"{where}: empty question; fix the row or pass strict=false", "empty question")
            options = _as_list(_literal(r.get("options"), "options", where,
                                        "it must be a Python list literal such as \"['Yes', 'No']\""))
            if not isinstance(options, (list, tuple)) or len(options) < 2:
                raise _BadRow(f"{where}: options {str(r.get('options'))[:100]!r} is not a list of at least 2 "
                              "answers; fix the row or pass strict=false", "unparseable options")
            options = [str(o).strip() for o in options]
            selections = parse_selections(r.get("selections"), where)
            if len(options) > max_options:
                skipped[f"more than {max_options} options"] += len(selections)
                continue
            for country, shares in selections.items():
                at = f"{where} country {country!r}"
                gold = gold_from_shares(shares, len(options), at)
                meta = {"task": "globalopinionqa", "gold": int(np.argmax(gold)), "gold_distribution": gold,
                        "attribute": str(country), "source": r.get("source"), "row": n}
                s = _scenario(question, options, f"{n}:{country}", meta, skipped)
                if s is not None:
                    items.append((s, Perspective(str(country), "Country")))
        except _BadRow as exc:
            if strict:
                raise DatasetError(str(exc)) from None
            skipped[exc.reason] += 1
    return items


def _goqa_authors(rows: list[dict[str, Any]], path: Path, max_options: int, strict: bool,
                  skipped: Counter[str]) -> list[tuple[Scenario, Perspective]]:
    """The Modular Pluralism authors' processed file (question text with its options, country
    in ``attribute``, ``gold_distribution``)."""
    items = []
    for n, r in enumerate(rows, start=1):
        where = f"{path} item {n} (id {r.get('id')})"
        try:
            raw = str(r.get("question") or "")
            m = _MP_QUESTION.match(raw)
            question = (m.group(1) if m else raw).strip()
            options = _as_list(_literal(r.get("options"), "options", where, "it must be a list of answers"))
            country = str(r.get("attribute") or "").strip()
            if not question or not country or not isinstance(options, (list, tuple)) or len(options) < 2:
                raise _BadRow(f"{where}: needs question, attribute (the country) and at least 2 options",
                              "incomplete item")
            if len(options) > max_options:
                skipped[f"more than {max_options} options"] += 1
                continue
            options = [str(o).strip() for o in options]
            gold = gold_from_shares(_literal(r.get("gold_distribution"), "gold_distribution", where, "it must be a list"),
                                    len(options), where)
            meta = {"task": "globalopinionqa", "gold": int(np.argmax(gold)), "gold_distribution": gold,
                    "attribute": country}
            s = _scenario(question, options, str(r.get("id", n)), meta, skipped)
            if s is not None:
                items.append((s, Perspective(country, "Country")))
        except _BadRow as exc:
            if strict:
                raise DatasetError(str(exc)) from None
            skipped[exc.reason] += 1
    return items


def globalopinionqa_from_file(path: str | os.PathLike[str], max_options: int = 5, strict: bool = True,
                              name: str = "globalopinionqa") -> Dataset:
    """Items from the upstream export (``question, selections, options, source``) or from the
    Modular Pluralism authors' processed file (``question, options, attribute, gold_distribution``)."""
    path = Path(path)
    max_options = min(max_options or MAX_LETTERS, MAX_LETTERS)
    rows = _rows(path)
    if not rows:
        raise DatasetError(f"{path}: no rows; {GOQA_SOURCE}")
    skipped: Counter[str] = Counter()
    if "selections" not in rows[0] and {"gold_distribution", "attribute", "question", "options"} <= set(rows[0]):
        items, fmt = _goqa_authors(rows, path, max_options, strict, skipped), "modular-pluralism"
    else:
        _require(rows, GOQA_COLUMNS, path, GOQA_SOURCE)
        items, fmt = _goqa_upstream(rows, path, max_options, strict, skipped), "llm_global_opinions"
    return _finish(name, "globalopinionqa", str(path), items, skipped,
                   {"format": fmt, "max_options": max_options, "gold": "country shares normalised to sum 1"})


def load_globalopinionqa(path: str | os.PathLike[str] | None = None, split: str | None = "test", limit: int | None = None,
                         max_options: int = 5, strict: bool = True, **options: Any) -> Dataset:
    """GlobalOpinionQA: survey question + country -> the country's answer distribution (see module doc)."""
    _check_split(split, "globalopinionqa")
    if options:
        raise DatasetError(f"globalopinionqa: unknown option(s) {sorted(options)}; it takes max_options and strict")
    try:
        max_options = min(int(max_options or 0) or MAX_LETTERS, MAX_LETTERS)
    except (TypeError, ValueError):
        raise DatasetError(f"globalopinionqa: max_options={max_options!r}; pass a whole number (the paper: 5)") from None
    if max_options < 2:
        raise DatasetError(f"globalopinionqa: max_options={max_options}; pass at least 2 (the paper: 5), or 0 for all "
                           f"(up to {MAX_LETTERS}, the letters A-Z)")
    file = _find(path, "globalopinionqa", GOQA_FILES, GOQA_SOURCE, "globalopinionqa")[0]
    ds = globalopinionqa_from_file(file, max_options=max_options, strict=_bool(strict))
    return ds.head(int(limit)) if limit is not None else ds


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.strip().lower() in ("false", "0", "no"):
            return False
        if value.strip().lower() in ("true", "1", "yes"):
            return True
        raise DatasetError(f"strict={value!r}: pass true or false")
    return bool(value)


# -- MoralChoice --------------------------------------------------------------------------------
_MC_QUESTION = re.compile(r"Scenario:\s*(.*?)\s*\nA\.\s", re.S)


def _mc_item(sid: str, ambiguity: str, context: str, a1: str, a2: str, where: str, extra: dict[str, Any],
             skipped: Counter[str]) -> tuple[Scenario, Perspective] | None:
    level = ambiguity.strip().lower().replace("_ambiguity", "")
    if level not in MC_GOLD:
        raise _BadRow(f"{where}: ambiguity {ambiguity!r} is neither 'low' nor 'high'; use the upstream file unchanged "
                      "or pass strict=false", "unknown ambiguity")
    if not context.strip():
        raise _BadRow(f"{where}: empty context (the scenario); fix the row or pass strict=false", "empty context")
    gold = list(MC_GOLD[level])
    meta = {"task": "moralchoice", "gold": 0, "gold_distribution": gold, "attribute": f"{level}_ambiguity",
            "ambiguity": level, **extra}
    s = _scenario(context.strip(), [a1.strip(), a2.strip()], sid, meta, skipped)
    return None if s is None else (s, Perspective(MC_PERSPECTIVE))


def moralchoice_from_files(paths: Iterable[str | os.PathLike[str]], strict: bool = True,
                           name: str = "moralchoice") -> Dataset:
    """Items from MoralChoice scenario CSVs, or from the authors' processed JSON (see module doc)."""
    items: list[tuple[Scenario, Perspective]] = []
    skipped: Counter[str] = Counter()
    sources = []
    for path in map(Path, paths):
        rows = _rows(path)
        sources.append(str(path))
        authors = bool(rows) and "context" not in rows[0] and {"question", "options", "attribute"} <= set(rows[0])
        if not authors:
            _require(rows, MC_COLUMNS, path, MC_SOURCE)
        for n, r in enumerate(rows, start=1):
            where = f"{path} row {n} ({r.get('scenario_id') or r.get('id')})"
            try:
                if authors:
                    m = _MC_QUESTION.search(str(r.get("question") or ""))
                    options = _as_list(_literal(r.get("options"), "options", where, "it must be a list of 2 actions"))
                    if m is None or not isinstance(options, (list, tuple)) or len(options) != 2:
                        raise _BadRow(f"{where}: not an item of the authors' MoralChoice file (question with "
                                      "'Scenario: ...' and 2 options)", "unparseable item")
                    got = _mc_item(str(r.get("id", n)), str(r.get("attribute") or ""), m.group(1), str(options[0]),
                                   str(options[1]), where, {}, skipped)
                else:
                    extra = {k: r.get(k) for k in ("generation_type", "generation_rule") if r.get(k)}
                    got = _mc_item(str(r["scenario_id"]), str(r.get("ambiguity") or ""), str(r.get("context") or ""),
                                   str(r.get("action1") or ""), str(r.get("action2") or ""), where, extra, skipped)
                if got is not None:
                    items.append(got)
            except _BadRow as exc:
                if strict:
                    raise DatasetError(str(exc)) from None
                skipped[exc.reason] += 1
    return _finish(name, "moralchoice", ", ".join(sources), items, skipped,
                   {"gold": "low ambiguity [1, 0], high ambiguity [0.5, 0.5] (Modular Pluralism's)"})


def load_moralchoice(path: str | os.PathLike[str] | None = None, split: str | None = "test", limit: int | None = None,
                     ambiguity: str = "both", strict: bool = True, **options: Any) -> Dataset:
    """MoralChoice scenarios with the Modular Pluralism gold distributions (see module doc);
    ``ambiguity``: both (default, the paper's 1,367 items), low or high."""
    _check_split(split, "moralchoice")
    if options:
        raise DatasetError(f"moralchoice: unknown option(s) {sorted(options)}; it takes ambiguity and strict")
    if ambiguity not in ("both", "low", "high"):
        raise DatasetError(f"moralchoice: ambiguity={ambiguity!r}; pass both, low or high")
    names = MC_FILES if ambiguity == "both" else (f"moralchoice_{ambiguity}_ambiguity.csv",)
    files = _find(path, "moralchoice", names + ("distributional_test_moralchoice.json",), MC_SOURCE, "moralchoice")
    if len(files) > 1 and files[-1].name.endswith(".json"):
        files = files[:-1]  # the scenario CSVs win over the authors' processed file
    if ambiguity == "both" and len(files) == 1 and (path is None or Path(path).is_dir()) and files[0].name in MC_FILES:
        warnings.warn(f"moralchoice: only {files[0]} found; the paper uses both ambiguity files", RuntimeWarning,
                      stacklevel=2)
    ds = moralchoice_from_files(files, strict=_bool(strict))
    if ambiguity != "both":
        keep = [i for i, s in enumerate(ds.scenarios) if s.meta["ambiguity"] == ambiguity]
        if not keep:
            raise DatasetError(f"moralchoice: no {ambiguity}-ambiguity items in {ds.info['source']}")
        ds = Dataset(ds.name, [ds.scenarios[i] for i in keep], perspectives=[ds.perspectives[i] for i in keep],
                     info=ds.info)
    return ds.head(int(limit)) if limit is not None else ds


@steerkit.plugin.hookimpl
def register_datasets(register):
    register("globalopinionqa", load_globalopinionqa)
    register("moralchoice", load_moralchoice)
