"""The bad-input matrix: every case across the Python API, the CLI, dataset files, plugins, the
cache and model folders must give a typed steerkit error naming a fix, before a model loads,
with nothing written. ``benchmarks/bench_reliability.py`` prints the same matrix as a table.

Each case prepares its input in its own folder (``prepare``), then ``call`` is run with model
loading forbidden and the folder's files snapshotted around it."""

from __future__ import annotations

import gzip
import importlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from click.testing import CliRunner

import steerkit
from steerkit import host

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("STEERKIT_DATA") or ROOT.parent / "shared" / "data")
FIX = re.compile(
    r"e\.g\.|\b(pass|use|give|check|run|rerun|install|move|delete|remove|download|train|convert|set|pick|add|"
    r"choose|known|expected|leave|save|resume|free|fix|must|takes|needs)\b", re.I)


@dataclass
class Case:
    id: str
    area: str
    expected: type[steerkit.SteerkitError]
    prepare: Callable[[Path], Any]  # builds the input in its folder; its result goes to ``call``
    call: Callable[[Any], Any]  # must raise ``expected`` (a CLI case returns click's Result)
    writes_ok: bool = False  # the case is about a write failing midway (a full disk)


def _steerer(folder: Path, strategy: str = "zero-shot-comparative", **kw) -> steerkit.Steerer:
    return steerkit.Steerer(strategy, backend="transformers", cache=folder / "c.sqlite3", progress=False, **kw)


def _file(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _cli(*args: str) -> Any:
    from steerkit.cli import cli

    host.ensure_cli_commands(cli)
    return CliRunner().invoke(cli, list(args))


def _hs2(path: Path) -> Any:
    return steerkit.plugin.lookup("dataset", "helpsteer2")(path=path)


def _cache_with_rows(folder: Path) -> Path:
    path = folder / "c.sqlite3"
    cache = steerkit.plugin.ScoreCache(path)
    cache.put_many([(steerkit.plugin.CacheKey("m", "s", f"sc{i}", "r", "a"), steerkit.plugin.CacheRecord(0.5, "x" * 500))
                    for i in range(400)])
    cache.close()
    return path


def _truncated(folder: Path) -> Path:
    path = _cache_with_rows(folder)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2 + 100)
    return path


def _foreign(folder: Path) -> Path:
    path = folder / "other.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    return path


def _other_schema(folder: Path) -> Path:
    path = _cache_with_rows(folder)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    return path


def _read_only_folder(folder: Path) -> Path:
    """A folder the cache cannot be created in: chmod for a normal user; root ignores modes,
    so root gets a read-only tmpfs mounted there (a root without mount rights fails the case
    loudly rather than skipping it: a skipped case proves nothing)."""
    ro = folder / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
    else:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True, text=True)
        if mounted.returncode:
            pytest.fail(f"running as root, and mount refused a read-only tmpfs ({mounted.stderr.strip()}): "
                        "run the tests as a normal user, or where root may mount")
    return ro / "c.sqlite3"


FULL_DISK = r"""
import resource, signal, sys
sys.path.insert(0, sys.argv[2])
import steerkit
from tests.fakes import FakeBackend
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing us
cache = steerkit.plugin.ScoreCache(sys.argv[1])  # created under the limit
resource.setrlimit(resource.RLIMIT_FSIZE, (96 * 1024, 96 * 1024))
scenarios = [steerkit.Scenario(f"Question {i}?" + " pad" * 60, (f"one {i}" + " x" * 80, f"two {i}" + " y" * 80)) for i in range(400)]
s = steerkit.Steerer("zero-shot-comparative", backend=FakeBackend(), cache=cache, progress=False)
try:
    s.score(scenarios, ["helpfulness"])
except steerkit.SteerkitError as exc:
    print(f"{type(exc).__name__}\t{exc}")
    sys.exit(3)
print("no error")
"""


class _Raised(Exception):
    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def _full_disk(folder: Path) -> Path:
    return folder / "c.sqlite3"


def _fill(path: Path) -> None:
    """The cache on a disk that fills up midway (RLIMIT_FSIZE in a subprocess: any user, any
    filesystem). The typed error must come out, and the rows committed before stay readable."""
    r = subprocess.run([sys.executable, "-c", FULL_DISK, str(path), str(ROOT)], capture_output=True, text=True, timeout=120)
    if r.returncode != 3:
        raise AssertionError(f"expected a steerkit error, got exit {r.returncode}: {r.stdout[-500:]} {r.stderr[-1500:]}")
    name, message = r.stdout.strip().splitlines()[-1].split("\t", 1)
    cache = steerkit.plugin.ScoreCache(path)
    cache.verify()  # what was committed before the disk filled is intact
    cache.close()
    raise _Raised(name, message)


class _FailingHook:
    @steerkit.plugin.hookimpl
    def register_strategies(self, register):
        register("never-registered", object)
        raise RuntimeError("the plugin's author made a mistake")


def _failing_hook(folder: Path) -> str:
    return steerkit.plugin.register_plugin(_FailingHook(), name="failing-hook-plugin")


def _call_failing_hook(name: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            steerkit.plugin.lookup("strategy", "never-registered")
    finally:
        steerkit.plugin.unregister_plugin(name)


def _broken_entry_point(folder: Path) -> Path:
    dist = folder / "site" / "broken_steerkit_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-steerkit-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[steerkit]\nbroken-plugin = steerkit_module_that_does_not_exist\n")
    return folder / "site"


def _call_broken_entry_point(site: Path) -> None:
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    host.reset()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            assert "broken-plugin" in steerkit.plugin.plugin_errors()  # reported by name, the host still up
            steerkit.plugin.lookup("strategy", "broken-plugin-strategy")
    finally:
        sys.path.remove(str(site))
        importlib.invalidate_caches()
        host.reset()


def _hf_folder(folder: Path, config: dict, files: dict[str, bytes]) -> Path:
    model = folder / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(config))
    for name, content in files.items():
        (model / name).write_bytes(content)
    return model


LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32, "hidden_size": 8}
HS2_ROW = {"prompt": "Q?", "responses": ["a", "b"], "labels": [{"helpfulness": 1}, {"helpfulness": 2}]}
NO_FOLDER = lambda f: f / "missing"  # noqa: E731
_ = lambda f: None  # noqa: E731


CASES: list[Case] = [
    # -- Python API --------------------------------------------------------------------------
    Case("api-unknown-strategy", "api", steerkit.UnknownPluginError, _, lambda _: steerkit.Steerer("nope", cache=False)),
    Case("api-unknown-backend", "api", steerkit.UnknownPluginError, _, lambda _: steerkit.Steerer(backend="nope", cache=False)),
    Case("api-unknown-aligner", "api", steerkit.UnknownPluginError, _, lambda _: steerkit.Steerer(aligner="nope", cache=False)),
    Case("api-misspelt-option", "api", steerkit.InvalidOptionError, _,
         lambda _: steerkit.Steerer("zero-shot-comparative", cache=False, sample=5)),
    Case("api-samples-zero", "api", steerkit.InvalidOptionError, _,
         lambda _: steerkit.Steerer("zero-shot-comparative", cache=False, samples=0)),
    Case("api-target-above-1", "api", steerkit.InvalidTargetError, _steerer,
         lambda s: s.select("Q?", ["a", "b"], {"helpfulness": 1.5})),
    Case("api-target-nan", "api", steerkit.InvalidTargetError, _steerer,
         lambda s: s.select("Q?", ["a", "b"], {"helpfulness": float("nan")})),
    Case("api-target-empty", "api", steerkit.InvalidTargetError, _steerer, lambda s: s.select("Q?", ["a", "b"], {})),
    Case("api-target-wrong-type", "api", steerkit.InvalidTargetError, _steerer, lambda s: s.select("Q?", ["a", "b"], 0.7)),
    Case("api-negative-weight", "api", steerkit.InvalidTargetError, _steerer,
         lambda s: s.select("Q?", ["a", "b"], {"values": {"helpfulness": 1}, "weights": {"helpfulness": -1}})),
    Case("api-one-response", "api", steerkit.InvalidScenarioError, _steerer, lambda s: s.select("Q?", ["a"], {"helpfulness": 1})),
    Case("api-duplicate-responses", "api", steerkit.InvalidScenarioError, _steerer,
         lambda s: s.select("Q?", ["same", "same "], {"helpfulness": 1})),
    Case("api-responses-a-string", "api", steerkit.InvalidScenarioError, _steerer,
         lambda s: s.select("Q?", "ab", {"helpfulness": 1})),
    Case("api-empty-question", "api", steerkit.InvalidScenarioError, _steerer, lambda s: s.select(" ", ["a", "b"], {"helpfulness": 1})),
    Case("api-perspective-to-attribute-strategy", "api", steerkit.UnsupportedTargetError, _steerer,
         lambda s: s.select("Q?", ["a", "b"], steerkit.Perspective("Right to life"))),
    Case("api-attributes-to-cot", "api", steerkit.UnsupportedTargetError, lambda f: _steerer(f, "cot"),
         lambda s: s.select("Q?", ["a", "b"], {"helpfulness": 1})),
    Case("api-unknown-attribute", "api", steerkit.UnknownAttributeError, _steerer,
         lambda s: s.score([("Q?", ["a", "b"])], ["no-such-attribute"])),
    Case("api-targets-count-mismatch", "api", steerkit.InvalidTargetError, _steerer,
         lambda s: s.select_many([("Q?", ["a", "b"]), ("R?", ["c", "d"])], [{"helpfulness": 1}])),
    # -- CLI -----------------------------------------------------------------------------------
    Case("cli-target-not-json", "cli", steerkit.InvalidTargetError, _, lambda _: _cli("select", "Q?", "a", "b", "--target", "{care")),
    Case("cli-target-out-of-range", "cli", steerkit.InvalidTargetError, lambda f: f,
         lambda f: _cli("select", "Q?", "a", "b", "--target", '{"helpfulness": 3}', "--cache", str(f / "c.sqlite3"))),
    Case("cli-unknown-strategy", "cli", steerkit.UnknownPluginError, lambda f: f,
         lambda f: _cli("select", "Q?", "a", "b", "--target", '{"helpfulness": 1}', "--strategy", "nope", "--cache", str(f / "c.sqlite3"))),
    Case("cli-cache-is-a-folder", "cli", steerkit.CacheError, lambda f: f,
         lambda f: _cli("select", "Q?", "a", "b", "--target", '{"helpfulness": 1}', "--strategy", "zero-shot-comparative", "--cache", str(f))),
    Case("cli-eval-missing-data", "cli", steerkit.DatasetError, lambda f: f,
         lambda f: _cli("eval", "--strategy", "zero-shot-comparative", "--dataset", "helpsteer2", "--data", str(f / "nope.json"),
                        "--cache", str(f / "c.sqlite3"), "--out", str(f / "out"))),
    Case("cli-eval-unknown-dataset", "cli", steerkit.UnknownPluginError, lambda f: f,
         lambda f: _cli("eval", "--strategy", "zero-shot-comparative", "--dataset", "nope", "--cache", str(f / "c.sqlite3"),
                        "--out", str(f / "out"))),
    # -- dataset files -------------------------------------------------------------------------
    Case("data-missing-file", "dataset", steerkit.DatasetError, NO_FOLDER, _hs2),
    Case("data-malformed-json", "dataset", steerkit.DatasetError, lambda f: _file(f, "eval.json", '[{"prompt": "Q?", "responses": ['), _hs2),
    Case("data-empty-file", "dataset", steerkit.DatasetError, lambda f: _file(f, "eval.json", ""), _hs2),
    Case("data-empty-list", "dataset", steerkit.DatasetError, lambda f: _file(f, "eval.json", "[]"), _hs2),
    Case("data-missing-responses", "dataset", steerkit.DatasetError,
         lambda f: _file(f, "eval.json", json.dumps([{"prompt": "Q?", "labels": HS2_ROW["labels"]}])), _hs2),
    Case("data-responses-a-string", "dataset", steerkit.DatasetError,
         lambda f: _file(f, "eval.json", json.dumps([{**HS2_ROW, "responses": "ab"}])), _hs2),
    Case("data-label-not-a-number", "dataset", steerkit.DatasetError,
         lambda f: _file(f, "eval.json", json.dumps([{**HS2_ROW, "labels": [{"helpfulness": "high"}, {"helpfulness": 2}]}])), _hs2),
    Case("data-not-utf8", "dataset", steerkit.DatasetError,
         lambda f: _file(f, "eval.json", json.dumps([HS2_ROW]).replace('"Q?"', '"Q\u00e9?"').encode("latin-1")), _hs2),
    Case("data-huge-file-bad-row", "dataset", steerkit.DatasetError,
         lambda f: _file(f, "eval.jsonl", "\n".join([json.dumps({**HS2_ROW, "prompt": f"Q{i}?" + " pad" * 100}) for i in range(60000)]
                                                    + ['{"prompt": "last", "responses": ["only one"]']) + "\n"), _hs2),
    Case("data-gzip-corrupt", "dataset", steerkit.DatasetError, lambda f: _file(f, "eval.json.gz", b"\x1f\x8b\x08not gzip"), _hs2),
    Case("data-vk-malformed", "dataset", steerkit.DatasetError, lambda f: _file(f, "steerable_test.json", "{not json"),
         lambda p: steerkit.plugin.lookup("dataset", "vk")(path=p)),
    # -- plugins -------------------------------------------------------------------------------
    Case("plugin-entry-point-fails-to-import", "plugin", steerkit.UnknownPluginError, _broken_entry_point, _call_broken_entry_point),
    Case("plugin-hook-raises", "plugin", steerkit.UnknownPluginError, _failing_hook, _call_failing_hook),
    # -- cache ---------------------------------------------------------------------------------
    Case("cache-truncated-file", "cache", steerkit.CacheError, _truncated, steerkit.plugin.ScoreCache),
    Case("cache-foreign-sqlite", "cache", steerkit.CacheError, _foreign, steerkit.plugin.ScoreCache),
    Case("cache-other-schema-version", "cache", steerkit.CacheError, _other_schema, steerkit.plugin.ScoreCache),
    Case("cache-not-sqlite", "cache", steerkit.CacheError, lambda f: _file(f, "c.sqlite3", "hello, not a database"), steerkit.plugin.ScoreCache),
    Case("cache-read-only-folder", "cache", steerkit.CacheError, _read_only_folder, steerkit.plugin.ScoreCache),
    Case("cache-path-is-a-folder", "cache", steerkit.CacheError, lambda f: f, steerkit.plugin.ScoreCache),
    Case("cache-full-disk", "cache", steerkit.CacheError, _full_disk, _fill, writes_ok=True),
    # -- model folders -------------------------------------------------------------------------
    Case("model-missing-folder", "model", steerkit.ModelNotFoundError, NO_FOLDER,
         lambda p: steerkit.Steerer("zero-shot-comparative", model=str(p), cache=False)),
    Case("model-folder-without-config", "model", steerkit.ModelNotFoundError, lambda f: f,
         lambda p: steerkit.Steerer("zero-shot-comparative", model=str(p), cache=False)),
    Case("model-pickle-only-weights", "model", steerkit.ModelNotFoundError,
         lambda f: _hf_folder(f, LLAMA, {"pytorch_model.bin": b"PK\x03\x04 pickled"}),
         lambda p: steerkit.Steerer("zero-shot-comparative", model=str(p), cache=False)),
    Case("model-no-weights", "model", steerkit.ModelNotFoundError, lambda f: _hf_folder(f, LLAMA, {}),
         lambda p: steerkit.Steerer("zero-shot-comparative", model=str(p), cache=False)),
    Case("model-needs-trust-remote-code", "model", steerkit.ModelNotFoundError,
         lambda f: _hf_folder(f, {"model_type": "my_custom", "auto_map": {"AutoModelForCausalLM": "modeling_custom.MyModel"}},
                              {"model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ", "modeling_custom.py": b"class MyModel: pass\n"}),
         lambda p: steerkit.Steerer("zero-shot-comparative", model=str(p), cache=False)),
    Case("model-not-a-gguf", "model", steerkit.ModelNotFoundError, lambda f: _file(f, "model.gguf", b"definitely not GGUF"),
         lambda p: steerkit.Steerer("zero-shot-comparative", model=str(p), cache=False)),
]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in folder.rglob("*"):
        try:
            st = p.lstat()
        except OSError:
            continue
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns) if p.is_file() else (0, 0)
    return out


def _forbidden(loads: list) -> Callable[[Any], None]:
    """A stand-in for the backend's weight loading: records the attempt and fails."""
    def load(self: Any) -> None:
        loads.append(self)
        raise RuntimeError("a model load was attempted")
    return load


def run_case(case: Case, folder: Path) -> dict[str, Any]:
    """Run one case: what it raised, whether a model load was attempted, what it wrote."""
    from steerkit_adapters.transformers_backend import TransformersBackend

    loads = []
    arg = case.prepare(folder)
    before = _snapshot(folder)
    err: BaseException | None = None
    name, message = "no error", ""
    try:
        with mock.patch.object(TransformersBackend, "_load", _forbidden(loads)), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = case.call(arg)
        if hasattr(result, "exit_code"):  # a CLI case: the error is what it printed
            text = result.output or ""  # click >= 8.2: stdout and stderr together
            m = re.search(r"error\W+(\w+Error): (.*)", text, re.S) or re.search(r"Error: (.*)", text, re.S)
            if result.exit_code == 2 and m and "Traceback" not in text:
                name, message = (m.group(1), m.group(2)) if m.re.groups == 2 else ("UsageError", m.group(1))
            elif result.exception is not None and not isinstance(result.exception, SystemExit):
                err = result.exception
            else:
                name, message = f"exit {result.exit_code}", text.strip()[-200:]
    except _Raised as exc:
        name, message = exc.name, str(exc)
    except BaseException as exc:  # noqa: BLE001 - the matrix records whatever came out
        err = exc
    finally:
        if case.id == "cache-read-only-folder" and os.geteuid() == 0:
            subprocess.run(["umount", str(folder / "ro")], capture_output=True)
    if err is not None:
        name, message = type(err).__name__, str(err)
    after = _snapshot(folder) if folder.exists() else {}
    changed = sorted(k for k in after if before.get(k) != after[k] and not k.startswith("site"))
    # Opening an existing WAL-mode file read-only makes SQLite create its (empty) -wal/-shm
    # sidecars; the file itself is untouched. They are reported, not counted as writes.
    sidecars = [k for k in changed if k.endswith(("-wal", "-shm")) and k[:-4] in before]
    written = [k for k in changed if k not in sidecars]
    if case.writes_ok:
        written = []
    typed = (err is None and name == case.expected.__name__) or isinstance(err, case.expected)
    if case.area == "cli":  # the CLI prints the error's type; click's own usage errors count for --target JSON
        typed = name in (case.expected.__name__, "UsageError")
    clear = bool(typed and FIX.search(message) and not written and not loads)
    return {"case": case.id, "area": case.area, "expected": case.expected.__name__, "error": name,
            "message": " ".join(message.split())[:400], "model_loaded": bool(loads), "written": written,
            "sidecars": sidecars,
            "handled_clearly": clear}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_a_typed_error_naming_the_fix_before_any_model_loads(case, tmp_path):
    row = run_case(case, tmp_path)
    assert row["error"] == case.expected.__name__ or (case.area == "cli" and row["error"] == "UsageError"), row
    assert not row["model_loaded"], row
    assert not row["written"], row
    assert row["handled_clearly"], row


@pytest.mark.parametrize("case_id, plugin", [("plugin-entry-point-fails-to-import", "broken-plugin"),
                                             ("plugin-hook-raises", "failing-hook-plugin")])
def test_an_unknown_name_points_at_the_plugin_that_failed_to_load(case_id, plugin, tmp_path):
    row = run_case(next(c for c in CASES if c.id == case_id), tmp_path)
    assert f"Plugins that failed to load (one may provide it): {plugin}" in row["message"], row


def test_the_matrix_has_at_least_30_cases_over_every_area():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    assert {c.area for c in CASES} == {"api", "cli", "dataset", "plugin", "cache", "model"}
