"""Run a function with a time limit, on a thread of its own.

Python cannot stop a thread: past the limit the caller stops waiting and the thread is left
to finish (or not) on its own, as a daemon. Used where an outside answer may hang: a tool's
reconciliation lookup, and a sync tool body with a policy ``timeout``.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any


class TimeLimit(Exception):
    """The function was still running when the limit passed."""


def within(seconds: float, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with the caller's context, its error raised here as is;
    ``TimeLimit`` if it runs past ``seconds``."""
    result: list[Any] = []
    failed: list[BaseException] = []
    context = contextvars.copy_context()

    def target() -> None:
        try:
            result.append(context.run(fn, *args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as is
            failed.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeLimit(f"{name} ran past {seconds:g}s")
    if failed:
        raise failed[0]
    return result[0]
