"""The test suite finds the benchmark data where $STEERKIT_DATA says (default ../shared/data)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _data_dir(env_value):
    env = {k: v for k, v in os.environ.items() if k != "STEERKIT_DATA"}
    if env_value is not None:
        env["STEERKIT_DATA"] = env_value
    out = subprocess.run([sys.executable, "-c", "from tests.conftest import DATA; print(DATA)"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip())


def test_data_dir_honours_steerkit_data(tmp_path):
    assert _data_dir(str(tmp_path)) == tmp_path
    assert _data_dir(None) == ROOT.parent / "shared" / "data"
    assert _data_dir("") == ROOT.parent / "shared" / "data"


def test_tests_write_caches_to_a_temporary_folder_but_reuse_the_converted_model(tmp_path):
    """A test session must leave the user's cache as it was, except for the converted embedded
    model, which every session shares (converting it again costs about a minute)."""
    home = tmp_path / "home"
    home.mkdir()
    user_cache = home / ".cache" / "steerkit"
    env = {k: v for k, v in os.environ.items()
           if k not in ("STEERKIT_CACHE_DIR", "STEERKIT_CACHE", "XDG_CACHE_HOME", "VLLM_CACHE_ROOT")}
    env["HOME"] = str(home)
    code = (
        "import os, steerkit\n"
        "from tests.conftest import SESSION_CACHE_DIR\n"
        "from steerkit import CacheKey, CacheRecord, ScoreCache\n"
        "ScoreCache().put(CacheKey('m', 's', 'sc', 'r', 'a'), CacheRecord(0.5))\n"
        "(steerkit.default_cache_dir() / 'fewshot').mkdir()\n"
        "import platformdirs\n"
        "print(SESSION_CACHE_DIR, steerkit.default_cache_path(), platformdirs.user_cache_dir('x'),\n"
        "      (steerkit.default_cache_dir() / 'models').resolve(), os.environ['VLLM_CACHE_ROOT'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    session, scores, other, models, vllm = map(Path, out.stdout.split())
    assert scores == session / "scores.sqlite3" and not session.is_relative_to(home)
    assert not Path(other).is_relative_to(home)  # other tools' caches ($XDG_CACHE_HOME) too
    assert models == user_cache / "models"  # the converted model is shared, not rebuilt
    assert vllm == home / ".cache" / "vllm"
    assert [p.name for p in user_cache.iterdir()] == ["models"]  # no scores, no index written here
    assert not session.exists()  # removed when the session ends
    assert (user_cache / "models").is_dir()  # the shared folder itself is never removed
