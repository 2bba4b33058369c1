"""One reading of durations: the policy's keys, ``--window``, ``--expires`` and ``--since``."""

from __future__ import annotations

from datetime import datetime

import pytest
from tests.test_cli import proctor

from proctor import PolicyError
from proctor.policy import compile_policy
from proctor.policy.durations import parse_duration, parse_since

NOT_A_DURATION = "a duration is a number of seconds or a string like '30m' or '4h'"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("4h", 14400.0),
        ("90d", 90 * 86400.0),
        ("250ms", 0.25),
        (" 1.5h ", 5400.0),
        ("45", 45.0),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("soon", NOT_A_DURATION),
        ("5 weeks", NOT_A_DURATION),
        ("-5m", NOT_A_DURATION),
        (True, NOT_A_DURATION),
        (None, NOT_A_DURATION),
        ("0s", "a duration must be greater than zero"),
        (0, "a duration must be greater than zero"),
    ],
)
def test_what_is_not_a_duration(text: object, message: str) -> None:
    with pytest.raises(ValueError, match="a duration") as info:
        parse_duration(text)
    assert str(info.value) == message


def test_since_is_a_duration_ago_or_an_iso_time() -> None:
    now = 1_800_000_000.0
    assert parse_since("30m", now) == now - 1800
    assert parse_since("90d", now) == now - 90 * 86400
    assert parse_since("3600", now) == now - 3600  # a number is seconds, as everywhere
    day = datetime(2026, 1, 31).timestamp()
    assert parse_since("2026-01-31", now) == day
    assert parse_since("20260131", now) == day  # an ISO basic date stays a date
    with pytest.raises(ValueError, match="a duration is"):
        parse_since("yesterday", now)


def test_the_policy_reads_durations_the_same_way() -> None:
    doc = compile_policy("policy: x\ndefaults: {review_timeout: 90d, grant_ttl: 45}\n").document
    assert doc.defaults.review_timeout == 90 * 86400 and doc.defaults.grant_ttl == 45
    with pytest.raises(PolicyError) as info:
        compile_policy("policy: x\ndefaults: {review_timeout: 0s}\n")
    assert info.value.message == "defaults.review_timeout: a duration must be greater than zero"


def test_the_command_line_reads_durations_the_same_way(sqlite_url: str) -> None:
    for args, message in [
        (["kpi", "--since", "yesterday"], "--since takes 30m, 2h, 7d or an ISO time"),
        (["problems", "--window", "soon"], f"--window: {NOT_A_DURATION}"),
        (["problems", "--window", "0"], "--window: a duration must be greater than zero"),
    ]:
        r = proctor(*args, "-d", sqlite_url)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith(f"error: {message}") and r.stderr.count("\n") == 1
    for args in (
        ["kpi", "--since", "90d"],
        ["kpi", "--since", "3600"],
        ["problems", "--window", "90d"],
    ):
        r = proctor(*args, "-d", sqlite_url)
        assert r.returncode == 0, (args, r.stderr)
    r = proctor(
        "token", "create", "--role", "viewer", "--name", "v", "--expires", "soon", "-d", sqlite_url
    )
    assert r.returncode == 2 and NOT_A_DURATION in r.stderr
