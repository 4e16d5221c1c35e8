"""Loader faults: a corrupt image must not hang the DataLoader, and a killed trainer must not leave
its DataLoader workers behind.

Both failures show up as "never returns" (Paddle's reader blocks forever once a sample raises; an
orphaned worker lives forever), so the loaders run in a child process with a timeout, and the
child gets its own process group so a hung run is killed together with its workers.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest

from conftest import VALID_VINS, text_image, write_png

TESTS_DIR = Path(__file__).resolve().parent
# Generous: paddle's import alone takes seconds on the shared 2-core CI machine. A hang is forever,
# so the limit only decides how long a regression takes to fail.
TIMEOUT = 120

LABELS = VALID_VINS + VALID_VINS[:2]   # 7 samples
EMPTY, CORRUPT = 2, 5                  # zero-byte PNG; JPEG cut after its first bytes


def make_faulty_label_file(root: Path) -> Path:
    """7 samples where sample 2 is a zero-byte PNG and sample 5 a truncated JPEG."""
    lines = []
    for i, label in enumerate(LABELS):
        rel = f"images/{i:05d}.{'jpg' if i == CORRUPT else 'png'}"
        if i == EMPTY:
            (root / "images").mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"")
        elif i == CORRUPT:
            ok, buf = cv2.imencode(".jpg", text_image(label, seed=i))
            assert ok
            # A JPEG cut in its image data still decodes (libjpeg pads it with grey); cut inside
            # the header it does not.
            (root / rel).write_bytes(buf.tobytes()[:40])
        else:
            write_png(root / rel, text_image(label, seed=i))
        lines.append(f"{rel}\t{label}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "labels.txt"


def run_child(script: str, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh Python; on timeout kill its whole process group and fail."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"loader hung (killed after {timeout}s); stderr tail:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


CORRUPT_SCRIPT = r"""
import json, logging, sys
from pathlib import Path
import numpy as np
from vinocr.data import LabelFileDataset
from vinocr.data.loader import RecognitionSamples, build_loader
from vinocr.errors import DataError

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
label_file, workers = Path(sys.argv[1]), int(sys.argv[2])
dataset = LabelFileDataset(label_file, charset="vin")
samples = RecognitionSamples(dataset, "vin", (3, 48, 160), 20)
loader = build_loader(samples, 3, shuffle=False, num_workers=workers)

# 1. Plain iteration must finish. (The new API is imported only afterwards, so today's code shows
#    the hang itself rather than an ImportError.)
batches = []
for images, labels, lengths, index in loader:
    batches.append({"shape": list(images.shape), "index": np.asarray(index).tolist(),
                    "labels": np.asarray(labels).tolist(),
                    "finite": bool(np.isfinite(np.asarray(images)).all())})

from vinocr.data.loader import BadSampleTracker, bad_indices, good_rows

# 2. Lenient: every bad sample is reported once, the batches keep their shape.
lenient = BadSampleTracker()
bad, good = [], []
for _ in range(2):   # two epochs: the second must not report the same samples again
    for images, labels, lengths, index in loader:
        bad.append(bad_indices(index))
        good.append(good_rows(index).tolist())
        lenient.record(dataset, bad_indices(index), strict=False, where="train")

# 3. Strict: the first bad sample stops the run with the real error, raised in the main thread
#    while the loader (and its workers) are still running; the process must still exit.
strict_error = None
try:
    for images, labels, lengths, index in loader:
        BadSampleTracker().record(dataset, bad_indices(index), strict=True, where="train")
except DataError as exc:
    strict_error = str(exc)

print(json.dumps({"batches": batches, "bad": bad, "good": good,
                  "skipped": [list(s) for s in lenient.skipped], "strict_error": strict_error}))
"""


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_images_do_not_hang_the_loader(tmp_path: Path, workers: int):
    label_file = make_faulty_label_file(tmp_path / "ds")
    result = run_child(CORRUPT_SCRIPT, str(label_file), str(workers))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])

    from vinocr.charset import load_charset
    from vinocr.data.loader import encode_ctc_label

    cs = load_charset("vin")
    # Batches keep fixed shapes; failed rows carry -(i + 1) and the next readable sample's label.
    batches = out["batches"]
    assert [b["shape"] for b in batches] == [[3, 3, 48, 160], [3, 3, 48, 160], [1, 3, 48, 160]]
    assert all(b["finite"] for b in batches)
    assert [b["index"] for b in batches] == [[0, 1, -(EMPTY + 1)], [3, 4, -(CORRUPT + 1)], [6]]
    assert batches[0]["labels"][2] == encode_ctc_label(LABELS[EMPTY + 1], cs, 20).tolist()
    assert batches[1]["labels"][2] == encode_ctc_label(LABELS[CORRUPT + 1], cs, 20).tolist()

    assert out["bad"] == [[EMPTY], [CORRUPT], []] * 2
    assert out["good"] == [[True, True, False], [True, True, False], [True]] * 2

    skipped = dict(out["skipped"])
    assert sorted(skipped) == [EMPTY, CORRUPT]
    assert "labels.txt:3" in skipped[EMPTY] and "00002.png" in skipped[EMPTY]
    assert "0 bytes" in skipped[EMPTY]
    assert "labels.txt:6" in skipped[CORRUPT] and "00005.jpg" in skipped[CORRUPT]
    # one warning per bad sample, not per epoch or per batch
    warnings = [line for line in result.stderr.splitlines() if "skipped unreadable sample" in line]
    assert len(warnings) == 2, warnings

    error = out["strict_error"]
    assert error is not None and "\n" not in error
    assert "labels.txt:3" in error and "00002.png" in error and "0 bytes" in error


def test_substitute_when_nothing_loads(tmp_path: Path):
    """All images unreadable: a zero image with the sample's own label, index still negative."""
    from vinocr.data import LabelFileDataset
    from vinocr.data.loader import RecognitionSamples, bad_indices, encode_ctc_label, good_rows

    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    for i in range(3):
        (root / f"images/{i}.png").write_bytes(b"")
    (root / "labels.txt").write_text("".join(f"images/{i}.png\t{LABELS[i]}\n" for i in range(3)),
                                     encoding="utf-8")
    samples = RecognitionSamples(LabelFileDataset(root / "labels.txt", charset="vin"), "vin",
                                 (3, 48, 160), 20)
    image, ids, length, index = samples[1]
    assert image.shape == (3, 48, 160) and image.dtype == np.float32 and not image.any()
    assert ids.tolist() == encode_ctc_label(LABELS[1], samples.charset, 20).tolist()
    assert int(length) == 17 and int(index) == -2
    assert bad_indices(np.array([-2, 0, -1, -2])) == [1, 0]
    assert good_rows(np.array([-2, 0, -1, 3])).tolist() == [False, True, False, True]


def test_tracker_accepts_samples_and_tensors(tmp_path: Path):
    import paddle

    from vinocr.data.loader import BadSampleTracker, RecognitionSamples, bad_indices
    from vinocr.data import LabelFileDataset
    from vinocr.errors import DataError

    samples = RecognitionSamples(LabelFileDataset(make_faulty_label_file(tmp_path / "ds"),
                                                  charset="vin"), "vin", (3, 48, 160), 20)
    index = paddle.to_tensor(np.array([0, -(EMPTY + 1), -(CORRUPT + 1)], np.int64))
    assert bad_indices(index) == [EMPTY, CORRUPT]
    tracker = BadSampleTracker()
    tracker.record(samples, bad_indices(index), strict=False, where="validation")
    tracker.record(samples, [EMPTY], strict=False, where="validation")
    assert [i for i, _ in tracker.skipped] == [EMPTY, CORRUPT]
    with pytest.raises(DataError, match=r"labels\.txt:6: unreadable or corrupt image.*00005\.jpg"):
        BadSampleTracker().record(samples, [CORRUPT], strict=True, where="train")


# ------------------------------------------------------------------------------ orphaned workers
ORPHAN_SCRIPT = r"""
import json, os, sys, time
from pathlib import Path
from conftest import make_label_dir, VALID_VINS
from vinocr.data import LabelFileDataset
from vinocr.data.loader import RecognitionSamples, build_loader

root, pid_file = Path(sys.argv[1]), Path(sys.argv[2])
# Enough samples that the workers block with prefetched batches nobody will read.
samples = RecognitionSamples(LabelFileDataset(make_label_dir(root, VALID_VINS * 8), charset="vin"),
                             "vin", (3, 48, 160), 20)
it = iter(build_loader(samples, 4, shuffle=False, num_workers=2))
next(it)
me = str(os.getpid())
children = []
for entry in os.listdir("/proc"):
    try:
        stat = Path(f"/proc/{entry}/stat").read_text()
    except (OSError, ValueError):
        continue
    if entry.isdigit() and stat.rsplit(")", 1)[1].split()[1] == me:
        children.append(int(entry))
pid_file.write_text(json.dumps(children))
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """Running (not merely a zombie waiting for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_workers_die_with_a_killed_parent(tmp_path: Path):
    pid_file = tmp_path / "workers.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / "child.log"   # a file, not a pipe: nobody reads it while the child runs
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT, str(tmp_path / "ds"),
                                 str(pid_file)], stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True)
    workers: List[int] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while not pid_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if not pid_file.exists():
            pytest.fail("child never reported its workers; stderr tail:\n"
                        + log.read_text()[-3000:])
        workers = json.loads(pid_file.read_text())
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left: Dict[int, bool] = {p: _alive(p) for p in workers}
        assert not any(left.values()), f"workers outlived their killed parent: {left}"
    finally:
        # Whatever happened, leave no ~200 MB orphans on the shared machine.
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def write_train_config(root: Path, strict: bool) -> Path:
    """A 1-step VIN run whose training and validation sets both hold the faulty images."""
    import yaml

    labels = make_faulty_label_file(root / "data")
    cfg = {"Global": {"charset": "vin", "run_dir": str(root / "run"), "image_shape": [3, 32, 160],
                      "max_text_length": 17, "visualdl": False, "strict_data": strict},
           "Architecture": {"name": "crnn", "pretrained": None,
                            "params": {"hidden": 8, "channels": [4, 4, 8, 8]}},
           "Decode": {"method": "greedy"},
           "Train": {"dataset": {"type": "label_file", "label_files": [str(labels)]},
                     "batch_size": 7, "num_workers": 2, "epochs": 1, "max_steps": 1},
           "Eval": {"dataset": {"type": "label_file", "label_files": [str(labels)]},
                    "num_workers": 0, "batch_size": 7}}
    path = root / "run.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("strict", [False, True])
def test_training_with_unreadable_images_skips_or_stops_in_one_line(tmp_path, strict):
    cfg = write_train_config(tmp_path, strict)
    cmd = [sys.executable, str(TESTS_DIR.parent / "tools/finetune.py"), "-c", str(cfg),
           "--nproc", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, VINOCR_NO_PROGRESS="1"))
    if strict:
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("vinocr-finetune: error: ")
        assert "labels.txt:" in proc.stderr and "image" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    unreadable = report["data"]["unreadable_images"]
    assert sorted(r["index"] for r in unreadable["Eval.dataset"]) == [EMPTY, CORRUPT]
    assert {r["index"] for r in unreadable["Train.dataset"]} <= {EMPTY, CORRUPT}
    # validation scored the 5 readable crops only
    history = json.loads((tmp_path / "run" / "training_history.json").read_text())
    assert len(history) == 1 and "seq_acc" in history[0]


STOP_SCRIPT = r"""
import os, signal, sys, time
from pathlib import Path
import paddle   # before the handler, as in a rank: paddle's import installs its own
from conftest import make_label_dir, VALID_VINS
from vinocr.data import LabelFileDataset
from vinocr.data.loader import RecognitionSamples, build_loader
from vinocr.engine.launch import interrupt_on_sigterm

interrupt_on_sigterm()   # what a rank does
root, ready = Path(sys.argv[1]), Path(sys.argv[2])
samples = RecognitionSamples(LabelFileDataset(make_label_dir(root, VALID_VINS * 8), charset="vin"),
                             "vin", (3, 48, 160), 20)
it = iter(build_loader(samples, 4, shuffle=False, num_workers=2))
next(it)
try:
    ready.write_text("1")
    time.sleep(600)
except KeyboardInterrupt:
    # The trainer now writes its report and checkpoint notice: seconds of work during which a
    # worker's death (Paddle's SIGCHLD handler) must not raise into it.
    for _ in range(30):
        time.sleep(0.1)
    print("stopped cleanly")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups are POSIX")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_interrupts_the_trainer_not_its_workers(tmp_path, sig):
    """Ctrl-C reaches the whole process group, and Paddle's launcher stops a rank by SIGTERM to
    its group: the workers get the signal too. If they die of it first, Paddle raises
    SystemError ("DataLoader process ... killed by signal") into the rank while it writes its
    interrupted report (seen in a 2-process soak run)."""
    ready = tmp_path / "ready"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", STOP_SCRIPT, str(tmp_path / "ds"), str(ready)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), "child never started iterating"
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0 and "stopped cleanly" in out, err[-3000:]
