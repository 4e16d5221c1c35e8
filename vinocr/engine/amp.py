"""Automatic mixed precision, on wherever Paddle supports it.

On GPU: ``auto_cast`` O1 in float16 (bfloat16 selectable) with a dynamically scaled ``GradScaler``,
and numerically fragile ops kept in float32 (exp, softmax, log_softmax, CTC loss), the known cause
of fp16 NaNs in PP-OCR training (PaddleOCR #11751). On CPU, Paddle's AMP does nothing, so vinocr
says once that training runs in float32 and skips the scaler entirely.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterator, Optional

logger = logging.getLogger(__name__)

#: Ops kept in float32 under autocast.
FP32_OPS = frozenset({"exp", "softmax", "log_softmax", "warpctc", "ctc_loss",
                      "softmax_with_cross_entropy", "cross_entropy", "layer_norm", "reduce_mean",
                      "mean"})


@dataclass
class AmpSettings:
    enabled: bool
    dtype: str = "float16"
    level: str = "O1"
    init_loss_scaling: float = 2.0 ** 15
    reason: str = ""


def resolve_amp(use_amp: bool, device: str, dtype: str = "float16", level: str = "O1"
                ) -> AmpSettings:
    """Decide whether AMP really runs. ``device`` is the resolved place (``cpu`` or ``gpu...``)."""
    if not use_amp:
        return AmpSettings(False, dtype, level, reason="disabled in config (Global.use_amp: false)")
    if not device.startswith(("gpu", "xpu")):
        return AmpSettings(False, dtype, level, reason=f"Paddle AMP has no effect on {device}: "
                           "training runs in float32")
    if dtype not in ("float16", "bfloat16"):
        raise ValueError(f"Global.amp_dtype must be float16 or bfloat16, got {dtype!r}")
    return AmpSettings(True, dtype, level, reason=f"auto_cast {level} {dtype}"
                       + (" with dynamic loss scaling" if dtype == "float16" else ""))


class Amp:
    """``with amp.autocast(): loss = ...``; ``amp.backward_step(loss, optimizer)``."""

    _told_fp32 = False

    def __init__(self, settings: AmpSettings) -> None:
        self.settings = settings
        self.scaler = None
        kwargs = self.scaler_kwargs()
        if kwargs is not None:
            import paddle

            self.scaler = paddle.amp.GradScaler(**kwargs)
        if not settings.enabled and not Amp._told_fp32:
            logger.info("AMP off: %s", settings.reason)
            Amp._told_fp32 = True
        elif settings.enabled:
            logger.info("AMP on: %s", settings.reason)

    def scaler_kwargs(self) -> Optional[dict]:
        """GradScaler arguments, or None when no scaler is needed (CPU, AMP off, bf16: bf16 has
        float32's exponent range and does not underflow)."""
        if not self.settings.enabled or self.settings.dtype != "float16":
            return None
        return {"init_loss_scaling": self.settings.init_loss_scaling,
                "use_dynamic_loss_scaling": True}

    def autocast_kwargs(self) -> Optional[dict]:
        """``paddle.amp.auto_cast`` arguments, or None when training runs in float32."""
        if not self.settings.enabled:
            return None
        return {"enable": True, "custom_black_list": set(FP32_OPS), "level": self.settings.level,
                "dtype": self.settings.dtype}

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        kwargs = self.autocast_kwargs()
        if kwargs is None:
            yield
            return
        import paddle

        with paddle.amp.auto_cast(**kwargs):
            yield

    def backward(self, loss: Any) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def unscale(self, optimizer: Any) -> None:
        """Bring gradients back to their true scale (before clipping or norm checks)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: Any) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    @property
    def loss_scale(self) -> Optional[float]:
        if self.scaler is None or getattr(self.scaler, "_scale", None) is None:
            return None
        return float(self.scaler._scale.numpy()) if hasattr(self.scaler._scale, "numpy") \
            else float(self.scaler._scale)

    def state_dict(self) -> dict:
        return {} if self.scaler is None else {"scale": self.loss_scale}

    def set_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scale"):
            import paddle

            self.scaler._scale = paddle.to_tensor([state["scale"]], dtype="float32")
