"""Property-based tests (hypothesis) of the API boundary and of alignment: target parsing and
scenario coercion either give a valid value or a typed steerkit error, never anything else;
permuting responses permutes the choice; a table built from the gold labels scores 100%."""

import math

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import steerkit
from steerkit_plugins.attribute_eval import evaluate_table

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.text(min_size=1, max_size=12).filter(lambda s: s.strip())
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


# -- targets ---------------------------------------------------------------------------------
@FAST
@given(st.dictionaries(names, unit, min_size=1, max_size=6))
def test_a_dict_of_unit_values_is_an_attribute_target_with_those_values(values):
    target = steerkit.coerce_target(values)
    assert isinstance(target, steerkit.AttributeTarget)
    assert target.values == {k: float(v) for k, v in values.items()}
    assert steerkit.coerce_target({"values": values}) == target


@FAST
@given(st.dictionaries(names, unit, min_size=1, max_size=5), names,
       st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: math.isnan(v) or not 0 <= v <= 1))
def test_one_value_outside_the_unit_interval_is_refused(values, name, bad):
    values = {**values, name: bad}
    try:
        steerkit.coerce_target(values)
    except steerkit.InvalidTargetError as err:
        assert repr(name) in str(err) and "[0, 1]" in str(err)
    else:
        raise AssertionError(f"{values} was accepted")


@FAST
@given(st.dictionaries(names, unit, min_size=1, max_size=5), st.data())
def test_weights_must_be_non_negative_and_name_target_attributes(values, data):
    name = data.draw(st.sampled_from(sorted(values)))
    w = data.draw(st.floats(allow_nan=True))
    ok = not math.isnan(w) and w > 0  # negative, NaN and all-zero weights are refused
    try:
        target = steerkit.coerce_target({"values": values, "weights": {name: w}})
    except steerkit.InvalidTargetError:
        assert not ok
    else:
        assert ok and target.weight_of(name) == w


@FAST
@given(json_value)
def test_any_json_value_is_a_target_or_a_typed_error(value):
    try:
        target = steerkit.coerce_target(value)
    except steerkit.InvalidTargetError as err:
        assert str(err)
        return
    assert isinstance(target, (steerkit.AttributeTarget, steerkit.Perspective))
    if isinstance(value, str):
        assert target == steerkit.Perspective(value)


# -- scenarios -------------------------------------------------------------------------------
distinct_responses = st.lists(names, min_size=2, max_size=6, unique_by=str.strip)


@FAST
@given(names, distinct_responses, st.sampled_from(["question", "prompt"]))
def test_a_valid_scenario_dict_keeps_its_texts(question, responses, field):
    s = steerkit.Scenario.coerce({field: question, "responses": responses})
    assert s.question == question and s.responses == tuple(responses)
    assert steerkit.Scenario.coerce((question, responses)) == s
    assert s.key == steerkit.Scenario(question, responses).key


@FAST
@given(names, distinct_responses, st.randoms(use_true_random=False))
def test_the_scenario_key_depends_on_the_response_order(question, responses, rnd):
    shuffled = list(responses)
    rnd.shuffle(shuffled)
    same = shuffled == list(responses)
    assert (steerkit.Scenario(question, shuffled).key == steerkit.Scenario(question, responses).key) == same


@FAST
@given(json_value)
def test_any_json_value_is_a_scenario_or_a_typed_error(value):
    try:
        s = steerkit.Scenario.coerce(value)
    except steerkit.InvalidScenarioError as err:
        assert str(err)
        return
    except steerkit.SteerkitError as err:  # pragma: no cover - a wrong error type is a bug
        raise AssertionError(f"{type(err).__name__} instead of InvalidScenarioError: {err}")
    assert len(s.responses) >= 2 and all(isinstance(r, str) and r.strip() for r in s.responses)


# -- alignment -------------------------------------------------------------------------------
LEVELS = [0.0, 0.25, 0.5, 0.75, 1.0]  # HelpSteer2's label grid: ties are common


@st.composite
def labelled(draw, max_scenarios=5, levels=LEVELS):
    n_attr = draw(st.integers(1, 3))
    attributes = [f"a{i}" for i in range(n_attr)]
    scenarios = []
    for i in range(draw(st.integers(1, max_scenarios))):
        n = draw(st.integers(2, 5))
        labels = [{a: draw(st.sampled_from(levels)) for a in attributes} for _ in range(n)]
        scenarios.append(steerkit.Scenario(f"q{i}", [f"r{i}-{j}" for j in range(n)], labels=labels))
    return scenarios, attributes


@FAST
@given(labelled(levels=list(np.linspace(0, 1, 101))), st.data())
def test_permuting_responses_permutes_the_choice(case, data):
    scenarios, attributes = case
    target = {a: data.draw(unit) for a in attributes}
    table = steerkit.ScoreTable.from_labels(scenarios, attributes)
    base = table.align(target)
    permuted = []
    for s in scenarios:
        order = data.draw(st.permutations(range(len(s.responses))))
        permuted.append(steerkit.Scenario(s.question, [s.responses[j] for j in order],
                                          labels=[s.labels[j] for j in order]))
    moved = steerkit.ScoreTable.from_labels(permuted, attributes).align(target)
    for i, (s, p) in enumerate(zip(scenarios, permuted)):
        chosen, now = s.responses[base.indices[i]], p.responses[moved.indices[i]]
        tied = {s.responses[j] for j in np.flatnonzero(base.tied[i])}
        assert {p.responses[j] for j in np.flatnonzero(moved.tied[i])} == tied  # the same set ties
        if len(tied) == 1:
            assert now == chosen
        else:  # a tie goes to the lowest index, whichever text sits there
            assert now in tied and moved.indices[i] == min(np.flatnonzero(moved.tied[i]))


@FAST
@given(labelled(), st.data(), st.sampled_from(["expected", "first"]))
def test_a_table_built_from_the_gold_labels_scores_100_percent(case, data, ties):
    scenarios, attributes = case
    targets = {}
    for t in range(data.draw(st.integers(1, 6))):
        subset = data.draw(st.lists(st.sampled_from(attributes), min_size=1, unique=True))
        targets[f"t{t}"] = steerkit.AttributeTarget({a: data.draw(st.sampled_from(LEVELS)) for a in subset})
    gold = steerkit.ScoreTable.from_labels(scenarios, attributes)
    report = evaluate_table(gold, gold, targets, ties=ties)
    scored = np.isfinite(report.accuracy)
    assume(scored.any())  # every scenario tied for every target: nothing to score
    assert np.all(report.accuracy[scored] == 1.0)
