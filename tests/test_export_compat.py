"""Our export in stock paddleocr (Paddle and ONNX engines), and ONNX vs Paddle parity.

Everything runs offline: the pretrained PP-OCRv4 is imported from the rapidocr ONNX into a temporary
VINOCR_CACHE_DIR, and paddleocr is given ``model_dir`` (it never downloads then). Before paddlex is
first imported, ``PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK`` skips its model-hoster connectivity probe
and ``PADDLE_PDX_CACHE_HOME`` keeps its cache folders out of the home directory (both are read at
import time, so they only take effect if no earlier test imported paddlex).
"""
import shutil
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
import paddle
import pytest

from conftest import assert_close_rel
from vinocr.charset import load_charset
from vinocr.errors import VinocrError

WIDTHS = (160, 320, 640)
IMAGE_SHAPE = (3, 48, 320)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("VINOCR_CACHE_DIR", str(cache))
    mp.setenv("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    mp.setenv("PADDLE_PDX_CACHE_HOME", str(tmp_path_factory.mktemp("paddlex_cache")))
    yield cache
    mp.undo()


@pytest.fixture(scope="module")
def model(env):
    from vinocr.models.factory import model_from_config

    m, _ = model_from_config({"name": "ppocrv4_mobile", "pretrained": "ppocrv4_mobile"}, "vin")
    m.eval()
    return m


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> Path:
    from vinocr.export import export_inference

    return export_inference(model, tmp_path_factory.mktemp("exported"), "vin", IMAGE_SHAPE)


@pytest.fixture(scope="module")
def onnx_dir(exported, tmp_path_factory) -> Path:
    """A copy of the Paddle export with ``inference.onnx`` added beside ``inference.yml``."""
    from vinocr.export.onnx import export_onnx

    d = tmp_path_factory.mktemp("onnx") / "model"
    shutil.copytree(exported, d)
    assert export_onnx(d) == d / "inference.onnx"
    return d


@pytest.fixture(scope="module")
def vin_images() -> List[np.ndarray]:
    """Rendered VIN crops of several styles and aspect ratios (BGR uint8), from the training style
    pool (the held-out one is meant to be hard)."""
    from vinocr.data.synth import random_vin, render_vin

    images = []
    for i, style in enumerate(("sticker", "paper", "engraved", "windshield", "label")):
        rng = np.random.default_rng([7, i])
        image, _ = render_vin(random_vin(rng), rng, style=style, pool="train")
        images.append(image)
    return images


def paddleocr_batch(images: List[np.ndarray]) -> np.ndarray:
    """paddleocr 3.x's rule: each image to its own width max(320, 48 * w / h), zero-padded to the
    widest one in the batch."""
    from vinocr.data.preprocess import resize_norm

    arrays = [resize_norm(im, IMAGE_SHAPE, dynamic_width=True)[0] for im in images]
    width = max(a.shape[2] for a in arrays)
    return np.stack([np.pad(a, ((0, 0), (0, 0), (0, width - a.shape[2]))) for a in arrays])


def greedy(probs: np.ndarray) -> List[Tuple[str, float]]:
    """Greedy texts through the library decoder, with paddleocr's score (the mean over kept frames
    of the frame's top probability; vinocr's own confidence averages per character instead)."""
    from vinocr.decode import GreedyDecoder

    texts = [r.text for r in GreedyDecoder(charset=load_charset("vin")).decode(probs)]
    out = []
    for text, p in zip(texts, probs):
        idx = p.argmax(-1)
        keep = (idx != 0) & np.r_[True, idx[1:] != idx[:-1]]
        out.append((text, float(p.max(-1)[keep].mean()) if keep.any() else 0.0))
    return out


def ours(model, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(paddle.to_tensor(x)).numpy()


def paddleocr_results(model_dir: Path, inputs, **kwargs) -> List[Tuple[str, float]]:
    from paddleocr import TextRecognition

    rec = TextRecognition(model_name="PP-OCRv4_mobile_rec", model_dir=str(model_dir),
                          device="cpu", **kwargs)
    return [(r["rec_text"], float(r["rec_score"]))
            for r in rec.predict(inputs, batch_size=len(inputs))]


def assert_same(got: List[Tuple[str, float]], want: List[Tuple[str, float]],
                logits: np.ndarray) -> None:
    """Same texts, and scores (means of top probabilities) within the slack of ``logits``, the
    model's logits behind ``want``."""
    assert [t for t, _ in got] == [t for t, _ in want]
    assert_close_rel([s for _, s in got], [s for _, s in want], rtol=1e-4, logits=logits,
                     what="paddleocr scores")


def test_stock_paddleocr_loads_export(model, exported, vin_images, tmp_path):
    import yaml

    doc = yaml.safe_load((exported / "inference.yml").read_text())
    assert doc["Global"]["model_name"] == "PP-OCRv4_mobile_rec"
    assert len(doc["PostProcess"]["character_dict"]) + 2 == model.num_classes
    paths = []
    for i, image in enumerate(vin_images):  # through files, as most users call it
        paths.append(str(tmp_path / f"vin{i}.png"))
        assert cv2.imwrite(paths[-1], image)
    got = paddleocr_results(exported, paths)
    want = greedy(ours(model, paddleocr_batch(vin_images)))
    assert_same(got, want, model(paddle.to_tensor(paddleocr_batch(vin_images))).numpy())
    assert all(len(t) >= 10 for t, _ in want), want  # the zero-shot model reads something VIN-like


def test_onnx_parity(model, onnx_dir, vin_images):
    import onnx
    import onnxruntime as ort

    from vinocr.data.preprocess import resize_norm
    from vinocr.export.onnx import check_onnx_parity

    dims = onnx.load(str(onnx_dir / "inference.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, False, False, True]  # N and W dynamic
    session = ort.InferenceSession(str(onnx_dir / "inference.onnx"),
                                   providers=["CPUExecutionProvider"])
    batches = []
    for width in WIDTHS:
        crops = np.stack([resize_norm(im, (3, 48, width))[0] for im in vin_images[:3]])
        noise = np.random.default_rng(width).uniform(-1, 1, (2, 3, 48, width)).astype("float32")
        batches += [crops[:1], crops, noise]  # dynamic batch: 1, 3 and 2 samples
    for x in batches:
        got = session.run(None, {"x": x})[0]
        ref = ours(model, x)
        assert got.shape == ref.shape == (x.shape[0], x.shape[3] // 8, model.num_classes)
        logits = model(paddle.to_tensor(x)).numpy()
        assert_close_rel(got, ref, rtol=1e-4, logits=logits, what=f"onnxruntime, input {x.shape}")
        assert [t for t, _ in greedy(got)] == [t for t, _ in greedy(ref)]
    # the same inputs against the Paddle inference predictor (oneDNN), through the library check
    # (absolute on probabilities: given the logits' slack carried through the softmax)
    atol = 1e-4 * 0.5 * max(float(np.abs(model(paddle.to_tensor(x)).numpy()).max())
                            for x in batches)
    assert check_onnx_parity(onnx_dir, batches, atol=atol) < atol


def test_onnx_export_errors(tmp_path, onnx_dir):
    from vinocr.export.onnx import check_onnx_parity, export_onnx

    with pytest.raises(VinocrError, match="not an exported model"):
        export_onnx(tmp_path)
    with pytest.raises(VinocrError, match=r"\[N, 3, H, W\]"):
        check_onnx_parity(onnx_dir, np.zeros((3, 48, 160), "float32"))
    with pytest.raises(VinocrError, match="differ by"):
        # a different network (its largest weight tensor reversed) must be caught; paddle2onnx
        # stores weights as Constant nodes, not initializers
        import onnx
        from onnx import numpy_helper

        m = onnx.load(str(onnx_dir / "inference.onnx"))
        consts = [a.t for n in m.graph.node if n.op_type == "Constant" for a in n.attribute
                  if a.name == "value"]
        tensor = max(consts, key=lambda t: int(np.prod(t.dims)))
        arr = numpy_helper.to_array(tensor)
        tensor.CopyFrom(numpy_helper.from_array(arr[::-1].copy(), tensor.name))
        onnx.save(m, str(tmp_path / "bad.onnx"))
        x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 48, 160)).astype("float32")
        check_onnx_parity(onnx_dir, x, onnx_path=tmp_path / "bad.onnx")


def test_stock_paddleocr_onnxruntime_engine(model, onnx_dir, vin_images, tmp_path):
    # paddleocr 3.7 / paddlex 3.7.2 support engine='onnxruntime': it reads inference.onnx and
    # inference.yml from model_dir (paddlex/inference/models/engines/onnxruntime.py).
    want = greedy(ours(model, paddleocr_batch(vin_images)))
    logits = model(paddle.to_tensor(paddleocr_batch(vin_images))).numpy()
    only_onnx = tmp_path / "only_onnx"  # proves onnxruntime ran: no Paddle files to fall back on
    only_onnx.mkdir()
    for name in ("inference.onnx", "inference.yml"):
        shutil.copy(onnx_dir / name, only_onnx / name)
    assert_same(paddleocr_results(only_onnx, vin_images, engine="onnxruntime"), want, logits)
    # both formats side by side: the default engine still picks the Paddle files
    assert_same(paddleocr_results(onnx_dir, vin_images), want, logits)


def test_cli_onnx(env, model, tmp_path, capsys):
    from vinocr.cli.export import main, parity_inputs

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "cli"
    # the parity check's probabilities get the slack of the pretrained model's logits on its inputs
    atol = 1e-4 * 0.5 * max(float(np.abs(model(paddle.to_tensor(x)).numpy()).max())
                            for x in parity_inputs(IMAGE_SHAPE[1]))
    assert main(["--checkpoint", "pretrained", "-c", str(repo / "configs/vin/ppocrv4_mobile.yml"),
                 "--out", str(out), "--onnx", "--atol", f"{atol:g}", "--log-level", "WARNING"]) == 0
    printed = capsys.readouterr().out
    assert (out / "inference.onnx").is_file() and (out / "inference.json").is_file()
    diff = float(printed.split("max abs diff vs Paddle ")[1].split()[0])
    assert 0.0 <= diff < atol
