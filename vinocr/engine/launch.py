"""Running a command data-parallel under ``paddle.distributed.launch`` with a tidy terminal.

The launcher prints its configuration dump, status lines and, when a rank fails, that rank's log
again. All of it goes to ``LOG_DIR/launcher.log``. The terminal gets rank 0's own log lines and
progress bar (read from ``workerlog.0`` without Paddle's glog lines and tracebacks), and on
failure one line naming the rank and the cause, read from that rank's ``workerlog.N``.
"""
from __future__ import annotations

import codecs
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Callable, Dict, List, Optional, Tuple

logger = logging.getLogger(__name__)

EXIT_INTERRUPTED = 130

# Launcher and Paddle runtime chatter: configuration dump, glog (I1202 05:51:55.87 ...), the
# modified-flags banner, the ccache warning Paddle's extension builder gives on import.
_NOISE = re.compile(r"^(LAUNCH |[IWEF]\d{4} \d\d:\d\d:\d\d|=+( Modified FLAGS detected =+)?$|"
                    r"FLAGS\(name=|.*UserWarning: No ccache found|\s+warnings\.warn\()")
_TRACEBACK_START = re.compile(r"^(Traceback \(most recent call last\):|C\+\+ Traceback|-{8,}$|"
                              r"Error Message Summary:|During handling of the above exception|"
                              r"The above exception was the direct cause)")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Timeout)):? ?(.*)$")


class OutputFilter:
    """Splits a byte stream into what the terminal shows and what only the log keeps.

    Progress bars redraw with ``\\r``: such segments go to the terminal only. Tracebacks go to the
    log only (a failed rank is summarised in one line at the end instead)."""

    def __init__(self, show: Callable[[str], None], keep: Callable[[str], None],
                 hide_prefix: Optional[str] = None) -> None:
        # ``hide_prefix``: a rank's own final line (``prog: error: ...``, ``prog: interrupted``);
        # the launching process prints the one summary line instead.
        self.show, self.keep, self.hide_prefix = show, keep, hide_prefix
        self._pending = ""
        self._in_traceback = False
        # Reads can end inside a multi-byte character (progress bars draw with U+2588).
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed_bytes(self, data: bytes) -> None:
        self.feed(self._decoder.decode(data))

    def feed(self, text: str) -> None:
        self._pending += text
        while True:
            cut = min((i for i in (self._pending.find("\n"), self._pending.find("\r")) if i >= 0),
                      default=-1)
            if cut < 0:
                return
            segment, end = self._pending[:cut], self._pending[cut]
            self._pending = self._pending[cut + 1:]
            if end == "\r":
                self.show(segment + "\r")
            else:
                self._line(segment)

    def close(self) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = ""

    def _line(self, line: str) -> None:
        self.keep(line + "\n")
        if _TRACEBACK_START.match(line):
            self._in_traceback = True
            return
        if self._in_traceback:
            # Indented frames, blank lines and the closing exception line belong to it.
            if not line or line[0].isspace() or re.match(r"^\d+\s", line):
                return
            self._in_traceback = False
            if _EXCEPTION_LINE.match(line) or line.startswith(("[", "(")):
                return
        if _NOISE.match(line) or (self.hide_prefix and line.startswith(self.hide_prefix)):
            return
        self.show(line + "\n")


_CONTAINER_FAILED = re.compile(r"Container rank (\d+) status failed .* code (-?\d+)")


def _bytes_since(path: Path, offset: int) -> bytes:
    """What ``path`` holds after byte ``offset`` (b'' if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return b""


def _lines_since(path: Path, offset: int) -> List[str]:
    return _bytes_since(path, offset).decode("utf-8", errors="replace").splitlines()


def rank_failure(log_dir: Path, prog: str, since: Optional[Dict[str, int]] = None
                 ) -> Tuple[Optional[int], str, int]:
    """``(rank, one-line cause, exit code)`` of a failed data-parallel run, read from what this
    launch added to ``workerlog.N`` and ``launcher.log`` (``since``: file name -> size before it;
    a resumed run appends to the same files).

    A user error a rank reported (``prog: error: ...``, e.g. a rank timing out waiting for
    another) comes first; then the rank the launcher saw fail first: killed by a signal
    (``kill -9``, the out-of-memory killer) or its last exception line (a crash); then an
    interruption (the launcher stops the other ranks after a failure, so theirs is a
    consequence)."""
    since = since or {}
    found: List[Tuple[int, int, str]] = []
    crashes: Dict[int, str] = {}
    for path in sorted(log_dir.glob("workerlog.*")):
        try:
            n = int(path.suffix.lstrip("."))
        except ValueError:
            continue
        for line in reversed(_lines_since(path, since.get(path.name, 0))):
            line = line.strip()
            if line.startswith(f"{prog}: error: "):
                found.append((0, n, line[len(prog) + 9:]))
                break
            if line.startswith(f"{prog}: interrupted"):
                found.append((3, n, "interrupted"))
                break
            m = _EXCEPTION_LINE.match(line)
            if m and "Interrupt" not in m.group(1):
                crashes[n] = line
                break
    for line in _lines_since(log_dir / "launcher.log", since.get("launcher.log", 0)):
        m = _CONTAINER_FAILED.search(line)
        if m:
            n, code = int(m.group(1)), int(m.group(2))
            if code < 0:
                why = " (SIGKILL: kill -9, or the out-of-memory killer)" if code == -9 else ""
                cause = f"rank {n} was killed by signal {-code}{why}"
            else:
                cause = crashes.get(n, f"rank {n} exited with code {code}")
            found.append((1, n, cause))
            break
    found += [(2, n, line) for n, line in crashes.items()]
    if not found:
        return None, "", 1
    kind, n, cause = min(found)
    return n, cause, {0: 2, 3: EXIT_INTERRUPTED}.get(kind, 1)


def interrupt_on_sigterm() -> None:
    """In a rank: treat SIGTERM like Ctrl-C. The launcher stops ranks with SIGTERM (on Ctrl-C, or
    when another rank failed), and a KeyboardInterrupt lets the trainer write its report and say
    where to resume instead of vanishing mid-line."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _tail(path: Path, offset: int, out: OutputFilter) -> int:
    """Feed what ``path`` gained since ``offset`` to ``out``; the new offset."""
    try:
        size = path.stat().st_size
    except OSError:
        return offset
    if size < offset:   # rewritten from the start
        offset = 0
    if size == offset:
        return offset
    data = _bytes_since(path, offset)
    out.feed_bytes(data)
    return offset + len(data)


def launch(script: str, args: List[str], nproc: int, log_dir: Path, prog: str,
           stream: IO[str] = sys.stderr) -> int:
    """Run ``python -m paddle.distributed.launch --nproc_per_node nproc script args`` and return
    its exit code; on failure print one line ``prog: error: rank N: cause (logs: ...)``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
           "--log_dir", str(log_dir), script, *args]
    logger.info("launching %d processes (launcher output: %s)", nproc, log_dir / "launcher.log")
    # Rank 0's own output is shown by tailing its log: the launcher's echo of it turns progress
    # bar redraws into new lines and adds its own status lines and log dumps.
    rank0 = log_dir / "workerlog.0"
    # A resumed run appends to the same logs: only what this launch adds counts.
    since = {p.name: p.stat().st_size for p in log_dir.iterdir()
             if p.name.startswith("workerlog.") or p.name == "launcher.log"}
    offset = since.get(rank0.name, 0)
    out = OutputFilter(lambda text: (stream.write(text), stream.flush()), lambda text: None,
                       hide_prefix=f"{prog}:")
    # SIGTERM sent to this process alone (a supervisor, `kill PID`) reaches no rank: without a
    # handler, Paddle's own handler aborts this process and leaves the launcher and the ranks
    # training as orphans. It is turned into the Ctrl-C path below and forwarded.
    terminated: List[bool] = []

    def on_sigterm(signum: int, frame: object) -> None:
        terminated.append(True)
        raise KeyboardInterrupt

    previous = (signal.signal(signal.SIGTERM, on_sigterm)
                if threading.current_thread() is threading.main_thread() else None)
    try:
        code, interrupted = _supervise(cmd, env, log_dir, rank0, offset, out, terminated)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if code == 0 and not interrupted:
        return 0
    n, cause, rank_code = rank_failure(log_dir, prog, since)
    if interrupted or cause == "interrupted":
        raise KeyboardInterrupt
    if not cause:
        cause = f"the launcher exited with code {code}"
    if n is not None and not cause.startswith(f"rank {n} "):
        cause = f"rank {n}: {cause}"
    # Rank errors already say what to do; the logs hold every rank's full output.
    log_file = log_dir / (f"workerlog.{n}" if n is not None else "launcher.log")
    stream.write(f"{prog}: error: {cause} (log: {log_file})\n")
    stream.flush()
    return rank_code


def _supervise(cmd: List[str], env: Dict[str, str], log_dir: Path, rank0: Path, offset: int,
               out: OutputFilter, terminated: List[bool]) -> Tuple[int, bool]:
    """Run the Paddle launcher to its end, showing rank 0's output; ``(exit code, interrupted)``.
    ``terminated`` gains an entry when this process got SIGTERM (see :func:`launch`)."""
    interrupted, deadline = False, None
    with open(log_dir / "launcher.log", "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        while True:
            try:
                done = proc.poll() is not None
                offset = _tail(rank0, offset, out)
                if done:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    proc.terminate()
                    deadline = None
                time.sleep(0.2)
            except KeyboardInterrupt:
                # Ctrl-C reached the launcher and the ranks too (one process group): let them
                # stop cleanly (rank 0 keeps `latest` intact), then report it. A SIGTERM to
                # this process alone is passed on: the Paddle launcher stops the ranks with
                # SIGTERM, which they treat as Ctrl-C (interrupt_on_sigterm).
                if terminated and not interrupted:
                    proc.terminate()
                interrupted = True
                deadline = time.monotonic() + 120
        out.close()
        return proc.returncode, interrupted
