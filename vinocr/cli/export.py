"""``vinocr-export``: a trained checkpoint -> a Paddle inference model that stock paddleocr loads.

    vinocr-export --checkpoint runs/vin/best --out exported/vin
    vinocr-export --checkpoint runs/vin/best --out exported/vin --int8 --calib data/vin/train.txt

LoRA adapters are merged, re-parameterisable branches folded, BatchNorms and learnable affines
folded into their convs (all exact), and the softmax included. ``inference.yml`` records the
dictionary, the input shape and vinocr's decoder settings. ``inference.onnx`` is written too
(dynamic batch and width; paddleocr loads the directory with ``engine='onnxruntime'``; ``vinocr-
predict`` runs it by default because onnxruntime is the faster engine on CPU) and checked against
the Paddle predictor on random inputs of widths 160, 320 and 640; ``--no-onnx`` skips it.

``--int8 --calib DATASET`` adds ``inference_int8.onnx``, statically quantised with onnxruntime's
tools on up to ``--calib-size`` crops of DATASET (training data: a test split is refused), and
records what it is in ``inference.yml`` (:mod:`vinocr.export.quantize`).

The confidence calibration (:mod:`vinocr.calibration`: a temperature and how character
confidences combine into the read's) the checkpoint carries (fitted by the trainer on its Eval
set) goes to ``inference.yml`` as ``vinocr.calibration``, which :class:`vinocr.predict.Recognizer`
applies to confidences. ``--fit-temperature DATASET`` fits it anew on any labelled validation
set (a test split is refused) without retraining:

    vinocr-export --checkpoint runs/vin --out exported/vin --fit-temperature data/vin/val.txt

For VINs the calibration may also carry a factor on the confidence of reads whose check digit
fails, fitted on the same validation reads (:mod:`vinocr.calibration`). On synthetic validation,
where every VIN has a valid check digit, that factor says such reads are wrong; for a fleet of
VINs without check digits (many European makers) refit on real crops, or drop the factor with
``--no-check-digit-evidence``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np

from vinocr.cli.common import (add_config_options, add_log_level, cli_entry, non_negative_float,
                               positive_int, setup_logging)
from vinocr.export.manifest import PADDLE_FILES, YML
from vinocr.export.onnx import ONNX_FILENAME
from vinocr.export.quantize import INT8_ONNX_FILENAME, MIN_CALIBRATION_CROPS, QUANT_FORMATS

PROG = "vinocr-export"

#: Input widths of the random batches the ONNX parity check runs.
PARITY_WIDTHS = (160, 320, 640)


def parity_inputs(height: int, widths: Sequence[int] = PARITY_WIDTHS, batch: int = 2,
                  seed: int = 0) -> List[np.ndarray]:
    """Random ``[batch, 3, height, w]`` inputs in [-1, 1], one per width."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.0, 1.0, (batch, 3, int(height), int(w))).astype(np.float32)
            for w in widths]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export a trained recogniser.")
    p.add_argument("--checkpoint", required=True, help="checkpoint dir or run dir (-> best), or "
                   "'pretrained' with -c")
    add_config_options(p, use="only for --checkpoint pretrained (charset, input shape, decoder)")
    p.add_argument("--out", required=True)
    p.add_argument("--onnx", action="store_true", default=True,
                   help="write inference.onnx (paddle2onnx, offline) and check it against the "
                   "Paddle predictor (the default)")
    p.add_argument("--no-onnx", dest="onnx", action="store_false",
                   help="Paddle files only (vinocr-predict then runs Paddle inference)")
    p.add_argument("--opset", type=positive_int, default=11, help="ONNX opset of inference.onnx")
    p.add_argument("--atol", type=non_negative_float, default=1e-4,
                   help="largest accepted ONNX vs Paddle difference of the output probabilities")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an export already in --out (its inference.* files)")
    p.add_argument("--fit-temperature", metavar="DATASET",
                   help="fit the confidence calibration (temperature and aggregate of "
                   "character confidences) on this labelled validation set (any vinocr dataset "
                   "format; never a test split) instead of keeping the checkpoint's")
    p.add_argument("--no-check-digit-evidence", dest="check_digit_evidence",
                   action="store_false", default=True,
                   help="no factor on the confidence of VIN reads failing the check digit (for "
                   "fleets whose VINs often lack one when the calibration set does not show "
                   "it): not fitted with --fit-temperature; without it, dropped from the "
                   "checkpoint's calibration, whose temperature was fitted without those reads "
                   "(add --fit-temperature VAL to refit every read under one temperature)")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="crops per forward pass when fitting the temperature")
    g = p.add_argument_group("int8 (onnxruntime static quantisation)")
    g.add_argument("--int8", action="store_true",
                   help="also write inference_int8.onnx, calibrated on --calib")
    g.add_argument("--calib", metavar="DATASET",
                   help="training crops for int8 calibration (any vinocr dataset format; never "
                   "a test split)")
    g.add_argument("--calib-size", type=positive_int, default=300,
                   help="crops drawn (seeded) from --calib")
    g.add_argument("--int8-format", choices=QUANT_FORMATS, default="qdq",
                   help="QDQ node pairs (fused by onnxruntime at load) or QOperator nodes")
    g.add_argument("--reduce-range", action="store_true",
                   help="7-bit weights, for CPUs without VNNI (AVX2 only), where onnxruntime's "
                   "8-bit kernels can saturate")
    add_log_level(p)
    return p


@cli_entry(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.int8 and not args.calib:
        parser.error("--int8 needs --calib DATASET (training crops to calibrate on)")
    if args.calib and not args.int8:
        parser.error("--calib is only used with --int8")
    setup_logging(args.log_level)
    from vinocr.config import load_config
    from vinocr.engine.model_loading import load_trained
    from vinocr.export import export_inference
    from vinocr.models.pretrained import base_name

    if args.opt and not args.config:
        parser.error("-o needs -c (it overrides the config of --checkpoint pretrained)")
    cfg = load_config(args.config, args.opt) if args.config else None
    loaded = load_trained(args.checkpoint, cfg)
    model_cfg = cfg if cfg is not None else loaded.config
    # Read before the export starts, so a wrong or held-out --calib costs no export time, and
    # before --overwrite removes the earlier export, so a bad --calib does not cost it either.
    calibration = calibration_crops(args.calib, loaded.charset, args.calib_size) if args.int8 \
        else None
    confidence = loaded.calibration
    if args.fit_temperature:
        confidence = fit_temperature_record(args.fit_temperature, loaded, model_cfg,
                                            args.batch_size, args.check_digit_evidence)
    elif confidence and not args.check_digit_evidence:
        confidence = {**confidence, "check_digit_failed": None}
    claim_out_dir(Path(args.out), args.overwrite)
    extra = {"decode": model_cfg.get("Decode"), "charset": loaded.charset.name,
             "source": loaded.name}
    if confidence:
        extra["calibration"] = dict(confidence)
    two_row = float(model_cfg["Global"].get("two_row_max_aspect", 0.0))
    if two_row > 0:
        # vinocr's Recognizer joins two-row crops before resizing; stock paddleocr does not.
        extra["two_row_max_aspect"] = two_row
    out = export_inference(loaded.model, args.out, loaded.charset,
                           model_cfg["Global"]["image_shape"], extra,
                           base=base_name(model_cfg["Architecture"]))
    print(f"exported {loaded.name} -> {Path(out).resolve()} (inference.json, inference.pdiparams, "
          "inference.yml)")
    if args.onnx:
        from vinocr.export.onnx import check_onnx_parity, export_onnx

        onnx_path = export_onnx(out, opset=args.opset)
        height = int(model_cfg["Global"]["image_shape"][1])
        diff = check_onnx_parity(out, parity_inputs(height), atol=args.atol)
        widths = "/".join(str(w) for w in PARITY_WIDTHS)
        print(f"onnx -> {Path(onnx_path).resolve()}; max abs diff vs Paddle {diff:.3g} "
              f"(widths {widths}, atol {args.atol:g})")
    if calibration is not None:
        from vinocr.export.quantize import quantize_onnx

        report = quantize_onnx(out, calibration, model_cfg["Global"]["image_shape"],
                               quant_format=args.int8_format, reduce_range=args.reduce_range,
                               source=str(args.calib))
        print(f"int8 -> {report.path.resolve()} ({args.int8_format}, {report.crops} calibration "
              f"crops, {report.seconds:.0f} s); on those crops vs fp32: max abs diff "
              f"{report.max_abs_diff:.3g}, {100 * report.frame_agreement:.1f}% of frames with the "
              "same top class (accuracy: vinocr-eval --backends ... on a validation set)")
    return 0


#: What an export writes into --out; a file left from an earlier export would be read with the
#: new inference.yml (e.g. a stale inference.onnx by the default onnxruntime engine).
EXPORT_FILES = (*PADDLE_FILES, YML, ONNX_FILENAME, INT8_ONNX_FILENAME)


def claim_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that holds an export unless ``overwrite``; then remove those files, so
    no file of the earlier export survives beside the new one. Other files are left alone."""
    from vinocr.errors import VinocrError

    if out.exists() and not out.is_dir():
        raise VinocrError(f"--out {out}: exists and is not a directory")
    present = [name for name in EXPORT_FILES if (out / name).exists()]
    if present and not overwrite:
        raise VinocrError(f"--out {out}: already holds an export ({', '.join(present)}); pass "
                          "--overwrite to replace it")
    for name in present:
        (out / name).unlink()


def fit_temperature_record(path: str, loaded: Any, model_cfg: Any, batch_size: int,
                           check_digit: bool = True) -> Any:
    """Fit the confidence temperature of ``loaded`` on the labelled dataset at ``path`` (a test
    split is an error: the temperature is chosen on validation data, like the checkpoint) and
    return the record ``inference.yml`` stores (``check_digit``: see
    :func:`vinocr.calibration.fit_temperature`)."""
    from vinocr.calibration import CalibrationError
    from vinocr.cli.model_io import fit_model_temperature
    from vinocr.data.registry import open_dataset
    from vinocr.data.split import held_out_test_reason
    from vinocr.errors import VinocrError

    if not Path(path).exists():
        raise VinocrError(f"--fit-temperature {path}: no such file or folder")
    dataset = open_dataset(path, charset=loaded.charset)
    reason = held_out_test_reason(Path(path), dataset)
    if reason is not None:
        raise VinocrError(f"--fit-temperature {path}: {reason}; fit on a validation split")
    if len(dataset) == 0:
        raise VinocrError(f"--fit-temperature {path}: no usable samples for charset "
                          f"{loaded.charset.name!r}")
    try:
        fit = fit_model_temperature(loaded, dataset, model_cfg.get("Decode"),
                                    model_cfg["Global"]["image_shape"], batch_size,
                                    fitted_on=str(path),
                                    two_row_max_aspect=model_cfg["Global"].get(
                                        "two_row_max_aspect", 0.0), check_digit=check_digit)
    except CalibrationError as exc:
        raise VinocrError(f"--fit-temperature {path}: {exc}") from None
    print(f"confidence calibration: {fit.summary()}")
    return fit.to_record()


def calibration_crops(path: str, charset: Any, size: int, seed: int = 0) -> List[np.ndarray]:
    """Up to ``size`` crops of the dataset at ``path``, drawn with ``seed``; a test split is an
    error (calibrating on it would tune the int8 model to the data that measures it)."""
    from vinocr.data.registry import open_dataset
    from vinocr.data.split import held_out_test_reason
    from vinocr.errors import VinocrError

    if not Path(path).exists():
        raise VinocrError(f"--calib {path}: no such file or folder")
    dataset = open_dataset(path, charset=charset)
    reason = held_out_test_reason(Path(path), dataset)
    if reason is not None:
        raise VinocrError(f"--calib {path}: {reason}; calibrate on training crops")
    if len(dataset) < MIN_CALIBRATION_CROPS:
        raise VinocrError(f"--calib {path}: {len(dataset)} usable crops for charset "
                          f"{charset.name!r}; int8 calibration needs at least "
                          f"{MIN_CALIBRATION_CROPS} crops")
    # Random order, not file order: the calibration averages each batch's min/max, and a batch
    # of neighbouring near-duplicates (frames of one track) would stand for one plate only.
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(dataset), size=min(size, len(dataset)), replace=False)
    return [dataset.load_image(int(i)) for i in picked]


if __name__ == "__main__":
    sys.exit(main())
