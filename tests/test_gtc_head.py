"""GTC (NRTR) branch: PaddleOCR key layout, shapes, causality, loss, label convention."""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from conftest import assert_close_rel
from vinocr.charset import Charset
from vinocr.errors import CharsetError, DataError
from vinocr.models.gtc_head import (EOS, PAD, SOS, GTCBranch, gtc_class_list, gtc_class_map,
                                    gtc_label_decode, gtc_label_encode, gtc_lengths, gtc_loss,
                                    gtc_num_classes, transfer_gtc_vocab, trim_gtc_targets)

# Written out by hand from PaddleOCR's source (rec_multi_head.py: MultiHead.before_gtc =
# Sequential(Flatten(2), FCTranspose(in, nrtr_dim)); rec_nrtr_head.py: Transformer with
# embedding.embedding, positional_encoding.pe buffer [5000, 1, D], decoder = LayerList of
# TransformerBlock(self_attn.qkv/out_proj, norm1, cross_attn.q/kv/out_proj, norm2, mlp.fc1/fc2,
# norm3), tgt_word_prj without bias). Shapes use C = in_channels, D = d_model, F = 4D, V = classes.
_LAYER_TEMPLATE = {
    "self_attn.qkv.weight": ("D", "3D"), "self_attn.qkv.bias": ("3D",),
    "self_attn.out_proj.weight": ("D", "D"), "self_attn.out_proj.bias": ("D",),
    "norm1.weight": ("D",), "norm1.bias": ("D",),
    "cross_attn.q.weight": ("D", "D"), "cross_attn.q.bias": ("D",),
    "cross_attn.kv.weight": ("D", "2D"), "cross_attn.kv.bias": ("2D",),
    "cross_attn.out_proj.weight": ("D", "D"), "cross_attn.out_proj.bias": ("D",),
    "norm2.weight": ("D",), "norm2.bias": ("D",),
    "mlp.fc1.weight": ("D", "F"), "mlp.fc1.bias": ("F",),
    "mlp.fc2.weight": ("F", "D"), "mlp.fc2.bias": ("D",),
    "norm3.weight": ("D",), "norm3.bias": ("D",),
}


def paddleocr_gtc_keys(c: int, d: int, v: int, layers: int) -> Dict[str, Tuple[int, ...]]:
    dims = {"C": c, "D": d, "2D": 2 * d, "3D": 3 * d, "F": 4 * d, "V": v}
    keys = {"before_gtc.1.fc.weight": (c, d),
            "gtc_head.embedding.embedding.weight": (v, d),
            "gtc_head.positional_encoding.pe": (5000, 1, d),
            "gtc_head.tgt_word_prj.weight": (d, v)}
    for i in range(layers):
        for name, shape in _LAYER_TEMPLATE.items():
            keys[f"gtc_head.decoder.{i}.{name}"] = tuple(dims[s] for s in shape)
    return keys


def tiny_branch(num_classes: int = 12, seed: int = 0) -> GTCBranch:
    paddle.seed(seed)
    return GTCBranch(in_channels=16, num_classes=num_classes, d_model=64, num_decoder_layers=2)


ABC = Charset(list("ABCDEFG"), name="abc")  # 7 chars -> CTC 9 classes -> GTC 13


def test_key_names_and_shapes_match_paddleocr_pp_ocrv4():
    ppocr_dict = [chr(0x4E00 + i) for i in range(6623)]
    v = gtc_num_classes(ppocr_dict)
    assert v == 6629  # 6625 CTC classes (blank + 6623 + space) + 3 NRTR specials + 1 spare
    paddle.seed(0)
    branch = GTCBranch(480, v)  # PP-OCRv4 defaults: d_model 384, 12 heads, 4 layers, FFN 1536
    got = {k: tuple(t.shape) for k, t in branch.state_dict().items()}
    assert got == paddleocr_gtc_keys(480, 384, v, 4)
    assert branch.gtc_head.decoder[0].self_attn.num_heads == 12


def test_lead_wiring_gives_head_prefixed_keys_and_loads_a_paddleocr_state():
    """Attaching the two sublayers directly to the head gives head.before_gtc.*, head.gtc_head.*"""

    class Head(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            branch = GTCBranch(16, 13, d_model=64, num_decoder_layers=2)
            self.before_gtc = branch.before_gtc
            self.gtc_head = branch.gtc_head

    class Model(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.head = Head()

    model = Model()
    expected = {"head." + k: s for k, s in paddleocr_gtc_keys(16, 64, 13, 2).items()}
    assert {k: tuple(t.shape) for k, t in model.state_dict().items()} == expected
    rng = np.random.default_rng(0)
    state = {k: rng.normal(size=s).astype("float32") for k, s in expected.items()}
    missing, unexpected = model.set_state_dict(state)
    assert not missing and not unexpected
    np.testing.assert_array_equal(model.head.before_gtc[1].fc.weight.numpy(),
                                  state["head.before_gtc.1.fc.weight"])


def test_output_shape_and_trim():
    branch = tiny_branch(13)
    branch.eval()
    targets = paddle.to_tensor(gtc_label_encode(["ABC", "G", "DEFGA"], ABC, max_len=10))
    feats = paddle.randn([3, 16, 1, 20])
    logits = branch(feats, targets)
    assert logits.shape == [3, 9, 13]
    trimmed = trim_gtc_targets(targets)
    assert trimmed.shape == [3, 7]  # longest label (5) + <s> + </s>
    short = branch(feats, trimmed)
    assert_close_rel(short.numpy(), logits.numpy()[:, :6], rtol=1e-4, what="trimmed logits")
    # the loss sums log-softmax terms of the logits' magnitude
    assert_close_rel(float(gtc_loss(short, trimmed)), float(gtc_loss(logits, targets)), rtol=1e-4,
                     scale=float(np.abs(logits.numpy()).max()), what="trimmed loss")
    # features of any height are flattened into the memory sequence
    assert branch(paddle.randn([3, 16, 2, 10]), trimmed).shape == [3, 6, 13]


def test_causal_mask_earlier_logits_ignore_later_tokens():
    branch = tiny_branch(13, seed=1)
    branch.eval()  # no dropout, so any difference comes from the tokens
    a = gtc_label_encode(["ABCDEF"], ABC, max_len=10)
    b = a.copy()
    k = 4  # decoder input position whose token changes
    b[0, k] = a[0, k] + 1 if a[0, k] < 10 else 5
    feats = paddle.randn([1, 16, 1, 12])
    la = branch(feats, paddle.to_tensor(a)).numpy()
    lb = branch(feats, paddle.to_tensor(b)).numpy()
    assert_close_rel(lb[:, :k], la[:, :k], rtol=1e-6, what="logits before the changed token")
    assert np.abs(la[:, k] - lb[:, k]).max() > 1e-4  # position k itself reads the new token


def test_loss_matches_paddleocr_formula_and_ignores_padding():
    rng = np.random.default_rng(2)
    targets = gtc_label_encode(["AB", "GFEDC"], ABC, max_len=8)
    logits = rng.normal(size=(2, 7, 13)).astype("float32")
    # PaddleOCR NRTRLoss: one_hot*(1-eps) + (1-one_hot)*eps/(V-1), mean over non-pad targets
    gold = targets[:, 1:].reshape(-1)
    flat = logits.reshape(-1, 13).astype(np.float64)
    log_p = flat - flat.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    one_hot = np.eye(13)[gold]
    q = one_hot * 0.9 + (1 - one_hot) * 0.1 / 12
    ref = -(q * log_p).sum(1)[gold != PAD].mean()
    got = float(gtc_loss(paddle.to_tensor(logits), paddle.to_tensor(targets), smoothing=0.1))
    # float32 against float64: slack relative to the magnitude of the logits summed
    assert_close_rel(got, ref, rtol=1e-5, scale=float(np.abs(logits).max()), what="smoothed")
    ref0 = -log_p[np.arange(len(gold)), gold][gold != PAD].mean()
    got0 = float(gtc_loss(paddle.to_tensor(logits), paddle.to_tensor(targets), smoothing=0.0))
    assert_close_rel(got0, ref0, rtol=1e-5, scale=float(np.abs(logits).max()), what="unsmoothed")
    # logits at padded target positions do not matter
    noisy = logits.copy()
    pad_pos = targets[:, 1:] == PAD
    noisy[pad_pos] = rng.normal(scale=50, size=(pad_pos.sum(), 13))
    assert abs(float(gtc_loss(paddle.to_tensor(noisy), paddle.to_tensor(targets))) - got) < 1e-6
    with pytest.raises(ValueError):
        gtc_loss(paddle.to_tensor(logits), paddle.to_tensor(targets[:, :-1]))


def test_loss_decreases_on_a_tiny_batch():
    branch = tiny_branch(13, seed=3)
    branch.train()
    targets = paddle.to_tensor(trim_gtc_targets(
        gtc_label_encode(["ABC", "GFE", "DDA", "BEG"], ABC, max_len=8)))
    feats = paddle.to_tensor(np.random.default_rng(3).normal(size=(4, 16, 1, 10)).astype("float32"))
    opt = paddle.optimizer.Adam(learning_rate=2e-3, parameters=branch.parameters())
    losses = []
    for _ in range(25):
        loss = gtc_loss(branch(feats, targets), targets)
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


def test_label_encoding_convention_and_round_trip():
    assert gtc_class_list(ABC)[:4] == ["blank", "<unk>", "<s>", "</s>"]
    assert gtc_num_classes(ABC) == ABC.num_classes + 4 == len(gtc_class_list(ABC)) == 13
    enc = gtc_label_encode(["AB C", "g"], ABC, max_len=7)
    assert enc.dtype == np.int64 and enc.shape == (2, 7)
    # GTC index = CTC index + 3; space (CTC n+1 = 8) -> 11
    assert enc[0].tolist() == [SOS, 4, 5, 11, 6, EOS, PAD]
    assert enc[1].tolist() == [SOS, 10, EOS, PAD, PAD, PAD, PAD]  # case-folded like CTC labels
    assert [gtc_class_list(ABC)[i] for i in enc[0, 1:5]] == ["A", "B", " ", "C"]
    assert gtc_lengths(enc).tolist() == [4, 1]
    assert gtc_label_decode(enc, ABC) == ["AB C", "G"]
    assert gtc_label_decode(paddle.to_tensor(enc[:, 1:]), ABC) == ["AB C", "G"]  # no <s>
    vins = ["1M8GDM9AXKP042788", "SAL1A2A40SA606662"]
    assert gtc_label_decode(gtc_label_encode(vins, "vin"), "vin") == vins
    assert gtc_label_encode(["ABCDE"], ABC, max_len=7)[0, -1] == EOS  # max_len - 2 characters fit
    with pytest.raises(DataError):
        gtc_label_encode(["ABCDEF"], ABC, max_len=7)
    with pytest.raises(CharsetError):
        gtc_label_encode(["AXB"], ABC)


def test_vocab_transfer_maps_shared_classes():
    source, target = list("ABC"), list("CAX")  # 3 chars each -> 9 GTC classes
    mapping, fresh = gtc_class_map(source, target)
    assert fresh == ["X"]
    assert mapping == {0: 0, 1: 1, 2: 2, 3: 3, 4: 6, 5: 4, 7: 7, 8: 8}
    src_emb = np.arange(9, dtype="float32")[:, None] * np.ones((1, 2), "float32")
    src_prj = src_emb.T.copy()
    init = {"head.gtc_head.embedding.embedding.weight": np.full((9, 2), -1, "float32"),
            "head.gtc_head.tgt_word_prj.weight": np.full((2, 9), -1, "float32")}
    state = {"head.gtc_head.embedding.embedding.weight": src_emb,
             "head.gtc_head.tgt_word_prj.weight": src_prj, "head.other": np.zeros(1)}
    out, fresh = transfer_gtc_vocab(state, source, target, init)
    assert out["head.gtc_head.embedding.embedding.weight"][:, 0].tolist() == \
        [0, 1, 2, 3, 6, 4, -1, 7, 8]
    assert out["head.gtc_head.tgt_word_prj.weight"][0].tolist() == [0, 1, 2, 3, 6, 4, -1, 7, 8]
    assert "head.other" in out and fresh == ["X"]
