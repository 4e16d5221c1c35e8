"""Data parallel at the failure points tiny runs never reach: rank 0 busy far longer than gloo's
fixed 30 s collective timeout (a real-sized validation set), a rank timing out, and resuming a run
whose validation was cut off. Through the real command line, 2 processes on CPU.

Rank 0 is made slow with a ``sitecustomize`` module on the subprocesses' PYTHONPATH that delays
its validation: the library carries no test switches."""
import json
import subprocess
import sys
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest

from conftest import make_label_dir
from test_distributed import run_config
from vinocr.engine.launch import OutputFilter, rank_failure

REPO = Path(__file__).resolve().parents[1]

SLOW_RANK0 = '''
import os, time
_delay = float(os.environ.get("VINOCR_TEST_RANK0_VALIDATION_DELAY", "0"))
if _delay and os.environ.get("PADDLE_TRAINER_ID") == "0":
    from vinocr.engine import trainer as _trainer
    _original = _trainer.Trainer.predict_eval_set
    _calls = []

    def _slow(self):
        if not _calls:  # the first validation only
            time.sleep(_delay)
        _calls.append(1)
        return _original(self)

    _trainer.Trainer.predict_eval_set = _slow
'''


def write_run(root: Path, n_val: int = 41) -> Path:
    rng = np.random.default_rng(3)
    labels = ["".join(rng.choice(list("ABCDEF0123456789"), 5)) for _ in range(32 + n_val)]
    make_label_dir(root, labels[:32], name="train.txt", subdir="tr")
    make_label_dir(root, labels[32:], name="val.txt", subdir="va")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(SLOW_RANK0)
    # 41 crops: 21 per rank, rank 1's last one a repeat (the sampler pads by wrapping around).
    # Batches of 1 give each crop the same computation however the set is sharded, so the
    # metrics can be compared exactly.
    return run_config(root, "run", Global={"image_shape": [3, 32, 64], "visualdl": True,
                                           "histogram_every_epochs": 1, "seed": 2},
                      Eval={"batch_size": 1})


def finetune(root: Path, *args: str, delay: float = 0.0) -> Tuple[int, str]:
    import os

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root / "site"), str(REPO)]),
               VINOCR_TEST_RANK0_VALIDATION_DELAY=str(delay), VINOCR_NO_PROGRESS="1")
    res = subprocess.run([sys.executable, str(REPO / "tools/finetune.py"), *args], env=env,
                         capture_output=True, text=True, timeout=900)
    return res.returncode, res.stderr


def single_process_metrics(cfg_path: Path, checkpoint: Path):
    """Validation of ``checkpoint`` by one process: the numbers a 2-process run must report."""
    from vinocr.config import load_config
    from vinocr.engine.trainer import Trainer

    cfg = load_config([cfg_path], [f"Global.run_dir={checkpoint.parent / 'single'}",
                                   f"Global.pretrained_model={checkpoint}",
                                   "Global.visualdl=false"])
    return Trainer(cfg).validate(0)


def test_rank0_busy_longer_than_gloo_timeout_finishes_with_single_process_metrics(tmp_path):
    # Before: rank 1 waited in a gloo broadcast while rank 0 validated alone; after ~30 s gloo
    # timed out, the launcher killed rank 0 and no checkpoint was left.
    cfg = write_run(tmp_path)
    code, err = finetune(tmp_path, "-c", str(cfg), "-o", f"Global.run_dir={tmp_path / 'run'}",
                         "--nproc", "2", delay=40)
    logs = "".join(p.read_text() for p in (tmp_path / "run" / "launch_logs").glob("*log*"))
    assert code == 0, err[-2000:] + logs[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["status"] == "completed" and report["world_size"] == 2
    assert (tmp_path / "run" / "best").is_dir() and (tmp_path / "run" / "latest").is_dir()
    history = json.loads((tmp_path / "run" / "training_history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    # Sharded validation counts every crop once (the padded repeats are dropped) and gives
    # the numbers one process computes from the same weights.
    single = single_process_metrics(cfg, tmp_path / "run" / "latest")
    for name in ("seq_acc", "char_acc", "ned"):
        assert history[-1][name] == pytest.approx(single[name], rel=1e-9, abs=1e-12), name
    # The launcher's configuration dump and glog lines stay out of the terminal.
    assert "LAUNCH INFO" not in err and "Traceback" not in err


def test_rank_timeout_is_one_line_keeps_training_and_resumes(tmp_path):
    cfg = write_run(tmp_path)
    run = tmp_path / "run"
    code, err = finetune(tmp_path, "-c", str(cfg), "-o", f"Global.run_dir={run}",
                         "Global.sync_timeout=3", "--nproc", "2", delay=30)
    assert code == 2, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("vinocr-finetune:")]
    assert len(lines) == 1, err[-3000:]
    assert "rank 1 timed out after 3 s waiting for rank 0" in lines[0], lines[0]
    assert "Traceback" not in err and "LAUNCH" not in err, err[-3000:]
    # The epoch's training was saved before validation began.
    from vinocr.engine.checkpoint import load_checkpoint

    state = load_checkpoint(run / "latest").state
    assert state["epoch"] == 1 and state["pending_epoch"]["epoch"] == 1
    # Resuming validates the saved epoch, then trains the rest.
    code, err = finetune(tmp_path, "--resume", str(run), "--nproc", "2")
    assert code == 0, err[-3000:]
    history = json.loads((run / "training_history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert all("seq_acc" in r for r in history)


def test_existing_run_needs_resume_or_overwrite_and_one_run_at_a_time(tmp_path):
    from vinocr.engine.rundir import claim_run_dir
    from vinocr.errors import VinocrError

    run = tmp_path / "run"
    (run / "latest").mkdir(parents=True)
    (run / "latest" / "state.json").write_text("{}")
    with pytest.raises(VinocrError, match="already holds a run.*--resume.*--overwrite"):
        claim_run_dir(run, resume=False, overwrite=False)
    assert (run / "latest" / "state.json").exists()
    # Another process holding the lock: refused while it lives.
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; sys.path.insert(0, sys.argv[1]);"
                               "from pathlib import Path;"
                               "from vinocr.engine.rundir import lock_run_dir;"
                               "lock_run_dir(Path(sys.argv[2])); print('locked', flush=True);"
                               "time.sleep(60)", str(REPO), str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(VinocrError, match="in use by another training run"):
            claim_run_dir(run, resume=True, overwrite=False)
    finally:
        holder.kill()
        holder.wait()
    claim_run_dir(run, resume=False, overwrite=True)   # the lock died with its holder
    assert not (run / "latest").exists()


def test_output_filter_keeps_progress_and_logs_but_not_launcher_noise():
    shown, kept = [], []
    f = OutputFilter(shown.append, kept.append)
    f.feed("LAUNCH INFO 2026-12-02 05:51:54,994 nnodes: 1\nI1202 05:51:55.870394  3746 "
           "tcp_store.cc:336] create libuv server\n12:00:01 INFO vinocr.engine.trainer: epoch 1/2"
           "\nepoch 1/2:  50%|#####|\rTraceback (most recent call last):\n  File \"x.py\", line 1,"
           " in <module>\nRuntimeError: gloo TIMEOUT\n{\n  \"status\": \"completed\"\n}\n")
    f.close()
    assert shown == ["12:00:01 INFO vinocr.engine.trainer: epoch 1/2\n",
                     "epoch 1/2:  50%|#####|\r", "{\n", "  \"status\": \"completed\"\n", "}\n"]
    assert any("LAUNCH INFO" in k for k in kept) and any("gloo TIMEOUT" in k for k in kept)


def test_rank_failure_prefers_a_reported_error_over_a_crash(tmp_path):
    (tmp_path / "workerlog.0").write_text("Traceback (most recent call last):\n"
                                          "RuntimeError: Connection reset by peer\n")
    (tmp_path / "workerlog.1").write_text("vinocr-finetune: error: rank 1 timed out after 3 s\n")
    assert rank_failure(tmp_path, "vinocr-finetune") == (1, "rank 1 timed out after 3 s", 2)
    (tmp_path / "workerlog.1").unlink()
    assert rank_failure(tmp_path, "vinocr-finetune") == (
        0, "RuntimeError: Connection reset by peer", 1)


def test_finetune_into_a_run_directory_needs_resume_or_overwrite(tmp_path):
    # Before: a second fine-tune into the same directory silently replaced best/ and latest/.
    from vinocr.cli.finetune import main
    from vinocr.engine.checkpoint import load_checkpoint

    cfg = write_run(tmp_path)
    run = tmp_path / "run"
    args = ["-c", str(cfg), "--nproc", "1", "-o", f"Global.run_dir={run}", "Train.epochs=1",
            "Global.visualdl=false"]
    assert main(args) == 0
    saved = load_checkpoint(run / "best").meta
    assert main(args) == 2
    assert load_checkpoint(run / "best").meta == saved       # untouched
    assert main(args + ["--overwrite"]) == 0
    assert load_checkpoint(run / "best").meta != saved


def test_rank_failure_reads_only_this_launch_and_names_a_killed_rank(tmp_path):
    # A resumed run appends to the logs of the run it continues: an old "interrupted" must not
    # turn a kill -9 into a Ctrl-C.
    (tmp_path / "workerlog.0").write_text("vinocr-finetune: interrupted\n")
    (tmp_path / "workerlog.1").write_text("vinocr-finetune: interrupted\n")
    (tmp_path / "launcher.log").write_text("$ old launch\n")
    since = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    with open(tmp_path / "workerlog.0", "a") as f:
        f.write("RuntimeError: [Gloo] connection closed by peer\n")
    with open(tmp_path / "launcher.log", "a") as f:
        f.write("LAUNCH INFO x Container rank 1 status failed cmd [...] code -9 log workerlog.1\n")
    n, cause, code = rank_failure(tmp_path, "vinocr-finetune", since)
    assert (n, code) == (1, 1) and "rank 1 was killed by signal 9" in cause


def test_output_filter_keeps_a_character_split_across_reads():
    shown = []
    f = OutputFilter(shown.append, lambda text: None)
    data = "epoch 1/2: \u2588\u2588|\r".encode()
    cut = data.index("\u2588".encode()) + 1          # inside the 3-byte character
    f.feed_bytes(data[:cut])
    f.feed_bytes(data[cut:])
    assert shown == ["epoch 1/2: \u2588\u2588|\r"]


def test_sigterm_to_the_launching_process_stops_every_rank(tmp_path):
    """A supervisor's SIGTERM reaches only the command's own process: it must stop the ranks
    too (exit 130, no process left behind, `latest` intact), not leave them training as
    orphans, which is what Paddle's own SIGTERM handler did."""
    import os
    import signal
    import time

    from vinocr.engine.checkpoint import load_checkpoint

    cfg = write_run(tmp_path)
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(REPO)]),
               VINOCR_TEST_RANK0_VALIDATION_DELAY="120", VINOCR_NO_PROGRESS="1")
    proc = subprocess.Popen([sys.executable, str(REPO / "tools/finetune.py"), "-c", str(cfg),
                             "-o", f"Global.run_dir={run}", "--nproc", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        # Rank 0 is validating epoch 1 (held there by the delay) once `latest` is pending.
        while not ((run / "latest").exists()
                   and load_checkpoint(run / "latest").state.get("pending_epoch")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(1)
        proc.send_signal(signal.SIGTERM)   # this process only, not its group
        code = proc.wait(timeout=150)
        err = proc.stderr.read()
        assert code == 130, err[-3000:]
        assert err.strip().splitlines()[-1] == "vinocr-finetune: interrupted", err[-3000:]
        left = subprocess.run(["pgrep", "-f", str(run)], capture_output=True, text=True).stdout
        assert not left.strip(), f"processes left behind: {left}"
        assert load_checkpoint(run / "latest").state["epoch"] == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-f", str(run)])
