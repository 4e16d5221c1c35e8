"""LRLPR-26 track layout: ``Scenario-*/{Brazilian,Mercosur}/track_*/`` with ``lr-001..005``,
``hr-001..005`` images and ``annotations.json`` (``plate_layout``, ``plate_text``, ``corners``).

Each frame is one sample (label = the track's plate text). LR and HR frames are separate captures,
not aligned downsamples, so they are exposed side by side (``frames='lr'|'hr'|'both'``) and whole
tracks are available through :meth:`LrlprTracks.load_track` for multi-frame recognition and SR.
When a frame has corners, it is rectified by a perspective warp of its 4 corners (Scenario-A);
frames without corners (Scenario-B) are used as they are.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import cv2
import numpy as np

from vinocr.data.base import (IMAGE_EXTENSIONS, TextDataset, encode_image, read_image,
                              read_json_object)
from vinocr.errors import ConfigError, DataError

FRAME_RE = re.compile(r"^(lr|hr)-(\d+)$", re.IGNORECASE)
CORNER_ORDER = ("top-left", "top-right", "bottom-right", "bottom-left")


@dataclass
class Track:
    track_id: str
    path: Path
    text: str
    layout: str
    scenario: str
    lr: List[Path] = field(default_factory=list)
    hr: List[Path] = field(default_factory=list)
    corners: Dict[str, np.ndarray] = field(default_factory=dict)
    annotations: Optional[Path] = None


def parse_corners(value: Any, where: str) -> Optional[np.ndarray]:
    """4x2 float32 corners (TL, TR, BR, BL) from a list of points, a dict or an 'x,y x,y ...' string."""
    if value is None or value == [] or value == {} or value == "":
        return None
    try:
        if isinstance(value, dict):
            points = [value[k] for k in CORNER_ORDER]
        elif isinstance(value, str):
            points = [[float(v) for v in p.split(",")] for p in value.split()]
        else:
            points = value
        arr = np.asarray(points, dtype=np.float32)
    except (KeyError, ValueError, TypeError):
        raise DataError(f"corners must be 4 [x, y] points or a dict with {', '.join(CORNER_ORDER)}",
                        where) from None
    if arr.shape != (4, 2):
        raise DataError(f"corners must be 4 [x, y] points, got shape {arr.shape}", where)
    if not np.all(np.isfinite(arr)):
        raise DataError("corners must be finite numbers", where)
    return arr


def rectify(image: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Warp the quadrilateral ``corners`` (TL, TR, BR, BL) to an upright rectangle."""
    tl, tr, br, bl = corners
    width = int(round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))))
    height = int(round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))))
    if width < 2 or height < 2:
        return image
    target = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]],
                      dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def find_tracks(root: Path, require_text: bool = True) -> List[Track]:
    """All tracks under ``root`` (the dataset root, a scenario, a layout folder or one track).

    ``require_text=False`` accepts tracks without ``plate_text`` (a blind test set); their text
    is ``""``."""
    if not root.exists():
        raise DataError("LRLPR root not found", root)
    files = [root / "annotations.json"] if (root / "annotations.json").is_file() else \
        sorted(root.rglob("annotations.json"))
    if not files:
        raise DataError("no track folders with annotations.json found (expected "
                        "Scenario-*/Brazilian|Mercosur/track_*/annotations.json)", root)
    tracks = []
    for ann_path in files:
        track_dir = ann_path.parent
        doc = read_json_object(ann_path)
        text = doc.get("plate_text", doc.get("text"))
        if text is None and not require_text:
            text = ""
        if text is None:
            raise DataError("missing key 'plate_text'", ann_path)
        if not isinstance(text, str):
            raise DataError(f"'plate_text' must be a string, got {type(text).__name__} {text!r}",
                            ann_path)
        layout = doc.get("plate_layout", doc.get("layout", track_dir.parent.name))
        scenario = next((p.name for p in track_dir.parents if p.name.lower().startswith("scenario")),
                        "")
        frames: Dict[str, List[Path]] = {"lr": [], "hr": []}
        for image in sorted(track_dir.iterdir()):
            match = FRAME_RE.match(image.stem)
            if match and image.suffix.lower() in IMAGE_EXTENSIONS and image.is_file():
                frames[match.group(1).lower()].append(image)
        corners: Dict[str, np.ndarray] = {}
        raw_corners = doc.get("corners") or {}
        if not isinstance(raw_corners, dict):
            raise DataError("'corners' must map frame file names to 4 points", ann_path)
        for name, value in raw_corners.items():
            parsed = parse_corners(value, f"{ann_path} corners[{name!r}]")
            if parsed is not None:
                corners[Path(name).stem.lower()] = parsed
        tracks.append(Track(track_dir.name, track_dir, text, str(layout), scenario,
                            frames["lr"], frames["hr"], corners, ann_path))
    return tracks


class LrlprTracks(TextDataset):
    """Frames of LRLPR-26-style tracks as samples.

    Args:
        path: dataset root (or a scenario / layout / track folder).
        frames: ``lr``, ``hr`` or ``both``.
        rectify: warp frames by their corners when annotations have them.
        layouts: keep only these layouts (e.g. ``["Mercosur"]``).
    """

    kind = "lrlpr"

    def __init__(self, path: Union[str, Path], frames: str = "lr", rectify: bool = True,
                 layouts: Optional[Sequence[str]] = None, charset: Any = None, strict: bool = False,
                 max_length: Optional[int] = None, require_text: bool = True) -> None:
        super().__init__(charset=charset, strict=strict, max_length=max_length)
        if frames not in ("lr", "hr", "both"):
            raise ConfigError(f"frames must be 'lr', 'hr' or 'both', got {frames!r}")
        self.path = Path(path)
        self.frames = frames
        self.rectify = rectify
        wanted = None if layouts is None else {l.lower() for l in layouts}
        self.tracks = [t for t in find_tracks(self.path, require_text)
                       if wanted is None or t.layout.lower() in wanted]
        kinds = ("lr", "hr") if frames == "both" else (frames,)
        for t_index, track in enumerate(self.tracks):
            if not track.text and not require_text:
                continue  # unlabelled: reachable through load_track, not as training samples
            for kind in kinds:
                for frame in getattr(track, kind):
                    other = "hr" if kind == "lr" else "lr"
                    pair = track.path / (other + frame.stem[2:] + frame.suffix)
                    pair_match = [p for p in getattr(track, other) if p.stem == pair.stem]
                    self._add(track.text, {
                        "path": str(frame), "track": track.track_id, "track_index": t_index,
                        "layout": track.layout, "scenario": track.scenario, "frame": frame.stem,
                        "kind": kind, "pair": str(pair_match[0]) if pair_match else None,
                        "line": None, "where": str(frame)})

    def _frame(self, track: Track, path: Path) -> np.ndarray:
        image = read_image(path)
        corners = track.corners.get(path.stem.lower())
        if self.rectify and corners is not None:
            h, w = image.shape[:2]
            # Corners far outside the frame are annotation errors; warping by them would allocate
            # huge images or produce garbage.
            if (corners[:, 0].min() < -0.5 * w or corners[:, 0].max() > 1.5 * w or
                    corners[:, 1].min() < -0.5 * h or corners[:, 1].max() > 1.5 * h):
                raise DataError(f"corners[{path.name!r}] lie outside the {w}x{h} frame: "
                                f"{corners.tolist()}", track.annotations)
            image = rectify(image, corners)
        return image

    def load_image(self, i: int) -> np.ndarray:
        meta = self._entries[i].meta
        return self._frame(self.tracks[meta["track_index"]], Path(meta["path"]))

    def read_bytes(self, i: int) -> bytes:
        """The frame as the reader yields it: rectified PNG when corners apply, else the file."""
        meta = self._entries[i].meta
        track = self.tracks[meta["track_index"]]
        path = Path(meta["path"])
        if self.rectify and path.stem.lower() in track.corners:
            return encode_image(self._frame(track, path))
        try:
            return path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read frame: {exc.strerror}", path) from None

    def load_track(self, j: int) -> Dict[str, Any]:
        """Track ``j`` as ``{"lr": [images], "hr": [images], "text", "layout", "track"}``."""
        track = self.tracks[j]
        return {"lr": [self._frame(track, p) for p in track.lr],
                "hr": [self._frame(track, p) for p in track.hr],
                "text": track.text, "layout": track.layout, "track": track.track_id}
