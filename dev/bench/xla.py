"""Benchmark Panoptic-DeepLab training on XLA:CPU against eager CPU, in the XLA environment.

Builds the shapes Panoptic-DeepLab twice from one config and one seed, trains it with the
eager trainer (CPU) and with the XLA trainer (``MODEL.DEVICE xla``) on the same batches,
and prints: the first XLA step (tracing + compilation) and the compilation time torch_xla
reports, the graphs compiled during warm-up and after it, and steps per second of each in
interleaved rounds (medians) with their ratio::

    PJRT_DEVICE=CPU "$XLA_VENV/bin/python" dev/bench/xla.py [--rounds 5] [--steps 3]
        [--batch 8] [--crop 128 160] [KEY VALUE ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from tabulate import tabulate  # noqa: E402

CONFIG = (
    Path(__file__).resolve().parents[2] / "configs" / "shapes" / "panoptic_deeplab_R18_os32.yaml"
)


def _config(device: str, args: argparse.Namespace, extra: list[str]):
    from panoptic2.config import load_config

    return load_config(
        str(CONFIG),
        [
            "MODEL.DEVICE",
            device,
            "SOLVER.IMS_PER_BATCH",
            str(args.batch),
            "INPUT.CROP.SIZE",
            f"[{args.crop[0]}, {args.crop[1]}]",
            "DATALOADER.NUM_WORKERS",
            "1",
            *extra,
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--steps", type=int, default=3, help="steps per round and device")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each first")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, nargs=2, default=[128, 160])
    args, extra = parser.parse_known_args()

    import torch_xla
    import torch_xla.debug.metrics as met

    from panoptic2.engine import DefaultTrainer, SimpleTrainer
    from panoptic2.engine import xla as xla_runner
    from panoptic2.utils.env import seed_all_rng
    from panoptic2.utils.events import EventStorage

    cfg_cpu = _config("cpu", args, extra)
    cfg_xla = _config("xla", args, extra)
    xla_runner.prepare_runtime(cfg_xla)
    seed_all_rng(0)
    model_cpu = DefaultTrainer.build_model(cfg_cpu)
    model_xla = DefaultTrainer.build_model(cfg_xla)
    model_xla.load_state_dict(model_cpu.state_dict())
    eager = SimpleTrainer(
        model_cpu,
        DefaultTrainer.build_train_loader(cfg_cpu),
        DefaultTrainer.build_optimizer(cfg_cpu, model_cpu),
    )
    on_xla = xla_runner.build_trainer(
        cfg_xla, model_xla, DefaultTrainer.build_optimizer(cfg_xla, model_xla)
    )
    on_xla.data_loader = DefaultTrainer.build_train_loader(cfg_xla)

    def xla_steps(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            on_xla.run_step()
            on_xla.iter += 1
        torch_xla.sync(wait=True)  # the device has finished every step timed
        on_xla.flush_metrics()
        return time.perf_counter() - start

    def eager_steps(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            eager.run_step()
            eager.iter += 1
        return time.perf_counter() - start

    with EventStorage():
        first_step = xla_steps(1)
        compile_data = met.metric_data("CompileTime")
        compile_s = compile_data[1] / 1e9 if compile_data else 0.0
        xla_steps(args.warmup - 1)
        eager_steps(args.warmup)
        warmup_compiles = xla_runner.compilation_count()
        xla_rates, eager_rates = [], []
        for _ in range(args.rounds):
            xla_rates.append(args.steps / xla_steps(args.steps))
            eager_rates.append(args.steps / eager_steps(args.steps))
        late_compiles = xla_runner.compilation_count() - warmup_compiles
    on_xla.close()

    xla_rate, eager_rate = statistics.median(xla_rates), statistics.median(eager_rates)
    print(
        f"torch {torch.__version__}, torch_xla {torch_xla.__version__}, "
        f"{torch.get_num_threads()} torch thread(s); batch {args.batch}, crop {args.crop}"
    )
    print(
        tabulate(
            [
                ["first XLA step (trace + compile + run), s", f"{first_step:.1f}"],
                ["XLA compilation time (torch_xla metric), s", f"{compile_s:.1f}"],
                [f"graphs compiled in {args.warmup} warm-up steps", warmup_compiles],
                [f"graphs compiled in {args.rounds * args.steps} later steps", late_compiles],
                ["host fallbacks (ATen ops)", xla_runner.fallback_counts() or "none"],
                ["eager CPU steps/s (median)", f"{eager_rate:.3f}"],
                ["XLA:CPU steps/s (median)", f"{xla_rate:.3f}"],
                ["XLA:CPU / eager CPU", f"{xla_rate / eager_rate:.2f}x"],
            ],
            tablefmt="pipe",
        )
    )
    print("rounds, steps/s: eager", [f"{r:.3f}" for r in eager_rates])
    print("rounds, steps/s: XLA  ", [f"{r:.3f}" for r in xla_rates])


if __name__ == "__main__":
    main()
