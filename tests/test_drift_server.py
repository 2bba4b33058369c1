"""A real ``proctor serve`` process checks the monitors in its loop; killed and started
again, it neither alerts again on old events nor loses a half-filled window."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from tests.test_drift_monitor import kinds, policy, refunds
from tests.test_server_process import Server, free_port

from proctor import Proctor
from proctor.drift.views import points


def until(what: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.1)
    raise AssertionError("the server's drift loop did not get there")


@pytest.mark.slow
def test_the_server_loop_detects_and_a_restart_picks_up_where_it_stopped(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCTOR_DRIFT_CHECK_SECONDS", "0.2")
    with Proctor(sqlite_url) as px:
        px.policy.apply(policy())
        refunds(px, 300, 50.0, seed=1)
        refunds(px, 150, 50.0, seed=2)  # one window and a half
        server = Server(sqlite_url, free_port())
        server.start()
        try:
            until(lambda: len(points(px.store, "refund-amount")) == 1)
            server.kill()  # mid-window, without a goodbye
            refunds(px, 50, 50.0, seed=3)
            refunds(px, 100, 85.0, seed=4)
            server.start()
            until(lambda: len(kinds(px, "drift.detected")) == 1)
            until(lambda: len(points(px.store, "refund-amount")) == 3)
            time.sleep(1.0)  # several more rounds
            assert len(kinds(px, "drift.detected")) == 1
            assert [p["detected"] for p in points(px.store, "refund-amount")] == [
                False,
                False,
                True,
            ]
        finally:
            server.stop()
