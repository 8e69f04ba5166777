"""Summaries of repeated measurements: median, spread, percentiles, ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; nan when empty."""
    data = sorted(v for v in values if not math.isnan(v))
    if not data:
        return math.nan
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    if pos == low or data[low] == data[high]:
        return data[low]
    if math.isinf(data[high]):  # censored samples ("never"): past the last finite one
        return data[high]
    return data[low] + (data[high] - data[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def spread(values: Sequence[float]) -> tuple[float, float]:
    """The interquartile range (p25, p75): the spread we quote next to a median."""
    return percentile(values, 25), percentile(values, 75)


def summary(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """median, p25, p75, p99, min, max and n of ``values`` times ``scale``."""
    scaled = [v * scale for v in values]
    finite = [v for v in scaled if math.isfinite(v)]
    return {
        "n": float(len(scaled)),
        "median": median(scaled),
        "p25": percentile(scaled, 25),
        "p75": percentile(scaled, 75),
        "p99": percentile(scaled, 99),
        "min": min(finite) if finite else math.nan,
        "max": max(scaled) if scaled else math.nan,
    }


def ratios(ours: Sequence[float], base: Sequence[float]) -> list[float]:
    """Pairwise ratios of alternated runs (ours[i] / base[i])."""
    return [a / b for a, b in zip(ours, base, strict=False) if b > 0]


def fmt(value: float, digits: int = 2) -> str:
    """A number for a table: fixed digits, '∞' for infinity, '-' for nan."""
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}"


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan
