"""SR training: forced alignment, LCOFL gradients, stage switching, checkpoints and resume."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
import pytest

from conftest import assert_close_rel, assert_state_close
from vinocr.charset import load_charset
from vinocr.config.schema import validate_config
from vinocr.decode import build_decoder
from vinocr.errors import ConfigError
from vinocr.models.registry import build_model
from vinocr.sr.alignment import forced_align
from vinocr.sr.config import SR_SCHEMA
from vinocr.sr.data import SRPairs
from vinocr.sr.generator import build_generator
from vinocr.sr.lcofl import LCOFL, LossWeights, layout_pattern, to_ocr_input
from vinocr.sr.trainer import SRTrainer, parse_stages

OCR_SHAPE = [3, 32, 96]
PLATES = [("ABC1234", "Brazilian"), ("BRA2E19", "Mercosur"), ("XYZ9876", "Brazilian")]


def _log(rows):
    p = np.asarray(rows, dtype=np.float64) + 1e-4
    return np.log(p / p.sum(axis=1, keepdims=True))


# ---- forced alignment --------------------------------------------------------------------

def test_forced_align_follows_the_best_path_that_spells_the_label():
    # Classes: 0 blank, 1 'A', 2 'B'. Frame 1 prefers B, but the label AB forces A there only if
    # the path needs it; the best valid path reads A at frame 0 and B at frame 2.
    lp = _log([[0.1, 0.8, 0.1], [0.6, 0.1, 0.3], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])
    al = forced_align(lp, [1, 2])
    assert al.targets.tolist() == [1, 0, 2, 0]
    assert al.positions.tolist() == [0, -1, 1, -1]


def test_forced_align_needs_a_blank_between_repeated_characters():
    lp = _log([[0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    assert forced_align(lp[:2], [1, 1]) is None           # AA needs 3 frames
    al = forced_align(lp, [1, 1])
    assert al.targets.tolist() == [1, 0, 1]
    assert al.positions.tolist() == [0, -1, 1]


def test_forced_align_overrides_a_confident_wrong_reading():
    # The model reads 'B' everywhere; the alignment still assigns the ground truth 'A'.
    lp = _log([[0.05, 0.05, 0.9]] * 3)
    al = forced_align(lp, [1])
    assert sorted(al.targets.tolist()).count(1) >= 1
    assert set(al.targets.tolist()) <= {0, 1}


def test_layout_patterns():
    assert layout_pattern("Brazilian") == "LLLNNNN"
    assert layout_pattern("mercosur") == "LLLNLNN"
    assert layout_pattern("LLNN") == "LLNN"
    assert layout_pattern("unknown") is None


# ---- LCOFL gradients ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def plate_charset():
    return load_charset("plate")


@pytest.fixture(scope="module")
def tiny_models(plate_charset):
    paddle.seed(0)
    gen = build_generator("small", scale=2, num_feat=8, growth=4, num_blocks=1)
    ocr = build_model("ppocrv4_mobile", num_classes=plate_charset.num_classes)
    ocr.eval()
    return gen, ocr


def _batch(n=2, seed=0):
    rng = np.random.default_rng(seed)
    lr = rng.integers(0, 255, (n, 16, 48, 3)).astype(np.uint8)
    hr = rng.integers(0, 255, (n, 32, 96, 3)).astype(np.uint8)
    texts = [PLATES[i % 3][0] for i in range(n)]
    layouts = [PLATES[i % 3][1] for i in range(n)]
    return lr, hr, texts, layouts


@pytest.mark.parametrize("term", ["l1", "ssim", "char", "layout"])
def test_every_lcofl_term_sends_gradient_to_the_generator(term, tiny_models, plate_charset):
    """The released LCOFL code's character and layout terms had no gradient; ours must."""
    gen, ocr = tiny_models
    for p in ocr.parameters():
        p.stop_gradient = True
    loss = LCOFL(plate_charset.class_list())
    lr, hr, texts, layouts = _batch()
    x = paddle.to_tensor(lr.transpose(0, 3, 1, 2).astype("float32") / 255)
    y = paddle.to_tensor(hr.transpose(0, 3, 1, 2).astype("float32") / 255)
    gen.clear_gradients()
    sr = gen(x)
    terms = loss.image_terms(sr, y)
    terms.update(loss.text_terms(ocr(to_ocr_input(sr, OCR_SHAPE)), texts, layouts))
    value = terms[term]
    assert float(value) > 0
    value.backward()
    grads = [p.grad for p in gen.parameters() if p.grad is not None]
    assert grads, f"{term}: no generator parameter received a gradient"
    total = sum(float(paddle.abs(g).sum()) for g in grads)
    assert total > 0, f"{term}: zero gradient"


def test_layout_term_is_zero_without_a_layout_and_counts_wrong_groups(plate_charset):
    loss = LCOFL(plate_charset.class_list(), LossWeights(beta=1.0))
    classes = plate_charset.class_list()
    a, one = classes.index("A"), classes.index("1")
    # Frames: 'A' read as '1' (a digit at a letter position) with probability 0.9.
    logits = np.full((1, 3, len(classes)), -10.0, dtype="float32")
    logits[0, 0, a], logits[0, 0, one] = np.log(0.1), np.log(0.9)
    logits[0, 1:, 0] = 5.0
    t = paddle.to_tensor(logits)
    with_layout = float(loss.text_terms(t, ["A"], ["L"])["layout"])
    without = float(loss.text_terms(t, ["A"], [None])["layout"])
    assert without == 0.0
    assert with_layout == pytest.approx(0.9, abs=0.01)


def test_char_weights_follow_the_confusion_matrix(plate_charset):
    loss = LCOFL(plate_charset.class_list(), LossWeights(alpha=0.5, threshold=0.25))
    confusion = {("B", "8"): 3, ("B", "B"): 7, ("S", "5"): 1, ("S", "S"): 9, ("A", "A"): 5}
    heavy = loss.update_char_weights(confusion)
    assert heavy == {"B": 1.5}            # 30% > 25%; S at 10% stays 1
    heavy = loss.update_char_weights({("S", "5"): 5, ("S", "S"): 5})
    assert heavy == {"S": 1.5}            # recomputed each epoch, not accumulated by default
    acc = LCOFL(plate_charset.class_list(), LossWeights(accumulate=True, max_char_weight=1.8))
    for _ in range(3):
        acc.update_char_weights(confusion)
    assert acc.char_weights[plate_charset.class_list().index("B")] == pytest.approx(1.8)


def test_loss_config_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown key.*gama"):
        LossWeights.from_config({"gama": 1.0})


def test_parse_stages():
    assert parse_stages("all") == [1, 2, 3]
    assert parse_stages("3,2") == [2, 3]
    with pytest.raises(ConfigError, match="--stage"):
        parse_stages("4")


# ---- the trainer -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def track_root(tmp_path_factory) -> Path:
    from conftest import write_synthetic_tracks

    tracks = {f"Scenario-A/{layout}/track_{i:05d}": (text, layout)
              for i, (text, layout) in enumerate(PLATES)}
    return write_synthetic_tracks(tmp_path_factory.mktemp("sr_tracks"), tracks, seed=0)


def _trainer(track_root, run_dir, plate_charset, stages_epochs=(1, 1, 1), seed=0, frames=1):
    cfg = validate_config({
        "Global": {"run_dir": str(run_dir), "seed": seed, "visualdl": False,
                   "grid_every_epochs": 0},
        "Generator": {"params": {"num_feat": 8, "growth": 4, "num_blocks": 1}},
        "Stages": {f"stage{i + 1}": {"epochs": e} for i, e in enumerate(stages_epochs)},
        "Train": {"batch_size": 4, "max_steps_per_epoch": 2},
        "Optimizer": {"lr": 1e-3},
    }, schema=SR_SCHEMA)
    paddle.seed(seed)
    gen = build_generator("small", scale=2, num_feat=8, growth=4, num_blocks=1, frames=frames)
    ocr = build_model("ppocrv4_mobile", num_classes=plate_charset.num_classes)
    data = SRPairs(track_root, frames=frames)
    return SRTrainer(cfg, gen, ocr, plate_charset.class_list(), OCR_SHAPE,
                     build_decoder({}, plate_charset), data, data, run_dir, log=True)


def _snapshot(layer):
    return {k: v.numpy().copy() for k, v in layer.state_dict().items()}


def _changed(before, layer):
    after = _snapshot(layer)
    return any(not np.array_equal(before[k], after[k]) for k in before)


def test_stages_freeze_and_unfreeze_the_recogniser(track_root, tmp_path, plate_charset):
    tr = _trainer(track_root, tmp_path / "run", plate_charset, stages_epochs=(1, 0, 0))
    gen0, ocr0 = _snapshot(tr.generator), _snapshot(tr.ocr)
    tr.fit([1])
    assert _changed(gen0, tr.generator) and not _changed(ocr0, tr.ocr)
    assert all(p.stop_gradient for p in tr.ocr.parameters())

    tr = _trainer(track_root, tmp_path / "run2", plate_charset, stages_epochs=(0, 1, 0))
    gen0, ocr0 = _snapshot(tr.generator), _snapshot(tr.ocr)
    tr.fit([2])
    assert _changed(gen0, tr.generator)
    assert not _changed(ocr0, tr.ocr), "stage 2 must not move the frozen recogniser"
    assert tr.history[-1]["train_char"] > 0 and "train_layout" in tr.history[-1]

    ocr0 = _snapshot(tr.ocr)
    # Start stage 3 from an in-range SR image (the bicubic upsampling): the recogniser reads SR
    # clipped to [0, 1], so an untrained generator's out-of-range output would give it no gradient.
    for w in (tr.generator.conv_last.weight, tr.generator.conv_last.bias):
        w.set_value(paddle.zeros_like(w))
    tr.cfg["Stages"]["stage3"]["epochs"] = 1
    tr.fit([3])
    assert _changed(ocr0, tr.ocr), "stage 3 fine-tunes the recogniser"
    assert not any(p.stop_gradient for n, p in tr.ocr.named_parameters()
                   if not n.endswith(("_mean", "_variance")))
    after = _snapshot(tr.ocr)
    stats = [k for k in ocr0 if k.endswith(("_mean", "_variance"))]
    assert stats and all(np.array_equal(ocr0[k], after[k]) for k in stats), \
        "BatchNorm statistics must stay those of HR training"
    run = tmp_path / "run2"
    assert (run / "stage2_epoch_1" / "state.json").is_file()
    assert (run / "stage3_epoch_1" / "state.json").is_file()
    assert (run / "best" / "state.json").is_file()


@pytest.mark.parametrize("frames", [1, 5])
def test_resume_continues_exactly(track_root, tmp_path, plate_charset, frames):
    # frames=5: the shuffled frame order of every stack comes from the resumed RNG as well
    full = _trainer(track_root, tmp_path / "full", plate_charset, stages_epochs=(1, 2, 0),
                    frames=frames)
    full.fit([1, 2])
    part = _trainer(track_root, tmp_path / "part", plate_charset, stages_epochs=(1, 1, 0),
                    frames=frames)
    part.fit([1, 2])
    resumed = _trainer(track_root, tmp_path / "part", plate_charset, stages_epochs=(1, 2, 0),
                       frames=frames)
    resumed.resume(tmp_path / "part" / "stage2_epoch_1")
    assert (resumed._stage, resumed._epoch) == (2, 1)
    resumed.fit([1, 2])
    a, b = _snapshot(full.system), _snapshot(resumed.system)
    assert_state_close(b, a, rtol=1e-6)  # (bit-identical where measured)
    assert [h["epoch"] for h in resumed.history] == [1, 1, 2]


def test_resume_refuses_a_recogniser_checkpoint(track_root, tmp_path, plate_charset):
    from vinocr.engine.checkpoint import save_checkpoint
    from vinocr.errors import VinocrError

    save_checkpoint(tmp_path / "rec", {"w": np.zeros(2, "float32")}, {"epoch": 1})
    tr = _trainer(track_root, tmp_path / "run", plate_charset)
    with pytest.raises(VinocrError, match="not an SR checkpoint"):
        tr.resume(tmp_path / "rec")


def test_empty_labels_add_no_target(plate_charset):
    loss = LCOFL(plate_charset.class_list())
    logits = paddle.to_tensor(np.random.default_rng(0).normal(size=(2, 12, 38)).astype("float32"))
    both = loss.text_terms(logits, ["ABC1234", ""], ["Brazilian", None])
    one = loss.text_terms(logits[:1], ["ABC1234"], ["Brazilian"])
    assert float(both["char"]) == pytest.approx(float(one["char"]), rel=1e-5)
    empty = loss.text_terms(logits[1:], [""], [None])
    assert float(empty["char"]) == 0.0


def test_sr_config_checks_grid_and_betas():
    with pytest.raises(ConfigError, match="Generator.lr_shape: width must be 3 x height"):
        validate_config({"Generator": {"lr_shape": [16, 64]}}, schema=SR_SCHEMA)
    with pytest.raises(ConfigError, match=r"Optimizer.betas: expected \[beta1, beta2\]"):
        validate_config({"Optimizer": {"betas": [0.5]}}, schema=SR_SCHEMA)


def test_stage3_clips_generator_and_recogniser_by_one_global_norm(track_root, tmp_path,
                                                                   plate_charset):
    tr = _trainer(track_root, tmp_path / "run", plate_charset)
    tr._configure(tr.plan(3))
    tr.optimizer.clip_grad_norm = 1.0
    params = [p for p in tr.system.parameters() if not p.stop_gradient]
    for p in params:
        p.grad = paddle.full(p.shape, 3.0, p.dtype)  # noqa: attribute set for the test
    tr.optimizer._clip_gradients()
    norm = float(np.sqrt(sum(float((p.grad ** 2).sum()) for p in params)))
    assert norm == pytest.approx(1.0, rel=1e-4)
    # one scale for both networks: their gradients stay equal to each other
    g = {float(p.grad.flatten()[0]) for p in params}
    assert_close_rel(sorted(g), [max(g)] * len(g), rtol=1e-6, what="clipped gradients")


def test_resume_after_early_stop_moves_to_the_next_stage(track_root, tmp_path, plate_charset):
    tr = _trainer(track_root, tmp_path / "run", plate_charset, stages_epochs=(0, 5, 0))
    tr.cfg["Scheduler"]["early_stop_patience"] = 1
    tr.cfg["Optimizer"]["lr"] = 0.0  # nothing improves: stage 2 stops after its second epoch
    tr.fit([2])
    assert [h["epoch"] for h in tr.history] == [1, 2]
    again = _trainer(track_root, tmp_path / "run", plate_charset, stages_epochs=(0, 5, 1))
    again.resume(tmp_path / "run" / "latest")
    again.fit([1, 2, 3])
    assert [(h["stage"], h["epoch"]) for h in again.history] == [(2, 1), (2, 2), (3, 1)]
