"""Several datasets mixed with per-source ratios per epoch (e.g. 80% synthetic / 20% real).

Each epoch draws ``round(ratio_k * epoch_size)`` samples from source k: a fresh permutation of the
source, repeated when the source is smaller than its share (so a small real set is oversampled
rather than drowned). The plan depends only on ``(seed, epoch)``: every loader worker and every
distributed rank computes the same one.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from vinocr.data.base import TextDataset
from vinocr.errors import ConfigError


class MixedDataset(TextDataset):
    kind = "mixed"

    def __init__(self, sources: Sequence[Tuple[TextDataset, float]],
                 epoch_size: Optional[int] = None, seed: int = 0) -> None:
        super().__init__()
        if not sources:
            raise ConfigError("a mixed dataset needs at least one source")
        for k, (dataset, ratio) in enumerate(sources):
            if ratio < 0:
                raise ConfigError(f"source {k} ({dataset.describe()}): ratio must be >= 0, "
                                  f"got {ratio}")
            if len(dataset) == 0 and ratio > 0:
                raise ConfigError(f"source {k} ({dataset.describe()}) has no usable samples")
        total_ratio = sum(r for _, r in sources)
        if total_ratio <= 0:
            raise ConfigError("the ratios of a mixed dataset sum to 0")
        self.sources = [d for d, _ in sources]
        self.ratios = [r / total_ratio for _, r in sources]
        self.epoch_size = epoch_size or sum(len(d) for d in self.sources)
        self.seed = seed
        self.skipped = [s for d in self.sources for s in d.skipped]
        self.set_epoch(0)

    def counts(self) -> List[int]:
        """Samples drawn from each source per epoch (largest-remainder rounding to epoch_size)."""
        exact = [r * self.epoch_size for r in self.ratios]
        counts = [int(np.floor(x)) for x in exact]
        order = np.argsort([-(x - c) for x, c in zip(exact, counts)], kind="stable")
        for k in order[: self.epoch_size - sum(counts)]:
            counts[k] += 1
        return counts

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        plan: List[Tuple[int, int]] = []
        for k, (dataset, count) in enumerate(zip(self.sources, self.counts())):
            if count == 0:
                continue
            reps = -(-count // len(dataset))
            idx = np.concatenate([rng.permutation(len(dataset)) for _ in range(reps)])[:count]
            plan.extend((k, int(i)) for i in idx)
        order = rng.permutation(len(plan))
        self.plan = [plan[i] for i in order]
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.plan)

    def source_of(self, i: int) -> int:
        """The index of the source sample ``i`` of this epoch is drawn from."""
        return self.plan[i][0]

    def label(self, i: int) -> str:
        k, j = self.plan[i]
        return self.sources[k].label(j)

    def labels(self) -> List[str]:
        return [self.label(i) for i in range(len(self))]

    def meta(self, i: int) -> Dict[str, Any]:
        k, j = self.plan[i]
        return dict(self.sources[k].meta(j), mixed_source=k)

    def load_image(self, i: int) -> np.ndarray:
        k, j = self.plan[i]
        return self.sources[k].load_image(j)

    def read_bytes(self, i: int) -> bytes:
        k, j = self.plan[i]
        return self.sources[k].read_bytes(j)

    def describe(self) -> str:
        parts = ", ".join(f"{d.describe()}={r:.0%}" for d, r in zip(self.sources, self.ratios))
        return f"mixed[{parts}]"
