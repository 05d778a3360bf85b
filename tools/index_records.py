#!/usr/bin/env python
"""Writes ``{split}.index.json`` for record shards that have none (or a stale one).

Example::

    python tools/index_records.py --records_dir datasets/coco/tfrecord --split train

The converters (``tools/build_{coco,cityscapes}_data.py``) write the index themselves; this
reads each shard of the split once, for shards converted without an index. Registering a
shard set (``register_records``) then reads only the index. Exits with status 1 and a message
when the directory has no shard of the split, or shards without a manifest (convert those
again with ``--overwrite``).
"""

from __future__ import annotations

import argparse
import sys

from panoptic2.data.records.index import StaleIndexError, write_split_index


def main(argv: list[str] | None = None) -> int:
    """Indexes the split; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records_dir", required=True, help="Directory of the shards.")
    parser.add_argument("--split", required=True, help="Split name, e.g. train.")
    args = parser.parse_args(argv)
    try:
        path = write_split_index(args.records_dir, args.split)
    except (FileNotFoundError, StaleIndexError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
