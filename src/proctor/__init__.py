"""Proctor: every consequential action an AI agent takes passes one gate.

Public API only; everything else is internal and may change.
"""

from ._errors import (
    ConfigError,
    DecisionError,
    Denied,
    NotFound,
    PolicyError,
    ProctorError,
    Rejected,
    ReviewPending,
    StoreError,
)
from .gate import Verdict
from .policy import Action, Decision
from .review import ReviewItem
from .runs import Run
from .sdk import Proctor
from .tools import UNSET

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ConfigError",
    "Decision",
    "DecisionError",
    "Denied",
    "NotFound",
    "PolicyError",
    "Proctor",
    "ProctorError",
    "Rejected",
    "ReviewItem",
    "ReviewPending",
    "Run",
    "StoreError",
    "UNSET",
    "Verdict",
]
