"""Backend requests: any mix of settings and adapters in one call, completions that say why
they ended and what they cost, per-request errors; on the real embedded model and its LoRAs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import steerkit
from tests.fakes import FakeBackend

Q = [{"role": "user", "content": "Name a fruit."}]
Q2 = [{"role": "user", "content": "What colour is the sky?"}]
SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 9}},
          "required": ["score"], "additionalProperties": False}


def lora_folder(backend, folder, seed: int = 0):
    """A tiny random LoRA on the embedded model (B non-zero, so it changes the output), saved by peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(backend.model_dir())
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    model.save_pretrained(folder)
    return str(folder)


def test_a_mixed_call_answers_each_request_as_if_it_came_alone(embedded_backend):
    requests = [
        steerkit.plugin.Request(Q, steerkit.plugin.Sampling(max_tokens=6)),
        steerkit.plugin.Request(Q2, steerkit.plugin.Sampling(max_tokens=3)),
        steerkit.plugin.Request(Q, steerkit.plugin.Sampling(max_tokens=4), steerkit.plugin.Constraint.choice([" A", " B"])),
        steerkit.plugin.Request(Q2, steerkit.plugin.Sampling(max_tokens=20), steerkit.plugin.Constraint.json_schema(SCHEMA)),
    ]
    together = embedded_backend.complete(requests)
    alone = [embedded_backend.complete([r])[0] for r in requests]
    assert [c.text for c in together] == [c.text for c in alone]
    assert together[2].text in (" A", " B") and together[2].finish_reason == "stop"
    assert 0 <= json.loads(together[3].text)["score"] <= 9 and together[3].finish_reason == "stop"
    for r, c in zip(requests, together):
        rendered = embedded_backend.tokenizer(embedded_backend.render(r.prompt), add_special_tokens=False)
        assert c.ok and c.prompt_tokens == len(rendered["input_ids"])
        assert 1 <= c.output_tokens <= r.sampling.max_tokens


def test_a_cut_off_answer_says_length_and_a_finished_one_says_stop(embedded_backend):
    cut, done = embedded_backend.complete([
        steerkit.plugin.Request(Q, steerkit.plugin.Sampling(max_tokens=2)),
        steerkit.plugin.Request(Q, steerkit.plugin.Sampling(max_tokens=2), steerkit.plugin.Constraint.choice(["A"])),
    ])
    assert cut.finish_reason == "length" and cut.truncated and cut.output_tokens == 2
    assert done.text == "A" and done.finish_reason == "stop" and done.output_tokens <= 2


def test_run_context_sums_tokens_and_charges_them(embedded_backend):
    run = steerkit.plugin.RunContext(embedded_backend, None, progress=False)
    done = run.complete([steerkit.plugin.Request(Q, steerkit.plugin.Sampling(max_tokens=3)), steerkit.plugin.Request(Q2, steerkit.plugin.Sampling(max_tokens=3))])
    assert run.model_calls == 2
    assert run.prompt_tokens == sum(c.prompt_tokens for c in done) > 0
    assert run.output_tokens == sum(c.output_tokens for c in done) > 0


def test_choose_takes_one_option_list_per_prompt_in_one_call():
    backend = FakeBackend()
    run = steerkit.plugin.RunContext(backend, None, progress=False)
    got = run.choose([Q, Q2, Q], [["A", "B"], ["A", "B", "C"], ["1", "2"]], prefix=" ")
    assert got == ["A", "A", "1"] and backend.call_sizes == [3]
    lps = run.option_logprobs([Q, Q2, Q], [["A", "B"], ["A", "B", "C"], ["A", "B"]])
    assert [len(x) for x in lps] == [2, 3, 2]


def test_one_failed_request_leaves_the_others_standing():
    def responder(prompt, constraint):
        return RuntimeError("server said 500") if "sky" in prompt[0]["content"] else "fine"

    run = steerkit.plugin.RunContext(FakeBackend(responder=responder), None, progress=False)
    first, failed = run.complete([steerkit.plugin.Request(Q), steerkit.plugin.Request(Q2)])
    assert first.text == "fine" and not failed.ok and failed.finish_reason == "error"
    assert run.generate([Q, Q2], strict=False)[0] == "fine"
    with pytest.raises(steerkit.PartialBatchError) as err:
        run.generate([Q, Q2])
    assert err.value.results[0] == "fine" and isinstance(err.value.results[1], RuntimeError)


def test_a_backend_written_for_generate_still_serves_mixed_requests():
    class Legacy(steerkit.plugin.Backend):
        name = "legacy"

        def __init__(self):
            super().__init__("legacy")
            self.calls = []

        def fingerprint(self):
            return "legacy"

        def generate(self, prompts, sampling=steerkit.plugin.Sampling(), constraint=None):
            self.calls.append((len(prompts), sampling.max_tokens))
            return [f"{sampling.max_tokens}" for _ in prompts]

    backend = Legacy()
    done = backend.complete([steerkit.plugin.Request(Q, steerkit.plugin.Sampling(max_tokens=3)),
                             steerkit.plugin.Request(Q2, steerkit.plugin.Sampling(max_tokens=5)),
                             steerkit.plugin.Request(Q2, steerkit.plugin.Sampling(max_tokens=3))])
    assert [c.text for c in done] == ["3", "5", "3"] and sorted(backend.calls) == [(1, 5), (2, 3)]
    with pytest.raises(steerkit.BackendError, match="LoRA"):
        backend.complete([steerkit.plugin.Request(Q, adapter="/some/adapter")])
    with pytest.raises(TypeError, match="complete"):
        type("Nothing", (steerkit.plugin.Backend,), {"fingerprint": lambda self: "x"})


def test_requests_with_adapters_switch_per_request_and_the_base_stays_the_base(tmp_path, embedded_backend):
    one = lora_folder(embedded_backend, tmp_path / "one", seed=1)
    two = lora_folder(embedded_backend, tmp_path / "two", seed=2)
    greedy = steerkit.plugin.Sampling(max_tokens=8)
    base_alone = embedded_backend.complete([steerkit.plugin.Request(Q, greedy)])[0].text
    base_logprobs = embedded_backend.option_logprobs([Q], ["A", "B"])
    mixed = embedded_backend.complete([
        steerkit.plugin.Request(Q, greedy, adapter=one), steerkit.plugin.Request(Q, greedy),
        steerkit.plugin.Request(Q, greedy, adapter=two), steerkit.plugin.Request(Q, greedy, adapter=one),
    ])
    assert all(c.ok for c in mixed)
    assert mixed[1].text == base_alone  # the base model is untouched by loaded adapters
    assert mixed[0].text == mixed[3].text  # the same adapter, the same greedy answer
    assert len({mixed[0].text, mixed[1].text, mixed[2].text}) == 3  # each adapter changes the output
    alone = embedded_backend.complete([steerkit.plugin.Request(Q, greedy, adapter=two)])[0]
    assert alone.text == mixed[2].text
    fp_one = embedded_backend.adapter_fingerprint(one)
    assert fp_one.startswith("lora:") and fp_one != embedded_backend.adapter_fingerprint(two)
    assert embedded_backend.adapter_fingerprint(None) == ""
    # after adapter requests, everything else still sees the base model (shared session backend)
    assert embedded_backend.complete([steerkit.plugin.Request(Q, greedy)])[0].text == base_alone
    assert np.array_equal(embedded_backend.option_logprobs([Q], ["A", "B"]), base_logprobs)


def test_bad_adapters_fail_before_anything_loads(tmp_path):
    from steerkit_adapters.transformers_backend import TransformersBackend

    backend = TransformersBackend()
    with pytest.raises(steerkit.ModelNotFoundError, match="does not exist"):
        backend.complete([steerkit.plugin.Request(Q, adapter=str(tmp_path / "missing"))])
    (tmp_path / "nocfg").mkdir()
    with pytest.raises(steerkit.ModelNotFoundError, match="adapter_config.json"):
        backend.complete([steerkit.plugin.Request(Q, adapter=str(tmp_path / "nocfg"))])
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text("{}")
    (pickled / "adapter_model.bin").write_bytes(b"\x80")
    with pytest.raises(steerkit.ModelNotFoundError, match="pickles"):
        backend.complete([steerkit.plugin.Request(Q, adapter=str(pickled))])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "adapter_config.json").write_text("{}")
    (foreign / "adapter_model.safetensors").write_bytes(b"")
    (foreign / "steerkit_manifest.json").write_text(json.dumps({"base_fingerprint": "transformers:other:0"}))
    with pytest.raises(steerkit.ModelNotFoundError, match="another base model"):
        backend.complete([steerkit.plugin.Request(Q, adapter=str(foreign))])
    assert not backend.loaded
