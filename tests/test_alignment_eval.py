"""Alignment accuracy (issue 3, evaluation): hand-computed cases for ties, all-tie exclusion,
weights and the per-number-of-attributes summary; target sets on the real HelpSteer2 data."""

from __future__ import annotations

import json

import numpy as np
import pytest

import steerkit
from steerkit import AttributeTarget, Dataset, Scenario, ScoreTable
from steerkit_plugins import alignment_eval as ae


def scen(q, labels):
    return Scenario(q, tuple(f"{q} answer {i}" for i in range(len(labels))), labels=tuple(labels))


@pytest.fixture
def toy():
    return [
        # 0: r0=(0,0) r1=(1,0) r2=(1,1)
        scen("s0", [{"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 1.0}]),
        # 1: identical labels -> every target ties all responses -> always excluded
        scen("s1", [{"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}]),
        # 2: r0=(.25, 1) r1=(.75, 0)
        scen("s2", [{"a": 0.25, "b": 1.0}, {"a": 0.75, "b": 0.0}]),
    ]


def test_correct_sets_ties_and_exclusion(toy):
    gold = ScoreTable.from_labels(toy, ["a", "b"])
    targets = [AttributeTarget({"a": 1.0}), AttributeTarget({"a": 1.0, "b": 1.0}), AttributeTarget({"a": 0.5})]
    correct, valid = ae.gold_correct(gold, targets)
    # {a: 1}: s0 -> r1 and r2 tie (both correct), s2 -> r1
    assert correct[0, 0].tolist() == [False, True, True]
    assert correct[0, 2].tolist() == [False, True, False]
    # {a: 1, b: 1}: s0 -> r2 only; s2: r0 d=sqrt(.5625), r1 d=sqrt(1.0625) -> r0
    assert correct[1, 0].tolist() == [False, False, True]
    assert correct[1, 2].tolist() == [True, False, False]
    # {a: .5}: s2 -> both at .25: all tie, excluded; s1 always excluded; s0 has r0 at .5 and r1/r2 at .5 too
    assert valid.tolist() == [[True, False, True], [True, False, True], [False, False, False]]


def test_accuracy_by_hand(toy):
    gold = ScoreTable.from_labels(toy, ["a", "b"])
    targets = {"t1": AttributeTarget({"a": 1.0}), "t2": AttributeTarget({"a": 1.0, "b": 1.0}),
               "t3": AttributeTarget({"a": 0.5})}
    selected = np.array([
        [2, 0, 0],  # t1: s0 r2 correct (tie allowed), s1 excluded, s2 r0 wrong -> 1/2
        [2, 1, 0],  # t2: both right -> 1
        [0, 0, 0],  # t3: nothing valid -> NaN
    ])
    rep = ae.evaluate_selections(gold, targets, selected)
    assert rep.accuracy[:2].tolist() == [0.5, 1.0] and np.isnan(rep.accuracy[2])
    assert rep.n_valid.tolist() == [2, 2, 0]
    by = rep.by_n_attributes()
    assert by[1] == {"mean": 0.5, "se": 0.0, "n_targets": 2, "n_scored": 1}
    assert by[2]["mean"] == 1.0
    assert rep.mean == pytest.approx(0.75)  # NaN targets are left out of the mean
    d = rep.to_dict()
    assert d["targets"][2]["accuracy"] is None and d["mean_accuracy"] == pytest.approx(0.75)
    json.dumps(d)  # serialisable


def test_weighted_targets_use_weights_for_gold_and_prediction():
    s = scen("w", [{"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 1.0}])
    gold = ScoreTable.from_labels([s], ["a", "b"])
    t = AttributeTarget({"a": 1.0, "b": 0.0}, weights={"a": 1.0, "b": 4.0})
    # unweighted: d0 = 1, d1 = 1 -> all tie -> excluded
    _, valid = ae.gold_correct(gold, [t], "euclidean")
    assert not valid.any()
    # weighted: d0^2 = 1, d1^2 = 4 -> r0 is the only correct response
    correct, valid = ae.gold_correct(gold, [t], "weighted-euclidean")
    assert valid.all() and correct[0, 0].tolist() == [True, False]
    pred = gold  # the oracle table
    rep = ae.evaluate_table(pred, gold, {"w": t}, aligner="weighted-euclidean")
    assert rep.accuracy.tolist() == [1.0]
    flipped = ScoreTable(pred.scenarios, pred.attributes, pred.scores[:, ::-1].copy(), pred.mask, [], "x", "y")
    assert ae.evaluate_table(flipped, gold, {"w": t}, aligner="weighted-euclidean").accuracy.tolist() == [0.0]


def test_summary_standard_error_matches_formula():
    acc = np.array([1.0, 0.5, 0.2, 0.4, 0.6, np.nan])
    n = np.array([1, 1, 2, 2, 2, 2])
    out = ae.summarize(acc, n)
    assert out[1]["mean"] == pytest.approx(0.75) and out[1]["se"] == pytest.approx(np.std([1, 0.5], ddof=1) / np.sqrt(2))
    assert out[2]["mean"] == pytest.approx(0.4) and out[2]["n_targets"] == 4 and out[2]["n_scored"] == 3
    assert out[2]["se"] == pytest.approx(np.std([0.2, 0.4, 0.6], ddof=1) / np.sqrt(3))


def test_all_targets_counts():
    attrs = ["a", "b", "c", "d", "e"]
    levels = [0, 0.25, 0.5, 0.75, 1]
    full = ae.all_targets(attrs, levels)
    assert len(full) == 5**5 == 3125 and all(len(t.values) == 5 for t in full.values())
    subsets = ae.all_targets(attrs, levels, subsets=True)
    assert len(subsets) == 6**5 - 1 == 7775


@pytest.fixture(scope="module")
def helpsteer2():
    from steerkit_plugins.datasets_attributes import load_helpsteer2
    from tests.conftest import DATA

    return load_helpsteer2(path=DATA / "helpsteer2")


def test_target_sets_on_real_helpsteer2(helpsteer2, tmp_path):
    assert len(ae.resolve_targets(helpsteer2, "sampled")) == 50
    assert list(ae.resolve_targets(helpsteer2, "high")) == ["target_high"]
    assert list(ae.resolve_targets(helpsteer2, "low")) == ["target_low"]
    assert len(ae.resolve_targets(helpsteer2, "named")) == 52
    assert len(ae.resolve_targets(helpsteer2, "all")) == 3125
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"mine": {"verbosity": 0.25}}))
    assert ae.resolve_targets(helpsteer2, str(f))["mine"].values == {"verbosity": 0.25}
    with pytest.raises(steerkit.InvalidTargetError, match="neither"):
        ae.resolve_targets(helpsteer2, "nope")
    f.write_text(json.dumps({"bad": {"care": 0.5}}))
    with pytest.raises(steerkit.UnknownAttributeError, match="care"):
        ae.resolve_targets(helpsteer2, str(f))
    assert set(ae.per_attribute_targets(helpsteer2)) == {f"{a}={l}" for a in helpsteer2.attributes for l in ("high", "low")}


def test_gold_table_is_perfect_and_random_is_half_on_all_targets(helpsteer2):
    gold = ScoreTable.from_labels(helpsteer2.scenarios, helpsteer2.attributes)
    targets = ae.resolve_targets(helpsteer2, "all")
    rep = ae.evaluate_table(gold, gold, targets)  # speed: benchmarks/bench_comparative.py row 2
    assert np.nanmin(rep.accuracy) == 1.0 and rep.n_scenarios == 359
    rng = np.random.default_rng(0)
    rand = ae.evaluate_selections(gold, targets, rng.integers(0, 2, size=(len(targets), len(helpsteer2))))
    assert abs(rand.mean - 0.5) < 0.02
    # the all-high target: some scenarios tie on every response and are excluded
    hi = ae.evaluate_table(gold, gold, ae.resolve_targets(helpsteer2, "high"))
    assert 0 < hi.n_valid[0] < 359


def test_label_levels_fall_back_to_distinct_values():
    ds = Dataset("toy", [scen("x", [{"a": 0.0}, {"a": 1.0}]), scen("y", [{"a": 0.5}, {"a": 1.0}])], ["a"])
    assert ae.label_levels(ds) == [0.0, 0.5, 1.0]
    assert ae.resolve_targets(ds, "high")["target_high"].values == {"a": 1.0}


# -- ties in the prediction --------------------------------------------------------------
def test_tied_predictions_score_the_expected_accuracy_of_a_random_tie_break():
    """Hand-computed: a prediction that cannot tell responses apart earns the share of the tied
    responses that are correct, not whatever response index 0 happens to be."""
    data = [
        scen("t0", [{"a": 1.0}, {"a": 0.0}]),  # target a=1: r0 correct
        scen("t1", [{"a": 0.0}, {"a": 1.0}]),  # r1 correct
        scen("t2", [{"a": 0.0}, {"a": 1.0}, {"a": 1.0}]),  # r1 and r2 correct (gold tie)
        scen("t3", [{"a": 0.0}, {"a": 0.5}, {"a": 1.0}]),  # r2 correct
    ]
    gold = ScoreTable.from_labels(data, ["a"])
    pred = ScoreTable.empty(data, ["a"])
    pred.scores[0, :2, 0] = [0.5, 0.5]  # tie of r0 (correct) and r1: 1/2
    pred.scores[1, :2, 0] = [0.3, 0.3]  # tie of r0 and r1 (correct): 1/2 (index 0 would score 0)
    pred.scores[2, :3, 0] = [0.7, 0.7, 0.7]  # 3-way tie, 2 correct: 2/3
    pred.scores[3, :3, 0] = [0.2, 0.9, 0.9]  # tie of r1 and r2 (correct): 1/2
    rep = ae.evaluate_table(pred, gold, {"hi": AttributeTarget({"a": 1.0})})
    assert rep.accuracy[0] == pytest.approx((0.5 + 0.5 + 2 / 3 + 0.5) / 4)
    assert rep.n_tied.tolist() == [4] and rep.tie_rate == 1.0
    # no ties: ordinary accuracy, tie rate 0
    clear = ScoreTable.empty(data, ["a"])
    clear.scores[:, :, 0] = [[0.9, 0.1, np.nan], [0.9, 0.1, np.nan], [0.1, 0.5, 0.9], [0.1, 0.5, 0.9]]
    rep2 = ae.evaluate_table(clear, gold, {"hi": AttributeTarget({"a": 1.0})})
    assert rep2.accuracy.tolist() == [0.75] and rep2.tie_rate == 0.0  # t0 right, t1 wrong, t2, t3 right
    d = rep.to_dict()
    assert d["tie_rate"] == 1.0 and d["targets"][0]["n_tied"] == 4


def test_always_first_baseline_is_one_half_with_a_constant_table_not_more(helpsteer2):
    """A constant prediction ties every response: on HelpSteer2's two-response scenarios that is
    exactly 1/2 per valid scenario, whatever the gold order (index 0 alone scored ~53%)."""
    gold = ScoreTable.from_labels(helpsteer2.scenarios, helpsteer2.attributes)
    const = ScoreTable.empty(helpsteer2.scenarios, helpsteer2.attributes)
    const.scores[const.mask] = 0.5
    targets = ae.resolve_targets(helpsteer2, "sampled")
    rep = ae.evaluate_table(const, gold, targets)
    assert np.allclose(rep.accuracy[np.isfinite(rep.accuracy)], 0.5) and rep.tie_rate == 1.0
    first = ae.evaluate_selections(gold, targets, np.zeros((len(targets), len(helpsteer2)), dtype=int))
    assert first.mean != pytest.approx(0.5, abs=0.005)  # the index-0 tie-break is biased on this data


def test_selection_ties_feed_the_same_rule():
    data = [scen("u0", [{"a": 1.0}, {"a": 0.0}, {"a": 0.0}])]
    gold = ScoreTable.from_labels(data, ["a"])
    sels = [[steerkit.Selection(1, data[0].responses[1], [], [], "x", "y", ties=[0, 2])]]
    tied = ae.tied_from_selections(sels, 3)
    rep = ae.evaluate_selections(gold, {"hi": AttributeTarget({"a": 1.0})}, np.array([[1]]), tied=tied)
    assert rep.accuracy[0] == pytest.approx(1 / 3) and rep.n_tied.tolist() == [1]
    plain = ae.evaluate_selections(gold, {"hi": AttributeTarget({"a": 1.0})}, np.array([[1]]))
    assert plain.accuracy[0] == 0.0 and plain.n_tied is None
