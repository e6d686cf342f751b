"""The paired, stratified bootstrap on data whose answer is known."""

import math

import numpy as np
import pytest

from lm_eval_trust.stats import mean_of_changes, paired_change, stratified_draws


def mean(items):
    return 100 * sum(items) / len(items) if items else None


def cell_mean(items):
    """A dimension-like score: 100 x the unweighted mean over scenarios of the per-scenario accuracy."""
    by = {}
    for scenario, correct in items:
        by.setdefault(scenario, []).append(correct)
    return 100 * sum(sum(v) / len(v) for v in by.values()) / len(by)


def test_identical_models_give_a_zero_interval():
    rng = np.random.default_rng(1)
    items = [("a" if i % 2 else "b", int(x)) for i, x in enumerate(rng.integers(0, 2, 60))]
    result = paired_change(items, items, [s for s, _ in items], cell_mean, iters=200)
    assert (result.change, result.low, result.high) == (0.0, 0.0, 0.0)
    assert not result.excludes_zero


def test_all_correct_against_all_wrong_is_exactly_minus_100():
    base, other = [1] * 30, [0] * 30
    result = paired_change(base, other, ["s"] * 30, mean, iters=100)
    assert (result.change, result.low, result.high) == (-100.0, -100.0, -100.0)
    assert result.excludes_zero


def test_bernoulli_mean_difference_matches_the_normal_approximation():
    rng = np.random.default_rng(7)
    n = 400
    base = rng.random(n) < 0.6
    other = np.where(rng.random(n) < 0.8, base, rng.random(n) < 0.2)
    diffs = 100 * (other.astype(float) - base.astype(float))
    half = 1.959964 * diffs.std(ddof=1) / math.sqrt(n)
    result = paired_change(
        list(base.astype(int)), list(other.astype(int)), ["s"] * n, mean, iters=4000, seed=3
    )
    assert result.change == pytest.approx(diffs.mean())
    assert result.low == pytest.approx(diffs.mean() - half, abs=0.15 * half)
    assert result.high == pytest.approx(diffs.mean() + half, abs=0.15 * half)
    assert result.excludes_zero


def test_draws_stay_inside_their_scenario_and_are_seeded():
    strata = ["a", "a", "b", "b", "b", "c"]
    draws = stratified_draws(strata, 50, seed=5)
    for row in draws:
        assert [strata[i] for i in row] == strata
    assert (draws == stratified_draws(strata, 50, seed=5)).all()
    assert not (draws == stratified_draws(strata, 50, seed=6)).all()


def test_a_singleton_scenario_never_varies():
    """Scenario 'b' has one document: stratified draws always keep it, so its cell is fixed."""
    base = [("a", 1), ("a", 0), ("a", 1), ("b", 1)]
    other = [("a", 1), ("a", 0), ("a", 1), ("b", 0)]
    result = paired_change(base, other, [s for s, _ in base], cell_mean, iters=300)
    assert [result.change, result.low, result.high] == pytest.approx([-50.0, -50.0, -50.0])


def test_undefined_replicates_are_left_out_and_mismatched_pairs_are_errors():
    def needs_two_distinct(items):
        return None if len(set(items)) < 2 else float(sum(items))

    result = paired_change([0, 1], [0, 1], ["s", "s"], needs_two_distinct, iters=200, seed=0)
    assert np.isnan(result.replicates).any() and (result.low, result.high) == (0.0, 0.0)
    with pytest.raises(ValueError, match="one stratum per document"):
        paired_change([1, 0], [1], ["s", "s"], mean)


def test_mean_of_changes_averages_replicates():
    a = paired_change([1] * 10, [0] * 10, ["s"] * 10, mean, iters=50)
    b = paired_change([0] * 10, [0] * 10, ["s"] * 10, mean, iters=50)
    both = mean_of_changes([a, b])
    assert (both.change, both.low, both.high, both.n_pairs) == (-50.0, -50.0, -50.0, 20)
