"""One way to load a trained recogniser: :func:`load_trained`.

A *model spec* is one of

- a run directory (``vinocr-finetune``'s ``Global.run_dir``): its ``best`` checkpoint, or its
  ``latest`` when it has no ``best`` yet;
- a checkpoint directory (``RUN/best``, ``RUN/latest``, ``RUN/epoch_5``);
- an export directory (``vinocr-export``'s output, with ``inference.json``): the inference
  :class:`vinocr.predict.Recognizer`, no Paddle layer;
- ``pretrained`` (``zero-shot``): the configured architecture with its pretrained weights and
  the config's charset, untrained.

A checkpoint is rebuilt from what it records, never from the caller's config: the architecture
(``arch``, ``arch_kwargs``), the charset and the adapters the trained model carried
(``adapters``, see :func:`vinocr.models.lora.adapter_record`). The model is built, wrapped at
exactly the recorded LoRA layers, loaded strictly (every tensor has its place, none is left at
its random init) and, by default, the adapters are merged: callers get the plain architecture,
which computes what the wrapped model computed. Evaluation, export, prediction, pseudo-labelling,
``Global.pretrained_model``, distillation teachers and SR training all load through here, so a
LoRA run means the same model to each of them.

Checkpoints written before the adapters were recorded are still read: their ``lora_A`` tensors
name the wrapped layers and give the rank; alpha comes from the saved ``Technique`` section.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np

from vinocr.charset import Charset, load_charset
from vinocr.engine.checkpoint import (Checkpoint, CheckpointError, load_checkpoint,
                                     resolve_checkpoint)
from vinocr.errors import ConfigError, VinocrError
from vinocr.models.lora import DEFAULT_ALPHA, adapter_record, apply_adapter_record, merge_lora

logger = logging.getLogger(__name__)

__all__ = ["LoadedModel", "PRETRAINED_SPECS", "build_trained", "checkpoint_aggregate",
           "checkpoint_temperature",
           "load_trained", "model_record", "read_trained_checkpoint", "records_model"]

#: Specs meaning "the configured pretrained model, not fine-tuned".
PRETRAINED_SPECS = ("pretrained", "zero-shot", "zeroshot")
#: The checkpoint a run directory means.
BEST = "best"


@dataclass
class LoadedModel:
    """A loaded recogniser. ``model`` is a :class:`vinocr.models.recognizer.RecognitionNet` in
    eval mode (None for an export, whose :class:`vinocr.predict.Recognizer` is ``recognizer``);
    ``config`` the config it was trained with (the caller's for ``pretrained``, ``{}`` for an
    export); ``path`` the checkpoint directory read; ``adapters`` the adapters it was trained
    with (merged into ``model`` unless loaded with ``merge=False``); ``temperature``,
    ``aggregate`` and ``check_digit_scale`` the confidence calibration it carries
    (:mod:`vinocr.calibration`: the checkpoint's ``calibration`` record or the export's
    ``inference.yml``; 1.0, ``mean`` and None, i.e. raw confidences, when none was fitted) and
    ``calibration`` a checkpoint's whole record (how and where it was fitted)."""

    name: str
    model: Any
    charset: Charset
    config: Dict[str, Any]
    recognizer: Any = None
    path: Optional[Path] = None
    adapters: Dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    calibration: Optional[Dict[str, Any]] = None
    aggregate: str = "mean"
    check_digit_scale: Optional[float] = None

    @property
    def calibrated(self) -> bool:
        """Whether the carried calibration changes confidences (not temperature 1 with mean and
        no check-digit factor)."""
        return self.temperature != 1.0 or self.aggregate != "mean" \
            or self.check_digit_scale is not None


def model_record(model: Any) -> Dict[str, Any]:
    """What a checkpoint records to rebuild ``model``: ``arch``, ``arch_kwargs`` and
    ``adapters``."""
    return {"arch": model.arch, "arch_kwargs": dict(model.arch_kwargs),
            "adapters": adapter_record(model)}


def records_model(state: Mapping[str, Any]) -> bool:
    """Whether checkpoint state ``state`` says how to rebuild its model (config and charset, as
    the trainer writes them); a weights-only checkpoint does not."""
    return bool(state.get("config")) and state.get("charset") is not None


def _error(key: Optional[str], message: str) -> VinocrError:
    # A spec that came from a config key is a config error naming that key; one given on the
    # command line or from Python is a plain VinocrError.
    return ConfigError(f"{key}: {message}") if key else VinocrError(message)


def read_trained_checkpoint(spec: Any, key: Optional[str] = None) -> Checkpoint:
    """The checkpoint ``spec`` means (a run directory: its ``best``, else its ``latest``),
    loaded and verified. ``key`` (e.g. ``Global.pretrained_model``) prefixes errors."""
    path = Path(spec)
    if path.is_dir() and (path / BEST).exists() and not (path / "state.json").exists():
        path = path / BEST
    try:
        return load_checkpoint(resolve_checkpoint(path))
    except CheckpointError as exc:
        if key:
            raise ConfigError(f"{key}: {exc}") from None
        raise


def _legacy_adapters(tensors: Mapping[str, np.ndarray], config: Mapping[str, Any],
                     where: str) -> Dict[str, Any]:
    """The adapter record of a checkpoint written before adapters were recorded: its
    ``<layer>.lora_A`` tensors name the layers exactly and give the rank; alpha is the saved
    ``Technique`` section's (``lora_alpha``, else ``alpha``), the only place it was kept."""
    layers = [k[:-len(".lora_A")] for k in tensors if k.endswith(".lora_A")]
    if not layers:
        return {}
    tech = config.get("Technique") or {}
    alpha = tech.get("lora_alpha", tech.get("alpha", DEFAULT_ALPHA))
    ranks = {int(tensors[f"{n}.lora_A"].shape[0]) for n in layers}
    per_layer = {} if len(ranks) == 1 else \
        {n: {"rank": int(tensors[f"{n}.lora_A"].shape[0])} for n in layers}
    logger.warning("%s: checkpoint from before adapters were recorded; %d LoRA layers taken from "
                   "its tensors, alpha %s from its saved Technique section", where, len(layers),
                   alpha)
    return {"lora": {"layers": layers, "rank": min(ranks), "alpha": float(alpha),
                     "per_layer": per_layer}}


def build_trained(record: Mapping[str, Any], tensors: Mapping[str, np.ndarray], where: Any, *,
                  merge: bool = True, arch: Optional[str] = None,
                  key: Optional[str] = None) -> LoadedModel:
    """The recogniser described by ``record`` (a checkpoint's state: ``config``, ``charset``,
    ``arch``, ``arch_kwargs``, ``adapters``) with the weights ``tensors``, in eval mode.

    ``arch``: the architecture the caller needs; another one is refused. ``merge=False`` keeps
    LoRA adapters as wrappers (e.g. to continue training them). ``where`` names the source in
    messages."""
    from vinocr.models.registry import build_model, canonical_name
    from vinocr.models.weights import load_weights

    config = dict(record.get("config") or {})
    if not records_model(record):
        raise _error(key, f"{where}: checkpoint has no saved config/charset; was it written by "
                          "vinocr-finetune?")
    charset = load_charset(record["charset"])
    charset.name = config.get("Global", {}).get("charset", "custom")
    recorded = record.get("arch")
    if recorded:
        model = build_model(recorded, charset.num_classes, **dict(record.get("arch_kwargs") or {}))
    else:  # written before the architecture was recorded: its config built it
        from vinocr.models.factory import model_from_config

        model, _ = model_from_config(dict(config["Architecture"], pretrained=None), charset)
    if arch is not None and canonical_name(arch) != model.arch:
        raise _error(key, f"{where} holds a {model.arch} model, not the {canonical_name(arch)} "
                          "expected")
    adapters = record.get("adapters")
    if adapters is None:
        adapters = _legacy_adapters(tensors, config, str(where))
    source = f"{key} {where}" if key else str(where)
    wrapped = apply_adapter_record(model, adapters, source)
    load_weights(model, tensors, strict=True, source=source)
    if wrapped and merge:
        model = merge_lora(model)
        logger.info("%s: %d LoRA adapters merged into the base weights", where, len(wrapped))
    model.eval()
    return LoadedModel(str(where), model, charset, config, adapters=dict(adapters))


def load_trained(spec: Any, cfg: Optional[Mapping[str, Any]] = None, *, merge: bool = True,
                 arch: Optional[str] = None, key: Optional[str] = None, backend: str = "auto",
                 decode: Optional[str] = None) -> LoadedModel:
    """The recogniser ``spec`` names (see the module docstring), in eval mode.

    Args:
        spec: a run, checkpoint or export directory, or ``pretrained``.
        cfg: a validated config; only ``pretrained`` reads it (architecture and charset).
        merge: fold LoRA adapters into the base weights (default) or keep them wrapped.
        arch: the architecture the caller needs (a checkpoint of another one is an error).
        key: the config key that named ``spec``; errors become ``ConfigError`` naming it.
        backend, decode: for export directories (:meth:`vinocr.predict.Recognizer.from_dir`).
    """
    if isinstance(spec, str) and spec in PRETRAINED_SPECS:
        return _zero_shot(cfg, key)
    path = Path(spec)
    if (path / "inference.json").is_file():
        from vinocr.predict import Recognizer

        rec = Recognizer.from_dir(path, backend=backend, decode=decode)
        return LoadedModel(f"exported {path}", None, rec.charset, {}, recognizer=rec,
                           temperature=rec.temperature, aggregate=rec.aggregate,
                           check_digit_scale=rec.check_digit_scale)
    from vinocr.calibration import check_digit_scale_from_record

    ckpt = read_trained_checkpoint(path, key)
    loaded = build_trained(ckpt.state, ckpt.model_state, ckpt.path, merge=merge, arch=arch,
                           key=key)
    loaded.path = ckpt.path
    loaded.temperature = checkpoint_temperature(ckpt.state, ckpt.path)
    loaded.aggregate = checkpoint_aggregate(ckpt.state, ckpt.path)
    loaded.check_digit_scale = check_digit_scale_from_record(
        ckpt.state.get("calibration"), f"{ckpt.path}/state.json: calibration")
    loaded.calibration = ckpt.state.get("calibration")
    return loaded


def checkpoint_temperature(state: Mapping[str, Any], where: Any) -> float:
    """The confidence temperature checkpoint state ``state`` records (``calibration``, written
    by the trainer after fitting it on the Eval set), 1.0 when none."""
    from vinocr.calibration import temperature_from_record

    return temperature_from_record(state.get("calibration"), f"{where}/state.json: calibration")


def checkpoint_aggregate(state: Mapping[str, Any], where: Any) -> str:
    """How character confidences combine into a read's under the checkpoint's calibration
    (``calibration.aggregate``); ``mean`` when none, or for a record from before the aggregate
    was part of the calibration."""
    from vinocr.calibration import aggregate_from_record

    return aggregate_from_record(state.get("calibration"), f"{where}/state.json: calibration")


def _zero_shot(cfg: Optional[Mapping[str, Any]], key: Optional[str]) -> LoadedModel:
    from vinocr.models.factory import model_from_config
    from vinocr.models.pretrained import AUTO, resolve_pretrained

    if cfg is None:
        raise _error(key, "the 'pretrained' model needs a config (-c) for its charset and "
                          "architecture")
    arch = dict(cfg["Architecture"])
    # Zero-shot needs weights: a config that trains from scratch gets its architecture's own.
    arch["pretrained"] = resolve_pretrained(arch.get("pretrained") or AUTO,
                                            arch.get("name", "ppocrv4_mobile"))
    charset = load_charset(cfg["Global"]["charset"])
    model, _ = model_from_config(arch, charset)
    model.eval()
    return LoadedModel(f"zero-shot {arch['pretrained']}", model, charset, dict(cfg))
