"""``steerkit eval`` and ``steerkit realign`` (issue 3): oracle gives 100%, random ~50% on
two-response scenarios, results JSON and plots are written, realign makes zero model calls and
never loads the model; then one real end-to-end run on the embedded model."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import steerkit
from steerkit import cli as cli_module
from steerkit_plugins import evaluation
from tests.conftest import DATA
from tests.fakes import FakeBackend

CALLS = {"generate": 0}


class CountingFake(FakeBackend):
    name = "fake-eval"

    def generate(self, prompts, sampling=steerkit.Sampling(), constraint=None):
        CALLS["generate"] += len(prompts)
        return super().generate(prompts, sampling, constraint)


class FakePlugin:
    @steerkit.hookimpl
    def register_backends(self, register):
        register("fake-eval", CountingFake)


@pytest.fixture(scope="module", autouse=True)
def commands_and_fake_backend():
    name = steerkit.register_plugin(FakePlugin(), name="test-eval-fake")
    if "eval" not in cli_module.cli.commands:
        from steerkit import host

        host.add_cli_commands(cli_module.cli)
    yield
    steerkit.unregister_plugin(name)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STEERKIT_CACHE", str(tmp_path / "cache" / "scores.sqlite3"))
    monkeypatch.setenv("STEERKIT_DATA", str(DATA))
    CALLS["generate"] = 0


def invoke(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli_module.cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def run_json(*args: str) -> dict:
    return json.loads(invoke(*args, "--json").stdout)


def test_oracle_is_perfect_and_writes_results_and_plots(tmp_path):
    out = tmp_path / "out"
    res = run_json("eval", "--strategy", "oracle", "--dataset", "helpsteer2", "--targets", "sampled",
                   "--limit", "60", "--out", str(out))
    assert res["mean_accuracy"] == 1.0 and res["n_targets"] == 50
    assert set(res["by_n_attributes"]) == {"1", "2", "3", "4", "5"}
    assert all(r["mean"] == 1.0 and r["n_targets"] == 10 for r in res["by_n_attributes"].values())
    assert res["config"]["n_scenarios"] == 60 and res["model_calls"] == 0
    assert all(v == {"high": 1.0, "low": 1.0} for v in res["per_attribute_high_low"].values())
    assert json.loads((out / "results.json").read_text())["mean_accuracy"] == 1.0
    for png in ("accuracy_by_attributes.png", "high_low_polar.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(res["targets"]) == 50 and {"name", "accuracy", "n_valid", "values"} <= set(res["targets"][0])
    assert {"total_seconds", "seconds_per_scenario"} <= set(res["timings"])


def test_random_is_near_half_on_two_response_scenarios(tmp_path):
    res = run_json("eval", "--strategy", "random", "--dataset", "helpsteer2", "--targets", "sampled",
                   "--no-plots", "--out", str(tmp_path / "r"))
    assert res["config"]["n_scenarios"] == 359
    assert 0.42 < res["mean_accuracy"] < 0.58
    assert res["model_calls"] == 0


def test_table_output_and_bad_targets(tmp_path):
    r = invoke("eval", "--strategy", "oracle", "--dataset", "helpsteer2", "--targets", "high", "--limit", "20",
               "--out", str(tmp_path / "o"))
    assert "accuracy %" in r.output and "100.0" in r.output and "results.json" in r.output
    bad = invoke("eval", "--strategy", "oracle", "--dataset", "helpsteer2", "--targets", "nope", ok=False)
    assert bad.exit_code == 2 and "nope" in bad.output and "Traceback" not in bad.output
    bad = invoke("eval", "--strategy", "random", "--dataset", "helpsteer2", "--samples", "3", ok=False)
    assert bad.exit_code == 2 and "--samples" in bad.output


def test_strategy_options_pass_the_example_pool_only_where_accepted():
    ds = steerkit.lookup("dataset", "helpsteer2")()
    assert len(evaluation.strategy_options("comparative-regression", ds)["example_pool"]) == 500
    assert evaluation.strategy_options("comparative-regression", ds, samples=3, k=2)["k"] == 2
    assert evaluation.strategy_options("random", ds) == {}


def test_eval_scores_once_then_realign_makes_zero_model_calls(tmp_path):
    cache = str(tmp_path / "scores.sqlite3")
    common = ["--strategy", "zero-shot-comparative", "--dataset", "helpsteer2", "--limit", "6",
              "--backend", "fake-eval", "--cache", cache]
    res = run_json("eval", *common, "--targets", "sampled", "--no-plots", "--out", str(tmp_path / "e"))
    assert res["model_calls"] == 6 * 5 == CALLS["generate"]  # one prompt per scenario and attribute
    assert res["n_targets"] == 50
    # a second target set: served from the cache
    again = run_json("eval", *common, "--targets", "high", "--out", str(tmp_path / "e2"))
    assert again["model_calls"] == 0 and again["cache_hits"] == 6 * 5 * 2 and CALLS["generate"] == 30
    # realign: all 3,125 targets, zero model calls, model never loaded, accuracy printed
    re = run_json("realign", *common, "--targets", "all")
    assert re["model_calls"] == 0 and CALLS["generate"] == 30
    assert re["n_targets"] == 3125 and re["mean_accuracy"] is not None and re["cache_hits"] == 60
    text = invoke("realign", *common, "--targets", "sampled").output
    assert "0 model calls" in text and "accuracy %" in text
    # realign agrees with eval on the same targets
    same = run_json("realign", *common, "--targets", "sampled")
    assert same["mean_accuracy"] == pytest.approx(res["mean_accuracy"])


def test_realign_without_cached_scores_is_a_clear_error(tmp_path):
    cache = tmp_path / "empty.sqlite3"
    r = invoke("realign", "--strategy", "zero-shot-comparative", "--dataset", "helpsteer2", "--limit", "3",
               "--backend", "fake-eval", "--cache", str(cache), "--targets", "high", ok=False)
    assert r.exit_code == 2 and "steerkit eval" in r.output and "Traceback" not in r.output
    steerkit.ScoreCache(cache).close()  # the file exists now, but holds no scores
    r = invoke("realign", "--strategy", "zero-shot-comparative", "--dataset", "helpsteer2", "--limit", "3",
               "--backend", "fake-eval", "--cache", str(cache), "--targets", "high", ok=False)
    assert r.exit_code == 2 and "not in the cache" in r.output and "steerkit eval" in r.output
    assert CALLS["generate"] == 0
    r = invoke("realign", "--strategy", "random", "--dataset", "helpsteer2", "--targets", "high", ok=False)
    assert r.exit_code == 2 and "does not score attributes" in r.output


def test_cache_only_backend_never_generates():
    wrapped = evaluation.CacheOnlyBackend(CountingFake())
    assert wrapped.fingerprint() == CountingFake().fingerprint() and wrapped.model_name == "fake-model"
    with pytest.raises(evaluation.ScoresNotCachedError, match="steerkit eval"):
        wrapped.generate([[{"role": "user", "content": "hi"}]])
    assert CALLS["generate"] == 0


def test_real_model_eval_then_realign_from_cache(tmp_path):
    """The embedded SmolLM2 end to end through the real command line (subprocess): few-shot
    comparative regression on the first scenario for a helpfulness target, then realign on the
    same cache to five new helpfulness targets with zero model calls and the model never loaded.

    Kept to ONE prompt (1 scenario x 1 attribute, k=1): on the shared 2-core CPU one constrained
    generation takes about two minutes (`--targets high` would need five)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("steerkit")
    cache = str(tmp_path / "real.sqlite3")
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"helpful": {"helpfulness": 1.0}}))
    new = tmp_path / "new.json"
    new.write_text(json.dumps({f"h{v}": {"helpfulness": v} for v in (0.0, 0.25, 0.5, 0.75, 1.0)}))
    common = ["--strategy", "comparative-regression", "--dataset", "helpsteer2", "--limit", "1", "--k", "1",
              "--cache", cache, "--json"]
    # the user's cache dir: the converted embedded model and the pool's embedding index live there
    env = {k: v for k, v in os.environ.items() if k not in ("STEERKIT_CACHE_DIR", "STEERKIT_CACHE")}
    env["HF_HUB_OFFLINE"] = "1"

    def run(*args):
        p = subprocess.run([str(exe), *args, *common], capture_output=True, text=True, env=env, timeout=900)
        assert p.returncode == 0, p.stderr[-2000:]
        return json.loads(p.stdout)

    res = run("eval", "--targets", str(first), "--no-plots", "--out", str(tmp_path / "real"))
    assert res["model_calls"] == 1 and res["cache_misses"] == 2 and res["config"]["example_pool"] == 500
    assert "SmolLM2" in res["config"]["model"] and res["config"]["strategy_options"]["k"] == 1
    assert res["n_targets"] == 1 and (res["mean_accuracy"] is None or res["mean_accuracy"] in (0.0, 1.0))
    re = run("realign", "--targets", str(new))
    assert re["model_calls"] == 0 and re["model_loaded"] is False and re["n_targets"] == 5
    assert re["cache_hits"] == 2 and set(re["selections"]) == {f"h{v}" for v in (0.0, 0.25, 0.5, 0.75, 1.0)}
    assert re["selections"]["h1.0"] == [0] or re["selections"]["h1.0"] == [1]
    again = run("eval", "--targets", str(first), "--no-plots", "--out", str(tmp_path / "real2"))
    assert again["model_calls"] == 0 and again["mean_accuracy"] == res["mean_accuracy"]
