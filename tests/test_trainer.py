"""The trainer: exact resume, Ctrl-C safety, NaN guard, early stopping, run outputs."""
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from conftest import InterruptBefore, tiny_config  # the `data` fixture comes from conftest too
from vinocr.engine.checkpoint import load_checkpoint
from vinocr.engine.hooks import LossOutput, TrainerHooks
from vinocr.engine.trainer import Trainer, TrainingDiverged


def weights(run: Path, name: str = "latest"):
    return load_checkpoint(run / name).model_state


class InterruptAt(TrainerHooks):
    """Simulates Ctrl-C in the middle of an epoch."""

    name = "interrupt"

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step, self.calls = epoch, step, 0

    def loss(self, out, logits, batch, run):
        if run.epoch == self.epoch:
            self.calls += 1
            if self.calls == self.step:
                raise KeyboardInterrupt
        return out


def test_max_steps_ends_the_run_and_its_lr_schedule(data, tmp_path, caplog):
    # 16 samples / batch 4 x 4 epochs = 16 steps, capped at 6: the cosine anneals within the 6
    lrs = []
    trainer = Trainer(tiny_config(data, tmp_path / "run", Train__max_steps=6,
                                  Scheduler__min_lr=1e-4), hooks=[RecordLr(lrs)])
    assert trainer.planned_steps == 6
    assert trainer.fit()["global_step"] == 6
    assert len(lrs) == 6 and lrs[-1] == pytest.approx(1e-4) and max(lrs) == pytest.approx(0.01)
    assert Trainer(tiny_config(data, tmp_path / "long")).planned_steps == 16
    # resuming with another plan (max_steps dropped) says the schedule changes
    with caplog.at_level(logging.WARNING, logger="vinocr.engine.trainer"):
        Trainer(tiny_config(data, tmp_path / "run"), resume=str(tmp_path / "run"))
    assert "planned for 6 optimizer steps as one of 16" in caplog.text


class RecordLr(TrainerHooks):
    name = "record_lr"

    def __init__(self, lrs) -> None:
        self.lrs = lrs

    def loss(self, out, logits, batch, run):
        self.lrs.append(run.lr)
        return out


def test_resume_is_exact_and_ctrl_c_keeps_latest(data, tmp_path):
    straight = tmp_path / "straight"
    report = Trainer(tiny_config(data, straight)).fit()
    assert report["status"] == "completed" and report["epochs_done"] == 4
    # the same 4-epoch run stopped between epochs 2 and 3, then resumed for the other 2
    split = tmp_path / "split"
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_config(data, split), hooks=[InterruptBefore(2)]).fit()
    assert load_checkpoint(split / "latest").state["epoch"] == 2
    Trainer(tiny_config(data, split), resume=str(split)).fit()
    a, b = weights(straight), weights(split)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # Ctrl-C during epoch 3: latest still holds epoch 2, resuming ends bit-identical
    ctrl_c = tmp_path / "ctrl_c"
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_config(data, ctrl_c), hooks=[InterruptAt(2, 2)]).fit()
    assert load_checkpoint(ctrl_c / "latest").state["epoch"] == 2
    assert json.loads((ctrl_c / "report.json").read_text())["status"] == "interrupted"
    Trainer(tiny_config(data, ctrl_c), resume=str(ctrl_c)).fit()
    c = weights(ctrl_c)
    assert all(np.array_equal(a[k], c[k]) for k in a)


def test_run_directory_contents(data, tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_config(data, run, Train__epochs=2, Train__save_epoch_step=1,
                        visualdl=True)).fit()
    for name in ("config.yml", "train.log", "training_history.json", "report.json",
                 "best/model.safetensors", "latest/state.json", "epoch_1/model.safetensors",
                 "epoch_2/state.json"):
        assert (run / name).exists(), name
    history = json.loads((run / "training_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and "seq_acc" in history[0]
    report = json.loads((run / "report.json").read_text())
    assert report["data"]["train_samples"] == 16 and report["data"]["eval_samples"] == 4
    assert report["technique"]["name"] == "none" and report["timing"]["train_images_per_sec"] > 0
    state = load_checkpoint(run / "latest").state
    assert state["charset"][0] == "0" and state["config"]["Global"]["seed"] == 5
    from visualdl import LogReader

    files = list((run / "visualdl").glob("*"))
    reader = LogReader(file_path=str(files[0]))
    tags = set(reader.get_tags().get("scalar", []))
    for tag in ("train/loss", "train/lr", "gradients/total_norm", "val/seq_acc", "val/char_acc",
                "val/ned"):
        assert tag in tags, (tag, tags)


class NanLoss(TrainerHooks):
    name = "nan"

    def __init__(self, steps) -> None:
        self.steps, self.calls = set(steps), 0

    def loss(self, out, logits, batch, run):
        self.calls += 1
        if self.calls in self.steps:
            return LossOutput(out.loss * float("nan"), out.terms)
        return out


def test_nan_guard_skips_then_stops_with_diagnostic(data, tmp_path):
    run = tmp_path / "skip"
    report = Trainer(tiny_config(data, run, Train__epochs=1), hooks=[NanLoss({2})]).fit()
    assert report["status"] == "completed" and report["skipped_nonfinite_steps"] == 1
    run = tmp_path / "stop"
    with pytest.raises(TrainingDiverged, match=r"3 consecutive steps with a non-finite loss.*lr .*latest"):
        Trainer(tiny_config(data, run, Global__nan_patience=3),
                hooks=[NanLoss(range(5, 100))]).fit()
    assert load_checkpoint(run / "latest").state["epoch"] >= 1  # work before it is kept


def test_early_stopping(data, tmp_path):
    run = tmp_path / "es"
    cfg = tiny_config(data, run, Train__epochs=6, Optimizer__lr=1e-12, Scheduler__name="constant", Scheduler__warmup_epochs=0.0,
                      EarlyStopping__patience=2)
    report = Trainer(cfg).fit()
    assert report["status"] == "early_stopped" and report["epochs_done"] == 3


def test_too_few_frames_is_a_config_error(data, tmp_path):
    from vinocr.errors import ConfigError

    with pytest.raises(ConfigError, match="CTC frames"):
        Trainer(tiny_config(data, tmp_path / "r", Global__image_shape=[3, 48, 32]))


def test_pretrained_model_starts_from_earlier_run(data, tmp_path):
    first = tmp_path / "first"
    Trainer(tiny_config(data, first, Train__epochs=1)).fit()
    second = Trainer(tiny_config(data, tmp_path / "second", Global__pretrained_model=str(first)))
    best = load_checkpoint(first / "best").model_state
    now = {k: v.numpy() for k, v in second.model.state_dict().items()}
    assert all(np.array_equal(best[k], now[k]) for k in best)


def test_a_second_interrupt_while_reporting_does_not_cost_the_report(data, tmp_path, monkeypatch):
    """Ctrl-C twice, or a supervisor's SIGINT right after the first: the interrupted run still
    writes report.json (the second signal waits until it is written)."""
    import json
    import os
    import signal

    import vinocr.engine.trainer as trainer_module
    from vinocr.engine.trainer import Trainer

    cfg = tiny_config(data, tmp_path / "run", epochs=3)
    real_validate, real_report = trainer_module.validate, trainer_module.run_report
    calls = {"validate": 0}

    def validate(*args, **kwargs):
        calls["validate"] += 1
        if calls["validate"] == 2:
            raise KeyboardInterrupt  # the first Ctrl-C, while validating epoch 2
        return real_validate(*args, **kwargs)

    def run_report(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the second, while the report is being built
        return real_report(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "validate", validate)
    monkeypatch.setattr(trainer_module, "run_report", run_report)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg).fit()
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["status"] == "interrupted" and report["epochs_done"] == 2  # 2nd unvalidated
