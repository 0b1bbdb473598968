"""``steerkit eval`` and ``steerkit realign``: alignment accuracy on attribute datasets.

``eval`` runs a strategy on a dataset. Attribute strategies (comparative-regression, ...)
score every scenario on every needed attribute ONCE (cached), then every target is served by
aligning the score table (zero model calls per target). Choice strategies (random, oracle,
prompt-aligned, unaligned) are asked once per target (``select_many``; the strategy caches).
Perspective datasets (vk, opinionqa) go to ``choice_eval.evaluate_choice_dataset``.

``realign`` re-aligns scores that ``eval`` cached to new targets without loading any model:
the backend is wrapped so that any generation raises, and the cache is checked for every
score first, so a missing score is a clear error (run ``steerkit eval`` first).

Accuracy scores a tied prediction by ``--ties``: ``expected`` (default, a uniform random
tie-break) or ``first`` (the AIES'25 reference's rule); gold ties are exact, as in the
reference (``alignment_eval``). The rule, the target set and what it is are recorded in the
results. ``retried`` counts the scores whose generation needed retries.
``--split`` defaults to each dataset's own default split (eval for helpsteer2/mic, test for
vk/opinionqa).

Outputs (``--out DIR``): ``results.json`` (config, per-target accuracy, per-number-of-attributes
mean/SE, tie rate, timings, model calls, cache hits, retried scores), ``accuracy_by_attributes.png`` and
``high_low_polar.png`` (accuracy of the one-attribute high and low targets per attribute)."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

import steerkit
from steerkit import AttributeTarget, Dataset, ScoreTable, Steerer
from steerkit.plugin import AttributeStrategy, text_hash

from . import attribute_eval as ae

console = Console()
err_console = Console(stderr=True)


class ScoresNotCachedError(steerkit.SteerkitError):
    """Raised when re-alignment needs scores the cache does not hold."""


class CacheOnlyBackend(steerkit.plugin.Backend):
    """Has the identity (fingerprint, name) of a real backend but never runs a model: any
    generation raises. Lets ``realign`` read cached scores through the public Steerer API."""

    def __init__(self, inner: steerkit.plugin.Backend):
        super().__init__(inner.model)
        self.inner = inner
        self.name = inner.name

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    @property
    def loaded(self) -> bool:
        return False

    def generate(self, prompts, sampling=steerkit.plugin.Sampling(), constraint=None):  # noqa: ANN001
        raise ScoresNotCachedError(
            f"{len(prompts)} score(s) are not in the cache and realign never calls a model: "
            "run `steerkit eval` with the same strategy, options, dataset and cache first"
        )

    def option_logprobs(self, prompts, options):  # noqa: ANN001
        self.generate(prompts)

    def close(self) -> None:
        self.inner.close()


# -- building the run -------------------------------------------------------------------
def _params(factory: Any) -> set[str]:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return set()
    return {n for n, p in sig.parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to options; values are read as JSON when they parse (numbers,
    booleans, lists), else kept as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: use KEY=VALUE, e.g. -o temperature=0.7", param_hint="--option")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def make_steerer(strategy: str, backend: Any, options: Mapping[str, Any], **kwargs: Any) -> Steerer:
    """A Steerer; a strategy that rejects an option is a usage error, not a traceback."""
    try:
        return Steerer(strategy=strategy, backend=backend, **kwargs, **options)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(f"strategy {strategy!r}: {exc}") from None


def strategy_options(strategy: str, dataset: Dataset, samples: int | None = None, k: int | None = None,
                     extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Options for the strategy: the dataset's example pool (when the strategy takes one),
    ``samples`` and ``k`` (an error when given to a strategy that does not take them) and any
    ``extra`` options (``-o KEY=VALUE`` on the command line)."""
    factory = steerkit.plugin.lookup("strategy", strategy)
    params = _params(factory)
    options: dict[str, Any] = {}
    pool = dataset.info.get("pool")
    if pool and "example_pool" in params:
        options["example_pool"] = pool
    for name, value in (("samples", samples), ("k", k)):
        if value is None:
            continue
        if name not in params:
            raise click.UsageError(f"strategy {strategy!r} does not take --{name}")
        options[name] = value
    options.update(extra or {})
    return options


def load_dataset(name: str, data: str | None, split: str | None, limit: int | None,
                 options: Mapping[str, Any] | None = None) -> Dataset:
    """The dataset; ``split`` None leaves the loader's own default split; ``options`` go to the
    loader (``--dataset-option``, e.g. ``label_rule=sixths`` for mic)."""
    loader = steerkit.plugin.lookup("dataset", name)
    kwargs: dict[str, Any] = dict(options or {})
    if split is not None:
        kwargs["split"] = split
    if data:
        kwargs["path"] = data
    try:
        dataset = loader(**kwargs)
    except TypeError as exc:
        raise click.UsageError(f"dataset {name!r}: {exc}") from None
    return dataset.head(limit)


def _cache_arg(cache: str | None, must_exist: bool = False) -> Any:
    if cache is None:
        path = steerkit.default_cache_path()
    else:
        path = Path(cache)
    if must_exist and not Path(path).exists():
        raise ScoresNotCachedError(f"no score cache at {path}: run `steerkit eval ... --cache {path}` first")
    return str(path) if cache is not None else True


def is_attribute_strategy(steerer: Steerer) -> bool:
    return isinstance(steerer.strategy, AttributeStrategy)


# -- evaluation -------------------------------------------------------------------------
def _gold(dataset: Dataset) -> ScoreTable | None:
    if not dataset.scenarios or any(s.labels is None for s in dataset.scenarios):
        return None
    return ScoreTable.from_labels(dataset.scenarios, dataset.attributes)


def evaluate_attribute_dataset(
    steerer: Steerer,
    dataset: Dataset,
    targets: Mapping[str, AttributeTarget],
    *,
    plots: bool = True,
    progress: bool = True,
    ties: str = "expected",
) -> dict[str, Any]:
    """Accuracy of ``steerer`` on every target; returns the results dict (see module doc)."""
    ae.check_ties(ties)
    gold = _gold(dataset)
    if gold is None:
        raise steerkit.DatasetError(f"dataset {dataset.name!r} has scenarios without labels: it cannot be evaluated")
    side = ae.per_attribute_targets(dataset) if plots else {}
    all_targets = {**targets, **{f"__{k}": v for k, v in side.items() if f"__{k}" not in targets}}
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if is_attribute_strategy(steerer):
        needed = [a for a in dataset.attributes if any(a in t.values for t in all_targets.values())]
        table = steerer.score(dataset.scenarios, needed)
        timings["score_seconds"] = time.perf_counter() - t0
        model_calls, hits, misses = table.model_calls, table.cache_hits, table.cache_misses
        tokens_in, tokens_out = table.prompt_tokens, table.output_tokens
        retried = steerer.retried
        t1 = time.perf_counter()
        report = ae.evaluate_table(table, gold, all_targets, steerer.aligner, ties=ties)
        timings["align_seconds"] = time.perf_counter() - t1
    else:
        names = list(all_targets)
        selected = np.zeros((len(names), len(dataset)), dtype=int)
        tied = np.zeros((len(names), len(dataset), gold.mask.shape[1]), dtype=bool)
        model_calls = hits = misses = retried = tokens_in = tokens_out = 0
        iterator = track(names, description=f"{steerer.strategy.name}: targets", console=err_console) if progress else names
        for i, name in enumerate(iterator):
            sels = steerer.select_many(dataset.scenarios, all_targets[name])
            selected[i] = [s.index for s in sels]
            tied[i] = ae.tied_from_selections([sels], tied.shape[2])[0]
            model_calls += steerer.model_calls
            tokens_in, tokens_out = tokens_in + steerer.tokens[0], tokens_out + steerer.tokens[1]
            hits += sum(s.cache_hits for s in sels)
            misses += sum(s.cache_misses for s in sels)
            retried += steerer.retried
        timings["select_seconds"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        report = ae.evaluate_selections(gold, all_targets, selected, _gold_aligner(steerer.aligner), tied=tied,
                                        ties=ties)
        timings["align_seconds"] = time.perf_counter() - t1
    timings["total_seconds"] = time.perf_counter() - t0
    timings["seconds_per_scenario"] = timings["total_seconds"] / max(1, len(dataset))
    position = {n: i for i, n in enumerate(report.names)}
    main_idx = [position[n] for n in targets]
    side_idx = {n: position[n] if n in targets else position[f"__{n}"] for n in side}
    main = report.subset(main_idx)
    results: dict[str, Any] = {
        "config": {
            "dataset": dataset.name, "split": dataset.info.get("split"), "n_scenarios": len(dataset),
            "strategy": steerer.strategy.name, "strategy_fingerprint": steerer.strategy.fingerprint(),
            "strategy_options": {k: v for k, v in steerer.strategy.options.items() if k != "example_pool"},
            "backend": steerer.backend.name, "model": steerer.backend.model_name,
            "aligner": steerer.aligner,
            "cache": str(steerer.cache.path) if steerer.cache is not None else None,
            "example_pool": len(dataset.info.get("pool") or []),
        },
        **main.to_dict(),
        "timings": timings,
        "model_calls": int(model_calls),
        "prompt_tokens": int(tokens_in),
        "output_tokens": int(tokens_out),
        "cache_hits": int(hits),
        "cache_misses": int(misses),
        "retried": int(retried),
    }
    if side:
        results["per_attribute_high_low"] = {
            a: {lvl: ae.num(float(report.accuracy[side_idx[f"{a}={lvl}"]])) for lvl in ("high", "low")}
            for a in dataset.attributes
        }
    return results


def _gold_aligner(aligner: str) -> str:
    fn = steerkit.plugin.lookup("aligner", aligner)
    return aligner if getattr(fn, "uses_weights", False) else "euclidean"


# -- output -----------------------------------------------------------------------------
def _pct(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{100 * x:.1f}"


def print_results(results: Mapping[str, Any], title: str) -> None:
    table = Table(title=title)
    for col, just in (("# attributes", "right"), ("targets", "right"), ("accuracy %", "right"), ("± SE", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for n, row in results["by_n_attributes"].items():
        table.add_row(str(n), str(row["n_targets"]), _pct(row["mean"]), _pct(row["se"]))
    table.add_row("[bold]all[/]", str(results["n_targets"]), f"[bold]{_pct(results['mean_accuracy'])}[/]",
                  _pct(results["se"]), end_section=True)
    console.print(table)
    if results.get("tie_rate") is not None:
        console.print(f"tied predictions: {_pct(results['tie_rate'])}% of scored scenarios; --ties "
                      f"{results.get('ties', 'expected')}: {ae.TIE_RULES[results.get('ties', 'expected')]}")
    note = results.get("config", {}).get("targets_note")
    if note:
        console.print(f"targets {results['config'].get('targets')}: {note}")
    hl = results.get("per_attribute_high_low")
    if hl:
        t2 = Table(title="one-attribute targets: high vs low")
        t2.add_column("attribute")
        t2.add_column("high %", justify="right")
        t2.add_column("low %", justify="right")
        for a, v in hl.items():
            t2.add_row(a, _pct(v["high"]), _pct(v["low"]))
        console.print(t2)
    tm = results.get("timings", {})
    console.print(
        f"{results['config']['n_scenarios']} scenarios · {results['model_calls']} model calls · tokens "
        f"{results.get('prompt_tokens', 0)} in / {results.get('output_tokens', 0)} out · cache "
        f"{results['cache_hits']} hits / {results['cache_misses']} misses · "
        f"{results.get('retried', 0)} retried scores · "
        f"{tm.get('total_seconds', 0):.2f}s ({tm.get('seconds_per_scenario', 0):.3f}s per scenario)"
    )


def write_plots(results: Mapping[str, Any], out_dir: Path) -> list[str]:
    """accuracy_by_attributes.png and high_low_polar.png (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    cfg = results["config"]
    label = f"{cfg['strategy']} on {cfg['dataset']}"
    rows = [(int(n), r) for n, r in results["by_n_attributes"].items() if r["mean"] is not None]
    if rows:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        xs = [n for n, _ in rows]
        ys = [100 * r["mean"] for _, r in rows]
        es = [100 * (r["se"] or 0.0) for _, r in rows]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=4, label=label)
        ax.axhline(50, color="grey", linestyle=":", linewidth=1, label="50%")
        ax.set_xlabel("number of attributes in the target")
        ax.set_ylabel("alignment accuracy (%)")
        ax.set_xticks(xs)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8)
        ax.set_title(label, fontsize=9)
        fig.tight_layout()
        path = out_dir / "accuracy_by_attributes.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    hl = results.get("per_attribute_high_low")
    if hl and len(hl) >= 2:
        names = list(hl)
        angles = np.linspace(0, 2 * np.pi, len(names), endpoint=False).tolist()
        fig = plt.figure(figsize=(4.5, 4.5))
        ax = fig.add_subplot(projection="polar")
        for lvl, style in (("high", "-o"), ("low", "--s")):
            vals = [100 * (hl[a][lvl] if hl[a][lvl] is not None else 0.0) for a in names]
            ax.plot(angles + angles[:1], vals + vals[:1], style, label=f"{lvl} target")
        ax.set_xticks(angles)
        ax.set_xticklabels(names, fontsize=8)
        ax.set_ylim(0, 100)
        ax.legend(loc="lower right", fontsize=8, bbox_to_anchor=(1.15, -0.1))
        ax.set_title(f"one-attribute targets: {label}", fontsize=9)
        fig.tight_layout()
        path = out_dir / "high_low_polar.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


def record_targets(results: dict[str, Any], spec: str, dataset: Dataset) -> None:
    """Say in the results which target set ran and what it is, and the dataset's label rule."""
    results["config"]["targets"] = spec
    results["config"]["targets_note"] = ae.TARGET_SET_NOTES.get(spec, "targets from a JSON file")
    if dataset.info.get("label_rule"):
        results["config"]["label_rule"] = dataset.info["label_rule"]


def _default_out(dataset: str, strategy: str) -> Path:
    return Path("results") / "eval" / f"{dataset}-{strategy}"


# -- realign ----------------------------------------------------------------------------
def missing_scores(steerer: Steerer, scenarios: Sequence[steerkit.Scenario], attributes: Sequence[str]) -> tuple[int, int]:
    """(missing, needed): how many per-response scores ``steerer.score`` would have to compute.

    Mirrors the keys of ``AttributeStrategy.score``; the CacheOnlyBackend is the safety net."""
    strategy = steerer.strategy
    assert isinstance(strategy, AttributeStrategy)
    model_fp, strategy_fp = steerer.backend.fingerprint(), strategy.fingerprint()
    keys = [
        steerkit.plugin.CacheKey(model_fp, strategy_fp, s.key, text_hash(r), strategy.attribute_key(a), sample)
        for a in attributes for sample in range(strategy.samples) for s in scenarios for r in s.responses
    ]
    if steerer.cache is None:
        return len(keys), len(keys)
    found = steerer.cache.get_many(keys)
    return sum(1 for k in keys if k not in found), len(keys)


def realign(
    strategy: str,
    dataset: Dataset,
    targets: Mapping[str, AttributeTarget],
    *,
    backend: str = "transformers",
    model: str | None = None,
    cache: str | None = None,
    aligner: str = "euclidean",
    samples: int | None = None,
    k: int | None = None,
    options: Mapping[str, Any] | None = None,
    ties: str = "expected",
) -> dict[str, Any]:
    """Re-align cached scores of ``dataset`` to ``targets``; never loads or calls a model.
    Selections are the ones scored (``alignment_eval.first_choice``: the first response at the
    exact minimum); ``ties`` says how a tie is credited."""
    ae.check_ties(ties)
    if not issubclass_safe(steerkit.plugin.lookup("strategy", strategy)):
        raise steerkit.UnsupportedTargetError(
            f"strategy {strategy!r} does not score attributes, so it has no scores to re-align; "
            "realign works with attribute strategies such as comparative-regression"
        )
    inner = steerkit.plugin.lookup("backend", backend)(model=model)
    steerer = make_steerer(strategy, CacheOnlyBackend(inner), strategy_options(strategy, dataset, samples, k, options),
                           cache=_cache_arg(cache, must_exist=True), aligner=aligner, progress=False)
    attributes = [a for a in dataset.attributes if any(a in t.values for t in targets.values())]
    t0 = time.perf_counter()
    missing, needed = missing_scores(steerer, dataset.scenarios, attributes)
    if missing:
        raise ScoresNotCachedError(
            f"{missing} of {needed} needed scores ({dataset.name}, {len(dataset)} scenarios, attributes "
            f"{attributes}) are not in the cache {steerer.cache.path if steerer.cache is not None else ''}: "
            f"run `steerkit eval --strategy {strategy} "
            f"--dataset {dataset.name}` with the same options and --cache first"
        )
    table = steerer.score(dataset.scenarios, attributes)
    load_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    tlist = list(targets.values())
    selected, tied = ae.first_choice(table, tlist, aligner)  # as scored: exact ties, first wins
    align_seconds = time.perf_counter() - t1
    results: dict[str, Any] = {
        "config": {"dataset": dataset.name, "n_scenarios": len(dataset), "strategy": strategy,
                   "backend": inner.name, "model": inner.model_name, "aligner": aligner,
                   "cache": str(steerer.cache.path) if steerer.cache is not None else None},
        "n_targets": len(tlist),
        "model_calls": int(table.model_calls + steerer.model_calls),
        "model_loaded": bool(getattr(inner, "loaded", False)),
        "cache_hits": int(table.cache_hits),
        "retried": steerer.retried,
        "timings": {"load_scores_seconds": load_seconds, "align_seconds": align_seconds},
        "selections": {name: [int(x) for x in row] for name, row in zip(targets, selected)} if len(tlist) <= 100 else None,
    }
    gold = _gold(dataset)
    if gold is not None:
        t2 = time.perf_counter()
        report = ae.evaluate_selections(gold, targets, selected, _gold_aligner(aligner), tied=tied, ties=ties)
        results["timings"]["score_accuracy_seconds"] = time.perf_counter() - t2
        results.update(report.to_dict(per_target=len(tlist) <= 1000))
    return results


def issubclass_safe(factory: Any) -> bool:
    return isinstance(factory, type) and issubclass(factory, AttributeStrategy)


# -- commands ---------------------------------------------------------------------------
_common = [
    click.option("--strategy", required=True, help="strategy name (steerkit plugins lists them)"),
    click.option("--dataset", "dataset_name", required=True, help="dataset name: helpsteer2, mic, vk, opinionqa"),
    click.option("--data", default=None, help="dataset file or folder (default: $STEERKIT_DATA or ../shared/data)"),
    click.option("--split", default=None, help="dataset split (default: the dataset's own: eval for helpsteer2/mic, test for vk/opinionqa)"),
    click.option("--targets", "targets_spec", default="sampled", show_default=True,
                 help="sampled | high | low | reference-all (the AIES'25 reference's full set: 3,124 for "
                      "HelpSteer2) | all (every full vector, 0.5 included: 3,125) | all-subsets | named | "
                      "a JSON file of targets"),
    click.option("--ties", type=click.Choice(list(ae.TIE_RULES)), default="expected", show_default=True,
                 help="a tied prediction scores the expected accuracy of a random tie-break, or goes to the "
                      "first tied response (the AIES'25 reference's rule)"),
    click.option("--dataset-option", "dataset_options", multiple=True, metavar="KEY=VALUE",
                 help="an option for the dataset loader, repeatable, e.g. --dataset-option label_rule=sixths (mic)"),
    click.option("--limit", type=int, default=None, help="first N scenarios only"),
    click.option("--backend", default="transformers", show_default=True),
    click.option("--model", default=None, help="model path or name (default: the backend's default)"),
    click.option("--cache", "cache_path", default=None, help="score cache file (default: user cache dir)"),
    click.option("--aligner", default="euclidean", show_default=True),
    click.option("--samples", type=int, default=None, help="self-consistency samples (attribute strategies)"),
    click.option("--k", type=int, default=None, help="in-context examples (few-shot strategies)"),
    click.option("-o", "--option", "extra_options", multiple=True, metavar="KEY=VALUE",
                 help="another strategy option (JSON value), repeatable, e.g. -o temperature=0.7"),
    click.option("--json", "as_json", is_flag=True, help="print the results JSON to stdout"),
]


def _with_common(fn: Any) -> Any:
    for opt in reversed(_common):
        fn = opt(fn)
    return fn


@steerkit.plugin.hookimpl
def register_commands(cli):
    @cli.command("eval")
    @_with_common
    @click.option("--out", "out_dir", default=None, help="results folder (default: results/eval/DATASET-STRATEGY)")
    @click.option("--batch-size", type=int, default=None, help="prompts per backend batch")
    @click.option("--plots/--no-plots", default=True, show_default=True, help="write PNG plots (and score the one-attribute high/low targets)")
    @click.option("--mode", default=None, help="the strategy's mode, for strategies that have one "
                  "(modular: steerable | distributional | overton)")
    @click.option("--judge", default=None, help="vk-overton: entailment judge, 'llm' (the main model, default), "
                  "llm:MODEL or nli:FOLDER (a local NLI classifier folder, e.g. an MNLI model)")
    def eval_cmd(strategy, dataset_name, data, split, targets_spec, ties, dataset_options, limit, backend, model,
                 cache_path, aligner, samples, k, extra_options, as_json, out_dir, batch_size, plots, mode, judge):
        """Run STRATEGY on DATASET and report alignment accuracy over a target set."""
        if dataset_name == "vk-overton" or mode == "overton":  # value coverage, not accuracy (overton.py)
            from steerkit_plugins.overton import overton_eval_command

            results = overton_eval_command(
                strategy=strategy, mode=mode, dataset=dataset_name, data=data, limit=limit, backend=backend,
                model=model, cache=_cache_arg(cache_path), options=parse_options(extra_options), judge=judge,
                out_dir=out_dir, batch_size=batch_size, as_json=as_json)
            if as_json:
                click.echo(json.dumps(results, indent=2, default=str))
            return
        run_path = parse_options(extra_options).get("path") if strategy == "checkpoint" else None
        if run_path is not None and split == "val":  # a trained run's own held-out items
            from steerkit_plugins.checkpoint import validation_split

            dataset = validation_split(run_path, dataset_name).head(limit)
        else:
            dataset = load_dataset(dataset_name, data, split, limit, parse_options(dataset_options))
        out = Path(out_dir) if out_dir else _default_out(dataset_name, strategy)
        extra = parse_options(extra_options)
        if mode is not None:  # a strategy without modes refuses it by name (unknown option)
            extra["mode"] = mode
        options = strategy_options(strategy, dataset, samples, k, extra)
        steerer = make_steerer(strategy, backend, options, model=model, aligner=aligner,
                               cache=_cache_arg(cache_path), batch_size=batch_size, progress=not as_json)
        check_dataset = getattr(steerer.strategy, "check_dataset", None)
        if check_dataset is not None:  # e.g. a mode this dataset cannot serve: refused before any model loads
            check_dataset(dataset)
        if dataset.perspectives is not None:
            from steerkit_plugins.perspective_eval import evaluate_choice_dataset

            out.mkdir(parents=True, exist_ok=True)
            results = evaluate_choice_dataset(steerer, dataset, out_dir=out, limit=None, print_table=not as_json)
            if as_json:
                click.echo(json.dumps(results, indent=2, default=str))
            return
        targets = ae.resolve_targets(dataset, targets_spec)
        for t in targets.values():
            steerer.strategy.check_target(t)  # before any model loads
        results = evaluate_attribute_dataset(steerer, dataset, targets, plots=plots, progress=not as_json, ties=ties)
        record_targets(results, targets_spec, dataset)
        out.mkdir(parents=True, exist_ok=True)
        results["plots"] = write_plots(results, out) if plots else []
        path = out / "results.json"
        path.write_text(json.dumps(results, indent=2))
        if as_json:
            click.echo(json.dumps(results, indent=2))
        else:
            print_results(results, f"{strategy} on {dataset_name} ({targets_spec} targets)")
            console.print(f"results: {path}" + (f" · plots: {', '.join(results['plots'])}" if results["plots"] else ""))

    @cli.command("realign")
    @_with_common
    @click.option("--out", "out_file", default=None, help="also write the results JSON to this file")
    def realign_cmd(strategy, dataset_name, data, split, targets_spec, ties, dataset_options, limit, backend, model,
                    cache_path, aligner, samples, k, extra_options, as_json, out_file):
        """Re-align cached scores of DATASET to new targets with zero model calls."""
        dataset = load_dataset(dataset_name, data, split, limit, parse_options(dataset_options))
        targets = ae.resolve_targets(dataset, targets_spec)
        results = realign(strategy, dataset, targets, backend=backend, model=model, cache=cache_path,
                          aligner=aligner, samples=samples, k=k, options=parse_options(extra_options), ties=ties)
        record_targets(results, targets_spec, dataset)
        if out_file:
            Path(out_file).parent.mkdir(parents=True, exist_ok=True)
            Path(out_file).write_text(json.dumps(results, indent=2))
        if as_json:
            click.echo(json.dumps(results, indent=2))
            return
        tm = results["timings"]
        console.print(
            f"re-aligned {results['config']['n_scenarios']} scenarios to {results['n_targets']} targets in "
            f"{tm['align_seconds'] * 1000:.1f} ms (scores read from cache in {tm['load_scores_seconds']:.2f}s): "
            f"[bold]{results['model_calls']} model calls[/], {results['cache_hits']} cached scores"
        )
        if "mean_accuracy" in results:
            results.setdefault("per_attribute_high_low", None)
            print_results({**results, "cache_misses": 0}, f"{strategy} on {dataset_name}: re-aligned ({targets_spec})")
