#!/usr/bin/env python
"""Training throughput (images/s) of the recognisers on this machine: forward + CTC loss +
backward + AdamW step at 3x48x320, synthetic inputs and labels.

    python tools/bench_train.py --batch 32 --steps 3

Rows: PP-OCRv4 mobile in deploy form (what vinocr fine-tunes), in training form (4 k x k
branches per layer, as PaddleOCR trains it), and the CRNN baseline. Figures go to
docs/performance.md. ``--arch ppocrv4_mobile ppocrv6_small`` times each base in the same run
(their synthetic steps taken in turn, so a load that comes and goes hits both alike; the Trainer
rows fine-tune each base's built-in weights, ``Architecture.name`` with ``pretrained: auto``;
docs/models.md). PP-OCRv5 mobile is the v4 network, so its speed is v4's.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vinocr  # noqa: E402,F401
import numpy as np  # noqa: E402
import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402

from vinocr.engine.optim import build_optimizer  # noqa: E402
from vinocr.models import build_model  # noqa: E402


def training_step(model, batch: int, width: int):
    """A callable running one synthetic training step (forward, CTC, backward, AdamW) of
    ``model`` at 3x48x``width`` and returning its seconds; shared with tools/bench_dwconv.py."""
    model.train()
    opt = build_optimizer({"name": "adamw", "lr": 1e-4}, model, 1e-4)
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.uniform(-1, 1, (batch, 3, 48, width)).astype("float32"))
    labels = paddle.to_tensor(rng.integers(1, 34, (batch, 17)).astype("int32"))

    def step() -> float:
        start = time.perf_counter()
        logits = model(x)
        loss = F.ctc_loss(logits.transpose([1, 0, 2]), labels,
                          paddle.full([batch], logits.shape[1], "int64"),
                          paddle.full([batch], 17, "int64"), blank=0, reduction="mean")
        loss.backward()
        opt.step()
        opt.clear_grad()
        return time.perf_counter() - start

    return step


def bench(rows, batch: int, steps: int, warmup: int, width: int) -> None:
    """One table row per ``(name, model)``; the models take their steps in turn."""
    runners = [(name, training_step(model, batch, width)) for name, model in rows]
    times = {name: [] for name, _ in rows}
    for i in range(warmup + steps):
        for name, step in runners:
            seconds = step()
            if i >= warmup:
                times[name].append(seconds)
    for name, _ in rows:
        median = float(np.median(times[name]))
        print(f"| {name} | {batch} | {median:.2f} | {batch / median:.2f} |", flush=True)


def trainer_throughput(name: str, technique: str, cache: bool, epochs: int, n: int,
                       batch: int, nproc: int, work: str, arch: str = "ppocrv4_mobile") -> float:
    """End-to-end images/s of ``vinocr-finetune --nproc N`` (data loading, cache building and
    validation-free epochs included; process launch excluded) fine-tuning the pretrained PP-OCRv4
    on ``n`` synthetic VIN crops. ``batch`` is the global batch, split over the processes."""
    import json
    import subprocess

    from vinocr.data.synth.writer import generate_vin_dataset

    data = os.path.join(work, "data")
    if not os.path.exists(os.path.join(data, "labels.txt")):
        generate_vin_dataset(data, n, seed=0)
    run = os.path.join(work, f"{arch}_{name.split(',')[0].replace(' ', '_')}_{int(cache)}_{nproc}")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.join(repo, "tools", "finetune.py"),
           "-c", os.path.join(repo, "configs", "vin", "ppocrv4_mobile.yml"),
           "--technique", technique, "--nproc", str(nproc), "--log-level", "WARNING", "-o",
           f"Global.run_dir={run}", "Global.visualdl=false", f"Train.batch_size={batch}",
           "Train.num_workers=0", f"Train.epochs={epochs}", "Train.drop_last=false",
           f"Train.feature_cache.enabled={str(cache).lower()}", "Train.feature_cache.views=2",
           "Train.dataset={type: label_file, label_files: [%s]}" % os.path.join(data, "labels.txt"),
           "Eval.dataset=null", f"Architecture.name={arch}"]
    env = dict(os.environ, VINOCR_NO_PROGRESS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{name}: vinocr-finetune failed:\n{res.stderr[-3000:]}")
    with open(os.path.join(run, "report.json"), encoding="utf-8") as fh:
        report = json.load(fh)
    ips = report["timing"]["train_images_per_sec"]
    build = report["timing"]["feature_cache_build_seconds"]
    extra = f" (cache build {build:.1f} s included)" if build else ""
    print(f"| {arch} | {name} | {nproc} | {batch} | {epochs} x {n} | {ips:.2f}{extra} |",
          flush=True)
    return ips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--skip-train-form", action="store_true")
    parser.add_argument("--arch", nargs="+", choices=("ppocrv4_mobile", "ppocrv6_small"),
                        default=["ppocrv4_mobile"], help="the pretrained networks timed")
    parser.add_argument("--techniques", nargs="+", default=None,
                        help="only these Trainer rows (full, lora, frozen_backbone)")
    parser.add_argument("--trainer", action="store_true",
                        help="also time vinocr's Trainer end to end: frozen backbone without and "
                        "with the feature cache (5 epochs, cache build amortised) and LoRA")
    parser.add_argument("--trainer-samples", type=int, default=96)
    parser.add_argument("--trainer-nproc", type=int, nargs="+", default=[1, 2],
                        help="process counts for the Trainer rows (vinocr-finetune --nproc)")
    parser.add_argument("--only-trainer", action="store_true",
                        help="skip the synthetic-step rows")
    args = parser.parse_args()
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"cores {os.cpu_count()}; median of {args.steps} steps after {args.warmup} warm-up\n")
    if args.only_trainer:
        args.trainer = True
    if not args.only_trainer:
        print("| model | batch | s/step | images/s |")
        print("|---|---|---|---|")
        paddle.seed(0)
        rows = []
        if "ppocrv4_mobile" in args.arch:
            rows.append(("PP-OCRv4 mobile, deploy form, all trainable",
                         build_model("ppocrv4_mobile", 35, deploy=True)))
            if not args.skip_train_form:
                rows.append(("PP-OCRv4 mobile, training form (4 branches), all trainable",
                             build_model("ppocrv4_mobile", 35, deploy=False)))
        if "ppocrv6_small" in args.arch:
            rows.append(("PP-OCRv6 small, all trainable", build_model("ppocrv6_small", 35)))
        rows.append(("CRNN baseline (hidden 128), all trainable", build_model("crnn", 35)))
        bench(rows, args.batch, args.steps, args.warmup, args.width)
    if args.trainer:
        import tempfile

        work = tempfile.mkdtemp(prefix="vinocr_bench_train_")
        n = args.trainer_samples
        print("\nEnd to end through the Trainer (pretrained base, VIN head, synthetic VIN "
              "crops, no validation):\n")
        print("| base | technique | processes | global batch | epochs x samples | images/s |")
        print("|---|---|---|---|---|---|")
        rows = [("frozen_backbone, no cache", "frozen_backbone", False, 5),
                ("frozen_backbone, feature cache (2 views)", "frozen_backbone", True, 5),
                ("lora (neck + 1x1 convs)", "lora", False, 2),
                ("full", "full", False, 1)]
        for label, technique, cache, epochs in rows:
            if args.techniques and technique not in args.techniques:
                continue
            for nproc in args.trainer_nproc:
                for arch in args.arch:  # in turn, as the synthetic steps
                    trainer_throughput(label, technique, cache, epochs, n, args.batch, nproc,
                                       work, arch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
