"""The drift statistics, vectorised with numpy: one reference, one current sample.

Numeric: PSI (on the reference's deciles), the two-sample Kolmogorov-Smirnov distance and
the first Wasserstein distance. Categorical: Jensen-Shannon divergence (base 2) and the
chi-squared statistic against the reference's proportions. Rates: a two-proportion z
statistic, and a Bernoulli CUSUM (``cusum_*``) for streams. Every statistic grows with
drift and is compared with a threshold fitted on the reference (``calibrate.py``), so none
needs a p-value table.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
EPS = 1e-4
_WORD = re.compile(r"[a-z0-9]+")


def psi(ref: Floats, cur: Floats) -> float:
    """Population stability index over the reference's deciles (ties merge bins)."""
    edges = np.unique(np.quantile(ref, np.linspace(0.1, 0.9, 9)))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    rp = np.maximum(r / len(ref), EPS)
    cp = np.maximum(c / len(cur), EPS)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


def ks(ref: Floats, cur: Floats) -> float:
    """The largest gap between the two empirical distribution functions."""
    a, b = np.sort(ref), np.sort(cur)
    points = np.concatenate([a, b])
    fa = np.searchsorted(a, points, side="right") / len(a)
    fb = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def wasserstein(ref: Floats, cur: Floats) -> float:
    """Earth mover's distance between the empirical distributions (in the signal's unit)."""
    a, b = np.sort(ref), np.sort(cur)
    points = np.sort(np.concatenate([a, b]))
    widths = np.diff(points)
    fa = np.searchsorted(a, points[:-1], side="right") / len(a)
    fb = np.searchsorted(b, points[:-1], side="right") / len(b)
    return float(np.sum(np.abs(fa - fb) * widths))


def _counts(ref: Sequence[str], cur: Sequence[str]) -> tuple[Floats, Floats]:
    rc, cc = Counter(ref), Counter(cur)
    keys = sorted(set(rc) | set(cc))
    return (
        np.array([rc[k] for k in keys], dtype=np.float64),
        np.array([cc[k] for k in keys], dtype=np.float64),
    )


def js_counts(rc: Floats, cc: Floats) -> Floats:
    """Jensen-Shannon divergence in bits between count vectors (the last axis), each
    smoothed by half a count: 0 the same mix, 1 nothing in common."""
    p = (rc + 0.5) / (rc + 0.5).sum(axis=-1, keepdims=True)
    q = (cc + 0.5) / (cc + 0.5).sum(axis=-1, keepdims=True)
    m = (p + q) / 2
    result: Floats = 0.5 * np.sum(p * np.log2(p / m), axis=-1) + 0.5 * np.sum(
        q * np.log2(q / m), axis=-1
    )
    return result


def chi2_counts(rc: Floats, cc: Floats) -> Floats:
    """Pearson's statistic of the current counts against the reference's proportions."""
    p = (rc + 0.5) / (rc + 0.5).sum(axis=-1, keepdims=True)
    expected = p * cc.sum(axis=-1, keepdims=True)
    result: Floats = np.sum((cc - expected) ** 2 / expected, axis=-1)
    return result


def js(ref: Sequence[str], cur: Sequence[str]) -> float:
    return float(js_counts(*_counts(ref, cur)))


def chi2(ref: Sequence[str], cur: Sequence[str]) -> float:
    return float(chi2_counts(*_counts(ref, cur)))


def proportion_z(before: Sequence[float], after: Sequence[float]) -> float:
    """|z| of the two-proportion test (pooled variance); 0 when both are all 0 or all 1."""
    n1, n2 = len(before), len(after)
    p1, p2 = sum(before) / n1, sum(after) / n2
    pooled = (sum(before) + sum(after)) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    return 0.0 if var <= 0 else abs(p2 - p1) / math.sqrt(var)


def z_threshold(alpha: float) -> float:
    """The two-sided normal critical value for ``alpha`` (inverse erfc by bisection)."""
    lo, hi = 0.0, 40.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if math.erfc(mid / math.sqrt(2)) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


NUMERIC: dict[str, Callable[[Floats, Floats], float]] = {
    "psi": psi,
    "ks": ks,
    "wasserstein": wasserstein,
    "length": ks,
    "vocab": ks,
}
CATEGORICAL: dict[str, Callable[[Sequence[str], Sequence[str]], float]] = {"js": js, "chi2": chi2}
CATEGORICAL_COUNTS: dict[str, Callable[[Floats, Floats], Floats]] = {
    "js": js_counts,
    "chi2": chi2_counts,
}


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def novelty(text: str, vocabulary: frozenset[str]) -> float:
    """The share of a text's words the reference never used (0 for a text without words)."""
    found = words(text)
    if not found:
        return 0.0
    return sum(1 for w in found if w not in vocabulary) / len(found)


# Bernoulli CUSUM: the log-likelihood ratio of the rate moving from p0 to p1, summed and
# floored at 0 (Page's recursion). S_t = X_t - min(0, min_k X_k) with X the running sum, so
# a batch of streams is vectorised without a loop over events.


def cusum_steps(p0: float, shift: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """(increment for a 0, for a 1) of the upward and the downward detector."""
    up = min(0.999, p0 * (1 + shift))
    down = max(0.001, p0 * (1 - shift) if shift < 1 else p0 / (1 + shift))

    def steps(p1: float) -> tuple[float, float]:
        return math.log((1 - p1) / (1 - p0)), math.log(p1 / p0)

    return steps(up), steps(down)


def cusum_max(events: NDArray[np.int8], step: tuple[float, float]) -> Floats:
    """The largest CUSUM value along each row of 0/1 events (rows are streams)."""
    inc = np.where(events == 1, step[1], step[0])
    x = np.cumsum(inc, axis=1)
    floor = np.minimum.accumulate(np.minimum(x, 0.0), axis=1)
    result: Floats = np.max(x - floor, axis=1)
    return result
