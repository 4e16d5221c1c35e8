"""Fixtures: small datasets generated inside the tests (no bundled binaries, no network)."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import pytest

from vinocr.engine.hooks import TrainerHooks
from vinocr.vin import with_check_digit


def pytest_configure(config) -> None:
    # A shell starts a background job (`./.ci/run &`, nohup ... &) with SIGINT ignored, and an
    # ignored signal stays ignored across exec: every tool a test starts would then shrug off
    # the Ctrl-C the Ctrl-C tests send, and those tests would time out. A Python handler is not
    # inherited across exec, so with one here the tools start with Ctrl-C as a terminal has it.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# Progress bars are for people; in test logs they are noise.
os.environ.setdefault("VINOCR_NO_PROGRESS", "1")

VALID_VINS = ["1M8GDM9AXKP042788", "SAL1A2A40SA606662", "1HGCM82633A004352",
              "WBA3A5C51CF256651", "JHMCM56557C404453"]


def text_image(text: str, height: int = 32, seed: int = 0) -> np.ndarray:
    """A small BGR crop with ``text`` drawn in it (distinct bytes per text and seed)."""
    rng = np.random.default_rng(seed)
    width = 14 * len(text) + 10
    img = np.full((height, width, 3), 200, np.uint8)
    img[:] = img + rng.integers(0, 30, size=img.shape, dtype=np.uint8)
    cv2.putText(img, text, (4, height - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1)
    return img


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def make_label_dir(root: Path, labels: List[str], name: str = "labels.txt",
                   subdir: str = "images") -> Path:
    lines = []
    for i, label in enumerate(labels):
        rel = f"{subdir}/{i:05d}.png"
        write_png(root / rel, text_image(label, seed=i))
        lines.append(f"{rel}\t{label}")
    (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / name


@pytest.fixture
def vin_labels() -> List[str]:
    rng = np.random.default_rng(1)
    alphabet = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
    out = list(VALID_VINS)
    while len(out) < 24:
        raw = "1" + "".join(rng.choice(list(alphabet), 16))
        out.append(with_check_digit(raw))
    return out


@pytest.fixture
def label_dir(tmp_path: Path, vin_labels: List[str]) -> Tuple[Path, List[str]]:
    make_label_dir(tmp_path / "ds", vin_labels)
    return tmp_path / "ds", vin_labels


def make_track(root: Path, text: str, layout: str, with_corners: bool = True) -> Path:
    """A track folder with 2 LR and 2 HR frames; each frame shows a bright plate quadrilateral."""
    track = root / f"Scenario-A/{layout}/track_{abs(hash(text)) % 100000:05d}"
    track.mkdir(parents=True, exist_ok=True)
    corners = {}
    for kind, (h, w), quad in (("hr", (60, 160), [[20, 10], [140, 14], [138, 50], [22, 46]]),
                               ("lr", (24, 64), [[8, 4], [56, 6], [55, 20], [9, 18]])):
        for k in (1, 2):
            img = np.full((h, w, 3), 30, np.uint8)
            cv2.fillConvexPoly(img, np.array(quad, np.int32), (230, 230, 230))
            name = f"{kind}-{k:03d}.png"
            write_png(track / name, img)
            corners[name] = quad
    doc = {"plate_layout": layout, "plate_text": text, "corners": corners if with_corners else {}}
    (track / "annotations.json").write_text(json.dumps(doc), encoding="utf-8")
    return track


def write_synthetic_tracks(root: Path, tracks: Dict[str, Tuple[str, str]], seed: int) -> Path:
    """Synthetic LRLPR-26 tracks ``{relative dir: (plate text, layout)}`` below ``root`` (5 LR +
    5 HR frames each, ``.jpg`` under Scenario-B as in the real dataset)."""
    from vinocr.data.synth.plates import write_track

    rng = np.random.default_rng(seed)
    for rel, (text, layout) in tracks.items():
        write_track(root / rel, text, layout, rng,
                    image_ext=".jpg" if "Scenario-B" in rel else ".png")
    return root


# ---------------------------------------------------------------------------- float comparisons
def assert_close_rel(actual, expected, rtol: float = 1e-4, atol_rel: Optional[float] = None,
                     scale: Optional[float] = None, logits=None, what: str = "") -> None:
    """``|actual - expected| <= rtol * |expected| + atol_rel * scale`` elementwise.

    Float32 results of different kernels, or of the same code on another CPU (SIMD width, oneDNN
    kernel, thread count), differ by reordered sums: ~1e-6..1e-5 of the magnitude of the summed
    terms, not of each element, so an element near 0 in a tensor of magnitude 140 may be off by
    1e-3. The absolute slack therefore scales with ``scale``: by default ``max|expected|``; pass
    the magnitude of the terms summed when that is larger (e.g. a difference of two large
    numbers). ``atol_rel`` defaults to ``rtol``.

    Softmax probabilities inherit the error of their logits, not of their own magnitude: a logit
    error dz moves p_i by ``p_i * (dz_i - sum_j p_j dz_j)``, at most ``max|dz| / 2``. For them
    pass ``logits`` (the logits they were computed from): the slack is then ``atol_rel *
    max|logits| / 2``, the logits' own tolerance carried through the softmax."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if logits is not None:
        assert scale is None, "pass scale or logits, not both"
        scale = 0.5 * float(np.abs(np.asarray(logits, dtype=np.float64)).max())
    if scale is None:
        scale = float(np.nanmax(np.abs(expected))) if expected.size else 0.0
    atol = (rtol if atol_rel is None else atol_rel) * scale
    try:
        err = np.abs(actual - expected)
        worst = float(np.nanmax(err)) if err.size else 0.0
    except ValueError:  # shapes do not broadcast: assert_allclose says so below
        worst = float("inf")
    np.testing.assert_allclose(
        actual, expected, rtol=rtol, atol=atol,
        err_msg=f"{what}: max |diff| {worst:.3g} against magnitude {scale:.3g} "
                f"(relative {worst / scale if scale else float('inf'):.3g}; rtol {rtol:g}, "
                f"atol {atol:.3g})")


def assert_state_close(actual: Dict[str, np.ndarray], expected: Dict[str, np.ndarray],
                       rtol: float = 1e-4, bn_epsilon: float = 1e-5, what: str = "") -> None:
    """Two state dicts, tensor by tensor with :func:`assert_close_rel` (each on its own
    magnitude). A BatchNorm running mean is compared on the scale it is divided by,
    ``sqrt(running variance + epsilon)``, and a running variance on ``variance + epsilon``: below
    that they do not move the normalised output (an untrained deploy-form backbone feeds the neck
    ~1e-20 activations, whose running means differ by a few % between two kernel orders)."""
    assert actual.keys() == expected.keys(), what
    for key, want in expected.items():
        scale = None
        if key.endswith("_mean") and key[:-len("_mean")] + "_variance" in expected:
            var = np.asarray(expected[key[:-len("_mean")] + "_variance"], dtype=np.float64)
            scale = max(float(np.abs(want).max()), float(np.sqrt(var.max() + bn_epsilon)))
        elif key.endswith("_variance"):
            scale = float(np.abs(want).max()) + bn_epsilon
        assert_close_rel(actual[key], want, rtol=rtol, scale=scale, what=f"{what}{key}")


# ---------------------------------------------------------------------------- tiny training runs
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """16 training and 4 validation crops of 5-character plate-alphabet labels."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    labels = ["".join(rng.choice(list("ABCDEFGH0123456789"), 5)) for _ in range(20)]
    make_label_dir(root, labels[:16], name="train.txt", subdir="tr")
    make_label_dir(root, labels[16:], name="val.txt", subdir="va")
    return root


TINY_CRNN = {"hidden": 8, "channels": [4, 4, 8, 8]}


def tiny_config(data: Path, run_dir: Path, epochs: int = 4, **over):
    """A validated config for a seconds-long CRNN run on ``data``; ``Section__key=value``
    overrides (e.g. ``Train__max_steps=8``)."""
    from vinocr.config import load_config

    cfg = {
        "Global": {"charset": "plate", "run_dir": str(run_dir), "image_shape": [3, 48, 96],
                   "seed": 5, "max_text_length": 8, "visualdl": over.pop("visualdl", False),
                   "histogram_every_epochs": 0},
        "Architecture": {"name": "crnn", "pretrained": None, "params": dict(TINY_CRNN)},
        "Decode": {"method": "greedy"},
        "Optimizer": {"name": "adamw", "lr": 0.01},
        "Scheduler": {"name": "cosine", "warmup_epochs": 0.5},
        "Train": {"dataset": {"type": "label_file", "label_files": [str(data / "train.txt")]},
                  "batch_size": 4, "num_workers": 0, "epochs": epochs,
                  "augment": {"preset": "alpr", "p": 0.5}},
        "Eval": {"dataset": {"type": "label_file", "label_files": [str(data / "val.txt")]},
                 "num_workers": 0},
    }
    for key, value in over.items():
        section, name = key.split("__")
        cfg.setdefault(section, {})[name] = value
    return load_config(data=cfg)


class InterruptBefore(TrainerHooks):
    """Simulates Ctrl-C between two epochs: before epoch ``epoch`` (counted from 0) starts."""

    name = "interrupt"

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, epoch: int, run) -> bool:
        if epoch == self.epoch:
            raise KeyboardInterrupt
        return False


# ---------------------------------------------------------------------------- tools and serving
REPO_ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    """``tools/<name>.py`` as a module (tools/ is not a package; its scripts import each other
    by file name, so tools/ goes on sys.path first)."""
    import importlib.util
    import sys

    tools = str(REPO_ROOT / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered before it runs, as an import would (dataclasses)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def chromium() -> str:
    """The Chromium binary of the browser tests; they skip without one."""
    path = load_tool("visualdl_check").find_chromium()
    if path is None:
        pytest.skip("Chromium not installed: apt-get install chromium (Debian) to run this check")
    return path


@pytest.fixture(scope="module")
def serve_model(data: Path, tmp_path_factory) -> Dict[str, Path]:
    """For vinocr-serve: the tiny CRNN trained 1 epoch on ``data`` and exported (``exp``), and a
    job config (``job_config``) that fine-tunes it further: the same tiny config, with
    ``data/train.txt`` as its base dataset and ``data/val.txt`` for validation."""
    from vinocr.cli.export import main as export_main
    from vinocr.config.loader import write_resolved_config
    from vinocr.engine.trainer import Trainer

    root = tmp_path_factory.mktemp("serve_model")
    cfg = tiny_config(data, root / "run", epochs=1)
    Trainer(cfg).fit()
    assert export_main(["--checkpoint", str(root / "run"), "--out", str(root / "exp"),
                        "--log-level", "WARNING"]) == 0
    job = tiny_config(data, root / "unused_run", epochs=2,
                      Global__pretrained_model=str(root / "run"))
    write_resolved_config(job, root, "job.yml")
    return {"root": root, "exp": root / "exp", "job_config": root / "job.yml"}


def onnx_logits_session(onnx_path):
    """onnxruntime on the packaged ONNX with the input of its final Softmax as a second output,
    so the logits themselves are compared, not only probabilities."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(onnx_path))
    softmax = [n for n in m.graph.node if n.op_type == "Softmax"][-1]
    assert softmax.output[0] == m.graph.output[0].name  # the last op: logits -> probabilities
    m.graph.output.append(onnx.helper.make_tensor_value_info(softmax.input[0],
                                                             onnx.TensorProto.FLOAT, None))
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
