"""Tests of panoptic2.utils.events: storage, smoothing and the three writers."""

import json
import logging

import pytest
import torch

from panoptic2.utils.events import (
    CommonMetricPrinter,
    EventStorage,
    JSONWriter,
    TensorboardXWriter,
    get_event_storage,
)


def test_get_event_storage_needs_a_context():
    with pytest.raises(RuntimeError, match="EventStorage"):
        get_event_storage()
    with EventStorage() as outer:
        assert get_event_storage() is outer
        with EventStorage() as inner:
            assert get_event_storage() is inner
        assert get_event_storage() is outer
    with pytest.raises(RuntimeError):
        get_event_storage()


def test_scalars_history_and_smoothing():
    with EventStorage(start_iter=5) as storage:
        assert storage.iter == 5
        for value in [5.0, 1.0, 4.0, 2.0, 3.0]:
            storage.put_scalar("loss", torch.tensor(value))
            storage.put_scalar("acc", value * 10, smoothing_hint=False)
            storage.step()
        assert storage.iter == 10
        assert storage.history("loss").values() == [
            (5.0, 5),
            (1.0, 6),
            (4.0, 7),
            (2.0, 8),
            (3.0, 9),
        ]
        assert storage.latest() == {"loss": (3.0, 9), "acc": (30.0, 9)}
        # Median of the last 3 losses [4, 2, 3] is 3; of the last 4 [1, 4, 2, 3] is 2.5.
        assert storage.latest_with_smoothing_hint(3) == {"loss": (3.0, 9), "acc": (30.0, 9)}
        assert storage.latest_with_smoothing_hint(4)["loss"] == (2.5, 9)
        assert storage.smoothing_hints() == {"loss": True, "acc": False}
        with pytest.raises(ValueError, match="'acc'"):
            storage.put_scalar("acc", 1.0, smoothing_hint=True)
        with pytest.raises(KeyError, match="'nope'"):
            storage.history("nope")

        storage.iter = 42
        storage.put_scalars(a=1, b=2, cur_iter=40)
        assert storage.latest()["a"] == (1.0, 40) and storage.latest()["b"] == (2.0, 40)
        with storage.name_scope("val"):
            storage.put_scalar("mIoU", 50.0, smoothing_hint=False)
        storage.put_scalar("after", 1.0)
        assert storage.latest()["val/mIoU"] == (50.0, 42)
        assert "after" in storage.latest()


def test_json_writer_writes_new_iterations_only(tmp_path):
    path = tmp_path / "metrics.json"
    writer = JSONWriter(str(path), window_size=20)
    with EventStorage() as storage:
        storage.put_scalars(loss=1.0)
        storage.put_scalar("lr", 0.1, smoothing_hint=False)
        storage.step()
        storage.put_scalars(loss=3.0)
        storage.put_scalar("lr", 0.2, smoothing_hint=False)
        writer.write()
        storage.step()
        storage.put_scalar("loss", 5.0)
        writer.write()
        writer.write()  # nothing new: no line
    writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"iteration": 1, "loss": 2.0, "lr": 0.2},  # median of [1, 3]
        {"iteration": 2, "loss": 3.0},  # median of [1, 3, 5]
    ]


def test_json_writer_opens_its_file_at_the_first_write(tmp_path):
    path = tmp_path / "metrics.json"
    writer = JSONWriter(str(path))
    writer.close()  # closing an unopened writer is fine
    assert not path.exists()
    with EventStorage(start_iter=5) as storage:
        storage.put_scalar("loss", 1.0)
        writer.write()
    writer.close()
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"iteration": 5, "loss": 1.0}
    ]


def test_drop_records_after_keeps_one_record_per_iteration(tmp_path):
    path = tmp_path / "metrics.json"
    records = [{"iteration": i, "loss": float(i)} for i in range(6)]
    records.insert(4, {"iteration": 3, "dataset": "val", "acc": 50.0})  # evaluation record
    records.append({"iteration": None, "dataset": "val", "acc": 1.0})  # eval-only run
    text = "".join(json.dumps(r) + "\n" for r in records) + '{"iteration": 6, "lo'  # cut by a kill
    path.write_text(text)

    assert JSONWriter.drop_records_after(str(path), 3) == 3
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["iteration"] for r in kept] == [0, 1, 2, 3, 3, None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temp file left
    assert JSONWriter.drop_records_after(str(path), 3) == 0  # nothing more to drop
    assert JSONWriter.drop_records_after(str(tmp_path / "missing.json"), 3) == 0
    assert not (tmp_path / "missing.json").exists()


def test_common_metric_printer_line():
    records = []

    class _Catch(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    events_logger = logging.getLogger("panoptic2.utils.events")
    handler = _Catch()
    events_logger.addHandler(handler)
    old_level = events_logger.level
    events_logger.setLevel(logging.INFO)
    times = [1.0] * 11 + [3.0] * 9
    try:
        with EventStorage() as storage:
            for i, t in enumerate(times):
                storage.iter = i
                storage.put_scalars(time=t, data_time=t / 100)
                storage.put_scalars(total_loss=2.0 + i, loss_x=1.0 + i)
                storage.put_scalar("lr", 0.01, smoothing_hint=False)
            CommonMetricPrinter(max_iter=100, window_size=20).write()
            eta_seconds = storage.latest()["eta_seconds"][0]
    finally:
        events_logger.removeHandler(handler)
        events_logger.setLevel(old_level)
    assert len(records) == 1
    line = records[0]
    # Median time 1.0 s x (100 - 19 - 1) iterations left = 80 s.
    assert eta_seconds == pytest.approx(80.0)
    assert line.startswith("eta: 0:01:20  iter: 19  ")
    # Medians over the 20 iterations: total_loss 2..21 -> 11.5, loss_x 1..20 -> 10.5.
    assert "total_loss: 11.5  loss_x: 10.5" in line
    # avg time (11 * 1 + 9 * 3) / 20 = 1.9; last 3.0.
    assert "time: 1.9000  last_time: 3.0000" in line
    assert "data_time: 0.0190  last_data_time: 0.0300" in line
    assert "lr: 0.01" in line
    assert ("max_mem" in line) == torch.cuda.is_available()


def test_tensorboard_writer_scalars_readable(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = TensorboardXWriter(str(tmp_path), window_size=2)
    with EventStorage() as storage:
        for i, value in enumerate([1.0, 5.0, 3.0]):
            storage.iter = i
            storage.put_scalar("loss", value)
            storage.put_scalar("acc", value * 10, smoothing_hint=False)
            writer.write()
        writer.write()  # nothing new
        storage.put_image("img", torch.zeros(3, 4, 4))
        writer.write()
        assert storage._vis_data == []
    writer.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == [0, 1, 2]
    # Median over a window of 2: [1], [1, 5], [5, 3].
    assert [e.value for e in loss] == pytest.approx([1.0, 3.0, 4.0])
    assert [e.value for e in acc.Scalars("acc")] == pytest.approx([10.0, 50.0, 30.0])
    assert "img" in acc.Tags()["images"]
