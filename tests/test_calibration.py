"""Temperature calibration of confidences (vinocr.calibration): the fit, texts unchanged, and the
temperature's way from the trainer through the checkpoint and export to the Recognizer."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import yaml

from conftest import make_label_dir, tiny_config
from vinocr.calibration import (MIN_CHECK_FAILED, MIN_READS, CalibrationError, CalibrationSet,
                                aggregate_char_confidences, aggregate_from_record,
                                calibrate_result, calibration_set, check_digit_scale_from_record,
                                check_temperature, decode_calibrated, fit_temperature, temper,
                                temperature_from_record)
from vinocr.decode import build_decoder
from vinocr.decode.ctc import BeamSearchDecoder, GreedyDecoder
from vinocr.engine.hooks import TrainerHooks
from vinocr.errors import VinocrError
from vinocr.metrics import expected_calibration_error
from vinocr.vin import VIN_ALPHABET, check_digit_fails, check_digit_ok, with_check_digit

CLASSES = [""] + list("ABCDEFGH0123456789")


def _random_probs(rng: np.random.Generator, n: int, frames: int = 12,
                  classes: int = len(CLASSES), scale: float = 4.0) -> List[np.ndarray]:
    """Softmax outputs with one boosted class per frame (sometimes the blank), so reads have a
    few characters and confidences spread over (0, 1)."""
    out = []
    for _ in range(n):
        z = rng.normal(0.0, scale / 3, (frames, classes))
        z[np.arange(frames), rng.integers(0, classes, frames)] += scale * rng.uniform(0.3, 1.5)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        out.append((p / p.sum(axis=1, keepdims=True)).astype(np.float32))
    return out


def _synthetic_set(seed: int, n: int, true_t: float) -> Tuple[List[np.ndarray], list, np.ndarray]:
    """Reads whose correctness is drawn with probability equal to the confidence at ``true_t``:
    the raw confidences are miscalibrated exactly by that temperature."""
    rng = np.random.default_rng(seed)
    decoder = GreedyDecoder(classes=CLASSES)
    probs = _random_probs(rng, n)
    results = [decoder.decode(p) for p in probs]
    truth = np.array([calibrate_result(r, p, true_t).confidence for r, p in zip(results, probs)])
    return probs, results, rng.random(n) < truth


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_fit_recovers_known_temperature(true_t):
    probs, results, correct = _synthetic_set(1, 1500, true_t)
    # correctness follows the mean at true_t: fit the mean's temperature alone
    fit = fit_temperature(CalibrationSet.from_reads(probs, results, correct),
                          aggregates=("mean",))
    assert fit.aggregate == "mean" and set(fit.candidates) == {"mean"}
    assert abs(fit.temperature - true_t) <= 0.12 * true_t, fit.summary()
    assert not fit.at_bound and fit.n == 1500
    assert fit.nll < fit.nll_raw and fit.ece < fit.ece_raw


def test_calibrated_ece_lower_than_raw_on_held_out_overconfident_reads():
    probs, results, correct = _synthetic_set(2, 1000, 3.0)  # raw confidences far too high
    fit = fit_temperature(CalibrationSet.from_reads(probs, results, correct))
    assert fit.temperature > 1.5
    # judged on other reads than the fit saw
    probs2, results2, correct2 = _synthetic_set(3, 1000, 3.0)
    raw = [r.confidence for r in results2]
    tuned = [calibrate_result(r, p, fit.temperature, aggregate=fit.aggregate).confidence
             for r, p in zip(results2, probs2)]
    assert np.mean(raw) > np.mean(correct2) + 0.2  # the set is overconfident
    ece_raw = expected_calibration_error(raw, correct2.tolist())
    ece = expected_calibration_error(tuned, correct2.tolist())
    assert ece < 0.5 * ece_raw and ece < 0.06, (ece_raw, ece)


def _long_reads(seed: int, n: int, length: int = 17) -> Tuple[List[np.ndarray], list,
                                                               np.ndarray]:
    """VIN-like reads of ``length`` characters, each confidently read (0.995-0.9999) or now and
    then (5%) doubtful (0.2-0.9), each character right with its own confidence (so character
    confidences are calibrated): a read is right only when all of them are, i.e. with the
    product of its character confidences. One doubtful character of 17 barely moves the mean
    (above 0.95 with a character at 0.2), and no temperature brings it down to that read's odds
    without also pulling down the reads with no doubtful character."""
    rng = np.random.default_rng(seed)
    decoder = GreedyDecoder(classes=CLASSES)
    c = len(CLASSES)
    probs, correct = [], []
    for _ in range(n):
        frames = np.full((2 * length + 1, c), 1e-4)
        frames[:, 0] = 1.0  # blank between characters
        doubtful = rng.random(length) < 0.05
        conf = np.where(doubtful, rng.uniform(0.2, 0.9, length),
                        rng.uniform(0.995, 0.9999, length))
        for k in range(length):
            row = np.full(c - 1, (1.0 - conf[k]) / (c - 2))
            row[rng.integers(0, c - 1)] = conf[k]
            frames[2 * k + 1] = np.concatenate([[0.0], row])
        probs.append((frames / frames.sum(axis=1, keepdims=True)).astype(np.float32))
        correct.append(bool(np.all(rng.random(length) < conf)))
    results = [decoder.decode(p) for p in probs]
    assert all(len(r.text) == length for r in results)
    return probs, results, np.asarray(correct)


def test_fit_picks_product_when_errors_are_single_characters_among_confident_ones():
    probs, results, correct = _long_reads(20, 600)
    fit = fit_temperature(CalibrationSet.from_reads(probs, results, correct))
    assert fit.aggregate == "product", fit.summary()
    assert set(fit.candidates) == {"mean", "product", "min", "geomean"}
    assert fit.nll == min(v["nll"] for v in fit.candidates.values())
    assert fit.to_record()["aggregate"] == "product"
    assert abs(fit.temperature - 1.0) < 0.1  # the product is calibrated as constructed
    # 17 characters of an alphabet that is not the VIN one: no check digit to split on
    assert fit.check_digit_failed is None and fit.to_record()["check_digit_failed"] is None
    mean_t = fit.candidates["mean"]["temperature"]
    # held out: the chosen product is far better calibrated than the best-tempered mean
    probs2, results2, correct2 = _long_reads(21, 600)
    raw = [r.confidence for r in results2]
    assert np.mean(raw) > np.mean(correct2) + 0.2  # the raw mean is badly overconfident
    product = decode_calibrated(GreedyDecoder(classes=CLASSES), np.stack(probs2),
                                fit.temperature, aggregate="product")
    mean = [calibrate_result(r, p, mean_t).confidence for r, p in zip(results2, probs2)]
    ece_product = expected_calibration_error([r.confidence for r in product], correct2.tolist())
    ece_mean = expected_calibration_error(mean, correct2.tolist())
    ece_raw = expected_calibration_error(raw, correct2.tolist())
    assert ece_product < 0.5 * ece_mean and ece_product < 0.08, (ece_raw, ece_mean, ece_product)
    # the read's confidence is the product; characters stay per character (tempered)
    for r, q, p in zip(results2, product, probs2):
        assert q.text == r.text
        tempered = calibrate_result(r, p, fit.temperature)  # mean aggregate, same characters
        assert q.char_confidences == pytest.approx(tempered.char_confidences, rel=1e-12)
        assert q.confidence == pytest.approx(np.prod(q.char_confidences), rel=1e-9)


VIN_CLASSES = [""] + list(VIN_ALPHABET)


def _vin_reads(seed: int, n: int, failing: float = 0.3) -> Tuple[List[np.ndarray], list,
                                                                  np.ndarray]:
    """17-character VIN reads as :func:`_long_reads` builds them (right with the product of
    their character confidences), except that a share ``failing`` of them read a check digit
    that does not match: those are always wrong, as on crops of VINs that all carry a valid
    check digit, although their characters are as confident as the others'."""
    rng = np.random.default_rng(seed)
    decoder = GreedyDecoder(classes=VIN_CLASSES)
    c = len(VIN_CLASSES)
    probs, correct = [], []
    for _ in range(n):
        vin = with_check_digit("".join(rng.choice(list(VIN_ALPHABET), 17)))
        fails = rng.random() < failing
        if fails:
            vin = vin[:8] + next(d for d in "0123456789X" if d != vin[8]) + vin[9:]
        doubtful = rng.random(17) < 0.05
        conf = np.where(doubtful, rng.uniform(0.2, 0.9, 17), rng.uniform(0.995, 0.9999, 17))
        frames = np.full((35, c), 1e-4)
        frames[:, 0] = 1.0
        for k, ch in enumerate(vin):
            row = np.full(c - 1, (1.0 - conf[k]) / (c - 2))
            row[VIN_CLASSES.index(ch) - 1] = conf[k]
            frames[2 * k + 1] = np.concatenate([[0.0], row])
        probs.append((frames / frames.sum(axis=1, keepdims=True)).astype(np.float32))
        correct.append(not fails and bool(np.all(rng.random(17) < conf)))
    results = [decoder.decode(p) for p in probs]
    assert all(check_digit_fails(r.text) != check_digit_ok(r.text) for r in results)
    return probs, results, np.asarray(correct)


def test_vin_reads_failing_the_check_digit_get_their_own_factor():
    decoder = GreedyDecoder(classes=VIN_CLASSES)
    probs, results, correct = _vin_reads(40, 800)
    data = calibration_set(decoder, probs, [r.text if ok else "" for r, ok in
                                            zip(results, correct)])
    assert data.correct.tolist() == correct.tolist()
    failed = np.array([check_digit_fails(r.text) for r in results])
    assert data.check_failed.tolist() == failed.tolist() and failed.sum() > 150
    fit = fit_temperature(data)
    plain = fit_temperature(data, check_digit=False)
    record = fit.check_digit_failed
    assert record is not None and plain.check_digit_failed is None
    assert record["reads"] == int(failed.sum()) and record["right"] == 0
    # the others are calibrated as constructed: the product at temperature 1
    assert fit.aggregate == "product" and abs(fit.temperature - 1.0) < 0.1, fit.summary()
    # on validation the failing reads' mean confidence is the smoothed share of them right
    tuned = data.calibrated(fit.temperature, fit.aggregate, fit.check_digit_scale)
    assert tuned[failed].mean() == pytest.approx(1 / (failed.sum() + 2), rel=1e-4)
    assert fit.to_record()["check_digit_failed"] == record
    assert check_digit_scale_from_record(fit.to_record(), "x") == record["scale"]
    assert "failing the check digit" in fit.summary()

    # held out: one temperature for both populations is far worse calibrated
    probs2, results2, correct2 = _vin_reads(41, 1500)
    split = decode_calibrated(decoder, np.stack(probs2), fit.temperature,
                              aggregate=fit.aggregate, check_digit_scale=fit.check_digit_scale)
    single = decode_calibrated(decoder, np.stack(probs2), plain.temperature,
                               aggregate=plain.aggregate)
    truth = correct2.tolist()
    ece_split = expected_calibration_error([r.confidence for r in split], truth)
    ece_single = expected_calibration_error([r.confidence for r in single], truth)
    assert ece_split < 0.5 * ece_single and ece_split < 0.05, (ece_split, ece_single)
    for r, p, got in zip(results2, probs2, split):  # the factor touches failing reads only
        base = calibrate_result(r, p, fit.temperature, aggregate=fit.aggregate)
        want = base.confidence * fit.check_digit_scale if check_digit_fails(r.text) \
            else base.confidence
        assert got.text == r.text and got.confidence == pytest.approx(want, rel=1e-9)
        assert got.char_confidences == base.char_confidences


def test_check_digit_split_needs_enough_failing_reads():
    decoder = GreedyDecoder(classes=VIN_CLASSES)
    probs, results, correct = _vin_reads(42, 400, failing=0.0)
    # planted: MIN_CHECK_FAILED - 1 failing reads are too few to estimate how often one is right
    extra, extra_results, _ = _vin_reads(43, 200, failing=1.0)
    n = MIN_CHECK_FAILED - 1
    data = CalibrationSet.from_reads(probs + extra[:n], results + extra_results[:n],
                                     correct.tolist() + [False] * n, vin=True)
    assert int(data.check_failed.sum()) == n
    assert fit_temperature(data).check_digit_failed is None
    more = CalibrationSet.from_reads(probs + extra[:n + 1], results + extra_results[:n + 1],
                                     correct.tolist() + [False] * (n + 1), vin=True)
    assert fit_temperature(more).check_digit_failed["reads"] == n + 1
    # the reads left to fit the temperature on must be enough too
    few = CalibrationSet.from_reads(probs[:MIN_READS - 1] + extra[:n + 1],
                                    results[:MIN_READS - 1] + extra_results[:n + 1],
                                    [True] * (MIN_READS - 2) + [False] * (n + 2), vin=True)
    assert fit_temperature(few).check_digit_failed is None
    # failing reads that are right more often than their confidence says keep it: the factor
    # never raises a confidence
    right = CalibrationSet.from_reads(probs + extra[:50], results + extra_results[:50],
                                      correct.tolist() + [True] * 50, vin=True)
    record = fit_temperature(right).check_digit_failed
    assert record == {"reads": 50, "right": 50, "scale": 1.0}
    # the shards of a data-parallel validation keep the marks
    back = CalibrationSet.from_json(json.loads(json.dumps(more.to_json())))
    assert back.check_failed.tolist() == more.check_failed.tolist()


def test_recognizer_applies_the_check_digit_factor_from_inference_yml(tmp_path):
    from vinocr.charset import load_charset
    from vinocr.predict import Recognizer, read_model_info

    charset = load_charset("vin")
    probs, results, _ = _vin_reads(44, 12, failing=0.5)
    width = charset.num_classes  # the VIN charset's classes: blank, 33 characters, space
    padded = np.stack([np.concatenate([p, np.zeros((p.shape[0], width - p.shape[1]),
                                                   np.float32)], axis=1) for p in probs])

    class Fixed:
        name, fixed_width = "fixed", None

        def run(self, batch):
            return padded[:batch.shape[0]]

    crops = [np.full((48, 320, 3), 128, np.uint8)] * 12
    plain = Recognizer(Fixed(), charset, (3, 48, 320), temperature=1.3, aggregate="product")
    rec = Recognizer(Fixed(), charset, (3, 48, 320), temperature=1.3, aggregate="product",
                     check_digit_scale=0.05)
    got, base = rec.predict(crops), plain.predict(crops)
    fails = [check_digit_fails(r.text) for r in got]
    assert any(fails) and not all(fails)
    for g, b, f in zip(got, base, fails):
        assert g.text == b.text
        assert g.confidence == pytest.approx(b.confidence * (0.05 if f else 1.0), rel=1e-9)
    rec.use_raw_confidence()
    assert rec.check_digit_scale is None

    # stored in inference.yml and read back; a bad one names the file and the key
    yml = tmp_path / "inference.yml"
    doc = {"PostProcess": {"character_dict": charset.characters},
           "vinocr": {"charset": "vin", "calibration": {
               "temperature": 1.3, "aggregate": "product",
               "check_digit_failed": {"reads": 40, "right": 1, "scale": 0.05}}}}
    yml.write_text(yaml.safe_dump(doc))
    assert read_model_info(tmp_path).check_digit_scale == 0.05
    doc["vinocr"]["calibration"]["check_digit_failed"] = {"reads": 40}
    yml.write_text(yaml.safe_dump(doc))
    with pytest.raises(VinocrError) as info:
        read_model_info(tmp_path)
    message = str(info.value)
    assert str(yml) in message and "check_digit_failed" in message and "\n" not in message
    del doc["vinocr"]["calibration"]["check_digit_failed"]  # a record from before the factor
    yml.write_text(yaml.safe_dump(doc))
    assert read_model_info(tmp_path).check_digit_scale is None


def test_export_can_drop_the_check_digit_factor(calibrated_run, tmp_path):
    import shutil

    from vinocr.cli.export import main as export_main
    from vinocr.engine.checkpoint import load_checkpoint, save_checkpoint
    from vinocr.engine.model_loading import load_trained
    from vinocr.predict import read_model_info

    root, report = calibrated_run
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    ckpt = load_checkpoint(run / "best")
    record = {**report["calibration"],
              "check_digit_failed": {"reads": 30, "right": 0, "scale": 0.02}}
    save_checkpoint(run / "best", ckpt.model_state, {**ckpt.state, "calibration": record},
                    ckpt.optimizer_state, ckpt.ema_state)
    assert load_trained(run).check_digit_scale == 0.02
    for flag, want in (([], 0.02), (["--no-check-digit-evidence"], None)):
        out = tmp_path / f"exp{len(flag)}"
        assert export_main(["--checkpoint", str(run), "--out", str(out), "--no-onnx",
                            "--log-level", "WARNING", *flag]) == 0
        assert read_model_info(out).check_digit_scale == want
        kept = yaml.safe_load((out / "inference.yml").read_text())["vinocr"]["calibration"]
        assert kept["temperature"] == pytest.approx(record["temperature"])


@pytest.mark.parametrize("aggregate", ["mean", "product", "min", "geomean"])
def test_fast_path_aggregates_match_decoding(aggregate):
    decoder = GreedyDecoder(classes=CLASSES)
    probs = np.stack(_random_probs(np.random.default_rng(30), 40, frames=24))
    raw = decoder.decode(probs)
    data = CalibrationSet.from_reads(list(probs), raw, [True] * len(raw))
    for t in (0.7, 1.0, 2.0):
        want = decode_calibrated(decoder, probs, t, aggregate=aggregate)
        # float32 probabilities: the decoder's raw confidences (T=1) agree to float precision
        assert data.confidences(t, aggregate) == pytest.approx(
            [r.confidence for r in want], rel=1e-6)
        assert [r.text for r in want] == [r.text for r in raw]
        for w in want:
            assert w.confidence == pytest.approx(
                aggregate_char_confidences(w.char_confidences, aggregate), rel=1e-12)
    # raw: temperature 1 with the mean is PaddleOCR's confidence, untouched
    assert decode_calibrated(decoder, probs, 1.0, aggregate="mean") == raw


def test_record_without_aggregate_means_mean_and_bad_aggregate_is_named():
    old = {"temperature": 2.0, "fitted_on": "val.txt", "n": 100}  # written before aggregates
    assert aggregate_from_record(old, "x") == "mean" and temperature_from_record(old, "x") == 2.0
    assert aggregate_from_record(None, "x") == "mean"
    assert aggregate_from_record({**old, "aggregate": "product"}, "x") == "product"
    with pytest.raises(CalibrationError, match=r"f\.yml: vinocr\.calibration\.aggregate must be"):
        aggregate_from_record({**old, "aggregate": "median"}, "f.yml: vinocr.calibration")
    with pytest.raises(CalibrationError, match="aggregates"):
        fit_temperature(CalibrationSet.concat([]), aggregates=["median"])


def _decoders():
    vin_classes = [""] + list(VIN_ALPHABET)
    return [(GreedyDecoder(classes=CLASSES), CLASSES),
            (BeamSearchDecoder(classes=CLASSES, beam_size=4), CLASSES),
            (build_decoder({"method": "vin", "beam_size": 4}, classes=vin_classes), vin_classes),
            (build_decoder({"method": "plate", "patterns": ["LLNNN"], "beam_size": 4},
                           classes=CLASSES), CLASSES)]


@pytest.mark.parametrize("which", range(4))
def test_texts_identical_with_and_without_calibration(which):
    decoder, classes = _decoders()[which]
    rng = np.random.default_rng(10 + which)
    probs = np.stack(_random_probs(rng, 12, frames=40, classes=len(classes), scale=3.0))
    raw = decoder.decode(probs)
    for t, aggregate in ((0.3, "mean"), (4.0, "mean"), (0.3, "product"), (1.0, "min"),
                         (4.0, "geomean")):
        assert [r.text for r in decode_calibrated(decoder, probs, t, aggregate=aggregate)] \
            == [r.text for r in raw]
    for t in (0.3, 4.0):
        tuned = decode_calibrated(decoder, probs, t)
        assert [r.text for r in tuned] == [r.text for r in raw]
        assert [r.log_prob for r in tuned] == [r.log_prob for r in raw]
        assert [r.format for r in tuned] == [r.format for r in raw]
        changed = 0
        for r, q, p in zip(raw, tuned, probs):
            tp = temper(p, t)
            # each character: the tempered probability of its class over its own frames
            want = [float(tp[a:b, c].mean()) for c, a, b in r.spans]
            assert q.char_confidences == pytest.approx(want, rel=1e-9)
            assert q.confidence == pytest.approx(np.mean(want) if want else 0.0, rel=1e-9)
            assert r.char_confidences == pytest.approx(
                [float(p[a:b, c].mean()) for c, a, b in r.spans], rel=1e-6)
            changed += q.confidence != pytest.approx(r.confidence, abs=1e-6)
        assert changed > 0 and any(r.text for r in raw)
    # the fit's fast path computes the same confidences as decoding does
    data = CalibrationSet.from_reads(list(probs), raw, [True] * len(raw))
    assert data.confidences(2.0) == pytest.approx(
        [r.confidence for r in decode_calibrated(decoder, probs, 2.0)], rel=1e-9)
    assert decode_calibrated(decoder, probs, 1.0) == raw


def test_beam_search_on_tempered_probabilities_could_change_reads():
    """Why texts are decoded from raw probabilities: tempering first moves some beam reads
    (summing over alignments weighs frames differently at another temperature)."""
    decoder = BeamSearchDecoder(classes=CLASSES, beam_size=8)
    rng = np.random.default_rng(4)
    probs = _random_probs(rng, 60, frames=20, scale=1.5)
    moved = sum(decoder.decode(p).text != decoder.decode(temper(p, 0.2)).text for p in probs)
    assert moved > 0
    assert all(decode_calibrated(decoder, p, 0.2).text == decoder.decode(p).text for p in probs)


def test_bad_inputs_raise_one_line_errors():
    for bad in (0, -1.0, float("nan"), float("inf"), "2", True):
        with pytest.raises(CalibrationError, match="temperature must be a finite number > 0"):
            check_temperature(bad)
    with pytest.raises(CalibrationError, match="calibration set is empty"):
        fit_temperature(CalibrationSet.concat([]))
    decoder = GreedyDecoder(classes=CLASSES)
    probs = _random_probs(np.random.default_rng(5), 12)
    labels = [decoder.decode(p).text + "X" for p in probs]  # every read wrong
    with pytest.raises(CalibrationError, match="0 right and 12 wrong"):
        fit_temperature(calibration_set(decoder, probs, labels))
    with pytest.raises(CalibrationError, match="needs at least 10"):
        fit_temperature(calibration_set(decoder, probs[:3], labels[:3]))
    assert issubclass(CalibrationError, VinocrError)


# ------------------------------------------------------------------ trainer -> export -> predict
class _ReadsA(TrainerHooks):
    """Makes the tiny CRNN read 'A' on every crop with an image-dependent confidence (head bias
    towards 'A', the rest of the head random): with half the Eval labels 'A', half 'B', the
    reads are half right at confidences near 0.9, i.e. overconfident."""

    name = "reads_a"

    def prepare_model(self, model, run):
        import paddle

        a = run.charset.class_list().index("A")
        fc = model.head.fc
        rng = np.random.default_rng(0)
        fc.weight.set_value(paddle.to_tensor(
            rng.normal(0, 0.6, fc.weight.shape).astype("float32")))
        bias = np.full(fc.bias.shape, -3.0, dtype="float32")
        bias[a], bias[0] = 3.0, 0.0
        fc.bias.set_value(paddle.to_tensor(bias))
        return model


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    from vinocr.engine.trainer import Trainer

    root = tmp_path_factory.mktemp("calib")
    make_label_dir(root, ["A", "B"] * 6, name="train.txt", subdir="tr")
    make_label_dir(root, ["A", "B"] * 8, name="val.txt", subdir="va")
    cfg = tiny_config(root, root / "run", epochs=1, Optimizer__lr=1e-9, Scheduler__min_lr=0.0,
                      Train__augment={"preset": "none"},
                      Eval__dataset={"type": "label_file", "label_files": [str(root / "val.txt")]})
    report = Trainer(cfg, hooks=[_ReadsA()]).fit()
    return root, report


def test_trainer_fits_on_eval_and_stores_in_best_and_report(calibrated_run):
    from vinocr.engine.checkpoint import read_checkpoint_state
    from vinocr.engine.model_loading import load_trained

    root, report = calibrated_run
    record = report["calibration"]
    assert record is not None and record["n"] == 16 and record["accuracy"] == 0.5
    assert record["fitted_on"].startswith("Eval.dataset")
    assert record["temperature"] > 1.0 and record["ece"] < record["ece_raw"]
    assert json.loads((root / "run" / "report.json").read_text())["calibration"] == record
    assert read_checkpoint_state(root / "run" / "best")["calibration"] == record
    assert load_trained(root / "run").temperature == pytest.approx(record["temperature"])


def test_export_carries_temperature_and_recognizer_applies_it(calibrated_run, tmp_path):
    from vinocr.cli.export import main as export_main
    from vinocr.predict import Recognizer, read_model_info

    root, report = calibrated_run
    t = report["calibration"]["temperature"]
    out = tmp_path / "exp"
    assert export_main(["--checkpoint", str(root / "run"), "--out", str(out), "--no-onnx",
                        "--log-level", "WARNING"]) == 0
    doc = yaml.safe_load((out / "inference.yml").read_text())
    assert doc["vinocr"]["calibration"]["temperature"] == pytest.approx(t)
    assert set(doc) == {"Global", "PreProcess", "PostProcess", "vinocr"}  # stock paddleocr's
    assert read_model_info(out).temperature == pytest.approx(t)

    images = sorted((root / "va").glob("*.png"))
    rec = Recognizer.from_dir(out, backend="paddle")
    raw = Recognizer.from_dir(out, backend="paddle", temperature=1.0)
    assert rec.temperature == pytest.approx(t)
    got, base = rec.predict(images), raw.predict(images)
    assert [r.text for r in got] == [r.text for r in base] and got[0].text == "A"
    probs = raw.frame_probs(images)
    for g, b, p in zip(got, base, probs):
        want = calibrate_result(raw.decoder.decode(p), p, t)
        assert g.confidence == pytest.approx(want.confidence, rel=1e-6)
        assert g.confidence < b.confidence  # T > 1 brings overconfident reads down


def test_fit_temperature_cli_and_guards(calibrated_run, tmp_path, capsys):
    from vinocr.cli.export import main as export_main

    root, _ = calibrated_run
    out = tmp_path / "exp"
    # refit on the training crops (half right too) without retraining
    assert export_main(["--checkpoint", str(root / "run"), "--out", str(out), "--no-onnx",
                        "--fit-temperature", str(root / "train.txt"),
                        "--log-level", "WARNING"]) == 0
    assert "confidence calibration:" in capsys.readouterr().out
    record = yaml.safe_load((out / "inference.yml").read_text())["vinocr"]["calibration"]
    assert record["fitted_on"] == str(root / "train.txt") and record["n"] == 12
    # a test split is refused before anything is written
    make_label_dir(root, ["A", "B"] * 6, name="test.txt", subdir="te")
    code = export_main(["--checkpoint", str(root / "run"), "--out", str(tmp_path / "x"),
                        "--no-onnx", "--fit-temperature", str(root / "test.txt"),
                        "--log-level", "ERROR"])
    err = capsys.readouterr().err
    assert code == 2 and "--fit-temperature" in err and "test split" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_bad_temperature_in_inference_yml_names_file_and_key(calibrated_run, tmp_path):
    from vinocr.cli.export import main as export_main
    from vinocr.predict import Recognizer

    root, _ = calibrated_run
    out = tmp_path / "exp"
    assert export_main(["--checkpoint", str(root / "run"), "--out", str(out), "--no-onnx",
                        "--log-level", "WARNING"]) == 0
    yml = out / "inference.yml"
    doc = yaml.safe_load(yml.read_text())
    doc["vinocr"]["calibration"]["temperature"] = -0.5
    yml.write_text(yaml.safe_dump(doc))
    with pytest.raises(VinocrError) as info:
        Recognizer.from_dir(out, backend="paddle")
    message = str(info.value)
    assert str(yml) in message and "vinocr.calibration.temperature" in message
    assert "-0.5" in message and "\n" not in message


def test_eval_reports_calibrated_and_raw_confidence(calibrated_run, capsys):
    from vinocr.cli.eval import main as eval_main

    root, report = calibrated_run
    t = report["calibration"]["temperature"]
    rows = {}
    for flag in ([], ["--raw-confidence"]):
        assert eval_main(["--models", str(root / "run"), "--data", str(root / "val.txt"),
                          *flag]) == 0
        line = [ln for ln in capsys.readouterr().out.splitlines() if str(root) in ln][0]
        rows[bool(flag)] = [c.strip() for c in line.strip("|").split("|")]
    assert f"T={t:.3g}" in rows[False][0] and "raw confidence" in rows[True][0]
    assert rows[False][3] == rows[True][3] == "0.5000"  # seq_acc: texts unchanged
    ece = {k: float(v[9]) for k, v in rows.items()}  # columns: see vinocr.cli.eval.COLUMNS
    assert ece[False] < ece[True]
    assert math.isfinite(ece[False])


def test_serve_variants_keep_the_temperature():
    from vinocr.charset import Charset
    from vinocr.predict import Recognizer
    from vinocr.serve.models import LoadedModel as ServedModel

    charset = Charset(CLASSES[1:], name="plate_test")
    probs = np.stack(_random_probs(np.random.default_rng(6), 3, frames=24,
                                   classes=charset.num_classes))

    class Fixed:  # an engine that returns the same probabilities whatever the input
        name, fixed_width = "fixed", None

        def run(self, batch):
            return probs[:batch.shape[0]]

    base = Recognizer(Fixed(), charset, (3, 48, 96), temperature=2.5, aggregate="product",
                      check_digit_scale=0.05, two_row_max_aspect=1.5)
    beam = ServedModel("v1", base).view("beam", None)
    assert beam.temperature == 2.5 and beam.decode_config["method"] == "beam"
    assert beam.aggregate == "product" and beam.check_digit_scale == 0.05
    assert beam.two_row_max_aspect == 1.5
    crops = [np.full((48, 96, 3), 128, np.uint8)] * 3
    got = beam.predict(crops)
    want = decode_calibrated(beam.decoder, probs, 2.5, aggregate="product")
    assert [g.confidence for g in got] == pytest.approx([w.confidence for w in want])
    assert all(len(g.text) > 1 for g in got)
    for g in got:  # the read's confidence is the product; characters stay per character
        assert g.confidence == pytest.approx(float(np.prod(g.char_confidences)), rel=1e-9)
    with pytest.raises(CalibrationError, match="temperature must be"):
        base.temperature = 0.0
    with pytest.raises(CalibrationError, match="aggregate must be one of"):
        base.aggregate = "median"


def test_raw_confidence_is_the_mean_at_temperature_one_whatever_the_record():
    from vinocr.charset import Charset
    from vinocr.cli.model_io import make_reader
    from vinocr.engine.model_loading import LoadedModel as Loaded
    from vinocr.predict import Recognizer

    charset = Charset(CLASSES[1:], name="plate_test")
    probs = np.stack(_random_probs(np.random.default_rng(7), 4, frames=24,
                                   classes=charset.num_classes))

    class Fixed:
        name, fixed_width = "fixed", None

        def run(self, batch):
            return probs[:batch.shape[0]]

    rec = Recognizer(Fixed(), charset, (3, 48, 96), temperature=0.8, aggregate="product")
    loaded = Loaded("exp", None, charset, {}, recognizer=rec, temperature=0.8,
                    aggregate="product")
    crops = [np.full((48, 96, 3), 128, np.uint8)] * 4
    raw_reader, _ = make_reader(loaded, None, (3, 48, 96), raw_confidence=True)
    cal_reader, _ = make_reader(loaded, None, (3, 48, 96))
    raw, cal = raw_reader(crops), cal_reader(crops)
    plain = rec.decoder.decode(probs)
    assert [r.text for r in raw] == [r.text for r in cal] == [p.text for p in plain]
    assert [r.confidence for r in raw] == pytest.approx([p.confidence for p in plain])
    assert [r.confidence for r in raw] == pytest.approx(
        [float(np.mean(r.char_confidences)) for r in raw])
    assert [r.confidence for r in cal] == pytest.approx(
        [float(np.prod(r.char_confidences)) for r in cal])
    assert rec.aggregate == "product"  # the raw reader did not change the model's


def test_export_records_aggregate_and_an_old_record_without_it_loads_as_mean(calibrated_run,
                                                                            tmp_path):
    from vinocr.cli.export import main as export_main
    from vinocr.engine.model_loading import checkpoint_aggregate
    from vinocr.predict import Recognizer, read_model_info

    root, report = calibrated_run
    record = report["calibration"]
    # one-character reads: every aggregate gives the same confidences, the tie keeps the mean
    assert record["aggregate"] == "mean" and set(record["candidates"]) == {
        "mean", "product", "min", "geomean"}
    out = tmp_path / "exp"
    assert export_main(["--checkpoint", str(root / "run"), "--out", str(out), "--no-onnx",
                        "--log-level", "WARNING"]) == 0
    yml = out / "inference.yml"
    doc = yaml.safe_load(yml.read_text())
    assert doc["vinocr"]["calibration"]["aggregate"] == "mean"
    doc["vinocr"]["calibration"]["aggregate"] = "product"
    yml.write_text(yaml.safe_dump(doc))
    assert read_model_info(out).aggregate == "product"
    assert Recognizer.from_dir(out, backend="paddle").aggregate == "product"
    raw = Recognizer.from_dir(out, backend="paddle", temperature=1.0)
    assert (raw.temperature, raw.aggregate) == (1.0, "mean")
    # a record written before the aggregate existed
    del doc["vinocr"]["calibration"]["aggregate"]
    yml.write_text(yaml.safe_dump(doc))
    info = read_model_info(out)
    assert info.aggregate == "mean" and info.temperature == pytest.approx(record["temperature"])
    rec = Recognizer.from_dir(out, backend="paddle")
    assert rec.aggregate == "mean" and rec.temperature == pytest.approx(record["temperature"])
    old_state = {"calibration": {k: v for k, v in record.items() if k != "aggregate"}}
    assert checkpoint_aggregate(old_state, "ckpt") == "mean"
    assert checkpoint_aggregate({}, "ckpt") == "mean"
    doc["vinocr"]["calibration"]["aggregate"] = "median"
    yml.write_text(yaml.safe_dump(doc))
    with pytest.raises(VinocrError) as info_err:
        Recognizer.from_dir(out, backend="paddle")
    assert str(yml) in str(info_err.value) and "vinocr.calibration.aggregate" in str(info_err.value)


def _predict_csv(path, confidences, correct):
    rows = ["path,text,confidence,char_confidences,label,correct,skipped"]
    rows += [f"im{i}.png,X,{c:.4f},,X,{ok},"
             for i, (c, ok) in enumerate(zip(confidences, correct))]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_ece_floor_separates_sampling_noise_from_miscalibration(tmp_path, capsys):
    """tools/ece_floor.py: calibrated confidences measure within the floor it prints,
    overconfident ones far above it; the floor shrinks as the test grows."""
    from conftest import load_tool

    tool = load_tool("ece_floor")
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, 2000)
    calibrated = _predict_csv(tmp_path / "cal.csv", conf, rng.random(2000) < conf)
    over = _predict_csv(tmp_path / "over.csv", np.full(2000, 0.99), rng.random(2000) < 0.7)
    small, large = (np.mean(tool.sampling_floor(conf, n, 100, 0)) for n in (200, 2000))
    assert large < 0.7 * small
    assert tool.main([str(calibrated), "--trials", "100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    observed = float(lines[0].rsplit("ece ", 1)[1])
    p95 = float(lines[1].rsplit("percentile ", 1)[1])
    assert observed <= 1.5 * p95
    from vinocr.metrics import expected_calibration_error

    assert expected_calibration_error(*tool.read_predictions(over)) > 5 * p95
    with pytest.raises(SystemExit, match="no labelled rows"):
        tool.read_predictions(_predict_csv(tmp_path / "unl.csv", [0.9], ["None"]))
