#!/usr/bin/env python
"""Check that a run's VisualDL dashboard shows its scalars in a real (headless) browser.

    python tools/visualdl_check.py RUN_DIR [--out DIR] [--timeout 60]

Starts `visualdl --logdir RUN_DIR/visualdl` on a free 127.0.0.1 port, opens the Scalars page in
headless Chromium, expands every tag group and checks that each scalar tag in the run's event
files is drawn as a chart with data. Prints the tags found and the path of a screenshot of the
page; exits 0 when every tag is shown, 1 when one is missing, 2 when the check cannot run
(no Chromium: `apt-get install chromium`). See docs/monitoring.md.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vinocr.engine import visualdl_check as vc  # noqa: E402


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
    chromium = args.chromium or vc.find_chromium()
    if chromium is None:
        print(f"Chromium not installed: {vc.INSTALL_HINT}", file=sys.stderr)
        return 2
    try:
        result = vc.check_dashboard(args.run_dir, out_dir=args.out, timeout=args.timeout,
                                    chromium=chromium, port=args.port)
    except vc.CheckError as exc:
        print(f"check could not run: {exc}", file=sys.stderr)
        return 2
    print(vc.format_result(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
