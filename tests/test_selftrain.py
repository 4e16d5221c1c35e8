"""Pseudo-labelling and self-training: the verifiers, the threshold choice, the files written, the
command-line tools end to end, and resuming a self-training run per round."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
import yaml

from conftest import VALID_VINS, text_image, tiny_config, write_png
from vinocr.errors import VinocrError
from vinocr.selftrain.verify import (Read, ReadVerifier, choose_threshold, track_read,
                                     wilson_lower)
from vinocr.vin import check_digit_ok, region_of

NA_VIN = "1HGCM82633A004352"       # North American WMI: the check digit is mandatory
EU_VIN = "WBA3A5C51CF256651"       # European WMI: a check digit is not required by law


def vin_verifier(**kw) -> ReadVerifier:
    return ReadVerifier.from_decode({"method": "vin"}, vin=True, **kw)


def confident(text: str, p: float = 0.999) -> Read:
    return Read("x.png", text, [p] * len(text))


# ------------------------------------------------------------------------------- verifiers
def test_planted_confident_misread_is_rejected_by_the_check_digit():
    assert check_digit_ok(NA_VIN) and region_of(NA_VIN) == "north_america"
    misread = NA_VIN[:4] + "B" + NA_VIN[5:]      # 8 read as B, the classic confusion, at 0.999
    assert not check_digit_ok(misread)
    verifier = vin_verifier(threshold=0.9)
    assert verifier.check(confident(NA_VIN)).accepted
    verdict = verifier.check(confident(misread))
    assert not verdict.accepted and verdict.reason == "check_digit"
    assert verdict.score == pytest.approx(0.999)


def test_check_digit_rule_auto_always_never():
    wrong_eu = EU_VIN[:8] + ("0" if EU_VIN[8] != "0" else "1") + EU_VIN[9:]
    assert not check_digit_ok(wrong_eu)
    # auto: required only where the region makes it mandatory
    assert vin_verifier(check_digit="auto").check(confident(wrong_eu)).accepted
    assert vin_verifier(check_digit="always").check(confident(wrong_eu)).reason == "check_digit"
    wrong_na = NA_VIN[:8] + ("0" if NA_VIN[8] != "0" else "1") + NA_VIN[9:]
    assert vin_verifier(check_digit="never").check(confident(wrong_na)).accepted


def test_vin_structure_applies_to_greedy_reads():
    # A greedy decoder can emit 16 characters or a letter O; the VIN grammar still applies.
    verifier = ReadVerifier.from_decode({"method": "greedy"}, vin=True)
    assert verifier.check(confident(NA_VIN[:16])).reason == "grammar"
    assert verifier.check(confident(NA_VIN[:5] + "O" + NA_VIN[6:])).reason == "grammar"
    assert verifier.check(Read("x.png", "", [])).reason == "empty"


def test_plate_layout_violation_is_rejected():
    verifier = ReadVerifier.from_decode({"method": "plate", "formats": ["br"]}, vin=False)
    assert verifier.check(confident("ABC1234")).accepted       # Brazil, grey plates
    assert verifier.check(confident("ABC1D23")).accepted       # Mercosur
    assert verifier.check(confident("AB12345")).reason == "grammar"
    # Without a grammar (greedy, no formats) only the confidence decides.
    assert ReadVerifier.from_decode({"method": "greedy"}, vin=False).check(
        confident("AB12345")).accepted


def ctc_probs(reads, alternatives=None):
    """[N, 2 * 17, C] probabilities: per character a frame (0.9 on it, or split with an
    alternative as given) and a blank frame."""
    from vinocr.charset import load_charset

    cs = load_charset("vin")
    classes = cs.class_list()
    out = np.full((len(reads), 34, len(classes)), 1e-4, np.float32)
    for n, text in enumerate(reads):
        for k, ch in enumerate(text):
            out[n, 2 * k, classes.index(ch)] = 0.9
            out[n, 2 * k + 1, 0] = 0.9
        for k, (ch, p) in (alternatives or {}).get(n, {}).items():
            out[n, 2 * k, classes.index(text[k])] = 1.0 - p
            out[n, 2 * k, classes.index(ch)] = p
    return out / out.sum(-1, keepdims=True)


def test_read_the_grammar_had_to_change_is_rejected_as_forced():
    """The model's own best path is a check-digit failure; the constrained search turns it into
    a valid VIN. That read was made by the grammar, not the model: rejected as ``forced``."""
    from vinocr.decode import build_decoder
    from vinocr.selftrain.pseudolabel import reader_with_unforced_check

    # Crop 1: position 5 ('8') is 0.55 'B' / 0.45 '8': greedy reads B (check fails).
    probs = ctc_probs([NA_VIN, NA_VIN], {1: {4: ("B", 0.55)}})
    decoder = build_decoder({"method": "vin", "check_digit": "always"}, "vin")
    reader = reader_with_unforced_check(lambda images: probs[:len(images)], decoder, "vin")
    results = reader([np.zeros((32, 100, 3), np.uint8)] * 2)
    assert [r.text for r in results] == [NA_VIN, NA_VIN]       # the grammar repaired crop 1
    assert [r.unforced for r in results] == [True, False]
    verifier = vin_verifier(check_digit="always")
    reads = [Read(f"{k}.png", r.text, r.char_confidences, unforced=r.unforced)
             for k, r in enumerate(results)]
    assert verifier.check(reads[0]).accepted
    assert verifier.check(reads[1]).reason == "forced"
    assert vin_verifier(check_digit="always", allow_forced=True).check(reads[1]).accepted


def test_confidence_uses_the_weakest_character_by_default():
    read = Read("x.png", "ABC1234", [0.99] * 6 + [0.4])
    assert ReadVerifier(threshold=0.6).check(read).reason == "confidence"
    assert ReadVerifier(threshold=0.6, score="mean").check(read).accepted


def test_track_agreement_k_of_n():
    frames = [(f"lr-{i}.png", t, [0.9] * len(t)) for i, t in
              enumerate(["ABC1234", "ABC1234", "ABC1Z34", "ABC1234", "ABC1284"])]
    read = track_read("track_1", frames)
    assert read.text == "ABC1234" and read.agreement == 3
    assert ReadVerifier(min_agreement=3).check(read).accepted
    assert ReadVerifier(min_agreement=4).check(read).reason == "agreement"
    # A text read by no more frames than any other loses to the one read first.
    tie = track_read("t", [("a", "AAA1111", [0.9] * 7), ("b", "BBB2222", [0.9] * 7)])
    assert tie.text == "AAA1111" and tie.agreement == 1


def test_committee_labels_what_one_member_accepts_unless_another_reads_a_valid_other_text():
    from vinocr.selftrain.verify import committee_verdicts

    other_valid = VALID_VINS[1]
    assert check_digit_ok(other_valid) and other_valid != NA_VIN
    broken = NA_VIN[:4] + "B" + NA_VIN[5:]           # fails the check digit: no evidence
    first = [confident(NA_VIN), confident(NA_VIN, 0.5), confident(NA_VIN), confident(broken),
             confident(NA_VIN)]
    second = [confident(broken), confident(NA_VIN, 0.95), confident(other_valid, 0.2),
              confident(broken), confident(NA_VIN, 0.95)]
    # Each member is judged by its own threshold: 0.9 for the first, 0.6 for the second.
    verifiers = [vin_verifier(threshold=0.9, check_digit="always"),
                 vin_verifier(threshold=0.6, check_digit="always")]
    reads, verdicts, per_model = committee_verdicts([first, second], verifiers)
    assert [v.reason for v in verdicts] == ["accepted", "accepted", "disagreement",
                                            "check_digit", "accepted"]
    # Crop 1: only the second member accepts it; the committee labels it with that read.
    assert reads[1].text == NA_VIN and verdicts[1].score == pytest.approx(0.95)
    assert per_model[0][1].reason == "confidence" and per_model[1][1].accepted
    # Crop 2: a confident read is outvoted by a check-digit-valid other text at low confidence.
    assert per_model[0][2].accepted and per_model[1][2].reason == "confidence"
    with pytest.raises(ValueError, match="same items"):
        committee_verdicts([first, second[:2]], verifiers)
    # Two votes: crop 0 (the second member's read fails the check digit) and crop 1 (the first
    # member reads it right but below its threshold: still a vote) are judged differently.
    _, voted, _ = committee_verdicts([first, second], verifiers, min_votes=2)
    assert [v.reason for v in voted] == ["votes", "accepted", "disagreement", "check_digit",
                                         "accepted"]
    # Confident votes: crop 1's first member reads it right but below its threshold, which no
    # longer counts; crop 4, accepted by both, still passes.
    _, sure, _ = committee_verdicts([first, second], verifiers, min_votes=2, confident_votes=True)
    assert [v.reason for v in sure] == ["votes", "votes", "disagreement", "check_digit",
                                        "accepted"]
    from vinocr.errors import ConfigError

    with pytest.raises(ConfigError, match="min_votes"):
        committee_verdicts([first, second], verifiers, min_votes=3)


def test_bad_verifier_settings_are_config_errors():
    from vinocr.errors import ConfigError

    with pytest.raises(ConfigError, match="check_digit"):
        ReadVerifier(check_digit="sometimes")
    with pytest.raises(ConfigError, match="min_agreement"):
        ReadVerifier(min_agreement=0)
    with pytest.raises(ConfigError, match="threshold"):
        ReadVerifier(threshold=1.5)


# ------------------------------------------------------------------------- threshold choice
def brute_force_threshold(scores, correct, target):
    """Among thresholds at the observed scores, the lowest whose accepted set meets target."""
    best = None
    for t in sorted(set(scores)):
        acc = [c for s, c in zip(scores, correct) if s >= t]
        if acc and sum(acc) / len(acc) >= target:
            best = t if best is None else min(best, t)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_choose_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    scores = np.round(rng.random(n), 2).tolist()          # rounding makes ties
    correct = [bool(rng.random() < 0.3 + 0.7 * s) for s in scores]
    for target in (0.8, 0.9, 0.995):
        cal = choose_threshold(scores, correct, target)
        want = brute_force_threshold(scores, correct, target)
        if want is None:
            assert not cal.reached and cal.accepted == 0
            continue
        assert cal.reached and cal.threshold == pytest.approx(want)
        accepted = [c for s, c in zip(scores, correct) if s >= cal.threshold]
        assert cal.accepted == len(accepted)
        assert cal.precision == pytest.approx(sum(accepted) / len(accepted))
        assert cal.precision >= target
        assert cal.precision_lower_95 <= cal.precision


def test_wilson_lower_bound():
    assert wilson_lower(0, 0) == 0.0
    assert wilson_lower(100, 100) == pytest.approx(0.963, abs=1e-3)
    assert wilson_lower(50, 100) == pytest.approx(0.4038, abs=1e-3)


# ----------------------------------------------------------------------- writing the files
class FakeReader:
    """Reads each crop as the text planted for it (by image height), with a fixed confidence."""

    def __init__(self, reads):
        self.reads = reads   # height -> (text, confidence)

    def __call__(self, images):
        out = []
        for im in images:
            text, p = self.reads[im.shape[0]]
            out.append(type("R", (), {"text": text, "char_confidences": [p] * len(text)})())
        return out


def test_pseudo_labels_train_and_review_folder_awaits_a_reviewer(tmp_path):
    from vinocr.data import LabelFileDataset
    from vinocr.data.corrections import CorrectionsDataset
    from vinocr.errors import VinocrError
    from vinocr.selftrain.pseudolabel import image_folder_items, read_items, write_pseudo_labels

    misread = NA_VIN[:4] + "B" + NA_VIN[5:]
    planted = {32: (VALID_VINS[0], 0.99), 33: (misread, 0.999), 34: (VALID_VINS[2], 0.3),
               35: (EU_VIN, 0.95)}
    folder = tmp_path / "unlabelled"
    for k, h in enumerate(planted):
        write_png(folder / f"crop_{k}.png", text_image("X", height=h, seed=k))
    (folder / "notes.txt").write_text("not an image\n")
    items = image_folder_items(folder)
    assert len(items) == 4
    reads = read_items(FakeReader(planted), items, batch_size=3)
    truth = [VALID_VINS[0], NA_VIN, VALID_VINS[2], None]
    result = write_pseudo_labels(tmp_path / "pl", items, reads, vin_verifier(threshold=0.5),
                                 truth=truth, review=10)
    report = json.loads((tmp_path / "pl" / "report.json").read_text())
    assert report["outcomes"] == {"accepted": 2, "empty": 0, "grammar": 0, "check_digit": 1,
                                  "forced": 0, "agreement": 0, "confidence": 1,
                                  "disagreement": 0, "votes": 0}
    reads_file = [json.loads(line) for line in (tmp_path / "pl" / "reads.jsonl").open()]
    assert [r["outcome"] for r in reads_file] == ["accepted", "check_digit", "confidence",
                                                  "accepted"]
    assert report["audit"]["audited"] == 3 and report["audit"]["accepted"] == 1
    assert report["audit"]["precision"] == 1.0
    assert report["audit"]["correct_but_rejected"] == {"confidence": 1}

    # The label file trains as any other, with paths that resolve from where it lies.
    ds = LabelFileDataset(result.label_file, charset="vin")
    assert sorted(ds.label(i) for i in range(len(ds))) == sorted([VALID_VINS[0], EU_VIN])
    assert ds.load_image(0).shape[0] in planted

    # Review: lowest score first, and unreviewed sidecars never train as labels.
    review = tmp_path / "pl" / "review"
    sidecars = sorted(review.glob("*.json"))
    first = json.loads(sidecars[0].read_text())
    assert first["predicted"] == VALID_VINS[2] and first["rejected_by"] == "confidence"
    assert json.loads(sidecars[1].read_text())["rejected_by"] == "check_digit"
    assert len(CorrectionsDataset(review, charset="vin")) == 0
    first["text"] = VALID_VINS[2]
    sidecars[0].write_text(json.dumps(first))
    corrected = CorrectionsDataset(review, charset="vin")
    assert len(corrected) == 1 and corrected.label(0) == VALID_VINS[2]

    with pytest.raises(VinocrError, match="--overwrite"):
        write_pseudo_labels(tmp_path / "pl", items, reads, vin_verifier())


# ------------------------------------------------------------------------ command line, e2e
def run_tool(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(data, tmp_path_factory):
    """A tiny trained CRNN (plate charset, greedy decoding) and its config file."""
    from vinocr.config import json_safe_config
    from vinocr.engine.trainer import Trainer

    root = tmp_path_factory.mktemp("selftrain")
    cfg = tiny_config(data, root / "base", epochs=3)
    Trainer(cfg).fit()
    doc = json_safe_config(cfg)
    doc["Global"]["run_dir"] = str(root / "unused")
    cfg_file = root / "tiny.yml"
    cfg_file.write_text(yaml.safe_dump(doc))
    return root / "base", cfg_file


def test_pseudolabel_cli_end_to_end_and_errors(tiny_run, data, tmp_path):
    run, _ = tiny_run
    out = tmp_path / "pl"
    ok = run_tool("vinocr.cli.pseudolabel", "--model", str(run), "--unlabelled",
                  str(data / "tr"), "--threshold", "0", "--audit", str(data / "train.txt"),
                  "--out", str(out), "--review", "5")
    assert ok.returncode == 0, ok.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["items"] == 16 and report["audit"]["audited"] == 16
    assert sum(report["outcomes"].values()) == 16
    assert "accepted" in ok.stdout

    again = run_tool("vinocr.cli.pseudolabel", "--model", str(run), "--unlabelled",
                     str(data / "tr"), "--threshold", "0", "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    none = run_tool("vinocr.cli.pseudolabel", "--model", str(run), "--unlabelled",
                    str(data / "tr"), "--out", str(tmp_path / "x"))
    assert none.returncode == 2 and "--calibrate" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1 and "Traceback" not in none.stderr
    test_split = data / "test.txt"
    test_split.write_text((data / "val.txt").read_text())
    refused = run_tool("vinocr.cli.pseudolabel", "--model", str(run), "--unlabelled",
                       str(data / "tr"), "--calibrate", str(test_split),
                       "--out", str(tmp_path / "y"))
    assert refused.returncode == 2 and "test" in refused.stderr
    test_split.unlink()


def test_pseudolabel_cli_committee_of_teachers(tiny_run, data, tmp_path):
    run, cfg_file = tiny_run
    out = tmp_path / "pl"
    # The tiny model reads too little to calibrate a threshold: a fixed one.
    common = ["--unlabelled", str(data / "tr"), "--threshold", "0", "--audit",
              str(data / "train.txt")]
    alone = run_tool("vinocr.cli.pseudolabel", "--model", str(run), *common,
                     "--out", str(tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr[-2000:]
    both = run_tool("vinocr.cli.pseudolabel", "--model", str(run), "--teacher", str(run),
                    *common, "--out", str(out))
    assert both.returncode == 0, both.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    single = json.loads((tmp_path / "alone" / "report.json").read_text())
    # A committee of one model twice accepts what the model accepts alone, never more.
    assert report["outcomes"] == single["outcomes"]
    assert [m["accepted_alone"] for m in report["committee"]] == [single["accepted_items"]] * 2
    assert [m["audit"]["accepted"] for m in report["committee"]] == [
        single["audit"]["accepted"]] * 2
    reads = [json.loads(line) for line in (out / "reads.jsonl").open()]
    assert all(len(r["models"]) == 2 for r in reads)

    missing = run_tool("vinocr.cli.pseudolabel", "--model", str(run), "--teacher",
                       str(tmp_path / "nope.yml"), *common, "--out", str(tmp_path / "m"))
    assert missing.returncode == 2 and "--teacher" in missing.stderr
    assert "nope.yml" in missing.stderr and "Traceback" not in missing.stderr


def test_committee_calibration_adds_up_the_members_errors(tmp_path, monkeypatch):
    """Each member reaches the target precision on validation alone, but they err on different
    crops: the committee's own validation precision is what the report states and checks."""
    import argparse

    from vinocr.cli import pseudolabel as cli
    from vinocr.decode import build_decoder

    truth = [VALID_VINS[k % 3] for k in range(10)]
    wrong = VALID_VINS[4]                      # check-digit-valid, and not any crop's text
    broken = NA_VIN[:4] + "B" + NA_VIN[5:]     # fails the check digit
    # Member A misreads crop 8 (valid text) and crop 9 (broken); B the other way round.
    plan_a = {32 + k: (t, 0.99) for k, t in enumerate(truth[:8])}
    plan_b = dict(plan_a)
    plan_a.update({40: (wrong, 0.99), 41: (broken, 0.99)})
    plan_b.update({40: (broken, 0.99), 41: (wrong, 0.99)})
    lines = []
    for k, text in enumerate(truth):
        write_png(tmp_path / "val" / f"{k}.png", text_image("X", height=32 + k, seed=k))
        write_png(tmp_path / "pool" / f"{k}.png", text_image("X", height=32 + k, seed=k))
        lines.append(f"val/{k}.png\t{text}\n")
    (tmp_path / "val.txt").write_text("".join(lines))
    readers = {"a": FakeReader(plan_a), "b": FakeReader(plan_b)}

    def fake_open(spec, cfg, args, key=None):
        return cli.ModelReader(spec, readers[spec], {"method": "vin"}, lambda s: s, True, "vin")

    monkeypatch.setattr(cli, "open_reader", fake_open)

    def args(target, out, votes=1, confident=False):
        return argparse.Namespace(
            unlabelled=str(tmp_path / "pool"), model="a", teacher=["b"], out=str(tmp_path / out),
            tracks=False, audit=None, backend="auto", overwrite=False,
            calibrate=str(tmp_path / "val.txt"), target_precision=target, threshold=None,
            score="min", check_digit="always", min_agreement=1, decode=None,
            allow_forced=True, track_frames="all", review=0, batch_size=4, min_votes=votes,
            confident_votes=confident)

    # Alone, each accepts 9 crops with one error (0.889); together 10 with two (0.800).
    with pytest.raises(VinocrError, match="committee of 2 models reaches precision 0.8000"):
        cli.pseudolabel(args(0.85, "strict"), None)
    report = cli.pseudolabel(args(0.75, "loose"), None)
    assert [m["calibration"]["precision"] for m in report["committee"]] == [
        pytest.approx(8 / 9)] * 2
    assert report["committee_calibration"]["precision"] == pytest.approx(0.8)
    assert report["committee_calibration"]["accepted"] == 10
    assert report["outcomes"]["accepted"] == 10
    # Two votes: each member's lone misread is rejected, and the strict target is reached.
    report = cli.pseudolabel(args(0.85, "votes", votes=2), None)
    assert report["committee_calibration"]["precision"] == 1.0
    assert report["outcomes"]["accepted"] == 8 and report["outcomes"]["votes"] == 2
    assert "committee of 2" in cli.summary_line(report) and report["confident_votes"] is False
    # Every read here is confident, so confident votes accept the same crops.
    report = cli.pseudolabel(args(0.85, "sure", votes=2, confident=True), None)
    assert report["confident_votes"] is True and report["outcomes"]["accepted"] == 8
    with pytest.raises(VinocrError, match="--min-votes 3: the committee has 2"):
        cli.pseudolabel(args(0.85, "three", votes=3), None)


def test_selftrain_rounds_resume_and_export(tiny_run, data, tmp_path, monkeypatch):
    """Round 2's fine-tune dies after its checkpoint; --resume keeps round 1 (its pseudo-labels
    are not redone), continues round 2 with vinocr-finetune --resume and exports the last
    round. No -o is given, so the fine-tunes run with the config file alone."""
    from vinocr.cli import selftrain

    base, cfg_file = tiny_run
    out = tmp_path / "st"
    argv = ["-c", str(cfg_file), "--unlabelled", str(data / "tr"),
            "--base", str(base), "--rounds", "2", "--out", str(out), "--threshold", "0",
            "--audit", str(data / "train.txt"), "--nproc", "1", "--teacher", str(base)]
    real_finetune = selftrain.finetune
    calls: List[Path] = []

    def failing_second(args, run, overrides):
        calls.append(run)
        report = real_finetune(args, run, overrides)
        if len(calls) == 2:   # the process dies before selftrain.json records the round
            raise selftrain.VinocrError("simulated crash in round 2's fine-tune")
        return report

    monkeypatch.setattr(selftrain, "finetune", failing_second)
    assert selftrain.main(argv) == 2
    state = json.loads((out / "selftrain.json").read_text())
    assert [r["status"] for r in state["rounds"]] == ["done", "done", "pseudo_done"]
    assert len(calls) == 2
    round1 = out / "round_1" / "pseudo" / "report.json"
    stamp = round1.stat().st_mtime_ns
    # The round's training data is the config's labelled source plus the accepted pseudo-labels.
    saved = yaml.safe_load((out / "round_1" / "run" / "config.yml").read_text())
    files = [s["label_files"][0] for s in saved["Train"]["dataset"]["sources"]]
    assert files == [str(data / "train.txt"),
                     str((out / "round_1" / "pseudo" / "labels.txt").resolve())]

    refused = selftrain.main(argv)   # neither --resume nor --overwrite: refused, nothing lost
    assert refused == 2 and round1.stat().st_mtime_ns == stamp

    assert (out / "round_2" / "run" / "latest").exists()
    resumed: List[List[str]] = []
    real_run = subprocess.run

    def record(cmd, *a, **kw):
        resumed.append(list(cmd))
        return real_run(cmd, *a, **kw)

    monkeypatch.setattr(selftrain, "finetune", real_finetune)
    monkeypatch.setattr(selftrain.subprocess, "run", record)
    assert selftrain.main(argv + ["--resume"]) == 0
    cmd = resumed[0]
    assert len(resumed) == 1 and cmd[cmd.index("--resume") + 1] == str(out / "round_2" / "run")
    assert not any(a.startswith("Global.run_dir=") for a in cmd)   # the run keeps its own
    assert any(a.startswith("Train.dataset=") for a in cmd)
    state = json.loads((out / "selftrain.json").read_text())
    assert [r["status"] for r in state["rounds"]] == ["done"] * 3
    assert round1.stat().st_mtime_ns == stamp                    # round 1 was not redone
    assert state["rounds"][1]["audit"]["audited"] == 16          # per-round report kept
    # Each round's committee: the round's model beside the same teacher.
    assert state["rounds"][2]["teachers"] == [str(base)]
    committee = json.loads((out / "round_2" / "pseudo" / "report.json").read_text())["committee"]
    assert [m["model"].split("/")[-2] for m in committee] == ["run", "base"]
    assert (out / "round_2" / "pseudo" / "report.json").is_file()
    assert state["export"] == str(out / "round_2" / "run")
    assert (out / "export" / "inference.json").is_file()


def test_pseudolabel_tracks_cli_audits_a_blanked_copy(tiny_run, tmp_path):
    """Tracks: frames read separately and written as the model saw them; the audit matches a
    copy whose plate texts were blanked to the labelled original by track folder."""
    from conftest import write_synthetic_tracks
    from vinocr.data import LabelFileDataset

    run, _ = tiny_run
    labelled = write_synthetic_tracks(tmp_path / "tracks", {
        "Scenario-A/Brazilian/track_00001": ("ABC1234", "Brazilian"),
        "Scenario-A/Mercosur/track_00002": ("BRA2E19", "Mercosur")}, seed=3)
    blank = tmp_path / "blank"
    import shutil

    shutil.copytree(labelled, blank)
    for ann in blank.rglob("annotations.json"):
        doc = json.loads(ann.read_text())
        doc["plate_text"] = ""
        ann.write_text(json.dumps(doc))
    out = tmp_path / "pl"
    res = run_tool("vinocr.cli.pseudolabel", "--model", str(run), "--tracks", "--unlabelled",
                   str(blank), "--audit", str(labelled), "--threshold", "0",
                   "--min-agreement", "1", "--out", str(out), "--review", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["tracks"] == 2 and report["audit"]["audited"] == 2
    accepted = report["outcomes"]["accepted"]
    assert accepted + report["outcomes"]["empty"] == 2   # no other check applies here
    ds = LabelFileDataset(out / "labels.txt", charset="plate")
    # By default each accepted track contributes all its 5 frames, written as PNGs under frames/.
    assert report["track_frames"] == "all"
    assert len(ds) == report["label_lines"] == 5 * accepted
    assert len(list((out / "frames").rglob("*.png"))) == report["label_lines"]
    strict = run_tool("vinocr.cli.pseudolabel", "--model", str(run), "--tracks", "--unlabelled",
                      str(blank), "--threshold", "0", "--min-agreement", "6", "--out",
                      str(tmp_path / "pl6"))
    assert strict.returncode == 0, strict.stderr[-2000:]
    outcomes = json.loads((tmp_path / "pl6" / "report.json").read_text())["outcomes"]
    assert outcomes["accepted"] == 0 and outcomes["agreement"] + outcomes["empty"] == 2


def test_resumed_finetune_without_overrides_has_no_empty_o(tmp_path, monkeypatch):
    """Round 0 resumed with no -o: the command must not end in a bare ``-o`` (an argparse
    error), and a failed fine-tune is a one-line user error naming the run."""
    from vinocr.cli import selftrain

    run = tmp_path / "round_0" / "run"
    (run / "latest").mkdir(parents=True)
    seen = []

    def fake_run(cmd, *a, **kw):
        seen.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 3)

    monkeypatch.setattr(selftrain.subprocess, "run", fake_run)
    args = selftrain.build_parser().parse_args(
        ["-c", "cfg.yml", "--unlabelled", "u", "--out", str(tmp_path)])
    with pytest.raises(selftrain.VinocrError, match="round_0/run.*exit 3.*--resume"):
        selftrain.finetune(args, run, [])
    assert seen[0][-3:] == ["cfg.yml", "--resume", str(run)]


@pytest.mark.parametrize("track_frames, expected", [("agreeing", 3), ("all", 5)])
def test_accepted_track_labels_its_frames_with_the_agreed_text(tmp_path, track_frames, expected):
    """A track read ABC1234 on 3 of 5 frames is accepted; ``all`` also writes the 2 misread
    frames, labelled ABC1234 (the plate they show), ``agreeing`` only the 3."""
    from vinocr.data import LabelFileDataset
    from vinocr.selftrain.pseudolabel import Item, write_pseudo_labels

    rng = np.random.default_rng(0)
    paths = [f"track_1/lr-{k:03d}.png" for k in range(1, 6)]
    images = [rng.integers(0, 255, (16, 48, 3), dtype=np.uint8) for _ in paths]
    texts = ["ABC1234", "ABC1284", "ABC1234", "A8C1234", "ABC1234"]
    read = track_read("track_1", [(p, t, [0.9] * 7) for p, t in zip(paths, texts)])
    result = write_pseudo_labels(tmp_path / "pl", [Item("track_1", paths, images)], [read],
                                 ReadVerifier(min_agreement=3), track_frames=track_frames)
    ds = LabelFileDataset(tmp_path / "pl" / "labels.txt", charset="plate")
    assert len(ds) == expected == result.report["label_lines"]
    assert {ds.label(i) for i in range(len(ds))} == {"ABC1234"}
    assert result.report["track_frames"] == track_frames
    # The written frames are the pixels the model read.
    written = sorted((tmp_path / "pl" / "frames").rglob("*.png"))
    assert [p.stem for p in written] == [Path(p).stem for p, t in zip(paths, texts)
                                         if track_frames == "all" or t == "ABC1234"]
    from vinocr.data.base import read_image

    np.testing.assert_array_equal(read_image(written[0]), images[0])


def test_unknown_track_frames_is_refused(tmp_path):
    from vinocr.selftrain.pseudolabel import write_pseudo_labels

    with pytest.raises(VinocrError, match="track_frames"):
        write_pseudo_labels(tmp_path / "pl", [], [], ReadVerifier(), track_frames="some")


def test_pseudo_labels_join_the_configs_sources_keeping_epoch_size(tmp_path):
    """The round's Train.dataset is the config's sources plus the pseudo-label file, with the
    config's epoch_size still in force (dropping it would change every round's budget)."""
    from vinocr.cli.selftrain import mixed_dataset

    labels = tmp_path / "labels.txt"
    cfg = {"Train": {"dataset": {"sources": [{"type": "lrlpr", "path": "A", "ratio": 0.5}],
                                 "epoch_size": 3200}}}
    dataset = mixed_dataset(cfg, labels, 0.5)
    assert dataset["epoch_size"] == 3200
    assert dataset["sources"] == [{"type": "lrlpr", "path": "A", "ratio": 0.5},
                                  {"type": "label_file", "label_files": [str(labels.resolve())],
                                   "ratio": 0.5}]
    with pytest.raises(VinocrError, match="--pseudo-ratio"):
        mixed_dataset(cfg, labels, None)
    strong = {"preset": "vin", "p": 1.0, "num_ops": 3}
    assert mixed_dataset(cfg, labels, 0.5, strong)["sources"][1]["augment"] == strong
    single = mixed_dataset({"Train": {"dataset": {"type": "label_file", "label_files": ["t"]}}},
                           labels, None)
    assert single == {"sources": [{"type": "label_file", "label_files": ["t"]},
                                  {"type": "label_file", "label_files": [str(labels.resolve())]}]}


def test_pseudo_augment_is_checked_before_any_round(tmp_path):
    """A typo in --pseudo-augment is a one-line usage error, not a failure rounds later."""
    res = run_tool("vinocr.cli.selftrain", "-c", "configs/vin/ppocrv4_mobile.yml",
                   "--unlabelled", str(tmp_path), "--calibrate", str(tmp_path), "--out",
                   str(tmp_path / "st"), "--pseudo-augment", "{preset: vin, strength: 3}")
    assert res.returncode == 2
    assert "--pseudo-augment.strength: unknown key" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "st").exists()


def test_eval_tracks_cli_scores_tracks_like_predict(tiny_run, tmp_path):
    """vinocr-eval --tracks reads each track's frames and fuses them: one sample per track, with
    the fused texts vinocr-predict --tracks gives for the same export; unlabelled tracks are a
    one-line error."""
    import csv

    from conftest import write_synthetic_tracks

    run, _ = tiny_run
    tracks = write_synthetic_tracks(tmp_path / "tracks", {
        "Scenario-A/Brazilian/track_00001": ("ABC1234", "Brazilian"),
        "Scenario-A/Mercosur/track_00002": ("BRA2E19", "Mercosur"),
        "Scenario-A/Brazilian/track_00003": ("HGD0431", "Brazilian")}, seed=4)
    exported = tmp_path / "exp"
    res = run_tool("vinocr.cli.export", "--checkpoint", str(run), "--out", str(exported))
    assert res.returncode == 0, res.stderr[-2000:]
    res = run_tool("vinocr.cli.eval", "--tracks", "--models", str(exported), str(run), "--data",
                   str(tracks), "--out", str(tmp_path / "ev"))
    assert res.returncode == 0, res.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "ev" / "table.csv").open()))
    assert [r["n"] for r in rows] == ["3", "3"]
    # the run and its export read every track the same way
    assert rows[1]["vs_first"] == "+0/-0" and float(rows[1]["same_as_first"]) == 1.0
    assert 0.0 <= float(rows[0]["frame_acc"]) <= 1.0

    pred = run_tool("vinocr.cli.predict", "--model", str(exported), "--tracks", str(tracks),
                    "--out", str(tmp_path / "pred.jsonl"), "--submission",
                    str(tmp_path / "submission.txt"), "--quiet")
    assert pred.returncode == 0, pred.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert float(rows[0]["seq_acc"]) == pytest.approx(np.mean([r["correct"] for r in records]))
    # the errors file lists the wrong tracks with eval's fused text: predict's text for them
    errors = list(csv.DictReader((tmp_path / "ev" / "errors_m0_d0.csv").open()))
    by_label = {r["label"]: r["text"] for r in records}
    assert errors and all(by_label[e["label"]] == e["prediction"] for e in errors)

    ann = next(tracks.rglob("annotations.json"))
    doc = json.loads(ann.read_text())
    doc["plate_text"] = ""
    ann.write_text(json.dumps(doc))
    bad = run_tool("vinocr.cli.eval", "--tracks", "--models", str(run), "--data", str(tracks))
    assert bad.returncode == 2 and "has no plate_text" in bad.stderr
    assert "Traceback" not in bad.stderr
