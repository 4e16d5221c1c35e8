#!/usr/bin/env python
"""Batch-1 inference latency at 48x320: vinocr's exported Paddle predictor (oneDNN on) against
onnxruntime running the rapidocr PP-OCRv4 ONNX, side by side, with their ratio (target <= 1.0).

    python tools/bench_infer.py --runs 200

Both run the same network with the same 6625-class head (the import is exact), so the comparison
is engine against engine. The VIN head (35 classes) is timed too, because that is what a VIN user
exports.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vinocr  # noqa: E402,F401  (silences Paddle's import-time noise first)
import numpy as np  # noqa: E402


def percentiles(times_ms):
    arr = np.array(times_ms)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 95))


def time_fn(fn, runs: int, warmup: int):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - start))
    return percentiles(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import onnxruntime as ort

    from vinocr.charset import _rapidocr_rec_onnx
    from vinocr.export import export_inference, load_predictor
    from vinocr.models.factory import model_from_config

    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 48, 320)).astype("float32")
    work = tempfile.mkdtemp(prefix="vinocr_bench_")
    dirs = {}
    for charset in ("ppocr", "vin"):
        model, _ = model_from_config({"name": "ppocrv4_mobile", "pretrained": "ppocrv4_mobile"},
                                     charset)
        dirs[charset] = export_inference(model, os.path.join(work, charset), charset)

    print(f"batch 1, 3x48x320, {args.runs} runs after {args.warmup} warm-up; p50 / p95 in ms\n")
    print("| threads | onnxruntime (rapidocr ONNX, 6625 cl.) | vinocr Paddle oneDNN (6625 cl.) "
          "| ratio p50 (vinocr / ort) | vinocr Paddle oneDNN (VIN head, 35 cl.) |")
    print("|---|---|---|---|---|")
    for threads in args.threads:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(_rapidocr_rec_onnx()), opts,
                                    providers=["CPUExecutionProvider"])
        ort_p50, ort_p95 = time_fn(lambda: sess.run(None, {"x": x}), args.runs, args.warmup)
        results = {}
        for charset, d in dirs.items():
            predictor = load_predictor(d, threads=threads, mkldnn=True)
            handle = predictor.get_input_handle(predictor.get_input_names()[0])
            out = predictor.get_output_handle(predictor.get_output_names()[0])

            def run():
                handle.reshape(x.shape)
                handle.copy_from_cpu(x)
                predictor.run()
                out.copy_to_cpu()

            results[charset] = time_fn(run, args.runs, args.warmup)
        p50, p95 = results["ppocr"]
        v50, v95 = results["vin"]
        print(f"| {threads} | {ort_p50:.1f} / {ort_p95:.1f} | {p50:.1f} / {p95:.1f} | "
              f"{p50 / ort_p50:.2f} | {v50:.1f} / {v95:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
