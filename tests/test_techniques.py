"""Fine-tuning techniques: each test checks the technique's effect on training, not only that it
runs (frozen weights and BatchNorm statistics bit-identical, per-group learning rates, the unfreeze
schedule, a higher output entropy with label smoothing, auto's choice and its reason)."""
import json
import math
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import techniques
from conftest import InterruptBefore, assert_close_rel, tiny_config  # `data` fixture: conftest
from techniques import build_technique
from techniques.auto import DEFAULT_TABLE, Auto, _check_table, choose
from techniques.discriminative_lr import DiscriminativeLR
from techniques.frozen_backbone import FrozenBackbone
from techniques.gradual_unfreeze import GradualUnfreeze
from techniques.label_smoothing import LabelSmoothing, uniform_kl
from techniques.parts import (PartMap, count_params, eval_frozen_batchnorms, running_stat_ids,
                              set_trainable_parts)
from vinocr.engine.hooks import HookList, LossOutput, RunView, TrainerHooks
from vinocr.engine.optim import build_optimizer
from vinocr.engine.trainer import Trainer
from vinocr.errors import ConfigError
from vinocr.models.lora import DEFAULT_TARGETS
from vinocr.models.registry import build_model

# Importing the technique modules above registers them even before the lead adds them to
# techniques._load_built_ins.


def snapshot(model) -> dict:
    return {k: np.array(v.numpy(), copy=True) for k, v in model.state_dict().items()}


def tiny_crnn():
    paddle.seed(0)
    return build_model("crnn", 20, hidden=8, channels=(4, 4, 8, 8))


def fake_trainer(model=None, n_samples: int = 16, epochs: int = 4, steps: int = 100):
    """A run view as the trainer builds it (the model is what hooks get as ``run.model``)."""
    model = model if model is not None else tiny_crnn()
    return RunView(train_size=n_samples, epochs=epochs, planned_steps=steps,
                   cfg={"Train": {"epochs": epochs}}, model_fn=lambda: model)


class Recorder(TrainerHooks):
    """Snapshots weights at every epoch end and the optimizer object at every epoch start (a test
    probe: it holds the trainer, set after construction, since hooks only get the run view)."""

    name = "recorder"

    def __init__(self) -> None:
        self.weights, self.optimizers, self.trainer = [], [], None

    def on_epoch_start(self, epoch, run):
        self.optimizers.append(self.trainer.optimizer)
        return False

    def train_mode(self, model, run):
        # after on_epoch_start's optimizer rebuild: the optimizer this epoch trains with
        self.optimizers[-1] = self.trainer.optimizer

    def on_epoch_end(self, epoch, metrics, run):
        self.weights.append(snapshot(run.model))


# ------------------------------------------------------------------ parts

def test_default_parts_for_ppocrv4_and_crnn():
    model = build_model("ppocrv4_mobile", 20, deploy=False, gtc=True)
    assigned = PartMap.from_option(None).assign(model)
    expected = {
        "backbone.conv1.conv.weight": "stem", "backbone.conv1.bn._mean": "stem",
        "backbone.blocks3.1.pw_conv.conv_kxk.0.conv.weight": "stem",
        "backbone.blocks4.0.dw_conv.conv_kxk.0.conv.weight": "early_backbone",
        "backbone.blocks5.2.pw_conv.conv_kxk.0.conv.weight": "late_backbone",
        "backbone.blocks6.0.dw_conv.conv_kxk.0.conv.weight": "late_backbone",
        "head.ctc_encoder.encoder.svtr_block.0.mixer.qkv.weight": "neck",
        "head.ctc_head.fc.weight": "head", "head.ctc_head.fc.bias": "head",
    }
    for name, part in expected.items():
        assert assigned[name] == part, name
    assert {p for n, p in assigned.items() if n.startswith(("head.before_gtc", "head.gtc_head"))} \
        == {"aux_head"}
    deploy = build_model("ppocrv4_mobile", 20)
    parts = PartMap.from_option(None).assign(deploy)
    assert parts["backbone.blocks5.2.pw_conv.reparam_conv.weight"] == "late_backbone"
    assert set(parts.values()) == {"stem", "early_backbone", "late_backbone", "neck", "head"}
    crnn = tiny_crnn()
    parts = PartMap.from_option(None).assign(crnn)
    assert parts["backbone.features.0.0.weight"] == "stem"
    assert parts["backbone.features.4.0.weight"] == "early_backbone"
    assert parts["backbone.features.5.1._mean"] == "late_backbone"
    assert parts["head.rnn.weight_ih_l0"] == "neck" and parts["head.fc.weight"] == "head"
    # BatchNorm statistics are not parameters in the counts
    trainable, total = count_params(crnn)
    n_stats = sum(int(np.prod(p.shape)) for p in crnn.parameters()
                  if id(p) in running_stat_ids(crnn))
    assert n_stats > 0 and trainable == total == \
        sum(int(np.prod(p.shape)) for p in crnn.parameters()) - n_stats


def test_part_helpers_freeze_and_errors():
    crnn = tiny_crnn()
    pm = PartMap.from_option(None)
    assert set_trainable_parts(crnn, pm, ["head"])
    assert not set_trainable_parts(crnn, pm, ["head"])  # nothing changed the second time
    for name, p in crnn.named_parameters():
        if name.endswith(("_mean", "_variance")):
            assert p.stop_gradient  # statistics never become trainable
        else:
            assert p.stop_gradient == (not name.startswith("head.fc.")), name
    assert count_params(crnn)[0] == 16 * 20 + 20
    crnn.train()
    frozen_bns = eval_frozen_batchnorms(crnn)
    assert len(frozen_bns) == 6 and all(not l.training for l in crnn.backbone.sublayers()
                                        if isinstance(l, paddle.nn.BatchNorm2D))
    # custom parts: every parameter must be covered; the error names the first one left out
    with pytest.raises(ConfigError, match=r"Technique.parts: parameter 'head.rnn.weight_ih_l0' "
                                          r"matches no part"):
        PartMap.from_option({"cnn": r"^backbone\.", "fc": r"^head\.fc\."}).assign(crnn)
    with pytest.raises(ConfigError, match=r"Technique.parts: part 'x' has an invalid regex"):
        PartMap.from_option({"x": "("})
    with pytest.raises(ConfigError, match=r"Technique.freeze: unknown part 'backbone'"):
        FrozenBackbone(freeze=["backbone"])
    custom = PartMap.from_option({"cnn": r"^backbone\.", "rest": "."})
    assert custom.resolve("all", "k") == ["cnn", "rest"]


# ------------------------------------------------------------------ frozen_backbone

def test_frozen_backbone_keeps_weights_and_bn_statistics(data, tmp_path):
    hooks = build_technique({"name": "frozen_backbone"})
    trainer = Trainer(tiny_config(data, tmp_path / "fb", Train__epochs=2), hooks=hooks)
    before = snapshot(trainer.model)
    report = trainer.fit()
    after = snapshot(trainer.model)
    backbone = [k for k in before if k.startswith("backbone.")]
    assert any(k.endswith("._mean") for k in backbone)
    for k in backbone:  # weights and running statistics
        assert np.array_equal(before[k], after[k]), k
    for k in ("head.fc.weight", "head.rnn.weight_ih_l0"):
        assert not np.array_equal(before[k], after[k]), k
    desc = report["technique"]["parts"][0]
    assert desc["name"] == "frozen_backbone" and desc["frozen_parts"] == [
        "stem", "early_backbone", "late_backbone"]
    assert desc["summary"].startswith(f"trainable {desc['trainable']:,} of {desc['total']:,} "
                                      "parameters (")
    assert 0 < desc["trainable"] < desc["total"]
    saved = json.loads((tmp_path / "fb" / "report.json").read_text())
    assert saved["technique"]["parts"][0]["summary"] == desc["summary"]


# ------------------------------------------------------------------ discriminative_lr

def _expected_mult(name: str) -> float:
    """The default multiplier of a CRNN parameter (features 0-4: stem and early backbone)."""
    if name.startswith("backbone.features."):
        return 0.01 if int(name.split(".")[2]) <= 4 else 0.1
    return 0.5 if name.startswith("head.rnn.") else 1.0


def test_discriminative_lr_groups_in_the_trainer(data, tmp_path):
    trainer = Trainer(tiny_config(data, tmp_path / "dlr", Train__epochs=1),
                      hooks=build_technique({"name": "discriminative_lr"}))
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    seen = set()
    for group in trainer.optimizer._param_groups:
        for p in group["params"]:
            expected = _expected_mult(names[id(p)])
            assert group["lr_mult"] == pytest.approx(expected), names[id(p)]
            # what Paddle multiplies the scheduler's LR by for this parameter
            assert p.optimize_attr["learning_rate"] == pytest.approx(expected)
            seen.add(id(p))
    learnable = {id(p) for p in trainer.model.parameters() if not p.stop_gradient}
    assert seen == learnable
    groups = trainer.hooks.hooks[0].describe()["groups"]
    assert list(groups) == ["lr_x0.01", "lr_x0.1", "lr_x0.5", "lr_x1"]


def test_discriminative_lr_effective_step_and_custom_mults():
    model = tiny_crnn()
    tech = DiscriminativeLR(lr_mults={r"^head\.fc\.": 1.0, r"^head\.": 0.25,
                                      r"features\.0\.": 0.0, ".*": 0.5})
    opt = build_optimizer({"name": "sgd", "momentum": 0.0, "weight_decay": 0.0,
                           "clip_grad_norm": None}, model, 0.1, tech.param_groups(model, None))
    before = snapshot(model)
    model.train()
    out = model(paddle.randn([2, 3, 48, 32]))
    (out ** 2).mean().backward()
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    opt.step()
    after = snapshot(model)
    for name, grad in grads.items():
        mult = (1.0 if name.startswith("head.fc.") else 0.25 if name.startswith("head.")
                else 0.0 if "features.0." in name else 0.5)
        # atol: a few float32 ulps (2**-23 ~ 1.2e-7) of the weights the difference was taken from
        assert_close_rel(before[name] - after[name], 0.1 * mult * grad, rtol=1e-4, atol_rel=4e-7,
                         scale=np.abs(before[name]).max(), what=name)
    with pytest.raises(ConfigError, match=r"Technique.lr_mults: parameter 'backbone.features.0.0"
                                          r".weight' matches no pattern"):
        DiscriminativeLR(lr_mults={"^head": 1.0}).param_groups(model, None)
    with pytest.raises(ConfigError, match=r"Technique.lr_mults\['\^head'\]: multiplier"):
        DiscriminativeLR(lr_mults={"^head": -1})


# ------------------------------------------------------------------ gradual_unfreeze

def test_gradual_unfreeze_schedule_and_exact_resume(data, tmp_path):
    rec = Recorder()
    straight = tmp_path / "straight"
    trainer = Trainer(tiny_config(data, straight), hooks=[GradualUnfreeze(), rec])
    rec.trainer = trainer
    initial = snapshot(trainer.model)
    trainer.fit()
    # E = 4: head from 0, neck from 1, late backbone from 2, everything from 3
    first_change = {"head.fc.weight": 0, "head.rnn.weight_ih_l0": 1,
                    "backbone.features.7.0.weight": 2, "backbone.features.7.1._mean": 2,
                    "backbone.features.0.0.weight": 3, "backbone.features.2.1._variance": 3}
    states = [initial] + rec.weights
    for name, epoch in first_change.items():
        for e in range(4):
            changed = not np.array_equal(states[e][name], states[e + 1][name])
            assert changed == (e >= epoch), (name, e)
    # the optimizer was rebuilt exactly at the epochs where parts were unfrozen
    opts = rec.optimizers
    assert [opts[e] is not opts[e - 1] for e in range(1, 4)] == [True, True, True]
    assert trainer.hooks.hooks[0].state_dict() == {
        "unfrozen": sorted(["stem", "early_backbone", "late_backbone", "neck", "head", "aux_head"])}
    # stopped between epochs 2 and 3, resumed: bit-identical to the uninterrupted run
    split = tmp_path / "split"
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_config(data, split), hooks=[GradualUnfreeze(), InterruptBefore(2)]).fit()
    resumed = Trainer(tiny_config(data, split), hooks=[GradualUnfreeze()], resume=str(split))
    assert resumed.hooks.hooks[0].unfrozen == {"head", "aux_head", "neck", "late_backbone"}
    resumed.fit()
    a, b = rec.weights[-1], snapshot(resumed.model)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_gradual_unfreeze_on_epoch_start_contract():
    trainer = fake_trainer(epochs=8)
    tech = GradualUnfreeze(schedule={0: ["head"], "0.5": "neck", 6: ["all"]})
    tech.prepare_model(trainer.model, trainer)
    assert tech.schedule == {0: ["head"], 4: ["neck"], 6: ["stem", "early_backbone",
                                                          "late_backbone", "neck", "head",
                                                          "aux_head"]}
    changed = [tech.on_epoch_start(e, trainer) for e in range(8)]
    assert changed == [False, False, False, False, True, False, True, False]
    assert not tech.on_epoch_start(6, trainer)  # called twice for one epoch: no change
    # resume: a fresh instance restores what was unfrozen and applies it at the next epoch start
    fresh_trainer = fake_trainer(epochs=8)
    fresh = GradualUnfreeze(schedule={0: ["head"], "0.5": "neck", 6: ["all"]})
    fresh.prepare_model(fresh_trainer.model, fresh_trainer)
    fresh.set_state_dict(json.loads(json.dumps({"unfrozen": ["head", "neck"]})))
    # epoch 1: the schedule alone would train only the head; the restored state adds the neck
    assert fresh.on_epoch_start(1, fresh_trainer) is True
    assert not fresh.on_epoch_start(1, fresh_trainer)
    assert not fresh_trainer.model.head.rnn.weight_ih_l0.stop_gradient
    assert fresh_trainer.model.backbone.features[7][0].weight.stop_gradient
    with pytest.raises(ConfigError, match=r"Technique.schedule: unknown part 'decoder'"):
        GradualUnfreeze(schedule={0: ["decoder"]})
    with pytest.raises(ConfigError, match=r"Technique.schedule: nothing is trainable at epoch 0"):
        GradualUnfreeze(schedule={2: ["head"]}).prepare_model(tiny_crnn(), fake_trainer())
    with pytest.raises(ConfigError, match=r"Technique.schedule: fraction 1.5"):
        GradualUnfreeze(schedule={0: "head", 1.5: "neck"}).prepare_model(tiny_crnn(),
                                                                         fake_trainer())


# ------------------------------------------------------------------ label_smoothing

def test_uniform_kl_is_the_per_frame_kl_to_uniform():
    assert float(uniform_kl(paddle.zeros([2, 5, 7]))) == pytest.approx(0.0, abs=1e-6)
    logits = np.random.default_rng(0).normal(size=(3, 6, 9)).astype("float32") * 3
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    kl = (np.log(1 / 9) - np.log(p)).mean(-1)  # sum_c (1/C) log((1/C) / p_c) per frame
    assert float(uniform_kl(paddle.to_tensor(logits))) == pytest.approx(kl.mean(), rel=1e-5)
    tech = LabelSmoothing(epsilon=0.3)
    out = tech.loss(LossOutput(paddle.to_tensor(2.0), {"ctc": 2.0}), paddle.to_tensor(logits),
                    {}, None)
    assert out.terms["smooth"] == pytest.approx(0.3 * kl.mean(), rel=1e-5)
    assert float(out.loss) == pytest.approx(2.0 + 0.3 * kl.mean(), rel=1e-5)
    with pytest.raises(ConfigError, match=r"Technique.epsilon"):
        LabelSmoothing(epsilon=-0.1)


def _mean_entropy(trainer) -> float:
    trainer.model.eval()
    ents = []
    with paddle.no_grad():
        for images, *_ in trainer.eval_loader:
            logp = F.log_softmax(trainer.model(images), axis=-1)
            ents.append(float(-(logp.exp() * logp).sum(-1).mean()))
    return float(np.mean(ents))


def test_label_smoothing_raises_output_entropy(data, tmp_path):
    # Same seed and data, 8 steps each; a constant LR high enough that CTC makes the outputs
    # confident within them (before that both stay near uniform and there is nothing to smooth).
    entropies = {}
    for name in ("full", "full+label_smoothing"):
        cfg = tiny_config(data, tmp_path / name, Train__epochs=2, Global__seed=3,
                          Optimizer__lr=0.05, Scheduler__name="constant",
                          Scheduler__warmup_epochs=0.0)
        extra = {"epsilon": 1.0} if "label" in name else {}
        trainer = Trainer(cfg, hooks=build_technique({"name": name, **extra}))
        report = trainer.fit()
        entropies[name] = _mean_entropy(trainer)
    assert report["technique"]["parts"][1] == {
        "name": "label_smoothing", "epsilon": 1.0,
        "penalty": "epsilon * mean per-frame KL(uniform || softmax)"}
    assert entropies["full"] < math.log(38) - 1.0  # the plain run did become confident
    assert entropies["full+label_smoothing"] > entropies["full"] + 0.1, entropies


# ------------------------------------------------------------------ stacking, auto, plugins

def test_stacking_passes_options_to_the_technique_that_takes_them():
    hooks = build_technique({"name": "frozen_backbone+label_smoothing", "epsilon": 0.2})
    assert isinstance(hooks, HookList) and hooks.name == "frozen_backbone+label_smoothing"
    assert [type(h) for h in hooks.hooks] == [FrozenBackbone, LabelSmoothing]
    assert hooks.hooks[1].epsilon == 0.2
    with pytest.raises(ConfigError, match=r"Technique.lr_mults: not an option"):
        build_technique({"name": "frozen_backbone+label_smoothing", "lr_mults": {".*": 1}})



def test_stacking_rules_are_enforced():
    with pytest.raises(ConfigError, match=re.escape(
            "Technique.name=label_smoothing+lora: lora adapts the model, so it must come first")):
        build_technique({"name": "label_smoothing+lora"})
    with pytest.raises(ConfigError, match=re.escape(
            "Technique.name=full+frozen_backbone: full and frozen_backbone both adapt the model")):
        build_technique({"name": "full+frozen_backbone"})

    class Groups(TrainerHooks):
        name = "groups"

        def param_groups(self, model, run):
            return [{"params": list(model.parameters()), "lr_mult": 1.0, "name": "all"}]

    stack = HookList([DiscriminativeLR(), Groups()])
    with pytest.raises(ConfigError, match=re.escape(
            "Technique.name=discriminative_lr+groups: two techniques return optimizer groups: "
            "discriminative_lr and groups")):
        stack.param_groups(tiny_crnn(), fake_trainer())


def test_options_are_declared_once_validated_once_and_reported():
    hooks = build_technique({"name": "lora+label_smoothing", "lora_alpha": 8, "epsilon": 0.2})
    assert hooks.describe()["options"] == {
        "lora": {"rank": 8, "alpha": 8.0, "dropout": 0.0, "targets": list(DEFAULT_TARGETS),
                 "train_head": True},
        "label_smoothing": {"epsilon": 0.2}}
    for cfg, message in (
            ({"name": "lora", "rank": 2.5}, "Technique.rank: expected an integer, got float 2.5"),
            ({"name": "lora", "dropout": 1}, "Technique.dropout: must be in [0, 1), got 1.0"),
            ({"name": "label_smoothing", "epsilon": "x"},
             "Technique.epsilon: expected a finite number, got str 'x'"),
            ({"name": "distillation", "teacher_arch": {"name": "crnn"},
              "length_mismatch": "pad"},
             "Technique.length_mismatch: 'pad' is not one of interpolate, error"),
            ({"name": "full", "epsilon": 0.1}, "Technique.epsilon: not an option of full")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            build_technique(cfg)
    with pytest.raises(ConfigError, match=re.escape("Technique.nope: not an option of "
                                                    "label_smoothing (options: epsilon)")):
        LabelSmoothing(nope=1)

def test_auto_picks_per_table_and_falls_back():
    table = _check_table([[500, "no_such_technique"], [2000, "frozen_backbone"],
                          [5000, "gradual_unfreeze"], [10000, "discriminative_lr"],
                          [None, "full"]])
    available = techniques.available_techniques()
    picks = {n: choose(n, 100, table, available) for n in (10, 499, 500, 1999, 2000, 9999, 10000,
                                                           10 ** 6)}
    assert {n: c for n, (c, _) in picks.items()} == {
        10: "frozen_backbone", 499: "frozen_backbone", 500: "frozen_backbone",
        1999: "frozen_backbone", 2000: "gradual_unfreeze", 9999: "discriminative_lr",
        10000: "full", 10 ** 6: "full"}
    assert picks[10][1] == ("10 training samples, 100 planned optimizer steps → frozen_backbone "
                            "(table row 2: samples < 2000 → frozen_backbone; no_such_technique "
                            "(row 1) is not registered)")
    assert picks[2000][1] == ("2000 training samples, 100 planned optimizer steps → "
                              "gradual_unfreeze (table row 3: samples < 5000 → gradual_unfreeze; "
                              "row 1 needs samples < 500, row 2 needs samples < 2000)")
    assert picks[10000][1].startswith("10000 training samples, 100 planned optimizer steps → "
                                      "full (table row 5: otherwise → full;")
    # both conditions in one row: the first row whose every condition holds wins
    both = _check_table([{"samples_below": 1000, "steps_below": 300, "technique": "frozen_backbone"},
                         {"steps_below": 300, "technique": "lora"}, {"technique": "full"}])
    assert [choose(n, s, both, available + ["lora"])[0] for n, s in
            ((999, 299), (1000, 299), (999, 300), (10 ** 5, 10 ** 5))] == [
        "frozen_backbone", "lora", "full", "full"]


def test_auto_default_table_follows_the_data_and_the_budget():
    # docs/style-shift.md: on generator crops alone lora transferred better at every budget;
    # docs/techniques.md: otherwise lora won short budgets at every size, full won long ones
    default = _check_table(DEFAULT_TABLE)
    assert [r.technique for r in default] == ["lora", "lora", "full"]
    assert default[0].synthetic is True
    short = default[1].steps_below
    available = techniques.available_techniques()
    with_lora = sorted(set(available) | {"lora"})
    without_lora = [n for n in available if n != "lora"]
    for share in (0.0, 0.5, 0.999):
        picks = {(n, s): choose(n, s, default, with_lora, share)[0]
                 for n in (200, 1000, 5000, 20000) for s in (80, short - 1, short, 2000)}
        assert picks == {(n, s): ("lora" if s < short else "full") for (n, s) in picks}
    assert all(choose(n, s, default, with_lora, 1.0)[0] == "lora"
               for n in (200, 20000) for s in (80, 2000))
    assert choose(1000, 105, default, with_lora)[1] == (
        f"1000 training samples, 105 planned optimizer steps → lora (table row 2: steps < "
        f"{short} → lora; row 1 needs all samples synthetic)")
    assert choose(1000, short, default, with_lora, 0.25)[1] == (
        f"1000 training samples (25% synthetic), {short} planned optimizer steps → full (table "
        f"row 3: otherwise → full; row 1 needs all samples synthetic, row 2 needs steps < "
        f"{short})")
    assert choose(6120, 382, default, with_lora, 1.0)[1] == (
        "6120 training samples (100% synthetic), 382 planned optimizer steps → lora (table row "
        "1: all samples synthetic → lora)")
    assert choose(300, 80, default, without_lora, 1.0) == (
        "full", "300 training samples (100% synthetic), 80 planned optimizer steps → full (table "
        "row 3: otherwise → full; lora (row 1) is not registered, lora (row 2) is not "
        "registered)")
    # a row for real data only, and one that an earlier synthetic-only row does not cover
    real = _check_table([{"synthetic": False, "samples_below": 500, "technique": "frozen_backbone"},
                         {"synthetic": True, "technique": "lora"},
                         {"samples_below": 500, "technique": "lora"}, {"technique": "full"}])
    assert [choose(n, 100, real, with_lora, share)[0] for n, share in
            ((100, 0.0), (100, 1.0), (1000, 0.0), (1000, 1.0))] == [
        "frozen_backbone", "lora", "full", "lora"]


def test_auto_table_errors_name_the_row():
    for table, message in [
            ([[500, "full"], [100, "full"], [None, "full"]],
             "row 2 (samples < 100 → full) can never be chosen: row 1 (samples < 500 → full)"),
            ([{"steps_below": 300, "technique": "lora"},
              {"steps_below": 200, "samples_below": 50, "technique": "full"},
              {"technique": "full"}], "row 2 (samples < 50 and steps < 200 → full) can never"),
            ([[500, "full"]], "the last row (samples < 500 → full) must have no condition"),
            ([{"step_below": 300, "technique": "lora"}], "row 1: unknown key 'step_below'"),
            ([{"steps_below": 0, "technique": "lora"}, {"technique": "full"}],
             "row 1 steps_below must be a whole number >= 1"),
            ([[None, "auto"]], "row 1 cannot choose auto itself"),
            ([[None, "full", 3]], "row 1 must be {technique: NAME"),
            ([{"synthetic": "yes", "technique": "lora"}, {"technique": "full"}],
             "row 1 synthetic must be true, false or null, got 'yes'"),
            ([{"synthetic": True, "technique": "lora"}, {"synthetic": True, "steps_below": 9,
                                                         "technique": "full"},
              {"technique": "full"}], "row 2 (steps < 9 and all samples synthetic → full) can "
                                      "never be chosen"),
            ([{"technique": "full", "synthetic": False}],
             "the last row (not all samples synthetic → full) must have no condition"),
            ([], "expected a list of rows")]:
        with pytest.raises(ConfigError, match=re.escape("Technique.table: " + message)):
            _check_table(table)


def test_auto_delegates_and_overrides():
    # delegation: the chosen technique's options and hooks
    auto = build_technique({"name": "auto", "table": [[100, "full"], [None, "gradual_unfreeze"]],
                            "schedule": {0: "head", 1: "all"}, "epsilon": 0.3}).hooks[0]
    trainer = fake_trainer(n_samples=150, steps=40)
    auto.prepare_model(trainer.model, trainer)
    assert auto.chosen == "gradual_unfreeze" and auto.on_epoch_start(1, trainer)
    assert auto.state_dict()["chosen"] == "gradual_unfreeze"
    desc = auto.describe()
    assert desc["name"] == "auto" and desc["technique"]["name"] == "gradual_unfreeze"
    assert (desc["n_samples"], desc["planned_steps"]) == (150, 40)
    assert desc["reason"] == ("150 training samples, 40 planned optimizer steps → "
                              "gradual_unfreeze (table row 2: otherwise → gradual_unfreeze; row 1 "
                              "needs samples < 100)")
    # override
    auto = Auto(override="full")
    trainer = fake_trainer(n_samples=20000, steps=50)
    auto.prepare_model(trainer.model, trainer)
    assert auto.chosen == "full" and "table would pick lora" in auto.reason
    # a resumed run whose checkpoint chose otherwise (e.g. under an older table) stops with the fix
    auto = Auto()
    auto.prepare_model(tiny_crnn(), fake_trainer(n_samples=20000, steps=500))
    assert auto.chosen == "full"
    with pytest.raises(ConfigError, match=re.escape("auto: this run was trained with lora, but "
                                                    "full is chosen now")) as err:
        auto.set_state_dict({"chosen": "lora", "inner": {}})
    assert "-o Technique.override=lora" in str(err.value)
    assert choose(1000, 500, _check_table(DEFAULT_TABLE), ["lora", "full"], 0.9996)[1] \
        .startswith("1000 training samples (99% synthetic), 500 planned optimizer steps → full")
    with pytest.raises(ConfigError, match=r"Technique.override: unknown technique 'nope'"):
        Auto(override="nope").prepare_model(tiny_crnn(), fake_trainer())


def test_auto_writes_choice_and_reason_into_the_report(data, tmp_path):
    run = tmp_path / "auto"
    hooks = build_technique({"name": "auto", "table": [[10, "full"], [None, "frozen_backbone"]]})
    report = Trainer(tiny_config(data, run, Train__epochs=1), hooks=hooks).fit()
    saved = json.loads((run / "report.json").read_text())["technique"]["parts"][0]
    assert saved == report["technique"]["parts"][0]
    assert saved["chosen"] == "frozen_backbone"
    # 16 samples / batch 4 x 1 epoch: 4 planned steps
    assert saved["reason"] == ("16 training samples, 4 planned optimizer steps → frozen_backbone "
                               "(table row 2: otherwise → frozen_backbone; row 1 needs samples < "
                               "10)")
    assert saved["technique"]["frozen_parts"] == ["stem", "early_backbone", "late_backbone"]
    # the options travel with the run: auto's own, and those of the technique it chose
    options = json.loads((run / "report.json").read_text())["technique"]["options"]["auto"]
    assert options["table"] == [[10, "full"], [None, "frozen_backbone"]]
    assert options["chosen"] == {"frozen_backbone": {
        "freeze": ["stem", "early_backbone", "late_backbone"], "parts": None}}


def test_plugin_technique_from_entry_point(tmp_path, monkeypatch):
    (tmp_path / "vinocr_demo_plugin.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass

        from vinocr.engine.hooks import TrainerHooks, option

        @dataclass(frozen=True)
        class DemoOptions:
            strength: float = option(1.0, min=0.0)

        class Demo(TrainerHooks):
            Options = DemoOptions

            @property
            def strength(self):
                return self.options.strength
    """))
    info = tmp_path / "vinocr_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vinocr-demo-plugin\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text("[vinocr.techniques]\n"
                                           "demo_plugin = vinocr_demo_plugin:Demo\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates the import caches
    monkeypatch.setattr(techniques, "_REGISTRY", dict(techniques._REGISTRY))
    monkeypatch.setattr(techniques, "_loaded_entry_points", False)
    assert "demo_plugin" in techniques.available_techniques()
    hooks = build_technique({"name": "demo_plugin+label_smoothing", "strength": 3,
                             "epsilon": 0.1})
    assert hooks.hooks[0].name == "demo_plugin" and hooks.hooks[0].strength == 3
    sys.modules.pop("vinocr_demo_plugin", None)
