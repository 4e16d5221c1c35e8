"""``distillation``: learn from a larger (or better) teacher's per-frame distributions as well as
from the labels.

Loss (Hinton et al., 2015, applied per CTC frame)::

    loss = alpha * L_sup + (1 - alpha) * T^2 * mean_{batch, frames} KL(p_teacher^T || p_student^T)

``L_sup`` is the loss the trainer (and any hook before this one) produced: CTC, plus GTC when that
branch is on. ``p^T = softmax(logits / T)``: a temperature T > 1 spreads the teacher's mass over the
runner-up classes ("this 8 looks like a B"), which is what the student learns from beyond the
labels; ``T^2`` keeps the gradient scale of the soft term independent of T. Logged terms: ``ctc``
(from the trainer) and ``kd`` (``T^2 * KL``, unweighted).

The teacher is loaded once in ``prepare_model``, frozen (no gradients) and kept in eval mode
(BatchNorm uses running statistics, dropout is off): it is a fixed function of the input. It is
either a trained run: ``teacher_checkpoint`` a run directory (its ``best``) or checkpoint
directory, loaded by :func:`vinocr.engine.model_loading.load_trained`'s rules (the architecture
recorded in the checkpoint, LoRA adapters merged, so the teacher is the model that run trained;
``teacher_config``/``teacher_arch`` are optional then and, when given, must name the same
architecture); or an architecture (``teacher_config``: a YAML config whose ``Architecture``
section builds it, or an inline ``teacher_arch`` mapping in the same form) with weights from a
``.safetensors``/``.pdparams`` ``teacher_checkpoint`` file or from the architecture's
``pretrained``. It lives on the hook, outside the student's layer tree, so it never enters the
student's checkpoints or optimizer. Class counts must match: the KL compares distributions over
the same dictionary.

**Sequence length.** Per-frame KL needs both models on the same frame grid. When the teacher gives
``T_t`` frames and the student ``T_s`` (another downsampling factor), ``length_mismatch``
decides: ``interpolate`` (default) resamples the teacher's softened per-frame probabilities onto
the student's grid by linear interpolation along time between frame centres (as
``align_corners=False``), then renormalises each frame; ``error`` refuses (a config error at start
when the mismatch shows at ``Global.image_shape``, or at the first batch that shows it). Resampling
is an approximation: CTC spikes of one frame can be smeared over two frames or halved when
downsampling, so prefer teachers with the student's frame rate.

**Cache** (``cache: true``): teacher logits are kept per sample in memory as float16, keyed by the
dataset index *and* a hash of that sample's input tensor: augmentation changes the input each
epoch (it is seeded by ``(seed, epoch, index)``), and a stale teacher output for another input
would be wrong, so a hit requires the identical input. One entry per dataset index (a changed input
replaces it), so memory stays bounded by the dataset size: ``frames x classes x 2`` bytes per
sample (40 x 35 x 2 = 2.8 kB for VINs, but 40 x 6625 x 2 = 530 kB with the full PP-OCR
dictionary). It pays off without (or with light) augmentation; the hit rate is logged each epoch.
Cached or not, the loss always uses the float16-rounded teacher output, so a run (and its exact
resume, which starts with an empty cache) does not depend on what happened to be cached.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from techniques import register_technique
from vinocr.engine.hooks import LossOutput, RunView, TrainerHooks, option
from vinocr.errors import ConfigError, VinocrError

logger = logging.getLogger(__name__)

__all__ = ["Distillation", "TeacherCache", "kd_loss", "resample_frames"]

LENGTH_MODES = ("interpolate", "error")
#: Where a recogniser keeps its CTC projection (PP-OCRv4, CRNN).
_HEAD_WEIGHTS = ("head.ctc_head.fc.weight", "head.fc.weight")
_EPS = 1e-12


# ---------------------------------------------------------------------------------------------
# Pure functions

def resample_frames(probs: paddle.Tensor, frames: int) -> paddle.Tensor:
    """Linearly resample per-frame distributions [N, T_in, C] onto ``frames`` frames.

    Frame i of the output sits at input position ``(i + 0.5) * T_in / frames - 0.5`` (frame
    centres, clamped to the ends) and mixes the two nearest input frames; rows are renormalised so
    each output frame is a distribution again.
    """
    t_in = int(probs.shape[1])
    if t_in == frames:
        return probs
    pos = (np.arange(frames, dtype=np.float64) + 0.5) * t_in / frames - 0.5
    pos = np.clip(pos, 0.0, t_in - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t_in - 1)
    frac = pos - lo
    weights = np.zeros((frames, t_in), np.float32)
    weights[np.arange(frames), lo] += (1.0 - frac).astype(np.float32)
    weights[np.arange(frames), hi] += frac.astype(np.float32)
    out = paddle.matmul(paddle.to_tensor(weights, dtype=probs.dtype), probs)  # [N, frames, C]
    return out / paddle.clip(out.sum(axis=-1, keepdim=True), min=_EPS)


def kd_loss(student_logits: paddle.Tensor, teacher_logits: paddle.Tensor, temperature: float,
            length_mismatch: str = "interpolate") -> paddle.Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))`` summed over classes and averaged
    over frames and batch. Both [N, T, C]; the teacher's frames are resampled onto the student's
    when ``length_mismatch`` is ``interpolate``."""
    if int(teacher_logits.shape[-1]) != int(student_logits.shape[-1]):
        raise ConfigError(f"Technique.teacher_config: the teacher predicts "
                          f"{teacher_logits.shape[-1]} classes, the student "
                          f"{student_logits.shape[-1]}; both must use the same dictionary")
    t = float(temperature)
    s = student_logits.astype("float32")
    tl = teacher_logits.astype("float32").detach()
    log_ps = F.log_softmax(s / t, axis=-1)
    t_s, t_t = int(s.shape[1]), int(tl.shape[1])
    if t_t == t_s:
        log_pt = F.log_softmax(tl / t, axis=-1)
        pt = paddle.exp(log_pt)
    else:
        if length_mismatch != "interpolate":
            raise ConfigError(f"Technique.length_mismatch: the teacher gives {t_t} frames, the "
                              f"student {t_s}; set length_mismatch: interpolate to resample")
        pt = resample_frames(F.softmax(tl / t, axis=-1), t_s)
        log_pt = paddle.log(paddle.clip(pt, min=_EPS))
    kl = (pt * (log_pt - log_ps)).sum(axis=-1)  # [N, T]
    return kl.mean() * (t * t)


# ---------------------------------------------------------------------------------------------
# Cache

class TeacherCache:
    """Teacher logits per dataset index, valid only for the exact input they were computed on.

    Stored as float16 numpy arrays (half the memory of float32; the logits only feed a softened
    softmax, where the rounding is far below the signal)."""

    def __init__(self) -> None:
        self.entries: Dict[int, Tuple[bytes, np.ndarray]] = {}
        self.hits = self.lookups = 0             # since the start (or resume)
        self.epoch_hits = self.epoch_lookups = 0

    @staticmethod
    def input_key(sample: np.ndarray) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        h.update(str((sample.dtype.str, sample.shape)).encode())
        h.update(np.ascontiguousarray(sample).tobytes())
        return h.digest()

    def get(self, index: int, key: bytes) -> Optional[np.ndarray]:
        self.lookups += 1
        self.epoch_lookups += 1
        entry = self.entries.get(index)
        if entry is not None and entry[0] == key:
            self.hits += 1
            self.epoch_hits += 1
            return entry[1]
        return None

    def put(self, index: int, key: bytes, logits: np.ndarray) -> np.ndarray:
        value = logits.astype(np.float16)
        self.entries[index] = (key, value)
        return value

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for _, v in self.entries.values())

    def reset_epoch(self) -> None:
        self.epoch_hits = self.epoch_lookups = 0


# ---------------------------------------------------------------------------------------------
# Options

def _existing_path(value: str, key: str) -> None:
    if not Path(value).exists():
        raise ConfigError(f"{key}: {value} not found")


@dataclass(frozen=True)
class DistillationOptions:
    teacher_config: Optional[str] = option(None, check=_existing_path, doc="a YAML config whose "
                                           "Architecture builds the teacher")
    teacher_arch: Optional[Mapping[str, Any]] = option(None, doc="or the teacher's Architecture "
                                                       "mapping inline")
    teacher_checkpoint: Optional[str] = option(None, check=_existing_path, doc="teacher weights: "
                                               "checkpoint or run directory, or a weights file")
    alpha: float = option(0.5, min=0.0, max=1.0, aliases=("kd_alpha",), doc="weight of the label "
                          "loss; kd_alpha is the spelling that stacks with lora's alpha")
    temperature: float = option(2.0, gt=0.0, doc="softmax temperature T of both distributions")
    cache: bool = option(False, doc="keep teacher outputs per sample (identical inputs only)")
    length_mismatch: str = option("interpolate", choices=LENGTH_MODES, doc="teacher and student "
                                  "frame counts differ: resample, or refuse")


@register_technique("distillation")
class Distillation(TrainerHooks):
    """Knowledge distillation from a frozen teacher recogniser (per-frame KL + CTC)."""

    Options = DistillationOptions

    def __init__(self, teacher_model: Optional[nn.Layer] = None, **options: Any) -> None:
        """``teacher_model`` (not a config option) hands over a ready teacher from Python, e.g.
        in tests or notebooks; it is frozen and put in eval mode like a configured one."""
        super().__init__(**options)
        o = self.options
        if teacher_model is None:
            from_run = o.teacher_checkpoint is not None and Path(o.teacher_checkpoint).is_dir()
            if o.teacher_config is not None and o.teacher_arch is not None or \
                    (o.teacher_config is None and o.teacher_arch is None and not from_run):
                raise ConfigError("Technique.teacher_config: give the teacher's architecture "
                                  "either as teacher_config (a YAML config) or teacher_arch (an "
                                  "Architecture mapping), at most one; none when "
                                  "teacher_checkpoint is a run or checkpoint directory")
            if o.teacher_arch is not None and not o.teacher_arch.get("name"):
                raise ConfigError(f"Technique.teacher_arch: expected a mapping like "
                                  f"{{name: ppocrv4_teacher, params: {{...}}}}, got "
                                  f"{o.teacher_arch!r}")
        self.cache: Optional[TeacherCache] = TeacherCache() if o.cache else None
        self.teacher: Optional[nn.Layer] = teacher_model
        self.teacher_source = "teacher_model (Python)" if teacher_model is not None else ""
        self.teacher_frames: Optional[int] = None
        self.student_frames: Optional[int] = None
        self.teacher_calls = 0  # forward passes run (samples), for the report

    # -------------------------------------------------------------- teacher
    def _teacher_arch_cfg(self) -> Dict[str, Any]:
        from vinocr.config import load_config

        if self.options.teacher_config is not None:
            # The whole file is validated like any config (with its _base_ chain); only its
            # Architecture section matters here.
            return dict(load_config(self.options.teacher_config)["Architecture"])
        try:
            arch = load_config(data={"Architecture": self.options.teacher_arch})["Architecture"]
            return dict(arch)
        except ConfigError as exc:
            raise ConfigError(f"Technique.teacher_arch: {exc}") from None

    def _check_dictionary(self, classes: int, chars: Optional[Any], source: str,
                          student_classes: int, charset: Any) -> None:
        """The KL compares distributions over the same dictionary: same class count and, when
        the teacher's characters are known, the same characters in the same order."""
        if classes != student_classes:
            raise ConfigError(
                f"Technique.teacher_checkpoint: the teacher has {classes} classes ({source}), "
                f"the student {student_classes} (Global.charset "
                f"{getattr(charset, 'name', charset)}); distillation needs the same dictionary")
        if chars is not None and charset is not None and \
                list(chars) != list(getattr(charset, "characters", chars)):
            raise ConfigError(f"Technique.teacher_checkpoint: the teacher was trained with another "
                              f"dictionary than Global.charset {getattr(charset, 'name', '')} "
                              f"(same size, different characters or order)")

    def _trained_teacher(self, arch: Optional[Mapping[str, Any]], student_classes: int,
                         charset: Any) -> Tuple[Optional[nn.Layer], Dict[str, np.ndarray], str]:
        """A ``teacher_checkpoint`` directory: ``(teacher, {}, source)`` when the checkpoint
        records its model (the trained model as the library loads it, LoRA adapters merged, so
        the teacher is what that run trained, not its base), else ``(None, weights, source)``
        for a weights-only checkpoint, to load into the configured architecture."""
        from vinocr.engine.model_loading import (build_trained, read_trained_checkpoint,
                                                 records_model)

        key = "Technique.teacher_checkpoint"
        ckpt = read_trained_checkpoint(self.options.teacher_checkpoint, key)
        if not records_model(ckpt.state):
            if arch is None:
                raise ConfigError(f"{key}: {ckpt.path} holds weights only (no saved config or "
                                  "charset); give the teacher's teacher_config or teacher_arch")
            return None, dict(ckpt.model_state), str(ckpt.path)
        loaded = build_trained(ckpt.state, ckpt.model_state, ckpt.path, key=key,
                               arch=arch.get("name") if arch else None)
        self._check_dictionary(int(loaded.model.num_classes), loaded.charset.characters,
                               str(ckpt.path), student_classes, charset)
        return loaded.model, {}, str(ckpt.path)

    def _teacher_weights(self) -> Tuple[Dict[str, np.ndarray], str]:
        """A ``teacher_checkpoint`` weights file (``.safetensors``, or ``.pdparams`` on opt-in)."""
        from vinocr.models.weights import load_state_file

        path = Path(self.options.teacher_checkpoint)
        try:
            state = load_state_file(path, opt_in="convert it to .safetensors as shown and point "
                                    "Technique.teacher_checkpoint at that")
        except VinocrError as exc:
            raise ConfigError(f"Technique.teacher_checkpoint: {exc}") from None
        return state, str(path)

    def _build_teacher(self, student: nn.Layer, run: RunView) -> nn.Layer:
        from vinocr.models.factory import model_from_config
        from vinocr.models.weights import load_weights

        o = self.options
        charset = run.charset
        if charset is None:
            raise ConfigError("Technique.teacher_config: the run view has no charset to build "
                              "the teacher with")
        student_classes = int(student.num_classes)
        arch = self._teacher_arch_cfg() if o.teacher_config or o.teacher_arch else None
        state: Dict[str, np.ndarray] = {}
        source = ""
        if o.teacher_checkpoint is not None and Path(o.teacher_checkpoint).is_dir():
            teacher, state, source = self._trained_teacher(arch, student_classes, charset)
            if teacher is not None:
                self.teacher_source = f"{teacher.arch} from {source}"
                return teacher
        elif o.teacher_checkpoint is not None:
            state, source = self._teacher_weights()
        assert arch is not None  # checked in __init__ unless the checkpoint records its model
        if o.teacher_checkpoint is None and not arch.get("pretrained"):
            raise ConfigError("Technique.teacher_checkpoint: required (or a pretrained entry in "
                              "the teacher's Architecture); a teacher with random weights "
                              "teaches nothing")
        teacher, _ = model_from_config(arch, charset)
        self.teacher_source = f"{arch.get('name')} ({arch.get('pretrained') or 'no pretrained'})"
        if o.teacher_checkpoint is not None:
            for key in _HEAD_WEIGHTS:
                if key in state:
                    self._check_dictionary(int(state[key].shape[-1]), None, source,
                                           student_classes, charset)
            report = load_weights(teacher, state, strict=False,
                                  source=f"Technique.teacher_checkpoint {source}")
            # Unexpected keys (a GTC branch, say) are harmless; a teacher part left at its random
            # init is not.
            if report.missing or report.skipped:
                first = (report.skipped + report.missing)[0]
                raise ConfigError(f"Technique.teacher_checkpoint: {source} does not fit the "
                                  f"teacher architecture {arch.get('name')} "
                                  f"({len(report.missing)} missing, {len(report.skipped)} "
                                  f"mismatched; first: {first})")
            self.teacher_source = f"{arch.get('name')} from {source}"
        return teacher

    def _freeze_teacher(self) -> None:
        assert self.teacher is not None
        for p in self.teacher.parameters():
            p.stop_gradient = True
        self.teacher.eval()

    def _run_teacher(self, images: paddle.Tensor) -> np.ndarray:
        assert self.teacher is not None
        self.teacher.eval()  # cheap insurance: nobody may have flipped it to training mode
        with paddle.no_grad():
            out = self.teacher(images)
        self.teacher_calls += int(images.shape[0])
        return out.astype("float32").numpy()

    def teacher_logits(self, images: paddle.Tensor, index: Optional[paddle.Tensor]
                       ) -> paddle.Tensor:
        """The teacher's logits [N, T_t, C] for a batch (float16-rounded, through the cache when
        it is on)."""
        if self.cache is None or index is None:
            return paddle.to_tensor(self._run_teacher(images).astype(np.float16)
                                    .astype(np.float32))
        arr = images.numpy()
        ids = [int(i) for i in np.asarray(index.numpy()).reshape(-1)]
        keys = [TeacherCache.input_key(arr[i]) for i in range(arr.shape[0])]
        found: List[Optional[np.ndarray]] = [self.cache.get(i, k) for i, k in zip(ids, keys)]
        missing = [j for j, v in enumerate(found) if v is None]
        if missing:
            sub = images if len(missing) == len(found) else \
                paddle.gather(images, paddle.to_tensor(missing, dtype="int64"))
            fresh = self._run_teacher(sub)
            for row, j in enumerate(missing):
                found[j] = self.cache.put(ids[j], keys[j], fresh[row])
        return paddle.to_tensor(np.stack(found).astype(np.float32))

    # -------------------------------------------------------------- hooks
    def prepare_model(self, model: Any, run: RunView) -> Any:
        if self.teacher is None:
            self.teacher = self._build_teacher(model, run)
        self._freeze_teacher()
        if run.image_shape:
            self._check_frames(model, tuple(run.image_shape))
        n_t = sum(int(np.prod(p.shape)) for p in self.teacher.parameters())
        logger.info("distillation: teacher %s (%s parameters, frozen, eval mode); alpha %g, "
                    "temperature %g%s", self.teacher_source, f"{n_t:,}", self.options.alpha,
                    self.options.temperature, ", teacher outputs cached" if self.cache else "")
        return model

    def _check_frames(self, model: nn.Layer, shape: Tuple[int, ...]) -> None:
        """Classes and frame counts at the configured input size, before any training."""
        x = paddle.zeros([1, *shape])
        was_training = model.training
        model.eval()
        with paddle.no_grad():
            s = model(x)
            t = self.teacher(x)
        if was_training:
            model.train()
        if int(t.shape[-1]) != int(s.shape[-1]):
            raise ConfigError(f"Technique.teacher_config: the teacher predicts {t.shape[-1]} "
                              f"classes, the student {s.shape[-1]}; both must use the same "
                              "dictionary")
        self.teacher_frames, self.student_frames = int(t.shape[1]), int(s.shape[1])
        if self.teacher_frames != self.student_frames:
            if self.options.length_mismatch == "error":
                raise ConfigError(f"Technique.length_mismatch: at Global.image_shape {list(shape)} "
                                  f"the teacher gives {self.teacher_frames} frames and the "
                                  f"student {self.student_frames}; set length_mismatch: "
                                  "interpolate to resample the teacher onto the student's frames")
            logger.warning("distillation: teacher %d frames, student %d: the teacher's "
                           "distributions are linearly resampled onto the student's frames",
                           self.teacher_frames, self.student_frames)

    def on_epoch_start(self, epoch: int, run: RunView) -> bool:
        if self.cache is not None:
            self.cache.reset_epoch()
        return False

    def train_mode(self, model: Any, run: RunView) -> None:
        if self.teacher is not None:
            self.teacher.eval()

    def loss(self, out: LossOutput, logits: Any, batch: Dict[str, Any], run: RunView
             ) -> LossOutput:
        if self.teacher is None:
            raise VinocrError("distillation: prepare_model was not called (no teacher)")
        teacher = self.teacher_logits(batch["images"], batch.get("index"))
        kd = kd_loss(logits, teacher, self.options.temperature, self.options.length_mismatch)
        total = out.loss * self.options.alpha + kd * (1.0 - self.options.alpha)
        return LossOutput(total, {**out.terms, "kd": float(kd)})

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float], run: RunView) -> None:
        c = self.cache
        if c is None or not c.epoch_lookups:
            return
        rate = c.epoch_hits / c.epoch_lookups
        logger.info("distillation: teacher cache %d of %d hit (%.1f%%) this epoch, %d entries, "
                    "%.1f MB", c.epoch_hits, c.epoch_lookups, 100 * rate, len(c.entries),
                    c.nbytes / 2 ** 20)
        if epoch >= 1 and c.epoch_hits == 0:
            logger.warning("distillation: no teacher cache hit in epoch %d: augmentation changes "
                           "every input each epoch, so the cache only costs memory; set "
                           "Technique.cache: false", epoch + 1)

    def state_dict(self) -> Dict[str, Any]:
        # The cache itself is not checkpointed (it is memory, not state): counters only.
        if self.cache is None:
            return {}
        return {"cache_hits": self.cache.hits, "cache_lookups": self.cache.lookups}

    def set_state_dict(self, state: Dict[str, Any]) -> None:
        if self.cache is not None:
            self.cache.hits = int(state.get("cache_hits", 0))
            self.cache.lookups = int(state.get("cache_lookups", 0))

    def describe(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "name": self.name, "teacher": self.teacher_source, "alpha": self.options.alpha,
            "temperature": self.options.temperature,
            "length_mismatch": self.options.length_mismatch,
            "teacher_frames": self.teacher_frames, "student_frames": self.student_frames,
            "why": "a stronger teacher's soft per-frame distributions carry class similarities "
                   "the labels do not; useful for small students and little labelled data"}
        if self.cache is not None:
            c = self.cache
            out["cache"] = {"hits": c.hits, "lookups": c.lookups,
                            "hit_rate": c.hits / c.lookups if c.lookups else None,
                            "entries": len(c.entries), "megabytes": c.nbytes / 2 ** 20}
        return out
