"""An orchestrator that resumes its agent when a person decides, told by a signed webhook.

The agent asks for a refund that needs a person; instead of polling, the orchestrator
waits for Proctor's webhook. A reviewer approves (here from a thread, as the console or
``proctor queue`` would from elsewhere); the outbox posts ``review.approved`` to the
receiver below, which checks the signature with ``proctor.verify_webhook`` and resumes
the call, which runs once.

Run: python examples/webhooks_resume.py  (a temporary SQLite database; no API key)
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import proctor
from proctor.telemetry.notifications import deliver_due

POLICY = """
policy: refunds-with-webhooks
defaults: {decision: deny, queue: billing}
queues: {billing: {}}
agents: {refund-bot: {tools: [issue_refund]}}
rules:
  - {id: refunds, when: 'tool == "issue_refund"', decide: allow}
  - id: large
    when: tool == "issue_refund" && args.amount > 100.0
    decide: review
    reason: Refunds over 100 need a billing lead
webhooks:
  - name: orchestrator
    url: http://127.0.0.1:${RECEIVER_PORT}/proctor
    secret: ${ORCHESTRATOR_WEBHOOK_SECRET}
    events: [review.approved, review.rejected, review.edited, review.expired]
"""


def receiver(secret: str, events: queue.Queue[dict[str, Any]]) -> ThreadingHTTPServer:
    """The orchestrator's endpoint: verify, acknowledge at once, act elsewhere."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                event = proctor.verify_webhook(body, dict(self.headers.items()), secret)
            except proctor.WebhookError as exc:
                self.send_error(401, str(exc))
                return
            self.send_response(204)  # a 2xx ends the retries; the work happens elsewhere
            self.end_headers()
            events.put(event)

        def log_message(self, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def main() -> str:
    secret = os.urandom(16).hex()
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    server = receiver(secret, events)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["RECEIVER_PORT"] = str(server.server_address[1])
    os.environ["ORCHESTRATOR_WEBHOOK_SECRET"] = secret  # from a secret store in real life

    with (
        tempfile.TemporaryDirectory() as tmp,
        proctor.Proctor(f"sqlite:///{Path(tmp)}/px.db") as px,
    ):
        px.policy.apply(POLICY)

        @px.tool(agent="refund-bot", key="order_id", wait=0)
        def issue_refund(order_id: str, amount: float) -> str:
            return f"refunded {amount:.2f} on {order_id}"

        with px.run(agent="refund-bot", thread_id="support-thread-42"):
            try:
                issue_refund("A-1001", 250.0)
                raise AssertionError("a refund over 100 needs a person")
            except proctor.ReviewPending as pending:
                item_id = pending.item_id
                print(f"waiting for a person: item {item_id}")

        # A billing lead approves elsewhere; the server's delivery loop would post the
        # webhook within a second. Without a server, one round of delivery does it.
        reviewer = threading.Thread(
            target=lambda: px.reviews.approve(item_id, by="lee", note="checked")
        )
        reviewer.start()
        reviewer.join()
        deliver_due(px.store)

        event = events.get(timeout=10)
        print(
            f"webhook {event['type']} for item {event['item_id']} by {event['by']}"
            f" (thread {event['context']['thread_id']}, call {event['call_key']})"
        )
        if event["type"] not in ("review.approved", "review.edited"):
            server.shutdown()
            return f"not run: {event['reason']}"
        result = str(px.resume(event["item_id"]))  # runs once, however often it is called
        print(result)
    server.shutdown()
    server.server_close()
    return result


if __name__ == "__main__":
    main()
