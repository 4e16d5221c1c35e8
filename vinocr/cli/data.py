"""``vinocr-data``: validate, stats, split, make-lmdb, augment and preview-aug for datasets."""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set

import numpy as np

from vinocr.cli.common import (QUIET, add_config_options, add_log_level, cli_entry,
                               non_negative_float, non_negative_int, positive_int, setup_logging)
from vinocr.data.base import FileBackedDataset, TextDataset, encode_image
from vinocr.data.provenance import sample_shares, write_derived_marker
from vinocr.data.registry import DATASET_TYPES, detect_format, open_dataset
from vinocr.data.split import held_out_test_reason
from vinocr.errors import VinocrError

logger = logging.getLogger("vinocr.data")
PROG = "vinocr-data"


def _open(args: argparse.Namespace, charset: Any = None) -> TextDataset:
    kwargs: Dict[str, Any] = {}
    fmt = detect_format(args.path) if args.format == "auto" else args.format
    if fmt == "lrlpr":
        kwargs["frames"] = getattr(args, "frames", "lr")
    dataset = open_dataset(args.path, fmt, charset=charset, strict=getattr(args, "strict", False),
                           **kwargs)
    logger.info("opened %s (%s): %d samples", args.path, fmt, len(dataset))
    return dataset


def _add_common(p: argparse.ArgumentParser, charset_default: Optional[str] = "vin") -> None:
    p.add_argument("path", help="label file, LMDB folder, LRLPR root, corrections or image folder")
    p.add_argument("--format", default="auto", choices=["auto", *sorted(DATASET_TYPES)],
                   help="dataset format (default: detected from the path)")
    p.add_argument("--charset", default=charset_default,
                   help="vin, plate, plate_cn, ppocr or a dictionary file")
    p.add_argument("--frames", default="lr", choices=["lr", "hr", "both"],
                   help="LRLPR tracks: which frames are samples")
    p.add_argument("--strict", action="store_true",
                   help="fail on the first empty, out-of-charset or missing sample instead of "
                   "skipping and reporting it")


# --------------------------------------------------------------------- inputs and outputs
# Writing onto the input cannot be undone: a fixed export written over its own label file loses
# exactly the invalid lines, a split written over it keeps one split of it. So every output path
# is compared with the input after resolving symlinks, relative parts and ``..``, and before any
# work is done.
class _Inputs:
    """The paths a command reads, resolved."""

    def __init__(self, path: str, dataset: TextDataset) -> None:
        self.path = Path(path).resolve()
        #: A folder given as the dataset: its contents *are* the dataset (every label file in it,
        #: every image below it), so nothing may be written into it.
        self.folder: Optional[Path] = self.path if self.path.is_dir() else None
        self.label_files = [Path(f).resolve() for f in getattr(dataset, "label_files", [])]
        self._dataset = dataset
        self._images: Optional[Set[Path]] = None

    def images(self) -> Set[Path]:
        """The samples' image files; resolved on first use, since only outputs that already exist
        need them (resolving every path of a large dataset costs a system call each)."""
        if self._images is None:
            ds = self._dataset
            self._images = ({ds.path_of(i).resolve() for i in range(len(ds))}
                            if isinstance(ds, FileBackedDataset) else set())
        return self._images


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_outputs(inputs: _Inputs, flag: str, overwrite: bool, *, files: Sequence[Path] = (),
                   dirs: Sequence[Path] = (), parents: Sequence[Path] = ()) -> None:
    """Refuse, before anything is written, outputs that would land on the input (always, even
    with ``--overwrite``) or on an earlier output (unless ``overwrite``).

    ``files`` are written or replaced; ``dirs`` are folders filled with output files (an image
    folder); ``parents`` are folders the outputs go into without being outputs themselves
    (``--out``), so an existing, non-empty one is fine.
    """
    for target in (*parents, *files, *dirs):
        resolved = target.resolve()
        if resolved in inputs.label_files:
            raise VinocrError(f"{target}: would overwrite the input label file {resolved}; "
                              f"choose another {flag}")
        if inputs.folder is not None and _within(resolved, inputs.folder):
            where = "is" if resolved == inputs.folder else "is inside"
            raise VinocrError(f"{target}: {where} the input folder {inputs.folder}; writing there "
                              f"would change the input dataset; choose another {flag}")
    existing: List[Path] = []
    for target in files:
        if target.exists():
            if target.resolve() in inputs.images():
                raise VinocrError(f"{target}: would overwrite the input image {target.resolve()}; "
                                  f"choose another {flag}")
            existing.append(target)
    for target in dirs:
        if target.is_dir() and any(target.iterdir()):
            resolved = target.resolve()
            held = next((im for im in inputs.images() if resolved in im.parents), None)
            if held is not None:
                raise VinocrError(f"{target}: would write into {resolved}, which holds the input "
                                  f"image {held}; choose another {flag}")
            existing.append(target)
    if existing and not overwrite:
        raise VinocrError(f"{existing[0]} exists already; choose another {flag} or pass "
                          "--overwrite to replace it")


def _clear_lmdb(folder: Path) -> None:
    """Delete an earlier LMDB's two files (and nothing else) before writing a new one there:
    writing into it would keep its file size and records past the new count."""
    for name in ("data.mdb", "lock.mdb"):
        (folder / name).unlink(missing_ok=True)


# ---------------------------------------------------------------------------- validate
def cmd_validate(args: argparse.Namespace) -> int:
    from vinocr.data.validate import (ERROR_CLASSES, LABEL_FILE_SUFFIXES, fixed_image_dir,
                                      validate_dataset, write_fixed)

    dataset = _open(args, charset=None)
    inputs = _Inputs(args.path, dataset)
    fixed = Path(args.export_fixed) if args.export_fixed else None
    fixed_is_lmdb = fixed is not None and fixed.suffix.lower() not in LABEL_FILE_SUFFIXES
    if fixed is not None and fixed_is_lmdb:
        _check_outputs(inputs, "--export-fixed", args.overwrite, files=[fixed / "data.mdb"],
                       parents=[fixed])
    elif fixed is not None:
        _check_outputs(inputs, "--export-fixed", args.overwrite, files=[fixed],
                       dirs=[fixed_image_dir(fixed)])
    if args.json:
        _check_outputs(inputs, "--json", args.overwrite, files=[Path(args.json)])
    report, clean = validate_dataset(dataset, args.charset, lengths=args.length,
                                     check_digit=args.check_digit)
    shown: Dict[str, int] = {}
    for issue in report.issues:
        shown[issue.kind] = shown.get(issue.kind, 0) + 1
        if shown[issue.kind] <= args.max_report:
            print(f"{issue.kind:<15} {issue.where}: {issue.message}")
    counts = report.counts()
    for kind, n in counts.items():
        if n > args.max_report:
            print(f"{kind:<15} ... {n - args.max_report} more")
    print(f"\n{report.total} samples checked, {len(clean)} clean, "
          f"{len(report.bad_indices)} with errors")
    for kind in ERROR_CLASSES:
        print(f"  {kind:<15} {counts[kind]}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "path": str(args.path), "total": report.total, "clean": len(clean),
            "counts": counts, "issues": [vars(i) for i in report.issues]}, indent=2),
            encoding="utf-8")
    if fixed is not None:
        if fixed_is_lmdb:
            _clear_lmdb(fixed)
        out = write_fixed(clean, fixed)
        print(f"wrote {len(clean)} clean samples to {out}")
    return 0 if report.ok else 1


# ------------------------------------------------------------------------------- stats
def cmd_stats(args: argparse.Namespace) -> int:
    from vinocr.data.stats import dataset_stats, format_stats

    dataset = _open(args, charset=args.charset)
    stats = dataset_stats(dataset, max_images=args.max_images)
    if args.quality:
        from vinocr.data.stats import quality_stats

        stats["quality"] = quality_stats(dataset, max_images=args.max_images)
    if args.json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
    else:
        print(format_stats(stats))
        if args.quality:
            from vinocr.data.stats import format_quality

            print("\n" + format_quality(stats["quality"]))
    if args.grid:
        from vinocr.data.augment import save_preview
        from vinocr.data.stats import track_grid

        if not getattr(dataset, "tracks", None):
            raise VinocrError(f"--grid: {args.path} holds no LRLPR-style tracks")
        if Path(args.grid).exists():
            raise VinocrError(f"--grid: {args.grid} exists; choose another path (nothing is "
                              "overwritten)")
        save_preview(args.grid, track_grid(dataset))
        print(f"wrote {args.grid}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------- split
def _safe_in_label_file(rel: str) -> bool:
    return not any(c in rel for c in "\t\r\n")


def _mark_derived(folder: Path, shares: Sequence[float], source: str, tool: str) -> None:
    """Record which share of the samples written to ``folder`` ``vinocr-synth`` generated
    (:mod:`vinocr.data.provenance`), so ``auto`` still knows them for synthetic."""
    write_derived_marker(folder, sum(shares) / len(shares) if shares else 0.0, source,
                         f"vinocr-data {tool}")


def _write_label_file(dataset: TextDataset, indices: List[int], out_file: Path,
                      shares: Sequence[float], source: str) -> None:
    """A PaddleOCR label file for ``indices``. Image files are referenced in place when the
    dataset's samples *are* files; otherwise (LMDB, rectified track frames) or when a file name
    cannot appear in a label file (TAB, newline), the sample is written beside it as PNG, and
    the folder of those copies records their synthetic share (``shares``: per sample)."""
    from vinocr.data.base import FileBackedDataset

    lines = []
    copied: List[float] = []
    image_dir = out_file.parent / (out_file.stem + "_images")
    for i in indices:
        rel = None
        if isinstance(dataset, FileBackedDataset):
            path = Path(dataset.meta(i)["path"]).resolve()
            rel = os.path.relpath(path, out_file.parent.resolve())
        if rel is None or not _safe_in_label_file(rel):
            image_dir.mkdir(parents=True, exist_ok=True)
            target = image_dir / f"{i:09d}.png"
            target.write_bytes(encode_image(dataset.load_image(i)))
            copied.append(shares[i])
            rel = os.path.relpath(target, out_file.parent)
        lines.append(f"{rel}\t{dataset.label(i)}")
    if copied:
        _mark_derived(image_dir, copied, source, "split")
    tmp = out_file.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    tmp.replace(out_file)


def _check_split_args(fractions: List[float], names: List[str]) -> None:
    if len(fractions) != len(names):
        raise VinocrError(f"--fractions has {len(fractions)} values for {len(names)} --names")
    if any(not np.isfinite(f) or f < 0 for f in fractions) or sum(fractions) <= 0:
        raise VinocrError(f"--fractions must be finite, >= 0 and not all 0, got {fractions}")
    if len(set(names)) != len(names):
        raise VinocrError(f"--names must be distinct, got {','.join(names)}")
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9][\w\-.]*", n)]
    if bad:
        raise VinocrError(f"--names: {bad[0]!r} is not a plain file name (letters, digits, _-.)")


def _test_split_names(arg: Optional[str], names: List[str]) -> List[str]:
    """The splits recorded as test splits: those given by --test-split plus those named like one
    (a split called test is held out whatever --test-split says)."""
    from vinocr.data.split import looks_like_test_name

    chosen = [] if arg is None else arg.split(",")
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise VinocrError(f"--test-split: {unknown[0]!r} is not one of --names "
                          f"({','.join(names)})")
    return [n for n in names if n in chosen or looks_like_test_name(n)]


def cmd_split(args: argparse.Namespace) -> int:
    from vinocr.data.split import MANIFEST, grouped_split, write_manifest

    names = args.names.split(",")
    _check_split_args(args.fractions, names)
    test_splits = _test_split_names(args.test_split, names)
    dataset = _open(args, charset=args.charset)
    out = Path(args.out)
    if args.lmdb:
        _check_outputs(_Inputs(args.path, dataset), "--out", args.overwrite,
                       files=[*(out / n / "data.mdb" for n in names), out / MANIFEST],
                       parents=[out, *(out / n for n in names)])
    else:
        _check_outputs(_Inputs(args.path, dataset), "--out", args.overwrite,
                       files=[*(out / f"{n}.txt" for n in names), out / MANIFEST],
                       dirs=[out / f"{n}_images" for n in names], parents=[out])
    splits = grouped_split(dataset.labels(), args.fractions, names, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    shares = sample_shares(dataset)
    files: Dict[str, str] = {}
    for name, indices in splits.items():
        if args.lmdb:
            from vinocr.data.lmdb_dataset import write_lmdb

            _clear_lmdb(out / name)
            write_lmdb(out / name, ((encode_image(dataset.load_image(i)), dataset.label(i))
                                    for i in indices))
            _mark_derived(out / name, [shares[i] for i in indices], args.path, "split --lmdb")
            target = out / name
        else:
            target = out / f"{name}.txt"
            _write_label_file(dataset, indices, target, shares, args.path)
        files[name] = target.name
        n_labels = len({dataset.label(i) for i in indices})
        print(f"{name:<6} {len(indices):>8} samples  {n_labels:>8} labels  -> {target}")
    # Written last: it records what was written, and which splits must never be trained on.
    write_manifest(out, {"source": str(Path(args.path).resolve()), "names": names,
                         "fractions": list(args.fractions), "seed": args.seed,
                         "format": "lmdb" if args.lmdb else "label_file", "files": files,
                         "samples": {n: len(splits[n]) for n in names},
                         "test_splits": test_splits})
    return 0


# --------------------------------------------------------------------------- make-lmdb
def cmd_make_lmdb(args: argparse.Namespace) -> int:
    from vinocr.data.lmdb_dataset import write_lmdb

    dataset = _open(args, charset=args.charset)
    out = Path(args.out)
    _check_outputs(_Inputs(args.path, dataset), "--out", args.overwrite,
                   files=[out / "data.mdb"], parents=[out])
    _clear_lmdb(out)
    n = write_lmdb(out, ((dataset.read_bytes(i), dataset.label(i)) for i in range(len(dataset))))
    _mark_derived(out, sample_shares(dataset), args.path, "make-lmdb")
    # read_bytes gives the stored file for file datasets and the rectified frame for tracks.
    print(f"wrote {n} samples to {out} (DTRB keys image-%09d, label-%09d, num-samples)")
    return 0


# ----------------------------------------------------------------------------- augment
def _pipeline(args: argparse.Namespace):
    from vinocr.data.augment import build_augment

    if args.config:
        from vinocr.config import load_config

        cfg = load_config(args.config, args.opt or [])
        section = cfg["Train"].get("augment")
        if section is None:
            raise VinocrError(f"{args.config}: Train.augment is not set")
    else:
        section = {"preset": args.preset, "p": 1.0}
    pipeline = build_augment(section)
    if pipeline is None:
        raise VinocrError("the augmentation config is empty (preset none, no transforms)")
    return pipeline


def cmd_augment(args: argparse.Namespace) -> int:
    from vinocr.data.augment import augment_dataset
    from vinocr.data.augment.pipeline import AUGMENT_IMAGE_DIR, AUGMENT_LABEL_FILE

    dataset = _open(args, charset=args.charset)
    # No override: the output is a training set (originals plus copies), so augmenting a test
    # split can only leak it into training. Robustness tests on augmented test data belong in an
    # evaluation tool, not here.
    reason = held_out_test_reason(Path(args.path), dataset)
    if reason is not None:
        raise VinocrError(f"{args.path}: refusing to augment a test split ({reason}); test data "
                          "must stay real so its accuracy means something; point at the train "
                          "label file")
    out = Path(args.out)
    _check_outputs(_Inputs(args.path, dataset), "--out", args.overwrite,
                   files=[out / AUGMENT_LABEL_FILE], dirs=[out / AUGMENT_IMAGE_DIR],
                   parents=[out])
    pipeline = _pipeline(args)
    samples = ((dataset.load_image(i), dataset.label(i), f"{i:09d}") for i in range(len(dataset)))
    out = augment_dataset(samples, args.out, pipeline, args.augs_per_sample, args.seed)
    # Every sample gets the same number of copies: the folder's share is the source's.
    _mark_derived(Path(args.out) / AUGMENT_IMAGE_DIR, sample_shares(dataset), args.path,
                  "augment")
    print(f"wrote {len(dataset) * (1 + args.augs_per_sample)} samples "
          f"({len(dataset)} originals + {args.augs_per_sample} augmented copies each) to {out}")
    return 0


def cmd_preview_aug(args: argparse.Namespace) -> int:
    from vinocr.data.augment import preview_grid, save_preview

    dataset = _open(args, charset=args.charset)
    if len(dataset) == 0:
        raise VinocrError(f"{args.path}: no samples to preview")
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(dataset), size=min(args.n, len(dataset)), replace=False)
    images = [dataset.load_image(int(i)) for i in sorted(picks)]
    grid = preview_grid(images, _pipeline(args), rng, n_aug=args.per_row)
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ""):
        import cv2

        out.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(out.suffix, grid)
        if not ok:
            raise VinocrError(f"{out}: cannot write images with suffix {out.suffix!r}")
        out.write_bytes(buf.tobytes())
    else:
        save_preview(out, grid)
    print(f"wrote {args.out} ({len(images)} samples x {args.per_row} augmentations)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Dataset tools for vinocr.")
    add_log_level(parser, QUIET)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="find unreadable images, bad labels, duplicates ...")
    _add_common(p)
    p.add_argument("--length", type=positive_int, nargs="+",
                   help="allowed label lengths (vin: 17)")
    p.add_argument("--check-digit", default="auto", choices=["auto", "always", "never"],
                   help="VIN check digit: auto = mandatory for North American VINs only")
    p.add_argument("--export-fixed", metavar="OUT",
                   help="write clean samples to OUT (.txt label file, else an LMDB folder)")
    p.add_argument("--max-report", type=non_negative_int, default=50, help="lines listed per error class")
    p.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --export-fixed or --json output (never the input)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("stats", help="counts, label lengths, characters, image sizes")
    _add_common(p, charset_default=None)
    p.add_argument("--max-images", type=positive_int, default=None, help="measure at most N image sizes")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quality", action="store_true",
                   help="also measure brightness, contrast, sharpness and noise per image (and, "
                   "for LRLPR tracks, how consistent a track's frames are): compare your own "
                   "crops with synthetic ones")
    p.add_argument("--grid", metavar="PNG",
                   help="LRLPR tracks: also draw the first 8 tracks (LR frames, then the first HR "
                   "frame) into this PNG")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("split", help="train/val/test split grouped by label text")
    _add_common(p, charset_default=None)
    p.add_argument("--out", required=True, help="output folder for train.txt, val.txt, test.txt")
    p.add_argument("--fractions", type=non_negative_float, nargs="+", default=[0.8, 0.1, 0.1],
                   help="relative split sizes (finite, >= 0, not all 0)")
    p.add_argument("--names", default="train,val,test")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--lmdb", action="store_true", help="write each split as an LMDB")
    p.add_argument("--test-split", metavar="NAMES",
                   help="comma-separated --names held out for testing, recorded in split.json so "
                   "`vinocr-data augment` refuses them (default: those named like a test split)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier split in --out (never the input)")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("make-lmdb", help="convert any dataset into a DTRB LMDB")
    _add_common(p, charset_default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true",
                   help="replace an LMDB in --out (never the input)")
    p.set_defaults(func=cmd_make_lmdb)

    for name, func, help_ in (("augment", cmd_augment, "offline augmentation: originals + N "
                               "augmented copies"),
                              ("preview-aug", cmd_preview_aug, "PNG grid of augmented samples")):
        p = sub.add_parser(name, help=help_)
        _add_common(p, charset_default=None)
        p.add_argument("--out", required=True)
        p.add_argument("--preset", default="vin", choices=["vin", "alpr"])
        add_config_options(p, multiple=False, use="take Train.augment from it instead of "
                           "--preset")
        p.add_argument("--seed", type=non_negative_int, default=0)
        if name == "augment":
            p.add_argument("--augs-per-sample", type=non_negative_int, required=True)
            p.add_argument("--overwrite", action="store_true",
                           help="replace the labels.txt and images of an earlier run in --out "
                           "(never the input)")
        else:
            p.add_argument("--n", type=positive_int, default=8, help="samples (rows)")
            p.add_argument("--per-row", type=positive_int, default=7,
                           help="augmented copies per row")
        p.set_defaults(func=func)
    return parser


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
