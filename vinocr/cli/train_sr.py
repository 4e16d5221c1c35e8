"""``vinocr-train-sr``: train the plate super-resolution front end in progressive stages.

    vinocr-train-sr -c configs/sr/lpasrn_small.yml -o OCR.model=runs/sr_ocr_hr --stage all
    vinocr-train-sr -c configs/sr/lpasrn_small.yml --stage 3 --resume runs/sr/stage2_epoch_5

Stage 1 is the L1 warm-up, stage 2 adds LCOFL through the frozen recogniser, stage 3 fine-tunes
both at a lower LR (see :mod:`vinocr.sr.trainer`). ``OCR.model`` is a recogniser trained with
``vinocr-finetune`` on HR plates (its run or checkpoint directory).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from vinocr.cli.common import (FROM_CONFIG, add_config_options, add_log_level, cli_entry,
                               setup_logging)
from vinocr.errors import ConfigError, VinocrError

PROG = "vinocr-train-sr"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(p, use="an SR config")
    p.add_argument("--stage", default="all", help="1, 2, 3, all or a comma list (default all)")
    p.add_argument("--resume", help="checkpoint to continue from (stage{n}_epoch_{N}, latest, "
                   "best) or a run directory (its latest)")
    p.add_argument("--overwrite", action="store_true", help="start over in a run directory "
                   "that already holds a run, replacing its checkpoints and history")
    add_log_level(p, FROM_CONFIG)
    return p


def load_sr_config(config: Optional[List[str]], overrides: List[str], resume: Optional[str]):
    """The SR config: ``-c`` files, or the resumed run's saved ``config.yml``, plus ``-o``."""
    from vinocr.config import load_config
    from vinocr.sr.config import SR_SCHEMA

    files = config
    if not files and resume:
        run = Path(resume)
        run = run if (run / "config.yml").is_file() else run.parent
        if not (run / "config.yml").is_file():
            raise VinocrError(f"{resume}: no config.yml in it or its parent; give -c")
        files = [str(run / "config.yml")]
    if not files:
        raise VinocrError("give a config with -c (or --resume a run)")
    return load_config(files, overrides, schema=SR_SCHEMA)


def load_ocr(spec: str) -> Tuple[Any, Any, List[int], Dict[str, Any]]:
    """(recogniser in eval mode, charset, input shape, state to rebuild it) for ``OCR.model``."""
    from vinocr.engine.model_loading import load_trained, model_record
    from vinocr.sr.builtin import is_builtin

    if is_builtin(spec):  # the recogniser of the shipped SR pair
        from vinocr.sr.checkpoint_io import load_sr_checkpoint

        ck = load_sr_checkpoint(spec)
        return ck.ocr, ck.charset, list(ck.image_shape), {**ck.state["ocr"], "model": spec}
    loaded = load_trained(spec, key="OCR.model")
    if loaded.model is None:
        raise ConfigError(f"OCR.model: {spec} is an exported inference model; SR training "
                          "back-propagates through the recogniser, so give its vinocr-finetune "
                          "run or checkpoint directory")
    shape = list(loaded.config.get("Global", {}).get("image_shape", [3, 48, 320]))
    # Recorded like a training checkpoint records its model, so the SR checkpoint rebuilds the
    # recogniser the same way (vinocr.sr.checkpoint_io); adapters are merged, hence none.
    state = {"model": str(spec), "config": loaded.config,
             "charset": list(loaded.charset.characters), **model_record(loaded.model)}
    return loaded.model, loaded.charset, shape, state


def pretrained_generator(spec: str, configured: Any) -> Any:
    """The generator of the SR checkpoint ``spec`` (``builtin`` or a path) to start training
    from; its architecture must be the configured one (``Generator.name/scale/frames/params``)."""
    from vinocr.sr.checkpoint_io import load_sr_checkpoint

    generator = load_sr_checkpoint(spec, with_ocr=False).generator
    if generator.arch_kwargs != configured.arch_kwargs:
        raise ConfigError(f"Generator.pretrained: {spec} holds a generator with "
                          f"{generator.arch_kwargs}, the config builds {configured.arch_kwargs}; "
                          f"set Generator.name/scale/frames/params to match")
    generator.config_name = configured.config_name
    generator.train()
    return generator


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_sr_config(args.config, list(args.opt), args.resume)
    setup_logging(args.log_level or cfg["Global"]["log_level"])
    from vinocr.sr.trainer import parse_stages

    stages = parse_stages(args.stage)
    if not cfg["OCR"]["model"]:
        raise ConfigError("OCR.model: required (the recogniser fine-tuned on HR plates, e.g. "
                          "-o OCR.model=runs/sr_ocr_hr)")
    if not cfg["Data"]["train"]:
        raise ConfigError("Data.train: required (a folder of LRLPR-26-style tracks)")

    import paddle

    from vinocr.config.loader import write_resolved_config
    from vinocr.decode import build_decoder
    from vinocr.engine.trainer import resolve_device
    from vinocr.sr.data import SRPairs
    from vinocr.sr.generator import build_generator
    from vinocr.sr.trainer import SRTrainer

    g = cfg["Global"]
    device = resolve_device(g["device"])
    paddle.set_device(device)
    paddle.seed(int(g["seed"]))
    run_dir = Path(g["run_dir"])
    ocr, charset, image_shape, ocr_state = load_ocr(cfg["OCR"]["model"])
    if g["fast_depthwise"] != "off" and device == "cpu":
        from vinocr.ops import fast_depthwise_available, use_fast_depthwise

        if fast_depthwise_available():
            use_fast_depthwise(ocr)
        elif g["fast_depthwise"] == "on":
            raise ConfigError("Global.fast_depthwise: on, but the op could not be built")
    gen_cfg = cfg["Generator"]
    generator = build_generator(gen_cfg["name"], scale=int(gen_cfg["scale"]),
                                frames=int(gen_cfg["frames"]), **dict(gen_cfg["params"]))
    if gen_cfg["pretrained"]:
        generator = pretrained_generator(gen_cfg["pretrained"], generator)
    data = cfg["Data"]
    common = dict(lr_shape=gen_cfg["lr_shape"], scale=int(gen_cfg["scale"]),
                  layouts=data["layouts"], allow_unregistered=data["allow_unregistered"],
                  frames=int(gen_cfg["frames"]))
    train = SRPairs(data["train"], max_tracks=data["max_train_tracks"], **common)
    val = SRPairs(data["val"], max_tracks=data["max_val_tracks"], **common) \
        if data["val"] else None
    decoder = build_decoder(cfg["Decode"], charset, key="Decode")
    from vinocr.engine.rundir import claim_run_dir

    claim_run_dir(run_dir, bool(args.resume), args.overwrite)
    write_resolved_config(cfg, run_dir)
    trainer = SRTrainer(cfg, generator, ocr, charset.class_list(), image_shape, decoder, train,
                        val, run_dir, ocr_state=ocr_state)
    if args.resume:
        from vinocr.sr.checkpoint_io import resolve_sr_checkpoint

        trainer.resume(resolve_sr_checkpoint(args.resume, prefer=("latest",)))
    report = trainer.fit(stages)
    print(json.dumps({"best_word_acc": report["best_word_acc"], "steps": report["steps"],
                      "seconds": report["seconds"], "run_dir": str(run_dir)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
