"""Tests of panoptic2.engine.launch: in-process, spawned gloo workers, torchrun."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch.distributed as dist

from panoptic2.engine.launch import DEFAULT_TIMEOUT, launch
from panoptic2.utils import comm, plugins
from panoptic2.utils.plugins import load_plugins

REPO = Path(__file__).resolve().parents[2]
# The package re-exports the function launch(), which hides the module attribute.


def test_world_size_one_runs_in_this_process():
    calls = []
    launch(calls.append, 1, args=("ran",))
    assert calls == ["ran"]  # mutated our list: no child process involved
    assert not dist.is_initialized()
    assert DEFAULT_TIMEOUT.total_seconds() > 0


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="machine_rank"):
        launch(print, 2, num_machines=2, machine_rank=2, dist_url="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="auto"):
        launch(print, 2, num_machines=2, dist_url="auto")
    with pytest.raises(ValueError, match="num_gpus_per_machine"):
        launch(print, 0)


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
