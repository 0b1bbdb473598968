"""``steerkit select`` and ``steerkit demo``: one selection from the command line, and the
tour that scores the example scenarios, then re-aligns them to a second target with zero
model calls, counted at the backend's door (``ModelCallCounter``)."""

from __future__ import annotations

import functools
import inspect
import json
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from steerkit import AttributeTarget, Perspective, Scenario, Selection, Steerer
from steerkit.plugin import hookimpl, lookup

console = Console()


def parse_target(target_json: str | None, perspective: str | None, category: str | None = None) -> Any:
    if bool(target_json) == bool(perspective):
        raise click.UsageError("give exactly one of --target JSON or --perspective TEXT")
    if perspective:
        return Perspective(perspective, category)
    path = Path(target_json)
    text = path.read_text() if not target_json.lstrip().startswith("{") and path.exists() else target_json
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"--target is not valid JSON ({exc}); e.g. '{{\"care\": 0.8}}'") from None
    if isinstance(data, dict) and "values" in data:
        return AttributeTarget(data["values"], data.get("weights"))
    return AttributeTarget(data)


class ModelCallCounter:
    """Counts requests that reach a backend (``complete`` and ``option_logprobs``), outside any
    strategy's bookkeeping, so a reported "0 model calls" is measured at the model's door."""

    def __init__(self, backend: Any):
        self.calls = 0
        for method in ("complete", "option_logprobs"):
            setattr(backend, method, self._counting(getattr(backend, method)))

    def _counting(self, fn: Any) -> Any:
        @functools.wraps(fn)
        def counted(requests: Any, *args: Any, **kwargs: Any) -> Any:
            requests = list(requests)
            self.calls += len(requests)
            return fn(requests, *args, **kwargs)

        return counted


def print_selection(sel: Selection, scenario_question: str, responses: list[str], title: str = "",
                    stats: bool = True) -> None:
    """A table of responses, scores and reasoning; ``stats`` adds the selection's own call and
    cache counts (off for selections taken from a ScoreTable, whose counts are the table's)."""
    table = Table(title=title or scenario_question[:100], show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("response", max_width=50)
    attrs = sorted({a for sc in sel.scores for a in sc})
    for a in attrs:
        table.add_column(a, justify="right")
    if sel.distances is not None:
        table.add_column("distance", justify="right")
    table.add_column("reasoning", max_width=60)
    for i, resp in enumerate(responses):
        mark = "[bold green]→[/]" if i == sel.index else ""
        row = [f"{mark}{i}", resp]
        row += [f"{sel.scores[i].get(a, float('nan')):.2f}" if i < len(sel.scores) else "" for a in attrs]
        if sel.distances is not None:
            row.append(f"{sel.distances[i]:.3f}")
        reason = sel.reasoning[i] if len(sel.reasoning) == len(responses) else ""
        row.append(reason)
        table.add_row(*row)
    console.print(table)
    if len(sel.reasoning) == 1:
        console.print(f"[dim]reasoning:[/] {sel.reasoning[0]}")
    tie = f", tied with {sel.ties}" if sel.ties else ""
    line = f"selected [bold]{sel.index}[/]{tie} · strategy {sel.strategy} · model {sel.model}"
    if stats:
        line += (f" · {sel.model_calls} model calls · cache {sel.cache_hits} hits / "
                 f"{sel.cache_misses} misses · {sel.seconds:.2f}s")
    console.print(line)


@hookimpl
def register_commands(cli):
    @cli.command("select")
    @click.argument("question")
    @click.argument("responses", nargs=-1, required=True)
    @click.option("--target", "target_json", help="attribute target as JSON (or a JSON file), e.g. '{\"care\": 0.8}'")
    @click.option("--perspective", help="perspective target, e.g. 'Right to life'")
    @click.option("--category", help="perspective category, e.g. 'Political ideology'")
    @click.option("--strategy", default="comparative-regression", show_default=True)
    @click.option("--backend", default="transformers", show_default=True)
    @click.option("--model", default=None, help="model path or name (default: the backend's default)")
    @click.option("--aligner", default="euclidean", show_default=True)
    @click.option("--cache", "cache_path", default=None, help="score cache file (default: user cache dir)")
    @click.option("--json", "as_json", is_flag=True, help="machine-readable output")
    def select_cmd(question, responses, target_json, perspective, category, strategy, backend, model, aligner, cache_path, as_json):
        """Select the response to QUESTION among RESPONSES that fits the target."""
        target = parse_target(target_json, perspective, category)
        scenario = Scenario(question, tuple(responses))  # validate before any model loads
        steerer = Steerer(strategy=strategy, backend=backend, model=model, aligner=aligner,
                          cache=cache_path if cache_path else True, progress=not as_json)
        sel = steerer.select_many([scenario], target)[0]
        if as_json:
            click.echo(json.dumps(sel.to_dict(), indent=2))
        else:
            print_selection(sel, question, list(responses))

    @cli.command("demo")
    @click.option("--scenarios", "scenarios_path", type=click.Path(dir_okay=False), default=None,
                  help="JSON file of scenarios (default: examples/scenarios.json)")
    @click.option("--strategy", default="comparative-regression", show_default=True)
    @click.option("--backend", default=None,
                  help="transformers (default), vllm or openai (an OpenAI-compatible server: give --base-url)")
    @click.option("--model", default=None, help="model folder, GGUF file or hub name (default: the embedded SmolLM2-135M)")
    @click.option("--base-url", default=None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (implies --backend openai)")
    @click.option("--cache", "cache_path", default=None, help="score cache file (default: user cache dir)")
    def demo_cmd(scenarios_path, strategy, backend, model, base_url, cache_path):
        """Score the example scenarios (on the embedded model unless --model/--backend/--base-url
        say otherwise), select for one target, then re-align to a second target with zero model calls."""
        if base_url and backend not in (None, "openai"):
            raise click.UsageError(f"--base-url is for --backend openai, not --backend {backend}")
        backend = backend or ("openai" if base_url else "transformers")
        embedded = backend == "transformers" and model is None
        path = Path(scenarios_path) if scenarios_path else _find_examples()
        data = json.loads(path.read_text())
        scenarios = [Scenario.coerce(s) for s in data["scenarios"]]
        first, second = (AttributeTarget(t) for t in data["targets"][:2])
        console.rule(f"[bold]steerkit demo[/]: {len(scenarios)} scenarios from {path}")
        options = {}
        factory = lookup("strategy", strategy)
        if data.get("pool") and _takes(factory, "example_pool"):
            options["example_pool"] = [
                Scenario(p["question"], tuple(p["responses"]), labels=p.get("labels"),
                         meta={"reasonings": p.get("reasonings")})
                for p in data["pool"]
            ]
            if getattr(factory, "default_k", 0):  # a small pool: fewer examples, but a zero-shot strategy stays so
                options["k"] = min(3, len(options["example_pool"]))
        steerer = Steerer(strategy=strategy, backend=backend, model=model, cache=cache_path if cache_path else True,
                          backend_options={"base_url": base_url} if base_url else None, **options)
        counter = ModelCallCounter(steerer.backend)
        console.print(f"strategy [bold]{strategy}[/] on [bold]{steerer.backend.model_name}[/], target 1: {first}")
        t0 = time.perf_counter()
        table = steerer.score(scenarios, first.attributes + [a for a in second.attributes if a not in first.attributes])
        console.print(
            f"scored {len(scenarios)} scenarios × {len(table.attributes)} attributes in "
            f"{time.perf_counter() - t0:.1f}s: {counter.calls} model calls · cache {table.cache_hits} hits / "
            f"{table.cache_misses} misses"
        )
        for s, sel in zip(scenarios, table.selections(first)):
            print_selection(sel, s.question, list(s.responses), title=f"{s.label} · target {first}", stats=False)
        console.rule(f"re-align to target 2: {second}")
        calls_before = counter.calls
        t0 = time.perf_counter()
        selections = table.selections(second)
        elapsed = time.perf_counter() - t0
        for s, sel in zip(scenarios, selections):
            console.print(f"{s.label}: → response {sel.index}: {s.responses[sel.index][:90]}")
        console.print(
            f"[bold green]re-aligned {len(scenarios)} scenarios in {elapsed * 1000:.1f} ms with "
            f"{counter.calls - calls_before} model calls[/] (counted at the backend)"
        )
        if embedded:
            console.print(EMBEDDED_NOTE)


EMBEDDED_NOTE = (
    "[yellow]note:[/] the embedded 135M model is for trying the plumbing, not for good choices; run the "
    "same demo on a real model with --model PATH|NAME (a local folder or hub name; or with --backend vllm) "
    "or --base-url URL --model NAME (an OpenAI-compatible server)"
)


def _find_examples() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = base / "examples" / "scenarios.json"
        if candidate.exists():
            return candidate
    raise click.UsageError("examples/scenarios.json not found; pass --scenarios PATH")


def _takes(factory: Any, name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
