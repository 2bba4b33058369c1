"""Evaluate one action against a compiled policy and explain the result.

Combining: ``deny`` beats ``review`` beats ``allow``; no match falls to
``defaults.decision``. Any evaluation problem denies (fail closed) and says why.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from . import _cel as cel
from .compile import CompiledPolicy, CompiledRule, Needs

ENVELOPE_AGENT = "envelope.agent"
ENVELOPE_TOOLS = "envelope.tools"
ENVELOPE_DATA = "envelope.data"
DEFAULTS = "defaults"
EVALUATION_ERROR = "evaluation-error"
# What the CEL runtime raises for a bad evaluation (missing key, wrong types, division by
# zero, overflow): each one denies the action, naming it. Anything else is a bug.
CEL_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, ZeroDivisionError, OverflowError)


@dataclass(frozen=True, slots=True)
class Action:
    """A proposed tool call."""

    agent: str
    tool: str
    args: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    reversible: bool = True
    reads: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one action, with everything needed to explain it."""

    decision: str  # allow | deny | review
    rule_ids: tuple[str, ...]
    reason: str
    policy_version: str | None
    risk: float | None = None
    queue: str | None = None
    on_error: bool = False
    sample: float = 0.0
    sample_queue: str | None = None
    error: str | None = None
    hold_run: bool = True
    refuse_dependents: bool = True

    def explain(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision": self.decision,
            "rules": list(self.rule_ids),
            "reason": self.reason,
            "risk": self.risk,
            "policy_version": self.policy_version,
        }
        if self.queue:
            out["queue"] = self.queue
        if self.on_error:
            out["on_error"] = "review"
        if self.sample:
            out["sample"] = self.sample
        if self.error:
            out["error"] = self.error
        return out


def refuse(reason: str, rule_id: str, version: str | None, error: str | None = None) -> Decision:
    return Decision("deny", (rule_id,), reason, version, error=error)


def in_scope(read: str, scopes: list[str]) -> bool:
    """``customers.contact`` covers ``customers.contact`` and ``customers.contact.email``."""
    return any(read == s or read.startswith(s + ".") or s == "*" for s in scopes)


def evaluate(policy: CompiledPolicy, action: Action, autonomy: int | None = None) -> Decision:
    """The policy's decision; ``autonomy`` overrides the agent's declared stage (a runtime
    control), both for rules that read ``agent.autonomy`` and for the stage's own effect."""
    decision = _evaluate(policy, action, autonomy)
    agent = policy.agents.get(action.agent)
    if agent is None or decision.decision == "deny":
        return decision
    return apply_autonomy(policy, decision, autonomy or agent.autonomy)


def apply_autonomy(policy: CompiledPolicy, decision: Decision, stage: int) -> Decision:
    """The stage applies even when no rule mentions it.

    1 assisted and 2 guided: every action a rule allows still needs a human.
    3 controlled autonomy: the rules as written. 4 strategic autonomy: allowed actions run,
    and their failures escalate to a human.
    """
    queue = policy.document.defaults.queue or next(iter(policy.queues), None)
    if stage in (1, 2) and decision.decision == "allow" and queue is not None:
        name = "assisted" if stage == 1 else "guided"
        return replace(
            decision,
            decision="review",
            rule_ids=(*decision.rule_ids, f"autonomy.stage{stage}"),
            reason=f"the agent is at stage {stage} ({name}): a human approves every action",
            queue=queue,
            on_error=False,
            sample=0.0,
            sample_queue=None,
        )
    if stage == 4 and decision.decision == "allow" and not decision.on_error and queue:
        return replace(decision, on_error=True, queue=queue)
    return decision


def _evaluate(policy: CompiledPolicy, action: Action, autonomy: int | None) -> Decision:
    version = policy.version
    agent = policy.agents.get(action.agent)
    if agent is None:
        return refuse(
            f"agent '{action.agent}' is not declared in policy '{policy.name}'",
            ENVELOPE_AGENT,
            version,
        )
    if action.tool not in policy.agent_tools[action.agent]:
        return refuse(
            f"tool '{action.tool}' is not in the envelope of agent '{action.agent}'",
            ENVELOPE_TOOLS,
            version,
        )
    for read in action.reads:
        if not in_scope(read, agent.data):
            return refuse(
                f"agent '{action.agent}' may not read data scope '{read}'", ENVELOPE_DATA, version
            )
    needs = policy.needs(action.tool)
    roots = needs.roots
    try:
        ctx = _context(policy, action, needs, autonomy)
    except (TypeError, ValueError, OverflowError) as exc:
        return refuse(
            f"the action's arguments or context cannot be given to CEL: {exc}",
            EVALUATION_ERROR,
            version,
            error=type(exc).__name__,
        )
    risk: float | None = None
    if policy.risk is not None:
        try:
            value = policy.risk.execute(ctx)
        except CEL_ERRORS as exc:
            return _failed("the risk expression", exc, version)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return refuse(
                f"the risk expression returned {type(value).__name__}, not a number",
                EVALUATION_ERROR,
                version,
                error="TypeError",
            )
        risk = float(value)
    if "risk" in roots:
        ctx.add_variable("risk", 0.0 if risk is None else risk)
    matched: list[CompiledRule] = []
    for rule in policy.candidates(action.tool):
        try:
            result = rule.program.execute(ctx)
        except CEL_ERRORS as exc:
            return _failed(f"rule '{rule.id}'", exc, version, rule.id)
        if result is True:
            matched.append(rule)
        elif result is not False:
            return refuse(
                f"rule '{rule.id}' returned {type(result).__name__}, not a boolean",
                rule.id,
                version,
                error="TypeError",
            )
    return _combine(policy, matched, risk)


def _context(policy: CompiledPolicy, action: Action, needs: Needs, autonomy: int | None) -> Any:
    """A CEL context with only the variables the candidate rules read.

    Converting values into CEL costs microseconds each, so the per-agent and per-tool part
    is built once per thread, and ``args``/``context`` are converted only when they differ
    (strictly, type for type) from what that context already holds: within a run the
    context rarely changes between actions.
    """
    key = (action.agent, action.tool, action.reversible, action.reads, autonomy)
    cache: dict[tuple[Any, ...], list[Any]] | None = getattr(policy.local, "contexts", None)
    if cache is None:
        cache = policy.local.contexts = {}
    entry = cache.get(key)
    roots = needs.roots
    if entry is None:
        static: dict[str, Any] = {"tool": action.tool}
        if "agent" in roots:
            static["agent"] = policy.agent_maps[action.agent]
            if autonomy is not None:
                static["agent"] = {**static["agent"], "autonomy": autonomy}
        if "action" in roots:
            static["action"] = {"reversible": action.reversible, "reads": list(action.reads)}
        entry = [cel.Context(static), _NOTHING, _NOTHING]
        if len(cache) >= 1024:  # bounded: odd read lists must not grow memory forever
            cache.clear()
        cache[key] = entry
    ctx = entry[0]
    if "args" in roots:
        args = _project(action.args, needs.args)
        if not _same(args, entry[1]):
            entry[1] = _NOTHING  # a failed conversion must not leave a stale match behind
            ctx.add_variable("args", args)
            entry[1] = args
    if "context" in roots:
        context = _project(action.context, needs.context)
        if not _same(context, entry[2]):
            entry[2] = _NOTHING
            ctx.add_variable("context", context)
            entry[2] = context
    return ctx


_NOTHING = object()
_SCALARS = (str, int, float, bool, type(None))


def _same(a: Any, b: Any) -> bool:
    """Equal with equal types all the way down (1, 1.0 and True differ in CEL)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) in _SCALARS and bool(a == b)


def _project(values: dict[str, Any], keys: frozenset[str] | None) -> dict[str, Any]:
    if keys is None:
        return dict(values)  # a copy: the caller may mutate its dict after the decision
    return {k: values[k] for k in keys if k in values}


def _failed(
    what: str, exc: BaseException, version: str, rule_id: str = EVALUATION_ERROR
) -> Decision:
    detail = str(exc) if not isinstance(exc, KeyError) else f"missing field {exc}"
    return refuse(
        f"{what} could not be evaluated ({type(exc).__name__}: {detail}); failing closed",
        rule_id,
        version,
        error=type(exc).__name__,
    )


_STRENGTH = {"deny": 2, "review": 1, "allow": 0}


def _combine(policy: CompiledPolicy, matched: list[CompiledRule], risk: float | None) -> Decision:
    version = policy.version
    if matched:
        verdict = max(matched, key=lambda r: _STRENGTH[r.decide]).decide
        hits = [r for r in matched if r.decide == verdict] if len(matched) > 1 else matched
        reason = "; ".join(r.reason or f"rule '{r.id}' decided {verdict}" for r in hits)
        ids = tuple(r.id for r in hits)
        if verdict == "deny":
            return Decision("deny", ids, reason, version, risk)
        if verdict == "review":
            return Decision(
                "review",
                ids,
                reason,
                version,
                risk,
                queue=hits[0].queue,
                hold_run=any(r.hold_run for r in hits),
                refuse_dependents=any(r.refuse_dependents for r in hits),
            )
        on_error = sample = None
        for r in hits:
            if r.on_error and on_error is None:
                on_error = r
            if r.sample and (sample is None or r.sample > (sample.sample or 0.0)):
                sample = r
        return Decision(
            "allow",
            ids,
            reason,
            version,
            risk,
            queue=on_error.queue if on_error else None,
            on_error=on_error is not None,
            sample=sample.sample or 0.0 if sample else 0.0,
            sample_queue=sample.queue if sample else None,
        )
    default = policy.document.defaults.decision
    return Decision(
        default,
        (DEFAULTS,),
        f"no rule matched; the policy's default is {default}",
        version,
        risk,
        queue=policy.document.defaults.queue if default == "review" else None,
    )


def sampled(decision_id: str, rate: float) -> bool:
    """Deterministic sampling from the decision id, so a replay reaches the same verdict."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    h = int.from_bytes(hashlib.sha256(decision_id.encode()).digest()[:8], "big")
    return h / 2**64 < rate
