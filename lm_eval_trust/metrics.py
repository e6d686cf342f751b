"""Small pieces shared by the dimensions' formulas."""

from __future__ import annotations

from collections.abc import Iterable


def mean(values: Iterable[float | None]) -> float | None:
    """The arithmetic mean; None when there is nothing to average or a value is unknown (None).

    A formula with no data, or with an undefined term (DecodingTrust's NaN), gives no number.
    """
    values = list(values)
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)
