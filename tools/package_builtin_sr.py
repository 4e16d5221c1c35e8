#!/usr/bin/env python3
"""Package a trained SR checkpoint as the pair shipped in vinocr (``--sr builtin``).

    python tools/package_builtin_sr.py RUN/stage3_epoch_2 --version plate-br-2026.12 \
        --description "small x2 generator + PP-OCRv4 mobile, Brazilian/Mercosur" \
        --commands commands.sh --figures figures.yml --overwrite

Writes ``vinocr/resources/sr/plate_br/`` (or ``--out``): the checkpoint's generator and recogniser
weights in float16 (``model.safetensors``; optimizer state is dropped), its ``state.json`` (what
rebuilds both networks) and ``builtin.yml`` (version, description, the commands that trained it,
its held-out figures as measured, and the weights' size). Refuses to replace an existing package
without ``--overwrite`` and refuses weights above ``--max-mb`` (10 MB: the package stays small).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vinocr.errors import VinocrError  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="SR checkpoint directory (or run directory: its best/)")
    p.add_argument("--version", required=True, help="version string recorded in builtin.yml")
    p.add_argument("--description", required=True)
    p.add_argument("--commands", required=True, help="text file: the commands that trained it")
    p.add_argument("--figures", required=True,
                   help="YAML file: held-out figures measured with the packaged weights")
    p.add_argument("--out", default=str(ROOT / "vinocr" / "resources" / "sr" / "plate_br"))
    p.add_argument("--max-mb", type=float, default=10.0)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)

    from vinocr.engine.checkpoint import load_checkpoint, save_checkpoint
    from vinocr.sr.builtin import INFO_FILE
    from vinocr.sr.checkpoint_io import resolve_sr_checkpoint

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise VinocrError(f"{out}: already holds a package; pass --overwrite to replace it")
    ck = load_checkpoint(resolve_sr_checkpoint(args.checkpoint))
    if ck.state.get("kind") != "vinocr-sr" or not any(k.startswith("ocr.")
                                                       for k in ck.model_state):
        raise VinocrError(f"{ck.path}: not an SR checkpoint with its recogniser")
    half = {k: (v.astype(np.float16) if v.dtype == np.float32 else v)
            for k, v in ck.model_state.items()}
    worst = max(float(np.abs(half[k].astype(np.float32) - v).max() /
                      max(float(np.abs(v).max()), 1e-12))
                for k, v in ck.model_state.items() if v.dtype == np.float32)
    figures = yaml.safe_load(Path(args.figures).read_text(encoding="utf-8"))
    commands = Path(args.commands).read_text(encoding="utf-8")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, half, ck.state)
    size_mb = (tmp / "model.safetensors").stat().st_size / 1e6
    if size_mb > args.max_mb:
        shutil.rmtree(tmp)
        raise VinocrError(f"packaged weights are {size_mb:.1f} MB, above --max-mb {args.max_mb}")
    info = {"version": args.version, "description": args.description,
            "source_checkpoint": ck.path.name, "stage": ck.state.get("stage"),
            "weights_mb": round(size_mb, 2), "float16_max_relative_error": float(f"{worst:.3g}"),
            "generator": (ck.state.get("generator") or {}).get("arch_kwargs"),
            "trained_with": commands.strip() + "\n", "held_out": figures}
    (tmp / INFO_FILE).write_text(yaml.safe_dump(info, sort_keys=False, allow_unicode=True),
                                 encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(f"packaged {ck.path} -> {out} ({size_mb:.2f} MB, float16 max relative error "
          f"{worst:.2g})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VinocrError as exc:
        print(f"package_builtin_sr: {exc}", file=sys.stderr)
        sys.exit(1)
