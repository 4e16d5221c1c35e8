"""``vinocr-bench``: latency and throughput of an exported model in every form it was exported in
(Paddle inference with oneDNN, onnxruntime fp32, onnxruntime int8), beside the stock rapidocr
PP-OCRv4 ONNX under onnxruntime in the same run, as a Markdown table.

    vinocr-bench --model exported/vin --runs 100

For every backend x threads x batch size: the engine call alone (p50 / p95 ms per batch, images/s
from the mean), the whole ``Recognizer`` pipeline (preprocessing + engine + the model's own
decoder, p50 ms and images/s), and the engine's p50 speed-up over the rapidocr ONNX at the same
threads and batch (its 6625-class head and greedy decoding, at this model's input size). Inputs
are random crops at the model's input size, so no padding is involved. Backends whose file the
directory lacks are skipped and the output says so. The row ``vinocr-predict`` uses by default
(``--backend auto``) is marked.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from vinocr.cli.common import (QUIET, add_log_level, cli_entry, non_negative_int, positive_int,
                               setup_logging)
from vinocr.predict import BACKENDS

PROG = "vinocr-bench"

COLUMNS = ["backend", "threads", "batch", "p50 ms", "p95 ms", "images/s",
           "end-to-end p50 ms", "end-to-end images/s", "speed-up vs rapidocr"]
REFERENCE = "rapidocr ONNX (stock)"
ENGINES = tuple(b for b in BACKENDS if b != "auto")


class ReferenceBackend:
    """The stock PP-OCRv4 ONNX shipped in ``rapidocr_onnxruntime`` (our pretrained source)."""

    name = REFERENCE
    fixed_width = None

    def __init__(self, threads: int) -> None:
        from vinocr.charset import _rapidocr_rec_onnx
        from vinocr.export.onnx import onnx_session

        self.session = onnx_session(_rapidocr_rec_onnx(), threads=threads)
        self._input = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: batch})[0]


def random_crops(n: int, height: int, width: int, seed: int = 0) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]


#: Consecutive calls per engine in one turn of :func:`time_recognizers`.
BLOCK = 10


def time_recognizers(recognizers: Sequence[Any], batch: int, runs: int, warmup: int
                     ) -> List[Dict[str, float]]:
    """Engine and end-to-end timings of ``runs`` calls on ``batch`` crops, per recogniser.

    The recognisers take turns in blocks of :data:`BLOCK` calls, so a slow phase of the machine
    (another job, a frequency change) hits every row alike and the speed-up column stays fair.
    The first call of each block is not timed: onnxruntime's worker threads keep spinning for a
    while after a call, and with several threads that would slow whichever engine runs next,
    which a deployment running one engine never sees.
    """
    engine: List[List[float]] = [[] for _ in recognizers]
    total: List[List[float]] = [[] for _ in recognizers]
    inputs = []
    for recognizer in recognizers:
        _, height, width = recognizer.image_shape
        inputs.append(random_crops(batch, height, width))
    done = 0
    first = True
    while done < runs:
        block = min(BLOCK, runs - done)
        for k, recognizer in enumerate(recognizers):
            untimed = warmup if first else 1
            for i in range(untimed + block):
                t0 = time.perf_counter()
                x = recognizer.preprocess(inputs[k])
                t1 = time.perf_counter()
                probs = recognizer.forward(x)
                t2 = time.perf_counter()
                recognizer.decode(probs)
                t3 = time.perf_counter()
                if i >= untimed:
                    engine[k].append(t2 - t1)
                    total[k].append(t3 - t0)
        done += block
        first = False
    out = []
    for k in range(len(recognizers)):
        e = np.array(engine[k]) * 1000
        t = np.array(total[k]) * 1000
        out.append({"p50": float(np.percentile(e, 50)), "p95": float(np.percentile(e, 95)),
                    "ips": batch * 1000 / float(e.mean()), "e2e_p50": float(np.percentile(t, 50)),
                    "e2e_ips": batch * 1000 / float(t.mean())})
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Latency and throughput of an exported "
                                "model: Paddle inference (oneDNN) vs onnxruntime.")
    p.add_argument("--model", required=True, help="exported model directory")
    p.add_argument("--runs", type=positive_int, default=100, help="timed runs per row")
    p.add_argument("--warmup", type=non_negative_int, default=None,
                   help="untimed runs first (default: runs // 10, at least 1)")
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=positive_int, nargs="+", default=[1, 2])
    p.add_argument("--backends", nargs="+", choices=ENGINES, default=list(ENGINES),
                   help="engines to time (default: every form the directory holds)")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help=f"skip the {REFERENCE} rows")
    p.add_argument("--out", help="also write the table to this Markdown file")
    add_log_level(p, QUIET)
    return p


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from vinocr.charset import load_charset
    from vinocr.cli.predict import native_stdout_to_stderr
    from vinocr.predict import ONNX_FILES, Recognizer, read_model_info, resolve_backend

    warmup = max(1, args.runs // 10) if args.warmup is None else args.warmup
    model_dir = Path(args.model)
    info = read_model_info(model_dir)
    default = resolve_backend(model_dir, "auto")
    notes: List[str] = []
    backends = list(dict.fromkeys(args.backends))
    onnx_missing = None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        onnx_missing = "the onnxruntime package is not installed"
    for name, filename in ONNX_FILES.items():
        if name in backends and (onnx_missing or not (model_dir / filename).is_file()):
            backends.remove(name)
            notes.append(f"{name}: skipped ({onnx_missing or f'no {filename} in {model_dir}'})")
    engines: List[Any] = [(b, None) for b in backends]
    if args.reference and not onnx_missing:
        engines.append((REFERENCE, load_charset("ppocr")))
    rows: List[List[str]] = []
    p50s: Dict[tuple, float] = {}
    timed: List[tuple] = []
    for threads in args.threads:
        recognizers = []
        with native_stdout_to_stderr():
            for backend, charset in engines:
                if charset is None:
                    recognizers.append(Recognizer.from_dir(model_dir, backend=backend,
                                                           threads=threads))
                else:
                    recognizers.append(Recognizer(ReferenceBackend(threads), charset,
                                                  info.image_shape))
        for batch in args.batch_sizes:
            with native_stdout_to_stderr():
                results = time_recognizers(recognizers, batch, args.runs, warmup)
            for (backend, _), r in zip(engines, results):
                timed.append((backend, threads, batch, r))
                if backend == REFERENCE:
                    p50s[(threads, batch)] = r["p50"]
    for backend, threads, batch, r in timed:
        label = {"paddle": "paddle (oneDNN)"}.get(backend, backend)
        if backend == default:
            label += " (default)"
        ref = p50s.get((threads, batch))
        speed = "-" if ref is None or backend == REFERENCE else f"{ref / r['p50']:.2f}x"
        rows.append([label, str(threads), str(batch), f"{r['p50']:.2f}", f"{r['p95']:.2f}",
                     f"{r['ips']:.1f}", f"{r['e2e_p50']:.2f}", f"{r['e2e_ips']:.1f}", speed])
    c, h, w = info.image_shape
    lines = [f"{model_dir}: input {c}x{h}x{w}, charset {info.charset.name} "
             f"({info.charset.num_classes} classes), decode {info.decode.get('method', 'greedy')}; "
             f"{args.runs} timed runs after {warmup} warm-up; engine = inference call only, "
             "end-to-end = preprocessing + engine + decoding", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if notes:
        lines += [""] + notes
    table = "\n".join(lines)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
