#!/usr/bin/env python
"""Weight-space interpolation of a fine-tuned recogniser with its pretrained start (WiSE-FT):
``alpha * fine_tuned + (1 - alpha) * pretrained``, scored on labelled sets for several alphas.

Fine-tuning on synthetic crops teaches the generator's styles; averaging the weights with the
pretrained model's keeps part of what the pretrained model reads in styles the generator never
made (docs/style-shift.md). Choose alpha on the first ``--data`` set (validation, never test);
``--save`` writes the model at the chosen alpha as a checkpoint that vinocr-export and vinocr-eval
read (its confidence calibration is dropped: refit it with ``vinocr-export --fit-temperature``)::

    python tools/interpolate_weights.py --model runs/vin -c configs/vin/ppocrv6_small.yml \\
        --alphas 0.5 0.7 1.0 --data data/val.txt data/test_heldout/labels.txt --save runs/vin_wise

Only fully fine-tuned runs (no adapters) with the pretrained architecture and head are accepted:
interpolation needs the same tensors on both sides.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vinocr.cli.common import (add_config_options, add_log_level, cli_entry, positive_int,  # noqa: E402
                               probability, setup_logging)
from vinocr.errors import VinocrError  # noqa: E402

PROG = "interpolate_weights.py"


def interpolate(pretrained: Dict[str, np.ndarray], tuned: Dict[str, np.ndarray], alpha: float
                ) -> Dict[str, np.ndarray]:
    """``alpha * tuned + (1 - alpha) * pretrained`` for float tensors; other tensors (counters)
    come from ``tuned``. The two must hold the same names and shapes."""
    if pretrained.keys() != tuned.keys():
        missing = sorted(set(pretrained) ^ set(tuned))[:3]
        raise VinocrError(f"the models hold different tensors ({', '.join(missing)} ...): "
                          "interpolation needs the pretrained architecture and head")
    out = {}
    for name, value in tuned.items():
        start = pretrained[name]
        if start.shape != value.shape:
            raise VinocrError(f"tensor {name}: shape {start.shape} (pretrained) vs {value.shape} "
                              "(fine-tuned): interpolation needs the same head")
        out[name] = ((alpha * value + (1.0 - alpha) * start).astype(value.dtype)
                     if value.dtype.kind == "f" else value)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_config_options(p, required=True, use="architecture, charset and decoder of the "
                       "pretrained model (the fine-tuned run's own config)")
    p.add_argument("--model", required=True, help="fine-tuned run or checkpoint directory")
    p.add_argument("--alphas", nargs="+", type=probability, default=[0.5, 0.7, 1.0],
                   help="weights of the fine-tuned model (default 0.5 0.7 1.0)")
    p.add_argument("--data", nargs="+", required=True,
                   help="labelled sets; the first (validation) chooses alpha")
    p.add_argument("--save", help="write the model at the alpha chosen on the first set here")
    p.add_argument("--batch-size", type=positive_int, default=32)
    add_log_level(p, "WARNING")
    return p


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    import paddle

    from vinocr.cli.eval import evaluate_one
    from vinocr.config import load_config
    from vinocr.data.registry import open_dataset
    from vinocr.data.split import held_out_test_reason
    from vinocr.engine.checkpoint import read_checkpoint_state, resolve_checkpoint, save_checkpoint
    from vinocr.engine.model_loading import load_trained

    reason = held_out_test_reason(args.data[0])
    if reason:
        raise VinocrError(f"{args.data[0]}: {reason}; alpha must be chosen on validation data")
    cfg = load_config(args.config, args.opt)
    tuned = load_trained(args.model, None)
    if tuned.adapters:
        raise VinocrError(f"{args.model}: trained with adapters ({', '.join(tuned.adapters)}); "
                          "interpolation needs a fully fine-tuned run")
    start = load_trained("pretrained", cfg, arch=tuned.config["Architecture"]["name"])
    start_sd = {k: v.numpy() for k, v in start.model.state_dict().items()}
    tuned_sd = {k: v.numpy().copy() for k, v in tuned.model.state_dict().items()}
    datasets = [open_dataset(d, charset=tuned.charset) for d in args.data]
    decode_cfg = tuned.config.get("Decode", {"method": "greedy"})
    image_shape = tuned.config["Global"]["image_shape"]
    two_row = tuned.config["Global"].get("two_row_max_aspect", 0.0)
    scores: Dict[float, List[float]] = {}
    print("| alpha | " + " | ".join(args.data) + " |")
    print("|---|" + "---|" * len(args.data))
    for alpha in sorted(set(args.alphas)):
        mixed = interpolate(start_sd, tuned_sd, alpha)
        tuned.model.set_state_dict({k: paddle.to_tensor(v) for k, v in mixed.items()})
        tuned.model.eval()
        scores[alpha] = [evaluate_one(tuned, ds, decode_cfg, image_shape, args.batch_size,
                                      two_row_max_aspect=two_row)["result"].seq_acc
                         for ds in datasets]
        print(f"| {alpha:g} | " + " | ".join(f"{s:.4f}" for s in scores[alpha]) + " |",
              flush=True)
    # Ties go to the larger alpha: the model closer to the one that was trained and selected.
    chosen = max(scores, key=lambda a: (scores[a][0], a))
    print(f"chosen on {args.data[0]}: alpha {chosen:g} (seq_acc {scores[chosen][0]:.4f})")
    if args.save:
        ckpt = resolve_checkpoint(args.model)
        state = dict(read_checkpoint_state(ckpt))
        state.pop("calibration", None)  # fitted for other weights
        state["interpolated"] = {"alpha": chosen, "fine_tuned": str(ckpt),
                                 "pretrained": tuned.config["Architecture"]["name"]}
        save_checkpoint(args.save, interpolate(start_sd, tuned_sd, chosen), state)
        print(f"wrote {args.save} (alpha {chosen:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
