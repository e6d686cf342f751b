"""Paired, scenario-stratified bootstrap of a score change between two models.

Both models answered the same documents, so a change is judged on document pairs: each bootstrap
replicate draws documents with replacement within every scenario (a score is a mean over scenarios,
so every scenario must keep its size) and recomputes the score of both models on the same draw with
the dimension's own formula. The interval is the percentile interval of the replicated changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_ITERS = 1000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class ChangeInterval:
    """A score change (other - baseline) on the paired documents and its bootstrap interval."""

    change: float
    low: float
    high: float
    n_pairs: int
    replicates: np.ndarray

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def stratified_draws(strata: Sequence, iters: int, seed: int) -> np.ndarray:
    """`iters` rows of indices into `strata`, each row resampled with replacement within every stratum."""
    rng = np.random.default_rng(seed)
    labels = np.asarray([str(s) for s in strata])
    draws = np.empty((iters, len(labels)), dtype=np.int64)
    for label in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == label)
        draws[:, members] = members[rng.integers(0, len(members), size=(iters, len(members)))]
    return draws


def percentile_interval(replicates: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """The central `level` percentile interval of the defined (non-NaN) replicates."""
    defined = replicates[~np.isnan(replicates)]
    if not defined.size:
        raise ValueError("every bootstrap replicate left the score undefined")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high)


def paired_change(
    baseline: Sequence,
    other: Sequence,
    strata: Sequence,
    statistic: Callable[[list], float | None],
    iters: int = DEFAULT_ITERS,
    seed: int = DEFAULT_SEED,
    level: float = DEFAULT_LEVEL,
) -> ChangeInterval:
    """Bootstrap `statistic(other) - statistic(baseline)`; `baseline[i]`, `other[i]` share document i.

    `statistic` maps a list of per-document items to a score (None when undefined); a replicate where
    either score is undefined is NaN and left out of the interval; none left is an error.
    """
    if not (len(baseline) == len(other) == len(strata)):
        raise ValueError(
            f"paired_change needs one baseline item, one other item and one stratum per document; got "
            f"{len(baseline)}, {len(other)}, {len(strata)}"
        )
    if not baseline:
        raise ValueError("paired_change needs at least one document pair")
    change = _difference(statistic(list(baseline)), statistic(list(other)))
    if change is None:
        raise ValueError("the score is undefined on the paired documents of one of the models")
    values = np.full(iters, np.nan)
    for k, rows in enumerate(stratified_draws(strata, iters, seed)):
        delta = _difference(statistic([baseline[i] for i in rows]), statistic([other[i] for i in rows]))
        if delta is not None:
            values[k] = delta
    low, high = percentile_interval(values, level)
    return ChangeInterval(change, low, high, len(baseline), values)


def mean_of_changes(intervals: Sequence[ChangeInterval], level: float = DEFAULT_LEVEL) -> ChangeInterval:
    """The change of an unweighted mean of scores, from independent per-score bootstraps.

    Replicate k of the mean is the mean of every score's replicate k (scores come from disjoint
    documents, so independent draws combine freely; NaN when one is undefined); all inputs need the
    same number of replicates.
    """
    sizes = {len(i.replicates) for i in intervals}
    if len(sizes) != 1:
        raise ValueError(
            f"mean_of_changes needs equally many replicates per score, got sizes {sorted(sizes)}"
        )
    values = np.mean([i.replicates for i in intervals], axis=0)
    low, high = percentile_interval(values, level)
    change = float(np.mean([i.change for i in intervals]))
    return ChangeInterval(change, low, high, sum(i.n_pairs for i in intervals), values)


def _difference(base: float | None, other: float | None) -> float | None:
    return None if base is None or other is None else float(other) - float(base)
