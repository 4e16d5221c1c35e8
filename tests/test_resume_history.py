"""Resuming keeps everything an uninterrupted run would have: the epochs of the history, early
stopping's memory of them, and an epoch whose validation was cut off (Ctrl-C or a failed rank)."""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import InterruptBefore, tiny_config  # the `data` fixture comes from conftest too
from vinocr.engine.checkpoint import load_checkpoint
from vinocr.engine.trainer import Trainer


def history(run: Path):
    return json.loads((run / "training_history.json").read_text())


def test_resume_keeps_the_history_and_early_stopping_counts_it(data, tmp_path):
    # min_delta 2 on seq_acc (in [0, 1]) never counts as improvement after the first epoch, so an
    # uninterrupted run stops after 1 + patience epochs.
    stop = dict(EarlyStopping__patience=2, EarlyStopping__min_delta=2.0)
    straight = tmp_path / "straight"
    report = Trainer(tiny_config(data, straight, epochs=6, **stop)).fit()
    assert report["status"] == "early_stopped" and report["epochs_done"] == 3
    split = tmp_path / "split"
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_config(data, split, epochs=6, **stop), hooks=[InterruptBefore(1)]).fit()
    resumed = Trainer(tiny_config(data, split, epochs=6, **stop), resume=str(split)).fit()
    # Before: the resumed run forgot epoch 1, reset the early-stopping count and trained on.
    assert resumed["status"] == "early_stopped" and resumed["epochs_done"] == 3
    assert [r["epoch"] for r in history(split)] == [1, 2, 3]
    assert [r["seq_acc"] for r in history(split)] == [r["seq_acc"] for r in history(straight)]


def test_ctrl_c_during_validation_keeps_the_epoch_and_resume_is_exact(data, tmp_path,
                                                                     monkeypatch):
    straight = tmp_path / "straight"
    Trainer(tiny_config(data, straight, epochs=3)).fit()
    run = tmp_path / "run"
    original, calls = Trainer.predict_eval_set, []

    def interrupted_second_validation(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "predict_eval_set", interrupted_second_validation)
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_config(data, run, epochs=3)).fit()
    monkeypatch.setattr(Trainer, "predict_eval_set", original)
    # Before: `latest` still held epoch 1, and epoch 2's training was lost.
    state = load_checkpoint(run / "latest").state
    assert state["epoch"] == 2 and state["pending_epoch"]["epoch"] == 2
    assert json.loads((run / "report.json").read_text())["status"] == "interrupted"
    Trainer(tiny_config(data, run, epochs=3), resume=str(run)).fit()
    a, b = load_checkpoint(straight / "latest"), load_checkpoint(run / "latest")
    assert all(np.array_equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    assert [r["epoch"] for r in history(run)] == [1, 2, 3]
    assert [r["seq_acc"] for r in history(run)] == [r["seq_acc"] for r in history(straight)]
    assert b.state["pending_epoch"] is None


def test_pretrained_run_that_covers_nothing_is_an_error_unless_allowed(data, tmp_path):
    # Before: "0 loaded, N missing" and training went on from random weights with exit 0.
    from vinocr.engine.checkpoint import save_checkpoint
    from vinocr.models.weights import WeightsError

    empty = save_checkpoint(tmp_path / "empty", {"unrelated.weight": np.zeros(3, "float32")},
                            {"epoch": 1})
    cfg = tiny_config(data, tmp_path / "run", epochs=1, Global__pretrained_model=str(empty))
    with pytest.raises(WeightsError, match="Global.pretrained_model.*0 loaded.*allow_missing"):
        Trainer(cfg)
    allowed = tiny_config(data, tmp_path / "run2", epochs=1, Global__pretrained_model=str(empty),
                          Architecture__allow_missing=True)
    Trainer(allowed)
