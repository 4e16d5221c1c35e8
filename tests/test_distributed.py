"""A 2-process CPU data-parallel run (gloo) through the real command line."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from conftest import make_label_dir

REPO = Path(__file__).resolve().parents[1]


def test_two_process_cpu_run_ends_with_identical_weights(tmp_path: Path):
    rng = np.random.default_rng(0)
    labels = ["".join(rng.choice(list("ABCDEF0123456789"), 5)) for _ in range(20)]
    make_label_dir(tmp_path, labels[:16], name="train.txt", subdir="tr")
    make_label_dir(tmp_path, labels[16:], name="val.txt", subdir="va")
    cfg = {
        "Global": {"charset": "plate", "run_dir": str(tmp_path / "run"),
                   "image_shape": [3, 48, 96], "max_text_length": 8, "visualdl": False},
        "Architecture": {"name": "crnn", "pretrained": None,
                         "params": {"hidden": 8, "channels": [4, 4, 8, 8]}},
        "Decode": {"method": "greedy"},
        "Optimizer": {"name": "adam", "lr": 0.01},
        "Train": {"dataset": {"type": "label_file", "label_files": [str(tmp_path / "train.txt")]},
                  "batch_size": 4, "num_workers": 0, "epochs": 2},
        "Eval": {"dataset": {"type": "label_file", "label_files": [str(tmp_path / "val.txt")]},
                 "num_workers": 0},
    }
    (tmp_path / "cfg.yml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([sys.executable, str(REPO / "tools/finetune.py"), "-c",
                          str(tmp_path / "cfg.yml"), "--nproc", "2"],
                         capture_output=True, text=True, timeout=300)
    logs = "".join(p.read_text() for p in (tmp_path / "run/launch_logs").glob("workerlog.*"))
    assert res.returncode == 0, res.stderr[-2000:] + logs[-3000:]
    ranks = [json.loads((tmp_path / f"run/rank{r}_weights.json").read_text()) for r in (0, 1)]
    assert ranks[0]["weights_sha1"] == ranks[1]["weights_sha1"]
    report = json.loads((tmp_path / "run/report.json").read_text())
    assert report["world_size"] == 2 and report["status"] == "completed"
    # each rank saw half of the 16 samples per epoch: 2 steps of 4 per epoch per rank
    assert report["global_step"] == 4
