"""Policy-as-code: YAML + CEL, validated with positions, compiled once, evaluated fast."""

from .compile import CompiledPolicy, CompiledRule, compile_policy
from .evaluate import Action, Decision, evaluate
from .testing import TestResult, run_tests

__all__ = [
    "Action",
    "CompiledPolicy",
    "CompiledRule",
    "Decision",
    "TestResult",
    "compile_policy",
    "evaluate",
    "run_tests",
]
