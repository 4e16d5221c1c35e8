"""``vinocr-predict``: recognise crops with an exported model; JSON or CSV per image.

    vinocr-predict --model exported/vin crop.png crops/ data/vin/splits/test.txt --format csv
    vinocr-predict --rec exported/plate --sr exported/sr plates/          # SR, then recognition
    vinocr-predict --rec exported/plate --sr exported/sr --tracks lrlpr/test \
        --fusion sequence --submission submission.txt                       # LRLPR-26 tracks

Each INPUT is an image, a folder (every image below it, sorted) or a label file
(``path<TAB>label`` lines); for label-file samples the output adds the label and whether the
prediction matches it (after the charset's normalisation, e.g. upper-casing VINs), and an accuracy
line goes to stderr. The accuracy counts exactly the samples ``vinocr-eval`` scores: a label the
model's charset cannot spell is skipped by the dataset reader in both commands, so such an image is
still predicted but its record carries ``skipped`` (the reason) instead of ``correct``, and a
"not scored" line on stderr says how many and why.

``--tracks DIR`` recognises every LRLPR-26 track below DIR instead (``track_*/annotations.json``
with ``lr-001..`` frames): the LR frames, rectified by their corners as the ``lrlpr`` reader does,
are optionally super-resolved (``--sr``), recognised and fused (``--fusion``, see
:mod:`vinocr.sr.fusion`). The competition file (``track_00001,ABC1234;0.9876`` per track) goes to
``--submission``, one JSON line per track to stdout (or ``--out``; nothing with ``--quiet``), and,
for tracks whose annotations carry a plate text, the track accuracy to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import (Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple)

from vinocr.cli.common import QUIET, add_log_level, cli_entry, positive_int, setup_logging
from vinocr.errors import VinocrError
from vinocr.sr.fusion import METHODS as FUSION_METHODS
from vinocr.decode.factory import METHODS as DECODE_METHODS
from vinocr.predict import BACKENDS

PROG = "vinocr-predict"
#: Track mode defaults (kept here so the help text and the behaviour agree).
DEFAULT_SUBMISSION = "submission.txt"
DEFAULT_FUSION = "sequence"  # best measured fusion (docs/super-resolution.md)
DEFAULT_FRAMES = 5
#: The file an exported SR directory must hold.
SR_CONFIG = "sr.yml"

#: Reasons listed in the "not scored" line on stderr (the rest are counted).
MAX_LISTED_SKIPS = 3


class Item(NamedTuple):
    """One sample to recognise."""

    path: str
    #: None when the input has no labels.
    label: Optional[str] = None
    #: ``label_file:line`` of a label-file sample (the key of the dataset's skip records).
    where: Optional[str] = None


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
            items.extend(Item(str(q)) for q in images)
        elif p.suffix.lower() in IMAGE_EXTENSIONS:
            items.append(Item(str(p)))
        else:
            from vinocr.data.registry import open_dataset

            # No charset here: every listed image is predicted, labels as written, including
            # labels the model cannot spell (unscored_samples leaves those out of the accuracy).
            dataset = open_dataset(p)
            if len(dataset) == 0:
                raise VinocrError(f"{p}: no samples (empty label file or all images missing)")
            items.extend(Item(str(dataset.path_of(i)), dataset.label(i),
                              dataset.meta(i).get("where")) for i in range(len(dataset)))
    return items


def unscored_samples(inputs: List[str], charset: Any) -> Dict[str, str]:
    """``{label_file:line: reason}`` for the label-file samples of ``inputs`` that vinocr-eval
    does not score with ``charset`` (empty labels, characters outside the charset).

    The decision is the dataset reader's own (``open_dataset(..., charset=charset)``, as
    vinocr-eval opens its data, and its ``skipped`` records), so the two commands always score the
    same samples. Image files were checked by :func:`collect_inputs` already.
    """
    from vinocr.data.base import IMAGE_EXTENSIONS
    from vinocr.data.registry import open_dataset

    skipped: Dict[str, str] = {}
    # The reader's per-reason warnings were logged when collect_inputs opened these files, and
    # the "not scored" line reports the rest: a second round would only repeat them.
    reader_log = logging.getLogger("vinocr.data.base")
    was_disabled, reader_log.disabled = reader_log.disabled, True
    try:
        for spec in inputs:
            p = Path(spec)
            if p.is_file() and p.suffix.lower() not in IMAGE_EXTENSIONS:
                dataset = open_dataset(p, charset=charset, check_files=False)
                skipped.update((s.where, s.reason) for s in dataset.skipped)
    finally:
        reader_log.disabled = was_disabled
    return skipped


def predict_items(recognizer: Any, items: List[Item], batch_size: int,
                  sr: Any = None, unscored: Optional[Mapping[str, str]] = None
                  ) -> Iterator[Dict[str, Any]]:
    """One output record per item, in input order (images are read a chunk at a time).

    ``sr``: optional SR model run on each chunk before recognition
    (:func:`vinocr.sr.pipeline.chain`). ``unscored``: :func:`unscored_samples`; those labelled
    items get ``skipped`` (the reason) instead of ``correct``.
    """
    from vinocr.data.base import read_image
    from vinocr.sr.pipeline import chain

    chunk = batch_size * 8  # a few batches per chunk lets predict() group similar aspect ratios
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        results = chain(sr, recognizer, [read_image(item.path) for item in part],
                        batch_size=batch_size)
        for item, res in zip(part, results):
            row: Dict[str, Any] = {"path": item.path, **res.to_dict()}
            if item.label is not None:
                row["label"] = item.label
                reason = (unscored or {}).get(item.where or "")
                if reason is None:
                    row["correct"] = scored_label(recognizer, item.label) == res.text
                else:
                    row["skipped"] = reason
            yield row


def accuracy_lines(rows: List[Dict[str, Any]], unscored: Mapping[str, str],
                   items: List[Item]) -> List[str]:
    """The stderr summary of labelled predictions: accuracy over the scored samples and, when
    some were not scored, how many and why (with their ``label_file:line``)."""
    scored = [row for row in rows if "correct" in row]
    right = sum(row["correct"] for row in scored)
    lines = [f"accuracy: {right}/{len(scored)} = {right / len(scored):.4f} (exact match)"
             if scored else "accuracy: no sample could be scored"]
    skipped = [(item.where, unscored[item.where]) for item in items
               if item.label is not None and item.where in unscored]
    if skipped:
        listed = "; ".join(f"{where}: {reason}" for where, reason in skipped[:MAX_LISTED_SKIPS])
        more = (f"; {len(skipped) - MAX_LISTED_SKIPS} more" if len(skipped) > MAX_LISTED_SKIPS
                else "")
        lines.append(f"not scored: {len(skipped)} of {len(scored) + len(skipped)} labelled "
                     f"samples, as vinocr-eval skips them: {listed}{more}")
    return lines


def scored_label(recognizer: Any, label: str) -> str:
    """A label as the decoder spells its output (charset normalisation, then e.g. a plate
    format's dropped separators and merged O/0), so ``correct`` matches ``vinocr-eval``."""
    return recognizer.decoder.canonical(recognizer.charset.normalize(label))


def csv_text(rows: List[Dict[str, Any]], vin: bool, labelled: bool) -> str:
    columns = ["path", "text", "confidence", "char_confidences"]
    if vin:
        columns += ["vin_valid", "check_digit_ok", "model_year"]
    if any(row.get("format") is not None for row in rows):
        columns += ["format", "region"]
    if labelled:
        columns += ["label", "correct", "skipped"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        out = dict(row)
        out["confidence"] = f"{row['confidence']:.4f}"
        out["char_confidences"] = " ".join(f"{c:.4f}" for c in row["char_confidences"])
        for key in ("vin_valid", "check_digit_ok", "model_year", "format", "region", "label",
                    "correct", "skipped"):
            if out.get(key) is None:
                out[key] = ""
        writer.writerow(out)
    return buf.getvalue()


def read_csv(path: Any, columns: Sequence[str]) -> List[Dict[str, str]]:
    """The rows of a ``--format csv`` output (the reader of :func:`csv_text`'s files, for tools
    that score them); a one-line :class:`VinocrError` naming ``path`` when it cannot be read or
    lacks one of ``columns`` (``label``/``correct`` exist only for a labelled input)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise VinocrError(f"{path}: cannot read ({exc.strerror})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise VinocrError(f"{path}: not a CSV text file ({exc})") from None
    if not rows or not set(columns) <= set(rows[0]):
        raise VinocrError(f"{path}: expected a '{PROG} --format csv' output of a label file "
                          f"(columns {', '.join(columns)})")
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Recognise text crops with an exported "
                                "model (vinocr-export output).")
    p.add_argument("--model", "--rec", dest="model",
                   help="exported recogniser directory (--rec is an alias); with --sr builtin "
                   "the default is the recogniser shipped with it")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image, folder of images, or label file (path<TAB>label); "
                   "not with --tracks")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="inference engine: auto (default) is onnxruntime when --model has "
                   "inference.onnx, else paddle; onnxruntime-int8 runs inference_int8.onnx "
                   "(vinocr-export --int8)")
    p.add_argument("--format", choices=("json", "csv"), default="json",
                   help="output for INPUT images (--tracks always writes JSON lines)")
    p.add_argument("--out", help="output file (default: stdout); with --tracks, the per-track "
                   "JSON lines")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads of the engine")
    p.add_argument("--decode", choices=DECODE_METHODS,
                   help="decoder method (default: the one recorded in inference.yml)")
    p.add_argument("--dynamic-width", action="store_true",
                   help="let batches grow to keep wide crops' aspect (stock paddleocr's rule) "
                   "instead of squeezing them to the model width as training does")
    p.add_argument("--sr", metavar="SR_DIR",
                   help="exported super-resolution model (directory with sr.yml), or 'builtin' "
                   "for the Brazilian/Mercosur SR pair shipped in the package: every image or "
                   "track frame is super-resolved before recognition")
    g = p.add_argument_group("tracks (LRLPR-26 layout)")
    g.add_argument("--tracks", metavar="DIR",
                   help="recognise every track below DIR (track_*/annotations.json + lr-* "
                   "frames) with multi-frame fusion, and write a submission file")
    g.add_argument("--submission", metavar="PATH",
                   help=f"submission file for --tracks (default: {DEFAULT_SUBMISSION})")
    g.add_argument("--fusion", choices=FUSION_METHODS,
                   help="how a track's frames are combined: summed CTC log-likelihoods of "
                   "candidate texts (sequence, default), summed per-step log-probabilities "
                   "(logprob), per-character voting (vote) or the first frame (single)")
    g.add_argument("--frames", type=positive_int,
                   help=f"LR frames used per track (default: {DEFAULT_FRAMES})")
    p.add_argument("--quiet", action="store_true",
                   help="print no per-image / per-track records on stdout")
    add_log_level(p, QUIET)
    return p


def load_sr(sr_dir: str, threads: int) -> Any:
    """The exported SR model in ``sr_dir``, with one-line errors for a wrong directory."""
    check_sr_dir(sr_dir)
    from vinocr.export.sr import SRPredictor

    return SRPredictor.from_dir(sr_dir, threads=threads)


def check_sr_dir(sr_dir: str) -> None:
    """Fail fast (before any model is loaded) when ``sr_dir`` is not an exported SR model."""
    d = Path(sr_dir)
    if not d.is_dir():
        raise VinocrError(f"{d}: SR model directory not found")
    if not (d / SR_CONFIG).is_file():
        raise VinocrError(f"{d}: no {SR_CONFIG} (is this an exported SR model directory?)")


def open_tracks(tracks_dir: str, labelled: bool = False) -> Any:
    """The tracks below ``tracks_dir`` as an :class:`vinocr.data.lrlpr.LrlprTracks` (LR frames).

    Going through the reader (which finds the tracks with ``find_tracks``) makes rectification by
    corners exactly the reader's. Tracks need no ``plate_text`` (blind test sets); those that have
    one are scored. Checked up front, before any model is loaded: every track needs LR frames and
    a track id of its own (the submission has one line per id). ``labelled``: every track needs
    its plate text too (scoring, calibration).
    """
    from vinocr.data.lrlpr import LrlprTracks

    dataset = LrlprTracks(tracks_dir, frames="lr", require_text=False)
    if not dataset.tracks:
        raise VinocrError(f"{tracks_dir}: no tracks found")
    seen: Dict[str, Path] = {}
    for track in dataset.tracks:
        if not track.lr:
            raise VinocrError(f"{track.path}: track has no LR frames (lr-001.png ...)")
        if track.track_id in seen:
            raise VinocrError(f"track id {track.track_id!r} appears twice: {seen[track.track_id]} "
                              f"and {track.path} (the submission needs one line per id)")
        seen[track.track_id] = track.path
    unlabelled = [t.path for t in dataset.tracks if not t.text] if labelled else []
    if unlabelled:
        raise VinocrError(f"{unlabelled[0]}: track has no plate_text ({len(unlabelled)} of "
                          f"{len(dataset.tracks)} tracks unlabelled); a labelled set needs one "
                          "per track")
    return dataset


def recognise_tracks(dataset: Any, recognizer: Any, sr: Any, method: str,
                     frames: int) -> List[Dict[str, Any]]:
    """One record per track of ``dataset`` (an :func:`open_tracks` result), in its order."""
    from vinocr.sr.pipeline import TrackRecognizer

    fuser = TrackRecognizer(recognizer, sr=sr, method=method, frames=frames)
    rows: List[Dict[str, Any]] = []
    # Tracks go to the recogniser in chunks, so frames of different tracks share batches.
    chunk = max(1, (recognizer.batch_size * 4) // frames)
    results: List[Any] = []
    for start in range(0, len(dataset.tracks), chunk):
        stop = min(len(dataset.tracks), start + chunk)
        results += fuser.recognise_many([dataset.load_track(j)["lr"] for j in range(start, stop)])
    for track, result in zip(dataset.tracks, results):
        row: Dict[str, Any] = {"track": track.track_id, "path": str(track.path),
                               **result.to_dict()}
        if track.text:  # an empty plate_text marks an unlabelled track
            row["label"] = track.text
            row["correct"] = scored_label(recognizer, track.text) == result.text
        rows.append(row)
    return rows


def load_models(args: argparse.Namespace) -> Tuple[Any, Any]:
    """The recogniser of ``--model``/``--rec`` and the SR model of ``--sr`` (or None). Call
    inside :func:`native_stdout_to_stderr`: building predictors prints to the C stdout."""
    from vinocr.predict import Recognizer
    from vinocr.sr.builtin import builtin_exports, is_builtin

    if is_builtin(args.sr):
        args.sr, shipped_rec = (str(p) for p in builtin_exports())
        args.model = args.model or shipped_rec
    if args.sr:
        check_sr_dir(args.sr)
    recognizer = Recognizer.from_dir(args.model, backend=args.backend, threads=args.threads,
                                     decode=args.decode, dynamic_width=args.dynamic_width,
                                     batch_size=args.batch_size)
    return recognizer, load_sr(args.sr, args.threads) if args.sr else None


def run_tracks(args: argparse.Namespace) -> int:
    """``--tracks``: recognise every track, write the submission, report."""
    from vinocr.sr.submission import write_submission

    dataset = open_tracks(args.tracks)
    with native_stdout_to_stderr():
        recognizer, sr = load_models(args)
        rows = recognise_tracks(dataset, recognizer, sr, args.fusion or DEFAULT_FUSION,
                                args.frames or DEFAULT_FRAMES)
    submission = write_submission(args.submission or DEFAULT_SUBMISSION,
                                  [(r["track"], r["text"], r["confidence"]) for r in rows])
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    elif not args.quiet:
        sys.stdout.write(text)
    print(f"{len(rows)} tracks -> {submission}", file=sys.stderr)
    scored = [r for r in rows if "correct" in r]
    if scored:
        right = sum(r["correct"] for r in scored)
        print(f"track accuracy: {right}/{len(scored)} = {right / len(scored):.4f} "
              f"(exact match, fusion {rows[0]['method']})", file=sys.stderr)
    return 0


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    from vinocr.sr.builtin import is_builtin

    if not args.model and not is_builtin(args.sr):
        parser.error("the following arguments are required: --model/--rec (or --sr builtin)")
    if args.tracks:
        if args.inputs:
            parser.error("give INPUT images or --tracks DIR, not both")
        return run_tracks(args)
    if not args.inputs:
        parser.error("the following arguments are required: INPUT (or --tracks DIR)")
    for name in ("submission", "fusion", "frames"):
        if getattr(args, name) is not None:
            parser.error(f"--{name} only applies with --tracks")
    items = collect_inputs(args.inputs)
    with native_stdout_to_stderr():
        recognizer, sr = load_models(args)
        unscored = unscored_samples(args.inputs, recognizer.charset)
        rows = list(predict_items(recognizer, items, args.batch_size, sr=sr, unscored=unscored))
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
    elif not args.quiet:
        sys.stdout.write(text)
    if labelled:
        for line in accuracy_lines(rows, unscored, items):
            print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
