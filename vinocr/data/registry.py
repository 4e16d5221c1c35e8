"""Dataset readers by name, built from config dicts or detected from a path.

Config form (one source, or several with ratios, which makes a :class:`MixedDataset`)::

    dataset:
      sources:
        - {type: lmdb, path: data/synth_lmdb, ratio: 0.8}
        - {type: label_file, label_files: [data/real/train.txt], data_dir: data/real, ratio: 0.2}
      epoch_size: 20000   # optional

A training source may carry its own ``augment`` section (the schema of ``Train.augment``), which
replaces ``Train.augment`` for that source's samples: e.g. stronger augmentation on
pseudo-labelled crops than on labelled ones, or ``{preset: none}`` to leave a source as it is.
The readers never see the key; the trainer applies it (``vinocr.engine.run_setup``).
"""
from __future__ import annotations

import collections.abc
import inspect
import math
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Type, Union

from vinocr.data.base import IMAGE_EXTENSIONS, TextDataset
from vinocr.data.corrections import CorrectionsDataset
from vinocr.data.filename_labels import FilenameLabelDataset
from vinocr.data.label_file import LabelFileDataset
from vinocr.data.lmdb_dataset import LmdbDataset
from vinocr.data.lrlpr import LrlprTracks
from vinocr.data.mixed import MixedDataset
from vinocr.errors import ConfigError, DataError

DATASET_TYPES: Dict[str, Type[TextDataset]] = {
    "label_file": LabelFileDataset,
    "lmdb": LmdbDataset,
    "lrlpr": LrlprTracks,
    "corrections": CorrectionsDataset,
    "filename": FilenameLabelDataset,
}
#: Keys every source accepts besides its reader's own arguments.
SOURCE_KEYS = ("type", "ratio", "augment")
#: Reader arguments that come from the surrounding config, not from the source entry.
_INJECTED = ("self", "charset", "strict", "max_length")


def register_dataset(name: str) -> Callable[[Type[TextDataset]], Type[TextDataset]]:
    """Class decorator registering a reader under ``name`` (for readers in other packages)."""
    def wrap(cls: Type[TextDataset]) -> Type[TextDataset]:
        DATASET_TYPES[name] = cls
        return cls
    return wrap


def _matches(value: Any, hint: Any) -> bool:
    """Does a YAML value fit a reader argument's type hint? (str, Path, int, float, bool, Any,
    Optional/Union, Sequence[...]; a plain string is *not* accepted as a sequence)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin is Union:
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint in (str, Path):  # both appear as YAML strings
        return isinstance(value, str)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (list, tuple, collections.abc.Sequence):
        args = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value) if args \
            else isinstance(value, list)
    return True


def _describe(hint: Any) -> str:
    """Plain-words type description for error messages: 'a path or a list of paths', ..."""
    origin = typing.get_origin(hint)
    if origin is Union:
        parts = []
        args = typing.get_args(hint)
        if str in args and Path in args:  # "a string or a path" says the same thing twice
            args = tuple(a for a in args if a is not str)
        for h in args:
            text = _describe(h)
            if text not in parts:
                parts.append(text)
        return " or ".join(parts)
    if origin in (list, tuple, collections.abc.Sequence):
        args = typing.get_args(hint)
        inner = _describe(args[0]) if args else "value"
        return "a list of " + (inner[2:] + "s" if inner.startswith("a ") else inner)
    names = {str: "a string", Path: "a path", int: "an integer", float: "a number",
             bool: "true or false", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def reader_params(cls: Type[TextDataset]) -> Dict[str, inspect.Parameter]:
    sig = inspect.signature(cls.__init__)
    return {n: p for n, p in sig.parameters.items() if n not in _INJECTED}


def _check_source(spec: Any, where: str) -> Dict[str, Any]:
    """Validate one source entry without touching the disk; return the reader's kwargs."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'type', got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in DATASET_TYPES:
        raise ConfigError(f"{where}.type: unknown dataset type {kind!r}; valid: "
                          f"{', '.join(sorted(DATASET_TYPES))}")
    params = reader_params(DATASET_TYPES[kind])
    hints = typing.get_type_hints(DATASET_TYPES[kind].__init__)
    kwargs = {}
    for key, value in spec.items():
        if key in SOURCE_KEYS:
            continue
        if key not in params:
            valid = ", ".join(sorted(list(params) + list(SOURCE_KEYS)))
            raise ConfigError(f"{where}.{key}: unknown key for dataset type {kind!r}; "
                              f"valid keys: {valid}")
        if key in hints and not _matches(value, hints[key]):
            raise ConfigError(f"{where}.{key}: expected {_describe(hints[key])}, got "
                              f"{type(value).__name__} {value!r}")
        kwargs[key] = value
    missing = [n for n, p in params.items()
               if p.default is inspect.Parameter.empty and n not in kwargs]
    if missing:
        raise ConfigError(f"{where}: dataset type {kind!r} needs key(s) {', '.join(missing)}")
    ratio = spec.get("ratio")
    if ratio is not None and (not isinstance(ratio, (int, float)) or isinstance(ratio, bool)
                              or not math.isfinite(ratio) or ratio < 0):
        raise ConfigError(f"{where}.ratio: expected a finite number >= 0, got {ratio!r}")
    if "augment" in spec:
        from vinocr.data.augment import build_augment

        build_augment(spec["augment"], key=f"{where}.augment")   # checked here, built by the run
    return kwargs


def source_entries(cfg: Mapping[str, Any], where: str = "dataset"
                   ) -> List[Tuple[str, Mapping[str, Any]]]:
    """``(config key, source entry)`` of each source of a dataset section, in order: a single
    source is ``where`` itself, the sources of a list ``where.sources[k]``."""
    if "sources" in cfg:
        return [(f"{where}.sources[{k}]", spec) for k, spec in enumerate(cfg["sources"])]
    return [(where, cfg)]


def check_dataset_spec(cfg: Any, where: str = "dataset") -> None:
    """Raise ConfigError naming the key if ``cfg`` is not a valid dataset section."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(cfg).__name__}")
    if "sources" not in cfg:
        _check_source(cfg, where)
        return
    unknown = set(cfg) - {"sources", "epoch_size"}
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown key; valid keys: epoch_size, "
                          "sources")
    sources = cfg["sources"]
    if not isinstance(sources, list) or not sources:
        raise ConfigError(f"{where}.sources: expected a non-empty list of dataset sources")
    for key, spec in source_entries(cfg, where):
        _check_source(spec, key)
    with_ratio = [("ratio" in spec) for spec in sources]
    if any(with_ratio) and not all(with_ratio):
        k = with_ratio.index(False)
        raise ConfigError(f"{where}.sources[{k}]: give every source a ratio, or none (then sources "
                          "mix in proportion to their sizes)")
    epoch_size = cfg.get("epoch_size")
    if epoch_size is not None and (not isinstance(epoch_size, int) or epoch_size < 1):
        raise ConfigError(f"{where}.epoch_size: expected a positive int, got {epoch_size!r}")


def build_source(spec: Mapping[str, Any], where: str, charset: Any = None, strict: bool = False,
                 max_length: Optional[int] = None) -> TextDataset:
    kwargs = _check_source(spec, where)
    cls = DATASET_TYPES[spec["type"]]
    return cls(charset=charset, strict=strict, max_length=max_length, **kwargs)


def build_dataset(cfg: Mapping[str, Any], where: str = "dataset", charset: Any = None,
                  strict: bool = False, max_length: Optional[int] = None,
                  seed: int = 0) -> TextDataset:
    """A dataset from a config section ``{sources: [...], epoch_size: N}`` (or a single source)."""
    check_dataset_spec(cfg, where)
    if "sources" not in cfg:
        return build_source(cfg, where, charset, strict, max_length)
    built = [(build_source(spec, key, charset, strict, max_length), spec.get("ratio"))
             for key, spec in source_entries(cfg, where)]
    if len(built) == 1 and built[0][1] is None and not cfg.get("epoch_size"):
        return built[0][0]
    # Without explicit ratios, sources are mixed in proportion to their sizes.
    pairs = [(ds, float(len(ds)) if r is None else float(r)) for ds, r in built]
    return MixedDataset(pairs, epoch_size=cfg.get("epoch_size"), seed=seed)


def _label_files_in(folder: Path) -> List[Path]:
    """Text files in ``folder`` whose first non-blank line looks like ``path<TAB>label``."""
    found = []
    for candidate in sorted(folder.glob("*.txt")) + sorted(folder.glob("*.tsv")):
        try:
            with candidate.open("rb") as fh:
                head = fh.read(4096)
        except OSError:
            continue
        first = next((l for l in head.split(b"\n") if l.strip()), b"")
        if b"\t" in first:
            found.append(candidate)
    return found


def detect_format(path: Union[str, Path]) -> str:
    """Which reader fits ``path``: label_file, lmdb, lrlpr, corrections or filename."""
    p = Path(path)
    if not p.exists():
        raise DataError("path not found", p)
    if p.is_file():
        if p.suffix.lower() in (".txt", ".tsv", ".lst"):
            return "label_file"
        raise DataError("cannot tell the dataset format of this file (expected a label file "
                        ".txt/.tsv, or a folder)", p)
    if (p / "data.mdb").is_file():
        return "lmdb"
    if (p / "annotations.json").is_file() or any(p.glob("Scenario-*")) or \
            any(p.glob("track_*/annotations.json")) or any(p.glob("*/track_*/annotations.json")):
        return "lrlpr"
    if _label_files_in(p):
        return "label_file"
    images = [q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS]
    if images and any(q.with_suffix(".json").is_file() for q in images[:50]):
        return "corrections"
    if images:
        return "filename"
    raise DataError("no dataset found here (no label file, data.mdb, track folders or images)", p)


def open_dataset(path: Union[str, Path], fmt: str = "auto", charset: Any = None,
                 strict: bool = False, max_length: Optional[int] = None,
                 **kwargs: Any) -> TextDataset:
    """Open the dataset at ``path``; ``fmt='auto'`` detects the format (see :func:`detect_format`)."""
    p = Path(path)
    kind = detect_format(p) if fmt == "auto" else fmt
    if kind not in DATASET_TYPES:
        raise ConfigError(f"unknown dataset format {kind!r}; valid: auto, "
                          f"{', '.join(sorted(DATASET_TYPES))}")
    common = dict(charset=charset, strict=strict, max_length=max_length)
    if kind == "label_file":
        files = [p] if p.is_file() else _label_files_in(p)
        if not files:
            raise DataError("no label files (path<TAB>label lines) in this folder", p)
        return LabelFileDataset(files, data_dir=p.parent if p.is_file() else p, **common, **kwargs)
    return DATASET_TYPES[kind](p, **common, **kwargs)
