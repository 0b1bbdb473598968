"""Bad input at the boundary (issue 2, item 10): scenarios and targets fail with typed errors
whose messages name the problem and the fix."""

from __future__ import annotations

import math

import pytest

import steerkit
from steerkit import (
    AttributeTarget,
    InvalidScenarioError,
    InvalidTargetError,
    Perspective,
    Scenario,
    coerce_target,
)


def test_error_classes_form_one_hierarchy():
    for name in (
        "InvalidScenarioError", "InvalidTargetError", "UnsupportedTargetError", "UnknownAttributeError",
        "UnknownPluginError", "ModelNotFoundError", "CacheError", "ModelOutputError", "DatasetError",
        "BackendError", "ScoreTableError",
    ):
        cls = getattr(steerkit, name)
        assert issubclass(cls, steerkit.SteerkitError), name
    # the standard-library base a caller might expect is still there
    assert issubclass(InvalidScenarioError, ValueError)
    assert issubclass(InvalidTargetError, ValueError)
    assert issubclass(steerkit.UnknownPluginError, LookupError)


@pytest.mark.parametrize(
    "responses, words",
    [
        ([], ["0 response", "at least two"]),
        (["only one"], ["1 response", "at least two"]),
    ],
)
def test_fewer_than_two_responses(responses, words):
    with pytest.raises(InvalidScenarioError) as exc:
        Scenario("Q?", tuple(responses))
    for w in words:
        assert w in str(exc.value)


@pytest.mark.parametrize("dup", [["same", "same"], ["a", "same", " same  "]])
def test_duplicate_responses(dup):
    with pytest.raises(InvalidScenarioError) as exc:
        Scenario("Q?", tuple(dup), id="s1")
    msg = str(exc.value)
    assert "identical" in msg and "remove the duplicate" in msg and "s1" in msg


@pytest.mark.parametrize("question", ["", "   ", None])
def test_empty_question(question):
    with pytest.raises(InvalidScenarioError, match="empty question"):
        Scenario(question, ("a", "b"))


@pytest.mark.parametrize("bad", ["", "  \n", None])
def test_empty_response(bad):
    with pytest.raises(InvalidScenarioError) as exc:
        Scenario("Q?", ("fine", bad))
    assert "response 1 is empty" in str(exc.value)


def test_responses_as_one_string_is_rejected():
    with pytest.raises(InvalidScenarioError, match="not one string"):
        Scenario("Q?", "ab")


@pytest.mark.parametrize("responses, words", [
    ("Yes", ["not one string ('Yes')", "list of at least two strings"]),
    (None, ["not None", "list of at least two strings"]),
    (3, ["not 3"]),
])
def test_responses_that_are_not_a_list_are_refused_not_split(responses, words):
    # a string must not become a tuple of characters, None must not be a raw TypeError
    for build in (
        lambda: Scenario("Q", responses),
        lambda: Scenario.coerce({"question": "Q", "responses": responses}),
        lambda: Scenario.coerce(("Q", responses)),
    ):
        with pytest.raises(InvalidScenarioError) as exc:
            build()
        for w in words:
            assert w in str(exc.value)
    with pytest.raises(InvalidScenarioError, match="has no 'responses'"):
        Scenario.coerce({"question": "Q"})
    # any iterable of strings is still fine
    assert Scenario.coerce(("Q", iter(["a", "b"]))).responses == ("a", "b")


def test_labels_must_match_responses():
    with pytest.raises(InvalidScenarioError, match="1 label sets for 2 responses"):
        Scenario("Q?", ("a", "b"), labels=({"care": 1.0},))


def test_scenario_coerce_forms():
    s = Scenario("Q?", ("a", "b"), id="x")
    assert Scenario.coerce(s) is s
    from_dict = Scenario.coerce({"question": "Q?", "responses": ["a", "b"], "id": "x"})
    assert from_dict == s
    assert Scenario.coerce({"prompt": "Q?", "responses": ["a", "b"]}).question == "Q?"
    assert Scenario.coerce(("Q?", ["a", "b"])).responses == ("a", "b")
    # bad input through the friendly forms is still validated
    with pytest.raises(InvalidScenarioError):
        Scenario.coerce({"question": "Q?", "responses": ["a"]})
    with pytest.raises(InvalidScenarioError, match="cannot read a scenario from int"):
        Scenario.coerce(3)
    # the key depends on question and every response, in order
    assert s.key != Scenario("Q?", ("b", "a")).key
    assert s.key != Scenario("Q!", ("a", "b")).key


@pytest.mark.parametrize("value", [-0.01, 1.01, 2, float("nan"), float("inf"), -math.inf])
def test_target_value_outside_unit_interval_or_nan(value):
    with pytest.raises(InvalidTargetError) as exc:
        AttributeTarget({"care": value})
    msg = str(exc.value)
    assert "'care'" in msg and "[0, 1]" in msg


def test_target_value_not_a_number():
    with pytest.raises(InvalidTargetError, match="use a number in"):
        AttributeTarget({"care": "high"})


def test_empty_target():
    with pytest.raises(InvalidTargetError, match="at least one attribute"):
        AttributeTarget({})


def test_bounds_are_inclusive():
    t = AttributeTarget({"care": 0, "fairness": 1})
    assert t.values == {"care": 0.0, "fairness": 1.0}


@pytest.mark.parametrize("w", [-1, -1e-9, float("nan")])
def test_negative_or_nan_weight(w):
    with pytest.raises(InvalidTargetError) as exc:
        AttributeTarget({"care": 0.5}, {"care": w})
    assert "non-negative" in str(exc.value)


def test_all_zero_weights():
    with pytest.raises(InvalidTargetError, match="all target weights are zero"):
        AttributeTarget({"care": 0.5, "fairness": 0.2}, {"care": 0, "fairness": 0.0})


def test_weight_for_attribute_not_in_target():
    with pytest.raises(InvalidTargetError) as exc:
        AttributeTarget({"care": 0.5}, {"fairness": 1.0})
    msg = str(exc.value)
    assert "'fairness'" in msg and "not in the target" in msg and "care" in msg


def test_weights_default_to_one_and_partial_weights():
    t = AttributeTarget({"care": 0.5, "fairness": 0.2}, {"care": 2})
    assert t.weight_of("care") == 2.0 and t.weight_of("fairness") == 1.0
    assert AttributeTarget({"care": 0.5}).weight_of("care") == 1.0


def test_perspective_needs_text():
    with pytest.raises(InvalidTargetError, match="needs text"):
        Perspective("  ")
    assert str(Perspective("Liberal", "Political ideology")) == "Political ideology: Liberal"


def test_coerce_target_forms():
    t = AttributeTarget({"care": 0.5})
    assert coerce_target(t) is t
    assert coerce_target({"care": 0.5}) == t
    with_w = coerce_target({"values": {"care": 0.5, "x": 0.1}, "weights": {"care": 3}})
    assert isinstance(with_w, AttributeTarget) and with_w.weight_of("care") == 3.0
    p = coerce_target("Right to life")
    assert isinstance(p, Perspective) and p.text == "Right to life"
    assert coerce_target(Perspective("Duty")) == Perspective("Duty")
    with pytest.raises(InvalidTargetError, match="cannot read a target from list"):
        coerce_target([0.5])
    # validation still applies through the friendly forms
    with pytest.raises(InvalidTargetError):
        coerce_target({"care": 1.5})
    with pytest.raises(InvalidTargetError):
        coerce_target({"values": {"care": 0.5}, "weights": {"care": -1}})


def test_selection_to_dict_round_trips_fields():
    sel = steerkit.Selection(1, "b", [{"care": 0.1}, {"care": 0.9}], ["r0", "r1"], "s", "m", ties=[0])
    d = sel.to_dict()
    assert d["index"] == 1 and d["response"] == "b" and d["ties"] == [0] and d["scores"][1]["care"] == 0.9


def test_non_numeric_weight_is_an_invalid_target_error():
    with pytest.raises(steerkit.InvalidTargetError, match="'care'"):
        steerkit.AttributeTarget({"care": 0.5}, {"care": "high"})


def test_weights_that_are_not_a_mapping_are_an_invalid_target_error():
    with pytest.raises(steerkit.InvalidTargetError):
        steerkit.AttributeTarget({"care": 0.5}, [1.0])


def test_non_string_response_is_named_as_such():
    with pytest.raises(InvalidScenarioError, match="response 1 is a int .*must be strings"):
        Scenario("q", ("a", 3))


def test_target_that_is_a_list_names_the_expected_shape():
    with pytest.raises(InvalidTargetError, match=r"maps attribute names .*got list \[0.5\]"):
        AttributeTarget([0.5])
