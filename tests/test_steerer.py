"""The one API (issue 2, items 3 and 10) on the fake backend, with a small attribute strategy
defined here: select / select_many / score, per-scenario targets, Selection fields, re-aligning
with zero model calls, and bad input failing before the backend is ever called."""

from __future__ import annotations

import json

import numpy as np
import pytest

import steerkit
from steerkit import Perspective, Scenario
from tests.fakes import FakeBackend


def keyword_scores(prompt, constraint):
    """The fake model: care = 1 if the response apologises, verbosity = words / 10."""
    job = json.loads(prompt[-1]["content"])
    out = []
    for r in job["responses"]:
        if job["attribute"] == "care":
            out.append(1.0 if "sorry" in r.lower() else 0.0)
        else:
            out.append(min(1.0, len(r.split()) / 10))
    return json.dumps({"scores": out})


class CountingBackend(FakeBackend):
    """Counts generate() calls (batches) as well as prompts; can refuse to be called."""

    def __init__(self, forbid: bool = False, **kw):
        super().__init__(responder=keyword_scores, **kw)
        self.batches = 0
        self.forbid = forbid

    def complete(self, requests):
        assert not self.forbid, "the backend must not be called for this input"
        self.batches += 1
        return super().complete(requests)


class KeywordJudge(steerkit.plugin.AttributeStrategy):
    """One comparative prompt per (scenario, attribute); JSON-constrained output."""

    name = "test-keyword-judge"

    def known_attributes(self):
        return ["care", "verbosity"]

    def score_jobs(self, run, jobs):
        prompts = [
            [{"role": "user", "content": json.dumps({"attribute": j.attribute, "responses": [j.scenario.responses[r] for r in j.responses]})}]
            for j in jobs
        ]
        schema = {"type": "object", "properties": {"scores": {"type": "array", "items": {"type": "number"}}}}
        outputs = run.generate(prompts, constraint=steerkit.plugin.Constraint.json_schema(schema))
        result = []
        for j, o in zip(jobs, outputs):
            scores = json.loads(o)["scores"]
            result.append([steerkit.plugin.ResponseScore(s, f"{j.attribute} judged {s:g}") for s in scores])
        return result


Q = "I missed your party, what do I say?"
RESPONSES = ["Whatever.", "Sorry I missed it, I hope it was great.", "I was busy with a long list of things to do that day, so I could not come."]


@pytest.fixture
def steerer(cache_path):
    backend = CountingBackend()
    s = steerkit.Steerer(KeywordJudge(), backend=backend, cache=cache_path, progress=False)
    yield s
    s.close()


def test_select_fills_every_selection_field(steerer):
    sel = steerer.select(Q, RESPONSES, {"care": 1.0}, id="party")
    assert sel.index == 1 and sel.response == RESPONSES[1]
    assert sel.scores == [{"care": 0.0}, {"care": 1.0}, {"care": 0.0}]
    assert sel.reasoning == ["care: care judged 0", "care: care judged 1", "care: care judged 0"]
    assert sel.strategy == "test-keyword-judge" and sel.model == "fake-model"
    assert sel.scenario_id == "party"
    assert sel.model_calls == 1 and sel.cache_misses == 3 and sel.cache_hits == 0
    assert sel.seconds > 0
    assert sel.distances == pytest.approx([1.0, 0.0, 1.0]) and sel.ties == []
    # the same question again is served from the cache
    again = steerer.select(Q, RESPONSES, {"care": 1.0})
    assert again.index == 1 and again.model_calls == 0 and again.cache_hits == 3 and again.cache_misses == 0
    assert steerer.backend.batches == 1
    # a second attribute costs only that attribute
    both = steerer.select(Q, RESPONSES, {"care": 0.0, "verbosity": 1.0})
    assert both.index == 2 and both.model_calls == 1 and both.cache_hits == 3 and both.cache_misses == 3
    assert set(both.scores[2]) == {"care", "verbosity"}


def test_select_many_batches_across_scenarios_and_attributes(cache_path):
    backend = CountingBackend()
    s = steerkit.Steerer(KeywordJudge(), backend=backend, cache=cache_path, batch_size=16, progress=False)
    scenarios = [{"question": f"{Q} ({i})", "responses": RESPONSES, "id": f"s{i}"} for i in range(5)]
    sels = s.select_many(scenarios, {"care": 0.0, "verbosity": 0.0})
    assert [x.index for x in sels] == [0] * 5
    assert [x.scenario_id for x in sels] == [f"s{i}" for i in range(5)]
    assert len(backend.prompts_seen) == 10 and backend.batches == 1  # one batch for all
    assert s.model_calls == 10


def test_per_scenario_targets(steerer):
    scenarios = [Scenario(Q, tuple(RESPONSES), id=str(i)) for i in range(3)]
    targets = [{"care": 1.0}, {"care": 0.0, "verbosity": 1.0}, steerkit.AttributeTarget({"verbosity": 0.0})]
    sels = steerer.select_many(scenarios, targets)
    assert [x.index for x in sels] == [1, 2, 0]
    with pytest.raises(steerkit.InvalidTargetError, match="2 targets for 3 scenarios"):
        steerer.select_many(scenarios, targets[:2])


def test_score_then_realign_with_zero_model_calls(steerer):
    scenarios = [Scenario(f"{Q} {i}", tuple(RESPONSES)) for i in range(4)]
    table = steerer.score(scenarios, ["care", "verbosity"])
    assert isinstance(table, steerkit.ScoreTable) and table.scores.shape == (4, 3, 2) and table.complete
    assert table.model_calls == 8 and table.strategy == "test-keyword-judge" and table.model == "fake-model"
    seen = len(steerer.backend.prompts_seen)
    for target, expected in [({"care": 1.0}, 1), ({"verbosity": 1.0}, 2), ({"verbosity": 0.0, "care": 0.0}, 0)]:
        assert table.align(target).indices.tolist() == [expected] * 4
    idx, _ = table.align_many([{"care": 1.0}, {"verbosity": 1.0}])
    assert idx.tolist() == [[1] * 4, [2] * 4]
    assert len(steerer.backend.prompts_seen) == seen  # aligning never touches the model
    # and selecting for a new target over the scored scenarios is all cache hits
    sels = steerer.select_many(scenarios, {"care": 0.3, "verbosity": 0.9})
    assert steerer.model_calls == 0 and sum(x.model_calls for x in sels) == 0
    assert len(steerer.backend.prompts_seen) == seen


def test_no_cache_means_every_call_computes():
    backend = CountingBackend()
    s = steerkit.Steerer(KeywordJudge(), backend=backend, cache=False, progress=False)
    assert s.cache is None
    s.select(Q, RESPONSES, {"care": 1.0})
    s.select(Q, RESPONSES, {"care": 1.0})
    assert backend.batches == 2


def test_strategy_by_name_and_default_aligner_choice(cache_path):
    s = steerkit.Steerer("random", backend=FakeBackend(), cache=cache_path, aligner="manhattan")
    sel = s.select(Q, RESPONSES, {"care": 0.5})
    assert sel.strategy == "random" and 0 <= sel.index < 3
    assert s.select(Q, RESPONSES, {"care": 0.5}).index == sel.index  # seeded, reproducible


# -- bad input fails before the backend is called ------------------------------------------

@pytest.fixture
def forbidden(cache_path):
    return steerkit.Steerer(KeywordJudge(), backend=CountingBackend(forbid=True), cache=cache_path, progress=False)


def test_perspective_target_to_attribute_strategy(forbidden):
    with pytest.raises(steerkit.UnsupportedTargetError) as exc:
        forbidden.select(Q, RESPONSES, Perspective("Right to life"))
    msg = str(exc.value)
    assert "test-keyword-judge" in msg and "perspective" in msg and "attributes" in msg
    # a perspective string is a perspective target too; and one bad target in a list is enough
    with pytest.raises(steerkit.UnsupportedTargetError):
        forbidden.select(Q, RESPONSES, "Right to life")
    with pytest.raises(steerkit.UnsupportedTargetError):
        forbidden.select_many([(Q, RESPONSES), ("Other?", RESPONSES)], [{"care": 1.0}, Perspective("Duty")])
    assert forbidden.backend.prompts_seen == [] and forbidden.backend.batches == 0


def test_unknown_attribute_for_strategy(forbidden):
    with pytest.raises(steerkit.UnknownAttributeError) as exc:
        forbidden.select(Q, RESPONSES, {"honesty": 1.0})
    assert "'honesty'" in str(exc.value) or "honesty" in str(exc.value)
    assert "care" in str(exc.value)
    with pytest.raises(steerkit.UnknownAttributeError):
        forbidden.score([(Q, RESPONSES)], ["care", "honesty"])
    with pytest.raises(steerkit.UnsupportedTargetError, match="definitions"):
        forbidden.score([(Q, RESPONSES)], {"honesty": "tells the truth"})
    assert forbidden.backend.batches == 0


@pytest.mark.parametrize("responses", [["only one"], ["same", "same"], ["fine", "  "]])
def test_bad_scenarios(forbidden, responses):
    with pytest.raises(steerkit.InvalidScenarioError):
        forbidden.select(Q, responses, {"care": 1.0})
    with pytest.raises(steerkit.InvalidScenarioError):
        forbidden.score([(Q, responses)], ["care"])
    assert forbidden.backend.batches == 0


@pytest.mark.parametrize("target", [{"care": 1.5}, {"care": float("nan")}, {"values": {"care": 0.5}, "weights": {"care": -1}}, 3])
def test_bad_targets(forbidden, target):
    with pytest.raises(steerkit.InvalidTargetError):
        forbidden.select(Q, RESPONSES, target)
    assert forbidden.backend.batches == 0


def test_score_needs_an_attribute_strategy():
    with pytest.raises(steerkit.UnsupportedTargetError, match="does not score attributes"):
        steerkit.Steerer("random", backend=FakeBackend(), cache=False).score([(Q, RESPONSES)], ["care"])


def test_missing_model_path_fails_before_loading(tmp_path):
    with pytest.raises(steerkit.ModelNotFoundError) as exc:
        steerkit.Steerer("random", backend="transformers", model=str(tmp_path / "no-such-model"), cache=False)
    assert "no-such-model" in str(exc.value)


def test_run_choose_returns_letters_and_refuses_anything_else():
    from steerkit.strategy import RunContext

    prompt = [{"role": "user", "content": "Pick one."}]
    ok = RunContext(FakeBackend(responder=lambda p, c: " B\n"), progress=False)
    assert ok.choose([prompt, prompt], ["A", "B"]) == ["B", "B"]
    assert ok.model_calls == 2
    broken = RunContext(FakeBackend(responder=lambda p, c: "maybe"), progress=False)
    with pytest.raises(steerkit.ModelOutputError, match=r"cot: backend fake returned 'maybe' under a choice constraint \['A', 'B'\]"):
        broken.choose([prompt], ["A", "B"], what="cot")


@pytest.mark.parametrize("responses", ["Yes", None])
def test_select_refuses_one_string_or_none_as_responses(forbidden, responses):
    with pytest.raises(steerkit.InvalidScenarioError, match="list of at least two strings"):
        forbidden.select(Q, responses, {"care": 1.0})
    with pytest.raises(steerkit.InvalidScenarioError, match="list of at least two strings"):
        forbidden.select_many([{"question": Q, "responses": responses}], {"care": 1.0})
    assert forbidden.backend.batches == 0


def test_score_with_a_repeated_attribute_scores_it_once(steerer):
    table = steerer.score([(Q, RESPONSES)], ["care", "verbosity", "care"])
    assert table.attributes == ["care", "verbosity"] and table.complete
    assert table.model_calls == 2
    assert table.align({"care": 1.0}).indices.tolist() == [1]


def test_weighted_target_with_an_unweighted_aligner_warns(cache_path):
    # care barely counts: weighted, the most verbose response wins; unweighted, the apology does
    target = steerkit.AttributeTarget({"care": 1.0, "verbosity": 1.0}, {"care": 0.001, "verbosity": 1.0})
    s = steerkit.Steerer(KeywordJudge(), backend=CountingBackend(), cache=cache_path, progress=False)
    with pytest.warns(UserWarning, match="aligner 'euclidean' does not use weights.*weighted-euclidean"):
        assert s.select(Q, RESPONSES, target).index == 1
    import warnings

    w = steerkit.Steerer(KeywordJudge(), backend=CountingBackend(), cache=cache_path, progress=False,
                         aligner="weighted-euclidean")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert w.select(Q, RESPONSES, target).index == 2


class ClosableBackend(CountingBackend):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.closed = 0

    def close(self):
        self.closed += 1


def test_close_frees_only_what_the_steerer_created(cache_path, spy_factory):
    backend, cache = ClosableBackend(), steerkit.plugin.ScoreCache(cache_path)
    with steerkit.Steerer(KeywordJudge(), backend=backend, cache=cache, progress=False) as s:
        s.select(Q, RESPONSES, {"care": 1.0})
    assert backend.closed == 0
    assert len(cache) == 3  # the caller's cache is still open and usable
    cache.put(steerkit.plugin.CacheKey("m", "s", "sc", "r", "a"), steerkit.plugin.CacheRecord(0.5))
    # what the Steerer built from names and paths, it closes
    own = steerkit.Steerer(KeywordJudge(), backend="closable-test", cache=cache_path, progress=False)
    own.select(Q, RESPONSES, {"care": 1.0})
    own.close()
    assert spy_factory[-1].closed == 1
    assert own.cache._conns == {}  # every connection it opened is closed


@pytest.fixture
def spy_factory():
    built: list[ClosableBackend] = []

    class Plugin:
        @steerkit.plugin.hookimpl
        def register_backends(self, register):
            register("closable-test", lambda model=None, **kw: built.append(ClosableBackend()) or built[-1])

    name = steerkit.plugin.register_plugin(Plugin(), name="closable-test-plugin")
    yield built
    steerkit.plugin.unregister_plugin(name)


def test_steerer_seed_reaches_strategies_that_take_one():
    """One seed: Steerer(seed=...) is the seed of strategies that take one (shuffles, sampling,
    cache key); strategies without a seed option are built as before."""
    a = steerkit.Steerer("comparative-regression", backend=FakeBackend(), cache=False, seed=7)
    b = steerkit.Steerer("comparative-regression", backend=FakeBackend(), cache=False, seed=8)
    assert a.strategy.seed == 7 and a.strategy.fingerprint() != b.strategy.fingerprint()
    r = steerkit.Steerer("random", backend=FakeBackend(), cache=False, seed=5)
    assert r.strategy.seed == 5
    assert steerkit.Steerer("oracle", backend=FakeBackend(), cache=False, seed=5).strategy.options == {}


def test_unknown_strategy_options_are_refused_naming_the_valid_ones():
    """A misspelt option (sample=5 for samples=5) never runs something else silently: built-in
    strategies refuse it themselves, and a plugin strategy with a plain signature gets the same
    typed error from the Steerer (not a TypeError), before any model loads."""

    class Strict(steerkit.plugin.Strategy):
        name = "test-strict"

        def __init__(self, samples: int = 1, *, depth: int = 2):
            super().__init__(samples=samples, depth=depth)

        def select_many(self, run, scenarios, targets):
            raise AssertionError("never reached")

    class Plugin:
        @steerkit.plugin.hookimpl
        def register_strategies(self, register):
            register("test-strict", Strict)

    name = steerkit.plugin.register_plugin(Plugin(), name="test-strict-plugin")
    try:
        with pytest.raises(steerkit.InvalidOptionError, match=r"'test-strict' got unknown options \['sample'\]; it takes samples, depth"):
            steerkit.Steerer("test-strict", backend=CountingBackend(forbid=True), cache=False, sample=5)
        assert steerkit.Steerer("test-strict", backend=FakeBackend(), cache=False, samples=3).strategy.options["samples"] == 3
    finally:
        steerkit.plugin.unregister_plugin(name)
    for strategy in ("comparative-regression", "regression", "zero-shot-comparative", "prompt-aligned",
                     "unaligned", "cot", "random", "oracle"):
        with pytest.raises(steerkit.InvalidOptionError, match=r"unknown options \['sample'\]; it takes "):
            steerkit.Steerer(strategy, backend=CountingBackend(forbid=True), cache=False, sample=5)
