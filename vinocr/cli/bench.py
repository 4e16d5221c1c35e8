"""``vinocr-bench``: latency and throughput of an exported model, Paddle inference (oneDNN) against
onnxruntime, as a Markdown table.

    vinocr-bench --model exported/vin --runs 100

For every backend x threads x batch size: the engine call alone (p50 / p95 ms per batch, images/s
from the mean) and the whole ``Recognizer`` pipeline (preprocessing + engine + the model's own
decoder, p50 ms and images/s). Inputs are random crops at the model's input size, so no padding is
involved. onnxruntime rows need ``inference.onnx`` in the directory; without it they are skipped
and the output says so.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from vinocr.cli.common import (QUIET, add_log_level, cli_entry, non_negative_int, positive_int,
                               setup_logging)

PROG = "vinocr-bench"

COLUMNS = ["backend", "threads", "batch", "p50 ms", "p95 ms", "images/s",
           "end-to-end p50 ms", "end-to-end images/s"]


def random_crops(n: int, height: int, width: int, seed: int = 0) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]


def time_recognizer(recognizer: Any, batch: int, runs: int, warmup: int) -> Dict[str, float]:
    """Engine and end-to-end timings of ``runs`` calls on ``batch`` crops."""
    _, height, width = recognizer.image_shape
    images = random_crops(batch, height, width)
    engine: List[float] = []
    total: List[float] = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        x = recognizer.preprocess(images)
        t1 = time.perf_counter()
        probs = recognizer.forward(x)
        t2 = time.perf_counter()
        recognizer.decode(probs)
        t3 = time.perf_counter()
        if i >= warmup:
            engine.append(t2 - t1)
            total.append(t3 - t0)
    e = np.array(engine) * 1000
    t = np.array(total) * 1000
    return {"p50": float(np.percentile(e, 50)), "p95": float(np.percentile(e, 95)),
            "ips": batch * 1000 / float(e.mean()), "e2e_p50": float(np.percentile(t, 50)),
            "e2e_ips": batch * 1000 / float(t.mean())}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Latency and throughput of an exported "
                                "model: Paddle inference (oneDNN) vs onnxruntime.")
    p.add_argument("--model", required=True, help="exported model directory")
    p.add_argument("--runs", type=positive_int, default=100, help="timed runs per row")
    p.add_argument("--warmup", type=non_negative_int, default=None,
                   help="untimed runs first (default: runs // 10, at least 1)")
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=positive_int, nargs="+", default=[1, 2])
    p.add_argument("--backends", nargs="+", choices=("paddle", "onnxruntime"),
                   default=["paddle", "onnxruntime"])
    p.add_argument("--out", help="also write the table to this Markdown file")
    add_log_level(p, QUIET)
    return p


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from vinocr.cli.predict import native_stdout_to_stderr
    from vinocr.predict import ONNX_FILE, Recognizer, read_model_info

    warmup = max(1, args.runs // 10) if args.warmup is None else args.warmup
    model_dir = Path(args.model)
    info = read_model_info(model_dir)
    notes: List[str] = []
    backends = list(dict.fromkeys(args.backends))
    if "onnxruntime" in backends:
        reason = None
        if not (model_dir / ONNX_FILE).is_file():
            reason = f"no {ONNX_FILE} in {model_dir}"
        else:
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                reason = "the onnxruntime package is not installed"
        if reason:
            backends.remove("onnxruntime")
            notes.append(f"onnxruntime: skipped ({reason})")
    rows: List[List[str]] = []
    for backend in backends:
        for threads in args.threads:
            with native_stdout_to_stderr():
                recognizer = Recognizer.from_dir(model_dir, backend=backend, threads=threads)
            for batch in args.batch_sizes:
                with native_stdout_to_stderr():
                    r = time_recognizer(recognizer, batch, args.runs, warmup)
                label = "paddle (oneDNN)" if backend == "paddle" else backend
                rows.append([label, str(threads), str(batch), f"{r['p50']:.2f}",
                             f"{r['p95']:.2f}", f"{r['ips']:.1f}", f"{r['e2e_p50']:.2f}",
                             f"{r['e2e_ips']:.1f}"])
    c, h, w = info.image_shape
    lines = [f"{model_dir}: input {c}x{h}x{w}, charset {info.charset.name} "
             f"({info.charset.num_classes} classes), decode {info.decode.get('method', 'greedy')}; "
             f"{args.runs} timed runs after {warmup} warm-up; engine = inference call only, "
             "end-to-end = preprocessing + engine + decoding", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if notes:
        lines += [""] + notes
    table = "\n".join(lines)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
