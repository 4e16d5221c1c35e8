"""Data-parallel helpers. The same ``tools/finetune.py`` command scales out with
``python -m paddle.distributed.launch --nproc_per_node N tools/finetune.py ...`` on GPUs (NCCL) and
on CPUs (gloo); ``--nproc auto`` relaunches itself that way on multi-core CPU machines."""
from __future__ import annotations

import itertools
import json
import logging
import os
import time
from typing import Any, List

import numpy as np

from vinocr.errors import ConfigError, VinocrError

logger = logging.getLogger(__name__)

#: Seconds a rank waits at a synchronisation point for the others (``Global.sync_timeout``):
#: long enough for the slowest legitimate rank-0-only step (validation images, checkpoints).
DEFAULT_SYNC_TIMEOUT = 1800.0


def world_size() -> int:
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def rank() -> int:
    return int(os.environ.get("PADDLE_TRAINER_ID", "0"))


def is_main() -> bool:
    return rank() == 0


def per_process_batch(global_batch: int, key: str = "Train.batch_size") -> int:
    """This process's share of a global batch. ``Train.batch_size`` is the batch of one optimizer
    step however many processes compute it, so ``--nproc`` changes speed, not the training."""
    n = world_size()
    if global_batch % n:
        raise ConfigError(f"{key}={global_batch} does not split evenly over {n} data-parallel "
                          f"processes: use a multiple of {n} or another --nproc")
    return global_batch // n


def init(device: str, timeout: float = DEFAULT_SYNC_TIMEOUT) -> None:
    """Initialise the process group when launched by paddle.distributed.launch. ``timeout``
    (``Global.sync_timeout``) also bounds NCCL collectives on GPUs (``PADDLE_PG_TIMEOUT``, unless
    set); gloo's is fixed at 30 s, which is why long waits go through :func:`sync`."""
    if world_size() > 1:
        import paddle.distributed as dist

        os.environ.setdefault("PADDLE_PG_TIMEOUT", str(int(timeout * 1000)))

        dist.init_parallel_env()
        logger.info("data parallel: rank %d of %d on %s", rank(), world_size(), device)


def broadcast_state(model: Any) -> None:
    """Copy rank 0's parameters and buffers to every rank (a no-op on one process)."""
    if world_size() == 1:
        return
    import paddle.distributed as dist

    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)


def all_reduce_gradients(model: Any) -> None:
    """Average the gradients of ``model``'s trainable parameters across ranks, in one coalesced
    all-reduce after backward (a no-op on one process).

    Used instead of ``paddle.DataParallel``: its reducer fixes the set of synchronised parameters
    when the wrapper is built, so parameters unfrozen later (gradual unfreezing) would train
    unsynchronised, re-wrapping crashes Paddle (a stale reducer hook), and steps on cached
    features bypass the wrapper's forward altogether. One all-reduce of about 2M floats per step
    costs little next to a CPU step; on GPUs it gives up overlapping communication with backward.
    """
    if world_size() == 1:
        return
    import paddle
    import paddle.distributed as dist

    by_dtype: dict = {}
    for p in model.parameters():
        if not p.stop_gradient and p.grad is not None:
            # one buffer per gradient dtype (AMP O2 mixes float16/bfloat16 and float32)
            by_dtype.setdefault(str(p.grad.dtype), []).append(p)
    for params in by_dtype.values():
        flat = paddle.concat([p.grad.reshape([-1]) for p in params])
        dist.all_reduce(flat)
        flat = flat / float(world_size())
        offset = 0
        for p in params:
            size = int(np.prod(p.grad.shape))
            p.grad.set_value(flat[offset:offset + size].reshape(p.grad.shape))
            offset += size


class RankTimeout(VinocrError):
    """Another rank did not reach a synchronisation point within ``Global.sync_timeout``."""


# Synchronisation points are numbered in the order a rank reaches them; every rank runs the same
# code path, so the n-th point is the same place on every rank.
_sync_points = itertools.count()


def _store() -> Any:
    from paddle.base import core

    return core.create_or_get_global_tcp_store()


def _wait_all(key: str, what: str, timeout: float) -> None:
    """Mark this rank as arrived at ``key`` and poll until every rank has."""
    store = _store()
    me, n = rank(), world_size()
    store.add(f"{key}/rank{me}", 1)
    store.add(key, 1)
    deadline = time.monotonic() + timeout
    pause = 0.01
    while store.add(key, 0) < n:
        if time.monotonic() > deadline:
            missing = [r for r in range(n) if store.add(f"{key}/rank{r}", 0) == 0]
            names = ", ".join(str(r) for r in missing) or "?"
            plural = "s" if len(missing) > 1 else ""
            raise RankTimeout(
                f"rank {me} timed out after {timeout:.0f} s waiting for rank{plural} {names} at "
                f"{what}; rank{plural} {names} stalled or died (logs: "
                "RUN/launch_logs/workerlog.N); raise Global.sync_timeout if that step is "
                "legitimately slower")
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def sync(what: str, timeout: float = DEFAULT_SYNC_TIMEOUT) -> None:
    """Wait until every rank reaches this point (a no-op on one process).

    Used instead of a collective barrier wherever ranks may arrive far apart (rank-0-only work:
    checkpoints, VisualDL images, histograms; uneven data loading): gloo collectives give up after
    a fixed 30 s, this waits ``timeout`` seconds and fails with a message naming the missing rank.
    It polls Paddle's TCP store, which every rank already shares, so it needs no extra setup.
    """
    if world_size() == 1:
        return
    _wait_all(f"vinocr/sync/{next(_sync_points)}", what, timeout)


def gather_json(obj: Any, what: str, timeout: float = DEFAULT_SYNC_TIMEOUT) -> List[Any]:
    """Every rank's ``obj`` (JSON-able), in rank order, on every rank. Goes through the TCP store
    as JSON (never a pickle), after a :func:`sync` with ``timeout``, so ranks may arrive apart."""
    if world_size() == 1:
        return [obj]
    key = f"vinocr/gather/{next(_sync_points)}"
    store = _store()
    store.set(f"{key}/data{rank()}", json.dumps(obj).encode("utf-8"))
    _wait_all(key, what, timeout)
    return [json.loads(bytes(store.get(f"{key}/data{r}")).decode("utf-8"))
            for r in range(world_size())]


def average_buffers(model: Any) -> None:
    """Average non-trainable buffers (BatchNorm running statistics) across ranks.

    Gradients are all-reduced, so parameters agree on every rank, but BatchNorm statistics are
    updated from each rank's own batches. Averaging them once per epoch keeps the ranks identical
    and gives statistics over all the data rather than one shard.
    """
    if world_size() == 1:
        return
    import paddle.distributed as dist

    n = float(world_size())
    for name, tensor in model.state_dict().items():
        if name.endswith(("_mean", "_variance")):
            dist.all_reduce(tensor)
            tensor.set_value(tensor / n)


def weights_digest(model: Any) -> str:
    """SHA-1 over every tensor of the model, to compare ranks or runs."""
    import hashlib

    h = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()
