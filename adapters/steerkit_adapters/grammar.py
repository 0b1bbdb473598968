"""outlines' llguidance logits processor, with the token mask applied eagerly to the whole batch.

outlines' torch path applies llguidance's token bitmask row by row through a kernel wrapped in
``torch.compile``: the first constrained call of every process imports ``torch._dynamo`` and
compiles that kernel (~4.6 s together on 2 Xeon cores, issue 13), while the mask itself costs
~3 ms a step. Unpacking the same bits with numpy gives the same mask, so the same tokens, with
no compiler. The grammar, the matchers and the step logic stay outlines' and llguidance's."""

from __future__ import annotations

from typing import Any

import numpy as np
from outlines.backends.llguidance import LLGuidanceLogitsProcessor


class EagerLLGuidanceProcessor(LLGuidanceLogitsProcessor):
    """``LLGuidanceLogitsProcessor`` for torch logits whose mask step needs no compiler."""

    @classmethod
    def like(cls, processor: LLGuidanceLogitsProcessor) -> "EagerLLGuidanceProcessor":
        """The same grammar and tokenizer as an outlines processor (built by its backend)."""
        return cls(processor.grammar, processor.llg_tokenizer, processor.tensor_library_name)

    def _setup(self, batch_size: int) -> None:
        import llguidance.numpy
        from llguidance import LLMatcher

        self.ll_matchers = [LLMatcher(self.llg_tokenizer, self.grammar) for _ in range(batch_size)]
        self.bitmask = llguidance.numpy.allocate_token_bitmask(batch_size, self.llg_tokenizer.vocab_size)
        self._bias_logits = self._bias_eagerly

    def _bias_eagerly(self, input_ids: Any, logits: Any) -> Any:
        """Set to -inf every token a row's grammar forbids (bit j of word w is token 32w + j)."""
        import llguidance.numpy
        import torch

        for i, matcher in enumerate(self.ll_matchers):
            llguidance.numpy.fill_next_token_bitmask(matcher, self.bitmask, i)
        words = np.ascontiguousarray(self.bitmask, dtype="<i4")  # little-endian bytes, whatever the CPU
        allowed = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little").astype(bool)
        vocab = logits.shape[1]
        if vocab > allowed.shape[1]:  # logits past the tokenizer's vocabulary (padding rows): never allowed
            allowed = np.pad(allowed, ((0, 0), (0, vocab - allowed.shape[1])))
        logits.masked_fill_(torch.from_numpy(~allowed[:, :vocab]).to(logits.device), float("-inf"))
        return logits
