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
