"""Tests of panoptic2.engine.launch: in-process, spawned gloo workers, torchrun, and what
happens to the workers when the launcher is killed or a rank hangs."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist

from panoptic2.config import get_cfg
from panoptic2.engine.launch import DEFAULT_TIMEOUT, launch
from panoptic2.utils import comm, plugins
from panoptic2.utils.plugins import load_plugins

from .toy_plugin import toy_overrides

REPO = Path(__file__).resolve().parents[2]
# The package re-exports the function launch(), which hides the module attribute.


def test_world_size_one_runs_in_this_process():
    calls = []
    launch(calls.append, 1, args=("ran",))
    assert calls == ["ran"]  # mutated our list: no child process involved
    assert not dist.is_initialized()
    # One value for launch() and train_net.py: the config's.
    assert DEFAULT_TIMEOUT == timedelta(seconds=get_cfg().DIST_TIMEOUT_S) > timedelta(0)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="machine_rank"):
        launch(print, 2, num_machines=2, machine_rank=2, dist_url="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="auto"):
        launch(print, 2, num_machines=2, dist_url="auto")
    with pytest.raises(ValueError, match="num_gpus_per_machine"):
        launch(print, 0)
    with pytest.raises(ValueError, match="DIST_TIMEOUT_S"):
        launch(print, 2, timeout=timedelta(0))


def _worker(out_dir: str, fail_rank: int, plugin: str) -> None:
    rank = comm.get_rank()
    info = {
        "rank": rank,
        "world_size": comm.get_world_size(),
        "local_rank": comm.get_local_rank(),
        "local_size": comm.get_local_size(),
        "backend": dist.get_backend(),
        "plugin_loaded": bool(plugin) and plugin in sys.modules,
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(info, f)
    if rank == fail_rank:
        raise RuntimeError(f"boom on rank {rank}")


def test_spawned_cpu_workers_and_plugins(tmp_path, monkeypatch):
    # A throw-away plugin loaded in the parent: the spawned workers must import it too.
    # Fresh plugin bookkeeping, so the probe does not leak into other tests' workers.
    monkeypatch.setattr(plugins, "_STATE", plugins._State())
    plugin = "p2_launch_probe_plugin"
    (tmp_path / f"{plugin}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins([plugin])
    launch(_worker, 2, dist_url="auto", args=(str(tmp_path), -1, plugin))
    for rank in range(2):
        info = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert info["rank"] == rank and info["world_size"] == 2
        assert info["local_rank"] == rank and info["local_size"] == 2
        assert info["backend"] == "gloo"  # no GPU on the test machines
        assert info["plugin_loaded"]
    assert not dist.is_initialized()


def test_worker_exception_reaches_the_parent(tmp_path):
    with pytest.raises(Exception, match="boom on rank 1"):
        launch(_worker, 2, dist_url="auto", args=(str(tmp_path), 1, ""))


_TORCHRUN_SCRIPT = """
import json, os, sys
import torch.distributed as dist
from panoptic2.engine.launch import launch
from panoptic2.utils import comm
from panoptic2.utils import plugins
from panoptic2.utils.plugins import load_plugins

def main(out_dir):
    info = {
        "rank": comm.get_rank(),
        "world_size": comm.get_world_size(),
        "local_rank": comm.get_local_rank(),
        "local_size": comm.get_local_size(),
        "env_rank": int(os.environ["RANK"]),
        "gathered": comm.all_gather(comm.get_rank()),
        "pid": os.getpid(),
        "parent_pid": os.getppid(),
    }
    with open(os.path.join(out_dir, "rank%d.json" % comm.get_rank()), "w") as f:
        json.dump(info, f)

if __name__ == "__main__":
    launch(main, 2, args=(sys.argv[1],))
    assert not dist.is_initialized()
"""


def test_launch_under_torchrun_initialises_from_env(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(_TORCHRUN_SCRIPT))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    infos = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, info in enumerate(infos):
        assert info["rank"] == info["env_rank"] == rank
        assert info["world_size"] == 2
        assert info["local_rank"] == rank and info["local_size"] == 2
        assert info["gathered"] == [0, 1]
    # main ran in the two torchrun workers themselves: launch() spawned nothing more.
    assert infos[0]["parent_pid"] == infos[1]["parent_pid"]


# A plugin, written into the test's folder, with a hook that writes each rank's pid to
# OUTPUT_DIR once training runs; imported (with the toy plugin) in every worker.
_PID_PLUGIN = """
import os
from panoptic2.engine import HOOK_REGISTRY, HookBase
from panoptic2.utils import comm

@HOOK_REGISTRY.register()
class PidRecorder(HookBase):
    def __init__(self, cfg, trainer):
        self.output_dir = cfg.OUTPUT_DIR

    def after_step(self):
        if self.trainer.iter == 2:
            path = os.path.join(self.output_dir, "pid.rank%d" % comm.get_rank())
            with open(path + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(path + ".tmp", path)
"""


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
        time.sleep(0.1)
    return condition()


def _children(pid: int) -> list[int]:
    """The pids of the processes whose parent is ``pid``."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid:
                children.append(int(entry))
    return children


def _start_endless_training(tmp_path: Path, **opts) -> tuple[subprocess.Popen, list[int]]:
    """Starts a 2-process gloo training that would run for hours; returns it and the pids
    of ranks 0 and 1 once both train."""
    (tmp_path / "p2_pid_probe.py").write_text(_PID_PLUGIN)
    out = tmp_path / "out"
    pythonpath = os.pathsep.join([str(REPO), str(tmp_path), os.environ.get("PYTHONPATH", "")])
    opts = {"SOLVER.MAX_ITER": 10**7, "SOLVER.CHECKPOINT_PERIOD": 10**7, **opts}
    cmd = [
        sys.executable,
        str(REPO / "tools" / "train_net.py"),
        "--plugin",
        "tests.engine.toy_plugin",
        "--plugin",
        "p2_pid_probe",
        "--num-gpus",
        "2",
        *toy_overrides(str(out), **{"HOOKS.CUSTOM": "[PidRecorder]"}, **opts),
    ]
    launcher = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    files = [out / f"pid.rank{rank}" for rank in range(2)]
    started = _wait_until(
        lambda: all(f.exists() for f in files) or launcher.poll() is not None, 120
    )
    if not started or launcher.poll() is not None:
        launcher.kill()
        raise AssertionError("training did not start:\n" + launcher.communicate()[0][-4000:])
    return launcher, [int(f.read_text()) for f in files]


def _end_all(launcher: subprocess.Popen, pids: list[int]) -> None:
    """Leaves no process behind, whatever state the test left them in."""
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
    launcher.kill()
    launcher.wait()
    launcher.stdout.close()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_launcher_ends_its_workers(tmp_path):
    # A data-loading process per rank too: it must not outlive its rank either.
    launcher, ranks = _start_endless_training(tmp_path, **{"DATALOADER.NUM_WORKERS": 1})
    loaders = [child for pid in ranks for child in _children(pid)]
    try:
        assert len(loaders) == 2 and all(_alive(pid) for pid in ranks + loaders)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        # No orphan may go on training into OUTPUT_DIR (a --resume would race it).
        assert _wait_until(lambda: not any(_alive(pid) for pid in ranks), 10), [
            pid for pid in ranks if _alive(pid)
        ]
        # Then the ranks' loader processes, which torch's DataLoader ends when it notices
        # (it checks every 5 s) that their rank is gone.
        assert _wait_until(lambda: not any(_alive(pid) for pid in loaders), 20)
    finally:
        _end_all(launcher, ranks + loaders)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_stopped_rank_is_named_by_the_others(tmp_path):
    timeout_s = 5
    launcher, pids = _start_endless_training(tmp_path, DIST_TIMEOUT_S=timeout_s)
    try:
        os.kill(pids[1], signal.SIGSTOP)
        stopped_at = time.monotonic()
        # Rank 0 waits DIST_TIMEOUT_S in a collective, then as long for a roll call.
        assert _wait_until(lambda: not _alive(pids[0]), 60), "rank 0 did not fail"
        elapsed = time.monotonic() - stopped_at
        # Lets the stopped rank take the SIGTERM the launcher sent to end it.
        os.kill(pids[1], signal.SIGCONT)
        output = launcher.communicate(timeout=60)[0]
        assert launcher.returncode != 0
        expected = (
            rf"collective .+ timed out after {timeout_s} s on rank 0 of 2: ranks \[1\] did not "
            r"answer \(see DIST_TIMEOUT_S\)"
        )
        assert re.search(expected, output), output[-4000:]
        assert elapsed < 4 * timeout_s, elapsed
    finally:
        _end_all(launcher, pids)
