"""A core-only install (no extras) is enough for an embedded agent, and every extra that is
missing is named in a one-line error. A real virtual environment, a real ``pip install``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

AGENT = textwrap.dedent(
    """
    import sys
    import proctor
    from proctor import Denied, ReviewPending

    px = proctor.Proctor(sys.argv[1])
    px.policy.apply('''
    policy: core-only
    defaults: {decision: deny, queue: billing}
    queues: {billing: {}}
    agents: {bot: {tools: [refund]}}
    rules:
      - {id: ok, when: 'tool == "refund"', decide: allow}
      - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review}
    ''')

    @px.tool(agent="bot", wait=0)
    def refund(order_id: str, amount: float) -> str:
        return f"refunded {amount}"

    assert refund("A-1", 20.0) == "refunded 20.0"
    try:
        refund("A-2", 500.0)
    except ReviewPending as pending:
        item = pending.item_id
    px.reviews.approve(item, by="ana")
    assert px.resume(item) == "refunded 500.0"
    from proctor.audit.verify import verify
    assert verify(px.store).ok
    heavy = {"fastapi", "uvicorn", "jinja2", "psycopg", "apprise", "opentelemetry.sdk"}
    assert not heavy & set(sys.modules), heavy & set(sys.modules)
    print("ok")
    """
)


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


@pytest.mark.slow
def test_a_core_install_runs_an_embedded_agent(core_venv: Path, tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    done = subprocess.run(
        [str(core_venv / "bin" / "python"), str(script), f"sqlite:///{tmp_path}/p.db"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["serve"], "server"),
        (["queue", "list", "--database", "postgresql://nobody@127.0.0.1:9/x"], "postgres"),
        (["bench", "adapters", "--framework", "openai-agents", "-n", "50"], "openai-agents"),
        (["mcp", "proxy", "--agent", "a", "--", "true"], "mcp"),
        (["bench", "adapters", "--framework", "crewai"], "crewai"),
        (["bench", "adapters", "--framework", "pydantic-ai"], "pydantic-ai"),
    ],
)
def test_a_missing_extra_is_named_in_one_line(
    core_venv: Path, tmp_path: Path, args: list[str], extra: str
) -> None:
    done = subprocess.run(
        [str(core_venv / "bin" / "proctor"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"pip install 'proctor[{extra}]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.slow
def test_tracing_without_the_otel_extra_is_named(core_venv: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(core_venv / "bin" / "python"), "-c", "import proctor; proctor.Proctor()"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert "pip install 'proctor[otel]'" in done.stderr
