"""``vinocr-predict``: recognise crops with an exported model; JSON or CSV per image.

    vinocr-predict --model exported/vin crop.png crops/ data/vin/splits/test.txt --format csv

Each INPUT is an image, a folder (every image below it, sorted) or a label file
(``path<TAB>label`` lines); for label-file samples the output adds the label and whether the
prediction matches it (after the charset's normalisation, e.g. upper-casing VINs), and an accuracy
line goes to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from vinocr.cli.common import cli_entry, positive_int, setup_logging
from vinocr.errors import VinocrError

PROG = "vinocr-predict"

#: One sample to recognise: image path and its label (None when the input has no labels).
Item = Tuple[str, Optional[str]]


@contextlib.contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 to stderr for the duration.

    Paddle's oneDNN passes write a line (``ReduceMeanCheckIfOneDNNSupport``) straight to the C
    stdout on a predictor's first run, which would corrupt JSON/CSV piped from stdout.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # captured / replaced stdout
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        os.dup2(sys.stderr.fileno(), fd)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)


def collect_inputs(inputs: List[str]) -> List[Item]:
    """Expand images, folders and label files into (path, label-or-None) items, in order."""
    from vinocr.data.base import IMAGE_EXTENSIONS, list_images

    items: List[Item] = []
    for spec in inputs:
        p = Path(spec)
        if not p.exists():
            raise VinocrError(f"{p}: input not found")
        if p.is_dir():
            images = list_images(p)
            if not images:
                raise VinocrError(f"{p}: no images in this folder "
                                  f"({', '.join(IMAGE_EXTENSIONS)})")
            items.extend((str(q), None) for q in images)
        elif p.suffix.lower() in IMAGE_EXTENSIONS:
            items.append((str(p), None))
        else:
            from vinocr.data.registry import open_dataset

            # No charset here: every listed image is predicted, including labels the model
            # cannot spell (those simply count as wrong).
            dataset = open_dataset(p)
            if len(dataset) == 0:
                raise VinocrError(f"{p}: no samples (empty label file or all images missing)")
            items.extend((str(dataset.path_of(i)), dataset.label(i)) for i in range(len(dataset)))
    return items


def predict_items(recognizer: Any, items: List[Item], batch_size: int) -> Iterator[Dict[str, Any]]:
    """One output record per item, in input order (images are read a chunk at a time)."""
    from vinocr.data.base import read_image

    chunk = batch_size * 8  # a few batches per chunk lets predict() group similar aspect ratios
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        results = recognizer.predict([read_image(path) for path, _ in part],
                                     batch_size=batch_size)
        for (path, label), res in zip(part, results):
            row: Dict[str, Any] = {"path": path, **res.to_dict()}
            if label is not None:
                row["label"] = label
                row["correct"] = recognizer.charset.normalize(label) == res.text
            yield row


def csv_text(rows: List[Dict[str, Any]], vin: bool, labelled: bool) -> str:
    columns = ["path", "text", "confidence", "char_confidences"]
    if vin:
        columns += ["vin_valid", "check_digit_ok", "model_year"]
    if labelled:
        columns += ["label", "correct"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        out = dict(row)
        out["confidence"] = f"{row['confidence']:.4f}"
        out["char_confidences"] = " ".join(f"{c:.4f}" for c in row["char_confidences"])
        for key in ("vin_valid", "check_digit_ok", "model_year", "label", "correct"):
            if out.get(key) is None:
                out[key] = ""
        writer.writerow(out)
    return buf.getvalue()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Recognise text crops with an exported "
                                "model (vinocr-export output).")
    p.add_argument("--model", required=True, help="exported model directory")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image, folder of images, or label file (path<TAB>label)")
    p.add_argument("--backend", choices=("paddle", "onnxruntime"), default="paddle",
                   help="inference engine (onnxruntime needs inference.onnx in --model)")
    p.add_argument("--format", choices=("json", "csv"), default="json")
    p.add_argument("--out", help="output file (default: stdout)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads of the engine")
    p.add_argument("--decode", choices=("greedy", "beam", "vin", "plate"),
                   help="decoder method (default: the one recorded in inference.yml)")
    p.add_argument("--dynamic-width", action="store_true",
                   help="let batches grow to keep wide crops' aspect (stock paddleocr's rule) "
                   "instead of squeezing them to the model width as training does")
    p.add_argument("--log-level", default="WARNING")
    return p


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from vinocr.predict import Recognizer

    items = collect_inputs(args.inputs)
    with native_stdout_to_stderr():
        recognizer = Recognizer.from_dir(args.model, backend=args.backend, threads=args.threads,
                                         decode=args.decode, dynamic_width=args.dynamic_width,
                                         batch_size=args.batch_size)
        rows = list(predict_items(recognizer, items, args.batch_size))
    labelled = any("label" in row for row in rows)
    if args.format == "json":
        text = json.dumps(rows, indent=1, ensure_ascii=False) + "\n"
    else:
        text = csv_text(rows, recognizer.is_vin, labelled)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"{len(rows)} predictions -> {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if labelled:
        scored = [row for row in rows if "correct" in row]
        right = sum(row["correct"] for row in scored)
        print(f"accuracy: {right}/{len(scored)} = {right / len(scored):.4f} (exact match)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
