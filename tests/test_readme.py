"""The README runs as written: its blocks, in order, in an empty directory.

- A ```yaml or ```python block whose first line is ``# NAME`` is saved as NAME.
- Any other ```python block is run, and must succeed.
- In a ```console block each ``$ `` line is run as the user runs it (``proctor`` and
  ``python`` from this checkout, no database setting: the default ``./.proctor/proctor.db``)
  and must succeed; the lines under it must match its output. ``…`` matches any text, a
  line of only ``…`` any lines; runs of spaces and of table rules match any width; an id
  (24 hex digits) stands for the real one, which replaces it wherever it appears next.
- A served ``proctor demo`` (or ``proctor serve``) runs on a free loopback port (for the
  README's 8700) until the end; the console's steps are done by the commands shown beside
  them.
- ```bash blocks are the setup commands: the two the README opens with.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```\n", re.M | re.S)
ID = re.compile(r"\b[0-9a-f]{24}\b")
TOKEN = re.compile(r"\b[0-9a-f]{24}\b|…|[ \t]+|([━─])\1*")
DEMO_COMMAND = (
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[server]" && proctor demo'
)
TEST_COMMAND = (
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && scripts/check'
)
PROCTOR = [sys.executable, "-c", "from proctor.cli import main; main()"]

pytestmark = pytest.mark.slow


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(README.read_text(encoding="utf-8"))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Session:
    """One reader working through the README in one directory."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PROCTOR_DATABASE_URL", "FORCE_COLOR", "TTY_COMPATIBLE")
        }
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH")) if p
        )
        self.ids: dict[str, str] = {}  # the README's example id -> the real one
        self.servers: list[tuple[subprocess.Popen[str], threading.Thread]] = []

    # -- matching ---------------------------------------------------------------------

    def _line(self, line: str, groups: dict[str, str]) -> str:
        out, pos = [], 0
        for m in TOKEN.finditer(line):
            out.append(re.escape(line[pos : m.start()]))
            piece = m.group(0)
            if piece == "…":
                out.append(".*?")
            elif piece.isspace():
                out.append("[ \\t]+")
            elif m.group(1):
                out.append(re.escape(m.group(1)) + "+")
            elif piece in self.ids:
                out.append(re.escape(self.ids[piece]))
            elif piece in groups:
                out.append(f"(?P={groups[piece]})")
            else:
                groups[piece] = f"id{len(groups)}"
                out.append(f"(?P<{groups[piece]}>[0-9a-f]{{24}})")
            pos = m.end()
        out.append(re.escape(line[pos:]))
        return "".join(out)

    def match(self, command: str, expected: list[str], actual: str) -> None:
        groups: dict[str, str] = {}
        parts = [
            "(?:[^\\n]*\\n)*?" if line.strip() == "…" else self._line(line.strip(), groups) + "\\n"
            for line in expected
        ]
        text = "".join(line.strip() + "\n" for line in actual.splitlines())
        found = re.fullmatch("".join(parts), text)
        shown = "\n".join(expected)
        assert found, f"$ {command}\nthe README shows:\n{shown}\nit printed:\n{actual}"
        for example, name in groups.items():
            self.ids[example] = found.group(name)

    # -- running ----------------------------------------------------------------------

    def argv(self, command: str) -> list[str]:
        words = shlex.split(ID.sub(lambda m: self.ids.get(m.group(0), m.group(0)), command))
        if words[0] == "proctor":
            return [*PROCTOR, *words[1:]]
        if words[0] == "python":
            return [sys.executable, *words[1:]]
        raise AssertionError(f"the README runs only proctor and python, not: {command}")

    def run(self, command: str, expected: list[str]) -> None:
        argv = self.argv(command)
        served = argv[len(PROCTOR) : len(PROCTOR) + 1] in (["demo"], ["serve"])
        if served and "--no-serve" not in argv:
            self.serve(command, argv, expected)
            return
        r = subprocess.run(
            argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=180
        )
        assert r.returncode == 0, f"$ {command}\n{r.stdout}\n{r.stderr}"
        self.match(command, expected, r.stdout)

    def serve(self, command: str, argv: list[str], expected: list[str]) -> None:
        port = free_port()
        proc = subprocess.Popen(
            [*argv, "--port", str(port)],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        self.servers.append((proc, reader))
        printed: list[str] = []
        deadline = time.monotonic() + 180
        while not printed or not re.search(r"Ctrl-C|serving on", printed[-1]):
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"$ {command} stopped:\n{''.join(printed)}"
            printed.append(line)
        self.match(command, [e.replace(":8700/", f":{port}/") for e in expected], "".join(printed))
        while True:  # the console answers
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the console never answered"
                time.sleep(0.1)

    def console(self, text: str) -> None:
        command: str | None = None
        expected: list[str] = []
        for line in [*text.splitlines(), "$ "]:
            if line.startswith("$ "):
                if command:
                    self.run(command, expected)
                command, expected = line[2:].split("  #", 1)[0].strip(), []
            else:
                expected.append(line)

    def stop(self) -> None:
        for proc, reader in self.servers:
            proc.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            reader.join(timeout=15)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    s = Session(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def test_the_readme_runs_as_written(session: Session) -> None:
    ran = 0
    for lang, text in blocks():
        first = text.splitlines()[0] if text else ""
        if lang in ("python", "yaml") and re.fullmatch(r"# [\w.-]+\.(py|yaml)", first):
            (session.cwd / first[2:]).write_text(text, encoding="utf-8")
        elif lang == "python":
            r = subprocess.run(
                [sys.executable, "-c", text],
                cwd=session.cwd,
                env=session.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert r.returncode == 0, f"{text}\n{r.stderr}"
        elif lang == "console":
            session.console(text)
        ran += 1
    assert ran >= 6 and session.servers, "the README lost its tutorial"


def test_the_readme_opens_with_the_two_commands() -> None:
    setup = [text.strip() for lang, text in blocks() if lang == "bash"]
    assert setup[:2] == [DEMO_COMMAND, TEST_COMMAND]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install --quiet -e ".[dev]"' in ci and ci.rstrip().endswith("scripts/check")
    check = (ROOT / "scripts" / "check").read_text(encoding="utf-8")
    assert "pytest" in check and "mypy" in check and "ruff" in check


def test_the_matcher_binds_ids_and_refuses_a_wrong_output(tmp_path: Path) -> None:
    s = Session(tmp_path)
    s.match(
        "x",
        ["item 0a1b2c3d4e5f60718293a4b5 …", "…", "┏━━┓ done"],
        "item 0123456789abcdef01234567 is here\nmore\n┏━━━━━┓   done\n",
    )
    assert s.ids == {"0a1b2c3d4e5f60718293a4b5": "0123456789abcdef01234567"}
    assert (
        s.argv("proctor queue approve 0a1b2c3d4e5f60718293a4b5")[-1] == "0123456789abcdef01234567"
    )
    with pytest.raises(AssertionError):
        s.match("x", ["ok: 3 records"], "ok: 4 records\n")
