"""The score cache: SQLite in WAL mode, one row per (model, strategy, scenario, response,
attribute, sample). Every result is committed as it arrives, so an interrupted run loses
nothing and several processes can share one file.

Opening never takes the write lock (a reader does not wait behind a writer, and a cache in a
read-only file or folder opens for reading); each process and thread gets its own connection,
so a fork (vLLM forks its workers) never shares one."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import warnings
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


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _plausible_size(header: bytes, size: int) -> bool:
    """Whether the file size fits the page size and page count in its 100-byte header.

    A truncated or overwritten file usually fails this; a mismatch only triggers the full
    check (a checkpoint in another process can briefly leave the sizes apart)."""
    if len(header) < 100:
        return False
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1) or size % page_size:
        return False
    pages = int.from_bytes(header[28:32], "big")
    valid = header[24:28] == header[92:96]  # the page count is valid only when these match
    return not (pages and valid and size < pages * page_size)


class ScoreCache:
    """A small key-value store over SQLite for model results."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.read_only = False
        self._wal_warned = False
        self._pid = os.getpid()
        self._conns: dict[int, sqlite3.Connection] = {}  # thread id -> this process's connection
        self._check_or_create()

    # -- connection ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """This thread's connection in this process (a forked child opens its own)."""
        if self._pid != os.getpid():
            # SQLite forbids using a connection across fork(), and closing the parent's would
            # release or break its locks: keep them referenced, untouched, and start afresh.
            _INHERITED.extend(self._conns.values())
            self._conns, self._pid = {}, os.getpid()
        conn = self._conns.get(threading.get_ident())
        if conn is None:
            conn = self._reader() if self.read_only else self._writer()
            self._conns[threading.get_ident()] = conn
        return conn

    def _writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        # On a database already in WAL mode this takes no lock; it switches a new file to WAL.
        try:
            mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:  # another process holds a rollback-journal lock
            mode = f"unchanged ({exc})"
        if mode == "wal":
            conn.execute("PRAGMA synchronous=NORMAL")  # safe in WAL mode only
        elif not self._wal_warned:
            self._wal_warned = True
            warnings.warn(f"the score cache {self.path}: SQLite could not switch it to WAL mode (journal mode: {mode}); "
                          "this happens on network filesystems (NFS, SMB) and some container mounts. steerkit goes on "
                          "in that mode, but readers and writers now wait for each other and sharing the file between "
                          "machines can corrupt it: put the cache on a local disk (Steerer(cache=...), --cache or "
                          f"${CACHE_ENV}).", RuntimeWarning, stacklevel=4)
        return conn

    def _reader(self) -> sqlite3.Connection:
        """A read-only connection. A WAL file in a folder we cannot write needs SQLite's
        ``immutable`` mode (it cannot create the shared-memory file readers use)."""
        uri = self.path.resolve().as_uri()
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if _writable(self.path):
                raise
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)

    def _check_or_create(self) -> None:
        """Open an existing steerkit cache or create a new one; refuse anything else untouched.

        An existing file is checked read-only first (header, tables, schema; every page only
        when its size does not fit its header), so a damaged file or someone else's database is
        reported and never modified, not even switched to WAL. Only a new (or empty) file takes
        the write lock, to create the tables."""
        if self.path.is_dir():
            raise self._error("is a directory", fix=f"pass a file path such as {self.path / 'scores.sqlite3'}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            size, header = (self.path.stat().st_size if self.path.exists() else 0), b""
            if size:
                with open(self.path, "rb") as fh:
                    header = fh.read(100)
        except OSError as exc:
            raise self._error("cannot be opened or created", exc) from exc
        tables: set[str] = set()
        if size:
            if header[:16] != _SQLITE_MAGIC:
                raise self._error("is not a SQLite database (it may be corrupt or another file)")
            tables = self._inspect(full=not _plausible_size(header, size))
        if not _writable(self.path):
            if not tables:
                raise self._error("cannot be opened or created", PermissionError(f"{self.path.parent} or the file is not writable"))
            self.read_only = True
            warnings.warn(f"the score cache {self.path} is read-only (the file or its folder is not writable): stored "
                          f"scores are used, new ones are not saved. Pass a writable cache path to keep them "
                          f"(Steerer(cache=...), --cache or ${CACHE_ENV}).", RuntimeWarning, stacklevel=3)
            return
        try:
            conn = self._connect()
            if not tables:
                conn.execute("BEGIN IMMEDIATE")  # one creator at a time; the others see the result
                try:
                    if not _tables(conn):
                        conn.execute(_RESULTS_SCHEMA)
                        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
                        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    self._check_schema(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
        except (sqlite3.DatabaseError, CacheError) as exc:
            self.close()
            raise exc if isinstance(exc, CacheError) else self._error("cannot be opened for writing", exc) from exc

    def _inspect(self, full: bool = False) -> set[str]:
        """Read-only checks: the tables and the schema (cheap, every open) and, when ``full``,
        SQLite's ``quick_check`` of every page (seconds on a big cache). Returns the tables
        found (none: an empty database the caller may set up)."""
        try:
            conn = self._reader()
            try:
                if full:
                    problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
                    if problems != ["ok"]:
                        raise self._error(f"is damaged (SQLite integrity check: {'; '.join(problems)[:300]})")
                tables = _tables(conn)
                if tables:
                    self._check_schema(conn)
                return tables
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise self._error("cannot be read", exc) from exc

    def verify(self) -> None:
        """Full read-only integrity check of every page (slow on big files); CacheError if damaged."""
        self._inspect(full=True)

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        tables = _tables(conn)
        if not {"meta", "results"} <= tables:
            raise self._error(f"is a SQLite database but not a steerkit cache (tables: {', '.join(sorted(tables))})")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None or str(row[0]) != str(SCHEMA_VERSION):
            raise self._error(f"has cache schema {row[0] if row else 'none'}, this steerkit uses {SCHEMA_VERSION} "
                              "(or it is not a steerkit cache)")
        columns = [r[1] for r in conn.execute("PRAGMA table_info(results)")]
        if columns != list(_RESULT_COLUMNS):
            raise self._error(f"has a results table with columns {columns}, not steerkit's")

    def _error(self, what: str, exc: BaseException | None = None, fix: str = "") -> CacheError:
        """Every cache failure as one CacheError: the file, what failed and why, and the fix."""
        if fix:
            pass
        elif isinstance(exc, (OSError, sqlite3.OperationalError, sqlite3.IntegrityError)):
            fix = ("check that its folder exists, is a folder and is writable" if isinstance(exc, OSError) else
                   "check free disk space and that the file and its folder are writable (a lock held for more "
                   "than 30 s by another process also ends here: rerun to resume)")
        else:  # the file's content: damaged, foreign or another schema
            fix = "steerkit leaves the file as it is: move or delete it (ScoreCache(path).verify() runs a full check)"
            what += " (the file is damaged or not a steerkit cache)" if exc is not None else ""
        cause = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
        return CacheError(f"the score cache {self.path} {what}{cause}; {fix}, or pass another cache path "
                          f"(Steerer(cache=...), --cache or ${CACHE_ENV}).")

    def close(self) -> None:
        """Close this process's connections (a later call reopens)."""
        conns, self._conns = self._conns, {}
        if self._pid != os.getpid():
            _INHERITED.extend(conns.values())  # a forked child never closes its parent's
            self._pid = os.getpid()
            return
        for conn in conns.values():
            conn.close()

    # -- access -------------------------------------------------------------------------
    def get_many(self, keys: Sequence[CacheKey]) -> dict[CacheKey, CacheRecord]:
        """Records for the keys that are stored (missing keys are absent from the result)."""
        found: dict[CacheKey, CacheRecord] = {}
        groups: dict[tuple[str, str], set[CacheKey]] = {}  # one query per model/strategy slice
        for k in keys:
            groups.setdefault((k.model, k.strategy), set()).add(k)
        try:
            for (model, strategy), wanted in groups.items():
                scenarios = sorted({k.scenario for k in wanted})
                for start in range(0, len(scenarios), 500):
                    chunk = scenarios[start : start + 500]
                    rows = self._connect().execute(
                        f"SELECT scenario, response, attribute, sample, score, reasoning, payload FROM results "
                        f"WHERE model=? AND strategy=? AND scenario IN ({','.join('?' * len(chunk))})",
                        (model, strategy, *chunk),
                    )
                    for scenario, response, attribute, sample, score, reasoning, payload in rows:
                        key = CacheKey(model, strategy, scenario, response, attribute, sample)
                        if key in wanted:
                            found[key] = CacheRecord(score, reasoning, json.loads(payload))
        except sqlite3.Error as exc:
            raise self._error("reading failed", exc) from exc
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
        if not rows or self.read_only:  # read-only: warned at open, scores are not saved
            return
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO results (model, strategy, scenario, response, attribute, "
                    "sample, score, reasoning, payload) VALUES (?,?,?,?,?,?,?,?,?)",
                    rows,
                )
                conn.execute("COMMIT")  # inside the guard: a failed commit must roll back too
            except BaseException:
                if not _rollback(conn):  # unusable: drop it, so the next write starts clean
                    self._conns = {t: c for t, c in self._conns.items() if c is not conn}
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
                raise
        except sqlite3.Error as exc:
            raise self._error("writing failed", exc) from exc

    def put(self, key: CacheKey, record: CacheRecord) -> None:
        self.put_many([(key, record)])

    def __len__(self) -> int:
        try:
            return self._connect().execute("SELECT COUNT(*) FROM results").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._error("counting rows failed", exc) from exc

    def clear(self, model: str | None = None, strategy: str | None = None) -> int:
        where = {c: v for c, v in (("model", model), ("strategy", strategy)) if v}
        sql = "DELETE FROM results" + (" WHERE " + " AND ".join(f"{c}=?" for c in where) if where else "")
        if self.read_only:
            raise self._error("is read-only", fix="clearing it needs a writable file and folder")
        try:
            return self._connect().execute(sql, list(where.values())).rowcount
        except sqlite3.Error as exc:
            raise self._error("clearing failed", exc) from exc


_INHERITED: list[sqlite3.Connection] = []  # a forked child's copies of its parent's connections


def _writable(path: Path) -> bool:
    """Whether SQLite can write here: the file (if any) and its folder (WAL and journal files)."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _rollback(conn: sqlite3.Connection) -> bool:
    """Roll back an open transaction; False if that failed too (the connection is unusable)."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return True
    except sqlite3.Error:
        return False
