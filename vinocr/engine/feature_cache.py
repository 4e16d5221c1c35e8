"""Frozen-prefix feature cache: compute the frozen leading part of the network once per sample and
augmentation view, then train the rest from the cache.

When the backbone is frozen (``frozen_backbone``, early ``gradual_unfreeze`` phases, LoRA confined
to the neck and head), every epoch recomputes the same backbone features, and on CPU that forward
pass is most of the step. The cache keeps ``views`` augmented versions of each sample. Epoch ``e``
trains on view ``e % views``, and the augmentation of view ``v`` of sample ``i`` is drawn from
``(seed, v, i)``. The uncached path draws the same views (see ``RecognitionSamples.views``), so
both paths see identical inputs and train identically; a test checks it. The cache is keyed by a
digest of the prefix's weights and buffers: unfreezing changes the prefix, and the cache rebuilds.
"""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import paddle

from vinocr.models.layers import weight_parameters

logger = logging.getLogger(__name__)

def frozen_stage(model: Any) -> Optional[str]:
    """The longest frozen prefix of the model's :meth:`feature_stages
    <vinocr.models.recognizer.RecognitionNet.feature_stages>` (PP-OCRv4: ``neck`` when backbone
    and SVTR neck are frozen, ``backbone``), or None (nothing frozen, or a model without stages)."""
    def frozen(layer: Any) -> bool:
        params = weight_parameters(layer)
        return bool(params) and all(p.stop_gradient for p in params)

    stage = None
    for name, layer in model.feature_stages():
        if not frozen(layer):
            break
        stage = name
    return stage


def prefix_layers(model: Any, stage: str) -> List[Any]:
    """The layers of the feature stages up to and including ``stage``, in forward order."""
    layers = []
    for name, layer in model.feature_stages():
        layers.append(layer)
        if name == stage:
            return layers
    raise ValueError(f"{type(model).__name__} has no feature stage {stage!r}")


def prefix_digest(model: Any, stage: str) -> str:
    h = hashlib.sha1(stage.encode())
    for layer in prefix_layers(model, stage):
        for name, tensor in sorted(layer.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.numpy().tobytes())
    return h.hexdigest()


def run_prefix(model: Any, images: paddle.Tensor, stage: str) -> paddle.Tensor:
    features = images
    for layer in prefix_layers(model, stage):
        features = layer(features)
    return features


def run_suffix(model: Any, features: paddle.Tensor, stage: str) -> paddle.Tensor:
    """CTC logits from cached features."""
    return model.forward_from(features, stage)


class FeatureCache:
    """In-memory cache ``{view: array [N, ...]}`` for one (stage, prefix digest).

    Features are computed on demand, for the samples an epoch's batches ask for. In data-parallel
    training each process's sampler yields its own shard, so each process computes (and holds)
    only the features it trains on, and the processes build their shards at the same time.
    """

    def __init__(self, samples: Any, views: int, batch_size: int = 32,
                 dtype: str = "float32") -> None:
        self.samples = samples          # RecognitionSamples (images, labels, augmentation)
        self.views = max(1, int(views))
        self.batch_size = batch_size
        self.dtype = np.dtype(dtype)
        self.key: Optional[Tuple[str, str]] = None
        self.store: Dict[int, np.ndarray] = {}
        self.filled: Dict[int, np.ndarray] = {}   # view -> bool [N]: which rows are computed
        self.build_seconds = 0.0

    def prepare(self, model: Any, stage: str) -> None:
        key = (stage, prefix_digest(model, stage))
        if key != self.key:
            if self.key is not None:
                logger.info("feature cache invalidated: the frozen prefix changed (%s -> %s)",
                            self.key[0], stage)
            self.key, self.store, self.filled = key, {}, {}

    def view_of(self, epoch: int) -> int:
        return epoch % self.views

    def ensure(self, model: Any, epoch: int, indices: Optional[Iterable[int]] = None
               ) -> np.ndarray:
        """The features of view ``epoch % views``, computing those of ``indices`` (default: every
        sample) that are not cached yet. Rows never asked for stay uninitialised."""
        view = self.view_of(epoch)
        n = len(self.samples)
        wanted = np.arange(n) if indices is None else np.unique(np.fromiter(indices, np.int64))
        filled = self.filled.get(view)
        missing = wanted if filled is None else wanted[~filled[wanted]]
        if len(missing) == 0:
            return self.store[view]
        stage = self.key[0]
        start = time.perf_counter()
        was_training = [l.training for l in prefix_layers(model, stage)]
        for layer in prefix_layers(model, stage):
            layer.eval()
        with paddle.no_grad():
            for s in range(0, len(missing), self.batch_size):
                rows = missing[s:s + self.batch_size]
                batch = np.stack([self.samples.image_tensor(int(i), view) for i in rows])
                feats = run_prefix(model, paddle.to_tensor(batch), stage).numpy()
                if view not in self.store:
                    self.store[view] = np.empty((n, *feats.shape[1:]), self.dtype)
                    self.filled[view] = np.zeros(n, bool)
                self.store[view][rows] = feats.astype(self.dtype)
                self.filled[view][rows] = True
        for layer, mode in zip(prefix_layers(model, stage), was_training):
            layer.train() if mode else layer.eval()
        elapsed = time.perf_counter() - start
        self.build_seconds += elapsed
        # rows actually computed: another process's shard is allocated but never touched
        mb = sum(a[0].nbytes * int(self.filled[v].sum()) for v, a in self.store.items()) / 2 ** 20
        logger.info("feature cache: view %d of %d: %d samples (%s features) computed in %.1f s; "
                    "%d of %d cached; %.0f MiB", view + 1, self.views, len(missing), stage,
                    elapsed, int(self.filled[view].sum()), n, mb)
        return self.store[view]

    def batches(self, model: Any, epoch: int, sampler: Any) -> Iterator[List[paddle.Tensor]]:
        """Batches ``[features, labels, lengths, index]`` in the sampler's order for ``epoch``."""
        order = [list(b) for b in sampler]
        feats = self.ensure(model, epoch, (i for b in order for i in b))
        for indices in order:
            idx = np.asarray(indices)
            labels, lengths = zip(*(self.samples.label_arrays(int(i)) for i in idx))
            yield [paddle.to_tensor(feats[idx].astype("float32")),
                   paddle.to_tensor(np.stack(labels)),
                   paddle.to_tensor(np.asarray(lengths, dtype="int64")),
                   paddle.to_tensor(idx.astype("int64"))]
