"""The score cache (issue 2, item 5): SQLite in WAL mode, every key field matters, each batch
is committed as it arrives, several processes share one file, an interrupted run resumes
without recomputing, and a corrupt file gives a clear CacheError and is never overwritten."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

import steerkit
from steerkit import CacheError
from steerkit.plugin import CacheKey, CacheRecord, ScoreCache
from tests.fakes import FakeBackend

KEY = CacheKey("fake:m", "strat@1:abc", "scen", "resp", "care", 0)


def test_wal_mode_is_on_and_persistent(cache_path):
    ScoreCache(cache_path).put(KEY, CacheRecord(0.5))
    conn = sqlite3.connect(cache_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"


def test_default_path_is_under_user_cache_dir_and_overridable(monkeypatch, tmp_path):
    monkeypatch.delenv("STEERKIT_CACHE", raising=False)
    monkeypatch.setenv("STEERKIT_CACHE_DIR", str(tmp_path / "dir"))
    assert steerkit.default_cache_path() == tmp_path / "dir" / "scores.sqlite3"
    monkeypatch.setenv("STEERKIT_CACHE", str(tmp_path / "x.sqlite3"))
    assert ScoreCache().path == tmp_path / "x.sqlite3"
    assert (tmp_path / "x.sqlite3").exists()


def test_round_trip_of_score_reasoning_and_payload(cache_path):
    cache = ScoreCache(cache_path)
    cache.put(KEY, CacheRecord(0.25, "because", {"raw": [1, 2]}))
    got = ScoreCache(cache_path).get(KEY)
    assert got == CacheRecord(0.25, "because", {"raw": [1, 2]})
    cache.put(KEY, CacheRecord(None, "no score"))  # scenario-level results may have no score
    assert ScoreCache(cache_path).get(KEY) == CacheRecord(None, "no score", {})


@pytest.mark.parametrize("field, other", [
    ("model", "fake:other"), ("strategy", "strat@2:abc"), ("scenario", "scen2"),
    ("response", "resp2"), ("attribute", "fairness"), ("sample", 1),
])
def test_every_key_field_matters(cache_path, field, other):
    cache = ScoreCache(cache_path)
    cache.put(KEY, CacheRecord(0.1, "first"))
    changed = replace(KEY, **{field: other})
    assert cache.get(changed) is None
    cache.put(changed, CacheRecord(0.9, "second"))
    assert cache.get(KEY).score == 0.1 and cache.get(changed).score == 0.9
    assert len(cache) == 2


def test_get_many_only_returns_stored_keys_across_groups(cache_path):
    cache = ScoreCache(cache_path)
    keys = [CacheKey(f"m{i % 2}", f"s{i % 3}", f"sc{i}", "r", "a") for i in range(1200)]
    cache.put_many((k, CacheRecord(i / 1200)) for i, k in enumerate(keys[::2]))
    found = cache.get_many(keys)
    assert set(found) == set(keys[::2])


def test_each_put_many_is_committed_before_it_returns(cache_path):
    cache = ScoreCache(cache_path)
    other = sqlite3.connect(cache_path)
    for n in range(1, 4):
        cache.put_many([(replace(KEY, sample=n * 10 + j), CacheRecord(0.5)) for j in range(5)])
        # a second connection and a second process see the rows while the writer is still open
        assert other.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 5 * n
    code = f"from steerkit import ScoreCache; print(len(ScoreCache({str(cache_path)!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "15"


def test_failed_put_many_rolls_back_and_cache_stays_usable(cache_path):
    cache = ScoreCache(cache_path)
    # The second row breaks a NOT NULL constraint inside the transaction, after the first row
    # was inserted: only a rollback keeps that first row out.
    rows = [(KEY, CacheRecord(0.1)), (replace(KEY, model=None, sample=1), CacheRecord(0.2))]
    with pytest.raises(CacheError, match="writing failed.*NOT NULL"):
        cache.put_many(rows)
    assert not cache._connect().in_transaction
    assert len(cache) == 0 and cache.get(KEY) is None
    cache.put(KEY, CacheRecord(0.3))
    assert ScoreCache(cache_path).get(KEY).score == 0.3


def test_a_failed_commit_rolls_back_and_releases_the_write_lock(cache_path):
    """COMMIT itself can fail (here a deferred foreign key, checked only at COMMIT; on a real
    disk: full, I/O error). The transaction must be rolled back: otherwise this connection keeps
    the write lock and every later write, in every process, fails."""
    cache = ScoreCache(cache_path)
    side = sqlite3.connect(cache_path, isolation_level=None)
    side.executescript("""
        CREATE TABLE parent (id INTEGER PRIMARY KEY);
        CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
        CREATE TRIGGER orphan AFTER INSERT ON results WHEN NEW.attribute = 'poison'
        BEGIN INSERT INTO child VALUES (42); END;
    """)
    cache._connect().execute("PRAGMA foreign_keys=ON")
    with pytest.raises(CacheError, match="writing failed.*FOREIGN KEY"):
        cache.put_many([(KEY, CacheRecord(0.1)), (replace(KEY, attribute="poison"), CacheRecord(0.2))])
    assert not cache._connect().in_transaction
    side.execute("PRAGMA busy_timeout=2000")
    side.execute("INSERT INTO parent VALUES (1)")  # another writer gets the lock
    cache.put(replace(KEY, sample=7), CacheRecord(0.7))  # and so does this connection
    assert len(cache) == 1 and cache.get(KEY) is None
    side.close()


def test_opening_takes_no_write_lock_and_never_waits_behind_a_writer(cache_path):
    ScoreCache(cache_path).put(KEY, CacheRecord(0.5))
    writer = sqlite3.connect(cache_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    writer.execute("UPDATE results SET score = 0.9")
    try:
        started = time.perf_counter()
        cache = ScoreCache(cache_path)
        assert cache.get(KEY).score == 0.5  # the last committed state, at once
        assert time.perf_counter() - started < 5  # not the 30 s busy timeout
        assert len(cache) == 1
    finally:
        writer.execute("COMMIT")
        writer.close()
    assert cache.get(KEY).score == 0.9


def test_a_refused_wal_mode_is_reported_and_the_cache_still_works(cache_path, monkeypatch):
    """Network filesystems refuse WAL (no shared memory); SQLite's unix-dotfile VFS refuses it
    the same way, for real: steerkit must notice the answer, warn, and keep working."""
    real_connect = sqlite3.connect

    def dotfile_connect(database, *args, uri=False, **kwargs):
        text = str(database)
        text = f"{text}&vfs=unix-dotfile" if uri else f"file:{text}?vfs=unix-dotfile"
        return real_connect(text, *args, uri=True, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", dotfile_connect)
    with pytest.warns(RuntimeWarning, match="could not switch it to WAL mode \\(journal mode: delete\\).*local disk"):
        cache = ScoreCache(cache_path)
    cache.put(KEY, CacheRecord(0.4))
    assert cache.get(KEY).score == 0.4
    cache.close()
    monkeypatch.undo()
    assert cache_path.read_bytes()[18] == 1  # still a rollback-journal file, as SQLite answered
    assert ScoreCache(cache_path).get(KEY).score == 0.4


def _shared_folder() -> Path:
    """A folder another user can reach (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="steerkit-ro-"))
    folder.chmod(0o755)
    return folder


def _drop_root() -> str:
    """Code that makes a subprocess 'nobody' after its imports when the tests run as root (root
    ignores file modes; the interpreter may live under root's private home, hence after)."""
    return (
        "import os, pwd\n"
        "if os.geteuid() == 0:\n"
        "    nobody = pwd.getpwnam('nobody')\n"
        "    os.setgroups([]); os.setgid(nobody.pw_gid); os.setuid(nobody.pw_uid)\n"
    )


def test_a_read_only_cache_opens_for_reading(tmp_path):
    folder = _shared_folder()
    try:
        path = folder / "scores.sqlite3"
        cache = ScoreCache(path)
        cache.put(KEY, CacheRecord(0.25, "kept"))
        cache.close()  # WAL checkpointed: no -wal or -shm file left, as on a copied cache
        assert sorted(p.name for p in folder.iterdir()) == ["scores.sqlite3"]
        path.chmod(0o444)
        folder.chmod(0o555)
        code = """
import warnings
import steerkit
from steerkit import CacheKey, CacheRecord, ScoreCache, CacheError
from tests.fakes import FakeBackend
steerkit.plugin.registry("strategy")  # plugins load before the interpreter's own folder may become unreadable
""" + _drop_root() + f"""
key = CacheKey{tuple(KEY.__dict__.values())!r}
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    cache = ScoreCache({str(path)!r})
assert cache.read_only and any("read-only" in str(w.message) for w in seen), seen
assert cache.get(key).reasoning == "kept" and len(cache) == 1
cache.put(key, CacheRecord(0.9))  # not saved, and no error
assert cache.get(key).score == 0.25
try:
    ScoreCache({str(folder / 'new.sqlite3')!r})
except CacheError as exc:
    assert "not writable" in str(exc), exc
else:
    raise AssertionError("a new cache in a read-only folder must be a CacheError")
# a run whose items partly fail does not claim the successes were saved
letter = lambda prompt, constraint: "Z" if "bad" in prompt[-1]["content"] else constraint.value[0]
s = steerkit.Steerer("unaligned", backend=FakeBackend(responder=letter), cache=cache, progress=False)
try:
    s.select_many([steerkit.Scenario("good q", ("a", "b")), steerkit.Scenario("bad q", ("a", "b"))], {{"care": 1.0}})
except steerkit.ModelOutputError as exc:
    assert "is read-only, so nothing new was saved" in str(exc), exc
else:
    raise AssertionError("the bad scenario must fail")
print("read-only-ok")
"""
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             cwd=str(Path(__file__).resolve().parent.parent))
        assert out.returncode == 0, out.stderr
        assert "read-only-ok" in out.stdout
        assert sorted(p.name for p in folder.iterdir()) == ["scores.sqlite3"]  # nothing written
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_a_forked_child_opens_its_own_connection(cache_path):
    """vLLM forks after the cache is open. SQLite forbids using a connection across fork(), so
    the child must open its own and leave the parent's alone; both then keep writing."""
    cache = ScoreCache(cache_path)
    cache.put(KEY, CacheRecord(0.5))
    parent_conn = cache._connect()
    pid = os.fork()
    if pid == 0:  # the child: any failure is its exit code
        code = 1
        try:
            inherited = cache._conns[threading.get_ident()]
            for i in range(50):
                cache.put(replace(KEY, sample=100 + i), CacheRecord(0.1))
            ok = cache._connect() is not inherited and cache.get(KEY).score == 0.5
            code = 0 if ok else 2
        finally:
            os._exit(code)
    for i in range(50):
        cache.put(replace(KEY, sample=200 + i), CacheRecord(0.2))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache._connect() is parent_conn  # the parent's connection lives on, still usable
    assert len(cache) == 101
    assert cache._connect().execute("PRAGMA integrity_check").fetchone()[0] == "ok"

def _writer(path: str, worker: int, n: int) -> None:
    cache = ScoreCache(path)
    for i in range(0, n, 5):
        cache.put_many(
            (CacheKey("m", "s", f"w{worker}-{j}", "r", "a"), CacheRecord(worker + j / 1000, f"w{worker}"))
            for j in range(i, i + 5)
        )
        # both workers also write the same shared keys: last write wins, nothing breaks
        cache.put(CacheKey("m", "s", "shared", "r", "a", i), CacheRecord(float(worker)))
    cache.close()


def test_two_processes_writing_one_file_lose_nothing(cache_path):
    ScoreCache(cache_path).close()
    ctx = mp.get_context("spawn")
    n = 200
    procs = [ctx.Process(target=_writer, args=(str(cache_path), w, n)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = ScoreCache(cache_path)
    for w in (1, 2):
        keys = [CacheKey("m", "s", f"w{w}-{j}", "r", "a") for j in range(n)]
        found = cache.get_many(keys)
        assert len(found) == n
        assert all(found[k].score == pytest.approx(w + j / 1000) for j, k in enumerate(keys))
    assert len(cache) == 2 * n + n // 5


# -- interrupted run -------------------------------------------------------------------------

class CountingStrategy(steerkit.plugin.AttributeStrategy):
    """One prompt per (scenario, attribute); the fake model answers with a fixed score.
    ``interrupt_at`` raises KeyboardInterrupt when that batch (1-based) starts."""

    name = "counting"

    def __init__(self, interrupt_at: int | None = None, **options):
        super().__init__(**options)
        self.interrupt_at = interrupt_at
        self.batches = 0

    def cache_options(self):
        return {}  # the interrupt switch must not change the cache key

    def score_jobs(self, run, jobs):
        self.batches += 1
        prompts = [[{"role": "user", "content": f"{j.attribute}: {j.scenario.question}"}] for j in jobs]
        outputs = run.generate(prompts)
        if self.batches == self.interrupt_at:
            raise KeyboardInterrupt  # after the model worked, before this batch is stored
        return [[steerkit.plugin.ResponseScore(0.1 * (r + 1), o) for r in j.responses] for j, o in zip(jobs, outputs)]


SCENARIOS = [steerkit.Scenario(f"question {i}?", (f"a{i}", f"b{i}", f"c{i}")) for i in range(5)]
ATTRS = ["care", "fairness"]  # 10 jobs, batch size 2 -> 5 batches


def test_interrupted_run_resumes_with_only_the_missing_work(cache_path):
    backend = FakeBackend()
    s = steerkit.Steerer(CountingStrategy(interrupt_at=3), backend=backend, cache=cache_path, batch_size=2, progress=False)
    with pytest.raises(KeyboardInterrupt):
        s.score(SCENARIOS, ATTRS)
    assert len(backend.prompts_seen) == 6  # 3 batches generated, the 3rd interrupted while parsing
    # the 3rd batch's prompts were answered before the interrupt: kept too (no model call for that)
    assert len(ScoreCache(cache_path)) == 3 * 2 * 3  # 3 batches x 2 jobs x 3 responses
    assert len(backend.prompts_seen) == 6

    backend2 = FakeBackend()
    s2 = steerkit.Steerer(CountingStrategy(), backend=backend2, cache=cache_path, batch_size=2, progress=False)
    table = s2.score(SCENARIOS, ATTRS)
    assert len(backend2.prompts_seen) == 10 - 6
    assert table.model_calls == 4
    assert table.cache_hits == 6 * 3 and table.cache_misses == 4 * 3
    assert table.complete
    asked = {p[0]["content"] for p in backend2.prompts_seen}
    assert len(asked) == 4  # no job computed twice

    backend3 = FakeBackend()
    s3 = steerkit.Steerer(CountingStrategy(), backend=backend3, cache=cache_path, batch_size=2, progress=False)
    again = s3.score(SCENARIOS, ATTRS)
    assert backend3.prompts_seen == [] and again.model_calls == 0 and again.cache_misses == 0
    assert (again.scores == table.scores).all()


@pytest.mark.parametrize("micro, fail_after, stored", [
    (1, 5, 5),  # long prompts run one at a time: every answered prompt is kept
    (3, 7, 6),  # micro-batches of 3: the 3rd (prompts 7-9) was in flight and is lost
    (None, 7, 0),  # a backend that takes the whole batch at once has nothing finished to keep
])
@pytest.mark.parametrize("failure", [KeyboardInterrupt(), RuntimeError("engine died")])
def test_an_interrupt_inside_a_batch_keeps_every_prompt_answered_before_it(cache_path, micro, fail_after, stored, failure):
    """One strategy batch of 10 prompts; the backend fails after ``fail_after`` prompts."""
    backend = FakeBackend(micro_batch_size=micro, fail_after=fail_after, failure=failure)
    s = steerkit.Steerer(CountingStrategy(), backend=backend, cache=cache_path, batch_size=10, progress=False)
    with pytest.raises(type(failure)):
        s.score(SCENARIOS, ATTRS)
    assert len(backend.prompts_seen) == stored
    assert len(ScoreCache(cache_path)) == stored * 3
    if stored:  # what was stored is the model's own answer (the replay served it, nothing else)
        conn = sqlite3.connect(cache_path)
        assert conn.execute("SELECT DISTINCT reasoning FROM results").fetchall() == [("fake reasoning. Answer: A",)]
        conn.close()
    answered = {p[0]["content"] for p in backend.prompts_seen}
    # the rerun asks only for what was not answered
    backend2 = FakeBackend(micro_batch_size=micro)
    table = steerkit.Steerer(CountingStrategy(), backend=backend2, cache=cache_path, batch_size=10,
                             progress=False).score(SCENARIOS, ATTRS)
    assert table.complete and table.model_calls == 10 - stored
    assert answered.isdisjoint(p[0]["content"] for p in backend2.prompts_seen)
    if micro:
        assert set(backend2.call_sizes) <= set(range(1, micro + 1))  # one micro-batch per backend call


class InterruptedBackend(steerkit.plugin.Backend):
    """The real embedded model, interrupted (as by Ctrl-C) when its ``calls``-th call starts."""

    name = "transformers"

    def __init__(self, inner, calls: int):
        super().__init__(inner.model)
        self.inner, self.calls = inner, calls

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def micro_batches(self, requests):
        return self.inner.micro_batches(requests)

    def complete(self, requests):
        self.calls -= 1
        if self.calls == 0:
            raise KeyboardInterrupt
        return self.inner.complete(requests)


REAL = [steerkit.Scenario(q, rs) for q, rs in [
    ("How do I boil an egg?", ("Put it in boiling water for 9 minutes.", "Eggs are from chickens.")),
    ("What is 2 + 2?", ("4", "It is 4, because adding two and two gives four.")),
    ("Can you recommend a book?", ("No.", "Try 'The Hobbit'; it is a short, warm adventure.")),
    ("How do I say thanks in French?", ("Merci.", "You say 'merci', pronounced mair-see.")),
    ("Is the sun a star?", ("Yes, the Sun is a G-type main-sequence star.", "No idea.")),
    ("Why is the sky blue?", ("Because of Rayleigh scattering of sunlight.", "It just is.")),
]]


def test_real_model_interrupt_keeps_finished_micro_batches_and_resumes_identically(tmp_path, embedded_backend):
    """The transformers backend runs micro-batches one after another; a Ctrl-C in the third
    keeps the four answers of the first two, and the rerun asks only for the last two, giving
    the same selections as an uninterrupted run."""
    size = embedded_backend.micro_batch_size
    embedded_backend.micro_batch_size = 2
    try:
        target = {"helpfulness": 1.0}
        clean = steerkit.Steerer("unaligned", backend=embedded_backend, cache=tmp_path / "clean.sqlite3",
                                 batch_size=6, progress=False).select_many(REAL, target)
        path = tmp_path / "interrupted.sqlite3"
        with pytest.raises(KeyboardInterrupt):
            steerkit.Steerer("unaligned", backend=InterruptedBackend(embedded_backend, calls=3), cache=path,
                             batch_size=6, progress=False).select_many(REAL, target)
        assert len(ScoreCache(path)) == 4
        resumed = steerkit.Steerer("unaligned", backend=embedded_backend, cache=path, batch_size=6, progress=False)
        sels = resumed.select_many(REAL, target)
        assert resumed.last_run.model_calls == 2
        assert [s.index for s in sels] == [s.index for s in clean]
    finally:
        embedded_backend.micro_batch_size = size


def test_real_model_micro_batched_generation_equals_one_call(embedded_backend):
    """Sending a batch one micro-batch at a time keeps each micro-batch's seed: sampled outputs
    are those of one backend call."""
    size = embedded_backend.micro_batch_size
    embedded_backend.micro_batch_size = 2
    try:
        prompts = [[{"role": "user", "content": s.question}] for s in REAL[:4]]
        sampling = steerkit.plugin.Sampling(temperature=1.0, max_tokens=4, seed=11)
        whole = embedded_backend.generate(prompts, sampling)
        assert len(embedded_backend.micro_batches([steerkit.plugin.Request(p, sampling) for p in prompts])) == 2
        run = steerkit.plugin.RunContext(embedded_backend, None, progress=False)
        assert run.generate(prompts, sampling) == whole and run.model_calls == 4
    finally:
        embedded_backend.micro_batch_size = size


def test_prompt_version_and_model_change_miss_the_cache(cache_path):
    backend = FakeBackend()
    steerkit.Steerer(CountingStrategy(), backend=backend, cache=cache_path, progress=False).score(SCENARIOS[:1], ["care"])

    class V2(CountingStrategy):
        prompt_version = "2"

    b2 = FakeBackend()
    steerkit.Steerer(V2(), backend=b2, cache=cache_path, progress=False).score(SCENARIOS[:1], ["care"])
    assert len(b2.prompts_seen) == 1
    b3 = FakeBackend(model="another-model")
    steerkit.Steerer(CountingStrategy(), backend=b3, cache=cache_path, progress=False).score(SCENARIOS[:1], ["care"])
    assert len(b3.prompts_seen) == 1


# -- corrupt files ---------------------------------------------------------------------------

def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _real_cache_bytes(path, n=2000) -> bytes:
    cache = ScoreCache(path)
    cache.put_many((CacheKey("m", "s", f"sc{i}", "r" * 30, "a" * 40), CacheRecord(0.5, "x" * 300)) for i in range(n))
    cache.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.read_bytes()


def _corruptions(tmp_path):
    rnd = bytes((i * 97 + 13) % 256 for i in range(8192))
    real = _real_cache_bytes(tmp_path / "real.sqlite3")
    return {
        "random-bytes": rnd,
        "text-file": b"this is my thesis, not a cache\n" * 50,
        "sqlite-header-then-garbage": b"SQLite format 3\x00" + rnd,
        "truncated-sqlite": real[: len(real) // 3],
        "garbage-over-first-pages": real[:100] + rnd + real[100 + len(rnd):],
    }


@pytest.mark.parametrize("kind", ["random-bytes", "text-file", "sqlite-header-then-garbage", "truncated-sqlite", "garbage-over-first-pages"])
def test_corrupt_cache_gives_clear_error_and_is_never_overwritten(tmp_path, kind):
    path = tmp_path / "scores.sqlite3"
    path.write_bytes(_corruptions(tmp_path)[kind])
    before = _digest(path)
    for _ in range(2):  # the same clear error every time: no crash loop, no silent repair
        with pytest.raises(CacheError) as exc:
            ScoreCache(path)
        msg = str(exc.value)
        assert str(path) in msg
        assert "move or delete it" in msg and "another cache path" in msg
        assert _digest(path) == before
    # through the one API too, before any model call
    backend = FakeBackend()
    with pytest.raises(CacheError):
        steerkit.Steerer("random", backend=backend, cache=path)
    assert backend.prompts_seen == [] and _digest(path) == before


def test_empty_file_becomes_a_cache(cache_path):
    cache_path.write_bytes(b"")
    cache = ScoreCache(cache_path)
    cache.put(KEY, CacheRecord(1.0))
    assert ScoreCache(cache_path).get(KEY).score == 1.0


def test_newer_schema_is_refused(cache_path):
    ScoreCache(cache_path).close()
    conn = sqlite3.connect(cache_path)
    conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(CacheError, match="schema 999"):
        ScoreCache(cache_path)


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
    path = _damaged_cache(tmp_path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CacheError, match="move or delete it"):
        ScoreCache(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_foreign_sqlite_database_is_not_written_to(tmp_path):
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
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE results (x)")
    conn.commit()
    conn.close()
    with pytest.raises(CacheError):
        ScoreCache(path)


# -- unusable paths and errors after open ----------------------------------------------------

def test_a_directory_as_cache_path_is_a_cache_error(tmp_path):
    with pytest.raises(CacheError, match="is a directory.*scores.sqlite3"):
        ScoreCache(tmp_path)
    with pytest.raises(CacheError, match="is a directory"):
        steerkit.Steerer("random", backend=FakeBackend(), cache=tmp_path)


def test_a_path_that_cannot_be_created_is_a_cache_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CacheError, match="cannot be opened or created.*is a folder and is writable"):
        ScoreCache(blocker / "scores.sqlite3")
    assert blocker.read_text() == "not a folder"
    # /sys refuses new entries even to root: a real PermissionError
    with pytest.raises(CacheError, match="PermissionError") as exc:
        ScoreCache("/sys/steerkit-test-cache/scores.sqlite3")
    assert "another cache path" in str(exc.value)


def _damage_a_data_page(tmp_path):
    """A real cache with a page deep inside the results table overwritten: its header, schema and
    meta table are intact, so only reading those rows (or a full check) can see the damage."""
    path = tmp_path / "scores.sqlite3"
    cache = ScoreCache(path)
    keys = [CacheKey("m", "s", f"sc{i}", "r" * 30, "a" * 40) for i in range(2000)]
    cache.put_many((k, CacheRecord(0.5, "x" * 300)) for k in keys)
    cache.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    assert conn.execute("SELECT max(rootpage) FROM sqlite_master").fetchone()[0] < 50
    conn.close()
    data = bytearray(path.read_bytes())
    data[100 * page + 8 : 100 * page + 200] = b"\xff" * 192
    path.write_bytes(bytes(data))
    return path, keys


def test_open_is_cheap_damage_shows_on_read_or_verify_as_a_cache_error(tmp_path):
    path, keys = _damage_a_data_page(tmp_path)
    before = _digest(path)
    cache = ScoreCache(path)  # the per-open check reads the schema, not every page
    with pytest.raises(CacheError) as exc:
        cache.get_many(keys)
    msg = str(exc.value)
    assert "reading failed" in msg and "damaged" in msg and "move or delete it" in msg and str(path) in msg
    with pytest.raises(CacheError, match="is damaged \\(SQLite integrity check"):
        cache.verify()
    cache.close()
    assert _digest(path) == before
    ScoreCache(_real_cache(tmp_path / "fine.sqlite3")).verify()  # a sound cache passes the full check


def _real_cache(path):
    _real_cache_bytes(path, n=50)
    return path


def test_sqlite_errors_after_open_are_cache_errors(cache_path):
    cache = ScoreCache(cache_path)
    cache.put(KEY, CacheRecord(0.5))
    blocker = sqlite3.connect(cache_path, timeout=0, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        cache._connect().execute("PRAGMA busy_timeout=50")  # do not wait the default 30 s here
        with pytest.raises(CacheError, match="writing failed.*OperationalError.*another cache path"):
            cache.put(replace(KEY, sample=1), CacheRecord(0.1))
        with pytest.raises(CacheError, match="clearing failed"):
            cache.clear()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    cache.put(replace(KEY, sample=1), CacheRecord(0.1))  # usable again once the lock is gone
    assert len(cache) == 2


def test_header_size_check_sends_truncated_files_to_the_full_check(tmp_path):
    from steerkit.cache import _plausible_size

    real = _real_cache_bytes(tmp_path / "real.sqlite3")
    assert _plausible_size(real[:100], len(real))
    assert not _plausible_size(real[:100], len(real) // 3)
    assert not _plausible_size(real[:100], len(real) - 100)  # not a whole number of pages
    assert not _plausible_size(b"SQLite format 3\x00" + bytes(84), 4096)  # page size 0
