"""A tool's healing settings, compiled: the fallback's argument expressions built once.

The SDK reads these to retry, time out, fall back and escalate; the gate reads the breaker
settings. Nothing here touches the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._errors import PolicyError
from . import _cel as cel
from .schema import Breaker, Escalate, Fallback, Retry, ToolHealing

FALLBACK_ROOTS = frozenset({"tool", "args", "context"})
CEL_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, ZeroDivisionError, OverflowError)


@dataclass(frozen=True, slots=True)
class CompiledHealing:
    tool: str
    timeout: float | None
    retry: Retry | None
    breaker: Breaker | None
    fallback: Fallback | None
    escalate: Escalate | None
    fallback_args: dict[str, Any] | None  # argument name -> compiled CEL program
    # what the SDK needs to heal a call, as JSON (it may cross HTTP); the breaker is the
    # gate's alone, so a tool with only a breaker hands the SDK nothing
    settings: dict[str, Any]

    def fallback_call(
        self, args: dict[str, Any], context: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        """The fallback tool and its arguments for a call of this tool; PolicyError when an
        expression fails (a fallback that cannot be built is not run)."""
        if self.fallback is None:
            return None
        if self.fallback_args is None:
            return self.fallback.tool, dict(args)
        ctx = cel.Context({"tool": self.tool, "args": args, "context": context})
        built: dict[str, Any] = {}
        for name, program in self.fallback_args.items():
            try:
                built[name] = program.execute(ctx)
            except CEL_ERRORS as exc:
                raise PolicyError(
                    f"tools.{self.tool}.fallback.args.{name}: {type(exc).__name__}: {exc}"
                ) from None
        return self.fallback.tool, built


def compile_healing(tool: str, heal: ToolHealing, compile_cel: Any) -> CompiledHealing:
    """``compile_cel(expr, path, roots)`` compiles one expression with positions."""
    programs = None
    if heal.fallback is not None and heal.fallback.args is not None:
        programs = {
            name: compile_cel(expr, ("tools", tool, "fallback", "args", name), FALLBACK_ROOTS)
            for name, expr in heal.fallback.args.items()
        }
    return CompiledHealing(
        tool,
        heal.timeout,
        heal.retry,
        heal.breaker,
        heal.fallback,
        heal.escalate,
        programs,
        heal.model_dump(mode="json", exclude_none=True, exclude={"breaker"}),
    )
