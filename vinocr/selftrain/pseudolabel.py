"""Pseudo-labelling: read unlabelled crops (or tracks) with a model, keep the reads every verifier
accepts, and write them as a label file that training reads like any other.

Outputs in ``out/``:

- ``labels.txt``: ``path<TAB>text`` of the accepted crops (PaddleOCR label file; paths relative to
  ``out/``). Track frames, which are read rectified, are written to ``out/frames/`` first, so the
  label file points at exactly the pixels the model read. Of an accepted track, either the frames
  that agree or all its frames are written, each labelled with the track's text.
- ``reads.jsonl``: every read with its score, outcome (and hidden label when audited).
- ``report.json``: counts per outcome, the verifier settings, the calibration (threshold, its
  validation precision and Wilson bound), and, when hidden labels were given for auditing, the
  precision and yield of the accepted reads.
- ``review/`` (optional): the rejected items, lowest score first, in the corrections-folder format
  (``vinocr.data.corrections``): ``NNNNN_<name>.png`` + ``.json`` with ``"text": ""`` for the
  reviewer to fill and the model's read under ``"predicted"``. A sidecar whose text is still empty
  is skipped by the corrections reader, so an unreviewed folder never trains as if labelled.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from vinocr.data.base import IMAGE_EXTENSIONS, read_image
from vinocr.atomic_dir import write_file_atomic
from vinocr.errors import DataError, VinocrError
from vinocr.selftrain.verify import (Calibration, Read, ReadVerifier, Verdict, choose_threshold,
                                     committee_verdicts, precision_report, summarise, track_read)

logger = logging.getLogger(__name__)

#: ``reader(images) -> results``: BGR crops in, objects with ``.text`` and ``.char_confidences``
#: (and optionally ``.unforced``, see :class:`vinocr.selftrain.verify.Read`).
ReadFn = Callable[[List[np.ndarray]], List[Any]]
REPORT_FILE = "report.json"
LABELS_FILE = "labels.txt"
READS_FILE = "reads.jsonl"
#: Which frames of an accepted track are written as training crops (write_pseudo_labels).
TRACK_FRAMES = ("agreeing", "all")


@dataclass
class Item:
    """One unlabelled unit: a crop (one frame) or a track (its frames, read separately).

    ``images`` holds frames already loaded (tracks are rectified when loaded); when None the
    frames are read from ``paths``.
    """

    key: str
    paths: List[str]
    images: Optional[List[np.ndarray]] = None

    @property
    def is_track(self) -> bool:
        return self.images is not None or len(self.paths) > 1


def image_folder_items(folder: Union[str, Path]) -> List[Item]:
    """Every image below ``folder`` (sorted), one item each; label files and sidecars are
    ignored."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError("unlabelled folder not found", root)
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                   and p.is_file())
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found", root)
    return [Item(str(p), [str(p)]) for p in paths]


def dataset_items(dataset: Any) -> List[Item]:
    """The samples of a dataset reader as unlabelled items (their labels are not looked at)."""
    items = []
    for i in range(len(dataset)):
        meta = dataset.meta(i)
        path = meta.get("path") or meta.get("image")
        if path is None:
            raise DataError(f"sample {i} has no image path; pseudo-labelling reads files",
                            getattr(dataset, "path", "dataset"))
        items.append(Item(str(path), [str(path)]))
    return items


def track_items(tracks: Any) -> List[Item]:
    """The tracks of an :class:`vinocr.data.lrlpr.LrlprTracks` reader (LR frames, rectified)."""
    items = []
    for j, track in enumerate(tracks.tracks):
        frames = tracks.load_track(j)["lr"]
        items.append(Item(str(track.path), [str(p) for p in track.lr], list(frames)))
    return items


def read_items(reader: ReadFn, items: Sequence[Item], batch_size: int = 32) -> List[Read]:
    """One :class:`Read` per item; the frames of tracks share batches with other items."""
    flat: List[Tuple[int, str]] = []
    for k, item in enumerate(items):
        flat += [(k, p) for p in item.paths]
    results: List[Any] = []
    for start in range(0, len(flat), batch_size):
        chunk = flat[start:start + batch_size]
        images = []
        for k, path in chunk:
            item = items[k]
            if item.images is not None:
                images.append(item.images[item.paths.index(path)])
            else:
                images.append(read_image(path))
        results += reader(images)
    per_item: List[List[Tuple[str, str, List[float]]]] = [[] for _ in items]
    flags: List[List[Optional[bool]]] = [[] for _ in items]
    for (k, path), res in zip(flat, results):
        per_item[k].append((path, res.text, [float(c) for c in res.char_confidences]))
        flags[k].append(getattr(res, "unforced", None))
    reads = []
    for item, frames, unforced in zip(items, per_item, flags):
        if item.is_track:
            reads.append(track_read(item.key, frames, unforced))
        else:
            _, text, conf = frames[0]
            reads.append(Read(item.key, text, conf, unforced=unforced[0]))
    return reads


@dataclass
class CheckedResult:
    """A decoder result plus whether the unconstrained read of the same probabilities agrees."""

    text: str
    char_confidences: List[float]
    unforced: bool


def reader_with_unforced_check(probs: Callable[[List[np.ndarray]], np.ndarray], decoder: Any,
                               charset: Any) -> ReadFn:
    """A :data:`ReadFn` that decodes each batch twice, with ``decoder`` and greedily, and marks a
    read ``unforced`` when both give the same text."""
    from vinocr.decode import build_decoder

    greedy = build_decoder({"method": "greedy"}, charset=charset)

    def read(images: List[np.ndarray]) -> List[CheckedResult]:
        p = probs(images)
        return [CheckedResult(r.text, list(r.char_confidences), r.text == g.text)
                for r, g in zip(decoder.decode(p), greedy.decode(p))]

    return read


def calibrate(verifier: ReadVerifier, reads: Sequence[Read], truth: Sequence[str], target: float,
              canonical: Callable[[str], str] = lambda s: s) -> Calibration:
    """Choose ``verifier``'s threshold on labelled validation reads for ``target`` precision."""
    scores, correct = [], []
    for read, label in zip(reads, truth):
        if verifier.structural_reason(read) is None:
            scores.append(read.score(verifier.score_kind))
            correct.append(read.text == canonical(label))
    return choose_threshold(scores, correct, target, total=len(reads))


@dataclass
class Member:
    """One model of a committee: its reads of the same items, judged by its own verifier
    (own threshold), and what the report says of it (model, decode, calibration)."""

    reads: Sequence[Read]
    verifier: ReadVerifier
    info: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PseudoLabels:
    """What :func:`write_pseudo_labels` wrote."""

    out: Path
    label_file: Path
    accepted: int
    total: int
    report: Dict[str, Any] = field(default_factory=dict)


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), start.resolve())
    except ValueError:   # another drive (Windows): an absolute path still works
        return str(path.resolve())


def write_pseudo_labels(out: Union[str, Path], items: Sequence[Item], reads: Sequence[Read],
                        verifier: ReadVerifier, info: Optional[Mapping[str, Any]] = None,
                        truth: Optional[Sequence[Optional[str]]] = None,
                        review: int = 0, overwrite: bool = False,
                        track_frames: str = "all",
                        others: Sequence[Member] = (), min_votes: int = 1,
                        confident_votes: bool = False) -> PseudoLabels:
    """Verify ``reads`` and write ``out/`` (module docstring).

    Args:
        info: extra report fields (model, decode, calibration, ...).
        truth: hidden labels per item for the audit section (None entries: unknown). They are
            used for nothing but the report.
        review: export up to this many rejected items to ``out/review/`` (0: none).
        overwrite: replace an earlier ``out/``; otherwise an ``out/`` holding pseudo-labels is
            refused.
        track_frames: which frames of an accepted track become training crops: ``all`` (the
            frames that misread the plate too: the agreeing frames verified its text, and those
            hard frames are what the model has yet to learn) or ``agreeing`` (only the frames
            that read the accepted text).
        others: the same items read by further models, each with its own verifier: a committee
            (:func:`vinocr.selftrain.verify.committee_verdicts`) in which ``reads``/``verifier``
            are the first member.
        min_votes, confident_votes: members that must read the accepted text, and whether only
            the members accepting it by their own threshold count (``committee_verdicts``).
    """
    if track_frames not in TRACK_FRAMES:
        raise VinocrError(f"track_frames: expected one of {', '.join(TRACK_FRAMES)}, got "
                          f"{track_frames!r}")
    out = Path(out)
    if (out / REPORT_FILE).exists() or (out / LABELS_FILE).exists():
        if not overwrite:
            raise VinocrError(f"{out}: already holds pseudo-labels; pass --overwrite to replace "
                              "them")
        for name in (LABELS_FILE, REPORT_FILE, READS_FILE):
            (out / name).unlink(missing_ok=True)
        for sub in ("frames", "review"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    first = {k: v for k, v in (info or {}).items() if k in ("model", "decode", "calibration")}
    members = [Member(reads, verifier, first), *others]
    reads, verdicts, per_model = committee_verdicts([m.reads for m in members],
                                                    [m.verifier for m in members], min_votes,
                                                    confident_votes)
    lines: List[str] = []
    for n, (item, read, verdict) in enumerate(zip(items, reads, verdicts)):
        if not verdict.accepted:
            continue
        if item.images is not None:
            # Tracks: the frames as the model saw them (rectified), labelled with the track's
            # accepted text.
            frame_dir = out / "frames" / f"{n:06d}"
            frame_dir.mkdir(parents=True, exist_ok=True)
            for path, text in read.frames:
                if text != read.text and track_frames == "agreeing":
                    continue
                k = item.paths.index(path)
                target = frame_dir / (Path(path).stem + ".png")
                _write_png(target, item.images[k])
                lines.append(f"{_relative(target, out)}\t{read.text}")
        else:
            lines.append(f"{_relative(Path(item.paths[0]), out)}\t{read.text}")
    label_file = out / LABELS_FILE
    _write_text(label_file, "".join(line + "\n" for line in lines))
    # Every read with its score and outcome, for choosing a threshold afterwards.
    hidden = truth if truth is not None else [None] * len(reads)
    rows = []
    for k, (r, v, t) in enumerate(zip(reads, verdicts, hidden)):
        row = {"key": r.key, "text": r.text, "score": round(v.score, 6), "unforced": r.unforced,
               "agreement": r.agreement, "outcome": v.reason}
        if others:
            row["models"] = [{"text": m.reads[k].text, "score": round(mv[k].score, 6),
                              "outcome": mv[k].reason} for m, mv in zip(members, per_model)]
        if truth is not None:
            row["truth"] = t
        rows.append(json.dumps(row, ensure_ascii=False) + "\n")
    _write_text(out / READS_FILE, "".join(rows))
    counts = summarise(verdicts)
    report: Dict[str, Any] = {
        "items": len(items), "tracks": sum(1 for i in items if i.is_track),
        "outcomes": counts, "accepted_items": counts["accepted"],
        "label_lines": len(lines), "verifier": verifier.describe(), **dict(info or {})}
    if others:
        # Each member on its own: what it would have accepted alone (and, audited, how well).
        report["min_votes"] = min_votes
        report["confident_votes"] = confident_votes
        report["committee"] = [
            {**m.info, "verifier": m.verifier.describe(),
             "accepted_alone": sum(1 for x in mv if x.accepted),
             **({"audit": precision_report(m.reads, mv, truth)} if truth is not None else {})}
            for m, mv in zip(members, per_model)]
    if report["tracks"]:
        report["track_frames"] = track_frames
    if truth is not None:
        report["audit"] = precision_report(reads, verdicts, truth)
    if review:
        report["review"] = _write_review(out / "review", items, reads, verdicts, review)
    _write_text(out / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    logger.info("pseudo-labels: %d of %d items accepted (%s) -> %s", counts["accepted"],
                len(items), ", ".join(f"{k} {v}" for k, v in counts.items() if k != "accepted"
                                      and v), label_file)
    return PseudoLabels(out, label_file, counts["accepted"], len(items), report)


def _write_text(path: Path, text: str) -> None:
    write_file_atomic(path, text.encode("utf-8"))


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise VinocrError(f"{path}: could not encode the frame as PNG")
    write_file_atomic(path, buf.tobytes())


def _write_review(folder: Path, items: Sequence[Item], reads: Sequence[Read],
                  verdicts: Sequence[Verdict], limit: int) -> Dict[str, Any]:
    """The rejected items, lowest score first, as a corrections folder awaiting a reviewer."""
    rejected = sorted((v.score, k) for k, v in enumerate(verdicts) if not v.accepted)[:limit]
    folder.mkdir(parents=True, exist_ok=True)
    for rank, (score, k) in enumerate(rejected, start=1):
        item, read, verdict = items[k], reads[k], verdicts[k]
        # A track is reviewed on its first frame: one plate text per track.
        name = f"{rank:05d}_{Path(item.paths[0]).stem}"
        image = item.images[0] if item.images is not None else read_image(item.paths[0])
        _write_png(folder / f"{name}.png", image)
        sidecar = {"text": "", "predicted": read.text, "score": round(score, 6),
                   "rejected_by": verdict.reason, "source": item.key}
        _write_text(folder / f"{name}.json", json.dumps(sidecar, ensure_ascii=False) + "\n")
    return {"folder": "review", "items": len(rejected)}
