"""Alignment accuracy (issue 3, evaluation): hand-computed cases for ties, all-tie exclusion,
weights and the per-number-of-attributes summary; target sets on the real HelpSteer2 data."""

from __future__ import annotations

import json

import numpy as np
import pytest

import steerkit
from steerkit import AttributeTarget, Dataset, Scenario, ScoreTable
from steerkit_plugins import attribute_eval as ae


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
    from steerkit_plugins.attribute_datasets import load_helpsteer2
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


# -- the AIES'25 reference repository's rules (score.py, sample_targets.py) ------------------
def reference_all_targets(attributes, n_levels):
    """sample_targets.get_all_possible_targets, re-implemented from the reference's code."""
    import itertools

    values = [round(i / (n_levels - 1), 2) for i in range(n_levels)]
    targets = [dict(zip(attributes, combo)) for combo in itertools.product(values, repeat=len(attributes))]
    return [{k: v for k, v in t.items() if v != 0.5} for t in targets]


def reference_correct(labels, target):
    """score.get_correct_response_indexes: np.linalg.norm over the target's keys, exact ==."""
    dists = [np.linalg.norm(np.array(list(target.values())) - np.array([lab[a] for a in target])) for lab in labels]
    return [i for i, x in enumerate(dists) if x == min(dists)]


def reference_select(predictions, target):
    """alignment_utils.select_response_index: strict <, so the first response at the minimum wins."""
    best, min_dist = 0, np.inf
    for i, p in enumerate(predictions):
        d = np.linalg.norm(np.array(list(target.values())) - np.array([p[a] for a in target]))
        if d < min_dist:
            best, min_dist = i, d
    return best


def reference_accuracy(scenario_labels, scenario_predictions, target):
    """score.score_file: skip all-tie scenarios, count the chosen response when among the correct."""
    right = total = 0
    for labels, preds in zip(scenario_labels, scenario_predictions):
        correct = reference_correct(labels, target)
        if len(correct) == len(labels):
            continue
        right += reference_select(preds, target) in correct
        total += 1
    return right / total if total else float("nan")


def test_reference_all_is_the_reference_repositorys_target_set(helpsteer2):
    targets = ae.resolve_targets(helpsteer2, "reference-all")
    ref = [t for t in reference_all_targets(helpsteer2.attributes, 5) if t]  # the all-0.5 one is empty
    assert len(targets) == len(ref) == 3124
    assert [dict(t.values) for t in targets.values()] == ref  # same targets, same order
    full = {tuple(sorted(t.values.items())) for t in ae.resolve_targets(helpsteer2, "all").values()}
    assert len(full & {tuple(sorted(t.items())) for t in ref}) == 1024  # only the 4^5 full vectors overlap
    assert "3,124" in ae.TARGET_SET_NOTES["reference-all"]


def test_gold_ties_are_exact_as_in_the_reference():
    """Labels rounded to 2 decimals (MIC): for target (0, .33) the response at (0, .5) lies at
    0.16999999999999998 and the one at (.17, .33) at 0.17. The reference's exact comparison makes
    only the first correct; a 1e-9 tolerance called it an all-tie and dropped the scenario."""
    data = [scen("m0", [{"care": 0.0, "fairness": 0.5}, {"care": 0.17, "fairness": 0.33}])]
    gold = ScoreTable.from_labels(data, ["care", "fairness"])
    target = {"care": 0.0, "fairness": 0.33}
    correct, valid = ae.gold_correct(gold, [AttributeTarget(target)])
    assert reference_correct(data[0].labels, target) == [0]
    assert correct[0, 0].tolist() == [True, False] and valid.tolist() == [[True]]
    rep = ae.evaluate_selections(gold, {"t": AttributeTarget(target)}, np.array([[1]]))
    assert rep.accuracy.tolist() == [0.0] and rep.n_valid.tolist() == [1]


def mic_like(n_scenarios, seed):
    rng = np.random.default_rng(seed)
    levels = [round(i / 6, 2) for i in range(7)]
    attrs = ["care", "fairness", "liberty", "loyalty", "authority", "sanctity"]
    out = []
    for i in range(n_scenarios):
        n = int(rng.integers(2, 5))
        out.append(scen(f"q{i}", [{a: float(rng.choice(levels)) for a in attrs} for _ in range(n)]))
    return out, attrs


def test_gold_correct_sets_match_the_references_score_py_to_the_bit():
    data, attrs = mic_like(60, seed=3)
    gold = ScoreTable.from_labels(data, attrs)
    all_ref = [t for t in reference_all_targets(attrs, 7) if t]
    rng = np.random.default_rng(4)
    picked = [all_ref[i] for i in rng.choice(len(all_ref), 400, replace=False)]
    picked.append({"sanctity": 0.83, "care": 0.17, "loyalty": 0.33})  # key order differs from the table's
    correct, _ = ae.gold_correct(gold, [AttributeTarget(t) for t in picked])
    for t, target in enumerate(picked):
        for s, sc in enumerate(data):
            assert np.flatnonzero(correct[t, s]).tolist() == reference_correct(sc.labels, target), (target, s)


@pytest.mark.parametrize("ties", ["expected", "first"])
def test_a_perfect_prediction_scores_one_on_two_decimal_labels(ties):
    """Predicted ties are exact like gold ones: the gold table as the prediction scores 1.0 on
    MIC-style labels (a 1e-9 tolerance on predictions alone scored near-ties 1/2)."""
    data, attrs = mic_like(100, seed=1)
    gold = ScoreTable.from_labels(data, attrs)
    all_ref = [t for t in reference_all_targets(attrs, 7) if t]
    targets = {str(i): AttributeTarget(t) for i, t in enumerate(all_ref[::5])}
    rep = ae.evaluate_table(gold, gold, targets, ties=ties)
    assert np.nanmin(rep.accuracy) == 1.0


def test_the_oracle_strategy_scores_one_on_two_decimal_labels():
    from steerkit_plugins import eval_cli

    data, attrs = mic_like(40, seed=1)
    ds = Dataset("mic-like", data, attrs)
    all_ref = [t for t in reference_all_targets(attrs, 7) if t]
    targets = {str(i): AttributeTarget(t) for i, t in enumerate(all_ref[::300])}
    oracle = steerkit.Steerer("oracle", cache=False, progress=False)
    for ties in ("expected", "first"):
        res = eval_cli.evaluate_attribute_dataset(oracle, ds, targets, plots=False, progress=False, ties=ties)
        assert min(t["accuracy"] for t in res["targets"] if t["accuracy"] is not None) == 1.0, ties


def test_ties_first_is_the_references_rule_and_is_recorded():
    data = [scen("t0", [{"a": 0.0}, {"a": 1.0}]), scen("t1", [{"a": 1.0}, {"a": 0.0}])]
    gold = ScoreTable.from_labels(data, ["a"])
    pred = ScoreTable.empty(data, ["a"])
    pred.scores[:, :, 0] = [[0.5, 0.5], [0.5, 0.5]]  # every prediction ties
    target = {"hi": AttributeTarget({"a": 1.0})}
    first = ae.evaluate_table(pred, gold, target, ties="first")
    assert first.accuracy.tolist() == [0.5]  # t0: first (r0) wrong; t1: first (r0) right
    assert first.n_tied.tolist() == [2]
    expected = ae.evaluate_table(pred, gold, target)
    assert expected.accuracy.tolist() == [0.5]
    pred.scores[1] = [[0.2], [0.2]]  # t1 tie now: first (r0) right, expected 1/2
    pred.scores[0] = [[0.1], [0.9]]  # t0 clear: r1 right
    assert ae.evaluate_table(pred, gold, target, ties="first").accuracy.tolist() == [1.0]
    assert ae.evaluate_table(pred, gold, target).accuracy.tolist() == [0.75]
    d = first.to_dict()
    assert d["ties"] == "first" and "first" in d["ties_rule"] and d["gold_ties"].startswith("exact")
    sel = ae.evaluate_selections(gold, target, np.array([[0, 0]]), tied=np.ones((1, 2, 2), bool), ties="first")
    assert sel.accuracy.tolist() == [0.5] and sel.ties == "first"
    with pytest.raises(steerkit.InvalidOptionError, match="expected.*first"):
        ae.evaluate_table(pred, gold, target, ties="random")


def test_ties_first_agrees_with_the_reference_scoring_to_the_last_digit():
    """Predicted scores on a 0.01 grid averaged over 2 samples (as self-consistency gives) tie
    often; accuracy under ``ties="first"`` equals score.py's on every target."""
    data, attrs = mic_like(80, seed=5)
    gold = ScoreTable.from_labels(data, attrs)
    rng = np.random.default_rng(6)
    pred = ScoreTable.empty(data, attrs)
    pred.scores[pred.mask] = (rng.integers(0, 101, (pred.mask.sum(), len(attrs))) / 100
                              + rng.integers(0, 101, (pred.mask.sum(), len(attrs))) / 100) / 2
    pred.scores[pred.mask] = np.round(pred.scores[pred.mask] * 2) / 2  # coarse: many predicted ties
    all_ref = [t for t in reference_all_targets(attrs, 7) if t]
    picked = [all_ref[i] for i in rng.choice(len(all_ref), 150, replace=False)]
    targets = {str(i): AttributeTarget(t) for i, t in enumerate(picked)}
    rep = ae.evaluate_table(pred, gold, targets, ties="first")
    preds = [pred.response_scores(i) for i in range(len(data))]
    ref = [reference_accuracy([s.labels for s in data], preds, t) for t in picked]
    assert rep.accuracy.tolist() == ref
    assert rep.tie_rate > 0.1  # the case this is about


def test_first_choice_in_blocks_equals_one_block(monkeypatch):
    data, attrs = mic_like(30, seed=8)
    table = ScoreTable.from_labels(data, attrs)
    targets = [AttributeTarget(t) for t in reference_all_targets(attrs, 7)[1:400:7]]
    whole = ae.first_choice(table, targets)
    monkeypatch.setattr(ae, "CHUNK_ELEMENTS", 200)  # a few targets per block
    assert ae._chunks(len(targets), table).step < len(targets)
    blocks = ae.first_choice(table, targets)
    assert (whole[0] == blocks[0]).all() and (whole[1] == blocks[1]).all() and whole[1].any()
