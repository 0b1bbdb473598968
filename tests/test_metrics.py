"""Choice metrics: checked against scikit-learn/scipy on fixtures and against hand-computed cases."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from steerkit_plugins import metrics

GOLD = [0, 0, 0, 1, 1, 2, 2, 0, 1, 2]
PRED = [0, 1, 0, 1, 2, 2, 0, 0, 1, 1]


def test_choice_metrics_match_sklearn():
    m = metrics.choice_metrics(GOLD, PRED)
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(accuracy_score(GOLD, PRED))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(GOLD, PRED))
    assert m["macro_f1"] == pytest.approx(f1_score(GOLD, PRED, average="macro"))


def test_choice_metrics_hand_computed():
    # gold 0: 4 items, 3 right; gold 1: 3 items, 2 right; gold 2: 3 items, 1 right
    m = metrics.choice_metrics(GOLD, PRED)
    assert m["accuracy"] == pytest.approx(6 / 10)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 1 / 3) / 3)
    # class 0: tp 3, fp 1, fn 1 -> f1 .75; class 1: tp 2, fp 2, fn 1 -> 4/7; class 2: tp 1, fp 1, fn 2 -> 0.4
    assert m["macro_f1"] == pytest.approx((0.75 + 4 / 7 + 0.4) / 3)


def test_choice_metrics_empty_and_mismatch():
    assert metrics.choice_metrics([], [])["n"] == 0
    assert math.isnan(metrics.choice_metrics([], [])["accuracy"])
    with pytest.raises(ValueError):
        metrics.choice_metrics([0, 1], [0])


def test_vk_binary_hand_computed():
    gold = [0, 0, 1, 1, 2, 2, 0, 1]
    pred = [0, 2, 1, 0, 2, 0, 1, 2]
    # subset: gold in {0,1} and pred != 2 -> items 0 (0,0), 2 (1,1), 3 (1,0), 6 (0,1)
    b = metrics.vk_binary_metrics(gold, pred)
    assert b["n"] == 4
    assert b["dropped_predicted_either"] == 2
    assert b["accuracy"] == pytest.approx(0.5)
    assert b["balanced_accuracy"] == pytest.approx(0.5)
    assert b["macro_f1"] == pytest.approx(0.5)
    mask = metrics.vk_binary_mask(gold, pred)
    assert mask.tolist() == [True, False, True, True, False, False, True, False]


def test_vk_binary_all_right():
    b = metrics.vk_binary_metrics([0, 1, 0, 2], [0, 1, 0, 2])
    assert b["n"] == 3 and b["accuracy"] == 1.0 and b["macro_f1"] == 1.0


def test_js_distance_matches_scipy_and_bounds():
    p = [[0.2, 0.8], [0.5, 0.3, 0.2], [1.0, 0.0, 0.0]]
    q = [[0.5, 0.5], [0.5, 0.3, 0.2], [0.0, 0.0, 1.0]]
    r = metrics.js_distance(p, q)
    expected = [jensenshannon(np.array(a), np.array(b), base=2) for a, b in zip(p, q)]
    assert r["per_item"] == pytest.approx(expected)
    assert r["per_item"][1] == pytest.approx(0.0, abs=1e-7)
    assert r["per_item"][2] == pytest.approx(1.0)  # disjoint supports: maximal in base 2
    assert r["mean"] == pytest.approx(np.mean(expected))
    with pytest.raises(ValueError):
        metrics.js_distance([[0.5, 0.5]], [[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError):
        metrics.js_distance([[-1.0, 2.0]], [[0.5, 0.5]])


def test_mcnemar_exact_and_chi2_hand_computed():
    # A right / B wrong on 8 items, the reverse on 2, both right on 5, both wrong on 1
    a = [1] * 8 + [0] * 2 + [1] * 5 + [0]
    b = [0] * 8 + [1] * 2 + [1] * 5 + [0]
    ex = metrics.mcnemar(a, b)
    assert (ex["a_only"], ex["b_only"], ex["both"], ex["neither"]) == (8, 2, 5, 1)
    # exact two-sided: 2 * P(X <= 2), X ~ Bin(10, .5) = 2 * 56/1024
    assert ex["p_value"] == pytest.approx(2 * 56 / 1024)
    assert ex["p_value"] == pytest.approx(stats.binomtest(2, 10, 0.5).pvalue)
    ch = metrics.mcnemar(a, b, exact=False)
    assert ch["statistic"] == pytest.approx((abs(8 - 2) - 1) ** 2 / 10)
    assert ch["p_value"] == pytest.approx(stats.chi2.sf(2.5, 1))


def test_mcnemar_no_discordant_pairs():
    r = metrics.mcnemar([1, 0, 1], [1, 0, 1])
    assert r["p_value"] == 1.0 and r["a_only"] == r["b_only"] == 0


def test_baselines():
    gold = [0, 0, 1, 2, 0, 3]
    n_opt = [3, 3, 3, 3, 3, 4]
    assert metrics.majority_baseline(gold, n_opt) == [0] * 6
    assert metrics.majority_baseline([2, 2, 1], [3, 2, 3]) == [2, 0, 2]  # index 2 does not exist in item 1
    preds, expected = metrics.random_baseline(n_opt, seed=3)
    assert all(0 <= p < n for p, n in zip(preds, n_opt))
    assert preds == metrics.random_baseline(n_opt, seed=3)[0]  # seeded
    assert expected == pytest.approx(np.mean([1 / 3] * 5 + [1 / 4]))
    rep = metrics.baseline_report([0, 1, 2, 0], [3, 3, 3, 3], task="vk")
    assert rep["majority"]["accuracy"] == 0.5
    assert "binary" in rep["majority"] and rep["random"]["expected_accuracy"] == pytest.approx(1 / 3)


def test_task_labels_fix_the_class_set():
    assert metrics.task_labels("vk", [3, 3]) == [0, 1, 2]
    assert metrics.task_labels("opinionqa", [2, 4, 3]) == [0, 1, 2, 3]
    assert metrics.task_labels(None, [2, 2]) is None
    # gold and predictions only ever Supports/Either: with the VK labels Opposes counts as a 0
    gold, pred = [0, 0, 2], [0, 2, 2]
    # F1 Supports: tp 1, fn 1 -> 2/3; Either: tp 1, fp 1 -> 2/3; Opposes: 0
    assert metrics.choice_metrics(gold, pred, labels=[0, 1, 2])["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 3)
    assert metrics.choice_metrics(gold, pred)["macro_f1"] == pytest.approx(2 / 3)  # data-derived: 2 classes
    rep = metrics.baseline_report(gold, [3, 3, 3], task="vk")
    # majority predicts Supports everywhere: F1 Supports 2 * (2/3 * 1) / (5/3) = 0.8, others 0
    assert rep["majority"]["macro_f1"] == pytest.approx(0.8 / 3)
    assert "oracle class prior" in rep["majority"]["note"]
