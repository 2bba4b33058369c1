"""The layers contract holds, and it would catch a lower layer importing a higher one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(source: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the package under ``source`` (a ``src`` directory)."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--config",
            str(ROOT / "pyproject.toml"),
            "--no-cache",
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(source)},
        timeout=120,
    )


def test_the_layers_hold() -> None:
    done = lint_imports(ROOT / "src", ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("store/tables.py", "from ..sdk import Proctor"),  # the store reaching up to the SDK
        ("policy/evaluate.py", "from ..review import service"),  # a foundation using a service
        ("gate.py", "from .backends import local"),  # a service using a backend
    ],
)
def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(
    tmp_path: Path, module: str, line: str
) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "proctor", source / "proctor", ignore=shutil.ignore_patterns("__pycache__")
    )
    target = source / "proctor" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # noqa\n")
    done = lint_imports(source, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BROKEN" in done.stdout
