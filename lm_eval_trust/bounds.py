"""The largest standard deviation a dimension's score can have on a design, from its formula alone.

Every scored item is bounded in [0, 1] per document (a correct answer, a leak fraction over the
samples, a maximum toxicity), so a mean of n of them has variance at most 0.25 / n, whatever the
model. Most dimensions' scores are 100 x a weighted sum of such per-stratum means (scenarios, groups
of scenarios, seeds, matrix cells), with weights the formula fixes once the design says which strata
have documents; then sd <= 100 x sqrt(sum_l w_l^2 x 0.25 / n_l), reached when every answer is a coin
flip. A dimension whose formula is not of that form derives its own bound in its folder
(`worst_case`). The half-width is 1.96 x the bound (the normal approximation); a paired change
between two models is at most twice as spread (perfectly anti-correlated models).

A dimension module's `worst_case(design) -> Bound` reads the design's `rows` (one dict per planned
document, with `scenario` and the fields the formula groups by) and `options` (the task's metadata).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

VAR_MAX = 0.25
Z = 1.96
LINEAR = "exact worst case: the score is a weighted mean of proportions, one per {}"


@dataclass(frozen=True)
class Bound:
    """An upper bound of the score's standard deviation (0-100 scale) and how it was derived."""

    sd: float | None
    note: str


NOTHING_SCORED = Bound(None, "no planned document enters the score")


def linear(leaves: Iterable[tuple[float, int]]) -> float:
    """sd bound of 100 x sum_l w_l x (mean of n_l values in [0, 1]), the means independent."""
    return 100 * math.sqrt(sum(w * w * VAR_MAX / n for w, n in leaves if n))


def linear_bound(leaves: list[tuple[float, int]], stratum: str, note: str = "") -> Bound:
    if not leaves:
        return NOTHING_SCORED
    return Bound(linear(leaves), note or LINEAR.format(stratum))


def counts(design) -> Counter:
    """Planned documents per scenario."""
    return Counter(row["scenario"] for row in design.rows)


def mean_of_means(groups: dict[str, list[str]], counts: Counter) -> list[tuple[float, int]]:
    """Leaves of a mean over groups (those with documents) of the mean over their scenarios."""
    present = {g: [s for s in runs if counts[s]] for g, runs in groups.items()}
    present = {g: runs for g, runs in present.items() if runs}
    return [(1 / len(present) / len(runs), counts[s]) for runs in present.values() for s in runs]


def scenario_mean(design) -> Bound:
    """The mean over scenarios of a per-scenario proportion (or mean toxicity)."""
    by_scenario = counts(design)
    return linear_bound([(1 / len(by_scenario), n) for n in by_scenario.values()], "scenario")
