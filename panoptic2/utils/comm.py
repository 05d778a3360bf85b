"""Helpers for multi-process (distributed) training that also work in a single process.

Every function here is safe to call without an initialised process group: it then behaves
as if the world had exactly one process (rank 0, world size 1). Collective functions
(:func:`synchronize`, :func:`all_gather`, :func:`gather`, :func:`reduce_dict`,
:func:`shared_random_seed`) must be called by every rank in the same order, as with any
``torch.distributed`` collective.

The per-machine ("local") process group used by :func:`get_local_rank` and
:func:`get_local_size` is created by :func:`panoptic2.engine.launch.launch` through
:func:`create_local_process_group`.

A collective that times out (the process group's timeout, ``DIST_TIMEOUT_S``) raises
:class:`CollectiveTimeoutError` naming the ranks that did not answer. They are found after
the fact, by a roll call on a spare gloo group (:func:`create_health_check_group`), so a
collective that completes costs nothing more than the plain ``torch.distributed`` call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "CollectiveTimeoutError",
    "all_gather",
    "create_health_check_group",
    "create_local_process_group",
    "gather",
    "get_local_process_group",
    "get_local_rank",
    "get_local_size",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "reduce_dict",
    "reporting_timeouts",
    "shared_random_seed",
    "synchronize",
]

logger = logging.getLogger(__name__)

# Process group of the ranks on this machine; set by create_local_process_group().
_LOCAL_PROCESS_GROUP: dist.ProcessGroup | None = None
# (default group it was created for, gloo group) used to gather picklable objects. Keyed
# by the default group so a destroyed-and-recreated world never reuses a dead group.
_OBJECT_GROUP: tuple[Any, Any] | None = None
# (default group it was created for, gloo group, collective timeout) of the roll call that
# names unresponsive ranks; set by create_health_check_group(), used at most once.
_HEALTH_CHECK: tuple[Any, Any, timedelta] | None = None

# How the backends word a timed-out operation (gloo: "Timed out waiting 5000ms for recv
# operation to complete", then "Application timeout caused pair closure" on the same
# connection; NCCL's watchdog: "Watchdog caught collective operation timeout").
_TIMEOUT_MESSAGE = re.compile(
    r"timed out waiting \d+ ?ms|timeout caused pair closure|collective operation timeout",
    re.IGNORECASE,
)
_WAITED_MS = re.compile(r"waiting (\d+) ?ms")
_ROLL_CALL_GRACE_S = 5.0


def _is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Returns the number of processes in the default group (1 when not distributed)."""
    if not _is_initialized():
        return 1
    return dist.get_world_size()


def get_rank() -> int:
    """Returns the global rank of this process (0 when not distributed)."""
    if not _is_initialized():
        return 0
    return dist.get_rank()


def is_main_process() -> bool:
    """Returns True on global rank 0 (and always in a single process)."""
    return get_rank() == 0


def create_local_process_group(num_workers_per_machine: int) -> None:
    """Creates the process group of the ranks that share this machine.

    Must be called by every rank (``new_group`` is collective) after the default group is
    initialised. Ranks are assumed contiguous per machine: machine ``m`` holds global
    ranks ``[m * n, (m + 1) * n)`` where ``n = num_workers_per_machine``, which is how
    :func:`panoptic2.engine.launch.launch` and ``torchrun`` number them.

    Args:
        num_workers_per_machine: number of processes on each machine.

    Raises:
        ValueError: if the world size is not a multiple of ``num_workers_per_machine``.
    """
    global _LOCAL_PROCESS_GROUP
    world_size = get_world_size()
    if num_workers_per_machine < 1 or world_size % num_workers_per_machine != 0:
        raise ValueError(
            f"World size {world_size} is not a multiple of num_workers_per_machine="
            f"{num_workers_per_machine}; machines must run the same number of processes."
        )
    if not _is_initialized():
        return
    machine_rank = get_rank() // num_workers_per_machine
    for i in range(world_size // num_workers_per_machine):
        ranks = list(range(i * num_workers_per_machine, (i + 1) * num_workers_per_machine))
        group = dist.new_group(ranks)
        if i == machine_rank:
            _LOCAL_PROCESS_GROUP = group


def get_local_process_group() -> dist.ProcessGroup | None:
    """Returns the per-machine process group, or None when it was not created."""
    return _LOCAL_PROCESS_GROUP


def _local_value(single_process: int, group_query, env_var: str) -> int:
    """A per-machine value: from the local group, else torchrun's environment variable."""
    if not _is_initialized():
        return single_process
    if _LOCAL_PROCESS_GROUP is not None:
        return group_query(group=_LOCAL_PROCESS_GROUP)
    if env_var in os.environ:
        return int(os.environ[env_var])
    raise RuntimeError(
        f"The local process group was not created and {env_var} is not set; start the "
        "processes with panoptic2.engine.launch() or torchrun."
    )


def get_local_rank() -> int:
    """Returns the rank of this process among the processes of its machine.

    Uses the local group created by :func:`create_local_process_group`, else the
    ``LOCAL_RANK`` environment variable set by ``torchrun``.

    Raises:
        RuntimeError: when distributed but neither source is available.
    """
    return _local_value(0, dist.get_rank, "LOCAL_RANK")


def get_local_size() -> int:
    """Returns the number of processes on this machine.

    Raises:
        RuntimeError: when distributed but neither the local group nor the
            ``LOCAL_WORLD_SIZE`` environment variable is available.
    """
    return _local_value(1, dist.get_world_size, "LOCAL_WORLD_SIZE")


class CollectiveTimeoutError(RuntimeError):
    """A collective did not complete within the process group's timeout (DIST_TIMEOUT_S)."""


def create_health_check_group(timeout: timedelta) -> None:
    """Prepares the roll call that names the ranks that stop answering.

    Must be called by every rank (``new_group`` is collective) after the default group is
    initialised; :func:`panoptic2.engine.launch.launch` does. The roll call needs a group
    of its own: gloo closes the connections of a group once one of its operations timed
    out. It is a gloo group whatever the default backend, so it serves NCCL runs too, when
    the timeout reaches Python; if NCCL's watchdog ends the process first
    (``TORCH_NCCL_ASYNC_ERROR_HANDLING``), only torch's own message is printed.

    Args:
        timeout: the timeout of the default group's collectives; the roll call waits as
            long for the ranks to check in.
    """
    global _HEALTH_CHECK
    if not _is_initialized() or get_world_size() == 1:
        return
    group = dist.new_group(backend="gloo", timeout=timeout)
    _HEALTH_CHECK = (dist.group.WORLD, group, timeout)


def _roll_call(group: Any, timeout: timedelta) -> list[int]:
    """Every rank that calls this sends its rank to all others and listens for theirs.

    Runs after a collective timed out: the ranks whose own collective also timed out check
    in; a hung (stopped, dead, deadlocked) rank never does. Each rank decides on its own,
    so the answer does not depend on any one rank being alive.

    Returns:
        the ranks that did not check in within ``timeout``, sorted.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    deadline = time.monotonic() + timeout.total_seconds()
    # Kept until they complete: freeing a Work cancels its send.
    works: dict[int, tuple[Any, Any]] = {}
    missing: list[int] = []
    for peer in range(world_size):
        if peer == rank:
            continue
        try:
            send = dist.isend(torch.tensor([rank]), peer, group=group)
            recv = dist.irecv(torch.zeros(1, dtype=torch.int64), peer, group=group)
            works[peer] = (send, recv)
        except RuntimeError:  # the connection is gone: the peer died
            missing.append(peer)

    def wait(work: Any) -> bool:
        # At least 1 ms: a zero timeout means "no timeout" to Work.wait.
        left = max(deadline - time.monotonic(), 0.001)
        try:
            work.wait(timeout=timedelta(seconds=left))
            return True
        except RuntimeError:
            return False

    missing += [peer for peer, (_, recv) in works.items() if not wait(recv)]
    # A rank that heard from a peer also makes sure the peer heard from it before leaving
    # (and tearing down the group). The peer is in its roll call, listening: this takes
    # milliseconds, but may have to outlast our deadline when the peer came in late.
    deadline = max(deadline, time.monotonic() + _ROLL_CALL_GRACE_S)
    for peer, (send, _) in works.items():
        if peer not in missing:
            wait(send)
    return sorted(missing)


def _is_timeout(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and bool(_TIMEOUT_MESSAGE.search(str(error)))


def _collective_name(error: BaseException) -> str:
    """Names the operation that raised ``error``, from its traceback."""
    in_backward = False
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        path = code.co_filename.replace(os.sep, "/")
        # The outermost public torch.distributed function is the one the caller used
        # (all_gather_object rather than the all_gather it runs).
        public = not code.co_name.startswith("_")
        if public and path.endswith("torch/distributed/distributed_c10d.py"):
            return code.co_name
        in_backward = in_backward or "torch/autograd/" in path
        tb = tb.tb_next
    if in_backward:
        # DDP's reducer all-reduces gradients from C++ during backward; SyncBatchNorm too.
        return "all_reduce in backward (DDP gradients or SyncBatchNorm)"
    return "(a torch.distributed operation)"


def _timeout_error(name: str, error: BaseException) -> CollectiveTimeoutError:
    """Builds the error of a timed-out collective, naming the ranks that did not answer."""
    global _HEALTH_CHECK
    rank, world_size = get_rank(), get_world_size()
    health = _HEALTH_CHECK
    if health is None or not _is_initialized() or health[0] is not dist.group.WORLD:
        waited = _WAITED_MS.search(str(error))
        after = f" after {int(waited.group(1)) / 1000:g} s" if waited else ""
        message = (
            f"collective {name} timed out{after} on rank {rank} of {world_size}; which ranks "
            "did not answer is unknown: no roll call is available (processes not started by "
            "panoptic2.engine.launch, or one already ran) (see DIST_TIMEOUT_S)"
        )
    else:
        # Gloo closes a group's connections after a timeout: one roll call per group.
        _HEALTH_CHECK = None
        _, group, timeout = health
        missing = _roll_call(group, timeout)
        head = (
            f"collective {name} timed out after {timeout.total_seconds():g} s on rank {rank} "
            f"of {world_size}"
        )
        if missing:
            message = f"{head}: ranks {missing} did not answer (see DIST_TIMEOUT_S)"
        else:
            message = (
                f"{head}: every rank answered a roll call afterwards, so the ranks called "
                "different collectives (in a different order) or this one needed longer "
                "(see DIST_TIMEOUT_S)"
            )
    logger.error("%s", message)
    return CollectiveTimeoutError(message)


@contextlib.contextmanager
def reporting_timeouts(name: str | None = None) -> Iterator[None]:
    """Re-raises a collective's timeout as :class:`CollectiveTimeoutError` naming the ranks.

    Other errors pass unchanged. Entering and leaving costs a few microseconds; the roll
    call (up to the collective timeout more) only runs once a timeout happened.

    Args:
        name: the collective, for the message; default: found from the traceback.

    Raises:
        CollectiveTimeoutError: "collective X timed out after N s on rank R of W: ranks
            [...] did not answer (see DIST_TIMEOUT_S)".
    """
    try:
        yield
    except CollectiveTimeoutError:
        raise
    except RuntimeError as error:
        if not _is_timeout(error):
            raise
        raise _timeout_error(name or _collective_name(error), error) from error


def synchronize() -> None:
    """Blocks until every process reaches this point (a barrier); no-op in one process.

    Raises:
        CollectiveTimeoutError: when some rank did not arrive within the timeout.
    """
    if get_world_size() == 1:
        return
    with reporting_timeouts("synchronize"):
        if dist.get_backend() == dist.Backend.NCCL and torch.cuda.is_available():
            # Without device_ids NCCL guesses the device from the rank, which is wrong when
            # ranks do not map 1:1 to devices and then hangs.
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def _get_object_group() -> Any:
    """Returns a group able to gather CPU objects: WORLD unless it is NCCL, else gloo.

    The gloo group is created once per default group and cached, as ``new_group`` is a
    collective and costs a rendezvous.
    """
    global _OBJECT_GROUP
    world = dist.group.WORLD
    if _OBJECT_GROUP is not None and _OBJECT_GROUP[0] is world:
        return _OBJECT_GROUP[1]
    group = dist.new_group(backend="gloo") if dist.get_backend() == "nccl" else world
    _OBJECT_GROUP = (world, group)
    return group


def _reset_groups() -> None:
    """Forgets cached groups; called by launch() before it destroys the process group."""
    global _LOCAL_PROCESS_GROUP, _OBJECT_GROUP, _HEALTH_CHECK
    _LOCAL_PROCESS_GROUP = None
    _OBJECT_GROUP = None
    _HEALTH_CHECK = None


def all_gather(data: Any, group: dist.ProcessGroup | None = None) -> list[Any]:
    """Gathers a picklable object from every rank of ``group`` on every rank.

    Args:
        data: any picklable object (tensors are pickled too; prefer CPU ones).
        group: the group to gather over; default: all ranks, over gloo even when the
            default backend is NCCL.

    Returns:
        list of the objects, indexed by rank within ``group``.

    Raises:
        CollectiveTimeoutError: when some rank did not answer within the timeout.
    """
    with reporting_timeouts("all_gather"):
        return _all_gather(data, group)


def _all_gather(data: Any, group: dist.ProcessGroup | None) -> list[Any]:
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _get_object_group()
    world_size = dist.get_world_size(group=group)
    if world_size == 1:
        return [data]
    output: list[Any] = [None] * world_size
    dist.all_gather_object(output, data, group=group)
    return output


def gather(data: Any, dst: int = 0, group: dist.ProcessGroup | None = None) -> list[Any]:
    """Gathers a picklable object from every rank of ``group`` on rank ``dst``.

    Args:
        data: any picklable object.
        dst: GLOBAL rank that receives the list (as ``torch.distributed.gather_object``).
        group: the group to gather over; default as in :func:`all_gather`.

    Returns:
        on ``dst``: list of the objects indexed by rank within ``group``; elsewhere: [].

    Raises:
        CollectiveTimeoutError: when some rank did not answer within the timeout.
    """
    if get_world_size() == 1:
        return [data]
    with reporting_timeouts("gather"):
        if group is None:
            group = _get_object_group()
        world_size = dist.get_world_size(group=group)
        if world_size == 1:
            return [data]
        if dist.get_rank() == dst:
            output: list[Any] = [None] * world_size
            dist.gather_object(data, output, dst=dst, group=group)
            return output
        dist.gather_object(data, None, dst=dst, group=group)
        return []


def reduce_dict(
    input_dict: dict[str, torch.Tensor], average: bool = True
) -> dict[str, torch.Tensor]:
    """Sums or averages a dict of scalar tensors over all ranks.

    Unlike Detectron2 (which reduces onto rank 0 only) every rank receives the result,
    so it can be logged or checked anywhere. Keys are reduced in sorted order so ranks
    agree however the dicts were built; every rank must pass the same keys.

    Args:
        input_dict: name -> scalar tensor (one element, any float dtype, same device on
            all entries: CUDA under NCCL).
        average: divide the sum by the world size.

    Returns:
        dict with the same keys; values are detached float32 scalars (shape ``()``).
        In one process the input dict is returned unchanged.

    Raises:
        ValueError: if a value is not a one-element tensor.
        CollectiveTimeoutError: when some rank did not answer within the timeout.
    """
    world_size = get_world_size()
    if world_size < 2:
        return input_dict
    names = sorted(input_dict.keys())
    for name in names:
        value = input_dict[name]
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise ValueError(
                f"reduce_dict() needs one-element tensors; key {name!r} holds "
                f"{type(value).__name__} {getattr(value, 'shape', '')}."
            )
    with torch.no_grad(), reporting_timeouts("reduce_dict"):
        values = torch.stack([input_dict[k].detach().float().reshape(()) for k in names])
        dist.all_reduce(values)
        if average:
            values /= world_size
    return dict(zip(names, values.unbind(0)))


def shared_random_seed() -> int:
    """Returns a random seed that is the same on every rank (rank 0's draw).

    All ranks draw (so the global numpy RNG advances identically everywhere) and use
    rank 0's value. Useful to keep data augmentation or sampling in step across ranks.

    Returns:
        an int in ``[0, 2**31)``.

    Raises:
        CollectiveTimeoutError: when some rank did not answer within the timeout.
    """
    seed = int(np.random.randint(2**31))
    with reporting_timeouts("shared_random_seed"):
        return int(_all_gather(seed, None)[0])
