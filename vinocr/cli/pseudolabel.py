"""``vinocr-pseudolabel``: label unlabelled crops (or plate tracks) with a model, keeping only reads
that pass every verifier (VIN grammar and check digit, plate formats, frame agreement, and a
confidence threshold chosen on labelled validation data for a target precision).

    vinocr-pseudolabel --model runs/vin --unlabelled CROPS_DIR --calibrate val.txt --out pseudo/
    vinocr-pseudolabel --model exported/plates --tracks --unlabelled TRACKS_DIR --min-agreement 3 \\
        --calibrate val_tracks/ --out pseudo_tracks/ --review 200

Writes ``pseudo/labels.txt`` (a PaddleOCR label file: add it to ``Train.dataset.sources``),
``pseudo/report.json`` and, with ``--review N``, the N lowest-scoring rejected items as a
corrections folder for reviewers (see :mod:`vinocr.selftrain.pseudolabel`). ``--audit LABELS``
scores the accepted reads against labels the pipeline never sees (for measuring precision and
yield on a labelled set used as if unlabelled).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from vinocr.cli.common import (add_config_options, add_log_level, cli_entry, positive_int,
                               probability, setup_logging)
from vinocr.errors import VinocrError
from vinocr.selftrain.pseudolabel import TRACK_FRAMES
from vinocr.selftrain.verify import ReadVerifier

logger = logging.getLogger("vinocr.pseudolabel")


def add_verifier_options(p: argparse.ArgumentParser) -> None:
    """The verifier and calibration options (shared with ``vinocr-selftrain``)."""
    g = p.add_argument_group("verifiers")
    g.add_argument("--calibrate", metavar="LABELLED",
                   help="labelled validation data (label file, folder, LMDB; tracks with "
                        "--tracks) on which the confidence threshold is chosen for "
                        "--target-precision; never a test split")
    g.add_argument("--target-precision", type=probability, default=0.995,
                   help="precision the threshold must reach on --calibrate (default 0.995)")
    g.add_argument("--threshold", type=probability,
                   help="a fixed confidence threshold instead of --calibrate")
    g.add_argument("--score", choices=("min", "mean"), default="min",
                   help="per-character confidence compared with the threshold (default min: one "
                        "doubtful character makes the read doubtful)")
    g.add_argument("--check-digit", choices=("auto", "always", "never"), default="auto",
                   help="VINs: require the check digit where mandatory (auto, North America), "
                        "always, or never")
    g.add_argument("--min-agreement", type=positive_int, default=3,
                   help="tracks: frames that must read the same text (default 3)")
    g.add_argument("--track-frames", choices=TRACK_FRAMES, default="all",
                   help="tracks: the frames of an accepted track written as training crops: all "
                        "(default; the misread frames too, labelled by the frames that agree) "
                        "or only those that read its text")
    g.add_argument("--allow-forced", action="store_true",
                   help="accept constrained reads that differ from the model's unconstrained "
                        "read of the same crop (rejected by default: the grammar changed them)")
    g.add_argument("--teacher", action="append", default=[], metavar="MODEL",
                   help="a further model reading the same crops (repeatable): a run directory, "
                        "checkpoint, export, or a config .yml (its pretrained base, zero-shot). "
                        "A read is accepted when one model accepts it (each model's threshold "
                        "calibrated on its own) and no model reads the crop as another text "
                        "that passes the checks (rejected as 'disagreement')")
    g.add_argument("--min-votes", type=positive_int, default=1,
                   help="with --teacher: models (counting --model) that must read the accepted "
                        "text, passing the checks though not necessarily the threshold (default "
                        "1: one confident model suffices; 2 rejects a confident misread that no "
                        "other model makes)")
    g.add_argument("--confident-votes", action="store_true",
                   help="with --min-votes: count only the models whose own threshold accepts "
                        "the text, so a misread every model makes alike but only one makes "
                        "confidently is rejected too")
    g.add_argument("--decode", metavar="METHOD",
                   help="decoder method overriding the model's (greedy, beam, vin, plate)")
    g.add_argument("--review", type=int, default=0, metavar="N",
                   help="export the N lowest-scoring rejected items for review (default 0)")
    g.add_argument("--batch-size", type=positive_int, default=32)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vinocr-pseudolabel", description=__doc__.split("\n\n")[0])
    p.add_argument("--unlabelled", required=True, metavar="DATA",
                   help="unlabelled crops: a folder of images (any labels beside them are "
                        "ignored) or a dataset; with --tracks, a folder of LRLPR tracks")
    p.add_argument("--model", required=True,
                   help="run directory, checkpoint, exported directory, or 'pretrained' (with -c)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tracks", action="store_true",
                   help="--unlabelled (and --calibrate, --audit) are plate tracks: frames read "
                        "separately, a track accepted when --min-agreement frames agree")
    p.add_argument("--audit", metavar="LABELS",
                   help="true labels of the input (same image paths), used only to report "
                        "precision and yield; never for acceptance")
    p.add_argument("--backend", default="auto", help="engine for exported models")
    p.add_argument("--overwrite", action="store_true", help="replace pseudo-labels in --out")
    add_verifier_options(p)
    add_config_options(p, use="for 'pretrained' and the decoder of checkpoints")
    add_log_level(p)
    return p


class LabelledSet:
    """Items plus labels of a labelled set (for calibration and auditing)."""

    def __init__(self, items: List[Any], labels: List[str]) -> None:
        self.items, self.labels = items, labels


def open_items(path: str, tracks: bool, charset: Any) -> List[Any]:
    """Unlabelled items of ``path`` (labels, if any, are not looked at)."""
    from vinocr.selftrain.pseudolabel import dataset_items, image_folder_items, track_items

    if tracks:
        from vinocr.cli.predict import open_tracks

        return track_items(open_tracks(path))
    folder = Path(path)
    if folder.is_dir() and not any(folder.glob("*.txt")) and not (folder / "data.mdb").exists():
        return image_folder_items(folder)
    from vinocr.data.registry import open_dataset

    return dataset_items(open_dataset(path, charset=charset))


def open_labelled(path: str, tracks: bool, charset: Any) -> LabelledSet:
    """Items and labels of a labelled set."""
    from vinocr.selftrain.pseudolabel import dataset_items, track_items

    if tracks:
        from vinocr.cli.predict import open_tracks

        dataset = open_tracks(path, labelled=True)
        return LabelledSet(track_items(dataset), [t.text for t in dataset.tracks])
    from vinocr.data.registry import open_dataset

    dataset = open_dataset(path, charset=charset)
    if len(dataset) == 0:
        raise VinocrError(f"{path}: no usable labelled samples for charset {charset.name!r}")
    return LabelledSet(dataset_items(dataset), [dataset.label(i) for i in range(len(dataset))])


def audit_labels(path: str, items: Sequence[Any], tracks: bool, charset: Any,
                 canonical: Any, input_root: str) -> List[Optional[str]]:
    """Per item, its true label from ``path`` (None when absent). Crops are matched by image
    path; tracks by their folder relative to their set's root, so a copy of the tracks with the
    labels blanked out can be audited against the labelled original."""
    labelled = open_labelled(path, tracks, charset)

    def key(item: Any, root: str) -> str:
        if tracks:
            return str(Path(item.key).resolve().relative_to(Path(root).resolve()))
        return str(Path(item.paths[0]).resolve())

    by_key = {key(item, path): canonical(label)
              for item, label in zip(labelled.items, labelled.labels)}
    truth = [by_key.get(key(item, input_root)) for item in items]
    if not any(t is not None for t in truth):
        how = "track folder" if tracks else "image path"
        raise VinocrError(f"--audit {path}: none of its items are in the input (matched by {how})")
    return truth


def resolve_decode(loaded: Any, cfg: Optional[Mapping[str, Any]], method: Optional[str]
                   ) -> Dict[str, Any]:
    """The decode section reads are made with (an export's own, else the config's), with
    ``method`` overriding the method."""
    if loaded.recognizer is not None:
        return dict(loaded.recognizer.decode_config)
    source = cfg if cfg is not None else loaded.config
    decode = dict(source.get("Decode") or {"method": "greedy"})
    if method:
        decode["method"] = method
    return decode


@dataclass
class ModelReader:
    """A loaded model with what reading and judging its reads needs."""

    name: str
    read: Any            # ReadFn
    decode: Dict[str, Any]
    canonical: Any       # text -> canonical text of the model's decoder
    vin: bool
    charset: Any


def open_reader(spec: str, cfg: Optional[Mapping[str, Any]], args: argparse.Namespace,
                key: Optional[str] = None) -> ModelReader:
    """``spec`` loaded for pseudo-labelling: a run, checkpoint or export directory, ``pretrained``
    (with ``cfg``), or a config file (.yml/.yaml) whose pretrained base is read zero-shot."""
    from vinocr.cli.model_io import make_prob_reader
    from vinocr.engine.model_loading import load_trained
    from vinocr.predict import is_vin_charset
    from vinocr.selftrain.pseudolabel import reader_with_unforced_check

    if Path(spec).suffix.lower() in (".yml", ".yaml"):
        if not Path(spec).is_file():
            raise VinocrError(f"{key or '--model'} {spec}: config file not found")
        from vinocr.config import load_config

        cfg, spec = load_config([spec], []), "pretrained"
    loaded = load_trained(spec, cfg, backend=args.backend, decode=args.decode, key=key)
    model_cfg = cfg if cfg is not None else loaded.config
    decode = resolve_decode(loaded, cfg, args.decode)
    image_shape = model_cfg.get("Global", {}).get("image_shape", [3, 48, 320])
    probs, decoder = make_prob_reader(loaded, decode, image_shape,
                                      model_cfg.get("Global", {}).get("two_row_max_aspect", 0.0))
    return ModelReader(loaded.name, reader_with_unforced_check(probs, decoder, loaded.charset),
                       decode, decoder.canonical, is_vin_charset(loaded.charset),
                       loaded.charset)


def pseudolabel(args: argparse.Namespace, cfg: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """Run ``vinocr-pseudolabel`` for parsed ``args``; returns the report."""
    from vinocr.data.split import held_out_test_reason
    from vinocr.selftrain.pseudolabel import Member, calibrate, read_items, write_pseudo_labels
    from vinocr.selftrain.verify import committee_verdicts, precision_report

    if args.calibrate is None and args.threshold is None:
        raise VinocrError("give --calibrate LABELLED (the threshold is chosen there for "
                          "--target-precision) or a fixed --threshold")
    if args.calibrate is not None and args.threshold is not None:
        raise VinocrError("give --calibrate or --threshold, not both")
    if args.review < 0:
        raise VinocrError(f"--review: expected a count >= 0, got {args.review}")
    if args.calibrate is not None:
        reason = held_out_test_reason(args.calibrate)
        if reason:
            raise VinocrError(f"--calibrate {args.calibrate}: {reason}; choosing a threshold on "
                              "the test split would make its figures optimistic")
    out = Path(args.out)
    if (out / "report.json").exists() and not args.overwrite:
        raise VinocrError(f"{out}: already holds pseudo-labels; pass --overwrite to replace them")

    if args.min_votes > 1 + len(args.teacher):
        raise VinocrError(f"--min-votes {args.min_votes}: the committee has "
                          f"{1 + len(args.teacher)} model(s) (--model and {len(args.teacher)} "
                          "--teacher)")
    models = [open_reader(args.model, cfg, args)]
    models += [open_reader(spec, None, args, key="--teacher") for spec in args.teacher]
    for teacher, spec in zip(models[1:], args.teacher):
        if teacher.vin != models[0].vin:
            raise VinocrError(f"--teacher {spec}: reads {'VINs' if teacher.vin else 'plates'} "
                              f"but --model {args.model} reads "
                              f"{'VINs' if models[0].vin else 'plates'}")
    items = open_items(args.unlabelled, args.tracks, models[0].charset)
    canonical = models[0].canonical
    truth = (audit_labels(args.audit, items, args.tracks, models[0].charset, canonical,
                          args.unlabelled)
             if args.audit else None)
    labelled = (open_labelled(args.calibrate, args.tracks, models[0].charset)
                if args.calibrate is not None else None)

    verifiers: List[ReadVerifier] = []
    infos: List[Dict[str, Any]] = []
    val_reads = []
    for m in models:
        options = dict(vin=m.vin, check_digit=args.check_digit,
                       min_agreement=args.min_agreement if args.tracks else 1, score=args.score,
                       allow_forced=args.allow_forced)
        info: Dict[str, Any] = {"model": m.name, "decode": m.decode}
        threshold = args.threshold
        if labelled is not None:
            probe = ReadVerifier.from_decode(m.decode, **options)
            reads = read_items(m.read, labelled.items, args.batch_size)
            cal = calibrate(probe, reads, labelled.labels, args.target_precision, m.canonical)
            info["calibration"] = {"set": str(args.calibrate), **cal.to_dict()}
            if not cal.reached:
                raise VinocrError(f"--calibrate {args.calibrate}: no confidence threshold of "
                                  f"{m.name} reaches precision {args.target_precision} on its "
                                  f"{cal.total} reads ({cal.passed_checks} pass the other "
                                  "checks); use a better model or lower --target-precision")
            threshold = cal.threshold
            val_reads.append(reads)
            logger.info("%s: threshold %.4f: precision %.4f (95%% lower bound %.4f) on %d of %d "
                        "validation reads", m.name, threshold, cal.precision,
                        cal.precision_lower_95, cal.accepted, cal.total)
        verifiers.append(ReadVerifier.from_decode(m.decode, threshold=threshold, **options))
        infos.append(info)

    info = {**infos[0], "input": str(args.unlabelled)}
    if len(models) > 1 and labelled is not None:
        # Errors of the members add up: the committee's own precision on validation, checked
        # before the unlabelled crops are read.
        truth_val = [canonical(t) for t in labelled.labels]
        reads, verdicts, _ = committee_verdicts(val_reads, verifiers, args.min_votes,
                                                args.confident_votes)
        val = precision_report(reads, verdicts, truth_val)
        info["committee_calibration"] = {
            "set": str(args.calibrate), "accepted": val["accepted"],
            "precision": val["precision"], "precision_lower_95": val["precision_lower_95"]}
        if val["precision"] is not None and val["precision"] < args.target_precision:
            raise VinocrError(f"--calibrate {args.calibrate}: the committee of {len(models)} "
                              f"models reaches precision {val['precision']:.4f} < "
                              f"{args.target_precision} on validation although each member "
                              "reaches it alone; raise --min-votes, pass --confident-votes or "
                              "drop a --teacher")
    members = [Member(read_items(m.read, items, args.batch_size), v, i)
               for m, v, i in zip(models, verifiers, infos)]
    result = write_pseudo_labels(out, items, members[0].reads, members[0].verifier, info=info,
                                 truth=truth, review=args.review, overwrite=args.overwrite,
                                 track_frames=args.track_frames, others=members[1:],
                                 min_votes=args.min_votes,
                                 confident_votes=args.confident_votes)
    return result.report


def summary_line(report: Mapping[str, Any]) -> str:
    line = (f"accepted {report['accepted_items']} of {report['items']} "
            f"({report['label_lines']} label lines)")
    cal = report.get("calibration")
    if cal:
        line += (f"; {'first model: ' if report.get('committee') else ''}threshold "
                 f"{cal['threshold']:.4f} (validation precision {cal['precision']:.4f}"
                 f", lower 95% {cal['precision_lower_95']:.4f})")
    committee = report.get("committee_calibration")
    if committee and committee.get("precision") is not None:
        thresholds = "/".join(f"{m['calibration']['threshold']:.4f}" for m in report["committee"])
        line += (f"; committee of {len(report['committee'])} (thresholds {thresholds}): "
                 f"validation precision {committee['precision']:.4f} (lower 95% "
                 f"{committee['precision_lower_95']:.4f})")
    audit = report.get("audit")
    if audit and audit.get("precision") is not None:
        line += (f"; audit: precision {audit['precision']:.4f} "
                 f"({audit['accepted_correct']}/{audit['accepted']}), yield {audit['yield']:.4f}")
    return line


@cli_entry("vinocr-pseudolabel")
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    cfg = None
    if args.config:
        from vinocr.config import load_config

        cfg = load_config(args.config, args.opt)
    report = pseudolabel(args, cfg)
    print(summary_line(report))
    print(json.dumps(report["outcomes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
