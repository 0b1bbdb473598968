"""Benchmark: trained checkpoints vs zero-shot CoT (issue 10; Zhang, McKeown, Muresan 2025).

On one dataset (VK by default) and one preset (``cpu-small``: the embedded model on a CPU), with
the trainer's seeded split grouped by situation (question for OpinionQA):
- zero-shot CoT (the ``cot`` strategy) on the validation split;
- ``steerkit train`` sft, cot-sft, synthetic-cot (STaR) and grpo (from the SFT run), each in its
  own process (training minutes and that process's peak memory from ``os.wait4``), then each
  checkpoint answering the validation split through the ``checkpoint`` strategy;
- accuracy, balanced accuracy, macro-F1, the paper's binary and Modular Pluralism's binary_mp,
  the majority/random baselines, and McNemar's test between SFT and GRPO.
Prints a table and writes JSON to ``results/``. Finished runs in the runs folder are reused (a
rerun only evaluates; answers are in the default score cache, where the trainer's own
validation through the checkpoint strategy already put them), so an interrupted benchmark resumes.

    python benchmarks/bench_train.py --smoke                       # minutes: plumbing only
    python benchmarks/bench_train.py                               # ~20-45 min on 2 cores (capped sizes)
    python benchmarks/bench_train.py --train-items 800 --val-items 300 --methods sft,grpo

Cost on 2 CPU cores (measured): an SFT step of 8 answer-only items takes ~11 s on an idle
machine and ~30 s on a shared, busy one, so the defaults (160 training items = 20 steps per
SFT-type method, 48 GRPO prompts x 4 rollouts, 120 validation items, 64-token reasoning) take
about 20-45 minutes; training on every item (``--train-items 2718``) takes hours.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

METHODS = ("sft", "cot-sft", "synthetic-cot", "grpo")


def train(method: str, args: argparse.Namespace, runs: Path, sets: list[str]) -> dict[str, Any]:
    """Run ``steerkit train`` in a child process; its wall time and peak RSS (a finished run in
    ``runs`` is reused with the numbers measured when it was trained)."""
    out = runs / method
    timing = runs / f"{method}.timing.json"
    cmd = [str(Path(sys.executable).parent / "steerkit"), "train", method, "--dataset", args.dataset,
           "--preset", args.preset, "--out", str(out)]
    if args.data:
        cmd += ["--data", args.data]
    if args.model and method != "grpo":
        cmd += ["--model", args.model]
    if method == "grpo" and args.grpo_init == "sft":
        cmd += ["--init", str(runs / "sft")]
    for s in sets:
        cmd += ["--set", s]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{method}: `steerkit train` exited with {code}")
    measured = {"train_minutes": seconds / 60, "peak_rss_mb": usage.ru_maxrss / 1024, "command": cmd}
    manifest = json.loads((out / "steerkit_manifest.json").read_text())
    if timing.exists() and seconds < 60 and json.loads(timing.read_text()).get("created") == manifest.get("created"):
        measured = json.loads(timing.read_text())  # reused finished run: keep its training numbers
        measured["reused"] = True
    else:
        timing.write_text(json.dumps({**measured, "created": manifest.get("created")}))
    return {**measured, "manifest": manifest}


def evaluate(steerer: Any, val: list, perspective_metrics: Any, task: str) -> dict[str, Any]:
    started = time.perf_counter()
    sels = steerer.select_many([e.scenario for e in val], [e.perspective for e in val])
    gold, pred = [e.gold for e in val], [s.index for s in sels]
    out = perspective_metrics.choice_metrics(gold, pred)
    if task == "vk":
        out["binary"] = perspective_metrics.vk_binary_metrics(gold, pred)
        out["binary_mp"] = perspective_metrics.vk_binary_mp_metrics(gold, pred)
    out.update(pred=pred, eval_seconds=time.perf_counter() - started, model_calls=steerer.model_calls)
    return out


def main(argv: list[str] | None = None) -> dict:
    import resource

    import steerkit
    from rich.console import Console
    from rich.table import Table
    from steerkit_plugins import perspective_metrics
    from steerkit_plugins.trainer import Trainer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="vk", help="vk or opinionqa (cot-sft needs rationales: VK only by default)")
    ap.add_argument("--data", default=None, help="data folder (default: $STEERKIT_DATA or ../shared/data)")
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--model", default=None, help="base model (default: the embedded one)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    ap.add_argument("--train-items", type=int, default=160, help="training items per method (the trainer's max_train_items)")
    ap.add_argument("--grpo-items", type=int, default=48, help="GRPO prompts (each sampled num_generations times)")
    ap.add_argument("--val-items", type=int, default=120, help="validation items (the trainer's max_val_items)")
    ap.add_argument("--max-tokens", type=int, default=64, help="reasoning length of CoT models and zero-shot CoT")
    ap.add_argument("--grpo-init", choices=("sft", "base"), default="sft", help="GRPO starts from the SFT run or the base")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="extra trainer override for every method (e.g. learning_rate=1e-5)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the plumbing in minutes, no conclusions")
    ap.add_argument("--runs", default=None, help="checkpoint folder (default: results/bench_train/DATASET-PRESET-SIZES)")
    ap.add_argument("--out", default="results")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        ap.error(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    if "grpo" in methods and args.grpo_init == "sft" and "sft" not in methods:
        methods.insert(0, "sft")
    if args.smoke:
        args.train_items, args.grpo_items, args.val_items, args.max_tokens = 16, 8, 12, 24
    # one runs folder per configuration: a rerun with other sizes trains anew instead of being refused
    tag = (f"{args.dataset}-{args.preset}" + ("-smoke" if args.smoke else "")
           + f"-t{args.train_items}-g{args.grpo_items}-v{args.val_items}-m{args.max_tokens}")
    runs = Path(args.runs or Path(args.out) / "bench_train" / tag)
    runs.mkdir(parents=True, exist_ok=True)
    console = Console(width=160)  # the table is wide; a log file must not truncate it

    common = [f"max_val_items={args.val_items}", f"eval_max_tokens={args.max_tokens}", *args.sets]
    per_method = {m: [f"max_train_items={args.grpo_items if m == 'grpo' else args.train_items}", *common]
                  for m in methods}
    if "grpo" in methods:
        per_method["grpo"].append(f"max_completion_length={args.max_tokens}")
    if "synthetic-cot" in methods:  # the STaR teacher writes rationales as long as the models reason
        per_method["synthetic-cot"].append(f"teacher_max_tokens={args.max_tokens}")
    if args.smoke:
        for m in methods:
            per_method[m] += ["max_steps=2", "save_steps=1"]

    # the validation split every method shares (the trainer's own, grouped and seeded)
    plan = Trainer("sft", dataset=args.dataset, data=args.data, out=runs / "sft", preset=args.preset,
                   model=args.model, sets=per_method.get("sft", common)).plan()
    val, task = plan.split.val, plan.task
    gold = [e.gold for e in val]
    # the default score cache: the trainer validates each run through the checkpoint strategy on
    # the same items there, so the checkpoints' answers below are cache hits, not a second pass
    cache = steerkit.plugin.ScoreCache()
    result: dict[str, Any] = {
        "dataset": args.dataset, "preset": args.preset, "task": task, "split": plan.split.info,
        "n_val": len(val), "max_tokens": args.max_tokens, "smoke": args.smoke,
        "baselines": perspective_metrics.baseline_report(gold, [len(e.scenario.responses) for e in val], task=task),
        "methods": {},
    }

    console.print(f"[bold]zero-shot CoT[/] on {len(val)} validation items")
    with steerkit.Steerer(strategy="cot", backend="transformers", model=args.model, cache=cache,
                          max_tokens=args.max_tokens) as s:
        result["methods"]["zero-shot-cot"] = evaluate(s, val, perspective_metrics, task)

    for method in methods:
        if method == "cot-sft" and task != "vk":
            result["methods"][method] = {"skipped": "no default human rationales outside VK (pass --rationales to the trainer)"}
            continue
        trained = train(method, args, runs, per_method[method])
        manifest = trained.pop("manifest")
        with steerkit.Steerer(strategy="checkpoint", path=str(runs / method), cache=cache,
                              **({"max_tokens": args.max_tokens} if manifest["prompt_style"] == "cot" else {})) as s:
            scores = evaluate(s, val, perspective_metrics, task)
        split = manifest["dataset"]["split"]
        result["methods"][method] = {
            **scores, **trained, "prompt_style": manifest["prompt_style"],
            "n_train": split.get("n_train_used"), "trainer_val": manifest["metrics"]["val"],
            "rationales": manifest["dataset"].get("rationales"), "train_log": manifest.get("train_log"),
        }

    done = {m: r for m, r in result["methods"].items() if "pred" in r}
    if "sft" in done and "grpo" in done:
        right = {m: [p == g for p, g in zip(done[m]["pred"], gold)] for m in ("sft", "grpo")}
        result["mcnemar_sft_vs_grpo"] = perspective_metrics.mcnemar(right["sft"], right["grpo"])
    result["bench_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["score_cache"] = str(cache.path)
    cache.close()

    table = Table(title=f"{args.dataset} validation ({len(val)} items, split by {plan.split.info.get('group_by')}), "
                        f"{args.preset}, model {args.model or 'embedded'}")
    for col in ("method", "acc", "bacc", "macro-F1", "bin acc", "bin bacc", "bin F1", "bin_mp acc",
                "train items", "train min", "peak MB", "trainer acc"):
        table.add_column(col, justify="left" if col == "method" else "right")

    def pct(x: Any) -> str:
        return "-" if x is None or x != x else f"{100 * x:.1f}"

    rows = [(name, m) for name, m in result["baselines"].items()] + list(result["methods"].items())
    for name, r in rows:
        if "skipped" in r:
            table.add_row(name, *["-"] * 11)
            continue
        b, bmp = r.get("binary", {}), r.get("binary_mp", {})
        tv = r.get("trainer_val") or {}
        table.add_row(name, pct(r["accuracy"]), pct(r["balanced_accuracy"]), pct(r["macro_f1"]),
                      pct(b.get("accuracy")), pct(b.get("balanced_accuracy")), pct(b.get("macro_f1")),
                      pct(bmp.get("accuracy")), str(r.get("n_train") or "-"),
                      f"{r['train_minutes']:.1f}" if "train_minutes" in r else "-",
                      f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "-", pct(tv.get("accuracy")))
    console.print(table)
    if "mcnemar_sft_vs_grpo" in result:
        mc = result["mcnemar_sft_vs_grpo"]
        console.print(f"McNemar SFT vs GRPO: SFT-only right {mc['a_only']}, GRPO-only right {mc['b_only']}, "
                      f"p = {mc['p_value']:.3g} ({mc['method']})")
    path = Path(args.out) / f"bench_train-{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    console.print(f"results: {path} · checkpoints: {runs}")
    return result


if __name__ == "__main__":
    main()
