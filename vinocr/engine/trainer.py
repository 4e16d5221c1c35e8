"""The trainer: a validated config in, checkpoints, logs and a report out.

It knows hooks (:mod:`vinocr.engine.hooks`), never techniques by name. Determinism: every random
choice inside an epoch (shuffling, augmentation, dropout) is seeded from ``(Global.seed, epoch)``
at the epoch's start. So resuming from the ``latest`` checkpoint (always written at an epoch
boundary) replays exactly what an uninterrupted run would have done. A Ctrl-C mid-epoch keeps the
previous ``latest`` intact; resuming repeats the interrupted epoch from its start.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

import numpy as np
import paddle
import paddle.nn.functional as F

from vinocr.charset import load_charset
from vinocr.config import write_resolved_config
from vinocr.data.loader import bad_indices, set_loader_epoch
from vinocr.data.provenance import synthetic_share
from vinocr.decode import build_decoder
from vinocr.engine import distributed as dist
from vinocr.engine.amp import Amp, resolve_amp
from vinocr.engine.hooks import HookList, LossOutput, RunView, TrainerHooks
from vinocr.engine.run_setup import (build_data, build_feature_cache, check_ctc_frames,
                                     load_pretrained_run, planned_steps, resolve_device,
                                     seed_everything, use_fast_depthwise)
from vinocr.engine.run_state import (TrainState, checkpoint_state, record_epoch,
                                     resume_differences, run_report, train_state_from)
from vinocr.engine.runlog import RunLogger, Timer
from vinocr.engine.validation import fit_eval_temperature, predict_eval_set, validate
from vinocr.errors import VinocrError
from vinocr.models.factory import model_from_config
from vinocr.models.trainable import count_params, eval_frozen_batchnorms
from vinocr.models.weights import load_weights

__all__ = ["Trainer", "TrainingDiverged", "TrainState", "resolve_device", "seed_everything"]

logger = logging.getLogger(__name__)


class TrainingDiverged(VinocrError):
    """Too many consecutive non-finite losses or gradients; ``latest`` was saved first."""


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM off while an interrupted run writes its report: a second Ctrl-C,
    or a supervisor's signal arriving right after the first, must not cost the report. The run
    is stopping anyway, so signals that arrive meanwhile are dropped.

    The Python handlers are swapped rather than the thread's signal mask: Paddle's own threads
    would take a blocked process signal and Python would still raise in the main thread.
    Handlers can only be set from the main thread; elsewhere nothing is deferred."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in held}
    for signum in held:
        signal.signal(signum, lambda received, frame: None)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Trainer:
    """Build everything from ``cfg`` and train with ``fit()``.

    Args:
        cfg: a validated config (:func:`vinocr.config.load_config`).
        hooks: technique hooks (a :class:`TrainerHooks` or list of them).
        resume: a run directory or checkpoint to continue exactly.
    """

    def __init__(self, cfg: Mapping[str, Any], hooks: Optional[Any] = None,
                 resume: Optional[str] = None) -> None:
        from vinocr.engine.checkpoint import load_checkpoint, resolve_checkpoint

        self.cfg = cfg
        g = cfg["Global"]
        self.hooks: TrainerHooks = (hooks if isinstance(hooks, TrainerHooks)
                                    else HookList(list(hooks or [])))
        self.run_dir = Path(g["run_dir"])
        self.device = resolve_device(g["device"])
        paddle.set_device(self.device)
        if g["deterministic"]:
            paddle.set_flags({"FLAGS_cudnn_deterministic": True})
        self.sync_timeout = float(g["sync_timeout"])
        dist.init(self.device, self.sync_timeout)
        self.is_main = dist.is_main()
        self.timer = Timer()
        self.log = RunLogger(self.run_dir, self.is_main, g["visualdl"])
        if self.is_main:
            write_resolved_config(cfg, self.run_dir)
        self.seed = g["seed"]
        seed_everything(self.seed, -1)
        self.charset = load_charset(g["charset"])
        self.image_shape = tuple(g["image_shape"])
        data = build_data(cfg, self.charset, self.image_shape, self.seed)
        self.train_set, self.train_samples = data.train_set, data.train_samples
        self.train_loader, self.batch_per_process = data.train_loader, data.batch_per_process
        self.eval_set, self.eval_samples = data.eval_set, data.eval_samples
        self.eval_loader, self.unreadable = data.eval_loader, data.unreadable
        self.model, self.load_report = model_from_config(cfg["Architecture"], self.charset)
        if g["pretrained_model"]:
            load_pretrained_run(self.model, g["pretrained_model"], self.charset,
                                cfg["Architecture"]["allow_missing"])
        self.frames = check_ctc_frames(self.model, self.image_shape, self.train_set.labels())
        self.epochs = cfg["Train"]["epochs"]
        self.steps_per_epoch = max(1, len(self.train_loader))
        self.planned_steps = planned_steps(self.steps_per_epoch, self.epochs,
                                           cfg["Train"]["max_steps"])
        self.state = TrainState()
        # Hooks see the run through this read-only view, never the trainer.
        self.run = RunView(
            charset=self.charset, image_shape=self.image_shape, cfg=cfg, run_dir=self.run_dir,
            device=self.device, is_main=self.is_main, world_size=dist.world_size(),
            train_size=len(self.train_set), synthetic_share=synthetic_share(self.train_set),
            epochs=self.epochs,
            steps_per_epoch=self.steps_per_epoch, planned_steps=self.planned_steps,
            epoch_fn=lambda: self.state.epoch, global_step_fn=lambda: self.state.global_step,
            lr_fn=self._current_lr, model_fn=lambda: self.model)
        self.model = self.hooks.prepare_model(self.model, self.run)
        self.fast_depthwise = use_fast_depthwise(self.model, self.device, g["fast_depthwise"])
        # Data parallel: identical starting weights on every rank; gradients are averaged after
        # each backward (see _train_step). Ranks finish building at different times (rank 0
        # writes the config, datasets load at their own pace), so meet first: the broadcast is a
        # gloo collective with a fixed 30 s timeout.
        dist.sync("start-up (data and model built)", self.sync_timeout)
        dist.broadcast_state(self.model)
        self.amp = Amp(resolve_amp(g["use_amp"], self.device, g["amp_dtype"], g["amp_level"]))
        self.decoder = build_decoder(cfg["Decode"], charset=self.charset, key="Decode")
        self.feature_cache = build_feature_cache(cfg["Train"]["feature_cache"], self.model,
                                                 self.train_samples, self.batch_per_process)
        self._build_optimization()
        self.resumed_from: Optional[str] = None
        #: The confidence calibration fitted after training (:meth:`calibrate`), or None.
        self.calibration: Optional[Dict[str, Any]] = None
        if resume:
            ckpt = load_checkpoint(resolve_checkpoint(resume))
            self._restore(ckpt)
            self.resumed_from = str(ckpt.path)

    # ------------------------------------------------------------------ construction
    def _build_optimization(self) -> None:
        from vinocr.engine.ema import ModelEMA
        from vinocr.engine.schedules import build_scheduler

        opt_cfg = self.cfg["Optimizer"]
        self.schedule = build_scheduler(self.cfg["Scheduler"], opt_cfg["lr"],
                                        self.steps_per_epoch, self.epochs,
                                        self.planned_steps)
        self.optimizer = self._make_optimizer()
        ema_cfg = opt_cfg.get("ema") or {}
        self.ema = (ModelEMA(self.model, ema_cfg.get("decay", 0.999),
                             ema_cfg.get("warmup_steps", 0)) if ema_cfg.get("enabled") else None)

    def _make_optimizer(self):
        from vinocr.engine.optim import build_optimizer

        lr = self.schedule.scheduler if self.schedule.scheduler is not None else \
            self.cfg["Optimizer"]["lr"]
        groups = self.hooks.param_groups(self.model, self.run)
        return build_optimizer(self.cfg["Optimizer"], self.model, lr, groups)

    def _current_lr(self) -> float:
        return self.optimizer.get_lr() if hasattr(self, "optimizer") else 0.0

    def rebuild_optimizer(self) -> None:
        """After trainable parameters changed: a new optimizer that keeps the moments of the
        parameters that were already training (new ones start fresh)."""
        from vinocr.engine.optim_state import optimizer_state_from_named, optimizer_state_to_named

        named = optimizer_state_to_named(self.optimizer, self.model)
        self.optimizer = self._make_optimizer()
        optimizer_state_from_named(self.optimizer, self.model, named)
        logger.info("optimizer rebuilt: %d trainable parameters", count_params(self.model)[0])

    # ------------------------------------------------------------------ checkpoints
    def save(self, name: str) -> Optional[Path]:
        if not self.is_main:
            return None
        from vinocr.engine.checkpoint import save_checkpoint
        from vinocr.engine.optim_state import optimizer_state_to_named

        model_state = {k: v.numpy() for k, v in self.model.state_dict().items()}
        path = save_checkpoint(self.run_dir / name, model_state, checkpoint_state(self),
                               optimizer_state_to_named(self.optimizer, self.model),
                               self.ema.state_dict() if self.ema is not None else None)
        return path

    def _restore(self, ckpt: Any) -> None:
        from vinocr.engine.optim_state import optimizer_state_from_named

        st = ckpt.state
        self.hooks.set_state_dict(st.get("hooks", {}))
        # Hooks may change trainability (e.g. unfreezing) when their state is restored.
        if self.hooks.on_epoch_start(int(st["epoch"]), self.run):
            self.optimizer = self._make_optimizer()
        for warning in resume_differences(st, dist.world_size(), self.planned_steps):
            logger.warning("%s", warning)
        load_weights(self.model, ckpt.model_state, strict=True, source=f"resume {ckpt.path}")
        if ckpt.optimizer_state:
            optimizer_state_from_named(self.optimizer, self.model, ckpt.optimizer_state)
        self.schedule.set_state_dict(st["schedule"])
        self.amp.set_state_dict(st.get("amp", {}))
        if self.ema is not None and ckpt.ema_state:
            self.ema.set_state_dict(ckpt.ema_state)
        self.state = train_state_from(st)
        # The epochs before the resume stay in training_history.json and count for early
        # stopping. Checkpoints from before the history was stored fall back to the file.
        self.log.restore_history(st.get("history"), self.state.epoch)
        logger.info("resumed from %s: %d epochs done, step %d", ckpt.path, self.state.epoch,
                    self.state.global_step)

    # ------------------------------------------------------------------ training
    def _ctc_loss(self, logits: paddle.Tensor, labels: paddle.Tensor,
                  lengths: paddle.Tensor) -> paddle.Tensor:
        n, t = logits.shape[0], logits.shape[1]
        per_sample = F.ctc_loss(logits.transpose([1, 0, 2]).astype("float32"),
                                labels.astype("int32"), paddle.full([n], t, "int64"),
                                lengths.astype("int64"), blank=0, reduction="none")
        return per_sample.mean()

    def _train_mode(self) -> Optional[str]:
        """``model.train()``, except what is frozen: the BatchNorms of frozen layers (for every
        technique) and a fully frozen prefix stay in eval mode. Returns the prefix stage."""
        self.model.train()
        eval_frozen_batchnorms(self.model)
        self.hooks.train_mode(self.model, self.run)
        return self._freeze_prefix_mode()

    def _freeze_prefix_mode(self) -> Optional[str]:
        """Put a fully frozen leading part (backbone, or backbone + neck) in eval mode: frozen
        means a fixed function, so no BatchNorm updates and no dropout. Returns that stage."""
        from vinocr.engine.feature_cache import frozen_stage, prefix_layers

        stage = frozen_stage(self.model)
        if stage is not None:
            for layer in prefix_layers(self.model, stage):
                layer.eval()
        return stage

    def _grad_norm(self) -> float:
        # Summed on the device, read back once: one host sync per step instead of one per
        # parameter (which matters on GPU).
        squares = [(p.grad.astype("float32") ** 2).sum() for p in self.model.parameters()
                   if p.grad is not None]
        if not squares:
            return 0.0
        total = float(paddle.add_n(squares))
        return math.sqrt(total) if math.isfinite(total) else float("inf")

    def _train_step(self, batch: List[paddle.Tensor], stage: Optional[str] = None
                    ) -> Optional[Dict[str, float]]:
        images, labels, lengths, index = batch
        if stage is None:
            self._check_unreadable("Train.dataset", self.train_set, index)
        with self.amp.autocast():
            if stage is not None:
                # ``images`` are cached prefix features; only the trainable suffix runs.
                from vinocr.engine.feature_cache import run_suffix

                logits, aux = run_suffix(self.model, images, stage), {}
            elif hasattr(self.model, "forward_train"):
                logits, aux = self.model.forward_train(images, labels, lengths)
            else:
                logits, aux = self.model(images), {}
            ctc = self._ctc_loss(logits, labels, lengths)
            loss = ctc
            for value in aux.values():
                loss = loss + value
        terms = {"ctc": float(ctc), **{k: float(v) for k, v in aux.items()}}
        out = self.hooks.loss(LossOutput(loss, terms),
                              logits, {"images": images, "labels": labels, "lengths": lengths,
                                       "index": index}, self.run)
        loss_value = float(out.loss)
        if not math.isfinite(loss_value):
            return self._skip_step("loss", loss_value, index)
        self.amp.backward(out.loss)
        dist.all_reduce_gradients(self.model)
        self.amp.unscale(self.optimizer)
        grad_norm = self._grad_norm()
        if not math.isfinite(grad_norm):
            return self._skip_step("gradient", grad_norm, index)
        self.amp.step(self.optimizer)
        self.optimizer.clear_grad()
        self.schedule.step_iter()
        if self.ema is not None:
            self.ema.update(self.model)
        self._nan_streak = 0
        return {"loss": loss_value, "grad_norm": grad_norm, **out.terms}

    def _check_unreadable(self, key: str, dataset: Any, index: paddle.Tensor) -> None:
        bad = bad_indices(index)
        if bad:
            self.unreadable[key].record(dataset, bad, strict=self.cfg["Global"]["strict_data"],
                                        where=key)

    def _skip_step(self, what: str, value: float, index: paddle.Tensor) -> None:
        self.optimizer.clear_grad()
        self._nan_streak += 1
        self.state.skipped_steps += 1
        ids = [int(i) for i in index.numpy().tolist()]
        logger.warning("non-finite %s (%s) at step %d: step skipped (%d in a row); batch samples "
                       "%s", what, value, self.state.global_step, self._nan_streak, ids[:16])
        limit = self.cfg["Global"]["nan_patience"]
        if self._nan_streak >= limit:
            self.state.status = "diverged"
            saved = self.save("latest")
            raise TrainingDiverged(
                f"{limit} consecutive steps with a non-finite {what} at step "
                f"{self.state.global_step} "
                f"(lr {self.schedule.last_lr():.3g}, loss scale {self.amp.loss_scale}, last "
                f"batch samples {ids[:8]}); latest saved to {saved}; lower Optimizer.lr, "
                "check the data with `vinocr-data validate`, or set Global.use_amp: false")
        return None

    def _log_step(self, metrics: Dict[str, float], images_per_sec: float) -> None:
        step = self.state.global_step
        self.log.scalar("train/loss", metrics["loss"], step)
        for name, value in metrics.items():
            if name not in ("loss", "grad_norm"):
                self.log.scalar(f"train/{name}", value, step)
        self.log.scalar("train/lr", self.schedule.last_lr(), step)
        self.log.scalar("gradients/total_norm", metrics["grad_norm"], step)
        self.log.scalar("train/images_per_sec", images_per_sec, step)

    def fit(self) -> Dict[str, Any]:
        """Train to the configured number of epochs (or early stop); return the run report."""
        self._nan_streak = 0
        self.log.hparams({"technique": self.hooks.name, "lr": self.cfg["Optimizer"]["lr"],
                          "optimizer": self.cfg["Optimizer"]["name"],
                          "batch_size": self.cfg["Train"]["batch_size"],
                          "epochs": self.epochs}, ["val/seq_acc", "val/char_acc"])
        max_steps = self.cfg["Train"]["max_steps"]
        self._samples_seen, self._train_time = 0, 0.0
        try:
            while True:
                if self.state.pending_epoch is not None:
                    # An epoch trained but not yet validated (normally the one just trained;
                    # after a resume, the one whose validation was interrupted).
                    stop = self._finish_epoch()
                    if stop or (max_steps and self.state.global_step >= max_steps):
                        break
                if self.state.epoch >= self.epochs:
                    break
                self._train_epoch(self.state.epoch, max_steps)
            if self.state.status == "running":
                self.state.status = "completed"
                self.calibrate()
        except KeyboardInterrupt:
            self.state.status = "interrupted"
            with _signals_deferred():
                self._report_interrupt()
            raise
        except TrainingDiverged:
            self._write_report(self._train_time, self._samples_seen)
            raise
        report = self._write_report(self._train_time, self._samples_seen)
        if dist.world_size() > 1:
            # Each rank records its final weights so a run can prove the ranks stayed in step.
            from vinocr.engine.runlog import write_json_atomic

            write_json_atomic(self.run_dir / f"rank{dist.rank()}_weights.json",
                              {"rank": dist.rank(), "world_size": dist.world_size(),
                               "weights_sha1": dist.weights_digest(self.model)})
        self.log.close()
        return report

    def _report_interrupt(self) -> None:
        """Write the report of an interrupted run, then say where to resume."""
        self._write_report(self._train_time, self._samples_seen)
        if self.state.pending_epoch is not None:
            logger.warning("interrupted while validating epoch %d: the checkpoint `latest` "
                           "holds its training; --resume %s validates it and continues",
                           self.state.epoch, self.run_dir)
        else:
            logger.warning("interrupted during epoch %d: the checkpoint `latest` (after "
                           "epoch %d) is intact; continue with --resume %s",
                           self.state.epoch + 1, self.state.epoch, self.run_dir)

    def _epoch_batches(self, epoch: int, stage: Optional[str]) -> Any:
        """The epoch's batches (cached features for a frozen prefix), after every rank has its
        first batch: building a feature cache or starting loader workers takes each rank its
        own time, and the first gradient all-reduce must not wait for that on gloo's clock."""
        if stage is not None:
            self.feature_cache.prepare(self.model, stage)
            batches = iter(self.feature_cache.batches(self.model, epoch,
                                                      self.train_loader.batch_sampler))
        else:
            batches = iter(self.train_loader)
        first = next(batches, None)
        dist.sync(f"the first batch of epoch {epoch + 1}", self.sync_timeout)
        if first is not None:
            yield first
            yield from batches

    def _train_epoch(self, epoch: int, max_steps: int) -> None:
        """One epoch of optimizer steps; leaves the epoch pending validation, with ``latest``
        saved, or finishes it at once when there is no validation set."""
        from tqdm import tqdm

        eval_every = self.cfg["Train"]["eval_every_steps"]
        log_every = self.cfg["Train"]["log_every_steps"]
        seed_everything(self.seed, epoch)
        if self.hooks.on_epoch_start(epoch, self.run):
            self.rebuild_optimizer()
        set_loader_epoch(self.train_loader, self.train_samples, epoch)
        stage = self._train_mode()
        if self.feature_cache is None:
            stage = None
        bar = tqdm(total=len(self.train_loader), desc=f"epoch {epoch + 1}/{self.epochs}",
                   disable=not self.is_main or bool(os.environ.get("VINOCR_NO_PROGRESS")),
                   file=sys.stderr, dynamic_ncols=True, leave=False)
        start, losses, epoch_samples = time.perf_counter(), [], 0
        for batch in self._epoch_batches(epoch, stage):
            result = self._train_step(batch, stage)
            n = int(batch[0].shape[0]) * dist.world_size()
            epoch_samples += n
            self._samples_seen += n
            if result is not None:
                self.state.global_step += 1
                losses.append(result["loss"])
                ips = epoch_samples / max(1e-9, time.perf_counter() - start)
                step = self.state.global_step
                if step % log_every == 0 or step == 1:
                    self._log_step(result, ips)
                bar.set_postfix(loss=f"{result['loss']:.3f}",
                                lr=f"{self.schedule.last_lr():.2e}", ips=f"{ips:.1f}")
            bar.update(1)
            if eval_every and self.state.global_step % eval_every == 0:
                self.validate(epoch)
                self._train_mode()
            if max_steps and self.state.global_step >= max_steps:
                break
        bar.close()
        epoch_time = time.perf_counter() - start
        self._train_time += epoch_time
        dist.average_buffers(self.model)
        self.state.epoch = epoch + 1
        self.state.pending_epoch = {
            "epoch": epoch + 1, "global_step": self.state.global_step,
            "train_loss": float(np.mean(losses)) if losses else None,
            "epoch_seconds": epoch_time,
            "images_per_sec": epoch_samples / max(epoch_time, 1e-9)}
        if self.eval_set is not None:
            # Before anything that can fail (validation, another rank): the epoch's training is
            # kept, and a resume validates it first.
            self.save("latest")

    def _finish_epoch(self) -> bool:
        """Validate the pending epoch and do its bookkeeping; True when early stopping ends the
        run."""
        epoch = int(self.state.pending_epoch["epoch"]) - 1
        return self._end_epoch(epoch, self.validate(epoch))

    def _end_epoch(self, epoch: int, metrics: Dict[str, Any]) -> bool:
        g = self.cfg["Global"]
        metric_name = g["best_metric"]
        # Every rank has the same metrics (validation is gathered), so the scheduler, the best
        # checkpoint and early stopping decide the same on every rank without a broadcast.
        self.schedule.step_epoch(metrics.get(metric_name))
        record = {**self.state.pending_epoch, "lr": self.schedule.last_lr(), **metrics}
        es = self.cfg["EarlyStopping"]
        improved, stop = record_epoch(self.state, epoch, metrics, metric_name, es,
                                      self.log.history)
        self.log.epoch(record)
        if self.is_main:
            self.save("latest")
            if improved or self.eval_set is None:
                self.save("best")
            step = self.cfg["Train"]["save_epoch_step"]
            if step and (epoch + 1) % step == 0:
                self.save(f"epoch_{epoch + 1}")
            hist_every = g["histogram_every_epochs"]
            if hist_every and (epoch + 1) % hist_every == 0:
                for name, p in self.model.named_parameters():
                    if p.ndim > 1:
                        self.log.histogram(f"weights/{name}", p.numpy(), epoch + 1)
        self.hooks.on_epoch_end(epoch, metrics, self.run)
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                            if isinstance(v, float)) or "no validation set"
        loss = record["train_loss"]
        logger.info("epoch %d/%d: loss %s, %s%s", epoch + 1, self.epochs,
                    "n/a" if loss is None else f"{loss:.4f}", summary,
                    " (best)" if improved else "")
        if stop:
            logger.info("early stopping: %s did not improve by %s for %d epochs",
                        es["metric"], es["min_delta"], es["patience"])
        # Rank 0 wrote checkpoints and histograms meanwhile; the next collective is gloo's.
        dist.sync(f"the end of epoch {epoch + 1} (checkpoints)", self.sync_timeout)
        return stop

    # ------------------------------------------------------------------ validation
    def predict_eval_set(self) -> Dict[str, Any]:
        """Decoded predictions on the eval set, in sample order (texts, confidences, labels,
        dataset indices); each rank decodes its shard, gathered on every rank."""
        return predict_eval_set(
            self.model, self.eval_loader, self.eval_set, self.decoder, self.ema,
            lambda index: self._check_unreadable("Eval.dataset", self.eval_set, index),
            self.sync_timeout)

    def validate(self, epoch: int) -> Dict[str, Any]:
        """Metrics on the eval set, the same on every rank ({} without an eval set)."""
        if self.eval_set is None:
            return {}
        return validate(self.predict_eval_set, self.charset, self.eval_set, self.log,
                        self.state.global_step, self.is_main, epoch, self.sync_timeout)

    def calibrate(self) -> Optional[Dict[str, Any]]:
        """Fit the confidence temperature of the ``best`` checkpoint's model on the eval set
        (validation data only, as for model selection) and store it in that checkpoint's state
        as ``calibration`` (and in the run report). Without an eval set, or when it cannot
        calibrate, nothing is stored and confidences stay raw."""
        from vinocr.engine.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint

        best = self.run_dir / "best"
        if self.eval_set is None or not checkpoint_exists(best):
            return None
        fit = fit_eval_temperature(best, self.eval_loader, self.eval_set, self.cfg["Decode"],
                                   self.sync_timeout)
        if fit is None:
            return None
        self.calibration = fit.to_record()
        if self.is_main:
            ckpt = load_checkpoint(best)
            state = {**ckpt.state, "calibration": self.calibration}
            save_checkpoint(best, ckpt.model_state, state, ckpt.optimizer_state, ckpt.ema_state)
        dist.sync("the confidence calibration (best checkpoint)", self.sync_timeout)
        return self.calibration

    # ------------------------------------------------------------------ report
    def _write_report(self, train_time: float, samples_seen: int) -> Dict[str, Any]:
        report = run_report(self, train_time, samples_seen)
        self.log.report(report)
        return report
