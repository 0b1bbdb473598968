import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("STEERKIT_DATA") or ROOT.parent / "shared" / "data")


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

    backend = steerkit.lookup("backend", "transformers")()
    backend.hf_model  # load now so tests measure their own work, not the load
    yield backend
    backend.close()
