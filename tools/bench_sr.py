#!/usr/bin/env python
"""SR training speed on this machine: images/s of one optimizer step per generator config and
stage (stage 1: generator + L1; stage 2: + LCOFL through the frozen PP-OCRv4 recogniser; stage 3:
recogniser weights train too).

    python tools/bench_sr.py --batch 16 --steps 3 --ocr-shape 3,48,144
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--configs", default="small,medium")
    p.add_argument("--stages", default="1,2,3")
    p.add_argument("--ocr-shape", default="3,48,144")
    p.add_argument("--frames", default="1",
                   help="comma list of LR frames per generator input (Generator.frames)")
    args = p.parse_args()

    import numpy as np
    import paddle

    from vinocr.charset import load_charset
    from vinocr.models.registry import build_model
    from vinocr.ops import fast_depthwise_available, use_fast_depthwise
    from vinocr.sr.generator import build_generator, count_parameters
    from vinocr.sr.lcofl import LCOFL, to_ocr_input

    shape = [int(v) for v in args.ocr_shape.split(",")]
    charset = load_charset("plate")
    rng = np.random.default_rng(0)
    lrs = {f: paddle.to_tensor(rng.random((args.batch, 3 * f, 16, 48)).astype("float32"))
           for f in (int(v) for v in args.frames.split(","))}
    hr = paddle.to_tensor(rng.random((args.batch, 3, 32, 96)).astype("float32"))
    texts, layouts = ["ABC1234"] * args.batch, ["Brazilian"] * args.batch
    print(f"batch {args.batch}, LR 16x48 -> 32x96, recogniser input {shape}, "
          f"paddle threads: 1 op thread; fast depthwise: {fast_depthwise_available()}")
    print("| generator | frames | parameters | stage | img/s |")
    print("|---|---|---|---|---|")
    runs = [(n, f, s) for n in args.configs.split(",") for f in lrs
            for s in (int(v) for v in args.stages.split(","))]
    for name, frames, stage in runs:
        lr = lrs[frames]
        paddle.seed(0)
        gen = build_generator(name, frames=frames)
        ocr = build_model("ppocrv4_mobile", num_classes=charset.num_classes)
        if fast_depthwise_available():
            use_fast_depthwise(ocr)
        ocr.eval()
        params = list(gen.parameters())
        for q in ocr.parameters():
            q.stop_gradient = stage != 3
        if stage == 3:
            params += list(ocr.parameters())
        opt = paddle.optimizer.Adam(1e-4, parameters=params)
        loss = LCOFL(charset.class_list())

        def step() -> None:
            sr = gen(lr)
            terms = loss.image_terms(sr, hr)
            if stage == 1:
                terms = {"l1": terms["l1"]}
            else:
                terms.update(loss.text_terms(ocr(to_ocr_input(sr, shape)), texts, layouts))
            loss.total(terms).backward()
            opt.step()
            opt.clear_grad()

        for _ in range(args.warmup):
            step()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        ips = args.batch * args.steps / (time.perf_counter() - t0)
        print(f"| {name} | {frames} | {count_parameters(gen):,} | {stage} | {ips:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
