"""Preprocessing (the one shared function), CTC label encoding and batching."""
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import make_label_dir
from vinocr.charset import load_charset
from vinocr.data import LabelFileDataset
from vinocr.data.augment import build_augment
from vinocr.data.loader import (EpochBatchSampler, RecognitionSamples, build_loader,
                                encode_ctc_label, set_loader_epoch)
from vinocr.data.preprocess import batch_resize_norm, resize_norm
from vinocr.errors import ConfigError


def test_resize_norm_matches_paddleocr_rule():
    img = np.full((32, 100, 3), 255, np.uint8)
    out, valid = resize_norm(img, (3, 48, 320))
    assert out.shape == (3, 48, 320) and out.dtype == np.float32
    resized_w = math.ceil(48 * 100 / 32)  # 150: aspect kept
    assert np.allclose(out[:, :, :resized_w], 1.0)  # white -> (1 - 0.5) / 0.5
    assert np.all(out[:, :, resized_w:] == 0.0)     # right padding: zeros after normalisation
    assert valid == pytest.approx(resized_w / 320)
    black = resize_norm(np.zeros((10, 10, 3), np.uint8))[0]
    assert black[:, :, :48].min() == -1.0


def test_wide_images_squeezed_or_widened():
    wide = np.random.default_rng(0).integers(0, 255, (20, 400, 3), dtype=np.uint8)
    fixed, valid = resize_norm(wide, (3, 48, 320))
    assert fixed.shape == (3, 48, 320) and valid == 1.0
    dynamic, _ = resize_norm(wide, (3, 48, 320), dynamic_width=True)
    assert dynamic.shape == (3, 48, int(48 * 400 / 20))
    batch = batch_resize_norm([wide, wide[:, :100]], (3, 48, 320))
    assert batch.shape[0] == 2 and batch.shape[3] == int(48 * 20)
    grey = resize_norm(np.zeros((10, 30), np.uint8))[0]
    assert grey.shape == (3, 48, 320)


def test_ctc_label_encoding():
    cs = load_charset("vin")
    ids = encode_ctc_label("1M8", cs, 5)
    assert ids.tolist() == [cs.index["1"], cs.index["M"], cs.index["8"], 0, 0]
    with pytest.raises(ConfigError, match="max_text_length=2"):
        encode_ctc_label("1M8", cs, 2)


def test_sampler_is_seeded_and_sharded():
    a = EpochBatchSampler(10, 3, shuffle=True, seed=1)
    first = list(a)
    assert sorted(i for b in first for i in b) == list(range(10))
    assert list(EpochBatchSampler(10, 3, shuffle=True, seed=1)) == first
    a.set_epoch(1)
    assert list(a) != first
    ranks = [EpochBatchSampler(10, 2, seed=1, rank=r, world_size=2) for r in (0, 1)]
    shards = [[i for b in r for i in b] for r in ranks]
    assert len(shards[0]) == len(shards[1]) == 5 and not set(shards[0]) & set(shards[1])
    assert len(EpochBatchSampler(10, 3, drop_last=True)) == 3 == len(list(
        EpochBatchSampler(10, 3, drop_last=True)))


def test_shards_stay_with_their_rank_across_epochs():
    # For per-process feature caches: a rank's samples stay the same across epochs (only their
    # order changes) and the ranks split the data between them.
    def shard(rank, epoch):
        s = EpochBatchSampler(11, 2, seed=3, rank=rank, world_size=2)
        s.set_epoch(epoch)
        return [i for b in s for i in b]

    for rank in (0, 1):
        assert sorted(shard(rank, 0)) == sorted(shard(rank, 5))
        assert shard(rank, 0) != shard(rank, 5)
    assert set(shard(0, 0)) | set(shard(1, 0)) == set(range(11))
    assert len(shard(0, 0)) == len(shard(1, 0)) == 6


def test_loader_batches_with_workers(tmp_path: Path, vin_labels):
    lf = make_label_dir(tmp_path / "ds", vin_labels[:10])
    samples = RecognitionSamples(LabelFileDataset(lf, charset="vin"), "vin", (3, 48, 160), 20,
                                 augment=build_augment({"preset": "vin", "p": 1.0}), seed=0)
    loader = build_loader(samples, batch_size=4, shuffle=True, num_workers=2, seed=0)
    set_loader_epoch(loader, samples, 0)
    batches = list(loader)
    images, labels, lengths, index = batches[0]
    assert list(images.shape) == [4, 3, 48, 160] and list(labels.shape) == [4, 20]
    assert int(lengths[0]) == 17 and len(batches) == 3
    assert float(images.max()) <= 1.0 and float(images.min()) >= -1.0
    # augmentation draws come from (seed, epoch, index): same batches with 0 workers
    loader0 = build_loader(samples, batch_size=4, shuffle=True, num_workers=0, seed=0)
    set_loader_epoch(loader0, samples, 0)
    again = list(loader0)
    assert np.array_equal(np.asarray(again[0][0]), np.asarray(images))
