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
