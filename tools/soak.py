#!/usr/bin/env python
"""Soak test: the situations tiny tests cannot show, at the size users run. Not part of
``make test`` (about an hour on 2 CPU cores); run it before resolving anything that trains.

    python tools/soak.py --work soak_out            # or: make soak
    python tools/soak.py --work soak_out --only finetune,disk_full

Each check prints one line, ``PASS`` or ``FAIL`` with its figures:

- ``ctrl_c_validation``: a 2-process fine-tune of the default VIN recipe on ``--train`` synthetic
  crops (>= 4000) validating on ``--val`` (>= 400), interrupted with Ctrl-C (SIGINT to the whole
  process group, as a terminal sends it) while it validates epoch 1: exit 130, no traceback, and
  ``latest`` holds epoch 1's training.
- ``kill_rank``: the run resumed, then one rank killed with SIGKILL mid-epoch 2: the run stops with
  one error line, ``latest`` still loads, no process of the run is left behind.
- ``finetune``: resumed again to completion, crossing the epoch boundary (``Train.max_steps`` ends
  it a few steps into epoch 2): ``best/`` and ``latest/``, both epochs in the history, ranks with
  identical weights.
- ``disk_full``: a run whose run directory is on a tmpfs too small for its second checkpoint: one
  error line naming the full disk, and the previous checkpoint still loads (needs root to mount).
- ``sr_kill`` / ``sr_ctrl_c``: ``vinocr-train-sr`` killed with SIGKILL mid-epoch and interrupted
  with Ctrl-C during validation, each time resumed to completion from intact checkpoints.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent

VIN_CONFIG = REPO / "configs/vin/ppocrv6_small.yml"
BATCH = 16
RESULTS: List[Tuple[str, bool, str]] = []


def report(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def run(cmd: List[str], log: Path, timeout: float = 7200) -> Tuple[int, str]:
    """Run ``cmd`` to completion; stderr kept in ``log``; returns (exit code, stderr)."""
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=timeout, env=dict(os.environ, VINOCR_NO_PROGRESS="1"))
    log.write_text(res.stdout + res.stderr, encoding="utf-8")
    return res.returncode, res.stderr


def _terminal_signals() -> None:
    """In the child: SIGINT handled by default, as under a terminal. A soak started in the
    background (``nohup ... &``) inherits SIGINT ignored, and Python then keeps ignoring it, so
    the launching process would never see the Ctrl-C and only the ranks would react."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(cmd: List[str], log: Path) -> subprocess.Popen:
    """Start ``cmd`` in a process group of its own (signals reach it the way a terminal's do)."""
    handle = open(log, "w", encoding="utf-8")
    return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=_terminal_signals,
                            env=dict(os.environ, VINOCR_NO_PROGRESS="1"))


def interrupt(cmd: List[str], log: Path, ready: Callable[[], bool], what: str, delay: float,
              strike: Callable[[subprocess.Popen], None], timeout: float = 600
              ) -> Tuple[int, float]:
    """Start ``cmd``, wait until ``ready()``, then ``delay`` s, then ``strike`` it (a signal);
    returns (exit code, seconds until ready). Whatever is left is killed."""
    proc = start(cmd, log)
    try:
        waited = wait_for(ready, 7200, what, proc)
        time.sleep(delay)
        strike(proc)
        return proc.wait(timeout=timeout), waited
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def to_group(sig: int) -> Callable[[subprocess.Popen], None]:
    """A signal to the command's process group, as a terminal sends Ctrl-C."""
    return lambda proc: os.killpg(proc.pid, sig)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
             proc: Optional[subprocess.Popen] = None) -> float:
    t0 = time.monotonic()
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process ended (exit {proc.returncode}) before {what}")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)
    return time.monotonic() - t0


def checkpoint_state(path: Path) -> Optional[Dict]:
    try:
        return json.loads((path / "state.json").read_text())["state"]
    except (OSError, ValueError, KeyError):
        return None


def loads(path: Path) -> str:
    """'' when the checkpoint at ``path`` loads with verified contents, else the error."""
    from vinocr.engine.checkpoint import load_checkpoint
    from vinocr.errors import VinocrError

    try:
        ckpt = load_checkpoint(path)
    except VinocrError as exc:
        return str(exc)
    return "" if ckpt.model_state else "no tensors"


def run_processes(run_dir: Path) -> List[int]:
    """PIDs of live processes working on ``run_dir`` (the launcher starts each rank in a session
    of its own, so a process group does not hold them; their command lines name the run)."""
    alive, me = [], os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if str(run_dir).encode() in cmdline and state != "Z":
            alive.append(int(entry.name))
    return alive


def _environ(pid: int) -> List[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def rank_pid(run_dir: Path, rank: int) -> Optional[int]:
    """The rank process itself: its loader workers share its environment, but their parent is
    the rank, while the rank's parent (the launcher) has no PADDLE_TRAINER_ID."""
    key = f"PADDLE_TRAINER_ID={rank}".encode()
    for pid in run_processes(run_dir):
        if key not in _environ(pid):
            continue
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[1])
        except (OSError, ValueError):
            continue
        if not any(e.startswith(b"PADDLE_TRAINER_ID=") for e in _environ(ppid)):
            return pid
    return None


def one_error_line(stderr: str, prog: str) -> Tuple[bool, str]:
    lines = [line for line in stderr.splitlines() if line.startswith(f"{prog}:")]
    last = lines[-1] if lines else (stderr.strip().splitlines() or ["(no output)"])[-1]
    return len(lines) == 1 and "Traceback" not in stderr, last


# ------------------------------------------------------------------------------------ data
def vin_data(work: Path, n_train: int, n_val: int) -> Tuple[Path, Path]:
    splits = work / "vin_splits"
    if not (splits / "val.txt").is_file():
        total = n_train + n_val
        code, err = run([tool("vinocr-synth"), "vin", "--n", str(total), "--seed", "11",
                         "--out", str(work / "vin_synth"), "--workers", "2", "--overwrite"],
                        work / "synth.log")
        if code:
            raise RuntimeError(f"vinocr-synth failed: {err[-500:]}")
        fractions = [n_train / total, n_val / total, 0]
        code, err = run([tool("vinocr-data"), "split", str(work / "vin_synth"), "--out",
                         str(splits), "--fractions", *map(str, fractions), "--seed", "0"],
                        work / "split.log")
        if code:
            raise RuntimeError(f"vinocr-data split failed: {err[-500:]}")
    return splits / "train.txt", splits / "val.txt"


def finetune_cmd(run_dir: Path, train: Path, val: Path, max_steps: int,
                 *extra: str) -> List[str]:
    return [tool("vinocr-finetune"), "-c", str(VIN_CONFIG), "--nproc", "2", "-o",
            f"Global.run_dir={run_dir}", "Train.epochs=2", f"Train.batch_size={BATCH}",
            f"Train.max_steps={max_steps}",
            f"Train.dataset={{type: label_file, label_files: [{train}]}}",
            f"Eval.dataset={{type: label_file, label_files: [{val}]}}", *extra]


# ------------------------------------------------------------------------------- fine-tune
def soak_finetune(work: Path, n_train: int, n_val: int, only: set) -> None:
    train, val = vin_data(work, n_train, n_val)
    n = sum(1 for line in train.read_text().splitlines() if line.strip())
    per_epoch = math.ceil(math.ceil(n / 2) / (BATCH // 2))
    # Ends 40 steps past the epoch boundary: room to kill a rank mid-epoch 2.
    max_steps = per_epoch + 40
    run_dir = work / "ft_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    latest = run_dir / "latest"
    t0 = time.monotonic()

    # 1. Ctrl-C while epoch 1 validates.
    code, waited = interrupt(
        finetune_cmd(run_dir, train, val, max_steps), work / "ft_1.log",
        lambda: (checkpoint_state(latest) or {}).get("pending_epoch") is not None,
        "epoch 1's pre-validation checkpoint", 5, to_group(signal.SIGINT))
    out = (work / "ft_1.log").read_text()
    st = checkpoint_state(latest) or {}
    ok = code == 130 and "Traceback" not in out and st.get("epoch") == 1 and not loads(latest)
    if "ctrl_c_validation" in only:
        report("ctrl_c_validation", ok, f"exit {code} after epoch 1 ({per_epoch} steps, "
               f"{waited:.0f} s) while validating {n_val} crops; latest = epoch "
               f"{st.get('epoch')} (validation pending: {st.get('pending_epoch') is not None}), "
               f"loads: {not loads(latest)}")

    # 2. Resume, then SIGKILL rank 1 mid-epoch 2.
    def kill_rank_1(proc: subprocess.Popen) -> None:
        victim = rank_pid(run_dir, 1)
        if victim is None:
            raise RuntimeError("rank 1 not found")
        os.kill(victim, signal.SIGKILL)

    validated = (lambda: (checkpoint_state(latest) or {}).get("pending_epoch") is None
                 and (checkpoint_state(latest) or {}).get("epoch") == 1)
    # About 10 steps into epoch 2, at epoch 1's pace (its time is in the pending record).
    per_step = float((st.get("pending_epoch") or {}).get("epoch_seconds", 2.0 * per_epoch)) \
        / per_epoch
    code, _ = interrupt([tool("vinocr-finetune"), "--resume", str(run_dir), "--nproc", "2"],
                        work / "ft_2.log", validated, "epoch 1's validation after the resume",
                        5 + 10 * per_step, kill_rank_1)
    time.sleep(5)
    left = run_processes(run_dir)
    out = (work / "ft_2.log").read_text()
    single, line = one_error_line(out, "vinocr-finetune")
    st = checkpoint_state(latest) or {}
    ok = code != 0 and single and st.get("epoch") == 1 and not loads(latest) and not left
    if "kill_rank" in only:
        report("kill_rank", ok, f"exit {code}; {line!r}; latest = epoch {st.get('epoch')}, "
               f"loads: {not loads(latest)}; {len(left)} processes left")
    for pid in left:
        os.kill(pid, signal.SIGKILL)

    # 3. Resume to completion.
    code, err = run([tool("vinocr-finetune"), "--resume", str(run_dir), "--nproc", "2"],
                    work / "ft_3.log")
    wall = time.monotonic() - t0
    detail = f"exit {code}"
    ok = False
    if code == 0:
        rep = json.loads((run_dir / "report.json").read_text())
        history = json.loads((run_dir / "training_history.json").read_text())
        digests = {json.loads((run_dir / f"rank{r}_weights.json").read_text())["weights_sha1"]
                   for r in (0, 1)}
        ok = (rep["status"] == "completed" and rep["global_step"] == max_steps
              and [h["epoch"] for h in history] == [1, 2] and len(digests) == 1
              and not loads(run_dir / "best") and not loads(latest))
        detail = (f"{n} train / {n_val} val crops, 2 processes, {rep['global_step']} steps "
                  f"(epoch boundary at {per_epoch}), val seq_acc "
                  f"{', '.join(str(round(h['seq_acc'], 4)) for h in history)} by epoch, best "
                  f"epoch {rep['best']['epoch']}, ranks identical: {len(digests) == 1}, "
                  f"{wall / 60:.1f} min including both faults")
    else:
        detail += f": {err.strip().splitlines()[-1:]}"
    if "finetune" in only:
        report("finetune", ok, detail)


# ------------------------------------------------------------------------------- disk full
def soak_disk_full(work: Path, n_train: int, n_val: int) -> None:
    train, val = vin_data(work, n_train, n_val)
    # Small subsets beside the full label files (image paths are relative to the label file).
    tr, va = train.parent / "df_train.txt", train.parent / "df_val.txt"
    tr.write_text("\n".join(train.read_text().splitlines()[:64]) + "\n")
    va.write_text("\n".join(val.read_text().splitlines()[:16]) + "\n")

    def cmd(run_dir: Path) -> List[str]:
        return [tool("vinocr-finetune"), "-c", str(VIN_CONFIG), "--nproc", "1", "-o",
                f"Global.run_dir={run_dir}", "Train.epochs=2", "Train.batch_size=16",
                "Train.num_workers=0", "Eval.num_workers=0", "Global.visualdl=false",
                f"Train.dataset={{type: label_file, label_files: [{tr}]}}",
                f"Eval.dataset={{type: label_file, label_files: [{va}]}}"]

    probe = work / "df_probe"
    shutil.rmtree(probe, ignore_errors=True)
    code, err = run(cmd(probe) + ["Train.max_steps=1"], work / "df_probe.log")
    if code:
        report("disk_full", False, f"probe run failed: {err.strip().splitlines()[-1:]}")
        return
    size = sum(f.stat().st_size for f in (probe / "latest").iterdir())
    mount = work / "df_tmpfs"
    mount.mkdir(exist_ok=True)
    # Room for one checkpoint and a half: the first fits, replacing it (the new copy is written
    # in full before the old one goes) does not.
    limit = int(size * 1.5) + 2 ** 20
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={limit}", "tmpfs", str(mount)],
                         capture_output=True, text=True)
    if res.returncode:
        report("disk_full", False, f"cannot mount a tmpfs (needs root): {res.stderr.strip()}")
        return
    try:
        run_dir = mount / "run"
        code, err = run(cmd(run_dir), work / "df_run.log")
        single, line = one_error_line(err, "vinocr-finetune")
        problem = loads(run_dir / "latest")
        st = checkpoint_state(run_dir / "latest") or {}
        ok = code == 2 and single and "space" in line.lower() and not problem
        report("disk_full", ok, f"checkpoint {size / 2 ** 20:.1f} MiB on a "
               f"{limit / 2 ** 20:.1f} MiB tmpfs: exit {code}; {line!r}; latest (epoch "
               f"{st.get('epoch')}) loads: {not problem}")
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


# -------------------------------------------------------------------------------------- SR
def soak_sr(work: Path, only: set) -> None:
    import yaml

    plates = work / "sr_plates"
    for part, n, seed in (("train", 300, 1), ("val", 40, 2)):
        if not (plates / part).is_dir():
            code, err = run([tool("vinocr-synth"), "plates", "--tracks", str(n), "--seed",
                             str(seed), "--out", str(plates / part), "--overwrite"],
                            work / f"sr_synth_{part}.log")
            if code:
                raise RuntimeError(f"vinocr-synth plates failed: {err[-500:]}")
    ocr = work / "sr_ocr"
    if not (ocr / "best").is_dir():
        code, err = run([tool("vinocr-finetune"), "-c",
                         str(REPO / "configs/plate/ppocrv4_mobile_hr.yml"), "--nproc", "1",
                         "--overwrite", "-o", f"Global.run_dir={ocr}", "Train.epochs=1",
                         "Train.max_steps=20", "Global.visualdl=false",
                         f"Train.dataset={{type: lrlpr, path: {plates / 'train'}, frames: hr}}",
                         f"Eval.dataset={{type: lrlpr, path: {plates / 'val'}, frames: hr}}"],
                        work / "sr_ocr.log")
        if code:
            raise RuntimeError(f"the SR recogniser failed to train: {err[-500:]}")
    cfg = yaml.safe_load((REPO / "configs/sr/lpasrn_small.yml").read_text())
    run_dir = work / "sr_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg["Global"]["run_dir"] = str(run_dir)
    cfg["Global"]["log_every_steps"] = 1     # epoch 2's last step logged = validation begins
    cfg["OCR"]["model"] = str(ocr)
    cfg["Data"] = {"train": str(plates / "train"), "val": str(plates / "val"),
                   "max_val_tracks": 40}
    cfg["Stages"] = {"stage1": {"epochs": 3, "lr_scale": 1.0}, "stage2": {"epochs": 0},
                     "stage3": {"epochs": 0}}
    path = work / "sr.yml"
    path.write_text(yaml.safe_dump(cfg))
    base = [tool("vinocr-train-sr"), "-c", str(path), "--stage", "1"]
    log = run_dir / "train.log"

    def logged(text: str) -> Callable[[], bool]:
        return lambda: log.is_file() and text in log.read_text(errors="replace")

    # SIGKILL mid-epoch 2 (epoch 1's checkpoints written), then resume.
    interrupt(base, work / "sr_1.log", logged("stage 1 epoch 1/3"), "SR epoch 1", 10,
              to_group(signal.SIGKILL))
    intact = not loads(run_dir / "latest")
    st1 = checkpoint_state(run_dir / "latest") or {}
    # Ctrl-C while epoch 2 of the resumed run validates, then resume to the end.
    steps = json.loads((run_dir / "training_history.json").read_text())[0]["steps"]
    # Every step is logged: once epoch 2's last step is, validation is running.
    code_c, _ = interrupt(base + ["--resume", str(run_dir)], work / "sr_2.log",
                          logged(f"stage 1 epoch 2 step {steps}:"), "SR epoch 2 validation", 0.5,
                          to_group(signal.SIGINT))
    out_c = (work / "sr_2.log").read_text()
    st2 = checkpoint_state(run_dir / "latest") or {}
    code, err = run(base + ["--resume", str(run_dir)], work / "sr_3.log")
    history = json.loads((run_dir / "training_history.json").read_text()) \
        if (run_dir / "training_history.json").is_file() else []
    done = code == 0 and [h["epoch"] for h in history][-1:] == [3]
    if "sr_kill" in only:
        report("sr_kill", intact and done, f"SIGKILL in epoch 2: latest (epoch "
               f"{st1.get('epoch')}) loads: {intact}; resumed to epoch "
               f"{history[-1]['epoch'] if history else None} of 3, exit {code}")
    if "sr_ctrl_c" in only:
        ok = code_c == 130 and "Traceback" not in out_c and st2.get("epoch") == st1.get("epoch")
        report("sr_ctrl_c", ok and done, f"Ctrl-C during epoch 2 validation: exit {code_c}, "
               f"latest still epoch {st2.get('epoch')}, then resumed to the end (exit {code})")


CHECKS = ("ctrl_c_validation", "kill_rank", "finetune", "disk_full", "sr_kill", "sr_ctrl_c")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("soak_out"), help="working folder")
    p.add_argument("--train", type=int, default=4000, help="training crops (>= 4000)")
    p.add_argument("--val", type=int, default=400, help="validation crops (>= 400)")
    p.add_argument("--only", default=",".join(CHECKS), help=f"comma list of {', '.join(CHECKS)}")
    args = p.parse_args(argv)
    only = {c.strip() for c in args.only.split(",") if c.strip()}
    unknown = only - set(CHECKS)
    if unknown:
        p.error(f"--only: unknown checks {sorted(unknown)}; valid: {', '.join(CHECKS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve()
    t0 = time.monotonic()
    steps = [("finetune", {"ctrl_c_validation", "kill_rank", "finetune"},
              lambda: soak_finetune(work, args.train, args.val, only)),
             ("disk_full", {"disk_full"}, lambda: soak_disk_full(work, args.train, args.val)),
             ("sr", {"sr_kill", "sr_ctrl_c"}, lambda: soak_sr(work, only))]
    for name, covers, step in steps:
        if covers & only:
            try:
                step()
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
                for check in sorted(covers & only - {r[0] for r in RESULTS}):
                    report(check, False, f"{name} did not run to the end: {exc}")
    failed = [r for r in RESULTS if not r[1]]
    print(f"soak: {len(RESULTS) - len(failed)}/{len(RESULTS)} passed in "
          f"{(time.monotonic() - t0) / 60:.1f} min", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
