#!/usr/bin/env python
"""Evaluates a model and writes an HTML report per test dataset (``TEST.REPORT True``).

    python tools/eval_report.py --config-file CFG MODEL.WEIGHTS out/model_final.pth
    python tools/eval_report.py --config-file CFG MODEL.WEIGHTS W TEST.REPORT_WORST_K 24

The same as ``tools/train_net.py --eval-only ... TEST.REPORT True``: each dataset of
``DATASETS.TEST`` gets ``OUTPUT_DIR/inference/<dataset>/report.html``, one static page with
the metric tables (PQ/SQ/RQ and IoU per class, AP), every image's PQ and mIoU in a sortable
table, and the worst images (image | ground truth | prediction, false positives and missed
segments outlined), images embedded. Open it in any browser; no server is needed.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_net import cli  # noqa: E402  (tools/train_net.py, beside this file)

if __name__ == "__main__":
    # Config overrides come last on the command line: TEST.REPORT joins them.
    cli(["--eval-only", *sys.argv[1:], "TEST.REPORT", "True"])
