"""The pluggy host (issue 2, item 2): lazy idempotent loading from the ``steerkit`` entry-point
group, built-ins as ordinary entry-point plugins, the allow-list, broken plugins reported by
name without taking the host down, ``list_plugins``, and unknown names failing early."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import steerkit
from steerkit import host
from tests.fakes import FakeBackend

BUILTIN_ENTRY_POINTS = {"aligners", "baselines", "transformers"}


@pytest.fixture
def fresh_host(monkeypatch):
    """A host that reloads from entry points, and is reloaded cleanly for the next test."""
    monkeypatch.delenv(host.ALLOW_LIST_ENV, raising=False)
    host.reset()
    yield host
    monkeypatch.undo()  # env and sys.path back before the host reloads
    host.reset()


def make_distribution(root: Path, dist: str, version: str, entry_points_txt: str, modules: dict[str, str]) -> Path:
    """An installed-looking distribution on a temporary path: ``*.dist-info`` plus modules."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points_txt))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    return root


def test_importing_steerkit_loads_no_plugin():
    code = (
        "import sys, steerkit\n"
        "from steerkit import host\n"
        "assert not host._loaded\n"
        "assert not [m for m in sys.modules if m.startswith(('steerkit_plugins', 'steerkit_adapters'))], sys.modules\n"
        "steerkit.plugin.registry('aligner')\n"
        "assert host._loaded and 'steerkit_plugins.aligners' in sys.modules\n"
        "print('lazy-ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "lazy-ok" in out.stdout


def test_builtins_come_through_entry_points(fresh_host):
    eps = {ep.name: ep.value for ep in entry_points(group="steerkit")}
    assert BUILTIN_ENTRY_POINTS <= set(eps)
    assert eps["aligners"] == "steerkit_plugins.aligners"
    names = {p.name for p in host.list_plugins()}
    assert BUILTIN_ENTRY_POINTS <= names
    # every registered plugin is an entry point (nothing is wired in by hand)
    assert names <= set(eps)


def test_loading_is_idempotent(fresh_host):
    host.load_plugins()
    first = [(n, id(p)) for n, p in host.pm.list_name_plugin()]
    host.load_plugins()
    steerkit.load_plugins()
    assert [(n, id(p)) for n, p in host.pm.list_name_plugin()] == first
    assert len({n for n, _ in first}) == len(first)
    infos = {p.name: p for p in host.list_plugins()}
    host.list_plugins()
    infos_again = {p.name: p for p in host.list_plugins()}
    # registering twice would list each name twice
    assert infos["aligners"].registered == {"aligner": ["euclidean", "weighted-euclidean", "manhattan"]}
    assert infos_again["aligners"].registered == infos["aligners"].registered
    assert host.plugin_errors() == {}


def test_concurrent_first_use_loads_once(fresh_host):
    errors: list[BaseException] = []

    def use() -> None:
        try:
            host.registry("strategy")
            host.list_plugins()
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = [n for n, _ in host.pm.list_name_plugin()]
    assert len(names) == len(set(names))
    assert host.plugin_errors() == {}


def test_allow_list_loads_only_named_plugins(fresh_host, monkeypatch):
    monkeypatch.setenv(host.ALLOW_LIST_ENV, "aligners")
    host.reset()
    assert [p.name for p in host.list_plugins()] == ["aligners"]
    assert set(host.registry("aligner")) == {"euclidean", "weighted-euclidean", "manhattan"}
    assert host.registry("strategy") == {}
    with pytest.raises(steerkit.UnknownPluginError, match="none registered"):
        host.lookup("strategy", "random")


def test_allow_list_with_several_names_and_spaces(fresh_host, monkeypatch):
    monkeypatch.setenv(host.ALLOW_LIST_ENV, " aligners , baselines ")
    host.reset()
    assert [p.name for p in host.list_plugins()] == ["aligners", "baselines"]


def test_empty_allow_list_loads_nothing(fresh_host, monkeypatch):
    monkeypatch.setenv(host.ALLOW_LIST_ENV, "")
    host.reset()
    assert host.list_plugins() == []
    with pytest.raises(steerkit.UnknownPluginError):
        host.lookup("aligner", "euclidean")


def test_broken_plugin_is_reported_by_name_and_host_keeps_working(fresh_host, monkeypatch, tmp_path):
    root = make_distribution(
        tmp_path / "site", "steerkit-broken-example", "1.0",
        """
        [steerkit]
        broken_example = steerkit_broken_example_mod
        """,
        {"steerkit_broken_example_mod": "raise RuntimeError('boom at import time')\n"},
    )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "steerkit_broken_example_mod", raising=False)
    host.reset()
    with pytest.warns(RuntimeWarning, match="broken_example") as record:
        host.load_plugins()
    assert "boom at import time" in str(record[0].message)
    errors = host.plugin_errors()
    assert set(errors) == {"broken_example"}
    assert "RuntimeError" in errors["broken_example"] and "boom at import time" in errors["broken_example"]
    names = {p.name for p in host.list_plugins()}
    assert "broken_example" not in names and BUILTIN_ENTRY_POINTS <= names
    # the rest of the host still works
    s = steerkit.Steerer(strategy="random", backend=FakeBackend(), cache=False, progress=False)
    sel = s.select("Q?", ["a", "b", "c"], {"care": 0.5})
    assert sel.response in ("a", "b", "c")


def test_missing_plugin_module_is_reported(fresh_host, monkeypatch, tmp_path):
    root = make_distribution(
        tmp_path / "site", "steerkit-missing-example", "1.0",
        "[steerkit]\nmissing_example = no_such_module_for_steerkit_tests\n", {},
    )
    monkeypatch.syspath_prepend(str(root))
    host.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        errors = host.plugin_errors()
    assert "ModuleNotFoundError" in errors["missing_example"]
    assert "random" in host.registry("strategy")


def test_plugin_whose_hook_raises_is_reported(fresh_host, monkeypatch, tmp_path):
    root = make_distribution(
        tmp_path / "site", "steerkit-badhook-example", "1.0",
        "[steerkit]\nbadhook_example = steerkit_badhook_example_mod\n",
        {"steerkit_badhook_example_mod": """
            import steerkit

            @steerkit.plugin.hookimpl
            def register_strategies(register):
                raise ValueError("cannot register")
            """},
    )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "steerkit_badhook_example_mod", raising=False)
    host.reset()
    with pytest.warns(RuntimeWarning, match="badhook_example"):
        strategies = host.registry("strategy")
    assert "random" in strategies
    assert "cannot register" in host.plugin_errors()["badhook_example"]


def test_third_party_entry_point_version_and_registrations(fresh_host, monkeypatch, tmp_path):
    root = make_distribution(
        tmp_path / "site", "steerkit-good-example", "9.8.7",
        "[steerkit]\ngood_example = steerkit_good_example_mod\n",
        {"steerkit_good_example_mod": """
            import numpy as np
            import steerkit

            class Longest(steerkit.plugin.Strategy):
                name = "tmp-longest"
                target_kinds = frozenset({"attributes", "perspective"})

                def select_many(self, run, scenarios, targets):
                    out = []
                    for s in scenarios:
                        i = max(range(len(s.responses)), key=lambda r: len(s.responses[r]))
                        out.append(steerkit.Selection(i, s.responses[i], [{} for _ in s.responses], [], self.name, "none"))
                    return out

            def far(scores, values, weights):
                return np.zeros((values.shape[0],) + scores.shape[:2])

            @steerkit.plugin.hookimpl
            def register_strategies(register):
                register("tmp-longest", Longest)

            @steerkit.plugin.hookimpl
            def register_aligners(register):
                register("tmp-zero", far)
            """},
    )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "steerkit_good_example_mod", raising=False)
    host.reset()
    info = {p.name: p for p in host.list_plugins()}["good_example"]
    assert info.version == "9.8.7"
    assert info.module == "steerkit_good_example_mod"
    assert info.registered == {"strategy": ["tmp-longest"], "aligner": ["tmp-zero"]}
    # built-ins report their distribution's version
    assert info_version(host, "aligners") == steerkit.__version__
    sel = steerkit.Steerer(strategy="tmp-longest", backend=FakeBackend(), cache=False).select(
        "Q?", ["short", "the longest one", "mid one"], steerkit.Perspective("anything")
    )
    assert sel.index == 1


def info_version(h, name: str) -> str | None:
    return {p.name: p for p in h.list_plugins()}[name].version


def test_register_plugin_at_run_time(fresh_host):
    class Extra:
        @steerkit.plugin.hookimpl
        def register_aligners(self, register):
            register("tmp-runtime", lambda s, v, w: None)

    name = steerkit.plugin.register_plugin(Extra(), name="tmp-runtime-plugin")
    try:
        assert "tmp-runtime" in steerkit.plugin.registry("aligner")
        assert {p.name: p for p in host.list_plugins()}[name].registered == {"aligner": ["tmp-runtime"]}
    finally:
        steerkit.plugin.unregister_plugin(name)
    assert "tmp-runtime" not in steerkit.plugin.registry("aligner")


class SpyBackendFactory:
    """A registered backend whose construction we can observe."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model=None, **options):
        self.calls += 1
        return FakeBackend(model)


@pytest.fixture
def spy_backend(fresh_host):
    spy = SpyBackendFactory()

    class SpyPlugin:
        @steerkit.plugin.hookimpl
        def register_backends(self, register):
            register("spy", spy)

    name = steerkit.plugin.register_plugin(SpyPlugin(), name="spy-plugin")
    yield spy
    steerkit.plugin.unregister_plugin(name)


@pytest.mark.parametrize(
    "kwargs, kind, known",
    [
        ({"strategy": "nope", "backend": "spy"}, "strategy", {"random", "oracle", "cot"}),
        ({"strategy": "random", "backend": "nope"}, "backend", {"transformers", "spy"}),
        ({"strategy": "random", "backend": "spy", "aligner": "nope"}, "aligner", {"euclidean", "weighted-euclidean", "manhattan"}),
    ],
)
def test_unknown_names_list_the_known_ones_before_any_backend_is_built(spy_backend, kwargs, kind, known):
    with pytest.raises(steerkit.UnknownPluginError) as exc:
        steerkit.Steerer(cache=False, **kwargs)
    err = exc.value
    assert err.kind == kind and err.name == "nope"
    assert known <= set(err.known)
    msg = str(err)
    assert f"unknown {kind} 'nope'" in msg and "steerkit plugins" in msg
    for name in known:
        assert name in msg
    assert spy_backend.calls == 0  # no backend (let alone a model) was built


def test_unknown_names_through_lookup(fresh_host):
    for kind in host.KINDS:
        with pytest.raises(steerkit.UnknownPluginError, match=f"unknown {kind} 'nope'"):
            steerkit.plugin.lookup(kind, "nope")
    with pytest.raises(steerkit.UnknownPluginError) as exc:
        steerkit.ScoreTable.empty([steerkit.Scenario("Q", ("a", "b"))], ["x"]).align({"x": 0.5}, aligner="nope")
    assert "euclidean" in str(exc.value)


def test_unknown_plugin_message_plural_is_english():
    err = steerkit.UnknownPluginError("strategy", "nope", ["random"])
    assert "Known strategies: random" in str(err)


# -- CLI commands from plugins, and name clashes -----------------------------------------------

def _group():
    import click

    @click.group()
    def group():
        pass

    @group.command("plugins")
    def plugins():
        pass

    return group


def test_a_plugin_whose_register_commands_raises_does_not_take_the_cli_down(fresh_host):
    import click

    class Good:
        @steerkit.plugin.hookimpl
        def register_commands(self, cli):
            @cli.command("tmp-good")
            def good():
                click.echo("good ran")

    class Bad:
        @steerkit.plugin.hookimpl
        def register_commands(self, cli):
            @cli.command("tmp-half")
            def half():
                pass

            raise RuntimeError("no commands today")

    steerkit.plugin.register_plugin(Good(), name="tmp-good-commands")
    steerkit.plugin.register_plugin(Bad(), name="tmp-bad-commands")
    group = _group()
    with pytest.warns(RuntimeWarning, match="tmp-bad-commands.*register_commands failed.*no commands today"):
        host.add_cli_commands(group)
    assert "no commands today" in host.plugin_errors()["tmp-bad-commands"]
    assert "tmp-good" in group.commands and "tmp-half" not in group.commands  # nothing half-registered
    info = {p.name: p for p in host.list_plugins()}
    assert info["tmp-good-commands"].registered == {"command": ["tmp-good"]}
    assert "command" not in info["tmp-bad-commands"].registered
    # the built-in plugins' commands are recorded by name too
    assert {"eval", "realign"} <= set(info["eval_cli"].registered["command"])
    from click.testing import CliRunner

    assert CliRunner().invoke(group, ["tmp-good"]).output == "good ran\n"
    # adding again (a second CLI start in one process) is not a clash with itself
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*tmp-bad-commands")
        host.add_cli_commands(group)
    assert {p.name: p for p in host.list_plugins()}["tmp-good-commands"].registered == {"command": ["tmp-good"]}


def test_name_clashes_keep_the_first_plugin_and_are_reported(fresh_host):
    def mine(scores, values, weights):
        raise AssertionError("the clashing aligner must not be used")

    class Clashing:
        @steerkit.plugin.hookimpl
        def register_aligners(self, register):
            register("euclidean", mine)  # taken by the built-in 'aligners'
            register("tmp-own", mine)

        @steerkit.plugin.hookimpl
        def register_commands(self, cli):
            @cli.command("plugins")
            def hijack():
                pass

    steerkit.plugin.register_plugin(Clashing(), name="tmp-clashing")
    with pytest.warns(RuntimeWarning, match="aligner 'euclidean' is registered by both 'aligners' and 'tmp-clashing'"):
        reg = steerkit.plugin.registry("aligner")
    assert reg["euclidean"] is not mine and reg["tmp-own"] is mine
    clashes = steerkit.plugin.plugin_clashes()
    assert [(c.kind, c.name, c.kept, c.ignored) for c in clashes] == [("aligner", "euclidean", "aligners", "tmp-clashing")]
    info = {p.name: p for p in host.list_plugins()}
    assert info["tmp-clashing"].registered == {"aligner": ["tmp-own"]}  # only what it really owns
    assert "euclidean" in info["aligners"].registered["aligner"]
    group = _group()
    original = group.commands["plugins"]
    with pytest.warns(RuntimeWarning, match="command 'plugins' is registered by both 'steerkit' and 'tmp-clashing'"):
        host.add_cli_commands(group)
    assert group.commands["plugins"] is original
    assert ("command", "plugins", "steerkit", "tmp-clashing") in [(c.kind, c.name, c.kept, c.ignored) for c in steerkit.plugin.plugin_clashes()]


def test_entry_points_load_built_ins_first_then_by_name(fresh_host, monkeypatch, tmp_path):
    # "aaa_clash" sorts before every built-in, and still loses "random" to the built-in baselines
    root = make_distribution(
        tmp_path / "site", "steerkit-aaa-clash", "1.0",
        "[steerkit]\naaa_clash = steerkit_aaa_clash_mod\n",
        {"steerkit_aaa_clash_mod": """
            import steerkit

            class Mine(steerkit.plugin.Strategy):
                name = "random"

                def select_many(self, run, scenarios, targets):
                    raise AssertionError("not this one")

            @steerkit.plugin.hookimpl
            def register_strategies(register):
                register("random", Mine)
            """},
    )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "steerkit_aaa_clash_mod", raising=False)
    host.reset()
    host.load_plugins()
    names = [n for n, _ in host.pm.list_name_plugin()]
    assert names.index("aaa_clash") > names.index("baselines")
    with pytest.warns(RuntimeWarning, match="strategy 'random'.*'baselines' keeps it"):
        assert steerkit.plugin.lookup("strategy", "random").__module__ == "steerkit_plugins.baselines"
    assert steerkit.plugin.plugin_errors() == {}


# -- built-ins always win; all or nothing per hook; one entry-point name per distribution -------

@pytest.mark.parametrize("flag", ["trylast", "tryfirst"])
def test_hook_ordering_flags_cannot_replace_a_built_in(fresh_host, flag):
    """pluggy calls ``trylast`` implementations first in its list: the host must read hooks in
    load order, or a plugin's flag would take a built-in's name."""
    import click

    def mine(scores, values, weights):
        raise AssertionError("a plugin must not replace the built-in aligner")

    class Flagged:
        @steerkit.plugin.hookimpl(**{flag: True})
        def register_aligners(self, register):
            register("euclidean", mine)

        @steerkit.plugin.hookimpl(**{flag: True})
        def register_commands(self, cli):
            @cli.command("eval")
            def hijack():
                click.echo("hijacked")

    steerkit.plugin.register_plugin(Flagged(), name="tmp-flagged")
    with pytest.warns(RuntimeWarning, match="aligner 'euclidean' is registered by both 'aligners' and 'tmp-flagged'"):
        reg = steerkit.plugin.registry("aligner")
    assert reg["euclidean"] is not mine
    assert reg["euclidean"].__module__ == "steerkit_plugins.aligners"
    group = _group()
    with pytest.warns(RuntimeWarning, match="command 'eval' is registered by both 'eval_cli' and 'tmp-flagged'"):
        host.add_cli_commands(group)
    assert group.commands["eval"].callback.__module__ == "steerkit_plugins.eval_cli"
    assert "command" not in {p.name: p for p in host.list_plugins()}["tmp-flagged"].registered


def test_a_hook_that_raises_keeps_none_of_its_registrations(fresh_host):
    def half(scores, values, weights):
        raise AssertionError("registered by a hook that then failed")

    class Half:
        @steerkit.plugin.hookimpl
        def register_aligners(self, register):
            register("tmp-half", half)
            raise RuntimeError("failed after one registration")

    steerkit.plugin.register_plugin(Half(), name="tmp-half-plugin")
    with pytest.warns(RuntimeWarning, match="tmp-half-plugin.*register_aligners failed"):
        reg = steerkit.plugin.registry("aligner")
    assert "tmp-half" not in reg and "euclidean" in reg
    assert "failed after one registration" in host.plugin_errors()["tmp-half-plugin"]
    assert {p.name: p for p in host.list_plugins()}["tmp-half-plugin"].registered == {}
    with pytest.raises(steerkit.UnknownPluginError):
        steerkit.plugin.lookup("aligner", "tmp-half")
    steerkit.plugin.unregister_plugin("tmp-half-plugin")  # gone: its failure is no longer reported
    assert "tmp-half-plugin" not in host.plugin_errors()


def test_two_distributions_with_one_entry_point_name_are_reported(fresh_host, monkeypatch, tmp_path):
    for dist in ("steerkit-twin-b", "steerkit-twin-a"):  # b first on sys.path: the name decides, not the path
        mod = dist.replace("-", "_") + "_mod"
        root = make_distribution(
            tmp_path / dist, dist, "1.0", f"[steerkit]\ntwin_example = {mod}\n",
            {mod: f"""
                import steerkit

                @steerkit.plugin.hookimpl
                def register_aligners(register):
                    register("tmp-{dist}", lambda s, v, w: None)
                """},
        )
        monkeypatch.syspath_prepend(str(root))
        monkeypatch.delitem(sys.modules, mod, raising=False)
    host.reset()
    with pytest.warns(RuntimeWarning, match="plugin 'twin_example' is registered by both 'steerkit-twin-a' "
                                            "and 'steerkit-twin-b'.*uninstall one"):
        host.load_plugins()
    assert ("plugin", "twin_example", "steerkit-twin-a", "steerkit-twin-b") in [
        (c.kind, c.name, c.kept, c.ignored) for c in steerkit.plugin.plugin_clashes()]
    reg = steerkit.plugin.registry("aligner")
    assert "tmp-steerkit-twin-a" in reg and "tmp-steerkit-twin-b" not in reg
