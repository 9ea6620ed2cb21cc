"""Intervals over seeds (METRICS.md: mean with a 95% interval and the number of seeds)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def t_half_width(values: Sequence[float]) -> float:
    """Half-width of the 95% Student-t interval of the mean; NaN for fewer than two values."""
    from scipy import stats

    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(finite)
    if n < 2:
        return math.nan
    mean = sum(finite) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    return float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))
