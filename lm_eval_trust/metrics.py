"""Small pieces shared by the dimensions' formulas."""

from __future__ import annotations

from collections.abc import Iterable


def mean(values: Iterable[float]) -> float | None:
    """The arithmetic mean, or None when there is nothing to average (no data gives no number)."""
    values = list(values)
    return sum(values) / len(values) if values else None
