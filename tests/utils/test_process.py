"""Tests of panoptic2.utils.process: a worker ends with the process that started it."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from panoptic2.utils.process import end_with_parent

REPO = Path(__file__).resolve().parents[2]

# The "launcher": starts a child that ties itself to it, reports the child's pid, then
# waits to be killed by the test.
_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]])
time.sleep(600)
"""

# The "worker": ties itself to its parent, writes "<pid> <mechanism>", then runs forever.
_CHILD = """
import os, sys, time
from panoptic2.utils.process import end_with_parent
mechanism = end_with_parent(os.getppid(), use_prctl=sys.argv[2] == "prctl", poll_interval_s=0.2)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {mechanism}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(1)
"""


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["prctl", "watchdog"])
def test_child_ends_when_its_parent_is_killed(tmp_path, how):
    report = tmp_path / "child"
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_PARENT), textwrap.dedent(_CHILD), str(report), how],
        env=_env(),
    )
    child_pid = None
    try:
        assert _wait_until(report.exists, 60), "the child never started"
        pid_text, mechanism = report.read_text().split()
        child_pid = int(pid_text)
        assert mechanism == ("pdeathsig" if how == "prctl" else "watchdog")
        assert _alive(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        # The watchdog polls every 0.2 s here; the parent-death signal is immediate.
        assert _wait_until(lambda: not _alive(child_pid), 10), "the orphan kept running"
    finally:
        parent.kill()
        parent.wait()
        if child_pid is not None and _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)


@pytest.mark.parametrize("use_prctl", [True, False])
def test_parent_gone_before_the_call_ends_the_process_at_once(use_prctl):
    # The child's parent is this process; naming another pid as its launcher is what the
    # child sees when the launcher died before the call and the child was re-parented.
    script = (
        "import sys; from panoptic2.utils.process import end_with_parent; "
        f"end_with_parent({os.getppid()}, use_prctl={use_prctl}); print('survived')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "survived" not in proc.stdout
    assert f"launcher (pid {os.getppid()}) is gone" in proc.stderr


def test_bad_parent_pid_is_rejected():
    with pytest.raises(ValueError, match="parent_pid"):
        end_with_parent(0)
