"""Comparative regression and its variants: FakeBackend unit tests, then the real embedded model."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

import steerkit
from steerkit_plugins.comparative import ComparativeRegression, Prompts, score_schema
from steerkit_plugins.fewshot import ExampleIndex, load_pool
from tests.fakes import FakeBackend
from tests.test_fewshot import CountingEncoder, make_pool

TARGET = {"helpfulness": 1.0, "verbosity": 0.0}


def scenarios(n: int = 3, responses: int = 3) -> list[steerkit.Scenario]:
    return [
        steerkit.Scenario(f"question {i} about bread", tuple(f"answer {i}.{r} [score={10 * r + i}]" for r in range(responses)), id=f"s{i}")
        for i in range(n)
    ]


def marker_responder(prompt, constraint):
    """Scores each lettered response by the [score=N] marker in its text: correct only if the
    strategy maps letters back to responses properly."""
    user = prompt[-1]["content"]
    blocks = re.findall(r"Response ([A-Z]):\n(.*?)(?=\n\nResponse [A-Z]:|\n\nRate every)", user, re.S)
    return json.dumps({l: {"reasoning": f"text {l}", "score": int(re.search(r"score=(\d+)", t).group(1))} for l, t in blocks})


def steerer(strategy="comparative-regression", backend=None, cache=False, **options) -> steerkit.Steerer:
    return steerkit.Steerer(strategy=strategy, backend=backend or FakeBackend(), cache=cache, progress=False, **options)


def fake_index(tmp_path) -> ExampleIndex:
    return ExampleIndex(make_pool(), encoder=CountingEncoder(), cache_dir=tmp_path / "fewshot")


# -- prompt structure ---------------------------------------------------------------------
def test_prompt_structure_with_examples(tmp_path):
    s = steerer(example_pool=fake_index(tmp_path))
    table = s.score(scenarios(1, 2), ["helpfulness"])
    assert table.complete and table.model_calls == 1
    prompt = s.backend.prompts_seen[0]
    roles = [m["role"] for m in prompt]
    assert roles == ["system"] + ["user", "assistant"] * 5 + ["user"]
    assert steerkit_plugins_definition("helpfulness") in prompt[0]["content"]
    for m in prompt[2:-1:2]:  # example outputs: the pool's reasonings and labels as 0-100
        out = json.loads(m["content"])
        assert list(out) == ["A", "B"]
        for v in out.values():
            assert list(v) == ["reasoning", "score"] and v["reasoning"].startswith("why ")
            assert v["score"] in (0, 25, 50, 75, 100)
    levels = {v["score"] for m in prompt[2:-1:2] for v in json.loads(m["content"]).values()}
    assert levels == {0, 25, 50, 75, 100}
    query = prompt[-1]["content"]
    assert "question 0 about bread" in query and "Response A:\nanswer 0.0" in query and "Response B:\nanswer 0.1" in query


def steerkit_plugins_definition(name: str) -> str:
    from steerkit_plugins.attributes import builtin_definitions

    return builtin_definitions()[name]


def test_schema_is_reasoning_then_score_per_letter():
    schema = score_schema(3)
    assert schema["required"] == ["A", "B", "C"]
    assert list(schema["properties"]["A"]["properties"]) == ["reasoning", "score"]
    assert schema["properties"]["A"]["properties"]["score"] == {"type": "integer", "minimum": 0, "maximum": 100}


def test_long_texts_are_clipped_to_the_budget(tmp_path):
    long = steerkit.Scenario("q " * 5000, ("a " * 9000, "b " * 9000, "c " * 9000))
    s = steerer(example_pool=fake_index(tmp_path))
    s.score([long], ["helpfulness"])
    user = s.backend.prompts_seen[0][-1]["content"]
    assert len(user) < Prompts.question_chars + Prompts.responses_chars + 200
    assert "[...]" in user


def test_zero_shot_and_regression_variants():
    s = steerer("zero-shot-comparative")
    s.score(scenarios(1, 2), ["care"])
    assert [m["role"] for m in s.backend.prompts_seen[0]] == ["system", "user"]
    r = steerer("regression")
    table = r.score(scenarios(2, 3), ["care"])
    assert table.complete and table.model_calls == 6  # one prompt per response
    assert all("Response:\n" in p[-1]["content"] and "Response A" not in p[-1]["content"] for p in r.backend.prompts_seen)


# -- letters, shuffling and sampling ------------------------------------------------------
def test_shuffled_letters_map_back_to_responses():
    s = steerer(backend=FakeBackend(responder=marker_responder), samples=4)
    data = scenarios(3, 4)
    table = s.score(data, ["helpfulness", "care"])
    assert table.model_calls == 3 * 2 * 4
    for i, sc in enumerate(data):
        for r in range(4):
            assert table.scores[i, r, 0] == pytest.approx((10 * r + i) / 100)
    orders = [tuple(re.findall(r"answer 0\.(\d)", p[-1]["content"])) for p in s.backend.prompts_seen
              if "question 0" in p[-1]["content"]]
    assert orders[0] == ("0", "1", "2", "3")  # sample 0 keeps the given order
    assert len(set(orders)) > 1  # later samples are shuffled


def test_samples_average():
    scores = iter([90, 10, 50, 50])

    def responder(prompt, constraint):
        return json.dumps({l: {"reasoning": "r", "score": next(scores)} for l in "AB"})

    s = steerer(backend=FakeBackend(responder=responder), samples=2)
    table = s.score(scenarios(1, 2), ["care"])
    assert sorted(table.scores[0, :, 0].round(2).tolist()) == [0.3, 0.7]


# -- cache keys ---------------------------------------------------------------------------
def test_cache_key_changes_with_definition_k_temperature_and_pool(tmp_path):
    cache = tmp_path / "c.sqlite3"
    s = steerer(cache=cache)
    s.score(scenarios(2, 2), {"warmth": "How warm the response feels."})
    assert s.model_calls == 2
    s.score(scenarios(2, 2), {"warmth": "How warm the response feels."})
    assert s.model_calls == 0
    s.score(scenarios(2, 2), {"warmth": "How friendly and kind the response is."})
    assert s.model_calls == 2
    base = ComparativeRegression(example_pool=fake_index(tmp_path))
    keys = {
        base.fingerprint(),
        ComparativeRegression(k=3, example_pool=fake_index(tmp_path)).fingerprint(),
        ComparativeRegression(samples=3, example_pool=fake_index(tmp_path)).fingerprint(),
        ComparativeRegression(samples=3, temperature=0.9, example_pool=fake_index(tmp_path)).fingerprint(),
        ComparativeRegression(example_pool=ExampleIndex(make_pool()[:-1], encoder=CountingEncoder(), cache_dir=tmp_path)).fingerprint(),
    }
    assert len(keys) == 5
    a, b = ComparativeRegression(), ComparativeRegression(definitions={"helpfulness": "Something else."})
    assert a.attribute_key("helpfulness") != b.attribute_key("helpfulness")


# -- bad input ----------------------------------------------------------------------------
def test_unknown_attribute_lists_known_before_any_call():
    for name in ("comparative-regression", "prompt-aligned"):
        s = steerer(name)
        with pytest.raises(steerkit.UnknownAttributeError, match=r"warmth.*care.*verbosity"):
            s.select("q?", ["a", "b"], {"warmth": 1.0})
        assert s.backend.prompts_seen == []


def test_too_many_responses_is_rejected_before_any_call():
    big = steerkit.Scenario("q?", tuple(f"answer {i}" for i in range(27)), id="huge")
    for name in ("comparative-regression", "regression", "prompt-aligned", "unaligned"):
        s = steerer(name)
        with pytest.raises(steerkit.InvalidScenarioError, match="huge.*27"):
            s.select_many([big], {"care": 1.0})
        assert s.backend.prompts_seen == []


def test_bad_output_is_retried_then_raises_naming_the_scenario():
    s = steerer(backend=FakeBackend(responder=lambda p, c: '{"A": {"reasoning": "x", "score": 400}}'))
    with pytest.raises(steerkit.ModelOutputError, match="s0"):
        s.score(scenarios(1, 2), ["care"])
    assert len(s.backend.prompts_seen) == 3  # first try + 2 retries
    outputs = iter(["not json at all", '{"A": {"reasoning": "ok", "score": 20}, "B": {"reasoning": "ok", "score": 80}}'])
    s = steerer(backend=FakeBackend(responder=lambda p, c: next(outputs)))
    table = s.score(scenarios(1, 2), ["care"])
    assert table.scores[0, :, 0].tolist() == [0.2, 0.8] and table.model_calls == 2


def test_unknown_option_is_an_error():
    with pytest.raises(TypeError, match="kk"):
        steerer(kk=3)


# -- choice baselines ---------------------------------------------------------------------
def test_prompt_aligned_describes_target_and_caches(tmp_path):
    s = steerer("prompt-aligned", cache=tmp_path / "c.sqlite3")
    sels = s.select_many(scenarios(3, 2), TARGET)
    assert [x.index for x in sels] == [0, 0, 0] and sels[0].model_calls == 1
    system = s.backend.prompts_seen[0][0]["content"]
    assert "High helpfulness" in system and "Low verbosity" in system
    again = s.select_many(scenarios(3, 2), TARGET)
    assert s.model_calls == 0 and again[0].cache_hits == 1 and again[0].model_calls == 0
    s.select_many(scenarios(3, 2), {"helpfulness": 0.0})  # a different description: new work
    assert s.model_calls == 3


def test_unaligned_takes_any_target_and_caches(tmp_path):
    s = steerer("unaligned", backend=FakeBackend(responder=lambda p, c: c.value[-1]), cache=tmp_path / "c.sqlite3")
    sels = s.select_many(scenarios(2, 3), steerkit.Perspective("Right to life"))
    assert [x.index for x in sels] == [2, 2]
    s.select_many(scenarios(2, 3), TARGET)  # the target is ignored: same cached answer
    assert s.model_calls == 0


# -- the real embedded model --------------------------------------------------------------
@pytest.fixture(scope="module")
def helpsteer2():
    from tests.conftest import DATA

    pool = load_pool(DATA / "helpsteer2" / "train.json")[:40]
    evals = json.loads((DATA / "helpsteer2" / "eval.json").read_text())[:3]
    return pool, [steerkit.Scenario.coerce(e) for e in evals]


@pytest.mark.slow
def test_real_model_comparative_regression_scores_and_caches(embedded_backend, helpsteer2, tmp_path, monkeypatch):
    monkeypatch.setenv("STEERKIT_CACHE_DIR", str(tmp_path))  # the pool's embedding index goes here
    pool, evals = helpsteer2
    s = steerkit.Steerer(strategy="comparative-regression", backend=embedded_backend,
                         cache=tmp_path / "c.sqlite3", progress=False, example_pool=pool, k=2,
                         response_chars=2000, example_chars=300)  # short prompts: CPU time
    start = time.perf_counter()
    table = s.score(evals, ["helpfulness", "verbosity"])
    seconds = time.perf_counter() - start
    assert table.complete and table.model_calls == 6
    assert np.all((table.scores[table.mask] >= 0) & (table.scores[table.mask] <= 1))
    assert all(t.strip() for per_s in table.reasonings for per_r in per_s for t in per_r)
    print(f"\ncomparative-regression k=2: {seconds / len(evals):.1f} s per scenario (2 attributes)")
    again = s.score(evals, ["helpfulness", "verbosity"])
    assert again.model_calls == 0 and again.cache_hits == 12
    np.testing.assert_array_equal(again.scores, table.scores)
    sels = table.selections(steerkit.AttributeTarget(TARGET))
    assert all(0 <= x.index < len(e.responses) for x, e in zip(sels, evals))


@pytest.mark.slow
def test_real_model_choice_baselines(embedded_backend, helpsteer2, tmp_path):
    _, evals = helpsteer2
    for name in ("prompt-aligned", "unaligned"):
        s = steerkit.Steerer(strategy=name, backend=embedded_backend, cache=tmp_path / "c.sqlite3", progress=False)
        sels = s.select_many(evals, TARGET)
        assert all(0 <= x.index < len(e.responses) and x.response == e.responses[x.index] for x, e in zip(sels, evals))
        assert s.model_calls == 3
        s.select_many(evals, TARGET)
        assert s.model_calls == 0
