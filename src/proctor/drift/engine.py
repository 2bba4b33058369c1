"""One monitor's detector: events in, points and detections out, state a JSON mapping.

Free of the store, so the same code runs in the server loop, in ``proctor drift check``,
in the benchmark and in tests. The state holds everything a restart needs (the frozen
reference, the threshold, the current window, a CUSUM's sums, the versions seen), so a
detector picked up by another process goes on exactly where this one stopped.

Three modes, by the monitor's test:

- windowed (psi, ks, wasserstein, js, chi2, length, vocab): a reference of the first
  events, then tumbling windows of ``window`` events, each compared with the reference;
- streaming (cusum): the reference rate, then a two-sided Bernoulli CUSUM per event;
- change point (``change_point:`` set): the last ``window`` events of a version against the
  first ``window`` of the next.

A monitor that detected drift stays drifting (and does not respond again) until a person
re-baselines it; a version comparison answers each change on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..policy.monitors import Monitor
from . import calibrate, stats

TEXT_CHARS = 400  # a reference text is kept this long at most


@dataclass(frozen=True)
class Event:
    seq: int
    ts: float
    value: Any  # float for numeric, length, vocab and rates; str for categorical and text
    version: str | None = None


@dataclass
class Point:
    seq: int
    ts: float
    statistic: float
    threshold: float
    n: int
    detected: bool
    evidence: dict[str, Any] = field(default_factory=dict)


def fresh() -> dict[str, Any]:
    return {"phase": "reference", "ref": [], "drifting": False}


class Detector:
    def __init__(self, monitor: Monitor, state: dict[str, Any] | None = None) -> None:
        self.monitor = monitor
        self.test = monitor.test_
        self.state = state if state is not None else fresh()
        self._vocab: frozenset[str] | None = None
        self._rng = calibrate.rng_for(monitor.id)

    # -- values --------------------------------------------------------------------------

    def prepare(self, raw: Any) -> Any:
        """The monitored value of a raw field value; None skips the event."""
        kind = self.monitor.kind_
        if kind == "rate":
            return float(raw)
        if kind == "categorical":
            return None if raw is None else str(raw)
        if kind == "text":
            if not isinstance(raw, str):
                return None
            if self.test == "length":
                return float(len(raw))
            return raw[:TEXT_CHARS]
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return None
        return float(raw)

    def current_value(self, value: Any) -> Any:
        """A text's novelty against the reference vocabulary once that is frozen."""
        if self.test == "vocab" and isinstance(value, str):
            if self._vocab is None:
                self._vocab = frozenset(self.state.get("vocab", []))
            return stats.novelty(value, self._vocab)
        return value

    # -- feeding -------------------------------------------------------------------------

    def feed(self, event: Event) -> list[Point]:
        if self.monitor.change_point is not None:
            return self._feed_change(event)
        st = self.state
        if st["phase"] == "reference":
            self._collect(event)
            return []
        if self.test == "cusum":
            return self._feed_cusum(event)
        return self._feed_window(event)

    def _collect(self, event: Event) -> None:
        st, ref = self.state, self.monitor.reference
        if ref.version is not None and not (event.version or "").startswith(ref.version):
            return
        if not st["ref"]:
            st["ref_from"] = [event.seq, event.ts]
        if len(st["ref"]) < ref.events:
            st["ref"].append(event.value)
        st["ref_to"] = [event.seq, event.ts]
        st["ref_seen"] = st.get("ref_seen", 0) + 1
        need = {"cusum": min(ref.events, 200), "vocab": 4 * self.monitor.window}.get(
            self.test, 2 * self.monitor.window
        )
        if ref.period is not None:
            done = event.ts - st["ref_from"][1] >= ref.period and len(st["ref"]) >= need
        else:
            done = len(st["ref"]) >= ref.events
        if done:
            self.freeze()

    def freeze(self) -> None:
        """The reference is complete: summarise it and fit the threshold, once."""
        st, m = self.state, self.monitor
        ref = st["ref"]
        if self.test == "vocab":
            half = len(ref) // 2
            counts: dict[str, int] = {}
            for text in ref[:half]:
                for w in stats.words(text):
                    counts[w] = counts.get(w, 0) + 1
            vocab = sorted(counts, key=lambda w: (-counts[w], w))[:5000]
            st["vocab"] = vocab
            self._vocab = frozenset(vocab)
            ref = [stats.novelty(t, self._vocab) for t in ref[half:]]
            st["ref"] = ref
        if self.test == "cusum":
            ones = int(sum(ref))
            st["p0"] = calibrate.reference_rate(ones, len(ref))
            if m.threshold is not None:
                st["h"] = [m.threshold, m.threshold]
            else:
                fitted = calibrate.cusum_thresholds(
                    ones, len(ref), m.shift, m.false_alarm_rate, self._rng
                )
                st["h"] = list(fitted)
            st["s"] = [0.0, 0.0]
            st["ref"] = [sum(ref), len(ref)]  # a rate's reference is its counts
            st["run"] = [0, 0]
        else:
            st["threshold"] = (
                m.threshold
                if m.threshold is not None
                else calibrate.window_threshold(
                    self.test, ref, m.window, m.false_alarm_rate, self._rng
                )
            )
        st["cur"] = []
        st["phase"] = "watching"

    def _feed_window(self, event: Event) -> list[Point]:
        st = self.state
        if not st["cur"]:
            st["cur_from"] = [event.seq, event.ts]
        st["cur"].append(self.current_value(event.value))
        if len(st["cur"]) < self.monitor.window:
            return []
        value = calibrate.statistic(self.test, st["ref"], st["cur"])
        threshold = float(st["threshold"])
        point = Point(event.seq, event.ts, value, threshold, len(st["cur"]), False)
        if value > threshold and not st["drifting"]:
            point.detected = True
            point.evidence = {
                "reference": self._ref_window(),
                "current": {
                    "n": len(st["cur"]),
                    "from_seq": st["cur_from"][0],
                    "to_seq": event.seq,
                    "from_ts": st["cur_from"][1],
                    "to_ts": event.ts,
                },
            }
            st["drifting"] = True
        st["last"] = {"values": st["cur"][-1000:], "to_seq": event.seq}
        st["cur"] = []
        return [point]

    def _ref_window(self) -> dict[str, Any]:
        st = self.state
        return {
            "n": st.get("ref_seen", len(st["ref"])),
            "from_seq": st["ref_from"][0],
            "to_seq": st["ref_to"][0],
            "from_ts": st["ref_from"][1],
            "to_ts": st["ref_to"][1],
        }

    def _feed_cusum(self, event: Event) -> list[Point]:
        st = self.state
        x = 1 if event.value else 0
        up, down = stats.cusum_steps(st["p0"], self.monitor.shift)
        s = st["s"]
        s[0] = max(0.0, s[0] + (up[1] if x else up[0]))
        s[1] = max(0.0, s[1] + (down[1] if x else down[0]))
        if st["run"][1] == 0:
            st["cur_from"] = [event.seq, event.ts]
        st["run"] = [st["run"][0] + x, st["run"][1] + 1]
        h = st["h"]
        which = 0 if s[0] / h[0] >= s[1] / h[1] else 1
        crossed = s[which] > h[which]
        if not crossed and st["run"][1] % self.monitor.window:
            return []
        point = Point(event.seq, event.ts, s[which], h[which], st["run"][1], False)
        if crossed:
            if not st["drifting"]:
                point.detected = True
                point.evidence = {
                    "direction": "up" if which == 0 else "down",
                    "reference_rate": round(st["p0"], 6),
                    "current_rate": round(st["run"][0] / st["run"][1], 6),
                    "reference": self._ref_window(),
                    "current": {
                        "n": st["run"][1],
                        "from_seq": st["cur_from"][0],
                        "to_seq": event.seq,
                        "from_ts": st["cur_from"][1],
                        "to_ts": event.ts,
                    },
                }
                st["drifting"] = True
            st["s"] = [0.0, 0.0]
            st["run"] = [0, 0]
        return [point]

    def _feed_change(self, event: Event) -> list[Point]:
        st, window = self.state, self.monitor.window
        if event.version is None:
            return []
        st.setdefault("version", event.version)
        st.setdefault("recent", [])
        if event.version != st["version"]:
            st["before"] = st["recent"][-window:]
            st["change"] = {
                "from": st["version"],
                "to": event.version,
                "seq": event.seq,
                "ts": event.ts,
                "before_to_seq": st.get("recent_to_seq"),
            }
            st["version"] = event.version
            st["recent"] = []
        st["recent"].append(event.value)
        st["recent_to_seq"] = event.seq
        if len(st["recent"]) > window:
            del st["recent"][0]
        change = st.get("change")
        if change is None or len(st["recent"]) < window:
            return []
        before, after = st.pop("before"), list(st["recent"])
        st.pop("change")
        if len(before) < min(window, 20):
            return []  # the old version left too little to compare with
        if self.monitor.threshold is not None:
            threshold = self.monitor.threshold
        else:
            threshold = calibrate.split_threshold(
                self.test, before, after, self.monitor.false_alarm_rate, self._rng
            )
        if self.test == "proportion":
            value = stats.proportion_z(before, after)
        else:
            value = calibrate.statistic(self.test, before, after)
        detected = value > threshold
        st["drifting"] = detected
        evidence = {
            "change_point": {k: change[k] for k in ("from", "to", "seq", "ts")},
            "before": {"n": len(before), "to_seq": change["before_to_seq"]},
            "after": {"n": len(after), "from_seq": change["seq"], "to_seq": event.seq},
        }
        if self.monitor.kind_ == "rate":
            evidence["before"]["rate"] = round(sum(before) / len(before), 6)
            evidence["after"]["rate"] = round(sum(after) / len(after), 6)
        st["last"] = {"before": before[-1000:], "after": after[-1000:], "to_seq": event.seq}
        return [Point(event.seq, event.ts, value, threshold, len(after), detected, evidence)]
