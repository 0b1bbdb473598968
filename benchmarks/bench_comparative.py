"""Benchmark: few-shot comparative regression on HelpSteer2 with the embedded model.

On N HelpSteer2 eval scenarios x 5 attributes (default N = 50), same machine, same run:

1. Scoring, seconds per scenario:
   a. steerkit's batched + cached path: ``Steerer.score`` on all scenarios and attributes at
      once into a fresh temporary score cache;
   b. the same strategy one scenario and one attribute at a time, ``batch_size=1``, no score
      cache (on the first ``--sequential`` scenarios);
   c. as b, and also re-embedding the example pool on every call, as the research code does
      ("similarity re-computation per call", papers.md section 2) (first ``--research``
      scenarios).
2. Re-alignment from the cache to all 3,125 HelpSteer2 targets (every full vector over the 5
   label levels): (a) the N scored scenarios; (b) all 359 eval scenarios, from a cache filled
   by a label-echo attribute strategy (scoring all 359 with the model takes hours on a CPU; the
   read and align path is the same). Wall time includes reading the cache; model calls must
   be 0.
3. Warm rerun of 1a with the cache full: model calls must be 0.
4. Serving HelpSteer2's own 52 targets (50 sampled + all-high + all-low) on these scenarios:
   steerkit scores each (scenario, attribute) once and aligns every target from the cache;
   without a cache every target re-scores its attributes. Model calls are counted exactly;
   the no-cache seconds are projected from 1b's measured seconds per call (marked as such).

Prints a table with the targets (>= 10x per scenario, < 1 s re-alignment, 0 model calls) and
writes JSON to ``results/bench_comparative.json``.

    python benchmarks/bench_comparative.py                      # 50 scenarios
    python benchmarks/bench_comparative.py --scenarios 4 --k 1  # a quick run on a busy CPU
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

TARGET_SPEEDUP = 10.0
TARGET_REALIGN_SECONDS = 1.0


def label_echo_strategy():
    """An attribute strategy whose 'scores' are the gold labels: fills a cache for the
    re-alignment timing without a model (the read path is the one every strategy uses)."""
    import steerkit

    class LabelEcho(steerkit.AttributeStrategy):
        name = "label-echo"

        def score_jobs(self, run, jobs):
            return [[steerkit.ResponseScore(float(j.scenario.labels[r][j.attribute])) for r in j.responses]
                    for j in jobs]

    return LabelEcho()


def main(argv: list[str] | None = None) -> dict:
    import steerkit
    from rich.console import Console
    from rich.progress import track
    from rich.table import Table
    from steerkit_plugins import alignment_eval as ae
    from steerkit_plugins.datasets_attributes import load_helpsteer2
    from steerkit_plugins.fewshot import ExampleIndex, sentence_transformer_encoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=50, help="HelpSteer2 eval scenarios")
    ap.add_argument("--sequential", type=int, default=None, help="scenarios for the one-at-a-time path 1b (default: all)")
    ap.add_argument("--research", type=int, default=2, help="scenarios for the research-style path 1c (0: skip)")
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
    n_research = min(args.research, len(scenarios))
    pool = full.info["pool"]
    encoder = sentence_transformer_encoder()
    options: dict = {"example_pool": ExampleIndex(pool, encoder=encoder)}
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
        kw = {"progress": True, **options, **kw}
        return steerkit.Steerer(strategy=args.strategy, backend=backend, **kw)

    # warm the few-shot index (embeds the pool once, kept on disk) and the grammar outside the timings
    warm = steerer(cache=False)
    idx = getattr(warm.strategy, "index", None)
    if idx is not None:
        t0 = time.perf_counter()
        idx.matrix
        console.print(f"example index ready in {time.perf_counter() - t0:.1f}s ({len(idx.pool)} examples)")

    # (1a) batched + cached
    batched = steerer(cache=cache_path, batch_size=args.batch_size)
    console.print("[bold]1a. batched + cached path[/]")
    t0 = time.perf_counter()
    table = batched.score(scenarios, attributes)
    batched_s = time.perf_counter() - t0
    batched_calls = table.model_calls

    # (1b) one scenario and one attribute at a time, batch_size=1, no cache
    console.print(f"[bold]1b. one at a time[/] (batch_size=1, no cache) on {n_seq} scenarios")
    seq = steerer(cache=False, batch_size=1, progress=False)
    seq_calls = 0
    t0 = time.perf_counter()
    for s in track(scenarios[:n_seq], description="one at a time", console=console):
        for a in attributes:
            seq_calls += seq.score([s], [a]).model_calls
    seq_s = time.perf_counter() - t0

    # (1c) research-style: as 1b, and the pool re-embedded on every call
    research_s, research_calls = 0.0, 0
    if n_research:
        console.print(f"[bold]1c. research-style[/] (1b + pool re-embedded per call) on {n_research} scenarios")
        t0 = time.perf_counter()
        for s in track(scenarios[:n_research], description="research-style", console=console):
            for a in attributes:
                fresh = ExampleIndex(pool, encoder=encoder, cache_dir=tempfile.mkdtemp(dir=tmp))
                st = steerer(cache=False, batch_size=1, progress=False, example_pool=fresh)
                research_calls += st.score([s], [a]).model_calls
        research_s = time.perf_counter() - t0

    # (2a) re-alignment of the scored scenarios from the cache
    console.print("[bold]2. re-alignment from the cache[/]")
    targets = ae.resolve_targets(full, "all")
    tlist = list(targets.values())
    reader = steerer(cache=cache_path)
    t0 = time.perf_counter()
    cached = reader.score(scenarios, attributes)
    cached.align_many(tlist)
    realign_s = time.perf_counter() - t0
    gold_small = steerkit.ScoreTable.from_labels(scenarios, attributes)
    report = ae.evaluate_table(cached, gold_small, targets)
    sampled = ae.evaluate_table(cached, gold_small, ae.resolve_targets(full, "sampled"))

    # (2b) all eval scenarios, from a cache filled by the label-echo strategy
    echo_cache = tmp / "label_echo.sqlite3"
    steerkit.Steerer(strategy=label_echo_strategy(), backend=backend, cache=echo_cache,
                     progress=False).score(full.scenarios, attributes)
    echo_reader = steerkit.Steerer(strategy=label_echo_strategy(), backend=backend, cache=echo_cache, progress=False)
    t0 = time.perf_counter()
    big = echo_reader.score(full.scenarios, attributes)
    big.align_many(tlist)
    realign_big_s = time.perf_counter() - t0

    # (3) warm rerun of (1a)
    console.print("[bold]3. warm rerun of the batched path[/]")
    rerun = steerer(cache=cache_path, batch_size=args.batch_size)
    t0 = time.perf_counter()
    again = rerun.score(scenarios, attributes)
    warm_s = time.perf_counter() - t0

    # (4) serving the dataset's own targets
    served = list(full.targets.values())
    t0 = time.perf_counter()
    for t in served:
        cached.align(t)
    serve_align_s = time.perf_counter() - t0
    n = len(scenarios)
    per_call_seq = seq_s / max(1, seq_calls)
    nocache_calls_per_scenario = sum(len(t.attributes) for t in served)  # one comparative prompt per attribute

    per_batched, per_seq = batched_s / n, seq_s / max(1, n_seq)
    per_research = research_s / n_research if n_research else None
    serve_steerkit_per = (batched_s + serve_align_s) / n
    serve_nocache_per = nocache_calls_per_scenario * per_call_seq
    speedup = per_seq / per_batched if per_batched > 0 else None
    results = {
        "strategy": args.strategy, "strategy_fingerprint": batched.strategy.fingerprint(),
        "backend": backend.name, "model": backend.model_name, "load_seconds": load_s,
        "scenarios": n, "attributes": attributes, "sequential_scenarios": n_seq, "research_scenarios": n_research,
        "k": getattr(batched.strategy, "k", None), "batch_size": batched.last_run.batch_size if batched.last_run else None,
        "cache": str(cache_path),
        "batched": {"seconds": batched_s, "seconds_per_scenario": per_batched, "model_calls": batched_calls},
        "sequential": {"seconds": seq_s, "seconds_per_scenario": per_seq, "model_calls": seq_calls,
                       "seconds_per_call": per_call_seq},
        "research_style": {"seconds": research_s, "seconds_per_scenario": per_research, "model_calls": research_calls},
        "speedup_per_scenario": speedup,
        "speedup_vs_research_style": per_research / per_batched if per_research and per_batched > 0 else None,
        "realign": {"targets": len(tlist), "scenarios": n, "seconds": realign_s, "model_calls": cached.model_calls,
                    "cache_hits": cached.cache_hits},
        "realign_all_eval": {"targets": len(tlist), "scenarios": len(full), "seconds": realign_big_s,
                             "model_calls": big.model_calls, "cache_hits": big.cache_hits,
                             "note": "cache filled by a label-echo strategy; same read and align path"},
        "warm_rerun": {"seconds": warm_s, "model_calls": again.model_calls, "cache_hits": again.cache_hits},
        "serve_dataset_targets": {
            "targets": len(served), "steerkit_seconds_per_scenario": serve_steerkit_per,
            "steerkit_model_calls_per_scenario": batched_calls / n,
            "nocache_model_calls_per_scenario": nocache_calls_per_scenario,
            "nocache_seconds_per_scenario_projected": serve_nocache_per,
            "ratio_projected": serve_nocache_per / serve_steerkit_per if serve_steerkit_per > 0 else None,
        },
        "accuracy": {"all_targets_mean": ae.num(report.mean), "sampled_mean": ae.num(sampled.mean),
                     "sampled_by_n_attributes": {str(k): v for k, v in sampled.by_n_attributes().items()}},
        "targets_met": {
            "speedup_per_scenario_ge_10x": bool(speedup is not None and speedup >= TARGET_SPEEDUP),
            "realign_all_eval_lt_1s": realign_big_s < TARGET_REALIGN_SECONDS,
            "zero_model_calls_from_cache": cached.model_calls == 0 and big.model_calls == 0 and again.model_calls == 0,
        },
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_comparative.json"
    path.write_text(json.dumps(results, indent=2))

    def ok(flag: bool) -> str:
        return "[green]met[/]" if flag else "[red]missed[/]"

    met = results["targets_met"]
    t = Table(title=f"{args.strategy} on {backend.model_name}: {n} HelpSteer2 scenarios x {len(attributes)} attributes")
    for col, just in (("measurement", "left"), ("value", "right"), ("model calls", "right"), ("target", "left")):
        t.add_column(col, justify=just)
    t.add_row("1a. batched + cached: s / scenario", f"{per_batched:.2f}", str(batched_calls), "")
    t.add_row(f"1b. one at a time, batch 1, no cache: s / scenario ({n_seq} sc.)", f"{per_seq:.2f}", str(seq_calls), "")
    t.add_row("    speed-up per scenario (1b / 1a)", f"{speedup:.2f}x", "", f">= {TARGET_SPEEDUP:g}x: {ok(met['speedup_per_scenario_ge_10x'])}")
    if n_research:
        t.add_row(f"1c. research-style, pool re-embedded per call: s / scenario ({n_research} sc.)",
                  f"{per_research:.2f}", str(research_calls), "")
        t.add_row("    speed-up per scenario (1c / 1a)", f"{results['speedup_vs_research_style']:.2f}x", "", "")
    t.add_row(f"2a. re-align {len(tlist)} targets x {n} scenarios from cache", f"{realign_s * 1000:.1f} ms",
              str(cached.model_calls), "")
    t.add_row(f"2b. re-align {len(tlist)} targets x {len(full)} scenarios from cache", f"{realign_big_s * 1000:.1f} ms",
              str(big.model_calls), f"< {TARGET_REALIGN_SECONDS:g} s: {ok(met['realign_all_eval_lt_1s'])}")
    t.add_row("3. warm rerun of the batched path", f"{warm_s:.2f} s", str(again.model_calls),
              f"0 calls: {ok(met['zero_model_calls_from_cache'])}")
    t.add_row(f"4. serve {len(served)} dataset targets: steerkit s / scenario", f"{serve_steerkit_per:.2f}",
              f"{batched_calls / n:g} / sc.", "")
    t.add_row(f"4. serve {len(served)} dataset targets: no cache s / scenario (projected)", f"{serve_nocache_per:.1f}",
              f"{nocache_calls_per_scenario} / sc.", f"ratio {results['serve_dataset_targets']['ratio_projected']:.1f}x")
    t.add_row("accuracy, sampled targets (these scenarios)", f"{100 * sampled.mean:.1f}%", "", "")
    t.add_row("accuracy, all 3,125 targets (these scenarios)", f"{100 * report.mean:.1f}%", "", "")
    console.print(t)
    console.print(f"results: {path}")
    return results


if __name__ == "__main__":
    main()
