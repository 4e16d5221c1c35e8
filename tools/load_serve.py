#!/usr/bin/env python
"""Load check of vinocr-serve: batch-1 reads at several concurrencies, on loopback only.

    python tools/load_serve.py --model EXP --seconds 10 --concurrency 1 4 16

Measures the direct pipeline first (``vinocr-bench``'s end-to-end figure: preprocessing, engine
and decoder of the same ``Recognizer`` in this process, batch 1, 1 thread), then starts
``vinocr-serve --model EXP`` on a free 127.0.0.1 port with a temporary data directory (or uses
``--url``, which must be a loopback address), and for each concurrency C runs C client threads,
each with its own keep-alive connection, posting one PNG crop per request for ``--seconds``.
Prints requests, throughput and p50/p95 latency per concurrency as a Markdown table; exits 1 if
any request failed (anything but HTTP 200), 2 if the server did not come up.

The HTTP client is the standard library's, so the figures include no third-party client cost.
The helpers here (:func:`start_server`, :func:`multipart`) are also what tests/test_serve.py uses
to run the real server.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS.parent))
sys.path.insert(0, str(TOOLS))

from visualdl_check import free_port, spawn, stop_process  # noqa: E402

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ServerError(RuntimeError):
    """The server did not come up."""


# ------------------------------------------------------------------------------ HTTP helpers
def multipart(fields: Dict[str, str], files: Sequence[Tuple[str, str, bytes, str]]
              ) -> Tuple[bytes, str]:
    """A multipart/form-data body and its content type; ``files`` are (field, filename, bytes,
    content type)."""
    boundary = uuid.uuid4().hex
    parts: List[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode("utf-8"))
    for name, filename, data, ctype in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'.encode("utf-8")
                     + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode("utf-8"))
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def request(base: str, method: str, path: str, body: Optional[bytes] = None,
            content_type: Optional[str] = None, token: Optional[str] = None,
            json_body: Any = None, timeout: float = 60.0) -> Tuple[int, Any, Dict[str, str]]:
    """One request on a new connection: ``(status, parsed JSON or text, headers)``."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    headers = {}
    if json_body is not None:
        body, content_type = json.dumps(json_body).encode("utf-8"), "application/json"
    if content_type:
        headers["Content-Type"] = content_type
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        info = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    if "json" in info.get("content-type", ""):
        return resp.status, json.loads(raw.decode("utf-8")), info
    if info.get("content-type", "").startswith("image/"):
        return resp.status, raw, info
    return resp.status, raw.decode("utf-8", "replace"), info


class Server:
    """A ``vinocr-serve`` child process (its own process group) on a loopback port."""

    def __init__(self, proc: subprocess.Popen, base: str, log: Path) -> None:
        self.proc, self.base, self.log = proc, base, log

    def stop(self) -> None:
        """Ctrl-C equivalent (SIGTERM to the group), then SIGKILL: uvicorn shuts down cleanly."""
        stop_process(self.proc, grace=40.0)

    def kill(self) -> None:
        """kill -9 of the server alone, as a crash would end it (its job children are not
        signalled; they notice the parent's death themselves)."""
        os.kill(self.proc.pid, 9)
        self.proc.wait(timeout=30)


def start_server(model: Path, data_dir: Path, log: Path, extra: Sequence[str] = (),
                 env: Optional[Dict[str, str]] = None, timeout: float = 90.0) -> Server:
    """Start ``vinocr-serve`` on a free 127.0.0.1 port and wait until /healthz answers ok."""
    port = free_port()
    cmd = [sys.executable, "-m", "vinocr.cli.serve", "--model", str(model), "--data-dir",
           str(data_dir), "--host", "127.0.0.1", "--port", str(port), *extra]
    proc = spawn(cmd, log, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"vinocr-serve exited with {proc.returncode}: "
                              f"{log.read_text(errors='replace')[-2000:]}")
        try:
            status, doc, _ = request(base, "GET", "/healthz", timeout=2)
            if status == 200 and doc.get("status") == "ok":
                return Server(proc, base, log)
        except OSError:
            pass
        time.sleep(0.2)
    stop_process(proc)
    raise ServerError(f"vinocr-serve did not answer at {base} within {timeout:.0f}s")


# ------------------------------------------------------------------------------------ load
def crop_png(width: int, height: int, seed: int = 0) -> bytes:
    import cv2

    rng = np.random.default_rng(seed)
    ok, buf = cv2.imencode(".png", rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


def run_load(base: str, png: bytes, concurrency: int, seconds: float,
             token: Optional[str] = None) -> Dict[str, Any]:
    """``concurrency`` threads posting batch-1 reads for ``seconds``; latencies and failures."""
    body, ctype = multipart({}, [("image", "crop.png", png, "image/png")])
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    u = urllib.parse.urlsplit(base)
    latencies: List[List[float]] = [[] for _ in range(concurrency)]
    failures: List[str] = []
    stop_at = time.perf_counter() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/v1/read", body=body, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    status = resp.status
                except (OSError, http.client.HTTPException) as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    conn.close()
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
                    continue
                if status != 200:
                    failures.append(f"HTTP {status}")
                    continue
                latencies[k].append(time.perf_counter() - t0)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array([x for per in latencies for x in per]) * 1000
    return {"concurrency": concurrency, "requests": int(lat.size), "failures": failures,
            "throughput": lat.size / wall,
            "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p95": float(np.percentile(lat, 95)) if lat.size else float("nan")}


def direct_figure(model: Path, runs: int) -> Dict[str, float]:
    """vinocr-bench's end-to-end batch-1 figure of the model's default backend, 1 thread."""
    from vinocr.cli.bench import time_recognizers
    from vinocr.predict import Recognizer

    rec = Recognizer.from_dir(model, threads=1)
    return {"backend": rec.backend.name, **time_recognizers([rec], 1, runs, warmup=5)[0]}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="exported model directory")
    ap.add_argument("--url", default=None, help="a running vinocr-serve on loopback (default: "
                    "start one)")
    ap.add_argument("--token", default=None, help="bearer token of --url's server")
    ap.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--direct-runs", type=int, default=200,
                    help="timed calls of the in-process figure")
    ap.add_argument("--threads", type=int, default=1, help="engine threads of the started server")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.seconds > 120:
        print("--seconds must be in (0, 120]: the check is bounded in time", file=sys.stderr)
        return 2
    model = Path(args.model)
    from vinocr.predict import read_model_info

    _, height, width = read_model_info(model).image_shape
    png = crop_png(width, height)
    direct = direct_figure(model, args.direct_runs)
    work = None
    server = None
    try:
        if args.url:
            host = urllib.parse.urlsplit(args.url).hostname
            if host not in LOOPBACK:
                print(f"--url {args.url}: loopback addresses only ({', '.join(LOOPBACK)})",
                      file=sys.stderr)
                return 2
            base = args.url.rstrip("/")
        else:
            work = Path(tempfile.mkdtemp(prefix="vinocr-load-"))
            try:
                server = start_server(model, work / "data", work / "serve.log",
                                      ["--threads", str(args.threads), "--log-level",
                                       "WARNING"])
            except ServerError as exc:
                print(f"server did not start: {exc}", file=sys.stderr)
                return 2
            base = server.base
        run_load(base, png, 1, 1.0, args.token)   # warm-up: first-call allocations
        rows = [run_load(base, png, c, args.seconds, args.token) for c in args.concurrency]
    finally:
        if server is not None:
            server.stop()
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"direct Recognizer ({direct['backend']}, 1 thread, batch 1, {args.direct_runs} "
          f"calls): end-to-end p50 {direct['e2e_p50']:.2f} ms, {direct['e2e_ips']:.1f} images/s")
    print(f"\nvinocr-serve /v1/read, batch 1, {args.seconds:g} s per row, input {width}x{height}"
          f" PNG\n")
    print("| concurrency | requests | failed | requests/s | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    failed = 0
    for r in rows:
        failed += len(r["failures"])
        print(f"| {r['concurrency']} | {r['requests']} | {len(r['failures'])} | "
              f"{r['throughput']:.1f} | {r['p50']:.2f} | {r['p95']:.2f} |")
    if failed:
        firsts = sorted({f for r in rows for f in r["failures"]})[:5]
        print(f"\nFAIL: {failed} request(s) failed: {'; '.join(firsts)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
