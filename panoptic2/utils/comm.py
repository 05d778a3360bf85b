"""Helpers for multi-process (distributed) training that also work in a single process.

Every function here is safe to call without an initialised process group: it then behaves
as if the world had exactly one process (rank 0, world size 1). Collective functions
(:func:`synchronize`, :func:`all_gather`, :func:`gather`, :func:`reduce_dict`,
:func:`shared_random_seed`) must be called by every rank in the same order, as with any
``torch.distributed`` collective.

The per-machine ("local") process group used by :func:`get_local_rank` and
:func:`get_local_size` is created by :func:`panoptic2.engine.launch.launch` through
:func:`create_local_process_group`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "all_gather",
    "create_local_process_group",
    "gather",
    "get_local_process_group",
    "get_local_rank",
    "get_local_size",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "reduce_dict",
    "shared_random_seed",
    "synchronize",
]

# Process group of the ranks on this machine; set by create_local_process_group().
_LOCAL_PROCESS_GROUP: dist.ProcessGroup | None = None
# (default group it was created for, gloo group) used to gather picklable objects. Keyed
# by the default group so a destroyed-and-recreated world never reuses a dead group.
_OBJECT_GROUP: tuple[Any, Any] | None = None


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


def synchronize() -> None:
    """Blocks until every process reaches this point (a barrier); no-op in one process."""
    if get_world_size() == 1:
        return
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
    global _LOCAL_PROCESS_GROUP, _OBJECT_GROUP
    _LOCAL_PROCESS_GROUP = None
    _OBJECT_GROUP = None


def all_gather(data: Any, group: dist.ProcessGroup | None = None) -> list[Any]:
    """Gathers a picklable object from every rank of ``group`` on every rank.

    Args:
        data: any picklable object (tensors are pickled too; prefer CPU ones).
        group: the group to gather over; default: all ranks, over gloo even when the
            default backend is NCCL.

    Returns:
        list of the objects, indexed by rank within ``group``.
    """
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
    """
    if get_world_size() == 1:
        return [data]
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
    with torch.no_grad():
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
    """
    seed = int(np.random.randint(2**31))
    return int(all_gather(seed)[0])
