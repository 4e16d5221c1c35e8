"""Pretrained weights, from local files only (nothing is downloaded).

``pretrained: ppocrv4_mobile`` means the PP-OCRv4 mobile recogniser that the installed
``rapidocr_onnxruntime`` package ships. The first use converts its ONNX into a Paddle state dict
(:mod:`vinocr.models.onnx_import`) and caches it as safetensors, with the dictionary beside it, in
``$VINOCR_CACHE_DIR`` (default ``~/.cache/vinocr``). Later uses read the cache. A path to a
``.safetensors`` or ``.pdparams`` file (e.g. the official ``student.pdparams``) works too; a
``.pdparams`` is a pickle and is opened only with ``trust_pickle=True``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from vinocr.errors import VinocrError
from vinocr.models.weights import load_state_file, save_state_file

logger = logging.getLogger(__name__)

BUILTIN_PRETRAINED = {
    "ppocrv4_mobile": "PP-OCRv4 mobile rec from rapidocr_onnxruntime (ch_PP-OCRv4_rec_infer.onnx)",
}


def cache_dir() -> Path:
    return Path(os.environ.get("VINOCR_CACHE_DIR", Path.home() / ".cache" / "vinocr"))


@dataclass
class Pretrained:
    state: Dict[str, np.ndarray]
    characters: Optional[List[str]]
    arch: str
    source: str


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_rapidocr(onnx_path: Union[str, Path, None] = None,
                    out_dir: Union[str, Path, None] = None, force: bool = False) -> Path:
    """Convert the rapidocr PP-OCRv4 ONNX into ``<cache>/pretrained/ppocrv4_mobile.safetensors``
    (plus ``.dict.txt`` and ``.json``); return the safetensors path. Re-imports when the ONNX
    changed (its SHA-1 is recorded)."""
    from vinocr.charset import _rapidocr_rec_onnx
    from vinocr.models.onnx_import import onnx_to_state_dict

    src = Path(onnx_path) if onnx_path else _rapidocr_rec_onnx()
    if not src.is_file():
        raise VinocrError(f"{src}: ONNX model not found")
    out = Path(out_dir) if out_dir else cache_dir() / "pretrained"
    target = out / "ppocrv4_mobile.safetensors"
    meta_path = out / "ppocrv4_mobile.json"
    digest = _sha1(src)
    if target.is_file() and meta_path.is_file() and not force:
        try:
            if json.loads(meta_path.read_text())["onnx_sha1"] == digest:
                return target
        except (ValueError, KeyError):
            pass
    state, chars = onnx_to_state_dict(src)
    out.mkdir(parents=True, exist_ok=True)
    dict_path = out / "ppocrv4_mobile.dict.txt"
    tmp = dict_path.with_name(dict_path.name + ".tmp")
    tmp.write_text("\n".join(chars) + "\n", encoding="utf-8")
    tmp.replace(dict_path)
    save_state_file(state, target, metadata={"arch": "ppocrv4_mobile", "form": "deploy"})
    meta_tmp = meta_path.with_name(meta_path.name + ".tmp")
    meta_tmp.write_text(json.dumps({"arch": "ppocrv4_mobile", "form": "deploy",
                                    "onnx": str(src), "onnx_sha1": digest,
                                    "num_classes": len(chars) + 2}, indent=2))
    meta_tmp.replace(meta_path)
    logger.info("imported %s -> %s (%d tensors, %d characters)", src, target, len(state),
                len(chars))
    return target


def load_pretrained(spec: Union[str, Path], trust_pickle: bool = False,
                    opt_in: str = "pass trust_pickle=True") -> Pretrained:
    """Weights for ``spec``: a built-in name (see ``BUILTIN_PRETRAINED``) or a weights file.

    For a file, a dictionary is looked up beside it (``<stem>.dict.txt`` or ``dict.txt``); without
    one, the checkpoint's head is assumed to match the configured charset. A ``.pdparams`` file
    (a pickle) is refused unless ``trust_pickle``; ``opt_in`` ends that error (see
    :func:`vinocr.models.weights.load_state_file`).
    """
    text = str(spec)
    if text in BUILTIN_PRETRAINED:
        path = import_rapidocr()
        chars = (path.parent / "ppocrv4_mobile.dict.txt").read_text(encoding="utf-8").splitlines()
        return Pretrained(load_state_file(path), [c for c in chars if c], "ppocrv4_mobile", text)
    path = Path(text)
    if not path.exists():
        raise VinocrError(f"pretrained weights {text!r}: not a built-in "
                          f"({', '.join(BUILTIN_PRETRAINED)}) and no such file")
    state = load_state_file(path, trust_pickle=trust_pickle, opt_in=opt_in)
    chars = None
    for candidate in (path.with_suffix(".dict.txt"), path.parent / "dict.txt"):
        if candidate.is_file():
            chars = [c for c in candidate.read_text(encoding="utf-8").splitlines() if c]
            break
    return Pretrained(state, chars, "", str(path))
