"""Read YAML into plain Python values while remembering where every key and value stood.

PyYAML's composer gives nodes with marks; we build the data ourselves so that a later
schema or CEL error can be reported as FILE:LINE:COL of the exact key or value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .._errors import PolicyError

Path = tuple[str | int, ...]
KEY = "\x00key"  # marks the position of a mapping key rather than its value
# PyYAML's composer, and our builder after it, recurse once per level of nesting: a few
# hundred levels raise RecursionError. No policy needs more than a handful.
MAX_DEPTH = 64
DEEP = f"the policy nests deeper than {MAX_DEPTH} levels"
# Each use of an alias is built out in full: a few lines of nested aliases could otherwise
# ask for billions of values. Reusing a list or a mapping here and there stays far below.
MAX_ALIASED = 100_000


@dataclass
class Located:
    """Parsed YAML plus the 1-based (line, column) of each path, and the raw text."""

    data: Any
    source: str
    text: str
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    scalars: dict[Path, yaml.ScalarNode] = field(default_factory=dict)

    def where(self, path: Path) -> tuple[int, int]:
        """Position of ``path``, or of its nearest recorded ancestor."""
        p = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), (1, 1))

    def error(self, path: Path, message: str) -> PolicyError:
        line, col = self.where(path)
        return PolicyError(message, source=self.source, line=line, column=col)

    def locate_in_scalar(self, path: Path, line_in: int, col_in: int) -> tuple[int, int]:
        """Map a 1-based (line, col) inside a string value to a place in the file."""
        node = self.scalars.get(tuple(path))
        if node is None:
            return self.where(path)
        value = str(node.value)
        wanted = value.splitlines()[line_in - 1] if value else ""
        start = node.start_mark.line
        lines = self.text.splitlines()
        one_line = node.end_mark.line == start
        if node.style is None and "\n" not in value and line_in == 1 and one_line:
            return start + 1, node.start_mark.column + col_in
        if node.style in ("'", '"') and line_in == 1:
            return start + 1, node.start_mark.column + 1 + col_in
        if node.style in (None, ">") and "\n" not in value.rstrip("\n") and line_in == 1:
            found = self._folded(node, value, col_in - 1)
            if found is not None:
                return found
        # Block or folded scalars: find the wanted line of the value in the file itself.
        for n in range(start, min(node.end_mark.line + 1, len(lines))):
            idx = lines[n].find(wanted) if wanted else -1
            if idx >= 0 and (n > start or node.style is None):
                return n + 1, idx + col_in
        return start + 1, node.start_mark.column + 1

    def _folded(self, node: yaml.ScalarNode, value: str, offset: int) -> tuple[int, int] | None:
        """Where ``value[offset]`` stands when YAML folded the scalar's lines into one,
        joined by single spaces (a plain scalar over several lines, or ``>``)."""
        lines = self.text.splitlines()
        first = node.start_mark.line + (1 if node.style == ">" else 0)
        pos = 0  # where the current line's text starts in the value
        for n in range(first, min(node.end_mark.line + 1, len(lines))):
            skip = node.start_mark.column if n == node.start_mark.line else 0
            raw = lines[n][skip:]
            text = raw.strip()
            if not text:
                continue
            if not value.startswith(text, pos):
                return None  # escapes or blank lines: not a plain fold
            if offset <= pos + len(text):  # at the end: where the parser ran out
                return n + 1, skip + len(raw) - len(raw.lstrip()) + offset - pos + 1
            pos += len(text) + 1
        return None


class _Builder:
    def __init__(self, located: Located) -> None:
        self.located = located
        self.constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.located.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self._error(key_node, "mapping keys must be plain strings")
                key = self.constructor.construct_object(key_node)
                if key == "<<":
                    raise self._error(key_node, "YAML merge keys ('<<') are not supported")
                if not isinstance(key, str):
                    key = str(key_node.value)
                if key in out:
                    raise self._error(key_node, f"duplicate key '{key}'")
                self.located.positions[(*path, key, KEY)] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        self.located.scalars[path] = node
        return self.constructor.construct_object(node)

    def _error(self, node: yaml.Node, message: str) -> PolicyError:
        return PolicyError(
            message,
            source=self.located.source,
            line=node.start_mark.line + 1,
            column=node.start_mark.column + 1,
        )


def load_yaml(text: str, source: str = "<policy>") -> Located:
    """Parse one YAML document; syntax errors become PolicyError with the parser's place."""
    located = Located(data=None, source=source, text=text)
    try:
        _check_shape(text, source)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or exc.context or "invalid YAML"
        raise PolicyError(f"invalid YAML: {problem}", source=source, line=line, column=col) from exc
    except yaml.YAMLError as exc:  # e.g. more than one document
        raise PolicyError(f"invalid YAML: {exc}", source=source, line=1, column=1) from exc
    if node is None:
        raise PolicyError("the policy is empty", source=source, line=1, column=1)
    try:
        located.data = _Builder(located).build(node, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise PolicyError(
            f"invalid YAML value: {exc.problem}", source=source, line=line, column=col
        ) from exc
    return located


def _check_shape(text: str, source: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before anything recursive sees the text.

    PyYAML's event parser keeps its own stack, so walking the events is safe at any depth.
    An alias counts as deep as the node it names, wherever it is used, may not name a
    node that holds it (the builder would recurse without end), and all of them together
    may add at most MAX_ALIASED values. Only the first document is walked: the composer
    reports a second one as it always has, and parser errors come out of this walk
    exactly as they would out of the composer.
    """
    named: dict[str, tuple[int, int]] = {}  # anchor -> (levels of nesting, values) below it
    anchors: list[str | None] = []  # per open collection, outermost first: its anchor
    tallest: list[int] = []  # the height of its tallest child so far
    sizes: list[int] = []  # and the values in it so far
    aliased = 0

    def finished(anchor: str | None, height: int, size: int) -> None:
        if anchor is not None:
            named[anchor] = (height, size)
        if tallest:
            tallest[-1] = max(tallest[-1], height)
            sizes[-1] += size

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(anchors) >= MAX_DEPTH:
                raise _refuse(event, source, DEEP)
            anchors.append(event.anchor)
            tallest.append(0)
            sizes.append(0)
        elif isinstance(event, yaml.CollectionEndEvent):
            finished(anchors.pop(), tallest.pop() + 1, sizes.pop() + 1)
        elif isinstance(event, yaml.ScalarEvent):
            finished(event.anchor, 0, 1)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in anchors:  # the composer would build an endless structure
                raise _refuse(event, source, "an alias may not refer to a node that holds it")
            if event.anchor in named:
                height, size = named[event.anchor]
                if len(anchors) + height > MAX_DEPTH:
                    raise _refuse(event, source, DEEP)
                aliased += size
                if aliased > MAX_ALIASED:
                    message = f"aliases expand the policy past {MAX_ALIASED:,} values"
                    raise _refuse(event, source, message)
                finished(None, height, size)
        elif isinstance(event, yaml.DocumentEndEvent):
            return


def _refuse(event: yaml.Event, source: str, message: str) -> PolicyError:
    mark = event.start_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return PolicyError(message, source=source, line=line, column=col)
