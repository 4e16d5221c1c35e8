"""Data-parallel helpers. The same ``tools/finetune.py`` command scales out with
``python -m paddle.distributed.launch --nproc_per_node N tools/finetune.py ...`` on GPUs (NCCL) and
on CPUs (gloo); ``--nproc auto`` relaunches itself that way on multi-core CPU machines."""
from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)


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


def init(device: str) -> None:
    """Initialise the process group when launched by paddle.distributed.launch."""
    if world_size() > 1:
        import paddle.distributed as dist

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


def barrier() -> None:
    if world_size() > 1:
        import paddle.distributed as dist

        dist.barrier()


def all_reduce_sum(values: Any) -> Any:
    """Sum a list of floats across ranks (for validation counts); identity on one process."""
    if world_size() == 1:
        return values
    import paddle
    import paddle.distributed as dist

    t = paddle.to_tensor(values, dtype="float64")
    dist.all_reduce(t)
    return t.numpy().tolist()


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


def broadcast_object(obj: Any) -> Any:
    if world_size() == 1:
        return obj
    import paddle.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
