"""What type a CEL expression gives, as far as its text alone says: checked at load.

The ``cel`` package has no type checker, so a condition that gives a string or a risk that
gives a boolean would only show at run time, denying every action that reaches it. This
reads the expression's spine (enclosing parentheses, the ternary, operators by CEL
precedence, unary operators, literals, calls whose type never varies) and says "unknown"
(None) for the rest: fields, indexing, ``dyn(...)``, other calls. Only a known, wrong type
is reported; what it cannot judge loads and is still checked at run time.

It reads expressions that ``cel.compile`` accepted and :func:`too_deep` bounded, so its
recursion stays shallow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Kind = Literal["bool", "number", "string", "bytes", "list", "map", "null"]
# Calls whose result type never varies: ``x.name(...)`` and ``name(...)``.
_METHODS: dict[str, Kind] = {
    **{m: "bool" for m in ("startsWith", "endsWith", "contains", "matches", "exists", "all")},
    **{"exists_one": "bool", "size": "number", "map": "list", "filter": "list"},
}
_FUNCTIONS: dict[str, Kind] = {
    **{f: "number" for f in ("size", "int", "uint", "double")},
    **{"has": "bool", "string": "string", "bytes": "bytes"},
}
_LITERALS: dict[str, Kind] = {"true": "bool", "false": "bool", "null": "null"}
_TOKEN_KINDS: dict[str, Kind] = {"str": "string", "bytes": "bytes", "num": "number"}
# Binary operators by precedence level, lowest first; "+" stands for + and binary -.
_ORDER = ("?", "||", "&&", "rel", "+", "*")
_LEVEL = {
    **{op: "rel" for op in ("==", "!=", "<", "<=", ">", ">=", "in")},
    **{"?": "?", "||": "||", "&&": "&&", "+": "+", "-": "+", "*": "*", "/": "*", "%": "*"},
}
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_NEEDS = {  # what an operator says of an operand that is not a boolean
    "&&": "'&&' needs a boolean on each side",
    "||": "'||' needs a boolean on each side",
    "!": "'!' needs a boolean",
    "?": "the condition of '? :' must be a boolean",
}
_TOKEN = re.compile(
    r"(?P<space>\s+|//[^\n]*)"
    r"|(?P<str>(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"|'''|\"|'))"
    r"|(?P<num>0[xX][0-9a-fA-F]+[uU]?|\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?)"
    r"|(?P<id>[A-Za-z_]\w*)"
    r"|(?P<op>\|\||&&|==|!=|<=|>=|[-+*/%<>!?:.,()\[\]{}])"
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # str | bytes | num | id | op | other
    text: str
    start: int  # offset in the expression


def tokens(expr: str) -> list[Token]:
    """CEL tokens with their offsets; never fails, even on text CEL would reject."""
    out: list[Token] = []
    pos, n = 0, len(expr)
    while pos < n:
        m = _TOKEN.match(expr, pos)
        if m is None:
            out.append(Token("other", expr[pos], pos))
            pos += 1
            continue
        kind, text = m.lastgroup or "other", m.group()
        if kind == "str":
            quote = text.lstrip("rRbB")
            end = _string_end(expr, m.end(), quote, raw="r" in text.lower()[: -len(quote)])
            kind = "bytes" if "b" in text.lower()[: -len(quote)] else "str"
            text = expr[pos:end]
        if kind != "space":
            out.append(Token(kind, text, pos))
        pos += len(text)
    return out


def _string_end(expr: str, pos: int, quote: str, raw: bool) -> int:
    while pos < len(expr):
        if expr[pos] == "\\" and not raw:
            pos += 2
        elif expr.startswith(quote, pos):
            return pos + len(quote)
        else:
            pos += 1
    return len(expr)


def too_deep(expr: str, limit: int) -> int | None:
    """Offset of the first bracket that opens more than ``limit`` levels deep, if any."""
    depth = 0
    for tok in tokens(expr):
        if tok.text in _OPENERS:
            depth += 1
            if depth > limit:
                return tok.start
        elif tok.text in ")]}":
            depth -= 1
    return None


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A sub-expression of a known, wrong type; ``needed_by`` is the operator that
    wanted a boolean from it, or None when it is the expression's own result."""

    offset: int
    gives: Kind
    needed_by: str | None = None

    def message(self, subject: str) -> str:
        gives = self.gives if self.gives in ("bytes", "null") else f"a {self.gives}"
        gives = gives.replace("bool", "boolean")
        return f"{_NEEDS.get(self.needed_by or '', subject)}, but this one gives {gives}"


def check(expr: str, want: Kind, variables: Mapping[str, Kind] | None = None) -> Mismatch | None:
    """The first place where ``expr`` is known to give something other than ``want``.

    ``variables`` are the types of top-level names the caller always provides.
    """
    toks = tokens(expr)
    return _Reader(toks, variables or {}).expect(0, len(toks), want, None)


def kind_of(expr: str, variables: Mapping[str, Kind] | None = None) -> Kind | None:
    """The expression's type, or None when its text does not settle it."""
    toks = tokens(expr)
    return _Reader(toks, variables or {}).kind(0, len(toks))


def line_col(expr: str, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset`` inside ``expr``."""
    return expr.count("\n", 0, offset) + 1, offset - expr.rfind("\n", 0, offset)


@dataclass(frozen=True, slots=True)
class Operation:
    """One binary comparison, ``in`` or arithmetic operation: its operator token and the
    tokens of each operand (enclosing parentheses removed)."""

    op: Token
    left: tuple[Token, ...]
    right: tuple[Token, ...]


def operations(expr: str) -> list[Operation]:
    """Every comparison, ``in`` and arithmetic operation in ``expr``, however deep: inside
    parentheses, ternaries, ``!``, call arguments and list or map literals. In a chain
    (``a + b - c``) an operator's left operand is everything before it, as CEL groups it.
    """
    toks = tokens(expr)
    out: list[Operation] = []
    _Reader(toks, {}).walk(0, len(toks), out)
    return out


def elements(group: tuple[Token, ...]) -> list[tuple[Token, ...]] | None:
    """The items of a list literal ``[a, b]``, or None when ``group`` is not one."""
    if len(group) < 2 or group[0].text != "[" or group[-1].text != "]":
        return None
    reader = _Reader(list(group), {})
    if reader.match.get(0) != len(group) - 1:
        return None
    items, start = [], 1
    for i in reader._top(1, len(group) - 1):
        if group[i].text == ",":
            items.append(group[start:i])
            start = i + 1
    items.append(group[start:-1])
    return [item for item in items if item]


class _Reader:
    def __init__(self, toks: list[Token], variables: Mapping[str, Kind]) -> None:
        self.toks = toks
        self.variables = variables
        self.match: dict[int, int] = {}  # opening bracket -> its closing one
        self.opener: dict[int, int] = {}  # and back
        stack: list[int] = []
        for i, tok in enumerate(toks):
            if tok.text in _OPENERS:
                stack.append(i)
            elif tok.text in ")]}" and stack:
                self.match[stack[-1]] = i
                self.opener[i] = stack.pop()

    def expect(self, lo: int, hi: int, want: Kind, needed_by: str | None) -> Mismatch | None:
        """Follow the places that must give ``want``: ternary branches, the operands of
        ``&&``, ``||`` and ``!``; judge the rest by :meth:`kind`."""
        if lo >= hi:
            return None
        offset = self.toks[lo].start  # a wrong type is reported where its (...) begins
        lo, hi = self._strip(lo, hi)
        if lo >= hi:
            return None
        level, at = self._lowest(lo, hi)
        if level == "?":
            colon = self._colon(at[0], hi)
            if colon is None:
                return None
            return (
                self.expect(lo, at[0], "bool", "?")
                or self.expect(at[0] + 1, colon, want, needed_by)
                or self.expect(colon + 1, hi, want, needed_by)
            )
        if level in ("||", "&&"):
            for a, b in self._operands(lo, hi, at):
                if found := self.expect(a, b, "bool", level):
                    return found
        elif level is None and self.toks[lo].text == "!":
            start = next((i for i in range(lo, hi) if self.toks[i].text != "!"), hi)
            if found := self.expect(start, hi, "bool", "!"):
                return found
        got = self.kind(lo, hi)
        if got is None or got == want:
            return None
        return Mismatch(offset, got, needed_by)

    def kind(self, lo: int, hi: int) -> Kind | None:
        lo, hi = self._strip(lo, hi)
        if lo >= hi:
            return None
        level, at = self._lowest(lo, hi)
        if level == "?":
            colon = self._colon(at[0], hi)
            if colon is None:
                return None
            a, b = self.kind(at[0] + 1, colon), self.kind(colon + 1, hi)
            return a if a == b else None
        if level in ("||", "&&", "rel"):
            return "bool"
        if level == "+":
            kinds = {self.kind(a, b) for a, b in self._operands(lo, hi, at)}
            return next((k for k in ("string", "bytes", "list") if k in kinds), "number")
        if level == "*":
            return "number"
        first = self.toks[lo].text
        if first == "!":
            return "bool"
        if first == "-":
            return "number"
        return self._primary(lo, hi)

    def _primary(self, lo: int, hi: int) -> Kind | None:
        first, last = self.toks[lo], self.toks[hi - 1]
        if hi - lo == 1:
            if first.kind == "id":
                return _LITERALS.get(first.text) or self.variables.get(first.text)
            return _TOKEN_KINDS.get(first.kind)
        if first.text in ("[", "{") and self.match.get(lo) == hi - 1:
            return "list" if first.text == "[" else "map"
        if last.text != ")":
            return None
        opening = self.opener.get(hi - 1)
        if opening is None or opening - 1 < lo or self.toks[opening - 1].kind != "id":
            return None
        name = self.toks[opening - 1].text
        if opening - 2 >= lo and self.toks[opening - 2].text == ".":
            return _METHODS.get(name)
        return _FUNCTIONS.get(name) if opening - 1 == lo else None

    def walk(self, lo: int, hi: int, out: list[Operation]) -> None:
        """Collect the operations between ``lo`` and ``hi`` (see :func:`operations`)."""
        lo, hi = self._strip(lo, hi)
        if lo >= hi:
            return
        level, at = self._lowest(lo, hi)
        if level == "?":
            colon = self._colon(at[0], hi)
            ends = (at[0], hi) if colon is None else (at[0], colon, hi)
            for a, b in zip((lo, *(e + 1 for e in ends[:-1])), ends, strict=True):
                self.walk(a, b, out)
            return
        if level is not None:
            spans = self._operands(lo, hi, at)
            if level in ("rel", "+", "*"):
                for n, i in enumerate(at):
                    a, b = spans[n + 1]
                    left = self._strip(lo, i)
                    right = self._strip(a, b)
                    out.append(
                        Operation(
                            self.toks[i],
                            tuple(self.toks[left[0] : left[1]]),
                            tuple(self.toks[right[0] : right[1]]),
                        )
                    )
            for a, b in spans:
                self.walk(a, b, out)
            return
        if self.toks[lo].text in ("!", "-"):
            self.walk(lo + 1, hi, out)
            return
        for i in self._top(lo, hi):  # a primary: look inside its brackets
            end = self.match.get(i)
            if end is None:
                continue
            start = i + 1
            for j in self._top(i + 1, end):
                if self.toks[j].text == "," or (
                    self.toks[j].text == ":" and self.toks[i].text == "{"
                ):
                    self.walk(start, j, out)
                    start = j + 1
            self.walk(start, end, out)

    @staticmethod
    def _operands(lo: int, hi: int, at: list[int]) -> list[tuple[int, int]]:
        """The spans between the operators at ``at``."""
        return list(zip((lo, *(i + 1 for i in at)), (*at, hi), strict=True))

    def _strip(self, lo: int, hi: int) -> tuple[int, int]:
        while lo < hi and self.toks[lo].text == "(" and self.match.get(lo) == hi - 1:
            lo, hi = lo + 1, hi - 1
        return lo, hi

    def _top(self, lo: int, hi: int) -> list[int]:
        """Indices of the tokens outside any bracket between ``lo`` and ``hi``."""
        out, i = [], lo
        while i < hi:
            out.append(i)
            i = self.match.get(i, i) + 1 if self.toks[i].text in _OPENERS else i + 1
        return out

    def _lowest(self, lo: int, hi: int) -> tuple[str | None, list[int]]:
        """The lowest-precedence binary operator at the top level, and where it occurs."""
        found: dict[str, list[int]] = {}
        top = self._top(lo, hi)
        for n, i in enumerate(top):
            tok = self.toks[i]
            level = _LEVEL.get(tok.text) if tok.kind in ("op", "id") and n else None
            if level == "+" and not self._ends_operand(top[n - 1]):
                continue  # a unary minus
            if level is not None:
                found.setdefault(level, []).append(i)
        level = next((lv for lv in _ORDER if lv in found), None)
        return level, found.get(level or "", [])

    def _ends_operand(self, i: int) -> bool:
        tok = self.toks[i]
        if tok.kind == "id":
            return tok.text != "in"
        # a top-level opener stands for its whole group: (...), [...], {...}, a call's args
        return tok.kind in ("str", "bytes", "num") or tok.text in _OPENERS

    def _colon(self, question: int, hi: int) -> int | None:
        """The ``:`` that pairs with the ``?`` at ``question`` (ternaries nest)."""
        depth = 0
        for i in self._top(question, hi):
            if self.toks[i].text == "?":
                depth += 1
            elif self.toks[i].text == ":":
                depth -= 1
                if depth == 0:
                    return i
        return None
