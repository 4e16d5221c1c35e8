"""``vinocr-export``: a trained checkpoint -> a Paddle inference model that stock paddleocr loads.

    vinocr-export --checkpoint runs/vin/best --out exported/vin [--onnx]

LoRA adapters are merged, re-parameterisable branches folded, BatchNorms and learnable affines
folded into their convs (all exact), and the softmax included. ``inference.yml`` records the
dictionary, the input shape and vinocr's decoder settings. ``--onnx`` also writes ``inference.onnx``
(dynamic batch and width; paddleocr loads the directory with ``engine='onnxruntime'``) and checks
it against the Paddle predictor on random inputs of widths 160, 320 and 640.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from vinocr.cli.common import (add_config_options, add_log_level, cli_entry, non_negative_float,
                               positive_int, setup_logging)

PROG = "vinocr-export"

#: Input widths of the random batches the ONNX parity check runs.
PARITY_WIDTHS = (160, 320, 640)


def parity_inputs(height: int, widths: Sequence[int] = PARITY_WIDTHS, batch: int = 2,
                  seed: int = 0) -> List[np.ndarray]:
    """Random ``[batch, 3, height, w]`` inputs in [-1, 1], one per width."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.0, 1.0, (batch, 3, int(height), int(w))).astype(np.float32)
            for w in widths]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export a trained recogniser.")
    p.add_argument("--checkpoint", required=True, help="checkpoint dir or run dir (-> best), or "
                   "'pretrained' with -c")
    add_config_options(p, overrides=False, use="only for --checkpoint pretrained")
    p.add_argument("--out", required=True)
    p.add_argument("--onnx", action="store_true", help="also write inference.onnx (paddle2onnx, "
                   "offline) and check it against the Paddle predictor")
    p.add_argument("--opset", type=positive_int, default=11, help="ONNX opset (with --onnx)")
    p.add_argument("--atol", type=non_negative_float, default=1e-4,
                   help="largest accepted ONNX vs Paddle difference of the output probabilities "
                   "(with --onnx)")
    add_log_level(p)
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
    if args.onnx:
        from vinocr.export.onnx import check_onnx_parity, export_onnx

        onnx_path = export_onnx(out, opset=args.opset)
        height = int(model_cfg["Global"]["image_shape"][1])
        diff = check_onnx_parity(out, parity_inputs(height), atol=args.atol)
        widths = "/".join(str(w) for w in PARITY_WIDTHS)
        print(f"onnx -> {Path(onnx_path).resolve()}; max abs diff vs Paddle {diff:.3g} "
              f"(widths {widths}, atol {args.atol:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
