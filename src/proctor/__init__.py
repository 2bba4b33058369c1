"""Proctor: every consequential action an AI agent takes passes one gate.

Public API only; everything else is internal and may change. The exceptions are defined
here at once; the rest loads on first use (``proctor.Proctor`` imports the engine), so that
``import proctor`` and the ``proctor`` command start quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    ConfigError,
    Conflict,
    DeadlineExceeded,
    DecisionError,
    Denied,
    Forbidden,
    InDoubt,
    InvalidRequest,
    NotFound,
    PolicyError,
    ProctorError,
    Rejected,
    ReviewPending,
    StillRunning,
    StoreError,
    ToolFailed,
    TooManyRequests,
    WebhookError,
)
from ._version import __version__ as __version__

if TYPE_CHECKING:
    from . import controls
    from .calls import Call
    from .gate import Verdict
    from .policy import Action, Decision
    from .reconcile import Committed, Conflicting, NotCommitted
    from .review import ReviewItem
    from .runs import Run
    from .sdk import Option, Proctor
    from .telemetry.webhooks import verify_webhook
    from .tools import UNSET

_LAZY = {
    "Action": ".policy",
    "Call": ".calls",
    "Committed": ".reconcile",
    "Conflicting": ".reconcile",
    "NotCommitted": ".reconcile",
    "Decision": ".policy",
    "Option": ".sdk",
    "Proctor": ".sdk",
    "ReviewItem": ".review",
    "Run": ".runs",
    "UNSET": ".tools",
    "Verdict": ".gate",
    "verify_webhook": ".telemetry.webhooks",
}

__all__ = [
    "Action",
    "Call",
    "Committed",
    "ConfigError",
    "Conflict",
    "Conflicting",
    "DeadlineExceeded",
    "Decision",
    "DecisionError",
    "Denied",
    "Forbidden",
    "InDoubt",
    "InvalidRequest",
    "NotCommitted",
    "NotFound",
    "Option",
    "PolicyError",
    "Proctor",
    "ProctorError",
    "Rejected",
    "ReviewItem",
    "ReviewPending",
    "Run",
    "StillRunning",
    "StoreError",
    "TooManyRequests",
    "ToolFailed",
    "UNSET",
    "Verdict",
    "WebhookError",
    "controls",
    "verify_webhook",
]


def __getattr__(name: str) -> Any:
    if name == "controls":
        value: Any = importlib.import_module(".controls", __name__)
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    else:
        raise AttributeError(f"module 'proctor' has no attribute {name!r}")
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
