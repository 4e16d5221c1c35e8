"""Checkpoint directories: round trip, atomic replacement, crash recovery, errors."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from vinocr.engine import checkpoint as ckpt_mod
from vinocr.engine.checkpoint import (CheckpointError, checkpoint_exists, load_checkpoint,
                                      resolve_checkpoint, save_checkpoint)
from vinocr.errors import VinocrError


def tensors(seed: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"backbone.conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "head.fc.bias": rng.standard_normal(7).astype(np.float32),
            "bn._mean": np.arange(5, dtype=np.float64),
            "counter": np.array(seed, dtype=np.int64)}


def trainer_state(epoch: int) -> dict:
    return {"epoch": epoch, "global_step": np.int64(epoch * 100), "best_metric": np.float32(0.5),
            "scheduler": {"last_epoch": epoch, "last_lr": 0.001},
            "rng": {"seed": 7, "numpy_state": np.arange(3, dtype=np.uint32)},
            "charset": ["0", "1", "A", " "], "config": {"model": {"name": "x"}, "lr": 1e-3},
            "technique": {"ema": {"decay": 0.999}}, "flag": np.bool_(True),
            "best": float("-inf")}


def snapshot(directory: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def assert_tensors_equal(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key])


def hidden_siblings(path: Path) -> list:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith("."))


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "latest"
    model, opt, ema = tensors(1), tensors(2), tensors(3)
    # A non-contiguous view must be stored as its values.
    model["transposed"] = np.arange(6, dtype=np.float32).reshape(2, 3).T
    out = save_checkpoint(path, model, trainer_state(3), optimizer_state=opt, ema_state=ema)
    assert out == path
    assert sorted(p.name for p in path.iterdir()) == ["ema.safetensors", "model.safetensors",
                                                       "optimizer.safetensors", "state.json"]
    loaded = load_checkpoint(path)
    assert_tensors_equal(loaded.model_state, model)
    assert_tensors_equal(loaded.optimizer_state, opt)
    assert_tensors_equal(loaded.ema_state, ema)
    assert loaded.path == path
    state = loaded.state
    assert state["epoch"] == 3 and state["global_step"] == 300 and type(state["global_step"]) is int
    assert state["best_metric"] == pytest.approx(0.5)
    assert state["rng"]["numpy_state"] == [0, 1, 2]
    assert state["flag"] is True and state["best"] == float("-inf")
    assert state["charset"] == ["0", "1", "A", " "]
    assert state["technique"] == {"ema": {"decay": 0.999}}
    assert loaded.meta["format_version"] == 1 and "saved_at" in loaded.meta
    assert hidden_siblings(path) == []


def test_optional_parts_absent(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "best", tensors(0), {"epoch": 1})
    loaded = load_checkpoint(path)
    assert loaded.optimizer_state is None and loaded.ema_state is None
    assert loaded.state == {"epoch": 1}


def test_bad_state_value_names_key_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "latest"
    with pytest.raises(CheckpointError, match=r"technique\.ema\.callback.*function"):
        save_checkpoint(path, tensors(0), {"technique": {"ema": {"callback": lambda: 1}}})
    with pytest.raises(CheckpointError, match=r"key 3 .*must be str"):
        save_checkpoint(path, tensors(0), {"table": {3: "x"}})
    with pytest.raises(CheckpointError, match="not an array"):
        save_checkpoint(path, {"w": [1, 2]}, {})
    assert not path.exists() and hidden_siblings(path) == []


def test_interrupted_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "latest"
    save_checkpoint(path, tensors(1), trainer_state(1), optimizer_state=tensors(2))
    before = snapshot(path)
    real_save = ckpt_mod.save_file

    def failing_save(tensors_, filename, metadata=None):
        if filename.endswith("optimizer.safetensors"):
            Path(filename).write_bytes(b"partial")  # a half-written file, then the "crash"
            raise OSError("No space left on device")
        return real_save(tensors_, filename, metadata=metadata)

    monkeypatch.setattr(ckpt_mod, "save_file", failing_save)
    with pytest.raises(CheckpointError, match="No space left"):
        save_checkpoint(path, tensors(5), trainer_state(5), optimizer_state=tensors(6))
    assert snapshot(path) == before
    assert hidden_siblings(path) == []
    assert load_checkpoint(path).state["epoch"] == 1


def test_failed_swap_rolls_back(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "latest"
    save_checkpoint(path, tensors(1), trainer_state(1))
    before = snapshot(path)
    real_replace = os.replace

    def failing_replace(src, dst):
        if ".tmp-" in os.fspath(src):  # the rename that would bring the new checkpoint in
            raise OSError("I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(CheckpointError, match="previous one is kept"):
        save_checkpoint(path, tensors(9), trainer_state(9))
    monkeypatch.undo()
    assert snapshot(path) == before
    assert hidden_siblings(path) == []
    assert_tensors_equal(load_checkpoint(path).model_state, tensors(1))


def test_crash_between_renames_is_recovered(tmp_path: Path, monkeypatch, caplog) -> None:
    run = tmp_path / "run"
    path = run / "latest"
    save_checkpoint(path, tensors(1), trainer_state(1))
    before = snapshot(path)
    real_replace = os.replace

    def crash(src, dst):
        # After old -> .old, the process "dies": neither the new rename nor the roll-back happens.
        if ".old-" in os.fspath(dst):
            return real_replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, tensors(2), trainer_state(2))
    monkeypatch.undo()
    assert not path.exists()
    assert [n for n in hidden_siblings(path) if ".latest.old-" in n]
    assert checkpoint_exists(path)
    with caplog.at_level(logging.WARNING, logger="vinocr.engine.checkpoint"):
        loaded = load_checkpoint(run)  # a run directory resolves to run/latest
    assert "interrupted save" in caplog.text
    assert loaded.path == path and loaded.state["epoch"] == 1
    assert snapshot(path) == before
    assert hidden_siblings(path) == []
    # The next save works normally and leaves no clutter.
    save_checkpoint(path, tensors(3), trainer_state(3))
    assert load_checkpoint(path).state["epoch"] == 3
    assert hidden_siblings(path) == []


def test_stale_leftovers_are_cleaned(tmp_path: Path) -> None:
    path = tmp_path / "latest"
    save_checkpoint(path, tensors(1), {"epoch": 1})
    # A crash after the second rename leaves .old; a dead writer leaves .tmp (pid 2**22+1 is above
    # Linux's default pid_max, so it is not running).
    (tmp_path / ".latest.old-1-aa").mkdir()
    (tmp_path / f".latest.tmp-{2 ** 22 + 1}-bb").mkdir()
    save_checkpoint(path, tensors(2), {"epoch": 2})
    assert hidden_siblings(path) == []


def test_resolve_forms(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_checkpoint(run / "latest", tensors(1), {"epoch": 1})
    save_checkpoint(run / "best", tensors(1), {"epoch": 1})
    assert resolve_checkpoint(run) == run / "latest"
    assert resolve_checkpoint(run / "best") == run / "best"
    assert resolve_checkpoint(run / "best" / "model.safetensors") == run / "best"
    (run / "latest" / "state.json").unlink()
    with pytest.raises(CheckpointError, match=r"latest/state\.json: missing"):
        resolve_checkpoint(run / "latest")
    other = tmp_path / "other"
    (other / "epoch_5").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="no complete 'latest'"):
        resolve_checkpoint(other)
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(tmp_path / "nope")
    stray = tmp_path / "stray.txt"
    stray.write_text("x")
    with pytest.raises(CheckpointError, match="not inside a checkpoint"):
        resolve_checkpoint(stray)
    assert not checkpoint_exists(tmp_path / "nope")


def test_refuses_to_replace_non_checkpoint_dir(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").write_text("precious")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        save_checkpoint(run, tensors(0), {})
    assert (run / "train.log").read_text() == "precious"


@pytest.mark.parametrize("damage", ["corrupt_model", "truncate_optimizer", "no_state",
                                    "bad_json", "missing_ema"])
def test_damaged_checkpoint_errors_name_the_file(tmp_path: Path, damage: str) -> None:
    path = save_checkpoint(tmp_path / "ck", tensors(1), {"epoch": 1},
                           optimizer_state=tensors(2), ema_state=tensors(3))
    target = {"corrupt_model": "model.safetensors", "truncate_optimizer": "optimizer.safetensors",
              "no_state": "state.json", "bad_json": "state.json",
              "missing_ema": "ema.safetensors"}[damage]
    file = path / target
    if damage == "corrupt_model":
        file.write_bytes(b"\xff" * file.stat().st_size)  # same size: only the parser can tell
    elif damage == "truncate_optimizer":
        file.write_bytes(file.read_bytes()[:-10])
    elif damage == "bad_json":
        file.write_text("{not json")
    else:
        file.unlink()
    with pytest.raises(VinocrError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert target in message and "\n" not in message


def test_newer_format_is_rejected(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ck", tensors(1), {})
    doc = json.loads((path / "state.json").read_text())
    doc["format_version"] = 99
    (path / "state.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(path)
