"""The JSON grammar's cost on the transformers backend: outlines' torch processor vs steerkit's eager one.

Each path runs in a fresh process (the cost that matters is per process: outlines' torch path
imports torch._dynamo and compiles llguidance's mask kernel on its first constrained call). Per
path: the first constrained generate of the process, a second identical one, and the mask step
alone at batch 5 (mean of 200 calls). Same greedy tokens on both paths, checked here.

    .venv/bin/python benchmarks/bench_grammar.py    # results/bench_grammar.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SCHEMA = {"type": "object", "properties": {"reasoning": {"type": "string", "maxLength": 200},
                                           "score": {"type": "integer", "minimum": 1, "maximum": 5}},
          "required": ["reasoning", "score"], "additionalProperties": False}
QUESTIONS = ["How do I boil an egg?", "Is it rude to leave a party early?", "What is a prime number?",
             "Should I learn Python or Rust first?", "Why is the sea salty?"]


def one_path(path: str, max_tokens: int) -> dict:
    """Runs in the child process: one path's timings and its texts."""
    import torch
    from transformers import LogitsProcessorList

    import steerkit
    from steerkit.plugin import Constraint

    backend = steerkit.plugin.lookup("backend", "transformers")()
    model, tok = backend.hf_model, backend.tokenizer
    t0 = time.perf_counter()
    proc = backend._processor(Constraint.json_schema(SCHEMA))
    if path == "outlines-torch":
        from outlines.backends.llguidance import LLGuidanceLogitsProcessor

        proc = LLGuidanceLogitsProcessor(proc.grammar, proc.llg_tokenizer, "torch")
    else:
        from steerkit_adapters.grammar import EagerLLGuidanceProcessor

        proc = EagerLLGuidanceProcessor.like(proc)
    build_s = time.perf_counter() - t0
    prompts = [backend.render([{"role": "user", "content": f"Rate an answer to: {q} Reply in JSON."}]) for q in QUESTIONS]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    runs, texts = [], []
    for _ in range(2):
        proc.reset()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False, temperature=None, top_p=None,
                                 top_k=None, pad_token_id=tok.pad_token_id, logits_processor=LogitsProcessorList([proc]))
        runs.append(time.perf_counter() - t0)
        texts = [tok.decode(r[enc["input_ids"].shape[1]:], skip_special_tokens=True) for r in out]
    logits = torch.randn(len(prompts), model.config.vocab_size)
    proc.reset()
    proc.process_logits(enc["input_ids"], logits.clone())  # sets up the matchers
    t0 = time.perf_counter()
    for _ in range(200):
        proc._bias_logits(enc["input_ids"], logits.clone())
    mask_ms = (time.perf_counter() - t0) / 200 * 1000
    return {"path": path, "build_s": build_s, "first_s": runs[0], "second_s": runs[1], "mask_ms": mask_ms,
            "texts": texts, "compiled": "llguidance.torch" in sys.modules}


def main(argv: list[str] | None = None) -> dict:
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--out", default="results")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(one_path(args.child, args.max_tokens)))
        return {}
    rows = []
    for path in ("outlines-torch", "eager"):
        done = subprocess.run([sys.executable, __file__, "--child", path, "--max-tokens", str(args.max_tokens)],
                              capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    same = rows[0]["texts"] == rows[1]["texts"]
    table = Table(title=f"JSON grammar, batch {len(QUESTIONS)}, {args.max_tokens} new tokens, a fresh process per path")
    for col in ("path", "first constrained call s", "second call s", "first-call extra s", "mask step ms (batch 5)",
                "compiler imported"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["path"], f"{r['first_s']:.2f}", f"{r['second_s']:.2f}", f"{r['first_s'] - r['second_s']:.2f}",
                      f"{r['mask_ms']:.2f}", str(r["compiled"]))
    console = Console(width=None if sys.stdout.isatty() else 140)  # the table stays readable in a log
    console.print(table)
    saved = rows[0]["first_s"] - rows[1]["first_s"]
    console.print(f"same tokens on both paths: {same}; the eager path saves {saved:.2f} s on a process's first "
                  f"constrained call; load average {os.getloadavg()[0]:.1f}")
    result = {"rows": [{k: v for k, v in r.items() if k != "texts"} for r in rows], "same_tokens": same,
              "first_call_saved_s": saved, "load_average": os.getloadavg()[0]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_grammar.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
