"""Webhooks: a signed POST when a person decides, an item expires or a call's outcome
becomes unknown, so an orchestrator can resume a thread or a run without polling.

The policy's ``webhooks:`` section says where to send what. The row to send is written to
the notification outbox in the same transaction as the log record of the event, so a
crash loses nothing and a reviewer's click never waits on a receiver; the outbox's
delivery loop posts it later with retries, backoff and leases (``notifications.py``).

Each POST carries the event as JSON and ``Proctor-Signature: t=<unix>,v1=<hex>``, where
``<hex>`` is HMAC-SHA256 over ``f"{t}.{body}"`` with the webhook's secret. The secret is
named in the policy as ``${VAR}`` and read from the environment when a row is sent: it is
never stored in the policy or the database. ``verify_webhook`` (``proctor.verify_webhook``)
is the receiver's half.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from .. import _clock
from .._errors import WebhookError
from .._settings import setting
from .._version import __version__
from ..policy.schema import Webhook, validate
from ..policy.source import load_yaml
from ..store import Appended, WriteTx

SOURCE = "webhook:"  # an outbox row's source starts so: the delivery loop posts it here
SIGNATURE_HEADER = "Proctor-Signature"
EVENT_ID_HEADER = "Proctor-Event-Id"
EVENT_HEADER = "Proctor-Event"
TIMEOUT_SECONDS = 10.0
DEFAULT_TOLERANCE = 300.0
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# The log record kinds that are webhook events. An approval or an edit is one only once
# it grants (a vote short of the quorum decides nothing yet).
_EVENTS = {
    "review.approve": "review.approved",
    "review.reject": "review.rejected",
    "review.edit": "review.edited",
    "review.choose": "review.chosen",
    "review.settle": "review.settled",
    "review.expire": "review.expired",
    "grant.in_doubt": "call.unknown",
}


# -- which webhooks ---------------------------------------------------------------------

_configured: dict[str, tuple[Webhook, ...]] = {}
_configured_lock = threading.Lock()


def configured(tx: WriteTx) -> tuple[Webhook, ...]:
    """The active policy's webhooks; read once per policy version and process."""
    version = tx.policy_version
    if version is None:
        return ()
    found = _configured.get(version)
    if found is None:
        row = tx.sql("SELECT text FROM proctor_policies WHERE version = ?", (version,)).fetchone()
        found = () if row is None else tuple(validate(load_yaml(row[0])).webhooks)
        with _configured_lock:
            if len(_configured) >= 8:
                _configured.clear()
            _configured[version] = found
    return found


# -- events, inside the transaction that logs them ---------------------------------------


def on_review(
    tx: WriteTx, kind: str, item: dict[str, Any], body: dict[str, Any], rec: Appended
) -> None:
    """Queue the webhooks of a review item's logged event, if it is one."""
    event = _EVENTS.get(kind)
    if event is None or not body.get("granted", True):
        return
    hooks = configured(tx)
    if not hooks:
        return
    decided = _decision_record(tx, item["decision_seq"])
    by = body.get("by") or item.get("decided_by")
    if event == "review.rejected":
        reason = body.get("reason")
    elif event == "review.expired":
        reason = f"the review timeout passed (on_timeout: {body.get('on_timeout', 'deny')})"
    elif event == "call.unknown":
        reason = f"the approved call's runner stopped answering: {body.get('why')}"
    else:
        reason = body.get("note")
    detail = {
        k: body[k]
        for k in ("diff", "option", "happened", "on_timeout", "votes", "quorum", "owner", "why")
        if k in body
    }
    payload = {
        "type": event,
        "decision": event.split(".", 1)[1],
        "item_id": item["id"],
        "item_kind": item["kind"],
        "queue": item["queue"],
        "call_id": item.get("call_id"),
        "call_key": _call_key(tx, item.get("call_id")),
        "run_id": item.get("run_id") or decided.get("run_id"),
        "trace_id": decided.get("trace_id"),
        "agent": item["agent"],
        "tool": item["tool"],
        "by": by,
        "reason": reason,
        "review_reason": item["reason"],
        "rules": orjson.loads(item["rule_ids"]) if item.get("rule_ids") else [],
        "policy_version": item.get("policy_version"),
        "context": (decided.get("action") or {}).get("context") or {},
        "detail": detail,
        "link": _link(item["id"]),
    }
    _enqueue(tx, hooks, rec.id, rec.seq, payload, item["agent"], item["queue"])


def on_call_unknown(
    tx: WriteTx, row: dict[str, Any], why: str, rec: Appended | None = None
) -> None:
    """Queue the webhooks of a call whose outcome became unknown (its runner went silent,
    or its tool failed in a way that may have committed)."""
    hooks = configured(tx)
    if not hooks:
        return
    first = str(row.get("seqs") or "").split(",")[0]
    decided = _decision_record(tx, int(first)) if first else {}
    payload = {
        "type": "call.unknown",
        "decision": "unknown",
        "item_id": row.get("item_id"),
        "item_kind": None,
        "queue": None,
        "call_id": row["id"],
        "call_key": row["key"],
        "run_id": decided.get("run_id"),
        "trace_id": decided.get("trace_id"),
        "agent": row["agent"],
        "tool": row["tool"],
        "by": None,
        "reason": why,
        "review_reason": None,
        "rules": decided.get("rules") or [],
        "policy_version": decided.get("policy_version"),
        "context": (decided.get("action") or {}).get("context") or {},
        "detail": {"owner": row.get("claim_owner")},
        "link": _link(row["item_id"]) if row.get("item_id") else None,
    }
    event_id = rec.id if rec is not None else os.urandom(16).hex()
    _enqueue(tx, hooks, event_id, rec.seq if rec is not None else None, payload, row["agent"], None)


def _enqueue(
    tx: WriteTx,
    hooks: Sequence[Webhook],
    event_id: str,
    seq: int | None,
    payload: dict[str, Any],
    agent: str,
    queue: str | None,
) -> None:
    now = _clock.now()
    event = {
        "id": event_id,
        "at": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        "seq": seq,
        **payload,
    }
    for hook in hooks:
        if event["type"] not in hook.events:
            continue
        if hook.agents and agent not in hook.agents:
            continue
        if hook.queues and queue not in hook.queues:
            continue
        envelope = {"secret": hook.secret, "event": event}
        tx.sql(
            "INSERT INTO proctor_notifications (id, created_at, source, target, url,"
            " severity, title, body, status, attempts, next_at)"
            " VALUES (?, ?, ?, ?, ?, 'info', ?, ?, 'pending', 0, ?)",
            (
                os.urandom(16).hex(),
                now,
                SOURCE + event["type"],
                SOURCE + hook.name,
                hook.url,
                f"{event['type']} {payload['item_id'] or payload['call_id']}",
                orjson.dumps(envelope).decode(),
                now,
            ),
        )


def _decision_record(tx: WriteTx, seq: int | None) -> dict[str, Any]:
    if not seq:
        return {}
    found = tx.sql("SELECT record FROM proctor_audit_log WHERE seq = ?", (seq,)).fetchone()
    if found is None:
        return {}
    record = orjson.loads(found[0])
    return record if isinstance(record, dict) else {}


def _call_key(tx: WriteTx, call_id: str | None) -> str | None:
    if not call_id:
        return None
    found = tx.sql("SELECT key FROM proctor_calls WHERE id = ?", (call_id,)).fetchone()
    return None if found is None else str(found[0])


def _link(item_id: str) -> str | None:
    base = setting("public_url").rstrip("/")
    return f"{base}/items/{item_id}" if base else None


# -- sending ------------------------------------------------------------------------------


def sign(body: bytes, secret: str | bytes, timestamp: int) -> str:
    """The ``Proctor-Signature`` header's value for ``body`` sent at ``timestamp``."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _expand(text: str) -> str:
    def value(m: re.Match[str]) -> str:
        if m.group(1) not in os.environ:
            raise LookupError(f"environment variable {m.group(1)} is not set")
        return os.environ[m.group(1)]

    return _VAR.sub(value, text)


def send(url: str, stored: str) -> str | None:
    """POST one outbox row's event, signed now; None when the receiver took it (2xx),
    else why not (the outbox retries it)."""
    envelope = orjson.loads(stored)
    event = envelope["event"]
    try:
        target = _expand(url)
        secret = _expand(envelope["secret"])
    except LookupError as exc:
        return str(exc)
    if not secret:
        return f"the secret {envelope['secret']} is empty"
    body = orjson.dumps(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"proctor/{__version__}",
        EVENT_HEADER: event["type"],
        EVENT_ID_HEADER: event["id"],
        SIGNATURE_HEADER: sign(body, secret, int(time.time())),
    }
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
            answer = client.post(target, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= answer.status_code < 300:
        return None
    return f"the receiver answered HTTP {answer.status_code}: {answer.text[:200]}"


# -- receiving ----------------------------------------------------------------------------


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes | Sequence[str | bytes],
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a received webhook: its ``Proctor-Signature`` must match the raw ``body`` under
    ``secret`` (or one of several, while a secret is rotated) and be at most ``tolerance``
    seconds old or ahead, so a captured request cannot be replayed later. Returns the event
    (the parsed body); raises ``WebhookError`` with the reason otherwise."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    header = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)
    if not header:
        raise WebhookError(f"the request has no {SIGNATURE_HEADER} header")
    stamp: int | None = None
    given: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                stamp = int(value)
            except ValueError:
                raise WebhookError(f"the {SIGNATURE_HEADER} timestamp is not a number") from None
        elif key == "v1":
            given.append(value)
    if stamp is None or not given:
        raise WebhookError(f"the {SIGNATURE_HEADER} header needs t= and v1= (got {header!r})")
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not secrets or not all(secrets):
        raise WebhookError("no secret to verify the webhook with")
    expected = [sign(raw, s, stamp).rsplit("v1=", 1)[1] for s in secrets]
    if not any(hmac.compare_digest(e, g) for e in expected for g in given):
        raise WebhookError("the webhook's signature does not match its body and the secret")
    age = (time.time() if now is None else now) - stamp
    if abs(age) > tolerance:
        when = "old" if age > 0 else "in the future"
        raise WebhookError(
            f"the webhook's timestamp is {abs(age):.0f} s {when} (tolerance {tolerance:g} s):"
            " a replay, or a clock far off"
        )
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise WebhookError(f"the webhook's body is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise WebhookError("the webhook's body is not a JSON object")
    return event
