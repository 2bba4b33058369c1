"""The drift monitors' API (``/api/v1/drift``) and the one way a person sets a stage over
HTTP. Reading needs ``read``; checking, re-baselining and setting a stage need
``manage`` (an admin): a detector's own path can only lower a stage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from .. import controls
from .._errors import NotFound
from .._extras import missing
from ..drift import views
from ..policy.monitors import Monitor
from .api import Who, _px, need
from .schemas import _In

router = APIRouter(prefix="/api/v1")


class ResetIn(_In):
    reason: str = Field(min_length=1, max_length=2000)


class StageIn(_In):
    stage: int = Field(ge=1, le=4)
    reason: str = Field(min_length=1, max_length=2000)
    tool: str | None = Field(default=None, min_length=1, max_length=200)


def _monitors(request: Request) -> list[Monitor]:
    policy = _px(request).policy.active()
    return list(policy.document.monitors) if policy is not None else []


def _watcher(request: Request) -> Any:
    try:
        from ..drift.monitor import DriftMonitor
    except ImportError as exc:
        raise missing("drift", exc) from None
    return DriftMonitor(_px(request).store)


@router.get("/drift", tags=["monitoring"])
def drift_status(who: Who, request: Request) -> Any:
    """Every monitor of the active policy (drifting first) and the latest detections."""
    need(who, "read")
    store = _px(request).store
    return {
        "monitors": views.status(store, _monitors(request)),
        "detections": views.history(store, limit=50),
    }


@router.get("/drift/{monitor_id}", tags=["monitoring"])
def drift_monitor(who: Who, request: Request, monitor_id: str) -> Any:
    """One monitor: its state, the statistic over time, the reference against the current
    values, and its detections with their responses."""
    need(who, "read")
    store = _px(request).store
    found = [m for m in _monitors(request) if m.id == monitor_id]
    if not found:
        raise NotFound(f"no monitor {monitor_id!r} in the active policy")
    return {
        **views.status(store, found)[0],
        "points": views.points(store, monitor_id),
        "distributions": views.distributions(store, found[0]),
        "detections": views.history(store, monitor_id),
    }


@router.post("/drift/check", tags=["monitoring"])
def drift_check(who: Who, request: Request) -> Any:
    """Read the log for the monitors now (the server also does this on its own every
    ``PROCTOR_DRIFT_CHECK_SECONDS``)."""
    need(who, "manage")
    return {"detections": [vars(d) for d in _watcher(request).check()]}


@router.post("/drift/{monitor_id}/reset", tags=["monitoring"])
def drift_reset(who: Who, request: Request, monitor_id: str, body: ResetIn) -> Any:
    """Accept the new behaviour: a new reference from the next events, the alert resolved."""
    need(who, "manage")
    _watcher(request).reset(monitor_id, who.name, body.reason)
    return {"monitor": monitor_id, "status": "reference"}


@router.post("/agents/{agent}/stage", tags=["policies"])
def set_stage(who: Who, request: Request, agent: str, body: StageIn) -> Any:
    """Set an agent's (or one tool's) autonomy stage: how a person restores a stage a
    drift monitor lowered."""
    need(who, "manage")
    policy = _px(request).policy.active()
    if policy is not None and agent not in policy.agents:
        raise NotFound(f"agent {agent!r} is not declared in the active policy")
    controls.set_stage(_px(request).store, agent, body.stage, body.reason, who.name, tool=body.tool)
    return {"agent": agent, "tool": body.tool, "stage": body.stage}
