"""``vinocr-serve``: the HTTP service for reads, reviewer corrections and fine-tune jobs.

    vinocr-serve --model exported/vin --data-dir serve_data --job-config configs/vin/ppocrv6_small.yml
    VINOCR_SERVE_TOKEN=secret vinocr-serve --model exported/vin --data-dir serve_data --port 8080

``--data-dir`` holds everything the service writes: ``corrections/`` (the corrections-folder
format), ``jobs/`` (one folder per fine-tune job) and ``models/`` (the versions registry and the
jobs' exports). See the README section "Serving" for the endpoints.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import List, Optional

from vinocr.cli.common import (add_log_level, cli_entry, positive_int, probability,
                               setup_logging)
from vinocr.errors import VinocrError
from vinocr.predict import BACKENDS

PROG = "vinocr-serve"
logger = logging.getLogger("vinocr.serve")


def build_parser() -> argparse.ArgumentParser:
    from vinocr.serve.app import TOKEN_ENV
    from vinocr.serve.images import ImageLimits

    d = ImageLimits()
    p = argparse.ArgumentParser(prog=PROG, description="Serve an exported recogniser over HTTP: "
                                "reads, corrections, fine-tune jobs, model versions.")
    p.add_argument("--model", required=True, help="exported model directory (vinocr-export); "
                   "registered as a version on first start, after which the active version "
                   "persists in DATA_DIR/models")
    p.add_argument("--data-dir", required=True, help="where corrections, jobs and model versions "
                   "are stored")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback "
                   "only)")
    p.add_argument("--port", type=positive_int, default=8000)
    p.add_argument("--token", default=None, help=f"require 'Authorization: Bearer TOKEN' on /v1/* "
                   f"and /metrics (default: ${TOKEN_ENV}, else no token)")
    g = p.add_argument_group("reads")
    g.add_argument("--backend", choices=BACKENDS, default="auto", help="inference engine")
    g.add_argument("--threads", type=positive_int, default=1, help="engine CPU threads")
    g.add_argument("--max-batch", type=positive_int, default=16,
                   help="most crops in one engine call")
    g.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="how long the first read of a batch waits for others to join it "
                   "(default 0: reads arriving while a batch runs share the next one anyway)")
    g.add_argument("--max-images", type=positive_int, default=32, help="images per request")
    g.add_argument("--max-image-bytes", type=positive_int, default=d.max_bytes)
    g.add_argument("--max-request-bytes", type=positive_int, default=16 * 1024 * 1024,
                   help="largest /v1/read request body (all its images)")
    g.add_argument("--max-width", type=positive_int, default=d.max_width)
    g.add_argument("--max-height", type=positive_int, default=d.max_height)
    g.add_argument("--recent-reads", type=positive_int, default=200,
                   help="reads kept for the review page and corrections by read_id")
    g = p.add_argument_group("fine-tune jobs")
    g.add_argument("--job-config", nargs="+", default=[], metavar="YAML",
                   help="config(s) every job starts from: model, charset, base datasets "
                   "(Train.dataset), validation set; without it jobs are refused")
    g.add_argument("--corrections-ratio", type=probability, default=None,
                   help="share of each epoch drawn from the corrections when the job config has "
                   "base datasets (default: in proportion to the datasets' sizes)")
    g.add_argument("--job-nproc", type=positive_int, default=1,
                   help="vinocr-finetune --nproc of jobs")
    g.add_argument("--export-arg", action="append", default=[], metavar="ARG",
                   help="extra vinocr-export argument for jobs' exports (repeatable), e.g. "
                   "--export-arg=--no-onnx")
    add_log_level(p)
    return p


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        import uvicorn

        from vinocr.serve.app import TOKEN_ENV, ServeSettings, create_app
    except ImportError as exc:
        raise VinocrError(f"vinocr-serve needs FastAPI and uvicorn ({exc}); install them with "
                          "pip install -c constraints.txt -e .") from None
    from vinocr.predict import read_model_info
    from vinocr.serve.images import ImageLimits
    from vinocr.serve.jobs import JobSettings

    read_model_info(args.model)   # a wrong --model fails here, in one line, before binding
    for path in args.job_config:
        if not Path(path).is_file():
            raise VinocrError(f"--job-config {path}: file not found")
    if args.job_config:
        from vinocr.config import load_config

        load_config(args.job_config)   # a bad job config fails now, not at the first job
    if args.max_wait_ms < 0:
        raise VinocrError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    data = Path(args.data_dir)
    if data.exists() and not data.is_dir():
        raise VinocrError(f"--data-dir {data}: exists and is not a directory")
    settings = ServeSettings(
        model=Path(args.model), data_dir=data,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        limits=ImageLimits(max_bytes=args.max_image_bytes, max_width=args.max_width,
                           max_height=args.max_height,
                           max_pixels=args.max_width * args.max_height),
        max_images=args.max_images, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
        max_request_bytes=args.max_request_bytes,
        threads=args.threads, backend=args.backend, recent_reads=args.recent_reads,
        jobs=JobSettings(job_config=[Path(p).resolve() for p in args.job_config],
                         corrections_ratio=args.corrections_ratio, nproc=args.job_nproc,
                         export_args=list(args.export_arg)))
    app = create_app(settings)
    logger.info("serving on http://%s:%d (review page /review, schema /openapi.json)",
                args.host, args.port)
    # One worker process: the job queue and the model registry are per process, and a second
    # worker would run a second queue over the same folders.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(),
                access_log=False)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
