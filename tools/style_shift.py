#!/usr/bin/env python
"""The style-shift benchmark: how well a VIN recipe trained on synthetic data reads VIN styles its
training data never showed.

The generator's sources of variety (font families, materials, camera-damage families) are split
into a ``train`` and a ``heldout`` pool (vinocr/data/synth/pools.py). ``data`` writes, from
disjoint seeds:

* ``splits/train.txt``, ``splits/val.txt``: training data and in-distribution validation (train
  pool). Model selection (the best checkpoint) uses this validation split only;
* ``test_in/``: an in-distribution test set (train pool);
* ``test_heldout/``: the held-out-style test set (held-out pool: held-out fonts always, the
  laser/cast materials on a quarter of the crops, held-out damage on most).

``eval`` runs ``vinocr-eval`` on both test sets and prints, per model, in-distribution and
held-out-style sequence accuracy, their gap, and the held-out calibration error; the full table
(McNemar's p against the first model included) is in ``OUT/table.md``. ``materials`` splits
models' reads of a ``vinocr-synth vin`` folder by the material each crop was drawn in (engraved,
dot-peen, cast, ...: re-drawn from the folder's seed, so any vinocr-synth folder works), from
``vinocr-predict --format csv`` outputs::

    python tools/style_shift.py data --out bench --n-train 2400 --n-test 600 --seed 0
    vinocr-finetune -c configs/vin/ppocrv6_small.yml -o Global.run_dir=runs/ss \\
        "Train.dataset={type: label_file, label_files: [bench/splits/train.txt]}" \\
        "Eval.dataset={type: label_file, label_files: [bench/splits/val.txt]}"
    python tools/style_shift.py eval -c configs/vin/ppocrv6_small.yml --data bench \\
        --models pretrained runs/ss --out bench/eval
    vinocr-predict --model EXPORT --format csv --out pred.csv bench/test_heldout/labels.txt
    python tools/style_shift.py materials --synth bench/test_heldout --predictions pred.csv
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vinocr.cli.common import (add_config_options, cli_entry, non_negative_int,  # noqa: E402
                               positive_int)
from vinocr.errors import VinocrError  # noqa: E402

PROG = "style_shift.py"
MANIFEST = "style_shift.json"
# Seed offsets of the three generated sets: disjoint seeds give disjoint VIN draws and images.
_SEED_OFFSETS = {"train_pool": 0, "test_in": 1000, "test_heldout": 2000}


def cmd_data(args: argparse.Namespace) -> int:
    from vinocr.cli.data import main as data_main
    from vinocr.cli.synth import main as synth_main

    out = Path(args.out)
    manifest = out / MANIFEST
    if manifest.exists() and not args.overwrite:
        raise VinocrError(f"{out} already holds a style-shift benchmark; pass --overwrite to "
                          "replace it")
    common = ["--workers", str(args.workers), "--log-level", "WARNING"]
    if args.overwrite:
        common.append("--overwrite")
    sets = {"train_pool": ("train", args.n_train), "test_in": ("train", args.n_test),
            "test_heldout": ("heldout", args.n_test)}
    for name, (pool, n) in sets.items():
        seed = args.seed + _SEED_OFFSETS[name]
        if synth_main(["vin", "--n", str(n), "--seed", str(seed), "--pool", pool,
                       "--out", str(out / name)] + common) != 0:
            return 2
    split = ["split", str(out / "train_pool"), "--out", str(out / "splits"), "--fractions",
             str(1.0 - args.val_fraction), str(args.val_fraction), "--names", "train,val",
             "--seed", str(args.seed)]
    if data_main(split + (["--overwrite"] if args.overwrite else [])) != 0:
        return 2
    record = {
        "seed": args.seed, "n_train_pool": args.n_train, "n_test": args.n_test,
        "val_fraction": args.val_fraction,
        "sets": {name: {"pool": pool, "n": n, "seed": args.seed + _SEED_OFFSETS[name]}
                 for name, (pool, n) in sets.items()},
        "train": "splits/train.txt", "val": "splits/val.txt",
        "test_in": "test_in/labels.txt", "test_heldout": "test_heldout/labels.txt",
    }
    manifest.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"style-shift benchmark in {out}: train on {out / 'splits/train.txt'}, select on "
          f"{out / 'splits/val.txt'}, test on {out / 'test_in'} and {out / 'test_heldout'}")
    return 0


def gap_table(rows: List[Dict[str, str]], test_in: str, test_heldout: str) -> str:
    """Markdown table of in-distribution vs held-out-style accuracy per model, from the rows of
    ``vinocr-eval``'s table.csv."""
    by_model: Dict[str, Dict[str, Dict[str, str]]] = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["dataset"]] = row
    lines = ["| model | in-distribution seq_acc | held-out-style seq_acc | gap (points) | "
             "held-out ece | held-out vs first (p) |", "|---|---|---|---|---|---|"]
    for model, per_set in by_model.items():
        a, b = per_set.get(test_in), per_set.get(test_heldout)
        if a is None or b is None:
            continue
        acc_in, acc_out = float(a["seq_acc"]), float(b["seq_acc"])
        versus = f"{b['vs_first']} ({float(b['p_vs_first']):.2g})" if b.get("vs_first") else "-"
        lines.append(f"| {model} | {acc_in:.4f} | {acc_out:.4f} | "
                     f"{100 * (acc_in - acc_out):.1f} | {float(b['ece']):.4f} | {versus} |")
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    from vinocr.cli.eval import main as eval_main

    data = Path(args.data)
    if not (data / MANIFEST).is_file():
        raise VinocrError(f"{data}: no {MANIFEST}; write the benchmark with '{PROG} data' first")
    record = json.loads((data / MANIFEST).read_text(encoding="utf-8"))
    test_in, test_heldout = str(data / record["test_in"]), str(data / record["test_heldout"])
    out = Path(args.out)
    argv = ["--models", *args.models, "--data", test_in, test_heldout, "--out", str(out),
            "--batch-size", str(args.batch_size)]
    if args.config:
        argv = ["-c", *args.config] + (["-o", *args.opt] if args.opt else []) + argv
    if eval_main(argv) != 0:
        return 2
    with (out / "table.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    table = gap_table(rows, test_in, test_heldout)
    (out / "style_shift.md").write_text(table + "\n", encoding="utf-8")
    print("\nstyle shift (in-distribution: train pool; held-out: fonts, materials and damage "
          "training never saw)")
    print(table)
    return 0


def crop_materials(synth_dir: Path) -> Dict[int, Tuple[str, str]]:
    """``{index: (label, material)}`` of every crop of a finished ``vinocr-synth vin`` folder,
    re-drawn from its ``synth.json`` (the generator is deterministic per seed and index)."""
    from vinocr.data.provenance import SETTINGS_FILE, synth_settings
    from vinocr.data.synth import make_vin_sample

    path = synth_dir / SETTINGS_FILE
    settings = synth_settings(synth_dir)
    if (settings is None or settings.get("kind") != "vin"
            or not all(isinstance(settings.get(k), int) for k in ("seed", "n"))):
        raise VinocrError(f"{path}: expected the settings of a finished 'vinocr-synth vin' "
                          "folder (kind vin, seed, n, complete)")
    seed, pool, styles = settings["seed"], settings.get("pool", "all"), settings.get("styles")
    prob = settings.get("delimiter_prob", 0.3)
    out = {}
    for i in range(int(settings["n"])):
        _, label, meta = make_vin_sample(seed, i, styles, prob, pool)
        out[i] = (label, meta["style"])
    return out


def material_table(materials: Dict[int, Tuple[str, str]],
                   predictions: List[Tuple[str, List[Dict[str, str]]]]) -> str:
    """Markdown table of sequence accuracy per material (rows) and model (columns)."""
    counts: Dict[str, Dict[str, List[int]]] = {}
    for name, rows in predictions:
        for k, row in enumerate(rows, 2):
            try:
                index = int(Path(row["path"]).stem)
                label, material = materials[index]
            except (KeyError, ValueError):
                raise VinocrError(f"{name} line {k}: {row.get('path')!r} is not a crop of the "
                                  "--synth folder") from None
            if row.get("label") != label:
                raise VinocrError(f"{name} line {k}: label {row.get('label')!r}, but the --synth "
                                  f"folder drew {label!r} for that crop; predict its labels.txt")
            hit = counts.setdefault(material, {}).setdefault(name, [0, 0])
            hit[0] += row.get("correct") == "True"
            hit[1] += 1
    names = [name for name, _ in predictions]
    lines = ["| material | crops | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for material in sorted(counts):
        n = max(c[1] for c in counts[material].values())
        cells = [f"{c[0] / c[1]:.3f}" if (c := counts[material].get(name)) else "-"
                 for name in names]
        lines.append(f"| {material} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cmd_materials(args: argparse.Namespace) -> int:
    materials = crop_materials(Path(args.synth))
    from vinocr.cli.predict import read_csv

    predictions = [(path, read_csv(path, ("path", "label", "correct")))
                   for path in args.predictions]
    print(material_table(materials, predictions))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="write the training, validation and two test sets")
    p.add_argument("--out", required=True, help="benchmark folder")
    p.add_argument("--n-train", type=positive_int, default=2400,
                   help="train-pool crops, split into train and val (default 2400)")
    p.add_argument("--n-test", type=positive_int, default=600,
                   help="crops in each test set (default 600)")
    p.add_argument("--val-fraction", type=float, default=0.15,
                   help="share of the train-pool crops kept for validation (default 0.15)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="base seed (default 0)")
    p.add_argument("--workers", type=positive_int, default=1, help="generator processes")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier benchmark")
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("eval", help="in-distribution vs held-out-style accuracy of models")
    add_config_options(p, use="charset, decoder, image shape and the 'pretrained' model")
    p.add_argument("--data", required=True, help="benchmark folder written by 'data'")
    p.add_argument("--models", nargs="+", required=True,
                   help="'pretrained', run dirs, checkpoints or exports (the first is the "
                   "reference of the paired comparison)")
    p.add_argument("--out", required=True, help="folder for vinocr-eval's outputs")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("materials", help="sequence accuracy per material of a vinocr-synth "
                       "folder, from vinocr-predict CSVs")
    p.add_argument("--synth", required=True, help="the 'vinocr-synth vin' folder the CSVs read")
    p.add_argument("--predictions", nargs="+", required=True,
                   help="'vinocr-predict --format csv' outputs of its labels.txt, one per model")
    p.set_defaults(func=cmd_materials)
    return parser


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "data" and not 0.0 < args.val_fraction < 1.0:
        raise VinocrError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
