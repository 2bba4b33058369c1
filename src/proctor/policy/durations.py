"""Durations, read one way everywhere: a policy's timeouts, ``--window``, ``--expires``
and the relative times of ``--since``.

``45s``, ``30m``, ``4h``, ``90d``, ``250ms`` or a bare number of seconds. It lives with the
policy because the policy's keys are where durations began; the CLI reads them the same way
so that what works in a file works on the command line.
"""

from __future__ import annotations

import re
from datetime import datetime

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
NOT_A_DURATION = "a duration is a number of seconds or a string like '30m' or '4h'"
NOT_POSITIVE = "a duration must be greater than zero"


def parse_duration(value: object) -> float:
    """Seconds from ``45s``, ``30m``, ``4h``, ``2d`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(NOT_A_DURATION)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(NOT_A_DURATION)
    if seconds <= 0:
        raise ValueError(NOT_POSITIVE)
    return seconds


def parse_since(value: str, now: float) -> float:
    """A point in time: an ISO time, or a duration before ``now`` (``30m`` is half an
    hour ago). ISO comes first, so ``20240101`` stays a date rather than 20 million
    seconds. Raises ValueError for anything else."""
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        pass
    return now - parse_duration(value)
