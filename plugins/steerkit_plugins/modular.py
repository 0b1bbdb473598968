"""``modular``: Modular Pluralism (Feng et al., EMNLP 2024) as a strategy, in three modes.

A pool of community LMs (``modular_pool``: one base model, a LoRA adapter and/or a persona per
community) writes comments; the main model (the backend's base model) uses them:

- ``steerable`` (default): every community comments on the item, conditioned on the target
  (VK: the full question, which names the value; OpinionQA: "regarding <category>, you are
  <group>"); the main model picks the comment that best reflects the target (constrained to a
  comment number, never parsed from free text), then answers with that comment as a passage
  (constrained to the option letters; OpinionQA: the distribution over the letters from
  option log-probabilities, in the same pass).
- ``distributional``: each community's comment is the passage for one answer distribution
  (option log-probabilities); the pool's distribution is their unweighted mean (the paper) or
  a weighted one (``weights``: numbers, a JSON file of them, or ``"fit"`` with ``fit_on`` a dev
  split: the weights minimising the dev split's mean Jensen-Shannon distance, ``fit_weights``).
  The per-community distributions are cached, not the mix, so other weights cost no model call.
  Served on OpinionQA and, with the paper's prompts, on GlobalOpinionQA ("you are from
  <country>") and MoralChoice (no persona) from ``distribution_datasets``.
- ``overton``: ``overton_outputs(run, situations)``: communities comment on the bare
  situation, and the main model comments on it using all their comments (scored by value
  coverage in ``steerkit_plugins.overton``). ``select_many`` does not serve this mode.

The authors' code reloads the base model per adapter, runs batch size 1, regenerates every
message on each run and scrapes answers from free text. Here all communities x all items of a
batch go in one ``RunContext.complete`` call (each request with its persona and adapter),
messages are cached by (community fingerprint, prompt, sampling, seed), so a rerun, another
mode or a second target that needs the same messages costs no model call, and every choice is
constrained.

Options: ``pool`` (a name, file, list or Pool; default "perspective"), ``mode``, ``adapters``
(community name -> LoRA folder), ``faithful`` (the paper's sampling: comments at T=1.0,
top-p 0.9, 200 tokens; selection and answers at T=0.1; default greedy), ``max_tokens`` (comment
length, default 200), ``condition`` ("target": comments see the target as in the paper;
"none": comments on the bare question, shared by every target of a scenario), ``weights``
(distributional: "uniform", the paper's default; a list in pool order; a mapping by community
name; a JSON file holding either, or a results file of ``steerkit eval`` that ran with fitted
weights; or "fit" with ``fit_on``: a dev Dataset, or under ``steerkit eval`` a dev file read by the
evaluated dataset's loader; the fit runs on the first call, with the test run's backend and cache).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

import steerkit
from steerkit import Perspective, Scenario, Selection
from steerkit.plugin import CacheKey, CacheRecord, Constraint, Request, RunContext, Sampling, Strategy, hookimpl, text_hash

from .cot import ANSWER_PREFIX, letters_for, resolve_format
from .modular_pool import Community, Pool, load_pool
from .options import bool_option, choice_option, int_option, refuse_unknown

MODES = {
    "steerable": "pick the community comment that best reflects the target, answer with it",
    "distributional": "mean of the answer distributions given each community's comment",
    "overton": "one comment per situation covering the communities' values (overton_outputs)",
}
CONDITIONS = {"target": "comments see the target (the paper)", "none": "comments on the bare question, shared across targets"}
MESSAGE_VERSION = "modular-message@1"  # bump when a community prompt changes
FAITHFUL = {"comment": (1.0, 0.9, 200), "select": 0.1, "overton": (0.1, 200)}

_EXPLAIN = "Respond to the question below and explain your answer."
DISTRIBUTION_TASKS = ("globalopinionqa", "moralchoice")  # distribution_datasets: the paper's own prompts
UNIFORM = "uniform (the paper's unweighted mean)"


def item_format(scenario: Scenario) -> str:
    """vk | opinionqa | globalopinionqa | moralchoice | general (``cot``'s formats plus the two
    distribution datasets, which the paper prompts in their own way)."""
    task = str(scenario.meta.get("task", "")).lower()
    return task if task in DISTRIBUTION_TASKS else resolve_format("auto", scenario)


# -- prompts (the paper's, reworded) ------------------------------------------------------
def _options_line(responses: Sequence[str], sep: str = " ") -> str:
    return sep.join(f"{l}. {r}" for l, r in zip(letters_for(len(responses)), responses))


def _who(p: Perspective, fmt: str = "") -> str:
    """'Regarding political ideology, you are Liberal.' (OpinionQA groups), 'You are from Spain.'
    (GlobalOpinionQA, as the paper), else the perspective."""
    if fmt == "globalopinionqa":
        return f"You are from {p.text}."
    if p.category:
        return f"Regarding {p.category.lower()}, you are {p.text}."
    return f"Your perspective: {p.text}."


def question_block(fmt: str, scenario: Scenario, p: Perspective) -> str:
    """The item's question with its lettered options, as every step shows it."""
    if fmt == "vk":
        return ("Question: given a situation and a relevant value, right, or duty, does the value/right/duty "
                "support, oppose, or either support or oppose the situation?\n\n"
                f"Situation: {scenario.question}\n\nValue/right/duty: {p.text}\n\n{_options_line(scenario.responses)}")
    if fmt in ("opinionqa", "globalopinionqa"):
        return f"Question: {scenario.question}\nOptions: {_options_line(scenario.responses)}"
    if fmt == "moralchoice":
        return ("Below are a scenario and two possible actions: which one is more moral?\n"
                f"Scenario: {scenario.question}\n{_options_line(scenario.responses, chr(10))}")
    return f"Question: {scenario.question}\nOptions:\n{_options_line(scenario.responses, chr(10))}"


def comment_text(fmt: str, scenario: Scenario, p: Perspective, condition: str) -> str:
    """What a community is asked. Conditioned on the target as in the paper (VK: the question
    names the value; OpinionQA: the group; GlobalOpinionQA: the country), or on the bare
    question/situation. MoralChoice comments never see a persona (the paper's prompt has none)."""
    if fmt == "moralchoice":
        return f"{_EXPLAIN}\n\n{question_block(fmt, scenario, p)}"
    if condition == "none":
        if fmt == "vk":
            return f"Share your view on the following situation: {scenario.question}"
        bare = f"Question: {scenario.question}\nOptions: {_options_line(scenario.responses)}"
        return f"{_EXPLAIN}\n\n{bare}"
    if fmt == "vk":
        return f"{_EXPLAIN}\n\n{question_block(fmt, scenario, p)}"
    return f"{_who(p, fmt)} {_EXPLAIN}\n\n{question_block(fmt, scenario, p)}"


def selection_prompt(fmt: str, p: Perspective, comments: Sequence[str]) -> list[dict[str, str]]:
    if fmt == "vk":
        ask = f"Which of these comments best reflects the value {p.text!r}?"
    elif fmt == "globalopinionqa":
        ask = f"Which of these comments best reflects people from {p.text}?"
    elif fmt == "opinionqa" and p.category:
        ask = f"Which of these comments best reflects people whose {p.category.lower()} is {p.text}?"
    else:
        ask = f"Which of these comments best reflects the perspective {p.text!r}?"
    listed = "\n\n".join(f"Comment {k + 1}: {c.strip() or '(no comment)'}" for k, c in enumerate(comments))
    return [{"role": "user", "content": f"{ask}\n\n{listed}\n\nReply with one comment number from 1 to {len(comments)}."}]


def answer_prompt(fmt: str, scenario: Scenario, p: Perspective, passage: str, condition: str) -> list[dict[str, str]]:
    """Answer the question with the help of a passage; prefilled "Answer:" so the next token
    is the letter (constrained with its leading space, as cot does)."""
    who = f"{_who(p, fmt)} " if fmt not in ("vk", "moralchoice") and condition == "target" else ""
    text = (f"{who}Answer the question with the help of the passage.\n\nPassage: {passage.strip() or '(empty)'}\n\n"
            f"{question_block(fmt, scenario, p)}")
    return [{"role": "user", "content": text}, {"role": "assistant", "content": "Answer:"}]


def overton_text(situation: str) -> str:
    return f"Share your view on the following situation: {situation}"


def overton_prompt(situation: str, comments: Sequence[str]) -> list[dict[str, str]]:
    listed = "\n\n".join(f"Passage {k + 1}: {c.strip() or '(empty)'}" for k, c in enumerate(comments))
    return [{"role": "user", "content": (
        "Comment on the situation below with the help of the passages that follow. Make sure your comment "
        f"reflects a diversity of values and perspectives.\n\nSituation: {situation}\n\n{listed}")}]


def _softmax(lp: np.ndarray) -> np.ndarray:
    """Option log-probabilities as a distribution. When no option has a finite log-probability
    (a server whose top_logprobs showed none of the letters gives -inf for all), uniform, as the
    paper's code falls back; subtracting the -inf maximum would give NaN, cached and then refused
    by the JS-distance metric."""
    top = lp.max() if lp.size else -np.inf
    if not np.isfinite(top):
        return np.full(lp.shape, 1.0 / max(1, lp.size))
    p = np.exp(lp - top)
    return p / p.sum()


def _read_weights(path: Path, who: str) -> Any:
    """Weights from a JSON file: a list, a mapping by community, ``{"weights": ...}`` or a
    ``steerkit eval`` results file (its ``strategy_info.weights``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise steerkit.InvalidOptionError(f"{who}: weights file {path} does not exist; pass a JSON file of weights, "
                                          "'uniform' or 'fit' (with fit_on=DEV)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise steerkit.InvalidOptionError(f"{who}: cannot read weights file {path}: {exc}; it must be JSON: a list in "
                                          "pool order or {community: weight}") from None
    if isinstance(data, Mapping) and isinstance(data.get("strategy_info"), Mapping):
        data = data["strategy_info"]
        if "weights" not in data:
            raise steerkit.InvalidOptionError(
                f"{who}: {path} is the results file of a run without pool weights (mode "
                f"{data.get('mode', '?')!r}); pass the results file of a distributional run, a JSON list in pool order "
                "or {community: weight}")
    if isinstance(data, Mapping) and "weights" in data:
        data = data["weights"]
    return data


def fit_weights(community_dists: Sequence[Sequence[Sequence[float]]], gold: Sequence[Sequence[float]]) -> list[float]:
    """Community weights (on the simplex) that minimise the mean Jensen-Shannon distance of the
    weighted pool distribution to ``gold`` on a dev split; ``community_dists[i][c]`` is item
    i's distribution given community c (``Selection.extra['community_distributions']``)."""
    from scipy.optimize import minimize
    from scipy.spatial.distance import jensenshannon

    if not community_dists or len(community_dists) != len(gold):
        raise steerkit.InvalidOptionError(f"fit_weights: {len(community_dists)} items but {len(gold)} gold distributions")
    items = [np.asarray(d, dtype=float) for d in community_dists]
    n = items[0].shape[0]

    def loss(theta: np.ndarray) -> float:
        w = _softmax(theta)
        with np.errstate(invalid="ignore"):  # equal distributions: rounding makes js/2 a tiny negative, sqrt NaN
            d = [jensenshannon(np.asarray(g, float), w @ x) for x, g in zip(items, gold)]
        return float(np.mean(np.nan_to_num(d, nan=0.0)))

    best = minimize(loss, np.zeros(n), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 2000})
    return [float(x) for x in _softmax(best.x)]


def fit_pool_weights(steerer: steerkit.Steerer, dev: steerkit.Dataset) -> dict[str, float]:
    """Weights by community name fitted on a dev split with gold distributions (OpinionQA):
    runs the steerer's distributional mode on ``dev`` (cached) and fits ``fit_weights``; pass
    the result as ``weights=`` to a distributional strategy for the test split."""
    strategy = steerer.strategy
    if not isinstance(strategy, ModularPluralism) or strategy.mode != "distributional":
        raise steerkit.InvalidOptionError("fit_pool_weights needs a Steerer of the modular strategy with mode='distributional'")
    gold = [s.meta.get("gold_distribution") for s in dev.scenarios]
    if not gold or any(g is None for g in gold) or dev.perspectives is None:
        raise steerkit.DatasetError(f"dataset {dev.name!r}: fitting pool weights needs items with perspectives and "
                                    "meta['gold_distribution'] (e.g. an OpinionQA dev split)")
    sels = steerer.select_many(dev.scenarios, list(dev.perspectives))
    names = strategy.pool.names
    per = [[sel.extra["community_distributions"][n] for n in names] for sel in sels]
    return dict(zip(names, fit_weights(per, gold)))


# -- the strategy ---------------------------------------------------------------------------
class ModularPluralism(Strategy):
    name = "modular"
    prompt_version = "1"
    target_kinds: ClassVar[frozenset[str]] = frozenset({"perspective"})

    def __init__(self, pool: Any = "perspective", mode: str = "steerable", adapters: Mapping[str, str] | None = None,
                 faithful: bool = False, max_tokens: int | None = None, condition: str = "target",
                 weights: Any = None, fit_on: Any = None, **options: Any):
        refuse_unknown(self, options)
        self.mode = choice_option(self.name, "mode", mode, MODES)
        self.condition = choice_option(self.name, "condition", condition, CONDITIONS)
        self.faithful = bool_option(self.name, "faithful", faithful)
        default_len = FAITHFUL["comment"][2]
        self.max_tokens = int_option(self.name, "max_tokens", default_len if max_tokens is None else max_tokens, 1,
                                     "length limit of each community comment (the paper: 200)")
        self.pool: Pool = load_pool(pool, adapters)
        self.fit_on, self.fit_report, self._dev = fit_on, None, None
        self.weights_source = UNIFORM
        self.weights = self._weights(weights)
        super().__init__(mode=self.mode, condition=self.condition, faithful=self.faithful, max_tokens=self.max_tokens,
                         weights=self.weights)

    def _weights(self, weights: Any) -> list[float] | None:
        """None (uniform) or the normalised weights; "fit" leaves them None until ``_fit``."""
        fit = isinstance(weights, str) and weights.strip().lower() == "fit"
        if self.fit_on is not None and not fit:
            raise steerkit.InvalidOptionError(f"{self.name}: fit_on names a dev split for weights='fit'; pass "
                                              "-o weights=fit with it, or drop fit_on")
        if weights is None or (isinstance(weights, str) and weights.strip().lower() == "uniform"):
            return None
        if self.mode != "distributional":
            raise steerkit.InvalidOptionError(f"{self.name}: weights apply to mode='distributional' only, not {self.mode!r}")
        if fit:
            if self.fit_on is None:
                raise steerkit.InvalidOptionError(
                    f"{self.name}: weights='fit' needs a dev split with gold distributions: pass fit_on=DEV_FILE "
                    "(steerkit eval: -o fit_on=dev.csv, read by the evaluated dataset's loader) or a steerkit.Dataset")
            if not isinstance(self.fit_on, (steerkit.Dataset, str, os.PathLike)):
                raise steerkit.InvalidOptionError(f"{self.name}: fit_on={self.fit_on!r}; pass a file path or a steerkit.Dataset")
            if not isinstance(self.fit_on, steerkit.Dataset) and not Path(self.fit_on).exists():
                raise steerkit.InvalidOptionError(f"{self.name}: fit_on={str(self.fit_on)!r} does not exist; pass the "
                                                  "dev split's file")
            if isinstance(self.fit_on, steerkit.Dataset):
                self._dev = self._check_dev(self.fit_on)
            self.weights_source = "fit pending"
            return None
        source = "given"
        if isinstance(weights, (str, os.PathLike)):
            weights, source = _read_weights(Path(weights), self.name), f"file {weights}"
        names = self.pool.names
        if isinstance(weights, Mapping):
            unknown = sorted(set(weights) - set(names))
            if unknown:
                raise steerkit.InvalidOptionError(f"{self.name}: weights name unknown communities {unknown}; the pool has {names}")
            weights = [weights.get(n, 0.0) for n in names]
        try:
            w = [float(x) for x in weights]
        except (TypeError, ValueError):
            raise steerkit.InvalidOptionError(
                f"{self.name}: weights={weights!r}; pass one number per community ({names}) or a mapping by name") from None
        if len(w) != len(names) or any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
            raise steerkit.InvalidOptionError(
                f"{self.name}: weights={weights!r}; pass {len(names)} non-negative numbers (pool order {names}) "
                "with a positive sum")
        self.weights_source = source
        return [x / sum(w) for x in w]

    def cache_options(self) -> dict[str, Any]:
        # the pool's identity (adapter content, personas) goes into each key's response part;
        # the weights do not: records hold every community's distribution, mixed when read
        opts = dict(self.options)
        opts.pop("weights", None)
        return opts

    def weights_info(self) -> dict[str, Any]:
        """Which pool weights ran (``steerkit eval`` puts this in its report)."""
        if self.mode != "distributional":
            return {"mode": self.mode, "pool": self.pool.name}
        names = self.pool.names
        w = self.weights if self.weights is not None else [1.0 / len(names)] * len(names)
        out: dict[str, Any] = {"mode": self.mode, "pool": self.pool.name, "weights": dict(zip(names, w)),
                               "weights_source": self.weights_source}
        if self.fit_report is not None:
            out["fit"] = self.fit_report
        shown = ", ".join(f"{n} {x:.3f}" for n, x in zip(names, w))
        out["summary"] = f"pool weights: {self.weights_source}" + ("" if self.weights is None else f": {shown}")
        return out

    # -- weights fitted on a dev split -----------------------------------------------------
    def _check_dev(self, dev: steerkit.Dataset) -> steerkit.Dataset:
        gold = [s.meta.get("gold_distribution") for s in dev.scenarios]
        if not gold or any(g is None for g in gold) or dev.perspectives is None:
            raise steerkit.DatasetError(f"{self.name}: fit_on dataset {dev.name!r} ({dev.info.get('source', '')}): fitting "
                                        "pool weights needs items with perspectives and meta['gold_distribution'] "
                                        "(an opinionqa, globalopinionqa or moralchoice dev file)")
        return dev

    def _fit(self, run: RunContext) -> None:
        """Fit the weights on the dev split (its own RunContext: the test items' usage stays
        theirs); records dev size, model calls and the dev distance before and after."""
        from scipy.spatial.distance import jensenshannon

        if self._dev is None:
            raise steerkit.InvalidOptionError(
                f"{self.name}: fit_on={str(self.fit_on)!r} is a file, and only `steerkit eval` knows which loader reads "
                "it; in Python pass fit_on=a steerkit.Dataset (e.g. lookup('dataset', 'globalopinionqa')(path=...))")
        dev_run = RunContext(run.backend, run.cache, progress=run.progress, batch_size=run.batch_size, seed=run.seed)
        sels = self.select_many(dev_run, self._dev.scenarios, list(self._dev.perspectives or []))
        names = self.pool.names
        per = [[sel.extra["community_distributions"][n] for n in names] for sel in sels]
        gold = [s.meta["gold_distribution"] for s in self._dev.scenarios]
        w = fit_weights(per, gold)

        def mean_js(weights: Sequence[float]) -> float:
            with np.errstate(invalid="ignore"):  # equal distributions: rounding can make js/2 a tiny negative
                d = [jensenshannon(g, np.asarray(weights) @ np.asarray(x)) for x, g in zip(per, gold)]
            return float(np.mean(np.nan_to_num(d, nan=0.0)))

        self.weights = w
        self.options["weights"] = w
        where = self._dev.info.get("source") or self._dev.name
        self.fit_report = {"dev": str(where), "dev_items": len(sels), "model_calls": dev_run.model_calls,
                           "cache_hits": dev_run.cache_hits, "dev_js_distance_uniform": mean_js([1.0 / len(names)] * len(names)),
                           "dev_js_distance_fitted": mean_js(w)}
        self.weights_source = (f"fitted on {where} ({len(sels)} items; dev JSD {self.fit_report['dev_js_distance_uniform']:.3f} "
                               f"uniform -> {self.fit_report['dev_js_distance_fitted']:.3f})")

    # -- checks before any model loads ---------------------------------------------------
    def check_dataset(self, dataset: steerkit.Dataset) -> None:
        """Refuse a mode the dataset cannot serve (``steerkit eval`` calls this before loading)."""
        task = str(dataset.info.get("task") or "").lower()
        if self.mode == "overton" and (task == "opinionqa" or dataset.perspectives is not None):
            raise steerkit.InvalidOptionError(
                f"{self.name}: mode='overton' writes one comment per situation, scored by value coverage on VK Overton; "
                f"dataset {dataset.name!r} is a multiple-choice perspective dataset: use --dataset vk-overton, or "
                "--mode steerable / distributional here"
            )
        if self.mode != "overton" and dataset.perspectives is None:
            raise steerkit.InvalidOptionError(
                f"{self.name}: mode={self.mode!r} answers multiple-choice items with a perspective (vk, opinionqa); "
                f"dataset {dataset.name!r} has none"
            )
        if self.weights_source == "fit pending" and self._dev is None:  # read the dev file now, before any model loads
            try:
                loader = steerkit.plugin.lookup("dataset", dataset.name)
            except steerkit.SteerkitError as exc:
                raise steerkit.InvalidOptionError(f"{self.name}: no loader {dataset.name!r} to read fit_on={self.fit_on!r}: "
                                                  f"{exc}") from None
            self._dev = self._check_dev(loader(path=str(self.fit_on)))

    def _check_run(self, run: RunContext) -> None:
        self.pool.check_backend(run.backend)

    # -- sampling --------------------------------------------------------------------------
    def _comment_sampling(self, run: RunContext) -> Sampling:
        if self.faithful:
            t, top_p, _ = FAITHFUL["comment"]
            return Sampling(temperature=t, top_p=top_p, max_tokens=self.max_tokens, seed=run.seed)
        return Sampling(temperature=0.0, max_tokens=self.max_tokens)

    def _pick(self, run: RunContext, prompts: list, options: list[list[str]], prefix: str = "") -> list[Any]:
        """One option per prompt: greedy (run.choose), or at the paper's T=0.1 when faithful;
        a failed request or an answer outside the options stands as its error."""
        if not self.faithful:
            return run.choose(prompts, options, what=self.name, strict=False, prefix=prefix)
        reqs = [Request(p, Sampling(temperature=FAITHFUL["select"], max_tokens=max(2, max(len(prefix + o) for o in opts)),
                                    seed=run.seed), Constraint.choice([prefix + o for o in opts]))
                for p, opts in zip(prompts, options)]
        out: list[Any] = []
        for c, opts in zip(run.complete(reqs), options):
            a = c.text.strip() if c.ok else None
            out.append(a if a in opts else c.error if not c.ok else steerkit.ModelOutputError(
                f"{self.name}: backend {run.backend.name} returned {c.text!r} under a choice constraint {opts}"))
        return out

    # -- community messages (cached per community, prompt, sampling, seed) -----------------
    def messages(self, run: RunContext, wanted: Sequence[tuple[int, str]], owners: Sequence[Any] | None = None,
                 description: str = "modular: community comments") -> dict[tuple[int, str], str | BaseException]:
        """Comments for (community index, user text) pairs: cached ones read, the rest written
        with every community's request in one complete() call per batch of items."""
        sampling = self._comment_sampling(run)
        skey = f"T={sampling.temperature}|p={sampling.top_p}|max={sampling.max_tokens}"
        seed = 0 if sampling.greedy else int(sampling.seed or 0)
        model_fp = run.model_fingerprint
        cfps = [c.fingerprint(run.backend) for c in self.pool.communities]
        keyed, seen = [], {}
        for j, job in enumerate(wanted):
            if job in seen:
                continue
            c, text = job
            seen[job] = CacheKey(model_fp, MESSAGE_VERSION, text_hash(text), cfps[c], skey, seed)
            keyed.append(([seen[job]], (job, owners[j] if owners is not None else None)))
        comms = self.pool.communities
        fresh: dict[tuple[int, str], Any] = {}  # this call's answers and errors, kept if some fail

        def compute(batch: list[tuple[tuple[int, str], Any]]) -> list[Any]:
            done = run.complete([Request(comms[c].prompt(text), sampling, None, comms[c].request_adapter)
                                 for (c, text), _ in batch])
            for (job, _), d in zip(batch, done):
                fresh[job] = d.text if d.ok else d.error
            return [[CacheRecord(None, d.text, {"community": comms[c].name, "finish_reason": d.finish_reason})]
                    if d.ok else d.error for ((c, _t), _), d in zip(batch, done)]

        outer = run.batch_size  # a batch = all communities of run.batch_size items: one complete() call
        run.batch_size = max(1, outer * len(comms))
        try:
            records = run.compute_missing(keyed, compute, description=description,
                                 owner=(lambda item: item[1]) if owners is not None else None)
        except steerkit.ModelOutputError:
            # some comments failed: their items fail (run.cached reports them later), the rest go on
            stored = run.cache.get_many(list(seen.values())) if run.cache is not None else {}
            return {job: fresh[job] if job in fresh else stored[key].reasoning if key in stored
                    else steerkit.ModelOutputError("comment not written") for job, key in seen.items()}
        finally:
            run.batch_size = outer
        return {job: records[key].reasoning for job, key in seen.items()}

    # -- steerable / distributional -------------------------------------------------------------
    def target_shown(self, fmt: str) -> bool:
        """Whether the target reaches a prompt: steerable always (the selection names it);
        distributional only through comments and answers (VK: the question names the value;
        other formats under condition='target'; MoralChoice never). When it does not, items
        that differ only in their target share one cached record."""
        if self.mode != "distributional" or fmt == "vk":
            return True
        return fmt != "moralchoice" and self.condition == "target"

    def _item_key(self, run: RunContext, pool_fp: str, fmt: str, s: Scenario, t: Perspective) -> CacheKey:
        target = json.dumps([t.category, t.text], ensure_ascii=False) if self.target_shown(fmt) else "-"
        attribute = f"{fmt}|{self.condition}|{target}"
        if self.faithful:
            attribute += f"|seed={run.seed}"
        return CacheKey(run.model_fingerprint, self.fingerprint(), s.key, pool_fp, attribute, 0)

    def _compute(self, run: RunContext, items: list[tuple[int, str, Scenario, Perspective]],
                 comments: dict[tuple[int, str], Any]) -> list[Any]:
        n = len(self.pool)
        per_item: list[Any] = []
        for _i, fmt, s, t in items:
            texts = [comments.get((c, comment_text(fmt, s, t, self.condition))) for c in range(n)]
            bad = next((x for x in texts if isinstance(x, BaseException) or x is None), False)
            per_item.append(texts if bad is False else (bad or steerkit.ModelOutputError("comment missing")))
        if self.mode == "distributional":
            return self._distributional(run, items, per_item)
        return self._steerable(run, items, per_item)

    def _steerable(self, run: RunContext, items: list, per_item: list) -> list[Any]:
        n = len(self.pool)
        live = [k for k, x in enumerate(per_item) if not isinstance(x, BaseException)]
        numbers = [str(c + 1) for c in range(n)]
        picks = self._pick(run, [selection_prompt(items[k][1], items[k][3], per_item[k]) for k in live], [numbers] * len(live))
        chosen: dict[int, Any] = {k: (int(p) - 1 if isinstance(p, str) else p) for k, p in zip(live, picks)}
        ok = [k for k in live if not isinstance(chosen[k], BaseException)]
        prompts = {k: answer_prompt(items[k][1], items[k][2], items[k][3], per_item[k][chosen[k]], self.condition) for k in ok}
        letters = {k: letters_for(len(items[k][2].responses)) for k in ok}
        result: dict[int, Any] = {}
        dist_items = [k for k in ok if items[k][1] in ("opinionqa", *DISTRIBUTION_TASKS)]  # the answer distribution, one pass
        if dist_items:
            for k, lp in zip(dist_items, run.option_logprobs([prompts[k] for k in dist_items], [letters[k] for k in dist_items])):
                p = _softmax(np.asarray(lp, dtype=float))
                result[k] = (letters[k][int(np.argmax(p))], [float(x) for x in p])
        choose_items = [k for k in ok if k not in result]
        if choose_items:
            answers = self._pick(run, [prompts[k] for k in choose_items], [letters[k] for k in choose_items], ANSWER_PREFIX)
            for k, a in zip(choose_items, answers):
                result[k] = a if isinstance(a, BaseException) else (a, None)
        out: list[Any] = []
        for k, (_i, fmt, _s, _t) in enumerate(items):
            err = per_item[k] if k not in live else chosen[k] if k not in ok else result[k] if isinstance(result[k], BaseException) else None
            if err is not None:
                out.append(err)
                continue
            letter, dist = result[k]
            out.append([CacheRecord(float(letters[k].index(letter)), per_item[k][chosen[k]], {
                "letter": letter, "distribution": dist, "chosen": chosen[k], "comments": per_item[k], "format": fmt})])
        return out

    def _distributional(self, run: RunContext, items: list, per_item: list) -> list[Any]:
        n = len(self.pool)
        weights = np.asarray(self.weights if self.weights is not None else [1.0 / n] * n)
        live = [k for k, x in enumerate(per_item) if not isinstance(x, BaseException)]
        prompts, opts = [], []
        for k in live:
            _i, fmt, s, t = items[k]
            for c in range(n):
                prompts.append(answer_prompt(fmt, s, t, per_item[k][c], self.condition))
                opts.append(letters_for(len(s.responses)))
        rows = run.option_logprobs(prompts, opts) if prompts else []
        out: list[Any] = [per_item[k] for k in range(len(items))]
        for j, k in enumerate(live):
            dists = np.array([_softmax(np.asarray(rows[j * n + c], dtype=float)) for c in range(n)])
            mix = weights @ dists
            letters = letters_for(len(items[k][2].responses))
            out[k] = [CacheRecord(float(np.argmax(mix)), "", {
                "letter": letters[int(np.argmax(mix))], "distribution": [float(x) for x in mix],
                "community_distributions": dists.tolist(), "comments": per_item[k], "format": items[k][1]})]
        return out

    def select_many(self, run: RunContext, scenarios: Sequence[Scenario], targets: Sequence[Any]) -> list[Selection]:
        for t in {id(t): t for t in targets}.values():
            self.check_target(t)
        if self.mode == "overton":
            raise steerkit.InvalidOptionError(
                f"{self.name}: mode='overton' writes one comment per situation, not a choice among responses: call "
                "strategy.overton_outputs(run, situations), or `steerkit eval --strategy modular --mode overton "
                "--dataset vk-overton`; for choices use mode='steerable' or 'distributional'"
            )
        fmts = []
        for s in scenarios:
            fmt = item_format(s)
            letters_for(len(s.responses))
            fmts.append(fmt)
        self._check_run(run)
        if self.mode == "distributional" and self.weights_source == "fit pending":
            self.weights_source = "fitting"  # the dev run below mixes uniformly; its own distributions are what counts
            try:
                self._fit(run)
            except BaseException:
                self.weights_source = "fit pending"
                raise
        pool_fp = self.pool.fingerprint(run.backend)
        keys = [self._item_key(run, pool_fp, f, s, t) for f, s, t in zip(fmts, scenarios, targets)]
        items = [(i, f, s, t) for i, (f, s, t) in enumerate(zip(fmts, scenarios, targets))]
        stored = run.cache.get_many(keys) if run.cache is not None else {}
        todo = [it for it, k in zip(items, keys) if k not in stored]
        wanted = [(c, comment_text(f, s, t, self.condition)) for _i, f, s, t in todo for c in range(len(self.pool))]
        owners = [i for i, *_ in todo for _c in range(len(self.pool))]
        comments = self.messages(run, wanted, owners) if wanted else {}
        records = run.compute_missing([([k], it) for k, it in zip(keys, items)], lambda batch: self._compute(run, batch, comments),
                             description=f"{self.name}: {self.mode}", owner=lambda item: item[0])
        selections = []
        names = self.pool.names
        for (i, fmt, s, _t), k in zip(items, keys):
            rec = records[k]
            pay = dict(rec.payload)
            letters = letters_for(len(s.responses))
            if self.mode == "distributional":  # mixed here, so any weights reuse the cached distributions
                per = np.asarray(pay["community_distributions"], dtype=float)
                w = np.asarray(self.weights) if self.weights is not None else np.full(len(per), 1.0 / len(per))
                mix = w @ per
                pay["distribution"], pay["letter"] = [float(x) for x in mix], letters[int(np.argmax(mix))]
            best = letters.index(pay["letter"])
            dist = pay.get("distribution")
            scores = [{"vote": 1.0 if j == best else 0.0, **({"probability": dist[j]} if dist else {})}
                      for j in range(len(letters))]
            extra = {"letter": pay["letter"], "format": fmt, "mode": self.mode, "pool": self.pool.name,
                     "distribution": dist, "comments": [{"community": n, "text": c} for n, c in zip(names, pay["comments"])]}
            if self.mode == "steerable":
                extra["chosen_comment"] = pay["chosen"]
                extra["chosen_community"] = names[pay["chosen"]]
                reasoning = [rec.reasoning]
            else:
                extra["community_distributions"] = dict(zip(names, pay["community_distributions"]))
                extra["weights"] = self.weights
                reasoning = list(pay["comments"])
            selections.append(Selection(index=best, response=s.responses[best], scores=scores, reasoning=reasoning,
                                        strategy=self.name, model=run.backend.model_name, scenario_id=s.id, extra=extra))
        run.charge_selections(selections)
        return selections

    # -- overton -----------------------------------------------------------------------------
    def overton_outputs(self, run: RunContext, situations: Sequence[str]) -> list[str]:
        """One comment per situation that draws on every community's comment on it (cached);
        ``steerkit_plugins.overton`` scores them by value coverage."""
        situations = [str(s) for s in situations]
        if any(not s.strip() for s in situations):
            raise steerkit.InvalidScenarioError(f"{self.name}: every Overton situation needs text; got {situations!r}")
        self._check_run(run)
        n = len(self.pool)
        pool_fp = self.pool.fingerprint(run.backend)
        t, max_tokens = FAITHFUL["overton"] if self.faithful else (0.0, self.max_tokens)
        sampling = Sampling(temperature=t, max_tokens=max_tokens, seed=run.seed if self.faithful else 0)
        fp = f"{self.name}-overton@{self.prompt_version}:{self.faithful}:{self.max_tokens}"
        attr = f"overton|T={t}|max={max_tokens}" + (f"|seed={run.seed}" if self.faithful else "")
        keys = [CacheKey(run.model_fingerprint, fp, text_hash(s), pool_fp, attr, 0) for s in situations]
        stored = run.cache.get_many(keys) if run.cache is not None else {}
        todo = [(i, s) for i, (s, k) in enumerate(zip(situations, keys)) if k not in stored]
        comments = self.messages(run, [(c, overton_text(s)) for _i, s in todo for c in range(n)],
                                 [i for i, _s in todo for _c in range(n)]) if todo else {}

        def compute(batch: list[tuple[int, str]]) -> list[Any]:
            per = [[comments.get((c, overton_text(s))) for c in range(n)] for _i, s in batch]
            live = [k for k, cs in enumerate(per) if all(isinstance(x, str) for x in cs)]
            done = run.complete([Request(overton_prompt(batch[k][1], per[k]), sampling) for k in live])
            out: list[Any] = [next((x for x in cs if not isinstance(x, str)), None) or steerkit.ModelOutputError("comment missing")
                              for cs in per]
            for k, d in zip(live, done):
                out[k] = [CacheRecord(None, d.text, {"comments": per[k], "finish_reason": d.finish_reason})] if d.ok else d.error
            return out

        records = run.compute_missing([([k], (i, s)) for i, (s, k) in enumerate(zip(situations, keys))], compute,
                             description=f"{self.name}: overton", owner=lambda item: item[0])
        return [records[k].reasoning for k in keys]


def overton_outputs(strategy: ModularPluralism, run: RunContext, situations: Sequence[str]) -> list[str]:
    """Module-level form of ``ModularPluralism.overton_outputs`` (for the Overton evaluation)."""
    return strategy.overton_outputs(run, situations)


@hookimpl
def register_strategies(register):
    register("modular", ModularPluralism)


__all__ = ["Community", "ModularPluralism", "Pool", "fit_pool_weights", "fit_weights", "load_pool", "overton_outputs"]
