"""Start one training process per device (or per CPU worker), on one or many machines.

``launch(main, num_gpus_per_machine=N, ...)`` runs ``main(*args)`` in
``N * num_machines`` processes joined in one ``torch.distributed`` group:

* with CUDA GPUs, each process drives one GPU and the backend is NCCL;
* WITHOUT GPUs the same number means N CPU processes communicating over gloo (so
  ``tools/train_net.py --num-gpus 2`` on a CPU machine trains with 2 CPU processes);
* with a world size of 1, ``main`` runs in the calling process with no process group;
* under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` ... in the environment) the
  processes already exist, so the group is initialised from the environment and ``main``
  runs directly; the numbers passed to ``launch`` are then ignored.

Spawned workers die with the process that launched them (even one killed with SIGKILL), so
no orphan keeps writing into ``OUTPUT_DIR``; see :func:`panoptic2.utils.process.end_with_parent`.
(torchrun's workers are torchrun's business.) A collective that waits longer than
``timeout`` (the config's ``DIST_TIMEOUT_S``) raises
:class:`panoptic2.utils.comm.CollectiveTimeoutError` naming the ranks that did not answer.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from panoptic2.config import get_cfg
from panoptic2.utils import comm
from panoptic2.utils.plugins import load_plugins, loaded_plugins
from panoptic2.utils.process import end_with_parent

__all__ = ["DEFAULT_TIMEOUT", "launch"]

# Collectives that wait longer than this fail instead of hanging forever. The config key
# DIST_TIMEOUT_S is the one place the value is written.
DEFAULT_TIMEOUT = timedelta(seconds=get_cfg().DIST_TIMEOUT_S)

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

logger = logging.getLogger(__name__)


def _find_free_port() -> int:
    """Returns a TCP port free on this machine right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Runs ``main_func(*args)`` in every process of a (possibly multi-machine) job.

    Args:
        main_func: the function to run; it must be picklable (a module-level function)
            when processes are spawned.
        num_gpus_per_machine: processes per machine: one per GPU, or that many CPU
            processes when the machine has no CUDA GPU.
        num_machines: number of machines.
        machine_rank: index of this machine, in ``[0, num_machines)``.
        dist_url: rendezvous address of rank 0, e.g. ``"tcp://10.0.0.1:29500"`` or
            ``"file:///shared/rendezvous"``; ``"auto"`` (or None) picks a free local port,
            only valid with one machine.
        args: positional arguments of ``main_func`` (picklable).
        timeout: timeout of collectives; ``tools/train_net.py`` passes the config's
            ``DIST_TIMEOUT_S``.

    Raises:
        ValueError: for inconsistent arguments (see messages).
        torch.multiprocessing.ProcessRaisedException: when a worker raised; its message
            holds the worker's traceback (a hung rank: a CollectiveTimeoutError naming it).
    """
    if timeout.total_seconds() <= 0:
        raise ValueError(f"timeout (DIST_TIMEOUT_S) must be positive, got {timeout}.")
    if all(k in os.environ for k in _TORCHRUN_VARS):
        _run_under_torchrun(main_func, num_gpus_per_machine * num_machines, args, timeout)
        return
    if num_gpus_per_machine < 1 or num_machines < 1:
        raise ValueError(
            f"num_gpus_per_machine ({num_gpus_per_machine}) and num_machines "
            f"({num_machines}) must be >= 1."
        )
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"machine_rank={machine_rank} is not in [0, {num_machines}).")
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        main_func(*args)
        return

    use_cuda = torch.cuda.is_available()
    if use_cuda and torch.cuda.device_count() < num_gpus_per_machine:
        raise ValueError(
            f"num_gpus_per_machine={num_gpus_per_machine} but only "
            f"{torch.cuda.device_count()} CUDA devices are visible."
        )
    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ValueError("dist_url='auto' only works with one machine; pass tcp://host:port.")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// rendezvous across machines needs a file system they all share.")

    context = mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(
            os.getpid(),
            main_func,
            world_size,
            num_gpus_per_machine,
            machine_rank,
            dist_url,
            tuple(args),
            timeout,
            use_cuda,
            loaded_plugins(),
        ),
        daemon=False,
        start_method="spawn",
        join=False,
    )
    logger.info(
        "Started %d workers (pids %s); they end when this process (pid %d) ends.",
        num_gpus_per_machine,
        [p.pid for p in context.processes],
        os.getpid(),
    )
    # The waiting stays in this thread: the workers' parent-death signal fires when the
    # thread that spawned them exits.
    while not context.join():
        pass


def _distributed_worker(
    local_rank: int,
    parent_pid: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: tuple,
    timeout: timedelta,
    use_cuda: bool,
    plugins: list[str],
) -> None:
    # First of all: a launcher killed from now on takes this worker with it.
    end_with_parent(parent_pid)
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    if use_cuda:
        # Before init_process_group, so NCCL binds this rank to its own device.
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend="nccl" if use_cuda else "gloo",
        init_method=dist_url,
        world_size=world_size,
        rank=global_rank,
        timeout=timeout,
    )
    try:
        comm.create_local_process_group(num_gpus_per_machine)
        comm.create_health_check_group(timeout)
        # Spawned workers start from a fresh interpreter: re-import what registered
        # datasets/models in the parent.
        load_plugins(plugins)
        comm.synchronize()
        # Also names the silent ranks when a collective outside comm (DDP's) times out.
        with comm.reporting_timeouts():
            main_func(*args)
    finally:
        comm._reset_groups()
        dist.destroy_process_group()


def _run_under_torchrun(
    main_func: Callable[..., Any],
    requested_world_size: int,
    args: Sequence[Any],
    timeout: timedelta,
) -> None:
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    if requested_world_size != world_size:
        logger.warning(
            "Running under torchrun with WORLD_SIZE=%d; ignoring the requested %d processes.",
            world_size,
            requested_world_size,
        )
    if world_size == 1 or dist.is_initialized():
        main_func(*args)
        return
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend="nccl" if use_cuda else "gloo", init_method="env://", timeout=timeout
    )
    try:
        comm.create_local_process_group(local_size)
        comm.create_health_check_group(timeout)
        comm.synchronize()
        with comm.reporting_timeouts():
            main_func(*args)
    finally:
        comm._reset_groups()
        dist.destroy_process_group()
