"""vinocr.engine.optim: parameter groups, decay, clipping, LR schedules, exact resume, EMA."""
import json
import math

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from conftest import assert_close_rel
from vinocr.engine.ema import ModelEMA, build_ema
from vinocr.engine.optim import build_optimizer, no_decay_param_names
from vinocr.engine.optim_state import optimizer_state_from_named, optimizer_state_to_named
from vinocr.engine.schedules import Schedule, build_scheduler
from vinocr.errors import ConfigError
from vinocr.models import build_model
from vinocr.models.layers import LearnableAffineBlock

NO_CLIP = {"clip_grad_norm": None}


class Tiny(nn.Layer):
    """Conv + BatchNorm + learnable affine + LayerNorm + Linear: every kind of decay rule."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2D(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2D(3)
        self.lab = LearnableAffineBlock()
        self.norm = nn.LayerNorm(3)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.lab(self.bn(self.conv(x))).mean(axis=[2, 3])
        return self.fc(self.norm(y))


def two_layer(seed: int = 0) -> nn.Sequential:
    paddle.seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def weights(model: nn.Layer) -> dict:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def backward(model: nn.Layer, scale: float = 1.0, seed: int = 1) -> None:
    x = paddle.to_tensor(np.random.default_rng(seed).normal(size=(4, 3)).astype("float32"))
    (model(x).sum() * scale).backward()


def lr_curve(schedule: Schedule, n: int, per: str = "iter", metrics=None) -> list:
    out = []
    for i in range(n):
        out.append(schedule.last_lr())
        if per == "iter":
            schedule.step_iter()
        else:
            schedule.step_epoch(None if metrics is None else metrics[i])
    return out


# ------------------------------------------------------------------ parameters and groups

def test_no_decay_names_cover_biases_norms_and_affine_scalars():
    names = no_decay_param_names(Tiny())
    for name in ("conv.bias", "bn.weight", "bn.bias", "lab.scale", "lab.bias", "norm.weight",
                 "norm.bias", "fc.bias"):
        assert name in names
    assert "conv.weight" not in names and "fc.weight" not in names
    crnn = build_model("crnn", 10, hidden=8, channels=(4, 4, 8, 8))
    crnn_names = no_decay_param_names(crnn)
    for name, p in crnn.named_parameters():
        assert (name in crnn_names) == (len(p.shape) <= 1), name
    assert "head.fc.bias" in crnn_names and "head.fc.weight" not in crnn_names


@pytest.mark.parametrize("name,extra", [("sgd", {"momentum": 0.0}), ("sgd", {"momentum": 0.9}),
                                        ("adam", {}), ("adamw", {})])
def test_group_lr_multiplier_scales_scheduler_lr(name, extra):
    model = two_layer()
    groups = [{"params": model[0].parameters(), "lr_mult": 0.01, "name": "backbone"},
              {"params": model[2].parameters(), "lr_mult": 1.0, "name": "head"}]
    # A warmup schedule so the scheduler LR differs from the base and changes between steps.
    schedule = build_scheduler({"name": "constant", "warmup_epochs": 1.0}, 0.2, 3, 2)
    schedule.step_iter()
    opt = build_optimizer({"name": name, "weight_decay": 0.0, **NO_CLIP, **extra}, model,
                          schedule.scheduler, groups)
    lr = schedule.last_lr()
    assert lr == pytest.approx(0.2 * 2 / 4)
    before = weights(model)
    backward(model)
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    opt.step()
    opt.clear_grad()
    for n, p in model.named_parameters():
        mult = 0.01 if n.startswith("0.") else 1.0
        delta = before[n] - p.numpy()
        if name == "sgd":  # plain SGD and the first momentum step: update = lr * mult * grad
            # atol: a few float32 ulps (2**-23 ~ 1.2e-7) of the weights the difference was
            # taken from
            assert_close_rel(delta, lr * mult * grads[n], rtol=1e-5, atol_rel=4e-7,
                             scale=np.abs(before[n]).max(), what=n)
        else:  # first Adam step: m_hat / sqrt(v_hat) = sign(grad), so |update| = lr * mult
            np.testing.assert_allclose(np.abs(delta), lr * mult, rtol=1e-3)
    assert [(g["name"], g["lr_mult"]) for g in opt._param_groups] == [("backbone", 0.01),
                                                                       ("head", 1.0)]


def test_frozen_params_not_given_to_optimizer():
    model = two_layer()
    for p in model[0].parameters():
        p.stop_gradient = True
    opt = build_optimizer({"name": "adamw"}, model, 0.1)
    given = [p for g in opt._param_groups for p in g["params"]]
    assert {id(p) for p in given} == {id(p) for p in model[2].parameters()}
    with pytest.raises(ConfigError, match="no trainable parameters"):
        for p in model.parameters():
            p.stop_gradient = True
        build_optimizer({"name": "adamw"}, model, 0.1)


def test_duplicate_param_in_groups_rejected():
    model = two_layer()
    params = model.parameters()
    with pytest.raises(ValueError, match="param groups 'a' and 'b'"):
        build_optimizer({}, model, 0.1, [{"params": params, "name": "a"},
                                         {"params": params[:1], "name": "b"}])


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_weight_decay_skips_biases_norms_and_affine(name):
    paddle.seed(0)
    model = Tiny()
    opt = build_optimizer({"name": name, "weight_decay": 0.5, "momentum": 0.0, **NO_CLIP},
                          model, 0.1)
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    x = paddle.randn([2, 2, 4, 4])
    (model(x) * 0.0).sum().backward()  # zero gradients: any change is weight decay
    opt.step()
    after = {n: p.numpy() for n, p in model.named_parameters()}
    for n in no_decay_param_names(model) - {"bn._mean", "bn._variance"}:  # buffers move anyway
        assert np.array_equal(after[n], before[n]), n
    for n in ("conv.weight", "fc.weight"):
        assert np.linalg.norm(after[n]) < np.linalg.norm(before[n]), n
        if name != "adam":  # decoupled (AdamW) and SGD L2 both give w * (1 - lr * wd) here
            np.testing.assert_allclose(after[n], before[n] * (1 - 0.1 * 0.5), rtol=1e-5)


def test_group_weight_decay_override():
    paddle.seed(0)
    model = Tiny()
    groups = [{"params": [model.fc.weight], "lr_mult": 1.0, "weight_decay": 0.0, "name": "fc"},
              {"params": [p for n, p in model.named_parameters()
                          if n != "fc.weight" and not p.stop_gradient], "name": "rest"}]
    opt = build_optimizer({"name": "adamw", "weight_decay": 0.5, **NO_CLIP}, model, 0.1, groups)
    fc, conv = model.fc.weight.numpy().copy(), model.conv.weight.numpy().copy()
    (model(paddle.randn([2, 2, 4, 4])) * 0.0).sum().backward()
    opt.step()
    assert np.array_equal(model.fc.weight.numpy(), fc)
    np.testing.assert_allclose(model.conv.weight.numpy(), conv * 0.95, rtol=1e-5)


# ------------------------------------------------------------------ gradient clipping

@pytest.mark.parametrize("scale,clip", [(1e4, 5.0), (1e4, None), (1e-3, 5.0)])
def test_global_norm_clipping_across_groups(scale, clip):
    model = two_layer()
    groups = [{"params": model[0].parameters(), "name": "a"},
              {"params": model[2].parameters(), "name": "b"}]
    opt = build_optimizer({"name": "sgd", "momentum": 0.0, "weight_decay": 1e-4,
                           "clip_grad_norm": clip}, model, 1.0, groups)
    assert len(opt._param_groups) == 4  # decay/no-decay x two groups: clipping must be global
    before = weights(model)
    backward(model, scale)
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    opt.step()
    factor = 1.0 if clip is None or norm <= clip else clip / norm
    delta = {n: before[n] - p.numpy() for n, p in model.named_parameters()}
    decay = {n: 1e-4 * before[n] if len(before[n].shape) > 1 else 0.0 for n in delta}
    for n in delta:
        # the update is a difference of weights: its rounding follows their magnitude
        terms = max(np.abs(before[n]).max(), np.abs(before[n] - delta[n]).max())
        assert_close_rel(delta[n], grads[n] * factor + decay[n], rtol=1e-4, atol_rel=2e-6,
                         scale=terms, what=n)
    if clip is not None and scale > 1:
        total = math.sqrt(sum(float(((delta[n] - decay[n]) ** 2).sum()) for n in delta))
        assert total == pytest.approx(clip, rel=1e-4)


# ------------------------------------------------------------------ schedules

def test_cosine_warmup_then_cosine_to_min_lr():
    s = build_scheduler({"name": "cosine", "warmup_epochs": 1.0, "min_lr": 1e-5}, 1e-3, 10, 5)
    assert s.per_iteration and s.scheduler is not None
    lrs = lr_curve(s, 50)
    assert lrs[0] == pytest.approx(1e-3 / 11)  # ~0, not 0: the first step already moves
    np.testing.assert_allclose(np.diff(lrs[:11]), 1e-3 / 11, rtol=1e-9)  # linear ramp
    assert lrs[10] == pytest.approx(1e-3)
    assert all(b < a for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[49] == pytest.approx(1e-5, rel=1e-9)  # last iteration lands on min_lr
    assert lrs[30] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 20 / 39)))
    s.step_epoch(0.9)  # per-iteration schedules ignore epoch steps
    assert s.last_lr() == pytest.approx(1e-5)


def test_cosine_restarts_jump_back_at_cycle_boundaries():
    s = build_scheduler({"name": "cosine_restarts", "T_0": 2, "T_mult": 2, "warmup_epochs": 0.5,
                         "min_lr": 0.0}, 1.0, 4, 14)
    lrs = lr_curve(s, 56)
    assert lrs[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])  # warmup inside the first cycle
    for start, end in ((2, 8), (8, 24), (24, 56)):  # cycles of 8, 16, 32 iterations
        assert lrs[start] == pytest.approx(1.0)
        assert lrs[end - 1] == pytest.approx(0.0, abs=1e-12)
        assert all(b < a for a, b in zip(lrs[start:end], lrs[start + 1:end]))


def test_step_decay_per_epoch():
    s = build_scheduler({"name": "step", "step_size": 2, "gamma": 0.1}, 1.0, 7, 10)
    s.step_iter()  # per-epoch schedules ignore iteration steps
    assert lr_curve(s, 5, "epoch") == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_piecewise_hits_values_at_milestones():
    s = build_scheduler({"name": "piecewise", "milestones": [2, 4], "values": [1e-3, 1e-4, 1e-5]},
                        5e-4, 3, 6)
    assert lr_curve(s, 6, "epoch") == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])


def test_plateau_reduces_after_patience_bad_epochs():
    s = build_scheduler({"name": "plateau", "patience": 2, "factor": 0.5, "min_lr": 0.1}, 1.0, 3, 9)
    metrics = [0.5, 0.6, None, 0.6, 0.6, 0.6, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]
    lrs = lr_curve(s, len(metrics), "epoch", metrics) + [s.last_lr()]
    # 0.6 is best after epoch 1; None does not count; the 3rd bad epoch (> patience) halves it.
    assert lrs[:6] == [1.0] * 6 and lrs[6] == 0.5
    assert lrs[9] == 0.25 and lrs[12] == 0.125 and lrs[-1] == 0.125
    s2 = build_scheduler({"name": "plateau", "patience": 0, "factor": 0.5, "min_lr": 0.3},
                         1.0, 1, 1)
    assert lr_curve(s2, 4, "epoch", [0.5, 0.4, 0.4, 0.4])[-1] == 0.3  # floored at min_lr


def test_constant_with_and_without_warmup():
    s = build_scheduler({"name": "constant", "warmup_epochs": 0}, 1e-3, 5, 2)
    assert s.scheduler is None and lr_curve(s, 3) == [1e-3] * 3
    s = build_scheduler({"name": "constant", "warmup_epochs": 0.5}, 1.0, 4, 2)
    assert lr_curve(s, 5) == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0])


SCHEDULES = [
    ({"name": "cosine", "warmup_epochs": 0.5}, "iter"),
    ({"name": "cosine_restarts", "T_0": 1, "T_mult": 2}, "iter"),
    ({"name": "constant", "warmup_epochs": 1.0}, "iter"),
    ({"name": "step", "step_size": 2}, "epoch"),
    ({"name": "piecewise", "milestones": [3, 5]}, "epoch"),
    ({"name": "plateau", "patience": 1}, "epoch"),
]


@pytest.mark.parametrize("cfg,per", SCHEDULES, ids=[c["name"] for c, _ in SCHEDULES])
def test_schedule_state_round_trip_continues_exactly(cfg, per):
    metrics = [0.1, 0.2, 0.2, 0.2, 0.15, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    ref = lr_curve(build_scheduler(cfg, 1e-3, 4, 3), 12, per, metrics)
    first = build_scheduler(cfg, 1e-3, 4, 3)
    head = lr_curve(first, 5, per, metrics)
    state = json.loads(json.dumps(first.state_dict()))  # must be plain JSON
    resumed = build_scheduler(cfg, 1e-3, 4, 3)
    resumed.set_state_dict(state)
    tail = lr_curve(resumed, 7, per, metrics[5:])
    assert head + tail == ref


# ------------------------------------------------------------------ exact resume

def _batches(n: int) -> list:
    rng = np.random.default_rng(7)
    return [(paddle.to_tensor(rng.normal(size=(2, 3, 48, 32)).astype("float32")),
             paddle.to_tensor(rng.normal(size=(2, 4, 10)).astype("float32"))) for _ in range(n)]


def _crnn(init: dict) -> nn.Layer:
    model = build_model("crnn", 10, hidden=8, channels=(4, 4, 8, 8))
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in init.items()})
    model.train()
    return model


def _setup(init: dict, opt_cfg: dict):
    model = _crnn(init)
    schedule = build_scheduler({"name": "cosine", "warmup_epochs": 0.5}, 1e-2, 3, 2)
    groups = [{"params": model.backbone.parameters(), "lr_mult": 0.1, "name": "backbone"},
              {"params": model.head.parameters(), "lr_mult": 1.0, "name": "head"}]
    return model, schedule, build_optimizer(opt_cfg, model, schedule.scheduler, groups)


def _train(model, schedule, opt, batches) -> None:
    for x, target in batches:
        loss = ((model(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()
        schedule.step_iter()


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_exact_resume_through_named_state(name, tmp_path):
    from safetensors.numpy import load_file, save_file

    paddle.seed(3)
    init = weights(build_model("crnn", 10, hidden=8, channels=(4, 4, 8, 8)))
    opt_cfg = {"name": name, "lr": 1e-2, "weight_decay": 1e-2, "momentum": 0.9,
               "clip_grad_norm": 0.5}
    batches = _batches(6)

    straight = _setup(init, opt_cfg)
    _train(*straight, batches)

    first = _setup(init, opt_cfg)
    _train(*first, batches[:3])
    named = optimizer_state_to_named(first[2], first[0])
    assert named and all("/" in k for k in named)
    if name != "sgd":
        assert "head.fc.weight/moment1" in named and "head.fc.bias/beta2_pow_acc" in named
    else:
        assert "head.fc.weight/velocity" in named
    save_file(named, str(tmp_path / "opt.safetensors"))  # the checkpoint's tensor format
    save_file(weights(first[0]), str(tmp_path / "model.safetensors"))
    schedule_state = json.loads(json.dumps(first[1].state_dict()))

    model, schedule, opt = _setup(load_file(str(tmp_path / "model.safetensors")), opt_cfg)
    # A new model instance: Paddle's internal names differ, so raw state_dict keys would not match.
    assert model.head.fc.weight.name != first[0].head.fc.weight.name
    schedule.set_state_dict(schedule_state)
    optimizer_state_from_named(opt, model, load_file(str(tmp_path / "opt.safetensors")),
                               strict=True)
    assert schedule.last_lr() == first[1].last_lr()
    _train(model, schedule, opt, batches[3:])

    expected = weights(straight[0])
    for key, value in weights(model).items():
        assert np.array_equal(value, expected[key]), key
    assert schedule.last_lr() == straight[1].last_lr()


def test_named_state_partial_restore_after_unfreezing():
    model = two_layer()
    for p in model[0].parameters():
        p.stop_gradient = True
    opt = build_optimizer({"name": "adam"}, model, 0.1)
    backward(model)
    opt.step()
    named = optimizer_state_to_named(opt, model)
    assert {k.split("/")[0] for k in named} == {"2.weight", "2.bias"}
    for p in model[0].parameters():
        p.stop_gradient = False
    fresh = build_optimizer({"name": "adam"}, model, 0.1)
    optimizer_state_from_named(fresh, model, named)  # new parameters start fresh
    moment = {k: v for k, v in optimizer_state_to_named(fresh, model).items()}
    assert np.array_equal(moment["2.weight/moment1"], named["2.weight/moment1"])
    assert not moment["0.weight/moment1"].any()
    with pytest.raises(ValueError, match="without saved state"):
        optimizer_state_from_named(build_optimizer({"name": "adam"}, model, 0.1), model, named,
                                   strict=True)


# ------------------------------------------------------------------ EMA

def _shift(model: nn.Layer, amount: float) -> None:
    with paddle.no_grad():
        for v in model.state_dict().values():
            v.set_value(v + amount)


def test_ema_update_math_covers_params_and_bn_buffers():
    paddle.seed(0)
    model = Tiny()
    old = weights(model)
    ema = ModelEMA(model, decay=0.9)
    _shift(model, 1.0)
    new = weights(model)
    ema.update(model)
    state = ema.state_dict()
    assert "bn._mean" in state and "bn._variance" in state
    for key in old:
        assert_close_rel(state[key], 0.9 * old[key] + 0.1 * new[key], rtol=1e-6,
                         scale=max(np.abs(old[key]).max(), np.abs(new[key]).max()), what=key)


def test_ema_warmup_starts_as_copy():
    paddle.seed(0)
    model = Tiny()
    ema = ModelEMA(model, decay=0.9, warmup_steps=4)
    _shift(model, 1.0)
    ema.update(model)  # decay 0 on the first update: a copy
    assert all(np.array_equal(ema.state_dict()[k], v) for k, v in weights(model).items())
    assert ema.current_decay() == pytest.approx(0.9 / 4)
    prev = ema.state_dict()
    _shift(model, 1.0)
    ema.update(model)
    assert_close_rel(ema.state_dict()["fc.weight"], prev["fc.weight"] + (1 - 0.225) * 1.0,
                     rtol=1e-6, what="fc.weight")


def test_ema_apply_to_swaps_and_restores(tmp_path):
    paddle.seed(0)
    model = Tiny()
    ema = ModelEMA(model, decay=0.5)
    _shift(model, 2.0)
    ema.update(model)
    own = weights(model)
    shadow = ema.state_dict()
    with ema.apply_to(model):
        assert all(np.array_equal(v, shadow[k]) for k, v in weights(model).items())
    assert all(np.array_equal(v, own[k]) for k, v in weights(model).items())
    with pytest.raises(RuntimeError):
        with ema.apply_to(model):
            raise RuntimeError("validation failed")
    assert all(np.array_equal(v, own[k]) for k, v in weights(model).items())

    other = ModelEMA(Tiny(), decay=0.5, warmup_steps=10)
    other.set_state_dict(shadow)
    assert other.num_updates == 1
    assert all(np.array_equal(other.state_dict()[k], v) for k, v in shadow.items())


def test_build_ema_from_config():
    model = two_layer()
    assert build_ema({}, model) is None
    ema = build_ema({"ema": {"enabled": True, "decay": 0.99, "warmup_steps": 5}}, model)
    assert ema.decay == 0.99 and ema.warmup_steps == 5


# ------------------------------------------------------------------ config errors

@pytest.mark.parametrize("call,message", [
    (lambda m: build_optimizer({"name": "adamx"}, m, 0.1),
     "Optimizer.name: unknown optimizer 'adamx'; valid: adam, adamw, sgd"),
    (lambda m: build_optimizer({"betas": [0.9]}, m, 0.1), "Optimizer.betas"),
    (lambda m: build_optimizer({"weight_decay": -1}, m, 0.1), "Optimizer.weight_decay"),
    (lambda m: build_optimizer({"name": "sgd", "momentum": 0, "nesterov": True}, m, 0.1),
     "Optimizer.nesterov"),
    (lambda m: build_optimizer({"clip_grad_norm": "big"}, m, 0.1), "Optimizer.clip_grad_norm"),
    (lambda m: build_scheduler({"name": "cosin"}, 0.1, 1, 1),
     "Scheduler.name: unknown scheduler 'cosin'; valid: cosine, cosine_restarts"),
    (lambda m: build_scheduler({"name": "piecewise", "milestones": [2], "values": [1.0]}, 0.1, 1,
                               1), "Scheduler.values"),
    (lambda m: build_scheduler({"name": "step", "step_size": 0}, 0.1, 1, 1), "Scheduler.step_size"),
    (lambda m: build_scheduler({"name": "cosine", "min_lr": 1.0}, 0.1, 1, 1), "Scheduler.min_lr"),
    (lambda m: build_scheduler({"name": "plateau", "factor": 1.5}, 0.1, 1, 1), "Scheduler.factor"),
    (lambda m: ModelEMA(m, decay=1.0), "Optimizer.ema.decay"),
])
def test_config_errors_name_the_key(call, message):
    with pytest.raises(ConfigError) as err:
        call(two_layer())
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cosine_spans_total_steps_when_max_steps_ends_the_run_early():
    # Train.max_steps = 30 in a run of 5 epochs x 10 batches: the schedule anneals in 30 steps
    s = build_scheduler({"name": "cosine", "warmup_epochs": 1.0, "min_lr": 1e-5}, 1e-3, 10, 5,
                        total_steps=30)
    lrs = lr_curve(s, 30)
    assert lrs[10] == pytest.approx(1e-3)
    assert lrs[29] == pytest.approx(1e-5, rel=1e-9)
    # a cap above the epochs' length changes nothing
    longer = lr_curve(build_scheduler({"name": "cosine", "warmup_epochs": 1.0, "min_lr": 1e-5},
                                      1e-3, 10, 5, total_steps=500), 50)
    assert longer == lr_curve(build_scheduler({"name": "cosine", "warmup_epochs": 1.0,
                                               "min_lr": 1e-5}, 1e-3, 10, 5), 50)
    with pytest.raises(ValueError, match="total_steps"):
        build_scheduler({"name": "cosine"}, 1e-3, 10, 5, total_steps=0)
