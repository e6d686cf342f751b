"""The largest standard deviation a dimension's score can have on a design, from its formula alone.

Every scored item is bounded in [0, 1] per document (a correct answer, a leak fraction over the
samples, a maximum toxicity), so a mean of n of them has variance at most 0.25 / n, whatever the
model. Most dimensions' scores are 100 x a weighted sum of such per-stratum means (scenarios, groups
of scenarios, seeds, matrix cells), with weights the formula fixes once the design says which strata
have documents; then sd <= 100 x sqrt(sum_l w_l^2 x 0.25 / n_l), reached when every answer is a coin
flip. Stereotype rounds each agreement mean to 2 decimals and fairness combines absolute differences
of group rates; both bounds are derived below. The half-width is 1.96 x the bound (the normal
approximation); a paired change between two models is at most twice as spread (perfectly
anti-correlated models).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from lm_eval_trust.plan.design import TaskDesign

VAR_MAX = 0.25
Z = 1.96
# lm_eval_trust/tasks/stereotype: a category's agreement is rounded to 2 decimals before it is scored.
ROUNDING = 0.005
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


def _linear_bound(leaves: list[tuple[float, int]], stratum: str, note: str = "") -> Bound:
    if not leaves:
        return NOTHING_SCORED
    return Bound(linear(leaves), note or LINEAR.format(stratum))


def _counts(plan: TaskDesign) -> Counter:
    return Counter(row["scenario"] for row in plan.rows)


def _mean_of_means(groups: dict[str, list[str]], counts: Counter) -> list[tuple[float, int]]:
    """Leaves of a mean over groups (those with documents) of the mean over their scenarios."""
    present = {g: [s for s in runs if counts[s]] for g, runs in groups.items()}
    present = {g: runs for g, runs in present.items() if runs}
    return [(1 / len(present) / len(runs), counts[s]) for runs in present.values() for s in runs]


def scenario_mean(plan: TaskDesign) -> Bound:
    """advglue, toxicity: the mean over scenarios of a per-scenario proportion (or mean toxicity)."""
    counts = _counts(plan)
    return _linear_bound([(1 / len(counts), n) for n in counts.values()], "scenario")


def ood(plan: TaskDesign) -> Bound:
    """The mean over groups of the mean over their runs; zero-shot knowledge scores accuracy plus
    refusals, still one proportion per document."""
    return _linear_bound(_mean_of_means(plan.dimension.module.SCORED, _counts(plan)), "run")


def ethics(plan: TaskDesign) -> Bound:
    """The mean over components of the mean over their runs of an accuracy or 1 - FPR."""
    leaves = _mean_of_means(plan.dimension.module.SCORED, _counts(plan))
    if plan.options.get("ethics_scoring", "fork") == "fork":
        return _linear_bound(leaves, "run")
    return _linear_bound(
        leaves,
        "run",
        "approximation: upstream scoring divides by the parsable answers only; the bound assumes "
        "every answer parses",
    )


def adv_demo(plan: TaskDesign) -> Bound:
    """The mean over families of the mean over their scored cells of the mean over seeds of an
    accuracy (backdoor: of 1 - the attack success rate, its cacc cells unscored)."""
    module = plan.dimension.module
    family = {
        c["name"]: c["family"]
        for c in module.cells()
        if c["scored"] and (c["family"] != "backdoor" or c["name"].endswith("_asr"))
    }
    runs = Counter((row["scenario"], row["seed"]) for row in plan.rows if row["scenario"] in family)
    seeds = Counter(scenario for scenario, _ in runs)
    cells = Counter(family[scenario] for scenario in seeds)
    leaves = [(1 / len(cells) / cells[family[s]] / seeds[s], n) for (s, _), n in runs.items()]
    return _linear_bound(leaves, "seed of a cell")


def privacy(plan: TaskDesign) -> Bound:
    """100 - the weighted mean over families of the mean over their scenarios of a leak rate; each
    document's leak fraction (over its samples; Enron: of email, local part and domain) is in [0, 1]."""
    from lm_eval_trust.tasks.privacy import scoring

    counts = _counts(plan)
    families: dict[str, list[str]] = defaultdict(list)
    for scenario in counts:
        if scoring.family_of(scenario) in scoring.WEIGHTS:
            families[scoring.family_of(scenario)].append(scenario)
    total = sum(scoring.WEIGHTS[f] for f in families)
    leaves = [
        (scoring.WEIGHTS[f] / total / len(members), counts[s])
        for f, members in families.items()
        for s in members
    ]
    return _linear_bound(leaves, "scenario")


def stereotype(plan: TaskDesign) -> Bound:
    """100 x the mean over system-prompt types of 1 - round(agreement, 2), agreement the mean over
    the (group, topic) cells of each cell's agreement rate.

    With equally many samples per prompt a cell's rate is the mean of its documents' agreement
    fractions (in [0, 1]); rounding moves a value by at most 0.005, so by Minkowski's inequality a
    type's sd is at most the cells' bound plus 0.005; types have disjoint documents.
    """
    cells = Counter((row["scenario"], row["group"], row["topic"]) for row in plan.rows)
    by_type: dict[str, list[int]] = defaultdict(list)
    for (scenario, _, _), n in cells.items():
        if scenario in plan.dimension.module.SCENARIOS:
            by_type[scenario].append(n)
    if not by_type:
        return NOTHING_SCORED
    per_type = [linear((1 / len(ns), n) for n in ns) / 100 + ROUNDING for ns in by_type.values()]
    sd = 100 * math.sqrt(sum(v * v for v in per_type)) / len(per_type)
    return Bound(sd, "sound bound: per-cell agreement proportions, plus the 2-decimal rounding")


def _range_msd(sizes: list[int]) -> float:
    """Bound of E[(range of the group rates - range of their means)^2], rates of `sizes` documents.

    Two groups: the range is |r0 - r1|, 1-Lipschitz in r0 - r1, so the bound is the sum of the
    rates' variances; more groups: max and min each move by at most max |r_g - mean_g|, so 4 x it.
    A group with no documents of the label has a fixed rate (0) and adds no variance.
    """
    variances = [VAR_MAX / n for n in sizes if n]
    return sum(variances) * (1 if len(sizes) <= 2 else 4)


def fairness(plan: TaskDesign) -> Bound:
    """100 x (1 - (mean DPD + mean EOD) / 2) over the scored settings whose documents hold two or
    more sensitive groups (with one, DPD and EOD are undefined and the setting is left out).

    Per setting, DPD is the range over sensitive groups of P(pred = 1) and EOD the larger of the
    ranges of the TPR and of the FPR; both are Lipschitz in the group rates, so their mean squared
    deviation (>= variance) is bounded by the rates' variances, 0.25 / group size (EOD: the sum of
    the TPR and FPR bounds, since (max(U, V) - max(u, v))^2 <= (U - u)^2 + (V - v)^2). Settings have
    disjoint documents; DPD and EOD share them, so their sds add (Cauchy-Schwarz).
    """
    scored = set(plan.dimension.module.SCORED)
    by_setting: dict[str, list[dict]] = defaultdict(list)
    for row in plan.rows:
        if row["scenario"] in scored:
            by_setting[row["scenario"]].append(row)
    compared = [rows for rows in by_setting.values() if len({row["sensitive"] for row in rows}) > 1]
    if not compared:
        return Bound(
            None, "no scored setting has documents of two sensitive groups, so DPD and EOD are undefined"
        )
    dpd, eod = 0.0, 0.0
    for rows in compared:
        size = Counter(row["sensitive"] for row in rows)
        by_label = Counter((row["label"], row["sensitive"]) for row in rows)
        dpd += _range_msd(list(size.values()))
        eod += sum(_range_msd([by_label[(y, g)] for g in size]) for y in (0, 1))
    sd = 50 * (math.sqrt(dpd) + math.sqrt(eod)) / len(compared)
    return Bound(
        sd,
        "sound bound given the design's group sizes, for answers that all parse (settings with under "
        "3 known answers, left out of the means, and unparsed answers are not modelled); the normal "
        "1.96 is an approximation for differences near 0",
    )


BOUNDS = {
    "advglue": scenario_mean,
    "toxicity": scenario_mean,
    "ood": ood,
    "ethics": ethics,
    "adv_demo": adv_demo,
    "privacy": privacy,
    "stereotype": stereotype,
    "fairness": fairness,
}


def worst_case(plan: TaskDesign) -> Bound:
    bound = BOUNDS.get(plan.key)
    if bound is None:
        return Bound(None, f"no worst-case formula for the dimension {plan.key}")
    if not plan.rows:
        return Bound(None, "no documents")
    return bound(plan)
