"""Building a training run: the device, seeding, the data (datasets, samples, sharded loaders),
the pretrained-run start and the checks that need the model (CTC frames)."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import paddle

from vinocr.data.augment import build_augment
from vinocr.data.loader import BadSampleTracker, RecognitionSamples, build_loader
from vinocr.data.registry import build_dataset, source_entries
from vinocr.engine import distributed as dist
from vinocr.errors import ConfigError
from vinocr.models.weights import (HEAD_BIAS, HEAD_WEIGHT, check_coverage, load_weights,
                                   transfer_ctc_head)

logger = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "gpu" if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 \
            else "cpu"
    if device == "gpu" and not paddle.is_compiled_with_cuda():
        raise ConfigError("Global.device: gpu requested but this Paddle build has no CUDA "
                          "(install paddlepaddle-gpu)")
    return device


def seed_everything(seed: int, epoch: int) -> None:
    """Seed Python, NumPy and Paddle from ``(seed, epoch)``: epochs replay exactly on resume."""
    value = (seed * 1_000_003 + epoch * 7_919) % (2 ** 31 - 1)
    random.seed(value)
    np.random.seed(value)
    paddle.seed(value)


@dataclass
class RunData:
    """The training and validation data of a run, sharded over the data-parallel ranks."""

    train_set: Any
    train_samples: RecognitionSamples
    train_loader: Any
    batch_per_process: int
    eval_set: Optional[Any] = None
    eval_samples: Optional[RecognitionSamples] = None
    eval_loader: Optional[Any] = None
    # Unreadable images found while loading: substituted in training batches, dropped from
    # validation, reported once each (or, with Global.strict_data, the run stops).
    unreadable: Dict[str, BadSampleTracker] = field(default_factory=lambda: {
        "Train.dataset": BadSampleTracker(), "Eval.dataset": BadSampleTracker()})


def source_augments(dataset_cfg: Mapping[str, Any], where: str) -> Dict[int, Any]:
    """Source index -> the pipeline of that source's own ``augment`` section (None when the
    section augments nothing), for the sources that have one."""
    return {k: build_augment(spec["augment"], key=f"{key}.augment")
            for k, (key, spec) in enumerate(source_entries(dataset_cfg, where))
            if "augment" in spec}


def build_data(cfg: Mapping[str, Any], charset: Any, image_shape: Sequence[int],
               seed: int) -> RunData:
    g, train_cfg, eval_cfg = cfg["Global"], cfg["Train"], cfg["Eval"]
    if not train_cfg.get("dataset"):
        raise ConfigError("Train.dataset is not set: point it at your training data")
    for key, spec in source_entries(eval_cfg.get("dataset") or {}, "Eval.dataset"):
        if "augment" in spec:
            raise ConfigError(f"{key}.augment: validation is never augmented; remove the key")
    common = dict(charset=charset, strict=g["strict_data"], max_length=g["max_text_length"])
    train_set = build_dataset(train_cfg["dataset"], "Train.dataset", seed=seed, **common)
    if len(train_set) == 0:
        raise ConfigError("Train.dataset has no usable samples after filtering")
    train_set.report_skipped()
    augment = build_augment(train_cfg.get("augment"), key="Train.augment")
    source_augment = source_augments(train_cfg["dataset"], "Train.dataset")
    if source_augment and not hasattr(train_set, "source_of"):
        augment = source_augment[0]   # one source: its section replaces Train.augment
        source_augment = {}
    train_samples = RecognitionSamples(train_set, charset, image_shape, g["max_text_length"],
                                       augment, seed, g["two_row_max_aspect"], source_augment)
    batch = dist.per_process_batch(train_cfg["batch_size"])
    loader = build_loader(train_samples, batch, train_cfg["shuffle"], train_cfg["num_workers"],
                          train_cfg["drop_last"] and len(train_set) >= train_cfg["batch_size"],
                          seed, dist.rank(), dist.world_size())
    data = RunData(train_set, train_samples, loader, batch)
    if eval_cfg.get("dataset"):
        data.eval_set = build_dataset(eval_cfg["dataset"], "Eval.dataset", seed=seed, **common)
        data.eval_samples = RecognitionSamples(data.eval_set, charset, image_shape,
                                               g["max_text_length"], None, seed,
                                               g["two_row_max_aspect"])
        # Validation is sharded like training: each rank decodes its share, the predictions
        # are gathered, and every rank computes the same metrics.
        data.eval_loader = build_loader(data.eval_samples, eval_cfg["batch_size"], False,
                                        eval_cfg["num_workers"], False, seed, dist.rank(),
                                        dist.world_size())
    logger.info("data: %d training samples (%s), %d validation samples", len(train_set),
                train_set.describe(), 0 if data.eval_set is None else len(data.eval_set))
    return data



def planned_steps(steps_per_epoch: int, epochs: int, max_steps: int) -> int:
    """Optimizer steps the whole run will take: ``epochs x batches per epoch``, capped by
    ``Train.max_steps``. Known before training (techniques such as ``auto`` weigh it); early
    stopping can only shorten it."""
    steps = steps_per_epoch * epochs
    return min(steps, max_steps) if max_steps else steps


def build_feature_cache(cache_cfg: Mapping[str, Any], model: Any,
                        train_samples: RecognitionSamples, batch_per_process: int) -> Any:
    """The ``Train.feature_cache`` (None when off, or when the model has no cacheable stages)."""
    if not cache_cfg["enabled"]:
        return None
    from vinocr.engine.feature_cache import FeatureCache

    # Fixed augmentation views keep the cached and uncached paths identical.
    train_samples.views = cache_cfg["views"]
    if not model.feature_stages():
        logger.warning("Train.feature_cache needs a PP-OCRv4-style model (backbone + SVTR "
                       "neck); %s trains without it", model.arch)
        return None
    return FeatureCache(train_samples, cache_cfg["views"], batch_per_process, cache_cfg["dtype"])

def use_fast_depthwise(model: Any, device: str, mode: str) -> int:
    """Switch depthwise convs to vinocr's CPU op (Paddle's is naive and single-threaded, the
    bottleneck of CPU training). Weights and checkpoint keys are unchanged."""
    if mode == "off" or not device.startswith("cpu"):
        return 0
    from vinocr.ops import fast_depthwise_available, use_fast_depthwise as switch

    if not fast_depthwise_available():
        if mode == "on":
            raise ConfigError("Global.fast_depthwise: on, but the op could not be built "
                              "(see the warning above); use auto or off")
        return 0
    n = switch(model)
    logger.info("fast CPU depthwise convolution on for %d layers", n)
    return n


def check_ctc_frames(model: Any, image_shape: Sequence[int], labels: Any) -> int:
    """The model's CTC frame count at ``image_shape``, checked against the labels: CTC needs at
    least one frame per character plus one between repeated characters; with fewer, Paddle's CTC
    loss silently returns 0 and nothing is learnt."""
    model.eval()
    with paddle.no_grad():
        frames = int(model(paddle.zeros([1, *image_shape])).shape[1])
    need, worst = 0, ""
    for label in labels:
        n = len(label) + sum(a == b for a, b in zip(label, label[1:]))
        if n > need:
            need, worst = n, label
    if need > frames:
        raise ConfigError(
            f"Global.image_shape {list(image_shape)} gives the model {frames} CTC frames, "
            f"but the label {worst!r} needs {need}; widen the input (width/8 frames for "
            "PP-OCRv4 and CRNN)")
    return frames


def load_pretrained_run(model: Any, spec: str, charset: Any, allow_missing: bool) -> None:
    """Start from an earlier run's model (incremental learning on new data): the trained model as
    :func:`vinocr.engine.model_loading.load_trained` rebuilds it, LoRA adapters merged (the same
    function as base + adapters, so a technique may wrap fresh adapters on top). A changed
    dictionary keeps the CTC head rows of the characters both share."""
    from vinocr.engine.model_loading import build_trained, read_trained_checkpoint, records_model

    key = "Global.pretrained_model"
    ckpt = read_trained_checkpoint(spec, key)
    if records_model(ckpt.state):
        trained = build_trained(ckpt.state, ckpt.model_state, ckpt.path, arch=model.arch,
                                key=key).model
        state = {k: v.numpy() for k, v in trained.state_dict().items()}
    else:
        # A weights-only checkpoint (no config or charset to rebuild a model from): its tensors
        # load by name as they are, and coverage decides below.
        state = dict(ckpt.model_state)
    chars = ckpt.state.get("charset")
    if chars is not None and list(chars) != list(charset.characters) and HEAD_WEIGHT in state:
        current = model.state_dict()
        state, info = transfer_ctc_head(state, chars, charset.characters,
                                        current[HEAD_WEIGHT].numpy(), current[HEAD_BIAS].numpy())
        logger.info("%s", info)
    source = f"{key} {ckpt.path}"
    report = load_weights(model, state, source=source)
    if not allow_missing:
        check_coverage(report, model.num_classes, source)
