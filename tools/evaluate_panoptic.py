#!/usr/bin/env python
"""Panoptic quality of COCO panoptic predictions on disk (panopticapi's inputs).

    python tools/evaluate_panoptic.py --gt-json panoptic_val2017.json \\
        --gt-folder panoptic_val2017 --pred-json predictions.json \\
        --pred-folder predictions [--workers 8] [--output result.json]

Prints the PQ / SQ / RQ tables (All, Things, Stuff, per category; x100) and writes to
``--output`` the structure ``panopticapi.evaluation.pq_compute`` returns, values as
fractions. Images are evaluated in ``--workers`` processes; the result does not depend on
their number. Exits with status 1 and a message naming the image, segment or file for: a
predicted category not in the ground truth's categories, a segment id of the JSON missing
from its PNG or the reverse, a missing PNG, or an image of the ground truth without a
prediction.

The tool imports neither torch nor the data package: it starts in a fraction of a second
(see ``dev/bench/pq_tool.py`` for its whole-process time against panopticapi's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from panoptic2.evaluation.panoptic_quality import (
    format_pq_tables,
    pq_compute,
    read_panoptic_json,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gt-json", required=True, help="ground-truth panoptic JSON")
    parser.add_argument(
        "--gt-folder", help="ground-truth PNG folder (default: JSON path minus .json)"
    )
    parser.add_argument("--pred-json", required=True, help="predicted panoptic JSON")
    parser.add_argument(
        "--pred-folder", help="predicted PNG folder (default: JSON path minus .json)"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    parser.add_argument("--output", help="write the pq_compute result structure to this JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the evaluation; returns the process exit status."""
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        gt_json = read_panoptic_json(args.gt_json, "ground-truth JSON")
        results = pq_compute(
            gt_json,
            args.pred_json,
            args.gt_folder or os.path.splitext(args.gt_json)[0],
            args.pred_folder,
            workers=args.workers,
        )
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    names = {int(c["id"]): c.get("name", str(c["id"])) for c in gt_json["categories"]}
    print(format_pq_tables(results, names))
    print(f"Evaluated in {time.perf_counter() - start:.2f} s")
    if args.output:
        from panoptic2.utils.file_io import atomic_write  # iopath: only when writing

        text = json.dumps(results, indent=2).encode()
        atomic_write(args.output, lambda f: f.write(text))
        print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
