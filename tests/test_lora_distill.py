"""LoRA adapters and knowledge distillation (vinocr/models/lora.py, techniques/lora.py,
techniques/distillation.py)."""
import logging
import re
from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from conftest import assert_close_rel, tiny_config as base_tiny_config  # `data`: conftest
from techniques import build_technique
from techniques.distillation import Distillation, kd_loss, resample_frames
from techniques.lora import LoRA
from vinocr.charset import load_charset
from vinocr.engine.checkpoint import load_checkpoint
from vinocr.engine.hooks import LossOutput, RunView
from vinocr.engine.trainer import Trainer
from vinocr.errors import ConfigError
from vinocr.models import build_model
from vinocr.models.lora import (DEFAULT_TARGETS, lora_layers, load_adapters, merge_lora,
                                save_adapters, unload_lora)
from vinocr.models.weights import load_weights, save_state_file

CRNN = {"hidden": 8, "channels": [4, 4, 8, 8]}


def tiny_config(data: Path, run_dir: Path, **over):
    return base_tiny_config(data, run_dir, epochs=1, **over)


def lively(model, seed: int = 0):
    """He-initialise every matrix: a freshly built deploy-form PP-OCRv4 has near-zero activations
    (outputs ~1e-10), which would make every comparison below vacuous."""
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        if p.ndim not in (2, 4):
            continue
        fan_in = int(np.prod(p.shape[1:])) if p.ndim == 4 else int(p.shape[0])
        p.set_value((rng.standard_normal(p.shape) * np.sqrt(2.0 / fan_in)).astype("float32"))
    return model


def ppocr(seed: int = 0):
    return lively(build_model("ppocrv4_mobile", 35), seed)


def images(n: int = 2, width: int = 64, seed: int = 0):
    return paddle.to_tensor(np.random.default_rng(seed).standard_normal((n, 3, 48, width))
                            .astype("float32"))


def randomise_adapters(model, seed: int = 1):
    rng = np.random.default_rng(seed)
    for _, layer in lora_layers(model):
        layer.lora_B.set_value((rng.standard_normal(layer.lora_B.shape) * 0.1).astype("float32"))


# ------------------------------------------------------------------------------------------ LoRA

def test_lora_starts_equal_to_base_and_trains_only_adapters_and_head():
    model = ppocr().eval()
    x = images()
    before = model(x).numpy()
    hook = LoRA()
    model = hook.prepare_model(model, RunView())
    assert np.array_equal(model(x).numpy(), before)  # B = 0: bit-identical at step 0
    names = [n for n, _ in lora_layers(model)]
    # 8 SVTR linears, 14 backbone pw convs, 3 neck 1x1 convs
    assert len(names) == 25
    assert "head.ctc_encoder.encoder.svtr_block.1.mlp.fc2" in names
    assert "backbone.blocks6.3.pw_conv.reparam_conv" in names
    assert not any("dw_conv" in n or ".se." in n for n in names)
    trainable = [n for n, p in model.named_parameters() if not p.stop_gradient]
    assert trainable and all(n.endswith((".lora_A", ".lora_B")) or n.startswith("head.ctc_head.fc")
                             for n in trainable)
    assert "head.ctc_head.fc.weight" in trainable
    # state dict = base keys unchanged + lora_A/lora_B
    base_keys = set(build_model("ppocrv4_mobile", 35).state_dict())
    keys = set(model.state_dict())
    assert base_keys <= keys and {k for k in keys - base_keys} == \
        {f"{n}.lora_{ab}" for n in names for ab in "AB"}
    summary = hook.describe()["trainable"]
    assert re.fullmatch(r"trainable [\d,]+ of [\d,]+ \(\d+\.\d%\)", summary), summary
    assert 0 < hook.describe()["trainable_parameters"] < 0.1 * hook.describe()["total_parameters"]
    # without the head only adapters train
    frozen_head = LoRA(train_head=False).prepare_model(ppocr(), RunView())
    assert all(n.endswith((".lora_A", ".lora_B")) for n, p in frozen_head.named_parameters()
               if not p.stop_gradient)


def test_lora_skips_depthwise_and_kxk_convs_with_a_warning(caplog):
    targets = [r"backbone\.blocks2\.0\.dw_conv\.reparam_conv", r"backbone\.conv1\.conv",
               r"head\.ctc_encoder\.encoder\.conv1\.conv",  # 1x3 conv in the neck
               r"head\.ctc_encoder\.encoder\.svtr_block\.0\.mixer\.qkv"]
    with caplog.at_level(logging.WARNING, logger="vinocr.models.lora"):
        model = LoRA(targets=targets).prepare_model(ppocr(), RunView())
    assert [n for n, _ in lora_layers(model)] == \
        ["head.ctc_encoder.encoder.svtr_block.0.mixer.qkv"]
    text = caplog.text
    assert "depthwise" in text and "backbone.blocks2.0.dw_conv.reparam_conv" in text
    assert "3x3 conv" in text and "1x3 conv" in text
    with pytest.raises(ConfigError, match="Technique.targets: no eligible layer"):
        LoRA(targets=[r"backbone\..*dw_conv\.reparam_conv"]).prepare_model(ppocr(), RunView())


def test_lora_merge_is_exact_and_restores_the_architecture():
    model = LoRA(rank=4, alpha=8).prepare_model(ppocr(), RunView())
    randomise_adapters(model)
    model.eval()
    x = images()
    base_out = ppocr().eval()(x).numpy()
    wrapped_out = model(x).numpy()
    assert np.abs(wrapped_out - base_out).max() > 1e-2  # the adapters do change the output
    merged = merge_lora(model, inplace=False)
    assert lora_layers(model), "inplace=False leaves the original wrapped"
    assert not lora_layers(merged)
    assert_close_rel(merged(x).numpy(), wrapped_out, rtol=1e-4, what="merged vs wrapped")
    fresh = build_model("ppocrv4_mobile", 35)
    got = [(k, tuple(v.shape)) for k, v in merged.state_dict().items()]
    want = [(k, tuple(v.shape)) for k, v in fresh.state_dict().items()]
    assert got == want
    types = {n: type(l) for n, l in merged.named_sublayers()}
    assert types == {n: type(l) for n, l in fresh.named_sublayers()}
    # the merged model loads into a fresh one strictly and computes the same
    load_weights(fresh, {k: v.numpy() for k, v in merged.state_dict().items()}, strict=True)
    assert_close_rel(fresh.eval()(x).numpy(), wrapped_out, rtol=1e-4, what="reloaded vs wrapped")
    # unload drops the adapters: back to the base output
    assert np.array_equal(unload_lora(model)(x).numpy(), base_out)


def test_adapter_file_is_small_and_loads_back(tmp_path):
    model = LoRA().prepare_model(ppocr(), RunView())
    randomise_adapters(model)
    model.eval()
    x = images()
    out = model(x).numpy()
    adapters = save_adapters(model, tmp_path / "adapters.safetensors")
    full = save_state_file({k: v.numpy() for k, v in merge_lora(model, inplace=False)
                            .state_dict().items()}, tmp_path / "full.safetensors")
    assert adapters.stat().st_size < 0.1 * full.stat().st_size
    # a plain base model + the adapter file = the trained model (head included)
    restored = load_adapters(ppocr().eval(), adapters)
    assert len(lora_layers(restored)) == 25
    assert np.array_equal(restored(x).numpy(), out)
    # and into an already wrapped model
    again = LoRA().prepare_model(ppocr(), RunView())
    assert np.array_equal(load_adapters(again, adapters).eval()(x).numpy(), out)
    # other adapters (another rank) are refused before anything loads
    other = LoRA(rank=4).prepare_model(ppocr(), RunView())
    untouched = {k: v.numpy().copy() for k, v in other.state_dict().items()}
    from vinocr.models.weights import WeightsError

    with pytest.raises(WeightsError, match="rank"):
        load_adapters(other, adapters)
    assert all(np.array_equal(untouched[k], v.numpy()) for k, v in other.state_dict().items())


def test_lora_options_are_checked():
    for kwargs, key in (({"rank": 0}, "Technique.rank"), ({"alpha": -1}, "Technique.alpha"),
                        ({"dropout": 1.0}, "Technique.dropout"),
                        ({"targets": ["head.("]}, "Technique.targets"),
                        ({"targets": []}, "Technique.targets"),
                        ({"train_head": "yes"}, "Technique.train_head"),
                        ({"alpha": 4, "lora_alpha": 4}, "Technique.lora_alpha")):
        with pytest.raises(ConfigError, match=re.escape(key)):
            LoRA(**kwargs)
    hooks = build_technique({"name": "lora", "rank": 4, "targets": list(DEFAULT_TARGETS[:1])})
    assert hooks.hooks[0].options.rank == 4
    with pytest.raises(ConfigError, match="Technique.temperature"):
        build_technique({"name": "lora", "temperature": 2.0})


def test_lora_training_freezes_base_resumes_and_finalizes(data, tmp_path):
    pretrained = save_state_file({k: v.numpy() for k, v in
                                  lively(build_model("ppocrv4_mobile", 38)).state_dict().items()},
                                 tmp_path / "base.safetensors")
    run = tmp_path / "run"
    over = dict(Architecture__name="ppocrv4_mobile", Architecture__params={},
                Architecture__pretrained=str(pretrained), Train__max_steps=3)
    trainer = Trainer(tiny_config(data, run, **over),
                      hooks=build_technique({"name": "lora", "rank": 4, "dropout": 0.1}))
    start = {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}
    report = trainer.fit()
    assert report["technique"]["parts"][0]["trainable"].startswith("trainable ")
    end = load_checkpoint(run / "latest").model_state
    assert set(end) == set(start)
    adapter = [k for k in start if ".lora_" in k]
    head = [k for k in start if k.startswith("head.ctc_head.fc")]
    base = [k for k in start if k not in adapter and k not in head]
    # every base tensor, BatchNorm statistics included, is bit-identical after training
    assert all(np.array_equal(start[k], end[k]) for k in base)
    assert any(not np.array_equal(start[k], end[k]) for k in adapter if k.endswith("lora_B"))
    assert any(not np.array_equal(start[k], end[k]) for k in head)
    # resume: the wrapped model's keys load strictly and training continues
    resumed = Trainer(tiny_config(data, run, **dict(over, Train__epochs=2, Train__max_steps=6)),
                      hooks=build_technique({"name": "lora", "rank": 4, "dropout": 0.1}),
                      resume=str(run))
    assert resumed.state.global_step == 3
    assert resumed.fit()["global_step"] == 6
    # a changed rank on resume is named, not a shape error
    with pytest.raises(ConfigError, match="Technique.rank"):
        Trainer(tiny_config(data, run, **dict(over, Train__epochs=3)),
                hooks=build_technique({"name": "lora", "rank": 8}), resume=str(run))
    # merged for export (what vinocr.cli.model_io does): a plain copy, the model stays wrapped
    plain = merge_lora(resumed.model, inplace=False)
    assert not lora_layers(plain) and lora_layers(resumed.model)
    fresh = build_model("ppocrv4_mobile", 38)
    assert [k for k in plain.state_dict()] == [k for k in fresh.state_dict()]
    x = images(width=96)
    assert_close_rel(plain.eval()(x).numpy(), resumed.model.eval()(x).numpy(), rtol=1e-4,
                     what="finalized vs wrapped")
    # Global.pretrained_model = a LoRA run: the new run starts from that run's model (its best/,
    # adapters merged into the base), with fresh adapters on top
    cont = Trainer(tiny_config(data, tmp_path / "cont", Global__pretrained_model=str(run), **over),
                   hooks=build_technique({"name": "lora", "rank": 4, "dropout": 0.1}))
    best = load_checkpoint(run / "best").model_state  # a run directory means its best/
    earlier = LoRA(rank=4).prepare_model(build_model("ppocrv4_mobile", 38), RunView())
    load_weights(earlier, best, strict=True)
    assert_close_rel(cont.model.eval()(x).numpy(), earlier.eval()(x).numpy(), rtol=1e-4,
                     what="continued run vs the earlier run's best")
    assert all(not layer.lora_B.numpy().any() for _, layer in lora_layers(cont.model))


# ---------------------------------------------------------------------------------- distillation

def stub(width: int = 64):
    """Just what distillation's prepare_model reads from the run."""
    return RunView(charset=load_charset("plate"), image_shape=(3, 48, width))


def crnn(seed: int, num_classes: int = 38):
    paddle.seed(seed)
    return build_model("crnn", num_classes, **CRNN)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    teacher = lively(crnn(7), seed=7)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    return save_state_file({k: v.numpy() for k, v in teacher.state_dict().items()}, path)


def kd_hook(teacher_file, **kw):
    return Distillation(teacher_arch={"name": "crnn", "params": dict(CRNN)},
                        teacher_checkpoint=str(teacher_file), **kw)


def test_kd_student_moves_toward_frozen_teacher(teacher_file):
    student = crnn(1)
    hook = kd_hook(teacher_file, alpha=0.0, temperature=2.0)
    hook.prepare_model(student, stub())
    teacher = hook.teacher
    snapshot = {k: v.numpy().copy() for k, v in teacher.state_dict().items()}
    assert not teacher.training and all(p.stop_gradient for p in teacher.parameters())
    assert not any(k.startswith("teacher") for k in student.state_dict())
    x = images(4)
    batch = {"images": x, "labels": None, "lengths": None,
             "index": paddle.to_tensor(np.arange(4))}
    opt = paddle.optimizer.Adam(learning_rate=0.01, parameters=student.parameters())
    kds = []
    for _ in range(15):
        student.train()
        hook.train_mode(student, None)
        dummy = paddle.to_tensor(3.0)
        out = hook.loss(LossOutput(dummy, {"ctc": 3.0}), student(x), batch, None)
        assert set(out.terms) == {"ctc", "kd"}
        kds.append(out.terms["kd"])
        out.loss.backward()
        opt.step()
        opt.clear_grad()
    assert kds[-1] < 0.5 * kds[0], kds
    assert not teacher.training
    assert all(np.array_equal(snapshot[k], v.numpy()) for k, v in teacher.state_dict().items())
    # alpha mixes: alpha * L_sup + (1 - alpha) * kd
    half = kd_hook(teacher_file, alpha=0.25)
    half.prepare_model(student, stub())
    student.eval()
    mixed = half.loss(LossOutput(paddle.to_tensor(2.0), {"ctc": 2.0}), student(x), batch, None)
    assert_close_rel(float(mixed.loss), 0.25 * 2.0 + 0.75 * mixed.terms["kd"], rtol=1e-5,
                     what="alpha mix")


class RepeatFrames(nn.Layer):
    """A teacher with twice the student's frame rate: each frame of ``inner`` twice."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return paddle.repeat_interleave(self.inner(x), 2, axis=1)


def test_kd_length_mismatch_interpolates_or_errors(teacher_file):
    probs = paddle.nn.functional.softmax(paddle.randn([2, 7, 5]), axis=-1)
    for frames in (3, 7, 16):
        out = resample_frames(probs, frames)
        assert out.shape == [2, frames, 5]
        assert np.allclose(out.sum(axis=-1).numpy(), 1.0, atol=1e-6)
    base = kd_hook(teacher_file)
    student = crnn(1)
    base.prepare_model(student, stub())
    double = Distillation(teacher_model=RepeatFrames(base.teacher))
    double.prepare_model(student, stub())
    assert (double.teacher_frames, double.student_frames) == (16, 8)
    x = images(3)
    batch = {"images": x, "index": paddle.to_tensor(np.arange(3))}
    student.eval()
    s = student(x)
    t2 = double.teacher_logits(x, None)
    assert t2.shape[1] == 16
    # frames repeated twice, resampled at frame centres: exactly the original grid again
    same = kd_loss(s, base.teacher_logits(x, None), 2.0)
    # KL sums log-probability terms of the logits' magnitude (the result is far smaller)
    kd_scale = float(np.abs(s.numpy()).max())
    assert_close_rel(float(kd_loss(s, t2, 2.0)), float(same), rtol=1e-5, scale=kd_scale,
                     what="resampled teacher")
    assert_close_rel(double.loss(LossOutput(paddle.to_tensor(0.0), {}), s, batch, None)
                     .terms["kd"], float(same), rtol=1e-5, scale=kd_scale, what="hook kd")
    with pytest.raises(ConfigError, match="Technique.length_mismatch: .*16 frames.*8"):
        Distillation(teacher_model=RepeatFrames(base.teacher),
                     length_mismatch="error").prepare_model(student, stub())
    with pytest.raises(ConfigError, match="Technique.length_mismatch"):
        kd_loss(s, t2, 2.0, "error")


class Counting(nn.Layer):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.samples = inner, 0

    def forward(self, x):
        self.samples += int(x.shape[0])
        return self.inner(x)


def test_kd_cache_hits_only_identical_inputs(teacher_file, caplog):
    base = kd_hook(teacher_file)
    base.prepare_model(crnn(1), stub())
    counting = Counting(base.teacher)
    hook = Distillation(teacher_model=counting, cache=True)
    hook.prepare_model(crnn(1), RunView())
    x, index = images(4), paddle.to_tensor(np.arange(10, 14))
    first = hook.teacher_logits(x, index).numpy()
    assert counting.samples == 4 and hook.cache.hits == 0
    assert all(v.dtype == np.float16 for _, v in hook.cache.entries.values())
    second = hook.teacher_logits(x, index).numpy()
    assert counting.samples == 4 and hook.cache.hits == 4
    assert np.array_equal(first, second)
    # sample 1 changed (augmentation): a miss for it only, its entry is replaced
    changed = x.numpy()
    changed[1] += 0.5
    third = hook.teacher_logits(paddle.to_tensor(changed), index).numpy()
    assert counting.samples == 5 and hook.cache.hits == 7
    assert np.array_equal(third[[0, 2, 3]], first[[0, 2, 3]])
    assert not np.array_equal(third[1], first[1])
    # same input under another dataset index: a miss too
    hook.teacher_logits(x[:1], paddle.to_tensor([99]))
    assert counting.samples == 6
    # cached or not, the values are the float16-rounded teacher output
    uncached = Distillation(teacher_model=base.teacher).teacher_logits(x, index).numpy()
    assert np.array_equal(uncached, first)
    with caplog.at_level(logging.INFO, logger="techniques.distillation"):
        hook.on_epoch_end(0, {}, None)
    assert "teacher cache 7 of 13 hit" in caplog.text
    assert hook.describe()["cache"]["hits"] == 7


def test_kd_options_and_class_mismatch(teacher_file, tmp_path):
    for kwargs, key in (({"alpha": 1.5}, "Technique.alpha"),
                        ({"temperature": 0}, "Technique.temperature"),
                        ({"length_mismatch": "pad"}, "Technique.length_mismatch"),
                        ({"cache": "yes"}, "Technique.cache"),
                        ({"teacher_config": "x.yml", "teacher_arch": {"name": "crnn"}},
                         "Technique.teacher_config"),
                        ({"teacher_config": str(tmp_path / "missing.yml")},
                         "Technique.teacher_config"),
                        ({"teacher_arch": {"name": "crnn"},
                          "teacher_checkpoint": str(tmp_path / "nope")},
                         "Technique.teacher_checkpoint")):
        with pytest.raises(ConfigError, match=re.escape(key)):
            Distillation(**kwargs)
    with pytest.raises(ConfigError, match="Technique.teacher_checkpoint: required"):
        Distillation(teacher_arch={"name": "crnn"}).prepare_model(crnn(1), stub())
    small = save_state_file({k: v.numpy() for k, v in crnn(3, num_classes=20).state_dict()
                             .items()}, tmp_path / "small.safetensors")
    with pytest.raises(ConfigError, match=r"teacher has 20 classes.*student 38"):
        kd_hook(small).prepare_model(crnn(1), stub())


def test_kd_through_the_trainer_with_a_teacher_config(data, teacher_file, tmp_path):
    teacher_yml = tmp_path / "teacher.yml"
    teacher_yml.write_text("Architecture:\n  name: crnn\n  pretrained: null\n"
                           "  params: {hidden: 8, channels: [4, 4, 8, 8]}\n", encoding="utf-8")
    run = tmp_path / "kd"
    hooks = build_technique({"name": "distillation", "teacher_config": str(teacher_yml),
                             "teacher_checkpoint": str(teacher_file), "cache": True,
                             "alpha": 0.5})
    cfg = tiny_config(data, run, Train__epochs=2, Train__augment={"preset": "alpr", "p": 0.0})
    trainer = Trainer(cfg, hooks=hooks)
    teacher = hooks.hooks[0].teacher
    before = {k: v.numpy().copy() for k, v in teacher.state_dict().items()}
    report = trainer.fit()
    part = report["technique"]["parts"][0]
    assert part["name"] == "distillation" and part["teacher_frames"] == part["student_frames"]
    # epoch 2 sees the same (unaugmented) inputs: all hits
    assert part["cache"]["hits"] == 16 and part["cache"]["lookups"] == 32
    assert not teacher.training
    assert all(np.array_equal(before[k], v.numpy()) for k, v in teacher.state_dict().items())
    assert set(load_checkpoint(run / "latest").model_state) == set(trainer.model.state_dict())
