"""Choice-dataset evaluation, `steerkit compare`, the faithfulness check and moderation."""

import json
import warnings

import click
import pytest
from click.testing import CliRunner

import steerkit
from steerkit_plugins import perspective_eval, perspective_metrics
from steerkit_plugins.perspective_datasets import vk_from_records
from tests.fakes import FakeBackend


def commands():
    group = click.Group("steerkit")
    perspective_eval.register_commands(group)
    return group


@pytest.fixture
def vk5(data_dir):
    return steerkit.plugin.lookup("dataset", "vk")(path=data_dir, limit=5)


@pytest.fixture
def oqa6(data_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return steerkit.plugin.lookup("dataset", "opinionqa")(path=data_dir, limit=6)


def test_registered():
    assert "openai-moderation" in steerkit.plugin.registry("classifier")
    assert {"vk", "opinionqa"} <= set(steerkit.plugin.registry("dataset"))
    assert "cot" in steerkit.plugin.registry("strategy")


def test_evaluate_vk_writes_results(vk5, tmp_path, cache_path):
    s = steerkit.Steerer("cot", backend=FakeBackend(), cache=cache_path, progress=False)
    rep = perspective_eval.evaluate_choice_dataset(s, vk5, out_dir=tmp_path, print_table=False)
    gold = vk5.gold
    pred = [it["pred"] for it in rep["items"]]
    assert pred == [0] * 5  # FakeBackend answers the first letter
    assert rep["metrics"]["accuracy"] == perspective_metrics.choice_metrics(gold, pred)["accuracy"]
    assert rep["metrics"]["binary"] == perspective_metrics.vk_binary_metrics(gold, pred)
    assert rep["metrics"]["binary_mp"] == perspective_metrics.vk_binary_mp_metrics(gold, pred)
    assert set(rep["baselines"]) == {"majority", "random"}
    assert rep["model_calls"] == 10 and rep["no_parsable_answer_share"] == 0.0
    saved = json.loads((tmp_path / "vk_cot_5.json").read_text())
    assert saved["items"][0]["perspective"] == "Right to a safe environment"
    assert saved["items"][0]["reasoning"] == ["fake reasoning."]
    again = perspective_eval.evaluate_choice_dataset(s, vk5, limit=3, print_table=False)
    assert again["n"] == 3 and again["model_calls"] == 0


# 8 hand-made VK items: gold labels and the letters a scripted model answers (a mix with Either)
GOLD8 = [0, 0, 1, 1, 2, 2, 0, 1]
PRED8 = [0, 2, 1, 0, 2, 0, 1, 2]


def vk8():
    labels = ["Supports", "Opposes", "Either"]
    records = [{"id": str(i), "situation": f"Situation number {i}", "vrd": f"Value {i}", "label": labels[g]}
               for i, g in enumerate(GOLD8)]
    return vk_from_records(records)


def scripted(p, constraint):
    if constraint is None:
        return "Some reasoning.\nAnswer: A"
    i = int(p[0]["content"].split("Situation number ")[1].split("\n")[0])
    return "ABC"[PRED8[i]]


def test_evaluate_vk_mixed_predictions_hand_computed():
    s = steerkit.Steerer("cot", backend=FakeBackend(responder=scripted), cache=False, progress=False)
    rep = perspective_eval.evaluate_choice_dataset(s, vk8(), print_table=False)
    assert [it["pred"] for it in rep["items"]] == PRED8
    m = rep["metrics"]
    # three-way: right on items 0, 2, 4
    assert m["accuracy"] == pytest.approx(3 / 8)
    # recall per gold class: Supports 1/3 (items 0, 1, 6), Opposes 1/3 (2, 3, 7), Either 1/2 (4, 5)
    assert m["balanced_accuracy"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 2) / 3)
    # F1: Supports P 1/3 R 1/3; Opposes P 1/2 R 1/3 -> 0.4; Either P 1/3 R 1/2 -> 0.4
    assert m["macro_f1"] == pytest.approx((1 / 3 + 0.4 + 0.4) / 3)
    # binary (the paper's): gold Either (4, 5) dropped; predicted Either (1, 7) is wrong
    b = m["binary"]
    assert b["n"] == 6 and b["predicted_either"] == 2
    assert b["accuracy"] == pytest.approx(2 / 6)  # items 0 and 2
    assert b["balanced_accuracy"] == pytest.approx(1 / 3) and b["macro_f1"] == pytest.approx(0.4)
    # binary_mp (Modular Pluralism's): predicted Either dropped too -> items 0, 2, 3, 6
    mp = m["binary_mp"]
    assert mp["n"] == 4 and mp["dropped_predicted_either"] == 2
    assert mp["accuracy"] == pytest.approx(0.5) and mp["macro_f1"] == pytest.approx(0.5)
    assert rep["labels"] == [0, 1, 2]
    assert [it["letters"] for it in rep["items"]] == [["ABC"[p]] for p in PRED8]


def test_small_vk_run_averages_macro_f1_over_the_classes_present():
    s = steerkit.Steerer("cot", backend=FakeBackend(responder=scripted), cache=False, progress=False)
    rep = perspective_eval.evaluate_choice_dataset(s, vk8(), limit=2, print_table=False)
    # gold [S, S], pred [S, E]: F1 Supports 2/3, Either 0; Opposes is in neither -> 1/3, not 2/9
    assert rep["metrics"]["macro_f1"] == pytest.approx(1 / 3)
    assert rep["labels"] == [0, 2]
    assert rep["baselines"]["majority"]["macro_f1"] == 1.0  # predicts Supports: the only class present
    assert "oracle class prior" in rep["baselines"]["majority"]["note"]


@pytest.mark.parametrize("limit", [1, 3, 20, 45])
def test_oracle_scores_one_on_every_limit(data_dir, limit):
    for name in ("opinionqa", "vk"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ds = steerkit.plugin.lookup("dataset", name)(path=data_dir, limit=limit)
        s = steerkit.Steerer("oracle", cache=False, progress=False)
        m = perspective_eval.evaluate_choice_dataset(s, ds, print_table=False)["metrics"]
        assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0, (name, limit)
        if name == "vk" and m["binary"]["n"]:
            assert m["binary"]["macro_f1"] == m["binary_mp"]["macro_f1"] == 1.0


def test_evaluate_opinionqa_js_distance(oqa6, capsys):
    s = steerkit.Steerer("cot", backend=FakeBackend(), cache=False, progress=False, distribution=True)
    rep = perspective_eval.evaluate_choice_dataset(s, oqa6)
    dists = [it["distribution"] for it in rep["items"]]
    golds = [it["gold_distribution"] for it in rep["items"]]
    assert rep["metrics"]["js_distance"] == pytest.approx(perspective_metrics.js_distance(dists, golds)["mean"])
    assert rep["metrics"]["js_distance_source"] == "option probabilities"
    assert rep["metrics"]["js_base"] == "e"  # scipy's default, as Modular Pluralism
    assert rep["labels"] == sorted({it["gold"] for it in rep["items"]} | {it["pred"] for it in rep["items"]})
    assert 0 <= rep["baselines"]["random"]["js_distance"] <= 1
    out = capsys.readouterr().out
    assert "majority (oracle class prior)" in out and "random" in out and "JSD (base e)" in out


def test_evaluate_needs_perspectives():
    ds = steerkit.Dataset("plain", [steerkit.Scenario("q", ("a", "b"))])
    s = steerkit.Steerer("cot", backend=FakeBackend(), cache=False, progress=False)
    with pytest.raises(steerkit.DatasetError, match="perspectives"):
        perspective_eval.evaluate_choice_dataset(s, ds)


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
    res = perspective_eval.check_faithfulness(items, be)
    assert res["faithful_rate"] == pytest.approx(1 / 3)
    assert res["unfaithful_evaluator_answers"] == {"x": 2}
    seen = be.prompts_seen[0][0]["content"]
    assert "Reasoning: r1" in seen and "Options: A. x B. y C. z" in seen


def test_faithfulness_checks_each_sample_against_its_own_letter():
    # self-consistency: 3 samples, letters B, A, B; the vote (pred) is B
    items = [{"id": "1", "question": "q1", "options": ["x", "y", "z"], "pred": 1,
              "reasoning": ["leads to y", "leads to x", "also y"], "letters": ["B", "A", "B"]}]
    be = FakeBackend(responder=lambda p, c: "A" if "leads to x" in p[0]["content"] else "B")
    res = perspective_eval.check_faithfulness(items, be)
    assert res["n"] == 3 and res["n_items"] == 1
    assert res["faithful_rate"] == 1.0  # each CoT matches its own sample's answer
    assert [(r["sample"], r["pred"], r["evaluator"]) for r in res["items"]] == [(0, 1, 1), (1, 0, 0), (2, 1, 1)]
    always_b = perspective_eval.check_faithfulness(items, FakeBackend(responder=lambda p, c: "B"))
    assert always_b["faithful_rate"] == pytest.approx(2 / 3)  # sample 1 argued for A
    assert always_b["unfaithful_evaluator_answers"] == {"y": 1}
    with pytest.raises(steerkit.DatasetError, match="no per-sample 'letters'"):
        perspective_eval.check_faithfulness([{**items[0], "letters": None}], be)


class FaithfulnessFake(FakeBackend):
    name = "fake-faithfulness"


class FaithfulnessPlugin:
    @steerkit.plugin.hookimpl
    def register_backends(self, register):
        register("fake-faithfulness", lambda model=None, **kw: FaithfulnessFake(
            model, responder=lambda p, c: "A" if "supports" in p[0]["content"] else "C"))


def test_faithfulness_command(tmp_path, cache_path):
    s = steerkit.Steerer("cot", backend=FakeBackend(responder=scripted), cache=False, progress=False)
    results = perspective_eval.evaluate_choice_dataset(s, vk8(), out_dir=tmp_path, limit=4, print_table=False)
    path = results["path"]
    data = json.loads(open(path).read())
    # rewrite two CoTs so the scripted evaluator (A when "supports", else C) agrees with some
    data["items"][0]["reasoning"] = ["The value supports it."]  # pred A: faithful
    data["items"][2]["reasoning"] = ["The value supports it."]  # pred B: unfaithful (evaluator A)
    open(path, "w").write(json.dumps(data))
    name = steerkit.plugin.register_plugin(FaithfulnessPlugin(), name="test-faithfulness-fake")
    try:
        r = CliRunner().invoke(commands(), ["faithfulness", path, "--backend", "fake-faithfulness",
                                            "--cache", str(cache_path), "--json"])
        assert r.exit_code == 0, r.output
        res = json.loads(r.output)
        # preds A, C, B, A; evaluator A, C, A, C -> items 0 and 1 faithful
        assert res["n"] == 4 and res["faithful_rate"] == pytest.approx(0.5) and res["model_calls"] == 4
        assert res["unfaithful_evaluator_answers"] == {"Support": 1, "Either": 1}
        r = CliRunner().invoke(commands(), ["faithfulness", path, "--backend", "fake-faithfulness",
                                            "--cache", str(cache_path)])
        assert r.exit_code == 0 and "faithful: 50.0% of 4 CoTs (4 items)" in r.output
        assert "0 model calls" in r.output  # served from the cache
    finally:
        steerkit.plugin.unregister_plugin(name)


def test_moderation_without_key(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(steerkit.BackendError, match="OPENAI_API_KEY is not set"):
        steerkit.plugin.lookup("classifier", "openai-moderation")()
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

    clf = perspective_eval.OpenAIModeration(client=Client(), batch_size=2)
    res = perspective_eval.flagged_share(clf.classify(["fine", "hate speech", "kill and hate", "ok"]))
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
    cache = steerkit.plugin.ScoreCache(cache_path)
    res = perspective_eval.check_faithfulness(items, embedded_backend, cache)
    assert res["n"] == 3 and res["model_calls"] == 3
    assert 0.0 <= res["faithful_rate"] <= 1.0
    assert all(r["evaluator"] in (0, 1, 2) for r in res["items"])
    assert sum(res["unfaithful_evaluator_answers"].values()) == sum(not r["faithful"] for r in res["items"])
    again = perspective_eval.check_faithfulness(items, embedded_backend, cache)
    assert again["model_calls"] == 0 and again["items"] == res["items"]
