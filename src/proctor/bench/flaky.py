"""A flaky payments service for ``proctor bench heal``, run in a process of its own.

It is the other side of a real network call, so it lives outside the agent's process and
answers over loopback HTTP (stdlib only). Two listeners:

- the payments API (``POST /pay``, ``GET /effects/{key}``, ``GET /stats``), which fails
  as such services do and can be taken down;
- a healthy desk (``POST /defer``: a payment queued for later, what a fallback tool uses;
  ``GET /stats``; and the harness's own ``POST /down``, ``/up`` and ``/reset``).

Each ``POST /pay`` draws its fate from ``seed``, the payment's key and how many requests
that key has made, so the first try of a payment meets the same fate in every mode of the
benchmark and runs are comparable:

======  ===========================================================  =================
share   what the caller sees                                          charged?
======  ===========================================================  =================
15 %    ``503 Service Unavailable``                                   no
10 %    the connection closes before any answer                       no
5 %     the connection closes before any answer                       yes (answer lost)
5 %     no answer for ``hang`` seconds, then 200                      yes
65 %    200 with a receipt                                            yes
======  ===========================================================  =================

While down (``POST /down``) the API's port is closed, so a connection is refused: never
charged. The service does not deduplicate by key (many do not): a payment sent twice is
charged twice, and ``/stats`` counts it. That is what the benchmark measures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FATES = (  # (upper bound of the draw, fate), in order
    (0.15, "unavailable"),
    (0.25, "dropped"),
    (0.30, "dropped_after_charge"),
    (0.35, "hang"),
    (1.00, "ok"),
)


class Ledger:
    """What the service did, per payment key; shared by both listeners."""

    def __init__(self, seed: int, hang: float) -> None:
        self.seed = seed
        self.hang = hang
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests: Counter[str] = Counter()  # /pay requests per key
            self.charges: dict[str, list[str]] = {}
            self.deferred: dict[str, list[str]] = {}
            self.fates: Counter[str] = Counter()

    def fate(self, key: str) -> str:
        with self.lock:
            self.requests[key] += 1
            draw = random.Random(f"{self.seed}:{key}:{self.requests[key]}").random()
            fate = next(name for bound, name in FATES if draw < bound)
            self.fates[fate] += 1
            return fate

    def charge(self, key: str, amount: float) -> dict[str, Any]:
        with self.lock:
            receipts = self.charges.setdefault(key, [])
            receipts.append(f"r-{key}-{len(receipts) + 1}")
            return {"receipt": receipts[-1], "key": key, "amount": amount}

    def defer(self, key: str, amount: float) -> dict[str, Any]:
        with self.lock:
            queued = self.deferred.setdefault(key, [])
            queued.append(f"q-{key}-{len(queued) + 1}")
            return {"deferred": queued[-1], "key": key, "amount": amount}

    def stats(self) -> dict[str, Any]:
        with self.lock:
            keys = set(self.charges) | set(self.deferred)
            effects = {
                k: len(self.charges.get(k, ())) + len(self.deferred.get(k, ())) for k in keys
            }
            return {
                "requests": sum(self.requests.values()),
                "fates": dict(self.fates),
                "charges": sum(len(v) for v in self.charges.values()),
                "deferred": sum(len(v) for v in self.deferred.values()),
                "keys": len(keys),
                # an effect beyond the first for a key: charged twice, or charged and queued
                "duplicate_effects": sum(n - 1 for n in effects.values() if n > 1),
                "duplicate_keys": sum(1 for n in effects.values() if n > 1),
            }


def _handler(ledger: Ledger, control: Any | None) -> type[BaseHTTPRequestHandler]:
    """The API's handler (``control`` None) or the desk's (``control`` the API's switch)."""

    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so closing the port refuses the next one
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            try:
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the caller gave up waiting: its loss

        def _body(self) -> dict[str, Any]:
            data = self.rfile.read(int(self.headers.get("content-length", 0)))
            found: dict[str, Any] = json.loads(data or b"{}")
            return found

        def do_GET(self) -> None:
            if self.path == "/stats":
                self._reply(200, ledger.stats())
            elif self.path.startswith("/effects/") and control is None:
                key = self.path.removeprefix("/effects/")
                with ledger.lock:
                    charges = list(ledger.charges.get(key, ()))
                self._reply(200, {"key": key, "charges": charges})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            body = self._body()
            if control is None and self.path == "/pay":
                self._pay(str(body["key"]), float(body["amount"]))
            elif control is not None and self.path == "/defer":
                self._reply(202, ledger.defer(str(body["key"]), float(body["amount"])))
            elif control is not None and self.path in ("/down", "/up", "/reset"):
                getattr(control, self.path[1:])()
                self._reply(200, {"ok": True})
            else:
                self._reply(404, {"error": "not found"})

        def _pay(self, key: str, amount: float) -> None:
            fate = ledger.fate(key)
            if fate == "unavailable":
                self._reply(503, {"error": "payments backend unavailable"})
                return
            if fate == "dropped":
                self.close_connection = True  # closed with no answer: nothing was charged
                return
            receipt = ledger.charge(key, amount)
            if fate == "dropped_after_charge":
                self.close_connection = True  # charged, and the answer is lost
                return
            if fate == "hang":
                time.sleep(ledger.hang)  # charged; the caller gives up before the answer
            self._reply(200, receipt)

    return Handler


class Switch:
    """Takes the payments API's port down and back up (the same port)."""

    def __init__(self, ledger: Ledger, port: int = 0) -> None:
        self.ledger = ledger
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.port = port
        self.up()

    def up(self) -> None:
        with self.lock:
            if self.server is not None:
                return
            server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self.ledger, None))
            server.daemon_threads = True
            server.request_queue_size = 64
            self.port = server.server_address[1]
            threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
            self.server = server

    def down(self) -> None:
        with self.lock:
            if self.server is None:
                return
            self.server.shutdown()
            self.server.server_close()  # the port is closed: connections are refused
            self.server = None

    def reset(self) -> None:
        self.up()
        self.ledger.reset()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hang", type=float, default=0.6, help="seconds a hung request waits")
    opts = parser.parse_args(argv)
    ledger = Ledger(opts.seed, opts.hang)
    switch = Switch(ledger)
    desk = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ledger, switch))
    desk.daemon_threads = True
    print(json.dumps({"api": switch.port, "desk": desk.server_address[1]}), flush=True)
    threading.Thread(target=desk.serve_forever, args=(0.02,), daemon=True).start()
    sys.stdin.read()  # runs until its parent closes our stdin (or dies)
    desk.shutdown()
    switch.down()


if __name__ == "__main__":
    main()
