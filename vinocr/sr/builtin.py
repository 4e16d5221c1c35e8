"""The SR pipeline that ships inside the package: ``--sr builtin``, ``OCR.model: builtin``,
``Generator.pretrained: builtin``.

``vinocr/resources/sr/plate_br/`` is an SR checkpoint as ``vinocr-train-sr`` writes one
(``state.json`` + ``model.safetensors``: the generator and the recogniser stage 3 tuned with it,
stored in float16; no optimizer state) plus ``builtin.yml``: its version, the commands that
trained it and its held-out figures (``tools/package_builtin_sr.py`` writes all three).

Prediction needs inference models: the first use exports the pair once into
``$VINOCR_CACHE_DIR/sr-builtin/<version>-<digest>/`` (default ``~/.cache/vinocr``), as
``vinocr-export-sr --rec-out`` would, and later uses read that folder. Nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import yaml

from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

#: The spec that means the shipped weights.
BUILTIN = "builtin"
#: Where the package keeps them.
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "resources" / "sr" / "plate_br"
INFO_FILE = "builtin.yml"
_FILES = ("state.json", "model.safetensors", INFO_FILE)


def is_builtin(spec: Any) -> bool:
    """Whether a model spec (``--sr``, ``OCR.model``, ``Generator.pretrained``) means the
    shipped weights."""
    return isinstance(spec, (str, Path)) and str(spec).strip().lower() == BUILTIN


def builtin_checkpoint(root: Union[str, Path, None] = None) -> Path:
    """The shipped SR checkpoint directory (``root`` replaces the package folder in tests)."""
    d = Path(root) if root is not None else BUILTIN_DIR
    missing = [name for name in _FILES if not (d / name).is_file()]
    if missing:
        raise VinocrError(f"{d}: the built-in SR weights are incomplete (missing "
                          f"{', '.join(missing)}); reinstall vinocr")
    return d


def builtin_info(root: Union[str, Path, None] = None) -> Dict[str, Any]:
    """``builtin.yml``: version, training commands, held-out figures."""
    path = builtin_checkpoint(root) / INFO_FILE
    try:
        info = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise VinocrError(f"{path}: unreadable ({exc})") from None
    if not isinstance(info, dict) or "version" not in info:
        raise VinocrError(f"{path}: expected a mapping with a version")
    return info


def resolve_sr_spec(spec: Union[str, Path]) -> Path:
    """An SR checkpoint spec as a path: ``builtin`` becomes the shipped checkpoint."""
    return builtin_checkpoint() if is_builtin(spec) else Path(spec)


def _digest(d: Path) -> str:
    h = hashlib.sha256()
    for name in ("model.safetensors", "state.json"):
        h.update((d / name).read_bytes())
    return h.hexdigest()[:12]


def builtin_exports(root: Union[str, Path, None] = None,
                    cache: Union[str, Path, None] = None) -> Tuple[Path, Path]:
    """(SR inference model, recogniser inference model) of the shipped pair, exported on first
    use into the cache and reused afterwards. The folder name carries a digest of the weights,
    so an upgraded package never reads an older export."""
    from vinocr.export.sr import export_sr_checkpoint
    from vinocr.models.pretrained import cache_dir

    d = builtin_checkpoint(root)
    version = str(builtin_info(root)["version"])
    base = Path(cache) if cache is not None else cache_dir()
    target = base / "sr-builtin" / f"{version}-{_digest(d)}"
    sr_dir, rec_dir = target / "sr", target / "rec"
    if (target / "complete").is_file():
        return sr_dir, rec_dir
    logger.info("exporting the built-in SR pair %s to %s (first use)", version, target)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        export_sr_checkpoint(d, tmp / "sr", tmp / "rec")
        (tmp / "complete").write_text(version + "\n", encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "complete").is_file():  # not another process that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sr_dir, rec_dir

