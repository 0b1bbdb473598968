"""The transformers adapter against the real embedded model (no fakes)."""

import json
import time

import numpy as np
import pytest

import steerkit
from steerkit_adapters.embedded import embedded_model_dir
from steerkit_adapters.transformers_backend import TransformersBackend

pytestmark = pytest.mark.slow

SCHEMA = {
    "type": "object",
    "properties": {
        letter: {
            "type": "object",
            "properties": {
                "reasoning": {"type": "string", "maxLength": 100},
                "score": {"type": "integer", "minimum": 0, "maximum": 100},
            },
            "required": ["reasoning", "score"],
            "additionalProperties": False,
        }
        for letter in "AB"
    },
    "required": ["A", "B"],
    "additionalProperties": False,
}

PROMPT = [{"role": "user", "content": "Rate answers A ('Paris') and B ('Rome') to 'What is the capital of France?' for correctness, as JSON."}]


def test_embedded_folder_is_a_fixed_plain_hf_model():
    folder = embedded_model_dir()
    cfg = json.loads((folder / "config.json").read_text())
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    assert "quantization_config" not in cfg
    assert tok["eos_token"] == "<|im_end|>" and tok["pad_token"] == "<|im_end|>"
    assert tok["add_bos_token"] is False
    assert list(folder.glob("*.safetensors"))


def test_reload_from_converted_folder_is_fast(embedded_backend):
    start = time.perf_counter()
    fresh = TransformersBackend()
    fresh._load()
    elapsed = time.perf_counter() - start
    assert fresh.tokenizer.eos_token_id == 2
    assert elapsed < 10, f"reload took {elapsed:.1f}s; the converted folder should load in about a second"


def test_prompt_has_no_bos_and_opens_assistant_turn(embedded_backend):
    text = embedded_backend.render(PROMPT)
    assert text.rstrip().endswith("<|im_start|>assistant")
    ids = embedded_backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == embedded_backend.tokenizer.convert_tokens_to_ids("<|im_start|>")


def test_generation_stops_at_im_end(embedded_backend):
    out = embedded_backend.generate([[{"role": "user", "content": "Say hi in three words."}]], steerkit.Sampling(max_tokens=60))
    assert out[0].strip()
    assert "<|im_start|>" not in out[0] and "<|im_end|>" not in out[0]


def test_json_schema_batch_is_valid_and_bounded(embedded_backend):
    prompts = [PROMPT, [{"role": "user", "content": "Rate A ('yes') and B ('no') for helpfulness as JSON."}]]
    outs = embedded_backend.generate(prompts, steerkit.Sampling(max_tokens=320), steerkit.Constraint.json_schema(SCHEMA))
    for out in outs:
        data = json.loads(out)
        assert set(data) == {"A", "B"}
        for v in data.values():
            assert 0 <= v["score"] <= 100 and isinstance(v["reasoning"], str)


def test_choice_and_regex_constraints(embedded_backend):
    prompts = [[{"role": "user", "content": f"Pick a letter for question {i}."}] for i in range(3)]
    outs = embedded_backend.generate(prompts, steerkit.Sampling(max_tokens=4), steerkit.Constraint.choice(["A", "B", "C"]))
    assert all(o in {"A", "B", "C"} for o in outs)
    outs = embedded_backend.generate(prompts[:1], steerkit.Sampling(max_tokens=6), steerkit.Constraint.regex(r"[0-9]{2}"))
    assert len(outs[0]) == 2 and outs[0].isdigit()


def test_prefill_continues_the_assistant_message(embedded_backend):
    prompt = [{"role": "user", "content": "Is the sky blue? A. Yes B. No"}, {"role": "assistant", "content": "On a clear day it is.\nAnswer:"}]
    text = embedded_backend.render(prompt)
    assert text.endswith("Answer:")
    lp = embedded_backend.option_logprobs([prompt, prompt], ["A", "B"])
    assert lp.shape == (2, 2) and np.all(lp < 0) and np.allclose(lp[0], lp[1], atol=1e-4)


def test_batched_equals_single_greedy(embedded_backend):
    prompts = [[{"role": "user", "content": "Name a colour."}], [{"role": "user", "content": "Name a fruit, then explain why you like it in a sentence."}]]
    together = embedded_backend.generate(prompts, steerkit.Sampling(max_tokens=20))
    alone = [embedded_backend.generate([p], steerkit.Sampling(max_tokens=20))[0] for p in prompts]
    assert together[0].split()[:3] == alone[0].split()[:3]
    assert together[1].split()[:3] == alone[1].split()[:3]


def test_seeded_sampling_is_reproducible(embedded_backend):
    sampling = steerkit.Sampling(temperature=0.9, top_p=0.95, max_tokens=15, seed=7)
    prompt = [[{"role": "user", "content": "Tell me a word."}]]
    assert embedded_backend.generate(prompt, sampling) == embedded_backend.generate(prompt, sampling)


def test_missing_model_path_fails_before_loading():
    with pytest.raises(steerkit.ModelNotFoundError, match="does not exist"):
        TransformersBackend(model="./no/such/model")
    with pytest.raises(steerkit.ModelNotFoundError, match="not in the local Hugging Face cache"):
        TransformersBackend(model="nobody/not-a-real-model-xyz")


def test_local_folder_and_gguf_share_a_stable_fingerprint():
    folder = TransformersBackend(model=str(embedded_model_dir()))
    assert folder.fingerprint() == TransformersBackend(model=str(embedded_model_dir())).fingerprint()
    assert folder.fingerprint() != TransformersBackend().fingerprint()
    assert not folder.loaded
