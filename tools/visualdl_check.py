#!/usr/bin/env python
"""Check that a run's VisualDL dashboard shows its scalars in a real (headless) browser.

    python tools/visualdl_check.py RUN_DIR [--out DIR] [--timeout 60]

Starts `visualdl --logdir RUN_DIR/visualdl` on a free 127.0.0.1 port, opens the Scalars page in
headless Chromium, expands every tag group and checks that each scalar tag in the run's event
files is drawn as a chart with data. Prints the tags found and the path of a screenshot of the
page; exits 0 when every tag is shown, 1 when one is missing, 2 when the check cannot run
(no Chromium: `apt-get install chromium`). See docs/monitoring.md.

The page is the Scalars page (``/app/scalar``); the title and number of points of every chart it
drew are read back through the Chrome DevTools protocol. tests/test_visualdl_browser.py runs the
same check (:func:`check_dashboard`) after a short training run.

Only the standard library is used on our side (a minimal WebSocket client for the DevTools
protocol); the browser is Debian's ``chromium`` package (``apt-get install chromium``).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

INSTALL_HINT = "apt-get install chromium (Debian) to run this check"

# Without the networking flags Chromium waits on update, sync and QUIC probes that never
# answer on a closed network; a fresh --user-data-dir keeps every run independent.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync")
WINDOW = (1600, 1000)


class CheckError(RuntimeError):
    """The dashboard did not show what the run wrote (or a process did not come up)."""


@dataclass
class CheckResult:
    url: str
    expected: List[str]                    # scalar tags in the run's event files
    charts: Dict[str, int]                 # chart title shown in the page -> steps drawn
    groups: Dict[str, int]                 # tag-group heading -> count shown next to it
    screenshot: Optional[Path]
    seconds: float
    console_errors: List[str] = field(default_factory=list)

    @property
    def missing(self) -> List[str]:
        return [t for t in self.expected if self.charts.get(t, 0) <= 0]

    @property
    def ok(self) -> bool:
        return bool(self.expected) and not self.missing


# ----------------------------------------------------------------------------- locating things
def find_chromium() -> Optional[str]:
    """Path of a Chromium binary: ``$VINOCR_CHROMIUM``, ``chromium`` on PATH, /usr/bin/chromium."""
    for cand in (os.environ.get("VINOCR_CHROMIUM"), shutil.which("chromium"),
                 "/usr/bin/chromium", shutil.which("chromium-browser")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def visualdl_command() -> List[str]:
    """The ``visualdl`` executable of this interpreter's environment (the venv's)."""
    exe = Path(sys.executable).parent / "visualdl"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("visualdl")
    if found:
        return [found]
    return [sys.executable, "-c",
            "import sys; from visualdl.server.app import main; sys.argv[0] = 'visualdl'; "
            "sys.exit(main())"]


def resolve_logdir(run_dir: Path) -> Path:
    """``RUN/visualdl`` for a run directory; the directory itself if it holds the event files."""
    run_dir = Path(run_dir)
    if (run_dir / "visualdl").is_dir():
        return run_dir / "visualdl"
    if any(run_dir.glob("vdlrecords.*")):
        return run_dir
    raise CheckError(f"no VisualDL logs in {run_dir} (expected {run_dir / 'visualdl'}; "
                     "train with Global.visualdl: true)")


def scalar_tags(logdir: Path) -> List[str]:
    """Scalar tags in the event files under ``logdir``, read with VisualDL's own LogReader."""
    from visualdl import LogReader

    tags: List[str] = []
    for path in sorted(Path(logdir).rglob("vdlrecords.*")):
        for tag in LogReader(file_path=str(path)).get_tags().get("scalar", []):
            if tag not in tags:
                tags.append(tag)
    return tags


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_json(url: str, timeout: float = 5.0) -> Any:
    # VisualDL 2.5.3 answers /app/index with HTTP 500 when Accept-Language is missing.
    req = urllib.request.Request(url, headers={"Accept-Language": "en-US,en;q=0.9"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


def wait_for_visualdl(base: str, proc: subprocess.Popen, timeout: float) -> Dict[str, Any]:
    """Poll the scalar-tags API until the server answers with data; return that answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CheckError(f"visualdl exited with code {proc.returncode} before answering")
        try:
            answer = _http_json(f"{base}/app/api/scalar/tags", timeout=2)
            if answer.get("status") == 0 and answer.get("data", {}).get("tags"):
                return answer["data"]
            last = answer
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.25)
    raise CheckError(f"visualdl did not answer at {base} within {timeout:.0f}s ({last!r})")


# ----------------------------------------------------------------------------- processes
def spawn(cmd: Sequence[str], log_path: Path,
          env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """A child in its own process group, so it and everything it forks can be ended together;
    ``env`` is added to this process's environment."""
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=None if env is None else {**os.environ, **env})
    finally:
        log.close()


def stop_process(proc: Optional[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM the child's process group (the one ``spawn`` created), then SIGKILL."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # Stragglers in the group (Chromium's helpers) after the leader exited.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ----------------------------------------------------------------------------- DevTools client
class _WebSocket:
    """Just enough RFC 6455 for the DevTools protocol: text frames, ping/pong, close."""

    def __init__(self, url: str, timeout: float) -> None:
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + (f"?{u.query}" if u.query else "")
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CheckError("DevTools closed the WebSocket handshake")
            buf += chunk
        head, self._buf = buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101" not in status:
            raise CheckError(f"DevTools refused the WebSocket: {status.decode(errors='replace')}")

    def _exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise CheckError("DevTools WebSocket closed")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _send_frame(self, opcode: int, data: bytes) -> None:
        n = len(data)
        header = bytearray([0x80 | opcode])
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack("!H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack("!Q", n)
        mask = os.urandom(4)
        keystream = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(data, "big") ^ int.from_bytes(keystream, "big")).to_bytes(n, "big")
        self.sock.sendall(bytes(header) + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode("utf-8"))

    def recv(self) -> str:
        parts: List[bytes] = []
        while True:
            b0, b1 = self._exact(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            mask = self._exact(4) if b1 & 0x80 else None
            data = self._exact(n)
            if mask:
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
            if opcode == 0x9:                       # ping
                self._send_frame(0xA, data)
                continue
            if opcode == 0x8:
                raise CheckError("DevTools closed the WebSocket")
            if opcode in (0x0, 0x1, 0x2):
                parts.append(data)
                if b0 & 0x80:
                    return b"".join(parts).decode("utf-8")

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class DevTools:
    """Commands to one page target; events are kept only for console errors and exceptions."""

    def __init__(self, ws_url: str, timeout: float = 30.0) -> None:
        self.ws = _WebSocket(ws_url, timeout)
        self.next_id = 0
        self.errors: List[str] = []

    def call(self, method: str, **params: Any) -> Dict[str, Any]:
        self.next_id += 1
        msg_id = self.next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise CheckError(f"DevTools {method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg: Dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"exception: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            host = urllib.parse.urlsplit(entry.get("url") or "").hostname
            if host and host not in ("127.0.0.1", "localhost"):
                return  # the page's analytics beacon (hm.baidu.com): unreachable offline, harmless
            self.errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CheckError("page script failed: "
                             f"{details.get('exception', {}).get('description') or details}")
        return result.get("result", {}).get("value")

    def close(self) -> None:
        self.ws.close()


def devtools_page(user_data_dir: Path, proc: subprocess.Popen, timeout: float) -> str:
    """WebSocket URL of Chromium's first page, via the DevToolsActivePort file it writes."""
    port_file = user_data_dir / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CheckError(f"chromium exited with code {proc.returncode} at start-up")
        try:
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                targets = json.loads(r.read().decode("utf-8"))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except (OSError, ValueError, IndexError) as exc:
            last = exc
        time.sleep(0.2)
    raise CheckError(f"chromium's DevTools did not come up within {timeout:.0f}s ({last!r})")


def start_chromium(chromium: str, profile: Path, log_path: Path) -> subprocess.Popen:
    """Headless Chromium on about:blank with DevTools on a free loopback port (read back with
    :func:`devtools_page`); stop it with :func:`stop_process`."""
    return spawn([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                  "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
                  f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars",
                  "--lang=en-US", "about:blank"], log_path)


@contextlib.contextmanager
def browser_page(chromium: str, log_path: Path, timeout: float = 30.0) -> Iterator[DevTools]:
    """A headless Chromium page driven through DevTools (Page, Runtime and Log enabled); the
    browser and its temporary profile are removed on exit, whatever happened."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    browser = None
    tools: Optional[DevTools] = None
    try:
        browser = start_chromium(chromium, profile, log_path)
        tools = DevTools(devtools_page(profile, browser, timeout=timeout))
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            tools.call(domain)
        yield tools
    finally:
        if tools is not None:
            try:
                tools.close()
            except OSError:
                pass
        stop_process(browser)
        shutil.rmtree(profile, ignore_errors=True)


# The page's state as JSON: open collapsed tag groups, then list every chart's title and the
# number of points its series hold. ``echarts.getInstanceByDom`` is ECharts' public API; the
# dynamic import returns the very module instance the page's charts were made with.
_PAGE_STATE_JS = r"""
(async () => {
  const echarts = await import('/app/__snowpack__/pkg/echarts.js');
  const groups = {};
  let clicked = 0;
  for (const h3 of document.querySelectorAll('h3')) {
    const header = h3.parentElement;
    const total = header.querySelector('.total');
    if (!total) continue;
    groups[h3.textContent.trim()] = Number(total.textContent);
    if (!header.nextElementSibling) { header.click(); clicked += 1; }
  }
  const charts = {};
  for (const el of document.querySelectorAll('div.echarts')) {
    const chart = echarts.getInstanceByDom(el);
    if (!chart) continue;
    const opt = chart.getOption() || {};
    const title = ((opt.title || [])[0] || {}).text;
    if (!title) continue;
    let points = 0;   // steps drawn: the longest series (raw and smoothed lines are two)
    for (const s of opt.series || []) points = Math.max(points, (s.data || []).length);
    charts[title] = Math.max(points, charts[title] || 0);
  }
  const article = document.querySelector('article');
  return {title: document.title, groups, charts, clicked,
          height: Math.max(document.documentElement.scrollHeight,
                           article ? article.scrollHeight + 80 : 0)};
})()
"""


def check_dashboard(run_dir: Path, out_dir: Optional[Path] = None, timeout: float = 60.0,
                    chromium: Optional[str] = None, port: Optional[int] = None,
                    expected: Optional[Sequence[str]] = None) -> CheckResult:
    """Serve ``run_dir``'s VisualDL logs and check the Scalars page in headless Chromium.

    Returns the result (``result.ok``) rather than raising on missing charts, so callers can
    print what was found; raises ``CheckError`` when a process does not come up. visualdl and
    Chromium are always stopped, on success, failure or interruption.
    """
    start = time.monotonic()
    chromium = chromium or find_chromium()
    if chromium is None:
        raise CheckError(f"Chromium not installed: {INSTALL_HINT}")
    logdir = resolve_logdir(Path(run_dir))
    tags = list(expected) if expected is not None else scalar_tags(logdir)
    if not tags:
        raise CheckError(f"no scalar tags in {logdir}")
    out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="vdlcheck-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/app/scalar"
    vdl = None
    try:
        vdl = spawn(visualdl_command() + ["--logdir", str(logdir), "--host", "127.0.0.1",
                                          "--port", str(port)], out_dir / "visualdl.log")
        wait_for_visualdl(base, vdl, timeout=max(5.0, timeout / 2))
        with browser_page(chromium, out_dir / "chromium.log") as tools:
            tools.call("Page.navigate", url=url)

            deadline = start + timeout
            state: Dict[str, Any] = {}
            while time.monotonic() < deadline:
                try:
                    state = tools.evaluate(_PAGE_STATE_JS) or {}
                except CheckError as exc:            # page still loading its modules
                    state = {"error": str(exc)}
                charts = state.get("charts", {})
                if state.get("clicked") == 0 and all(charts.get(t, 0) > 0 for t in tags):
                    break
                time.sleep(0.5)

            screenshot = None
            try:
                height = int(min(max(state.get("height") or WINDOW[1], WINDOW[1]), 6000))
                tools.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=height,
                           deviceScaleFactor=1, mobile=False)
                time.sleep(1.0)                       # let the charts re-layout to the new size
                shot = tools.call("Page.captureScreenshot", format="png")
                screenshot = out_dir / "visualdl_scalars.png"
                screenshot.write_bytes(base64.b64decode(shot["data"]))
            except (CheckError, OSError, KeyError, ValueError):
                screenshot = None
            return CheckResult(url=url, expected=tags, charts=dict(state.get("charts", {})),
                               groups=dict(state.get("groups", {})), screenshot=screenshot,
                               seconds=time.monotonic() - start,
                               console_errors=list(tools.errors) + (
                                   [state["error"]] if state.get("error") else []))
    finally:
        stop_process(vdl)


def format_result(result: CheckResult) -> str:
    lines = [f"page: {result.url}",
             "groups shown: " + ", ".join(f"{k} ({v})" for k, v in sorted(result.groups.items()))]
    for tag in result.expected:
        points = result.charts.get(tag, 0)
        lines.append(f"  {'ok     ' if points > 0 else 'MISSING'} {tag}: {points} step(s) drawn")
    extra = sorted(set(result.charts) - set(result.expected))
    if extra:
        lines.append("charts not in the event files: " + ", ".join(extra))
    if result.console_errors:
        lines.append("browser errors: " + "; ".join(result.console_errors[:5]))
    lines.append(f"screenshot: {result.screenshot}")
    lines.append(f"{'PASS' if result.ok else 'FAIL'}: {len(result.expected) - len(result.missing)}"
                 f"/{len(result.expected)} scalar tags shown ({result.seconds:.1f}s)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="a run directory (with visualdl/) or a VisualDL log directory")
    ap.add_argument("--out", default=None,
                    help="where to write the screenshot and the visualdl/chromium logs "
                         "(default: a new temporary directory)")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds to wait for the page to draw every chart (default 60)")
    ap.add_argument("--port", type=int, default=None, help="visualdl port (default: a free one)")
    ap.add_argument("--chromium", default=None,
                    help="Chromium binary (default: $VINOCR_CHROMIUM, chromium on PATH, "
                         "/usr/bin/chromium)")
    args = ap.parse_args(argv)
    chromium = args.chromium or find_chromium()
    if chromium is None:
        print(f"Chromium not installed: {INSTALL_HINT}", file=sys.stderr)
        return 2
    try:
        result = check_dashboard(args.run_dir, out_dir=args.out, timeout=args.timeout,
                                 chromium=chromium, port=args.port)
    except CheckError as exc:
        print(f"check could not run: {exc}", file=sys.stderr)
        return 2
    print(format_result(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
