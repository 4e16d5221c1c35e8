#!/usr/bin/env python
"""Depthwise convolution on CPU: Paddle's conv2d vs vinocr's custom op (vinocr.ops).

    python tools/bench_dwconv.py --threads 2 --batch 32

Part 1: forward + backward (grad input, weight, bias) of single depthwise convs at batch 32:
the three shapes of docs/the reference (64ch 3x3 24x160, 256ch 5x5 12x80, 480ch 5x5 6x40)
and the strided convs of PP-OCRv4 at 48x320. Part 2: a full PP-OCRv4 deploy-form training
step (forward + CTC + backward + AdamW, batch 32, 3x48x320) with and without
``use_fast_depthwise``. Paddle and the custom op are measured alternately (the machine may
be shared); medians are reported. Prints Markdown.

``--threads`` sets OMP_NUM_THREADS (Paddle's own kernels) and, unless ``--op-threads`` is
given, the custom op's thread count (VINOCR_NUM_THREADS).
"""
import argparse
import os
import sys
import time


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS (Paddle's kernels)")
    p.add_argument("--op-threads", type=int, default=None,
                   help="threads of the custom op (default: --threads)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per conv shape")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per variant")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--skip-model", action="store_true", help="only the single-conv table")
    p.add_argument("--skip-convs", action="store_true", help="only the training-step table")
    return p.parse_args()


ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None:
    os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
    os.environ["VINOCR_NUM_THREADS"] = str(ARGS.op_threads or ARGS.threads)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vinocr  # noqa: E402,F401
import numpy as np  # noqa: E402
import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402

from vinocr.ops import build_info, depthwise_conv2d, fast_depthwise_available  # noqa: E402
from vinocr.ops import use_fast_depthwise  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import training_step  # noqa: E402  (the same step bench_train times)

# (channels, kernel, H, W, stride): the reference's three shapes, then the strided depthwise
# convs of PP-OCRv4 (scale 0.95) at 48x320.
SHAPES = [
    (64, 3, 24, 160, (1, 1)),
    (256, 5, 12, 80, (1, 1)),
    (480, 5, 6, 40, (1, 1)),
    (64, 3, 24, 160, (2, 1)),
    (128, 3, 12, 160, (1, 2)),
    (240, 5, 12, 80, (2, 1)),
    (480, 5, 6, 80, (2, 1)),
]


def conv_step(fast: bool, x, w, b, stride, pad, gy) -> float:
    for t in (x, w, b):
        t.clear_gradient()
    start = time.perf_counter()
    if fast:
        y = depthwise_conv2d(x, w, b, stride, pad)
    else:
        y = F.conv2d(x, w, b, stride=stride, padding=pad, groups=w.shape[0])
    y.backward(gy)
    _ = b.grad.numpy()  # make sure the work is done
    return time.perf_counter() - start


def bench_convs(batch: int, repeats: int) -> list:
    rng = np.random.default_rng(0)
    print("| depthwise conv (batch %d) | stride | Paddle fwd+bwd ms | custom fwd+bwd ms | "
          "speedup | custom GFLOP/s |" % batch)
    print("|---|---|---|---|---|---|")
    speedups = []
    for c, k, h, w_, stride in SHAPES:
        x = paddle.to_tensor(rng.standard_normal((batch, c, h, w_)).astype("float32"),
                             stop_gradient=False)
        w = paddle.to_tensor(rng.standard_normal((c, 1, k, k)).astype("float32") * 0.1,
                             stop_gradient=False)
        b = paddle.to_tensor(np.zeros(c, "float32"), stop_gradient=False)
        ho, wo = (h + 2 * (k // 2) - k) // stride[0] + 1, (w_ + 2 * (k // 2) - k) // stride[1] + 1
        gy = paddle.to_tensor(rng.standard_normal((batch, c, ho, wo)).astype("float32"))
        times = {True: [], False: []}
        for fast in (True, False):  # warm-up
            conv_step(fast, x, w, b, stride, k // 2, gy)
        for _ in range(repeats):
            for fast in (False, True):
                times[fast].append(conv_step(fast, x, w, b, stride, k // 2, gy))
        tp, tf = float(np.median(times[False])), float(np.median(times[True]))
        flops = 3 * 2.0 * batch * c * ho * wo * k * k  # fwd, grad input, grad weight
        speedups.append(tp / tf)
        print(f"| {c}ch {k}x{k} {h}x{w_} | {stride[0]},{stride[1]} | {tp * 1e3:.0f} | "
              f"{tf * 1e3:.1f} | {tp / tf:.1f}x | {flops / tf / 1e9:.1f} |", flush=True)
    geo = float(np.exp(np.mean(np.log(speedups))))
    print(f"\ngeometric mean speedup: {geo:.1f}x\n")
    return speedups


def bench_model(batch: int, steps: int, width: int) -> float:
    from vinocr.models import build_model

    paddle.seed(0)
    model = build_model("ppocrv4_mobile", 35, deploy=True)
    step = training_step(model, batch, width)

    times = {True: [], False: []}
    n_fast = 0
    for i in range(steps + 1):  # first round: warm-up
        for fast in (False, True):
            n = use_fast_depthwise(model, enabled=fast)
            if fast:
                n_fast = n
            t = step()
            if i > 0:
                times[fast].append(t)
    tp, tf = float(np.median(times[False])), float(np.median(times[True]))
    print(f"| PP-OCRv4 mobile deploy form, fwd+CTC+bwd+AdamW, batch {batch}, 48x{width} "
          f"| s/step | images/s |")
    print("|---|---|---|")
    print(f"| Paddle conv2d | {tp:.2f} | {batch / tp:.2f} |")
    print(f"| custom op ({n_fast} depthwise convs switched) | {tf:.2f} | {batch / tf:.2f} |")
    print(f"\ntraining step speedup: {tp / tf:.2f}x (median of {steps} steps each, alternated, "
          f"after 1 warm-up)")
    return tp / tf


def main() -> int:
    args = ARGS or parse()
    if not fast_depthwise_available():
        print(f"custom op unavailable: {build_info()['error']}")
        return 1
    info = build_info()
    print(f"threads: OMP_NUM_THREADS={args.threads}, custom op {args.op_threads or args.threads}; cores "
          f"{os.cpu_count()}, Paddle {paddle.__version__}; op flags: {' '.join(info['flags'])}; "
          f"medians of {args.repeats} alternated runs\n")
    if not args.skip_convs:
        bench_convs(args.batch, args.repeats)
    if not args.skip_model:
        bench_model(args.batch, args.steps, args.width)
    return 0


if __name__ == "__main__":
    sys.exit(main())
