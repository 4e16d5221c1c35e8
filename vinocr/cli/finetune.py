"""``vinocr-finetune``: fine-tune a recogniser from a config.

    vinocr-finetune -c configs/vin/ppocrv6_small.yml --technique full -o Train.epochs=20
    vinocr-finetune --resume runs/vin_ppocrv4_mobile          # continue exactly where it stopped
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

from vinocr.cli.common import add_config_options, add_log_level, cli_entry, setup_logging
from vinocr.errors import VinocrError

PROG = "vinocr-finetune"
logger = logging.getLogger("vinocr.finetune")

#: Smallest per-process share of the global batch ``--nproc auto`` accepts: below it, per-process
#: overhead (launch, gradient all-reduce, small-batch kernels) eats the gain of another process.
MIN_BATCH_PER_PROCESS = 8


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Fine-tune a VIN / licence-plate "
                                "recogniser.")
    add_config_options(p)
    p.add_argument("--technique", help="technique name (overrides Technique.name), e.g. "
                   "gradual_unfreeze+label_smoothing")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly from its latest "
                   "checkpoint (uses RUN_DIR/config.yml unless -c is given)")
    p.add_argument("--nproc", default="auto",
                   help="data-parallel processes: N, or auto (default) = as many as there are "
                   "CPU cores (GPU machines: GPUs) that split Train.batch_size evenly into shares "
                   f"of at least {MIN_BATCH_PER_PROCESS}; on --resume, auto keeps the run's own "
                   "count. Relaunches through paddle.distributed.launch")
    p.add_argument("--overwrite", action="store_true", help="start over in a run directory "
                   "that already holds a run, replacing its checkpoints and history")
    add_log_level(p)
    return p


def available_devices() -> int:
    """GPUs when Paddle sees any, else the CPU cores this process may run on."""
    import paddle

    if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        return paddle.device.cuda.device_count()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)


def auto_nproc(batch_size: int, devices: int) -> int:
    """The most processes, at most ``devices``, that split ``batch_size`` evenly into shares of at
    least :data:`MIN_BATCH_PER_PROCESS`. On CPU, 2 processes x 1 thread measured faster than
    1 process x 2 threads (docs/performance.md): Paddle's CPU kernels scale across processes."""
    for n in range(max(1, devices), 0, -1):
        if batch_size % n == 0 and batch_size // n >= MIN_BATCH_PER_PROCESS:
            return n
    return 1


def resolve_nproc(value: str, batch_size: int, resume: Optional[str] = None) -> int:
    if value == "auto":
        if resume:
            saved = saved_world_size(resume)
            if saved is not None:
                return saved
        return auto_nproc(batch_size, available_devices())
    try:
        n = int(value)
    except ValueError:
        raise VinocrError(f"--nproc: expected a number or auto, got {value!r}") from None
    if n < 1:
        raise VinocrError(f"--nproc must be >= 1, got {n}")
    return n


def saved_world_size(run: str) -> Optional[int]:
    """The process count the run's latest checkpoint was trained with (None if unrecorded)."""
    from vinocr.engine.checkpoint import read_checkpoint_state

    saved = read_checkpoint_state(run).get("world_size")
    return int(saved) if saved else None


def relaunch(argv: List[str], nproc: int, run_dir: Path) -> int:
    """Run this command under paddle.distributed.launch with ``nproc`` processes (launcher
    output in ``RUN/launch_logs``)."""
    from vinocr.engine.launch import launch
    from vinocr.engine.rundir import CLAIMED_ENV

    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc=") or arg == "--overwrite":
            continue   # the ranks must not remove what this process checked and claimed
        rest.append(arg)
    os.environ[CLAIMED_ENV] = str(run_dir.resolve())
    return launch(os.path.abspath(__file__), rest, nproc, run_dir / "launch_logs", PROG)


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from vinocr.config import load_config

    overrides = list(args.opt)
    if args.technique:
        overrides.append(f"Technique.name={args.technique}")
    if args.resume:
        run = Path(args.resume)
        config_files = args.config or [run / "config.yml"]
        if not args.config and not (run / "config.yml").is_file():
            raise VinocrError(f"{run}: no config.yml here; is this a vinocr run directory?")
        overrides.append(f"Global.run_dir={run}")
    elif not args.config:
        raise VinocrError("give a config with -c (or --resume RUN_DIR)")
    else:
        config_files = args.config
    cfg = load_config(config_files, overrides)
    nproc = resolve_nproc(args.nproc, cfg["Train"]["batch_size"], args.resume)
    from vinocr.engine import distributed as dist
    from vinocr.engine.rundir import claim_run_dir

    run_dir = Path(cfg["Global"]["run_dir"])
    if dist.is_main():
        claim_run_dir(run_dir, bool(args.resume), args.overwrite)
    if nproc > 1 and "PADDLE_TRAINER_ID" not in os.environ:
        raw = sys.argv[1:] if argv is None else list(argv)
        return relaunch(raw, nproc, run_dir)
    if dist.world_size() > 1:
        from vinocr.engine.launch import interrupt_on_sigterm

        interrupt_on_sigterm()
    from techniques import build_technique
    from vinocr.engine.trainer import Trainer

    hooks = build_technique(cfg["Technique"])
    trainer = Trainer(cfg, hooks=hooks, resume=args.resume)
    report = trainer.fit()
    if not dist.is_main():
        return 0
    best = report["best"]
    print(json.dumps({"status": report["status"], "best": best,
                      "final_metrics": report["final_metrics"], "run_dir": report["run_dir"]},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
