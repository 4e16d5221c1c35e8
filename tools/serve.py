#!/usr/bin/env python
"""Same as the `vinocr-serve` console script, runnable from a source checkout."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vinocr.cli.serve import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
