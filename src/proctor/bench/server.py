"""``proctor bench server``: decisions over HTTP on loopback, as agents would send them.

The server runs in its own process; the load comes from this one over raw keep-alive
HTTP/1.1 connections, so the generator costs little of the machine it shares.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from array import array
from typing import Any

import httpx
import orjson

from ..backends.remote import idempotency_key
from .gate import _database, _percentiles, synthetic_policy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(url: str, port: int) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from proctor.cli import main; main()",
            "serve",
            "--port",
            str(port),
            "--database",
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert server.stdout is not None
    admin = ""
    for _ in range(10):
        line = server.stdout.readline()
        if line.strip().startswith("pxt_"):
            admin = line.strip()
        if "serving on" in line or not line:
            break
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server, admin
        except httpx.TransportError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("the server did not start")


async def _client(
    port: int, token: str, deadline: float, samples: array[int], counter: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /api/v1/actions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"authorization: Bearer {token}\r\ncontent-type: application/json\r\n"
    ).encode()
    n = 0
    try:
        while time.monotonic() < deadline:
            n += 1
            body = orjson.dumps(
                {
                    "agent": "bench-agent",
                    "tool": "t3",
                    "args": {"order_id": f"A-{n:06d}", "amount": 20.0 + n % 400},
                    "context": {"confidence": 0.93, "region": "eu"},
                    "idempotency_key": idempotency_key(),
                }
            )
            start = time.perf_counter_ns()
            writer.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            samples.append(time.perf_counter_ns() - start)
            if not status.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the server answered {status!r}")
            counter[0] += 1
    finally:
        writer.close()


async def _level(port: int, token: str, clients: int, seconds: float) -> dict[str, Any]:
    samples: array[int] = array("q")
    counter = [0]
    deadline = time.monotonic() + seconds
    start = time.perf_counter()
    await asyncio.gather(
        *(_client(port, token, deadline, samples, counter) for _ in range(clients))
    )
    elapsed = time.perf_counter() - start
    p = _percentiles(samples)
    return {
        "clients": clients,
        "decisions": counter[0],
        "per_s": round(counter[0] / elapsed),
        "p50_ms": round(p["p50_us"] / 1000, 2),
        "p99_ms": round(p["p99_us"] / 1000, 2),
    }


def bench_server(database: str | None, seconds: float, rules: int) -> dict[str, Any]:
    with _database(database) as url:
        port = _free_port()
        server, admin = _start(url, port)
        try:
            headers = {"Authorization": f"Bearer {admin}"}
            base = f"http://127.0.0.1:{port}/api/v1"
            httpx.post(
                f"{base}/policies", headers=headers, json={"text": synthetic_policy(rules)}
            ).raise_for_status()
            made = httpx.post(
                f"{base}/tokens",
                headers=headers,
                json={"role": "agent", "name": "bench", "agents": ["bench-agent"]},
            )
            made.raise_for_status()
            token = made.json()["token"]
            asyncio.run(_level(port, token, 4, min(1.0, seconds)))  # warm up
            levels = [asyncio.run(_level(port, token, c, seconds)) for c in (1, 8, 32)]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
            if server.stdout:
                server.stdout.close()
    return {
        "bench": "server",
        "backend": url.split(":", 1)[0],
        "rules": rules,
        "seconds_per_level": seconds,
        "levels": levels,
        **{f"per_s_{lv['clients']}_clients": lv["per_s"] for lv in levels},
        **{f"p50_ms_{lv['clients']}_clients": lv["p50_ms"] for lv in levels},
    }
