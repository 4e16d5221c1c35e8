"""Tests for vinocr.data.augment: transforms, presets, pipeline, config, offline writer, preview."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
import pytest

from vinocr.data.augment import (AUGMENT_SCHEMA_KEYS, PRESETS, TRANSFORMS, AugmentPipeline,
                                 augment_dataset, build_augment, list_transforms,
                                 preset_pipeline, preview_grid, save_preview)
from vinocr.data.augment.transforms import Rotate
from vinocr.errors import ConfigError

SIZES = [(48, 320), (32, 100), (17, 48)]
SEEDS = range(5)
ALPR_NAMES = ["motion_blur", "rotate", "rotate3d", "gaussian_blur", "shade", "salt_pepper",
              "cutting", "padding", "top_bottom_cutting", "brightness", "downsize"]


def noise_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(1000 + seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def half_image(h: int, w: int) -> np.ndarray:
    """Left half dark, right half bright: any mirroring swaps which side is darker."""
    img = np.full((h, w, 3), 40, dtype=np.uint8)
    img[:, w // 2:] = 215
    return img


def text_image(text: str = "1HGCM82633A004352", h: int = 48, w: int = 320) -> np.ndarray:
    img = np.full((h, w, 3), 225, dtype=np.uint8)
    scale = h / 40.0
    cv2.putText(img, text, (4, int(h * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8,
                (25, 25, 25), max(1, int(round(scale * 2))), cv2.LINE_AA)
    return img


# --------------------------------------------------------------------------- registry


def test_registry_has_alpr_and_vin_transforms_and_no_flip() -> None:
    names = set(list_transforms())
    assert set(ALPR_NAMES) <= names
    assert {"brightness", "rotate", "gaussian_blur", "gaussian_noise", "perspective",
            "jpeg"} <= names
    assert not any("flip" in n or "mirror" in n for n in names)
    for name, defaults in list_transforms().items():
        # Defaults must be constructible as they are.
        TRANSFORMS[name](**defaults)


def test_alpr_preset_weights() -> None:
    weights = {name: w for name, w, _ in PRESETS["alpr"].entries}
    assert list(weights) == ALPR_NAMES
    assert weights["motion_blur"] == 2 and weights["rotate"] == 3
    assert all(weights[n] == 1 for n in ALPR_NAMES if n not in ("motion_blur", "rotate"))


# --------------------------------------------------------------------------- every transform


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_output_contract(name: str, size: Tuple[int, int]) -> None:
    h, w = size
    t = TRANSFORMS[name]()
    changed = 0
    for seed in SEEDS:
        img = noise_image(h, w, seed)
        before = img.copy()
        out = t(img, np.random.default_rng(seed))
        assert np.array_equal(img, before), "transform modified its input in place"
        assert isinstance(out, np.ndarray) and out.dtype == np.uint8
        assert out.ndim == 3 and out.shape[2] == 3
        oh, ow = out.shape[:2]
        # Non-degenerate: cuts/pads/rotations change the size only moderately.
        assert 0.5 * h <= oh <= 3 * h and 0.5 * w <= ow <= 3 * w, (name, out.shape)
        assert out.min() >= 0 and out.max() <= 255
        again = t(img, np.random.default_rng(seed))
        assert np.array_equal(out, again), "same seed gave a different output"
        if out.shape != img.shape or not np.array_equal(out, img):
            changed += 1
    assert changed >= len(SEEDS) - 1, f"{name} left the image unchanged too often"


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_different_seeds_differ(name: str) -> None:
    img = noise_image(48, 320)
    t = TRANSFORMS[name]()
    outs = [t(img, np.random.default_rng(s)) for s in range(4)]
    distinct = {(o.shape, o.tobytes()) for o in outs}
    assert len(distinct) >= 2


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_no_transform_mirrors(name: str, size: Tuple[int, int]) -> None:
    h, w = size
    img = half_image(h, w)
    t = TRANSFORMS[name]()
    for seed in SEEDS:
        out = t(img, np.random.default_rng(seed)).astype(np.float64)
        half = out.shape[1] // 2
        assert out[:, :half].mean() < out[:, half:].mean(), (name, seed)


def test_invalid_constructor_values() -> None:
    with pytest.raises(ValueError, match="max_angle"):
        Rotate(max_angle=-1)
    with pytest.raises(ValueError, match="quality"):
        TRANSFORMS["jpeg"](quality=(90, 50))
    with pytest.raises(ValueError, match="border"):
        TRANSFORMS["padding"](border="mirror")


# --------------------------------------------------------------------------- VIN preset


def _vin_rotate() -> Rotate:
    pipe = preset_pipeline("vin")
    rots = [t for t in pipe.transforms if isinstance(t, Rotate)]
    assert len(rots) == 1
    return rots[0]


def _line_angle(img: np.ndarray) -> float:
    """Angle in degrees (image y axis down) of the dark line drawn by the test."""
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    ys, xs = np.nonzero(gray < 128)
    pts = np.stack([xs, ys], axis=1).astype(np.float32)
    vx, vy = cv2.fitLine(pts, cv2.DIST_L2, 0, 0.01, 0.01).ravel()[:2]
    ang = math.degrees(math.atan2(vy, vx))
    if ang > 90:
        ang -= 180
    elif ang < -90:
        ang += 180
    return ang


def test_vin_rotation_within_5_degrees() -> None:
    rot = _vin_rotate()
    assert rot.max_angle <= 5.0
    rng = np.random.default_rng(0)
    angles = np.array([rot.sample_angle(rng) for _ in range(2000)])
    assert np.all(np.abs(angles) <= 5.0)
    assert angles.max() > 4.0 and angles.min() < -4.0  # the whole range is used

    # Measured on pixels: a horizontal line stays within 5 degrees after the VIN rotation.
    base = np.full((48, 320, 3), 255, dtype=np.uint8)
    cv2.line(base, (20, 24), (300, 24), (0, 0, 0), 2)
    assert abs(_line_angle(base)) < 0.2
    measured = []
    for seed in range(30):
        out = rot(base, np.random.default_rng(seed))
        measured.append(abs(_line_angle(out)))
    assert max(measured) <= 5.3
    assert max(measured) > 2.0  # it does rotate


def test_vin_preset_contents() -> None:
    names = {t.name for t in preset_pipeline("vin").transforms}
    assert names == {"brightness", "rotate", "gaussian_blur", "gaussian_noise", "perspective",
                     "jpeg"}
    params = {name: p for name, _, p in PRESETS["vin"].entries}
    assert params["perspective"]["max_shift"] <= 0.05
    assert tuple(params["jpeg"]["quality"]) == (50, 95)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_vin_preset_never_mirrors(size: Tuple[int, int]) -> None:
    h, w = size
    img = half_image(h, w)
    pipe = preset_pipeline("vin")
    for t in pipe.transforms:
        for seed in range(10):
            out = t(img, np.random.default_rng(seed)).astype(np.float64)
            half = out.shape[1] // 2
            assert out[:, :half].mean() < out[:, half:].mean() - 50, (t.name, seed)
    for seed in range(30):
        out = pipe.augment(img, np.random.default_rng(seed), force=True).astype(np.float64)
        half = out.shape[1] // 2
        assert out[:, :half].mean() < out[:, half:].mean(), seed


# --------------------------------------------------------------------------- pipeline


class _Tag:
    """Dummy transform recording nothing; identified by name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return img.copy()


def test_weighted_selection_follows_weights() -> None:
    weights = [1.0, 2.0, 3.0, 4.0]
    tags = [_Tag(f"t{i}") for i in range(4)]
    pipe = AugmentPipeline(list(zip(tags, weights)), p=1.0, num_ops=1)
    rng = np.random.default_rng(0)
    n = 20000
    counts = {t.name: 0 for t in tags}
    for _ in range(n):
        (t,) = pipe.select(rng)
        counts[t.name] += 1
    for t, w in zip(tags, weights):
        assert abs(counts[t.name] / n - w / sum(weights)) < 0.015, counts


def test_alpr_selection_frequency_and_no_repeats() -> None:
    pipe = preset_pipeline("alpr")
    assert pipe.num_ops == 2
    rng = np.random.default_rng(1)
    n = 6000
    counts: dict = {}
    for _ in range(n):
        picked = pipe.select(rng)
        assert len(picked) == 2 and picked[0] is not picked[1]
        counts[picked[0].name] = counts.get(picked[0].name, 0) + 1
    # First pick is exactly proportional to weight: rotate 3/14, motion_blur 2/14, others 1/14.
    assert abs(counts["rotate"] / n - 3 / 14) < 0.025
    assert abs(counts["motion_blur"] / n - 2 / 14) < 0.025
    assert abs(counts["downsize"] / n - 1 / 14) < 0.02


def test_zero_weight_never_picked() -> None:
    tags = [_Tag("a"), _Tag("b"), _Tag("c")]
    pipe = AugmentPipeline([(tags[0], 1), (tags[1], 0), (tags[2], 1)], num_ops=2)
    rng = np.random.default_rng(0)
    for _ in range(200):
        assert all(t.name != "b" for t in pipe.select(rng))


def test_probability_gate() -> None:
    img = noise_image(32, 100)
    pipe = AugmentPipeline([(TRANSFORMS["gaussian_noise"](sigma=10.0), 1)], p=0.3)
    rng = np.random.default_rng(0)
    changed = sum(not np.array_equal(pipe(img, rng), img) for _ in range(2000))
    assert abs(changed / 2000 - 0.3) < 0.04
    never = AugmentPipeline([(TRANSFORMS["gaussian_noise"](sigma=10.0), 1)], p=0.0)
    assert np.array_equal(never(img, rng), img)
    assert not np.array_equal(never.augment(img, rng, force=True), img)


def test_pipeline_deterministic_and_accepts_gray() -> None:
    pipe = preset_pipeline("alpr")
    img = noise_image(48, 320)
    a = pipe.augment(img, np.random.default_rng(7), force=True)
    b = pipe.augment(img, np.random.default_rng(7), force=True)
    assert np.array_equal(a, b)
    gray = pipe(img[:, :, 0].copy(), np.random.default_rng(3))
    assert gray.ndim == 3 and gray.shape[2] == 3
    with pytest.raises(ValueError):
        pipe(img.astype(np.float32), np.random.default_rng(0))


def test_pipeline_pickles_for_worker_processes() -> None:
    import pickle

    pipe = preset_pipeline("alpr")
    clone = pickle.loads(pickle.dumps(pipe))
    img = noise_image(17, 48)
    a = pipe.augment(img, np.random.default_rng(4), force=True)
    b = clone.augment(img, np.random.default_rng(4), force=True)
    assert np.array_equal(a, b)


def test_as_bgr_rejects_empty() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        preset_pipeline("vin")(np.zeros((0, 5, 3), np.uint8), np.random.default_rng(0))


def test_pipeline_constructor_checks() -> None:
    with pytest.raises(ValueError, match="num_ops"):
        AugmentPipeline([(_Tag("a"), 1)], num_ops=2)
    with pytest.raises(ValueError, match="p must"):
        AugmentPipeline([(_Tag("a"), 1)], p=1.5)
    with pytest.raises(ValueError, match="weight"):
        AugmentPipeline([(_Tag("a"), -1)])


# --------------------------------------------------------------------------- build_augment


def test_build_augment_presets_and_overrides() -> None:
    assert AUGMENT_SCHEMA_KEYS == ("preset", "p", "num_ops", "transforms")
    assert build_augment(None) is None
    assert build_augment({"preset": "none"}) is None
    assert build_augment({}) is None
    assert build_augment({"preset": "vin", "p": 0}) is None

    pipe = build_augment({
        "preset": "vin", "p": 0.8, "num_ops": 2,
        "transforms": [
            {"name": "rotate", "weight": 3, "max_angle": 4},
            {"name": "jpeg", "weight": 1, "quality": [60, 90]},
            {"name": "gaussian_noise", "weight": 0},
            {"name": "motion_blur", "kernel_size": 3},
        ],
    })
    assert pipe is not None and pipe.p == 0.8 and pipe.num_ops == 2
    by_name = {t.name: (t, w) for t, w in pipe.entries}
    assert by_name["rotate"][0].max_angle == 4.0 and by_name["rotate"][1] == 3.0
    assert by_name["jpeg"][0].quality == (60, 90)
    assert by_name["gaussian_noise"][1] == 0.0
    assert "gaussian_noise" not in {t.name for t in pipe.transforms}
    assert by_name["motion_blur"][0].kernel_size == (3, 3) and by_name["motion_blur"][1] == 1.0
    # Preset params not overridden stay as in the preset.
    assert by_name["brightness"][0].contrast == (0.7, 1.3)

    only = build_augment({"transforms": [{"name": "jpeg"}]})
    assert only is not None and [t.name for t in only.transforms] == ["jpeg"]
    assert only.p == 1.0 and only.num_ops == 1


@pytest.mark.parametrize("cfg, fragments", [
    ({"preset": "vin", "transforms": [{"name": "rotate"}, {"name": "rotat"}]},
     ["augment.transforms[1]", "unknown transform 'rotat'", "valid: brightness, cutting"]),
    ({"preset": "vin", "transforms": [{"name": "rotate", "max_angel": 3}]},
     ["augment.transforms[0].max_angel", "unknown parameter", "valid:", "max_angle"]),
    ({"transforms": [{"name": "rotate", "max_angle": "five"}]},
     ["augment.transforms[0].max_angle", "expected a number"]),
    ({"transforms": [{"name": "jpeg", "quality": "high"}]},
     ["augment.transforms[0].quality", "[low, high] pair of integers"]),
    ({"transforms": [{"name": "jpeg", "quality": [50.5, 90]}]},
     ["augment.transforms[0].quality", "integer"]),
    ({"transforms": [{"name": "rotate", "expand": "yes"}]},
     ["augment.transforms[0].expand", "true or false"]),
    ({"transforms": [{"name": "rotate", "max_angle": 200}]},
     ["augment.transforms[0]", "max_angle"]),
    ({"transforms": [{"name": "rotate", "weight": -1}]},
     ["augment.transforms[0].weight", ">= 0"]),
    ({"transforms": [{"weight": 1}]}, ["augment.transforms[0].name", "missing"]),
    ({"transforms": ["rotate"]}, ["augment.transforms[0]", "mapping"]),
    ({"transforms": [{"name": "jpeg"}, {"name": "jpeg"}]}, ["augment.transforms[1]", "already"]),
    ({"transforms": {"name": "jpeg"}}, ["augment.transforms", "list"]),
    ({"preset": "vn"}, ["augment.preset", "'vn'", "valid: alpr, vin, none"]),
    ({"preset": "vin", "probability": 0.5}, ["augment.probability", "unknown key",
                                             "preset, p, num_ops, transforms"]),
    ({"preset": "vin", "p": 1.5}, ["augment.p", "[0, 1]"]),
    ({"preset": "vin", "p": "often"}, ["augment.p"]),
    ({"preset": "vin", "num_ops": 0}, ["augment.num_ops", "integer"]),
    ({"preset": "vin", "num_ops": 2.0}, ["augment.num_ops", "integer"]),
    ({"preset": "vin", "num_ops": 7}, ["augment.num_ops", "exceeds"]),
])
def test_build_augment_errors_name_the_key(cfg: dict, fragments: List[str]) -> None:
    with pytest.raises(ConfigError) as info:
        build_augment(cfg)
    msg = str(info.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_build_augment_rejects_non_mapping() -> None:
    with pytest.raises(ConfigError, match="augment"):
        build_augment(["vin"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- offline + preview


def _samples() -> List[Tuple[np.ndarray, str, str]]:
    return [
        (text_image("1HGCM82633A004352"), "1HGCM82633A004352", "a/vin_0.jpg"),
        (text_image("AB123CD", 32, 100), "AB123CD", "plate.png"),
        (noise_image(17, 48), "X1", "plate.png"),  # same file name as above on purpose
    ]


def test_augment_dataset_writes_originals_and_copies(tmp_path: Path) -> None:
    pipe = preset_pipeline("vin")
    labels = augment_dataset(_samples(), tmp_path / "out", pipe, augs_per_sample=2, seed=5)
    assert labels == tmp_path / "out" / "labels.txt"
    lines = labels.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 * (1 + 2)
    rel_paths = [ln.split("\t")[0] for ln in lines]
    assert len(set(rel_paths)) == len(rel_paths)
    assert [ln.split("\t")[1] for ln in lines] == ["1HGCM82633A004352"] * 3 + ["AB123CD"] * 3 \
        + ["X1"] * 3
    for rel in rel_paths:
        assert rel.startswith("images/") and rel.endswith(".png")
        assert (tmp_path / "out" / rel).is_file()
    # The original is stored losslessly.
    first = cv2.imdecode(np.fromfile(str(tmp_path / "out" / rel_paths[0]), np.uint8),
                         cv2.IMREAD_COLOR)
    assert np.array_equal(first, _samples()[0][0])
    # Copy k of sample i uses default_rng([seed, i, k]) and is always augmented.
    copy = cv2.imdecode(np.fromfile(str(tmp_path / "out" / rel_paths[4]), np.uint8),
                        cv2.IMREAD_COLOR)
    expected = pipe.augment(_samples()[1][0], np.random.default_rng([5, 1, 0]), force=True)
    assert np.array_equal(copy, expected)
    assert not (copy.shape == first.shape and np.array_equal(copy, first))

    # Deterministic by seed.
    again = augment_dataset(_samples(), tmp_path / "again", pipe, augs_per_sample=2, seed=5)
    assert again.read_text(encoding="utf-8") == labels.read_text(encoding="utf-8")
    for rel in rel_paths:
        assert (tmp_path / "out" / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes()


def test_augment_dataset_rejects_tab_in_label(tmp_path: Path) -> None:
    from vinocr.errors import DataError

    with pytest.raises(DataError, match="sample 0"):
        augment_dataset([(noise_image(17, 48), "A\tB", "x")], tmp_path, preset_pipeline("alpr"),
                        1, 0)


def test_preview_grid_shape_and_save(tmp_path: Path) -> None:
    images = [s[0] for s in _samples()]
    pipe = preset_pipeline("alpr")
    grid = preview_grid(images, pipe, np.random.default_rng(0), n_aug=5, cell_height=40, gap=2)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    rows, cols = len(images), 6
    assert grid.shape[0] == rows * 40 + (rows + 1) * 2
    assert (grid.shape[1] - (cols + 1) * 2) % cols == 0
    cell_w = (grid.shape[1] - (cols + 1) * 2) // cols
    # The widest cell is at least the original VIN line scaled to 40 px high.
    assert cell_w >= round(320 * 40 / 48)
    path = save_preview(tmp_path / "préview_ü" / "grid.png", grid)
    back = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(back, grid)


def _two_source_config(tmp_path: Path, second_source_augment, **over):
    """A tiny run config: Train.augment blacks every image out; the second of two sources
    carries its own ``augment`` section."""
    from conftest import make_label_dir, tiny_config

    a = make_label_dir(tmp_path / "a", [f"AA{i:04d}" for i in range(6)])
    b = make_label_dir(tmp_path / "b", [f"BB{i:04d}" for i in range(6)])
    make_label_dir(tmp_path, ["CC0000", "CC0001"], name="val.txt", subdir="val")
    make_label_dir(tmp_path, ["CC0002"], name="train.txt", subdir="tr")
    second = {"type": "label_file", "label_files": [str(b)], "ratio": 0.5}
    if second_source_augment is not None:
        second["augment"] = second_source_augment
    return tiny_config(tmp_path, tmp_path / "run", Train__augment={
        "p": 1.0, "transforms": [{"name": "brightness", "factor": [0.0, 0.0]}]},
        Train__dataset={"sources": [{"type": "label_file", "label_files": [str(a)],
                                     "ratio": 0.5}, second], "epoch_size": 12}, **over)


def test_a_sources_augment_replaces_train_augment_for_its_samples_only(tmp_path: Path) -> None:
    """Pseudo-labelled crops can be augmented differently from labelled ones: the source's own
    section applies to its samples, Train.augment to the others."""
    from vinocr.data.preprocess import resize_norm
    from vinocr.engine.run_setup import build_data

    cfg = _two_source_config(tmp_path, {"preset": "none"})
    data = build_data(cfg, "plate", cfg["Global"]["image_shape"], seed=0)
    samples = data.train_samples
    for i in range(len(samples)):
        image = samples.dataset.load_image(i)
        tensor = samples.image_tensor(i)
        black = np.allclose(tensor, tensor.min())
        if samples.dataset.label(i).startswith("AA"):
            assert black, "Train.augment should black out the first source"
        else:
            # the second source is left as it is: exactly the plain preprocessed image
            np.testing.assert_allclose(tensor, resize_norm(image, cfg["Global"]["image_shape"])[0])
    assert {samples.dataset.label(i)[:2] for i in range(len(samples))} == {"AA", "BB"}


def test_source_augment_errors_name_the_key(tmp_path: Path) -> None:
    from vinocr.engine.run_setup import build_data

    with pytest.raises(ConfigError, match=r"Train\.dataset\.sources\[1\]\.augment\.strength"):
        _two_source_config(tmp_path / "x", {"strength": 3})
    cfg = _two_source_config(tmp_path / "y", None, Eval__dataset={
        "type": "label_file", "label_files": [str(tmp_path / "y" / "val.txt")],
        "augment": {"preset": "vin"}})
    with pytest.raises(ConfigError, match=r"Eval\.dataset\.augment: validation is never"):
        build_data(cfg, "plate", cfg["Global"]["image_shape"], seed=0)
