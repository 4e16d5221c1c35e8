"""Train/val/test splits grouped by label text, reproducible by seed.

All samples with the same (normalised) label go to the same split, so one VIN or plate never
appears in two splits: otherwise validation measures memorised plates, not reading.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Sequence

import numpy as np

from vinocr.errors import VinocrError


def grouped_split(labels: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  names: Sequence[str] = ("train", "val", "test"), seed: int = 0
                  ) -> Dict[str, List[int]]:
    """Indices per split. Groups (unique labels) are shuffled by ``seed`` and assigned greedily so
    each split's sample count approaches its fraction."""
    if len(fractions) != len(names):
        raise VinocrError(f"{len(fractions)} fractions for {len(names)} split names")
    if any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise VinocrError(f"split fractions must be >= 0 and sum to > 0, got {list(fractions)}")
    total_f = float(sum(fractions))
    fractions = [f / total_f for f in fractions]
    groups: Dict[str, List[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        groups[label].append(i)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    targets = [f * len(labels) for f in fractions]
    out: Dict[str, List[int]] = {n: [] for n in names}
    for k in order:
        members = groups[keys[k]]
        # The split furthest below its target (relative to its size) takes the group.
        deficits = [(targets[j] - len(out[n])) / max(targets[j], 1e-9) if targets[j] > 0
                    else -np.inf for j, n in enumerate(names)]
        out[names[int(np.argmax(deficits))]].extend(members)
    return {n: sorted(v) for n, v in out.items()}
