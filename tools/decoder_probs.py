#!/usr/bin/env python
"""Save recogniser outputs on a hard, noisy synthetic VIN set for tools/compare_decoders.py.

    python tools/decoder_probs.py --n 400 --seed 2024 --out /tmp/vin_probs.npz
    python tools/compare_decoders.py --probs /tmp/vin_probs.npz

The crops come from ``vinocr-synth`` styles, then each gets 3 VIN-preset augmentations plus a
downscale to 45-70% and back (blur, noise, perspective, JPEG), all seeded. The model is the
pretrained PP-OCRv4 recogniser with its VIN head made by vocabulary transfer, zero-shot (no
training), so the decoders are compared on a model that makes real mistakes.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vinocr  # noqa: E402,F401
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from vinocr.charset import load_charset  # noqa: E402
from vinocr.data.augment import build_augment  # noqa: E402
from vinocr.data.preprocess import resize_norm  # noqa: E402
from vinocr.data.synth import random_vin, render_vin  # noqa: E402
from vinocr.models.factory import model_from_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    augment = build_augment({"preset": "vin", "p": 1.0, "num_ops": 3})
    images, labels = [], []
    for i in range(args.n):
        rng = np.random.default_rng([args.seed, i])
        vin = random_vin(rng)
        image, _ = render_vin(vin, rng)
        image = augment(image, rng)
        h, w = image.shape[:2]
        f = rng.uniform(0.45, 0.7)
        small = cv2.resize(image, (max(1, int(w * f)), max(1, int(h * f))),
                           interpolation=cv2.INTER_AREA)
        image = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        images.append(resize_norm(image, (3, 48, 320))[0])
        labels.append(vin)
    model, _ = model_from_config({"name": "ppocrv4_mobile", "pretrained": "ppocrv4_mobile"}, "vin")
    model.eval()
    probs = []
    with paddle.no_grad():
        for s in range(0, args.n, 16):
            probs.append(model.predict_proba(paddle.to_tensor(np.stack(images[s:s + 16]))).numpy())
    classes = load_charset("vin").class_list()
    classes[0] = ""
    np.savez(args.out, probs=np.concatenate(probs).astype("float32"), labels=np.array(labels),
             classes=np.array(classes))
    print(f"wrote {args.out}: {args.n} samples, probs {np.concatenate(probs).shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
