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
    from vinocr.errors import VinocrError
    from vinocr.export.sr import export_sr
    from vinocr.sr.checkpoint_io import load_sr_checkpoint

    ck = load_sr_checkpoint(args.checkpoint, with_ocr=bool(args.rec_out))
    lr_shape = (ck.state.get("config") or {}).get("Generator", {}).get("lr_shape", [16, 48])
    out = export_sr(ck.generator, args.out, lr_shape=lr_shape)
    print(f"exported SR generator from {ck.path} -> {Path(out).resolve()}")
    if args.rec_out:
        if ck.ocr is None:
            raise VinocrError(f"{ck.path}: the checkpoint does not hold its recogniser's config; "
                              "export the recogniser with vinocr-export instead")
        from vinocr.export import export_inference
        from vinocr.models.pretrained import base_name

        ocr_cfg = ck.state["ocr"]["config"]
        extra = {"decode": (ck.state.get("config") or {}).get("Decode") or ocr_cfg.get("Decode"),
                 "charset": ck.charset.name, "source": f"SR checkpoint {ck.path}"}
        rec = export_inference(ck.ocr, args.rec_out, ck.charset, ck.image_shape, extra,
                               base=base_name(ocr_cfg.get("Architecture") or {}))
        print(f"exported its recogniser -> {Path(rec).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
