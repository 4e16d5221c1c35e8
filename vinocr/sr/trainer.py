"""Progressive SR training (the LP-ASRN protocol) with exact resume.

Stage 1: L1 warm-up of the generator; the recogniser is frozen.
Stage 2: L1 + LCOFL (character, layout, SSIM terms) through the frozen recogniser.
Stage 3: joint fine-tuning at a lower LR; the recogniser's weights train too.

The recogniser always runs in eval mode: its BatchNorm statistics stay those of HR training
(batches of SR images are small and would otherwise drag them); in stage 3 only its weights move.
After each epoch the validation tracks are read from SR images: word accuracy selects ``best``,
drives the plateau LR decay and early stopping, and the confusion matrix re-weights LCOFL's
characters. Checkpoints ``stage{n}_epoch_{N}`` and ``best`` are written atomically; a Ctrl-C keeps
the previous ones intact and ``--resume`` continues from any of them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn

from vinocr.engine.runlog import RunLogger
from vinocr.models.layers import running_stat_ids, weight_parameters
from vinocr.errors import ConfigError, VinocrError
from vinocr.sr.data import SRPairs
from vinocr.sr.evaluate import SREvaluation, evaluate_sr
from vinocr.sr.lcofl import LCOFL, to_ocr_input
from vinocr.sr.preprocess import to_tensor

logger = logging.getLogger(__name__)

STAGES = (1, 2, 3)


class SRSystem(nn.Layer):
    """Generator and recogniser under one parameter namespace (``generator.*``, ``ocr.*``), so
    checkpoints and optimizer state have unique, stable names."""

    def __init__(self, generator: nn.Layer, ocr: nn.Layer) -> None:
        super().__init__()
        self.generator = generator
        self.ocr = ocr


@dataclass
class StagePlan:
    stage: int
    epochs: int
    lr_scale: float
    ocr_lr_scale: float

    @property
    def trains_ocr(self) -> bool:
        return self.stage == 3

    @property
    def uses_text_loss(self) -> bool:
        return self.stage >= 2


def parse_stages(value: str) -> List[int]:
    """``1``, ``2``, ``3``, ``all`` or a comma list (``2,3``) -> sorted stage numbers."""
    text = str(value).strip().lower()
    if text == "all":
        return list(STAGES)
    try:
        stages = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        stages = []
    if not stages or any(s not in STAGES for s in stages):
        raise ConfigError(f"--stage: expected 1, 2, 3, all or a comma list, got {value!r}")
    return stages


def set_trainable(layer: nn.Layer, trainable: bool) -> None:
    """Switch gradients of ``layer``'s weights; BatchNorm running statistics never get
    gradients (Adam would otherwise move them like weights)."""
    stats = running_stat_ids(layer)
    for p in layer.parameters():
        p.stop_gradient = not trainable or id(p) in stats


def _rnn_layers(ocr: nn.Layer) -> List[nn.Layer]:
    from paddle.nn.layer.rnn import RNNBase

    return [layer for layer in ocr.sublayers() if isinstance(layer, RNNBase)]


def recogniser_mode(ocr: nn.Layer, trainable: bool) -> None:
    """Eval mode (frozen BatchNorm statistics, no dropout) that still back-propagates to its input.

    Paddle's fused RNN kernel cannot back-propagate in eval mode nor with frozen weights (its
    backward then fails inside ``RnnGradNode``). So recurrent sublayers (a CRNN's LSTM) stay in
    train mode and keep ``stop_gradient=False`` even when the recogniser is frozen: they are left
    out of the optimizer instead, so their weights do not move, and their gradients are cleared
    after every step. Without inter-layer dropout their output is the same in both modes.
    """
    set_trainable(ocr, trainable)
    ocr.eval()
    for layer in _rnn_layers(ocr):
        if getattr(layer, "dropout", 0.0):
            logger.warning("recogniser RNN %s has dropout %.2f: it stays active during SR "
                           "training (Paddle cannot back-propagate an RNN in eval mode)",
                           type(layer).__name__, layer.dropout)
        layer.train()
        set_trainable(layer, True)


class SRTrainer:
    """Runs the stages of ``cfg['Stages']`` listed in ``stages`` (see the module docstring).

    Args:
        cfg: a validated SR config (:data:`vinocr.sr.config.SR_SCHEMA`).
        generator: the SR network.
        ocr: the recogniser (a :class:`vinocr.models.recognizer.RecognitionNet`) fine-tuned on HR.
        classes: the recogniser's class list (index 0 = blank).
        image_shape: the recogniser's input [C, H, W].
        decoder: a :mod:`vinocr.decode` decoder for validation.
        train / val: SR pairs; ``val`` may be None (then no best/ and no adaptive weights).
        ocr_state: whatever the caller needs to rebuild the recogniser (config, charset); kept in
            every checkpoint.
    """

    def __init__(self, cfg: Mapping[str, Any], generator: nn.Layer, ocr: nn.Layer,
                 classes: Sequence[str], image_shape: Sequence[int], decoder: Any,
                 train: SRPairs, val: Optional[SRPairs], run_dir: Path,
                 ocr_state: Optional[Mapping[str, Any]] = None, log: bool = True) -> None:
        self.cfg = cfg
        self.system = SRSystem(generator, ocr)
        self.generator, self.ocr = generator, ocr
        self.image_shape = list(image_shape)
        self.decoder = decoder
        self.train_data, self.val_data = train, val
        self.run_dir = Path(run_dir)
        self.ocr_state = dict(ocr_state or {})
        from vinocr.sr.lcofl import LossWeights

        self.loss = LCOFL(classes, LossWeights.from_config(cfg["Loss"]))
        self.rng = np.random.default_rng(int(cfg["Global"]["seed"]))
        self.logger = RunLogger(self.run_dir, enabled=log,
                                visualdl=bool(cfg["Global"]["visualdl"]) and log)
        self.global_step = 0
        self.best: Optional[float] = None
        self.history: List[Dict[str, Any]] = []
        self.optimizer: Optional[paddle.optimizer.Optimizer] = None
        self.lr = float(cfg["Optimizer"]["lr"])
        self._stage = 0
        self._epoch = 0          # epochs completed in the current stage
        self._running_epoch = 1  # the epoch being trained or validated (for messages)
        self._bad_epochs = 0     # epochs since the stage's best word accuracy (plateau / stop)
        self._stage_best: Optional[float] = None
        self._resume_optimizer: Optional[Dict[str, np.ndarray]] = None
        self._stage_done = False  # the current stage ended early (kept across resume)
        s3 = self.plan(3)
        if s3.epochs and s3.lr_scale <= 0:
            raise ConfigError("Stages.stage3.lr_scale: must be > 0 (the recogniser's LR, "
                              "ocr_lr_scale, is applied relative to the generator's)")

    # ---- plans and optimizers -----------------------------------------------------------

    def plan(self, stage: int) -> StagePlan:
        sec = self.cfg["Stages"][f"stage{stage}"]
        return StagePlan(stage, int(sec["epochs"]), float(sec["lr_scale"]),
                         float(sec["ocr_lr_scale"]))

    def _configure(self, plan: StagePlan) -> None:
        """Freeze/unfreeze for the stage and build its optimizer."""
        set_trainable(self.generator, True)
        recogniser_mode(self.ocr, plan.trains_ocr)
        self.generator.train()
        params: List[Any] = [{"params": weight_parameters(self.generator)}]
        if plan.trains_ocr:
            # Paddle's per-group learning_rate is a multiplier of the optimizer's LR, which is the
            # generator's (Optimizer.lr x lr_scale); lr_scale 0 is refused by the config check.
            ratio = plan.ocr_lr_scale / plan.lr_scale
            params.append({"params": weight_parameters(self.ocr),
                           "learning_rate": ratio})
        opt = self.cfg["Optimizer"]
        from vinocr.engine.optim import ClippedAdam

        # One global norm over generator and recogniser: Paddle's own grad_clip would clip each
        # parameter group separately.
        self.optimizer = ClippedAdam(learning_rate=self.lr, beta1=float(opt["betas"][0]),
                                     beta2=float(opt["betas"][1]), parameters=params)
        self.optimizer.clip_grad_norm = float(opt["clip_grad_norm"] or 0.0) or None

    # ---- one step -----------------------------------------------------------------------

    def compute_terms(self, lr_u8: np.ndarray, hr_u8: np.ndarray, texts: Sequence[str],
                      layouts: Sequence[str], stage: int) -> Dict[str, paddle.Tensor]:
        """The loss terms of ``stage`` for one batch (tensors with gradients)."""
        lr = paddle.to_tensor(to_tensor(list(lr_u8)))
        hr = paddle.to_tensor(to_tensor(list(hr_u8)))
        sr = self.generator(lr)
        terms = self.loss.image_terms(sr, hr)
        if stage == 1:
            return {"l1": terms["l1"]}
        # The recogniser sees what deployment gives it: SR clipped to [0, 1] (the exported
        # generator clips), so the text terms cannot reward out-of-range pixels.
        logits = self.ocr(to_ocr_input(paddle.clip(sr, 0.0, 1.0), self.image_shape))
        terms.update(self.loss.text_terms(logits, texts, layouts))
        return terms

    def train_step(self, batch: Sequence[Any], stage: int) -> Dict[str, float]:
        terms = self.compute_terms(*batch, stage=stage)
        total = self.loss.total(terms)
        if not bool(paddle.isfinite(total)):
            raise VinocrError(f"non-finite SR loss at step {self.global_step} (stage {stage}); "
                              f"terms: {({k: float(v) for k, v in terms.items()})}. Lower "
                              f"Optimizer.lr or resume from the last checkpoint")
        total.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        self.ocr.clear_gradients()  # frozen RNN weights still receive gradients (see above)
        self.global_step += 1
        out = {k: float(v) for k, v in terms.items()}
        out["total"] = float(total)
        return out

    # ---- the loop -----------------------------------------------------------------------

    def fit(self, stages: Sequence[int]) -> Dict[str, Any]:
        """Run ``stages`` in order (skipping ones already finished when resumed)."""
        t0 = time.perf_counter()
        try:
            for stage in stages:
                if stage < self._stage:
                    continue
                plan = self.plan(stage)
                if stage != self._stage:
                    self._stage, self._epoch, self._bad_epochs, self._stage_best = stage, 0, 0, None
                    self._stage_done = False
                    self.lr = float(self.cfg["Optimizer"]["lr"]) * plan.lr_scale
                    self._resume_optimizer = None
                if plan.epochs == 0 or self._epoch >= plan.epochs or self._stage_done:
                    continue
                self._configure(plan)
                if self._resume_optimizer:
                    from vinocr.engine.optim_state import optimizer_state_from_named

                    optimizer_state_from_named(self.optimizer, self.system,
                                               self._resume_optimizer)
                    self._resume_optimizer = None
                logger.info("stage %d: %d epochs, lr %.3g%s", stage, plan.epochs, self.lr,
                            ", recogniser unfrozen" if plan.trains_ocr else
                            ", recogniser frozen")
                while self._epoch < plan.epochs:
                    if self._run_epoch(plan):
                        logger.info("stage %d: early stop after epoch %d", stage, self._epoch)
                        break
        except KeyboardInterrupt:
            logger.warning("interrupted in stage %d epoch %d: the checkpoints already written "
                           "are intact; continue with --resume %s", self._stage,
                           self._running_epoch,
                           self.run_dir / "latest")
            raise
        finally:
            self.logger.close()
        report = {"best_word_acc": self.best, "steps": self.global_step,
                  "seconds": round(time.perf_counter() - t0, 1), "history": self.history}
        self.logger.report(report)
        return report

    def _run_epoch(self, plan: StagePlan) -> bool:
        """One epoch of ``plan``; returns True when early stopping ends the stage."""
        cfg_train = self.cfg["Train"]
        max_steps = cfg_train.get("max_steps_per_epoch")
        log_every = int(self.cfg["Global"]["log_every_steps"])
        sums: Dict[str, float] = {}
        n = 0
        # _epoch counts the epoch done before its validation runs; messages name this one.
        self._running_epoch = self._epoch + 1
        t0 = time.perf_counter()
        images = 0
        # Validation switches every layer to eval mode; restore the stage's training modes.
        recogniser_mode(self.ocr, plan.trains_ocr)
        self.generator.train()
        for batch in self.train_data.batches(int(cfg_train["batch_size"]), self.rng):
            terms = self.train_step(batch, plan.stage)
            images += len(batch[0])
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
                self.logger.scalar(f"train/stage{plan.stage}/{k}", v, self.global_step)
            n += 1
            if n % log_every == 0:
                logger.info("stage %d epoch %d step %d: %s (%.1f img/s)", plan.stage,
                            self._epoch + 1, n, " ".join(f"{k}={v:.4f}" for k, v in terms.items()),
                            images / (time.perf_counter() - t0))
            if max_steps and n >= max_steps:
                break
        self._epoch += 1
        record: Dict[str, Any] = {"stage": plan.stage, "epoch": self._epoch, "lr": self.lr,
                                  "steps": n, "img_per_s": images / max(time.perf_counter() - t0,
                                                                         1e-9)}
        record.update({f"train_{k}": v / max(n, 1) for k, v in sums.items()})
        stop = False
        if self.val_data is not None:
            ev = evaluate_sr(self.val_data, self.ocr, self.image_shape, self.decoder,
                             generator=self.generator, sources=("sr",), quality=True)
            acc = ev.frames["sr"]["seq_acc"]
            record.update({"val_word_acc": acc, "val_char_acc": ev.frames["sr"]["char_acc"],
                           "val_psnr": ev.quality["sr"]["psnr"],
                           "val_ssim": ev.quality["sr"]["ssim"]})
            self._log_eval(ev, plan)
            # Recomputed after stage 1 too: stage 2 starts with weights from the warm-up's errors.
            record["char_weights"] = self.loss.update_char_weights(ev.confusion)
            improved_stage = self._stage_best is None or acc > self._stage_best
            if improved_stage:
                self._stage_best, self._bad_epochs = acc, 0
            else:
                self._bad_epochs += 1
            sched = self.cfg["Scheduler"]
            if sched["plateau_patience"] and self._bad_epochs and \
                    self._bad_epochs % int(sched["plateau_patience"]) == 0:
                self.lr *= float(sched["plateau_factor"])
                logger.info("word accuracy plateaued for %d epochs: lr -> %.3g",
                            self._bad_epochs, self.lr)
            if sched["early_stop_patience"] and self._bad_epochs >= int(sched["early_stop_patience"]):
                stop = self._stage_done = True  # saved, so a resume moves on to the next stage
            is_best = self.best is None or acc > self.best
            if is_best:
                self.best = acc
        else:
            is_best = False
        if self._epoch % int(self.cfg["Scheduler"]["step_size"]) == 0:
            self.lr *= float(self.cfg["Scheduler"]["gamma"])
        if self.optimizer is not None:
            self.optimizer.set_lr(self.lr)
        self.history.append(record)
        self.logger.epoch(record)
        logger.info("stage %d epoch %d/%d: %s", plan.stage, self._epoch, plan.epochs,
                    " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in record.items() if k not in ("char_weights",)))
        name = f"stage{plan.stage}_epoch_{self._epoch}"
        self.save(name)
        self.save("latest")
        if is_best:
            self.save("best")
        return stop

    def _log_eval(self, ev: SREvaluation, plan: StagePlan) -> None:
        step = self.global_step
        for k, v in ev.frames["sr"].items():
            self.logger.scalar(f"val/sr_{k}", v, step)
        for k, v in ev.quality.get("sr", {}).items():
            self.logger.scalar(f"val/sr_{k}", v, step)
        every = int(self.cfg["Global"]["grid_every_epochs"])
        if self.logger.writer is None or not every or self._epoch % every:
            return
        from vinocr.engine.visuals import confusion_matrix_image
        from vinocr.sr.visuals import comparison_grid

        ex = ev.examples
        grid = comparison_grid(ex["lr"]["images"], ex["sr"]["images"], ex["lr"]["hr"],
                               ex["lr"]["texts"], ex["sr"]["preds"])
        self.logger.image("val/lr_sr_hr", grid, step)
        if ev.confusion:
            self.logger.image("val/confusion", confusion_matrix_image(ev.confusion), step)

    # ---- checkpoints --------------------------------------------------------------------

    def _state(self) -> Dict[str, Any]:
        return {"kind": "vinocr-sr", "stage": self._stage, "epoch": self._epoch,
                "global_step": self.global_step, "lr": self.lr, "best": self.best,
                "stage_best": self._stage_best, "bad_epochs": self._bad_epochs,
                "stage_done": self._stage_done,
                "loss": self.loss.state_dict(), "history": self.history,
                "rng": self.rng.bit_generator.state, "config": dict(self.cfg),
                "generator": {"arch_kwargs": dict(getattr(self.generator, "arch_kwargs", {}))},
                "ocr": self.ocr_state, "image_shape": self.image_shape}

    def save(self, name: str) -> Path:
        from vinocr.engine.checkpoint import save_checkpoint
        from vinocr.engine.optim_state import optimizer_state_to_named

        model_state = {k: v.numpy() for k, v in self.system.state_dict().items()}
        opt_state = optimizer_state_to_named(self.optimizer, self.system) \
            if self.optimizer is not None else None
        return save_checkpoint(self.run_dir / name, model_state, self._state(), opt_state)

    def resume(self, path: Path) -> None:
        """Restore weights, optimizer, schedule, character weights and RNG from a checkpoint."""
        from vinocr.engine.checkpoint import load_checkpoint, resolve_checkpoint
        from vinocr.models.weights import load_weights

        ckpt = load_checkpoint(resolve_checkpoint(path))
        st = ckpt.state
        if st.get("kind") != "vinocr-sr":
            raise VinocrError(f"{ckpt.path}: not an SR checkpoint (written by vinocr-train-sr?)")
        load_weights(self.system, ckpt.model_state, strict=True, source=str(ckpt.path))
        self._stage, self._epoch = int(st["stage"]), int(st["epoch"])
        self.global_step, self.lr = int(st["global_step"]), float(st["lr"])
        self.best, self._stage_best = st.get("best"), st.get("stage_best")
        self._bad_epochs = int(st.get("bad_epochs", 0))
        self._stage_done = bool(st.get("stage_done", False))
        self.loss.set_state_dict(st.get("loss", {}))
        self.history = list(st.get("history", []))
        self.logger.history = list(self.history)  # training_history.json continues, not restarts
        self.rng.bit_generator.state = st["rng"]
        self._resume_optimizer = dict(ckpt.optimizer_state) if ckpt.optimizer_state else None
        logger.info("resumed from %s: stage %d, %d epochs done, step %d", ckpt.path, self._stage,
                    self._epoch, self.global_step)
