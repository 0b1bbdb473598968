"""Benchmark: do bfloat16 and float32 give the same comparative-regression scores?

The transformers backend loads bfloat16 on CPUs with native bf16 (AMX or AVX-512 BF16: prefill
~3.75x faster there) and float32 elsewhere. This checks, on the first ``--limit`` HelpSteer2
eval scenarios x 5 attributes (few-shot comparative regression, embedded model, greedy), that
the choice does not change the results:

1. the distribution of per-response score differences, bf16 - fp32, in points of the 0-100
   scale (mean, quantiles of |d|, share identical, correlation);
2. alignment accuracy on HelpSteer2's 50 sampled targets for each dtype; the goal is that they
   agree within 1 percentage point;
3. seconds per scenario for each dtype, over the scenarios this run scored with the model (a
   resumed run reads the others from the cache; the JSON says how many ran cold).

Scenarios run one at a time in both dtypes in turn, so a run cut short (``--minutes``, or an
interrupt: the cache keeps every answered prompt) still compares matched pairs; the JSON
says how many of the requested scenarios were done.

Scores go to a score cache (``--cache``; the dtype is part of the backend fingerprint, so both
dtypes share one file), so a rerun re-aligns without a model. Writes
``results/bench_dtype.json`` and prints a table.

    python benchmarks/bench_dtype.py --limit 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench_comparative import cpu_name  # a sibling script: benchmarks/ is on sys.path when run

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TARGET_ACCURACY_POINTS = 1.0


def score_diffs(a, b) -> dict:
    """Summary of b - a over the responses both tables scored, in points of the 0-100 scale."""
    import numpy as np

    both = a.mask[:, :, None] & ~np.isnan(a.scores) & ~np.isnan(b.scores)
    d = (b.scores - a.scores)[both] * 100.0
    x, y = a.scores[both], b.scores[both]
    ad = np.abs(d)
    hist_edges = [0, 0.5, 1, 2, 5, 10, 20, 50, 101]
    hist, _ = np.histogram(ad, bins=hist_edges)
    return {
        "n": int(d.size),
        "mean": float(d.mean()) if d.size else None,
        "mean_abs": float(ad.mean()) if d.size else None,
        "median_abs": float(np.median(ad)) if d.size else None,
        "p90_abs": float(np.quantile(ad, 0.9)) if d.size else None,
        "p99_abs": float(np.quantile(ad, 0.99)) if d.size else None,
        "max_abs": float(ad.max()) if d.size else None,
        "identical_share": float((ad < 1e-9).mean()) if d.size else None,
        "within_5_points_share": float((ad <= 5).mean()) if d.size else None,
        "pearson": float(np.corrcoef(x, y)[0, 1]) if d.size > 1 and x.std() > 0 and y.std() > 0 else None,
        "abs_histogram": {f"[{lo},{hi})": int(c) for lo, hi, c in zip(hist_edges, hist_edges[1:], hist)},
        "missing": {"a": int((a.mask[:, :, None] & np.isnan(a.scores)).sum()),
                    "b": int((b.mask[:, :, None] & np.isnan(b.scores)).sum())},
    }


def main(argv: list[str] | None = None) -> dict:
    import numpy as np
    import steerkit
    from steerkit.plugin import lookup
    from rich.console import Console
    from rich.table import Table
    from steerkit_plugins import attribute_eval as ae
    from steerkit_plugins.attribute_datasets import load_helpsteer2
    from steerkit_plugins.fewshot import ExampleIndex, sentence_transformer_encoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=20, help="HelpSteer2 eval scenarios (default 20)")
    ap.add_argument("--dtypes", nargs=2, default=["float32", "bfloat16"], metavar=("BASE", "OTHER"))
    ap.add_argument("--strategy", default="comparative-regression")
    ap.add_argument("--k", type=int, default=None, help="in-context examples (default: the strategy's)")
    ap.add_argument("--model", default=None, help="default: the embedded model")
    ap.add_argument("--data", default=None, help="helpsteer2 folder (default: $STEERKIT_DATA or ../shared/data)")
    ap.add_argument("--cache", default="results/bench_dtype.sqlite3", help="score cache shared by both dtypes")
    ap.add_argument("--out", default="results")
    ap.add_argument("--minutes", type=float, default=None,
                    help="start no new scenario after this many minutes; compare the pairs done")
    args = ap.parse_args(argv)

    console = Console(width=None if sys.stdout.isatty() else 140)  # readable in a log too
    full = load_helpsteer2(path=args.data)
    data = full.head(args.limit)
    scenarios, attributes = data.scenarios, data.attributes
    encoder = sentence_transformer_encoder()
    options: dict = {"example_pool": ExampleIndex(full.info["pool"], encoder=encoder)}
    if args.k is not None:
        options["k"] = args.k
    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    sampled = ae.resolve_targets(data, "sampled")

    # Scenario by scenario, both dtypes in turn: a run cut short by --minutes (or an interrupt,
    # whose answered prompts the cache keeps) still leaves matched pairs to compare.
    backends = {dt: lookup("backend", "transformers")(model=args.model, dtype=dt) for dt in args.dtypes}
    steerers = {dt: steerkit.Steerer(strategy=args.strategy, backend=b, cache=args.cache, progress=False, **options)
                for dt, b in backends.items()}
    runs: dict[str, dict] = {}
    for dt, b in backends.items():
        t0 = time.perf_counter()
        b.hf_model  # load outside the timings
        runs[dt] = {"backend_fingerprint": b.fingerprint(), "load_seconds": time.perf_counter() - t0,
                    "seconds": 0.0, "model_calls": 0, "cache_hits": 0, "prompt_tokens": 0, "output_tokens": 0,
                    "cold_scenarios": 0}
    console.rule(f"[bold]{' vs '.join(args.dtypes)}[/]: up to {len(scenarios)} scenarios x {len(attributes)} attributes")
    started = time.perf_counter()
    done, failed = [], []
    for i, sc in enumerate(scenarios):
        if args.minutes is not None and time.perf_counter() - started > 60 * args.minutes:
            console.print(f"[yellow]--minutes {args.minutes:g} reached: stopping after {len(done)} scenarios[/]")
            break
        ok = True
        for dt in args.dtypes:
            t0 = time.perf_counter()
            try:
                tab = steerers[dt].score([sc], attributes)
            except steerkit.ModelOutputError as exc:  # a reply that failed its schema: report, go on
                failed.append({"index": i, "dtype": dt, "error": str(exc)[:300]})
                ok = False
                continue
            r = runs[dt]
            r["seconds"] += time.perf_counter() - t0
            for key in ("model_calls", "cache_hits", "prompt_tokens", "output_tokens"):
                r[key] += getattr(tab, key)
            r["cold_scenarios"] += int(tab.model_calls > 0)  # a resumed run reads earlier ones from the cache
        if ok:
            done.append(i)
        console.print(f"scenario {i}: " + ", ".join(
            f"{dt} {runs[dt]['seconds']:.0f}s total" for dt in args.dtypes) + ("" if ok else " (failed in one dtype)"))
    if not done:
        raise SystemExit("no scenario was scored in both dtypes: raise --minutes")
    scenarios = [scenarios[i] for i in done]
    gold = steerkit.ScoreTable.from_labels(scenarios, attributes)
    tables = {}
    for dt in args.dtypes:
        table = steerers[dt].score(scenarios, attributes)  # all from the cache now
        report = ae.evaluate_table(table, gold, sampled)
        tables[dt] = table
        r = runs[dt]
        r.update({
            "seconds_per_scenario": r["seconds"] / r["cold_scenarios"] if r["cold_scenarios"] else None,
            "cold": r["cold_scenarios"] == len(scenarios),
            "accuracy_sampled": ae.num(report.mean), "accuracy_sampled_se": ae.num(report.se),
            "missing_scores": int((table.mask[:, :, None] & np.isnan(table.scores)).sum()),
        })
        steerers[dt].close()
        backends[dt].close()

    base, other = args.dtypes
    diffs = score_diffs(tables[base], tables[other])
    acc_gap = 100 * (runs[other]["accuracy_sampled"] - runs[base]["accuracy_sampled"])
    # how often the two dtypes pick the same response for each sampled target
    same = []
    for t in sampled.values():
        a, b = tables[base].align(t).indices, tables[other].align(t).indices
        same.append(float((a == b).mean()))
    results = {
        "cpu": cpu_name(), "cpu_count": os.cpu_count(),
        "scenarios": len(scenarios), "scenario_indices": done, "requested": args.limit, "failed": failed,
        "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
        "attributes": attributes, "strategy": args.strategy,
        "model": args.model or "embedded", "cache": args.cache, "runs": runs,
        "score_diff_points": diffs, "accuracy_gap_points": acc_gap,
        "same_selection_share_sampled": float(np.mean(same)),
        "goal_accuracy_within_1_point": abs(acc_gap) <= TARGET_ACCURACY_POINTS,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_dtype.json"
    path.write_text(json.dumps(results, indent=2))

    t = Table(title=f"{args.strategy}: {other} vs {base} on {len(scenarios)} HelpSteer2 scenarios ({results['cpu']})")
    t.add_column("measurement")
    t.add_column(base, justify="right")
    t.add_column(other, justify="right")
    for dtype in (base, other):
        r = runs[dtype]
        r["label"] = ("cached" if not r["cold_scenarios"] else f"{r['seconds_per_scenario']:.1f}"
                      + ("" if r["cold"] else f" ({r['cold_scenarios']} of {len(scenarios)} run, rest cached)"))
    t.add_row("s / scenario", runs[base]["label"], runs[other]["label"])
    t.add_row("accuracy, 50 sampled targets", f"{100 * runs[base]['accuracy_sampled']:.1f}%",
              f"{100 * runs[other]['accuracy_sampled']:.1f}%")
    t.add_row("scores missing", str(runs[base]["missing_scores"]), str(runs[other]["missing_scores"]))
    console.print(t)
    console.print(
        f"score difference {other} - {base} over {diffs['n']} scores (points of 100): mean {diffs['mean']:+.2f}, "
        f"|d| median {diffs['median_abs']:.1f}, p90 {diffs['p90_abs']:.1f}, max {diffs['max_abs']:.1f}; "
        f"identical {100 * diffs['identical_share']:.0f}%, within 5 points {100 * diffs['within_5_points_share']:.0f}%, "
        f"pearson {diffs['pearson']}")
    console.print(f"|d| histogram: {diffs['abs_histogram']}")
    console.print(f"accuracy gap {acc_gap:+.2f} points (goal within {TARGET_ACCURACY_POINTS:g}): "
                  f"{'met' if results['goal_accuracy_within_1_point'] else 'missed'}; "
                  f"same selection on {100 * results['same_selection_share_sampled']:.1f}% of (target, scenario)")
    console.print(f"results: {path}")
    return results


if __name__ == "__main__":
    main()
