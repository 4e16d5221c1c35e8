"""The trainer's bookkeeping: its progress (:class:`TrainState`), what a checkpoint records about
the run (:func:`checkpoint_state`, read back by :func:`train_state_from`) and the run report
(:func:`run_report`, written as ``report.json``)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Tuple

from vinocr import __version__
from vinocr.config import json_safe_config
from vinocr.engine import distributed as dist
from vinocr.engine.model_loading import model_record
from vinocr.models.pretrained import resolve_pretrained
from vinocr.models.trainable import count_params

if TYPE_CHECKING:  # pragma: no cover
    from vinocr.engine.trainer import Trainer

LOWER_IS_BETTER = ("ned", "cer")


@dataclass
class TrainState:
    epoch: int = 0                 # epochs completed
    global_step: int = 0
    best_metric: Optional[float] = None
    best_epoch: Optional[int] = None
    bad_epochs: int = 0            # early-stopping counter
    skipped_steps: int = 0         # non-finite steps skipped in total
    status: str = "running"
    last_metrics: Dict[str, Any] = field(default_factory=dict)
    # The finished epoch whose validation has not run yet (its history record so far): `latest`
    # is saved in this state before validating, so a failure there costs no training.
    pending_epoch: Optional[Dict[str, Any]] = None


def is_better(metric: str, value: float, best: Optional[float], min_delta: float = 0.0) -> bool:
    if best is None:
        return True
    if metric in LOWER_IS_BETTER:
        return value < best - min_delta
    return value > best + min_delta


def history_best(history: Iterable[Mapping[str, Any]], metric: str) -> Optional[float]:
    """The best value of ``metric`` in the per-epoch history (None when it was never measured)."""
    values = [r[metric] for r in history if isinstance(r.get(metric), (int, float))]
    if not values:
        return None
    return min(values) if metric in LOWER_IS_BETTER else max(values)



def record_epoch(state: TrainState, epoch: int, metrics: Mapping[str, Any], best_metric: str,
                 early_stopping: Mapping[str, Any], history: Iterable[Mapping[str, Any]]
                 ) -> Tuple[bool, bool]:
    """The pending epoch's bookkeeping once validated: the best metric and the early-stopping
    counter. Returns ``(improved, stop)``; ``history`` holds the epochs before this one."""
    state.pending_epoch = None
    state.last_metrics = dict(metrics)
    improved = False
    if best_metric in metrics and is_better(best_metric, metrics[best_metric],
                                            state.best_metric):
        state.best_metric, state.best_epoch = metrics[best_metric], epoch + 1
        improved = True
    es, stop = early_stopping, False
    if es["patience"] and es["metric"] in metrics:
        # Early stopping uses its own metric and min_delta against the best seen so far
        # (including the epochs before a resume: the history is restored with the state).
        best_es = history_best(history, es["metric"])
        if best_es is None or is_better(es["metric"], metrics[es["metric"]], best_es,
                                        es["min_delta"]):
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
            stop = state.bad_epochs >= es["patience"]
    if stop:
        state.status = "early_stopped"
    return improved, stop

def checkpoint_state(t: "Trainer") -> Dict[str, Any]:
    """Everything besides the tensors that an exact resume needs, plus what tools read back
    (config, charset, architecture and the adapters the model carries). The adapters are read
    from the model's layers, not from the technique that put them there, so a checkpoint says
    exactly which layers its ``lora_A``/``lora_B`` tensors belong to whatever the config says
    later."""
    s = t.state
    return {"epoch": s.epoch, "global_step": s.global_step, "best_metric": s.best_metric,
            "best_epoch": s.best_epoch, "bad_epochs": s.bad_epochs,
            "skipped_steps": s.skipped_steps, "metrics": s.last_metrics,
            "pending_epoch": s.pending_epoch, "history": list(t.log.history),
            "schedule": t.schedule.state_dict(), "amp": t.amp.state_dict(),
            "hooks": t.hooks.state_dict(), "seed": t.seed,
            "world_size": dist.world_size(), "planned_steps": t.planned_steps,
            "config": json_safe_config(t.cfg), "charset": list(t.charset.characters),
            **model_record(t.model),
            "vinocr_version": __version__, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def train_state_from(st: Mapping[str, Any]) -> TrainState:
    """The progress recorded by :func:`checkpoint_state`."""
    return TrainState(epoch=int(st["epoch"]), global_step=int(st["global_step"]),
                      best_metric=st.get("best_metric"), best_epoch=st.get("best_epoch"),
                      bad_epochs=int(st.get("bad_epochs", 0)),
                      skipped_steps=int(st.get("skipped_steps", 0)),
                      last_metrics=st.get("metrics", {}), pending_epoch=st.get("pending_epoch"))



def resume_differences(st: Mapping[str, Any], world_size: int, planned: int) -> List[str]:
    """Why resuming from checkpoint state ``st`` will not continue bit-identically (one warning
    each): another process count, or another plan of optimizer steps."""
    out = []
    saved_world = int(st.get("world_size", 1))
    if saved_world != world_size:
        out.append(f"resuming a run trained on {saved_world} process(es) with {world_size}: the "
                   "global batch is the same, but samples are dealt to processes differently, "
                   "so the continuation is not bit-identical; use --nproc "
                   f"{saved_world} for an exact resume")
    saved_plan = st.get("planned_steps")
    if saved_plan is not None and int(saved_plan) != planned:
        out.append(f"resuming a run planned for {int(saved_plan)} optimizer steps as one of "
                   f"{planned} (Train.epochs or Train.max_steps changed): the LR schedule is "
                   f"rebuilt for {planned} steps and continues from step {int(st['global_step'])}"
                   ", so the continuation differs from the run as first planned")
    return out

def run_report(t: "Trainer", train_time: float, samples_seen: int) -> Dict[str, Any]:
    """The run report (``report.json``): status, data, model, technique, progress, timing."""
    s = t.state
    trainable, total = count_params(t.model)
    return {
        "status": s.status, "vinocr_version": __version__, "run_dir": str(t.run_dir),
        "resumed_from": t.resumed_from,
        "data": {"train_samples": len(t.train_set), "train_source": t.train_set.describe(),
                 "train_skipped": len(t.train_set.skipped),
                 "train_synthetic_share": t.run.synthetic_share,
                 # this process's count: each rank loads its own shard
                 "unreadable_images": {k: [{"index": i, "error": e} for i, e in tr.skipped]
                                       for k, tr in t.unreadable.items()},
                 "eval_samples": 0 if t.eval_set is None else len(t.eval_set),
                 "charset": t.charset.name},
        "model": {"arch": t.model.arch, "form": "deploy" if t.model.is_deploy else "train",
                  "pretrained": resolve_pretrained(t.cfg["Architecture"]["pretrained"],
                                                    t.cfg["Architecture"]["name"]),
                  "parameters": total,
                  "trainable": trainable},
        "technique": t.hooks.describe(),
        "epochs_done": s.epoch, "global_step": s.global_step,
        "best": {"metric": t.cfg["Global"]["best_metric"], "value": s.best_metric,
                 "epoch": s.best_epoch},
        "final_metrics": s.last_metrics, "skipped_nonfinite_steps": s.skipped_steps,
        # the confidence temperature fitted on the eval set for the best checkpoint
        "calibration": getattr(t, "calibration", None),
        "amp": t.amp.settings.reason, "device": t.device,
        "fast_depthwise_layers": t.fast_depthwise,
        "world_size": dist.world_size(),
        "timing": {"wall_seconds": t.timer.elapsed(), "train_seconds": train_time,
                   "train_images_per_sec": samples_seen / max(train_time, 1e-9),
                   "feature_cache_build_seconds": (t.feature_cache.build_seconds
                                                   if t.feature_cache else None)},
        "paths": {"config": str(t.run_dir / "config.yml"),
                  "best": str(t.run_dir / "best"), "latest": str(t.run_dir / "latest"),
                  "log": str(t.run_dir / "train.log"),
                  "history": str(t.run_dir / "training_history.json"),
                  "visualdl": str(t.run_dir / "visualdl")},
    }
