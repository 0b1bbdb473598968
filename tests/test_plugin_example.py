"""A third-party plugin (issue 2, item 8; issue 11, part 2): pip-install
examples/steerkit-plugin-example into a temporary folder (``--target``, never the test
environment itself), then show in fresh processes with that folder on their path that
``steerkit plugins`` lists it and that the Steerer uses its strategy and aligner by name. The
example imports only ``steerkit`` and ``steerkit.plugin`` (no deprecated name), its strategy is
at most 40 lines, and its declared option is part of the cache key without code saying so."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "steerkit-plugin-example"
DIST = "steerkit-plugin-example"
ROOT = Path(__file__).resolve().parent.parent


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """The folder the example is installed into; put it on PYTHONPATH to use the plugin."""
    # Build from a copy so the example's folder stays clean (no build/ or *.egg-info).
    src = tmp_path_factory.mktemp("example") / "steerkit-plugin-example"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    # Offline: no index, no build isolation (setuptools from this environment builds it).
    out = pip("install", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target), str(src))
    assert out.returncode == 0, (
        "could not pip-install the example plugin offline; the test env needs setuptools "
        f"(the Makefile installs it):\n{out.stdout}\n{out.stderr}"
    )
    assert pip("show", DIST).returncode != 0, "the example must not be installed into the test environment"
    return target


def env_with(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "STEERKIT_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def run_python(code: str, site: Path, plugins: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh process where a DeprecationWarning raised for the example is an error
    (it uses no moved name)."""
    return subprocess.run([sys.executable, "-W", "error::DeprecationWarning:steerkit_plugin_example", "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, env=env_with(site, STEERKIT_PLUGINS=plugins), cwd=str(ROOT))


def test_the_example_is_found_only_where_it_was_installed(installed_example):
    out = subprocess.run([sys.executable, "-m", "steerkit.cli", "plugins", "--json"],
                         capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "STEERKIT_PLUGINS"})
    assert out.returncode == 0, out.stderr
    assert "example" not in {p["name"] for p in json.loads(out.stdout)["plugins"]}


def test_steerkit_plugins_lists_the_installed_example(installed_example):
    out = subprocess.run([sys.executable, "-m", "steerkit.cli", "plugins", "--json"],
                         capture_output=True, text=True, timeout=120, env=env_with(installed_example))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert "example" in by_name, sorted(by_name)
    ex = by_name["example"]
    assert ex["version"] == "0.3.0"
    assert ex["module"] == "steerkit_plugin_example"
    assert ex["registered"] == {"strategy": ["keyword-match"], "aligner": ["chebyshev"]}
    assert "example" not in data["errors"]
    # the built-ins are still there next to it
    assert {"aligners", "baselines"} <= set(by_name)


def test_steerer_uses_the_example_strategy_and_aligner(installed_example, tmp_path):
    out = run_python(f"""
        import json, numpy as np, steerkit, steerkit.plugin
        assert steerkit.plugin.plugin_errors() == {{}}, steerkit.plugin.plugin_errors()
        from tests.fakes import FakeBackend
        backend = FakeBackend()
        s = steerkit.Steerer(strategy="keyword-match", backend=backend, aligner="chebyshev",
                             cache={str(tmp_path / 'c.sqlite3')!r}, progress=False,
                             keywords={{"care": ["sorry", "help"]}})
        responses = ["Not my problem.", "Sorry, let me help you look.", "Sorry about that."]
        sel = s.select("I lost my keys", responses, {{"care": 1.0}})
        table = s.score([("I lost my keys", responses)], ["care"])
        d = table.distances_many([{{"care": 0.6}}], "chebyshev")[0, 0]
        print(json.dumps({{"index": sel.index, "scores": sel.scores, "strategy": sel.strategy,
                           "hits": table.cache_hits, "prompts": len(backend.prompts_seen),
                           "d": [float(x) for x in d]}}))
    """, installed_example, plugins="example")  # only the third-party plugin: it needs nothing built in
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["strategy"] == "keyword-match"
    assert res["scores"] == [{"care": 0.0}, {"care": 1.0}, {"care": 0.5}]
    assert res["index"] == 1
    assert res["hits"] == 3  # the second call came from the cache, like any strategy's scores
    assert res["d"] == pytest.approx([0.6, 0.4, 0.1])
    assert res["prompts"] == 0  # a model-free strategy never calls the model


def test_allow_list_can_exclude_the_example(installed_example):
    env = env_with(installed_example, STEERKIT_PLUGINS="aligners")
    out = subprocess.run([sys.executable, "-m", "steerkit.cli", "plugins", "--json"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert [p["name"] for p in json.loads(out.stdout)["plugins"]] == ["aligners"]


def test_the_example_imports_only_the_two_public_modules_and_its_strategy_is_short():
    source = (EXAMPLE / "steerkit_plugin_example" / "__init__.py").read_text()
    tree = ast.parse(source)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m for m in imported if m.startswith("steerkit")} <= {"steerkit", "steerkit.plugin"}, imported
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "KeywordMatch")
    helpers = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("_")]
    lines = cls.end_lineno - cls.lineno + 1 + sum(h.end_lineno - h.lineno + 1 for h in helpers)
    assert lines <= 40, f"the example strategy takes {lines} lines"


def test_the_declared_option_is_checked_and_keys_the_cache(installed_example, tmp_path):
    """Other keywords (by option or by a definition) are another cache identity: the scores are
    recomputed, not served from the first run's rows; a misspelt option is refused with the list."""
    out = run_python(f"""
        import json, steerkit, steerkit.plugin
        from tests.fakes import FakeBackend
        cache = {str(tmp_path / 'c.sqlite3')!r}
        def table(**options):
            s = steerkit.Steerer(strategy="keyword-match", backend=FakeBackend(), aligner="chebyshev", cache=cache, progress=False, **options)
            t = s.score([("I lost my keys", ["Sorry.", "Let me help."])], ["care"])
            return s.strategy, t
        a, t1 = table(keywords={{"care": ["sorry"]}})
        _, t2 = table(keywords={{"care": ["sorry"]}})
        b, t3 = table(keywords={{"care": ["help"]}})
        s = steerkit.Steerer(strategy="keyword-match", backend=FakeBackend(), aligner="chebyshev", cache=cache, progress=False)
        t4 = s.score([("I lost my keys", ["Sorry.", "Let me help."])], {{"care": "help, sorry"}})
        errors = []
        for bad in ({{"keyword": {{"care": ["x"]}}}}, {{"keywords": {{"care": "sorry"}}}}, {{"keywords": ["sorry"]}}):
            try:
                steerkit.Steerer(strategy="keyword-match", backend=FakeBackend(), aligner="chebyshev", cache=False, **bad)
            except steerkit.InvalidOptionError as exc:
                errors.append(str(exc))
        print(json.dumps({{"fp": [a.fingerprint(), b.fingerprint(), s.strategy.fingerprint()],
                           "misses": [t1.cache_misses, t2.cache_misses, t3.cache_misses, t4.cache_misses],
                           "scores": [t1.scores[0, :, 0].tolist(), t3.scores[0, :, 0].tolist(), t4.scores[0, :, 0].tolist()],
                           "errors": errors, "options": a.options}}))
    """, installed_example, plugins="example")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(set(res["fp"])) == 3
    assert res["misses"] == [2, 0, 2, 2]
    assert res["scores"] == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    assert res["options"] == {"keywords": {"care": ["sorry"]}}
    unknown, not_a_list, not_a_dict = res["errors"]
    assert "unknown options ['keyword']" in unknown and "keywords, samples" in unknown
    assert "keywords=" in not_a_list and '{"attribute": ["keyword", ...]}' in not_a_list
    assert "pass a dict" in not_a_dict
