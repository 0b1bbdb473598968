"""The eager llguidance processor (steerkit_adapters.grammar) masks exactly what llguidance's own
kernel masks, so constrained generation gives the same tokens without torch.compile."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from steerkit.plugin import Constraint

SCHEMA = {"type": "object", "properties": {"reasoning": {"type": "string", "maxLength": 60},
                                           "score": {"type": "integer", "minimum": 0, "maximum": 10}},
          "required": ["reasoning", "score"], "additionalProperties": False}


@pytest.mark.parametrize("vocab", [64 * 32, 64 * 32 - 7, 64 * 32 + 40])
def test_eager_mask_equals_llguidances_numpy_kernel(vocab):
    import llguidance.numpy

    from steerkit_adapters.grammar import EagerLLGuidanceProcessor

    rng = np.random.default_rng(vocab)
    words = rng.integers(-2**31, 2**31, size=(3, 64), dtype=np.int64).astype(np.int32)
    words[1] = 0  # a row that allows nothing
    words[2, :3] = -1  # and words with every bit set
    logits = torch.from_numpy(rng.normal(size=(3, vocab)).astype(np.float32))
    expected = logits.numpy().copy()
    llguidance.numpy.apply_token_bitmask_inplace(expected, words)

    proc = EagerLLGuidanceProcessor.__new__(EagerLLGuidanceProcessor)
    proc.ll_matchers, proc.bitmask = [], words  # no matcher: the words stay as given
    got = proc._bias_eagerly(None, logits.clone())
    np.testing.assert_array_equal(got.numpy(), expected)
    assert np.isinf(got.numpy()[1]).all() and np.isfinite(got.numpy()[2, :96]).all()


def _generate(backend, prompts, processor, max_new_tokens=40):
    from transformers import LogitsProcessorList

    tok, model = backend.tokenizer, backend.hf_model
    enc = tok([backend.render(p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    processor.reset()
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                             top_k=None, pad_token_id=tok.pad_token_id, logits_processor=LogitsProcessorList([processor]))
    return [tok.decode(row[enc["input_ids"].shape[1]:], skip_special_tokens=True) for row in out]


@pytest.mark.parametrize("constraint", [
    Constraint.json_schema(SCHEMA),
    Constraint.regex(r"(yes|no|maybe), because [a-z ]{3,30}\."),
    Constraint.choice(["Option A", "Option B", "Neither"]),
], ids=["json", "regex", "choice"])
def test_eager_processor_generates_what_outlines_torch_processor_generates(embedded_backend, constraint):
    from steerkit_adapters.grammar import EagerLLGuidanceProcessor

    outlines_proc = embedded_backend._processor(constraint)
    if isinstance(outlines_proc, EagerLLGuidanceProcessor):  # the backend's own: rebuild outlines' for comparison
        from outlines.backends.llguidance import LLGuidanceLogitsProcessor

        outlines_proc = LLGuidanceLogitsProcessor(outlines_proc.grammar, outlines_proc.llg_tokenizer, "torch")
    prompts = [[{"role": "user", "content": q}] for q in (
        "Rate how helpful it is to answer 'use a map' to 'how do I get to the station?'. Reply in JSON.",
        "Is the sky green? Answer briefly.",
        "Which option would you pick, and why?",
    )]
    plain = _generate(embedded_backend, prompts, outlines_proc)
    eager = _generate(embedded_backend, prompts, EagerLLGuidanceProcessor.like(outlines_proc))
    assert eager == plain
    for text in eager:
        if constraint.kind == "json":
            assert set(json.loads(text)) == {"reasoning", "score"}
        else:
            pattern = constraint.value if constraint.kind == "regex" else "|".join(map(re.escape, constraint.value))
            assert re.fullmatch(pattern, text), text


def test_a_constrained_call_needs_no_compiler(tmp_path):
    """A fresh process answers a JSON-constrained request without importing llguidance's
    torch.compile'd kernel (it costs seconds per process) and returns valid JSON."""
    code = f"""
import json, sys
import steerkit
from steerkit.plugin import Constraint, Request, Sampling
b = steerkit.plugin.lookup("backend", "transformers")()
done = b.complete([Request([{{"role": "user", "content": "Score this answer in JSON."}}], Sampling(max_tokens=40),
                           Constraint.json_schema(json.loads({json.dumps(json.dumps(SCHEMA))})))])
print(json.dumps({{"text": done[0].text, "compiled": "llguidance.torch" in sys.modules}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["compiled"] is False
    assert set(json.loads(result["text"])) == {"reasoning", "score"}
