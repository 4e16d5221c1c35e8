"""Shared command-line plumbing: logging set-up and user-error handling.

User errors (:class:`~vinocr.errors.VinocrError`) print one line, ``vinocr-<tool>: error: ...``,
and exit with status 2; Ctrl-C exits with 130. Neither shows a traceback. Unexpected exceptions
still show one, because those are bugs we want reported.
"""
from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import sys
from typing import Callable, List, Optional

from vinocr.errors import VinocrError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr, force=True)


# ------------------------------------------------------------------ options every CLI shares
#: ``--log-level`` values (those of the configs' ``Global.log_level``); any case is accepted.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: The ``--log-level`` default.
DEFAULT_LOG_LEVEL = "INFO"
#: Default of the tools whose stdout or one-line error is their whole answer (vinocr-predict,
#: -eval, -bench, -data, -config): progress messages would drown it.
QUIET = "WARNING"
#: Default that leaves the level to the config: ``args.log_level`` is None and the tool calls
#: ``setup_logging(args.log_level or cfg["Global"]["log_level"])`` once the config is read.
FROM_CONFIG = None


def add_log_level(parser: argparse.ArgumentParser, default: Optional[str] = DEFAULT_LOG_LEVEL
                  ) -> None:
    """Add ``--log-level`` to ``parser``. ``default`` is :data:`DEFAULT_LOG_LEVEL`,
    :data:`QUIET`, :data:`FROM_CONFIG` or ``argparse.SUPPRESS`` (a subcommand's copy of the
    option that keeps the top-level value when it is absent)."""
    if default is FROM_CONFIG:
        shown = "the config's Global.log_level"
    elif default == argparse.SUPPRESS:
        shown = "the level given before the subcommand"
    else:
        shown = default
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=default,
                        help=f"logging verbosity (default: {shown})")


def add_config_options(parser: argparse.ArgumentParser, required: bool = False,
                       multiple: bool = True, overrides: bool = True,
                       use: Optional[str] = None) -> None:
    """Add ``-c/--config`` (YAML file(s), ``_base_`` resolved, merged in order: a list, or one
    path with ``multiple=False``) and, with ``overrides``, ``-o/--opt`` (``Key.sub=value``
    strings, default ``[]``). ``use`` says what the tool takes from the config."""
    what = "YAML config file(s), merged in order" if multiple else "YAML config file"
    parser.add_argument("-c", "--config", nargs="+" if multiple else None, required=required,
                        metavar="YAML", help=what + (f"; {use}" if use else ""))
    if overrides:
        # extend: `-o A=1 -o B=2` keeps both (with nargs="+" alone the second -o dropped A=1)
        parser.add_argument("-o", "--opt", nargs="+", action="extend", default=[],
                            metavar="KEY=VALUE",
                            help="config overrides Key.sub=value, applied after the config files")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _parse_finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0 (seeds, counts)."""
    value = _parse_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (batch sizes, workers, threads)."""
    value = _parse_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0 (tolerances, weights); NaN and inf are rejected."""
    value = _parse_finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value:g}")
    return value


def probability(text: str) -> float:
    """argparse type: a float in [0, 1]; NaN is rejected."""
    value = _parse_finite(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def cli_entry(prog: str) -> Callable[[Callable[[Optional[List[str]]], int]],
                                     Callable[[Optional[List[str]]], int]]:
    """Decorate ``main(argv) -> int`` so user errors and Ctrl-C end cleanly with a one-line message."""
    def wrap(main: Callable[[Optional[List[str]]], int]) -> Callable[[Optional[List[str]]], int]:
        @functools.wraps(main)
        def runner(argv: Optional[List[str]] = None) -> int:
            try:
                return main(argv)
            except VinocrError as exc:
                message = str(exc).replace("\n", " ")
                print(f"{prog}: error: {message}", file=sys.stderr)
                return EXIT_USER_ERROR
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            except BrokenPipeError:  # e.g. `vinocr-data stats ... | head`
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                return 0
            except OSError as exc:
                # Unwritable output folders, full disks, files where folders should be: the user
                # can fix these, so they get the path and the reason, not a traceback.
                where = exc.filename if exc.filename is not None else ""
                reason = exc.strerror or str(exc)
                print(f"{prog}: error: {where}: {reason}" if where else f"{prog}: error: {reason}",
                      file=sys.stderr)
                return EXIT_USER_ERROR
        return runner
    return wrap
