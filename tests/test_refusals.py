"""Refusals of callers without a valid token: counted per address and window, one record
each, and a 429 once an address passes its limit, decided without the database."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.asgi_client import AppClient
from tests.test_server_process import Server, free_port

from proctor import ProctorError, TooManyRequests
from proctor._errors import error_for_status
from proctor.server import auth
from proctor.server.app import create_app
from proctor.server.auth import create_token, revoke_token
from proctor.server.refusals import RefusalTally, write_due
from proctor.store import Store


def denied_records(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT record FROM proctor_audit_log WHERE kind = 'access.denied' ORDER BY seq"
        ).all()
    return [json.loads(r) for (r,) in rows]


@dataclass
class Site:
    app: Any
    client: AppClient
    store: Store
    viewer: str


@pytest.fixture
def site(db_url: str) -> Iterator[Site]:
    from proctor import Proctor

    with Proctor(db_url) as px:
        _, viewer = create_token(px.store, role="viewer", name="vic")
        app = create_app(px, sweep=False)
        client = AppClient(app)
        try:
            yield Site(app, client, px.store, viewer)
        finally:
            client.close()


def test_a_hundred_bad_tokens_are_one_record_and_429s(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = {"Authorization": f"Bearer {site.viewer}"}
    assert site.client.get("/api/v1/reviews", headers=good).status_code == 200
    lookups = []
    verify = site.app.state.verifier.verify
    monkeypatch.setattr(site.app.state.verifier, "verify", lambda t: lookups.append(t) or verify(t))
    statuses = []
    for i in range(100):
        bad = {"Authorization": f"Bearer pxt_{i:012d}_guess"}
        r = site.client.get("/api/v1/reviews", headers=bad)
        statuses.append(r.status_code)
        if i == 30:
            assert r.json()["error"] == "TooManyRequests"
            assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert statuses == [401] * 30 + [429] * 70
    assert len(lookups) == 30  # the 429s were decided without the database
    assert denied_records(site.store) == []  # nothing written per request
    # A token this server accepted before still works from the same address, even once it
    # has left the verifier's two-second cache (and is looked up again).
    monkeypatch.setattr(auth, "CACHE_SECONDS", 0.0)
    site.app.state.verifier._cache.clear()
    assert site.client.get("/api/v1/reviews", headers=good).status_code == 200
    write_due(site.store, site.app.state.refusals, everything=True)  # as at shutdown
    records = denied_records(site.store)
    assert 1 <= len(records) <= 2
    assert sum(r["count"] for r in records) == 100
    assert records[0]["client"] == "127.0.0.1"
    assert records[0]["statuses"] == {"401": 30, "429": 70}
    assert records[0]["paths"] == ["GET /api/v1/reviews"]
    assert records[0]["first"] <= records[0]["last"]


def test_a_revoked_token_loses_its_way_past_the_limit(site: Site) -> None:
    site.app.state.refusals.limit = 1
    good = {"Authorization": f"Bearer {site.viewer}"}
    assert site.client.get("/api/v1/reviews", headers=good).status_code == 200
    assert site.client.get("/api/v1/reviews").status_code == 401  # the address is now limited
    r = site.client.get("/api/v1/reviews")  # no token at all: limited too
    assert r.status_code == 429 and "Retry-After" in r.headers
    revoke_token(site.store, site.viewer.split("_")[1])
    site.app.state.verifier._cache.clear()  # as two seconds later
    assert site.client.get("/api/v1/reviews", headers=good).status_code == 401
    assert site.client.get("/api/v1/reviews", headers=good).status_code == 429


def test_console_sign_in_is_limited_too(site: Site) -> None:
    site.app.state.refusals.limit = 3
    csrf_match = re.search(r'name="csrf" value="([^"]+)"', site.client.get("/login").text)
    assert csrf_match is not None
    csrf = csrf_match.group(1)
    statuses = [
        site.client.post("/login", data={"csrf": csrf, "token": f"pxt_{i}_guess"}).status_code
        for i in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]
    r = site.client.post("/login", data={"csrf": csrf, "token": "pxt_x_guess"})
    assert "too many requests" in r.text and "Retry-After" in r.headers


def test_the_tally_is_bounded_and_closes_windows() -> None:
    tally = RefusalTally(window=60.0, limit=2, max_sources=10_000)
    for i in range(20_000):  # more addresses than it tracks
        tally.note(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "GET /x", 401, now=0.0)
    bodies = tally.due(now=1.0, everything=True)
    assert len(bodies) == 10_001  # one per tracked address, one for all the others
    assert sum(b["count"] for b in bodies) == 20_000
    tally.note("a", "GET /x", 401, now=100.0)
    tally.note("a", "GET /y", 401, now=101.0)
    with pytest.raises(TooManyRequests) as info:
        tally.check("a", now=130.0)
    assert info.value.retry_after == 30
    assert tally.due(now=159.0) == []  # still open
    tally.check("a", now=160.0)  # its window closed: allowed again
    [body] = tally.due(now=160.0)
    assert body["count"] == 2 and body["paths"] == ["GET /x", "GET /y"]
    assert (body["first"], body["last"]) == (100.0, 101.0)


def test_the_remote_client_raises_too_many_requests_for_429() -> None:
    assert error_for_status(429) is TooManyRequests
    assert issubclass(TooManyRequests, ProctorError)


def test_a_real_server_writes_the_count_at_window_end_and_at_shutdown(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proctor import Proctor

    server = Server(sqlite_url, free_port())
    server.start()
    admin = {"Authorization": f"Bearer {server.admin}"}
    try:
        assert httpx.get(f"{server.url}/api/v1/reviews", headers=admin).status_code == 200
        for i in range(100):
            httpx.get(f"{server.url}/api/v1/reviews", headers={"Authorization": f"Bearer x{i}"})
        remote = Proctor(url=server.url, token="pxt_000000000000_guess", timeout=2.0)
        with pytest.raises(TooManyRequests):
            remote.reviews.list()
        remote.close()
        # A token the server accepted before the flood still works from the same address.
        assert httpx.get(f"{server.url}/api/v1/reviews", headers=admin).status_code == 200
    finally:
        server.stop()  # SIGTERM: the shutdown writes what was counted
    with Proctor(sqlite_url) as px:
        records = denied_records(px.store)
    assert len(records) == 1 and records[0]["count"] == 101
    monkeypatch.setenv("PROCTOR_REFUSAL_WINDOW_SECONDS", "1")
    server.start()
    try:
        for _ in range(5):
            httpx.get(f"{server.url}/api/v1/decisions")
        for _ in range(100):  # the window closes after 1 s, its record follows within 1 s
            got = httpx.get(
                f"{server.url}/api/v1/decisions?kind=access.denied", headers=admin
            ).json()
            if len(got) == 2:
                break
            time.sleep(0.05)
        assert [g["record"]["count"] for g in got] == [101, 5]
    finally:
        server.stop()
