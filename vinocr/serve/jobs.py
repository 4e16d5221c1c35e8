"""Fine-tune jobs: ``vinocr-finetune`` then ``vinocr-export`` in child processes, one at a time.

Each job is a folder ``DATA/jobs/ID/``: ``job.json`` (its state, written atomically at every
change), ``config.yml`` (the resolved, validated config it trains with), ``run/`` (the run
directory) and ``job.log`` (the children's output). Nothing else is kept in memory, so the
service can die at any point: on start-up a job recorded as running is marked ``interrupted``
(its child, if it outlived the service, is stopped first) and ``resume`` continues it with
``vinocr-finetune --resume``.

Progress is read from what the trainer writes anyway: ``training_history.json`` (one record per
finished epoch: step, loss, seconds, validation metrics), ``report.json`` (the final metrics)
and the progress bar in the log (the step within the current epoch and its ETA).
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from vinocr.atomic_dir import write_file_atomic
from vinocr.engine.rundir import holds_run
from vinocr.errors import ConfigError, VinocrError
from vinocr.serve.models import ModelStore, NotFound

logger = logging.getLogger(__name__)

JOB_ID_PATTERN = re.compile(r"^j[0-9a-f]{12}$")
JOB_FILE = "job.json"
LOG_FILE = "job.log"
#: Job states. ``running`` covers training, ``exporting`` the export after it.
QUEUED, RUNNING, EXPORTING = "queued", "running", "exporting"
SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = "succeeded", "failed", "cancelled", "interrupted"
ACTIVE_STATES = (RUNNING, EXPORTING)
RESUMABLE_STATES = (INTERRUPTED, CANCELLED, FAILED)
#: Run outcomes (report.json ``status``) after which only the export is left to do.
TRAINED = ("completed", "early_stopped")

#: Config keys a request may set; everything else (paths above all: data, run directory,
#: pretrained weights, charset files) comes from the service's --job-config. A technique's own
#: options may be given as numbers, booleans or lists of them, never as strings (paths).
REQUEST_KEYS = ("Global.seed", "Train.epochs", "Train.max_steps", "Train.batch_size",
                "Train.log_every_steps", "Train.eval_every_steps", "Train.augment",
                "Train.feature_cache", "Train.num_workers", "Eval.batch_size", "Optimizer",
                "Scheduler", "EarlyStopping", "Technique")
#: Seconds a child gets to stop after SIGINT (the trainer then writes its report) before SIGKILL.
STOP_GRACE = 30.0
LOG_TAIL_LINES = 20


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise NotFound(f"job {job_id!r} does not exist (job ids look like j0123456789ab)")
    return job_id


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value and dotted not in ("Train.augment",):
            out.update(_flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def _has_string(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, Mapping):
        return any(_has_string(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_string(v) for v in value)
    return False


def check_request_config(config: Any) -> Dict[str, Any]:
    """The request's config mapping, refused (naming the key) when it sets a key a request may
    not set; the values themselves are validated by the config schema afterwards."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"config: expected a mapping of config sections, got "
                          f"{type(config).__name__}")
    for dotted, value in _flatten(config).items():
        parts = dotted.split(".")
        # The shortest prefix that is neither an allowed key, inside one, nor on the way to one
        # (``Train`` leads to ``Train.epochs``; ``Train.dataset`` leads nowhere).
        for n in range(1, len(parts) + 1):
            prefix = ".".join(parts[:n])
            if any(prefix == k or prefix.startswith(k + ".") for k in REQUEST_KEYS):
                break
            if not any(k.startswith(prefix + ".") for k in REQUEST_KEYS):
                raise ConfigError(f"{prefix}: cannot be set by a request (allowed: "
                                  f"{', '.join(REQUEST_KEYS)}); set it in the service's "
                                  "--job-config")
        if dotted.startswith("Technique.") and dotted != "Technique.name" and _has_string(value):
            raise ConfigError(f"{dotted}: a request may give technique options as numbers, "
                              "booleans or lists of them; string options (paths) belong in the "
                              "service's --job-config")
    return dict(config)


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pid_runs_job(pid: Optional[int], job_dir: Path) -> bool:
    """Whether ``pid`` is alive and one of this job's children (its command line names the job
    folder), so a recycled pid is never signalled."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return False
    return str(job_dir) in cmdline


def _die_with_parent() -> None:
    """Child pre-exec: SIGINT when the service dies (Linux), so training stops the way Ctrl-C
    stops it (report written, ``latest`` intact) instead of running on unsupervised."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_TQDM = re.compile(r"epoch (\d+)/(\d+):\s*\d+%\|[^|]*\|\s*(\d+)/(\d+) \[([0-9:]+)<([0-9:?]+)"
                   r"([^\]]*)\]")
_LOSS = re.compile(r"loss=([-+0-9.eE]+|nan|inf)")


def read_log_tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 65536) -> List[str]:
    """The last ``lines`` lines of a log, progress-bar redraws (``\\r``) collapsed to the last."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    out = []
    for line in text.split("\n"):
        line = line.rstrip("\r").rsplit("\r", 1)[-1].rstrip()
        if line:
            out.append(line)
    return out[-lines:]


def read_history(run_dir: Path) -> List[Dict[str, Any]]:
    """The run's ``training_history.json`` records ([] before the first epoch ends)."""
    try:
        doc = json.loads((run_dir / "training_history.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [r for r in doc if isinstance(r, dict)] if isinstance(doc, list) else []


def read_progress(run_dir: Path, log: Path, epochs: int, max_steps: Optional[int],
                  live: bool = False, started_at: Optional[float] = None,
                  start_epoch: int = 0) -> Dict[str, Any]:
    """Step, epoch, loss and ETA from the run's history and, while the job trains (``live``),
    the log's last progress bar.

    The ETA is wall-clock: the time since this training process started (``started_at``, with
    ``start_epoch`` epochs already done then) per epoch it has trained, times the epochs left.
    Per-epoch ``epoch_seconds`` would leave out validation and checkpoints, which on small
    datasets take longer than the steps themselves.
    """
    history = read_history(run_dir)
    last = history[-1] if history else {}
    progress: Dict[str, Any] = {"epochs": epochs, "epochs_done": int(last.get("epoch", 0)),
                                "step": int(last.get("global_step", 0)), "max_steps": max_steps,
                                "loss": last.get("train_loss"), "eta_seconds": None,
                                "epoch_step": None, "epoch_steps": None}
    fraction = 0.0
    if live:
        bar = None
        for line in reversed(read_log_tail(log, lines=200)):
            bar = _TQDM.search(line)
            if bar:
                break
        if bar and int(bar.group(1)) > progress["epochs_done"]:
            # The bar of the epoch in progress (a finished epoch's bar is older than its record).
            done, total = int(bar.group(3)), int(bar.group(4))
            progress.update(epoch_step=done, epoch_steps=total, step=progress["step"] + done)
            loss = _LOSS.search(bar.group(7))
            if loss:
                progress["loss"] = float(loss.group(1))
            fraction = done / total if total else 0.0
    trained = progress["epochs_done"] + fraction - start_epoch
    if live and started_at is not None and trained > 0:
        per_epoch = (time.time() - started_at) / trained
        left = max(0.0, epochs - progress["epochs_done"] - fraction)
        if max_steps and progress["epoch_steps"]:
            left = min(left, max(0, max_steps - progress["step"]) / progress["epoch_steps"])
        progress["eta_seconds"] = round(per_epoch * left, 1)
    if history:
        progress["metrics"] = {k: v for k, v in last.items()
                               if k not in ("epoch", "global_step", "train_loss", "epoch_seconds",
                                            "images_per_sec", "lr")}
    return progress


@dataclass
class JobSettings:
    """How the service runs jobs.

    Args:
        job_config: the YAML config(s) every job starts from (model, charset, base datasets,
            validation set); a request only adjusts the keys in :data:`REQUEST_KEYS`.
        corrections_ratio: share of each epoch drawn from the corrections when the config has
            base datasets; None mixes in proportion to the datasets' sizes.
        nproc: ``vinocr-finetune --nproc`` (1 leaves the other cores to the read endpoint).
        export_args: extra ``vinocr-export`` arguments (e.g. ``--no-onnx``).
    """

    job_config: List[Path] = field(default_factory=list)
    corrections_ratio: Optional[float] = None
    nproc: int = 1
    export_args: List[str] = field(default_factory=list)
    python: str = sys.executable


class JobManager:
    """Jobs on disk under ``root``, run one at a time by a worker thread.

    Args:
        root: ``DATA/jobs``.
        corrections_dir: the corrections folder jobs train on.
        models: where a finished job's export is registered as a new version.
        settings: see :class:`JobSettings`.
        on_exported: called with ``(version, job)`` after a job registered its export (the
            service activates it there when the job asked for that).
    """

    def __init__(self, root: Path, corrections_dir: Path, models: ModelStore,
                 settings: JobSettings,
                 on_exported: Optional[Callable[[str, Dict[str, Any]], None]] = None) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.corrections_dir = Path(corrections_dir).resolve()
        self.models = models
        self.settings = settings
        self.on_exported = on_exported
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._proc: Optional[subprocess.Popen] = None
        self._current: Optional[str] = None
        self._cancel: Optional[str] = None
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------------ state on disk
    def _dir(self, job_id: str) -> Path:
        return self.root / check_job_id(job_id)

    def load(self, job_id: str) -> Dict[str, Any]:
        path = self._dir(job_id) / JOB_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f"job {job_id} does not exist") from None
        except (OSError, ValueError) as exc:
            raise VinocrError(f"{path}: unreadable job state ({exc})") from None
        return doc

    def _save(self, job: Dict[str, Any]) -> None:
        write_file_atomic(self._dir(job["id"]) / JOB_FILE,
                          json.dumps(job, indent=2).encode("utf-8"))

    def _set(self, job_id: str, state: Optional[str] = None, note: str = "",
             **fields: Any) -> Dict[str, Any]:
        with self._lock:
            job = self.load(job_id)
            job.update(fields)
            if state is not None:
                job["state"] = state
                job.setdefault("events", []).append(
                    {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "state": state, "note": note})
            self._save(job)
            return job

    def all_jobs(self) -> List[Dict[str, Any]]:
        jobs = []
        for d in sorted(self.root.iterdir()):
            if JOB_ID_PATTERN.fullmatch(d.name) and (d / JOB_FILE).is_file():
                try:
                    jobs.append(self.load(d.name))
                except VinocrError as exc:
                    logger.warning("%s", exc)
        return sorted(jobs, key=lambda j: j.get("created", ""))

    def queue_length(self) -> int:
        return sum(1 for j in self.all_jobs() if j["state"] == QUEUED)

    # ------------------------------------------------------------------------------ start-up
    def recover(self) -> None:
        """Mark jobs that were running when the service died as interrupted (stopping a child
        that outlived it); queued jobs stay queued."""
        for job in self.all_jobs():
            if job["state"] not in ACTIVE_STATES:
                continue
            job_dir = self._dir(job["id"])
            pid = job.get("pid")
            if _pid_runs_job(pid, job_dir):
                logger.warning("job %s: its %s (pid %s) outlived the service; stopping it",
                               job["id"], job["state"], pid)
                self._stop_pid(int(pid), job_dir)
            self._set(job["id"], INTERRUPTED, f"the service stopped while the job was "
                      f"{job['state']}; resume it with POST /v1/jobs/{job['id']}/resume",
                      pid=None, phase=job["state"])

    def _stop_pid(self, pid: int, job_dir: Path) -> None:
        _kill_group(pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and _pid_runs_job(pid, job_dir):
            time.sleep(0.2)
        if _pid_runs_job(pid, job_dir):
            _kill_group(pid, signal.SIGKILL)

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._worker, name="vinocr-jobs", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        """Stop the worker; a running child is interrupted (the job resumes after a restart)."""
        self._stop.set()
        self._wake.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _kill_group(proc.pid, signal.SIGINT)
        if self._thread is not None:
            self._thread.join(timeout=STOP_GRACE + 5)

    # ------------------------------------------------------------------------------ requests
    def build_config(self, job_dir: Path, request_config: Any) -> Any:
        """The validated config of a new job (ConfigError names the key at fault)."""
        from vinocr.config import load_config
        from vinocr.data.corrections import CorrectionsDataset

        if not self.settings.job_config:
            raise ConfigError("this service has no --job-config: start it with --job-config "
                              "YAML to run fine-tune jobs")
        data = check_request_config(request_config)
        # A config the request may not have written: the base, for its Train.dataset.
        base = load_config(self.settings.job_config)
        CorrectionsDataset(self.corrections_dir)   # DataError when nothing is stored yet
        corrections: Dict[str, Any] = {"type": "corrections", "path": str(self.corrections_dir)}
        ratio = self.settings.corrections_ratio
        base_ds = base["Train"]["dataset"]
        if base_ds is None:
            dataset: Dict[str, Any] = corrections
        else:
            sources = [dict(s) for s in base_ds["sources"]] if "sources" in base_ds \
                else [dict(base_ds)]
            if ratio is not None:
                unratioed = [s for s in sources if "ratio" not in s]
                for s in unratioed:
                    s["ratio"] = (1.0 - ratio) / len(unratioed)
                corrections["ratio"] = ratio
            elif any("ratio" in s for s in sources):
                raise ConfigError("Train.dataset: the --job-config's sources have ratios; give "
                                  "the service --corrections-ratio for the corrections' share")
            dataset = {"sources": sources + [corrections]}
            if base_ds.get("epoch_size"):
                dataset["epoch_size"] = base_ds["epoch_size"]
        # As -o overrides (vinocr-finetune's convention), which replace the base's Train.dataset
        # instead of merging into it; JSON is YAML, so any path survives the round trip.
        overrides = [f"Train.dataset={json.dumps(dataset)}",
                     f"Global.run_dir={json.dumps(str(job_dir / 'run'))}"]
        return load_config(self.settings.job_config, overrides=overrides, data=data)

    def submit(self, request_config: Any = None, activate: bool = False) -> Dict[str, Any]:
        """Validate a job's config and queue it; returns the job."""
        from vinocr.config.loader import write_resolved_config

        job_id = "j" + secrets.token_hex(6)
        job_dir = self.root / job_id
        cfg = self.build_config(job_dir, request_config)   # before anything is written
        job_dir.mkdir(parents=True)
        write_resolved_config(cfg, job_dir, "config.yml")
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        job = {"id": job_id, "state": QUEUED, "created": now, "queued_at": time.time(),
               "request": {"config": request_config, "activate": bool(activate)},
               "activate": bool(activate), "epochs": cfg["Train"]["epochs"],
               "max_steps": cfg["Train"]["max_steps"], "run_dir": str(job_dir / "run"),
               "config": str(job_dir / "config.yml"), "resume": False, "version": None,
               "error": None, "pid": None, "phase": None,
               "events": [{"time": now, "state": QUEUED, "note": "submitted"}]}
        with self._lock:
            self._save(job)
        self._wake.set()
        return job

    def status(self, job_id: str) -> Dict[str, Any]:
        """The job with its progress, metrics and log tail."""
        job = self.load(job_id)
        job_dir = self._dir(job_id)
        run = Path(job["run_dir"])
        job["progress"] = read_progress(run, job_dir / LOG_FILE, int(job.get("epochs") or 0),
                                        job.get("max_steps"), live=job["state"] == RUNNING,
                                        started_at=job.get("train_started_at"),
                                        start_epoch=int(job.get("train_start_epoch") or 0))
        job["metrics"] = job["progress"].pop("metrics", {})
        try:
            report = json.loads((run / "report.json").read_text(encoding="utf-8"))
            job["metrics"] = report.get("final_metrics") or job["metrics"]
            job["run_status"] = report.get("status")
        except (OSError, ValueError):
            job["run_status"] = None
        job["queue_position"] = None
        if job["state"] == QUEUED:
            queued = [j["id"] for j in self.all_jobs() if j["state"] == QUEUED]
            queued.sort(key=lambda i: self.load(i).get("queued_at", 0))
            job["queue_position"] = queued.index(job_id) + 1
        job["log_tail"] = read_log_tail(job_dir / LOG_FILE)
        return job

    def cancel(self, job_id: str) -> Dict[str, Any]:
        with self._lock:
            job = self.load(job_id)
            if job["state"] == QUEUED:
                return self._set(job_id, CANCELLED, "cancelled before it started")
            if job["state"] not in ACTIVE_STATES:
                raise JobConflict(f"job {job_id} is {job['state']}: only a queued or running "
                                  "job can be cancelled")
            self._cancel = job_id
            proc = self._proc
        if proc is not None and self._current == job_id and proc.poll() is None:
            _kill_group(proc.pid, signal.SIGINT)
        return self.load(job_id)

    def resume(self, job_id: str) -> Dict[str, Any]:
        with self._lock:
            job = self.load(job_id)
            if job["state"] not in RESUMABLE_STATES:
                raise JobConflict(f"job {job_id} is {job['state']}: only an "
                                  f"{', '.join(RESUMABLE_STATES)} job can be resumed")
            job = self._set(job_id, QUEUED, "queued to resume", resume=True,
                            queued_at=time.time(), error=None)
        self._wake.set()
        return job

    # -------------------------------------------------------------------------------- worker
    def _next_queued(self) -> Optional[str]:
        queued = [j for j in self.all_jobs() if j["state"] == QUEUED]
        queued.sort(key=lambda j: j.get("queued_at", 0))
        return queued[0]["id"] if queued else None

    def _worker(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            while not self._stop.is_set():
                job_id = self._next_queued()
                if job_id is None:
                    break
                try:
                    self._execute(job_id)
                except Exception as exc:  # a job's failure must not stop the queue behind it
                    logger.exception("job %s failed in the service", job_id)
                    self._set(job_id, FAILED, "service error", error=str(exc), pid=None)
                finally:
                    with self._lock:
                        self._current = None
                        self._proc = None
                        self._cancel = None

    def _run_child(self, job_id: str, cmd: Sequence[str], phase: str) -> int:
        job_dir = self._dir(job_id)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("VINOCR_NO_PROGRESS", None)     # the progress bar is where the step is read
        with open(job_dir / LOG_FILE, "ab") as log:
            log.write(f"\n== {phase}: {' '.join(cmd)}\n".encode("utf-8"))
            log.flush()
            with self._lock:
                if self._cancel == job_id:
                    return -signal.SIGINT
                proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, cwd=str(job_dir),
                                        start_new_session=True, preexec_fn=_die_with_parent)
                self._proc, self._current = proc, job_id
            extra: Dict[str, Any] = {}
            if phase == RUNNING:
                extra = {"train_started_at": time.time(),
                         "train_start_epoch": len(read_history(Path(self.load(job_id)["run_dir"])))}
            self._set(job_id, phase, f"{cmd[2]} started (pid {proc.pid})", pid=proc.pid, **extra)
            while True:
                try:
                    return proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    if self._stop.is_set():
                        # The service is shutting down: stop the child the way a restart
                        # expects (interrupted, resumable), without waiting for the grace period
                        # here: recover() finishes the job after the restart.
                        _kill_group(proc.pid, signal.SIGINT)
                        try:
                            return proc.wait(timeout=STOP_GRACE)
                        except subprocess.TimeoutExpired:
                            _kill_group(proc.pid, signal.SIGKILL)
                            return proc.wait()
                    if self._cancel == job_id and proc.poll() is None:
                        deadline = time.monotonic() + STOP_GRACE
                        while proc.poll() is None and time.monotonic() < deadline:
                            time.sleep(0.2)
                        if proc.poll() is None:
                            _kill_group(proc.pid, signal.SIGKILL)

    def _error_line(self, job_id: str) -> str:
        for line in reversed(read_log_tail(self._dir(job_id) / LOG_FILE, lines=200)):
            if ": error: " in line or line.startswith("Traceback") or "Error" in line:
                return line
        tail = read_log_tail(self._dir(job_id) / LOG_FILE, lines=1)
        return tail[-1] if tail else "no output"

    def _trained(self, run: Path) -> bool:
        try:
            report = json.loads((run / "report.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return report.get("status") in TRAINED

    def _execute(self, job_id: str) -> None:
        job = self.load(job_id)
        job_dir = self._dir(job_id)
        run = Path(job["run_dir"])
        py = self.settings.python
        nproc = ["--nproc", str(self.settings.nproc)]
        if not (job.get("resume") and self._trained(run)):
            if job.get("resume") and holds_run(run):
                cmd = [py, "-m", "vinocr.cli.finetune", "--resume", str(run), *nproc]
            else:
                # A first run, or a resume of one stopped before its first checkpoint: the
                # directory holds at most the config and log, which a fresh start may reuse.
                cmd = [py, "-m", "vinocr.cli.finetune", "-c", job["config"], *nproc]
            rc = self._run_child(job_id, cmd, RUNNING)
            if self._stop.is_set():
                self._set(job_id, INTERRUPTED, "the service stopped during training",
                          pid=None, phase=RUNNING, returncode=rc)
                return
            if self._cancel == job_id:
                self._set(job_id, CANCELLED, "cancelled during training", pid=None,
                          returncode=rc)
                return
            if rc != 0:
                self._set(job_id, FAILED, "vinocr-finetune failed", pid=None, returncode=rc,
                          error=self._error_line(job_id))
                return
        version = self.models.next_version()
        out = self.models.version_dir(version)
        cmd = [py, "-m", "vinocr.cli.export", "--checkpoint", str(run), "--out", str(out),
               "--log-level", "WARNING", *self.settings.export_args]
        rc = self._run_child(job_id, cmd, EXPORTING)
        if self._stop.is_set():
            self._set(job_id, INTERRUPTED, "the service stopped during the export", pid=None,
                      phase=EXPORTING, returncode=rc)
            return
        if self._cancel == job_id:
            self._set(job_id, CANCELLED, "cancelled during the export", pid=None, returncode=rc)
            return
        if rc != 0:
            self._set(job_id, FAILED, "vinocr-export failed", pid=None, returncode=rc,
                      error=self._error_line(job_id))
            return
        self.models.register(out, source=f"job {job_id}", version=version)
        job = self._set(job_id, None, pid=None, returncode=0, version=version,
                        model_dir=str(out))
        note = f"exported as model {version}"
        if self.on_exported is not None:
            try:
                self.on_exported(version, job)
                note += " and activated" if job.get("activate") else ""
            except VinocrError as exc:
                # The version exists and can be activated by hand; the job did its part.
                logger.warning("job %s: model %s not activated: %s", job_id, version, exc)
                note += f"; not activated: {exc}"
                self._set(job_id, None, activation_error=str(exc))
        self._set(job_id, SUCCEEDED, note)


class JobConflict(VinocrError):
    """The job is not in a state that allows the request (HTTP 409)."""
