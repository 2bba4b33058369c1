"""Drift detectors on generated streams with known change points, and their false alarms
on long stable streams against the rate they were calibrated for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from proctor.drift import stats
from proctor.drift.engine import Detector, Event, Point
from proctor.policy.monitors import Monitor

WINDOW = 250
REFERENCE = 2000
CHANGE = 3000  # events after the reference where the change starts
Stream = Callable[[np.random.Generator, int], Any]


def monitor(kind: str, test: str, **extra: Any) -> Monitor:
    signal = "decision.review" if kind == "rate" else "args.x"
    return Monitor.model_validate(
        {
            "id": f"m-{kind}-{test}",
            "agent": "bot",
            "signal": signal,
            "kind": kind,
            "test": test,
            "window": WINDOW,
            "reference": {"events": REFERENCE},
            **extra,
        }
    )


def run(m: Monitor, values: Iterator[Any]) -> list[Point]:
    detector = Detector(m)
    found: list[Point] = []
    for i, raw in enumerate(values):
        value = detector.prepare(raw)
        found.extend(detector.feed(Event(i + 1, float(i), value)))
    return found


def numeric(rng: np.random.Generator, t: int, shift: float, ramp: int) -> float:
    """N(0, 1) until the change, then its mean moves by ``shift`` (over ``ramp`` events)."""
    k = t - REFERENCE - CHANGE
    moved = 0.0 if k < 0 else shift * min(1.0, (k + 1) / ramp)
    return float(rng.normal(moved, 1.0))


MIX = (["billing", "shipping", "refund", "other"], [0.4, 0.3, 0.2, 0.1])
SHIFTED = [0.3, 0.25, 0.35, 0.1]  # refunds grow


def categorical(rng: np.random.Generator, t: int, ramp: int) -> str:
    k = t - REFERENCE - CHANGE
    w = 0.0 if k < 0 else min(1.0, (k + 1) / ramp)
    p = (1 - w) * np.array(MIX[1]) + w * np.array(SHIFTED)
    return str(rng.choice(MIX[0], p=p))


def rate(rng: np.random.Generator, t: int, before: float, after: float, ramp: int) -> bool:
    k = t - REFERENCE - CHANGE
    w = 0.0 if k < 0 else min(1.0, (k + 1) / ramp)
    return bool(rng.random() < (1 - w) * before + w * after)


WORDS = [
    "order",
    "refund",
    "late",
    "parcel",
    "address",
    "invoice",
    "card",
    "please",
    "thanks",
    "help",
]
NEW = ["chargeback", "fraud", "lawyer", "dispute", "unauthorized"]


def text(rng: np.random.Generator, t: int, ramp: int) -> str:
    k = t - REFERENCE - CHANGE
    w = 0.0 if k < 0 else min(1.0, (k + 1) / ramp)
    n = int(rng.integers(5, 15)) + (int(rng.integers(0, 10)) if rng.random() < w else 0)
    pool = NEW if rng.random() < 0.5 * w else WORDS
    return " ".join(rng.choice(pool, n))


def detection_delay(points: list[Point]) -> int | None:
    """Events from the change to the first window (or CUSUM step) over the threshold, the
    one a detector not already drifting answers (None: never)."""
    start = REFERENCE + CHANGE
    first = next((p for p in points if p.seq > start and p.statistic > p.threshold), None)
    return None if first is None else first.seq - start


CASES: list[tuple[str, str, str, Callable[[np.random.Generator, int, int], Any], int]] = [
    # kind, test, shape, stream(rng, t, ramp), stated delay (events): at most three
    # windows for an abrupt change to a windowed test
    ("numeric", "psi", "abrupt", lambda r, t, ramp: numeric(r, t, 0.5, ramp), 3 * WINDOW),
    ("numeric", "ks", "abrupt", lambda r, t, ramp: numeric(r, t, 0.5, ramp), 3 * WINDOW),
    ("numeric", "wasserstein", "abrupt", lambda r, t, ramp: numeric(r, t, 0.5, ramp), 3 * WINDOW),
    ("numeric", "ks", "gradual", lambda r, t, ramp: numeric(r, t, 1.0, ramp), 2000),
    ("categorical", "js", "abrupt", categorical, 3 * WINDOW),
    ("categorical", "chi2", "abrupt", categorical, 3 * WINDOW),
    ("categorical", "js", "gradual", categorical, 2000),
    ("text", "length", "abrupt", text, 3 * WINDOW),
    ("text", "vocab", "abrupt", text, 3 * WINDOW),
    ("rate", "cusum", "abrupt", lambda r, t, ramp: rate(r, t, 0.05, 0.10, ramp), 2500),
    ("rate", "cusum", "gradual", lambda r, t, ramp: rate(r, t, 0.05, 0.15, ramp), 3000),
]


@pytest.mark.parametrize(("kind", "test", "shape", "stream", "delay"), CASES)
def test_a_change_is_detected_within_the_stated_delay(
    kind: str, test: str, shape: str, stream: Any, delay: int
) -> None:
    ramp = 1 if shape == "abrupt" else 1500
    rng = np.random.default_rng(7)
    m = monitor(kind, test)
    end = REFERENCE + CHANGE + 4000
    points = run(m, (stream(rng, t, ramp) for t in range(end)))
    found = detection_delay(points)
    assert found is not None, f"{kind}/{test} missed a {shape} change"
    assert found <= delay, f"{kind}/{test} took {found} events to see a {shape} change"


STABLE = 100_000


def stable_values(kind: str, rng: np.random.Generator, n: int) -> list[Any]:
    if kind == "numeric":
        return list(rng.gamma(2.0, 30.0, n))  # skewed, like amounts
    if kind == "categorical":
        return [str(v) for v in rng.choice(MIX[0], n, p=MIX[1])]
    return list(rng.random(n) < 0.08)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "test"),
    [
        ("numeric", "psi"),
        ("numeric", "ks"),
        ("numeric", "wasserstein"),
        ("categorical", "js"),
        ("categorical", "chi2"),
        ("rate", "cusum"),
    ],
)
def test_stable_streams_alarm_at_most_at_the_calibrated_rate(kind: str, test: str) -> None:
    """100,000 stable events, watched against four references drawn from the same process
    (the rate a threshold is fitted for is over the references one may draw): every
    window over the threshold counts, not only the first detection."""
    alpha, references, reference = 0.02, 4, 2000
    m = monitor(kind, test, false_alarm_rate=alpha, reference={"events": reference})
    alarms, windows = 0, 0
    for seed in range(references):
        rng = np.random.default_rng(100 + seed)
        values = stable_values(kind, rng, reference + STABLE // references)
        points = run(m, iter(values))
        if test != "cusum":
            points = [p for p in points if p.n == WINDOW]
            windows += len(points)
        alarms += sum(1 for p in points if p.statistic > p.threshold)
    if test == "cusum":
        stated = alpha * STABLE / 10_000  # a CUSUM's rate is per 10,000 events
    else:
        assert windows == STABLE // WINDOW
        stated = alpha * windows
    assert alarms <= stated, f"{alarms} false alarms, calibrated for {stated:g}"


def test_textbook_cusum_settings_alarm_where_the_calibrated_one_does_not() -> None:
    """The warning the thresholds are fitted against: h = 5 (a common default) on a 1%
    rate alarms on most stable streams of 10,000 events; the fitted h on few of them."""
    rng = np.random.default_rng(3)
    events = (rng.random((200, 10_000)) < 0.01).astype(np.int8)
    up, _ = stats.cusum_steps(0.01, 0.5)
    peaks = stats.cusum_max(events, up)
    m = monitor("rate", "cusum", false_alarm_rate=0.01)
    detector = Detector(m)
    for i, v in enumerate(rng.random(REFERENCE) < 0.01):
        detector.feed(Event(i + 1, float(i), float(v)))
    fitted = detector.state["h"][0]
    assert (peaks > 2.0).mean() > 0.5
    assert (peaks > fitted).mean() <= 0.02


def test_statistics_grow_with_the_difference() -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(0, 1, 2000)
    near, far = rng.normal(0.1, 1, 500), rng.normal(1.0, 1, 500)
    for f in (stats.psi, stats.ks, stats.wasserstein):
        assert f(ref, near) < f(ref, far)
    assert stats.ks(ref, ref) == 0.0
    assert stats.wasserstein(np.array([0.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(1.0)
    same = ["a"] * 50 + ["b"] * 50
    assert stats.js(same, same) < 1e-3 < stats.js(same, ["c"] * 100)
    assert stats.proportion_z([0.0] * 100, [0.0] * 100) == 0.0
    assert stats.z_threshold(0.05) == pytest.approx(1.95996, abs=1e-4)


def test_a_model_change_that_moves_confidence_is_detected_one_that_does_not_is_not() -> None:
    """A numeric signal compared before and after each ``context.model`` change."""
    m = Monitor.model_validate(
        {
            "id": "confidence-by-model",
            "agent": "bot",
            "signal": "context.confidence",
            "test": "ks",
            "window": 300,
            "change_point": "context.model",
            "false_alarm_rate": 0.01,
        }
    )
    rng = np.random.default_rng(9)
    detector = Detector(m)
    stream = [("m1", 0.85)] * 600 + [("m2", 0.85)] * 400 + [("m3", 0.75)] * 400
    found: list[Point] = []
    for i, (model, mean) in enumerate(stream):
        value = float(np.clip(rng.normal(mean, 0.05), 0, 1))
        found.extend(detector.feed(Event(i + 1, float(i), value, model)))
    assert [p.detected for p in found] == [False, True]
    assert found[1].evidence["change_point"]["from"] == "m2"
    assert found[1].evidence["before"]["n"] == found[1].evidence["after"]["n"] == 300


def test_a_reference_can_be_the_first_events_of_a_version() -> None:
    m = monitor("numeric", "ks", reference={"events": 500, "version": "v2", "field": "context.v"})
    detector = Detector(m)
    for i in range(700):
        version = "v1" if i < 200 else "v2"
        detector.feed(Event(i + 1, float(i), float(i), version))
    assert detector.state["phase"] == "watching"
    assert detector.state["ref_from"][0] == 201 and len(detector.state["ref"]) == 500
