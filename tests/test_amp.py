"""AMP policy: real on GPU (fp16 + dynamic loss scaling, or bf16), a logged no-op on CPU."""
import logging

import paddle

from vinocr.engine.amp import Amp, resolve_amp


def test_cpu_branch_runs_fp32_without_scaler(caplog):
    settings = resolve_amp(True, "cpu")
    assert not settings.enabled and "float32" in settings.reason
    Amp._told_fp32 = False
    with caplog.at_level(logging.INFO, logger="vinocr.engine.amp"):
        amp = Amp(settings)
        Amp(settings)
    assert amp.scaler is None and amp.loss_scale is None
    assert sum("AMP off" in r.message for r in caplog.records) == 1  # said once, not per step
    layer = paddle.nn.Linear(3, 2)
    opt = paddle.optimizer.SGD(0.1, parameters=layer.parameters())
    with amp.autocast():
        loss = layer(paddle.ones([1, 3])).sum()
    assert loss.dtype == paddle.float32
    before = layer.weight.numpy().copy()
    amp.backward(loss)
    amp.unscale(opt)
    amp.step(opt)
    assert (layer.weight.numpy() != before).any()


def test_gpu_branch_logic():
    fp16 = resolve_amp(True, "gpu:0")
    assert fp16.enabled and fp16.dtype == "float16" and "dynamic loss scaling" in fp16.reason
    bf16 = resolve_amp(True, "gpu:0", dtype="bfloat16")
    assert bf16.enabled and "loss scaling" not in bf16.reason
    assert not resolve_amp(False, "gpu:0").enabled
    # fp16 gets a dynamically scaled GradScaler; bf16 needs none. (Paddle's GradScaler disables
    # itself off-GPU, so on this CPU machine we check what it is given, not what it does.)
    amp16, amp_bf16 = Amp(fp16), Amp(bf16)
    assert amp16.scaler is not None
    assert amp16.scaler_kwargs() == {"init_loss_scaling": 2.0 ** 15,
                                     "use_dynamic_loss_scaling": True}
    assert amp_bf16.scaler is None and amp_bf16.scaler_kwargs() is None
    cast = amp16.autocast_kwargs()
    assert cast["enable"] and cast["level"] == "O1" and cast["dtype"] == "float16"
    assert amp_bf16.autocast_kwargs()["dtype"] == "bfloat16"
    # the numerically fragile ops stay in float32
    assert {"exp", "softmax", "log_softmax", "warpctc"} <= cast["custom_black_list"]
    assert Amp(resolve_amp(True, "cpu")).autocast_kwargs() is None
