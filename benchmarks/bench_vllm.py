"""vLLM benchmark: steerkit's vllm adapter vs raw ``vllm.LLM`` on the same prompts; one
``complete()`` call mixing three settings (greedy, seeded sampling, a choice constraint) vs one
call per setting (what strategies did before requests carried their own settings); and the
openai adapter against one local ``vllm serve`` at concurrency 1 vs 16.

    python benchmarks/bench_vllm.py [--prompts 32] [--max-tokens 64] [--skip-serve]

Prints a table and writes results/bench_vllm.json. On CPU the engines use the adapter's default KV cache
(2 GiB; set VLLM_CPU_KVCACHE_SPACE to change it)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent


def make_prompts(n: int) -> list[list[dict[str, str]]]:
    topics = ["rivers", "bread", "trains", "owls", "chess", "glass", "tea", "bridges"]
    system = "You are a careful assistant. Answer in one or two sentences."  # shared prefix
    return [[{"role": "system", "content": system},
             {"role": "user", "content": f"Question {i}: say something true about {topics[i % len(topics)]}."}]
            for i in range(n)]


def mixed_requests(prompts, max_tokens: int) -> list:
    """Every third prompt greedy, seeded-sampled, or answered under a choice constraint."""
    from steerkit.plugin import Constraint, Request, Sampling

    settings = [(Sampling(max_tokens=max_tokens), None),
                (Sampling(temperature=0.8, top_p=0.95, seed=7, max_tokens=max_tokens), None),
                (Sampling(max_tokens=4), Constraint.choice(["true", "false"]))]
    return [Request(p, *settings[i % 3]) for i, p in enumerate(prompts)]


def bench_mixed(backend, prompts, max_tokens: int, repeats: int) -> dict:
    """One complete() for all settings vs one call per setting; the answers must not differ."""
    requests = mixed_requests(prompts, max_tokens)
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(r.settings(), []).append(i)
    backend.complete(requests[:6])  # warm the grammar cache
    one_times, grouped_times = [], []
    for r in range(repeats):
        for which in (("one", "grouped") if r % 2 == 0 else ("grouped", "one")):
            t = time.perf_counter()
            if which == "one":
                one = backend.complete(requests)
                one_times.append(time.perf_counter() - t)
            else:
                grouped: list = [None] * len(requests)
                for idx in groups.values():
                    for i, c in zip(idx, backend.complete([requests[i] for i in idx])):
                        grouped[i] = c
                grouped_times.append(time.perf_counter() - t)
    one_s, grouped_s = statistics.median(one_times), statistics.median(grouped_times)
    return {"one_call_s": one_s, "call_per_setting_s": grouped_s, "settings": len(groups),
            "speedup": grouped_s / one_s, "answers_identical": [c.text for c in one] == [c.text for c in grouped],
            "output_tokens": sum(c.output_tokens for c in one), "prompt_tokens": sum(c.prompt_tokens for c in one)}


def bench_offline(prompts, max_tokens: int, repeats: int) -> dict:
    from steerkit.plugin import Request, Sampling
    from steerkit_adapters.vllm_backend import VLLMBackend
    from vllm import SamplingParams

    backend = VLLMBackend()
    t = time.perf_counter()
    llm = backend.llm
    start_s = time.perf_counter() - t
    sampling = Sampling(max_tokens=max_tokens)
    raw_params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    tok = llm.get_tokenizer()
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    requests = [Request(p, sampling) for p in prompts]
    # warm both paths once (prefix cache, grammar caches), then alternate the timed runs
    backend.complete(requests[:4])
    llm.generate(texts[:4], raw_params, use_tqdm=False)
    # Alternate which path runs first (on a shared CPU the second run of a pair is often
    # slower) and compare medians.
    raw_times, kit_times = [], []
    for r in range(repeats):
        for which in (("raw", "kit") if r % 2 == 0 else ("kit", "raw")):
            t = time.perf_counter()
            if which == "raw":
                raw = llm.generate(texts, raw_params, use_tqdm=False)
                raw_times.append(time.perf_counter() - t)
            else:
                kit = backend.complete(requests)
                kit_times.append(time.perf_counter() - t)
    same = [r.outputs[0].text for r in raw] == [c.text for c in kit]
    mixed = bench_mixed(backend, prompts, max_tokens, repeats)
    backend.close()
    raw_s, kit_s = statistics.median(raw_times), statistics.median(kit_times)
    return {"engine_start_s": start_s, "raw_generate_s": raw_s, "steerkit_generate_s": kit_s,
            "overhead_ratio": kit_s / raw_s, "outputs_identical": same, "repeats": repeats,
            "raw_times_s": raw_times, "steerkit_times_s": kit_times,
            "output_tokens_per_s": sum(c.output_tokens for c in kit) / kit_s, "mixed": mixed}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_serve(prompts, max_tokens: int) -> dict:
    from steerkit.plugin import Request, Sampling
    from steerkit_adapters.embedded import embedded_model_dir
    from steerkit_adapters.openai_backend import OpenAIBackend

    port = free_port()
    log = ROOT / "results" / "bench_vllm_serve.log"
    from steerkit_adapters.vllm_backend import serve_command

    cmd = serve_command(embedded_model_dir(), port=port)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        while True:
            if proc.poll() is not None or time.perf_counter() - t > 600:
                raise SystemExit(f"vllm serve did not come up; see {log}")
            try:
                urllib.request.urlopen(url + "/models", timeout=2)
                break
            except OSError:
                time.sleep(1)
        start_s = time.perf_counter() - t
        sampling = Sampling(max_tokens=max_tokens)
        out = {"serve_start_s": start_s}
        for c in (1, 16):
            b = OpenAIBackend(base_url=url, concurrency=c, timeout=600)
            b.complete([Request(p, sampling) for p in prompts[:2]])  # warm
            t = time.perf_counter()
            done = b.complete([Request(p, sampling) for p in prompts])
            dt = time.perf_counter() - t
            out[f"concurrency_{c}_output_tokens"] = sum(x.output_tokens for x in done)
            out[f"concurrency_{c}_s"] = dt
            out[f"concurrency_{c}_prompts_per_s"] = len(prompts) / dt
            b.close()
        out["concurrency_ratio_16_over_1"] = out["concurrency_16_prompts_per_s"] / out["concurrency_1_prompts_per_s"]
        return out
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--skip-serve", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_vllm.json"))
    args = ap.parse_args()
    (ROOT / "results").mkdir(exist_ok=True)
    prompts = make_prompts(args.prompts)
    result = {"prompts": args.prompts, "max_tokens": args.max_tokens, "machine": platform.machine(),
              "cpus": os.cpu_count(), "python": platform.python_version()}
    import vllm

    result["vllm"] = vllm.__version__
    result["offline"] = bench_offline(prompts, args.max_tokens, args.repeats)
    if not args.skip_serve:
        result["serve"] = bench_serve(prompts, args.max_tokens)
    Path(args.out).write_text(json.dumps(result, indent=2))
    o = result["offline"]
    rows = [("engine start (s)", f"{o['engine_start_s']:.1f}"),
            ("raw LLM.generate (s)", f"{o['raw_generate_s']:.2f}"),
            ("steerkit vllm adapter (s)", f"{o['steerkit_generate_s']:.2f}"),
            ("overhead ratio (target <= 1.15)", f"{o['overhead_ratio']:.3f}"),
            ("outputs identical", str(o["outputs_identical"])),
            ("steerkit output tokens/s", f"{o['output_tokens_per_s']:.1f}"),
            ("3 settings, one complete() (s)", f"{o['mixed']['one_call_s']:.2f}"),
            ("3 settings, one call per setting (s)", f"{o['mixed']['call_per_setting_s']:.2f}"),
            ("speed-up of one call", f"{o['mixed']['speedup']:.2f}"),
            ("mixed answers identical", str(o["mixed"]["answers_identical"]))]
    if "serve" in result:
        s = result["serve"]
        rows += [("vllm serve start (s)", f"{s['serve_start_s']:.1f}"),
                 ("openai adapter, concurrency 1 (prompts/s)", f"{s['concurrency_1_prompts_per_s']:.2f}"),
                 ("openai adapter, concurrency 16 (prompts/s)", f"{s['concurrency_16_prompts_per_s']:.2f}"),
                 ("throughput ratio 16 / 1", f"{s['concurrency_ratio_16_over_1']:.2f}")]
    width = max(len(k) for k, _ in rows)
    print(f"vLLM benchmark: {args.prompts} prompts x {args.max_tokens} tokens, vllm {result['vllm']}")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
