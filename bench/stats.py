"""Small statistics shared by the benchmarks (kept free of heavy imports)."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["peak_in_window", "percentile"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..100): a value that was actually observed."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def peak_in_window(times: Sequence[float], window: float = 1.0) -> tuple[int, float | None]:
    """Most events in any half-open window [t, t + window), and where that window starts."""
    ordered = sorted(times)
    best, best_at, lo = 0, None, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window:
            lo += 1
        if hi - lo + 1 > best:
            best, best_at = hi - lo + 1, ordered[lo]
    return best, best_at
