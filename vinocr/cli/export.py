"""``vinocr-export``: a trained checkpoint -> a Paddle inference model that stock paddleocr loads.

    vinocr-export --checkpoint runs/vin/best --out exported/vin

LoRA adapters are merged, re-parameterisable branches folded, BatchNorms and learnable affines
folded into their convs (all exact), and the softmax included. ``inference.yml`` records the
dictionary, the input shape and vinocr's decoder settings.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from vinocr.cli.common import cli_entry, setup_logging

PROG = "vinocr-export"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export a trained recogniser.")
    p.add_argument("--checkpoint", required=True, help="checkpoint dir or run dir (-> best), or "
                   "'pretrained' with -c")
    p.add_argument("-c", "--config", nargs="+", help="config (only for --checkpoint pretrained)")
    p.add_argument("--out", required=True)
    p.add_argument("--log-level", default="INFO")
    return p


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from vinocr.cli.model_io import load_model
    from vinocr.config import load_config
    from vinocr.export import export_inference

    cfg = load_config(args.config) if args.config else None
    loaded = load_model(args.checkpoint, cfg)
    model_cfg = cfg if cfg is not None else loaded.config
    extra = {"decode": model_cfg.get("Decode"), "charset": loaded.charset.name,
             "source": loaded.name}
    out = export_inference(loaded.model, args.out, loaded.charset,
                           model_cfg["Global"]["image_shape"], extra)
    print(f"exported {loaded.name} -> {Path(out).resolve()} (inference.json, inference.pdiparams, "
          "inference.yml)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
