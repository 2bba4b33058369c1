"""``proctor bench drift``: each detector on generated streams, and a monitor over a log.

Per detector and stream kind: false alarms per 10,000 stable events (every window, or
CUSUM step, over its threshold, watched against several references drawn from the same
process), the median and p95 delay in events from an abrupt change to its detection,
and events per second through the detector. Then ``log``: events per second a monitor
reads from a real SQLite decision log, JSON parsing included.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..drift.engine import Detector, Event
from ..policy.monitors import Monitor

WINDOW = 250
REFERENCE = 2000
ALPHA = 0.01
CATS = ["billing", "shipping", "refund", "other"]
WORDS = ["order", "refund", "late", "parcel", "address", "invoice", "card", "thanks"]
NEW = ["chargeback", "fraud", "lawyer", "dispute"]

Gen = Callable[[np.random.Generator, int, bool], list[Any]]


def _numeric(rng: np.random.Generator, n: int, moved: bool) -> list[Any]:
    return list(rng.gamma(2.0, 30.0, n) * (1.25 if moved else 1.0))


def _categorical(rng: np.random.Generator, n: int, moved: bool) -> list[Any]:
    p = [0.3, 0.25, 0.35, 0.1] if moved else [0.4, 0.3, 0.2, 0.1]
    return [str(c) for c in rng.choice(CATS, n, p=p)]


def _text(rng: np.random.Generator, n: int, moved: bool) -> list[Any]:
    """Short messages; after the change longer ones, a third of them about something new."""
    sizes = rng.integers(5, 15, n) + (rng.integers(0, 8, n) if moved else 0)
    fresh = rng.random(n) < (0.33 if moved else 0.0)
    return [
        " ".join(rng.choice(NEW if f else WORDS, int(k))) for k, f in zip(sizes, fresh, strict=True)
    ]


def _rate(rng: np.random.Generator, n: int, moved: bool) -> list[Any]:
    return list(rng.random(n) < (0.10 if moved else 0.05))


CASES: list[tuple[str, str, Gen]] = [
    ("numeric", "psi", _numeric),
    ("numeric", "ks", _numeric),
    ("numeric", "wasserstein", _numeric),
    ("categorical", "js", _categorical),
    ("categorical", "chi2", _categorical),
    ("text", "length", _text),
    ("text", "vocab", _text),
    ("rate", "cusum", _rate),
]


def _monitor(kind: str, test: str) -> Monitor:
    return Monitor.model_validate(
        {
            "id": f"bench-{test}",
            "agent": "bench",
            "signal": "decision.review" if kind == "rate" else "args.x",
            "kind": kind,
            "test": test,
            "window": WINDOW,
            "reference": {"events": REFERENCE},
            "false_alarm_rate": ALPHA,
        }
    )


def _feed(detector: Detector, values: list[Any], first: int) -> tuple[list[Any], float]:
    prepared = [detector.prepare(v) for v in values]
    started = time.perf_counter()
    found = []
    for i, v in enumerate(prepared):
        found.extend(detector.feed(Event(first + i, float(first + i), v)))
    return found, time.perf_counter() - started


def _case(kind: str, test: str, gen: Gen, stable: int, trials: int, refs: int) -> dict[str, Any]:
    m = _monitor(kind, test)
    alarms, watched, seconds, states = 0, 0, 0.0, []
    for r in range(refs):
        rng = np.random.default_rng(1000 + r)
        detector = Detector(m)
        _feed(detector, gen(rng, REFERENCE, False), 1)
        states.append(copy.deepcopy(detector.state))
        found, took = _feed(detector, gen(rng, stable // refs, False), REFERENCE + 1)
        seconds += took
        watched += stable // refs
        alarms += sum(1 for p in found if p.statistic > p.threshold)
    delays, missed = [], 0
    for t in range(trials):
        rng = np.random.default_rng(5000 + t)
        detector = Detector(m, copy.deepcopy(states[t % refs]))
        offset = int(rng.integers(0, WINDOW))  # the change falls anywhere in a window
        _feed(detector, gen(rng, 1000 + offset, False), REFERENCE + 1)
        start = REFERENCE + 1000 + offset
        found, _ = _feed(detector, gen(rng, 4000, True), start + 1)
        hit = next((p for p in found if p.statistic > p.threshold), None)
        if hit is None:
            missed += 1
        else:
            delays.append(hit.seq - start)
    return {
        "kind": kind,
        "test": test,
        "window": WINDOW if test != "cusum" else None,
        "false_alarm_rate": ALPHA,
        "false_alarms_per_10k": round(alarms / watched * 10_000, 3),
        "delay_p50": float(np.median(delays)) if delays else None,
        "delay_p95": float(np.quantile(delays, 0.95)) if delays else None,
        "missed": missed,
        "events_per_s": round(watched / seconds),
    }


def _log(events: int) -> dict[str, Any]:
    """A monitor reading a real SQLite log: events per second of ``check``."""
    from ..drift.monitor import DriftMonitor
    from ..policy import Action
    from ..sdk import Proctor

    policy = f"""
policy: bench-drift
agents: {{bench: {{tools: [pay]}}}}
rules: [{{id: ok, when: "true", decide: allow}}]
monitors:
  - {{id: amount, agent: bench, signal: args.amount, window: {WINDOW},
     reference: {{events: {REFERENCE}}}}}
"""
    rng = np.random.default_rng(1)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Proctor(f"sqlite:///{Path(tmp) / 'bench.db'}") as px,
    ):
        px.policy.apply(policy)
        for amount in rng.gamma(2.0, 30.0, REFERENCE):
            px.gate.decide(Action("bench", "pay", {"amount": float(amount)}), None)
        watcher = DriftMonitor(px.store)
        watcher.check()  # the reference, frozen and calibrated
        for amount in rng.gamma(2.0, 30.0, events):
            px.gate.decide(Action("bench", "pay", {"amount": float(amount)}), None)
        started = time.perf_counter()
        watcher.check()
        took = time.perf_counter() - started
    return {"events": events, "seconds": round(took, 3), "events_per_s": round(events / took)}


def bench_drift(stable: int, trials: int, log_events: int) -> dict[str, Any]:
    refs = 8
    return {
        "bench": "drift",
        "stable_events": stable,
        "references": refs,
        "trials": trials,
        "detectors": [_case(k, t, g, stable, trials, refs) for k, t, g in CASES],
        "log": _log(log_events) if log_events else None,
    }
