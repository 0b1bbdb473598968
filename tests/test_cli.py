"""The command line (issue 2, item 9): ``steerkit plugins`` (table and --json), ``steerkit
select`` with --json, and bad input ending in exit code 2 with one clear line, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from steerkit import cli as cli_module

BUILTIN_ALIGNERS = {"euclidean", "weighted-euclidean", "manhattan"}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STEERKIT_CACHE", str(tmp_path / "cache" / "scores.sqlite3"))
    monkeypatch.delenv("STEERKIT_PLUGINS", raising=False)


def invoke(*args: str):
    result = CliRunner().invoke(cli_module.cli, list(args), catch_exceptions=False)
    return result, result.output + (getattr(result, "stderr", "") or "")


def test_plugins_json_lists_builtins_with_versions():
    result, _ = invoke("plugins", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert {"aligners", "baselines", "transformers"} <= set(by_name)
    assert set(by_name["aligners"]["registered"]["aligner"]) == BUILTIN_ALIGNERS
    assert {"random", "oracle"} <= set(by_name["baselines"]["registered"]["strategy"])
    assert by_name["transformers"]["registered"] == {"backend": ["transformers"]}
    assert all(p["version"] for p in by_name.values())
    assert by_name["aligners"]["module"] == "steerkit_plugins.aligners"
    assert data["errors"] == {}


def test_plugins_table():
    result, out = invoke("plugins")
    assert result.exit_code == 0
    for word in ("aligners", "baselines", "transformers", "euclidean", "random", "0.1.0"):
        assert word in out


def test_plugins_through_the_installed_console_script():
    exe = [sys.executable, "-m", "steerkit.cli", "plugins", "--json"]
    out = subprocess.run(exe, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    names = {p["name"] for p in json.loads(out.stdout)["plugins"]}
    assert {"aligners", "baselines"} <= names


def test_select_json_with_random_strategy(tmp_path):
    args = ("select", "Should I tell my friend?", "Yes, tell them.", "No, keep quiet.", "Ask someone else.",
            "--strategy", "random", "--target", '{"care":0.5}', "--json", "--cache", str(tmp_path / "c.sqlite3"))
    result, _ = invoke(*args)
    assert result.exit_code == 0, result.output
    sel = json.loads(result.stdout)
    assert sel["strategy"] == "random" and 0 <= sel["index"] < 3
    assert sel["response"] == ["Yes, tell them.", "No, keep quiet.", "Ask someone else."][sel["index"]]
    for field in ("scores", "reasoning", "model", "cache_hits", "cache_misses", "model_calls", "ties", "seconds"):
        assert field in sel
    again, _ = invoke(*args)
    assert json.loads(again.stdout)["index"] == sel["index"]


def test_select_target_from_a_json_file(tmp_path):
    target = tmp_path / "target.json"
    target.write_text(json.dumps({"values": {"care": 0.2, "fairness": 0.9}, "weights": {"care": 1}}))
    result, _ = invoke("select", "Q?", "a", "b", "--strategy", "random", "--target", str(target), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["index"] in (0, 1)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--target", "{care: 0.5}"], ["not valid JSON", '{"care": 0.8}']),
        (["--target", '{"care": 1.5}'], ["InvalidTargetError", "'care'", "[0, 1]"]),
        (["--target", '{"care": "NaN"}'], ["InvalidTargetError", "not NaN"]),
        (["--target", '{"values": {"care": 0.5}, "weights": {"care": -1}}'], ["InvalidTargetError", "non-negative"]),
        (["--target", '{"care": 0.5}', "--strategy", "nope"], ["UnknownPluginError", "'nope'", "random"]),
        (["--target", '{"care": 0.5}', "--aligner", "nope"], ["UnknownPluginError", "euclidean"]),
        (["--target", '{"care": 0.5}', "--backend", "nope"], ["UnknownPluginError", "transformers"]),
        ([], ["exactly one of --target"]),
        (["--target", '{"care": 0.5}', "--perspective", "Duty"], ["exactly one of --target"]),
    ],
)
def test_select_bad_input_exit_code_2_and_a_clear_message(args, words):
    result, out = invoke("select", "Q?", "first answer", "second answer", "--strategy", "random", *args)
    assert result.exit_code == 2, out
    assert "Traceback" not in out
    flat = " ".join(out.split())
    for w in words:
        assert w in flat, (w, out)


@pytest.mark.parametrize("responses, word", [(["only one"], "at least two"), (["same", "same"], "identical")])
def test_select_bad_scenario(responses, word):
    result, out = invoke("select", "Q?", *responses, "--strategy", "random", "--target", '{"care": 0.5}')
    assert result.exit_code == 2 and "InvalidScenarioError" in out and word in " ".join(out.split())


def test_perspective_to_attribute_only_strategy_via_cli():
    # comparative-regression (or any attribute-only strategy) refuses a perspective, exit 2
    from steerkit import registry
    from steerkit.strategy import AttributeStrategy

    attr_only = sorted(n for n, f in registry("strategy").items()
                       if isinstance(f, type) and issubclass(f, AttributeStrategy))
    if not attr_only:  # nothing attribute-only installed: the assertion below says so
        pytest.fail("no attribute-only strategy registered to test with")
    result, out = invoke("select", "Q?", "a", "b", "--strategy", attr_only[0], "--perspective", "Right to life")
    assert result.exit_code == 2, out
    assert "UnsupportedTargetError" in out and "Traceback" not in out


def test_bad_input_from_a_real_process_has_no_traceback():
    import os

    env = dict(os.environ, STEERKIT_PLUGINS="aligners,baselines")  # keep the process start short
    out = subprocess.run(
        [sys.executable, "-m", "steerkit.cli", "select", "Q?", "a", "b", "--strategy", "random", "--target", '{"care": 2}'],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "InvalidTargetError" in out.stderr
