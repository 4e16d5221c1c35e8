#!/usr/bin/env python
"""Benchmark synthetic VIN and plate crop generation on one core: crops/s per style and overall.

Each timed crop includes everything a dataset writer does per sample: drawing the VIN text,
rendering the image and PNG encoding (file I/O excluded). Usage::

    python tools/bench_synth.py [--n 400] [--seed 0]

Rows: each VIN style alone (in the ``all`` pool's fonts and damage), then each style pool mixed;
then plate crops (``vinocr-synth plate-crops``) per region group and all formats mixed.
"""
from __future__ import annotations

import os

# Pin every thread pool to one thread *before* numpy / OpenCV are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import List, Optional, Sequence  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from vinocr.data.synth.pools import POOL_NAMES  # noqa: E402
from vinocr.data.synth.vin_render import STYLES  # noqa: E402
from vinocr.data.synth.writer import make_plate_crop_sample, make_vin_sample  # noqa: E402

#: Plate-crop rows: (label, --formats).
PLATE_ROWS = (("us", "us"), ("europe", "europe"), ("cn", "cn"), ("in", "in"), ("br", "br"),
              ("all formats", "all"))


def _rate(seed: int, n: int, styles: Optional[Sequence[str]], pool: str = "all") -> float:
    start = time.perf_counter()
    for i in range(n):
        make_vin_sample(seed, i, styles, pool=pool)
    return n / (time.perf_counter() - start)


def _plate_rate(seed: int, n: int, formats: str) -> float:
    from vinocr.data.synth.plate_crops import format_mix

    mix = tuple((fmt.name, w) for fmt, w in format_mix(formats))
    start = time.perf_counter()
    for i in range(n):
        make_plate_crop_sample(seed, i, mix)
    return n / (time.perf_counter() - start)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="crops per measurement (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        # One core, as a single data-generation worker would get.
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    # Warm-up: font loading and texture tiles are built once per process, not per crop.
    for pool in POOL_NAMES:
        for i in range(40):
            make_vin_sample(args.seed + 1, i, None, pool=pool)
    print(f"VIN crops/s on one core (n={args.n} per row, render + PNG encode):")
    for style in STYLES:
        print(f"  {style:<16} {_rate(args.seed, args.n, (style,)):8.1f}")
    for pool in POOL_NAMES:
        print(f"  {'pool ' + pool + ' (mixed)':<16} {_rate(args.seed, args.n, None, pool):8.1f}")
    _plate_rate(args.seed + 1, 40, "all")
    print(f"plate crops/s on one core (n={args.n} per row, render + PNG encode):")
    for label, formats in PLATE_ROWS:
        print(f"  {label:<16} {_plate_rate(args.seed, args.n, formats):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
