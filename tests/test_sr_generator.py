"""SR generator (shapes, size, shared attention, bicubic residual), SSIM vs scikit-image, the uint8
metrics, and export_sr / SRPredictor round trips. Tiny tensors and a 1-block generator for export
keep the file fast on 2 CPU cores."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
import yaml
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import assert_close_rel
from vinocr.errors import ConfigError, VinocrError
from vinocr.sr.generator import (GENERATOR_CONFIGS, SharedAttention, SRGenerator, build_generator,
                                 count_parameters)
from vinocr.sr.preprocess import bicubic_upscale, to_tensor

LR = (16, 48)


@pytest.fixture(autouse=True)
def _seed():
    paddle.seed(0)


def _plate(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth BGR uint8 'plate' with some dark strokes."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)), (0, 0), 1.5)
    img = (np.clip(img * 1.6 - 0.3, 0, 1) * 255).astype(np.uint8)
    cv2.putText(img, "AB12", (1, h - 3), cv2.FONT_HERSHEY_SIMPLEX, h / 40, (10, 10, 10), 1)
    return img


def _smooth(shape, rng) -> np.ndarray:
    return np.clip(cv2.GaussianBlur(rng.random(shape), (0, 0), 2) * 1.5 - 0.25, 0, 1)


# ----------------------------------------------------------------------------- generator


@pytest.mark.parametrize("scale", [2, 4])
def test_output_shape(scale):
    g = build_generator("small", scale)
    g.eval()
    with paddle.no_grad():
        y = g(paddle.rand([2, 3, *LR]))
    assert list(y.shape) == [2, 3, LR[0] * scale, LR[1] * scale]
    assert g.scale == scale and g.arch_kwargs["scale"] == scale


def test_parameter_counts_and_rebuild():
    small = build_generator("small")
    n_small = count_parameters(small)
    assert n_small <= 5_000_000
    large = build_generator("large")
    assert count_parameters(large) > n_small
    assert GENERATOR_CONFIGS["large"]["num_blocks"] == 12
    # arch_kwargs rebuilds the same architecture; its weights load without mismatch.
    again = SRGenerator(**small.arch_kwargs)
    assert count_parameters(again) == n_small
    again.set_state_dict(small.state_dict())
    x = paddle.rand([1, 3, *LR])
    small.eval(), again.eval()
    np.testing.assert_allclose(small(x).numpy(), again(x).numpy(), atol=1e-6)


def test_attention_is_shared():
    g = build_generator("small", num_blocks=3)
    attentions = [m for m in g.sublayers() if isinstance(m, SharedAttention)]
    assert len(attentions) == 1  # one instance ...
    att_params = [n for n, _ in g.named_parameters() if "attention" in n]
    assert att_params and all(n.startswith("attention.") for n in att_params)
    assert len(att_params) == len(list(attentions[0].parameters()))  # ... one set of parameters
    calls = []
    hook = attentions[0].register_forward_post_hook(lambda layer, inp, out: calls.append(1))
    with paddle.no_grad():
        g(paddle.rand([1, 3, *LR]))
    hook.remove()
    assert len(calls) == 3  # ... used after every block


def test_zeroed_residual_gives_bicubic():
    g = build_generator("small", 2, num_blocks=1)
    g.conv_last.weight.set_value(paddle.zeros_like(g.conv_last.weight))
    g.conv_last.bias.set_value(paddle.zeros_like(g.conv_last.bias))
    img = _plate(*LR)
    x = paddle.to_tensor(to_tensor([img]))
    with paddle.no_grad():
        y = g(x).numpy()
    ref = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-6)
    # ... which is the same bicubic as the preprocess baseline (cv2.INTER_CUBIC).
    cv_ref = bicubic_upscale(img.astype(np.float32) / 255.0, 2).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(y, cv_ref, atol=1e-5)


def test_generator_backward_reaches_all_parameters():
    g = build_generator("small", 2, num_blocks=1)
    g.train()
    loss = (g(paddle.rand([2, 3, *LR])) - 0.5).abs().mean()
    loss.backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None]
    assert not missing


def test_config_errors():
    with pytest.raises(ConfigError) as e:
        build_generator("huge")
    msg = str(e.value)
    assert "huge" in msg and "small" in msg and "large" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=r"\[2, 4\]"):
        build_generator("small", scale=3)
    with pytest.raises(ConfigError, match="bogus"):
        build_generator("small", bogus=1)


# ----------------------------------------------------------------------------- SSIM


def test_ssim_matches_skimage():
    from vinocr.sr.ssim import ssim

    rng = np.random.default_rng(0)
    xs = [_smooth((32, 96, 3), rng) for _ in range(2)]
    ys = [np.clip(x + 0.15 * cv2.GaussianBlur(rng.standard_normal(x.shape), (0, 0), 1), 0, 1)
          for x in xs]
    ref = np.mean([structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=1.0,
                                         channel_axis=-1) for x, y in zip(xs, ys)])

    def t(a):
        return paddle.to_tensor(np.stack(a).transpose(0, 3, 1, 2).astype(np.float32))

    got = float(ssim(t(xs), t(ys)))
    assert abs(got - ref) < 1e-4
    assert abs(float(ssim(t(xs), t(xs))) - 1.0) < 1e-5


def test_ssim_gradient_flows_to_both_inputs():
    from vinocr.sr.ssim import ssim

    rng = np.random.default_rng(1)
    a, b = (paddle.to_tensor(_smooth((32, 96, 3), rng).transpose(2, 0, 1)[None].astype(np.float32),
                             stop_gradient=False) for _ in range(2))
    (1.0 - ssim(a, b)).backward()
    assert float(a.grad.abs().sum()) > 0 and float(b.grad.abs().sum()) > 0
    with pytest.raises(VinocrError, match="shape"):
        ssim(a, b[:, :, :16])


# ----------------------------------------------------------------------------- uint8 metrics


def test_uint8_metrics():
    from vinocr.sr.metrics import PSNR_CAP, mean_psnr_ssim, psnr, ssim_uint8

    a = _plate(32, 96, seed=2)
    assert psnr(a, a) == float("inf")
    assert ssim_uint8(a, a) == pytest.approx(1.0)
    b = np.clip(a.astype(np.int16) + np.random.default_rng(3).integers(-20, 21, a.shape), 0,
                255).astype(np.uint8)
    assert psnr(b, a) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))
    assert 0.0 < ssim_uint8(b, a) < 1.0
    mp, ms = mean_psnr_ssim([a, b], [a, a])
    assert mp == pytest.approx((PSNR_CAP + psnr(b, a)) / 2)
    assert ms == pytest.approx((1.0 + ssim_uint8(b, a)) / 2)
    with pytest.raises(VinocrError) as e:
        psnr(a, a[:16])
    assert "(32, 96, 3)" in str(e.value) and "(16, 96, 3)" in str(e.value)


# ----------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def tiny_generator() -> SRGenerator:
    paddle.seed(1)
    g = build_generator("small", 2, num_blocks=1)
    # A visible residual (and some pixels outside [0, 1]) so the round trip tests the clip too.
    w = g.conv_last.weight
    w.set_value(paddle.randn(w.shape) * 0.05)
    g.eval()
    return g


@pytest.fixture(scope="module")
def exported(tiny_generator, tmp_path_factory) -> Path:
    from vinocr.export.sr import export_sr

    return export_sr(tiny_generator, tmp_path_factory.mktemp("sr") / "model", LR)


def test_export_files_and_meta(exported, tiny_generator):
    for name in ("inference.json", "inference.pdiparams", "sr.yml"):
        assert (exported / name).is_file()
    meta = yaml.safe_load((exported / "sr.yml").read_text())
    assert meta["kind"] == "vinocr-sr" and meta["lr_shape"] == [16, 48] and meta["scale"] == 2
    assert meta["aspect"] == 3.0
    assert meta["generator"]["name"] == "small"
    assert SRGenerator(**meta["generator"]["arch_kwargs"]).arch_kwargs == tiny_generator.arch_kwargs
    assert not list(exported.glob("*.tmp*"))
    # The export swaps LeakyReLU (oneDNN fuse-pass crash) on a copy, never on the caller's model.
    assert any(isinstance(m, paddle.nn.LeakyReLU) for m in tiny_generator.sublayers())


def test_export_round_trip(exported, tiny_generator):
    from vinocr.export.inference import load_predictor, run_paddle_predictor
    from vinocr.export.sr import SRPredictor

    images = [_plate(*LR, seed=s) for s in range(3)]
    x = to_tensor(images)
    with paddle.no_grad():
        raw = tiny_generator(paddle.to_tensor(x)).numpy()
    assert raw.min() < 0 or raw.max() > 1  # the clip matters in this test
    static = run_paddle_predictor(load_predictor(exported), x)
    # oneDNN vs dygraph kernels: slack relative to the unclipped output's magnitude
    assert_close_rel(static, np.clip(raw, 0, 1), rtol=1e-4, scale=float(np.abs(raw).max()),
                     what="exported SR output")

    from_dir = SRPredictor.from_dir(exported)
    assert from_dir.lr_shape == (16, 48) and from_dir.scale == 2 and from_dir.hr_shape == (32, 96)
    dyn = SRPredictor.from_generator(tiny_generator, LR)
    for a, b in zip(from_dir(images), dyn(images)):
        assert a.shape == (32, 96, 3) and a.dtype == np.uint8
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_predictor_odd_size_and_mode(exported, tiny_generator):
    from vinocr.export.sr import SRPredictor

    odd = _plate(13, 50, seed=5)
    (out,) = SRPredictor.from_dir(exported)([odd])
    assert out.shape == (32, 96, 3)
    tiny_generator.train()
    try:
        (out2,) = SRPredictor.from_generator(tiny_generator, LR, batch_size=1)([odd])
        assert tiny_generator.training  # the caller's mode is restored
    finally:
        tiny_generator.eval()
    assert np.abs(out.astype(int) - out2.astype(int)).max() <= 1
    assert SRPredictor.from_dir(exported)([]) == []


def test_predictor_dir_errors(exported, tmp_path):
    from vinocr.export.sr import SRPredictor

    with pytest.raises(VinocrError, match="sr.yml") as e:
        SRPredictor.from_dir(tmp_path)
    assert str(tmp_path) in str(e.value)
    (tmp_path / "sr.yml").write_text("kind: something-else\nlr_shape: [16, 48]\nscale: 2\n")
    with pytest.raises(VinocrError, match="kind"):
        SRPredictor.from_dir(tmp_path)
    (tmp_path / "sr.yml").write_text((exported / "sr.yml").read_text())
    with pytest.raises(VinocrError, match="inference.json") as e:
        SRPredictor.from_dir(tmp_path)
    assert str(tmp_path) in str(e.value)


# ----------------------------------------------------------------------------- multi-frame


def test_frame_stacks_lead_with_each_frame_and_cycle():
    from vinocr.sr.preprocess import frame_stacks

    frames = np.stack([np.full((2, 3, 3), v, np.uint8) for v in (10, 20, 30)])
    stacks = frame_stacks(frames, 5)
    assert stacks.shape == (3, 5, 2, 3, 3)
    # stack i starts with frame i, then the following frames, cyclically (repeating when short)
    assert [int(s[0, 0, 0]) for s in stacks[1]] == [20, 30, 10, 20, 30]
    assert [int(s[0, 0, 0]) for s in stacks[2]] == [30, 10, 20, 30, 10]
    x = to_tensor(list(stacks))
    assert x.shape == (3, 15, 2, 3)
    assert np.allclose(x[1, :3], 20 / 255) and np.allclose(x[1, 3:6], 30 / 255)
    with pytest.raises(VinocrError, match="at least one frame"):
        frame_stacks(frames[:0], 5)


def test_multi_frame_generator_reads_all_frames_and_adds_to_the_first():
    g = build_generator("small", 2, num_blocks=1, frames=5)
    assert g.frames == 5 and g.arch_kwargs["frames"] == 5
    assert "frames" not in build_generator("small", 2).arch_kwargs  # old records unchanged
    g.eval()
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.random((1, 15, *LR)).astype(np.float32))
    with paddle.no_grad():
        y = g(x).numpy()
        later = x.numpy().copy()
        later[:, 12:] = 0.5  # change only the last frame
        y2 = g(paddle.to_tensor(later)).numpy()
    assert y.shape == (1, 3, 32, 96)
    assert np.abs(y - y2).max() > 1e-4  # the other frames reach the output
    # The residual is added to the bicubic upsampling of the first frame.
    g.conv_last.weight.set_value(paddle.zeros_like(g.conv_last.weight))
    g.conv_last.bias.set_value(paddle.zeros_like(g.conv_last.bias))
    with paddle.no_grad():
        base = g(x).numpy()
    ref = F.interpolate(x[:, :3], scale_factor=2, mode="bicubic", align_corners=False).numpy()
    np.testing.assert_allclose(base, ref, atol=1e-6)


def test_multi_frame_export_reads_a_track(tmp_path):
    from vinocr.export.sr import SRPredictor, export_sr
    from vinocr.sr.pipeline import chain

    paddle.seed(2)
    g = build_generator("small", 2, num_blocks=1, frames=3)
    g.conv_last.weight.set_value(paddle.randn(g.conv_last.weight.shape) * 0.05)
    g.eval()
    out = export_sr(g, tmp_path / "mf", LR)
    from_dir = SRPredictor.from_dir(out, batch_size=2)
    assert from_dir.frames == 3
    track = [_plate(*LR, seed=s) for s in range(4)]
    static = from_dir(track)  # batch 2 < 4 frames: every input still sees the whole track
    dyn = SRPredictor.from_generator(g, LR)(track)
    assert len(static) == len(dyn) == 4
    for a, b in zip(static, dyn):
        assert a.shape == (32, 96, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # Single crops are not a track: chaining them through a multi-frame model is refused.
    with pytest.raises(ConfigError, match="--tracks"):
        chain(from_dir, object(), track[:1])
