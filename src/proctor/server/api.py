"""/api/v1: agents' actions and outcomes, review items and decisions, policies, audit, tokens.

Who may do what is ``auth.PERMISSIONS`` (the console asks the same table): actions,
outcomes, runs and claims need ``act`` (agents only as their agents); deciding reviews
``decide`` (reviewers and SMEs only in their queues); reading reviews, everyone who can see
the item; applying policies ``apply_policy``; reading policies, agents and the log
``read``; verifying and exporting the chain ``verify``; tokens and resetting circuit
breakers ``manage``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated, Any, Literal

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from .._errors import Conflict, Forbidden, InvalidRequest, NotFound
from ..audit.export import iter_records
from ..audit.receipts import receipt
from ..audit.verify import verify
from ..backends import call_to_wire, item_to_wire, verdict_from_wire, verdict_to_wire
from ..backends.local import LocalBackend
from ..execution.calls import CallRef, Settlement
from ..gate import CallOutcome, ReportedError, Verdict
from ..policy import Action, Decision
from ..review.items import ANSWERED, RECHECK_SECONDS, STATUSES, ReviewItem, status_of
from ..runstate import RunState
from ..sdk import Proctor
from ..store import WouldBlock
from ..store.tables import audit_log, calls, policies
from .app import ORJSONResponse
from .auth import Principal, create_token, expiry_text, list_tokens, require, revoke_token
from .console_data import policy_history
from .refusals import authenticate, record_now
from .schemas import (
    INT64_MAX,
    ActionIn,
    ApproveIn,
    AttemptIn,
    ChoiceIn,
    ChooseIn,
    ClaimIn,
    EditIn,
    EscalateCallIn,
    EscalateIn,
    EscalationIn,
    LeaseIn,
    OutcomeIn,
    PolicyIn,
    RefusalIn,
    RejectIn,
    RunEndIn,
    RunIn,
    SettleIn,
    SettlementIn,
    TokenIn,
)

router = APIRouter(prefix="/api/v1")


def _px(request: Request) -> Proctor:
    px: Proctor = request.app.state.px
    return px


async def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; never from the body."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return await authenticate(request, token.strip() if scheme.lower() == "bearer" else None)


Who = Annotated[Principal, Depends(principal)]


def need(who: Principal, permission: str) -> None:
    """Refuse (403) unless the caller's role has ``permission`` in ``auth.PERMISSIONS``."""
    require(who, permission)


def _acts_as(who: Principal, agent: str) -> None:
    need(who, "act")
    if not who.acts_as(agent):
        raise Forbidden(f"token '{who.name}' may not act as agent '{agent}'")


def _local(px: Proctor) -> LocalBackend:
    return px.local


def _run(data: RunIn | None) -> RunState | None:
    """The agent's run as the core needs it (history and holds stay with the agent)."""
    if data is None:
        return None
    run = RunState(
        agent=data.agent,
        context=dict(data.context),
        id=data.id,
        trace_id=data.trace_id,
        started=data.started,
        ancestors=tuple(data.ancestors) or ((data.parent_id,) if data.parent_id else ()),
    )
    run.context = dict(data.context)  # as the agent sent it, already merged with its parents
    run.history.extend(data.history)
    return run


def _action(data: ActionIn) -> Action:
    return Action(
        data.agent, data.tool, data.args, data.context, data.reversible, tuple(data.reads)
    )


def _item(px: Proctor, who: Principal, item_id: str) -> ReviewItem:
    item = px.backend.item(item_id)
    if not who.sees_item(item.queue, item.agent):
        raise NotFound(f"no review item {item_id!r}")  # do not confirm it exists
    return item


# -- the agent's side ------------------------------------------------------------------------


@router.post("/actions", tags=["agents"])
async def create_action(body: ActionIn, who: Who, request: Request) -> Any:
    """Evaluate an action under the active policy and record the decision.

    With ``idempotency_key`` a retry returns the first answer instead of deciding again.
    An uncontended SQLite write commits in place; one that would wait for another writer's
    lock (up to ``PROCTOR_BUSY_TIMEOUT_MS``), and every PostgreSQL write, runs on the
    server's decision thread, so the event loop goes on serving meanwhile.
    """
    _acts_as(who, body.agent)
    px = _px(request)
    started = time.perf_counter()
    try:  # uncontended: commit in place, a thread hop would cost more than the decision
        response = _decide_action(px, who, body, now=True)
    except WouldBlock:  # another writer holds the lock: wait for it off the loop
        response = await asyncio.get_running_loop().run_in_executor(
            request.app.state.decider, _decide_action, px, who, body
        )
    request.app.state.metrics.latency.observe(time.perf_counter() - started)
    return response


def _decide_action(px: Proctor, who: Principal, body: ActionIn, now: bool = False) -> Response:
    local = _local(px)
    run = _run(body.run)
    with local.store.write_now() if now else local.store.write() as tx:
        if body.idempotency_key:
            seen = tx.sql(
                "SELECT response FROM proctor_idempotency WHERE principal = ? AND key = ?",
                (who.token_id, body.idempotency_key),
            ).fetchone()
            if seen is not None:
                return Response(seen[0], media_type="application/json")
        call = (
            CallRef(body.call.key, body.call.token, body.call.owner)
            if body.call is not None
            else None
        )
        verdict = local.gate.decide_in(
            tx, _action(body), run, body.params, call, tuple(body.waited_on)
        )
        wire = verdict_to_wire(verdict)
        if body.idempotency_key:
            tx.sql(
                "INSERT INTO proctor_idempotency (principal, key, response, created_at)"
                " VALUES (?, ?, ?, ?)",
                (who.token_id, body.idempotency_key, orjson.dumps(wire).decode(), time.time()),
            )
    # A ready response: FastAPI would otherwise walk the dict through its encoder first.
    return ORJSONResponse(wire)


class _Replay(Exception):
    def __init__(self, response: str) -> None:
        self.response = response


@router.post("/outcomes", tags=["agents"])
def create_outcome(body: OutcomeIn, who: Who, request: Request) -> Any:
    """Record how a tool call ended.

    A plain call's outcome must name a decision recorded for this agent's call (by id and
    seq); what the decision said (``on_error``, ``sample``) is taken from the log, not from
    the request. An approved item's outcome may be recorded only by the runner holding its
    claim (the claim token it claimed with), while the item runs or is in doubt: anything
    else is 403 or 409, and logged as ``access.denied``.
    """
    _acts_as(who, body.action.agent)
    px = _px(request)
    try:
        return _outcome(px, body, who)
    except Conflict as exc:  # 403s are logged by the error handler; this refusal too
        record_now(request, 409, str(exc))
        raise


def _outcome(px: Proctor, body: OutcomeIn, who: Principal) -> Any:
    local = _local(px)
    error = ReportedError(body.error_type, body.error or "") if body.error_type else None
    action = _action(body.action)
    key = body.idempotency_key
    item_id = body.item_id
    if item_id is not None:
        if not body.has_result:
            raise InvalidRequest("an approved item's outcome carries its result (has_result)")
        item = px.backend.item(item_id)
        if item.agent != action.agent or not who.acts_as(item.agent):
            raise Forbidden(f"item {item_id} is not an action of agent '{action.agent}'")
        verdict = _item_verdict(item)
    else:
        claimed = {**body.verdict.model_dump(), "call": None}  # where it stands: ours to say
        verdict = _recorded_decision(px, verdict_from_wire(claimed), action)
    limit = local.gate.max_args_bytes

    def in_tx(tx: Any) -> bool:
        if key:
            seen = tx.sql(
                "SELECT response FROM proctor_idempotency WHERE principal = ? AND key = ?",
                (who.token_id, key),
            ).fetchone()
            if seen is not None:
                raise _Replay(seen[0])
            tx.sql(
                "INSERT INTO proctor_idempotency (principal, key, response, created_at)"
                " VALUES (?, ?, ?, ?)",
                (who.token_id, key, "{}", time.time()),
            )
        if item_id is None:
            return True
        return local.service.grants.finish(tx, item_id, body.claim_token, body.result, error, limit)

    call = None
    if body.call is not None:
        call = CallOutcome(
            body.call.id,
            body.call.token,
            body.result,
            ambiguous=body.call.ambiguous,
            has_lookup=body.call.has_lookup,
        )
    try:
        opened = local.gate.record_outcome(
            verdict,
            action,
            _run(body.action.run),
            error=error,
            duration=body.duration,
            params=body.action.params,
            item_id=item_id,
            in_tx=in_tx,
            call=call,
            healed=body.healed.model_dump(exclude_none=True) if body.healed else None,
        )
    except _Replay as replay:
        return orjson.loads(replay.response) or {"item_id": None, "replayed": True}
    return {"item_id": opened}


def _item_verdict(item: ReviewItem) -> Verdict:
    """An approved item's verdict, from the item as stored."""
    decision = Decision(
        "allow", tuple(item.rule_ids), f"approved by {item.decided_by}", item.policy_version
    )
    return Verdict(decision, item.decision_id, item.decision_seq, item.id)


def _recorded_decision(
    px: Proctor, claimed: Verdict, action: Action, *, allow_only: bool = True
) -> Verdict:
    """The allow decision an outcome reports on, as the log recorded it."""
    row = None
    if claimed.seq is not None:
        with px.store.read() as conn:
            row = conn.execute(
                sa.select(
                    audit_log.c.id,
                    audit_log.c.kind,
                    audit_log.c.agent,
                    audit_log.c.tool,
                    audit_log.c.decision,
                    audit_log.c.record,
                ).where(audit_log.c.seq == claimed.seq)
            ).first()
    if (
        row is None
        or row.id != claimed.id
        or row.kind != "decision"
        or row.agent != action.agent
        or row.tool != action.tool
    ):
        raise Forbidden(
            f"no decision {claimed.id!r} at seq {claimed.seq} was recorded for"
            f" {action.agent}'s call of {action.tool}"
        )
    if row.decision != "allow" and allow_only:
        raise Conflict(f"decision {claimed.id} was {row.decision}: no tool ran under it")
    rec = orjson.loads(row.record)
    decision = Decision(
        row.decision,
        tuple(rec.get("rules") or ()),
        str(rec.get("reason") or ""),
        rec.get("policy_version"),
        rec.get("risk"),
        queue=rec.get("queue"),
        on_error=rec.get("on_error") == "review",
        sample=float(rec.get("sample") or 0.0),
        sample_queue=rec.get("sample_queue"),
    )
    return Verdict(decision, claimed.id, claimed.seq)


@router.post("/attempts", tags=["agents"])
def create_attempt(body: AttemptIn, who: Who, request: Request) -> Any:
    """Record a failed try of an allowed call that another try follows; it counts toward
    the tool's circuit breaker, whose state after it is returned."""
    _acts_as(who, body.action.agent)
    px = _px(request)
    action = _action(body.action)
    claimed = {**body.verdict.model_dump(), "call": None}
    verdict = _recorded_decision(px, verdict_from_wire(claimed), action)
    detail = {"ambiguous": body.ambiguous, "reconciled": body.reconciled}
    state = _local(px).gate.record_attempt(
        verdict,
        action,
        _run(body.action.run),
        attempt=body.attempt,
        error=ReportedError(body.error_type, body.error),
        detail={k: v for k, v in detail.items() if v is not None},
        call_id=body.call_id,
    )
    return {"breaker": state}


@router.post("/escalations", tags=["agents"])
def create_escalation(body: EscalationIn, who: Who, request: Request) -> Any:
    """Hand a call that keeps failing to a person: an exception item with its history, in
    the queue the tool's policy names."""
    _acts_as(who, body.action.agent)
    px = _px(request)
    action = _action(body.action)
    claimed = {**body.verdict.model_dump(), "call": None}
    verdict = _recorded_decision(px, verdict_from_wire(claimed), action, allow_only=False)
    item_id = _local(px).gate.escalate_failure(
        verdict,
        action,
        _run(body.action.run),
        why=body.why,
        history=body.history,
        params=body.action.params,
        call_id=body.call_id,
    )
    return {"item_id": item_id}


@router.post("/refusals", tags=["agents"])
def create_refusal(body: RefusalIn, who: Who, request: Request) -> Any:
    """Log an action the agent's SDK refused before asking (a held run)."""
    _acts_as(who, body.action.agent)
    px = _px(request)
    verdict = _local(px).gate.record_refusal(
        _action(body.action), _run(body.action.run), body.reason, body.rule_id
    )
    return verdict_to_wire(verdict)


@router.post("/choices", tags=["agents"])
def create_choice(body: ChoiceIn, who: Who, request: Request) -> Any:
    """Offer ranked options to a human (a choice item)."""
    _acts_as(who, body.agent)
    px = _px(request)
    offered = [
        (
            Action(body.agent, o.tool, o.args, body.context, o.reversible, tuple(o.reads)),
            {"probability": o.probability, "risks": o.risks},
        )
        for o in body.options
    ]
    verdict = _local(px).gate.open_choice(
        body.agent, offered, _run(body.run), body.queue, body.reason
    )
    return verdict_to_wire(verdict)


@router.post("/runs/{run_id}/end", tags=["agents"])
def end_run(run_id: str, body: RunEndIn, who: Who, request: Request) -> Any:
    """Record that a run finished (completed, or failed with an error type)."""
    _acts_as(who, body.run.agent)
    px = _px(request)
    run = _run(body.run)
    assert run is not None
    run.id = run_id
    error = ReportedError(body.error_type, "") if body.error_type else None
    _local(px).gate.end_run(run, error)
    return {"ok": True}


@router.post("/reviews/{item_id}/claim", tags=["agents"])
def claim(item_id: str, body: ClaimIn, who: Who, request: Request) -> Any:
    """Claim an approved action's grant with a token of the runner's own making:
    ``claimed`` (run it now, renewing the lease), ``busy``, ``done``, ``in_doubt``, ...

    The same token claiming again (a retry after a lost response) gets its claim back.
    """
    px = _px(request)
    item = px.backend.item(item_id)
    _acts_as(who, item.agent)
    found = _local(px).service.grants.claim(item_id, body.args_digest, body.owner, body.token)
    return {
        "state": found.state,
        "lease_seconds": found.lease_seconds,
        "held_by": list(found.held_by),
        "reason": found.reason,
    }


@router.post("/reviews/{item_id}/lease", tags=["agents"])
def renew_lease(item_id: str, body: LeaseIn, who: Who, request: Request) -> Any:
    """Renew the lease of a claim this token holds; ``held: false`` when it no longer does."""
    px = _px(request)
    item = px.backend.item(item_id)
    _acts_as(who, item.agent)
    return {"held": _local(px).service.grants.renew(item_id, body.token)}


def _call_of(px: Proctor, who: Principal, call_id: str) -> dict[str, Any]:
    """A call the caller may act on: its agent's token (or an admin's)."""
    with px.store.read() as conn:
        row = conn.execute(sa.select(calls).where(calls.c.id == call_id)).first()
    if row is None:
        raise NotFound(f"no call {call_id!r}")
    _acts_as(who, row.agent)
    return dict(row._mapping)


@router.post("/calls/{call_id}/lease", tags=["agents"])
def renew_call_lease(call_id: str, body: LeaseIn, who: Who, request: Request) -> Any:
    """Renew the lease of a call this token claimed; ``held: false`` when it no longer is."""
    px = _px(request)
    _call_of(px, who, call_id)
    return {"held": _local(px).renew_call(call_id, body.token)}


@router.post("/calls/{call_id}/settle", tags=["agents"])
def settle_call(call_id: str, body: SettlementIn, who: Who, request: Request) -> Any:
    """A tool's lookup answers whether an unknown call happened (logged against the call)."""
    px = _px(request)
    _call_of(px, who, call_id)
    state = _local(px).settle_call(
        call_id,
        Settlement(body.answer, body.result, body.evidence, body.token, body.owner),
    )
    return call_to_wire(state)


@router.post("/calls/{call_id}/escalate", tags=["agents"])
def escalate_call(call_id: str, body: EscalateCallIn, who: Who, request: Request) -> Any:
    """An agent without a lookup asks a person to settle its unknown call."""
    px = _px(request)
    _call_of(px, who, call_id)
    return {"item_id": _local(px).escalate_call(call_id, body.why)}


@router.get("/calls", tags=["agents"])
def list_unknown_calls(
    who: Who,
    request: Request,
    tool: Annotated[str, Query(min_length=1, max_length=200)],
    status: Annotated[Literal["unknown"], Query()] = "unknown",
    agent: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Unknown calls of a tool, oldest first, with the arguments their decisions recorded:
    what the process holding the tool's lookup reconciles on its schedule."""
    if who.role == "agent":
        if agent is None:
            raise InvalidRequest("an agent's token lists the calls of one of its agents: agent=")
        _acts_as(who, agent)
    else:
        need(who, "read")
    found = _local(_px(request)).unknown_calls(agent, tool, limit)
    return {"calls": [asdict(c) for c in found]}


@router.get("/calls/{call_id}", tags=["audit"])
def call_receipt(call_id: str, who: Who, request: Request) -> Any:
    """A call's life: where it stands and every record about it, with their seqs."""
    px = _px(request)
    if who.role == "agent":
        _call_of(px, who, call_id)
    else:
        need(who, "read")
    return receipt(px.store, call_id)


@router.get("/runs/{run_id}/lineage", tags=["agents"])
def run_lineage(run_id: str, who: Who, request: Request) -> Any:
    """A run and the runs it descends from, nearest first, as recorded."""
    need(who, "act")
    return {"runs": _local(_px(request)).lineage(run_id)}


@router.post("/reviews/{item_id}/timeout", tags=["agents"])
def apply_timeout(item_id: str, who: Who, request: Request) -> Any:
    """Apply the item's review timeout if it has passed (expire or escalate)."""
    px = _px(request)
    item = px.backend.item(item_id)
    _acts_as(who, item.agent)
    px.backend.sweep_item(item_id)
    return {"status": px.backend.status(item_id)}


@router.get("/reviews/{item_id}/wait", tags=["agents", "reviews"])
async def wait(
    item_id: str,
    who: Who,
    request: Request,
    until_not: Annotated[str, Query(alias="while", max_length=200)] = "pending",
    timeout: Annotated[float, Query(ge=0, le=60)] = 25.0,
) -> Any:
    """Long-poll: answer as soon as the item leaves the ``while`` statuses, or at ``timeout``.

    ``reconnect: true`` means the server is shutting down: ask again (another instance,
    or this one once restarted, will answer).
    """
    px = _px(request)
    item = await asyncio.to_thread(_item, px, who, item_id)
    statuses = {s for s in until_not.split(",") if s}
    unknown = statuses - set(STATUSES)
    if unknown:
        raise InvalidRequest(f"while: unknown status {sorted(unknown)[0]!r}")
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    class _Wake:
        def set(self) -> None:
            loop.call_soon_threadsafe(changed.set)

    waker = _Wake()
    store = px.store
    store.hub.subscribe(item_id, waker)
    shutting_down: asyncio.Event = request.app.state.shutting_down
    try:
        deadline = loop.time() + timeout
        status = item.status
        while True:
            if status not in statuses:
                return {"status": status, "reconnect": False}
            if shutting_down.is_set():
                return {"status": status, "reconnect": True}
            left = deadline - loop.time()
            if left <= 0:
                return {"status": status, "reconnect": False}
            stop = asyncio.ensure_future(shutting_down.wait())
            woke = asyncio.ensure_future(changed.wait())
            await asyncio.wait(
                {stop, woke},
                timeout=min(left, RECHECK_SECONDS),
                return_when=asyncio.FIRST_COMPLETED,
            )
            stop.cancel()
            woke.cancel()
            changed.clear()
            status = await asyncio.to_thread(status_of, store, item_id)
    finally:
        store.hub.unsubscribe(item_id, waker)


# -- the reviewer's side ---------------------------------------------------------------------


@router.get("/reviews", tags=["reviews"])
def list_reviews(
    who: Who,
    request: Request,
    status: Annotated[str | None, Query(max_length=20)] = "pending",
    queue: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    """Review items the caller may see, most severe first. ``status=all`` for every status."""
    px = _px(request)
    items = px.backend.items(None if status == "all" else status, queue)
    return [item_to_wire(i) for i in items if who.sees_item(i.queue, i.agent)]


@router.get("/reviews/{item_id}", tags=["reviews"])
def get_review(item_id: str, who: Who, request: Request) -> Any:
    """One item with everything a reviewer needs to decide it."""
    item = _item(_px(request), who, item_id)
    return {
        **item_to_wire(item),
        "severity": item.severity(),
        "diff": item.diff(),
        "next_actions": item.next_actions(),
    }


def _decide(request: Request, who: Who, item_id: str, verb: str, **fields: Any) -> Any:
    px = _px(request)
    item = _item(px, who, item_id)
    if not who.reviews(item.queue):
        raise Forbidden(
            f"token '{who.name}' ({who.role}) may not decide items in queue '{item.queue}'"
        )
    # The reviewer is the token's name: nothing in the body can say otherwise.
    return item_to_wire(px.backend.review(verb, item_id, who.name, **fields))


@router.post("/reviews/{item_id}/approve", tags=["reviews"])
def approve(item_id: str, body: ApproveIn, who: Who, request: Request) -> Any:
    """Approve: one vote toward the queue's quorum. An item in doubt may have run already:
    approving it again needs ``confirm_not_run: true`` (the reviewer checked it did not)."""
    return _decide(
        request, who, item_id, "approve", note=body.note, confirm_not_run=body.confirm_not_run
    )


@router.post("/reviews/{item_id}/reject", tags=["reviews"])
def reject(item_id: str, body: RejectIn, who: Who, request: Request) -> Any:
    """Reject with a reason; the agent receives it."""
    return _decide(request, who, item_id, "reject", reason=body.reason)


@router.post("/reviews/{item_id}/edit", tags=["reviews"])
def edit(item_id: str, body: EditIn, who: Who, request: Request) -> Any:
    """Approve with changed arguments (checked against the tool and re-evaluated)."""
    return _decide(request, who, item_id, "edit", args=body.args, note=body.note)


@router.post("/reviews/{item_id}/escalate", tags=["reviews"])
def escalate(item_id: str, body: EscalateIn, who: Who, request: Request) -> Any:
    """Move the item to another queue."""
    return _decide(request, who, item_id, "escalate", to=body.to, note=body.note)


@router.post("/reviews/{item_id}/settle", tags=["reviews"])
def settle(item_id: str, body: SettleIn, who: Who, request: Request) -> Any:
    """Settle a call that may or may not have happened: it did (the call is closed), or it
    did not (its next repeat runs it, once)."""
    return _decide(request, who, item_id, "settle", happened=body.happened, note=body.note)


@router.post("/reviews/{item_id}/choose", tags=["reviews"])
def choose(item_id: str, body: ChooseIn, who: Who, request: Request) -> Any:
    """Pick one option of a choice item."""
    return _decide(request, who, item_id, "choose", option=body.option, note=body.note)


# -- policy, agents, decisions, audit ------------------------------------------------------


@router.post("/policies", tags=["policies"])
def apply_policy(body: PolicyIn, who: Who, request: Request) -> Any:
    """Validate, test and activate a policy; the author is the token's name."""
    need(who, "apply_policy")
    version = _px(request).backend.apply_policy(body.text, "<request>", who.name, body.message)
    return {"version": version}


@router.get("/policies", tags=["policies"])
def list_policies(who: Who, request: Request) -> Any:
    """Every stored version, newest first, marking the active one."""
    need(who, "read")
    active, history = policy_history(_px(request).store)
    return [{**row, "active": row["version"] == active} for row in history]


@router.get("/policies/active", tags=["policies"])
def active_policy(who: Who, request: Request) -> Any:
    """The active version and its text."""
    need(who, "read")
    policy = _px(request).backend.active_policy()
    if policy is None:
        raise NotFound("no policy has been applied")
    return {"version": policy.version, "name": policy.name, "text": policy.text}


@router.get("/policies/{version}", tags=["policies"])
def get_policy(version: str, who: Who, request: Request) -> Any:
    """One stored version and its text."""
    need(who, "read")
    with _px(request).store.read() as conn:
        row = conn.execute(sa.select(policies).where(policies.c.version == version)).first()
    if row is None:
        raise NotFound(f"no policy version {version!r}")
    return row._asdict()


@router.get("/agents", tags=["policies"])
def agents(who: Who, request: Request) -> Any:
    """The agents the active policy declares, with their envelopes."""
    need(who, "read")
    policy = _px(request).backend.active_policy()
    if policy is None:
        return []
    return [{"id": name, **agent.model_dump()} for name, agent in policy.agents.items()]


@router.get("/decisions", tags=["audit"])
def decisions(
    who: Who,
    request: Request,
    after: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    kind: Annotated[str | None, Query(max_length=32)] = None,
) -> Any:
    """Records of the decision log after seq ``after`` (decisions, reviews, outcomes, ...)."""
    need(who, "read")
    query = sa.select(audit_log.c.seq, audit_log.c.hash, audit_log.c.record).where(
        audit_log.c.seq > after
    )
    if kind is not None:
        query = query.where(audit_log.c.kind == kind)
    with _px(request).store.read() as conn:
        rows = conn.execute(query.order_by(audit_log.c.seq).limit(limit)).all()
    return [{"seq": s, "hash": h, "record": orjson.loads(r)} for s, h, r in rows]


@router.get("/kpi", tags=["audit"])
def kpi(
    who: Who,
    request: Request,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    tool: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
) -> Any:
    """Workflow KPIs over the records since ``since`` (a Unix time), for one agent and
    tool or all."""
    need(who, "read")
    from ..telemetry.kpi import compute

    return compute(_px(request).store, agent=agent, tool=tool, since=since)


@router.get("/alerts", tags=["monitoring"])
def alerts(who: Who, request: Request) -> Any:
    """Every alert's state (firing first), its last value and when it last changed."""
    need(who, "read")
    from ..telemetry.alerts import states

    return states(_px(request).store)


@router.post("/alerts/check", tags=["monitoring"])
def check_alerts(who: Who, request: Request) -> Any:
    """Check the alerts and review SLAs now and send what is due (the server also does this
    on its own every ``PROCTOR_ALERT_CHECK_SECONDS``)."""
    need(who, "manage")
    from ..telemetry.alerts import AlertMonitor
    from ..telemetry.notifications import deliver_due

    px = _px(request)
    px.reviews.sweep()
    changes = AlertMonitor(px.store).check()
    delivery = deliver_due(px.store)
    return {
        "transitions": [vars(c) for c in changes],
        "delivery": delivery.as_dict(),
    }


@router.get("/notifications", tags=["monitoring"])
def list_notifications(
    who: Who,
    request: Request,
    status: Annotated[Literal["pending", "sent", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """The notification outbox, newest first; URLs show only scheme and host."""
    need(who, "read")
    from ..telemetry.notifications import recent

    return recent(_px(request).store, status=status, limit=limit)


@router.get("/problems", tags=["monitoring"])
def problems(
    who: Who,
    request: Request,
    window: Annotated[float, Query(gt=0, le=90 * 86400)] = 86400.0,
) -> Any:
    """Open problems (failing tools, breaching queues, deny and cost spikes, firing alerts,
    actions in doubt), most pressing first."""
    need(who, "read")
    from ..telemetry.problems import rank

    return rank(_px(request).store, window=window)


@router.get("/breakers", tags=["monitoring"])
def list_breakers(who: Who, request: Request) -> Any:
    """Every circuit breaker, open first: its state, recent calls and failures, when it
    opened and its trial calls."""
    need(who, "read")
    from ..telemetry.healing import breaker_rows

    return breaker_rows(_px(request).store)


@router.post("/breakers/{scope:path}/reset", tags=["monitoring"])
def reset_breaker(scope: str, who: Who, request: Request) -> Any:
    """Close a breaker by hand (``agent/tool`` or ``*/tool``; the slash needs no escaping):
    logged as ``breaker.closed`` by the token's name. Admins only."""
    need(who, "manage")
    from ..execution.breakers import reset

    try:
        with _px(request).store.write() as tx:
            closed = reset(tx, scope, who.name)
    except LookupError:
        raise NotFound(f"no circuit breaker {scope!r}") from None
    return closed.as_dict()


@router.get("/audit/verify", tags=["audit"])
def audit_verify(who: Who, request: Request) -> Any:
    """Verify the whole chain and its head."""
    need(who, "verify")
    result = verify(_px(request).store)
    return {
        "ok": result.ok,
        "checked": result.checked,
        "head_seq": result.head_seq,
        "bad_seq": result.bad_seq,
        "problem": result.problem,
        "message": result.message(),
    }


@router.get("/audit/export", tags=["audit"])
def audit_export(
    who: Who, request: Request, since: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0
) -> StreamingResponse:
    """The log as JSON Lines, streamed."""
    need(who, "verify")
    store = _px(request).store

    def lines() -> Iterator[bytes]:
        for seq, digest, record in iter_records(store, since):
            yield f'{{"seq":{seq},"hash":"{digest}","record":{record}}}\n'.encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


# -- tokens ----------------------------------------------------------------------------------


@router.post("/tokens", tags=["tokens"])
def new_token(body: TokenIn, who: Who, request: Request) -> Any:
    """Create a token; the response holds it in full, the only time it is shown."""
    need(who, "manage")
    made, token = create_token(
        _px(request).store,
        role=body.role,
        name=body.name,
        queues=body.queues,
        agents=body.agents,
        created_by=who.name,
        expires_in=body.expires_in,
    )
    return {**made.public(), "expires": expiry_text(made.expires_at), "token": token}


@router.get("/tokens", tags=["tokens"])
def tokens(who: Who, request: Request) -> Any:
    """Every token (never its secret), with its expiry: ``expires_at`` (Unix time or null)
    and ``expires`` (a UTC time, ``never`` or ``expired``)."""
    need(who, "manage")
    return list_tokens(_px(request).store)


@router.delete("/tokens/{token_id}", tags=["tokens"])
def revoke(token_id: str, who: Who, request: Request) -> Any:
    """Revoke a token (within a few seconds in every server process)."""
    need(who, "manage")
    revoke_token(_px(request).store, token_id, by=who.name)
    return {"revoked": token_id}


__all__ = ["ANSWERED", "ORJSONResponse", "router"]
