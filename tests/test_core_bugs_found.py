"""Core bugs found while writing the host/types/cache tests. Each test states the expected
behaviour from issue 2 (item 10: clear typed errors; corrupt cache: clear message, nothing
overwritten silently). They fail until the core is fixed; then they belong in the main suites."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

import steerkit
from steerkit import CacheError, CacheKey, CacheRecord, ScoreCache


# -- steerkit/types.py, AttributeTarget.__post_init__ (weights loop) ----------------------

def test_non_numeric_weight_is_an_invalid_target_error():
    # `fw = float(w)` is not guarded: a bare ValueError escapes the SteerkitError hierarchy
    with pytest.raises(steerkit.InvalidTargetError, match="'care'"):
        steerkit.AttributeTarget({"care": 0.5}, {"care": "high"})


def test_weights_that_are_not_a_mapping_are_an_invalid_target_error():
    # `self.weights.items()` on a list raises AttributeError
    with pytest.raises(steerkit.InvalidTargetError):
        steerkit.AttributeTarget({"care": 0.5}, [1.0])


# -- steerkit/cache.py, ScoreCache._check_or_create -----------------------------------------

def _damaged_cache(tmp_path):
    """A real cache whose page 3 (a b-tree page) is overwritten: the header is fine, the
    connection opens, and `PRAGMA quick_check` *returns* an error report instead of raising."""
    path = tmp_path / "scores.sqlite3"
    cache = ScoreCache(path)
    cache.put_many((CacheKey("m", "s", f"sc{i}", "r" * 30, "a" * 40), CacheRecord(0.5, "x" * 300)) for i in range(2000))
    cache.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    data[3 * page + 8 : 3 * page + 200] = b"\xff" * 192
    path.write_bytes(bytes(data))
    return path


def test_corruption_reported_by_quick_check_is_a_cache_error(tmp_path):
    # cache.py runs `conn.execute("PRAGMA quick_check").fetchone()` and ignores the row; a
    # damaged page gives a row like ("*** in database main *** On tree page ...",), not "ok",
    # so the cache opens and later reads fail with a raw sqlite3.DatabaseError (or wrong data).
    path = _damaged_cache(tmp_path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CacheError, match="move or delete it"):
        ScoreCache(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_foreign_sqlite_database_is_not_written_to(tmp_path):
    # Pointing the cache at someone else's SQLite file silently adds steerkit's tables to it.
    # Expected: a CacheError ("not a steerkit cache"), the file left as it was.
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.execute("INSERT INTO customers VALUES ('ada')")
    conn.commit()
    conn.close()
    with pytest.raises(CacheError):
        ScoreCache(path)
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"customers"}


def test_a_results_table_with_another_schema_is_a_cache_error_at_open(tmp_path):
    # `CREATE TABLE IF NOT EXISTS results` skips an existing table of another shape; the first
    # put then fails with a raw sqlite3.OperationalError ("table results has no column named model").
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE results (x)")
    conn.commit()
    conn.close()
    with pytest.raises(CacheError):
        ScoreCache(path)


# -- steerkit/errors.py, UnknownPluginError.__init__ ----------------------------------------

def test_unknown_plugin_message_plural_is_english():
    # f"Known {kind}s" gives "Known strategys"
    err = steerkit.UnknownPluginError("strategy", "nope", ["random"])
    assert "Known strategies: random" in str(err)
