"""The ``cot`` strategy: prompt formats, the two-step constrained answer, self-consistency,
distribution mode and caching (FakeBackend), then the real embedded model."""

import warnings

import numpy as np
import pytest

import steerkit
from steerkit_plugins.cot import ChainOfThought, build_prompt, resolve_format, split_free_text
from tests.fakes import FakeBackend


class RecordingBackend(FakeBackend):
    """FakeBackend that also records sampling settings and constraints, and can script answers."""

    def __init__(self, free_text="I think so.\nAnswer: A", answers=None, **kw):
        super().__init__(**kw)
        self.free_text, self.answers, self.calls = free_text, list(answers or []), []

    def complete(self, requests):
        """Records (prompts, sampling, constraint) per distinct setting of a call, in order."""
        groups: dict = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.settings(), []).append(i)
        out = [None] * len(requests)
        for idx in groups.values():
            sampling, constraint = requests[idx[0]].sampling, requests[idx[0]].constraint
            self.calls.append(([requests[i].prompt for i in idx], sampling, constraint))
            for i in idx:
                p = requests[i].prompt
                self.prompts_seen.append(p)
                if constraint is None:
                    text = self.free_text(p) if callable(self.free_text) else self.free_text
                else:
                    text = self.answers.pop(0) if self.answers else constraint.value[-1]
                out[i] = steerkit.plugin.Completion(text=text)
        return out


class ExplodingBackend(FakeBackend):
    def complete(self, *a, **k):
        raise AssertionError("the model must not be used")

    option_logprobs = complete


VK = steerkit.Scenario("Helping refugees", ("Support", "Oppose", "Either"), id="v1", meta={"task": "vk", "gold": 0})
OQA = steerkit.Scenario("Do you own a gun?", ("Yes", "No"), id="o1", meta={"task": "opinionqa", "gold": 1})
GEN = steerkit.Scenario("Which policy is best?", ("Tax cuts", "More spending", "Status quo", "Unsure"), id="g1")


def steerer(backend, cache_path=None, **opts):
    return steerkit.Steerer("cot", backend=backend, cache=cache_path or False, progress=False, **opts)


def test_attribute_target_is_rejected_before_any_model_call():
    s = steerer(ExplodingBackend())
    with pytest.raises(steerkit.UnsupportedTargetError, match="perspective"):
        s.select_many([VK], {"care": 0.8})
    with pytest.raises(steerkit.InvalidOptionError, match=r"format='poetry'; pass one of auto, vk, opinionqa, general"):
        ChainOfThought(format="poetry")


@pytest.mark.parametrize("options, match", [
    ({"sample": 5}, r"cot'? got unknown options \['sample'\]; it takes format, samples, distribution, max_tokens"),
    ({"samples": 0}, r"samples=0 .*whole number >= 1"),
    ({"samples": "5"}, r"samples='5'"),
    ({"samples": 2.5}, r"samples=2\.5"),
    ({"max_tokens": 0}, r"max_tokens=0"),
    ({"distribution": "yes"}, r"distribution='yes'; pass true or false"),
    ({"temperature": -1}, r"temperature=-1"),
    ({"top_p": 1.5}, r"top_p=1\.5 .*in \[0, 1\]"),
])
def test_unknown_or_bad_options_are_refused_before_any_model_call(options, match):
    with pytest.raises(steerkit.InvalidOptionError, match=match):
        steerer(ExplodingBackend(), **options)


def test_vk_format_lists_the_items_own_options():
    """The vk prompt shows the item's options, not a hard-coded list."""
    worded = steerkit.Scenario("Helping refugees", ("Supports", "Opposes", "Either way"), meta={"task": "vk"})
    text = build_prompt("vk", worded, steerkit.Perspective("Duty to help"))[0]["content"]
    assert text.endswith("A. Supports B. Opposes C. Either way") and "A. Support B." not in text
    be = RecordingBackend(answers=["B"])
    sel = steerer(be).select_many([worded], steerkit.Perspective("Duty to help"))[0]
    assert be.calls[0][0][0][0]["content"] == text and sel.response == "Opposes" and sel.extra["format"] == "vk"
    four = steerkit.Scenario("Helping refugees", ("Support", "Oppose", "Either", "Unsure"), meta={"task": "vk"})
    with pytest.raises(steerkit.InvalidScenarioError, match=r"needs 3 options .* not 4.*format='general'"):
        steerer(ExplodingBackend(), format="vk").select_many([four], steerkit.Perspective("Duty to help"))
    assert resolve_format("auto", four) == "general"


def test_prompt_formats():
    vk = build_prompt("vk", VK, steerkit.Perspective("Right to a safe environment"))[0]["content"]
    assert "does the value/right/duty support, oppose, or either support or oppose the situation" in vk
    assert "Situation: Helping refugees" in vk and "Value/right/duty: Right to a safe environment" in vk
    assert vk.endswith("A. Support B. Oppose C. Either") and '"Answer:"' in vk
    oq = build_prompt("opinionqa", OQA, steerkit.Perspective("Liberal", "Political ideology"))[0]["content"]
    assert "Adopt the perspective" in oq and "- Political ideology Liberal" in oq
    assert "Question: Do you own a gun?" in oq and "Options: A. Yes B. No" in oq
    gen = build_prompt("general", GEN, steerkit.Perspective("Fiscal conservatism"))[0]["content"]
    assert "Fiscal conservatism" in gen and "A. Tax cuts\nB. More spending\nC. Status quo\nD. Unsure" in gen
    assert [resolve_format("auto", s) for s in (VK, OQA, GEN)] == ["vk", "opinionqa", "general"]
    assert resolve_format("general", VK) == "general"


def test_split_free_text_statistic():
    assert split_free_text("Because X.\nAnswer: B", "ABC") == ("Because X.", True)
    assert split_free_text("Because X.\nAnswer: (C) Either", "ABC") == ("Because X.", True)
    assert split_free_text("Because X.\nAnswer: maybe", "ABC") == ("Because X.", False)
    assert split_free_text("Because X.\nAnswer: D", "ABC") == ("Because X.", False)
    assert split_free_text("No conclusion here", "ABC") == ("No conclusion here", False)


def test_split_free_text_cuts_at_the_last_answer_line():
    # "answer:" inside the reasoning is not the answer line
    text = "The right answer: it depends on who is asked.\nStill, safety matters.\nAnswer: A"
    assert split_free_text(text, "ABC") == ("The right answer: it depends on who is asked.\nStill, safety matters.", True)
    # the last answer line wins over an earlier one
    assert split_free_text("Answer: maybe B.\nOn reflection, no.\nFinal answer: C", "ABC") == (
        "Answer: maybe B.\nOn reflection, no.", True)
    # markdown, parentheses and lower case
    assert split_free_text("Because X.\n**Answer:** **B**", "ABC") == ("Because X.", True)
    assert split_free_text("Because X.\nanswer: (b)", "ABC") == ("Because X.", True)
    assert split_free_text("Because X.\nAnswer: b", "ABC") == ("Because X.", True)
    assert split_free_text("Because X.\n  ANSWER : c.", "ABC") == ("Because X.", True)
    # a lower-case article is not a letter
    assert split_free_text("Because X.\nAnswer: a reasonable person would agree", "ABC") == ("Because X.", False)
    # no answer line: an answer at the very end of the text still counts
    assert split_free_text("It protects people. Answer: A", "ABC") == ("It protects people.", True)
    # "answer:" mid-line with more text after it is reasoning, not an answer
    assert split_free_text("The right answer: it depends.", "ABC") == ("The right answer: it depends.", False)
    assert split_free_text("I cannot reanswer: A", "ABC") == ("I cannot reanswer: A", False)


def test_two_step_answer_comes_from_the_constrained_step():
    be = RecordingBackend(free_text="It protects people.\nAnswer: A", answers=["C"])
    sel = steerer(be).select_many([VK], steerkit.Perspective("Right to a safe environment"))[0]
    (free_prompts, free_sampling, free_c), (ans_prompts, ans_sampling, ans_c) = be.calls
    assert free_c is None and free_sampling.greedy and free_prompts[0][-1]["role"] == "user"
    assert ans_c == steerkit.plugin.Constraint.choice([" A", " B", " C"])  # after "Answer:" a letter is " A"
    last = ans_prompts[0][-1]
    assert last == {"role": "assistant", "content": "It protects people.\nAnswer:"}  # prefill
    assert sel.index == 2 and sel.response == "Either"  # the constrained letter, not the free text's "A"
    assert sel.reasoning == ["It protects people."]
    assert sel.extra["had_parsable_answer"] == [True] and sel.extra["format"] == "vk"
    assert sel.scores[2] == {"vote": 1.0}


def test_records_missing_parsable_answer():
    be = RecordingBackend(free_text="I am not sure what to say")
    sel = steerer(be).select_many([OQA], steerkit.Perspective("Liberal", "Political ideology"))[0]
    assert sel.extra["had_parsable_answer"] == [False] and sel.index == 1


def test_cache_rerun_makes_no_model_call(cache_path):
    be = RecordingBackend()
    s = steerer(be, cache_path)
    targets = [steerkit.Perspective("Right to life"), steerkit.Perspective("Liberal", "Political ideology"), steerkit.Perspective("Thrift")]
    first = s.select_many([VK, OQA, GEN], targets)
    assert s.model_calls == 6  # 3 free + 3 constrained
    again = s.select_many([VK, OQA, GEN], targets)
    assert s.model_calls == 0 and s.last_run.cache_hits == 3
    assert [a.index for a in again] == [f.index for f in first]
    assert [a.reasoning for a in again] == [f.reasoning for f in first]
    s.select_many([VK], steerkit.Perspective("Autonomy"))  # another perspective is new work
    assert s.model_calls == 2


def test_cache_key_tells_perspective_category_from_text(cache_path):
    be = RecordingBackend()
    s = steerer(be, cache_path)
    with_category = steerkit.Perspective("Liberal", "Political ideology")
    in_text = steerkit.Perspective("Political ideology: Liberal")
    assert str(with_category) == str(in_text)  # same string, different prompts
    p1 = build_prompt("opinionqa", OQA, with_category)[0]["content"]
    p2 = build_prompt("opinionqa", OQA, in_text)[0]["content"]
    assert p1 != p2
    s.select_many([OQA], with_category)
    assert s.model_calls == 2
    s.select_many([OQA], in_text)
    assert s.model_calls == 2  # not served from the other perspective's cache entry
    assert be.calls[-2][0][0][0]["content"] == p2
    s.select_many([OQA], in_text)
    assert s.model_calls == 0


def test_sampled_results_are_keyed_by_seed(cache_path):
    be = RecordingBackend()
    first = steerer(be, cache_path, samples=2)
    first.select_many([VK], steerkit.Perspective("Honesty"))
    assert first.model_calls == 4
    seeds = {c[1].seed for c in be.calls if c[2] is None}
    other = steerkit.Steerer("cot", backend=be, cache=cache_path, progress=False, samples=2, seed=7)
    other.select_many([VK], steerkit.Perspective("Honesty"))
    assert other.model_calls == 4  # another seed is another sample set, not a cache hit
    assert {c[1].seed for c in be.calls[-4:] if c[2] is None} == {7, 8} and seeds == {0, 1}
    again = steerkit.Steerer("cot", backend=be, cache=cache_path, progress=False, samples=2, seed=7)
    again.select_many([VK], steerkit.Perspective("Honesty"))
    assert again.model_calls == 0
    # greedy results do not depend on the seed: shared across seeds
    g = steerkit.Steerer("cot", backend=be, cache=cache_path, progress=False, seed=0)
    g.select_many([VK], steerkit.Perspective("Honesty"))
    g2 = steerkit.Steerer("cot", backend=be, cache=cache_path, progress=False, seed=5)
    g2.select_many([VK], steerkit.Perspective("Honesty"))
    assert g.model_calls == 2 and g2.model_calls == 0


def test_self_consistency_majority_vote(cache_path):
    be = RecordingBackend(answers=["B", "A", "B"])
    s = steerer(be, cache_path, samples=3)
    sel = s.select_many([VK], steerkit.Perspective("Honesty"))[0]
    free = [c for c in be.calls if c[2] is None]
    assert len(free) == 3  # one batch per sample index
    assert all(c[1].temperature == 0.7 and c[1].top_p == 0.95 for c in free)
    assert len({c[1].seed for c in free}) == 3
    assert sel.index == 1 and sel.extra["letters"] == ["B", "A", "B"]
    assert sel.extra["vote_shares"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert [sc["vote"] for sc in sel.scores] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert len(sel.reasoning) == 3
    s.select_many([VK], steerkit.Perspective("Honesty"))
    assert s.model_calls == 0


def test_distribution_mode(cache_path):
    be = RecordingBackend()
    s = steerer(be, cache_path, distribution=True)
    sels = s.select_many([OQA, GEN], [steerkit.Perspective("Liberal", "Political ideology"), steerkit.Perspective("Thrift")])
    for sel, n in zip(sels, (2, 4)):
        dist = sel.extra["distribution"]
        assert len(dist) == n and sum(dist) == pytest.approx(1.0)
        assert sel.index == int(np.argmax(dist)) == 0  # FakeBackend favours the first option
        assert sum(sc["probability"] for sc in sel.scores) == pytest.approx(1.0)
    assert all(c[2] is None for c in be.calls)  # the answer step used option_logprobs, not generate
    s.select_many([OQA, GEN], [steerkit.Perspective("Liberal", "Political ideology"), steerkit.Perspective("Thrift")])
    assert s.model_calls == 0


def test_distribution_mode_without_any_finite_letter_probability_is_an_error_not_a_cached_nan(cache_path):
    class NoLetters(RecordingBackend):
        def option_logprobs(self, prompts, options):
            return np.full((len(prompts), len(options)), -np.inf)  # e.g. a server whose top list lacks them

    s = steerer(NoLetters(), cache_path, distribution=True)
    with pytest.raises(steerkit.ModelOutputError, match="no finite log-probability"):
        s.select_many([OQA], [steerkit.Perspective("Liberal", "Political ideology")])
    good = steerer(RecordingBackend(), cache_path, distribution=True)  # nothing was stored for the item
    sel = good.select_many([OQA], [steerkit.Perspective("Liberal", "Political ideology")])[0]
    assert good.model_calls > 0 and np.isfinite(sel.extra["distribution"]).all()


# -- the real embedded model -------------------------------------------------------------
@pytest.mark.slow
def test_cot_real_model(embedded_backend, data_dir, cache_path):
    vk = steerkit.plugin.lookup("dataset", "vk")(path=data_dir, limit=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        oq = steerkit.plugin.lookup("dataset", "opinionqa")(path=data_dir, limit=3)
    s = steerkit.Steerer("cot", backend=embedded_backend, cache=cache_path, progress=False, max_tokens=40)
    sels = s.select_many(vk.scenarios, vk.perspectives)
    assert s.model_calls == 8
    assert [sel.scenario_id for sel in sels] == [sc.id for sc in vk.scenarios]
    for sel, sc in zip(sels, vk.scenarios):  # each selection against its own item
        assert sel.extra["letter"] == "ABC"[sel.index] and sel.response == sc.responses[sel.index]
        assert sel.extra["format"] == "vk"
        assert len(sel.reasoning) == 1 and isinstance(sel.reasoning[0], str)
    assert any(sel.reasoning[0].strip() for sel in sels)
    again = s.select_many(vk.scenarios, vk.perspectives)
    assert s.model_calls == 0 and [a.index for a in again] == [b.index for b in sels]

    d = steerkit.Steerer("cot", backend=embedded_backend, cache=cache_path, progress=False, max_tokens=40, distribution=True)
    dsels = d.select_many(oq.scenarios, oq.perspectives)
    for sel, sc in zip(dsels, oq.scenarios):
        dist = sel.extra["distribution"]
        assert len(dist) == len(sc.responses) and sum(dist) == pytest.approx(1.0)
        assert all(0.0 <= p <= 1.0 for p in dist) and sel.index == int(np.argmax(dist))
    d.select_many(oq.scenarios, oq.perspectives)
    assert d.model_calls == 0


@pytest.mark.slow
def test_the_answer_is_the_letter_the_model_writes_after_answer(embedded_backend, data_dir):
    """After "Answer:" the model writes " A"/" B"/" C" (most of its mass); "A"/"B"/"C" get a tiny
    share whose argmax is unrelated. The constrained answer must be the argmax of the first."""
    import torch

    vk = steerkit.plugin.lookup("dataset", "vk")(path=data_dir, limit=3)
    s = steerkit.Steerer("cot", backend=embedded_backend, cache=False, progress=False, max_tokens=16)
    sels = s.select_many(vk.scenarios, vk.perspectives)
    tok, model = embedded_backend.tokenizer, embedded_backend.hf_model
    spaced = [tok.encode(" " + l, add_special_tokens=False)[0] for l in "ABC"]
    bare = [tok.encode(l, add_special_tokens=False)[0] for l in "ABC"]
    for sel, sc, p in zip(sels, vk.scenarios, vk.perspectives):
        prefill = [*build_prompt("vk", sc, p), {"role": "assistant", "content": (sel.reasoning[0] + "\nAnswer:").lstrip("\n")}]
        enc = tok(embedded_backend.render(prefill), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            probs = torch.softmax(model(**enc).logits[0, -1].float(), -1)
        assert probs[spaced].sum() > 20 * probs[bare].sum()  # how the model writes the letter there
        assert sel.extra["letter"] == "ABC"[int(probs[spaced].argmax())]


def test_per_selection_counters_and_partial_failure_keep_the_rest(tmp_path):
    """Each selection is charged its own calls (2 per item: free text + answer), and a broken
    answer step for one item keeps the other items' results in the cache."""
    items = [VK, OQA, GEN]
    perspectives = [steerkit.Perspective("Right to life")] * 3
    backend = RecordingBackend(answers=["A", "not-a-letter", "B"])
    s = steerer(backend, tmp_path / "c.sqlite3")
    with pytest.raises(steerkit.ModelOutputError, match=r"1 of 3 item\(s\) failed") as err:
        s.select_many(items, perspectives)
    assert "not-a-letter" in str(err.value)
    backend.answers = []  # a working backend: the rerun computes only the failed item
    sels = s.select_many(items, perspectives)
    assert s.model_calls == 2
    assert [sel.model_calls for sel in sels] == [0, 2, 0]
    assert [(sel.cache_hits, sel.cache_misses) for sel in sels] == [(1, 0), (0, 1), (1, 0)]
    assert sels[0].extra["letter"] == "A" and sels[2].extra["letter"] == "B"
