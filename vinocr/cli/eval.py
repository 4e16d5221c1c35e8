"""``vinocr-eval``: models x datasets -> one comparison table (Markdown + CSV), per-sample errors,
a confusion-matrix PNG and a grid of the worst errors per model.

Each model after the first is also compared sample by sample with the first on the same dataset
(and decoder): ``vs_first`` counts the samples it reads correctly where the first does not (+) and
the reverse (-), ``p_vs_first`` is McNemar's exact test on those counts (small: the difference is
unlikely to be chance), and ``same_as_first`` is the share of samples whose text is identical to
the first's, right or wrong (how faithful one export form is to another).

``ece`` is the expected calibration error of the read confidences (15 equal-width bins; 0: a read
at confidence 0.8 is right 80% of the time) and ``acc@90%cov`` / ``acc@95%cov`` the accuracy of
the 90% / 95% most confident reads, as if the rest went to human review. Confidences are
calibrated with the calibration the model carries (an aggregate of character confidences and a
temperature, fitted by the trainer on its Eval set or by ``vinocr-export --fit-temperature``; see
vinocr.calibration); ``--raw-confidence`` reports the uncalibrated ones (mean of characters).
Texts, and so accuracies, are the same either way.

    vinocr-eval -c configs/vin/ppocrv6_small.yml --models pretrained runs/vin/best \\
        --data data/vin/splits/test.txt --out eval_out

Exported directories can be run on several engines and decoders, one row each, e.g. the cost of
int8 under greedy and constrained decoding:

    vinocr-eval --models exported/vin --backends paddle onnxruntime onnxruntime-int8 \\
        --decoders greedy vin --data data/vin/splits/val.txt

With ``--tracks`` the datasets are plate tracks (LRLPR-26 layout) and a sample is a track: its LR
frames are read one by one and fused (``--fusion``, as ``vinocr-predict --tracks`` does), so
``seq_acc`` is the share of tracks read and ``vs_first`` pairs tracks; ``frame_acc`` is the share
of single frames read. A track's confidence is the fusion's (``vinocr.sr.fusion``), not the
calibrated read confidence. The worst-errors grid shows each track's first frame.

    vinocr-eval --tracks --models exported/plate_lr selftrain/export --data data/plates/test_b
"""
from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from vinocr.cli.common import (QUIET, add_config_options, add_log_level, cli_entry, positive_int,
                               setup_logging)
from vinocr.errors import VinocrError
from vinocr.decode.factory import METHODS as DECODE_METHODS
from vinocr.predict import BACKENDS
from vinocr.sr.fusion import METHODS as FUSION_METHODS

PROG = "vinocr-eval"
logger = logging.getLogger("vinocr.eval")

COLUMNS = ["model", "dataset", "n", "seq_acc", "char_acc", "ned", "cer",
           "check_digit_valid_rate", "confidence_gap", "ece", "acc@90%cov", "acc@95%cov",
           "per_position_acc", "frame_acc", "ms_per_image",
           "vs_first", "p_vs_first", "same_as_first"]


def table_row(model: str, dataset: str, r: Any, ms_per_image: float,
              vs_first: Optional[Any] = None, same: Optional[float] = None,
              frame_acc: Optional[float] = None) -> Dict[str, Any]:
    """One comparison-table row from an EvalResult (and a PairedComparison with the first
    model on the same dataset, if any; for tracks, the share of single frames read)."""
    return {"model": model, "dataset": dataset, "n": r.n, "seq_acc": r.seq_acc,
            "char_acc": r.char_acc, "ned": r.ned, "cer": r.cer,
            "check_digit_valid_rate": r.check_digit_valid_rate,
            "confidence_gap": r.confidence_gap,
            # how far the confidences can be trusted (vinocr.engine.evaluation.evaluate_texts)
            "ece": r.ece, "acc@90%cov": r.acc_at_90_coverage, "acc@95%cov": r.acc_at_95_coverage,
            # fixed-length codes (VINs, plates): accuracy at each character position
            "per_position_acc": (" ".join(f"{v:.2f}" for v in r.per_position_acc)
                                 if r.per_position_acc else None),
            "frame_acc": frame_acc, "ms_per_image": ms_per_image,
            "vs_first": vs_first.split if vs_first else None,
            "p_vs_first": vs_first.p_value if vs_first else None,
            "same_as_first": same}


def format_table(rows: List[Dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(row[c], c) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def evaluate_one(loaded: Any, dataset: Any, decode_cfg: Dict[str, Any], image_shape: List[int],
                 batch_size: int = 32, raw_confidence: bool = False,
                 two_row_max_aspect: float = 0.0) -> Dict[str, Any]:
    from vinocr.cli.model_io import make_reader
    from vinocr.engine.evaluation import evaluate_texts

    run, canonical = make_reader(loaded, decode_cfg, image_shape, raw_confidence,
                                 two_row_max_aspect)

    preds, confs, labels = [], [], []
    infer_time = 0.0
    for start in range(0, len(dataset), batch_size):
        idx = list(range(start, min(len(dataset), start + batch_size)))
        images = [dataset.load_image(i) for i in idx]
        t0 = time.perf_counter()  # preprocessing, inference and decoding; not image loading
        results = run(images)
        infer_time += time.perf_counter() - t0
        for r, i in zip(results, idx):
            preds.append(r.text)
            confs.append(r.confidence)
            # Scored as the decoder spells texts (plate formats: no separators, merged classes).
            labels.append(canonical(dataset.label(i)))
    result = evaluate_texts(preds, labels, confs, vin=loaded.charset.name == "vin")
    return {"result": result, "preds": preds, "labels": labels, "confidences": confs,
            "ms_per_image": 1000 * infer_time / max(1, len(dataset))}


class TrackFrames:
    """The tracks of an LRLPR reader seen as samples for the error grid: a track's first LR
    frame (rectified, as the model read it) and its plate text."""

    def __init__(self, tracks: Any) -> None:
        self.tracks = tracks

    def __len__(self) -> int:
        return len(self.tracks.tracks)

    def load_image(self, i: int) -> np.ndarray:
        return self.tracks.load_track(i)["lr"][0]

    def label(self, i: int) -> str:
        return self.tracks.tracks[i].text


def evaluate_tracks(loaded: Any, tracks: Any, decode_cfg: Dict[str, Any],
                    image_shape: Optional[List[int]], batch_size: int = 32,
                    method: str = "sequence", two_row_max_aspect: float = 0.0
                    ) -> Dict[str, Any]:
    """:func:`evaluate_one` for plate tracks: each track's frames read separately, then fused
    with ``method`` (:func:`vinocr.sr.fusion.recognise_track`); one prediction per track."""
    from vinocr.cli.model_io import make_prob_reader
    from vinocr.engine.evaluation import evaluate_texts
    from vinocr.sr.fusion import recognise_track

    # Exported models carry their input shape (image_shape None), checkpoints take the config's.
    probs, decoder = make_prob_reader(loaded, decode_cfg, image_shape,  # type: ignore[arg-type]
                                      two_row_max_aspect)
    preds, confs, labels = [], [], []
    frames_read = frames_total = 0
    infer_time = 0.0
    n = len(tracks.tracks)
    chunk = max(1, batch_size // 5)   # tracks per call: about batch_size frames
    for start in range(0, n, chunk):
        idx = range(start, min(n, start + chunk))
        frames = [tracks.load_track(j)["lr"] for j in idx]
        t0 = time.perf_counter()
        matrices = list(probs([im for track in frames for im in track]))
        results = []
        for track in frames:
            results.append(recognise_track(matrices[:len(track)], decoder, method))
            del matrices[:len(track)]
        infer_time += time.perf_counter() - t0
        for j, result in zip(idx, results):
            label = decoder.canonical(tracks.tracks[j].text)
            preds.append(result.text)
            confs.append(result.confidence)
            labels.append(label)
            frames_read += sum(text == label for text, _ in result.frames)
            frames_total += len(result.frames)
    result = evaluate_texts(preds, labels, confs, vin=loaded.charset.name == "vin")
    return {"result": result, "preds": preds, "labels": labels, "confidences": confs,
            "frame_acc": frames_read / max(1, frames_total),
            "ms_per_image": 1000 * infer_time / max(1, n)}


def fmt(value: Any, column: str = "") -> str:
    if value is None:
        return "-"
    if column == "p_vs_first":
        return f"{value:.2g}"  # p-values span orders of magnitude
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Compare recognisers on datasets.")
    add_config_options(p, use="charset, decoder, image shape, and the architecture of the "
                       "'pretrained' model")
    p.add_argument("--models", nargs="+", required=True,
                   help="'pretrained' (zero-shot), run dirs, checkpoint dirs and/or exported "
                   "model dirs (inference.json)")
    p.add_argument("--data", nargs="+", required=True, help="datasets (any vinocr format)")
    p.add_argument("--out", help="folder for table.md, table.csv, errors CSV and PNGs")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=["auto"],
                   help="engines for exported model dirs, one row each (default: auto)")
    p.add_argument("--decoders", nargs="+", choices=DECODE_METHODS,
                   help="decoders for exported model dirs, one row each (default: the one "
                   "inference.yml records)")
    p.add_argument("--raw-confidence", action="store_true",
                   help="report uncalibrated confidences, the mean of the characters' (default: "
                   "calibrated as the model's calibration record says, when it has one)")
    g = p.add_argument_group("tracks")
    g.add_argument("--tracks", action="store_true",
                   help="--data are plate-track folders (LRLPR-26 layout): a sample is a track, "
                        "its LR frames fused (ms_per_image is then per track)")
    g.add_argument("--fusion", choices=FUSION_METHODS, default="sequence",
                   help="with --tracks: how a track's frame reads are fused (default sequence, "
                        "as vinocr-predict --tracks)")
    add_log_level(p, QUIET)
    return p


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from vinocr.config import load_config
    from vinocr.data.registry import open_dataset
    from vinocr.engine.evaluation import paired_comparison
    from vinocr.engine.model_loading import load_trained
    from vinocr.engine.visuals import confusion_matrix_image, error_grid, save_png

    cfg = load_config(args.config, args.opt) if args.config else None
    rows: List[Dict[str, Any]] = []
    first: Dict[tuple, Dict[str, Any]] = {}  # (dataset, decoder) -> the first evaluation
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    track_sets: Dict[str, Any] = {}   # --tracks: each folder opened once
    if args.tracks:
        from vinocr.cli.predict import open_tracks

        for data in args.data:   # a folder without tracks fails before any model loads
            track_sets[data] = open_tracks(data, labelled=True)
    runs = []  # (model spec, backend, decoder): variants only for exported directories
    for spec in args.models:
        if (Path(spec) / "inference.json").is_file():
            runs += [(spec, b, d) for b in dict.fromkeys(args.backends)
                     for d in dict.fromkeys(args.decoders or [None])]
        else:
            runs.append((spec, "auto", None))
    for m_index, (spec, backend, decoder) in enumerate(runs):
        loaded = load_trained(spec, cfg, backend=backend, decode=decoder)
        model_cfg = cfg if cfg is not None else loaded.config
        decode_cfg = model_cfg.get("Decode", {"method": "greedy"})
        # Exported models carry their own input shape and decoder (inference.yml).
        image_shape = model_cfg["Global"]["image_shape"] if loaded.recognizer is None else None
        method = (loaded.recognizer.decode_config.get("method") if loaded.recognizer is not None
                  else decode_cfg.get("method", "greedy"))
        name = loaded.name if spec != "pretrained" else "zero-shot pretrained"
        if loaded.calibrated and not args.tracks:   # a fused track's confidence is the fusion's
            name += (" (raw confidence)" if args.raw_confidence
                     else f" (confidence {loaded.aggregate}, T={loaded.temperature:.3g}"
                     + ("" if loaded.check_digit_scale is None
                        else f", x{loaded.check_digit_scale:.3g} on check-digit failures")
                     + ")")
        if loaded.recognizer is not None and (len(args.backends) > 1 or args.decoders):
            name += f" [{loaded.recognizer.backend.name}, {method}]"
        two_row = model_cfg.get("Global", {}).get("two_row_max_aspect", 0.0)
        for d_index, data in enumerate(args.data):
            if args.tracks:
                tracks = track_sets[data]
                dataset = TrackFrames(tracks)
                ev = evaluate_tracks(loaded, tracks, decode_cfg, image_shape, args.batch_size,
                                     args.fusion, two_row)
            else:
                dataset = open_dataset(data, charset=loaded.charset)
                if len(dataset) == 0:
                    raise VinocrError(f"{data}: no usable samples for charset "
                                      f"{loaded.charset.name!r}")
                ev = evaluate_one(loaded, dataset, decode_cfg, image_shape, args.batch_size,
                                  args.raw_confidence, two_row)
            r = ev["result"]
            # The first row with the same decoder is the reference: an engine's fidelity is
            # judged under one decoder at a time.
            base = first.setdefault((d_index, method), ev)
            # Only when both read the same samples (a different charset can filter others out).
            comparable = base is not ev and base["labels"] == ev["labels"]
            vs_first = (paired_comparison(base["preds"], ev["preds"], ev["labels"])
                        if comparable else None)
            same = (float(np.mean([a == b for a, b in zip(base["preds"], ev["preds"])]))
                    if comparable else None)
            row = table_row(name, data, r, ev["ms_per_image"], vs_first, same,
                            ev.get("frame_acc"))
            rows.append(row)
            if out:
                tag = f"m{m_index}_d{d_index}"
                with (out / f"errors_{tag}.csv").open("w", newline="", encoding="utf-8") as fh:
                    writer = csv.writer(fh)
                    writer.writerow(["index", "label", "prediction", "confidence"])
                    for i in r.worst:
                        writer.writerow([i, ev["labels"][i], ev["preds"][i],
                                         f"{ev['confidences'][i]:.4f}"])
                if r.confusion:
                    save_png(out / f"confusion_{tag}.png", confusion_matrix_image(r.confusion))
                worst = list(r.worst[:12])
                if worst:
                    save_png(out / f"worst_{tag}.png", error_grid(
                        [dataset.load_image(i) for i in worst], [ev["labels"][i] for i in worst],
                        [ev["preds"][i] for i in worst], [ev["confidences"][i] for i in worst]))
    table = format_table(rows)
    print(table)
    if out:
        (out / "table.md").write_text(table + "\n", encoding="utf-8")
        with (out / "table.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
