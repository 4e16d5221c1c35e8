"""Damaged files and failing disks: corrupted checkpoint tensors, a full disk while saving, and
truncated or modified exported models. Each failure must be a one-line error naming the file."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import yaml

from conftest import TINY_CRNN, text_image, write_png
from vinocr.engine import checkpoint as ckpt_mod
from vinocr.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

IMAGE_SHAPE = [3, 48, 96]


def tensors(seed: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"backbone.conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "head.fc.bias": rng.standard_normal(7).astype(np.float32),
            "counter": np.array(seed, dtype=np.int64)}


def assert_tensors_equal(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def flip_tensor_bytes(path: Path) -> None:
    """XOR 16 bytes in the middle of a safetensors file's tensor data (after the JSON header), so
    the file keeps its size and its header: only a content hash can tell."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    mid = start + (len(data) - start) // 2
    for i in range(mid, min(mid + 16, len(data))):
        data[i] ^= 0xFF
    size = path.stat().st_size
    path.write_bytes(bytes(data))
    assert path.stat().st_size == size


def tmp_dirs(path: Path) -> List[Path]:
    return sorted(path.parent.glob(f".{path.name}.tmp-*"))


# ------------------------------------------------------------------ 1. content hash in state.json
def test_manifest_records_sha256_of_each_file(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ck", tensors(1), {"epoch": 1},
                           optimizer_state=tensors(2), ema_state=tensors(3))
    files = json.loads((path / "state.json").read_text())["files"]
    assert set(files) == {"model.safetensors", "optimizer.safetensors", "ema.safetensors"}
    for name, record in files.items():
        data = (path / name).read_bytes()
        assert record["bytes"] == len(data)
        assert record["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors",
                                  "ema.safetensors"])
def test_corrupted_tensor_bytes_are_rejected(tmp_path: Path, name: str) -> None:
    path = save_checkpoint(tmp_path / "ck", tensors(1), {"epoch": 1},
                           optimizer_state=tensors(2), ema_state=tensors(3))
    flip_tensor_bytes(path / name)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (f"{path}: {name} content does not match its recorded sha256 "
                               "(corrupted or modified); restore it or use another checkpoint")


def test_checkpoint_without_hashes_still_loads(tmp_path: Path) -> None:
    """Checkpoints written before hashes were recorded load as before (sizes still checked)."""
    path = save_checkpoint(tmp_path / "ck", tensors(1), {"epoch": 4}, optimizer_state=tensors(2))
    doc = json.loads((path / "state.json").read_text())
    for record in doc["files"].values():
        record.pop("sha256", None)
    (path / "state.json").write_text(json.dumps(doc))
    loaded = load_checkpoint(path)
    assert_tensors_equal(loaded.model_state, tensors(1))
    assert_tensors_equal(loaded.optimizer_state, tensors(2))
    assert loaded.state["epoch"] == 4


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> Dict[str, Path]:
    """A tiny CRNN saved as a checkpoint the way vinocr-finetune does (config + charset in the
    state), and its vinocr-export output."""
    import paddle

    from vinocr.charset import load_charset
    from vinocr.cli.export import main as export_main
    from vinocr.models.factory import model_from_config

    root = tmp_path_factory.mktemp("faults")
    cfg = {"Global": {"charset": "plate", "image_shape": IMAGE_SHAPE},
           "Architecture": {"name": "crnn", "pretrained": None, "params": dict(TINY_CRNN)},
           "Decode": {"method": "greedy"}}
    charset = load_charset("plate")
    paddle.seed(0)
    model, _ = model_from_config(cfg["Architecture"], charset)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    save_checkpoint(root / "ck", state, {"config": cfg, "charset": list(charset.characters)})
    assert export_main(["--checkpoint", str(root / "ck"), "--out", str(root / "exp"),
                        "--log-level", "WARNING"]) == 0
    write_png(root / "crop.png", text_image("AB123"))
    return {"root": root, "ck": root / "ck", "exp": root / "exp", "image": root / "crop.png"}


def test_export_of_corrupted_checkpoint_exits_2(model_dirs, tmp_path: Path, capsys) -> None:
    from vinocr.cli.export import main as export_main

    ck = tmp_path / "ck"
    shutil.copytree(model_dirs["ck"], ck)
    flip_tensor_bytes(ck / "model.safetensors")
    capsys.readouterr()
    out = tmp_path / "exp"
    assert export_main(["--checkpoint", str(ck), "--out", str(out),
                        "--log-level", "WARNING"]) == 2
    err = capsys.readouterr().err
    assert err == (f"vinocr-export: error: {ck}: model.safetensors content does not match its "
                   "recorded sha256 (corrupted or modified); restore it or use another "
                   "checkpoint\n")
    assert not (out / "inference.pdiparams").exists()


# ----------------------------------------------------------------- 2. disk full while saving
def _enospc(path: Path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _assert_save_failed_cleanly(path: Path, exc: CheckpointError) -> None:
    message = str(exc)
    assert "\n" not in message and str(path) in message
    assert re.search("no space left on device", message, re.IGNORECASE), message
    assert tmp_dirs(path) == []
    # The previous checkpoint is still complete, with its old content.
    loaded = load_checkpoint(path)
    assert loaded.state["epoch"] == 1
    assert_tensors_equal(loaded.model_state, tensors(1))
    assert_tensors_equal(loaded.optimizer_state, tensors(2))


@pytest.mark.parametrize("failing", ["model.safetensors", "optimizer.safetensors",
                                     "state.json"])
def test_disk_full_partway_keeps_previous_checkpoint(tmp_path: Path, monkeypatch,
                                                     failing: str) -> None:
    path = tmp_path / "run" / "latest"
    save_checkpoint(path, tensors(1), {"epoch": 1}, optimizer_state=tensors(2))
    real_write = ckpt_mod.atomic_dir.write_new_file

    def disk_full(target: Path, data: bytes) -> None:
        if Path(target).name != failing:
            return real_write(target, data)
        Path(target).write_bytes(data[:len(data) // 2])  # the disk fills up halfway
        raise _enospc(Path(target))

    monkeypatch.setattr(ckpt_mod.atomic_dir, "write_new_file", disk_full)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, tensors(5), {"epoch": 5}, optimizer_state=tensors(6))
    monkeypatch.undo()
    _assert_save_failed_cleanly(path, info.value)
    assert failing in str(info.value)


def test_safetensors_error_on_full_disk_is_a_checkpoint_error(tmp_path: Path,
                                                              monkeypatch) -> None:
    """The tensor writer failing the way safetensors' Rust writer reports ENOSPC (a
    SafetensorError, not an OSError) must not escape as a traceback."""
    from safetensors import SafetensorError

    path = tmp_path / "latest"
    save_checkpoint(path, tensors(1), {"epoch": 1}, optimizer_state=tensors(2))

    def disk_full(tensors_, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: '
                              'StorageFull, message: "No space left on device" })')

    monkeypatch.setattr(ckpt_mod, "save_file", disk_full)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, tensors(5), {"epoch": 5}, optimizer_state=tensors(6))
    monkeypatch.undo()
    _assert_save_failed_cleanly(path, info.value)


# ------------------------------------------------------- 3. truncated / modified exported model
def _predict(model_dir: Path, image: Path, capsys, backend: str = "paddle") -> tuple:
    """vinocr-predict on ``image``; the Paddle engine by default, because these tests damage
    the Paddle files (the default engine runs inference.onnx and never reads them)."""
    from vinocr.cli.predict import main

    capsys.readouterr()
    code = main(["--model", str(model_dir), str(image), "--backend", backend])
    return code, capsys.readouterr().err


def _copy_export(model_dirs, tmp_path: Path, keep_record: bool) -> Path:
    d = tmp_path / "exp"
    shutil.copytree(model_dirs["exp"], d)
    if not keep_record:  # as exported by an older vinocr (or not by vinocr at all)
        doc = yaml.safe_load((d / "inference.yml").read_text(encoding="utf-8"))
        doc.get("vinocr", {}).pop("files", None)
        (d / "inference.yml").write_text(yaml.safe_dump(doc, allow_unicode=True,
                                                        sort_keys=False), encoding="utf-8")
    return d


def test_export_never_mixes_with_an_earlier_export(model_dirs, tmp_path: Path, capsys) -> None:
    from vinocr.cli.export import main as export_main

    out = tmp_path / "exp"
    shutil.copytree(model_dirs["exp"], out)
    (out / "inference_int8.onnx").write_bytes(b"an earlier model's int8 file")
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    before = (out / "inference.pdiparams").read_bytes()
    args = ["--checkpoint", str(model_dirs["ck"]), "--out", str(out), "--no-onnx",
            "--log-level", "WARNING"]
    capsys.readouterr()
    assert export_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vinocr-export: error: --out {out}: already holds an export (")
    assert err.endswith("pass --overwrite to replace it\n") and err.count("\n") == 1
    assert (out / "inference.pdiparams").read_bytes() == before  # nothing touched
    assert export_main(args + ["--overwrite"]) == 0
    # the old ONNX files are gone (the default engine would have run them), other files stay
    assert not (out / "inference.onnx").exists() and not (out / "inference_int8.onnx").exists()
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (out / "inference.pdiparams").is_file()


def test_export_records_file_hashes(model_dirs) -> None:
    d = model_dirs["exp"]
    doc = yaml.safe_load((d / "inference.yml").read_text(encoding="utf-8"))
    files = doc["vinocr"]["files"]
    assert set(files) == {"inference.json", "inference.pdiparams", "inference.onnx"}
    for name, record in files.items():
        data = (d / name).read_bytes()
        assert record == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("keep_record", [True, False], ids=["recorded", "unrecorded"])
@pytest.mark.parametrize("cut", ["1", "half"])
def test_predict_truncated_pdiparams_one_line_error(model_dirs, tmp_path: Path, capsys,
                                                    keep_record: bool, cut: str) -> None:
    d = _copy_export(model_dirs, tmp_path, keep_record)
    params = d / "inference.pdiparams"
    data = params.read_bytes()
    # Paddle itself loads a file one byte short without complaint (the last tensor just ends
    # early); half a file makes it raise deep inside create_predictor.
    params.write_bytes(data[:len(data) - 1] if cut == "1" else data[:len(data) // 2])
    code, err = _predict(d, model_dirs["image"], capsys)
    assert code == 2, err
    assert err.startswith(f"vinocr-predict: error: {params}: truncated or corrupt (")
    assert err.endswith("; re-export the model\n") and err.count("\n") == 1, err


def test_predict_pdiparams_cut_at_a_tensor_boundary(model_dirs, tmp_path: Path, capsys) -> None:
    """Without a record, a file cut exactly between two tensors passes the layout walk; Paddle's
    own loader then fails, and that failure must be a one-line error too."""
    from vinocr.export.manifest import pdiparams_problem

    d = _copy_export(model_dirs, tmp_path, keep_record=False)
    params = d / "inference.pdiparams"
    data = params.read_bytes()
    for end in range(len(data) - 1, 0, -1):  # the start of the last tensor
        params.write_bytes(data[:end])
        if pdiparams_problem(params) is None:
            break
    assert 0 < end < len(data) - 1
    code, err = _predict(d, model_dirs["image"], capsys)
    assert code == 2, err
    assert err.startswith(f"vinocr-predict: error: {params}: truncated or corrupt (")
    assert err.endswith("; re-export the model\n") and err.count("\n") == 1, err


@pytest.mark.parametrize("name", ["inference.pdiparams", "inference.json"])
def test_predict_modified_export_file_is_rejected(model_dirs, tmp_path: Path, capsys,
                                                  name: str) -> None:
    d = _copy_export(model_dirs, tmp_path, keep_record=True)
    target = d / name
    data = bytearray(target.read_bytes())
    if name == "inference.pdiparams":
        data[-8:] = bytes(b ^ 0xFF for b in data[-8:])  # last tensor's values, same size
    else:
        data[-2:] = b"  "  # still the same size
    target.write_bytes(bytes(data))
    code, err = _predict(d, model_dirs["image"], capsys)
    assert code == 2, err
    assert err == (f"vinocr-predict: error: {target}: truncated or corrupt (content does not "
                   "match the sha256 recorded in inference.yml); re-export the model\n")


def test_predict_intact_export_still_works(model_dirs, tmp_path: Path, capsys) -> None:
    for keep_record in (True, False):
        d = _copy_export(model_dirs, tmp_path / str(keep_record), keep_record)
        for backend in ("paddle", "auto"):
            code, err = _predict(d, model_dirs["image"], capsys, backend)
            assert code == 0, err


def test_onnx_export_is_recorded_and_checked(model_dirs, tmp_path: Path, capsys) -> None:
    pytest.importorskip("paddle2onnx")
    pytest.importorskip("onnxruntime")
    from vinocr.cli.predict import main
    from vinocr.export.onnx import export_onnx

    d = _copy_export(model_dirs, tmp_path, keep_record=True)
    onnx = export_onnx(d)
    files = yaml.safe_load((d / "inference.yml").read_text(encoding="utf-8"))["vinocr"]["files"]
    assert files["inference.onnx"]["sha256"] == hashlib.sha256(onnx.read_bytes()).hexdigest()
    assert set(files) == {"inference.json", "inference.pdiparams", "inference.onnx"}
    argv = ["--model", str(d), str(model_dirs["image"]), "--backend", "onnxruntime"]
    assert main(argv) == 0
    onnx.write_bytes(onnx.read_bytes()[:-10])
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"vinocr-predict: error: {onnx}: truncated or corrupt "
                                       f"({onnx.stat().st_size} bytes, inference.yml records "
                                       f"{files['inference.onnx']['bytes']}); re-export the "
                                       "model\n")


def test_manifest_module_does_not_import_paddle() -> None:
    """The onnxruntime backend checks hashes through it, and must not pull in Paddle for that."""
    import subprocess
    import sys

    code = ("import sys\nimport vinocr.export.manifest\n"
            "assert 'paddle' not in sys.modules, 'vinocr.export.manifest imported paddle'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr[-2000:]
