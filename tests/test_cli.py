"""The command line (issue 2, item 9): ``steerkit plugins`` (table and --json), ``steerkit
select`` with --json, and bad input ending in exit code 2 with one clear line, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import steerkit
from steerkit import cli as cli_module

BUILTIN_ALIGNERS = {"euclidean", "weighted-euclidean", "manhattan"}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STEERKIT_CACHE", str(tmp_path / "cache" / "scores.sqlite3"))
    monkeypatch.delenv("STEERKIT_PLUGINS", raising=False)


def invoke(*args: str):
    steerkit.host.ensure_cli_commands(cli_module.cli)  # the plugins' commands, as `steerkit` adds them
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
    from steerkit.plugin import registry
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

    env = dict(os.environ, STEERKIT_PLUGINS="aligners,baselines,select_cli")  # keep the process start short
    out = subprocess.run(
        [sys.executable, "-m", "steerkit.cli", "select", "Q?", "a", "b", "--strategy", "random", "--target", '{"care": 2}'],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "InvalidTargetError" in out.stderr


def test_plugins_lists_the_commands_each_plugin_added():
    result, out = invoke("plugins", "--json")
    by_name = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert {"eval", "realign"} <= set(by_name["eval_cli"]["registered"]["command"])
    assert by_name["select_cli"]["registered"] == {"command": ["select", "demo"]}
    assert json.loads(result.stdout)["clashes"] == []
    _, table = invoke("plugins")
    assert "commands only" not in table
    assert "command: eval" in " ".join(table.split())


def test_select_and_demo_come_from_a_plugin_the_allow_list_can_leave_out():
    """The host's own CLI is only ``plugins``; without the select_cli plugin, select is unknown."""
    import os

    env = dict(os.environ, STEERKIT_PLUGINS="aligners,baselines")
    out = subprocess.run([sys.executable, "-m", "steerkit.cli", "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and "plugins" in out.stdout
    assert "select" not in out.stdout and "demo" not in out.stdout
    out = subprocess.run([sys.executable, "-m", "steerkit.cli", "select", "Q?", "a", "b"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 2 and "No such command 'select'" in out.stderr


def test_ctrl_c_prints_one_line_and_exits_130():
    @cli_module.cli.command("tmp-interrupted")
    def interrupted():
        raise KeyboardInterrupt

    try:
        result, out = invoke("tmp-interrupted")
    finally:
        del cli_module.cli.commands["tmp-interrupted"]
    assert result.exit_code == 130
    assert "Traceback" not in out and "Aborted" not in out
    assert "interrupted: results computed so far are in the cache; rerun the same command to resume" in " ".join(out.split())


MINI_DEMO = {
    "targets": [{"helpfulness": 1.0}, {"helpfulness": 0.0}],
    "scenarios": [{
        "id": "reverse-list",
        "question": "How do I reverse a list in Python?",
        "responses": ["Use my_list.reverse() in place, or my_list[::-1] for a reversed copy.",
                      "You cannot reverse lists in Python."],
    }],
    "pool": [{
        "question": "What is the boiling point of water at sea level?",
        "responses": ["100 degrees Celsius (212 degrees Fahrenheit).", "It boils when it gets hot enough."],
        "labels": [{"helpfulness": 1.0}, {"helpfulness": 0.25}],
        "reasonings": [{"helpfulness": "Exact and correct."}, {"helpfulness": "Vague, no figure."}],
    }],
}


@pytest.fixture
def demo_backends():
    """A fake backend registered as "demo-fake" that records how the demo built it."""
    from tests.fakes import FakeBackend

    built = []

    class Recording(FakeBackend):
        def __init__(self, model=None, **options):
            super().__init__(model)
            self.built_with = {"model": model, **options}
            built.append(self)

    class Plugin:
        @steerkit.plugin.hookimpl
        def register_backends(self, register):
            register("demo-fake", Recording)

    name = steerkit.plugin.register_plugin(Plugin(), name="demo-fake-plugin")
    yield built
    steerkit.plugin.unregister_plugin(name)


def test_demo_points_at_another_model_with_one_flag(tmp_path, demo_backends):
    """--backend and --model reach the backend the demo builds; the embedded-model note is
    only shown on the embedded model; --base-url belongs to the openai backend."""
    scenarios = tmp_path / "demo.json"
    scenarios.write_text(json.dumps(MINI_DEMO))
    base = ["demo", "--scenarios", str(scenarios), "--cache", str(tmp_path / "c.sqlite3"),
            "--strategy", "zero-shot-comparative"]
    result, out = invoke(*base, "--backend", "demo-fake", "--model", "my-real-model")
    assert result.exit_code == 0, out[-2000:]
    assert demo_backends[-1].built_with == {"model": "my-real-model"}
    # the demo's pool does not turn the zero-shot strategy into a few-shot one
    assert [m["role"] for m in demo_backends[-1].prompts_seen[0]] == ["system", "user"]
    flat = " ".join(out.split())
    assert "on my-real-model" in flat and "re-aligned 1 scenarios" in flat
    assert "for trying the plumbing" not in flat
    result, out = invoke(*base, "--backend", "demo-fake", "--base-url", "http://127.0.0.1:9/v1")
    assert result.exit_code == 2 and "--base-url is for --backend openai, not --backend demo-fake" in out


def test_demo_on_an_openai_compatible_server_with_base_url(tmp_path):
    """--base-url alone runs the demo through the openai backend against a real local server."""
    from tests.test_openai_backend import Script, serve

    server, url = serve(Script())
    try:
        scenarios = tmp_path / "demo.json"
        scenarios.write_text(json.dumps(MINI_DEMO))
        result, out = invoke("demo", "--scenarios", str(scenarios), "--cache", str(tmp_path / "c.sqlite3"),
                             "--strategy", "zero-shot-comparative", "--base-url", url, "--model", "tiny")
    finally:
        server.shutdown()
    assert result.exit_code == 0, out[-2000:]
    flat = " ".join(out.split())
    assert "1 model calls" in flat and "with 0 model calls (counted at the backend)" in flat
    assert "for trying the plumbing" not in flat


# `steerkit` whose transformers backend says when a model call starts and then waits for the
# test's Ctrl-C. Sent at a line printed before scoring instead, the signal raced the demo: on a
# busy CI machine the demo's ~0.5 s of scoring could end first (exit 0, nothing interrupted).
# A terminal delivers Ctrl-C; a test run started in the background (`make test &`) ignores SIGINT,
# and a child inherits that, so the child takes Python's usual handler back first.
CTRL_C_INSIDE_A_MODEL_CALL = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from steerkit_adapters.transformers_backend import TransformersBackend
real = TransformersBackend.complete
def complete(self, requests):
    print("model call under way", flush=True)
    time.sleep(120)
    return real(self, requests)
TransformersBackend.complete = complete
from steerkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:example pool has no example")  # a one-example pool, on purpose
def test_demo_on_the_embedded_model_counts_calls_at_the_backend(tmp_path, monkeypatch):
    """The real demo: Ctrl-C during the first run exits 130 with one line; a full run scores the
    first target with one model call (one scenario x one attribute), re-aligns with 0 calls
    counted at the backend; a second run takes every score from the cache."""
    import os
    import signal

    scenarios = tmp_path / "demo.json"
    scenarios.write_text(json.dumps(MINI_DEMO))
    cache = tmp_path / "demo.sqlite3"
    args = ["demo", "--scenarios", str(scenarios), "--cache", str(cache)]
    # the converted model lives in the user's cache dir (converting it again here costs a minute)
    env = {k: v for k, v in os.environ.items() if k not in ("STEERKIT_CACHE_DIR", "STEERKIT_CACHE")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_INSIDE_A_MODEL_CALL, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if "model call under way" in line:  # inside scoring, a batch in flight: the demo cannot end first
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "rerun the same command to resume" in " ".join(err.split())

    monkeypatch.delenv("STEERKIT_CACHE_DIR")
    result, out = invoke(*args)
    assert result.exit_code == 0, out[-3000:]
    flat = " ".join(out.split())
    assert "scored 1 scenarios × 1 attributes" in flat and "1 model calls · cache 0 hits / 2 misses" in flat
    assert "re-aligned 1 scenarios" in flat and "with 0 model calls (counted at the backend)" in flat
    assert "· strategy comparative-regression · model SmolLM2-135M-Instruct" in flat
    assert "model calls · cache 0 hits / 0 misses · 0.00s" not in flat  # no per-selection zeros
    assert "the embedded 135M model is for trying the plumbing" in flat and "--model PATH|NAME" in flat
    assert "--base-url URL" in flat

    again, out2 = invoke(*args)
    flat2 = " ".join(out2.split())
    assert again.exit_code == 0 and "0 model calls · cache 2 hits / 0 misses" in flat2
    assert "with 0 model calls (counted at the backend)" in flat2
