"""The ``steerkit`` command group: ``plugins`` here, every other command from a plugin
(``select``/``demo`` from ``steerkit_plugins.select_cli``, ``eval``/``realign`` from
``steerkit_plugins.eval_cli``); steerkit errors and Ctrl-C end as one line, not a traceback."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from . import host
from .errors import SteerkitError

console = Console()
err_console = Console(stderr=True)
INTERRUPTED = "interrupted: results computed so far are in the cache; rerun the same command to resume"


class SteerkitGroup(click.Group):
    """Turns steerkit errors into one clear line and exit code 2, and Ctrl-C into one line and
    exit code 130 (every finished batch is already committed to the cache), not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SteerkitError as exc:
            err_console.print(f"[bold red]error[/]: {type(exc).__name__}: {exc}")
            ctx.exit(2)
        except KeyboardInterrupt:
            err_console.print(f"[yellow]{INTERRUPTED}[/]")
            ctx.exit(130)


@click.group(cls=SteerkitGroup)
@click.version_option(package_name="steerkit-align")
def cli() -> None:
    """steerkit: pick the response that fits a perspective or attribute target, and say why."""


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plugins_cmd(as_json: bool) -> None:
    """List loaded plugins, their versions and what each registered (commands included)."""
    host.ensure_cli_commands(cli)  # so the listing names each plugin's commands
    infos, errors, clashes = host.list_plugins(), host.plugin_errors(), host.plugin_clashes()
    if as_json:
        click.echo(json.dumps({
            "plugins": [dataclasses.asdict(p) for p in infos],
            "errors": errors,
            "clashes": [dataclasses.asdict(c) for c in clashes],
        }, indent=2))
        return
    table = Table(title="steerkit plugins")
    for col in ("plugin", "version", "module", "registered"):
        table.add_column(col)
    for p in infos:
        reg = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(p.registered.items())) or "-"
        table.add_row(p.name, p.version or "-", p.module, reg)
    console.print(table)
    for name, err in errors.items():
        err_console.print(f"[yellow]plugin {name!r} failed:[/] {err}")
    for clash in clashes:
        err_console.print(f"[yellow]clash:[/] {clash}")


def main(argv: list[str] | None = None) -> Any:
    host.ensure_cli_commands(cli)
    return cli.main(args=argv, prog_name="steerkit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
