"""The API in-process: every role against every endpoint, bad input, idempotency."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.asgi_client import AppClient

from proctor import Action, Proctor, ReviewPending
from proctor.backends import verdict_to_wire
from proctor.server.app import create_app
from proctor.server.auth import create_token
from proctor.server.refusals import write_due

POLICY = """
policy: server-test
defaults: {decision: deny, queue: billing}
queues: {billing: {roles: [billing_lead]}, finance: {}}
agents:
  support-bot: {tools: [issue_refund, lookup_order]}
  other-bot: {tools: [lookup_order]}
rules:
  - {id: ok, when: 'tool in ["issue_refund", "lookup_order"]', decide: allow}
  - {id: big, when: 'tool == "issue_refund" && args.amount > 100.0', decide: review}
"""
ROLES = [
    "admin",
    "policy_author",
    "reviewer",
    "reviewer_other",
    "sme",
    "agent",
    "agent_other",
    "viewer",
    "none",
    "bad",
]


@dataclass
class Env:
    px: Proctor
    client: AppClient
    tokens: dict[str, str]
    app: Any = None

    def headers(self, role: str) -> dict[str, str]:
        if role == "none":
            return {}
        if role == "bad":
            return {"Authorization": "Bearer pxt_000000000000_not-a-real-secret"}
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def pending_item(self) -> str:
        @self.px.tool(agent="support-bot", wait=0, name="issue_refund")
        def refund(order_id: str, amount: float) -> str:
            return "ok"

        with pytest.raises(ReviewPending) as info:
            refund("A-1", 500.0)
        return info.value.item_id

    def allowed(self) -> dict[str, Any]:
        """The wire form of a recorded allow decision on ``ACTION``."""
        verdict = self.px.gate.decide(Action(**ACTION), None)
        assert verdict.decision.decision == "allow"
        return verdict_to_wire(verdict)


@pytest.fixture
def env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("PROCTOR_REFUSAL_LIMIT", "1000")  # the matrix sends many bad tokens
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        made = {
            "admin": create_token(px.store, role="admin", name="root"),
            "policy_author": create_token(px.store, role="policy_author", name="pat"),
            "reviewer": create_token(px.store, role="reviewer", name="ana", queues=["billing"]),
            "reviewer_other": create_token(
                px.store, role="reviewer", name="fin", queues=["finance"]
            ),
            "sme": create_token(px.store, role="sme", name="sam", queues=["billing"]),
            "agent": create_token(px.store, role="agent", name="bot", agents=["support-bot"]),
            "agent_other": create_token(px.store, role="agent", name="bot2", agents=["other-bot"]),
            "viewer": create_token(px.store, role="viewer", name="vic"),
        }
        app = create_app(px, max_body=64 * 1024, sweep=False)
        client = AppClient(app)
        try:
            yield Env(px, client, {role: token for role, (_, token) in made.items()}, app)
        finally:
            client.close()


ACTION = {"agent": "support-bot", "tool": "lookup_order", "args": {"order_id": "A-1"}}
VERDICT = {
    "decision": {"decision": "allow", "rule_ids": ["ok"], "reason": "ok", "policy_version": None},
    "id": "d" * 32,
    "seq": 1,
}
RUN = {"id": "r" * 32, "trace_id": "t" * 32, "agent": "support-bot"}

AGENTS = {"admin": 200, "agent": 200, "agent_other": 403, "none": 401, "bad": 401}
READ = {
    "admin": 200,
    "policy_author": 200,
    "viewer": 200,
    "reviewer": 200,
    "reviewer_other": 200,
    "sme": 200,
    "agent": 403,
    "agent_other": 403,
}
SEE = {
    "admin": 200,
    "policy_author": 200,
    "viewer": 200,
    "reviewer": 200,
    "reviewer_other": 404,
    "sme": 200,
    "agent": 200,
    "agent_other": 404,
}
DECIDE = {"admin": 200, "reviewer": 200, "sme": 200, "reviewer_other": 404, "agent_other": 404}
AUDIT = {"admin": 200, "policy_author": 200, "viewer": 200}


def expect(table: dict[str, int], default: int = 403) -> dict[str, int]:
    return {role: table.get(role, 401 if role in ("none", "bad") else default) for role in ROLES}


Call = Callable[[Env], tuple[str, str, Any]]
MATRIX: list[tuple[str, Call, dict[str, int]]] = [
    ("POST actions", lambda e: ("POST", "/api/v1/actions", ACTION), expect(AGENTS)),
    (
        "POST outcomes",
        lambda e: (
            "POST",
            "/api/v1/outcomes",
            {"verdict": e.allowed(), "action": ACTION, "duration": 0.1},
        ),
        expect(AGENTS),
    ),
    (
        "POST outcomes, unrecorded decision",
        lambda e: (
            "POST",
            "/api/v1/outcomes",
            {"verdict": VERDICT, "action": ACTION, "duration": 0.1},
        ),
        expect({"agent_other": 403}),
    ),
    (
        "POST refusals",
        lambda e: (
            "POST",
            "/api/v1/refusals",
            {"action": ACTION, "reason": "held", "rule_id": "run-held"},
        ),
        expect(AGENTS),
    ),
    (
        "POST choices",
        lambda e: (
            "POST",
            "/api/v1/choices",
            {
                "agent": "support-bot",
                "options": [{"tool": "issue_refund", "args": {"amount": 5.0}}],
            },
        ),
        expect(AGENTS),
    ),
    (
        "POST runs end",
        lambda e: ("POST", f"/api/v1/runs/{'r' * 32}/end", {"run": RUN}),
        expect(AGENTS),
    ),
    (
        "POST claim",
        lambda e: ("POST", f"/api/v1/reviews/{e.pending_item()}/claim", {"token": "t" * 32}),
        expect(AGENTS),
    ),
    (
        "POST lease",
        lambda e: ("POST", f"/api/v1/reviews/{e.pending_item()}/lease", {"token": "t" * 32}),
        expect(AGENTS),
    ),
    (
        "POST timeout",
        lambda e: ("POST", f"/api/v1/reviews/{e.pending_item()}/timeout", None),
        expect(AGENTS),
    ),
    (
        "GET wait",
        lambda e: ("GET", f"/api/v1/reviews/{e.pending_item()}/wait?timeout=0", None),
        expect(SEE),
    ),
    (
        "GET reviews",
        lambda e: ("GET", "/api/v1/reviews", None),
        expect({r: 200 for r in ROLES if r not in ("none", "bad")}),
    ),
    ("GET review", lambda e: ("GET", f"/api/v1/reviews/{e.pending_item()}", None), expect(SEE)),
    (
        "POST approve",
        lambda e: ("POST", f"/api/v1/reviews/{e.pending_item()}/approve", {}),
        expect(DECIDE),
    ),
    (
        "POST reject",
        lambda e: ("POST", f"/api/v1/reviews/{e.pending_item()}/reject", {"reason": "no"}),
        expect(DECIDE),
    ),
    (
        "POST edit",
        lambda e: ("POST", f"/api/v1/reviews/{e.pending_item()}/edit", {"args": {"amount": 150.0}}),
        expect(DECIDE),
    ),
    (
        "POST escalate",
        lambda e: ("POST", f"/api/v1/reviews/{e.pending_item()}/escalate", {"to": "finance"}),
        expect(DECIDE),
    ),
    (
        "POST choose",
        lambda e: ("POST", f"/api/v1/reviews/{e.pending_item()}/choose", {"option": 0}),
        expect({**DECIDE, "admin": 422, "reviewer": 422, "sme": 422}),
    ),
    (
        "POST policies",
        lambda e: ("POST", "/api/v1/policies", {"text": POLICY}),
        expect({"admin": 200, "policy_author": 200}),
    ),
    ("GET policies", lambda e: ("GET", "/api/v1/policies", None), expect(READ)),
    ("GET active policy", lambda e: ("GET", "/api/v1/policies/active", None), expect(READ)),
    ("GET agents", lambda e: ("GET", "/api/v1/agents", None), expect(READ)),
    ("GET decisions", lambda e: ("GET", "/api/v1/decisions", None), expect(READ)),
    ("GET kpi", lambda e: ("GET", "/api/v1/kpi", None), expect(READ)),
    ("GET alerts", lambda e: ("GET", "/api/v1/alerts", None), expect(READ)),
    ("POST alerts check", lambda e: ("POST", "/api/v1/alerts/check", None), expect({"admin": 200})),
    ("GET notifications", lambda e: ("GET", "/api/v1/notifications", None), expect(READ)),
    ("GET problems", lambda e: ("GET", "/api/v1/problems", None), expect(READ)),
    ("GET breakers", lambda e: ("GET", "/api/v1/breakers", None), expect(READ)),
    (  # no such breaker: 404 for the admin, refused before that for everyone else
        "POST breaker reset",
        lambda e: ("POST", "/api/v1/breakers/support-bot/issue_refund/reset", None),
        expect({"admin": 404}),
    ),
    ("GET audit verify", lambda e: ("GET", "/api/v1/audit/verify", None), expect(AUDIT)),
    ("GET audit export", lambda e: ("GET", "/api/v1/audit/export", None), expect(AUDIT)),
    (
        "POST tokens",
        lambda e: ("POST", "/api/v1/tokens", {"role": "viewer", "name": "v2"}),
        expect({"admin": 200}),
    ),
    ("GET tokens", lambda e: ("GET", "/api/v1/tokens", None), expect({"admin": 200})),
    (
        "DELETE token",
        lambda e: (
            "DELETE",
            "/api/v1/tokens/" + create_token(e.px.store, role="viewer", name="tmp")[0].token_id,
            None,
        ),
        expect({"admin": 200}),
    ),
    ("GET healthz", lambda e: ("GET", "/healthz", None), {r: 200 for r in ROLES}),
    ("GET readyz", lambda e: ("GET", "/readyz", None), {r: 200 for r in ROLES}),
]


def test_authorization_matrix(env: Env) -> None:
    wrong = []
    for name, make, expected in MATRIX:
        for role in ROLES:
            method, path, body = make(env)
            response = env.client.request(method, path, json=body, headers=env.headers(role))
            if response.status_code != expected[role]:
                wrong.append(
                    f"{name} as {role}: {response.status_code} (expected "
                    f"{expected[role]}) {response.text[:120]}"
                )
    assert not wrong, "\n".join(wrong)
    write_due(env.px.store, env.app.state.refusals, everything=True)  # as at shutdown
    denied = env.client.get(
        "/api/v1/decisions?kind=access.denied&limit=1000", headers=env.headers("admin")
    ).json()
    statuses = [s for _, _, cells in MATRIX for s in cells.values()]
    full = [d["record"] for d in denied if "count" not in d["record"]]
    counted = [d["record"] for d in denied if "count" in d["record"]]
    assert len(full) == statuses.count(403)  # every refused authenticated attempt, in full
    assert {"status", "method", "path", "reason", "role"} <= set(full[0])
    # Requests without a valid token: one record for the address and window, with the count.
    assert len(counted) == 1 and counted[0]["count"] == statuses.count(401)
    assert counted[0]["client"] == "127.0.0.1"
    assert counted[0]["statuses"] == {"401": statuses.count(401)}


def test_reviewer_identity_comes_from_the_token(env: Env) -> None:
    item = env.pending_item()
    r = env.client.post(
        f"/api/v1/reviews/{item}/approve",
        json={"note": "fine", "by": "someone-else"},
        headers=env.headers("reviewer"),
    )
    assert r.status_code == 422 and "by" in r.json()["message"]  # no such field
    r = env.client.post(
        f"/api/v1/reviews/{item}/approve", json={"note": "fine"}, headers=env.headers("reviewer")
    )
    assert r.status_code == 200 and r.json()["decided_by"] == "ana"


def test_bad_input_gets_clear_4xx(env: Env) -> None:
    h = env.headers("admin")
    r = env.client.post("/api/v1/actions", json={"agent": 5, "tool": "x"}, headers=h)
    assert r.status_code == 422 and r.json()["field"] == "body.agent"
    r = env.client.post(
        "/api/v1/actions", content=b"{not json", headers={**h, "content-type": "application/json"}
    )
    assert r.status_code == 422
    r = env.client.post("/api/v1/actions", content=b"agent=x", headers=h)
    assert r.status_code == 422 and "JSON" in r.json()["message"]
    r = env.client.post(
        "/api/v1/actions", json={**ACTION, "args": {"blob": "x" * 100_000}}, headers=h
    )
    assert r.status_code == 413
    assert env.client.get("/api/v1/reviews/nope", headers=h).status_code == 404
    assert env.client.get("/api/v1/policies/nope", headers=h).status_code == 404
    assert env.client.delete("/api/v1/tokens/nope", headers=h).status_code == 404
    r = env.client.post("/api/v1/policies", json={"text": "policy: x\nrules: [{id: a}]"}, headers=h)
    assert r.status_code == 422 and r.json()["line"] == 2
    item = env.pending_item()
    assert (
        env.client.post(
            f"/api/v1/reviews/{item}/approve", json={}, headers=env.headers("reviewer")
        ).status_code
        == 200
    )
    r = env.client.post(
        f"/api/v1/reviews/{item}/reject", json={"reason": "late"}, headers=env.headers("sme")
    )
    assert r.status_code == 409 and "already approved" in r.json()["message"]
    r = env.client.get("/api/v1/reviews", params={"status": "bogus"}, headers=h)
    assert r.status_code == 422
    r = env.client.post(
        "/api/v1/tokens", json={"role": "agent", "name": "x", "queues": ["q"]}, headers=h
    )
    assert r.status_code == 422


def test_idempotency_key_records_an_action_once(env: Env) -> None:
    h = env.headers("agent")
    body = {**ACTION, "idempotency_key": "k" * 32}
    first = env.client.post("/api/v1/actions", json=body, headers=h).json()
    second = env.client.post("/api/v1/actions", json=body, headers=h).json()
    assert first == second
    decisions = env.client.get(
        "/api/v1/decisions?kind=decision", headers=env.headers("admin")
    ).json()
    assert [d["record"]["id"] for d in decisions] == [first["id"]]
    outcome = {"verdict": first, "action": ACTION, "duration": 0.01, "idempotency_key": "o" * 32}
    assert env.client.post("/api/v1/outcomes", json=outcome, headers=h).status_code == 200
    assert env.client.post("/api/v1/outcomes", json=outcome, headers=h).status_code == 200
    outcomes = env.client.get("/api/v1/decisions?kind=outcome", headers=env.headers("admin")).json()
    assert len(outcomes) == 1


def test_revoked_token_stops_working(env: Env) -> None:
    made, token = create_token(env.px.store, role="viewer", name="temp")
    h = {"Authorization": f"Bearer {token}"}
    assert env.client.get("/api/v1/reviews", headers=h).status_code == 200
    env.client.delete(f"/api/v1/tokens/{made.token_id}", headers=env.headers("admin"))
    import time

    time.sleep(2.1)  # verified tokens are remembered for two seconds
    assert env.client.get("/api/v1/reviews", headers=h).status_code == 401
    listed = env.client.get("/api/v1/tokens", headers=env.headers("admin")).json()
    assert all("secret" not in json.dumps(t) and "pxt_" not in json.dumps(t) for t in listed)


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("policy: x\nrules: " + "[" * 1200 + "]" * 1200, 2, 71, "nests deeper than 64"),
        (
            "policy: x\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(600)) + "  " * 600 + "v: 1",
            66,
            129,
            "nests deeper than 64",
        ),
        ("policy: x\nrules: [{id: a, decide: allow, when: '1 + 2'}]", 2, 39, "boolean"),
        ("policy: x\nrisk: tool == 'x'", 2, 7, "'risk' must give a number"),
        (
            "policy: x\nrules: [{id: a, decide: allow, when: "
            + "(" * 2000
            + "true"
            + ")" * 2000
            + "}]",
            2,
            38,
            "characters long",
        ),
    ],
    ids=["deep-flow", "deep-block", "when-number", "risk-boolean", "deep-cel"],
)
def test_bad_policy_over_the_api_is_422_with_its_place(
    sqlite_url: str, text: str, line: int, column: int, fragment: str
) -> None:
    with Proctor(sqlite_url) as px:
        _, token = create_token(px.store, role="admin", name="root")
        client = AppClient(create_app(px, sweep=False))
        try:
            r = client.post(
                "/api/v1/policies",
                json={"text": text},
                headers={"Authorization": f"Bearer {token}"},
            )
        finally:
            client.close()
    assert r.status_code == 422, r.text
    body = r.json()
    assert fragment in body["message"]
    assert (body["line"], body["column"]) == (line, column)
