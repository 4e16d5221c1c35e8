"""Validation for the trainer: decode the eval set and turn the predictions into metrics (logged as
``val/<metric>``) and VisualDL images.

Data parallel: each rank decodes its shard of the eval set; the predictions are gathered on every
rank (keyed by dataset index, so the wrap-around padding of the last shard counts once), and every
rank computes the same metrics, so decisions taken from them (best checkpoint, LR on plateau,
early stopping) agree without a broadcast.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Callable, Dict, Optional, Tuple

import paddle

from vinocr.data.loader import good_rows
from vinocr.engine import distributed as dist

logger = logging.getLogger(__name__)


def predict_eval_set(model: Any, loader: Any, dataset: Any, decoder: Any, ema: Optional[Any],
                     check_unreadable: Callable[[paddle.Tensor], None],
                     sync_timeout: float) -> Dict[str, Any]:
    """Decoded predictions on the eval set, in sample order: texts, confidences, labels and
    dataset indices, with the EMA weights when there are some. ``check_unreadable(index)`` sees
    every batch's indices (substitutes for unreadable images are not scored)."""
    model.eval()
    mine: Dict[int, Any] = {}
    ctx = ema.apply_to(model) if ema is not None else contextlib.nullcontext()
    with ctx, paddle.no_grad():
        for images, _, _, index in loader:
            check_unreadable(index)
            probs = model.predict_proba(images).numpy()
            for result, i, ok in zip(decoder.decode(probs), index.numpy().tolist(),
                                     good_rows(index)):
                if ok:
                    mine[int(i)] = [result.text, float(result.confidence)]
    merged: Dict[int, Any] = {}
    for shard in dist.gather_json({str(k): v for k, v in mine.items()},
                                  "the validation gather", sync_timeout):
        merged.update({int(k): v for k, v in shard.items()})
    order = sorted(merged)
    # Labels spelled as the decoder spells its outputs (plate formats: no separators, O/0 one
    # class on US plates), so metrics follow the format; the identity for other decoders.
    return {"preds": [merged[i][0] for i in order],
            "confidences": [merged[i][1] for i in order],
            "labels": [decoder.canonical(dataset.label(i)) for i in order], "indices": order}


def score(out: Dict[str, Any], charset: Any) -> Tuple[Any, Dict[str, float]]:
    """``(evaluation result, numeric metrics)`` of :func:`predict_eval_set`'s output."""
    from vinocr.engine.evaluation import evaluate_texts

    result = evaluate_texts(out["preds"], out["labels"], out["confidences"],
                            vin=charset.name == "vin")
    metrics = {k: v for k, v in result.to_dict().items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)
               and k not in ("n", "n_errors")}
    return result, metrics


def validate(predict: Callable[[], Dict[str, Any]], charset: Any, dataset: Any, log: Any,
             step: int, is_main: bool, epoch: int, sync_timeout: float) -> Dict[str, float]:
    """Run ``predict`` (the trainer's :meth:`~vinocr.engine.trainer.Trainer.predict_eval_set`),
    log the metrics at ``step`` and (rank 0) the images; the same metrics on every rank."""
    start = time.perf_counter()
    out = predict()
    logger.info("validation: %d crops decoded in %.1f s on %d process(es)", len(out["preds"]),
                time.perf_counter() - start, dist.world_size())
    result, metrics = score(out, charset)
    for name, value in metrics.items():
        log.scalar(f"val/{name}", value, step)
    if is_main:
        log_visuals(log, dataset, result, out, step)
    dist.sync(f"validation of epoch {epoch + 1} (VisualDL images)", sync_timeout)
    return metrics


def log_visuals(log: Any, dataset: Any, result: Any, out: Dict[str, Any], step: int) -> None:
    """The hardest errors as an image grid and the confusion matrix (VisualDL only)."""
    if log.writer is None:
        return
    from vinocr.engine.visuals import confusion_matrix_image, error_grid

    worst = list(result.worst[:8])
    if worst:
        images = [dataset.load_image(out["indices"][i]) for i in worst]
        grid = error_grid(images, [out["labels"][i] for i in worst],
                          [out["preds"][i] for i in worst],
                          [out["confidences"][i] for i in worst])
        log.image("val/hardest_errors", grid, step)
    if result.confusion:
        log.image("val/confusion_matrix", confusion_matrix_image(result.confusion), step)


def fit_eval_temperature(checkpoint: Any, loader: Any, dataset: Any,
                         decode_cfg: Optional[Dict[str, Any]], sync_timeout: float
                         ) -> Optional[Any]:
    """Fit the confidence temperature (:func:`vinocr.calibration.fit_temperature`) of the model
    in ``checkpoint`` (loaded by :func:`vinocr.engine.model_loading.load_trained`, as exports and
    evaluations load it) on the eval set, decoded with ``decode_cfg``.

    Data parallel: each rank reads its shard; the per-read calibration data are gathered (keyed by
    dataset index, so the padding of the last shard counts once) and every rank fits the same
    temperature. Returns the :class:`~vinocr.calibration.TemperatureFit`, or None (with a
    warning) when the eval set cannot calibrate (e.g. every read right, or every read wrong).
    """
    from vinocr.calibration import CalibrationError, CalibrationSet, calibration_set, \
        fit_temperature
    from vinocr.decode import build_decoder
    from vinocr.engine.model_loading import load_trained

    start = time.perf_counter()
    loaded = load_trained(checkpoint)
    decoder = build_decoder(decode_cfg, charset=loaded.charset, key="Decode")
    mine: Dict[int, Any] = {}
    with paddle.no_grad():
        for images, _, _, index in loader:
            probs = loaded.model.predict_proba(images).numpy()
            for p, i, ok in zip(probs, index.numpy().tolist(), good_rows(index)):
                if ok:
                    mine[int(i)] = calibration_set(decoder, [p], [dataset.label(int(i))])
    parts: Dict[int, Any] = dict(mine)
    if dist.world_size() > 1:
        parts = {}
        for shard in dist.gather_json({str(k): v.to_json() for k, v in mine.items()},
                                      "the calibration gather", sync_timeout):
            parts.update({int(k): CalibrationSet.from_json(v) for k, v in shard.items()})
    data = CalibrationSet.concat([parts[i] for i in sorted(parts)])
    try:
        fit = fit_temperature(data, fitted_on=f"Eval.dataset ({dataset.describe()})")
    except CalibrationError as exc:
        logger.warning("confidence calibration skipped (confidences stay raw): %s", exc)
        return None
    logger.info("confidence calibration of %s: %s (%.1f s)", loaded.path, fit.summary(),
                time.perf_counter() - start)
    return fit
