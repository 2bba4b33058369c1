"""Policy versions over time: history, semantic diff, rollback, shadow, replay.

Replay re-evaluates recorded actions. Recorded arguments are the stored ones (secrets
masked), and the autonomy stage in force is taken from the record, so a decision replays
under exactly what made it, or the report says why it cannot.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from .. import _clock
from .._errors import InvalidRequest, NotFound, PolicyError
from ..store import Store
from ..store.chain import decode
from ..store.tables import audit_log, policies, review_items, state
from .compile import CompiledPolicy, compile_policy
from .evaluate import Action, evaluate
from .schema import PolicyDocument

NOT_POLICY = (
    "kill-switch",
    "payload-too-large",
    "store-unavailable",
    "server-unreachable",
    "run-held",
    "no-policy",
    "choice",
)


def resolve(store: Store, prefix: str) -> str:
    """A stored version from a unique prefix (at least 6 characters)."""
    if len(prefix) < 6:
        raise InvalidRequest("give at least 6 characters of a policy version")
    with store.read() as conn:
        found = (
            conn.execute(
                sa.select(policies.c.version).where(policies.c.version.like(prefix.lower() + "%"))
            )
            .scalars()
            .all()
        )
    if not found:
        raise NotFound(f"no stored policy version starts with {prefix!r}")
    if len(found) > 1:
        raise InvalidRequest(f"{prefix!r} matches {len(found)} versions: give more characters")
    return str(found[0])


def active_source(store: Store) -> tuple[str, str] | None:
    """(version, text) of the active policy, or None when none was applied."""
    with store.read() as conn:
        row = conn.execute(
            sa.select(policies.c.version, policies.c.text).join(
                state, state.c.policy_version == policies.c.version
            )
        ).first()
    return (row.version, row.text) if row else None


def load_version(store: Store, version: str) -> CompiledPolicy:
    with store.read() as conn:
        text = conn.execute(
            sa.select(policies.c.text).where(policies.c.version == version)
        ).scalar()
    if text is None:
        raise NotFound(f"policy version {version[:12]} is not stored")
    return compile_policy(str(text), f"policy {version[:12]}")


def history(store: Store) -> list[dict[str, Any]]:
    """Every activation, newest first: version, who, why, when, and what it replaced."""
    with store.read() as conn:
        rows = (
            conn.execute(
                sa.select(audit_log.c.record)
                .where(audit_log.c.kind.in_(["policy.apply", "policy.shadow", "policy.promote"]))
                .order_by(audit_log.c.seq.desc())
            )
            .scalars()
            .all()
        )
        active = conn.execute(sa.select(state.c.policy_version, state.c.shadow_version)).one()
    out = []
    for text in rows:
        r = orjson.loads(text)
        out.append(
            {
                "time": r["time"],
                "kind": r["kind"],
                "version": r.get("version"),
                "name": r.get("name"),
                "author": r.get("author"),
                "message": r.get("message"),
                "previous": r.get("previous"),
                "rollback": bool(r.get("rollback")),
                "active": r.get("version") == active[0],
                "shadow": r.get("version") == active[1],
            }
        )
    return out


def diff(old: PolicyDocument, new: PolicyDocument) -> list[str]:
    """What changed, by meaning: rules, queues, agents, defaults, risk. Not a text diff."""
    lines: list[str] = []
    old_rules = {r.id: r.model_dump(exclude_defaults=True) for r in old.rules}
    new_rules = {r.id: r.model_dump(exclude_defaults=True) for r in new.rules}
    _section(lines, "rule", old_rules, new_rules)
    old_order = [r for r in old_rules if r in new_rules]
    new_order = [r for r in new_rules if r in old_rules]
    if old_order != new_order:
        lines.append(f"~ rule order: {', '.join(old_order)} -> {', '.join(new_order)}")
    _section(
        lines,
        "queue",
        {k: v.model_dump(exclude_defaults=True) for k, v in old.queues.items()},
        {k: v.model_dump(exclude_defaults=True) for k, v in new.queues.items()},
    )
    _section(
        lines,
        "agent",
        {k: v.model_dump(exclude_defaults=True) for k, v in old.agents.items()},
        {k: v.model_dump(exclude_defaults=True) for k, v in new.agents.items()},
    )
    for key in ("defaults", "risk", "sensitive"):
        a, b = getattr(old, key), getattr(new, key)
        a = a.model_dump() if hasattr(a, "model_dump") else a
        b = b.model_dump() if hasattr(b, "model_dump") else b
        if a != b:
            lines.append(f"~ {key}: {_show(a)} -> {_show(b)}")
    return lines


def _show(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _section(lines: list[str], what: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    for key in new.keys() - old.keys():
        lines.append(f"+ {what} {key}: {_show(new[key])}")
    for key in old.keys() - new.keys():
        lines.append(f"- {what} {key}")
    for key in sorted(old.keys() & new.keys()):
        if old[key] != new[key]:
            changed = sorted(
                k for k in old[key].keys() | new[key].keys() if old[key].get(k) != new[key].get(k)
            )
            parts = [f"{k}: {_show(old[key].get(k))} -> {_show(new[key].get(k))}" for k in changed]
            lines.append(f"~ {what} {key}: " + "; ".join(parts))
    lines.sort(key=lambda line: (line[2:].split(" ")[0] != what, line[0]))


def activate(
    store: Store, version: str, *, kind: str, author: str | None, message: str | None, **extra: Any
) -> None:
    """Make a stored version the active one, logged; atomic for every process."""
    policy = load_version(store, version)
    with store.write() as tx:
        tx.append(
            kind,
            {
                "version": version,
                "name": policy.name,
                "previous": tx.policy_version,
                "author": author,
                "message": message,
                **extra,
            },
        )
        tx.set_policy_version(version)
        if tx.shadow_version == version:
            tx.set_shadow_version(None)


def previous_version(store: Store) -> str:
    active = next((h for h in history(store) if h["active"] and h["kind"] != "policy.shadow"), None)
    if active is None or not active["previous"]:
        raise NotFound("there is no earlier version to roll back to")
    return str(active["previous"])


@dataclass
class ReplayReport:
    replayed: int = 0
    changed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)


def recorded_action(record: dict[str, Any]) -> Action:
    a = record.get("action", {})
    return Action(
        str(record.get("agent")),
        str(record.get("tool")),
        a.get("args", {}),
        a.get("context", {}),
        bool(a.get("reversible", True)),
        tuple(a.get("reads", ())),
    )


def replay(
    store: Store, candidate: CompiledPolicy, since: float | None = None, limit: int | None = None
) -> ReplayReport:
    """How the recorded decisions would change under ``candidate``."""
    report = ReplayReport()
    query = sa.select(audit_log.c.seq, audit_log.c.record).where(audit_log.c.kind == "decision")
    if since is not None:
        query = query.where(audit_log.c.ts >= since)
    with store.read() as conn:
        rows = conn.execute(query.order_by(audit_log.c.seq).limit(limit)).all()
    for seq, text in rows:
        record = decode(text)  # numbers with the types the decision saw (JSON has one)
        rules = record.get("rules") or []
        if any(r in NOT_POLICY or r.startswith("limit.") for r in rules) or "action" not in record:
            report.skipped[rules[0] if rules else "no action"] += 1
            continue
        new = evaluate(candidate, recorded_action(record), record.get("autonomy"))
        report.replayed += 1
        old_decision = str(record.get("decision"))
        if new.decision != old_decision:
            report.changed += 1
            report.transitions[(old_decision, new.decision)] += 1
            for rule in new.rule_ids or ("(none)",):
                report.by_rule[rule] += 1
            if len(report.examples) < 10:
                report.examples.append(
                    {
                        "seq": seq,
                        "tool": record.get("tool"),
                        "args": record.get("action", {}).get("args"),
                        "was": old_decision,
                        "now": new.decision,
                        "rules": list(new.rule_ids),
                        "reason": new.reason,
                    }
                )
        else:
            report.transitions[(old_decision, new.decision)] += 1
    return report


@dataclass(frozen=True)
class Replayed:
    seq: int
    same: bool
    message: str


def replay_one(store: Store, seq: int) -> Replayed:
    """Re-evaluate one recorded decision under the exact version that made it."""
    with store.read() as conn:
        text = conn.execute(sa.select(audit_log.c.record).where(audit_log.c.seq == seq)).scalar()
        last = conn.execute(sa.select(sa.func.max(audit_log.c.seq))).scalar() if text is None else 0
    if text is None:
        raise NotFound(f"no record {seq}" + (f" (the log holds 1 to {last})" if last else ""))
    record = decode(text)
    if record.get("kind") != "decision":
        raise InvalidRequest(_not_a_decision(store, seq, record))
    rules = record.get("rules") or []
    version = record.get("policy_version")
    if any(r in NOT_POLICY for r in rules):
        return Replayed(
            seq,
            True,
            f"record {seq} was decided {record.get('decision')} by "
            f"{rules[0]} ({record.get('reason')}), not by a policy rule; nothing to replay",
        )
    if not version:
        return Replayed(seq, False, f"record {seq} names no policy version: cannot replay")
    try:
        policy = load_version(store, version)
    except NotFound:
        return Replayed(
            seq,
            False,
            f"policy version {version[:12]} of record {seq} is not stored: cannot replay",
        )
    except PolicyError as exc:
        return Replayed(seq, False, f"policy version {version[:12]} no longer compiles: {exc}")
    new = evaluate(policy, recorded_action(record), record.get("autonomy"))
    if any(r.startswith("limit.") for r in rules):
        return Replayed(
            seq,
            True,
            f"record {seq} was decided by a limit ({rules[0]}); under"
            f" {version[:12]} the rules alone say {new.decision} ({', '.join(new.rule_ids)})",
        )
    same = new.decision == record.get("decision") and list(new.rule_ids) == rules
    if same:
        return Replayed(
            seq,
            True,
            f"record {seq}: {new.decision} by {', '.join(rules)} under "
            f"{version[:12]}, the same as recorded",
        )
    return Replayed(
        seq,
        False,
        f"record {seq}: recorded {record.get('decision')} by "
        f"{', '.join(rules)}, but {version[:12]} now says {new.decision} by "
        f"{', '.join(new.rule_ids)} (recorded arguments are masked where secret)",
    )


def _not_a_decision(store: Store, seq: int, record: dict[str, Any]) -> str:
    """Which decisions to replay instead: the one this record is about, if it names one,
    and the nearest before and after it."""
    kind = str(record.get("kind"))
    seqs = audit_log.c.seq
    is_decision = audit_log.c.kind == "decision"
    with store.read() as conn:
        of = record.get("decision_seq")
        if not of and record.get("item_id"):
            of = conn.execute(
                sa.select(review_items.c.decision_seq).where(
                    review_items.c.id == str(record["item_id"])
                )
            ).scalar()
        before = conn.execute(sa.select(sa.func.max(seqs)).where(is_decision, seqs < seq)).scalar()
        after = conn.execute(sa.select(sa.func.min(seqs)).where(is_decision, seqs > seq)).scalar()
    what = f"record {seq} is {'an' if kind[:1] in 'aeiou' else 'a'} {kind}"
    if isinstance(of, int) and of > 0:
        what += f" (of decision {of})"
    choices = list(dict.fromkeys(n for n in (of or None, before, after) if n))
    if not choices:
        return f"{what}; the log holds no decision to replay"
    return f"{what}; replay " + ", or ".join(str(n) for n in choices)


def apply_shadow(
    store: Store, policy: CompiledPolicy, text: str, author: str | None, message: str | None
) -> None:
    """Evaluate ``policy`` beside the active one on live traffic, without enforcing it."""

    with store.write() as tx:
        if tx.policy_version == policy.version:
            raise InvalidRequest("that version is already the active policy")
        if not tx.sql(
            "SELECT 1 FROM proctor_policies WHERE version = ?", (policy.version,)
        ).fetchone():
            tx.sql(
                "INSERT INTO proctor_policies (version, name, text, created_at, author, message)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (policy.version, policy.name, text, _clock.now(), author, message),
            )
        tx.append(
            "policy.shadow",
            {
                "version": policy.version,
                "name": policy.name,
                "active": tx.policy_version,
                "author": author,
                "message": message,
            },
        )
        tx.set_shadow_version(policy.version)


@dataclass
class ShadowReport:
    version: str | None
    decisions: int = 0
    disagreements: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)


def shadow_report(store: Store) -> ShadowReport:
    """Disagreements between the active policy and the shadow candidate, by rule."""
    with store.read() as conn:
        shadow = conn.execute(sa.select(state.c.shadow_version)).scalar()
        started = (
            conn.execute(
                sa.select(sa.func.max(audit_log.c.seq)).where(audit_log.c.kind == "policy.shadow")
            ).scalar()
            or 0
        )
        rows = conn.execute(
            sa.select(audit_log.c.seq, audit_log.c.record)
            .where(audit_log.c.kind == "decision", audit_log.c.seq > started)
            .order_by(audit_log.c.seq)
        ).all()
    report = ShadowReport(shadow)
    for seq, text in rows:
        record = orjson.loads(text)
        report.decisions += 1
        other = record.get("shadow")
        if not other or (shadow and other.get("version") != shadow):
            continue
        report.disagreements += 1
        report.transitions[(str(record.get("decision")), str(other["decision"]))] += 1
        for rule in other.get("rules") or ["(none)"]:
            report.by_rule[rule] += 1
        if len(report.examples) < 10:
            report.examples.append(
                {
                    "seq": seq,
                    "tool": record.get("tool"),
                    "args": record.get("action", {}).get("args"),
                    "active": record.get("decision"),
                    "shadow": other["decision"],
                    "rules": other.get("rules"),
                }
            )
    return report
