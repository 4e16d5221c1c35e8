#!/usr/bin/env python
"""Compare CTC decoders (greedy, beam, VIN-constrained) on recogniser outputs as a Markdown table.

Two modes, and the table header says which one produced it:

- ``--probs FILE.npz``: real model outputs. The file holds ``probs`` ``[N, T, C]`` float32 softmax
  probabilities, ``labels`` (N ground-truth strings) and ``classes`` (C strings, class index ->
  character; ``classes[0]`` is the blank). Save string arrays as unicode arrays, e.g.
  ``np.savez(f, probs=p, labels=np.array(labels), classes=np.array(["", *chars, " "]))``.
- ``--synthetic N --noise SIGMA``: no model needed. N random valid VINs are laid out over T frames
  (one or more frames per character, blanks between), each frame's logits are Gaussian noise with
  std SIGMA plus a margin on the true class (and a smaller one on its classic look-alike: S/5, B/8,
  G/6, Z/2, D/0, M/V, L/1), then softmax. ``--extra-classes K`` appends K non-VIN classes to mimic
  a large head such as PP-OCR's 6625 classes. ``--save-synthetic`` writes the data as a --probs
  file.

Columns: sequence accuracy (exact match), character accuracy (1 - edit distance / max(len(pred),
len(label)), averaged over samples), % outputs that are valid VINs (``vinocr.vin.validate_vin``:
check digit required for North American WMIs), % samples where a constrained decoder found no valid
sequence (text left empty), and mean decoding time per sample on this machine (one process).

Usage::

    python tools/compare_decoders.py --probs outputs.npz [--beam-size 16]
    python tools/compare_decoders.py --synthetic 500 --noise 1.5 [--seed 0] [--frames 40]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from vinocr.charset import load_charset  # noqa: E402
from vinocr.cli.common import cli_entry, positive_int, setup_logging  # noqa: E402
from vinocr.data.synth.vin_text import random_vin  # noqa: E402
from vinocr.decode import Decoder, build_decoder  # noqa: E402
from vinocr.decode.ctc import DecodeError  # noqa: E402
from vinocr.vin import validate_vin  # noqa: E402

logger = logging.getLogger("compare_decoders")

#: Visually confusable VIN characters (both directions), from the domain notes.
LOOKALIKES: Dict[str, str] = {}
for _a, _b in ("S5", "B8", "G6", "Z2", "D0", "MV", "L1"):
    LOOKALIKES[_a], LOOKALIKES[_b] = _b, _a


# ------------------------------------------------------------------------------------------------
# Data


def load_probs_file(path: Path) -> Tuple[np.ndarray, List[str], List[str]]:
    """``probs [N, T, C]``, labels and classes from an .npz file; errors name the file."""
    if not path.is_file():
        raise DecodeError(f"{path}: file not found")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DecodeError(f"{path}: not a readable .npz file ({exc})") from None
    with data:
        missing = [k for k in ("probs", "labels", "classes") if k not in data.files]
        if missing:
            raise DecodeError(f"{path}: missing arrays {', '.join(missing)} "
                              f"(has: {', '.join(data.files) or 'none'})")
        try:
            probs = np.asarray(data["probs"], dtype=np.float32)
            labels = [str(s) for s in data["labels"].tolist()]
            classes = [str(s) for s in data["classes"].tolist()]
        except ValueError:
            # Object arrays need pickle, which we refuse to load from a data file.
            raise DecodeError(f"{path}: labels/classes must be unicode string arrays "
                              "(np.array(list_of_str)), not object arrays") from None
    if probs.ndim != 3:
        raise DecodeError(f"{path}: probs must be [N, T, C], got shape {probs.shape}")
    if len(labels) != probs.shape[0]:
        raise DecodeError(f"{path}: {len(labels)} labels for {probs.shape[0]} samples")
    if len(classes) != probs.shape[2]:
        raise DecodeError(f"{path}: {len(classes)} classes for C={probs.shape[2]}")
    return probs, labels, classes


def _layout(text: str, frames: int, rng: np.random.Generator) -> List[int]:
    """Per frame, the index into ``text`` it shows or -1 for blank. Equal neighbours always get a
    blank between them (CTC needs it); other gaps are random, spare frames widen random runs."""
    gaps = [1] + [1 if text[i] == text[i - 1] else int(rng.integers(0, 2))
                  for i in range(1, len(text))] + [0]
    need = len(text) + sum(gaps)
    if need > frames:
        raise DecodeError(f"--frames {frames} is too short for {len(text)} characters "
                          f"(need at least {need})")
    durations = [1] * len(text)
    spare = rng.multinomial(frames - need, np.ones(2 * len(text) + 1) / (2 * len(text) + 1))
    for i in range(len(text)):
        durations[i] += int(spare[i])
    for i in range(len(text) + 1):
        gaps[i] += int(spare[len(text) + i])
    out: List[int] = []
    for i in range(len(text)):
        out += [-1] * gaps[i] + [i] * durations[i]
    out += [-1] * gaps[-1]
    return out


def synthetic_probs(n: int, noise: float, frames: int, margin: float, lookalike: float,
                    extra_classes: int, seed: int) -> Tuple[np.ndarray, List[str], List[str]]:
    """Noisy CTC probabilities of ``n`` random valid VINs (see the module docstring)."""
    rng = np.random.default_rng(seed)
    classes = load_charset("vin").class_list()
    classes[0] = ""
    # Stand-ins for the non-VIN classes of a big head (CJK ideographs, never VIN characters).
    classes += [chr(0x4E00 + i) for i in range(extra_classes)]
    index = {c: i for i, c in enumerate(classes) if i}
    C = len(classes)
    probs = np.empty((n, frames, C), dtype=np.float32)
    labels: List[str] = []
    for s in range(n):
        vin = random_vin(rng)
        labels.append(vin)
        z = rng.normal(0.0, noise, size=(frames, C))
        for t, k in enumerate(_layout(vin, frames, rng)):
            if k < 0:
                z[t, 0] += margin
                continue
            ch = vin[k]
            z[t, index[ch]] += margin
            twin = LOOKALIKES.get(ch)
            if twin is not None:
                z[t, index[twin]] += margin * lookalike
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        probs[s] = e / e.sum(axis=1, keepdims=True)
    return probs, labels, classes


# ------------------------------------------------------------------------------------------------
# Metrics


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def evaluate(decoder: Decoder, probs: np.ndarray, labels: Sequence[str]) -> Dict[str, float]:
    seq = char = valid = empty = 0.0
    elapsed = 0.0
    for p, label in zip(probs, labels):
        start = time.perf_counter()
        result = decoder.decode_one(p)
        elapsed += time.perf_counter() - start
        truth = label.strip().upper()
        pred = result.text
        seq += pred == truth
        char += 1.0 - edit_distance(pred, truth) / max(len(pred), len(truth), 1)
        valid += bool(pred) and validate_vin(pred).valid
        empty += not result.satisfied
    n = max(len(labels), 1)
    return {"seq": 100 * seq / n, "char": 100 * char / n, "valid": 100 * valid / n,
            "empty": 100 * empty / n, "ms": 1000 * elapsed / n}


def build_decoders(classes: List[str], beam_size: int, year_rule: bool
                   ) -> List[Tuple[str, Decoder]]:
    vin = {"method": "vin", "beam_size": beam_size, "year_rule": year_rule}
    return [
        ("greedy", build_decoder({"method": "greedy"}, classes=classes)),
        (f"beam (size {beam_size})",
         build_decoder({"method": "beam", "beam_size": beam_size}, classes=classes)),
        (f"vin, check digit auto (beam {beam_size})",
         build_decoder({**vin, "check_digit": "auto"}, classes=classes)),
        (f"vin, check digit always (beam {beam_size})",
         build_decoder({**vin, "check_digit": "always"}, classes=classes)),
    ]


def markdown_table(mode: str, rows: List[Tuple[str, Dict[str, float]]]) -> str:
    lines = [f"**Mode: {mode}**", "",
             "| decoder | seq. acc. % | char. acc. % | valid VIN % | no valid output % "
             "| ms/sample |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, m in rows:
        lines.append(f"| {name} | {m['seq']:.1f} | {m['char']:.1f} | {m['valid']:.1f} "
                     f"| {m['empty']:.1f} | {m['ms']:.2f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Command line


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


@cli_entry("compare_decoders")
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--probs", type=Path, help=".npz with probs [N,T,C], labels, classes")
    source.add_argument("--synthetic", type=positive_int, metavar="N",
                        help="build N noisy probability matrices from random valid VINs")
    parser.add_argument("--noise", type=_positive_float, default=1.0,
                        help="synthetic: std of the Gaussian logit noise (default 1.0)")
    parser.add_argument("--margin", type=_positive_float, default=5.0,
                        help="synthetic: logit margin of the true class (default 5.0)")
    parser.add_argument("--lookalike", type=_positive_float, default=0.6,
                        help="synthetic: look-alike margin as a fraction of --margin "
                             "(default 0.6)")
    parser.add_argument("--frames", type=positive_int, default=40,
                        help="synthetic: frames T per sample (default 40)")
    parser.add_argument("--extra-classes", type=int, default=0,
                        help="synthetic: non-VIN classes appended (e.g. 6590 for a 6625-class "
                             "head; default 0 = 35 classes)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic: random seed (default 0)")
    parser.add_argument("--save-synthetic", type=Path, help="synthetic: also write the data as an "
                        ".npz usable with --probs")
    parser.add_argument("--limit", type=positive_int, help="--probs: use the first N samples")
    parser.add_argument("--beam-size", type=positive_int, default=16,
                        help="beam size of the beam and VIN decoders (default 16)")
    parser.add_argument("--year-rule", action="store_true",
                        help="VIN decoders: position 10 must be a model-year code")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if args.extra_classes < 0:
        parser.error("--extra-classes must be >= 0")

    if args.probs is not None:
        probs, labels, classes = load_probs_file(args.probs)
        if args.limit:
            probs, labels = probs[:args.limit], labels[:args.limit]
        mode = (f"model outputs from `{args.probs}` (N={len(labels)}, T={probs.shape[1]}, "
                f"C={probs.shape[2]})")
    else:
        probs, labels, classes = synthetic_probs(args.synthetic, args.noise, args.frames,
                                                 args.margin, args.lookalike,
                                                 args.extra_classes, args.seed)
        mode = (f"SYNTHETIC, not model outputs: {args.synthetic} random valid VINs (check digit "
                f"correct in every region), T={args.frames}, C={len(classes)}, logit noise "
                f"sigma={args.noise:g}, true-class margin {args.margin:g}, look-alike margin "
                f"x{args.lookalike:g}, seed {args.seed}")
        if args.save_synthetic:
            np.savez_compressed(args.save_synthetic, probs=probs, labels=np.array(labels),
                                classes=np.array(classes))
            logger.info("wrote %s", args.save_synthetic)
    if args.year_rule:
        mode += "; VIN decoders with the model-year rule"

    rows = []
    for name, decoder in build_decoders(classes, args.beam_size, args.year_rule):
        decoder.decode_one(probs[0])  # warm-up: grammar tables are built on first use
        rows.append((name, evaluate(decoder, probs, labels)))
    table = markdown_table(mode, rows)
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
