"""STaR synthetic CoT: keep the teacher's right answers, rationalise the wrong ones from the gold
(fake backend: the protocol), cached so a rerun makes no call; then the real embedded teacher
on real VK items (slow)."""

from __future__ import annotations

import pytest

import steerkit
from steerkit import InvalidScenarioError, Perspective, Scenario
from steerkit_plugins import star
from steerkit_plugins.cot import build_prompt
from tests.conftest import DATA
from tests.fakes import FakeBackend

OPTS = ("Support", "Oppose", "Either")
RIGHT = Perspective("Right to a safe environment")


def vk(i: int) -> Scenario:
    return Scenario(f"Situation {i}", OPTS, id=str(i), meta={"task": "vk"})


class Teacher(FakeBackend):
    """Reasons "because N", answers A to everything; a rationalisation ends with the hinted letter."""

    def __init__(self, verify_answer: str = " A"):
        super().__init__(responder=self.respond)
        self.verify_answer = verify_answer

    def respond(self, prompt, constraint):
        text = prompt[0]["content"]
        if constraint is not None:  # the answer step after "...\nAnswer:"
            return " A" if "rationale" not in prompt[-1]["content"] else self.verify_answer
        if "The correct answer is" in text:
            return "A rationale that ends with the gold.\nAnswer: C"
        return f"because {text.split('Situation: ')[1].split(chr(10))[0]}\nAnswer: A"


def test_right_answers_are_kept_wrong_ones_rationalised_from_the_gold(tmp_path):
    teacher = Teacher()
    items = [(vk(0), RIGHT, 0), (vk(1), RIGHT, 2)]
    out = star.star_rationales(teacher, items, tmp_path / "c.db", progress=False)
    assert out[0] == star.StarRationale("because Situation 0", star.KEPT, "A", "A")
    assert out[1] == star.StarRationale("A rationale that ends with the gold.", star.RATIONALISED, "A", "C")
    assert all(r.usable for r in out) and [r.rationalised for r in out] == [False, True]
    hinted = [p for p in teacher.prompts_seen if "The correct answer is" in p[0]["content"]]
    assert len(hinted) == 1
    text = hinted[0][0]["content"]
    assert text.startswith(build_prompt("vk", vk(1), RIGHT)[0]["content"])  # the same question first
    assert "The correct answer is C. Either" in text and "conclusion comes only at the end" in text
    # 2 reasonings + 2 answers + 1 rationalisation; a rerun reads everything from the cache
    assert len(teacher.prompts_seen) == 5
    again = Teacher()
    assert star.star_rationales(again, items, tmp_path / "c.db", progress=False) == out
    assert again.prompts_seen == []


def test_verify_keeps_only_rationalisations_that_lead_to_the_gold(tmp_path):
    items = [(vk(1), RIGHT, 2)]
    failed = star.star_rationales(Teacher(verify_answer=" B"), items, None, progress=False, verify=True)[0]
    assert (failed.status, failed.rationale, failed.usable) == (star.FAILED, "", False)
    teacher = Teacher(verify_answer=" C")
    ok = star.star_rationales(teacher, items, None, progress=False, verify=True)[0]
    assert ok.status == star.RATIONALISED
    check = teacher.prompts_seen[-1]  # verified after the ORIGINAL prompt, without the hint
    assert check[0] == build_prompt("vk", vk(1), RIGHT)[0]
    assert check[-1]["content"] == "A rationale that ends with the gold.\nAnswer:"


def test_bad_items_are_refused_before_any_call():
    teacher = Teacher()
    with pytest.raises(InvalidScenarioError, match="gold must be an option index 0..2, got 3"):
        star.star_rationales(teacher, [(vk(0), RIGHT, 3)], None, progress=False)
    with pytest.raises(InvalidScenarioError, match="vk format needs 3 options"):
        star.star_rationales(teacher, [(Scenario("s", ("Support", "Oppose")), RIGHT, 0)], None, task="vk", progress=False)
    assert teacher.prompts_seen == []


class Counting(steerkit.plugin.Backend):
    """Counts the prompts that reach a real backend."""

    name = "counting"

    def __init__(self, inner):
        super().__init__(inner.model)
        self.inner, self.calls = inner, 0

    def fingerprint(self):
        return self.inner.fingerprint()

    def complete(self, requests):
        self.calls += len(requests)
        return self.inner.complete(requests)


@pytest.mark.slow
def test_real_teacher_on_real_vk_items(tmp_path, embedded_backend):
    ds = steerkit.plugin.lookup("dataset", "vk")(path=DATA).head(3)
    items = [(s, p, s.meta["gold"]) for s, p in zip(ds.scenarios, ds.perspectives)]
    teacher = Counting(embedded_backend)
    out = star.star_rationales(teacher, items, tmp_path / "c.db", max_tokens=24, progress=False)
    assert len(out) == 3 and teacher.calls >= 6
    for r, (s, _, gold) in zip(out, items):
        assert r.gold == "ABC"[gold] and r.answer in "ABC"
        assert r.status == (star.KEPT if r.answer == r.gold else star.RATIONALISED) or r.status == star.FAILED
        assert r.usable == bool(r.rationale)
    again = Counting(embedded_backend)
    assert star.star_rationales(again, items, tmp_path / "c.db", max_tokens=24, progress=False) == out
    assert again.calls == 0
