"""``steerkit eval`` and ``steerkit realign`` (issue 3): oracle gives 100%, random ~50% on
two-response scenarios, results JSON and plots are written, realign makes zero model calls and
never loads the model; then one real end-to-end run on the embedded model."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import steerkit
from steerkit import cli as cli_module
from steerkit_plugins import attribute_eval as ae
from steerkit_plugins import eval_cli
from tests.conftest import DATA
from tests.fakes import FakeBackend

CALLS = {"generate": 0}


class CountingFake(FakeBackend):
    name = "fake-eval"

    def complete(self, requests):
        CALLS["generate"] += len(requests)
        return super().complete(requests)


def flat(schema: dict) -> object:
    """The same answer for every response: integers 50, strings alike (every prediction ties)."""
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("type") == "object":
        return {k: flat(v) for k, v in schema.get("properties", {}).items()}
    return 50 if schema.get("type") in ("integer", "number") else "same"


class FlatFake(CountingFake):
    name = "fake-flat"

    def __init__(self, model=None, **options):
        super().__init__(model or "flat-model", responder=lambda p, c: json.dumps(flat(c.value)), **options)


class FakePlugin:
    @steerkit.plugin.hookimpl
    def register_backends(self, register):
        register("fake-eval", CountingFake)
        register("fake-flat", FlatFake)


@pytest.fixture(scope="module", autouse=True)
def commands_and_fake_backend():
    name = steerkit.plugin.register_plugin(FakePlugin(), name="test-eval-fake")
    if "eval" not in cli_module.cli.commands:
        from steerkit import host

        host.add_cli_commands(cli_module.cli)
    yield
    steerkit.plugin.unregister_plugin(name)


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
    ds = steerkit.plugin.lookup("dataset", "helpsteer2")()
    assert len(eval_cli.strategy_options("comparative-regression", ds)["example_pool"]) == 500
    assert eval_cli.strategy_options("comparative-regression", ds, samples=3, k=2)["k"] == 2
    assert eval_cli.strategy_options("random", ds) == {}


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
    assert res["retried"] == 0 and re["retried"] == 0 and 0.0 <= res["tie_rate"] <= 1.0
    text = invoke("realign", *common, "--targets", "sampled").output
    assert "0 model calls" in text and "accuracy %" in text
    # realign agrees with eval on the same targets
    same = run_json("realign", *common, "--targets", "sampled")
    assert same["mean_accuracy"] == pytest.approx(res["mean_accuracy"])
    assert same["tie_rate"] == pytest.approx(res["tie_rate"])


def test_realign_without_cached_scores_is_a_clear_error(tmp_path):
    cache = tmp_path / "empty.sqlite3"
    r = invoke("realign", "--strategy", "zero-shot-comparative", "--dataset", "helpsteer2", "--limit", "3",
               "--backend", "fake-eval", "--cache", str(cache), "--targets", "high", ok=False)
    assert r.exit_code == 2 and "steerkit eval" in r.output and "Traceback" not in r.output
    steerkit.plugin.ScoreCache(cache).close()  # the file exists now, but holds no scores
    r = invoke("realign", "--strategy", "zero-shot-comparative", "--dataset", "helpsteer2", "--limit", "3",
               "--backend", "fake-eval", "--cache", str(cache), "--targets", "high", ok=False)
    assert r.exit_code == 2 and "not in the cache" in r.output and "steerkit eval" in r.output
    assert CALLS["generate"] == 0
    r = invoke("realign", "--strategy", "random", "--dataset", "helpsteer2", "--targets", "high", ok=False)
    assert r.exit_code == 2 and "does not score attributes" in r.output


def test_cache_only_backend_never_generates():
    wrapped = eval_cli.CacheOnlyBackend(CountingFake())
    assert wrapped.fingerprint() == CountingFake().fingerprint() and wrapped.model_name == "fake-model"
    with pytest.raises(eval_cli.ScoresNotCachedError, match="steerkit eval"):
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
    re = run("realign", "--targets", str(new))
    assert re["model_calls"] == 0 and re["model_loaded"] is False and re["n_targets"] == 5
    assert re["cache_hits"] == 2 and set(re["selections"]) == {f"h{v}" for v in (0.0, 0.25, 0.5, 0.75, 1.0)}
    # what the model scored, read back from the same cache in this process (no model loads):
    # realign's selections and eval's accuracy must be exactly what these scores give
    ds = steerkit.plugin.lookup("dataset", "helpsteer2")().head(1)
    inner = steerkit.plugin.lookup("backend", "transformers")()
    steerer = steerkit.Steerer("comparative-regression", backend=eval_cli.CacheOnlyBackend(inner), cache=cache,
                               progress=False, example_pool=ds.info["pool"], k=1)
    table = steerer.score(ds.scenarios, ["helpfulness"])
    assert table.model_calls == 0 and table.complete and not inner.loaded
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        assert re["selections"][f"h{v}"] == ae.first_choice(table, [{"helpfulness": v}])[0][0].tolist()
    gold = steerkit.ScoreTable.from_labels(ds.scenarios, ds.attributes)
    expected = ae.evaluate_table(table, gold, {"helpful": steerkit.AttributeTarget({"helpfulness": 1.0})})
    assert res["mean_accuracy"] == ae.num(expected.mean) and res["tie_rate"] == ae.num(expected.tie_rate)
    again = run("eval", "--targets", str(first), "--no-plots", "--out", str(tmp_path / "real2"))
    assert again["model_calls"] == 0 and again["mean_accuracy"] == res["mean_accuracy"]


# -- perspective datasets through the same command ---------------------------------------
@pytest.mark.parametrize("dataset", ["vk", "opinionqa"])
def test_eval_cot_on_perspective_datasets_uses_their_own_default_split(dataset, tmp_path):
    """No --split: each loader's default (their files are steerable_test.json)."""
    res = run_json("eval", "--strategy", "cot", "--dataset", dataset, "--limit", "3", "--backend", "fake-eval",
                   "--cache", str(tmp_path / "c.sqlite3"), "--out", str(tmp_path / "out"))
    assert res["n"] == 3 and res["dataset"] == dataset
    assert {"accuracy", "balanced_accuracy", "macro_f1"} <= set(res["metrics"])
    assert res["model_calls"] == 6 == CALLS["generate"]  # per item: the reasoning, then the letter
    assert res["items"][0]["pred"] == 0  # the fake answers A


# -- bad options are usage errors -------------------------------------------------------
def test_bad_strategy_options_are_clear_usage_errors(tmp_path):
    common = ["eval", "--strategy", "zero-shot-comparative", "--dataset", "helpsteer2", "--limit", "2",
              "--backend", "fake-eval", "--cache", str(tmp_path / "c.sqlite3")]
    r = invoke(*common, "--k", "-1", ok=False)
    assert r.exit_code == 2 and "k=-1" in r.output and "whole number >= 0" in r.output and "Traceback" not in r.output
    r = invoke(*common, "-o", "kk=3", ok=False)
    assert r.exit_code == 2 and "unknown options ['kk']" in r.output
    r = invoke(*common, "--samples", "0", ok=False)
    assert r.exit_code == 2 and "samples=0" in r.output
    r = invoke(*common, "-o", f"example_pool={tmp_path / 'none.json'}", ok=False)
    assert r.exit_code == 2 and "none.json does not exist" in r.output
    assert CALLS["generate"] == 0


# -- retries and ties reach the results ----------------------------------------------------
def test_results_count_retried_scores(tmp_path):
    ds = steerkit.plugin.lookup("dataset", "helpsteer2")().head(3)
    seen = []

    def flaky(prompt, constraint):
        seen.append(1)
        if len(seen) == 1:
            return "not json"
        return FakeBackend().generate([prompt], constraint=constraint)[0]

    steerer = steerkit.Steerer("zero-shot-comparative", backend=FakeBackend(responder=flaky),
                               cache=tmp_path / "c.sqlite3", progress=False)
    targets = {"h": steerkit.AttributeTarget({"helpfulness": 1.0})}
    res = eval_cli.evaluate_attribute_dataset(steerer, ds, targets, plots=False, progress=False)
    assert res["retried"] == 2 and res["model_calls"] == 4  # one job retried once: its 2 scores
    assert res["tie_rate"] is not None and res["targets"][0]["n_tied"] is not None


# -- MIC end to end: eval, then realign from the cache --------------------------------------
def mic_fixture(path):
    from tests.test_attribute_datasets import _mic_row, _write_mic

    rows, n = [], 0
    plan = {  # question -> split -> answers as (foundation, agree code per annotator)
        ("Is it fine to skip a friend's wedding?", "test"): [("care", (2, 2, 1)), ("loyalty", (0, 0, 1)), ("fairness", (2, 1, 0))],
        ("Should I report a coworker who steals?", "test"): [("fairness", (2, 2, 2)), ("loyalty", (2, 2, 0)), ("authority", (0, 1, 1))],
        ("Can I eat meat?", "test"): [("sanctity", (0, 0, 0)), ("liberty", (2, 2, 2))],
        ("Do you obey your parents?", "test"): [("authority", (2, 2, 1)), ("liberty", (2, 0, 1))],
        ("Is lying ok?", "train"): [("care", (0, 0, 1)), ("fairness", (2, 2, 2))],
        ("Should I vote?", "train"): [("liberty", (2, 1, 1)), ("authority", (0, 0, 2)), ("loyalty", (1, 1, 1))],
    }
    for (q, split), answers in plan.items():
        for j, (moral, codes) in enumerate(answers):
            for w, code in enumerate(codes):
                n += 1
                rows.append(_mic_row(n, f"w{w}", q, f"answer {j} to {q}", moral, code, split))
    return _write_mic(path, rows)


def test_mic_eval_then_realign_end_to_end(tmp_path):
    data = mic_fixture(tmp_path / "MIC.csv")
    cache = str(tmp_path / "scores.sqlite3")
    common = ["--strategy", "zero-shot-comparative", "--dataset", "mic", "--data", str(data),
              "--backend", "fake-eval", "--cache", cache]
    res = run_json("eval", *common, "--targets", "sampled", "--no-plots", "--out", str(tmp_path / "e"))
    assert res["config"]["n_scenarios"] == 4 and res["config"]["example_pool"] == 2
    assert res["n_targets"] == 60 and set(res["by_n_attributes"]) == {str(n) for n in range(1, 7)}
    assert res["model_calls"] == 4 * 6 == CALLS["generate"]  # one prompt per scenario and foundation
    assert res["mean_accuracy"] is not None and res["retried"] == 0
    re = run_json("realign", *common, "--targets", "sampled")
    assert re["model_calls"] == 0 and CALLS["generate"] == 24
    assert re["cache_hits"] == (3 + 3 + 2 + 2) * 6
    assert re["mean_accuracy"] == pytest.approx(res["mean_accuracy"]) and re["tie_rate"] == pytest.approx(res["tie_rate"])
    # realign's selections are the cached scores aligned in this process
    ds = steerkit.plugin.lookup("dataset", "mic")(path=data)
    targets = ae.resolve_targets(ds, "sampled")
    steerer = steerkit.Steerer("zero-shot-comparative", backend=eval_cli.CacheOnlyBackend(CountingFake()),
                               cache=cache, progress=False)
    table = steerer.score(ds.scenarios, ds.attributes)
    assert table.model_calls == 0 and [len(s.responses) for s in ds.scenarios] == [3, 3, 2, 2]
    for name, t in targets.items():
        assert re["selections"][name] == ae.first_choice(table, [t])[0][0].tolist()
    gold = steerkit.ScoreTable.from_labels(ds.scenarios, ds.attributes)
    assert res["mean_accuracy"] == pytest.approx(ae.evaluate_table(table, gold, targets).mean)
    text = invoke("realign", *common, "--targets", "high").output
    assert "0 model calls" in text and "tied predictions" in text


def test_reference_targets_and_tie_rules_are_options_and_recorded(tmp_path):
    cache = str(tmp_path / "scores.sqlite3")
    common = ["--strategy", "zero-shot-comparative", "--dataset", "helpsteer2", "--limit", "8",
              "--backend", "fake-flat", "--cache", cache]
    exp = run_json("eval", *common, "--targets", "reference-all", "--no-plots", "--out", str(tmp_path / "e"))
    assert exp["n_targets"] == 3124 and exp["ties"] == "expected" and exp["gold_ties"].startswith("exact")
    assert exp["config"]["targets"] == "reference-all" and "3,124" in exp["config"]["targets_note"]
    first = run_json("realign", *common, "--targets", "reference-all", "--ties", "first")
    assert first["ties"] == "first" and first["model_calls"] == 0
    # the fake model scores every response alike: every prediction ties, so the rules differ
    assert exp["tie_rate"] == first["tie_rate"] == 1.0
    assert first["mean_accuracy"] != pytest.approx(exp["mean_accuracy"])
    text = invoke("realign", *common, "--targets", "all", "--ties", "first").output
    assert "--ties first" in text and "not the reference's set" in text
    bad = invoke("eval", *common, "--ties", "random", ok=False)
    assert bad.exit_code == 2 and "random" in bad.output and CALLS["generate"] == 8 * 5


def test_oracle_scores_one_on_a_small_opinionqa_run(tmp_path):
    res = run_json("eval", "--strategy", "oracle", "--dataset", "opinionqa", "--limit", "20",
                   "--out", str(tmp_path / "o"))
    m = res["metrics"]
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0  # was 0.8 over a fixed class list
    assert m["js_base"] == "e"


def test_mic_label_rule_is_a_dataset_option_and_recorded(tmp_path):
    data = str(mic_fixture(tmp_path / "MIC.csv"))
    common = ["eval", "--strategy", "oracle", "--dataset", "mic", "--data", data, "--targets", "high", "--no-plots"]
    ref = run_json(*common, "--out", str(tmp_path / "a"))
    assert ref["config"]["label_rule"].startswith("reference") and ref["mean_accuracy"] == 1.0
    six = run_json(*common, "--dataset-option", "label_rule=sixths", "--out", str(tmp_path / "b"))
    assert six["config"]["label_rule"].startswith("sixths")
    bad = invoke(*common, "--dataset-option", "label_rule=thirds", ok=False)
    assert bad.exit_code == 2 and "sixths" in bad.output and "Traceback" not in bad.output
