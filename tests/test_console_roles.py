"""The console's pages apply the API's role rules: every page as every role, in-process."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from itsdangerous import TimestampSigner
from tests.asgi_client import AppClient

from proctor import Proctor, ReviewPending
from proctor.server.app import create_app
from proctor.server.auth import create_token

SECRET = "console-roles-test-secret"
POLICY = """
policy: console-roles
defaults: {decision: deny, queue: billing}
queues: {billing: {}, finance: {}}
agents:
  support-bot: {tools: [issue_refund, lookup_order]}
  other-bot: {tools: [lookup_order]}
rules:
  - {id: ok, when: 'tool in ["issue_refund", "lookup_order"]', decide: allow}
  - {id: big, when: 'tool == "issue_refund" && args.amount > 100.0', decide: review}
"""
ROLES = {
    "admin": {"role": "admin"},
    "policy_author": {"role": "policy_author"},
    "viewer": {"role": "viewer"},
    "reviewer": {"role": "reviewer", "queues": ["billing"]},
    "reviewer_other": {"role": "reviewer", "queues": ["finance"]},
    "sme": {"role": "sme", "queues": ["billing"]},
    "agent": {"role": "agent", "agents": ["support-bot"]},
    "agent_other": {"role": "agent", "agents": ["other-bot"]},
}
READERS = ("admin", "policy_author", "viewer", "reviewer", "reviewer_other", "sme")
AGENTS = ("agent", "agent_other")


@dataclass
class Console:
    px: Proctor
    client: AppClient
    tokens: dict[str, tuple[str, str]]  # role -> (token id, token)
    item: str
    run_id: str

    def sign_in(self, token: str) -> httpx.Response:
        self.client.client.cookies.clear()
        form = self.client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        return self.client.post("/login", data={"csrf": csrf.group(1), "token": token})

    def session_of(self, role: str) -> None:
        """A signed session cookie for ``role``'s token, as an older server would have issued
        to anyone (agents included)."""
        self.client.client.cookies.clear()
        session = {"token_id": self.tokens[role][0], "csrf": "c"}
        data = base64.b64encode(json.dumps(session).encode())
        self.client.client.cookies.set(
            "proctor_session", TimestampSigner(SECRET).sign(data).decode(), domain="proctor.test"
        )

    def as_role(self, role: str) -> None:
        if role == "none":
            self.client.client.cookies.clear()
        elif role in AGENTS:
            self.session_of(role)
        else:
            assert self.sign_in(self.tokens[role][1]).status_code == 303


@pytest.fixture
def console(db_url: str) -> Iterator[Console]:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY, author="pat", message="first")
        px.policy.apply(POLICY.replace("100.0", "120.0"), author="pat", message="second")
        tokens = {}
        for name, spec in ROLES.items():
            made, token = create_token(px.store, name=name, **spec)
            tokens[name] = (made.token_id, token)

        @px.tool(agent="support-bot", wait=0, name="issue_refund")
        def refund(order_id: str, amount: float) -> str:
            return "ok"

        @px.tool(agent="other-bot")
        def lookup_order(order_id: str) -> str:
            return "found"

        with px.run(agent="support-bot") as run, pytest.raises(ReviewPending) as pending:
            refund("A-SECRET-1", 500.0)
        with px.run(agent="other-bot"):
            lookup_order("B-OTHER-9")
        client = AppClient(create_app(px, sweep=False, session_secret=SECRET))
        try:
            yield Console(px, client, tokens, pending.value.item_id, run.id)
        finally:
            client.close()


def test_every_console_page_as_every_role(console: Console) -> None:
    pages = {
        "overview": "/",
        "queue": "/queue?status=all",
        "rows": "/queue/rows?status=all",
        "item": f"/items/{console.item}",
        "run": f"/runs/{console.run_id}",
        "policies": "/policies",
        "audit": "/audit",
    }
    # What an agent must never read in the console: other agents' records, the item, the
    # run, the policy, the chain's verification.
    secrets = ["A-SECRET-1", "other-bot", "console-roles", console.item, "Verified"]
    wrong = []
    for role in [*READERS, *AGENTS, "none"]:
        console.as_role(role)
        for page, path in pages.items():
            r = console.client.get(path)
            expected = 200
            if role in AGENTS:
                expected = 403
            elif role == "none":
                expected = 303
            elif role == "reviewer_other" and page == "item":
                expected = 404  # not its queue: the item does not exist for it
            if r.status_code != expected:
                wrong.append(f"{page} as {role}: {r.status_code}, expected {expected}")
                continue
            text = r.text
            if role in AGENTS:
                leaked = [s for s in secrets if s in text]
                if leaked or "Agent tokens cannot sign in" not in text:
                    wrong.append(f"{page} as {role} shows {leaked}: {text[:200]}")
            if role == "none" and r.headers["location"] != "/login":
                wrong.append(f"{page} without a session goes to {r.headers['location']}")
            shown = console.item in text
            hidden = role == "reviewer_other"
            if page in ("queue", "rows") and role in READERS and shown == hidden:
                wrong.append(f"{page} as {role}: the billing item shown={shown}")
            if page == "audit" and role in READERS:
                # The chain is verified on demand: the control shows where the role may
                # verify (and pressing it verifies there only: see below).
                shows = 'id="verify"' in text
                if shows != (role in ("admin", "policy_author", "viewer")):
                    wrong.append(f"audit as {role}: verification shown={shows}")
                if "other-bot" not in text:
                    wrong.append(f"audit as {role}: the log is missing")
            if page == "item" and expected == 200:
                buttons = 'id="approve"' in text or 'id="reject"' in text
                if buttons != (role in ("admin", "reviewer", "sme")):
                    wrong.append(f"item as {role}: action buttons shown={buttons}")
            if page == "policies" and expected == 200 and "second" not in text:
                wrong.append(f"policies as {role}: the history is missing")
        verified = console.client.post(
            "/audit/verify", data={"csrf": _csrf(console, role)}, headers={"HX-Request": "true"}
        )
        expected = 200 if role in ("admin", "policy_author", "viewer") else 403
        if role == "none":
            expected = 303
        if verified.status_code != expected:
            wrong.append(f"verify as {role}: {verified.status_code}, expected {expected}")
        elif (expected == 200) != ("Verified" in verified.text):
            wrong.append(f"verify as {role}: {verified.text[:200]}")
    assert not wrong, "\n".join(wrong)


def _csrf(console: Console, role: str) -> str:
    """The session's CSRF token, as the pages carry it ("c" in a forged agent session)."""
    if role in AGENTS or role == "none":
        return "c"
    found = re.search(r'name="csrf" value="([^"]+)"', console.client.get("/queue").text)
    assert found is not None
    return found.group(1)


def test_those_who_may_not_decide_cannot_post_decisions(console: Console) -> None:
    for role in ("viewer", "policy_author", "agent"):
        console.as_role(role)
        r = console.client.post(f"/items/{console.item}/approve", data={"csrf": "c"})
        assert r.status_code == 403, (role, r.status_code)
    assert console.px.reviews.get(console.item).status == "pending"
    with console.px.store.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT record FROM proctor_audit_log WHERE kind = 'access.denied'"
        ).all()
    denied = [json.loads(r) for (r,) in rows]  # authenticated refusals: in full, each one
    assert {d["role"] for d in denied} == {"viewer", "policy_author", "agent"}


def test_an_agent_token_cannot_sign_in(console: Console) -> None:
    r = console.sign_in(console.tokens["agent"][1])
    assert r.status_code == 403
    assert "Agent tokens cannot sign in to the console" in r.text
    assert console.client.get("/queue").status_code == 303  # no session was made
    r = console.sign_in(console.tokens["viewer"][1])
    assert r.status_code == 303 and r.headers["location"] == "/queue"
