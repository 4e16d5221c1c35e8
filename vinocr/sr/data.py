"""LR/HR plate pairs and tracks for SR training and evaluation.

Pairs come from LRLPR-26-style tracks (:mod:`vinocr.data.lrlpr`). LR and HR frames there are
separate captures, so a pixel loss between raw frames would compare misaligned plates. Each frame
is *registered* by rectifying its annotated corners to an upright rectangle, then padded to the
plate aspect and resized to the LR / HR grid: ``lr-00k`` and ``hr-00k`` then cover the same plate
area. Tracks without corners (Scenario-B) cannot be registered; they are refused for training
with pixel losses unless ``allow_unregistered`` is set (evaluation by OCR accuracy still works).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from vinocr.data.lrlpr import LrlprTracks
from vinocr.errors import DataError
from vinocr.sr.preprocess import PLATE_ASPECT, fit, frame_stacks

logger = logging.getLogger(__name__)


@dataclass
class SRTrack:
    """One track on the SR grid: ``lr`` [F, h, w, 3] and ``hr`` [F, H, W, 3] uint8 BGR."""

    track_id: str
    text: str
    layout: str
    lr: np.ndarray
    hr: np.ndarray


class SRPairs:
    """Every (LR frame, HR frame) pair of the tracks under ``path``, loaded into memory.

    Args:
        path: dataset root (or a scenario / layout / track folder).
        lr_shape: (h, w) of the generator input; the HR grid is ``scale`` times larger.
        scale: the generator's upscaling factor.
        layouts: keep only these layouts.
        max_tracks: use only the first tracks (quick runs, tests).
        allow_unregistered: accept frames without corners (see the module docstring).
        frames: LR frames per generator input. Above 1, pair ``(track, k)`` gives the stack of
            the track's frames that starts with frame ``k`` (:func:`frame_stacks`); shuffled
            batches also shuffle the order of the frames after the first.
    """

    def __init__(self, path: Union[str, Path], lr_shape: Sequence[int] = (16, 48), scale: int = 2,
                 layouts: Optional[Sequence[str]] = None, max_tracks: Optional[int] = None,
                 allow_unregistered: bool = False, aspect: float = PLATE_ASPECT,
                 frames: int = 1) -> None:
        self.path = Path(path)
        self.frames = int(frames)
        self.lr_shape = (int(lr_shape[0]), int(lr_shape[1]))
        self.hr_shape = (self.lr_shape[0] * scale, self.lr_shape[1] * scale)
        reader = LrlprTracks(self.path, frames="lr", rectify=True, layouts=layouts)
        tracks = reader.tracks[:max_tracks] if max_tracks else reader.tracks
        if not tracks:
            raise DataError("no tracks (check the path and Data.layouts)", self.path)
        self.tracks: List[SRTrack] = []
        unlabelled = [t.track_id for t in tracks if not t.text.strip()]
        if unlabelled:
            logger.warning("%s: %d tracks without plate_text skipped (e.g. %s)", self.path,
                           len(unlabelled), ", ".join(unlabelled[:3]))
        for j, track in enumerate(tracks):
            if not track.text.strip():
                continue
            missing = [p.name for p in track.lr + track.hr if p.stem.lower() not in track.corners]
            if missing and not allow_unregistered:
                raise DataError(f"frames without corners cannot be registered for pixel losses "
                                f"({', '.join(missing[:3])}); set Data.allow_unregistered: true "
                                f"to use them anyway", track.annotations or track.path)
            frames = reader.load_track(j)
            n = min(len(frames["lr"]), len(frames["hr"]))
            if n == 0:
                raise DataError("track needs at least one lr-* and one hr-* frame", track.path)
            self.tracks.append(SRTrack(
                track.track_id, track.text, track.layout,
                np.stack([fit(im, self.lr_shape, aspect) for im in frames["lr"][:n]]),
                np.stack([fit(im, self.hr_shape, aspect) for im in frames["hr"][:n]])))
        if not self.tracks:
            raise DataError("no labelled tracks (every plate_text is empty)", self.path)
        self._index = [(t, f) for t, tr in enumerate(self.tracks) for f in range(len(tr.lr))]
        logger.info("%s: %d tracks, %d LR/HR pairs at %dx%d -> %dx%d", self.path,
                    len(self.tracks), len(self._index), *self.lr_shape, *self.hr_shape)

    def __len__(self) -> int:
        return len(self._index)

    def pair(self, i: int, rng: Optional[np.random.Generator] = None
             ) -> Tuple[np.ndarray, np.ndarray, str, str]:
        """(LR input, HR target, text, layout) of pair ``i``: the LR input is one frame, or for
        ``frames`` > 1 a stack [frames, h, w, 3] led by that frame (the others in a random
        order when ``rng`` is given)."""
        t, f = self._index[i]
        tr = self.tracks[t]
        if self.frames == 1:
            return tr.lr[f], tr.hr[f], tr.text, tr.layout
        k = len(tr.lr)
        if rng is None:  # the frames after f, cyclically: lr_inputs' stack f
            rest = [(f + j) % k for j in range(1, k)]
        else:
            others = [j for j in range(k) if j != f]
            rest = [others[j] for j in rng.permutation(len(others))]
        return frame_stacks(tr.lr[[f] + rest], self.frames)[0], tr.hr[f], tr.text, tr.layout

    def lr_inputs(self, track: SRTrack) -> np.ndarray:
        """The generator inputs of ``track``, one per LR frame, in frame order: the frames
        themselves, or their stacks (:func:`frame_stacks`) for a multi-frame generator."""
        return track.lr if self.frames == 1 else frame_stacks(track.lr, self.frames)

    def batches(self, batch_size: int, rng: Optional[np.random.Generator] = None
                ) -> Iterator[Tuple[np.ndarray, np.ndarray, List[str], List[str]]]:
        """Batches of (lr uint8 [B,h,w,3] or [B,frames,h,w,3], hr uint8 [B,H,W,3], texts,
        layouts); shuffled when ``rng`` is given, the last partial batch kept."""
        order = np.arange(len(self._index))
        if rng is not None:
            rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            items = [self.pair(int(i), rng) for i in idx]
            yield (np.stack([it[0] for it in items]), np.stack([it[1] for it in items]),
                   [it[2] for it in items], [it[3] for it in items])
