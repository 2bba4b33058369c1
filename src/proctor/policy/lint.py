"""Warnings about a policy that loads but cannot do what it says, each with its place.

A policy with errors does not compile; one that compiles can still hold a rule that never
matches (its tools are in no agent's envelope) or a comparison that can never be true or
always fails at run time (``args.amount > "100"`` where ``amount`` is declared a float).
Those load, and each would only show as a surprising decision in production, so
``proctor policy check`` reports them as :class:`Finding` values (line, column, code,
message) that the CLI prints and that a server or console can show as they are.

Types come from the envelope's declared parameters (``tools: {t: {params: {...}}}``) and
from literals; nothing is guessed. Comparisons between an int and a double are left alone:
the ``cel`` engine compares them by value (``2.0 == 2``, ``2.5 > 2``), but it refuses to
mix them in arithmetic (``2.5 * 2`` fails), and that is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from .compile import CompiledPolicy
from .schema import did_you_mean
from .source import Located, Path, load_yaml
from .types import Operation, Token, elements, line_col, operations, tokens

UNREACHABLE_RULE = "unreachable-rule"  # every tool the rule applies to is in no envelope
UNKNOWN_TOOL = "unknown-tool"  # a tool named in a rule or the risk is in no envelope
TYPE_MISMATCH = "type-mismatch"  # an operation whose operand types never fit
UNKNOWN_PARAM = "unknown-param"  # args.x where the rule's tools all declare no x

_DECLARED = {"str": "string", "int": "int", "float": "double", "bool": "bool"}
_DECLARED |= {"list": "list", "dict": "map"}
_NAMES = {"string": "a string", "bytes": "bytes", "int": "an int", "uint": "a uint"}
_NAMES |= {"double": "a double", "bool": "a boolean", "null": "null"}
_NAMES |= {"list": "a list", "map": "a map"}
_PLURALS = {k: "bytes" if k == "bytes" else k + "s" for k in _NAMES}
_PLURALS |= {"bool": "booleans", "null": "nulls"}
_NUMBERS = frozenset({"int", "uint", "double"})
_ORDERING = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class Finding:
    """One warning: where (1-based line and column), a stable code, and what is wrong."""

    line: int
    column: int
    code: str
    message: str
    source: str = "<policy>"

    def located(self, severity: str = "warning") -> str:
        """``FILE:LINE:COL: warning: message [code]``, as compilers print warnings."""
        return f"{self.source}:{self.line}:{self.column}: {severity}: {self.message} [{self.code}]"


@dataclass(frozen=True, slots=True)
class _Operand:
    kind: str
    shown: str  # how the message names it
    token: Token  # where a finding about it is placed
    literal: bool


def lint(policy: CompiledPolicy, source: str = "<policy>") -> list[Finding]:
    """The policy's warnings in file order; empty when it is clean."""
    return _Linter(policy, load_yaml(policy.text, source)).run()


class _Linter:
    def __init__(self, policy: CompiledPolicy, located: Located) -> None:
        self.policy = policy
        self.located = located
        self.found: dict[tuple[int, int], Finding] = {}  # one finding per place
        self.allowed = frozenset().union(*policy.agent_tools.values())
        # tool -> the parameter declarations of each envelope it is in (None: undeclared)
        self.declared: dict[str, list[Mapping[str, str] | None]] = {}
        for agent in policy.document.agents.values():
            for tool in agent.tools:
                self.declared.setdefault(tool, []).append(agent.params(tool))

    def run(self) -> list[Finding]:
        for rule, compiled in zip(self.policy.document.rules, self.policy.rules, strict=True):
            i = compiled.position
            where: Path = ("rules", i, "when")
            ops = operations(rule.when)
            if compiled.tools is not None and not compiled.tools & self.allowed:
                self._unreachable(rule.id, i, sorted(compiled.tools), rule.tools is not None, ops)
            for j, tool in enumerate(rule.tools or ()):
                self._tool(tool, self.located.where(("rules", i, "tools", j)))
            self._expression(rule.when, where, ops, compiled.tools, f"rule '{rule.id}'")
        if self.policy.document.risk is not None:
            risk = self.policy.document.risk
            self._expression(risk, ("risk",), operations(risk), None, "the risk")
        return sorted(self.found.values(), key=lambda f: (f.line, f.column))

    # -- tools outside every envelope -----------------------------------------------

    def _unreachable(
        self, rule_id: str, i: int, tools: list[str], listed: bool, ops: list[Operation]
    ) -> None:
        if listed:
            place = self.located.where(("rules", i, "tools", 0))
        else:
            named = (t for op in ops for t, name in _tool_literals(op) if name in tools)
            token = next(named, None)
            place = self._at(("rules", i, "when"), token.start if token else 0)
        which = ", ".join(f"'{t}'" for t in tools)
        envelope = "no agent's envelope allows" + (" tool " if len(tools) == 1 else " tools ")
        hint = did_you_mean(tools[0], self.allowed) if len(tools) == 1 else ""
        message = f"rule '{rule_id}' can never match: {envelope}{which}{hint}"
        self._add(place, UNREACHABLE_RULE, message)

    def _tool(self, tool: str, place: tuple[int, int]) -> None:
        if tool not in self.allowed:
            message = f"no agent's envelope allows tool '{tool}'" + did_you_mean(tool, self.allowed)
            self._add(place, UNKNOWN_TOOL, message)

    # -- expressions --------------------------------------------------------------

    def _expression(
        self,
        expr: str,
        path: Path,
        ops: list[Operation],
        tools: Iterable[str] | None,
        what: str,
    ) -> None:
        candidates = sorted(self.declared) if tools is None else sorted(tools)
        for op in ops:
            for token, name in _tool_literals(op):
                self._tool(name, self._at(path, token.start))
            left, right = self._operand(op.left, candidates), self._operand(op.right, candidates)
            message = _mismatch(op, left, right)
            if message is not None and left is not None and right is not None:
                at = right if right.literal or not left.literal else left
                self._add(self._at(path, at.token.start), TYPE_MISMATCH, message)
        if tools is not None:
            self._params(expr, path, sorted(tools), what)

    def _params(self, expr: str, path: Path, tools: list[str], what: str) -> None:
        """``args.x`` where every tool the rule applies to declares its parameters, and
        none of them has an ``x``."""
        declared = [self.declared.get(t, [None]) for t in tools]
        if not declared or any(p is None for each in declared for p in each):
            return
        known = {name for each in declared for p in each if p is not None for name in p}
        for token, name in _fields(tokens(expr)):
            if name not in known:
                names = ", ".join(sorted(known)) or "none"
                message = (
                    f"{what} reads args.{name}, but {'/'.join(tools)} declares no parameter "
                    f"'{name}' (parameters: {names})" + did_you_mean(name, known)
                )
                self._add(self._at(path, token.start), UNKNOWN_PARAM, message)

    def _operand(self, toks: tuple[Token, ...], tools: list[str]) -> _Operand | None:
        """The operand's type when its text settles it: a literal, ``tool``, ``risk``,
        or a parameter all its declarations agree on."""
        texts = [t.text for t in toks]
        if len(toks) == 2 and texts[0] == "-" and toks[1].kind == "num":
            kind = _number(texts[1])
            return _Operand(kind, f"-{texts[1]} ({_NAMES[kind]})", toks[0], True)
        if len(toks) == 1:
            tok = toks[0]
            literal = _literal(tok)
            if literal is not None:
                return _Operand(literal, f"{tok.text} ({_NAMES[literal]})", tok, True)
            if tok.text in ("tool", "risk"):
                kind = "string" if tok.text == "tool" else "double"
                return _Operand(kind, f"{tok.text} ({_NAMES[kind]})", tok, False)
            return None
        if elements(toks) is not None:
            return _Operand("list", "a list", toks[0], True)
        field = next(iter(_fields(toks)), None)
        if field is None or field[0] is not toks[0] or len(toks) not in (3, 4):
            return None
        types = {
            p[field[1]]
            for t in tools
            for p in self.declared.get(t, ())
            if p is not None and field[1] in p
        }
        if len(types) != 1 or (declared := types.pop()) not in _DECLARED:
            return None
        shown = f"args.{field[1]} (declared {declared})"
        return _Operand(_DECLARED[declared], shown, toks[0], False)

    # -- places -------------------------------------------------------------------

    def _at(self, path: Path, offset: int) -> tuple[int, int]:
        expr = str(self.located.scalars[path].value) if path in self.located.scalars else ""
        return self.located.locate_in_scalar(path, *line_col(expr, offset))

    def _add(self, place: tuple[int, int], code: str, message: str) -> None:
        if place not in self.found:
            self.found[place] = Finding(place[0], place[1], code, message, self.located.source)


_FAILS = "so this fails at run time, which denies the action"


def _mismatch(op: Operation, left: _Operand | None, right: _Operand | None) -> str | None:
    """What is wrong with ``op`` on operands of these types, or None when it may work."""
    text = op.op.text
    if left is None or right is None:
        return None
    a, b = left.kind, right.kind
    if text == "in":
        if b not in ("list", "map"):
            return f"'in' needs a list or a map on its right, not {right.shown}, {_FAILS}"
        items = elements(op.right) or []
        kinds = {_literal(item[0]) if len(item) == 1 else None for item in items}
        if not items or None in kinds or any(_comparable(a, k) for k in kinds if k):
            return None
        holds = " and ".join(sorted(_PLURALS[k] for k in kinds if k))
        return f"{left.shown} is never in this list, which holds only {holds}"
    if text in ("==", "!="):
        if _comparable(a, b):
            return None
        always = "false" if text == "==" else "true"
        return (
            f"'{text}' compares {left.shown} with {right.shown}: "
            f"they are never equal, so this is always {always}"
        )
    if text in _ORDERING:
        if _comparable(a, b) and "null" not in (a, b) and a not in ("list", "map"):
            return None
        return (
            f"'{text}' compares {left.shown} with {right.shown}: "
            f"CEL cannot order them, {_FAILS}" + _hint(left, right)
        )
    if a == b and (a in _NUMBERS or (text == "+" and a in ("string", "bytes", "list"))):
        if text != "%" or a != "double":
            return None
        return f"'%' is not defined for doubles ({left.shown}, {right.shown}), {_FAILS}"
    return (
        f"'{text}' mixes {left.shown} and {right.shown}: "
        f"CEL does not convert between them, {_FAILS}" + _hint(left, right)
    )


def _hint(left: _Operand, right: _Operand) -> str:
    """``; write 100.0`` when a literal only needs another spelling."""
    other, lit = (left, right) if right.literal else (right, left)
    if not lit.literal or other.kind not in _NUMBERS:
        return ""
    text = lit.token.text
    if lit.kind == "string" and _literal_number(text[1:-1]) is not None:
        text = text[1:-1]
    elif lit.kind not in _NUMBERS:
        return ""
    value = _literal_number(text)
    if value is None:
        return ""
    if other.kind == "double":
        return f"; write {float(value)!r}"
    if other.kind == "int" and float(value).is_integer():
        return f"; write {int(value)}"
    return ""


def _comparable(a: str, b: str) -> bool:
    return a == b or (a in _NUMBERS and b in _NUMBERS) or "null" in (a, b)


def _literal(tok: Token) -> str | None:
    if tok.kind == "num":
        return _number(tok.text)
    if tok.kind in ("str", "bytes"):
        return "string" if tok.kind == "str" else "bytes"
    return {"true": "bool", "false": "bool", "null": "null"}.get(tok.text)


def _number(text: str) -> str:
    if text[-1] in "uU":
        return "uint"
    if text[:2].lower() != "0x" and any(c in text for c in ".eE"):
        return "double"
    return "int"


def _literal_number(text: str) -> float | None:
    try:
        return float(int(text, 0)) if _number(text) == "int" else float(text)
    except ValueError:
        return None


def _string(tok: Token) -> str | None:
    """The value of a plain string literal (no prefix, no escapes), else None."""
    text = tok.text
    if tok.kind != "str" or len(text) < 2 or text[0] not in "\"'" or "\\" in text:
        return None
    if text[:3] in ('"""', "'''"):
        return None
    return text[1:-1]


def _tool_literals(op: Operation) -> Iterator[tuple[Token, str]]:
    """The tool names an operation compares ``tool`` with: ``tool == "x"``, ``"x" !=
    tool``, ``tool in ["x", "y"]``."""
    left, right = [t.text for t in op.left], [t.text for t in op.right]
    if op.op.text in ("==", "!="):
        for mine, other in ((left, op.right), (right, op.left)):
            if mine == ["tool"] and len(other) == 1 and (name := _string(other[0])) is not None:
                yield other[0], name
    elif op.op.text == "in" and left == ["tool"]:
        for item in elements(op.right) or ():
            if len(item) == 1 and (name := _string(item[0])) is not None:
                yield item[0], name


def _fields(toks: Iterable[Token]) -> Iterator[tuple[Token, str]]:
    """``args.x`` and ``args["x"]`` in a token stream: the ``args`` token and ``x``."""
    seq = list(toks)
    for n, tok in enumerate(seq):
        if tok.text != "args" or tok.kind != "id" or (n and seq[n - 1].text == "."):
            continue
        nxt = seq[n + 1 : n + 4]
        if len(nxt) >= 2 and nxt[0].text == "." and nxt[1].kind == "id":
            yield tok, nxt[1].text
        elif (
            len(nxt) == 3
            and nxt[0].text == "["
            and nxt[2].text == "]"
            and (name := _string(nxt[1])) is not None
        ):
            yield tok, name
