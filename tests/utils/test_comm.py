"""Tests of panoptic2.utils.comm: one process without a group, and 2 gloo processes."""

import json
import os
import time
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist

from panoptic2.engine.launch import launch
from panoptic2.utils import comm


def test_single_process_without_process_group():
    assert not dist.is_initialized()
    assert comm.get_world_size() == 1
    assert comm.get_rank() == 0
    assert comm.get_local_rank() == 0
    assert comm.get_local_size() == 1
    assert comm.is_main_process()
    comm.synchronize()  # must not need a group
    data = {"a": [1, 2], "b": "x"}
    assert comm.all_gather(data) == [data]
    assert comm.gather(data) == [data]
    losses = {"loss": torch.tensor(2.5)}
    assert comm.reduce_dict(losses) is losses

    np.random.seed(3)
    expected = int(np.random.RandomState(3).randint(2**31))
    assert comm.shared_random_seed() == expected


def _comm_worker(out_dir: str) -> None:
    rank = comm.get_rank()
    result = {
        "world_size": comm.get_world_size(),
        "rank": rank,
        "local_rank": comm.get_local_rank(),
        "local_size": comm.get_local_size(),
        "is_main": comm.is_main_process(),
    }
    gathered = comm.all_gather({"rank": rank, "name": f"r{rank}", "t": torch.tensor([rank, 7])})
    result["all_gather"] = [
        {"rank": g["rank"], "name": g["name"], "t": g["t"].tolist()} for g in gathered
    ]
    result["gather_dst0"] = comm.gather(rank * 10 + 1, dst=0)
    result["gather_dst1"] = comm.gather([rank], dst=1)

    # Insertion order differs between ranks: reduce_dict must still match keys.
    items = [("b", torch.tensor(float(rank + 1))), ("a", torch.tensor(10.0 * (rank + 1)))]
    losses = dict(items if rank == 0 else items[::-1])
    result["avg"] = {k: v.item() for k, v in comm.reduce_dict(losses).items()}
    result["sum"] = {k: v.item() for k, v in comm.reduce_dict(losses, average=False).items()}
    with pytest.raises(ValueError, match="'vec'"):
        comm.reduce_dict({"vec": torch.ones(2)})

    np.random.seed(100 + rank)  # different streams on the two ranks
    result["seed"] = comm.shared_random_seed()
    comm.synchronize()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


def test_comm_in_two_gloo_processes(tmp_path):
    launch(_comm_worker, 2, dist_url="auto", args=(str(tmp_path),))
    results = []
    for rank in range(2):
        with open(tmp_path / f"rank{rank}.json") as f:
            results.append(json.load(f))
    seed_rank0 = int(np.random.RandomState(100).randint(2**31))
    for rank, res in enumerate(results):
        assert res["world_size"] == 2
        assert res["rank"] == rank
        assert res["local_rank"] == rank
        assert res["local_size"] == 2
        assert res["is_main"] == (rank == 0)
        assert res["all_gather"] == [
            {"rank": 0, "name": "r0", "t": [0, 7]},
            {"rank": 1, "name": "r1", "t": [1, 7]},
        ]
        # (1 + 2) / 2 and (10 + 20) / 2 on every rank, not only on rank 0.
        assert res["avg"] == {"a": 15.0, "b": 1.5}
        assert res["sum"] == {"a": 30.0, "b": 3.0}
        assert res["seed"] == seed_rank0
    assert results[0]["gather_dst0"] == [1, 11]
    assert results[1]["gather_dst0"] == []
    assert results[0]["gather_dst1"] == []
    assert results[1]["gather_dst1"] == [[0], [1]]
    # The process group is torn down and the parent never joined one.
    assert not dist.is_initialized()


def test_timeout_errors_are_told_apart_from_other_errors():
    gloo = "[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 5000ms for recv operation"
    assert comm._is_timeout(RuntimeError(gloo))
    assert comm._is_timeout(RuntimeError("Application timeout caused pair closure"))
    assert comm._is_timeout(RuntimeError("Watchdog caught collective operation timeout: ..."))
    assert not comm._is_timeout(RuntimeError("DataLoader timed out after 5 seconds"))
    assert not comm._is_timeout(ValueError(gloo))
    with pytest.raises(RuntimeError, match="unrelated"), comm.reporting_timeouts("x"):
        raise RuntimeError("unrelated")
    # Without a process group there is nobody to ask: the message says so.
    expected = r"barrier timed out after 5 s on rank 0 of 1; which ranks did not answer is unknown"
    with (
        pytest.raises(comm.CollectiveTimeoutError, match=expected),
        comm.reporting_timeouts("barrier"),
    ):
        raise RuntimeError(gloo)


_TIMEOUT_S = 3


def _silent_rank_worker(out_dir: str) -> None:
    rank = comm.get_rank()
    messages = []
    if rank == 1:
        # Silent past rank 0's timeout and its roll call.
        time.sleep(3 * _TIMEOUT_S)
    else:
        start = time.monotonic()
        for collective in (comm.synchronize, lambda: comm.gather(rank)):
            try:
                collective()
            except comm.CollectiveTimeoutError as error:
                messages.append(str(error))
        messages.append(time.monotonic() - start)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(messages, f)


@pytest.mark.slow
def test_timeout_names_the_rank_that_did_not_answer(tmp_path):
    launch(
        _silent_rank_worker,
        2,
        dist_url="auto",
        args=(str(tmp_path),),
        timeout=timedelta(seconds=_TIMEOUT_S),
    )
    first, second, elapsed = json.loads((tmp_path / "rank0.json").read_text())
    assert first == (
        f"collective synchronize timed out after {_TIMEOUT_S} s on rank 0 of 2: "
        "ranks [1] did not answer (see DIST_TIMEOUT_S)"
    )
    # Gloo closed the group's connections and the roll call was spent: no second one.
    assert second.startswith("collective gather timed out") and "is unknown" in second
    # The barrier's timeout plus the roll call's, not 30 minutes.
    assert elapsed < 4 * _TIMEOUT_S


def _deadlock_worker(out_dir: str) -> None:
    # Both ranks wait to receive from each other: no rank is silent, the program is wrong.
    rank = comm.get_rank()
    with pytest.raises(comm.CollectiveTimeoutError) as info, comm.reporting_timeouts():
        dist.recv(torch.zeros(1), src=1 - rank)
    with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
        f.write(str(info.value))


@pytest.mark.slow
def test_timeout_where_every_rank_answers_blames_the_program(tmp_path):
    launch(
        _deadlock_worker,
        2,
        dist_url="auto",
        args=(str(tmp_path),),
        timeout=timedelta(seconds=_TIMEOUT_S),
    )
    for rank in range(2):
        message = (tmp_path / f"rank{rank}.txt").read_text()
        assert message.startswith(
            f"collective recv timed out after {_TIMEOUT_S} s on rank {rank} of 2: "
            "every rank answered"
        ), message
