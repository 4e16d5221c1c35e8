"""Weighted composition of transforms, building it from the YAML ``augment`` section, and offline
augmentation of a dataset.

YAML schema of the section (all keys optional)::

    augment:
      preset: vin          # alpr | vin | none (default none)
      p: 0.8               # probability that a sample is augmented at all (default: preset's, else 1)
      num_ops: 2           # transforms applied per augmented sample (default: preset's, else 1)
      transforms:          # overrides of preset entries (same name) or additions
        - {name: rotate, weight: 3, max_angle: 5}
        - {name: jpeg, weight: 1, quality: [50, 95]}
        - {name: cutting, weight: 0}      # weight 0 disables a preset transform

Each augmented sample gets ``num_ops`` distinct transforms picked with probability proportional
to their weights, applied in the order drawn.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import cv2
import numpy as np

from vinocr.errors import ConfigError, DataError
from .presets import PRESET_NAMES, PRESETS
from .transforms import TRANSFORMS, Transform

logger = logging.getLogger(__name__)

#: Keys allowed in the ``augment`` config section.
AUGMENT_SCHEMA_KEYS: Tuple[str, ...] = ("preset", "p", "num_ops", "transforms")

#: Anything called as ``fn(img, rng) -> img``; registered transforms are the usual case.
TransformFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def list_transforms() -> Dict[str, Dict[str, Any]]:
    """Registered transform names (sorted) mapped to their default constructor parameters."""
    return {name: TRANSFORMS[name].default_params() for name in sorted(TRANSFORMS)}


def as_bgr(img: np.ndarray) -> np.ndarray:
    """Return ``img`` as a contiguous BGR ``uint8`` HxWx3 array (gray and BGRA are converted)."""
    if not isinstance(img, np.ndarray):
        raise ValueError(f"expected a numpy image, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {img.dtype}")
    if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"expected a non-empty HxWx3 BGR image, got shape {img.shape}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {img.shape}")
    return np.ascontiguousarray(img)


class AugmentPipeline:
    """Apply ``num_ops`` weighted-random transforms to a sample with probability ``p``.

    ``transforms`` is a sequence of ``(transform, weight)``; weight-0 entries are kept for
    inspection but never picked. Selection is without repetition within one sample.
    """

    def __init__(self, transforms: Sequence[Tuple[TransformFn, float]], p: float = 1.0,
                 num_ops: int = 1) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a number in [0, 1], got {p!r}")
        if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 1:
            raise ValueError(f"num_ops must be an integer >= 1, got {num_ops!r}")
        entries: List[Tuple[TransformFn, float]] = []
        for t, w in transforms:
            if not callable(t):
                raise ValueError(f"transform {t!r} is not callable")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
                raise ValueError(f"weight of {t!r} must be a number >= 0, got {w!r}")
            entries.append((t, float(w)))
        self.entries = entries
        self.p = float(p)
        self.num_ops = num_ops
        self._active = [t for t, w in entries if w > 0]
        weights = np.array([w for _, w in entries if w > 0], dtype=np.float64)
        if not self._active:
            raise ValueError("no transform has a weight > 0")
        if num_ops > len(self._active):
            raise ValueError(f"num_ops {num_ops} exceeds the number of enabled transforms "
                             f"({len(self._active)})")
        self._probs = weights / weights.sum()

    @property
    def transforms(self) -> List[TransformFn]:
        """The transforms that can be picked (weight > 0)."""
        return list(self._active)

    @property
    def probabilities(self) -> Dict[str, float]:
        """Probability that each enabled transform is the first pick, by name."""
        return {_name_of(t): float(pr) for t, pr in zip(self._active, self._probs)}

    def select(self, rng: np.random.Generator) -> List[TransformFn]:
        """Draw ``num_ops`` distinct transforms by weight, in application order."""
        idx = rng.choice(len(self._active), size=self.num_ops, replace=False, p=self._probs)
        return [self._active[int(i)] for i in np.atleast_1d(idx)]

    def augment(self, img: np.ndarray, rng: np.random.Generator, *,
                force: bool = False) -> np.ndarray:
        """Augment ``img``; with ``force`` the ``p`` gate is skipped (offline copies, previews)."""
        img = as_bgr(img)
        # Draw the gate even when forced so forced and unforced runs consume rng the same way.
        gate = rng.random()
        if not force and gate >= self.p:
            return img.copy()
        out = img
        for t in self.select(rng):
            out = t(out, rng)
            if (not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.ndim != 3
                    or out.shape[2] != 3 or out.shape[0] < 1 or out.shape[1] < 1):
                # Guards user-registered transforms; the built-in ones are tested for this.
                raise RuntimeError(f"transform {_name_of(t)} returned an invalid image "
                                   f"({getattr(out, 'dtype', type(out))}, "
                                   f"{getattr(out, 'shape', '?')})")
        return out if out is not img else img.copy()

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.augment(img, rng)

    def __repr__(self) -> str:
        items = ", ".join(f"({t!r}, {w:g})" for t, w in self.entries)
        return f"AugmentPipeline(p={self.p:g}, num_ops={self.num_ops}, transforms=[{items}])"


def _name_of(t: Any) -> str:
    return getattr(t, "name", None) or getattr(t, "__name__", None) or type(t).__name__


# --------------------------------------------------------------------------- config


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_param_type(value: Any, default: Any, key: str) -> Any:
    """Check ``value`` against the type of the parameter's default; lists become tuples."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not _is_number(value):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        integer = all(isinstance(d, int) and not isinstance(d, bool) for d in default)
        what = "integer" if integer else "number"
        expected = f"a {what} or a [low, high] pair of {what}s"
        ok_item = ((lambda v: isinstance(v, int) and not isinstance(v, bool)) if integer
                   else _is_number)
        if ok_item(value):
            return (value, value)
        if (isinstance(value, (list, tuple)) and len(value) == 2
                and all(ok_item(v) for v in value)):
            return tuple(value)
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")
    return value


def _make_transform(name: str, params: Mapping[str, Any], key: str) -> Transform:
    cls = TRANSFORMS[name]
    defaults = cls.default_params()
    kwargs: Dict[str, Any] = {}
    for pname, value in params.items():
        if pname not in defaults:
            valid = ", ".join(["name", "weight", *sorted(defaults)])
            raise ConfigError(f"{key}.{pname}: unknown parameter for transform '{name}'; "
                              f"valid: {valid}")
        kwargs[pname] = _check_param_type(value, defaults[pname], f"{key}.{pname}")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"{key} ({name}): {exc}") from None


def _check_weight(value: Any, key: str) -> float:
    if not _is_number(value) or not value >= 0:
        raise ConfigError(f"{key}: expected a number >= 0, got {value!r}")
    return float(value)


def build_augment(cfg: Optional[Mapping[str, Any]], *,
                  key: str = "augment") -> Optional[AugmentPipeline]:
    """Build a pipeline from the ``augment`` config section (a plain dict from YAML).

    Returns ``None`` when there is nothing to do: no section, ``preset: none`` without
    transforms, ``p: 0``, or every weight 0. ``key`` is the section's name used in error messages.
    Raises :class:`ConfigError` with a one-line message naming the offending key.
    """
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{key}: expected a mapping with keys "
                          f"{', '.join(AUGMENT_SCHEMA_KEYS)}, got {type(cfg).__name__}")
    for k in cfg:
        if k not in AUGMENT_SCHEMA_KEYS:
            raise ConfigError(f"{key}.{k}: unknown key; valid: {', '.join(AUGMENT_SCHEMA_KEYS)}")

    preset_name = cfg.get("preset")
    preset_name = "none" if preset_name is None else preset_name
    if not isinstance(preset_name, str) or preset_name.lower() not in PRESET_NAMES:
        raise ConfigError(f"{key}.preset: unknown preset {preset_name!r}; "
                          f"valid: {', '.join(PRESET_NAMES)}")
    preset = PRESETS.get(preset_name.lower())

    p = cfg.get("p", preset.p if preset else 1.0)
    if not _is_number(p) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"{key}.p: expected a number in [0, 1], got {p!r}")
    num_ops = cfg.get("num_ops", preset.num_ops if preset else 1)
    if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 1:
        raise ConfigError(f"{key}.num_ops: expected an integer >= 1, got {num_ops!r}")

    # name -> [weight, params, key used in errors]; dicts keep preset order, additions last.
    entries: Dict[str, List[Any]] = {}
    if preset:
        for name, weight, params in preset.entries:
            entries[name] = [weight, dict(params), f"{key}.preset({preset.name}).{name}"]

    overrides = cfg.get("transforms") or []
    if not isinstance(overrides, (list, tuple)):
        raise ConfigError(f"{key}.transforms: expected a list of mappings, "
                          f"got {type(overrides).__name__}")
    seen: Dict[str, str] = {}
    valid_names = ", ".join(sorted(TRANSFORMS))
    for i, item in enumerate(overrides):
        ikey = f"{key}.transforms[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{ikey}: expected a mapping like {{name: rotate, weight: 1}}, "
                              f"got {item!r}")
        name = item.get("name")
        if name is None:
            raise ConfigError(f"{ikey}.name: missing; valid: {valid_names}")
        if not isinstance(name, str) or name not in TRANSFORMS:
            raise ConfigError(f"{ikey}: unknown transform {name!r}; valid: {valid_names}")
        if name in seen:
            raise ConfigError(f"{ikey}: transform '{name}' is already listed at {seen[name]}")
        seen[name] = ikey
        params = {k: v for k, v in item.items() if k not in ("name", "weight")}
        if name in entries:
            entry = entries[name]
            if "weight" in item:
                entry[0] = _check_weight(item["weight"], f"{ikey}.weight")
            entry[1].update(params)
            entry[2] = ikey
        else:
            weight = _check_weight(item.get("weight", 1.0), f"{ikey}.weight")
            entries[name] = [weight, params, ikey]

    built: List[Tuple[Transform, float]] = []
    for name, (weight, params, ekey) in entries.items():
        built.append((_make_transform(name, params, ekey), weight))

    enabled = sum(1 for _, w in built if w > 0)
    if enabled == 0:
        logger.info("%s: no transform enabled; augmentation is off", key)
        return None
    if p == 0:
        logger.info("%s: p is 0; augmentation is off", key)
        return None
    if num_ops > enabled:
        raise ConfigError(f"{key}.num_ops: {num_ops} exceeds the number of enabled "
                          f"transforms ({enabled})")
    pipe = AugmentPipeline(built, p=float(p), num_ops=num_ops)
    logger.debug("built %r", pipe)
    return pipe


# --------------------------------------------------------------------------- offline


def write_png(path: Union[str, Path], img: np.ndarray) -> Path:
    """Write ``img`` as PNG via ``cv2.imencode`` so non-ASCII paths work (cv2.imwrite fails there)."""
    path = Path(path)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise DataError("could not encode image as PNG", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    return path


_UNSAFE = re.compile(r"[^\w.-]+")

#: What :func:`augment_dataset` writes into its output folder: the label file and the image folder
#: (named here so ``vinocr-data augment`` can check them against the input before writing).
AUGMENT_LABEL_FILE = "labels.txt"
AUGMENT_IMAGE_DIR = "images"


def _safe_stem(name: str) -> str:
    stem = Path(str(name).replace("\\", "/")).stem
    stem = _UNSAFE.sub("_", stem).strip("._")
    return stem[:80] or "img"


def augment_dataset(samples: Iterable[Tuple[np.ndarray, str, str]], out_dir: Union[str, Path],
                    pipeline: AugmentPipeline, augs_per_sample: int, seed: int) -> Path:
    """Write the originals plus ``augs_per_sample`` augmented copies of each sample.

    ``samples`` yields ``(image, label, name)``. Images go to ``out_dir/images/`` as
    ``{index:06d}_{name}.png`` (original) and ``{index:06d}_{name}_aug{k}.png`` (copies); the
    index keeps names unique when sources share a file name. ``out_dir/labels.txt`` gets one
    ``images/<file>\\t<label>`` line per image (PaddleOCR convention). Copies are always augmented
    (``p`` is ignored: an unaugmented copy would only duplicate the original) and copy ``k`` of
    sample ``i`` uses ``np.random.default_rng([seed, i, k])``, so output is reproducible and
    independent of how many copies other samples get.

    Returns the path of ``labels.txt``.
    """
    if isinstance(augs_per_sample, bool) or not isinstance(augs_per_sample, int) \
            or augs_per_sample < 0:
        raise ValueError(f"augs_per_sample must be an integer >= 0, got {augs_per_sample!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    out_dir = Path(out_dir)
    img_dir = out_dir / AUGMENT_IMAGE_DIR
    img_dir.mkdir(parents=True, exist_ok=True)
    if any(img_dir.iterdir()):
        logger.warning("%s already holds files; they are kept but only new ones are listed in "
                       "labels.txt", img_dir)
    labels_path = out_dir / AUGMENT_LABEL_FILE
    lines: List[str] = []
    n_samples = 0
    for i, sample in enumerate(samples):
        try:
            img, label, name = sample
        except (TypeError, ValueError):
            raise DataError(f"sample {i}: expected (image, label, name)") from None
        if not isinstance(label, str) or any(c in label for c in "\t\r\n"):
            raise DataError(f"sample {i} ({name}): label must be a string without tabs or "
                            f"newlines, got {label!r}")
        try:
            img = as_bgr(img)
        except ValueError as exc:
            raise DataError(f"sample {i} ({name}): {exc}") from None
        stem = f"{i:06d}_{_safe_stem(name)}"
        write_png(img_dir / f"{stem}.png", img)
        lines.append(f"images/{stem}.png\t{label}")
        for k in range(augs_per_sample):
            rng = np.random.default_rng([int(seed), i, k])
            aug = pipeline.augment(img, rng, force=True)
            write_png(img_dir / f"{stem}_aug{k}.png", aug)
            lines.append(f"images/{stem}_aug{k}.png\t{label}")
        n_samples += 1
        if n_samples % 1000 == 0:
            logger.info("augmented %d samples", n_samples)
    labels_path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    logger.info("wrote %d images (%d originals, %d copies each) to %s", len(lines), n_samples,
                augs_per_sample, out_dir)
    return labels_path
