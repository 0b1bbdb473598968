"""Comparative regression and its variants: FakeBackend unit tests, then the real embedded model."""

from __future__ import annotations

import json
import re
import time
import warnings

import numpy as np
import pytest

import steerkit
from steerkit_plugins.choice_baselines import PromptAligned, Unaligned
from steerkit_plugins.comparative import ComparativeRegression, Regression, ZeroShotComparative, ZeroShotFallbackWarning
from steerkit_plugins.comparative_prompts import LETTERS, Prompts, score_schema
from steerkit_plugins.fewshot import ExampleIndex, load_pool
from tests.fakes import FakeBackend
from tests.test_fewshot import CountingEncoder, make_pool

TARGET = {"helpfulness": 1.0, "verbosity": 0.0}
# most unit tests here run the few-shot strategy without a pool on purpose (prompt mechanics)
pytestmark = pytest.mark.filterwarnings("ignore::steerkit_plugins.comparative.ZeroShotFallbackWarning")


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
    s = steerer(example_pool=fake_index(tmp_path), shuffle=False)
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
    from steerkit_plugins.attribute_definitions import builtin_definitions

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
def shown_order(prompt) -> tuple[str, ...]:
    return tuple(re.findall(r"answer \d+\.(\d)", prompt[-1]["content"]))


def test_shuffled_letters_map_back_to_responses():
    """Every sample, the first included, is shuffled; each score lands on its own response."""
    s = steerer(backend=FakeBackend(responder=marker_responder), samples=4)
    data = scenarios(3, 4)
    table = s.score(data, ["helpfulness", "care"])
    assert table.model_calls == 3 * 2 * 4
    for i in range(3):
        for r in range(4):
            assert table.scores[i, r, 0] == pytest.approx((10 * r + i) / 100)
            assert table.scores[i, r, 1] == pytest.approx((10 * r + i) / 100)
    orders = [shown_order(p) for p in s.backend.prompts_seen]
    identity = ("0", "1", "2", "3")
    first_samples = orders[:3]  # attribute-major, then sample: the first 3 prompts are sample 0
    assert any(o != identity for o in first_samples)  # sample 0 is shuffled too
    assert len(set(orders)) > 5
    again = steerer(backend=FakeBackend(responder=marker_responder), samples=4)
    again.score(data, ["helpfulness", "care"])
    assert [shown_order(p) for p in again.backend.prompts_seen] == orders  # seeded: reproducible
    plain = steerer(backend=FakeBackend(responder=marker_responder), samples=2, shuffle=False)
    table = plain.score(data, ["care"])
    assert {shown_order(p) for p in plain.backend.prompts_seen} == {identity}
    assert table.scores[2, 3, 0] == pytest.approx(0.32)
    assert ComparativeRegression(shuffle=False).fingerprint() != ComparativeRegression().fingerprint()


def test_samples_average_per_response():
    """Two samples, scored by each response's marker plus 10 (first call) or 30 (second): each
    response's mean is its own marker + 20, whatever order the letters were shown in."""
    calls = []

    def responder(prompt, constraint):
        calls.append(1)
        bump = 10 if len(calls) == 1 else 30
        data = json.loads(marker_responder(prompt, constraint))
        return json.dumps({l: {"reasoning": v["reasoning"], "score": v["score"] + bump} for l, v in data.items()})

    s = steerer(backend=FakeBackend(responder=responder), samples=2)
    data = [steerkit.Scenario("q", ("low one [score=5]", "high one [score=60]", "mid one [score=33]"), id="x")]
    table = s.score(data, ["care"])
    assert table.scores[0, :, 0].round(2).tolist() == [0.25, 0.8, 0.53]


def test_reasoning_longer_than_the_schema_is_clipped_not_refused():
    """A server in JSON-object mode ignores maxLength: the structure and the 0-100 range are
    still checked, the reasoning is clipped; the schema sent still carries maxLength."""
    sent = []

    def long_reasoning(prompt, constraint):
        sent.append(constraint.value)
        return json.dumps({l: {"reasoning": "word " * 80, "score": 40} for l in "AB"})

    s = steerer(backend=FakeBackend(responder=long_reasoning))
    table = s.score(scenarios(1, 2), ["care"])
    assert table.model_calls == 1 and table.scores[0, :, 0].tolist() == [0.4, 0.4]
    assert all(len(t) <= Prompts.reasoning_chars and t.endswith("[...]") for t in np.ravel(table.reasonings))
    assert sent[0]["properties"]["A"]["properties"]["reasoning"]["maxLength"] == Prompts.reasoning_chars
    out_of_range = steerer(backend=FakeBackend(responder=lambda p, c: json.dumps(
        {l: {"reasoning": "r", "score": 101} for l in "AB"})))
    with pytest.raises(steerkit.ModelOutputError):
        out_of_range.score(scenarios(1, 2), ["care"])
    assert out_of_range.model_calls == 3


# -- batching -----------------------------------------------------------------------------
class CountingPrompts(ComparativeRegression):
    """Counts the prompts it builds (to show a warm cache builds none for stored jobs)."""

    built: list

    def build_prompt(self, job, shown):
        self.built.append((job.scenario.id, job.attribute, job.sample))
        return super().build_prompt(job, shown)


class BatchRecorder(FakeBackend):
    def __init__(self):
        super().__init__(responder=marker_responder)
        self.calls = []

    def complete(self, requests):
        self.calls.append([(len(r.constraint.value["required"]), r.sampling.seed) for r in requests])
        return super().complete(requests)


def test_comparative_batches_attribute_major_and_warm_cache_builds_only_missing_prompts(tmp_path):
    """The backend is called once per batch, whatever the response counts and samples (each
    request carries its own schema and seed); jobs go attribute-major
    (then sample, then scenario); with part of the cache warm, only missing jobs get prompts."""
    data = [scenarios(1, 2)[0], *scenarios(3, 3)[1:], steerkit.Scenario("question 3 about bread", (
        "answer 3.0 [score=3]", "answer 3.1 [score=13]"), id="s3")]  # response counts 2, 3, 3, 2
    strategy = CountingPrompts(samples=2, k=0)
    strategy.built = []
    backend = BatchRecorder()
    s = steerkit.Steerer(strategy, backend=backend, cache=tmp_path / "c.sqlite3", batch_size=3, progress=False)
    table = s.score(data, ["care", "fairness"])
    jobs = [(a, sample, sc.id) for a in ("care", "fairness") for sample in range(2) for sc in data]
    assert [(a, smp, sid) for sid, a, smp in strategy.built] == jobs  # attribute-major
    attributes_seen = [re.search(r"Attribute: (\w+)", p[0]["content"]).group(1) for p in backend.prompts_seen]
    assert attributes_seen == ["care"] * 8 + ["fairness"] * 8
    expected = []
    for start in range(0, len(jobs), 3):  # one call per batch: its requests' (response count, seed)
        expected.append([(len(next(x for x in data if x.id == sid).responses), smp)
                         for a, smp, sid in jobs[start:start + 3]])
    assert backend.calls == expected
    assert table.model_calls == 16 and table.complete
    # warm for care and fairness; a new attribute: only its 8 jobs are built and sent
    strategy.built.clear()
    more = s.score(data, ["care", "fairness", "loyalty"])
    assert {a for _, a, _ in strategy.built} == {"loyalty"} and len(strategy.built) == 8
    assert more.model_calls == 8 and more.cache_hits == 2 * 2 * 10 and more.cache_misses == 2 * 10
    assert table.scores[1, 2, 0] == pytest.approx(0.21) and more.scores[3, 1, 2] == pytest.approx(0.13)


# -- failures keep every success ----------------------------------------------------------
def failing_for(*questions):
    def responder(prompt, constraint):
        if any(q in prompt[-1]["content"] for q in questions):
            return "not json"
        return marker_responder(prompt, constraint)
    return responder


def test_a_failed_job_keeps_the_batch_and_a_rerun_computes_only_it(tmp_path):
    cache = tmp_path / "c.sqlite3"
    data = scenarios(4, 2)
    bad = steerer(backend=FakeBackend(responder=failing_for("question 1 ", "question 3 ")), cache=cache, batch_size=4)
    with pytest.raises(steerkit.ModelOutputError) as err:
        bad.score(data, ["care"])
    msg = str(err.value)
    assert "2 of 4 item(s) failed" in msg and "'s1' (attribute 'care', sample 0)" in msg and "'s3'" in msg
    assert "'s0'" not in msg and "rerun recomputes only the 2 failed" in msg
    assert bad.model_calls == 4 + 2 * 2  # the two failures were retried twice each
    assert len(err.value.failures) == 2
    good = steerer(backend=FakeBackend(responder=marker_responder), cache=cache)
    table = good.score(data, ["care"])
    assert good.model_calls == 2 and table.complete
    assert sorted(re.search(r"question (\d)", p[-1]["content"]).group(1) for p in good.backend.prompts_seen) == ["1", "3"]
    assert table.scores[:, 1, 0].round(2).tolist() == [0.1, 0.11, 0.12, 0.13]


def test_a_failed_choice_keeps_the_others_and_a_rerun_asks_only_it(tmp_path):
    cache = tmp_path / "c.sqlite3"

    def junk_for_s1(prompt, constraint):
        return "Z" if "question 1 " in prompt[-1]["content"] else pick_response(1)(prompt, constraint)

    bad = steerer("prompt-aligned", backend=FakeBackend(responder=junk_for_s1), cache=cache)
    with pytest.raises(steerkit.ModelOutputError, match=r"1 of 3 item\(s\) failed.*'s1'.*helpfulness=1"):
        bad.select_many(scenarios(3, 2), TARGET)
    good = steerer("prompt-aligned", backend=FakeBackend(responder=pick_response(1)), cache=cache)
    sels = good.select_many(scenarios(3, 2), TARGET)
    assert good.model_calls == 1 and [x.index for x in sels] == [1, 1, 1]
    assert [x.model_calls for x in sels] == [0, 1, 0] and [x.cache_hits for x in sels] == [1, 0, 1]


# -- counters per selection ---------------------------------------------------------------
def test_counters_are_charged_to_each_scenario(tmp_path):
    cache = tmp_path / "c.sqlite3"
    data = scenarios(3, 2)
    s = steerer(cache=cache)
    s.score(data[:1], ["helpfulness", "verbosity"])
    sels = s.select_many(data, TARGET)
    assert [x.model_calls for x in sels] == [0, 2, 2]  # 4 calls over 3 scenarios: not 4 // 3 each
    assert [x.cache_hits for x in sels] == [4, 0, 0] and [x.cache_misses for x in sels] == [0, 4, 4]
    assert sum(x.model_calls for x in sels) == s.model_calls == 4
    c = steerer("prompt-aligned", cache=cache)
    c.select_many(data[:1], TARGET)
    sels = c.select_many(data, TARGET)
    assert [x.model_calls for x in sels] == [0, 1, 1] and [x.cache_hits for x in sels] == [1, 0, 0]


def test_run_cached_shares_batch_calls_and_names_failures():
    """RunContext.compute_missing on its own: per-owner accounting sums to the run totals."""
    run = steerkit.plugin.RunContext(FakeBackend(), None, progress=False, batch_size=2)
    keyed = [([steerkit.plugin.CacheKey("m", "s", f"sc{i}", "", "a", 0)], i) for i in range(5)]

    def compute(items):
        run.generate([[{"role": "user", "content": str(i)}] for i in items] + [[{"role": "user", "content": "extra"}]])
        return [steerkit.ModelOutputError(f"item {i} broke") if i == 3 else [steerkit.plugin.CacheRecord(float(i))]
                for i in items]

    with pytest.raises(steerkit.ModelOutputError, match=r"1 of 5 item\(s\) failed: item 3 broke.*No cache") as err:
        run.compute_missing(keyed, compute, "test", owner=lambda i: i % 2)
    assert err.value.failures[0][0] == 3
    assert run.model_calls == 8  # 3 batches: 3 + 3 + 2 prompts
    assert run.usage(0).model_calls + run.usage(1).model_calls == 8
    assert run.usage(0).cache_misses == 3 and run.usage(1).cache_misses == 2


# -- retries are recorded -----------------------------------------------------------------
def test_a_retried_answer_records_its_retries_and_is_counted(tmp_path):
    cache = tmp_path / "c.sqlite3"
    outputs = iter(["{broken", '{"A": {"reasoning": "ok", "score": 20}, "B": {"reasoning": "ok", "score": 80}}',
                    '{"A": {"reasoning": "ok", "score": 30}, "B": {"reasoning": "ok", "score": 70}}'])
    s = steerer(backend=FakeBackend(responder=lambda p, c: next(outputs)), cache=cache, shuffle=False)
    table = s.score(scenarios(2, 2), ["care"])
    assert table.model_calls == 3 and s.last_run.retried == 2  # s0's two scores needed one retry
    store = steerkit.plugin.ScoreCache(cache)
    payloads = sorted(json.dumps(r.payload, sort_keys=True) for r in store.get_many(
        [steerkit.plugin.CacheKey(s.backend.fingerprint(), s.strategy.fingerprint(), sc.key, steerkit.plugin.text_hash(resp),
                           s.strategy.attribute_key("care"), 0)
         for sc in scenarios(2, 2) for resp in sc.responses]).values())
    assert payloads == ['{"retries": 0, "temperature": 0.0}'] * 2 + ['{"retries": 1, "temperature": 0.3}'] * 2
    warm = steerer(backend=FakeBackend(), cache=cache, shuffle=False)
    warm.score(scenarios(2, 2), ["care"])
    assert warm.model_calls == 0 and warm.last_run.retried == 2  # still counted when read from the cache


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


def test_a_cut_off_answer_is_asked_again_with_a_larger_budget_not_resampled(tmp_path):
    """The fake backend cuts an answer longer than max_tokens words (finish reason "length"):
    the retry keeps the sampling (greedy, same seed) and doubles the budget."""
    long = " ".join(["word"] * 200)
    answer = json.dumps({"A": {"reasoning": long, "score": 20}, "B": {"reasoning": "ok", "score": 80}})

    class Recording(FakeBackend):
        seen: list = []

        def complete(self, requests):
            self.seen.extend((r.sampling.max_tokens, r.sampling.temperature, r.sampling.seed) for r in requests)
            return super().complete(requests)

    backend = Recording(responder=lambda p, c: answer)
    s = steerer(backend=backend, cache=tmp_path / "c.sqlite3", shuffle=False)
    table = s.score(scenarios(1, 2), ["care"])
    budget = 80 * 2 + 16
    assert backend.seen == [(budget, 0.0, 0), (2 * budget, 0.0, 0)]
    assert table.scores[0, :, 0].tolist() == [0.2, 0.8] and s.last_run.retried == 2
    assert s.last_run.output_tokens == budget + len(answer.split())


def test_bad_output_is_retried_then_raises_naming_the_scenario():
    s = steerer(backend=FakeBackend(responder=lambda p, c: '{"A": {"reasoning": "x", "score": 400}}'))
    with pytest.raises(steerkit.ModelOutputError, match="s0"):
        s.score(scenarios(1, 2), ["care"])
    assert len(s.backend.prompts_seen) == 3  # first try + 2 retries
    outputs = iter(["not json at all", '{"A": {"reasoning": "ok", "score": 20}, "B": {"reasoning": "ok", "score": 80}}'])
    s = steerer(backend=FakeBackend(responder=lambda p, c: next(outputs)), shuffle=False)
    table = s.score(scenarios(1, 2), ["care"])
    assert table.scores[0, :, 0].tolist() == [0.2, 0.8] and table.model_calls == 2


@pytest.mark.parametrize("options, match", [
    ({"kk": 3}, r"unknown options \['kk'\].*takes k, samples"),
    ({"sample": 5}, r"unknown options \['sample'\].*takes k, samples, temperature, definitions, example_pool"),
    ({"k": -1}, r"k=-1 .*whole number >= 0"),
    ({"k": 1.5}, r"k=1\.5"),
    ({"samples": 0}, r"samples=0.*>= 1"),
    ({"temperature": -0.5}, r"temperature=-0\.5.*>= 0"),
    ({"response_chars": 10}, r"response_chars=10.*>= 100"),
    ({"shuffle": "yes"}, r"shuffle='yes'.*true or false"),
    ({"example_pool": 42}, r"example_pool=42 .*int is not a pool.*list of labelled scenarios"),
    ({"definitions": ["warmth"]}, r"definitions=\['warmth'\] .*mapping of attribute names"),
    ({"seed": -1}, r"seed=-1 .*whole number >= 0"),
    ({"definitions": {"warmth": {"definition": "Warm.", "levels": [0, 2]}}}, r"levels=\[0, 2\].*\[0, 1\]"),
])
def test_bad_options_are_invalid_option_errors(options, match):
    with pytest.raises(steerkit.InvalidOptionError, match=match):
        steerer(**options)


def test_bad_options_of_the_baselines_and_a_missing_pool_file(tmp_path):
    for name in ("prompt-aligned", "unaligned", "random", "oracle"):
        with pytest.raises(steerkit.InvalidOptionError, match=r"unknown options \['kk'\]"):
            steerer(name, kk=1)
    with pytest.raises(steerkit.DatasetError, match=r"nope\.json does not exist"):
        steerer(example_pool=str(tmp_path / "nope.json"))
    for name in ("prompt-aligned", "unaligned"):  # declared options: checked before any call
        for options, error, match in (
            ({"seed": -1}, steerkit.InvalidOptionError, r"seed=-1 .*whole number >= 0"),
            ({"shuffle": "yes"}, steerkit.InvalidOptionError, r"shuffle='yes'.*true or false"),
            ({"definitions": "warm"}, steerkit.InvalidOptionError, r"definitions='warm'.*mapping of attribute names"),
            ({"definitions": {"warmth": " "}}, steerkit.InvalidOptionError, r"definitions=.*'warmth' needs a non-empty definition"),
        ):
            with pytest.raises(error, match=match):
                steerer(name, **options)
    with pytest.raises(steerkit.InvalidOptionError, match=r"'warmth' needs a non-empty definition"):
        steerer(definitions={"warmth": ""})
    with pytest.raises(steerkit.InvalidTargetError, match=r"'warmth' needs a non-empty definition"):
        ComparativeRegression().define("warmth", "  ")
    assert steerer("prompt-aligned", seed=4, shuffle=False).strategy.options == {
        "definitions": None, "seed": 4, "shuffle": False}  # eval results record them


# Fingerprints computed by the code before the options were declared (commit 4be40ec): the
# cache identity of every existing user cache. They must never change for the same options.
PINNED_FINGERPRINTS = [
    (ComparativeRegression, {}, "comparative-regression@3:8f7d3dfb3118"),
    (ComparativeRegression, {"pool": True}, "comparative-regression@3:69c9dde22d0d"),
    (ComparativeRegression, {"pool": True, "k": 2, "samples": 3, "seed": 7, "response_chars": 2000, "example_chars": 300},
     "comparative-regression@3:085b696b0d46"),
    (ComparativeRegression, {"pool": True, "temperature": 0.5, "shuffle": False}, "comparative-regression@3:d0d38fb067b8"),
    (ComparativeRegression, {"samples": 2, "definitions": {"warmth": "How warm the response feels."}},
     "comparative-regression@3:3780f918d69d"),
    (Regression, {}, "regression@3:8f7d3dfb3118"),
    (Regression, {"pool": True, "k": 3, "temperature": 0.2}, "regression@3:6e6a62fba213"),
    (ZeroShotComparative, {}, "zero-shot-comparative@3:8f7d3dfb3118"),
    (ZeroShotComparative, {"samples": 4, "seed": 3, "shuffle": False, "response_chars": 1000},
     "zero-shot-comparative@3:409b271f87ee"),
    (ZeroShotComparative, {"pool": True, "k": 2}, "zero-shot-comparative@3:6de34e649de5"),
    (PromptAligned, {}, "prompt-aligned@choice-1:03a49cfe7994"),
    (PromptAligned, {"seed": 5}, "prompt-aligned@choice-1:2c826de78b91"),
    (PromptAligned, {"shuffle": False, "seed": 9, "definitions": {"warmth": "How warm."}}, "prompt-aligned@choice-1:b47bf7f67cad"),
    (Unaligned, {}, "unaligned@choice-1:03a49cfe7994"),
    (Unaligned, {"seed": 2}, "unaligned@choice-1:99964730c20c"),
    (Unaligned, {"shuffle": False}, "unaligned@choice-1:b47bf7f67cad"),
]


class PinnedEncoder:
    """Names the pool's vectors (the fingerprint holds the name, never embeds)."""

    model_name = "pin-encoder"

    def __call__(self, texts):
        raise AssertionError("a fingerprint must not embed the pool")


@pytest.mark.parametrize("cls, options, fingerprint", PINNED_FINGERPRINTS)
def test_fingerprints_are_those_of_existing_caches(cls, options, fingerprint, tmp_path):
    from tests.conftest import DATA

    options = dict(options)
    if options.pop("pool", False):  # the first 20 HelpSteer2 training scenarios: the pool's content hash
        pool = load_pool(DATA / "helpsteer2" / "train.json")[:20]
        options["example_pool"] = ExampleIndex(pool, encoder=PinnedEncoder(), cache_dir=tmp_path)
    strategy = cls(**options)
    assert strategy.fingerprint() == fingerprint
    if isinstance(strategy, ComparativeRegression):  # attribute keys (the definition hash) too
        assert strategy.attribute_key("helpfulness") == "helpfulness#6cf3adac8a7a"
        assert "definitions" not in options or strategy.attribute_key("warmth") == "warmth#3e99f5d39022"


def test_few_shot_without_a_pool_warns_and_records_k0(tmp_path, caplog):
    """Naming the few-shot method without a pool must not pass zero-shot results off as
    few-shot: a warning and a log line say so, and the table, selections and cache say k=0."""
    with pytest.warns(ZeroShotFallbackWarning, match=r"comparative-regression got no example_pool.*ZERO-SHOT \(k=0\).*example_pool="):
        s = steerer()
    assert any("ZERO-SHOT (k=0)" in r.getMessage() and r.name == "steerkit" for r in caplog.records)
    table = s.score(scenarios(1, 2), ["helpfulness"])
    assert [m["role"] for m in s.backend.prompts_seen[0]] == ["system", "user"]
    assert table.strategy == "comparative-regression (zero-shot: k=0)"
    assert s.select_many(scenarios(1, 2), TARGET)[0].strategy == "comparative-regression (zero-shot: k=0)"
    assert s.strategy.cache_options()["k"] == 0 and s.strategy.options["k"] == 0  # options go into eval results
    with pytest.warns(ZeroShotFallbackWarning, match=r"^regression got no example_pool"):
        steerer("regression")
    with pytest.warns(ZeroShotFallbackWarning):
        steerer(example_pool=[])  # an empty pool is no pool
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZeroShotFallbackWarning)  # none of these warn
        k0, zero = steerer(k=0), steerer("zero-shot-comparative")
        few = steerer(example_pool=fake_index(tmp_path))
    assert k0.strategy.fingerprint() == s.strategy.fingerprint()  # the cache identity is k=0's
    assert few.score(scenarios(1, 2), ["helpfulness"]).strategy == "comparative-regression"
    assert zero.score(scenarios(1, 2), ["helpfulness"]).strategy == "zero-shot-comparative"


# -- example pool coverage ----------------------------------------------------------------
def test_an_attribute_without_examples_warns_and_its_key_records_the_real_k(tmp_path):
    s = steerer(example_pool=fake_index(tmp_path))  # the pool labels helpfulness only
    with pytest.warns(UserWarning, match=r"no scenario\(s\) labelled with attribute 'warmth'.*k=0 instead of k=5"):
        s.score(scenarios(1, 2), {"warmth": "How warm the response feels."})
    assert [m["role"] for m in s.backend.prompts_seen[0]] == ["system", "user"]  # really zero-shot
    assert s.strategy.attribute_key("warmth").endswith("#k=0")
    assert "#k=" not in s.strategy.attribute_key("helpfulness")
    big = ComparativeRegression(k=20, example_pool=fake_index(tmp_path))  # 11 labelled pool scenarios
    assert big.attribute_key("helpfulness").endswith("#k=11")
    with pytest.warns(UserWarning, match=r"only 11 scenario"):
        big.warn_missing_examples(["helpfulness"])


def test_levels_of_a_user_attribute_are_checked_against_the_pool(tmp_path):
    from tests.test_fewshot import scenario

    pool = [scenario(f"topic {i}", (0.0, 1.0), attr="warmth") for i in range(3)]
    index = ExampleIndex(pool, encoder=CountingEncoder(), cache_dir=tmp_path)
    s = steerer(example_pool=index, k=2,
                definitions={"warmth": {"definition": "How warm it feels.", "levels": [0, 0.5, 1]}})
    with pytest.warns(UserWarning, match=r"warmth at level 0\.5"):
        s.score(scenarios(1, 2), ["warmth"])
    assert [m["role"] for m in s.backend.prompts_seen[0]] == ["system"] + ["user", "assistant"] * 2 + ["user"]
    # the same through Steerer.score's definitions mapping
    t = steerer(example_pool=ExampleIndex(pool, encoder=CountingEncoder(), cache_dir=tmp_path), k=2)
    with pytest.warns(UserWarning, match=r"warmth at level 0\.25"):
        t.score(scenarios(1, 2), {"warmth": {"definition": "How warm it feels.", "levels": [0, 0.25, 1]}})


# -- choice baselines ---------------------------------------------------------------------
def last_letter(prompt, constraint):
    return constraint.value[-1]


def first_letter(prompt, constraint):
    return constraint.value[0]


def pick_response(r: int):
    """A responder that answers the letter under which response r ("answer i.r") is shown."""
    def respond(prompt, constraint):
        shown = re.findall(r"Response ([A-Z]):\nanswer \d+\.(\d)", prompt[-1]["content"])
        return next(letter for letter, idx in shown if int(idx) == r)
    return respond


def test_prompt_aligned_describes_target_maps_letters_and_caches(tmp_path):
    s = steerer("prompt-aligned", backend=FakeBackend(responder=pick_response(1)), cache=tmp_path / "c.sqlite3")
    data = [*scenarios(2, 2), scenarios(3, 3)[2], scenarios(4, 4)[3]]  # 2, 2, 3 and 4 responses
    sels = s.select_many(data, TARGET)
    assert [x.index for x in sels] == [1, 1, 1, 1]  # the letter maps back to the response shown under it
    assert [x.response for x in sels] == [d.responses[1] for d in data]
    assert [x.extra["letter"] for x in sels] == [LETTERS[x.extra["order"].index(1)] for x in sels]
    assert sels[0].model_calls == 1
    system = s.backend.prompts_seen[0][0]["content"]
    assert "High helpfulness (1 on a 0-1 scale)" in system and "Low verbosity (0 on a 0-1 scale)" in system
    again = s.select_many(data, TARGET)
    assert s.model_calls == 0 and again[0].cache_hits == 1 and again[0].model_calls == 0
    s.select_many(data, {"helpfulness": 0.0})  # a different description: new work
    assert s.model_calls == 4


def test_prompt_aligned_targets_differ_by_value_not_only_by_word(tmp_path):
    """{h: 0.75} and {h: 1.0} are both 'high': the value itself keeps prompts and keys apart."""
    s = steerer("prompt-aligned", cache=tmp_path / "c.sqlite3")
    s.select_many(scenarios(2, 2), {"helpfulness": 1.0})
    s.select_many(scenarios(2, 2), {"helpfulness": 0.75})
    assert s.model_calls == 2  # not served from the first target's cache entries
    first, second = s.backend.prompts_seen[0][0]["content"], s.backend.prompts_seen[2][0]["content"]
    assert first != second and "(0.75 on a 0-1 scale)" in second and "High helpfulness" in second
    strategy = s.strategy
    a, b = steerkit.AttributeTarget({"helpfulness": 1.0}), steerkit.AttributeTarget({"helpfulness": 0.75})
    assert strategy.describe(a) != strategy.describe(b)


def test_unaligned_takes_any_target_and_caches(tmp_path):
    s = steerer("unaligned", backend=FakeBackend(responder=pick_response(2)), cache=tmp_path / "c.sqlite3")
    sels = s.select_many(scenarios(2, 3), steerkit.Perspective("Right to life"))
    assert [x.index for x in sels] == [2, 2]
    s.select_many(scenarios(2, 3), TARGET)  # the target is ignored: same cached answer
    assert s.model_calls == 0


@pytest.mark.parametrize("name", ["prompt-aligned", "unaligned"])
def test_choice_baselines_shuffle_letters_so_a_letter_bias_is_no_position_bias(name, tmp_path):
    """A model that always answers "A" must not always get the first response: the letters are
    shuffled per scenario (seeded) and mapped back, as in the scoring strategies."""
    data = scenarios(12, 4)
    s = steerer(name, backend=FakeBackend(responder=first_letter), cache=tmp_path / "c.sqlite3")
    sels = s.select_many(data, TARGET)
    assert len({x.index for x in sels}) > 1  # not always response 0
    for x, prompt in zip(sels, s.backend.prompts_seen):
        shown_under_a = re.search(r"Response A:\n(.*?)\n\n", prompt[-1]["content"], re.S).group(1)
        assert x.response == shown_under_a and x.extra["letter"] == "A"
        assert sorted(x.extra["order"]) == [0, 1, 2, 3] and x.extra["order"][0] == x.index
    again = steerer(name, backend=FakeBackend(responder=first_letter), cache=False)
    assert [x.index for x in again.select_many(data, TARGET)] == [x.index for x in sels]  # seeded
    other = steerer(name, backend=FakeBackend(responder=first_letter), cache=False, seed=3)
    assert [x.index for x in other.select_many(data, TARGET)] != [x.index for x in sels]
    plain = steerer(name, backend=FakeBackend(responder=first_letter), cache=False, shuffle=False)
    assert {x.index for x in plain.select_many(data, TARGET)} == {0}
    fps = {steerer(name, **o).strategy.fingerprint() for o in ({}, {"seed": 3}, {"shuffle": False})}
    assert len(fps) == 3  # seed and shuffle are part of the cache identity


def test_choice_baselines_have_their_own_prompt_version():
    assert PromptAligned.prompt_version == Unaligned.prompt_version == Prompts.choice_version
    assert Prompts.choice_version != ComparativeRegression.prompt_version


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
        for x, e in zip(sels, evals):  # the letter the model gave maps back through the shown order
            assert sorted(x.extra["order"]) == list(range(len(e.responses)))
            assert x.index == x.extra["order"][LETTERS.index(x.extra["letter"])]
        assert any(x.extra["order"] != sorted(x.extra["order"]) for x in sels)  # really shuffled
        assert s.model_calls == 3
        s.select_many(evals, TARGET)
        assert s.model_calls == 0


@pytest.mark.slow
def test_real_model_few_shot_without_a_pool_says_it_ran_zero_shot(embedded_backend, tmp_path):
    """The README's first call, before the fix, silently ran zero-shot: now it warns, and the
    selection and its cache entries say k=0."""
    with pytest.warns(ZeroShotFallbackWarning, match="ZERO-SHOT"):
        s = steerkit.Steerer(strategy="comparative-regression", backend=embedded_backend,
                             cache=tmp_path / "c.sqlite3", progress=False)
    sel = s.select("How do I reverse a list in Python?",
                   ["Use xs[::-1] or xs.reverse().", "You cannot."], {"helpfulness": 1.0})
    assert s.model_calls == 1 and sel.strategy == "comparative-regression (zero-shot: k=0)"
    assert len(sel.scores) == 2 and all(0 <= sc["helpfulness"] <= 1 for sc in sel.scores)
    assert '"k": 0' in json.dumps(s.strategy.cache_options())
