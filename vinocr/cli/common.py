"""Shared command-line plumbing: logging set-up and user-error handling.

User errors (:class:`~vinocr.errors.VinocrError`) print one line, ``vinocr-<tool>: error: ...``,
and exit with status 2; Ctrl-C exits with 130. Neither shows a traceback. Unexpected exceptions
still show one, because those are bugs we want reported.
"""
from __future__ import annotations

import functools
import logging
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
        return runner
    return wrap
