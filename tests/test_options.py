"""Declared strategy options (issue 11, part 2): values are checked when a strategy is built
and when assigned, unknown options are refused with the valid list, and the cache identity is
derived from the options that change outputs, so forgetting one is hard. Also the two levels
of public API: ``steerkit.plugin`` for plugin authors, moved names still resolve (deprecated)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings

import pytest

import steerkit
from steerkit.plugin import AttributeStrategy, Configurable, Option, ResponseScore, declared_options
from tests.fakes import FakeBackend


class Scored(Configurable, AttributeStrategy):
    name = "tmp-scored"
    k = Option(int, 5, minimum=0, help="examples per prompt")
    temperature = Option(float, 0.7, minimum=0.0, maximum=2.0, affects_output=lambda s: s.samples > 1)
    style = Option(str, "short", choices=("short", "long"))
    verbose = Option(bool, False, affects_output=False)

    def score_jobs(self, run, jobs):
        prompts = [[{"role": "user", "content": f"{self.style} {j.attribute}"}] for j in jobs]
        run.generate(prompts)
        return [[ResponseScore(min(1.0, self.k / 10)) for _ in j.responses] for j in jobs]


class Longer(Scored):
    name = "tmp-longer"
    style = Option(str, "long", choices=("short", "long"))  # redeclared: a new default
    extra = Option(int, 1)


def test_declared_values_defaults_and_the_cache_identity():
    s = Scored(k=3)
    assert (s.k, s.temperature, s.style, s.verbose, s.samples) == (3, 0.7, "short", False, 1)
    assert s.options == {"k": 3, "temperature": 0.7, "style": "short", "verbose": False}
    assert s.cache_options() == {"k": 3, "style": "short"}  # greedy: temperature does not matter
    assert Scored(k=3, samples=2).cache_options() == {"k": 3, "temperature": 0.7, "style": "short"}
    assert Scored(k=3, verbose=True).fingerprint() == s.fingerprint()  # affects_output=False
    assert Scored(k=4).fingerprint() != s.fingerprint()
    assert Scored(k=3, style="long").fingerprint() != s.fingerprint()
    assert Scored(k=3, temperature=0.1).fingerprint() == s.fingerprint()
    assert Scored(k=3, temperature=0.1, samples=2).fingerprint() != Scored(k=3, samples=2).fingerprint()
    s.k = 4  # a later change is in the identity at once
    assert s.fingerprint() == Scored(k=4).fingerprint() and s.options["k"] == 4


def test_subclasses_inherit_and_redeclare_options():
    assert list(declared_options(Longer)) == ["k", "temperature", "style", "verbose", "extra"]
    assert Longer().style == "long" and Scored().style == "short"
    assert Longer().cache_options() == {"k": 5, "style": "long", "extra": 1}


@pytest.mark.parametrize("options, words", [
    ({"k": -1}, ["k=-1", "whole number >= 0", "examples per prompt"]),
    ({"k": 2.5}, ["k=2.5", "whole number"]),
    ({"k": True}, ["k=True", "whole number"]),
    ({"k": "3"}, ["k='3'", "whole number"]),
    ({"temperature": 3.0}, ["temperature=3.0", "in [0, 2]"]),
    ({"temperature": float("nan")}, ["temperature=nan"]),
    ({"style": "medium"}, ["style='medium'", "short, long"]),
    ({"verbose": "yes"}, ["verbose='yes'", "true or false"]),
    ({"kk": 1}, ["unknown options ['kk']", "k, samples, style, temperature, verbose"]),
    ({"samples": 0}, ["samples=0", "whole number >= 1"]),
])
def test_bad_values_and_unknown_names_are_refused_with_the_fix(options, words):
    with pytest.raises(steerkit.InvalidOptionError) as exc:
        Scored(**options)
    for w in words:
        assert w in str(exc.value), (w, str(exc.value))


def test_assignment_is_checked_too():
    s = Scored()
    with pytest.raises(steerkit.InvalidOptionError, match="k=-2"):
        s.k = -2
    assert s.k == 5
    assert Scored(k=7.0).k == 7 and isinstance(Scored(k=7.0).k, int)  # 7.0 is a whole number


def test_convert_normalises_and_reports_its_own_message():
    def positive_list(v):
        if not v:
            raise ValueError("pass at least one level")
        return tuple(sorted(v))

    class Levels(Configurable, AttributeStrategy):
        name = "tmp-levels"
        levels = Option(list, [0.0, 1.0], convert=positive_list)

        def score_jobs(self, run, jobs):
            return []

    assert Levels(levels=[1.0, 0.5]).levels == (0.5, 1.0)
    with pytest.raises(steerkit.InvalidOptionError, match="levels=\\[\\] is not allowed; pass at least one level"):
        Levels(levels=[])


def test_mutable_defaults_are_copied_per_instance():
    class Tags(Configurable, AttributeStrategy):
        name = "tmp-tags"
        tags = Option(list, [])

        def score_jobs(self, run, jobs):
            return []

    a, b = Tags(), Tags()
    a.tags.append("x")
    assert b.tags == [] and Tags().tags == [] and a.cache_options() == {"tags": ["x"]}


def test_an_option_a_base_class_takes_too_reaches_it_as_declared():
    class Sampled(Configurable, AttributeStrategy):
        name = "tmp-sampled"
        samples = Option(int, 3, minimum=1, help="samples per attribute")

        def score_jobs(self, run, jobs):
            return []

    assert Sampled().samples == 3 and Sampled(samples=2).samples == 2
    assert Sampled().cache_options() == {"samples": 3}
    with pytest.raises(steerkit.InvalidOptionError, match="samples=0 is not allowed; pass a whole number >= 1"):
        Sampled(samples=0)


def test_the_signature_lists_the_options_for_the_steerer():
    params = inspect.signature(Scored).parameters
    assert list(params) == ["k", "temperature", "style", "verbose", "samples"]
    assert params["k"].default == 5 and params["samples"].default == 1

    class OwnInit(Scored):  # a subclass with its own __init__: that signature is the truth
        def __init__(self, path: str = "", **options):
            super().__init__(**options)
            self.path = path

    assert list(inspect.signature(OwnInit).parameters) == ["path", "options"]
    assert OwnInit(path="x", k=2).k == 2

    class Wrapped(Scored):  # its own __init__ takes an option by name and passes it on
        def __init__(self, k: int = 1, **options):
            super().__init__(k=k + 1, **options)

    w = Wrapped(k=2)
    w.k = 5
    assert w.options == {"k": 5, "temperature": 0.7, "style": "short", "verbose": False}  # no stale copy


def test_through_the_steerer_registry_cache_and_a_real_sqlite_file(tmp_path):
    class Plugin:
        @steerkit.plugin.hookimpl
        def register_strategies(self, register):
            register("tmp-scored", Scored)

    name = steerkit.plugin.register_plugin(Plugin(), name="tmp-scored-plugin")
    try:
        with pytest.raises(steerkit.InvalidOptionError, match="unknown options \\['kk'\\]"):
            steerkit.Steerer("tmp-scored", backend=FakeBackend(), cache=False, kk=1)
        runs = []
        for options in ({"k": 3}, {"k": 3, "verbose": True}, {"k": 4}):
            backend = FakeBackend()
            s = steerkit.Steerer("tmp-scored", backend=backend, cache=tmp_path / "c.sqlite3", progress=False, **options)
            table = s.score([("Q?", ["a", "b"])], ["care"])
            runs.append((len(backend.prompts_seen), table.cache_hits, float(table.scores[0, 0, 0])))
    finally:
        steerkit.plugin.unregister_plugin(name)
    # verbose does not change the output: served from the cache; another k is computed anew
    assert runs == [(1, 0, 0.3), (0, 2, 0.3), (1, 0, 0.4)]


def test_strategies_without_declarations_keep_their_own_cache_options():
    class Plain(AttributeStrategy):
        name = "tmp-plain"

        def score_jobs(self, run, jobs):
            return []

    assert Plain(anything=1).cache_options() == {"anything": 1}


def test_plugin_api_and_moved_names():
    import steerkit.plugin as plugin

    assert "Steerer" in steerkit.__all__ and "RunContext" not in steerkit.__all__
    assert set(plugin.__all__).isdisjoint({"Steerer", "Scenario", "ScoreTable"})
    for name in plugin.__all__:
        assert getattr(plugin, name) is not None
    with pytest.warns(DeprecationWarning, match="steerkit.RunContext moved to steerkit.plugin.RunContext"):
        assert steerkit.RunContext is plugin.RunContext
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert steerkit.Steerer is not None and steerkit.BackendError is plugin.BackendError
    with pytest.raises(AttributeError):
        steerkit.Option  # new in steerkit.plugin: never a steerkit name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        steerkit.nope


def test_from_import_of_a_moved_name_still_works_in_a_fresh_process():
    code = ("import warnings; warnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    from steerkit import AttributeStrategy, hookimpl\n"
            "print(sorted({str(w.message).split()[0] for w in seen}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['steerkit.AttributeStrategy', 'steerkit.hookimpl']"
