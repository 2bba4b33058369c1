"""Tokens that expire: made by the API and the CLI, listed with their expiry, refused (and
logged by id) once expired, even while the verifier still remembers them."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.asgi_client import AppClient
from tests.test_cli import proctor

from proctor import Proctor
from proctor.server.app import create_app
from proctor.server.auth import create_token


@dataclass
class Site:
    px: Proctor
    app: Any
    client: AppClient
    admin: dict[str, str]

    def denied(self) -> list[dict[str, Any]]:
        got = self.client.get("/api/v1/decisions?kind=access.denied", headers=self.admin)
        return [d["record"] for d in got.json()]


@pytest.fixture
def site(db_url: str) -> Iterator[Site]:
    with Proctor(db_url) as px:
        _, admin = create_token(px.store, role="admin", name="root")
        app = create_app(px, sweep=False)
        client = AppClient(app)
        site = Site(px, app, client, {"Authorization": f"Bearer {admin}"})
        assert site.denied() == []  # the admin's token is known here from now on
        try:
            yield site
        finally:
            client.close()


def test_an_expired_token_is_refused_even_while_cached(site: Site) -> None:
    r = site.client.post(
        "/api/v1/tokens",
        json={"role": "viewer", "name": "temp", "expires_in": 1.0},
        headers=site.admin,
    )
    assert r.status_code == 200
    made = r.json()
    assert made["expires_at"] == pytest.approx(time.time() + 1.0, abs=0.5)
    h = {"Authorization": f"Bearer {made['token']}"}
    assert site.client.get("/api/v1/reviews", headers=h).status_code == 200  # now cached for 2 s
    time.sleep(max(0.0, made["expires_at"] - time.time()) + 0.1)
    r = site.client.get("/api/v1/reviews", headers=h)
    assert r.status_code == 401 and "expired" in r.json()["message"]
    assert r.headers["WWW-Authenticate"] == "Bearer"
    [record] = site.denied()
    assert record["token_id"] == made["id"] and record["status"] == 401
    assert "expired" in record["reason"] and record["path"] == "/api/v1/reviews"
    listed = {t["name"]: t for t in site.client.get("/api/v1/tokens", headers=site.admin).json()}
    assert listed["temp"]["expires"] == "expired" and listed["root"]["expires"] == "never"


def test_expired_token_refusals_are_limited_like_other_401s(site: Site) -> None:
    site.app.state.refusals.limit = 3
    _, token = create_token(site.px.store, role="viewer", name="old", expires_in=0.2)
    time.sleep(0.3)
    h = {"Authorization": f"Bearer {token}"}
    statuses = [site.client.get("/api/v1/reviews", headers=h).status_code for _ in range(6)]
    assert statuses == [401, 401, 401, 429, 429, 429]
    assert len(site.denied()) == 3  # in full up to the limit, then only counted


def test_expires_in_must_be_positive_and_bounded(site: Site) -> None:
    for bad in (0, -5, 1e12, "soon"):
        r = site.client.post(
            "/api/v1/tokens",
            json={"role": "viewer", "name": "x", "expires_in": bad},
            headers=site.admin,
        )
        assert r.status_code == 422 and r.json()["field"] == "body.expires_in", bad
    r = site.client.post(
        "/api/v1/tokens",
        json={"role": "viewer", "name": "x", "expires_in": 90 * 86400},
        headers=site.admin,
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", r.json()["expires"])


def test_console_sign_in_with_an_expired_token_says_so(site: Site) -> None:
    _, token = create_token(site.px.store, role="viewer", name="old", expires_in=0.2)
    time.sleep(0.3)
    page = site.client.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    r = site.client.post("/login", data={"csrf": csrf.group(1), "token": token})
    assert r.status_code == 401 and "expired" in r.text


def test_cli_creates_and_lists_expiring_tokens(db_url: str) -> None:
    r = proctor(
        "token",
        "create",
        "--role",
        "viewer",
        "--name",
        "q3-audit",
        "--expires",
        "90d",
        "-d",
        db_url,
    )
    assert r.returncode == 0, r.stderr
    assert "expires 20" in r.stdout and r.stdout.strip().splitlines()[-1].startswith("pxt_")
    r = proctor(
        "token", "create", "--role", "viewer", "--name", "x", "--expires", "soon", "-d", db_url
    )
    assert r.returncode == 2 and "--expires" in r.stderr
    with Proctor(db_url) as px:
        create_token(px.store, role="viewer", name="gone", expires_in=0.01)
        create_token(px.store, role="admin", name="forever")
    time.sleep(0.05)
    r = proctor("token", "list", "-d", db_url)
    assert r.returncode == 0, r.stderr
    rows = {line.split("│")[2].strip(): line for line in r.stdout.splitlines() if "│" in line}
    assert "expires" in r.stdout
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", rows["q3-audit"])
    assert "expired" in rows["gone"] and "never" in rows["forever"]
    listed = json.dumps(rows)
    assert "pxt_" not in listed
