"""``vinocr-export-sr``: export a trained SR generator (and its recogniser) for inference.

    vinocr-export-sr runs/sr_lpasrn_small --out exported/sr --rec-out exported/plate_rec
    vinocr-predict --sr exported/sr --rec exported/plate_rec --tracks data/plates/test

The generator becomes a Paddle inference model (``inference.json`` + ``inference.pdiparams`` +
``sr.yml``). ``--rec-out`` also exports the recogniser stored in the SR checkpoint, which stage 3
fine-tuned together with the generator: deploy the two as a pair.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from vinocr.cli.common import add_log_level, cli_entry, setup_logging

PROG = "vinocr-export-sr"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="SR run directory (its best/) or checkpoint directory")
    p.add_argument("--out", required=True, help="output folder of the SR inference model")
    p.add_argument("--rec-out", help="also export the checkpoint's recogniser here")
    add_log_level(p)
    return p


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from vinocr.export.sr import export_sr_checkpoint

    sr_out, rec_out = export_sr_checkpoint(args.checkpoint, args.out, args.rec_out)
    print(f"exported SR generator -> {Path(sr_out).resolve()}")
    if rec_out:
        print(f"exported its recogniser -> {Path(rec_out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
