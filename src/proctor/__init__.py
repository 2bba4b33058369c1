"""Proctor: every consequential action an AI agent takes passes one gate.

Public API only; everything else is internal and may change.
"""

from . import controls
from ._errors import (
    ConfigError,
    Conflict,
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
)
from .gate import Verdict
from .policy import Action, Decision
from .review import ReviewItem
from .runs import Run
from .sdk import Option, Proctor
from .tools import UNSET

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ConfigError",
    "Conflict",
    "Decision",
    "DecisionError",
    "Denied",
    "Forbidden",
    "InDoubt",
    "InvalidRequest",
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
    "controls",
]
