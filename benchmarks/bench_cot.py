"""Benchmark: zero-shot chain-of-thought (``cot``) on VK and OpinionQA with the embedded model.

Reports, per dataset: accuracy / class-balanced accuracy / macro-F1 of zero-shot CoT next to
the majority-class and random baselines; items per second batched vs one item at a time (and
the ratio); and the share of items whose free text had no parsable "Answer: <letter>" before
the constrained answer step. Prints a table and writes JSON to ``results/``.

    python benchmarks/bench_cot.py                       # 200 VK + 200 OpinionQA items
    python benchmarks/bench_cot.py --vk 20 --opinionqa 20 --sequential 4 --max-tokens 64

Every measurement uses a fresh cache, so timings are model work, not cache hits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> dict:
    import steerkit
    from rich.console import Console
    from rich.table import Table
    from steerkit_plugins.perspective_eval import evaluate_choice_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vk", type=int, default=200, help="VK items (0 to skip)")
    ap.add_argument("--opinionqa", type=int, default=200, help="OpinionQA items (0 to skip)")
    ap.add_argument("--sequential", type=int, default=32, help="subset timed batched and one at a time, per dataset")
    ap.add_argument("--max-tokens", type=int, default=128, help="reasoning length limit")
    ap.add_argument("--batch-size", type=int, default=None, help="items per batch (default: the backend's preferred size)")
    ap.add_argument("--backend", default="transformers")
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default=None, help="data folder (default: $STEERKIT_DATA or ../shared/data)")
    ap.add_argument("--out", default="results")
    args = ap.parse_args(argv)

    console = Console()
    backend = steerkit.plugin.lookup("backend", args.backend)(model=args.model)
    t0 = time.perf_counter()
    for engine in ("hf_model", "llm"):  # load once, outside the timings (transformers / vllm)
        if hasattr(type(backend), engine):
            getattr(backend, engine)
    load_s = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="bench_cot_"))
    out: dict = {"model": backend.model_name, "backend": args.backend, "max_tokens": args.max_tokens,
                 "batch_size": args.batch_size, "load_seconds": load_s, "datasets": {}}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the counted OpinionQA skips are reported below
        datasets = [(n, steerkit.plugin.lookup("dataset", n)(path=args.data, limit=k)) for n, k in
                    (("vk", args.vk), ("opinionqa", args.opinionqa)) if k > 0]

    for name, ds in datasets:
        console.rule(f"{name}: {len(ds)} items")
        steerer = steerkit.Steerer("cot", backend=backend, cache=tmp / f"{name}_batched.sqlite3",
                                   batch_size=args.batch_size, progress=True, max_tokens=args.max_tokens)
        rep = evaluate_choice_dataset(steerer, ds, out_dir=None, print_table=False)
        batched_ips = rep["items_per_second"]

        # throughput ratio on the same subset, back to back (fresh caches): batched vs one at a time
        seq = ds.head(min(args.sequential, len(ds)))
        sub = steerkit.Steerer("cot", backend=backend, cache=tmp / f"{name}_subset.sqlite3",
                               batch_size=args.batch_size, progress=False, max_tokens=args.max_tokens)
        t0 = time.perf_counter()
        sub.select_many(seq.scenarios, seq.perspectives)
        sub_s = time.perf_counter() - t0
        one = steerkit.Steerer("cot", backend=backend, cache=tmp / f"{name}_sequential.sqlite3",
                               batch_size=1, progress=False, max_tokens=args.max_tokens)
        t0 = time.perf_counter()
        for s, p in zip(seq.scenarios, seq.perspectives):
            one.select_many([s], [p])
        seq_s = time.perf_counter() - t0
        seq_ips = len(seq) / seq_s if seq_s > 0 else None
        sub_ips = len(seq) / sub_s if sub_s > 0 else None
        out["datasets"][name] = {
            "n": rep["n"], "skipped": ds.info.get("skipped", {}),
            "cot": rep["metrics"], "baselines": rep["baselines"],
            "batched_items_per_second": batched_ips, "batched_seconds": rep["seconds"],
            "sequential_items": len(seq), "subset_batched_items_per_second": sub_ips,
            "sequential_items_per_second": seq_ips,
            "speedup_batched_vs_sequential": (sub_ips / seq_ips) if sub_ips and seq_ips else None,
            "no_parsable_answer_share": rep["no_parsable_answer_share"],
            "model_calls": rep["model_calls"],
            "predictions": [{"id": it["id"], "gold": it["gold"], "pred": it["pred"]} for it in rep["items"]],
        }

    pct = lambda x: "-" if x is None else f"{100 * x:.1f}"  # noqa: E731
    table = Table(title=f"zero-shot CoT · {backend.model_name} · max {args.max_tokens} reasoning tokens")
    for col in ("dataset", "method", "n", "Acc", "BAcc", "MaF", "extra"):
        table.add_column(col, justify="left" if col in ("dataset", "method", "extra") else "right")
    for name, d in out["datasets"].items():
        for method, m in (("zero-shot CoT", d["cot"]), ("majority", d["baselines"]["majority"]),
                          ("random", d["baselines"]["random"])):
            extra = ""
            if "binary" in m:
                extra = f"binary Acc {pct(m['binary']['accuracy'])} MaF {pct(m['binary']['macro_f1'])}"
            if m.get("js_distance") is not None:
                extra = f"JSD {m['js_distance']:.3f}"
            table.add_row(name, method, str(m["n"]), pct(m["accuracy"]), pct(m["balanced_accuracy"]),
                          pct(m["macro_f1"]), extra)
    console.print(table)
    speed = Table(title="throughput and answer format")
    for col in ("dataset", "batched items/s (all)", "subset: batched", "subset: one at a time", "ratio",
                "no parsable answer"):
        speed.add_column(col, justify="right")
    for name, d in out["datasets"].items():
        ratio = d["speedup_batched_vs_sequential"]
        speed.add_row(name, f"{d['batched_items_per_second']:.3f}",
                      f"{d['subset_batched_items_per_second']:.3f} ({d['sequential_items']} items)",
                      f"{d['sequential_items_per_second']:.3f}",
                      "-" if ratio is None else f"{ratio:.2f}x", f"{pct(d['no_parsable_answer_share'])}%")
    console.print(speed)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench_cot_{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=1))
    console.print(f"results: {path}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
