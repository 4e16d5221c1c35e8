"""Calibration of read confidences: on labelled validation reads, fit a temperature and choose how
character confidences combine into a read's; then report every confidence from tempered
probabilities, combined that way.

A recogniser's frame probabilities ``p`` ([T, C] per crop) become ``softmax(log p / T)`` per frame.
``T > 1`` flattens them (an overconfident model's 0.99 on wrong reads comes down), ``T < 1``
sharpens them. Only confidences change, never texts: a read is decoded from the raw probabilities
and its confidences are then recomputed from the tempered ones over exactly the frames the decoder
aligned to each character (:attr:`vinocr.decode.DecodeResult.spans`). So prefix beam search and
constrained decoding, whose choice could otherwise move with the temperature, give the same text
with and without calibration.

Each character's confidence is the mean probability of its class over its frames. A raw read's
``confidence`` is the mean of its character confidences (PaddleOCR's convention). That mean is a
poor estimate of "the read is exactly right": one wrong character of 17 barely moves it, and one
temperature removes only part of that error. The calibration therefore also chooses how character
confidences combine into the read's confidence (:data:`AGGREGATES`): ``mean``, ``product`` (the
probability that every character is right, if they err independently), ``min`` (the weakest
character) or ``geomean`` (the geometric mean). :func:`fit_temperature` fits, for each, the ``T``
in [0.05, 20] minimising the binary log loss of the read confidence against "the read is exactly
right" (a 25-point grid over ``log T``, then golden-section search between the best point's
neighbours), keeps the aggregate + ``T`` with the lowest log loss, and reports the expected
calibration error (:func:`vinocr.metrics.expected_calibration_error`) of the raw mean and of the
calibrated confidence. Calibrated ``char_confidences`` stay per character (tempered).

VIN reads carry evidence no frame probability has: the ISO 3779 check digit. Where the decoder
does not enforce it (outside North America with ``check_digit: auto``), a read can be 17 VIN
characters whose check digit fails. Such reads are a different population: on the synthetic
held-out styles every one of them is wrong while their tempered confidences average about 0.4, so
one temperature fitted over both populations leaves the passing reads underconfident and the
failing ones overconfident. When the validation set has at least :data:`MIN_CHECK_FAILED` such
reads, the fit therefore splits them off (``check_digit_failed`` in the record): the temperature
and aggregate are fitted on the other reads, and a failing read's confidence is multiplied by
``scale``, chosen so that on validation the failing reads' mean confidence equals the share of
them that is right (Laplace-smoothed, ``(right + 1) / (reads + 2)``); the factor is at most 1
(a failing check digit is never evidence for a read), and at least :data:`MIN_READS` passing
reads must remain to fit the temperature on. The share is whatever the validation set says:
where VINs without a check digit are common (many European makers) and the validation crops are
real, failing reads are often right and the factor stays near 1; on synthetic validation (every
generated VIN carries a valid check digit) it is near 0.
Calibration fitted on synthetic crops is therefore wrong for a fleet whose VINs lack check
digits: refit on real validation crops (``vinocr-export --fit-temperature``) or drop the factor
(``vinocr-export --no-check-digit-evidence``).

Where ``T`` comes from and goes: the trainer fits it on the Eval set with the best checkpoint's
model and stores it in that checkpoint's state (``calibration``) and in ``report.json``;
``vinocr-export`` writes it to ``inference.yml`` (``vinocr.calibration``: ``temperature`` and
``aggregate``; a record without ``aggregate``, written before it existed, means ``mean``) or
refits it with ``--fit-temperature DATASET``; :class:`vinocr.predict.Recognizer` (so
``vinocr-predict`` and ``vinocr-serve``) and ``vinocr-eval`` apply it (``vinocr-eval
--raw-confidence`` shows raw ones: temperature 1, mean of characters).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from vinocr.decode.ctc import DecodeResult, Decoder
from vinocr.errors import VinocrError
from vinocr.metrics import expected_calibration_error
from vinocr.vin import check_digit_fails, is_vin_alphabet

logger = logging.getLogger(__name__)

__all__ = ["AGGREGATES", "CalibrationError", "CalibrationSet", "RAW_AGGREGATE",
           "TEMPERATURE_RANGE", "TemperatureFit", "aggregate_char_confidences",
           "aggregate_from_record", "calibrate_result", "check_aggregate",
           "check_digit_scale_from_record", "check_temperature", "decode_calibrated",
           "fit_temperature", "temper", "temperature_from_record", "with_check_digit_evidence"]

#: The temperatures :func:`fit_temperature` searches (bounds included).
TEMPERATURE_RANGE: Tuple[float, float] = (0.05, 20.0)
#: Points of the coarse grid over ``log T`` that brackets the minimum before golden section.
GRID_POINTS = 25
#: Golden-section stopping width in ``log T`` (0.1% relative in ``T``).
LOG_T_TOLERANCE = 1e-3
#: Fewer labelled reads than this cannot calibrate (one temperature from a handful of reads is
#: noise, and it would then be applied to every read).
MIN_READS = 10
#: Confidences are clipped to [EPS, 1 - EPS] in the log loss (a confidence of exactly 0 or 1).
EPS = 1e-7
#: How a read's confidence combines its character confidences; the fit chooses one. ``mean`` is
#: PaddleOCR's (and the raw confidence's) convention; on a tie the earlier one is kept.
AGGREGATES: Tuple[str, ...] = ("mean", "product", "min", "geomean")
#: The aggregate of raw confidences, and of a calibration record that names none.
RAW_AGGREGATE = "mean"
#: Validation reads failing the VIN check digit needed before the fit treats them apart (fewer
#: cannot estimate how often such a read is right).
MIN_CHECK_FAILED = 10
#: Log losses closer than this are a tie in the choice of aggregate (the earlier one is kept).
TIE_TOLERANCE = 1e-9

Probs = Union[np.ndarray, Sequence[np.ndarray]]


class CalibrationError(VinocrError):
    """A temperature or calibration set is unusable (non-positive temperature, no reads, no
    right or no wrong read to calibrate against)."""


def check_temperature(value: Any, where: str = "temperature") -> float:
    """``value`` as a float if it is a finite number > 0; otherwise a :class:`CalibrationError`
    naming ``where`` (e.g. ``exp/inference.yml: vinocr.calibration.temperature``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(float(value)) or float(value) <= 0:
        raise CalibrationError(f"{where} must be a finite number > 0, got {value!r}")
    return float(value)


def check_aggregate(value: Any, where: str = "aggregate") -> str:
    """``value`` if it names one of :data:`AGGREGATES`; otherwise a :class:`CalibrationError`
    naming ``where``."""
    if not isinstance(value, str) or value not in AGGREGATES:
        raise CalibrationError(f"{where} must be one of {', '.join(AGGREGATES)}, got {value!r}")
    return value


def aggregate_char_confidences(confs: Sequence[float], aggregate: str = RAW_AGGREGATE) -> float:
    """A read's confidence from its character confidences (0.0 for no characters)."""
    if not len(confs):
        return 0.0
    c = np.asarray(confs, dtype=np.float64)
    if aggregate == "mean":
        return float(c.mean())
    if aggregate == "product":
        return float(np.prod(c))
    if aggregate == "min":
        return float(c.min())
    if aggregate == "geomean":
        with np.errstate(divide="ignore"):
            return float(np.exp(np.log(np.maximum(c, 0.0)).mean()))
    raise CalibrationError(f"aggregate must be one of {', '.join(AGGREGATES)}, got "
                           f"{aggregate!r}")


def aggregate_from_record(record: Any, where: str) -> str:
    """The aggregate a stored ``calibration`` record holds: ``mean`` without a record or for a
    record without the key (written before the aggregate was part of the calibration)."""
    if record is None or not isinstance(record, Mapping) or "aggregate" not in record:
        return RAW_AGGREGATE
    return check_aggregate(record["aggregate"], f"{where}.aggregate")


def temperature_from_record(record: Any, where: str) -> float:
    """The temperature a stored ``calibration`` record (checkpoint state, ``inference.yml``)
    holds; 1.0 (raw confidences) without a record. ``where`` names the record in errors."""
    if record is None:
        return 1.0
    if not isinstance(record, Mapping) or "temperature" not in record:
        raise CalibrationError(f"{where} must be a mapping with a 'temperature' key, got "
                               f"{record!r}")
    return check_temperature(record["temperature"], f"{where}.temperature")


def check_digit_scale_from_record(record: Any, where: str) -> Optional[float]:
    """The factor a stored ``calibration`` record applies to the confidence of VIN reads whose
    check digit fails (``check_digit_failed.scale``); None when it has none (no record, a record
    from before the factor existed, or one fitted without enough failing reads)."""
    if not isinstance(record, Mapping) or record.get("check_digit_failed") is None:
        return None
    failed = record["check_digit_failed"]
    if not isinstance(failed, Mapping) or "scale" not in failed:
        raise CalibrationError(f"{where}.check_digit_failed must be a mapping with a 'scale' key, "
                               f"got {failed!r}")
    return check_temperature(failed["scale"], f"{where}.check_digit_failed.scale")


def with_check_digit_evidence(confidence: float, text: str, scale: Optional[float]) -> float:
    """``confidence`` times ``scale`` (capped at 1) when ``text`` is a VIN whose check digit
    fails; ``confidence`` otherwise, or without a ``scale``."""
    if scale is None or not check_digit_fails(text):
        return confidence
    return min(1.0, confidence * scale)


# ------------------------------------------------------------------------------------ applying
def _log_rows(rows: np.ndarray, log_input: bool) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    if log_input:
        return rows
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(rows, 0.0))


def _tempered_from_log(logp: np.ndarray, temperature: float) -> np.ndarray:
    scaled = logp / temperature
    top = scaled.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.exp(scaled - top)
    return e / e.sum(axis=-1, keepdims=True)


def temper(probs: np.ndarray, temperature: float, log_input: bool = False) -> np.ndarray:
    """``softmax(log p / temperature)`` over the last axis (float64), for ``[T, C]`` or
    ``[N, T, C]`` probabilities (log-probabilities with ``log_input``)."""
    t = check_temperature(temperature)
    return _tempered_from_log(_log_rows(probs, log_input), t)


def calibrate_result(result: DecodeResult, probs: np.ndarray, temperature: float,
                     log_input: bool = False, aggregate: str = RAW_AGGREGATE,
                     check_digit_scale: Optional[float] = None) -> DecodeResult:
    """``result`` (decoded from the raw ``probs`` [T, C]) with its character confidences
    recomputed from tempered probabilities over the same frames and its ``confidence`` their
    ``aggregate``, times ``check_digit_scale`` when it is a VIN whose check digit fails; text,
    log-probability and format fields are unchanged. The identity for ``temperature == 1`` with
    ``aggregate == "mean"`` and no ``check_digit_scale`` (raw confidences)."""
    t = check_temperature(temperature)
    aggregate = check_aggregate(aggregate)
    if not result.text or (t == 1.0 and aggregate == RAW_AGGREGATE
                           and check_digit_scale is None):
        return result
    if t == 1.0:
        confidence = aggregate_char_confidences(result.char_confidences, aggregate)
        return dataclasses.replace(result, confidence=with_check_digit_evidence(
            confidence, result.text, check_digit_scale))
    if len(result.spans) != len(result.char_confidences):
        raise CalibrationError(f"decoder result for {result.text!r} records no frame spans; "
                               "confidences cannot be calibrated (decoders in vinocr.decode "
                               "record them)")
    arr = np.asarray(probs)
    confs = []
    for cls, start, end in result.spans:
        if end <= start:
            confs.append(0.0)
            continue
        tempered = _tempered_from_log(_log_rows(arr[start:end], log_input), t)
        confs.append(float(tempered[:, cls].mean()))
    confidence = aggregate_char_confidences(confs, aggregate)
    return dataclasses.replace(result, char_confidences=confs, confidence=with_check_digit_evidence(
        confidence, result.text, check_digit_scale))


def decode_calibrated(decoder: Decoder, probs: np.ndarray, temperature: float,
                      log_input: bool = False, aggregate: str = RAW_AGGREGATE,
                      check_digit_scale: Optional[float] = None
                      ) -> Union[DecodeResult, List[DecodeResult]]:
    """``decoder.decode(probs)`` with calibrated confidences: texts from the raw probabilities,
    confidences from the tempered ones, combined by ``aggregate``, with ``check_digit_scale`` on
    VINs whose check digit fails (:func:`calibrate_result`). ``[T, C]`` gives one result,
    ``[N, T, C]`` a list."""
    t = check_temperature(temperature)
    aggregate = check_aggregate(aggregate)
    arr = np.asarray(probs)
    decoded = decoder.decode(arr, log_input)
    if t == 1.0 and aggregate == RAW_AGGREGATE and check_digit_scale is None:
        return decoded
    if arr.ndim == 2:
        return calibrate_result(decoded, arr, t, log_input, aggregate,  # type: ignore[arg-type]
                                check_digit_scale)
    return [calibrate_result(r, a, t, log_input, aggregate,  # type: ignore[arg-type]
                             check_digit_scale) for r, a in zip(decoded, arr)]


# ------------------------------------------------------------------------------------- fitting
@dataclass
class CalibrationSet:
    """What the confidence of each read depends on, kept so that the confidence at any
    temperature costs one pass over the aligned frames (no re-decoding).

    Attributes:
        rows: log-probabilities ``[F, C]`` of every frame aligned to a character of some read.
        frame_class: per row, the class whose probability the character's confidence averages.
        frame_char: per row, the index of its character (over all reads).
        char_read: per character, the index of its read.
        correct: per read, whether it is exactly right.
        check_failed: per read, whether it is a VIN whose check digit fails (all False when
            not given).
    """

    rows: np.ndarray
    frame_class: np.ndarray
    frame_char: np.ndarray
    char_read: np.ndarray
    correct: np.ndarray
    check_failed: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.check_failed is None:
            self.check_failed = np.zeros(self.correct.size, dtype=bool)

    @property
    def n(self) -> int:
        return int(self.correct.size)

    @classmethod
    def from_reads(cls, probs: Probs, results: Sequence[DecodeResult], correct: Sequence[bool],
                   log_input: bool = False, vin: bool = False) -> "CalibrationSet":
        """From raw per-read probabilities ``[T, C]``, the decoder's results on them and whether
        each read is right; ``vin``: the reads are VINs (their check digits are evidence)."""
        if not len(probs) == len(results) == len(correct):
            raise CalibrationError(f"{len(probs)} probability arrays, {len(results)} results and "
                                   f"{len(correct)} correctness flags: expected one of each per "
                                   "read")
        rows: List[np.ndarray] = []
        frame_class: List[np.ndarray] = []
        frame_char: List[np.ndarray] = []
        char_read: List[int] = []
        for i, (p, r) in enumerate(zip(probs, results)):
            if not r.text:
                continue  # confidence 0 at every temperature
            if len(r.spans) != len(r.char_confidences):
                raise CalibrationError(f"read {i} ({r.text!r}) records no frame spans; its "
                                       "confidence cannot be calibrated")
            arr = np.asarray(p)
            for c, start, end in r.spans:
                k = len(char_read)
                char_read.append(i)
                if end > start:
                    rows.append(_log_rows(arr[start:end], log_input))
                    frame_class.append(np.full(end - start, c, dtype=np.int64))
                    frame_char.append(np.full(end - start, k, dtype=np.int64))
        width = int(np.asarray(probs[0]).shape[-1]) if len(probs) else 0
        return cls(rows=np.concatenate(rows) if rows else np.zeros((0, width)),
                   frame_class=np.concatenate(frame_class) if frame_class
                   else np.zeros(0, np.int64),
                   frame_char=np.concatenate(frame_char) if frame_char else np.zeros(0, np.int64),
                   char_read=np.asarray(char_read, dtype=np.int64),
                   correct=np.asarray([bool(c) for c in correct], dtype=bool),
                   check_failed=np.asarray([vin and check_digit_fails(r.text)
                                            for r in results], dtype=bool))

    @classmethod
    def concat(cls, parts: Sequence["CalibrationSet"]) -> "CalibrationSet":
        """One set holding the reads of ``parts`` in order (e.g. one per batch)."""
        parts = list(parts)
        if not parts:
            return cls(np.zeros((0, 0)), *(np.zeros(0, np.int64),) * 3, np.zeros(0, bool),
                       np.zeros(0, bool))
        chars = np.cumsum([0] + [p.char_read.size for p in parts[:-1]])
        reads = np.cumsum([0] + [p.n for p in parts[:-1]])
        rows = [p.rows for p in parts if p.rows.size]
        return cls(rows=np.concatenate(rows) if rows else parts[0].rows,
                   frame_class=np.concatenate([p.frame_class for p in parts]),
                   frame_char=np.concatenate([p.frame_char + c for p, c in zip(parts, chars)]),
                   char_read=np.concatenate([p.char_read + r for p, r in zip(parts, reads)]),
                   correct=np.concatenate([p.correct for p in parts]),
                   check_failed=np.concatenate([p.check_failed for p in parts]))

    def to_json(self) -> Dict[str, Any]:
        """A JSON-able copy (to gather the shards of a data-parallel validation)."""
        return {"rows": self.rows.tolist(), "frame_class": self.frame_class.tolist(),
                "frame_char": self.frame_char.tolist(), "char_read": self.char_read.tolist(),
                "correct": self.correct.tolist(), "check_failed": self.check_failed.tolist(),
                "width": int(self.rows.shape[-1])}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "CalibrationSet":
        rows = np.asarray(doc["rows"], dtype=np.float64).reshape(-1, int(doc["width"]))
        return cls(rows, np.asarray(doc["frame_class"], np.int64),
                   np.asarray(doc["frame_char"], np.int64), np.asarray(doc["char_read"], np.int64),
                   np.asarray(doc["correct"], bool), np.asarray(doc["check_failed"], bool))

    def confidences(self, temperature: float, aggregate: str = RAW_AGGREGATE) -> np.ndarray:
        """Each read's confidence at ``temperature``: the ``aggregate`` over its characters of
        the mean tempered probability of the character's class over its frames; 0 for an empty
        read."""
        char_conf = self.char_confidences(temperature)
        if aggregate == "mean":
            per_read = np.bincount(self.char_read, minlength=self.n)
            return np.bincount(self.char_read, char_conf, minlength=self.n) \
                / np.maximum(per_read, 1)
        has_text = np.bincount(self.char_read, minlength=self.n) > 0
        if aggregate in ("product", "geomean"):
            with np.errstate(divide="ignore"):
                logs = np.log(np.maximum(char_conf, 0.0))
            # bincount cannot sum -inf reliably (a zero-confidence character): count them apart
            zero = np.bincount(self.char_read, np.isneginf(logs).astype(float), minlength=self.n)
            total = np.bincount(self.char_read, np.where(np.isneginf(logs), 0.0, logs),
                                minlength=self.n)
            if aggregate == "geomean":
                total = total / np.maximum(np.bincount(self.char_read, minlength=self.n), 1)
            out = np.exp(total)
            out[zero > 0] = 0.0
            return np.where(has_text, out, 0.0)
        if aggregate == "min":
            out = np.full(self.n, np.inf)
            np.minimum.at(out, self.char_read, char_conf)
            return np.where(has_text, out, 0.0)
        raise CalibrationError(f"aggregate must be one of {', '.join(AGGREGATES)}, got "
                               f"{aggregate!r}")

    def calibrated(self, temperature: float, aggregate: str,
                   check_digit_scale: Optional[float]) -> np.ndarray:
        """Each read's calibrated confidence: :meth:`confidences`, times ``check_digit_scale``
        (capped at 1) for the reads whose check digit fails."""
        conf = self.confidences(temperature, aggregate)
        if check_digit_scale is not None:
            conf = np.where(self.check_failed, np.minimum(conf * check_digit_scale, 1.0), conf)
        return conf

    def char_confidences(self, temperature: float) -> np.ndarray:
        """Each character's confidence (the mean tempered probability of its class over its
        frames) at ``temperature``, over all reads' characters in order."""
        n_chars = self.char_read.size
        if not self.rows.size:
            return np.zeros(n_chars)
        scaled = self.rows / temperature
        top = scaled.max(axis=1)
        top = np.where(np.isfinite(top), top, 0.0)
        log_z = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
        frame_p = np.exp(scaled[np.arange(scaled.shape[0]), self.frame_class] - log_z)
        frames = np.bincount(self.frame_char, minlength=n_chars)
        return np.bincount(self.frame_char, frame_p, minlength=n_chars) / np.maximum(frames, 1)


def log_loss(confidences: np.ndarray, correct: np.ndarray) -> float:
    """Mean binary log loss of ``confidences`` against ``correct`` (clipped to [EPS, 1 - EPS])."""
    c = np.clip(np.asarray(confidences, dtype=np.float64), EPS, 1.0 - EPS)
    y = np.asarray(correct, dtype=bool)
    return float(-np.mean(np.where(y, np.log(c), np.log1p(-c))))


@dataclass
class TemperatureFit:
    """A fitted calibration (aggregate and temperature) and what it does on the set it was
    fitted on.

    ``aggregate`` is how character confidences combine into the read's confidence
    (:data:`AGGREGATES`) and ``temperature`` the one fitted with it; ``nll``/``ece`` are the
    calibrated confidence's, ``nll_raw``/``ece_raw`` the raw one's (mean at temperature 1);
    ``accuracy`` is the share of exactly right reads; ``at_bound`` says the minimum lies on an end
    of :data:`TEMPERATURE_RANGE` (the search range, not the data, decided it); ``candidates``
    holds, per aggregate tried, its fitted ``temperature``, ``nll`` and ``ece``;
    ``check_digit_failed`` (None when the fit did not split them off) the VIN reads whose check
    digit fails: ``reads``, how many of them are ``right`` and the ``scale`` on their confidence
    (module docstring)."""

    temperature: float
    n: int
    accuracy: float
    nll_raw: float
    nll: float
    ece_raw: Optional[float]
    ece: Optional[float]
    at_bound: bool = False
    fitted_on: Optional[str] = None
    aggregate: str = RAW_AGGREGATE
    candidates: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    check_digit_failed: Optional[Dict[str, Any]] = None

    @property
    def check_digit_scale(self) -> Optional[float]:
        return None if self.check_digit_failed is None else self.check_digit_failed["scale"]

    def to_record(self) -> Dict[str, Any]:
        """What checkpoints, reports and ``inference.yml`` store (``calibration``)."""
        return {"temperature": round(self.temperature, 6), "aggregate": self.aggregate,
                "fitted_on": self.fitted_on, "n": self.n, "accuracy": self.accuracy,
                "nll_raw": self.nll_raw, "nll": self.nll, "ece_raw": self.ece_raw,
                "ece": self.ece, "at_bound": self.at_bound,
                "candidates": {k: dict(v) for k, v in self.candidates.items()},
                "check_digit_failed": None if self.check_digit_failed is None
                else dict(self.check_digit_failed)}

    def summary(self) -> str:
        def f(v: Optional[float]) -> str:
            return "-" if v is None else f"{v:.4f}"
        others = "; ".join(f"{k}: T={v['temperature']:.4g}, log loss {v['nll']:.4f}, ece "
                           f"{f(v['ece'])}" for k, v in self.candidates.items()
                           if k != self.aggregate)
        failed = self.check_digit_failed
        split = "" if failed is None else (
            f", x{failed['scale']:.3g} for the {failed['reads']} VINs failing the check digit "
            f"({failed['right']} right)")
        return (f"{self.aggregate} of character confidences, temperature {self.temperature:.4g}"
                f"{split} on {self.n} reads (accuracy {self.accuracy:.4f}): ece "
                f"{f(self.ece_raw)} -> {f(self.ece)}, log loss {self.nll_raw:.4f} -> "
                f"{self.nll:.4f} (raw: mean, T=1)"
                + (f" [{others}]" if others else ""))


def _fit_one(data: CalibrationSet, aggregate: str, lo: float, hi: float, reads: np.ndarray
             ) -> Tuple[float, float, bool]:
    """``(temperature, log loss, at_bound)`` minimising the log loss of ``aggregate``
    confidences of the ``reads`` (a mask) over ``[lo, hi]``: a grid over ``log T``, then golden
    section."""
    def loss(log_t: float) -> float:
        return log_loss(data.confidences(math.exp(log_t), aggregate)[reads], data.correct[reads])

    grid = np.linspace(math.log(lo), math.log(hi), GRID_POINTS)
    values = [loss(float(g)) for g in grid]
    best = int(np.argmin(values))
    a, b = float(grid[max(best - 1, 0)]), float(grid[min(best + 1, GRID_POINTS - 1)])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > LOG_T_TOLERANCE:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    candidates = [(fc, c), (fd, d), (values[best], float(grid[best]))]
    nll, log_t = min(candidates)
    at_bound = abs(log_t - math.log(lo)) < LOG_T_TOLERANCE or \
        abs(log_t - math.log(hi)) < LOG_T_TOLERANCE
    return math.exp(log_t), nll, at_bound


def _check_digit_split(data: CalibrationSet, has_text: np.ndarray) -> bool:
    """Whether ``data`` can calibrate VIN reads failing the check digit apart: enough of them
    (:data:`MIN_CHECK_FAILED`), and right and wrong reads among the others to fit on."""
    failed = data.check_failed
    others = ~failed & has_text
    if int(failed.sum()) < MIN_CHECK_FAILED:
        return False
    if int(others.sum()) < MIN_READS:
        logger.info("only %d reads pass the check digit: reads failing it are calibrated with "
                    "them", int(others.sum()))
        return False
    if not (data.correct[others].any() and (~data.correct[others]).any()):
        logger.info("the %d reads passing the check digit are all right or all wrong: reads "
                    "failing it are calibrated with them", int(others.sum()))
        return False
    return True


def _check_digit_record(data: CalibrationSet, confidences: np.ndarray) -> Dict[str, Any]:
    """``check_digit_failed`` for the failing reads at ``confidences`` (before the scale): the
    scale that makes their mean confidence the Laplace-smoothed share of them that is right, at
    most 1: a failing check digit is never evidence for a read (where failing reads are right
    more often than their confidence says, they keep it)."""
    failed = data.check_failed
    reads, right = int(failed.sum()), int(data.correct[failed].sum())
    share = (right + 1) / (reads + 2)
    mean = float(confidences[failed].mean())
    # min() also covers a mean of 0 or so small that the ratio overflows.
    scale = min(1.0, share / mean) if mean > 0 else 1.0
    # Rounded as stored, and never 0 (a stored factor must be > 0).
    return {"reads": reads, "right": right, "scale": max(round(scale, 6), 1e-6)}


def fit_temperature(data: CalibrationSet, bounds: Tuple[float, float] = TEMPERATURE_RANGE,
                    fitted_on: Optional[str] = None,
                    aggregates: Sequence[str] = AGGREGATES,
                    check_digit: bool = True) -> TemperatureFit:
    """The aggregate (of ``aggregates``) and temperature in ``bounds`` minimising the log loss
    of the read confidences against exact-match correctness (see the module docstring). With
    ``check_digit`` and at least :data:`MIN_CHECK_FAILED` VIN reads failing the check digit,
    those reads get their own factor and the temperature is fitted on the others.

    Raises :class:`CalibrationError` for an empty set, one of fewer than :data:`MIN_READS`
    reads, or one without both a right and a wrong non-empty read (the loss then has no interior
    minimum: it falls towards a bound forever).
    """
    lo, hi = (check_temperature(b, "temperature bound") for b in bounds)
    if not lo < hi:
        raise CalibrationError(f"temperature bounds must satisfy low < high, got {bounds}")
    aggregates = [check_aggregate(a, "aggregates") for a in aggregates]
    if not aggregates:
        raise CalibrationError("aggregates is empty: nothing to fit")
    if data.n == 0:
        raise CalibrationError("calibration set is empty: no labelled reads to fit a "
                               "temperature on")
    if data.n < MIN_READS:
        raise CalibrationError(f"calibration set has {data.n} reads; fitting a temperature needs "
                               f"at least {MIN_READS}")
    has_text = np.bincount(data.char_read, minlength=data.n) > 0
    right, wrong = int((data.correct & has_text).sum()), int((~data.correct & has_text).sum())
    if right == 0 or wrong == 0:
        raise CalibrationError(f"calibration set of {data.n} reads has {right} right and {wrong} "
                               "wrong non-empty reads; fitting a temperature needs both (use a "
                               "larger or harder validation set)")

    truth = data.correct.tolist()
    split = check_digit and _check_digit_split(data, has_text)
    fit_reads = ~data.check_failed if split else np.ones(data.n, dtype=bool)
    fits: Dict[str, Tuple[float, float, bool]] = {}
    candidates: Dict[str, Dict[str, Any]] = {}
    failed_records: Dict[str, Optional[Dict[str, Any]]] = {}
    for aggregate in aggregates:
        t, _, bound = _fit_one(data, aggregate, lo, hi, fit_reads)
        failed_records[aggregate] = record = _check_digit_record(
            data, data.confidences(t, aggregate)) if split else None
        conf = data.calibrated(t, aggregate, None if record is None else record["scale"])
        # The loss of every read's calibrated confidence: with the split, the fitted reads'
        # loss alone would not compare aggregates whose failing reads fare differently.
        nll = log_loss(conf, data.correct)
        fits[aggregate] = (t, nll, bound)
        candidates[aggregate] = {"temperature": round(t, 6), "nll": nll,
                                 "ece": expected_calibration_error(conf.tolist(), truth)}
    # The aggregate is chosen by the same criterion the temperature is fitted by: log loss, a
    # proper scoring rule that is smooth and uses every read. ECE is not: it is binned (15
    # bins), so on a few hundred reads it moves by several points with the bin edges and the
    # handful of reads in sparse bins, and the lowest-ECE choice would chase that noise. On a
    # tie (within TIE_TOLERANCE: e.g. one-character reads, where every aggregate is the same
    # number up to rounding) the earlier aggregate, mean first, is kept.
    chosen = aggregates[0]
    for aggregate in aggregates[1:]:
        if fits[aggregate][1] < fits[chosen][1] - TIE_TOLERANCE:
            chosen = aggregate
    temperature, nll, at_bound = fits[chosen]
    raw = data.confidences(1.0, RAW_AGGREGATE)
    fit = TemperatureFit(temperature=temperature, n=data.n, accuracy=float(data.correct.mean()),
                         nll_raw=log_loss(raw, data.correct), nll=nll,
                         ece_raw=expected_calibration_error(raw.tolist(), truth),
                         ece=candidates[chosen]["ece"], at_bound=at_bound, fitted_on=fitted_on,
                         aggregate=chosen, candidates=candidates,
                         check_digit_failed=failed_records[chosen])
    if at_bound:
        logger.warning("fitted temperature %.4g (%s) is at the end of the search range [%g, %g]: "
                       "the calibration set (%d reads) may be too small or unrepresentative",
                       temperature, chosen, lo, hi, data.n)
    return fit


def calibration_set(decoder: Decoder, probs: Probs, labels: Sequence[str],
                    log_input: bool = False) -> CalibrationSet:
    """Decode raw ``probs`` (one ``[T, C]`` per read) with ``decoder`` and score the reads
    against ``labels`` (spelled as the decoder spells texts, :meth:`Decoder.canonical`). A
    decoder of the VIN alphabet marks the reads whose check digit fails."""
    if len(probs) != len(labels):
        raise CalibrationError(f"{len(probs)} probability arrays for {len(labels)} labels")
    results = [decoder.decode(np.asarray(p), log_input) for p in probs]
    correct = [r.text == decoder.canonical(label) for r, label in zip(results, labels)]
    return CalibrationSet.from_reads(probs, results, correct, log_input,  # type: ignore[arg-type]
                                     vin=is_vin_alphabet(decoder.classes))
