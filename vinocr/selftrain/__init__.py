"""Learning from unlabelled crops: verifiers that decide which reads become pseudo-labels
(:mod:`vinocr.selftrain.verify`) and the files pseudo-labelling writes
(:mod:`vinocr.selftrain.pseudolabel`). The round loop is ``vinocr-selftrain``
(:mod:`vinocr.cli.selftrain`); see docs/self-training.md."""
from vinocr.selftrain.pseudolabel import Item, PseudoLabels, read_items, write_pseudo_labels
from vinocr.selftrain.verify import (Calibration, Read, ReadVerifier, Verdict, choose_threshold,
                                     track_read)

__all__ = ["Calibration", "Item", "PseudoLabels", "Read", "ReadVerifier", "Verdict",
           "choose_threshold", "read_items", "track_read", "write_pseudo_labels"]
