"""The package type-checks with mypy and lints clean with ruff, as CI runs them (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import run_process

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.e2e  # each starts a checker process


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return run_process(list(cmd), 300, cwd=ROOT)


def test_the_package_type_checks() -> None:
    r = _run(str(BIN / "mypy"))
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]


def test_the_tree_lints_clean() -> None:
    r = _run(str(BIN / "ruff"), "check", "shadow_addon", "tests", "scripts")
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
