"""The ``isolated`` marker of tests/conftest.py: the test runs in a child process, and what
happens there (a pass, a failure, a crash, a skip) is what the main run reports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_ENV = "MIXFORMER_ISOLATION_DEMO"


@pytest.mark.isolated
def test_runs_in_a_child_process() -> None:
    assert os.environ.get("MIXFORMER_TEST_CHILD") == "1"


@pytest.mark.isolated
def test_outcome_demo() -> None:
    """Passes, fails or crashes as MIXFORMER_ISOLATION_DEMO says; skipped otherwise (the skip
    of the child is the main run's skip)."""
    mode = os.environ.get(DEMO_ENV)
    if mode is None:
        pytest.skip("run by test_child_failures_and_crashes_fail_the_main_run")
    assert mode != "fail", "the demo failure"
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)


@pytest.mark.parametrize(
    ("mode", "rc", "says"),
    [("pass", 0, "1 passed"), ("fail", 1, "exit code 1"), ("crash", 1, "signal 11")],
)
def test_child_failures_and_crashes_fail_the_main_run(mode: str, rc: int, says: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MIXFORMER_TEST_CHILD"}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_isolation.py::test_outcome_demo", "-q"],
        cwd=ROOT,
        env={**env, DEMO_ENV: mode},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == rc, r.stdout + r.stderr
    assert says in r.stdout
    if mode == "fail":
        assert "the demo failure" in r.stdout  # the child's report reaches the main run
