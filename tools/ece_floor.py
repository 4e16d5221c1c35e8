#!/usr/bin/env python
"""How much expected calibration error sampling alone gives: is a measured ece real?

Reads a ``vinocr-predict --format csv`` file of a labelled set (its ``confidence`` and ``correct``
columns), prints the set's ece, then simulates perfectly calibrated confidences: reads drawn
with replacement from the set's own confidences, each correct with probability equal to its
confidence. The mean and 95th percentile of their ece are the floor a test of that size can
show; an observed ece well above it is miscalibration, one within it is noise.

    vinocr-predict --model EXP --format csv --out PRED.csv --quiet TEST/labels.txt
    python tools/ece_floor.py PRED.csv --sizes 600 3000
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vinocr.cli.common import positive_int  # noqa: E402
from vinocr.cli.predict import read_csv  # noqa: E402
from vinocr.errors import VinocrError  # noqa: E402
from vinocr.metrics import expected_calibration_error  # noqa: E402


def read_predictions(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """``(confidences, correct)`` of the labelled rows of a vinocr-predict CSV."""
    try:
        rows = read_csv(path, ("confidence", "correct"))
    except VinocrError as exc:
        raise SystemExit(f"ece_floor: {exc}")
    labelled = [r for r in rows if r["correct"] in ("True", "False")]
    if not labelled:
        raise SystemExit(f"ece_floor: {path}: no labelled rows (predict a label file)")
    try:
        confidences = np.array([float(r["confidence"]) for r in labelled])
    except (TypeError, ValueError):
        raise SystemExit(f"ece_floor: {path}: a confidence is not a number")
    return confidences, np.array([r["correct"] == "True" for r in labelled])


def sampling_floor(confidences: Sequence[float], n: int, trials: int, seed: int) -> List[float]:
    """The ece of ``trials`` perfectly calibrated sets of ``n`` reads (see the module doc)."""
    rng = np.random.default_rng(seed)
    conf = np.asarray(confidences, dtype=float)
    out = []
    for _ in range(trials):
        drawn = conf[rng.integers(0, len(conf), n)]
        out.append(float(expected_calibration_error(drawn, rng.random(n) < drawn)))
    return out


def main(argv: Sequence[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("predictions", type=Path, help="vinocr-predict --format csv of a label file")
    ap.add_argument("--sizes", type=positive_int, nargs="+", help="test sizes to simulate "
                    "(default: the file's own)")
    ap.add_argument("--trials", type=positive_int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    conf, correct = read_predictions(args.predictions)
    print(f"{args.predictions}: {len(conf)} reads, accuracy {correct.mean():.4f}, mean "
          f"confidence {conf.mean():.4f}, ece {expected_calibration_error(conf, correct):.4f}")
    for n in args.sizes or [len(conf)]:
        sims = sampling_floor(conf, n, args.trials, args.seed)
        print(f"perfectly calibrated, {n} reads ({args.trials} trials): ece mean "
              f"{np.mean(sims):.4f}, 95th percentile {np.percentile(sims, 95):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
