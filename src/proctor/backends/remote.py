"""Remote mode: ``Proctor(url=..., token=...)`` sends the SDK's calls to ``proctor serve``.

Every action and outcome carries an idempotency key, so a retry after a dropped connection
is never recorded twice. Waiting for a human is a long-poll that follows the server
through restarts. If the server cannot be reached within ``timeout``, a decision is
refused (fail closed) with a reason that says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from .._canonical import canonical
from .._errors import (
    InvalidRequest,
    NotFound,
    PolicyError,
    StoreError,
    TooManyRequests,
    error_for_status,
)
from .._values import omitted, problem, storable_json, text
from ..execution.calls import CallRef, CallState, Settlement, UnknownCall
from ..gate import INVALID_INPUT, SERVER_UNREACHABLE, CallOutcome, Verdict, admitted, error_type
from ..policy import Action, CompiledPolicy, compile_policy
from ..policy.evaluate import refuse
from ..review.items import ReviewItem
from ..runstate import RunState
from . import (
    _NOT_GIVEN,
    ClaimAnswer,
    call_from_wire,
    item_from_wire,
    verdict_from_wire,
    verdict_to_wire,
)

LONG_POLL = 25.0
_ITEM_FIELDS = frozenset(ReviewItem.__dataclass_fields__)


def idempotency_key() -> str:
    """Time first, then randomness: keys arrive in roughly increasing order, so the server
    appends them to its index instead of writing a random page for each."""
    return f"{time.time_ns():016x}{os.urandom(8).hex()}"


class ServerUnreachable(StoreError):
    """The Proctor server did not answer in time."""


def _run_wire(run: RunState | None) -> dict[str, Any] | None:
    if run is None:
        return None
    invalid = problem(run.context, "context")
    return {
        "id": run.id,
        "trace_id": run.trace_id,
        "parent_id": run.parent_id,
        "ancestors": list(run.ancestors),
        "agent": run.agent,
        "context": run.context if invalid is None else omitted(invalid),
        "started": run.started,
        "history": list(run.history),
    }


def _action_wire(
    action: Action,
    run: RunState | None,
    params: dict[str, Any] | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    return {
        "agent": action.agent,
        "tool": action.tool,
        "args": action.args,
        "context": action.context,
        "reversible": action.reversible,
        "reads": list(action.reads),
        "params": params,
        "run": _run_wire(run),
        "idempotency_key": key,
    }


class RemoteBackend:
    def __init__(self, url: str, *, token: str | None, timeout: float) -> None:
        if timeout <= 0:
            raise InvalidRequest("timeout must be a positive number of seconds")
        token = token or os.environ.get("PROCTOR_TOKEN")
        self.url = url.rstrip("/")
        self.timeout = timeout
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    # -- plumbing ----------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        retry: bool = True,
        read_timeout: float | None = None,
    ) -> Any:
        """One API call; transport failures are retried (if ``retry``) until ``timeout``."""
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        content = canonical(body) if body is not None else None
        timeout = httpx.Timeout(self.timeout, read=read_timeout or self.timeout)
        while True:
            try:
                response = self.http.request(
                    method, path, content=content, params=params, timeout=timeout
                )
            except httpx.TransportError as exc:
                if not retry or time.monotonic() + delay > deadline:
                    raise ServerUnreachable(
                        f"the Proctor server at {self.url} cannot be reached: {exc}"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if response.status_code < 400:
                return response.json()
            self._raise(response)

    def _raise(self, response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:500]}
        message = str(body.get("message") or body.get("detail") or response.reason_phrase)
        if response.status_code == 422 and "line" in body:
            raise PolicyError(
                message, source="<server>", line=int(body["line"]), column=int(body["column"])
            )
        if response.status_code == 429:
            wait = response.headers.get("retry-after", "1")
            raise TooManyRequests(
                f"{message} (HTTP 429)", retry_after=int(wait) if wait.isdigit() else 1
            )
        kind = error_for_status(response.status_code)
        raise kind(f"{message} (HTTP {response.status_code})")

    # -- the agent's side --------------------------------------------------------------

    def decide(
        self,
        action: Action,
        run: RunState | None,
        params: dict[str, Any] | None,
        call: CallRef | None = None,
        waited_on: tuple[str, ...] = (),
    ) -> Verdict:
        safe, invalid = admitted(action)
        if invalid is not None:  # refused here, as the embedded gate would; and recorded
            try:
                verdict = self.record_refusal(safe, run, invalid, INVALID_INPUT)
            except StoreError as exc:
                reason = f"{invalid} (and the refusal could not be recorded: {exc})"
                return Verdict(refuse(reason, INVALID_INPUT, None), None, None)
            return verdict
        body = _action_wire(action, run, params, idempotency_key())
        if call is not None:
            body["call"] = {"key": call.key, "token": call.token, "owner": call.owner}
        if waited_on:
            body["waited_on"] = list(waited_on)
        try:
            verdict = verdict_from_wire(self._call("POST", "/api/v1/actions", body))
        except StoreError as exc:
            return Verdict(refuse(f"failing closed: {exc}", SERVER_UNREACHABLE, None), None, None)
        if run is not None:
            run.started = True
            run.actions += 1
            run.remember(action.tool, verdict.decision.decision, verdict.id)
        return verdict

    def record_outcome(
        self,
        verdict: Verdict,
        action: Action,
        run: RunState | None,
        *,
        error: BaseException | None,
        duration: float,
        params: dict[str, Any] | None = None,
        item_id: str | None = None,
        result: Any = _NOT_GIVEN,
        claim_token: str | None = None,
        call: CallOutcome | None = None,
        healed: dict[str, Any] | None = None,
    ) -> str | None:
        action, _ = admitted(action)  # a tool may have changed its arguments as it ran
        body = {
            "verdict": verdict_to_wire(verdict),
            "action": _action_wire(action, run, params),
            "error_type": text(error_type(error))[:200] if error is not None else None,
            "error": text(str(error))[:2000] if error is not None else None,
            "duration": duration,
            "item_id": item_id,
            "has_result": result is not _NOT_GIVEN,
            # it has happened: sent in a form the server can store, whatever it holds
            "result": None if result is _NOT_GIVEN else orjson.loads(storable_json(result)),
            "claim_token": claim_token,
            "idempotency_key": idempotency_key(),
        }
        if call is not None:
            body["call"] = {
                "id": call.id,
                "token": call.token,
                "ambiguous": call.ambiguous,
                "has_lookup": call.has_lookup,
            }
            body["has_result"] = True
            body["result"] = orjson.loads(storable_json(call.result))
        if healed:
            body["healed"] = healed
        opened = self._call("POST", "/api/v1/outcomes", body).get("item_id")
        if run is not None:
            run.remember(action.tool, "error" if error is not None else "ok", verdict.id)
        return str(opened) if opened else None

    def record_attempt(
        self,
        verdict: Verdict,
        action: Action,
        run: RunState | None,
        *,
        attempt: int,
        error: BaseException,
        detail: dict[str, Any] | None = None,
        call_id: str | None = None,
    ) -> str:
        action, _ = admitted(action)
        body = {
            "verdict": verdict_to_wire(verdict),
            "action": _action_wire(action, run, None),
            "attempt": attempt,
            "error_type": text(error_type(error))[:200],
            "error": text(str(error))[:2000],
            "call_id": call_id,
            **(detail or {}),
        }
        return str(self._call("POST", "/api/v1/attempts", body).get("breaker") or "")

    def escalate_failure(
        self,
        verdict: Verdict,
        action: Action,
        run: RunState | None,
        *,
        why: str,
        history: list[dict[str, Any]],
        params: dict[str, Any] | None = None,
        call_id: str | None = None,
    ) -> str:
        action, _ = admitted(action)
        body = {
            "verdict": verdict_to_wire(verdict),
            "action": _action_wire(action, run, params),
            "why": text(why)[:2000],
            "history": orjson.loads(storable_json(history[-100:])),
            "call_id": call_id,
        }
        return str(self._call("POST", "/api/v1/escalations", body)["item_id"])

    def record_refusal(
        self, action: Action, run: RunState | None, reason: str, rule_id: str
    ) -> Verdict:
        action, _ = admitted(action)
        body = {"action": _action_wire(action, run), "reason": reason, "rule_id": rule_id}
        return verdict_from_wire(self._call("POST", "/api/v1/refusals", body))

    def open_choice(
        self,
        agent: str,
        offered: list[tuple[Action, dict[str, Any]]],
        run: RunState | None,
        queue: str | None,
        reason: str,
    ) -> Verdict:
        options = [
            {
                "tool": a.tool,
                "args": a.args,
                "reversible": a.reversible,
                "reads": list(a.reads),
                "probability": meta.get("probability"),
                "risks": list(meta.get("risks") or []),
            }
            for a, meta in offered
        ]
        body = {
            "agent": agent,
            "options": options,
            "context": offered[0][0].context,
            "run": _run_wire(run),
            "queue": queue,
            "reason": reason,
        }
        verdict = verdict_from_wire(self._call("POST", "/api/v1/choices", body, retry=False))
        if run is not None:
            run.started = True
        return verdict

    def end_run(self, run: RunState, error: BaseException | None) -> None:
        body = {"run": _run_wire(run), "error_type": error_type(error) if error else None}
        self._call("POST", f"/api/v1/runs/{run.id}/end", body)

    def claim(
        self, item_id: str, original_digest: str | None, owner: str | None, token: str
    ) -> ClaimAnswer:
        # A retry after a lost response shows the same token and gets its claim back.
        body = {"args_digest": original_digest, "owner": owner, "token": token}
        answer = self._call("POST", f"/api/v1/reviews/{item_id}/claim", body)
        return ClaimAnswer(
            str(answer["state"]),
            float(answer["lease_seconds"]),
            tuple(answer.get("held_by") or ()),
            answer.get("reason"),
        )

    def renew(self, item_id: str, token: str) -> bool:
        answer = self._call("POST", f"/api/v1/reviews/{item_id}/lease", {"token": token})
        return bool(answer["held"])

    def renew_call(self, call_id: str, token: str) -> bool:
        answer = self._call("POST", f"/api/v1/calls/{call_id}/lease", {"token": token})
        return bool(answer["held"])

    def settle_call(self, call_id: str, settlement: Settlement) -> CallState:
        body = {
            "answer": settlement.answer,
            "result": orjson.loads(storable_json(settlement.result)),
            "evidence": text(settlement.evidence or "")[:2000] or None,
            "token": settlement.token,
            "owner": settlement.owner,
        }
        return call_from_wire(self._call("POST", f"/api/v1/calls/{call_id}/settle", body))

    def unknown_calls(self, agent: str | None, tool: str, limit: int) -> list[UnknownCall]:
        query = {"status": "unknown", "tool": tool, "limit": str(limit)}
        if agent is not None:
            query["agent"] = agent
        found = self._call("GET", f"/api/v1/calls?{urlencode(query)}")["calls"]
        return [
            UnknownCall(
                c["id"],
                c["agent"],
                c["tool"],
                c["key"],
                c["args"],
                c["decision_id"],
                c["decision_seq"],
            )
            for c in found
        ]

    def escalate_call(self, call_id: str, why: str) -> str:
        answer = self._call("POST", f"/api/v1/calls/{call_id}/escalate", {"why": why[:2000]})
        return str(answer["item_id"])

    def lineage(self, run_id: str) -> list[str]:
        return [str(r) for r in self._call("GET", f"/api/v1/runs/{run_id}/lineage")["runs"]]

    def sweep_item(self, item_id: str) -> None:
        self._call("POST", f"/api/v1/reviews/{item_id}/timeout")

    def item(self, item_id: str) -> ReviewItem:
        data = self._call("GET", f"/api/v1/reviews/{item_id}")
        return item_from_wire({k: v for k, v in data.items() if k in _ITEM_FIELDS})

    def status(self, item_id: str) -> str:
        return self.item(item_id).status

    def wait_while(self, item_id: str, statuses: Iterable[str], timeout: float) -> str:
        """Long-poll until the item leaves ``statuses``; rides out server restarts."""
        wanted = ",".join(sorted(set(statuses)))
        deadline = time.monotonic() + timeout
        status = ""
        while True:
            left = deadline - time.monotonic()
            poll = max(0.0, min(left, LONG_POLL))
            try:
                answer = self._call(
                    "GET",
                    f"/api/v1/reviews/{item_id}/wait",
                    params={"while": wanted, "timeout": round(poll, 3)},
                    read_timeout=poll + self.timeout,
                )
            except ServerUnreachable:
                if deadline - time.monotonic() <= 0:
                    raise
                continue  # the server is restarting: keep waiting until our own deadline
            status = str(answer["status"])
            if status not in wanted.split(",") or deadline - time.monotonic() <= 0:
                return status
            if answer.get("reconnect"):
                time.sleep(0.2)

    # -- the reviewer's side -----------------------------------------------------------

    def items(self, status: str | None, queue: str | None) -> list[ReviewItem]:
        params = {"status": status or "all"}
        if queue:
            params["queue"] = queue
        data = self._call("GET", "/api/v1/reviews", params=params)
        return [item_from_wire({k: v for k, v in d.items() if k in _ITEM_FIELDS}) for d in data]

    def review(self, verb: str, item_id: str, by: str, **fields: Any) -> ReviewItem:
        body = {k: v for k, v in fields.items() if v is not None or k == "note"}
        data = self._call("POST", f"/api/v1/reviews/{item_id}/{verb}", body, retry=False)
        return item_from_wire({k: v for k, v in data.items() if k in _ITEM_FIELDS})

    def sweep(self) -> list[str]:
        return []  # the server applies review timeouts itself, every few seconds

    # -- policy ------------------------------------------------------------------------

    def apply_policy(self, text: str, source: str, author: str | None, message: str | None) -> str:
        try:
            return str(
                self._call(
                    "POST", "/api/v1/policies", {"text": text, "message": message}, retry=False
                )["version"]
            )
        except PolicyError as exc:
            raise PolicyError(
                exc.message, source=source, line=exc.line, column=exc.column
            ) from None

    def active_policy(self) -> CompiledPolicy | None:
        try:
            data = self._call("GET", "/api/v1/policies/active")
        except NotFound:
            return None
        return compile_policy(data["text"], f"policy {data['version'][:12]}")

    def close(self) -> None:
        self.http.close()
