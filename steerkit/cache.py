"""The score cache: SQLite in WAL mode, one row per (model, strategy, scenario, response,
attribute, sample). Every result is committed as it arrives, so an interrupted run loses
nothing and several processes can share one file."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from .errors import CacheError

SCHEMA_VERSION = 1
CACHE_ENV = "STEERKIT_CACHE"


def default_cache_dir() -> Path:
    """Where steerkit keeps its cache (scores, converted models, embedding indexes)."""
    return Path(os.environ.get("STEERKIT_CACHE_DIR") or platformdirs.user_cache_dir("steerkit"))


def default_cache_path() -> Path:
    return Path(os.environ.get(CACHE_ENV) or default_cache_dir() / "scores.sqlite3")


@dataclass(frozen=True)
class CacheKey:
    model: str  # backend + model fingerprint
    strategy: str  # strategy name + prompt version + options that change output
    scenario: str  # Scenario.key
    response: str  # hash of the response text ("" for scenario-level results)
    attribute: str  # attribute name + definition hash, or the perspective
    sample: int = 0


@dataclass
class CacheRecord:
    score: float | None = None
    reasoning: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


_COLUMNS = ("model", "strategy", "scenario", "response", "attribute", "sample")
_RESULT_COLUMNS = _COLUMNS + ("score", "reasoning", "payload", "created")
_RESULTS_SCHEMA = """CREATE TABLE results (
    model TEXT NOT NULL, strategy TEXT NOT NULL, scenario TEXT NOT NULL,
    response TEXT NOT NULL, attribute TEXT NOT NULL, sample INTEGER NOT NULL,
    score REAL, reasoning TEXT NOT NULL DEFAULT '', payload TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL DEFAULT (julianday('now')),
    PRIMARY KEY (model, strategy, scenario, response, attribute, sample)
) WITHOUT ROWID"""


class ScoreCache:
    """A small key-value store over SQLite for model results."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self._local = threading.local()
        self._check_or_create()

    # -- connection ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _check_or_create(self) -> None:
        """Open an existing steerkit cache or create a new one; refuse anything else untouched.

        The file is inspected read-only first (header, integrity, tables), so a corrupt file or
        someone else's database is reported and never modified, not even switched to WAL."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as fh:
                header = fh.read(16)
            if header != b"SQLite format 3\x00":
                raise self._refuse("is not a SQLite database (it may be corrupt or another file)")
            self._inspect_existing()
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")  # one creator at a time; the others see the result
            try:
                tables = self._tables(conn)
                if not tables:
                    conn.execute(_RESULTS_SCHEMA)
                    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
                    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if tables:
                self._check_schema(conn, tables)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise self._refuse(f"cannot be opened ({exc})") from exc
        except CacheError:
            self.close()
            raise

    def _inspect_existing(self) -> None:
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
            try:
                problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
                if problems != ["ok"]:
                    raise self._refuse(f"is damaged (SQLite integrity check: {'; '.join(problems)[:300]})")
                tables = self._tables(conn)
                if tables:
                    self._check_schema(conn, tables)
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise self._refuse(f"cannot be read ({exc})") from exc

    @staticmethod
    def _tables(conn: sqlite3.Connection) -> set[str]:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _check_schema(self, conn: sqlite3.Connection, tables: set[str]) -> None:
        if "meta" not in tables or "results" not in tables:
            raise self._refuse(f"is a SQLite database but not a steerkit cache (tables: {', '.join(sorted(tables))})")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            raise self._refuse("is a SQLite database but not a steerkit cache (no schema version)")
        if str(row[0]) != str(SCHEMA_VERSION):
            raise self._refuse(f"has cache schema {row[0]}, this steerkit uses {SCHEMA_VERSION}")
        columns = [r[1] for r in conn.execute("PRAGMA table_info(results)")]
        if columns != list(_RESULT_COLUMNS):
            raise self._refuse(f"has a results table with columns {columns}, not steerkit's")

    def _refuse(self, problem: str) -> CacheError:
        return CacheError(
            f"the score cache {self.path} {problem}. steerkit leaves the file as it is: move or "
            f"delete it, or pass another cache path (Steerer(cache=...), --cache or ${CACHE_ENV})."
        )

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- access -------------------------------------------------------------------------
    def get_many(self, keys: Sequence[CacheKey]) -> dict[CacheKey, CacheRecord]:
        """Records for the keys that are stored (missing keys are absent from the result)."""
        if not keys:
            return {}
        conn = self._connect()
        found: dict[CacheKey, CacheRecord] = {}
        # Group by the leading columns so one query fetches a whole strategy/model slice.
        groups: dict[tuple[str, str], list[CacheKey]] = {}
        for k in keys:
            groups.setdefault((k.model, k.strategy), []).append(k)
        for (model, strategy), group in groups.items():
            wanted = set(group)
            scenarios = sorted({k.scenario for k in group})
            for start in range(0, len(scenarios), 500):
                chunk = scenarios[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT scenario, response, attribute, sample, score, reasoning, payload "
                    f"FROM results WHERE model=? AND strategy=? AND scenario IN ({marks})",
                    (model, strategy, *chunk),
                )
                for scenario, response, attribute, sample, score, reasoning, payload in rows:
                    key = CacheKey(model, strategy, scenario, response, attribute, sample)
                    if key in wanted:
                        found[key] = CacheRecord(score, reasoning, json.loads(payload))
        return found

    def get(self, key: CacheKey) -> CacheRecord | None:
        return self.get_many([key]).get(key)

    def put_many(self, items: Iterable[tuple[CacheKey, CacheRecord]]) -> None:
        """Store records in one transaction (committed before this returns)."""
        rows = [
            (k.model, k.strategy, k.scenario, k.response, k.attribute, k.sample,
             r.score, r.reasoning, json.dumps(r.payload))
            for k, r in items
        ]
        if not rows:
            return
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO results (model, strategy, scenario, response, attribute, "
                "sample, score, reasoning, payload) VALUES (?,?,?,?,?,?,?,?,?)",
                rows,
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def put(self, key: CacheKey, record: CacheRecord) -> None:
        self.put_many([(key, record)])

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def clear(self, model: str | None = None, strategy: str | None = None) -> int:
        conn = self._connect()
        where, args = [], []
        if model:
            where.append("model=?"); args.append(model)
        if strategy:
            where.append("strategy=?"); args.append(strategy)
        sql = "DELETE FROM results" + (" WHERE " + " AND ".join(where) if where else "")
        return conn.execute(sql, args).rowcount
