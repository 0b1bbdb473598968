"""Validation of a freshly trained model on the held-out split, in memory, prompted exactly as
it was trained: "answer" models get the letter read off the next-token distribution over the
option letters; "cot" models reason greedily first, then the same letter scoring after
"\\nAnswer:" (the ``cot`` strategy's two steps). Scores use the papers' metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import cot, metrics, train_prompts
from .train_data import Example


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    prefill = messages[-1]["role"] == "assistant"
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not prefill,
                                         continue_final_message=prefill)


def _letter_ids(tokenizer: Any, letter: str) -> list[int]:
    return sorted({tokenizer.encode(v, add_special_tokens=False)[0] for v in (letter, " " + letter)})


def predict(model: Any, tokenizer: Any, items: Sequence[Example], style: str, task: str,
            max_tokens: int = 256, batch_size: int = 8) -> list[int]:
    """Predicted option index per item."""
    import torch

    pad_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    preds: list[int] = []
    try:
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                batch = list(items[start:start + batch_size])
                messages = [train_prompts.train_prompt(style, e.scenario, e.perspective, task) for e in batch]
                letter_sets = [cot.letters_for(len(e.scenario.responses)) for e in batch]
                if style == "cot":
                    enc = tokenizer([_render(tokenizer, m) for m in messages], return_tensors="pt", padding=True,
                                    add_special_tokens=False).to(model.device)
                    out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False, temperature=None,
                                         top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)
                    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                    messages = [[*m, {"role": "assistant", "content": cot.split_free_text(t, ls)[0] + "\nAnswer:"}]
                                for m, t, ls in zip(messages, texts, letter_sets)]
                enc = tokenizer([_render(tokenizer, m) for m in messages], return_tensors="pt", padding=True,
                                add_special_tokens=False).to(model.device)
                logp = torch.log_softmax(model(**enc).logits[:, -1, :].float(), dim=-1)
                for row, letters in zip(logp, letter_sets):
                    scores = [torch.logsumexp(row[_letter_ids(tokenizer, l)], dim=-1).item() for l in letters]
                    preds.append(max(range(len(letters)), key=scores.__getitem__))
    finally:
        tokenizer.padding_side = pad_side
        model.train(was_training)
    return preds


def score(items: Sequence[Example], preds: Sequence[int], task: str) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1 (and VK's binary variant) of the predictions."""
    gold = [e.gold for e in items]
    out = metrics.choice_metrics(gold, preds)
    if task == "vk":
        out["binary"] = metrics.vk_binary_metrics(gold, preds)
    out["predicted"] = {cot.LETTERS[i]: preds.count(i) for i in sorted(set(preds))}
    return out
