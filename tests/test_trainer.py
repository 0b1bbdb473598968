"""The trainer plugin: prompts and manifest (fast), presets and bad input (fast, no model),
and real tiny TRL runs on the embedded model (slow)."""

from __future__ import annotations

import json

import pytest

import steerkit
from steerkit import CheckpointError, Perspective, Scenario
from steerkit_plugins import cot, manifest, train_prompts

VK = Scenario("Helping refugees", ("Support", "Oppose", "Either"), id="1", meta={"task": "vk", "gold": 2})
RIGHT = Perspective("Right to a safe environment")


# -- prompts ------------------------------------------------------------------------------
def test_cot_style_is_exactly_the_cot_strategy_prompt():
    assert train_prompts.train_prompt("cot", VK, RIGHT, "vk") == cot.build_prompt("vk", VK, RIGHT)


def test_answer_style_keeps_question_and_options_and_asks_for_the_letter_only():
    text = train_prompts.train_prompt("answer", VK, RIGHT, "vk")[0]["content"]
    cot_text = cot.build_prompt("vk", VK, RIGHT)[0]["content"]
    assert "step by step" not in text and "letter" in text
    assert text.replace(train_prompts._ANSWER_ONLY, "") == cot_text.replace(cot._REASON, "")


def test_completions_and_task_of():
    assert train_prompts.completion("answer", "B") == "B"
    assert train_prompts.completion("cot", "A", " It helps. ") == "It helps.\nAnswer: A"
    assert train_prompts.gold_letter(VK) == "C"
    assert train_prompts.task_of(VK) == "vk"
    assert train_prompts.task_of("OpinionQA") == "opinionqa"
    assert train_prompts.task_of(Scenario("q?", ("x", "y"))) == "general"
    with pytest.raises(steerkit.InvalidOptionError, match="rationale"):
        train_prompts.completion("cot", "A")
    with pytest.raises(steerkit.InvalidOptionError, match="answer, cot"):
        train_prompts.train_prompt("long", VK, RIGHT, "vk")


# -- manifest -----------------------------------------------------------------------------
def test_manifest_round_trip_and_typed_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        manifest.read_manifest(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not a steerkit checkpoint.*steerkit train"):
        manifest.read_manifest(tmp_path)
    manifest.write_manifest(tmp_path, {"complete": False, "method": "sft", "command": "steerkit train sft --out x"})
    assert [p.name for p in tmp_path.iterdir()] == [manifest.MANIFEST_NAME]  # no temp file left
    with pytest.raises(CheckpointError, match="interrupted.*steerkit train sft --out x.*resume"):
        manifest.read_manifest(tmp_path)
    assert manifest.load_manifest(tmp_path)["complete"] is False
    manifest.write_manifest(tmp_path, {"complete": True, "method": "sft"})
    assert manifest.read_manifest(tmp_path)["format_version"] == manifest.FORMAT_VERSION
    (tmp_path / manifest.MANIFEST_NAME).write_text(json.dumps({"format_version": 99, "complete": True}))
    with pytest.raises(CheckpointError, match="format 99"):
        manifest.read_manifest(tmp_path)
    (tmp_path / manifest.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot be read"):
        manifest.read_manifest(tmp_path)
