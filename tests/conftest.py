import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import atexit
import shutil
import tempfile
from pathlib import Path

import platformdirs
import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("STEERKIT_DATA") or ROOT.parent / "shared" / "data")


def _isolate_caches() -> Path:
    """Send every cache the tests write (score caches, embedding indexes, digests, anything
    under $XDG_CACHE_HOME) to a temporary folder removed at exit, so a test run leaves the
    user's cache as it was. One exception: the embedded model converted from its GGUF takes
    about a minute to build, so ``models/`` links to the user's own converted-model folder and
    every run (and every test subprocess, which inherits this environment) reuses it.
    vLLM's compile cache stays where vLLM keeps it, for the same reason."""
    home_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    user_steerkit = Path(os.environ.get("STEERKIT_CACHE_DIR") or platformdirs.user_cache_dir("steerkit"))
    user_models = user_steerkit / "models"
    user_models.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="steerkit-tests-"))
    atexit.register(shutil.rmtree, root, True)
    session = root / "cache" / "steerkit"
    session.mkdir(parents=True)
    (session / "models").symlink_to(user_models, target_is_directory=True)
    os.environ.setdefault("VLLM_CACHE_ROOT", str(home_cache / "vllm"))
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")
    os.environ["STEERKIT_CACHE_DIR"] = str(session)
    os.environ.pop("STEERKIT_CACHE", None)  # the score cache defaults to the session folder
    return session


SESSION_CACHE_DIR = _isolate_caches()


@pytest.fixture
def data_dir() -> Path:
    assert DATA.exists(), f"benchmark data not found at {DATA}: set $STEERKIT_DATA to its folder"
    return DATA


@pytest.fixture
def cache_path(tmp_path) -> Path:
    return tmp_path / "scores.sqlite3"


@pytest.fixture
def fake_backend():
    from tests.fakes import FakeBackend

    return FakeBackend()


@pytest.fixture(scope="session")
def embedded_backend():
    """The real embedded SmolLM2-135M on the transformers backend, loaded once per session."""
    import steerkit

    backend = steerkit.plugin.lookup("backend", "transformers")()
    backend.hf_model  # load now so tests measure their own work, not the load
    yield backend
    backend.close()
