"""``vinocr-config``: print (and optionally write) the fully resolved, validated config."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import yaml

from vinocr.cli.common import QUIET, add_config_options, add_log_level, cli_entry, setup_logging
from vinocr.config import load_config, write_resolved_config

PROG = "vinocr-config"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Resolve _base_ files and -o overrides, "
                                "validate against the schema and print the result.")
    add_config_options(p, required=True)
    p.add_argument("--write", action="store_true",
                   help="also write it as config.yml into Global.run_dir")
    add_log_level(p, QUIET)
    return p


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    cfg = load_config(args.config, args.opt)
    sys.stdout.write(yaml.safe_dump(dict(cfg), sort_keys=False, allow_unicode=True))
    if args.write:
        path = write_resolved_config(cfg, cfg["Global"]["run_dir"])
        print(f"# written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
