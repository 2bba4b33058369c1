"""Compile a validated policy: CEL programs built once, rules indexed by tool.

The index is what keeps a decision's cost proportional to the rules that can match:
a rule whose condition pins ``tool`` (``tool == "x"``, ``tool in [...]`` as a top-level
conjunct) or that lists ``tools:`` is only tried for those tools.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from .._errors import PolicyError
from . import _cel as cel
from .healing import CompiledHealing, compile_healing
from .schema import Agent, PolicyDocument, Queue, Rule, validate
from .source import Located, Path, load_yaml
from .types import Kind, check, line_col, too_deep

ROOTS = frozenset({"tool", "args", "context", "agent", "action"})
# What evaluate() always hands CEL under these names, whatever the action.
VARIABLE_KINDS: dict[str, Kind] = {
    "tool": "string",
    "risk": "number",
    "args": "map",
    "context": "map",
    "agent": "map",
    "action": "map",
}
# The CEL library recurses (in Rust) once per operator, bracket and field access; a long
# enough chain overflows the thread's stack and kills the process. 4,000 characters are
# at most ~2,000 levels, well within a 2 MiB stack, and far beyond any real condition.
MAX_EXPRESSION_LENGTH = 4000
MAX_EXPRESSION_NESTING = 64
_CEL_ERROR = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_TOOL_EQ = re.compile(r'^\(*\s*tool\s*==\s*(["\'])([^"\']*)\1\s*\)*$')
_TOOL_IN = re.compile(r"^\(*\s*tool\s+in\s*\[([^\]]*)\]\s*\)*$")
_STRING = re.compile(r'(["\'])([^"\']*)\1')


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    position: int
    decide: str
    program: Any
    queue: str | None
    reason: str | None
    on_error: bool
    sample: float | None
    tools: frozenset[str] | None  # None: may match any tool
    hold_run: bool  # a pending review from this rule holds the rest of its run
    refuse_dependents: bool  # its rejection refuses the run's held and later calls
    roots: frozenset[str]  # top-level CEL variables the condition reads
    fields: dict[str, frozenset[str] | None]  # args/context keys it reads; None: all of them


@dataclass(frozen=True, slots=True)
class Needs:
    roots: frozenset[str]
    args: frozenset[str] | None  # keys of args to convert; None: all
    context: frozenset[str] | None


def _union(fields: list[dict[str, frozenset[str] | None]], root: str) -> frozenset[str] | None:
    out: set[str] = set()
    for f in fields:
        if root in f:
            keys = f[root]
            if keys is None:
                return None
            out |= keys
    return frozenset(out)


@dataclass(frozen=True)
class CompiledPolicy:
    """An immutable, evaluation-ready policy. ``version`` is the SHA-256 of its canonical form."""

    name: str
    version: str
    document: PolicyDocument
    text: str
    risk: Any | None
    rules: tuple[CompiledRule, ...]
    by_tool: dict[str, tuple[CompiledRule, ...]]
    any_tool: tuple[CompiledRule, ...]
    agents: dict[str, Agent]
    agent_tools: dict[str, frozenset[str]]
    agent_maps: dict[str, dict[str, Any]]
    queues: dict[str, Queue]
    sensitive: tuple[tuple[str, ...], ...] = field(default=())
    risk_roots: frozenset[str] = frozenset()
    risk_fields: dict[str, frozenset[str] | None] = field(default_factory=dict)
    healing: dict[str, CompiledHealing] = field(default_factory=dict)  # by tool name
    local: threading.local = field(default_factory=threading.local, compare=False, repr=False)

    def candidates(self, tool: str) -> tuple[CompiledRule, ...]:
        """The rules that could match an action on ``tool``, in policy order."""
        return self.by_tool.get(tool, self.any_tool)

    def needs(self, tool: str) -> Needs:
        """What an action on ``tool`` must hand to CEL: nothing else is converted."""
        cache: dict[str, Needs] | None = getattr(self.local, "needs", None)
        if cache is None:
            cache = self.local.needs = {}
        found = cache.get(tool)
        if found is None:
            candidates = self.candidates(tool)
            roots = self.risk_roots.union(*(r.roots for r in candidates))
            fields = [self.risk_fields, *(r.fields for r in candidates)]
            found = Needs(roots, _union(fields, "args"), _union(fields, "context"))
            if len(cache) < 4096:
                cache[tool] = found
        return found


def canonical_form(doc: PolicyDocument) -> bytes:
    """Key-sorted compact JSON of the validated document, without values equal to their
    defaults: formatting, comments and spelled-out defaults drop out, and a later release
    that adds an optional key does not change the version of an existing policy."""
    return orjson.dumps(
        doc.model_dump(mode="json", exclude_defaults=True), option=orjson.OPT_SORT_KEYS
    )


def policy_version(doc: PolicyDocument) -> str:
    return hashlib.sha256(canonical_form(doc)).hexdigest()


def compile_policy(text: str, source: str = "<policy>") -> CompiledPolicy:
    """Parse, validate and compile; any problem raises PolicyError with a file position."""
    located = load_yaml(text, source)
    doc = validate(located)
    risk = None
    risk_roots: frozenset[str] = frozenset()
    risk_fields: dict[str, frozenset[str] | None] = {}
    if doc.risk is not None:
        risk = _compile_cel(doc.risk, ("risk",), located, ROOTS)
        _check_kind(doc.risk, "number", ("risk",), located, "'risk' must give a number")
        risk_roots = ROOTS.intersection(risk.variables())
        risk_fields = _fields(doc.risk, risk_roots)
    rules: list[CompiledRule] = []
    for i, rule in enumerate(doc.rules):
        path: Path = ("rules", i, "when")
        program = _compile_cel(rule.when, path, located, ROOTS | {"risk"})
        what = "'when' must be a boolean expression"
        _check_kind(rule.when, "bool", path, located, what, f"rule '{rule.id}': ")
        rules.append(_compiled_rule(doc, rule, i, program))
    by_tool, any_tool = _index(rules)
    healing = {
        tool: compile_healing(
            tool, heal, lambda expr, path, roots: _compile_cel(expr, path, located, roots)
        )
        for tool, heal in doc.tools.items()
    }
    return CompiledPolicy(
        name=doc.policy,
        version=policy_version(doc),
        document=doc,
        text=text,
        risk=risk,
        rules=tuple(rules),
        by_tool=by_tool,
        any_tool=any_tool,
        agents=dict(doc.agents),
        agent_tools={name: frozenset(a.tools) for name, a in doc.agents.items()},
        agent_maps={
            name: {"id": name, "autonomy": a.autonomy, "oversight": a.oversight}
            for name, a in doc.agents.items()
        },
        queues=dict(doc.queues),
        sensitive=tuple(tuple(p.split(".")) for p in doc.sensitive),
        risk_roots=risk_roots,
        risk_fields=risk_fields,
        healing=healing,
    )


def _compiled_rule(doc: PolicyDocument, rule: Rule, i: int, program: Any) -> CompiledRule:
    tools = frozenset(rule.tools) if rule.tools is not None else _pinned_tools(rule.when)
    return CompiledRule(
        id=rule.id,
        position=i,
        decide=rule.decide,
        program=program,
        queue=rule.queue or doc.defaults.queue,
        reason=rule.reason,
        on_error=rule.on_error == "review",
        sample=rule.sample,
        tools=tools,
        hold_run=rule.hold_run,
        refuse_dependents=rule.on_reject == "refuse_dependents",
        roots=(roots := (ROOTS | {"risk"}).intersection(program.variables())),
        fields=_fields(rule.when, roots),
    )


def _index(
    rules: list[CompiledRule],
) -> tuple[dict[str, tuple[CompiledRule, ...]], tuple[CompiledRule, ...]]:
    any_tool = tuple(r for r in rules if r.tools is None)
    named = sorted({t for r in rules if r.tools is not None for t in r.tools})
    by_tool = {
        tool: tuple(r for r in rules if r.tools is None or tool in r.tools) for tool in named
    }
    return by_tool, any_tool


_ROOT_USE = re.compile(r"(?<![\w.])(args|context)\b(\s*\.\s*([A-Za-z_]\w*))?")


def _fields(expr: str, roots: frozenset[str]) -> dict[str, frozenset[str] | None]:
    """Which keys of ``args`` and ``context`` an expression reads.

    Only plain ``args.key`` access can be projected; anything else (``size(args)``,
    ``args[k]``, ``"k" in args``, a string that happens to say "args") means the whole map.
    """
    out: dict[str, set[str] | None] = {r: set() for r in ("args", "context") if r in roots}
    for m in _ROOT_USE.finditer(expr):
        root, key = m.group(1), m.group(3)
        if root not in out:
            continue
        keys = out[root]
        if key is None:
            out[root] = None
        elif keys is not None:
            keys.add(key)
    return {r: (None if k is None else frozenset(k)) for r, k in out.items()}


def _conjuncts(expr: str) -> list[str]:
    """Split on top-level ``&&`` (outside brackets and strings)."""
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "|" and expr.startswith("||", i) and depth == 0:
            return [expr]  # a top-level disjunction pins nothing
        elif ch == "&" and expr.startswith("&&", i) and depth == 0:
            parts.append(expr[start:i])
            start = i + 2
            i += 1
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts]


def _pinned_tools(when: str) -> frozenset[str] | None:
    for part in _conjuncts(when.strip()):
        if m := _TOOL_EQ.match(part):
            return frozenset({m.group(2)})
        if m := _TOOL_IN.match(part):
            items = [s.strip() for s in m.group(1).split(",") if s.strip()]
            names = [_STRING.fullmatch(s) for s in items]
            if names and all(names):
                return frozenset(n.group(2) for n in names if n)
    return None


def _check_kind(
    expr: str, want: Kind, path: Path, located: Located, what: str, prefix: str = ""
) -> None:
    """Refuse an expression whose text shows it gives the wrong type (see types.py)."""
    found = check(expr, want, VARIABLE_KINDS)
    if found is not None:
        line, col = located.locate_in_scalar(path, *line_col(expr, found.offset))
        raise PolicyError(
            prefix + found.message(what), source=located.source, line=line, column=col
        )


def _compile_cel(
    expr: str, path: tuple[str | int, ...], located: Located, roots: frozenset[str]
) -> Any:
    if len(expr) > MAX_EXPRESSION_LENGTH:
        raise located.error(
            path,
            f"the expression is {len(expr)} characters long; "
            f"at most {MAX_EXPRESSION_LENGTH} are allowed",
        )
    if (deep := too_deep(expr, MAX_EXPRESSION_NESTING)) is not None:
        line, col = located.locate_in_scalar(path, *line_col(expr, deep))
        raise PolicyError(
            f"the expression nests brackets deeper than {MAX_EXPRESSION_NESTING} levels",
            source=located.source,
            line=line,
            column=col,
        )
    try:
        program = cel.compile(expr)
    except ValueError as exc:
        m = _CEL_ERROR.search(str(exc))
        line_in, col_in, msg = (
            (int(m.group(1)), int(m.group(2)), m.group(3)) if m else (1, 1, str(exc))
        )
        line, col = located.locate_in_scalar(path, line_in, col_in)
        msg = msg.split(" expecting ", 1)[0].removeprefix("Syntax error: ")
        if "Recursion limit" in msg:  # the parser's own guard, e.g. a long ?: chain
            msg = "the expression nests too deeply"
        raise PolicyError(
            f"CEL syntax error: {msg}", source=located.source, line=line, column=col
        ) from exc
    bound = set(_BOUND.findall(expr))
    unknown = [v for v in program.variables() if v not in roots and v not in bound]
    if unknown:
        name = unknown[0]
        line_in, col_in = _find_identifier(expr, name)
        line, col = located.locate_in_scalar(path, line_in, col_in)
        known = ", ".join(sorted(roots))
        raise PolicyError(
            f"unknown variable '{name}' in CEL expression (known: {known})",
            source=located.source,
            line=line,
            column=col,
        )
    return program


def _find_identifier(expr: str, name: str) -> tuple[int, int]:
    for n, text in enumerate(expr.splitlines() or [expr], start=1):
        for m in re.finditer(rf"(?<![\w.\"']){re.escape(name)}\b", text):
            return n, m.start() + 1
    return 1, 1
