"""Which token ids stand for an option when scoring options by next-token log-probability.

One rule for every adapter (transformers, vllm, openai), so the same model gives the same
distribution whichever engine runs it: an option is read from its first *content* token, with
and without a leading space. SentencePiece vocabularies may encode " A" as ["▁", "A"]; that
bare "▁" starts every option and says nothing about which one follows, so it is skipped. Two
options that still share a first token would get the same number: that is an error, never a tie.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import steerkit


def first_content_token(ids: Sequence[int], pieces: Sequence[str]) -> int | None:
    """The first token id that is not a bare space ("▁" in SentencePiece, "Ġ" in byte-level
    BPE). Without token strings (``pieces`` empty) the first id is taken."""
    if not pieces:
        return int(ids[0]) if ids else None
    for i, piece in zip(ids, pieces):
        if str(piece).replace("\u2581", "").replace("\u0120", "").strip():
            return int(i)
    return None


def option_variants(option: str) -> list[str]:
    """The spellings an option may follow the prompt in: bare and after a space."""
    return [v for v in (option, " " + option) if v.strip()]


def option_token_ids(option: str, tokenize: Callable[[str], tuple[Sequence[int], Sequence[str]]]) -> list[int]:
    """Sorted first content token ids of ``option``'s variants; ``tokenize(text)`` gives a
    text's (ids, token strings) without special tokens."""
    found = set()
    for variant in option_variants(option):
        first = first_content_token(*tokenize(variant))
        if first is not None:
            found.add(first)
    return sorted(found)


def hf_tokenize(tokenizer) -> Callable[[str], tuple[list[int], list[str]]]:
    """``tokenize`` for a Hugging Face tokenizer (transformers' or the one vLLM loads)."""

    def tokenize(text: str) -> tuple[list[int], list[str]]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        return ids, tokenizer.convert_ids_to_tokens(ids)

    return tokenize


def check_option_tokens(options: Sequence[str], variants: Sequence[Sequence[int]], limit: int | None = None) -> list[int]:
    """Each option needs a token and no two options may share one (their probabilities would
    be the same number). Returns the sorted token ids to read; ``limit`` is the engine's bound
    on how many it can return (vLLM: 128)."""
    owner: dict[int, str] = {}
    for option, ids in zip(options, variants):
        if not ids:
            raise steerkit.InvalidOptionError(f"option {option!r} has no token to score; use non-empty options")
        for i in ids:
            if owner.get(i, option) != option:
                raise steerkit.InvalidOptionError(
                    f"options {owner[i]!r} and {option!r} start with the same token (id {i}); option "
                    "log-probabilities read the first token only, so options must differ in their first "
                    "token (e.g. score the letters A, B, C instead of the option texts)"
                )
            owner[i] = option
    wanted = sorted(owner)
    if limit is not None and len(wanted) > limit:
        raise steerkit.InvalidOptionError(
            f"{len(options)} options need {len(wanted)} token ids; this engine scores at most {limit}"
        )
    return wanted
