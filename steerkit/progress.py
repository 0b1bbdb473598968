"""Progress display for long work: a rich bar on a terminal; elsewhere (CI logs, nohup, pipes)
a plain line on stderr at most every ``LOG_EVERY_SECONDS``, so a long run never looks hung
and short runs print nothing."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

LOG_EVERY_SECONDS = 30.0


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows a rich bar on a terminal, periodic lines otherwise."""
    if not enabled or total <= 0:
        yield lambda n=1: None
        return
    if not sys.stderr.isatty():
        with _log_lines(description, total) as advance:
            yield advance
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)


@contextlib.contextmanager
def _log_lines(description: str, total: int) -> Iterator[Callable[[int], None]]:
    start = last = time.monotonic()
    done = 0
    printed = False

    def line() -> None:
        elapsed = time.monotonic() - start
        eta = elapsed / done * (total - done) if done else float("nan")
        print(f"{description}: {done}/{total} ({100 * done / total:.0f}%), {elapsed:.0f}s elapsed, "
              f"~{eta:.0f}s left", file=sys.stderr, flush=True)

    def advance(n: int = 1) -> None:
        nonlocal done, last, printed
        done += n
        now = time.monotonic()
        if now - last >= LOG_EVERY_SECONDS:
            last, printed = now, True
            line()

    yield advance
    if printed and done:
        line()
