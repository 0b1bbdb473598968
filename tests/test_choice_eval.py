"""Choice-dataset evaluation, `steerkit compare`, the faithfulness check and moderation."""

import json
import warnings

import click
import pytest
from click.testing import CliRunner

import steerkit
from steerkit_plugins import choice_eval, metrics
from tests.fakes import FakeBackend


def commands():
    group = click.Group("steerkit")
    choice_eval.register_commands(group)
    return group


@pytest.fixture
def vk5(data_dir):
    return steerkit.lookup("dataset", "vk")(path=data_dir, limit=5)


@pytest.fixture
def oqa6(data_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return steerkit.lookup("dataset", "opinionqa")(path=data_dir, limit=6)


def test_registered():
    assert "openai-moderation" in steerkit.registry("classifier")
    assert {"vk", "opinionqa"} <= set(steerkit.registry("dataset"))
    assert "cot" in steerkit.registry("strategy")


def test_evaluate_vk_writes_results(vk5, tmp_path, cache_path):
    s = steerkit.Steerer("cot", backend=FakeBackend(), cache=cache_path, progress=False)
    rep = choice_eval.evaluate_choice_dataset(s, vk5, out_dir=tmp_path, print_table=False)
    gold = vk5.gold
    pred = [it["pred"] for it in rep["items"]]
    assert pred == [0] * 5  # FakeBackend answers the first letter
    assert rep["metrics"]["accuracy"] == metrics.choice_metrics(gold, pred)["accuracy"]
    assert rep["metrics"]["binary"] == metrics.vk_binary_metrics(gold, pred)
    assert set(rep["baselines"]) == {"majority", "random"}
    assert rep["model_calls"] == 10 and rep["no_parsable_answer_share"] == 0.0
    saved = json.loads((tmp_path / "vk_cot_5.json").read_text())
    assert saved["items"][0]["perspective"] == "Right to a safe environment"
    assert saved["items"][0]["reasoning"] == ["fake reasoning."]
    again = choice_eval.evaluate_choice_dataset(s, vk5, limit=3, print_table=False)
    assert again["n"] == 3 and again["model_calls"] == 0


def test_evaluate_opinionqa_js_distance(oqa6, capsys):
    s = steerkit.Steerer("cot", backend=FakeBackend(), cache=False, progress=False, distribution=True)
    rep = choice_eval.evaluate_choice_dataset(s, oqa6)
    dists = [it["distribution"] for it in rep["items"]]
    golds = [it["gold_distribution"] for it in rep["items"]]
    assert rep["metrics"]["js_distance"] == pytest.approx(metrics.js_distance(dists, golds)["mean"])
    assert rep["metrics"]["js_distance_source"] == "option probabilities"
    assert 0 <= rep["baselines"]["random"]["js_distance"] <= 1
    out = capsys.readouterr().out
    assert "majority" in out and "random" in out and "JSD" in out


def test_evaluate_needs_perspectives():
    ds = steerkit.Dataset("plain", [steerkit.Scenario("q", ("a", "b"))])
    s = steerkit.Steerer("cot", backend=FakeBackend(), cache=False, progress=False)
    with pytest.raises(steerkit.DatasetError, match="perspectives"):
        choice_eval.evaluate_choice_dataset(s, ds)


def _results(path, correct):
    items = [{"id": str(i), "perspective": "p", "question": "q", "options": ["A", "B"], "gold": 0,
              "pred": 0 if c else 1, "correct": c, "reasoning": ["r"]} for i, c in enumerate(correct)]
    path.write_text(json.dumps({"strategy": "x", "items": items}))
    return path


def test_compare_command(tmp_path):
    a = _results(tmp_path / "a.json", [True] * 8 + [False] * 2 + [True] * 5)
    b = _results(tmp_path / "b.json", [False] * 8 + [True] * 2 + [True] * 5)
    r = CliRunner().invoke(commands(), ["compare", str(a), str(b), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert (res["a_only"], res["b_only"]) == (8, 2)
    assert res["p_value"] == pytest.approx(2 * 56 / 1024)
    r = CliRunner().invoke(commands(), ["compare", str(a), str(b)])
    assert r.exit_code == 0 and "McNemar" in r.output


def test_faithfulness_fake():
    items = [{"id": "1", "question": "q1", "options": ["x", "y", "z"], "pred": 0, "reasoning": ["r1"]},
             {"id": "2", "question": "q2", "options": ["x", "y", "z"], "pred": 2, "reasoning": ["r2"]},
             {"id": "3", "question": "q3", "options": ["x", "y"], "pred": 1, "reasoning": ["r3"]}]
    be = FakeBackend(responder=lambda p, c: c.value[0])  # the evaluator always says A
    res = choice_eval.check_faithfulness(items, be)
    assert res["faithful_rate"] == pytest.approx(1 / 3)
    assert res["unfaithful_evaluator_answers"] == {"x": 2}
    seen = be.prompts_seen[0][0]["content"]
    assert "Reasoning: r1" in seen and "Options: A. x B. y C. z" in seen


def test_moderation_without_key(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(steerkit.BackendError, match="OPENAI_API_KEY is not set"):
        steerkit.lookup("classifier", "openai-moderation")()
    res = _results(tmp_path / "a.json", [True])
    r = CliRunner().invoke(commands(), ["moderation", str(res)])
    assert r.exit_code == 0
    assert "moderation check skipped: OPENAI_API_KEY is not set" in r.output


def test_moderation_flagged_share_with_client():
    class Result:
        def __init__(self, flagged, cats):
            self.flagged, self.categories = flagged, cats

    class Client:
        class moderations:
            @staticmethod
            def create(model, input):
                return type("R", (), {"results": [
                    Result("hate" in t, {"hate": "hate" in t, "violence": "kill" in t}) for t in input]})

    clf = choice_eval.OpenAIModeration(client=Client(), batch_size=2)
    res = choice_eval.flagged_share(clf.classify(["fine", "hate speech", "kill and hate", "ok"]))
    assert res["n"] == 4 and res["flagged_share"] == 0.5
    assert res["by_category"] == {"hate": 0.5, "violence": 0.25}


@pytest.mark.slow
def test_faithfulness_real_model(embedded_backend, vk5, cache_path):
    cots = [
        "Helping refugees keeps people safe, so the right clearly supports it.",
        "Disobeying a law goes against the duty to obey the law, so the duty opposes it.",
        "Loyalty could argue either way here.",
    ]
    items = [{"id": s.id, "question": s.question, "options": list(s.responses), "pred": p, "reasoning": [c]}
             for s, p, c in zip(vk5.scenarios, (0, 1, 2), cots)]
    cache = steerkit.ScoreCache(cache_path)
    res = choice_eval.check_faithfulness(items, embedded_backend, cache)
    assert res["n"] == 3 and res["model_calls"] == 3
    assert 0.0 <= res["faithful_rate"] <= 1.0
    assert all(r["evaluator"] in (0, 1, 2) for r in res["items"])
    assert sum(res["unfaithful_evaluator_answers"].values()) == sum(not r["faithful"] for r in res["items"])
    again = choice_eval.check_faithfulness(items, embedded_backend, cache)
    assert again["model_calls"] == 0 and again["items"] == res["items"]
