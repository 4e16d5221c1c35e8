"""Write synthetic VIN datasets (PaddleOCR label file or DTRB LMDB) and plate-track datasets.

Determinism: sample ``i`` draws all of its randomness from ``np.random.default_rng([seed, i])``, so
the output depends only on ``(seed, i)`` -- not on the number of worker processes, the order in
which workers finish, or how many samples were generated before it.

Interruption (Ctrl-C, a crash): nothing half-written looks complete. ``synth.json`` is written
first with ``"complete": false`` and rewritten with ``true`` at the very end; the label file is
written last, atomically (so it never lists missing images), an LMDB gets its ``num-samples`` key
last, and a plate track its ``annotations.json`` last. Worker processes ignore SIGINT: Ctrl-C
reaches the parent only, which terminates the pool, so the user sees one line, not a traceback
per worker.
"""
from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import (Any, Callable, Dict, FrozenSet, Iterable, Iterator, Optional, Sequence, Tuple,
                    TypeVar, Union)

import cv2
import numpy as np

from vinocr.data.provenance import GENERATOR, IMAGE_DIR, SETTINGS_FILE
from vinocr.data.synth.plates import (FRAMES_PER_TRACK, LAYOUT_NAMES, SCENARIOS, normalise_layout,
                                      random_plate, scenario_spec, write_track)
from vinocr.data.synth.pools import get_pool
from vinocr.data.synth.vin_render import ASPECT_RANGE, HEIGHT_RANGE, check_styles, render_vin
from vinocr.data.synth.vin_text import random_vin
from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
T = TypeVar("T")

FORMATS = ("labelfile", "lmdb")
LABEL_FILE = "labels.txt"
# IMAGE_DIR, SETTINGS_FILE and GENERATOR come from vinocr.data.provenance, which reads them.
# Everything a generator may have written, removed by ``overwrite=True`` (and nothing else).
_OUTPUTS = (IMAGE_DIR, LABEL_FILE, LABEL_FILE + ".tmp", "data.mdb", "lock.mdb", SETTINGS_FILE,
            SETTINGS_FILE + ".tmp", *(spec.folder for spec in SCENARIOS.values()))

# zlib level 1 with Huffman-only coding: noisy synthetic crops barely compress with LZ77 anyway
# (+4% size), and it halves the encoding time, which otherwise dominates the generation cost.
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1,
               cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a BGR uint8 image, tuned for speed."""
    ok, buf = cv2.imencode(".png", image, _PNG_PARAMS)
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
        raise VinocrError("PNG encoding failed")
    return buf.tobytes()


def make_vin_sample(seed: int, index: int, styles: Optional[Sequence[str]] = None,
                    delimiter_prob: float = 0.3, pool: str = "all"
                    ) -> Tuple[bytes, str, Dict[str, Any]]:
    """Sample ``index`` of the dataset with ``seed``: ``(png_bytes, label, meta)``.

    ``styles`` None means every style of ``pool`` (see :mod:`vinocr.data.synth.pools`).
    """
    style_list = check_styles(styles) if styles is not None else get_pool(pool).styles
    rng = np.random.default_rng([int(seed), int(index)])
    vin = random_vin(rng)
    style = style_list[int(rng.integers(len(style_list)))]
    delimiters = bool(rng.random() < delimiter_prob)
    image, meta = render_vin(vin, rng, style=style, delimiters=delimiters, pool=pool)
    return encode_png(image), vin, meta


def _vin_task(index: int, seed: int, styles: Tuple[str, ...], delimiter_prob: float, pool: str
              ) -> Tuple[bytes, str, str]:
    data, label, meta = make_vin_sample(seed, index, styles, delimiter_prob, pool)
    return data, label, meta["style"]


def _worker_init() -> None:
    # Ctrl-C signals the terminal's whole process group; the parent handles it (and terminates
    # the pool), a worker would only print a KeyboardInterrupt traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Each worker is one core's worth of work; OpenCV's own thread pool would oversubscribe.
    cv2.setNumThreads(1)


def _start_pool(ctx: Any, workers: int) -> Any:
    """A pool whose workers ignore SIGINT from their first instruction on.

    The initializer runs only after a spawned worker has imported this module; SIGINT ignored in
    the parent while the workers start is inherited across exec and covers that window too.
    """
    if threading.current_thread() is not threading.main_thread():
        return ctx.Pool(processes=workers, initializer=_worker_init)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return ctx.Pool(processes=workers, initializer=_worker_init)
    finally:
        signal.signal(signal.SIGINT, previous)


def _map_ordered(func: Callable[[int], T], n: int, workers: int) -> Iterator[T]:
    """``func(i)`` for i in range(n), in order, optionally spread over worker processes.

    On Ctrl-C (or any error, or when the consumer stops early) the pool is terminated before the
    exception propagates."""
    workers = _cap_workers(workers, n)
    if workers <= 1 or n <= 1:
        for i in range(n):
            yield func(i)
        return
    # "spawn" avoids forking a parent that may hold threads (e.g. Paddle, OpenCV pools).
    ctx = multiprocessing.get_context("spawn")
    chunk = max(1, min(64, n // (workers * 8) or 1))
    pool = _start_pool(ctx, workers)
    try:
        yield from pool.imap(func, range(n), chunksize=chunk)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _prepare_out_dir(out_dir: PathLike, overwrite: bool) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VinocrError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise VinocrError(f"output directory {out} is not empty; choose a new directory or "
                              "pass --overwrite")
        if not (out / SETTINGS_FILE).is_file():
            # Without our marker the folder may hold someone's real data: never delete that.
            raise VinocrError(f"output directory {out} is not empty and was not written by "
                              f"vinocr-synth (no {SETTINGS_FILE}); --overwrite only replaces "
                              "earlier synthetic output")
        for name in _OUTPUTS:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise VinocrError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise VinocrError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _cap_workers(workers: int, n: int) -> int:
    """More processes than cores (or than samples) only adds start-up time."""
    cap = max(1, min(os.cpu_count() or 1, n))
    if workers > cap:
        logger.info("using %d worker processes instead of %d (cores/samples)", cap, workers)
    return min(workers, cap)


def _write_settings(out: Path, settings: Dict[str, Any], complete: bool) -> None:
    """``synth.json`` (atomically): the generator's settings and whether the run finished.

    Written with ``complete: false`` before the first sample, so an interrupted folder is marked
    as such (and stays replaceable with ``overwrite``), and again with ``true`` at the end."""
    tmp = out / (SETTINGS_FILE + ".tmp")
    tmp.write_text(json.dumps(dict(settings, complete=complete), indent=2) + "\n",
                   encoding="utf-8")
    os.replace(tmp, out / SETTINGS_FILE)


def _progress(done: int, total: int, what: str) -> None:
    step = max(1, total // 10)
    if done % step == 0 or done == total:
        logger.info("%s: %d/%d", what, done, total)


def _write_label_file(out: Path, samples: Iterable[Tuple[bytes, str]], n: int) -> None:
    """``images/NNNNNN.png`` and ``labels.txt`` (``path<TAB>label``) from PNG samples."""
    width = max(6, len(str(n - 1)))
    image_dir = out / IMAGE_DIR
    image_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (data, label) in enumerate(samples):
        rel = f"{IMAGE_DIR}/{i:0{width}d}.png"
        (out / rel).write_bytes(data)
        lines.append(f"{rel}\t{label}\n")
    # Written last, via a temporary name, so an interrupted run never leaves a label file that
    # points at missing images.
    tmp = out / (LABEL_FILE + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, out / LABEL_FILE)


def generate_vin_dataset(out_dir: PathLike, n: int, seed: int = 0, fmt: str = "labelfile",
                         styles: Optional[Union[str, Sequence[str]]] = None,
                         delimiter_prob: float = 0.3, workers: int = 1,
                         overwrite: bool = False, pool: str = "all") -> Path:
    """Generate ``n`` synthetic VIN crops in ``out_dir``; return ``out_dir``.

    Args:
        out_dir: output directory (created; must be empty unless ``overwrite``).
        n: number of crops.
        seed: dataset seed; sample i uses ``default_rng([seed, i])``.
        fmt: ``"labelfile"`` (``images/000000.png`` + ``labels.txt`` with ``path<TAB>VIN``) or
            ``"lmdb"`` (DTRB keys, via :func:`vinocr.data.lmdb_dataset.write_lmdb`).
        styles: subset of :data:`~vinocr.data.synth.vin_render.STYLES` (None = every style of
            ``pool``), as a list or a comma-separated string.
        delimiter_prob: probability of drawing ``*`` delimiters around the code.
        workers: worker processes (output is identical for any value).
        overwrite: replace the outputs of an earlier run in ``out_dir``.
        pool: style pool, ``train``, ``heldout`` or ``all`` (:mod:`vinocr.data.synth.pools`):
            train a model you will judge on held-out styles on ``train`` data, and judge it on a
            ``heldout`` set.
    """
    n = _check_count("n", n)
    style_pool = get_pool(pool)
    workers = _check_count("workers", workers)
    seed = _check_seed(seed)
    if fmt not in FORMATS:
        raise VinocrError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not 0.0 <= float(delimiter_prob) <= 1.0:
        raise VinocrError(f"delimiter_prob must be between 0 and 1, got {delimiter_prob}")
    style_list = check_styles(styles) if styles is not None else style_pool.styles
    write_lmdb = None
    if fmt == "lmdb":
        try:
            from vinocr.data.lmdb_dataset import write_lmdb
        except ImportError as exc:
            raise VinocrError(f"LMDB output is unavailable ({exc}); install the 'lmdb' package "
                              "or use --format labelfile") from None
    out = _prepare_out_dir(out_dir, overwrite)
    task = functools.partial(_vin_task, seed=int(seed), styles=style_list,
                             delimiter_prob=float(delimiter_prob), pool=style_pool.name)
    counts: Dict[str, int] = {s: 0 for s in style_list}
    settings = {
        "generator": GENERATOR, "kind": "vin", "n": n, "seed": int(seed), "format": fmt,
        "styles": list(style_list), "pool": style_pool.name,
        "degradations": list(style_pool.degradations), "delimiter_prob": float(delimiter_prob),
        "height_range": list(HEIGHT_RANGE), "aspect_range": list(ASPECT_RANGE),
        "label_file": LABEL_FILE if fmt == "labelfile" else None,
        "style_counts": counts, "sample_rng": "numpy default_rng([seed, index])",
    }
    _write_settings(out, settings, complete=False)
    logger.info("generating %d VIN crops (%s, pool %s, styles %s, %d worker%s) in %s", n, fmt,
                style_pool.name, ",".join(style_list), workers, "" if workers == 1 else "s", out)

    def samples() -> Iterable[Tuple[bytes, str]]:
        for i, (data, label, style) in enumerate(_map_ordered(task, n, workers), start=1):
            counts[style] += 1
            _progress(i, n, "VIN crops")
            yield data, label

    if fmt == "labelfile":
        _write_label_file(out, samples(), n)
    else:
        assert write_lmdb is not None
        written = write_lmdb(out, samples())
        if written != n:  # pragma: no cover - write_lmdb consumes the whole iterator
            raise VinocrError(f"LMDB writer stored {written} of {n} samples")
    _write_settings(out, settings, complete=True)
    logger.info("wrote %d VIN crops to %s", n, out)
    return out


def _remove_partial_tracks(out: Path) -> None:
    """Delete track folders whose ``annotations.json`` (written last) is missing or cut short."""
    for track_dir in sorted(out.glob("Scenario-*/*/track_*")):
        try:
            json.loads((track_dir / "annotations.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            shutil.rmtree(track_dir, ignore_errors=True)


def _track_task(index: int, seed: int, layouts: Tuple[str, ...], root: str,
                image_ext: Optional[str], scenario: str) -> Tuple[str, str]:
    """Track number ``index + 1``; layouts alternate so both are equally represented."""
    number = index + 1
    layout = layouts[index % len(layouts)]
    rng = np.random.default_rng([int(seed), int(number)])
    text = random_plate(rng, layout)
    track_dir = (Path(root) / scenario_spec(scenario).folder / LAYOUT_NAMES[layout]
                 / f"track_{number:05d}")
    write_track(track_dir, text, layout, rng, image_ext=image_ext, scenario=scenario)
    return layout, text


def generate_plate_tracks(out_dir: PathLike, n_tracks: int, seed: int = 0,
                          layouts: Union[str, Sequence[str]] = ("brazilian", "mercosur"),
                          workers: int = 1, image_ext: Optional[str] = None,
                          overwrite: bool = False, scenario: str = "A") -> Path:
    """Generate ``n_tracks`` LRLPR-26-style tracks under ``out_dir/Scenario-<A|B>/<Layout>/``.

    Track ``k`` (1-based, ``track_%05d``) uses ``default_rng([seed, k])`` and the layout
    ``layouts[(k - 1) % len(layouts)]``; each holds ``hr-001..005``, ``lr-001..005`` and
    ``annotations.json`` (Scenario-B: no corners; see
    :data:`vinocr.data.synth.plates.SCENARIOS`). ``image_ext`` defaults to the scenario's
    (``.png`` for A, ``.jpg`` for B). Returns ``out_dir``.
    """
    n_tracks = _check_count("n_tracks", n_tracks)
    workers = _check_count("workers", workers)
    seed = _check_seed(seed)
    spec = scenario_spec(scenario)
    if isinstance(layouts, str):
        layouts = layouts.split(",")
    layout_keys = tuple(normalise_layout(l) for l in layouts if str(l).strip())
    if not layout_keys:
        raise VinocrError("no plate layouts given; choose from brazilian, mercosur")
    ext = image_ext or spec.image_ext
    ext = ext if ext.startswith(".") else "." + ext
    if ext.lower() not in (".png", ".jpg", ".jpeg"):
        raise VinocrError(f"image extension must be .png or .jpg, got {image_ext!r}")
    out = _prepare_out_dir(out_dir, overwrite)
    scenario = spec.folder[len("Scenario-"):]
    task = functools.partial(_track_task, seed=int(seed), layouts=layout_keys, root=str(out),
                             image_ext=ext, scenario=scenario)
    counts = {LAYOUT_NAMES[k]: 0 for k in layout_keys}
    settings = {
        "generator": GENERATOR, "kind": "plates", "n_tracks": n_tracks,
        "seed": int(seed), "layouts": list(layout_keys), "image_ext": ext, "scenario": spec.folder,
        "frames_per_track": FRAMES_PER_TRACK, "layout_counts": counts,
        "sample_rng": "numpy default_rng([seed, track_number])",
    }
    _write_settings(out, settings, complete=False)
    logger.info("generating %d plate tracks (%s) in %s", n_tracks, ",".join(layout_keys), out)
    results = _map_ordered(task, n_tracks, workers)
    try:
        for i, (layout, _) in enumerate(results, start=1):
            counts[LAYOUT_NAMES[layout]] += 1
            _progress(i, n_tracks, "plate tracks")
    except BaseException:
        # Interrupted: stop the workers (closing the generator terminates the pool), then remove
        # the tracks they were writing.
        results.close()
        _remove_partial_tracks(out)
        raise
    _write_settings(out, settings, complete=True)
    logger.info("wrote %d plate tracks to %s", n_tracks, out)
    return out


def make_plate_crop_sample(seed: int, index: int, mix: Sequence[Tuple[str, float]],
                           two_row_p: Optional[float] = None, charset: str = "plate_cn"
                           ) -> Tuple[bytes, str, Dict[str, Any]]:
    """Crop ``index`` of the plate-crop dataset with ``seed``: ``(png_bytes, label, meta)``.

    ``mix`` is ``(format name, share)`` pairs (:func:`~vinocr.data.synth.plate_crops.format_mix`);
    labels hold only characters of ``charset`` (a built-in name or dictionary file).
    """
    from vinocr.data.synth.plate_crops import render_plate_crop
    from vinocr.decode.formats import get_format

    rng = np.random.default_rng([int(seed), int(index)])
    shares = np.array([w for _, w in mix], np.float64)
    name = mix[int(rng.choice(len(mix), p=shares / shares.sum()))][0]
    image, label, meta = render_plate_crop(get_format(name), rng, two_row_p=two_row_p,
                                           alphabet=_charset_chars(charset))
    return encode_png(image), label, meta


@functools.lru_cache(maxsize=4)
def _charset_chars(charset: str) -> FrozenSet[str]:
    from vinocr.charset import load_charset

    return frozenset(c for c in load_charset(charset).class_list() if len(c) == 1)


def _plate_crop_task(index: int, seed: int, mix: Tuple[Tuple[str, float], ...],
                     two_row_p: Optional[float], charset: str) -> Tuple[bytes, str, str, bool]:
    data, label, meta = make_plate_crop_sample(seed, index, mix, two_row_p, charset)
    return data, label, meta["format"], bool(meta["two_row"])


def generate_plate_crops(out_dir: PathLike, n: int, formats: str, seed: int = 0,
                         two_row_p: Optional[float] = None, charset: str = "plate_cn",
                         workers: int = 1, overwrite: bool = False) -> Path:
    """Generate ``n`` plate crops of the registered ``formats`` in ``out_dir``; return it.

    Args:
        out_dir: output directory (created; must be empty unless ``overwrite``).
        n: number of crops.
        formats: ``"cn_blue:6,cn_green,us"``: format or group names with optional weights
            (:func:`~vinocr.data.synth.plate_crops.format_mix`).
        seed: dataset seed; crop i uses ``default_rng([seed, i])``.
        two_row_p: chance of a two-row plate where the region has them (None: each region's
            own rate; 0: one-row plates only).
        charset: the recogniser's charset (built-in name or dictionary file): labels hold only
            its characters (``plate`` has no Chinese signs and no umlauts).
        workers: worker processes (output is identical for any value).
        overwrite: replace the outputs of an earlier run in ``out_dir``.

    Writes ``images/*.png``, ``labels.txt`` (``path<TAB>plate`` as read: separators dropped,
    merged characters canonical, top row first) and ``synth.json`` with the per-format counts.
    """
    from vinocr.data.synth.plate_crops import format_mix

    n = _check_count("n", n)
    workers = _check_count("workers", workers)
    seed = _check_seed(seed)
    if two_row_p is not None and not 0.0 <= float(two_row_p) <= 1.0:
        raise VinocrError(f"two_row_p must be between 0 and 1, got {two_row_p}")
    mix = tuple((fmt.name, share) for fmt, share in format_mix(formats))
    # Fail before writing anything: an unknown charset, or a format it cannot spell.
    for name, _ in mix:
        make_plate_crop_sample(seed, 0, ((name, 1.0),), two_row_p, charset)
    out = _prepare_out_dir(out_dir, overwrite)
    task = functools.partial(_plate_crop_task, seed=seed, mix=mix, two_row_p=two_row_p,
                             charset=charset)
    counts: Dict[str, int] = {name: 0 for name, _ in mix}
    settings = {
        "generator": GENERATOR, "kind": "plate_crops", "n": n, "seed": seed,
        "formats": str(formats), "format_shares": {name: round(w, 6) for name, w in mix},
        "two_row_p": two_row_p, "charset": charset, "label_file": LABEL_FILE,
        "format_counts": counts,
        "two_row_count": 0, "sample_rng": "numpy default_rng([seed, index])",
    }
    _write_settings(out, settings, complete=False)
    logger.info("generating %d plate crops (%d formats, %d worker%s) in %s", n, len(mix), workers,
                "" if workers == 1 else "s", out)

    def samples() -> Iterable[Tuple[bytes, str]]:
        for i, (data, label, name, two_row) in enumerate(_map_ordered(task, n, workers), start=1):
            counts[name] += 1
            settings["two_row_count"] += int(two_row)
            _progress(i, n, "plate crops")
            yield data, label

    _write_label_file(out, samples(), n)
    _write_settings(out, settings, complete=True)
    logger.info("wrote %d plate crops to %s", n, out)
    return out
