"""The config schema of SR runs (``vinocr-train-sr -c configs/sr/lpasrn_small.yml``).

Same conventions as recogniser configs: YAML with ``_base_``, ``-o Key.sub=value`` overrides,
one-line errors that name the key and the file that set it, and the resolved config saved in the
run directory.
"""
from __future__ import annotations

from typing import Any

from vinocr.config.schema import SCHEMA, Field, Section
from vinocr.errors import ConfigError


def _shape2(value: Any, key: str) -> None:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ConfigError(f"{key}: expected [height, width] of positive ints, got {value!r}")
    # Plates are padded to aspect 3 and the recogniser input is built for that aspect (training
    # and inference alike); another grid would stretch plates differently in the two paths.
    if value[1] != 3 * value[0]:
        raise ConfigError(f"{key}: width must be 3 x height (plates are padded to aspect 3), "
                          f"got {value!r}")


def _betas(value: Any, key: str) -> None:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1
                       for v in value)):
        raise ConfigError(f"{key}: expected [beta1, beta2] with 0 <= beta < 1, got {value!r}")


def _stage(epochs: int, lr_scale: float, ocr_lr_scale: float, help_text: str) -> Section:
    return Section({
        "epochs": Field((int,), epochs, "epochs of this stage (0 = skip it)", minimum=0),
        "lr_scale": Field((float,), lr_scale, "generator LR = Optimizer.lr x this", minimum=0.0),
        "ocr_lr_scale": Field((float,), ocr_lr_scale, "recogniser LR = Optimizer.lr x this "
                              "(stage 3 only; the recogniser is frozen in stages 1 and 2)",
                              minimum=0.0),
    }, help=help_text)


SR_SCHEMA = Section({
    "Global": Section({
        "seed": Field((int,), 0),
        "run_dir": Field((str,), "runs/sr", "checkpoints, logs, VisualDL and the resolved config"),
        "device": Field((str,), "auto", choices=("auto", "cpu", "gpu")),
        "fast_depthwise": Field((str,), "auto", "vinocr's CPU depthwise op for the recogniser",
                                choices=("auto", "on", "off")),
        "visualdl": Field((bool,), True),
        "grid_every_epochs": Field((int,), 5, "LR | SR | HR image grids every N epochs "
                                   "(0 = off)", minimum=0),
        "log_every_steps": Field((int,), 20, minimum=1),
        "log_level": Field((str,), "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    }),
    "Generator": Section({
        "name": Field((str,), "small", "small (CPU, <= 5M parameters) or large (GPU)"),
        "scale": Field((int,), 2, choices=(2, 4)),
        "lr_shape": Field((list,), [16, 48], "LR input [H, W]; plates are padded to aspect 3",
                          check=_shape2),
        "frames": Field((int,), 1, "LR frames per input: 1 super-resolves each frame alone; "
                        "5 gives the generator all of a track's registered frames, led by the "
                        "frame it super-resolves", minimum=1),
        "params": Field((dict,), {}, "overrides of the named generator config"),
        "pretrained": Field((str,), None, "start from the generator of this SR run/checkpoint, "
                            "or 'builtin' (the pair shipped in the package)", nullable=True),
    }),
    "OCR": Section({
        "model": Field((str,), None, "the recogniser fine-tuned on HR plates: a vinocr-finetune "
                       "run or checkpoint directory, or 'builtin' (the recogniser of the SR pair "
                       "shipped in the package)", nullable=True),
    }),
    "Data": Section({
        "train": Field((str,), None, "LRLPR-26-style track folder for training", nullable=True),
        "val": Field((str,), None, "track folder for validation (selects best/, adapts the "
                     "character weights)", nullable=True),
        "layouts": Field((list,), None, "keep only these layouts", nullable=True),
        "max_train_tracks": Field((int,), None, nullable=True, minimum=1),
        "max_val_tracks": Field((int,), None, nullable=True, minimum=1),
        "allow_unregistered": Field((bool,), False, "use frames without corners (no "
                                    "registration: pixel losses compare misaligned plates)"),
    }),
    "Loss": Section({
        "l1": Field((float,), 1.0, minimum=0.0),
        "ssim": Field((float,), 1.0, "lambda of the (1 - SSIM) term", minimum=0.0),
        "char": Field((float,), 1.0, "character classification term", minimum=0.0),
        "layout": Field((float,), 1.0, "multiplier of the layout penalty", minimum=0.0),
        "beta": Field((float,), 0.5, "layout penalty per unit of wrong-group probability",
                      minimum=0.0),
        "focal_gamma": Field((float,), 2.0, minimum=0.0),
        "alpha": Field((float,), 0.5, "character-weight increment per frequent confusion",
                       minimum=0.0),
        "threshold": Field((float,), 0.25, "row-normalised confusion rate that counts",
                           minimum=0.0),
        "max_char_weight": Field((float,), 5.0, minimum=1.0),
        "accumulate": Field((bool,), False, "add to last epoch's weights instead of recomputing"),
    }),
    "Optimizer": Section({
        "lr": Field((float,), 1e-4, minimum=0.0),
        "betas": Field((list,), [0.5, 0.555], "Adam betas of the LP-SR papers", check=_betas),
        "clip_grad_norm": Field((float,), 1.0, "global-norm clipping (null or 0 = off)",
                                nullable=True, minimum=0.0),
    }),
    "Scheduler": Section({
        "step_size": Field((int,), 5, "StepLR: epochs between decays", minimum=1),
        "gamma": Field((float,), 0.9, minimum=0.0),
        "plateau_patience": Field((int,), 2, "epochs without a better word accuracy before the "
                                  "LR is multiplied by plateau_factor (0 = off)", minimum=0),
        "plateau_factor": Field((float,), 0.5, minimum=0.0),
        "early_stop_patience": Field((int,), 0, "epochs without improvement that end a stage "
                                     "(0 = off)", minimum=0),
    }),
    "Stages": Section({
        "stage1": _stage(5, 1.0, 0.0, "L1 warm-up, recogniser frozen"),
        "stage2": _stage(5, 1.0, 0.0, "L1 + LCOFL, recogniser frozen"),
        "stage3": _stage(3, 0.1, 0.1, "joint fine-tuning, recogniser unfrozen"),
    }),
    "Train": Section({
        "batch_size": Field((int,), 16, minimum=1),
        "max_steps_per_epoch": Field((int,), None, "cap steps per epoch (smoke runs)",
                                     nullable=True, minimum=1),
    }),
    "Decode": SCHEMA.fields["Decode"],
})
