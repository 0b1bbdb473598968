"""Choice metrics: checked against scikit-learn/scipy on fixtures and against hand-computed cases."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

import steerkit
from steerkit_plugins import perspective_metrics

GOLD = [0, 0, 0, 1, 1, 2, 2, 0, 1, 2]
PRED = [0, 1, 0, 1, 2, 2, 0, 0, 1, 1]


def test_choice_metrics_match_sklearn():
    m = perspective_metrics.choice_metrics(GOLD, PRED)
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(accuracy_score(GOLD, PRED))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(GOLD, PRED))
    assert m["macro_f1"] == pytest.approx(f1_score(GOLD, PRED, average="macro"))


def test_choice_metrics_hand_computed():
    # gold 0: 4 items, 3 right; gold 1: 3 items, 2 right; gold 2: 3 items, 1 right
    m = perspective_metrics.choice_metrics(GOLD, PRED)
    assert m["accuracy"] == pytest.approx(6 / 10)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 1 / 3) / 3)
    # class 0: tp 3, fp 1, fn 1 -> f1 .75; class 1: tp 2, fp 2, fn 1 -> 4/7; class 2: tp 1, fp 1, fn 2 -> 0.4
    assert m["macro_f1"] == pytest.approx((0.75 + 4 / 7 + 0.4) / 3)


def test_choice_metrics_empty_and_mismatch():
    assert perspective_metrics.choice_metrics([], [])["n"] == 0
    assert math.isnan(perspective_metrics.choice_metrics([], [])["accuracy"])
    with pytest.raises(ValueError):
        perspective_metrics.choice_metrics([0, 1], [0])


def test_vk_binary_is_the_papers_definition_hand_computed():
    gold = [0, 0, 1, 1, 2, 2, 0, 1]
    pred = [0, 2, 1, 0, 2, 0, 1, 2]
    # gold Supports/Opposes: items 0, 1, 2, 3, 6, 7; predicted Either on 1 and 7 is wrong, not dropped
    b = perspective_metrics.vk_binary_metrics(gold, pred)
    assert b["n"] == 6 and b["predicted_either"] == 2
    assert b["accuracy"] == pytest.approx(2 / 6)  # items 0 and 2
    assert b["balanced_accuracy"] == pytest.approx((1 / 3 + 1 / 3) / 2)  # recall S: item 0 of 0, 1, 6
    # F1 Supports: tp 1 (0), fp 1 (3), fn 2 (1, 6) -> 0.4; Opposes: tp 1 (2), fp 1 (6), fn 2 (3, 7) -> 0.4
    assert b["macro_f1"] == pytest.approx(0.4)
    assert "Zhang" in b["definition"]
    mp = perspective_metrics.vk_binary_mp_metrics(gold, pred)  # Modular Pluralism's: items 0, 2, 3, 6
    assert mp["n"] == 4 and mp["dropped_predicted_either"] == 2
    assert mp["accuracy"] == pytest.approx(0.5) and mp["macro_f1"] == pytest.approx(0.5)
    assert "Modular Pluralism" in mp["definition"]


def test_vk_binary_all_right():
    for fn in (perspective_metrics.vk_binary_metrics, perspective_metrics.vk_binary_mp_metrics):
        b = fn([0, 1, 0, 2], [0, 1, 0, 2])
        assert b["n"] == 3 and b["accuracy"] == 1.0 and b["balanced_accuracy"] == 1.0 and b["macro_f1"] == 1.0


def modular_pluralism_vk(gold, pred):
    """Modular Pluralism's evaluate_steerable_valuekaleidoscope.py, re-implemented from its code:
    scikit-learn defaults on all items, then on the items neither gold nor predicted Either."""
    full = (accuracy_score(gold, pred), balanced_accuracy_score(gold, pred), f1_score(gold, pred, average="macro"))
    keep = [i for i in range(len(pred)) if not (pred[i] == 2 or gold[i] == 2)]
    gb, pb = [gold[i] for i in keep], [pred[i] for i in keep]
    binary = (accuracy_score(gb, pb), balanced_accuracy_score(gb, pb), f1_score(gb, pb, average="macro"))
    return full, binary


def paper_binary(gold, pred):
    """The CoT/RLVR paper's binary, from its definition: items whose gold is Supports/Opposes."""
    keep = [i for i in range(len(gold)) if gold[i] != 2]
    gb, pb = [gold[i] for i in keep], [pred[i] for i in keep]
    return accuracy_score(gb, pb), balanced_accuracy_score(gb, pb), f1_score(gb, pb, labels=[0, 1], average="macro")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_vk_metrics_agree_with_the_references_to_the_last_digit(data_dir):
    gold = steerkit.plugin.lookup("dataset", "vk")(path=data_dir).gold  # the real VK gold labels
    rng = np.random.default_rng(7)
    for pred in (rng.integers(0, 3, len(gold)).tolist(),
                 [g if rng.random() < 0.6 else int(rng.integers(0, 3)) for g in gold]):
        full, binary_mp = modular_pluralism_vk(gold, pred)
        m = perspective_metrics.choice_metrics(gold, pred)
        assert (m["accuracy"], m["balanced_accuracy"], m["macro_f1"]) == full
        mp = perspective_metrics.vk_binary_mp_metrics(gold, pred)
        assert (mp["accuracy"], mp["balanced_accuracy"], mp["macro_f1"]) == binary_mp
        b = perspective_metrics.vk_binary_metrics(gold, pred)
        assert (b["accuracy"], b["balanced_accuracy"], b["macro_f1"]) == paper_binary(gold, pred)
    # random predictions: the paper's binary sits near 1/3, Modular Pluralism's near 1/2
    rnd = rng.integers(0, 3, len(gold)).tolist()
    assert perspective_metrics.vk_binary_metrics(gold, rnd)["accuracy"] == pytest.approx(1 / 3, abs=0.05)
    assert perspective_metrics.vk_binary_mp_metrics(gold, rnd)["accuracy"] == pytest.approx(1 / 2, abs=0.05)


def test_js_distance_is_modular_pluralisms_natural_log_scipy_call():
    p = [[0.2, 0.8], [0.5, 0.3, 0.2], [1.0, 0.0, 0.0], [0.31, 0.27, 0.41]]  # last: not summing to 1
    q = [[0.5, 0.5], [0.5, 0.3, 0.2], [0.0, 0.0, 1.0], [0.1, 0.6, 0.3]]
    r = perspective_metrics.js_distance(p, q)
    # evaluate_distributions.py: jensenshannon(gold_distribution, pred_distribution), default base
    expected = [jensenshannon(b, a) for a, b in zip(p, q)]
    assert r["per_item"] == expected  # to the last digit
    assert r["per_item"][1] == pytest.approx(0.0, abs=1e-7)
    assert r["per_item"][2] == pytest.approx(math.sqrt(math.log(2)))  # disjoint supports: natural-log maximum
    assert r["mean"] == sum(expected) / len(expected)
    assert perspective_metrics.JS_BASE == "e"
    with pytest.raises(ValueError):
        perspective_metrics.js_distance([[0.5, 0.5]], [[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError):
        perspective_metrics.js_distance([[-1.0, 2.0]], [[0.5, 0.5]])


def test_mcnemar_exact_and_chi2_hand_computed():
    # A right / B wrong on 8 items, the reverse on 2, both right on 5, both wrong on 1
    a = [1] * 8 + [0] * 2 + [1] * 5 + [0]
    b = [0] * 8 + [1] * 2 + [1] * 5 + [0]
    ex = perspective_metrics.mcnemar(a, b)
    assert (ex["a_only"], ex["b_only"], ex["both"], ex["neither"]) == (8, 2, 5, 1)
    # exact two-sided: 2 * P(X <= 2), X ~ Bin(10, .5) = 2 * 56/1024
    assert ex["p_value"] == pytest.approx(2 * 56 / 1024)
    assert ex["p_value"] == pytest.approx(stats.binomtest(2, 10, 0.5).pvalue)
    ch = perspective_metrics.mcnemar(a, b, exact=False)
    assert ch["statistic"] == pytest.approx((abs(8 - 2) - 1) ** 2 / 10)
    assert ch["p_value"] == pytest.approx(stats.chi2.sf(2.5, 1))


def test_mcnemar_no_discordant_pairs():
    r = perspective_metrics.mcnemar([1, 0, 1], [1, 0, 1])
    assert r["p_value"] == 1.0 and r["a_only"] == r["b_only"] == 0


def test_baselines():
    gold = [0, 0, 1, 2, 0, 3]
    n_opt = [3, 3, 3, 3, 3, 4]
    assert perspective_metrics.majority_baseline(gold, n_opt) == [0] * 6
    assert perspective_metrics.majority_baseline([2, 2, 1], [3, 2, 3]) == [2, 0, 2]  # index 2 does not exist in item 1
    preds, expected = perspective_metrics.random_baseline(n_opt, seed=3)
    assert all(0 <= p < n for p, n in zip(preds, n_opt))
    assert preds == perspective_metrics.random_baseline(n_opt, seed=3)[0]  # seeded
    assert expected == pytest.approx(np.mean([1 / 3] * 5 + [1 / 4]))
    rep = perspective_metrics.baseline_report([0, 1, 2, 0], [3, 3, 3, 3], task="vk")
    assert rep["majority"]["accuracy"] == 0.5
    assert "binary" in rep["majority"] and rep["random"]["expected_accuracy"] == pytest.approx(1 / 3)


def test_macro_f1_and_balanced_accuracy_over_the_classes_present():
    # gold and predictions only ever Supports/Either: Opposes is no zero in the average
    gold, pred = [0, 0, 2], [0, 2, 2]
    m = perspective_metrics.choice_metrics(gold, pred)
    assert m["macro_f1"] == pytest.approx(2 / 3) == f1_score(gold, pred, average="macro")
    assert m["balanced_accuracy"] == balanced_accuracy_score(gold, pred) == pytest.approx(0.75)
    rep = perspective_metrics.baseline_report(gold, [3, 3, 3], task="vk")
    # majority predicts Supports everywhere: F1 Supports 0.8, Either 0 (in gold) -> 0.4
    assert rep["majority"]["macro_f1"] == pytest.approx(0.4)
    assert "oracle class prior" in rep["majority"]["note"]
    assert {"binary", "binary_mp"} <= set(rep["random"])


@pytest.mark.parametrize("n", [1, 2, 5, 20, 57])
def test_a_perfect_predictor_scores_one_on_every_subset(data_dir, n):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        oqa = steerkit.plugin.lookup("dataset", "opinionqa")(path=data_dir, limit=n)
    gold = oqa.gold
    m = perspective_metrics.choice_metrics(gold, gold)
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0
