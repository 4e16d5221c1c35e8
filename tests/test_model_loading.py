"""One way to load a trained model (vinocr.engine.model_loading.load_trained): LoRA runs of both
architectures load as the model they trained, from what the checkpoint records, wherever they
are loaded (evaluation/export, Global.pretrained_model, distillation teachers)."""
import logging

import numpy as np
import paddle
import pytest

from conftest import assert_close_rel, tiny_config  # `data`: conftest
from techniques.distillation import Distillation
from techniques.lora import LoRA
from vinocr.charset import load_charset
from vinocr.engine.checkpoint import load_checkpoint, save_checkpoint
from vinocr.engine.hooks import RunView, TrainerHooks
from vinocr.engine.model_loading import load_trained
from vinocr.engine.trainer import Trainer
from vinocr.errors import ConfigError, VinocrError
from vinocr.models import build_model
from vinocr.models.lora import lora_layers
from vinocr.models.weights import save_state_file

ARCHS = ("ppocrv4_mobile", "ppocrv6_small")
CLASSES = 38  # the `plate` charset of tiny_config


def lively(model, seed: int = 0):
    """He-initialised matrices: a freshly built model has near-zero activations, which would make
    every output comparison below vacuous."""
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        if p.ndim in (2, 4):
            fan_in = int(np.prod(p.shape[1:])) if p.ndim == 4 else int(p.shape[0])
            p.set_value((rng.standard_normal(p.shape) * np.sqrt(2.0 / fan_in)).astype("float32"))
    return model


class BigAdapters(TrainerHooks):
    """After LoRA wrapped the model: adapters far from their B = 0 start, so a loader that drops
    them (or applies them to other layers) gives clearly other outputs."""

    name = "big_adapters"

    def prepare_model(self, model, run):
        rng = np.random.default_rng(3)
        for _, layer in lora_layers(model):
            layer.lora_B.set_value((rng.standard_normal(layer.lora_B.shape) * 0.1)
                                   .astype("float32"))
        return model


def images(seed: int = 0):
    return paddle.to_tensor(np.random.default_rng(seed).standard_normal((2, 3, 48, 96))
                            .astype("float32"))


def outputs(model):
    return model.eval()(images()).numpy()


@pytest.fixture(scope="module", params=ARCHS)
def lora_run(request, data, tmp_path_factory):
    """A 2-step LoRA run (rank 4, alpha 8) on lively base weights: (arch, run dir, the trained
    wrapped model's outputs, its wrapped layer names, the base model's outputs)."""
    arch = request.param
    root = tmp_path_factory.mktemp(f"lora_{arch}")
    base = lively(build_model(arch, CLASSES))
    weights = save_state_file({k: v.numpy() for k, v in base.state_dict().items()},
                              root / "base.safetensors")
    run = root / "run"
    cfg = tiny_config(data, run, epochs=1, Architecture__name=arch, Architecture__params={},
                      Architecture__pretrained=str(weights), Train__max_steps=2,
                      Technique__name="lora", Technique__rank=4, Technique__lora_alpha=8)
    trainer = Trainer(cfg, hooks=[LoRA(rank=4, alpha=8), BigAdapters()])
    trainer.fit()
    layers = [n for n, _ in lora_layers(trainer.model)]
    return arch, run, outputs(trainer.model), layers, outputs(base)


def test_lora_checkpoint_records_its_layers_and_loads_as_the_trained_model(lora_run):
    arch, run, trained, layers, base = lora_run
    ckpt = load_checkpoint(run / "best")
    assert ckpt.state["adapters"] == {"lora": {"layers": layers, "rank": 4, "alpha": 8.0,
                                               "dropout": 0.0}}
    assert ckpt.state["arch"] == arch
    loaded = load_trained(str(run))  # a run directory means its best/
    assert loaded.path == run / "best" and loaded.adapters == ckpt.state["adapters"]
    assert not lora_layers(loaded.model), "merged: the plain architecture"
    assert [k for k in loaded.model.state_dict()] == \
        [k for k in build_model(arch, CLASSES).state_dict()]
    assert np.abs(trained - base).max() > 0.05 * np.abs(base).max()  # adapters matter here
    assert_close_rel(outputs(loaded.model), trained, rtol=1e-4, what=f"{arch} loaded vs trained")
    kept = load_trained(str(run / "best"), merge=False)
    assert [n for n, _ in lora_layers(kept.model)] == layers
    assert_close_rel(outputs(kept.model), trained, rtol=1e-4, what=f"{arch} unmerged vs trained")


def test_layers_come_from_the_record_not_the_config(lora_run, tmp_path, caplog):
    arch, run, trained, layers, _ = lora_run
    ckpt = load_checkpoint(run / "best")
    # Technique.targets changed after training (matches nothing now), then gone altogether
    for technique in ({"name": "lora", "rank": 4, "lora_alpha": 8, "targets": [r"backbone\.nope"]},
                      {"name": "full"}):
        state = dict(ckpt.state, config=dict(ckpt.state["config"], Technique=technique))
        changed = save_checkpoint(tmp_path / technique["name"], ckpt.model_state, state)
        assert_close_rel(outputs(load_trained(str(changed)).model), trained, rtol=1e-4,
                         what=f"{arch} with Technique {technique}")
    # A checkpoint from before adapters (and the architecture) were recorded: the lora_A tensors
    # name the layers, the saved Technique section gives alpha; a warning says so.
    old = {k: v for k, v in ckpt.state.items() if k not in ("adapters", "arch", "arch_kwargs")}
    legacy = save_checkpoint(tmp_path / "legacy", ckpt.model_state, old)
    with caplog.at_level(logging.WARNING, logger="vinocr.engine.model_loading"):
        loaded = load_trained(str(legacy), merge=False)
    assert "before adapters were recorded" in caplog.text
    assert sorted(n for n, _ in lora_layers(loaded.model)) == sorted(layers)
    assert_close_rel(outputs(loaded.model), trained, rtol=1e-4, what=f"{arch} legacy checkpoint")


def test_distillation_teacher_from_a_lora_run_is_the_merged_model(lora_run):
    arch, run, trained, _, _ = lora_run
    stub = RunView(charset=load_charset("plate"), image_shape=(3, 48, 96))
    student = build_model("crnn", CLASSES, hidden=8, channels=[4, 4, 8, 8])
    # No teacher_config/teacher_arch: the checkpoint records the architecture.
    hook = Distillation(teacher_checkpoint=str(run))
    hook.prepare_model(student, stub)
    assert hook.teacher.arch == arch and not lora_layers(hook.teacher)
    assert not hook.teacher.training and all(p.stop_gradient for p in hook.teacher.parameters())
    assert_close_rel(outputs(hook.teacher), trained, rtol=1e-4, what=f"{arch} teacher vs trained")
    # Named architecture given too: it must be the checkpoint's
    same = Distillation(teacher_arch={"name": arch, "pretrained": None},
                        teacher_checkpoint=str(run))
    same.prepare_model(student, stub)
    assert_close_rel(outputs(same.teacher), trained, rtol=1e-4, what=f"{arch} named teacher")
    with pytest.raises(ConfigError, match=r"Technique.teacher_checkpoint: .*best holds a "
                                          rf"{arch} model, not the crnn expected"):
        Distillation(teacher_arch={"name": "crnn", "params": {"hidden": 8}},
                     teacher_checkpoint=str(run)).prepare_model(student, stub)


def test_pretrained_model_from_a_lora_run_starts_from_its_merged_model(lora_run, data, tmp_path):
    arch, run, trained, _, _ = lora_run
    cfg = tiny_config(data, tmp_path / "next", epochs=1, Architecture__name=arch,
                      Architecture__params={}, Architecture__pretrained=None,
                      Global__pretrained_model=str(run))
    plain = Trainer(cfg)  # full fine-tuning from the LoRA run: its merged weights
    assert not lora_layers(plain.model)
    assert_close_rel(outputs(plain.model), trained, rtol=1e-4, what=f"{arch} next run")
    # another architecture is refused, naming the key and the checkpoint
    other = "ppocrv6_small" if arch == "ppocrv4_mobile" else "ppocrv4_mobile"
    with pytest.raises(ConfigError, match=rf"Global.pretrained_model: .*best holds a {arch} "
                                          rf"model, not the {other} expected"):
        Trainer(tiny_config(data, tmp_path / "other", epochs=1, Architecture__name=other,
                            Architecture__params={}, Architecture__pretrained=None,
                            Global__pretrained_model=str(run)))


def test_unloadable_specs_are_one_line_errors(data, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(VinocrError, match=f"{missing}: checkpoint not found"):
        load_trained(str(missing))
    with pytest.raises(ConfigError, match=f"Global.pretrained_model: {missing}: checkpoint not"):
        load_trained(str(missing), key="Global.pretrained_model")
    bare = save_checkpoint(tmp_path / "bare", {"w": np.zeros(2, "float32")}, {"epoch": 1})
    with pytest.raises(VinocrError, match=f"{bare}: checkpoint has no saved config/charset"):
        load_trained(str(bare))
    with pytest.raises(VinocrError, match="'pretrained' model needs a config"):
        load_trained("pretrained")
    run = tmp_path / "crnn"
    Trainer(tiny_config(data, run, epochs=1, Train__max_steps=1)).fit()
    loaded = load_trained(str(run))
    assert loaded.adapters == {} and loaded.model.arch == "crnn"
    with pytest.raises(VinocrError, match=rf"{run / 'best'} holds a crnn model, not the "
                                          "ppocrv4_mobile expected"):
        load_trained(str(run), arch="ppocrv5_mobile")  # an alias of ppocrv4_mobile
    assert load_checkpoint(run / "best").state["adapters"] == {}
