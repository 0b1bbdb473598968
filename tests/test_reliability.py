"""The cheap parts of benchmarks/bench_reliability.py as tests: kill -9 mid-score (fake backend
in a subprocess), four processes writing one cache with a reader timing its reads, and a
faulty OpenAI-compatible server on 127.0.0.1. The benchmark runs the same code bigger, with
the real embedded model for the kill."""

import pytest

from tests.benchmark_scripts import load_benchmark

bench = load_benchmark("bench_reliability")


def test_kill9_mid_score_loses_nothing_and_repeats_nothing(tmp_path):
    r = bench.kill9(tmp_path / "c.sqlite3", scenarios=40, backend="fake", delay=0.03, kill_fraction=0.3, timeout=120)
    assert 0 < r["stored_before"] < r["rows_expected"]  # really killed in the middle
    assert r["recomputed"] == r["rows_expected"] - r["stored_before"]  # only what was not stored
    assert r["rerun_cache_hits"] == r["stored_before"]
    assert r["lost"] == 0 and r["duplicated"] == 0
    assert r["complete"] and r["verify_clean"]


def test_four_writers_one_file_nothing_lost_or_corrupt_and_reads_never_wait(tmp_path):
    r = bench.concurrent_writers(tmp_path, writers=4, scenarios=400, overlap=40, timeout=120)
    assert r["rows_expected"] == 4 * 800 - 3 * 80  # the overlaps are the same rows
    assert r["rows_stored"] == r["rows_expected"]
    assert r["lost"] == 0 and r["corrupt"] == 0 and r["verify_clean"]
    assert r["reads"] > 10
    # WAL: a read never waits for a writer's lock (busy_timeout is 30 s); on a busy 2-core
    # machine a read still costs some scheduling, hence the generous bound.
    assert r["max_read_ms"] < 1000


@pytest.mark.parametrize("fault", bench.FAULTS)
def test_a_faulty_server_run_completes_without_paying_twice(tmp_path, fault):
    r = bench.server_faults(tmp_path / "c.sqlite3", fault, scenarios=16)
    assert r["complete"], r["errors_before_complete"]
    assert r["paid_twice"] == 0
    assert r["prompts_answered"] == 16 and r["rows_unique"]
    assert r["requests"] > r["prompts_answered"]  # the fault really happened
    if fault == "kill-restart":
        assert r["killed_in_flight"] > 0 and r["stats"].get("connection_errors")
