"""Data-parallel helpers. The same ``tools/finetune.py`` command scales out with
``python -m paddle.distributed.launch --nproc_per_node N tools/finetune.py ...`` on GPUs (NCCL) and
on CPUs (gloo); ``--nproc auto`` relaunches itself that way on multi-core CPU machines."""
from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)


def world_size() -> int:
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def rank() -> int:
    return int(os.environ.get("PADDLE_TRAINER_ID", "0"))


def is_main() -> bool:
    return rank() == 0


def init(device: str) -> None:
    """Initialise the process group when launched by paddle.distributed.launch."""
    if world_size() > 1:
        import paddle.distributed as dist

        dist.init_parallel_env()
        logger.info("data parallel: rank %d of %d on %s", rank(), world_size(), device)


def wrap(model: Any) -> Any:
    if world_size() > 1:
        import paddle

        return paddle.DataParallel(model)
    return model


def unwrap(model: Any) -> Any:
    return getattr(model, "_layers", model)


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
