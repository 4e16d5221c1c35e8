"""Batching for training and evaluation: preprocessing, CTC label encoding, deterministic sampling.

Augmentation randomness is drawn from ``np.random.default_rng([seed, epoch, index])`` inside each
sample, so results do not depend on the number of loader workers, and resuming at an epoch replays
exactly the same batches.

Unreadable samples never reach Paddle's DataLoader as an exception: Paddle 3.3 then blocks the
main thread forever in ``MultiDeviceFeedReader::ReadNextList`` (with any ``num_workers``). Instead
:meth:`RecognitionSamples.__getitem__` returns a substitute sample whose index is ``-(i + 1)``;
the main thread finds those rows with :func:`bad_indices` / :func:`good_rows` and reports (or, in
strict mode, raises) the real error through :class:`BadSampleTracker`.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import math
import multiprocessing
import os
import signal
import sys
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from vinocr.charset import Charset, load_charset
from vinocr.data.base import TextDataset
from vinocr.data.preprocess import DEFAULT_IMAGE_SHAPE, resize_norm
from vinocr.errors import ConfigError, DataError

#: An augmentation: ``fn(bgr_image, rng) -> bgr_image``.
AugmentFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]

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


# How many following samples __getitem__ tries as a substitute for an unreadable one. Bounded so a
# dataset that is mostly broken costs a few failed decodes per sample, not a scan of the dataset.
SUBSTITUTE_TRIES = 8


class RecognitionSamples:
    """Map-style dataset of ``(image[3,H,W] float32, label_ids[max_len] int64, length int64,
    index int64)`` built on any :class:`TextDataset`.

    A sample whose image cannot be read comes back as a substitute with index ``-(i + 1)`` (see
    :meth:`__getitem__`), never as an exception.
    """

    def __init__(self, dataset: TextDataset, charset: Any, image_shape: Sequence[int] =
                 DEFAULT_IMAGE_SHAPE, max_text_length: int = 25,
                 augment: Optional[AugmentFn] = None,
                 seed: int = 0, two_row_max_aspect: float = 0.0,
                 source_augment: Optional[Mapping[int, Optional[AugmentFn]]] = None) -> None:
        self.dataset = dataset
        self.two_row_max_aspect = float(two_row_max_aspect)
        self.charset = load_charset(charset)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.max_text_length = max_text_length
        self.augment = augment
        # Per-source replacements of `augment` (a source's own `augment` section; None: none),
        # for a mixed dataset, keyed by source index.
        self.source_augment = dict(source_augment or {})
        if self.source_augment and not hasattr(dataset, "source_of"):
            raise ValueError("per-source augmentation needs a mixed dataset (source_of)")
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
        augment = self.augment
        if self.source_augment:
            augment = self.source_augment.get(self.dataset.source_of(i), augment)
        if augment is not None:
            r = self.augment_round() if round_ is None else round_
            image = augment(image, np.random.default_rng([self.seed, r, i]))
        return resize_norm(image, self.image_shape,
                           two_row_max_aspect=self.two_row_max_aspect)[0]

    def label_arrays(self, i: int):
        label = self.dataset.label(i)
        ids = encode_ctc_label(label, self.charset, self.max_text_length)
        return ids, np.int64(len(self.charset.encode(label)))

    def __getitem__(self, i: int) -> Tuple[np.ndarray, np.ndarray, np.int64, np.int64]:
        """Sample ``i``; if its image is unreadable, a substitute marked by index ``-(i + 1)``.

        The substitute is the first of the next :data:`SUBSTITUTE_TRIES` samples (wrapping) that
        loads, with its own label, so a training batch keeps its size and stays a valid batch; if
        none loads, a zero image with sample ``i``'s label. This runs in Paddle's reader thread or
        worker processes, where raising hangs the loader and logging may go nowhere, so the error
        itself is reported by the main thread (:class:`BadSampleTracker` reloads the image).
        """
        ids, length = self.label_arrays(i)
        try:
            return self.image_tensor(i), ids, length, np.int64(i)
        except DataError:
            pass
        failed = np.int64(-(i + 1))
        n = len(self)
        for step in range(1, min(SUBSTITUTE_TRIES, n - 1) + 1):
            j = (i + step) % n
            try:
                image = self.image_tensor(j)
            except DataError:
                continue
            sub_ids, sub_length = self.label_arrays(j)
            return image, sub_ids, sub_length, failed
        return np.zeros(self.image_shape, np.float32), ids, length, failed


def _as_index_array(index_array: Any) -> np.ndarray:
    """A batch's index column (paddle Tensor, numpy array or list) as a flat int64 array."""
    if hasattr(index_array, "numpy"):
        index_array = index_array.numpy()
    return np.asarray(index_array, dtype=np.int64).reshape(-1)


def bad_indices(index_array: Any) -> List[int]:
    """Dataset indices of the samples that failed to load in a batch (from its index column).

    Each appears once, in row order (a padded batch can hold the same sample twice).
    """
    out: List[int] = []
    for v in _as_index_array(index_array):
        if v < 0 and int(-v - 1) not in out:
            out.append(int(-v - 1))
    return out


def good_rows(index_array: Any) -> np.ndarray:
    """Boolean mask over a batch's rows: True for real samples, False for substitutes."""
    return _as_index_array(index_array) >= 0


class BadSampleTracker:
    """Reports the samples a loader substituted, in the main thread, once per sample.

    ``skipped`` lists ``(index, message)`` for every sample skipped so far.
    """

    def __init__(self) -> None:
        self.skipped: List[Tuple[int, str]] = []
        self._seen: set = set()

    @staticmethod
    def _error(dataset: Any, i: int) -> DataError:
        """The DataError that sample ``i`` raises, re-created by loading it here: the worker that
        hit it could not hand the exception over without hanging the loader."""
        try:
            dataset.load_image(i)
        except DataError as exc:
            error = exc
        else:
            error = DataError("could not be read by a loader worker but reads now (transient "
                              "I/O error?)", dataset.meta(i).get("where"))
        # Label-file readers name the label file and line; add the image so the user need not
        # look it up.
        meta = dataset.meta(i) if hasattr(dataset, "meta") else {}
        image = meta.get("rel") or meta.get("path")
        if image and str(image) not in str(error):
            error = DataError(f"{error} (image {image})")
        return error

    def record(self, dataset: Any, ids: Iterable[int], strict: bool = False,
               where: str = "data") -> List[Tuple[int, str]]:
        """Report the failed samples ``ids`` (from :func:`bad_indices`) of ``dataset`` (a
        :class:`TextDataset` or :class:`RecognitionSamples`); ``where`` says which loader (e.g.
        ``"train"``). Strict: raise the first one's :class:`DataError`. Otherwise log one warning
        per new sample and return the newly skipped ``(index, message)`` pairs.
        """
        if not hasattr(dataset, "load_image"):
            dataset = dataset.dataset        # RecognitionSamples -> its TextDataset
        new: List[Tuple[int, str]] = []
        for i in ids:
            i = int(i)
            if i in self._seen:
                continue
            error = self._error(dataset, i)
            if strict:
                raise error
            self._seen.add(i)
            self.skipped.append((i, str(error)))
            new.append((i, str(error)))
            logger.warning("%s: skipped unreadable sample %d: %s (strict mode fails instead)",
                           where, i, error)
        return new


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


PR_SET_PDEATHSIG = 1   # <linux/prctl.h>


def die_with_parent(parent_pid: Optional[int] = None) -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; True if that is now in force.

    Paddle's workers look for their parent only between reads of their index queue; after a
    ``kill -9`` of the trainer they were seen (Paddle 3.3.1) blocked in a pipe read for good,
    re-parented to init, holding their memory. No-op (False) off Linux or if prctl fails.
    The kernel sends the signal when the *thread* that forked the worker exits, which is the
    thread that started iterating the loader; that is the main thread in vinocr.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        # dlopen(NULL): the process's own symbols, libc's prctl among them. (find_library forks
        # /sbin/ldconfig, slow and a fork inside a just-forked worker.)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            logger.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
            return False
    except (OSError, AttributeError) as exc:
        logger.debug("prctl unavailable: %s", exc)
        return False
    # The parent may have died between fork and prctl; then no signal will ever come, and we
    # have already been re-parented (to init or a subreaper).
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
    return True


def _stop_worker(signum: int, frame: Any) -> None:
    # Exit at once, as the signal's default action would, but with status 0, which Paddle does
    # not count as a failed worker. (A KeyboardInterrupt instead is caught by Paddle's worker
    # loop where it runs the init function and kept the worker alive; multiprocessing, which
    # stops daemon workers at exit by SIGTERM and joins them, then waited forever.)
    os._exit(0)


def _init_worker(worker_id: int, parent_pid: Optional[int] = None,
                 user_init: Optional[Callable[[int], None]] = None) -> None:
    """Paddle ``worker_init_fn``: exit quietly on Ctrl-C or SIGTERM, die with the parent, then run
    the caller's own init, if any."""
    # A terminal's Ctrl-C reaches the whole process group, and Paddle's launcher stops a rank by
    # SIGTERM to its group. A worker killed by the signal makes Paddle raise SystemError
    # ("DataLoader process ... killed by signal") into the parent while it writes its
    # interrupted report; a worker that exits with status 0 does not. (Ignoring SIGTERM instead
    # would hang the parent's exit: multiprocessing stops daemon workers by SIGTERM and joins.)
    signal.signal(signal.SIGINT, _stop_worker)
    signal.signal(signal.SIGTERM, _stop_worker)
    # multiprocessing records the pid of the process that started the worker; more exact than
    # the pid at build_loader time (the loader may be iterated in another process).
    parent = multiprocessing.parent_process()
    die_with_parent(parent.pid if parent is not None else parent_pid)
    if user_init is not None:
        user_init(worker_id)


def build_loader(samples: RecognitionSamples, batch_size: int, shuffle: bool = True,
                 num_workers: int = 0, drop_last: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1,
                 worker_init_fn: Optional[Callable[[int], None]] = None) -> Any:
    """A ``paddle.io.DataLoader`` over ``samples`` with an :class:`EpochBatchSampler`.

    Call ``loader.batch_sampler.set_epoch(e)`` and ``samples.set_epoch(e)`` (or
    :func:`set_loader_epoch`) before each epoch. Workers die with the process that iterates the
    loader (:func:`die_with_parent`); ``worker_init_fn`` runs after that in each worker.
    Unreadable samples arrive as substitutes with a negative index (:func:`bad_indices`).
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
    # The pid is a fallback for _init_worker; multiprocessing's own record of the parent wins.
    init = functools.partial(_init_worker, parent_pid=os.getpid(), user_init=worker_init_fn)
    return paddle.io.DataLoader(_PaddleView(samples), batch_sampler=sampler,
                                num_workers=num_workers, use_shared_memory=False,
                                worker_init_fn=init)


def set_loader_epoch(loader: Any, samples: RecognitionSamples, epoch: int) -> None:
    samples.set_epoch(epoch)
    loader.batch_sampler.set_epoch(epoch)
