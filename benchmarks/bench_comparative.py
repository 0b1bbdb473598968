"""Benchmark: few-shot comparative regression on HelpSteer2 with the embedded model.

On N HelpSteer2 eval scenarios x 5 attributes (default N = 50), same machine, same run:

1. steerkit's batched + cached path (``Steerer.score`` on all scenarios and attributes at once,
   fresh temp cache) vs the same strategy one scenario and one attribute at a time with
   batching off (``batch_size=1``) and no cache: seconds per scenario and the ratio. The slow
   path runs on the first ``--sequential`` scenarios (default: all N) and is reported per
   scenario, like the batched path.
2. Re-alignment from the cache: the scores are read back (model calls must be 0) and aligned to
   all 3,125 HelpSteer2 targets (every full vector over the 5 label levels); wall time. The same
   alignment is also timed on a table of the shape of the whole eval split (359 scenarios,
   using the gold labels as scores), since scoring all 359 on a CPU takes hours.
3. Warm rerun of the batched path with the cache full: model calls must be 0.

Prints a table and writes JSON to ``results/bench_comparative.json``.

    python benchmarks/bench_comparative.py                     # 50 scenarios
    python benchmarks/bench_comparative.py --scenarios 4 --k 1 # a quick run on a busy CPU
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> dict:
    import numpy as np
    import steerkit
    from rich.console import Console
    from rich.table import Table
    from steerkit_plugins import alignment_eval as ae
    from steerkit_plugins.datasets_attributes import load_helpsteer2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=50, help="HelpSteer2 eval scenarios")
    ap.add_argument("--sequential", type=int, default=None, help="scenarios for the one-at-a-time path (default: all)")
    ap.add_argument("--strategy", default="comparative-regression")
    ap.add_argument("--k", type=int, default=None, help="in-context examples (default: the strategy's, 5)")
    ap.add_argument("--batch-size", type=int, default=None, help="batched path: prompts per batch (default: the backend's)")
    ap.add_argument("--backend", default="transformers")
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default=None, help="helpsteer2 folder (default: $STEERKIT_DATA or ../shared/data)")
    ap.add_argument("--out", default="results")
    args = ap.parse_args(argv)

    console = Console()
    full = load_helpsteer2(path=args.data)
    data = full.head(args.scenarios)
    scenarios, attributes = data.scenarios, data.attributes
    n_seq = len(scenarios) if args.sequential is None else min(args.sequential, len(scenarios))
    options: dict = {"example_pool": full.info["pool"]}
    if args.k is not None:
        options["k"] = args.k

    backend = steerkit.lookup("backend", args.backend)(model=args.model)
    t0 = time.perf_counter()
    for engine in ("hf_model", "llm"):  # load once, outside the timings (transformers / vllm)
        if hasattr(type(backend), engine):
            getattr(backend, engine)
    load_s = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="bench_comparative_"))
    cache_path = tmp / "scores.sqlite3"
    console.rule(f"[bold]bench_comparative[/]: {args.strategy} on {backend.model_name}, "
                 f"{len(scenarios)} scenarios x {len(attributes)} attributes, cache {cache_path}")

    def steerer(**kw):
        return steerkit.Steerer(strategy=args.strategy, backend=backend, progress=True, **options, **kw)

    # warm the few-shot index (embeds the pool once and keeps it on disk) outside the timings
    warm = steerer(cache=False)
    idx = getattr(warm.strategy, "index", None)
    if idx is not None:
        t0 = time.perf_counter()
        idx.matrix
        console.print(f"example index ready in {time.perf_counter() - t0:.1f}s ({len(idx.pool)} examples)")

    # (1a) batched + cached
    batched = steerer(cache=cache_path, batch_size=args.batch_size)
    console.print("[bold]1. batched + cached path[/]")
    t0 = time.perf_counter()
    table = batched.score(scenarios, attributes)
    batched_s = time.perf_counter() - t0
    batched_calls = table.model_calls

    # (1b) one scenario and one attribute at a time, batch_size=1, no cache
    console.print(f"[bold]1. one at a time[/] (batch_size=1, no cache) on {n_seq} scenarios")
    seq = steerer(cache=False, batch_size=1)
    seq.progress = False
    seq_calls = 0
    t0 = time.perf_counter()
    from rich.progress import track

    for s in track(scenarios[:n_seq], description="one at a time", console=console):
        for a in attributes:
            t = seq.score([s], [a])
            seq_calls += t.model_calls
    seq_s = time.perf_counter() - t0

    # (2) re-alignment from the cache
    console.print("[bold]2. re-alignment from the cache[/]")
    reader = steerer(cache=cache_path)
    t0 = time.perf_counter()
    cached = reader.score(scenarios, attributes)
    read_s = time.perf_counter() - t0
    targets = ae.resolve_targets(full, "all")
    tlist = list(targets.values())
    t0 = time.perf_counter()
    cached.align_many(tlist)
    realign_s = time.perf_counter() - t0
    gold_small = steerkit.ScoreTable.from_labels(scenarios, attributes)
    report = ae.evaluate_table(cached, gold_small, targets)
    sampled = ae.evaluate_table(cached, gold_small, ae.resolve_targets(full, "sampled"))
    big = steerkit.ScoreTable.from_labels(full.scenarios, attributes)
    t0 = time.perf_counter()
    big.align_many(tlist)
    realign_big_s = time.perf_counter() - t0

    # (3) warm rerun of (1a)
    console.print("[bold]3. warm rerun of the batched path[/]")
    rerun = steerer(cache=cache_path, batch_size=args.batch_size)
    t0 = time.perf_counter()
    again = rerun.score(scenarios, attributes)
    warm_s = time.perf_counter() - t0

    n = len(scenarios)
    per_batched, per_seq = batched_s / n, seq_s / max(1, n_seq)
    results = {
        "strategy": args.strategy, "strategy_fingerprint": batched.strategy.fingerprint(),
        "backend": backend.name, "model": backend.model_name, "load_seconds": load_s,
        "scenarios": n, "attributes": attributes, "sequential_scenarios": n_seq,
        "k": getattr(batched.strategy, "k", None), "batch_size": batched.last_run.batch_size if batched.last_run else None,
        "cache": str(cache_path),
        "batched": {"seconds": batched_s, "seconds_per_scenario": per_batched, "model_calls": batched_calls},
        "sequential": {"seconds": seq_s, "seconds_per_scenario": per_seq, "model_calls": seq_calls},
        "speedup_per_scenario": per_seq / per_batched if per_batched > 0 else None,
        "realign": {"targets": len(tlist), "scenarios": n, "read_scores_seconds": read_s,
                    "align_seconds": realign_s, "model_calls": cached.model_calls,
                    "cache_hits": cached.cache_hits,
                    "align_seconds_359_scenarios_label_table": realign_big_s},
        "warm_rerun": {"seconds": warm_s, "model_calls": again.model_calls, "cache_hits": again.cache_hits},
        "accuracy": {"all_targets_mean": ae._num(report.mean), "sampled_mean": ae._num(sampled.mean),
                     "sampled_by_n_attributes": {str(k): v for k, v in sampled.by_n_attributes().items()}},
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_comparative.json"
    path.write_text(json.dumps(results, indent=2))

    t = Table(title=f"{args.strategy} on {backend.model_name}: {n} HelpSteer2 scenarios x {len(attributes)} attributes")
    t.add_column("measurement")
    t.add_column("value", justify="right")
    t.add_column("model calls", justify="right")
    t.add_row("1. batched + cached: s / scenario", f"{per_batched:.2f}", str(batched_calls))
    t.add_row(f"1. one at a time, batch 1, no cache: s / scenario ({n_seq} sc.)", f"{per_seq:.2f}", str(seq_calls))
    t.add_row("1. speed-up per scenario", f"{results['speedup_per_scenario']:.2f}x", "")
    t.add_row(f"2. re-align {len(tlist)} targets x {n} scenarios from cache", f"{realign_s * 1000:.1f} ms", str(cached.model_calls))
    t.add_row(f"2. read {cached.cache_hits} cached scores", f"{read_s * 1000:.1f} ms", "")
    t.add_row(f"2. align {len(tlist)} targets x {len(full)} scenarios (label table)", f"{realign_big_s * 1000:.1f} ms", "0")
    t.add_row("3. warm rerun of the batched path", f"{warm_s:.2f} s", str(again.model_calls))
    t.add_row("accuracy, sampled targets (these scenarios)", f"{100 * sampled.mean:.1f}%", "")
    t.add_row("accuracy, all 3,125 targets (these scenarios)", f"{100 * report.mean:.1f}%", "")
    console.print(t)
    console.print(f"results: {path}")
    ok = cached.model_calls == 0 and again.model_calls == 0
    if not ok:
        console.print("[bold red]cached paths made model calls[/]")
    return results


if __name__ == "__main__":
    main()
