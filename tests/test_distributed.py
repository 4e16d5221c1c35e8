"""CPU data parallel (gloo) through the real command line: ranks stay in step, the feature cache
works sharded across processes, unfreezing reaches every rank, and ``--nproc auto`` picks a count
that splits the global batch."""
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import yaml

from conftest import assert_state_close, make_label_dir
from vinocr.cli.finetune import auto_nproc, resolve_nproc
from vinocr.engine.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def write_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    labels = ["".join(rng.choice(list("ABCDEF0123456789"), 5)) for _ in range(20)]
    make_label_dir(root, labels[:16], name="train.txt", subdir="tr")
    make_label_dir(root, labels[16:], name="val.txt", subdir="va")


def run_config(root: Path, run: str, **sections: Dict[str, Any]) -> Path:
    cfg = {
        "Global": {"charset": "plate", "run_dir": str(root / run),
                   "image_shape": [3, 48, 96], "max_text_length": 8, "visualdl": False},
        "Architecture": {"name": "crnn", "pretrained": None,
                         "params": {"hidden": 8, "channels": [4, 4, 8, 8]}},
        "Decode": {"method": "greedy"},
        "Optimizer": {"name": "adam", "lr": 0.01},
        # Train.batch_size is the global batch: 4 samples per process on 2 processes.
        "Train": {"dataset": {"type": "label_file", "label_files": [str(root / "train.txt")]},
                  "batch_size": 8, "num_workers": 0, "epochs": 2},
        "Eval": {"dataset": {"type": "label_file", "label_files": [str(root / "val.txt")]},
                 "num_workers": 0},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    path = root / f"{run}.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def finetune(root: Path, config: Path, run: str, *extra: str) -> Dict[str, Any]:
    res = subprocess.run([sys.executable, str(REPO / "tools/finetune.py"), "-c", str(config),
                          *extra], capture_output=True, text=True, timeout=600)
    logs = "".join(p.read_text() for p in (root / run / "launch_logs").glob("workerlog.*"))
    assert res.returncode == 0, res.stderr[-2000:] + logs[-3000:]
    return json.loads((root / run / "report.json").read_text())


def rank_digests(root: Path, run: str):
    return [json.loads((root / run / f"rank{r}_weights.json").read_text())["weights_sha1"]
            for r in (0, 1)]


def test_two_process_cpu_run_ends_with_identical_weights(tmp_path: Path):
    write_data(tmp_path)
    report = finetune(tmp_path, run_config(tmp_path, "run"), "run", "--nproc", "2")
    digests = rank_digests(tmp_path, "run")
    assert digests[0] == digests[1]
    assert report["world_size"] == 2 and report["status"] == "completed"
    # 16 samples, global batch 8: 2 steps per epoch whatever the process count
    assert report["global_step"] == 4
    assert load_checkpoint(tmp_path / "run" / "latest").state["world_size"] == 2
    # --resume with --nproc auto continues on the run's own process count
    assert resolve_nproc("auto", 8, resume=str(tmp_path / "run")) == 2
    assert resolve_nproc("1", 8, resume=str(tmp_path / "run")) == 1


PPOCR = {"name": "ppocrv4_mobile", "pretrained": None, "params": {"neck_depth": 1}}


def test_two_process_feature_cache_trains_like_uncached(tmp_path: Path):
    # Each process caches the features of its own shard and syncs the suffix's gradients by
    # hand (the DataParallel wrapper is bypassed): the result must equal uncached training.
    write_data(tmp_path)
    weights = {}
    for cache in (True, False):
        run = f"cache_{cache}"
        cfg = run_config(tmp_path, run, Architecture=PPOCR,
                         Train={"epochs": 3, "feature_cache": {"enabled": cache, "views": 2}})
        report = finetune(tmp_path, cfg, run, "--nproc", "2", "--technique", "frozen_backbone")
        assert report["world_size"] == 2
        built = report["timing"]["feature_cache_build_seconds"]
        assert (built is not None and built > 0) if cache else built is None
        digests = rank_digests(tmp_path, run)
        assert digests[0] == digests[1]
        weights[cache] = load_checkpoint(tmp_path / run / "latest").model_state
    moved = [k for k in weights[True] if "ctc_head" in k]
    assert moved
    assert_state_close(weights[True], weights[False], rtol=1e-4)


def test_two_process_gradual_unfreezing_keeps_ranks_in_step(tmp_path: Path):
    # The neck and then everything unfreeze mid-run: their gradients must be all-reduced from
    # that epoch on, or each rank's copy drifts on its own shard.
    write_data(tmp_path)
    schedule = {"name": "gradual_unfreeze", "schedule": {0: ["head"], 1: ["neck"], 2: ["all"]}}
    cfg = run_config(tmp_path, "gradual", Architecture=PPOCR, Technique=schedule,
                     Train={"epochs": 3, "feature_cache": {"enabled": True, "views": 1}})
    report = finetune(tmp_path, cfg, "gradual", "--nproc", "2")
    assert report["status"] == "completed"
    digests = rank_digests(tmp_path, "gradual")
    assert digests[0] == digests[1]


@pytest.mark.parametrize("batch,devices,expected", [
    (16, 2, 2), (32, 2, 2), (8, 2, 1), (4, 2, 1), (32, 64, 4), (24, 4, 3), (30, 4, 3), (16, 1, 1)])
def test_auto_nproc_splits_the_global_batch(batch, devices, expected):
    n = auto_nproc(batch, devices)
    assert n == expected
    assert batch % n == 0
