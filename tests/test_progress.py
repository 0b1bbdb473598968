"""Progress off a terminal: periodic plain lines on stderr (a long CI or nohup run never looks
hung), nothing for short runs, nothing when disabled."""

import steerkit
from steerkit import progress


def test_plain_lines_off_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.0)
    with steerkit.plugin.progress_bar("scoring", total=4) as advance:
        for _ in range(4):
            advance(1)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("scoring: 1/4 (25%)") and err[-1].startswith("scoring: 4/4 (100%)")


def test_short_runs_and_disabled_progress_print_nothing(capsys):
    with steerkit.plugin.progress_bar("scoring", total=3) as advance:  # well under LOG_EVERY_SECONDS
        advance(3)
    with steerkit.plugin.progress_bar("scoring", total=3, enabled=False) as advance:
        advance(3)
    assert capsys.readouterr().err == ""
