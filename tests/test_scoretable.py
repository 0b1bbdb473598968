"""ScoreTable and the aligner plugins (issue 2, items 3 and 4): distances against hand-computed
values and scipy, vectorised alignment equal to a loop, ragged masks, deterministic ties,
missing attributes, save/load."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import distance as sd

import steerkit
from steerkit import Scenario, ScoreTable, UnknownAttributeError, pick_nearest

ATTRS = ["care", "fairness", "loyalty"]


def table_from(rows: list[list[list[float]]], attributes=ATTRS) -> ScoreTable:
    """Build a (possibly ragged) table from per-scenario lists of per-response score lists."""
    scenarios = [Scenario(f"q{i}", tuple(f"r{i}-{j}" for j in range(len(r)))) for i, r in enumerate(rows)]
    t = ScoreTable.empty(scenarios, attributes)
    for i, r in enumerate(rows):
        t.scores[i, : len(r)] = np.asarray(r, dtype=float)
    return t


def test_aligners_are_registered_plugins():
    reg = steerkit.plugin.registry("aligner")
    assert {"euclidean", "weighted-euclidean", "manhattan"} <= set(reg)


def test_hand_computed_distances():
    t = table_from([[[0.0, 0.0, 0.9], [1.0, 1.0, 0.0], [0.3, 0.4, 0.5]]])
    target = {"care": 0.0, "fairness": 0.0}  # loyalty is not in the target: ignored
    d = t.align(target).distances[0]
    np.testing.assert_allclose(d, [0.0, np.sqrt(2), 0.5])
    d = t.align(target, aligner="manhattan").distances[0]
    np.testing.assert_allclose(d, [0.0, 2.0, 0.7])
    weighted = steerkit.AttributeTarget({"care": 0.0, "fairness": 0.0}, {"care": 4.0, "fairness": 1.0})
    d = t.align(weighted, aligner="weighted-euclidean").distances[0]
    np.testing.assert_allclose(d, [0.0, np.sqrt(5.0), np.sqrt(4 * 0.09 + 0.16)])
    # plain euclidean ignores the weights, and says so; weighted with no weights equals plain
    with pytest.warns(UserWarning, match="aligner 'euclidean' does not use weights.*weighted-euclidean"):
        np.testing.assert_allclose(t.align(weighted).distances[0], [0.0, np.sqrt(2), 0.5])
    np.testing.assert_allclose(
        t.align(target, aligner="weighted-euclidean").distances[0], t.align(target).distances[0]
    )


@pytest.mark.filterwarnings("ignore:.*does not use weights")
def test_distances_match_scipy():
    rng = np.random.default_rng(7)
    t = table_from(rng.uniform(size=(6, 4, 3)).tolist())
    values = {"care": 0.2, "fairness": 0.9, "loyalty": 0.5}
    weights = {"care": 0.5, "fairness": 2.0, "loyalty": 1.0}
    vec, w = np.array(list(values.values())), np.array(list(weights.values()))
    target = steerkit.AttributeTarget(values, weights)
    for name, ref in [
        ("euclidean", lambda u: sd.euclidean(u, vec)),
        ("manhattan", lambda u: sd.cityblock(u, vec)),
        ("weighted-euclidean", lambda u: sd.euclidean(u, vec, w)),
    ]:
        d = t.align(target, aligner=name).distances
        expected = np.array([[ref(t.scores[s, r]) for r in range(4)] for s in range(6)])
        np.testing.assert_allclose(d, expected, err_msg=name)


@pytest.mark.filterwarnings("ignore:.*does not use weights")
@pytest.mark.parametrize("aligner", ["euclidean", "weighted-euclidean", "manhattan"])
def test_align_many_equals_a_loop_of_align(aligner):
    rng = np.random.default_rng(3)
    # ragged: 2..5 responses per scenario
    rows = [rng.uniform(size=(int(rng.integers(2, 6)), 3)).round(1).tolist() for _ in range(30)]
    t = table_from(rows)
    targets = []
    for _ in range(40):
        attrs = [a for a in ATTRS if rng.uniform() < 0.7] or ["care"]
        values = {a: round(float(rng.uniform()), 1) for a in attrs}
        weights = {a: float(rng.integers(0, 3)) for a in attrs}
        if sum(weights.values()) == 0:
            weights[attrs[0]] = 1.0
        targets.append(steerkit.AttributeTarget(values, weights))
    indices, tied = t.align_many(targets, aligner)
    assert indices.shape == (40, 30) and tied.shape == (40, 30, 5)
    for k, target in enumerate(targets):
        one = t.align(target, aligner)
        np.testing.assert_array_equal(indices[k], one.indices)
        np.testing.assert_array_equal(tied[k], one.tied)
        # and the loop itself agrees with a plain per-scenario argmin over real responses
        for s, row in enumerate(rows):
            d = one.distances[s, : len(row)]
            assert one.indices[s] == int(np.flatnonzero(d <= d.min() + 1e-9)[0])


def test_ragged_mask_never_selects_a_padded_slot():
    # padded slots hold NaN scores; even a target at 0 (which NaN->0 would match) must not pick them
    t = table_from([[[0.9, 0.9, 0.9], [0.8, 0.8, 0.8]], [[0.5, 0.5, 0.5], [0.6, 0.6, 0.6], [0.7, 0.7, 0.7], [1.0, 1.0, 1.0]]])
    assert t.mask.tolist() == [[True, True, False, False], [True, True, True, True]]
    for aligner in ("euclidean", "weighted-euclidean", "manhattan"):
        al = t.align({"care": 0.0, "fairness": 0.0, "loyalty": 0.0}, aligner)
        assert al.indices.tolist() == [1, 0]
        assert np.isinf(al.distances[0, 2:]).all()
        assert not al.tied[0, 2:].any()
        idx, tied = t.align_many([{"care": 0.0}] * 3, aligner)
        assert (idx[:, 0] < 2).all() and not tied[:, 0, 2:].any()
    sels = t.selections({"care": 0.0})
    assert sels[0].index == 1 and len(sels[0].scores) == 2 and len(sels[0].distances) == 2


def test_ties_break_to_lowest_index_and_are_reported():
    t = table_from([[[0.2, 0.0, 0.0], [0.8, 0.0, 0.0], [0.2, 0.0, 0.0], [0.5, 0.0, 0.0]],
                    [[0.9, 0.0, 0.0], [0.4, 0.0, 0.0], [0.6, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    al = t.align({"care": 0.5})
    # scenario 0: responses 0, 2 at 0.3 are NOT tied with 3 at 0.0 -> 3 wins alone
    assert al.indices.tolist() == [3, 1] and al.has_tie.tolist() == [False, True]
    assert np.flatnonzero(al.tied[1]).tolist() == [1, 2]
    sels = t.selections({"care": 0.5})
    assert sels[1].index == 1 and sels[1].ties == [2] and sels[0].ties == []
    al = t.align({"care": 0.2})
    assert al.indices[0] == 0 and np.flatnonzero(al.tied[0]).tolist() == [0, 2]
    # the same answer every time
    for _ in range(3):
        assert t.align({"care": 0.5}).indices.tolist() == [3, 1]


def test_pick_nearest_directly():
    d = np.array([[2.0, 1.0, 1.0 + 1e-12, np.inf], [np.inf, 3.0, 3.0, 3.0]])
    idx, tied = pick_nearest(d)
    assert idx.tolist() == [1, 1]
    assert tied.tolist() == [[False, True, True, False], [False, True, True, True]]


def test_missing_attribute_raises_unknown_attribute_error():
    t = table_from([[[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]]])
    with pytest.raises(UnknownAttributeError) as exc:
        t.align({"care": 0.5, "honesty": 1.0})
    msg = str(exc.value)
    assert "'honesty'" in msg and "score" in msg.lower()
    with pytest.raises(UnknownAttributeError):
        t.align_many([{"care": 0.5}, {"honesty": 0.5}])


def test_incomplete_scores_raise_but_unused_attributes_do_not_matter():
    t = table_from([[[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]]])
    t.scores[0, 1, 2] = np.nan  # loyalty missing for one real response
    with pytest.raises(UnknownAttributeError, match="loyalty"):
        t.align({"loyalty": 0.5})
    assert t.align({"care": 0.0}).indices.tolist() == [0]
    assert not t.complete


def test_perspective_target_is_refused():
    t = table_from([[[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]]])
    with pytest.raises(steerkit.InvalidTargetError, match="attribute targets"):
        t.align(steerkit.Perspective("Right to life"))


def test_save_load_round_trip(tmp_path):
    rows = [[[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], [[0.0, 1.0, 0.5], [0.5, 0.5, 0.5], [1.0, 0.0, 0.25]]]
    t = table_from(rows)
    t.reasonings[1][2][0] = "very caring"
    t.strategy, t.model = "strat", "model-x"
    t.scenarios[0] = Scenario("q0", ("r0-0", "r0-1"), id="first", labels=({"care": 1.0}, {"care": 0.0}))
    loaded = ScoreTable.load(t.save(tmp_path / "t.json"))
    assert loaded.attributes == t.attributes and loaded.strategy == "strat" and loaded.model == "model-x"
    np.testing.assert_array_equal(loaded.mask, t.mask)
    np.testing.assert_array_equal(np.isnan(loaded.scores), np.isnan(t.scores))
    np.testing.assert_allclose(loaded.scores[t.mask], t.scores[t.mask])
    assert loaded.reasonings == t.reasonings
    assert [s.key for s in loaded.scenarios] == [s.key for s in t.scenarios]
    assert loaded.scenarios[0].id == "first" and loaded.scenarios[0].labels == t.scenarios[0].labels
    target = {"care": 0.4, "loyalty": 0.2}
    assert loaded.align(target).indices.tolist() == t.align(target).indices.tolist()


def test_from_labels_and_subset():
    s = [Scenario("q", ("a", "b"), labels=({"care": 0.9}, {"care": 0.1})),
         Scenario("q2", ("a", "b", "c"), labels=({"care": 0.0}, {"care": 0.5}, {"care": 1.0}))]
    gold = ScoreTable.from_labels(s)
    assert gold.attributes == ["care"] and gold.align({"care": 1.0}).indices.tolist() == [0, 2]
    sub = gold.subset([1])
    assert len(sub) == 1 and sub.align({"care": 0.4}).indices.tolist() == [1]
    with pytest.raises(UnknownAttributeError):
        ScoreTable.from_labels([Scenario("q", ("a", "b"))])


def test_weights_that_matter_warn_only_with_an_aligner_that_ignores_them():
    import warnings

    t = table_from([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])
    weighted = steerkit.AttributeTarget({"care": 1.0, "fairness": 1.0}, {"care": 5.0, "fairness": 1.0})
    for aligner in ("euclidean", "manhattan"):
        with pytest.warns(UserWarning, match=f"aligner {aligner!r} does not use weights") as record:
            t.align(weighted, aligner)
        assert 'aligner="weighted-euclidean"' in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about:
        assert t.align(weighted, "weighted-euclidean").indices.tolist() == [1]  # weights used
        t.align({"care": 1.0}, "euclidean")  # no weights
        t.align(steerkit.AttributeTarget({"care": 1.0, "fairness": 0.5}, {"care": 2, "fairness": 2}))  # uniform
        t.align_many([weighted], "weighted-euclidean")


def test_misshapen_table_is_a_score_table_error():
    s = [Scenario("q", ("a", "b"))]
    with pytest.raises(steerkit.ScoreTableError, match="shapes do not fit") as exc:
        ScoreTable(s, ["care"], np.zeros((1, 2, 2)), np.ones((1, 2), dtype=bool))
    assert "ScoreTable.empty" in str(exc.value) and isinstance(exc.value, ValueError)
    with pytest.raises(steerkit.ScoreTableError, match="3-d array"):
        ScoreTable(s, ["care"], np.zeros((2, 2)), np.ones((1, 2), dtype=bool))


def test_loading_a_missing_or_foreign_file_is_a_score_table_error(tmp_path):
    with pytest.raises(steerkit.ScoreTableError, match="does not exist.*ScoreTable.save"):
        ScoreTable.load(tmp_path / "nope.json")
    for name, text in [("broken.json", "{not json"), ("other.json", '{"hello": 1}'), ("list.json", "[1, 2]")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(steerkit.ScoreTableError, match="ScoreTable.save"):
            ScoreTable.load(tmp_path / name)
    with pytest.raises(steerkit.ScoreTableError, match="cannot read"):
        ScoreTable.load(tmp_path)  # a directory
