"""The expected spread of a planned score, from an earlier run's scored items (e.g. a small pilot).

Each replicate draws, within every planned scenario, as many of the pilot's logged items as the plan
has documents there (with replacement) and recomputes the score with the dimension's own aggregate;
the replicates' sd is the predicted sd of the planned score. This is the report's bootstrap (stratified
by scenario, `lm_eval_trust.stats`) run at the plan's sizes instead of the pilot's. With a second run
(`--other_samples`), documents are drawn in pairs and the replicate is the change other - baseline.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lm_eval_trust.dimension import DIGEST
from lm_eval_trust.plan.design import PlanError, TaskDesign
from lm_eval_trust.report.runs import ITEM_KEY, ResultsError, read_results, read_samples
from lm_eval_trust.rescore import RescoreError, find_samples

DEFAULT_ITERS = 200
# Beyond this the replicates' sd changes in the third digit at most, and memory and time grow linearly.
MAX_ITERS = 100_000


@dataclass
class PilotTask:
    """One task's logged items of an earlier run, keyed by document (index and prompt digest)."""

    source: Path
    results: Path
    dimension: str
    items: dict[tuple, dict]
    samples_per_prompt: dict = field(default_factory=dict)


def read_pilot(paths: Sequence[Path], flag: str) -> dict[str, PilotTask]:
    """Every trust task's items in the sample logs under `paths` (one run per task)."""
    try:
        files = find_samples(paths)
    except (RescoreError, ResultsError) as err:
        raise PlanError(f"{flag}: {err}") from err
    pilot: dict[str, PilotTask] = {}
    for samples in files:
        config = (read_results(samples.results).get("configs") or {}).get(samples.task) or {}
        metadata = config.get("metadata") or {}
        if not metadata.get("dimension"):
            continue
        if samples.task in pilot:
            raise PlanError(
                f"{flag}: two sample logs of {samples.task} ({pilot[samples.task].source} and "
                f"{samples.path}); give the logs of one run"
            )
        items = {}
        for line in read_samples(samples.path):
            item, doc = line.get(ITEM_KEY), line.get("doc") or {}
            if not isinstance(item, dict) or "scenario" not in item:
                raise PlanError(
                    f"{samples.path}: a line has no scored item under `{ITEM_KEY}`; plan reads sample "
                    "logs of trust tasks written by this version (re-score older logs with "
                    "`lm-eval-trust rescore`)"
                )
            items[(doc.get("doc_index"), doc.get(DIGEST))] = item
        pilot[samples.task] = PilotTask(
            samples.path,
            samples.results,
            metadata["dimension"],
            items,
            metadata.get("samples_per_prompt") or {},
        )
    if not pilot:
        raise PlanError(f"{flag}: no sample logs of trust tasks under {', '.join(map(str, paths))}")
    return pilot


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_run(a: PilotTask, b: PilotTask) -> str | None:
    """Why two pilots are one run (the same file, or a copy of its results), or None: a run paired
    with itself changes by exactly 0, so its paired half-width would read ±0.00 and mean nothing."""
    if a.source.resolve() == b.source.resolve():
        return "the same file"
    if _digest(a.results) == _digest(b.results):
        return f"identical results files, {a.results.name}"
    return None


@dataclass(frozen=True)
class Estimate:
    """A predicted sd (0-100 scale), or None and why not; `notes` qualify a number."""

    sd: float | None
    reason: str = ""
    notes: tuple[str, ...] = ()


def _pools(plan: TaskDesign, items: dict[tuple, object], scenario_of) -> tuple[dict, str]:
    pools: dict[str, list] = defaultdict(list)
    for value in items.values():
        pools[scenario_of(value)].append(value)
    missing = [s for s in plan.by_scenario if not pools.get(s)]
    if missing:
        return {}, (
            f"the earlier run has no documents of {len(missing)} planned scenario(s), e.g. {missing[0]}; "
            "give logs of a run over every planned scenario"
        )
    return pools, ""


def _replicates(
    pools: dict[str, list],
    sizes: dict[str, int],
    statistic: Callable[[list], float | None],
    iters: int,
    seed: int,
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.full(iters, np.nan)
    for k in range(iters):
        drawn = [pools[s][i] for s, n in sizes.items() for i in rng.integers(0, len(pools[s]), size=n)]
        value = statistic(drawn)
        if value is not None:
            values[k] = value
    return values


def _sd(values: np.ndarray) -> tuple[float | None, str]:
    defined = values[~np.isnan(values)]
    if defined.size < 2:
        return None, "the score is undefined on (nearly) every replicate"
    return float(np.std(defined, ddof=1)), ""


def _notes(plan: TaskDesign, pools: dict[str, list], runs: Sequence[PilotTask]) -> tuple[str, ...]:
    notes = []
    thin = [s for s in plan.by_scenario if len(pools[s]) < 2]
    if thin:
        notes.append(
            f"{len(thin)} scenario(s) have a single earlier document (e.g. {thin[0]}), so they add no "
            "spread: the estimate is low there"
        )
    for run in runs:
        differ = {
            s: (run.samples_per_prompt.get(s, 1), d.samples_per_prompt)
            for s, d in plan.by_scenario.items()
            if run.samples_per_prompt.get(s, 1) != d.samples_per_prompt
        }
        if differ:
            s, (was, now) = next(iter(differ.items()))
            notes.append(
                f"{run.source.name} drew {was} sample(s) per prompt where the plan draws {now} (e.g. {s}); "
                "the estimate keeps the earlier run's per-document spread"
            )
    return tuple(notes)


def _check(plan: TaskDesign, run: PilotTask) -> None:
    if run.dimension != plan.dimension.module.__name__:
        raise PlanError(
            f"{run.source}: logged by dimension {run.dimension}, but {plan.task} is scored by "
            f"{plan.dimension.module.__name__}; give sample logs of the same task"
        )


def estimate(plan: TaskDesign, run: PilotTask | None, iters: int, seed: int) -> Estimate:
    """The predicted sd of the planned score from one earlier run's items."""
    if run is None:
        return Estimate(None, "no sample logs of this task among --samples")
    _check(plan, run)
    pools, reason = _pools(plan, run.items, lambda item: item["scenario"])
    if reason:
        return Estimate(None, reason)
    sizes = {s: d.documents for s, d in plan.by_scenario.items()}

    def score(items: list) -> float | None:
        return plan.dimension.aggregate(items, plan.scenarios).headline["score"]

    sd, reason = _sd(_replicates(pools, sizes, score, iters, seed))
    return Estimate(sd, reason, _notes(plan, pools, [run]))


def paired_estimate(
    plan: TaskDesign, base: PilotTask | None, other: PilotTask | None, iters: int, seed: int
) -> Estimate:
    """The predicted sd of the planned change other - baseline, from two runs on the same documents."""
    if base is None or other is None:
        return Estimate(None, "needs sample logs of this task in both --samples and --other_samples")
    _check(plan, base)
    _check(plan, other)
    pairs = {k: (item, other.items[k]) for k, item in base.items.items() if k in other.items}
    odd = [k for k, (a, b) in pairs.items() if a["scenario"] != b["scenario"]]
    if odd:
        raise PlanError(
            f"{base.source} and {other.source}: document {odd[0][0]} has different scenarios; give two runs "
            "of the same design"
        )
    if not pairs:
        return Estimate(None, f"{base.source.name} and {other.source.name} share no documents")
    pools, reason = _pools(plan, pairs, lambda pair: pair[0]["scenario"])
    if reason:
        return Estimate(None, reason)
    sizes = {s: d.documents for s, d in plan.by_scenario.items()}

    def change(drawn: list) -> float | None:
        a = plan.dimension.aggregate([p[0] for p in drawn], plan.scenarios).headline["score"]
        b = plan.dimension.aggregate([p[1] for p in drawn], plan.scenarios).headline["score"]
        return None if a is None or b is None else b - a

    sd, reason = _sd(_replicates(pools, sizes, change, iters, seed))
    return Estimate(sd, reason, _notes(plan, pools, [base, other]))
