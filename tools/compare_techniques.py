#!/usr/bin/env python
"""Train every technique at several training-set sizes with the same optimizer-step budget and
evaluate on the same hard validation set; print (and optionally write) a Markdown table.

    python tools/compare_techniques.py --sizes 200 1000 5000 --steps 40 --batch 16 --val 200 \\
        --out docs/techniques.md
    # budgets side by side (what the auto picker's steps rule is measured with):
    python tools/compare_techniques.py --sizes 1000 --steps 80 200 400 \\
        --techniques lora+label_smoothing full+label_smoothing

- Training data: synthetic VIN crops (``vinocr-synth`` styles, seed 1), the first N for size N.
- Validation: ``--val`` separate crops (seed 2), each with 3 VIN-preset augmentations and a 45-70%
  downscale. This is a hard set, the same for every row.
- Every run fine-tunes the pretrained PP-OCRv4 (VIN head by transfer) from the default recipe
  ``configs/vin/ppocrv4_mobile.yml``, for exactly ``--steps`` optimizer steps (each value of
  ``--steps`` is its own budget; the LR schedule spans the budget).
- Evaluation uses the recipe's VIN-grammar decoder, once at the end. ``vs zero-shot`` compares
  each run with the zero-shot model crop by crop: crops it fixed (+), crops it broke (-), and
  McNemar's exact p-value for that split.
- ``distillation``'s teacher is the ``full`` run of the same size and budget (same architecture, fine-tuned
  with the same budget; its training time is not in the distillation row's wall time), so
  ``full`` must come before it in ``--techniques``.
"""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vinocr  # noqa: E402,F401
import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TECHNIQUES = ["full", "frozen_backbone", "discriminative_lr", "gradual_unfreeze", "lora",
                      "distillation", "auto+label_smoothing"]


def hard_val_set(out: str, n: int) -> str:
    from vinocr.data.augment import build_augment
    from vinocr.data.base import encode_image
    from vinocr.data.synth import random_vin, render_vin

    labels = os.path.join(out, "labels.txt")
    if os.path.exists(labels):
        return labels
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    augment = build_augment({"preset": "vin", "p": 1.0, "num_ops": 3})
    lines = []
    for i in range(n):
        rng = np.random.default_rng([2, i])
        vin = random_vin(rng)
        image = augment(render_vin(vin, rng)[0], rng)
        h, w = image.shape[:2]
        f = rng.uniform(0.45, 0.7)
        small = cv2.resize(image, (max(1, int(w * f)), max(1, int(h * f))),
                           interpolation=cv2.INTER_AREA)
        image = cv2.resize(small, (w, h))
        with open(os.path.join(out, "images", f"{i:06d}.png"), "wb") as fh:
            fh.write(encode_image(image))
        lines.append(f"images/{i:06d}.png\t{vin}")
    with open(labels, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return labels


def subset(pool_labels: str, n: int, out: str) -> str:
    path = os.path.join(out, f"train_{n}.txt")
    with open(pool_labels, encoding="utf-8") as fh:
        lines = [l for l in fh.read().splitlines() if l][:n]
    rel = os.path.relpath(os.path.dirname(pool_labels), out)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(f"{rel}/{l}" for l in lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--steps", type=int, nargs="+", default=[40],
                        help="optimizer steps per run; several values: each is a budget")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--techniques", nargs="+", default=DEFAULT_TECHNIQUES)
    parser.add_argument("--work", default="/tmp/vinocr_compare_techniques")
    parser.add_argument("--out", help="also append the table to this Markdown file")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="extra config overrides for every training run (the -o syntax), "
                        "e.g. 'Train.augment.num_ops=3'")
    args = parser.parse_args()

    from techniques import build_technique
    from vinocr.cli.eval import evaluate_one
    from vinocr.engine.model_loading import LoadedModel, load_trained
    from vinocr.config import load_config
    from vinocr.data.registry import open_dataset
    from vinocr.data.synth.writer import generate_vin_dataset
    from vinocr.engine.evaluation import paired_comparison
    from vinocr.engine.trainer import Trainer

    os.makedirs(args.work, exist_ok=True)
    pool = os.path.join(args.work, "pool")
    if not os.path.exists(os.path.join(pool, "labels.txt")):
        generate_vin_dataset(pool, max(args.sizes), seed=1, workers=2)
    val_labels = hard_val_set(os.path.join(args.work, "val"), args.val)
    recipe = os.path.join(REPO, "configs", "vin", "ppocrv4_mobile.yml")
    base = load_config(recipe)
    val = open_dataset(val_labels, charset="vin")

    def evaluate(loaded: LoadedModel) -> dict:
        return evaluate_one(loaded, val, base["Decode"], base["Global"]["image_shape"],
                            two_row_max_aspect=base["Global"]["two_row_max_aspect"])

    def teacher_options(tech: str, n: int, steps: int) -> list:
        if tech.split("+")[0] != "distillation":
            return []
        teacher = os.path.join(args.work, f"run_{n}_{steps}_full")
        if not os.path.isdir(teacher):
            raise SystemExit("distillation needs the 'full' run of the same size and steps as its "
                             "teacher: list full before distillation in --techniques")
        return [f"Technique.teacher_config={recipe}", f"Technique.teacher_checkpoint={teacher}"]

    def run_one(n: int, steps: int, epochs: int, train: str, tech: str) -> tuple:
        run = os.path.join(args.work, f"run_{n}_{steps}_{tech.replace('+', '_')}")
        cfg = load_config(recipe, [
            f"Global.run_dir={run}", "Global.visualdl=false",
            f"Train.dataset={{type: label_file, label_files: [{train}]}}", "Eval.dataset=null",
            f"Train.epochs={epochs}", f"Train.max_steps={steps}",
            f"Train.batch_size={args.batch}", "Train.num_workers=0",
            f"Technique.name={tech}"] + teacher_options(tech, n, steps) + list(args.set))
        start = time.perf_counter()
        trainer = Trainer(cfg, hooks=build_technique(cfg["Technique"]))
        report = trainer.fit()
        wall = time.perf_counter() - start
        chosen = report["technique"]
        if tech.startswith("auto"):
            parts = chosen.get("parts", [chosen])
            chosen_name = "+".join(p.get("chosen", p.get("name", "?")) for p in parts)
        else:
            chosen_name = tech
        ev = evaluate(load_trained(run))
        result = ev["result"]
        # Sample by sample against zero-shot on the same crops: fixed / broken, McNemar p.
        vs_zero = paired_comparison(zero["preds"], ev["preds"], ev["labels"]).text()
        print(f"size {n} steps {steps} {tech}: seq {result.seq_acc:.3f} char "
              f"{result.char_acc:.3f} wall {wall:.0f}s trainable {report['model']['trainable']}",
              flush=True)
        return (n, steps, tech if chosen_name == tech else f"{tech} -> {chosen_name}",
                result.seq_acc, result.char_acc, vs_zero, wall, report["model"]["trainable"],
                f"{report['timing']['train_images_per_sec']:.1f}")

    rows = []
    zero = evaluate(load_trained("pretrained", base))
    z = zero["result"]
    rows.append(("-", "-", "zero-shot (no training)", z.seq_acc, z.char_acc, "-", 0.0, 0, "-"))
    print(f"zero-shot: seq {z.seq_acc:.3f} char {z.char_acc:.3f}", flush=True)
    for n in args.sizes:
        train = subset(os.path.join(pool, "labels.txt"), n, args.work)
        for steps in args.steps:
            epochs = max(1, math.ceil(steps * args.batch / n))
            for tech in args.techniques:
                rows.append(run_one(n, steps, epochs, train, tech))
    settings = f" Overrides: `{' '.join(args.set)}`." if args.set else ""
    budgets = " or ".join(str(s) for s in args.steps)
    lines = [f"{budgets} optimizer steps of batch {args.batch} per run; hard validation set of "
             f"{args.val} crops; VIN-grammar decoding.{settings}", "",
             "| train size | steps | technique | seq acc | char acc | vs zero-shot | wall s | "
             "trainable params | train images/s |", "|---|---|---|---|---|---|---|---|---|"]
    for n, steps, tech, seq, char, vs_zero, wall, trainable, ips in rows:
        lines.append(f"| {n} | {steps} | {tech} | {seq:.3f} | {char:.3f} | {vs_zero} | "
                     f"{wall:.0f} | {trainable:,} | {ips} |")
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write("\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
