"""Mask sensitive fields before anything is stored.

Two sources: keys whose names say they hold a secret (anywhere in args or context), and
dotted paths the policy lists under ``sensitive:`` (``*`` matches any key at that level).
"""

from __future__ import annotations

from typing import Any

MASK = "***"
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access_token",
        "refresh_token",
        "authorization",
        "private_key",
        "client_secret",
        "credentials",
    }
)


def mask(
    root: str, value: dict[str, Any], paths: tuple[tuple[str, ...], ...], masked: list[str]
) -> dict[str, Any]:
    """A copy of ``value`` with secrets replaced; ``masked`` collects what was hidden."""
    out: dict[str, Any] = _by_name(value, root, masked)
    for path in paths:
        if path[0] == root:
            out = _by_path(out, path[1:], root, masked)
    return out


def _by_name(value: Any, where: str, masked: list[str]) -> Any:
    if type(value) is dict and _flat_and_clean(value):
        return value  # the common case, checked without building paths
    if isinstance(value, dict):
        changed: dict[Any, Any] | None = None
        for key, item in value.items():
            here = f"{where}.{key}"
            if isinstance(key, str) and key.lower() in SECRET_KEYS:
                new: Any = MASK
                masked.append(here)
            else:
                new = _by_name(item, here, masked)
            if new is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed
    if isinstance(value, list):
        items = [_by_name(v, f"{where}[{i}]", masked) for i, v in enumerate(value)]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def _flat_and_clean(value: dict[Any, Any]) -> bool:
    """No nested containers and no key that names a secret."""
    for key, item in value.items():
        if type(item) in (dict, list) or (type(key) is str and key.lower() in SECRET_KEYS):
            return False
    return True


def _by_path(value: Any, path: tuple[str, ...], where: str, masked: list[str]) -> Any:
    if not isinstance(value, dict) or not path:
        return value
    head, rest = path[0], path[1:]
    keys = list(value) if head == "*" else [head] if head in value else []
    if not keys:
        return value
    out = dict(value)
    for key in keys:
        here = f"{where}.{key}"
        if rest:
            out[key] = _by_path(value[key], rest, here, masked)
        elif out[key] != MASK:
            out[key] = MASK
            masked.append(here)
    return out
