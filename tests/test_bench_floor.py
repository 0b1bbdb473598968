"""The floor arithmetic of benchmarks/bench_comparative.py, worked by hand: issue 13's goals are
judged against it (a decoding step reads every weight once for all rows, and each row's KV
cache at its context), so it must charge exactly that."""

import pytest

from tests.benchmark_scripts import load_benchmark

bench = load_benchmark("bench_comparative")
# prefill 1 ms a token; a step reads the weights in 15 ms; 100 bytes of KV a position at 10 kB/s
FLOOR = {"prefill_fit": {"a": 1e-3, "b": 0.0}, "decode_step_seconds": 0.015,
         "kv_bytes_per_position": 100, "read_bytes_per_second": 1e4}


def test_one_request_pays_its_prefill_its_steps_and_the_kv_at_each_steps_context():
    # 10 prompt tokens, 3 out: steps read 10, 11 and 12 positions of KV
    assert bench.floor_seconds(FLOOR, 10, 3) == pytest.approx(0.010 + 3 * 0.015 + 100 * (10 + 11 + 12) / 1e4)


def test_a_batch_reads_the_weights_once_a_step_and_every_rows_kv():
    requests = [{"prompt_tokens": 10, "output_tokens": 3}, {"prompt_tokens": 20, "output_tokens": 1}]
    kv = 100 * (10 + 11 + 12 + 20) / 1e4
    assert bench.scenario_floor_seconds(FLOOR, requests) == pytest.approx(0.030 + 3 * 0.015 + kv)


def test_the_decode_floor_leaves_out_the_prefill_and_the_first_step_as_the_decode_timing_does():
    requests = [{"prompt_tokens": 10, "output_tokens": 3}, {"prompt_tokens": 20, "output_tokens": 1}]
    # steps 2 and 3: the weights twice, and the first row's KV at 11 and 12 positions
    assert bench.decode_floor_seconds(FLOOR, requests) == pytest.approx(2 * 0.015 + 100 * (11 + 12) / 1e4)
    assert bench.decode_floor_seconds(FLOOR, [{"prompt_tokens": 10, "output_tokens": 1}]) == pytest.approx(0.0)
