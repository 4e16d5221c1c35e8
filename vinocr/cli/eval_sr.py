"""``vinocr-eval-sr``: does SR help the recogniser? Tables on held-out plate tracks.

    vinocr-eval-sr --sr runs/sr_lpasrn_small --data data/plates/test --out runs/sr_eval
    vinocr-eval-sr --sr runs/sr1 runs/sr5 --lr-ocr runs/ocr_lr --data data/plates/test

Rows: bicubic-upsampled LR and HR read by the recogniser fine-tuned on HR plates (``--ocr``,
default: the one the first SR run was trained with); ``--lr-ocr`` adds the alternative without
SR, a recogniser fine-tuned on the LR frames reading bicubic LR. Then, for every ``--sr`` model
(``SR (1 frame)`` super-resolves each frame alone, ``SR (5 frames)`` reads all of a track's
frames for each output), its output read by the HR recogniser and, when its stage 3 changed it,
by the jointly fine-tuned recogniser saved with it (which also reads bicubic LR). Columns:
per-frame word and character accuracy, per-track accuracy from one frame and from all frames
fused (summed per-step log-probabilities, character voting, summed sequence log-likelihoods),
the competition's confidence gap, PSNR and SSIM against HR.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from vinocr.cli.common import add_log_level, cli_entry, positive_int, setup_logging

PROG = "vinocr-eval-sr"
FUSION = ("single", "logprob", "vote", "sequence")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sr", required=True, nargs="+",
                   help="SR run or checkpoint directory, or 'builtin'; several (e.g. a "
                   "single-frame and a multi-frame generator) are compared on the same tracks")
    p.add_argument("--data", required=True, help="folder of LRLPR-26-style tracks")
    p.add_argument("--ocr", help="recogniser trained on HR (run/checkpoint dir); default: the "
                   "SR run's OCR.model")
    p.add_argument("--lr-ocr", help="also a recogniser fine-tuned on the LR frames themselves "
                   "(run/checkpoint dir): the no-SR alternative, read on bicubic LR")
    p.add_argument("--max-tracks", type=positive_int, help="evaluate only the first N tracks")
    p.add_argument("--decode", default=None,
                   help="decoder as JSON, e.g. '{\"method\": \"greedy\"}' (default: the SR "
                   "run's Decode section)")
    p.add_argument("--out", help="folder for table.md and results.json")
    add_log_level(p)
    return p


def _row(name: str, ocr_name: str, ev: Any, source: str) -> Dict[str, Any]:
    row: Dict[str, Any] = {"input": name, "recogniser": ocr_name,
                           "frame_word_acc": ev.frames[source]["seq_acc"],
                           "frame_char_acc": ev.frames[source]["char_acc"]}
    for method in FUSION:
        row[f"track_{method}"] = ev.tracks[f"{source}/{method}"]["seq_acc"]
    row["confidence_gap"] = ev.tracks[f"{source}/sequence"]["confidence_gap"]
    q = ev.quality.get(source)
    row["psnr"] = q["psnr"] if q else None
    row["ssim"] = q["ssim"] if q else None
    return row


def _sr_label(ck: Any, cks: List[Any]) -> str:
    """``SR (1 frame)`` / ``SR (5 frames)``; the run's name is added when two compared models
    read the same number of frames."""
    n = ck.generator.frames
    label = f"SR ({n} frame{'s' if n > 1 else ''})"
    if sum(c.generator.frames == n for c in cks) > 1:
        label += f" {ck.path.parent.name}/{ck.path.name}"
    return label


def markdown_table(rows: List[Dict[str, Any]], n_tracks: int, n_frames: int) -> str:
    head = ("| input | recogniser | frame word acc | frame char acc | track, 1 frame | "
            "track, per-step log-prob sum | track, vote | track, sequence log-prob sum | "
            "conf. gap (sequence) | PSNR (dB) | SSIM |")
    lines = [head, "|" + "---|" * 11]

    def pct(v: Optional[float]) -> str:
        return "–" if v is None else f"{100 * v:.1f}%"

    def num(v: Optional[float], fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    for r in rows:
        lines.append(
            f"| {r['input']} | {r['recogniser']} | {pct(r['frame_word_acc'])} | "
            f"{pct(r['frame_char_acc'])} | {pct(r['track_single'])} | {pct(r['track_logprob'])} "
            f"| {pct(r['track_vote'])} | {pct(r['track_sequence'])} | "
            f"{r['confidence_gap']:+.3f} | {num(r['psnr'], '.2f')} | "
            f"{num(r['ssim'], '.4f')} |")
    lines.append("")
    lines.append(f"{n_tracks} tracks, {n_frames} LR frames (one track = up to 5 LR frames).")
    return "\n".join(lines)


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from vinocr.decode import build_decoder
    from vinocr.engine.model_loading import load_trained
    from vinocr.errors import VinocrError
    from vinocr.sr.checkpoint_io import load_sr_checkpoint
    from vinocr.sr.data import SRPairs
    from vinocr.sr.evaluate import evaluate_sr

    cks = [load_sr_checkpoint(spec) for spec in args.sr]
    ck = cks[0]
    cfg = ck.state.get("config") or {}
    ocr_spec = args.ocr or (ck.state.get("ocr") or {}).get("model")
    if not ocr_spec:
        raise VinocrError("--ocr: required (the SR checkpoint does not name its recogniser)")
    hr_ocr = load_trained(ocr_spec)
    if hr_ocr.model is None:
        raise VinocrError(f"--ocr {ocr_spec}: give a run or checkpoint directory, not an export")
    shape = list(hr_ocr.config.get("Global", {}).get("image_shape", [3, 48, 320]))
    try:
        decode_cfg = json.loads(args.decode) if args.decode else cfg.get("Decode", {})
    except json.JSONDecodeError as exc:
        raise VinocrError(f"--decode: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(decode_cfg, dict):
        raise VinocrError(f"--decode: expected a JSON object, got {args.decode!r}")
    decoder = build_decoder(decode_cfg, hr_ocr.charset, key="--decode")
    grids = {(tuple(c.lr_shape), c.generator.scale) for c in cks}
    if len(grids) > 1:
        raise VinocrError(f"--sr: the SR models work on different grids {sorted(grids)}; "
                          "compare models of one LR shape and scale")
    data = SRPairs(args.data, lr_shape=ck.lr_shape, scale=ck.generator.scale,
                   max_tracks=args.max_tracks, allow_unregistered=True)
    ev = evaluate_sr(data, hr_ocr.model, shape, decoder, sources=("bicubic", "hr"),
                     fusion=FUSION)
    rows = [_row("bicubic LR", "OCR (HR)", ev, "bicubic")]
    if args.lr_ocr:
        lr_ocr = load_trained(args.lr_ocr)
        if lr_ocr.model is None:
            raise VinocrError(f"--lr-ocr {args.lr_ocr}: give a run or checkpoint directory")
        lr_shape = list(lr_ocr.config.get("Global", {}).get("image_shape", shape))
        lr_ev = evaluate_sr(data, lr_ocr.model, lr_shape,
                            build_decoder(decode_cfg, lr_ocr.charset, key="--decode"),
                            sources=("bicubic",), fusion=FUSION)
        rows.append(_row("bicubic LR", "OCR (LR-trained)", lr_ev, "bicubic"))
    labels = [_sr_label(c, cks) for c in cks]
    sr_rows: List[Dict[str, Any]] = []
    for c, label in zip(cks, labels):
        data.frames = c.generator.frames  # the generator's input: single frames or stacks
        sr_ev = evaluate_sr(data, hr_ocr.model, shape, decoder, generator=c.generator,
                            sources=("sr",), fusion=FUSION)
        ev.examples.setdefault("sr", sr_ev.examples["sr"])
        sr_rows.append(_row(label, "OCR (HR)", sr_ev, "sr"))
        if c.ocr is not None and int(c.state.get("stage", 0)) >= 3:
            joint = evaluate_sr(data, c.ocr, c.image_shape or shape, decoder,
                                generator=c.generator, sources=("bicubic", "sr"), fusion=FUSION,
                                quality=False)
            rows.append(_row("bicubic LR", f"OCR (joint with {label})", joint, "bicubic"))
            sr_rows.append(_row(label, "OCR (joint, stage 3)", joint, "sr"))
    rows += sr_rows + [_row("HR", "OCR (HR)", ev, "hr")]
    table = markdown_table(rows, ev.n_tracks, ev.n_frames)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text(table + "\n", encoding="utf-8")
        from vinocr.engine.visuals import save_png
        from vinocr.sr.visuals import comparison_grid

        ex = ev.examples
        grid = comparison_grid(ex["lr"]["images"], ex["sr"]["images"], ex["lr"]["hr"],
                               ex["lr"]["texts"], ex["sr"]["preds"])
        save_png(out / "examples.png", grid)
        (out / "results.json").write_text(json.dumps(
            {"sr": [str(c.path) for c in cks], "ocr": str(ocr_spec), "data": args.data,
             "rows": rows},
            indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
