"""Reading crops with a loaded recogniser (evaluation, pseudo-labelling, comparisons).

Models are loaded by :func:`vinocr.engine.model_loading.load_trained` (run, checkpoint or export
directory, or ``pretrained``); this module turns the result into batch readers.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from vinocr.engine.model_loading import LoadedModel
from vinocr.errors import VinocrError


def make_reader(loaded: LoadedModel, decode_cfg: Optional[Mapping[str, Any]],
                image_shape: Sequence[int], raw_confidence: bool = False,
                two_row_max_aspect: float = 0.0
                ) -> Tuple[Callable[[List[np.ndarray]], List[Any]], Callable[[str], str]]:
    """``(read, canonical)`` for ``loaded``: ``read(bgr_crops)`` gives one decoder result per crop
    (``.text``, ``.confidence``, ``.char_confidences``); ``canonical(label)`` spells a label as
    the decoder spells texts (plate formats: no separators), for scoring.

    An exported directory uses its own predictor, preprocessing and decoder settings; a checkpoint
    is run with ``decode_cfg`` at ``image_shape``, squeezed to it as in training (two-row crops
    joined as ``Global.two_row_max_aspect`` says: ``two_row_max_aspect``). Confidences are
    calibrated with the model's calibration (``loaded.temperature``, ``loaded.aggregate``,
    ``loaded.check_digit_scale``) unless ``raw_confidence`` (temperature 1, mean of characters);
    texts are the same either way.
    """
    if loaded.recognizer is not None:
        rec = loaded.recognizer
        if raw_confidence and loaded.calibrated:
            rec = copy.copy(rec)  # same engine and decoder, raw confidences
            rec.use_raw_confidence()
        return rec.predict, rec.decoder.canonical
    from vinocr.calibration import decode_calibrated

    probs, decoder = make_prob_reader(loaded, decode_cfg, image_shape, two_row_max_aspect)
    temperature = 1.0 if raw_confidence else loaded.temperature
    aggregate = "mean" if raw_confidence else loaded.aggregate
    scale = None if raw_confidence else loaded.check_digit_scale
    return (lambda images: decode_calibrated(decoder, probs(images), temperature,
                                             aggregate=aggregate, check_digit_scale=scale)
            ), decoder.canonical


def fit_model_temperature(loaded: LoadedModel, dataset: Any,
                          decode_cfg: Optional[Mapping[str, Any]], image_shape: Sequence[int],
                          batch_size: int = 32, fitted_on: Optional[str] = None,
                          two_row_max_aspect: float = 0.0, check_digit: bool = True) -> Any:
    """Fit ``loaded``'s confidence calibration (aggregate and temperature) on the labelled
    ``dataset`` (:func:`vinocr.calibration.fit_temperature`) with the decoder ``decode_cfg``;
    returns the :class:`~vinocr.calibration.TemperatureFit`. ``check_digit=False`` fits no
    factor for VIN reads failing the check digit."""
    from vinocr.calibration import CalibrationSet, calibration_set, fit_temperature

    probs, decoder = make_prob_reader(loaded, decode_cfg, image_shape, two_row_max_aspect)
    parts = []
    for start in range(0, len(dataset), batch_size):
        idx = range(start, min(len(dataset), start + batch_size))
        batch = probs([dataset.load_image(i) for i in idx])
        parts.append(calibration_set(decoder, list(batch), [dataset.label(i) for i in idx]))
    return fit_temperature(CalibrationSet.concat(parts), fitted_on=fitted_on,
                           check_digit=check_digit)


def make_prob_reader(loaded: LoadedModel, decode_cfg: Optional[Mapping[str, Any]],
                     image_shape: Sequence[int], two_row_max_aspect: float = 0.0
                     ) -> Tuple[Callable[[List[np.ndarray]], np.ndarray], Any]:
    """``(probs, decoder)``: ``probs(bgr_crops)`` is the [N, T, C] class probabilities of the
    crops (every crop squeezed to the model input, so T is shared), ``decoder`` the decoder
    :func:`make_reader` applies to them. For callers that decode the same matrices twice (e.g.
    comparing the constrained read with the unconstrained one)."""
    if loaded.recognizer is not None:
        rec = loaded.recognizer
        if rec.dynamic_width:
            raise VinocrError("probabilities of a batch need one input width: load the export "
                              "without dynamic_width")
        return (lambda images: np.stack(rec.frame_probs(images))), rec.decoder
    import paddle

    from vinocr.data.preprocess import resize_norm
    from vinocr.decode import build_decoder

    decoder = build_decoder(decode_cfg, charset=loaded.charset, key="Decode")
    shape = tuple(int(v) for v in image_shape)

    def probs(images: List[np.ndarray]) -> np.ndarray:
        batch = np.stack([resize_norm(im, shape, two_row_max_aspect=two_row_max_aspect)[0]
                          for im in images])
        with paddle.no_grad():
            return loaded.model.predict_proba(paddle.to_tensor(batch)).numpy()

    return probs, decoder
