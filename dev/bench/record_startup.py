"""Benchmark registering DeepLab2 record shards: with the split's index, and by reading them.

Writes ``--num-records`` COCO-sized records (a ~160 KB JPEG-sized payload and DeepLab2's
raw 640x480 int32 panoptic label, 1.2 MB) into ``--num-shards`` shards with their manifest
and ``{split}.index.json``, then times :func:`panoptic2.data.records.load_record_dicts`
(what ``register_records`` runs) in this process, alternately: with the index, and with the
index removed (every record read and CRC-checked, as before the index existed). Both must
give the same dicts. The shards are read from the page cache after the first pass, so the
time without the index is a lower bound (a cold disk reads 1.4 MB per record)::

    python dev/bench/record_startup.py [--num-records 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from panoptic2.data.records import encode_example, index_filename, load_record_dicts
from panoptic2.data.records.index import index_entry
from panoptic2.data.records.writer import write_sharded_records

H, W = 480, 640
_LABEL = np.zeros((H, W), dtype="<i4").tobytes()


def _example(item: int) -> bytes:
    image = np.random.default_rng(item).integers(0, 256, 160_000, dtype=np.uint8).tobytes()
    return encode_example(
        {
            "image/encoded": image,
            "image/filename": f"{item:012d}",
            "image/format": "jpeg",
            "image/height": H,
            "image/width": W,
            "image/channels": 3,
            "image/segmentation/class/encoded": _LABEL,
            "image/segmentation/class/format": "raw",
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-records", type=int, default=1000)
    parser.add_argument("--num-shards", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("panoptic2").setLevel(logging.ERROR)  # the expected fallback warning
    with tempfile.TemporaryDirectory() as out:
        write_sharded_records(
            out, "train", list(range(args.num_records)), _example, args.num_shards,
            index_entry=index_entry,
        )  # fmt: skip
        pattern = os.path.join(out, "train-*.tfrecord")
        index = os.path.join(out, index_filename("train"))
        shutil.copy(index, index + ".kept")
        size = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out)) / 2**20
        times: dict[str, list[float]] = {"index": [], "reading every record": []}
        results = {}
        for _ in range(args.repeat):
            for name in times:
                if name == "index":
                    shutil.copy(index + ".kept", index)
                elif os.path.exists(index):
                    os.remove(index)
                start = time.perf_counter()
                results[name] = load_record_dicts(pattern)
                times[name].append(time.perf_counter() - start)
    if results["index"] != results["reading every record"]:
        print("FAILED: the index gives other dicts than reading the records")
        return 1
    print(f"{args.num_records} records in {args.num_shards} shards ({size:.0f} MiB):")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        per_record = median / args.num_records * 1e6
        print(f"  {name:22s} median {median:8.3f} s  ({per_record:7.1f} us per record)")
    print(f"  reading / index = {medians['reading every record'] / medians['index']:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
