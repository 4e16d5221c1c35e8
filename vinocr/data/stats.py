"""Dataset statistics: counts, label-length histogram, character frequencies, image sizes."""
from __future__ import annotations

import struct
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from vinocr.data.base import TextDataset


def _png_or_jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(height, width) from the header of a PNG or JPEG without decoding the pixels."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return h, w
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            length = struct.unpack(">H", data[i + 2:i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                          0xCF):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return h, w
            i += 2 + length
    return None


def dataset_stats(dataset: TextDataset, max_images: Optional[int] = None) -> Dict[str, Any]:
    labels = dataset.labels()
    lengths = Counter(len(l) for l in labels)
    chars = Counter(c for l in labels for c in l)
    sizes: List[Tuple[int, int]] = []
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    for i in range(n):
        try:
            data = dataset.read_bytes(i)
        except Exception:  # unreadable samples are the validator's business, not stats'
            continue
        hw = _png_or_jpeg_size(data)
        if hw is None:
            try:
                hw = dataset.load_image(i).shape[:2]
            except Exception:
                continue
        sizes.append(hw)
    size_stats: Dict[str, Any] = {}
    if sizes:
        arr = np.array(sizes, dtype=np.float64)
        aspect = arr[:, 1] / np.maximum(arr[:, 0], 1)
        for name, col in (("height", arr[:, 0]), ("width", arr[:, 1]), ("aspect_w_h", aspect)):
            size_stats[name] = {"min": float(col.min()), "p5": float(np.percentile(col, 5)),
                                "median": float(np.median(col)),
                                "p95": float(np.percentile(col, 95)), "max": float(col.max())}
        size_stats["common_sizes"] = [[f"{h}x{w}", c] for (h, w), c in
                                      Counter(map(tuple, arr.astype(int).tolist())).most_common(5)]
    return {
        "source": dataset.describe(),
        "samples": len(dataset),
        "skipped": len(dataset.skipped),
        "missing_images": len(getattr(dataset, "missing", [])),
        "unique_labels": len(set(labels)),
        "length_histogram": dict(sorted(lengths.items())),
        "char_frequency": dict(chars.most_common()),
        "image_sizes": size_stats,
        "images_measured": len(sizes),
    }


def format_stats(stats: Dict[str, Any]) -> str:
    lines = [f"dataset       {stats['source']}",
             f"samples       {stats['samples']} ({stats['skipped']} skipped labels, "
             f"{stats['missing_images']} missing images, {stats['unique_labels']} unique labels)", "", "label length histogram:"]
    total = max(1, stats["samples"])
    hist = stats["length_histogram"]
    peak = max(hist.values()) if hist else 1
    for length, count in hist.items():
        bar = "#" * max(1, round(40 * count / peak))
        lines.append(f"  {length:>3}  {count:>8}  {100 * count / total:5.1f}%  {bar}")
    lines += ["", "character frequencies (most common first):"]
    items = list(stats["char_frequency"].items())
    for start in range(0, len(items), 8):
        lines.append("  " + "  ".join(f"{c!s:>2}:{n:<6}" for c, n in items[start:start + 8]))
    sizes = stats["image_sizes"]
    if sizes:
        lines += ["", f"image sizes ({stats['images_measured']} images):"]
        for name in ("height", "width", "aspect_w_h"):
            s = sizes[name]
            lines.append(f"  {name:<10} min {s['min']:.1f}  p5 {s['p5']:.1f}  median "
                         f"{s['median']:.1f}  p95 {s['p95']:.1f}  max {s['max']:.1f}")
        lines.append("  most common: " + ", ".join(f"{s} ({c})" for s, c in sizes["common_sizes"]))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ image quality
# Immerkaer's noise estimator: the kernel cancels image structure up to second order, what is left
# is noise (J. Immerkaer, "Fast noise variance estimation", CVIU 1996).
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
QUALITY_KEYS = ("height", "width", "brightness", "contrast", "sharpness", "noise")


def image_quality(image: np.ndarray) -> Dict[str, float]:
    """Simple, size-independent measures of one BGR crop.

    ``brightness``: mean grey level. ``contrast``: grey p95 - p5. ``sharpness``: std of the
    Laplacian over std of the grey image (contrast-free; blur and down-scaling lower it).
    ``noise``: Immerkaer's noise sigma in grey levels.
    """
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    grey = grey.astype(np.float64)
    h, w = grey.shape
    p5, p95 = np.percentile(grey, [5, 95])
    lap = cv2.Laplacian(grey, cv2.CV_64F)
    noise = 0.0
    if h > 2 and w > 2:
        resp = cv2.filter2D(grey, cv2.CV_64F, _NOISE_KERNEL)[1:-1, 1:-1]
        noise = float(np.sqrt(np.pi / 2) * np.abs(resp).sum() / (6.0 * (w - 2) * (h - 2)))
    return {"height": float(h), "width": float(w), "brightness": float(grey.mean()),
            "contrast": float(p95 - p5), "sharpness": float(lap.std() / max(grey.std(), 1e-6)),
            "noise": noise}


def _summary(values: List[float]) -> Dict[str, float]:
    arr = np.asarray(values, np.float64)
    return {"mean": float(arr.mean()), "p10": float(np.percentile(arr, 10)),
            "median": float(np.median(arr)), "p90": float(np.percentile(arr, 90))}


def quality_stats(dataset: TextDataset, max_images: Optional[int] = None) -> Dict[str, Any]:
    """:func:`image_quality` summarised (mean, p10, median, p90) over the dataset's images.

    Images are measured as the dataset loads them (track frames with corners: the rectified
    plate). For LRLPR-26 tracks (a dataset with ``tracks``) it adds the frame files' own sizes
    (``file_height``/``file_width``: the detector's crops), what consecutive frames of a track
    share: the relative size change from one frame to the next (``growth``) and how much
    brightness, sharpness and noise vary inside a track against across tracks
    (``within_track_share``: mean within-track std / std over all frames; 1 = frames of one
    track differ as much as frames of different tracks, 0 = identical conditions).
    """
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    per_image: Dict[str, List[float]] = {k: [] for k in QUALITY_KEYS}
    for i in range(n):
        try:
            q = image_quality(dataset.load_image(i))
        except Exception:  # unreadable samples are the validator's business, not stats'
            continue
        for k in QUALITY_KEYS:
            per_image[k].append(q[k])
    out: Dict[str, Any] = {"images": len(per_image["height"])}
    if not out["images"]:
        return out
    out["frames"] = {k: _summary(v) for k, v in per_image.items()}
    tracks = getattr(dataset, "tracks", None)
    if tracks:
        out["tracks"] = _track_consistency(dataset, max_images)
    return out


def _track_consistency(dataset: Any, max_images: Optional[int]) -> Dict[str, Any]:
    from vinocr.data.base import read_image

    frames_key = "hr" if getattr(dataset, "frames", "lr") == "hr" else "lr"
    growth: List[float] = []
    raw: Dict[str, List[float]] = {"height": [], "width": []}
    per_track: Dict[str, List[List[float]]] = {k: [] for k in ("brightness", "sharpness",
                                                               "noise")}
    seen = 0
    for track in dataset.tracks:
        paths = getattr(track, frames_key)
        if len(paths) < 2:
            continue
        qs = [image_quality(read_image(p)) for p in paths]
        seen += len(qs)
        widths = [q["width"] for q in qs]
        growth += [b / a - 1.0 for a, b in zip(widths, widths[1:])]
        raw["height"] += [q["height"] for q in qs]
        raw["width"] += widths
        for k in per_track:
            per_track[k].append([q[k] for q in qs])
        if max_images is not None and seen >= max_images:
            break
    if not growth:
        return {}
    result: Dict[str, Any] = {"tracks": len(per_track["noise"]), "growth": _summary(growth),
                              "file_height": _summary(raw["height"]),
                              "file_width": _summary(raw["width"])}
    for k, rows in per_track.items():
        within = float(np.mean([np.std(r) for r in rows]))
        overall = float(np.std([v for r in rows for v in r]))
        result[f"{k}_within_track_share"] = within / overall if overall > 0 else 0.0
    return result


def format_quality(stats: Dict[str, Any]) -> str:
    """The table :func:`quality_stats` measured, as text."""
    if not stats.get("images"):
        return "image quality: no readable images"
    lines = [f"image quality ({stats['images']} images, as loaded):",
             f"  {'':<11}{'mean':>9}{'p10':>9}{'median':>9}{'p90':>9}"]
    for k, s in stats["frames"].items():
        lines.append(f"  {k:<11}" + "".join(f"{s[c]:>9.2f}" for c in ("mean", "p10", "median",
                                                                      "p90")))
    t = stats.get("tracks")
    if t:
        g = t["growth"]
        fh, fw = t["file_height"], t["file_width"]
        lines += [f"track consistency ({t['tracks']} tracks):",
                  f"  frame files: median {fh['median']:.0f} x {fw['median']:.0f} px (mean "
                  f"{fh['mean']:.1f} x {fw['mean']:.1f}, p10..p90 height {fh['p10']:.0f}.."
                  f"{fh['p90']:.0f}, width {fw['p10']:.0f}..{fw['p90']:.0f})",
                  f"  width change per frame: median {g['median']:+.3f} "
                  f"(p10 {g['p10']:+.3f}, p90 {g['p90']:+.3f})",
                  "  within-track share of the variation: " + ", ".join(
                      f"{k} {t[f'{k}_within_track_share']:.2f}"
                      for k in ("brightness", "sharpness", "noise"))]
    return "\n".join(lines)


def track_grid(dataset: Any, n_tracks: int = 8, height: int = 64, gap: int = 4) -> np.ndarray:
    """A picture of the first ``n_tracks`` tracks, one per row: the LR frame files, then the first
    HR frame, each scaled to ``height`` pixels (nearest neighbour, so LR pixels stay visible).
    What ``vinocr-data stats --grid`` writes, to look at synthetic and real tracks side by side."""
    import cv2

    from vinocr.data.base import read_image

    rows: List[np.ndarray] = []
    for track in list(getattr(dataset, "tracks", []))[:n_tracks]:
        cells = []
        for path in list(track.lr) + list(track.hr)[:1]:
            img = read_image(path)
            w = max(1, int(round(img.shape[1] * height / img.shape[0])))
            cells.append(cv2.resize(img, (w, height), interpolation=cv2.INTER_NEAREST))
            cells.append(np.zeros((height, gap, 3), np.uint8))
        if cells:
            rows.append(np.concatenate(cells, axis=1))
    if not rows:
        raise ValueError("no tracks to draw")
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)
