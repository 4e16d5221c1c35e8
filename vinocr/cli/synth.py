"""``vinocr-synth``: generate synthetic VIN crops and LRLPR-26-style plate tracks.

Examples::

    vinocr-synth vin --n 1000 --out data/synth_vin --seed 0 --format labelfile
    vinocr-synth vin --n 200000 --out data/synth_lmdb --format lmdb --styles engraved,dot_peen \
        --workers 8
    vinocr-synth plates --tracks 100 --out data/synth_plates --seed 0
    vinocr-synth plate-crops --n 5000 --formats cn_blue:6,cn_green --out data/synth_cn --seed 0
"""
from __future__ import annotations

import argparse
import sys
from typing import List, NoReturn, Optional

from vinocr.cli.common import (add_log_level, cli_entry, non_negative_int, positive_int,
                               probability, setup_logging)
from vinocr.errors import VinocrError

PROG = "vinocr-synth"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become one-line VinocrErrors (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        raise VinocrError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    from vinocr.data.synth.pools import POOL_NAMES
    from vinocr.data.synth.vin_render import STYLES

    parser = _Parser(prog=PROG, description="Generate synthetic VIN crops, plate tracks and plate crops.")
    add_log_level(parser)
    # Also accepted after the subcommand; SUPPRESS keeps the top-level value when it is absent.
    common = argparse.ArgumentParser(add_help=False)
    add_log_level(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="{vin,plates,plate-crops}", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("vin", parents=[common], help="VIN text-line crops (label file or LMDB)")
    p.add_argument("--n", type=positive_int, required=True, help="number of crops")
    p.add_argument("--out", required=True, help="output directory (must be empty)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="dataset seed (default 0)")
    p.add_argument("--format", default="labelfile", choices=["labelfile", "lmdb"],
                   help="labelfile: images/*.png + labels.txt (PaddleOCR); lmdb: DTRB LMDB")
    p.add_argument("--styles", default=None,
                   help="comma-separated subset of " + ",".join(STYLES)
                   + " (default: every style of --pool)")
    p.add_argument("--pool", default="all", choices=list(POOL_NAMES),
                   help="style pool: fonts, materials and camera damage to draw from. 'train' "
                   "for training data you will judge on a 'heldout' test set of fonts, materials "
                   "and damage that training never sees; 'all' (default) uses everything")
    p.add_argument("--delimiter-prob", type=probability, default=0.3,
                   help="probability of drawing '*' delimiters around the VIN (default 0.3)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="worker processes; the output does not depend on it")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier run in --out")
    p.set_defaults(func=cmd_vin)

    p = sub.add_parser("plates", parents=[common],
                       help="LRLPR-26-style tracks (5 HR + 5 LR frames each)")
    p.add_argument("--tracks", type=positive_int, required=True, help="number of tracks")
    p.add_argument("--out", required=True, help="output directory (must be empty)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="dataset seed (default 0)")
    p.add_argument("--layouts", default="brazilian,mercosur",
                   help="comma-separated layouts, used in turn (default brazilian,mercosur)")
    p.add_argument("--scenario", default="A", choices=["A", "B"],
                   help="A: daylight tracks with corner annotations (default); B: looser crops, "
                        "night tracks, no corners, as in LRLPR-26's Scenario-B")
    p.add_argument("--image-ext", default=None, choices=[".png", ".jpg"],
                   help="frame file type (default: the scenario's, .png for A, .jpg for B)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="worker processes; the output does not depend on it")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier run in --out")
    p.set_defaults(func=cmd_plates)

    p = sub.add_parser("plate-crops", parents=[common],
                       help="plate crops of any registered format (label file)")
    p.add_argument("--n", type=positive_int, required=True, help="number of crops")
    p.add_argument("--formats", required=True,
                   help="comma-separated format or group names as in Decode.formats, each with "
                   "an optional weight: 'cn_blue:6,cn_green', 'us', 'eu_de,eu_fr', 'all' "
                   "(a group's weight is split evenly over its members)")
    p.add_argument("--out", required=True, help="output directory (must be empty)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="dataset seed (default 0)")
    p.add_argument("--two-row", type=probability, default=None, dest="two_row_p",
                   help="chance of a two-row plate where the region has them (default: each "
                   "region's own rate; 0: one-row only)")
    p.add_argument("--charset", default="plate_cn",
                   help="the recogniser's charset (built-in name or dictionary file); labels "
                   "hold only its characters (default plate_cn: 0-9, A-Z and the Chinese signs)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="worker processes; the output does not depend on it")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier run in --out")
    p.set_defaults(func=cmd_plate_crops)
    return parser


def cmd_vin(args: argparse.Namespace) -> int:
    from vinocr.data.synth.writer import generate_vin_dataset

    out = generate_vin_dataset(args.out, args.n, seed=args.seed, fmt=args.format,
                               styles=args.styles, delimiter_prob=args.delimiter_prob,
                               workers=args.workers, overwrite=args.overwrite, pool=args.pool)
    print(f"wrote {args.n} VIN crops ({args.format}, pool {args.pool}) to {out}")
    return 0


def cmd_plates(args: argparse.Namespace) -> int:
    from vinocr.data.synth.writer import generate_plate_tracks

    out = generate_plate_tracks(args.out, args.tracks, seed=args.seed, layouts=args.layouts,
                                workers=args.workers, image_ext=args.image_ext,
                                overwrite=args.overwrite, scenario=args.scenario)
    print(f"wrote {args.tracks} plate tracks to {out}")
    return 0


def cmd_plate_crops(args: argparse.Namespace) -> int:
    from vinocr.data.synth.writer import generate_plate_crops

    out = generate_plate_crops(args.out, args.n, args.formats, seed=args.seed,
                               two_row_p=args.two_row_p, charset=args.charset,
                               workers=args.workers,
                               overwrite=args.overwrite)
    print(f"wrote {args.n} plate crops ({args.formats}) to {out}")
    return 0


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``vinocr-synth``; returns the exit status (2 for user errors)."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
