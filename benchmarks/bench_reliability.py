"""Benchmark: reliability. Nothing computed is lost or paid for twice, whatever goes wrong.

1. kill -9 in the middle of ``Steerer.score()`` (zero-shot comparative, one attribute, the
   shortest HelpSteer2 eval scenarios, the real embedded model, in a subprocess), then a rerun
   in a new process: stored before the kill, recomputed after, lost (must be 0), duplicated
   (a stored row computed again; must be 0).
2. Four processes writing one cache file at once (``Steerer.score`` on a fake backend,
   thousands of rows each, overlapping scenarios), and a reader timing every read while they
   write: rows lost, rows corrupt (a value no writer produced), ``ScoreCache.verify()``, the
   slowest read.
3. An OpenAI-compatible server on 127.0.0.1 (the tiny scripted server of
   ``tests/test_openai_backend.py``) that is killed and restarted mid-run, answers 5xx in
   bursts, answers slower than the deadline, or drops connections: reruns (at most 6) until
   the table is complete; per prompt, the answers the server delivered (must be 1: a completed
   answer is never paid for twice); stored rows unique.
4. The bad-input matrix of ``tests/test_bad_input.py``: case, error type, message start,
   handled clearly (a typed steerkit error naming a fix, before a model loads, nothing written).

Prints a table and writes ``results/bench_reliability.json``.

    python benchmarks/bench_reliability.py                              # 50 scenarios, real model
    python benchmarks/bench_reliability.py --scenarios 12 --rows 500    # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.fakes and the tiny server of tests/test_openai_backend.py
DATA = Path(os.environ.get("STEERKIT_DATA") or ROOT.parent / "shared" / "data")
ATTRIBUTE = "helpfulness"


# -- scenarios -------------------------------------------------------------------------------
def short_helpsteer2(n: int, data: Path = DATA) -> list:
    """The ``n`` shortest HelpSteer2 eval scenarios (the cheapest real prompts)."""
    import steerkit

    rows = json.loads((data / "helpsteer2" / "eval.json").read_text())
    rows = [r for r in rows if len(r.get("responses") or ()) >= 2]
    rows.sort(key=lambda r: len(r["prompt"]) + sum(len(x) for x in r["responses"]))
    return [steerkit.Scenario(r["prompt"], r["responses"][:2], id=f"hs2-{i}") for i, r in enumerate(rows[:n])]


def synthetic(n: int, start: int = 0) -> list:
    import steerkit

    return [steerkit.Scenario(f"Question {i}: which answer helps?", (f"answer one to {i}", f"answer two to {i}"),
                              id=f"syn-{i}") for i in range(start, start + n)]


# -- the child process -------------------------------------------------------------------------
def rating_strategy():
    """A one-token rating strategy (1-5 under a choice constraint, one prompt per response): the
    real model through the same ``AttributeStrategy.score`` / ``RunContext.compute_missing`` path as the
    first-party strategies, at one decoding step a prompt. zero-shot-comparative's constrained
    JSON takes minutes per batch of 8 on a shared 2-core CPU (``--strategy`` picks it anyway)."""
    from steerkit.plugin import AttributeStrategy, Constraint, ResponseScore, Sampling

    class Rating(AttributeStrategy):
        name = "bench-rating"
        comparative = False

        def score_jobs(self, run, jobs):
            prompts = [[{"role": "user", "content": f"Question: {j.scenario.question[:400]}\n\nResponse: "
                         f"{j.scenario.responses[j.responses[0]][:400]}\n\nRate the {j.attribute} of this response "
                         "from 1 (worst) to 5 (best). Answer with the digit only."}] for j in jobs]
            digits = run.generate(prompts, Sampling(max_tokens=2), Constraint.choice(list("12345")))
            return [[ResponseScore((int(d) - 1) / 4)] for d in digits]

    return Rating()


def slow_json(delay: float):
    """A fake-backend responder: schema-valid JSON after ``delay`` seconds (a model's pace)."""
    import numpy as np

    from tests.fakes import minimal_instance

    rng = np.random.default_rng(0)

    def respond(prompt, constraint):
        time.sleep(delay)
        return json.dumps(minimal_instance(constraint.value, rng))

    return respond


def worker(argv: list[str]) -> None:
    """``--worker score``: one ``Steerer.score`` call; prints its counters (and with ``--dump``
    writes every score it returned) as JSON. ``--go FILE`` waits for that file first."""
    p = argparse.ArgumentParser()
    p.add_argument("--worker")
    p.add_argument("--cache", required=True)
    p.add_argument("--backend", default="fake")
    p.add_argument("--scenarios", type=int, default=50)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--strategy", default="zero-shot-comparative")
    p.add_argument("--dump", default=None)
    p.add_argument("--go", default=None)
    a = p.parse_args(argv)
    import numpy as np

    import steerkit
    from steerkit.plugin import lookup
    from steerkit.types import text_hash
    from tests.fakes import FakeBackend

    if a.backend == "fake":
        scenarios = synthetic(a.scenarios, a.start)
        backend = FakeBackend(micro_batch_size=2, responder=slow_json(a.delay) if a.delay else None)
        options = {}
    else:
        scenarios = short_helpsteer2(a.scenarios, Path(a.data))
        backend = lookup("backend", a.backend)()
        options = {"response_chars": 400} if a.strategy == "zero-shot-comparative" else {}
    strategy = rating_strategy() if a.strategy == "bench-rating" else a.strategy
    s = steerkit.Steerer(strategy, backend=backend, cache=a.cache, progress=False,
                         batch_size=a.batch_size, **options)
    if a.go:
        for _ in range(600):  # bounded: at most 60 s
            if Path(a.go).exists():
                break
            time.sleep(0.1)
    table = s.score(scenarios, [ATTRIBUTE])
    if a.dump:
        values = {f"{sc.key}/{text_hash(r)}": float(table.scores[i, j, 0])
                  for i, sc in enumerate(scenarios) for j, r in enumerate(sc.responses)}
        Path(a.dump).write_text(json.dumps(values))
    print(json.dumps({"model_calls": table.model_calls, "cache_hits": table.cache_hits,
                      "cache_misses": table.cache_misses, "complete": bool(np.isfinite(table.scores[table.mask]).all())}))
    s.close()


def worker_command(cache: Path, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", "score", "--cache", str(cache), *args]


def rows(path: Path) -> dict[tuple, tuple]:
    """Every stored row: key -> (score, created), read without steerkit."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {tuple(r[:6]): (r[6], r[7]) for r in conn.execute(
            "SELECT model, strategy, scenario, response, attribute, sample, score, created FROM results")}
    finally:
        conn.close()


def count_rows(path: Path) -> int:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet
        return 0


# -- 1. kill -9 mid-score ------------------------------------------------------------------------
def kill9(cache: Path, scenarios: int, backend: str = "fake", delay: float = 0.02, kill_fraction: float = 0.4,
          batch_size: int | None = None, timeout: float = 600.0, strategy: str = "zero-shot-comparative") -> dict:
    """Run ``score`` in a child, SIGKILL it once ``kill_fraction`` of the rows are stored, rerun
    it in a fresh child, and count what was stored, recomputed, lost and duplicated."""
    total = scenarios * 2  # two responses per scenario, one attribute
    extra = ["--backend", backend, "--scenarios", str(scenarios), "--delay", str(delay), "--strategy", strategy]
    if batch_size:
        extra += ["--batch-size", str(batch_size)]
    started = time.perf_counter()
    child = subprocess.Popen(worker_command(cache, *extra), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed_at = None
    while time.perf_counter() - started < timeout and child.poll() is None:
        n = count_rows(cache)
        if n >= kill_fraction * total:
            os.kill(child.pid, signal.SIGKILL)
            killed_at = n
            break
        time.sleep(0.05)
    else:
        if child.poll() is None:
            child.kill()
    child.wait()
    err = child.stderr.read().decode()[-2000:] if child.stderr else ""
    if killed_at is None:
        raise RuntimeError(f"the first run ended before the kill (exit {child.returncode}): {err}")
    first_seconds = time.perf_counter() - started
    before = rows(cache)
    start = time.perf_counter()
    rerun = subprocess.run(worker_command(cache, *extra), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if rerun.returncode != 0:
        raise RuntimeError(f"the rerun failed: {rerun.stderr[-2000:]}")
    stats = json.loads(rerun.stdout.strip().splitlines()[-1])
    after = rows(cache)
    import steerkit
    from steerkit.plugin import ScoreCache

    cache_obj = ScoreCache(cache)
    try:
        cache_obj.verify()
        verified = True
    except steerkit.CacheError:
        verified = False
    finally:
        cache_obj.close()
    rewritten = sum(1 for k, v in before.items() if k in after and after[k] != v)
    return {
        "backend": backend, "strategy": strategy, "scenarios": scenarios, "rows_expected": total,
        "rows_when_killed": killed_at, "stored_before": len(before),
        "recomputed": stats["cache_misses"], "rerun_model_calls": stats["model_calls"],
        "rerun_cache_hits": stats["cache_hits"],
        "lost": len(set(before) - set(after)) + max(0, total - len(after)),
        "duplicated": rewritten + max(0, stats["cache_misses"] - (total - len(before))),
        "complete": stats["complete"], "verify_clean": verified,
        "first_run_seconds": round(first_seconds, 2), "rerun_seconds": round(time.perf_counter() - start, 2),
    }


# -- 2. concurrent writers and a reader --------------------------------------------------------
def concurrent_writers(folder: Path, writers: int = 4, scenarios: int = 1000, overlap: int = 100,
                       timeout: float = 300.0) -> dict:
    """``writers`` processes score overlapping scenario ranges into one file at the same moment
    while this process reads it in a loop, timing each read."""
    import steerkit
    from steerkit.plugin import ScoreCache

    cache, go = folder / "shared.sqlite3", folder / "go"
    ScoreCache(cache).close()  # created once, so every writer opens an existing cache
    procs, dumps = [], []
    for w in range(writers):
        dump = folder / f"writer{w}.json"
        dumps.append(dump)
        start = w * (scenarios - overlap)  # each range overlaps the next by ``overlap`` scenarios
        procs.append(subprocess.Popen(
            worker_command(cache, "--scenarios", str(scenarios), "--start", str(start), "--dump", str(dump), "--go", str(go)),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    time.sleep(0.5)
    reader = ScoreCache(cache)
    go.touch()
    started = time.perf_counter()
    latencies = []
    while any(p.poll() is None for p in procs) and time.perf_counter() - started < timeout:
        t = time.perf_counter()
        len(reader)
        latencies.append(time.perf_counter() - t)
        time.sleep(0.005)
    reader.close()
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    failed = [p.stderr.read().decode()[-1500:] for p in procs if p.returncode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} writer(s) failed: {failed[0]}")
    expected: dict[str, set[float]] = {}
    for dump in dumps:
        for key, value in json.loads(dump.read_text()).items():
            expected.setdefault(key, set()).add(value)
    stored = {f"{k[2]}/{k[3]}": v[0] for k, v in rows(cache).items()}
    check = ScoreCache(cache)
    try:
        check.verify()
        verified = True
    except steerkit.CacheError:
        verified = False
    finally:
        check.close()
    return {
        "writers": writers, "rows_per_writer": scenarios * 2, "rows_expected": len(expected),
        "rows_stored": len(stored), "lost": len(set(expected) - set(stored)),
        "corrupt": sum(1 for k, v in stored.items() if k not in expected or v not in expected[k]),
        "verify_clean": verified, "reads": len(latencies),
        "max_read_ms": round(1000 * max(latencies, default=0.0), 1),
        "median_read_ms": round(1000 * sorted(latencies)[len(latencies) // 2], 2) if latencies else None,
        "write_seconds": round(time.perf_counter() - started, 2),
    }


# -- 3. a faulty OpenAI-compatible server -------------------------------------------------------
FAULTS = ("5xx-bursts", "slow", "drop", "kill-restart")


def server_faults(cache: Path, fault: str, scenarios: int = 40, attempts: int = 6) -> dict:
    """Score ``scenarios`` through the openai backend while the tiny server misbehaves; rerun
    (at most ``attempts`` times) until complete. Counts, per prompt, the replies the server
    delivered (status 200, in time)."""
    import numpy as np

    import steerkit
    from steerkit_adapters.openai_backend import OpenAIBackend
    from tests.test_openai_backend import Script, serve

    statuses: list = []
    if fault == "5xx-bursts":
        for _ in range(4):
            statuses += [500] * 4 + [503] * 3 + [200] * 12
    elif fault == "slow":
        statuses = [("sleep", 3.0)] * 3 + [200] * 10 + [("sleep", 3.0)] * 2
    elif fault == "drop":
        statuses = (["drop"] * 2 + [200] * 5) * 4
    script = Script(statuses=statuses)
    server, url = serve(script)
    port = server.server_address[1]
    servers = [server]
    stop = threading.Event()

    def killer():  # after 6 requests the server dies (in-flight requests get no reply); back 1 s later
        for _ in range(600):
            if stop.is_set() or len(script.requests) >= 6:
                break
            time.sleep(0.01)
        script.killed = True
        servers[0].shutdown()
        servers[0].server_close()
        time.sleep(1.0)
        script.killed = False
        servers.append(serve(script, port)[0])

    if fault == "kill-restart":
        script.delay = 0.1
        threading.Thread(target=killer, daemon=True).start()
    # "slow": replies take 3 s, past the 2.5 s deadline of a call (the read timeout is longer, so the
    # deadline is what gives up); otherwise a 1 s read timeout retries them within the deadline.
    backend = OpenAIBackend("tiny", base_url=url, backoff=0.05, max_backoff=0.3, max_retries=3,
                            timeout=10.0 if fault == "slow" else 1.0,
                            connect_timeout=0.5, deadline=2.5, concurrency=4, preferred_batch_size=8, vllm_extras=False)
    s = steerkit.Steerer("zero-shot-comparative", backend=backend, cache=cache, progress=False, shuffle=False)
    items = synthetic(scenarios)
    runs, errors, table = 0, [], None
    for runs in range(1, attempts + 1):  # bounded
        try:
            table = s.score(items, [ATTRIBUTE])
            break
        except steerkit.SteerkitError as exc:
            errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
    stop.set()
    s.close()
    for srv in servers:
        try:
            srv.shutdown()
            srv.server_close()
        except Exception:  # already down
            pass
    delivered: dict[str, int] = {}
    for (_, body, _), outcome in zip(list(script.requests), list(script.outcomes)):
        probe = (body.get("response_format") or {}).get("json_schema", {}).get("name") == "steerkit_probe"
        if outcome == 200 and not probe:  # a reply in time (a ("sleep", s) one ran past the client's timeout)
            prompt = json.dumps(body["messages"], sort_keys=True)
            delivered[prompt] = delivered.get(prompt, 0) + 1
    stored = rows(cache)
    return {
        "fault": fault, "scenarios": scenarios, "runs": runs, "errors_before_complete": errors,
        "complete": table is not None and bool(np.isfinite(table.scores[table.mask]).all()),
        "requests": len(script.requests), "prompts_answered": len(delivered),
        "killed_in_flight": sum(1 for o in script.outcomes if o == "killed"),
        "paid_twice": sum(1 for n in delivered.values() if n > 1),
        "rows_stored": len(stored), "rows_unique": len(stored) == len(set(stored)) == scenarios * 2,
        "stats": {k: v for k, v in backend.stats.items() if v},
    }


# -- 4. bad input ----------------------------------------------------------------------------------
def bad_input_matrix(folder: Path) -> list[dict]:
    from tests.test_bad_input import CASES, run_case

    out = []
    for case in CASES:
        sub = folder / case.id
        sub.mkdir()
        row = run_case(case, sub)
        row["message"] = row["message"].replace(str(sub), "<dir>")  # the temporary folder says nothing
        out.append(row)
    return out


# -- report ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv)
        return {}
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", type=int, default=50, help="scenarios of the kill -9 run (real model)")
    p.add_argument("--backend", default="transformers", help="backend of the kill -9 run")
    p.add_argument("--strategy", default="bench-rating", help="strategy of the kill -9 run (bench-rating or zero-shot-comparative)")
    p.add_argument("--batch-size", type=int, default=8, help="items per committed batch of the kill -9 run")
    p.add_argument("--rows", type=int, default=2000, help="rows each concurrent writer stores")
    p.add_argument("--server-scenarios", type=int, default=40)
    p.add_argument("--out", default=str(ROOT / "results" / "bench_reliability.json"))
    a = p.parse_args(argv)
    results: dict = {"machine": {"cpus": os.cpu_count(), "load": os.getloadavg()}}
    with tempfile.TemporaryDirectory(prefix="steerkit-reliability-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        results["kill9"] = kill9(tmp / "kill9.sqlite3", a.scenarios, backend=a.backend, delay=0.02, batch_size=a.batch_size,
                                 strategy=a.strategy)
        results["kill9"]["wall_seconds"] = round(time.perf_counter() - t, 1)
        (tmp / "writers").mkdir()
        results["writers"] = concurrent_writers(tmp / "writers", scenarios=a.rows // 2, overlap=a.rows // 20)
        results["server"] = [server_faults(tmp / f"server-{f}.sqlite3", f, a.server_scenarios) for f in FAULTS]
        (tmp / "bad").mkdir()
        results["bad_input"] = bad_input_matrix(tmp / "bad")
    k, w = results["kill9"], results["writers"]
    print(f"\n1. kill -9 mid-score ({k['strategy']} on {k['backend']}, {k['scenarios']} scenarios x 2 responses x 1 attribute "
          f"= {k['rows_expected']} rows)")
    print(f"   stored before the kill {k['stored_before']} | recomputed after {k['recomputed']} "
          f"(model calls {k['rerun_model_calls']}) | lost {k['lost']} | duplicated {k['duplicated']} | "
          f"complete {k['complete']} | verify {'clean' if k['verify_clean'] else 'DAMAGED'} | "
          f"{k['first_run_seconds']} s + {k['rerun_seconds']} s")
    print(f"2. {w['writers']} writers x {w['rows_per_writer']} rows, one file: stored {w['rows_stored']}/{w['rows_expected']} | "
          f"lost {w['lost']} | corrupt {w['corrupt']} | verify {'clean' if w['verify_clean'] else 'DAMAGED'} | "
          f"reader: {w['reads']} reads, median {w['median_read_ms']} ms, max {w['max_read_ms']} ms | {w['write_seconds']} s")
    print("3. faulty OpenAI-compatible server")
    print(f"   {'fault':<14}{'runs':>5}{'requests':>10}{'answered':>10}{'paid twice':>12}{'rows':>6}  unique complete")
    for r in results["server"]:
        print(f"   {r['fault']:<14}{r['runs']:>5}{r['requests']:>10}{r['prompts_answered']:>10}{r['paid_twice']:>12}"
              f"{r['rows_stored']:>6}  {str(r['rows_unique']):<7}{r['complete']}")
    bad = results["bad_input"]
    clear = sum(r["handled_clearly"] for r in bad)
    print(f"4. bad input: {clear} of {len(bad)} handled clearly")
    print(f"   {'case':<38}{'error':<24}{'ok':<4}message")
    for r in bad:
        print(f"   {r['case']:<38}{r['error'][:23]:<24}{'y' if r['handled_clearly'] else 'n':<4}{r['message'][:80]}")
    results["summary"] = {
        "kill9_lost": k["lost"], "kill9_duplicated": k["duplicated"], "writers_lost": w["lost"],
        "writers_corrupt": w["corrupt"], "max_read_ms": w["max_read_ms"],
        "server_paid_twice": sum(r["paid_twice"] for r in results["server"]),
        "server_complete": all(r["complete"] and r["rows_unique"] for r in results["server"]),
        "bad_input_handled": f"{clear}/{len(bad)}",
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
