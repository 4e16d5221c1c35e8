"""Loading YAML configs with ``_base_`` inheritance and ``-o Key.sub=value`` overrides.

``_base_`` (a path or a list of paths, relative to the file) names files merged first, in order;
the file's own keys then override them. Mappings merge key by key; anything else (lists included)
is replaced. Every leaf remembers which file (or ``-o``) set it, so validation errors can point
there.
"""
from __future__ import annotations

import copy
import datetime
import logging
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from vinocr.config.schema import validate_config
from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)

BASE_KEY = "_base_"
RESOLVED_NAME = "config.yml"


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``5e-4`` and ``1e3`` as floats (YAML 1.1 wants ``5.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+][0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _mapping_without_duplicates(loader: "_Loader", node: yaml.MappingNode, deep: bool = False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


class Config(dict):
    """A validated config (a plain dict) that remembers its sources."""

    sources: List[str]

    def get_path(self, dotted: str, default: Any = None) -> Any:
        node: Any = self
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node


def _read_yaml(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got "
                          f"{type(data).__name__}")
    return data


def _merge(dst: Dict[str, Any], src: Mapping[str, Any], origins: Dict[str, str],
           src_origins: Mapping[str, str], default_origin: str, prefix: str = "") -> None:
    """Deep-merge ``src`` into ``dst``; each leaf's origin comes from ``src_origins`` when known."""
    for key, value in src.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        origin = src_origins.get(dotted, default_origin)
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            origins.setdefault(dotted, origin)
            _merge(dst[key], value, origins, src_origins, default_origin, dotted)
        else:
            dst[key] = copy.deepcopy(value)
            for k in [k for k in origins if k == dotted or k.startswith(dotted + ".")]:
                del origins[k]
            _record(value, dotted, origins, src_origins, origin)


def _record(value: Any, dotted: str, origins: Dict[str, str], src_origins: Mapping[str, str],
            origin: str) -> None:
    origins[dotted] = src_origins.get(dotted, origin)
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _record(sub, f"{dotted}.{key}", origins, src_origins, origin)


def _load_tree(path: Path, stack: Tuple[Path, ...]) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """The merged content of ``path`` and its bases, with the file each leaf came from."""
    path = path.resolve()
    if path in stack:
        chain = " -> ".join(str(p) for p in stack + (path,))
        raise ConfigError(f"{path}: _base_ cycle: {chain}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths")
    merged: Dict[str, Any] = {}
    origins: Dict[str, str] = {}
    for base in bases:
        base_path = (path.parent / base)
        if not base_path.is_file():
            raise ConfigError(f"{path}: _base_ file not found: {base}")
        base_tree, base_origins = _load_tree(base_path, stack + (path,))
        _merge(merged, base_tree, origins, base_origins, _display(base_path))
    _merge(merged, data, origins, {}, _display(path))
    return merged, origins


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parse_override(text: str) -> Tuple[List[str], Any]:
    """``'Train.batch_size=64'`` -> ``(['Train', 'batch_size'], 64)``; values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"-o {text}: expected Key.sub=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"-o {text}: bad key {key!r}")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: Dict[str, Any], overrides: Iterable[str],
                    origins: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Apply ``-o`` overrides in place (later ones win) and return ``data``."""
    origins = origins if origins is not None else {}
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"-o {text}: {'.'.join(parts[:i + 1])} is not a mapping")
            node = nxt
        node[parts[-1]] = value
        dotted = ".".join(parts)
        for k in [k for k in origins if k == dotted or k.startswith(dotted + ".")]:
            del origins[k]
        _record(value, dotted, origins, {}, f"-o {text}")
        prefix = ""
        for part in parts[:-1]:
            prefix = f"{prefix}.{part}" if prefix else part
            origins.setdefault(prefix, f"-o {text}")
    return data


def load_config(paths: Union[str, Path, Sequence[Union[str, Path]], None] = None,
                overrides: Sequence[str] = (), data: Optional[Mapping[str, Any]] = None,
                schema: Any = None) -> Config:
    """Load, merge, override and validate. ``paths`` are merged in order; ``data`` (a dict) is
    merged after them, then ``overrides``. ``schema`` (a :class:`~vinocr.config.schema.Section`)
    replaces the recogniser schema for other kinds of runs (e.g. super-resolution)."""
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    origins: Dict[str, str] = {}
    merged: Dict[str, Any] = {}
    for p in paths:
        tree, tree_origins = _load_tree(Path(p), ())
        _merge(merged, tree, origins, tree_origins, _display(Path(p)))
    if data:
        _merge(merged, data, origins, {}, "<dict>")
    apply_overrides(merged, overrides, origins)
    cfg = Config(validate_config(merged, origins, schema=schema))
    cfg.sources = [str(p) for p in paths] + [f"-o {o}" for o in overrides]
    return cfg


def json_safe_config(value: Any) -> Any:
    """``value`` with every mapping key a string, as JSON stores it. YAML allows number keys
    (``Technique.schedule: {0: [head], 5: [neck]}``); the code reading such keys accepts their
    string forms too, so a config saved inside a checkpoint reads back the same."""
    if isinstance(value, Mapping):
        return {str(k): json_safe_config(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe_config(v) for v in value]
    return value


def write_resolved_config(cfg: Mapping[str, Any], run_dir: Union[str, Path],
                          name: str = RESOLVED_NAME) -> Path:
    """Write the fully resolved config into ``run_dir`` atomically; return its path."""
    out_dir = Path(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = [f"# resolved vinocr config, written {datetime.datetime.now().isoformat(timespec='seconds')}"]
    for src in getattr(cfg, "sources", []):
        header.append(f"# from: {src}")
    body = yaml.safe_dump(dict(cfg), sort_keys=False, allow_unicode=True)
    target = out_dir / name
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text("\n".join(header) + "\n" + body, encoding="utf-8")
    tmp.replace(target)
    return target
