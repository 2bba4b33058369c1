"""Thresholds fitted for a stated false-alarm rate, on data the operator calls normal.

Textbook settings alarm on most stable streams (CUSUM at its usual h) or miss small
drifts (ADWIN at its default delta): a threshold only means something against the data it
watches. So each one here is the ``1 - alpha`` quantile of the statistic on stable data:

- a windowed test: a window of the reference, drawn at random, against the rest of it
  (the rest is smaller than the reference the monitor uses, so the fit errs on the side of
  fewer alarms);
- a version comparison: the pooled events split at random into before and after;
- a CUSUM: the largest value it reaches on simulated streams of ``PER`` events at the
  reference rate, so ``alpha`` is false alarms per ``PER`` events.

A windowed test's rate is an average over the references one might have drawn: with an
unlucky reference every later window sits further from it. So windowed thresholds are
fitted at ``alpha * MARGIN``, which keeps the stated rate for most references, not only
on average over them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import stats

PER = 10_000  # a CUSUM's false-alarm rate is per this many events
MARGIN = 0.25
_STREAMS = 300  # simulated stable streams a CUSUM threshold is fitted on
_CELLS = 2_000_000  # split rows x values held at once


def rng_for(name: str) -> np.random.Generator:
    """A generator seeded by the monitor's name: the same data gives the same threshold."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8]))


def draws(alpha: float) -> int:
    """Enough draws for the quantile to rest on about 20 exceedances, within bounds."""
    return int(min(4000, max(400, 20 / alpha)))


def statistic(test: str, ref: Sequence[Any], cur: Sequence[Any]) -> float:
    if test in stats.CATEGORICAL:
        return stats.CATEGORICAL[test]([str(v) for v in ref], [str(v) for v in cur])
    return stats.NUMERIC[test](np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64))


def _masks(n: int, k: int, draws: int, rng: np.random.Generator) -> Iterator[NDArray[Any]]:
    """Random splits of ``n`` items, ``k`` of them drawn, as boolean rows, in batches."""
    per = max(1, _CELLS // n)
    for start in range(0, draws, per):
        size = min(per, draws - start)
        picked = rng.random((size, n)).argpartition(k - 1, axis=1)[:, :k]
        mask = np.zeros((size, n), dtype=bool)
        np.put_along_axis(mask, picked, True, axis=1)
        yield mask


def _split_stats(
    test: str, values: Sequence[Any], k: int, draws: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """The statistic of ``draws`` random splits: ``k`` values (the window) against the
    rest (the reference), vectorised over splits on the sorted values."""
    if test in stats.CATEGORICAL:
        cats = sorted({str(v) for v in values})
        codes = np.searchsorted(np.array(cats, dtype=object), np.array([str(v) for v in values]))
        onehot = np.zeros((len(values), len(cats)))
        onehot[np.arange(len(values)), codes] = 1.0
        total = onehot.sum(axis=0)
        out = []
        for mask in _masks(len(values), k, draws, rng):
            cur = mask.astype(np.float64) @ onehot
            out.append(stats.CATEGORICAL_COUNTS[test](total - cur, cur))
        return np.concatenate(out)
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = len(v)
    last = np.append(v[1:] != v[:-1], True)  # the end of each run of equal values
    widths = np.diff(v)
    bins = np.searchsorted(np.unique(np.quantile(v, np.linspace(0.1, 0.9, 9))), v, side="right")
    bounds = np.flatnonzero(np.append(bins[1:] != bins[:-1], True))
    found = []
    for mask in _masks(n, k, draws, rng):
        cur = np.cumsum(mask, axis=1, dtype=np.float64)
        rest = np.arange(1, n + 1, dtype=np.float64) - cur
        fc, fr = cur / k, rest / (n - k)
        if test == "psi":
            cc = np.diff(np.concatenate([np.zeros((len(cur), 1)), cur[:, bounds]], axis=1))
            rc = np.diff(np.concatenate([np.zeros((len(cur), 1)), rest[:, bounds]], axis=1))
            cp = np.maximum(cc / k, stats.EPS)
            rp = np.maximum(rc / (n - k), stats.EPS)
            found.append(np.sum((cp - rp) * np.log(cp / rp), axis=1))
        elif test == "wasserstein":
            found.append(np.sum(np.abs(fc - fr)[:, :-1] * widths, axis=1))
        else:  # ks, and the text tests that use it
            found.append(np.max(np.abs(fc - fr)[:, last], axis=1))
    return np.concatenate(found)


def window_threshold(
    test: str, ref: Sequence[Any], window: int, alpha: float, rng: np.random.Generator
) -> float:
    """The threshold for windows of ``window`` events against ``ref``."""
    if len(ref) < 2 * window:
        raise ValueError(f"a reference of {len(ref)} events is under twice the window")
    found = _split_stats(test, ref, window, draws(alpha * MARGIN), rng)
    return float(np.quantile(found, 1 - alpha * MARGIN, method="higher"))


def split_threshold(
    test: str,
    before: Sequence[Any],
    after: Sequence[Any],
    alpha: float,
    rng: np.random.Generator,
) -> float:
    """The threshold for before-versus-after when the version changed nothing."""
    if test == "proportion":
        return stats.z_threshold(alpha)
    found = _split_stats(test, [*after, *before], len(after), min(1000, draws(alpha)), rng)
    return float(np.quantile(found, 1 - alpha, method="higher"))


def cusum_thresholds(
    ones: int, n: int, shift: float, alpha: float, rng: np.random.Generator
) -> tuple[float, float]:
    """(upward, downward) thresholds: each detector gets half of ``alpha`` per ``PER``.

    The reference rate is itself an estimate from ``n`` events: a rate a little higher
    than the estimate would push the upward CUSUM over a threshold fitted on the estimate
    alone. So each simulated stream runs at a rate drawn from what the reference allows
    (Beta(ones + 1, n - ones + 1)), while the detector uses the estimate. The largest value
    a CUSUM reaches over a horizon has an exponential tail, so a few hundred streams fit
    it: the empirical quantile when enough streams exceed it, else the exponential tail
    fitted to the top fifth, extrapolated to ``alpha``.
    """
    p0 = reference_rate(ones, n)
    up, down = stats.cusum_steps(p0, shift)
    rates = rng.beta(ones + 1, n - ones + 1, size=(_STREAMS, 1))
    events = (rng.random((_STREAMS, PER)) < rates).astype(np.int8)
    return _tail(stats.cusum_max(events, up), alpha / 2), _tail(
        stats.cusum_max(events, down), alpha / 2
    )


def _tail(peaks: NDArray[np.float64], p: float) -> float:
    if p * len(peaks) >= 10:
        return float(np.quantile(peaks, 1 - p, method="higher"))
    u = float(np.quantile(peaks, 0.8))
    excess = peaks[peaks > u] - u
    if not len(excess) or float(excess.mean()) <= 0:
        return float(peaks.max())
    return u + float(excess.mean()) * math.log(0.2 / p)


def reference_rate(ones: float, n: int) -> float:
    """The reference rate, kept off 0 and 1 (Laplace): a CUSUM needs both outcomes possible."""
    return (ones + 1) / (n + 2)
