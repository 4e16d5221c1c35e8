"""``vinocr-finetune``: fine-tune a recogniser from a config.

    vinocr-finetune -c configs/vin/ppocrv4_mobile.yml --technique full -o Train.epochs=20
    vinocr-finetune --resume runs/vin_ppocrv4_mobile          # continue exactly where it stopped
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

from vinocr.cli.common import cli_entry, setup_logging
from vinocr.errors import VinocrError

PROG = "vinocr-finetune"
logger = logging.getLogger("vinocr.finetune")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Fine-tune a VIN / licence-plate "
                                "recogniser.")
    p.add_argument("-c", "--config", nargs="+", help="YAML config file(s), merged in order")
    p.add_argument("-o", "--opt", nargs="+", default=[], help="overrides Key.sub=value")
    p.add_argument("--technique", help="technique name (overrides Technique.name), e.g. "
                   "gradual_unfreeze+label_smoothing")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly from its latest "
                   "checkpoint (uses RUN_DIR/config.yml unless -c is given)")
    p.add_argument("--log-level", default="INFO")
    return p


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
    from techniques import build_technique
    from vinocr.engine.trainer import Trainer

    hooks = build_technique(cfg["Technique"])
    trainer = Trainer(cfg, hooks=hooks, resume=args.resume)
    report = trainer.fit()
    best = report["best"]
    print(json.dumps({"status": report["status"], "best": best,
                      "final_metrics": report["final_metrics"], "run_dir": report["run_dir"]},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
