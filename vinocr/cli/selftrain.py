"""``vinocr-selftrain``: self-training in rounds: pseudo-label the unlabelled crops with the current
model, fine-tune the recipe on its labelled data plus the accepted pseudo-labels, repeat with the
better model; export the last round.

    vinocr-selftrain -c configs/vin/ppocrv6_small.yml -o "Train.dataset=..." "Eval.dataset=..." \\
        --unlabelled customer_crops/ --calibrate customer_val.txt --rounds 2 --out selftrain/

``OUT/`` holds ``selftrain.json`` (the rounds, their state and pseudo-label reports),
``round_0/run`` (the recipe on the labelled data alone, unless ``--base`` names a model),
``round_K/pseudo`` (``vinocr-pseudolabel`` output of the round-(K-1) model) and ``round_K/run``
(the fine-tune on labelled + pseudo-labelled data), and ``export/`` (``vinocr-export`` of the
last round). Every round fine-tunes from the recipe's own starting point (its pretrained base),
not from the previous round, so errors a round learnt are not carried forward; the previous
round's model only chooses the pseudo-labels. Model selection inside each fine-tune uses the
config's ``Eval.dataset`` (validation), never a test split.

``--resume`` continues after an interruption: finished rounds are kept, an interrupted fine-tune
continues from its latest checkpoint (``vinocr-finetune --resume``), an interrupted
pseudo-labelling step is redone.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from vinocr.cli.common import add_config_options, add_log_level, cli_entry, setup_logging
from vinocr.cli.pseudolabel import add_verifier_options, pseudolabel, summary_line
from vinocr.atomic_dir import write_file_atomic
from vinocr.errors import VinocrError

logger = logging.getLogger("vinocr.selftrain")
PROG = "vinocr-selftrain"
STATE_FILE = "selftrain.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_config_options(p, required=True, use="the recipe every round fine-tunes (Train.dataset: "
                                             "the labelled data; Eval.dataset: validation)")
    p.add_argument("--unlabelled", required=True, metavar="DATA",
                   help="unlabelled crops (a folder of images or a dataset whose labels are "
                        "ignored); with --tracks, LRLPR tracks")
    p.add_argument("--rounds", type=int, default=2, help="pseudo-label + fine-tune rounds "
                                                         "(default 2)")
    p.add_argument("--out", required=True, help="self-training folder")
    p.add_argument("--base", metavar="MODEL",
                   help="round-0 model (run dir, checkpoint or export) instead of fine-tuning "
                        "the recipe on its labelled data first")
    p.add_argument("--pseudo-ratio", type=float,
                   help="share of pseudo-labelled samples when the config's Train.dataset "
                        "sources have ratios (required then); without ratios sources mix by size")
    p.add_argument("--pseudo-augment", metavar="YAML", type=augment_section,
                   help="augmentation of the pseudo-labelled crops instead of Train.augment, "
                        "a Train.augment-style section, e.g. \"{preset: vin, p: 1.0, num_ops: 3}\" "
                        "(stronger than the labelled data's: the accepted crops are the ones "
                        "the model already reads)")
    p.add_argument("--tracks", action="store_true",
                   help="--unlabelled, --calibrate and --audit are plate tracks")
    p.add_argument("--audit", metavar="LABELS",
                   help="true labels of --unlabelled, used only to report each round's "
                        "pseudo-label precision and yield")
    p.add_argument("--nproc", default="auto", help="data-parallel processes per fine-tune "
                                                   "(vinocr-finetune --nproc)")
    p.add_argument("--no-export", action="store_true", help="do not export the last round")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted --out")
    mode.add_argument("--overwrite", action="store_true", help="start --out over")
    add_verifier_options(p)
    add_log_level(p)
    return p


def augment_section(text: str) -> Dict[str, Any]:
    """``--pseudo-augment``: a YAML mapping checked like ``Train.augment``."""
    import yaml

    from vinocr.data.augment import build_augment

    try:
        section = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(section, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping such as \"{{preset: vin, p: 1.0}}\", "
                                         f"got {text!r}")
    try:
        build_augment(section, key="--pseudo-augment")
    except VinocrError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return section


# ------------------------------------------------------------------------------ state file
def load_state(out: Path) -> Dict[str, Any]:
    path = out / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VinocrError(f"{path}: unreadable self-training state ({exc}); start over with "
                          "--overwrite") from None
    if not isinstance(state, dict) or not isinstance(state.get("rounds"), list):
        raise VinocrError(f"{path}: not a vinocr-selftrain state file")
    return state


def save_state(out: Path, state: Mapping[str, Any]) -> None:
    write_file_atomic(out / STATE_FILE,
                      (json.dumps(state, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def round_entry(state: Dict[str, Any], k: int) -> Dict[str, Any]:
    while len(state["rounds"]) <= k:
        state["rounds"].append({"round": len(state["rounds"]), "status": "pending"})
    return state["rounds"][k]


# ------------------------------------------------------------------------------ the steps
def mixed_dataset(cfg: Mapping[str, Any], label_file: Path, ratio: Optional[float],
                  augment: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Train.dataset: the config's sources plus the pseudo-label file (with its own ``augment``
    section when given; the config's other Train.dataset keys, such as epoch_size, kept)."""
    from vinocr.data.registry import source_entries

    dataset = cfg["Train"]["dataset"]
    sources = [dict(spec) for _, spec in source_entries(dataset)]
    pseudo: Dict[str, Any] = {"type": "label_file", "label_files": [str(label_file.resolve())]}
    if augment is not None:
        pseudo["augment"] = dict(augment)
    with_ratio = any("ratio" in s for s in sources)
    if with_ratio:
        if ratio is None:
            raise VinocrError("Train.dataset sources have ratios: give --pseudo-ratio for the "
                              "pseudo-labelled share")
        pseudo["ratio"] = ratio
    elif ratio is not None:
        raise VinocrError("--pseudo-ratio needs ratios on every Train.dataset source (without "
                          "them sources mix by size)")
    rest = {k: v for k, v in dataset.items() if k != "sources"} if "sources" in dataset else {}
    return {**rest, "sources": sources + [pseudo]}


def finetune(args: argparse.Namespace, run: Path, overrides: List[str]) -> Dict[str, Any]:
    """Run ``vinocr-finetune`` into ``run`` (resuming a started run); returns its report."""
    cmd = [sys.executable, "-m", "vinocr.cli.finetune", "--nproc", str(args.nproc),
           "--log-level", args.log_level]
    cmd += ["-c", *map(str, args.config)]
    if (run / "latest").exists():
        cmd += ["--resume", str(run)]
        opts = [*args.opt, *overrides]
        logger.info("resuming the interrupted fine-tune in %s", run)
    else:
        cmd += ["--overwrite"]
        opts = [*args.opt, f"Global.run_dir={run}", *overrides]
    if opts:   # `-o` with no values is an argparse error
        cmd += ["-o", *opts]
    logger.info("fine-tuning: %s", " ".join(cmd[1:]))
    proc = subprocess.run(cmd, env=dict(os.environ))
    if proc.returncode != 0:
        raise VinocrError(f"the fine-tune into {run} failed (exit {proc.returncode}); fix the "
                          f"cause and rerun with --resume (its log: {run / 'train.log'})")
    report_path = run / "report.json"
    try:
        return json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise VinocrError(f"{report_path}: the fine-tune ended without a report") from None


def pseudo_args(args: argparse.Namespace, model: str, out: Path) -> argparse.Namespace:
    """``vinocr-pseudolabel``'s arguments for one round."""
    return argparse.Namespace(
        unlabelled=args.unlabelled, model=model, out=str(out), tracks=args.tracks,
        audit=args.audit, backend="auto", overwrite=True, calibrate=args.calibrate,
        target_precision=args.target_precision, threshold=args.threshold, score=args.score,
        check_digit=args.check_digit, min_agreement=args.min_agreement, decode=args.decode,
        allow_forced=args.allow_forced, track_frames=args.track_frames,
        review=args.review, batch_size=args.batch_size, teacher=list(args.teacher),
        min_votes=args.min_votes, confident_votes=args.confident_votes)


def run_rounds(args: argparse.Namespace, cfg: Mapping[str, Any]) -> Dict[str, Any]:
    out = Path(args.out)
    if args.rounds < 1:
        raise VinocrError(f"--rounds: expected >= 1, got {args.rounds}")
    if (out / STATE_FILE).exists():
        if args.resume:
            state = load_state(out)
        elif args.overwrite:
            state = None
        else:
            raise VinocrError(f"{out}: holds a self-training run; --resume it or --overwrite it")
    elif args.resume:
        raise VinocrError(f"{out}: nothing to resume (no {STATE_FILE})")
    else:
        state = None
    if state is None:
        if out.exists() and args.overwrite:
            import shutil

            for child in out.glob("round_*"):
                shutil.rmtree(child)
            shutil.rmtree(out / "export", ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        state = {"config": [str(c) for c in args.config], "overrides": list(args.opt),
                 "unlabelled": str(args.unlabelled), "base": args.base,
                 "pseudo_augment": args.pseudo_augment, "rounds": []}
    state["rounds_requested"] = args.rounds
    save_state(out, state)

    first = round_entry(state, 0)
    if first["status"] != "done":
        if args.base:
            first.update(model=str(args.base), status="done", source="--base")
        else:
            report = finetune(args, out / "round_0" / "run", [])
            first.update(model=str(out / "round_0" / "run"), status="done",
                         best=report.get("best"))
        save_state(out, state)
    for k in range(1, args.rounds + 1):
        entry = round_entry(state, k)
        if entry["status"] == "done":
            continue
        folder = out / f"round_{k}"
        model = state["rounds"][k - 1]["model"]
        if entry["status"] != "pseudo_done":
            logger.info("round %d: pseudo-labelling %s with %s", k, args.unlabelled, model)
            report = pseudolabel(pseudo_args(args, model, folder / "pseudo"), None)
            entry.update(status="pseudo_done", pseudo=str(folder / "pseudo"),
                         teachers=list(args.teacher), min_votes=args.min_votes,
                         confident_votes=args.confident_votes,
                         accepted=report["accepted_items"], items=report["items"],
                         calibration=report.get("calibration"), audit=report.get("audit"))
            save_state(out, state)
            logger.info("round %d: %s", k, summary_line(report))
        if entry["accepted"] == 0:
            raise VinocrError(f"round {k}: no pseudo-label was accepted; nothing to train on "
                              f"(see {folder / 'pseudo' / 'report.json'})")
        dataset = mixed_dataset(cfg, folder / "pseudo" / "labels.txt", args.pseudo_ratio,
                                args.pseudo_augment)
        report = finetune(args, folder / "run", [f"Train.dataset={json.dumps(dataset)}"])
        entry.update(model=str(folder / "run"), status="done", best=report.get("best"))
        save_state(out, state)
    last = state["rounds"][args.rounds]["model"]
    if not args.no_export and state.get("export") != last:
        from vinocr.cli.export import main as export_main

        code = export_main(["--checkpoint", last, "--out", str(out / "export"), "--overwrite"])
        if code != 0:
            raise VinocrError(f"exporting {last} failed (exit {code})")
        state["export"] = last
        save_state(out, state)
    return state


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from vinocr.config import load_config

    cfg = load_config(args.config, args.opt)   # validated here, before any round starts
    state = run_rounds(args, cfg)
    for entry in state["rounds"]:
        audit = entry.get("audit") or {}
        extra = (f", pseudo-labels {entry.get('accepted')}/{entry.get('items')}"
                 + (f" precision {audit['precision']:.4f}" if audit.get("precision") is not None
                    else "")) if entry["round"] else ""
        print(f"round {entry['round']}: {entry['status']}, model {entry.get('model')}{extra}")
    if state.get("export"):
        print(f"exported {state['export']} -> {Path(args.out) / 'export'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
