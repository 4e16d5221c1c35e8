#!/usr/bin/env python
"""Where inference time goes: per-operator time of one exported model under Paddle inference
(oneDNN) and under onnxruntime, batch 1 at the model's input size, one thread.

    python tools/profile_infer.py --model exported/vin --runs 50

Both engines run the same graph (``inference.json`` and the ``inference.onnx`` converted from
it), so differences are the engines' kernels. Each engine's own profiler is used (Paddle's
``Config.enable_profile``, onnxruntime's ``enable_profiling``); the profilers add overhead, so
compare shares and op against op, and take latency from ``vinocr-bench``.
"""
import argparse
import collections
import io
import json
import os
import re
import sys
import tempfile
from contextlib import redirect_stdout

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vinocr  # noqa: E402,F401  (silences Paddle's import-time noise first)
import numpy as np  # noqa: E402


def onnxruntime_profile(path: str, x: np.ndarray, runs: int, threads: int) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="vinocr_prof_"), "ort")
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(runs):
        session.run(None, {name: x})
    with open(session.end_profiling()) as fh:
        events = json.load(fh)
    per_op = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1000.0 / runs  # us -> ms per run
    return per_op


def paddle_profile(model_dir: str, x: np.ndarray, runs: int, threads: int) -> dict:
    """Paddle prints its profile table to the C-level stdout when the predictor is destroyed;
    it is captured through a pipe on file descriptor 1."""
    from paddle import inference

    config = inference.Config(os.path.join(model_dir, "inference.json"),
                              os.path.join(model_dir, "inference.pdiparams"))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(threads)
    config.enable_mkldnn()
    config.enable_profile()
    config.disable_glog_info()
    capture = tempfile.TemporaryFile(mode="w+b")
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(capture.fileno(), 1)
    cwd = os.getcwd()
    os.chdir(tempfile.mkdtemp(prefix="vinocr_prof_"))  # Paddle's profiler writes ./profile.log
    try:
        with redirect_stdout(io.StringIO()):
            predictor = inference.create_predictor(config)
            handle = predictor.get_input_handle(predictor.get_input_names()[0])
            for _ in range(runs):
                handle.reshape(list(x.shape))
                handle.copy_from_cpu(x)
                predictor.run()
            del predictor, handle
            import gc

            gc.collect()
    finally:
        os.chdir(cwd)
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    capture.seek(0)
    text = capture.read().decode("utf-8", "replace")
    per_op = collections.Counter()
    in_summary = False
    for line in text.splitlines():
        if "Event Summary" in line:
            in_summary = not per_op  # the first table is the per-op one
            continue
        m = re.match(r"^(\S+)\s+(\d+)\s+([\d.]+)\s", line)
        if in_summary and m and not line.startswith(" "):
            op = m.group(1).split("::")[-1]
            if op.startswith(("onednn_op.", "pd_op.")):
                per_op[op.split(".", 1)[1]] += float(m.group(3)) / runs
    return per_op


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="vinocr-export directory with "
                        "inference.onnx")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=8, help="operators listed per engine")
    args = parser.parse_args()

    from vinocr.predict import ONNX_FILE, read_model_info

    onnx_path = os.path.join(args.model, ONNX_FILE)
    if not os.path.isfile(onnx_path):
        print(f"{args.model}: no {ONNX_FILE}; export without --no-onnx", file=sys.stderr)
        return 2
    c, h, w = read_model_info(args.model).image_shape
    x = np.random.default_rng(0).uniform(-1, 1, (1, c, h, w)).astype("float32")
    model_dir = os.path.abspath(args.model)
    results = {"paddle (oneDNN)": paddle_profile(model_dir, x, args.runs, args.threads),
               "onnxruntime": onnxruntime_profile(onnx_path, x, args.runs, args.threads)}
    print(f"{args.model}: batch 1, {c}x{h}x{w}, {args.threads} thread(s), {args.runs} runs; "
          "ms per run inside each engine's profiler\n")
    for engine, per_op in results.items():
        total = sum(per_op.values())
        print(f"| {engine} operator | ms | share |\n|---|---|---|")
        for op, ms in per_op.most_common(args.top):
            print(f"| {op} | {ms:.2f} | {100 * ms / total:.0f}% |")
        print(f"| all operators | {total:.2f} | 100% |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
