"""Batching for training and evaluation: preprocessing, CTC label encoding, deterministic sampling.

Augmentation randomness is drawn from ``np.random.default_rng([seed, epoch, index])`` inside each
sample, so results do not depend on the number of loader workers, and resuming at an epoch replays
exactly the same batches.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Iterator, List, Optional, Sequence

import numpy as np

from vinocr.charset import Charset, load_charset
from vinocr.data.base import TextDataset
from vinocr.data.preprocess import DEFAULT_IMAGE_SHAPE, resize_norm
from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)


def encode_ctc_label(label: str, charset: Charset, max_length: int) -> np.ndarray:
    """Class ids of ``label`` right-padded with 0 (blank) to ``max_length``."""
    ids = charset.encode(label)
    if len(ids) > max_length:
        raise ConfigError(f"label {label!r} has {len(ids)} characters, more than "
                          f"Global.max_text_length={max_length}")
    out = np.zeros((max_length,), dtype=np.int64)
    out[: len(ids)] = ids
    return out


class RecognitionSamples:
    """Map-style dataset of ``(image[3,H,W] float32, label_ids[max_len] int64, length int64,
    index int64)`` built on any :class:`TextDataset`."""

    def __init__(self, dataset: TextDataset, charset: Any, image_shape: Sequence[int] =
                 DEFAULT_IMAGE_SHAPE, max_text_length: int = 25,
                 augment: Optional[Callable[[np.ndarray, np.random.Generator], np.ndarray]] = None,
                 seed: int = 0) -> None:
        self.dataset = dataset
        self.charset = load_charset(charset)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.max_text_length = max_text_length
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        # With a feature cache, augmentation comes in `views` fixed versions per sample (epoch e
        # uses view e % views), so the cached and uncached paths see the same inputs.
        self.views: Optional[int] = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def augment_round(self, epoch: Optional[int] = None) -> int:
        """The index that seeds augmentation: the epoch, or its view when views are fixed."""
        e = self.epoch if epoch is None else epoch
        return e % self.views if self.views else e

    def image_tensor(self, i: int, round_: Optional[int] = None) -> np.ndarray:
        """Sample ``i`` augmented (seeded by ``(seed, round, i)``) and preprocessed."""
        image = self.dataset.load_image(i)
        if self.augment is not None:
            r = self.augment_round() if round_ is None else round_
            image = self.augment(image, np.random.default_rng([self.seed, r, i]))
        return resize_norm(image, self.image_shape)[0]

    def label_arrays(self, i: int):
        label = self.dataset.label(i)
        ids = encode_ctc_label(label, self.charset, self.max_text_length)
        return ids, np.int64(len(self.charset.encode(label)))

    def __getitem__(self, i: int):
        ids, length = self.label_arrays(i)
        return self.image_tensor(i), ids, length, np.int64(i)


class EpochBatchSampler:
    """Batches of indices, reshuffled per epoch from ``(seed, epoch)``, sharded across ranks.

    Every rank sees the same number of batches (the index list is padded by wrapping around), which
    data-parallel training needs to keep the ranks in step.

    Samples are dealt to ranks once (from ``seed``) and reshuffled only within each rank's shard
    per epoch. A per-process feature cache then computes each sample on one rank only; with shards
    redealt every epoch, every rank would end up computing nearly every sample. Each optimizer step
    still mixes samples from every shard.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool = True, drop_last: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _deal(self, order: np.ndarray) -> np.ndarray:
        """This rank's share of ``order``, padded by wrapping around to equal shares."""
        per_rank = math.ceil(self.n / self.world_size)
        total = per_rank * self.world_size
        if total > self.n and self.n > 0:
            order = np.concatenate([order, order[: total - self.n]])
        return order[self.rank:total:self.world_size]

    def _indices(self) -> List[int]:
        if self.world_size > 1:
            shard = self._deal(np.random.default_rng([self.seed, 2 ** 31]).permutation(self.n)
                               if self.shuffle else np.arange(self.n))
            if self.shuffle:
                shard = shard[np.random.default_rng([self.seed, self.epoch, self.rank])
                              .permutation(len(shard))]
            return shard.tolist()
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
                 if self.shuffle else np.arange(self.n))
        return self._deal(order).tolist()

    def __iter__(self) -> Iterator[List[int]]:
        indices = self._indices()
        for start in range(0, len(indices), self.batch_size):
            batch = indices[start:start + self.batch_size]
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch

    def __len__(self) -> int:
        per_rank = math.ceil(self.n / self.world_size)
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank /
                                                                            self.batch_size)


def build_loader(samples: RecognitionSamples, batch_size: int, shuffle: bool = True,
                 num_workers: int = 0, drop_last: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
    """A ``paddle.io.DataLoader`` over ``samples`` with an :class:`EpochBatchSampler`.

    Call ``loader.batch_sampler.set_epoch(e)`` and ``samples.set_epoch(e)`` (or
    :func:`set_loader_epoch`) before each epoch.
    """
    import paddle

    class _PaddleView(paddle.io.Dataset):
        def __init__(self, inner: RecognitionSamples) -> None:
            super().__init__()
            self.inner = inner

        def __len__(self) -> int:
            return len(self.inner)

        def __getitem__(self, i: int):
            return self.inner[i]

    sampler = EpochBatchSampler(len(samples), batch_size, shuffle, drop_last, seed, rank,
                                world_size)
    return paddle.io.DataLoader(_PaddleView(samples), batch_sampler=sampler,
                                num_workers=num_workers, use_shared_memory=False)


def set_loader_epoch(loader: Any, samples: RecognitionSamples, epoch: int) -> None:
    samples.set_epoch(epoch)
    loader.batch_sampler.set_epoch(epoch)
