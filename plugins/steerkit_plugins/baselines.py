"""Baselines that need no model: ``random`` (seeded, reproducible) and ``oracle`` (reads the
gold labels; for evaluation only). Unknown options are an InvalidOptionError."""

from __future__ import annotations

import numpy as np

import steerkit
from steerkit import AttributeTarget, ScoreTable, Selection
from steerkit.plugin import Strategy

from .attribute_eval import first_choice
from .options import int_option, refuse_unknown


class RandomChoice(Strategy):
    """Uniform random choice, reproducible per scenario and seed."""

    name = "random"

    def __init__(self, seed: int = 0, **options):
        refuse_unknown(self, options)
        seed = int_option("random", "seed", seed, 0, "any seed, e.g. 0")
        super().__init__(seed=seed)
        self.seed = seed

    def select_many(self, run, scenarios, targets):
        out = []
        for s in scenarios:
            rng = np.random.default_rng([self.seed, int(s.key[:8], 16)])
            idx = int(rng.integers(len(s.responses)))
            out.append(
                Selection(idx, s.responses[idx], [{} for _ in s.responses], [], self.name, "none", scenario_id=s.id)
            )
        return out


class Oracle(Strategy):
    """Picks using gold labels (attribute targets) or ``meta['gold']`` (perspective items)."""

    name = "oracle"

    def __init__(self, **options):
        refuse_unknown(self, options)
        super().__init__()

    def select_many(self, run, scenarios, targets):
        out = []
        for s, target in zip(scenarios, targets):
            if isinstance(target, AttributeTarget):
                if s.labels is None:
                    raise steerkit.UnknownAttributeError(f"oracle needs labels; scenario {s.label!r} has none")
                table = ScoreTable.from_labels([s], target.attributes)
                sel = table.selections(target, run.aligner)[0]
                # pick and tie as evaluation judges gold (exact, the reference's arithmetic): a 1e-9
                # tolerance would call 2-decimal labels at 0.16999... and 0.17 a tie and lose points
                idx, tied = first_choice(table, [target], run.aligner)
                sel.index = int(idx[0, 0])
                sel.response = s.responses[sel.index]
                sel.ties = [int(j) for j in np.flatnonzero(tied[0, 0]) if j != sel.index]
                sel.strategy, sel.model = self.name, "gold"
                out.append(sel)
            else:
                gold = s.meta.get("gold")
                if gold is None:
                    raise steerkit.UnknownAttributeError(f"oracle needs meta['gold']; scenario {s.label!r} has none")
                out.append(Selection(int(gold), s.responses[int(gold)], [{} for _ in s.responses], [], self.name, "gold", scenario_id=s.id))
        return out


@steerkit.plugin.hookimpl
def register_strategies(register):
    register("random", RandomChoice)
    register("oracle", Oracle)
