"""The MCP gateway and ``@gated`` with the real MCP SDK: a real client (``ClientSession``
over stdio and streamable HTTP) in front of a real gateway process, in front of the
reference filesystem server from npm and of a Python server; reviews decided by the CLI
in another process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import sqlalchemy as sa
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from proctor import ConfigError, Proctor
from proctor.integrations.mcp import META_KEY, gated, load
from proctor.store.tables import audit_log

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "mcp_servers"
PAYMENTS = SERVERS / "payments.py"
FILESYSTEM = SERVERS / "node_modules" / ".bin" / "mcp-server-filesystem"
PROCTOR = str(Path(sys.executable).with_name("proctor"))
KEY = "proctor/idempotency_key"

POLICY = """
policy: mcp-gateway
defaults: {decision: deny, review_timeout: 1h, on_timeout: deny}
queues: {billing: {roles: [billing_lead]}}
agents:
  pay-bot: {tools: [refund, lookup_order, fail, crash]}
  alice-bot: {tools: [lookup_order]}
  files-bot: {tools: [read_text_file, write_file, list_allowed_directories]}
rules:
  - {id: reads, when: 'tool in ["lookup_order", "fail", "crash", "read_text_file",
      "list_allowed_directories"]', decide: allow}
  - {id: small-refund, when: 'tool == "refund" && args.amount <= 100.0', decide: allow}
  - id: large-refund
    when: tool == "refund" && args.amount > 100.0
    decide: review
    queue: billing
    reason: Refunds over 100 need a billing lead
  - id: huge-refund
    when: tool == "refund" && args.amount > 1000.0
    decide: deny
    reason: Refunds over 1000 are never made by an agent
  - id: writes
    when: tool == "write_file"
    decide: review
    queue: billing
    reason: Writing files needs a person
"""


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/proctor.db"
    with Proctor(url) as px:
        px.policy.apply(POLICY)
    return url


@pytest.fixture
def any_db(db_url: str) -> str:
    """SQLite and PostgreSQL: the gateway and the CLI share the database."""
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
    return db_url


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.jsonl"


def refunds(ledger: Path) -> list[dict[str, Any]]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines()]


def proxy_params(db: str, *args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=PROCTOR, args=["mcp", "proxy", "-d", db, *args], env=dict(os.environ)
    )


def payments_upstream(ledger: Path) -> list[str]:
    return ["-e", f"PAYMENTS_LEDGER={ledger}", "--", sys.executable, str(PAYMENTS)]


@contextlib.asynccontextmanager
async def over_stdio(params: StdioServerParameters) -> AsyncIterator[ClientSession]:
    with open(os.devnull, "w") as quiet:  # the upstreams' logs
        async with (
            stdio_client(params, errlog=quiet) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


@contextlib.asynccontextmanager
async def over_http(url: str, token: str | None = None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def run(main: Callable[[], Awaitable[None]]) -> None:
    anyio.run(main)


def decision(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error, result
    assert result.meta is not None
    facts: dict[str, Any] = result.meta[META_KEY]
    return facts


def text(result: CallToolResult) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, on the same database."""
    return subprocess.run(
        [PROCTOR, *args, "-d", db], capture_output=True, text=True, timeout=60, check=False
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(argv: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    """A server process listening on ``port`` (waited for), stopped afterwards."""
    child = subprocess.Popen(
        argv,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if child.poll() is not None:
                assert child.stderr is not None
                pytest.fail(f"server exited: {child.stderr.read()}")
            assert time.monotonic() < deadline, "server did not listen within 30 s"
            time.sleep(0.1)
        yield
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()


def filesystem_server() -> str:
    if FILESYSTEM.exists() and shutil.which("node"):
        return str(FILESYSTEM)
    message = "the reference filesystem server is not installed: npm ci in tests/mcp_servers"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


# -- the gateway over stdio, in front of a Python server ----------------------------------


def test_tools_keep_the_upstream_schema_and_allowed_calls_are_forwarded(
    db: str, ledger: Path
) -> None:
    async def main() -> None:
        async with over_stdio(proxy_params(db, "-a", "pay-bot", *payments_upstream(ledger))) as s:
            listed = {t.name: t for t in (await s.list_tools()).tools}
            schema = listed["refund"].input_schema
            assert schema["required"] == ["order_id", "amount"]
            assert schema["properties"]["amount"] == {"title": "Amount", "type": "number"}
            assert listed["refund"].description == "Refund part or all of an order."

            done = await s.call_tool("refund", {"order_id": "A-1", "amount": 20.0})
            assert not done.is_error
            assert text(done) == "refunded 20.00 on A-1"

            failed = await s.call_tool("fail", {"message": "out of paper"})
            assert failed.is_error and "out of paper" in text(failed)  # the upstream's own

    run(main)
    assert refunds(ledger) == [{"order_id": "A-1", "amount": 20.0}]


def test_a_denied_call_tells_the_client_why(db: str, ledger: Path) -> None:
    async def main() -> None:
        async with over_stdio(proxy_params(db, "-a", "pay-bot", *payments_upstream(ledger))) as s:
            denied = await s.call_tool("refund", {"order_id": "A-1", "amount": 5000.0})
            facts = decision(denied)
            assert facts["status"] == "denied"
            assert facts["reason"] == "Refunds over 1000 are never made by an agent"
            assert facts["rule_ids"] == ["huge-refund"]
            assert facts["decision_id"]
            assert "Refunds over 1000 are never made by an agent" in text(denied)
            assert "huge-refund" in text(denied)
            sneaky = await s.call_tool(
                "refund",
                {"order_id": "A-1", "amount": 5.0},
                meta={"proctor/context": {"agent": "root"}},
            )
            assert decision(sneaky)["rule_ids"] == ["mcp-meta"]
            bad_key = await s.call_tool(
                "refund", {"order_id": "A-1", "amount": 5.0}, meta={KEY: ""}
            )
            assert decision(bad_key)["rule_ids"] == ["mcp-meta"]

    run(main)
    assert refunds(ledger) == []


def test_a_review_approved_from_another_process_runs_once(any_db: str, ledger: Path) -> None:
    db = any_db
    args = {"order_id": "A-2", "amount": 150.0}

    async def main() -> None:
        async with over_stdio(proxy_params(db, "-a", "pay-bot", *payments_upstream(ledger))) as s:
            first = decision(await s.call_tool("refund", args, meta={KEY: "order-A-2"}))
            assert first["status"] == "pending"
            assert first["rule_ids"] == ["large-refund"]
            assert first["idempotency_key"] == "order-A-2"
            item = first["item_id"]
            again = decision(await s.call_tool("refund", args, meta={KEY: "order-A-2"}))
            assert again["item_id"] == item  # the retry waits on the same item
            assert again["rule_ids"] == ["large-refund"]
            assert refunds(ledger) == []

            approved = cli(db, "queue", "approve", item, "--by", "lead")
            assert approved.returncode == 0, approved.stderr

            done = await s.call_tool("refund", args, meta={KEY: "order-A-2"})
            assert not done.is_error, text(done)
            assert text(done) == "refunded 150.00 on A-2"
            repeat = await s.call_tool("refund", args, meta={KEY: "order-A-2"})
            assert text(repeat) == "refunded 150.00 on A-2"  # the recorded result

            # without a key the gateway makes one, and hands it back for the retry
            fresh = decision(await s.call_tool("refund", {"order_id": "A-3", "amount": 120.0}))
            assert fresh["idempotency_key"].startswith("mcp-")
            retry = decision(
                await s.call_tool(
                    "refund",
                    {"order_id": "A-3", "amount": 120.0},
                    meta={KEY: fresh["idempotency_key"]},
                )
            )
            assert retry["item_id"] == fresh["item_id"]

    run(main)
    assert refunds(ledger) == [{"order_id": "A-2", "amount": 150.0}]


def test_a_review_approved_in_the_console_runs_once(db: str, ledger: Path) -> None:
    from tests.test_server_process import Server, approve_in_console, free_port

    args = {"order_id": "A-5", "amount": 150.0}
    srv = Server(db, free_port())
    srv.start()
    try:
        reviewer = srv.token("reviewer", "ana", queues="billing")

        async def main() -> None:
            params = proxy_params(db, "-a", "pay-bot", *payments_upstream(ledger))
            async with over_stdio(params) as s:
                first = decision(await s.call_tool("refund", args, meta={KEY: "order-A-5"}))
                assert first["status"] == "pending"
                page = approve_in_console(srv.url, reviewer, first["item_id"])
                assert "refund" in page
                for _ in range(2):  # the retry runs it; a second gets the recorded result
                    done = await s.call_tool("refund", args, meta={KEY: "order-A-5"})
                    assert text(done) == "refunded 150.00 on A-5"

        run(main)
    finally:
        srv.stop()
    assert refunds(ledger) == [{"order_id": "A-5", "amount": 150.0}]


def test_an_edit_is_checked_against_the_upstream_schema(db: str, ledger: Path) -> None:
    args = {"order_id": "A-4", "amount": 900.0}

    async def main() -> None:
        async with over_stdio(proxy_params(db, "-a", "pay-bot", *payments_upstream(ledger))) as s:
            item = decision(await s.call_tool("refund", args, meta={KEY: "k4"}))["item_id"]
            typo = cli(db, "queue", "edit", item, "--by", "lead", "--set", "amout=150")
            assert typo.returncode == 2
            assert "amout" in typo.stderr
            still = decision(await s.call_tool("refund", args, meta={KEY: "k4"}))
            assert still["status"] == "pending"
            wrong_type = cli(db, "queue", "edit", item, "--by", "lead", "--set", 'amount="lots"')
            assert wrong_type.returncode == 2

            edited = cli(db, "queue", "edit", item, "--by", "lead", "--set", "amount=150")
            assert edited.returncode == 0, edited.stderr
            done = await s.call_tool("refund", args, meta={KEY: "k4"})
            assert text(done) == "refunded 150.00 on A-4"

    run(main)
    assert refunds(ledger) == [{"order_id": "A-4", "amount": 150.0}]


def test_a_long_wait_reports_progress_and_ends_when_approved(db: str, ledger: Path) -> None:
    messages: list[str] = []

    async def main() -> None:
        params = proxy_params(
            db, "-a", "pay-bot", "--progress-interval", "0.2", *payments_upstream(ledger)
        )
        async with over_stdio(params) as s:
            approving: list[str] = []  # progress keeps coming while the CLI starts: once

            async def on_progress(
                progress: float, total: float | None, message: str | None
            ) -> None:
                messages.append(message or "")
                if not approving and message and "item " in message:
                    item = message.rsplit(" ", 1)[-1]
                    approving.append(item)
                    done = await anyio.to_thread.run_sync(
                        lambda: cli(db, "queue", "approve", item, "--by", "lead")
                    )
                    assert done.returncode == 0, done.stderr

            result = await s.call_tool(
                "refund",
                {"order_id": "A-5", "amount": 300.0},
                progress_callback=on_progress,
                meta={KEY: "k5", "proctor/wait": 30},
            )
            assert not result.is_error, text(result)
            assert text(result) == "refunded 300.00 on A-5"

    run(main)
    assert messages and messages[0].startswith("waiting for review item ")
    assert refunds(ledger) == [{"order_id": "A-5", "amount": 300.0}]


def test_an_upstream_that_dies_mid_call_leaves_it_in_doubt(db: str, ledger: Path) -> None:
    async def main() -> None:
        async with over_stdio(proxy_params(db, "-a", "pay-bot", *payments_upstream(ledger))) as s:
            lost = decision(await s.call_tool("crash", {"order_id": "Z"}, meta={KEY: "z"}))
            assert lost["status"] == "in_doubt"
            assert "may or may not have happened" in lost["reason"]
            again = decision(await s.call_tool("crash", {"order_id": "Z"}, meta={KEY: "z"}))
            assert again["status"] == "in_doubt" and again["item_id"]  # a person settles it
            with pytest.raises(MCPError, match="lost its upstream"):
                await s.call_tool("lookup_order", {"order_id": "Z"})

    run(main)
    assert refunds(ledger) == [{"order_id": "Z", "amount": 0.0}]  # never run twice


# -- over streamable HTTP: identities -----------------------------------------------------


def test_over_http_each_token_acts_as_its_agent(db: str, ledger: Path, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"""
upstream:
  command: [{json.dumps(sys.executable)}, {json.dumps(str(PAYMENTS))}]
  env: {{PAYMENTS_LEDGER: {json.dumps(str(ledger))}}}
agent: pay-bot
clients:
  alice: {{agent: alice-bot, context: {{team: support}}}}
tokens: {{alice: ALICE_TOKEN, bob: BOB_TOKEN}}
serve: {{transport: http, port: {port}}}
"""
    )
    url = f"http://127.0.0.1:{port}/mcp"
    env = {"ALICE_TOKEN": "a" * 32, "BOB_TOKEN": "b" * 32}

    async def main() -> None:
        async with over_http(url, env["ALICE_TOKEN"]) as alice:
            looked = await alice.call_tool("lookup_order", {"order_id": "A-6"})
            assert text(looked) == "order A-6: 2 items, 180.00"
            refused = decision(await alice.call_tool("refund", {"order_id": "A-6", "amount": 5}))
            assert refused["status"] == "denied"
            assert "alice-bot" in refused["reason"]
        async with over_http(url, env["BOB_TOKEN"]) as bob:  # no mapping: the default agent
            done = await bob.call_tool("refund", {"order_id": "A-6", "amount": 5.0})
            assert text(done) == "refunded 5.00 on A-6"
            big = {"order_id": "A-7", "amount": 150.0}
            item = decision(await bob.call_tool("refund", big, meta={KEY: "b7"}))["item_id"]
            again = decision(await bob.call_tool("refund", big, meta={KEY: "b7"}))
            assert again["item_id"] == item
            approved = await anyio.to_thread.run_sync(
                lambda: cli(db, "queue", "approve", item, "--by", "lead")
            )
            assert approved.returncode == 0, approved.stderr
            for _ in range(2):
                done = await bob.call_tool("refund", big, meta={KEY: "b7"})
                assert text(done) == "refunded 150.00 on A-7"
        async with httpx2.AsyncClient() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                answer = await http.post(url, json={}, headers=headers)
                assert answer.status_code == 401

    with serving([PROCTOR, "mcp", "proxy", "-c", str(config), "-d", db], port, env):
        run(main)
    assert refunds(ledger) == [
        {"order_id": "A-6", "amount": 5.0},
        {"order_id": "A-7", "amount": 150.0},
    ]
    with Proctor(db) as px, px.store.engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.agent, audit_log.c.tool)).all()
    assert ("alice-bot", "lookup_order") in rows
    assert ("alice-bot", "refund") in rows
    assert ("pay-bot", "refund") in rows


def test_an_upstream_served_over_http(db: str, ledger: Path) -> None:
    port = free_port()
    upstream = [sys.executable, str(PAYMENTS), "--port", str(port)]

    async def main() -> None:
        params = proxy_params(db, "-a", "pay-bot", "--url", f"http://127.0.0.1:{port}/mcp")
        async with over_stdio(params) as s:
            assert text(await s.call_tool("refund", {"order_id": "B", "amount": 1})) == (
                "refunded 1.00 on B"
            )
            assert decision(await s.call_tool("refund", {"order_id": "B", "amount": 9999}))

    with serving(upstream, port, {"PAYMENTS_LEDGER": str(ledger)}):
        run(main)
    assert refunds(ledger) == [{"order_id": "B", "amount": 1.0}]


# -- in front of the reference filesystem server (npm) ------------------------------------


def test_the_reference_filesystem_server_behind_the_gateway(db: str, tmp_path: Path) -> None:
    server = filesystem_server()
    root = tmp_path / "files"
    root.mkdir()
    (root / "notes.txt").write_text("hello\n")
    target = root / "out.txt"

    async def main() -> None:
        params = proxy_params(db, "-a", "files-bot", "--", "node", server, str(root))
        async with over_stdio(params) as s:
            listed = {t.name: t for t in (await s.list_tools()).tools}
            assert listed["write_file"].input_schema["required"] == ["path", "content"]
            assert listed["write_file"].annotations is not None
            read = await s.call_tool("read_text_file", {"path": str(root / "notes.txt")})
            assert "hello" in text(read)
            moved = decision(await s.call_tool("move_file", {"source": "a", "destination": "b"}))
            assert moved["status"] == "denied"

            write = {"path": str(target), "content": "draft"}
            item = decision(await s.call_tool("write_file", write, meta={KEY: "w1"}))["item_id"]
            typo = cli(db, "queue", "edit", item, "--by", "lead", "--set", "contnt=final")
            assert typo.returncode == 2 and "contnt" in typo.stderr
            edited = cli(db, "queue", "edit", item, "--by", "lead", "--set", "content=final")
            assert edited.returncode == 0, edited.stderr
            assert not target.exists()
            done = await s.call_tool("write_file", write, meta={KEY: "w1"})
            assert not done.is_error, text(done)
            target.write_text("changed since")  # a repeat must not write again
            again = await s.call_tool("write_file", write, meta={KEY: "w1"})
            assert text(again) == text(done)

    run(main)
    assert target.read_text() == "changed since"


# -- @gated inside an MCPServer -----------------------------------------------------------


def test_gated_tools_in_an_mcp_server_answer_with_reasons(db: str) -> None:
    from mcp import Client

    ran: list[float] = []
    server = MCPServer("payments")
    with Proctor(db) as px:

        @server.tool()
        @gated(px, agent="pay-bot")
        def refund(order_id: str, amount: float) -> str:
            """Refund an order."""
            ran.append(amount)
            return f"refunded {amount} on {order_id}"

        async def main() -> None:
            async with Client(server) as client:
                (tool,) = [t for t in (await client.list_tools()).tools if t.name == "refund"]
                assert set(tool.input_schema["properties"]) == {"order_id", "amount"}
                done = await client.call_tool("refund", {"order_id": "C", "amount": 10})
                assert text(done) == "refunded 10.0 on C"
                denied = decision(
                    await client.call_tool("refund", {"order_id": "C", "amount": 2e3})
                )
                assert denied["rule_ids"] == ["huge-refund"]
                assert "never made by an agent" in denied["reason"]
                first = decision(
                    await client.call_tool(
                        "refund", {"order_id": "D", "amount": 500}, meta={KEY: "d"}
                    )
                )
                assert first["status"] == "pending" and first["rule_ids"] == ["large-refund"]
                again = decision(
                    await client.call_tool(
                        "refund", {"order_id": "D", "amount": 500}, meta={KEY: "d"}
                    )
                )
                assert again["item_id"] == first["item_id"]
                approved = cli(db, "queue", "approve", first["item_id"], "--by", "lead")
                assert approved.returncode == 0, approved.stderr
                for _ in range(2):
                    done = await client.call_tool(
                        "refund", {"order_id": "D", "amount": 500}, meta={KEY: "d"}
                    )
                    assert text(done) == "refunded 500.0 on D"
                other = decision(
                    await client.call_tool(
                        "refund", {"order_id": "D", "amount": 501}, meta={KEY: "d"}
                    )
                )
                assert other["status"] == "conflict"
                long_key = await client.call_tool(
                    "refund", {"order_id": "D", "amount": 1}, meta={KEY: "k" * 201}
                )
                assert decision(long_key)["rule_ids"] == ["mcp-meta"]

                no = decision(
                    await client.call_tool(
                        "refund", {"order_id": "E", "amount": 300}, meta={KEY: "e"}
                    )
                )
                rejected = cli(
                    db, "queue", "reject", no["item_id"], "--by", "lead", "--reason", "duplicate"
                )
                assert rejected.returncode == 0, rejected.stderr
                told = await client.call_tool(
                    "refund", {"order_id": "E", "amount": 300}, meta={KEY: "e"}
                )
                assert decision(told)["status"] == "rejected"
                assert "duplicate" in text(told)

        run(main)
    assert ran == [10.0, 500.0]


def test_gated_refuses_an_async_tool(db: str) -> None:
    with Proctor(db) as px, pytest.raises(TypeError, match="plain function"):

        @gated(px, agent="pay-bot")
        async def refund(order_id: str) -> str:
            return order_id


# -- configuration ------------------------------------------------------------------------


def test_configuration_mistakes_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "g.yaml"
    cases = {
        "upstream: {command: [x], url: 'http://h'}": "a command (stdio) or a url",
        "upstream: {url: 'ftp://h'}": "http:// or https://",
        "upstream: {command: [x]}\nwiat: 3": "unknown key 'wiat'",
        "upstream: {command: [x]}\nwait: -1": "wait must be a number of seconds >= 0",
        "upstream: {command: [x]}\nwait: 10\nmax_wait: 5": "more than max_wait",
        "upstream: {command: [x]}\ntokens: {a: A}": "serve with transport http",
        "upstream: {command: [x]}\nclients: {a: {context: {}}}": "clients.a needs an agent",
        "agent: a": "no upstream",
    }
    for text_, message in cases.items():
        bad.write_text(text_)
        with pytest.raises(ConfigError, match=re.escape(message)):
            load(bad)
    bad.write_text("upstream: {command: [x]}\ntokens: {a: PROCTOR_TEST_UNSET_TOKEN}")
    config = load(bad, transport="http")
    with pytest.raises(ConfigError, match="PROCTOR_TEST_UNSET_TOKEN is not set"):
        config.bearer_tokens()
    flags = load(bad, transport="http", agent="x", wait=2.0)
    assert (flags.agent, flags.wait, flags.transport) == ("x", 2.0, "http")


def test_the_cli_without_an_upstream_is_one_line(db: str) -> None:
    done = cli(db, "mcp", "proxy", "--agent", "x")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: no upstream: give COMMAND or --url, or an upstream in the file"
    ]
    broken = cli(db, "mcp", "proxy", "--agent", "x", "--", sys.executable, "-c", "pass")
    assert broken.returncode == 2
    assert broken.stderr.strip().splitlines()[-1].startswith("error: upstream ")
    assert "failed to start" in broken.stderr
    missing = cli(db, "mcp", "proxy", "--agent", "x", "--", str(HERE / "no-such-server"))
    assert missing.returncode == 2 and "No such file" in missing.stderr


# -- the example --------------------------------------------------------------------------


def test_the_example_runs_without_an_api_key() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "mcp_gateway_example", HERE.parent / "examples" / "mcp_gateway.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    lines = example.main()
    assert lines[0] == "allowed: refunded 20.00 on A-1"
    assert "Refunds over 1000 are never made by an agent (rules: too-large)" in lines[1]
    assert lines[2].startswith("pending: item ") and "large-refund" in lines[2]
    assert lines[3] == "after approval: refunded 250.00 on A-3"
