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
