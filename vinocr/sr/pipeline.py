"""Super-resolution in front of the recogniser, for single crops and for whole tracks.

    from vinocr.predict import Recognizer
    from vinocr.export.sr import SRPredictor
    rec = Recognizer.from_dir("exported/plate")
    tracks = TrackRecognizer(rec, sr=SRPredictor.from_dir("exported/sr"), method="sequence")
    tracks.recognise(lr_frames)            # -> TrackResult (text, confidence, per-frame results)
    chain(sr, rec, [crop1, crop2])         # -> [RecognitionResult] for single images

The SR model is any callable ``list of BGR uint8 -> list of BGR uint8`` (an object with an ``sr``
method, such as :class:`vinocr.export.sr.SRPredictor`, is called through that method). The SR
output goes through the recogniser's own preprocessing, so the recogniser needs no knowledge of
the SR scale: it sees an upscaled plate crop like any other.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np

from vinocr.errors import ConfigError, VinocrError
from vinocr.sr.fusion import METHODS, TrackResult, check_method, recognise_track

logger = logging.getLogger(__name__)

SRFunction = Callable[[List[np.ndarray]], List[np.ndarray]]


def run_sr(sr: Any, images: Sequence[Union[np.ndarray, str, Path]]) -> List[np.ndarray]:
    """Super-resolve ``images`` (arrays or paths) with ``sr`` (its ``sr`` method, or ``sr`` itself).

    Checks that one image comes back per image: a silently shorter list would misattribute every
    later result.
    """
    from vinocr.data.base import read_image

    arrays = [read_image(x) if isinstance(x, (str, Path)) else x for x in images]
    if not arrays:
        return []
    fn = getattr(sr, "sr", None)
    fn = fn if callable(fn) else sr
    if not callable(fn):
        raise VinocrError(f"SR model {type(sr).__name__} is not callable and has no sr() method")
    out = list(fn(arrays))
    if len(out) != len(arrays):
        raise VinocrError(f"SR model returned {len(out)} images for {len(arrays)} inputs")
    return out


def chain(sr: Any, rec: Any, images: Sequence[Union[np.ndarray, str, Path]],
          batch_size: Optional[int] = None) -> List[Any]:
    """SR (when ``sr`` is not None) then recognition of single images -> [RecognitionResult]."""
    items = list(images)
    if not items:
        return []
    if sr is not None:
        if getattr(sr, "frames", 1) > 1:
            raise ConfigError(f"this SR model reads {sr.frames} frames of one track per image; "
                              f"give tracks (vinocr-predict --tracks), not single crops")
        items = run_sr(sr, items)
    return rec.predict(items, batch_size=batch_size)


class TrackRecognizer:
    """Recognise a track of LR frames: optional SR per frame, recogniser per frame, fusion.

    Args:
        rec: a :class:`vinocr.predict.Recognizer` (its decoder decodes both the single frames and
            the fused output, so export the recogniser with the ``plate`` decoder to get
            layout-valid fused texts).
        sr: optional SR model (see the module docstring); None recognises the frames as they are.
        method: fusion method, one of :data:`vinocr.sr.fusion.METHODS`.
        frames: at most this many frames of a track are used (the first ones): LRLPR-26 tracks
            have 5, and capping keeps the cost per track bounded on longer tracks.
    """

    def __init__(self, rec: Any, sr: Optional[Any] = None, method: str = "sequence",
                 frames: int = 5) -> None:
        check_method(method)
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ConfigError(f"frames must be an int >= 1, got {frames!r}")
        self.rec = rec
        self.sr = sr
        self.method = method
        self.frames = frames

    def recognise(self, track_images: Sequence[Union[np.ndarray, str, Path]]) -> TrackResult:
        """One track's LR frames (BGR arrays or paths) -> :class:`TrackResult`.

        With ``method="single"`` only the first frame is super-resolved and recognised.
        """
        probs = self.rec.frame_probs(self._frames(track_images))
        return recognise_track(probs, self.rec.decoder, self.method)

    def _frames(self, track_images: Sequence[Union[np.ndarray, str, Path]]) -> List[Any]:
        """The frames of a track that are recognised (the first ``frames``, or one for
        ``single``), super-resolved when there is an SR model."""
        images = list(track_images)[:self.frames]
        if not images:
            raise VinocrError("a track needs at least one frame")
        # A multi-frame SR model uses the other frames even for the first frame's image.
        if self.method == "single" and getattr(self.sr, "frames", 1) == 1:
            images = images[:1]
        if self.sr is not None:
            images = run_sr(self.sr, images)
        return images[:1] if self.method == "single" else images

    def recognise_many(self, tracks: Sequence[Sequence[Union[np.ndarray, str, Path]]]
                       ) -> List[TrackResult]:
        """Several tracks at once: their frames share the recogniser's batches (sorted by aspect
        ratio, ``rec.batch_size`` per engine call) instead of one small batch per track, which
        is what makes a folder of tracks fast. Results are those of :meth:`recognise`.

        With ``dynamic_width`` a frame's T depends on its batch's padded width and the fusion of
        per-step log-probabilities needs one T per track, so each track is then its own batch.
        """
        if getattr(self.rec, "dynamic_width", False):
            return [self.recognise(t) for t in tracks]
        per_track = [self._frames(track) for track in tracks]
        flat = [im for images in per_track for im in images]
        probs = self.rec.frame_probs(flat) if flat else []
        out, start = [], 0
        for images in per_track:
            out.append(recognise_track(probs[start:start + len(images)], self.rec.decoder,
                                       self.method))
            start += len(images)
        return out

    def __repr__(self) -> str:
        return (f"TrackRecognizer({self.rec!r}, sr={type(self.sr).__name__ if self.sr else None}, "
                f"method={self.method!r}, frames={self.frames})")


__all__ = ["METHODS", "SRFunction", "TrackRecognizer", "TrackResult", "chain", "run_sr"]
