"""The transformers backend's dtype: bfloat16 on CPUs with native bf16, float32 elsewhere,
overridable, part of the fingerprint (issue 13)."""

import numpy as np
import pytest

import steerkit
from steerkit.plugin import lookup
from steerkit_adapters import transformers_backend as tb

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw\nmodel name\t: AMD EPYC\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
AMX = "processor\t: 0\nflags\t\t: fpu avx2 amx_tile amx_bf16 amx_int8\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert tb.cpu_has_native_bf16(AMX) and tb.cpu_has_native_bf16(AVX512_BF16)
    assert not tb.cpu_has_native_bf16(AVX2_ONLY)
    assert not tb.cpu_has_native_bf16("processor\t: 0\nmodel name\t: no flags line\n")
    assert not tb.cpu_has_native_bf16("flags\t: fpu avx512_bf16x\n")  # whole flags only


def test_auto_picks_bf16_only_on_a_cpu_that_has_it(monkeypatch):
    monkeypatch.setattr(tb, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    assert tb.resolve_dtype(None, "cpu") == tb.resolve_dtype("auto", "cpu") == "bfloat16"
    assert tb.resolve_dtype(None, "cuda") == "float32"
    assert tb.resolve_dtype("float32", "cpu") == "float32"  # an explicit choice stands
    monkeypatch.setattr(tb, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    assert tb.resolve_dtype(None, "cpu") == "float32"
    assert tb.resolve_dtype("bfloat16", "cpu") == "bfloat16"
    backend = lookup("backend", "transformers")()
    assert backend.dtype == "float32" and not backend.loaded


def test_dtype_is_in_the_fingerprint_and_a_bad_one_fails_before_loading(monkeypatch):
    make = lookup("backend", "transformers")
    f32, bf16 = make(dtype="float32"), make(dtype="bfloat16")
    assert f32.fingerprint() != bf16.fingerprint()
    auto = make()
    assert auto.fingerprint() == make(dtype=auto.dtype).fingerprint()
    with pytest.raises(steerkit.InvalidOptionError, match="float32, bfloat16, float16 or 'auto'"):
        make(dtype="fp32")
    # the Steerer's backend_options reach the backend: the override a user has
    s = steerkit.Steerer("zero-shot-comparative", backend="transformers", cache=False, progress=False,
                         backend_options={"dtype": "float32"})
    assert s.backend.dtype == "float32" and not s.backend.loaded


def test_the_loaded_weights_have_the_chosen_dtype(embedded_backend):
    import torch

    assert embedded_backend.dtype == tb.resolve_dtype(None, "cpu")
    assert {p.dtype for p in embedded_backend.hf_model.parameters()} == {getattr(torch, embedded_backend.dtype)}


def test_bf16_and_fp32_agree_on_the_embedded_model():
    """Same greedy answer and nearly the same option log-probabilities in both dtypes (the
    comparative-regression agreement on 20 HelpSteer2 scenarios is benchmarks/bench_dtype.py)."""
    make = lookup("backend", "transformers")
    prompts = [[{"role": "user", "content": q}] for q in (
        "Is the sky blue on a clear day? Answer Yes or No.",
        "Is fire cold? Answer Yes or No.",
        "Is two plus two four? Answer Yes or No.",
    )]
    lp, texts = {}, {}
    for dtype in ("float32", "bfloat16"):
        backend = make(dtype=dtype)
        lp[dtype] = backend.option_logprobs(prompts, ["Yes", "No"])
        texts[dtype] = backend.generate(prompts[:1], steerkit.plugin.Sampling(max_tokens=6))
        backend.close()
    assert np.isfinite(lp["bfloat16"]).all()
    assert (lp["float32"].argmax(1) == lp["bfloat16"].argmax(1)).all()
    assert np.abs(lp["float32"] - lp["bfloat16"]).max() < 0.5
    assert texts["float32"] == texts["bfloat16"] and texts["float32"][0].strip()
