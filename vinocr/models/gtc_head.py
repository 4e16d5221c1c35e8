"""PP-OCRv4's GTC branch: the NRTR transformer decoder that guides training of the CTC recogniser.

PaddleOCR trains PP-OCRv4 with ``MultiHead`` = CTC branch + this branch. The GTC branch reads the
backbone features (not the SVTR neck), decodes the label with teacher forcing and a causal mask, and
is trained with label-smoothed cross-entropy. It is dropped at export: only the CTC branch is
deployed. Its value is the extra gradient it sends into the backbone during training.

Checkpoint key layout
---------------------
Submodule and parameter names follow PaddleOCR so that the ``head.before_gtc.*`` and
``head.gtc_head.*`` keys of an official ``ch_PP-OCRv4_rec_train/student.pdparams`` map one to one.
Source: PaddleOCR's ``ppocr/modeling/heads/rec_multi_head.py`` (``MultiHead``, ``FCTranspose``),
``ppocr/modeling/heads/rec_nrtr_head.py`` (``Transformer``, ``TransformerBlock``,
``MultiheadAttention``, ``PositionalEncoding``, ``Embeddings``), ``Mlp`` from
``ppocr/modeling/backbones/rec_svtrnet.py``, ``tools/train.py`` (``out_channels_list``) and
``configs/rec/PP-OCRv4/ch_PP-OCRv4_rec.yml`` (``NRTRHead: nrtr_dim 384, max_text_length 25``), read
through the code-search tools. With C = backbone channels (480), D = 384, F = 4 * D, V = number of
GTC classes (``gtc_num_classes``: 6629 for the 6623-character PP-OCR dictionary), paddle Linear
weights stored [in, out]::

    before_gtc.1.fc.weight                              [C, D]      (no bias)
    gtc_head.embedding.embedding.weight                 [V, D]
    gtc_head.positional_encoding.pe                     [5000, 1, D] (persistable buffer)
    gtc_head.decoder.{0..3}.self_attn.qkv.{weight,bias}        [D, 3D], [3D]
    gtc_head.decoder.{i}.self_attn.out_proj.{weight,bias}      [D, D], [D]
    gtc_head.decoder.{i}.norm1.{weight,bias}                   [D]
    gtc_head.decoder.{i}.cross_attn.q.{weight,bias}            [D, D], [D]
    gtc_head.decoder.{i}.cross_attn.kv.{weight,bias}           [D, 2D], [2D]
    gtc_head.decoder.{i}.cross_attn.out_proj.{weight,bias}     [D, D], [D]
    gtc_head.decoder.{i}.norm2.{weight,bias}                   [D]
    gtc_head.decoder.{i}.mlp.fc1.{weight,bias}                 [D, F], [F]
    gtc_head.decoder.{i}.mlp.fc2.{weight,bias}                 [F, D], [D]
    gtc_head.decoder.{i}.norm3.{weight,bias}                   [D]
    gtc_head.tgt_word_prj.weight                        [D, V]      (no bias)

PP-OCRv4 builds the Transformer with ``num_encoder_layers=-1`` so there is no ``gtc_head.encoder``.

Class layout (PaddleOCR's NRTR convention)
------------------------------------------
``NRTRLabelEncode``/``NRTRLabelDecode`` prepend ``['blank', '<unk>', '<s>', '</s>']`` to the
dictionary (which ends with the space when ``use_space_char``), so: 0 padding ("blank"),
1 ``<unk>`` (never produced by the encoder: PaddleOCR drops unknown characters), 2 ``<s>``,
3 ``</s>``, then the dictionary, then space. ``tools/train.py`` sets the NRTR size to the CTC
class count + 3 and ``Transformer`` adds one more class that no label uses, so
``V = ctc_classes + 4`` and the GTC index of a character is its CTC index + 3.
A label row is ``<s> c1 .. cn </s> 0 .. 0`` of width ``max_len`` (PaddleOCR's ``max_text_length``,
25), which leaves room for ``max_len - 2`` characters.
"""
from __future__ import annotations

import logging
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from vinocr.charset import Charset, load_charset
from vinocr.errors import DataError

logger = logging.getLogger(__name__)

GTC_SPECIAL_TOKENS: Tuple[str, ...] = ("blank", "<unk>", "<s>", "</s>")
PAD, UNK, SOS, EOS = 0, 1, 2, 3
N_SPECIAL = len(GTC_SPECIAL_TOKENS)
# GTC index = CTC index + this (CTC: blank 0, dictionary 1..n, space n+1).
CTC_TO_GTC_OFFSET = N_SPECIAL - 1
DEFAULT_MAX_LEN = 25
PE_MAX_LEN = 5000  # PaddleOCR's PositionalEncoding table length; part of the checkpoint shape

# Vocabulary-sized GTC parameters (key relative to the head, class axis).
GTC_VOCAB_PARAMS: Dict[str, int] = {
    "gtc_head.embedding.embedding.weight": 0,
    "gtc_head.tgt_word_prj.weight": 1,
}

CharsetSpec = Union[Charset, str, Sequence[str]]


def gtc_num_classes(charset: CharsetSpec) -> int:
    """Output size of the GTC head for ``charset`` (CTC classes + 4; 6629 for PP-OCR's dict)."""
    return load_charset(charset).num_classes + N_SPECIAL


def gtc_class_list(charset: CharsetSpec) -> List[str]:
    """Token of every GTC class index: specials, dictionary, space, then the unused spare slot."""
    cs = load_charset(charset)
    return [*GTC_SPECIAL_TOKENS, *cs.characters, " ", "<spare>"]


# --------------------------------------------------------------------------------------------
# Layers (names mirror PaddleOCR; the implementation is vinocr's own)
# --------------------------------------------------------------------------------------------

class FCTranspose(nn.Layer):
    """[N, C, T] -> [N, T, C] -> Linear without bias (key ``fc.weight``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, out_channels, bias_attr=False)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc(x.transpose([0, 2, 1]))


class MultiheadAttention(nn.Layer):
    """Scaled dot-product attention with PaddleOCR's projection layout.

    Self-attention uses one fused ``qkv`` projection, cross-attention ``q`` plus a fused ``kv``.
    The fused outputs are split as [q | k | v] (or [k | v]) along the feature axis, each part
    head-major with contiguous head_dim slices: this order is what makes official weights mean the
    same thing here.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0,
                 self_attn: bool = False) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.is_self_attn = self_attn
        if self_attn:
            self.qkv = nn.Linear(embed_dim, embed_dim * 3)
        else:
            self.q = nn.Linear(embed_dim, embed_dim)
            self.kv = nn.Linear(embed_dim, embed_dim * 2)
        self.attn_drop = nn.Dropout(dropout)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def _heads(self, x: paddle.Tensor, parts: int) -> paddle.Tensor:
        # [N, L, parts*D] -> [parts, N, H, L, hd]
        return x.reshape([0, 0, parts, self.num_heads, self.head_dim]).transpose([2, 0, 3, 1, 4])

    def forward(self, query: paddle.Tensor, key: Optional[paddle.Tensor] = None,
                attn_mask: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        if self.is_self_attn:
            qkv = self._heads(self.qkv(query), 3)
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:
            if key is None:
                raise ValueError("cross-attention needs a key/value sequence")
            q = self._heads(self.q(query), 1)[0]
            kv = self._heads(self.kv(key), 2)
            k, v = kv[0], kv[1]
        attn = q.matmul(k, transpose_y=True) * self.scale
        if attn_mask is not None:
            attn = attn + attn_mask
        attn = self.attn_drop(F.softmax(attn, axis=-1))
        out = attn.matmul(v).transpose([0, 2, 1, 3]).reshape([0, 0, self.embed_dim])
        return self.out_proj(out)


class Mlp(nn.Layer):
    """fc1 -> ReLU -> dropout -> fc2 -> dropout (keys ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class TransformerBlock(nn.Layer):
    """Post-norm decoder layer: masked self-attention, cross-attention to the image, MLP."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int,
                 attention_dropout: float = 0.0, residual_dropout: float = 0.1,
                 epsilon: float = 1e-5) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, attention_dropout, self_attn=True)
        self.norm1 = nn.LayerNorm(d_model, epsilon=epsilon)
        self.dropout1 = nn.Dropout(residual_dropout)
        self.cross_attn = MultiheadAttention(d_model, nhead, attention_dropout)
        self.norm2 = nn.LayerNorm(d_model, epsilon=epsilon)
        self.dropout2 = nn.Dropout(residual_dropout)
        self.mlp = Mlp(d_model, dim_feedforward, residual_dropout)
        self.norm3 = nn.LayerNorm(d_model, epsilon=epsilon)
        self.dropout3 = nn.Dropout(residual_dropout)

    def forward(self, tgt: paddle.Tensor, memory: paddle.Tensor,
                self_mask: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(tgt, attn_mask=self_mask)))
        tgt = self.norm2(tgt + self.dropout2(self.cross_attn(tgt, key=memory)))
        return self.norm3(tgt + self.dropout3(self.mlp(tgt)))


class PositionalEncoding(nn.Layer):
    """Fixed sinusoidal table plus dropout.

    The table is a persistable buffer shaped [max_len, 1, dim] because PaddleOCR stores it that way
    in its checkpoints; keeping it persistable means the official key loads instead of being
    reported as unexpected (its values are deterministic, so loading it changes nothing).
    """

    def __init__(self, dim: int, dropout: float = 0.1, max_len: int = PE_MAX_LEN) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        position = np.arange(max_len, dtype=np.float64)[:, None]
        div_term = np.exp(np.arange(0, dim, 2, dtype=np.float64) * (-math.log(10000.0) / dim))
        table = np.zeros((max_len, dim), dtype=np.float64)
        table[:, 0::2] = np.sin(position * div_term)
        table[:, 1::2] = np.cos(position * div_term[: dim // 2])
        self.register_buffer("pe", paddle.to_tensor(table[:, None, :].astype("float32")),
                             persistable=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        # x: [N, L, D]; pe[:L] is [L, 1, D] -> broadcast as [1, L, D]
        length = x.shape[1]
        return self.dropout(x + self.pe[:length].transpose([1, 0, 2]))


class Embeddings(nn.Layer):
    """Token embedding (padding index 0) scaled by sqrt(d_model); key ``embedding.weight``."""

    def __init__(self, d_model: int, vocab: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model, padding_idx=PAD)
        self.d_model = d_model

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.embedding(x) * math.sqrt(self.d_model)


def causal_mask(length: int) -> paddle.Tensor:
    """Additive [1, 1, L, L] mask: 0 on and below the diagonal, -inf above it (future tokens)."""
    mask = np.triu(np.full((length, length), -np.inf, dtype=np.float32), k=1)
    return paddle.to_tensor(mask[None, None])


class NRTRDecoderHead(nn.Layer):
    """PaddleOCR's ``Transformer`` as PP-OCRv4 configures it: no encoder, decoder only.

    ``forward(memory [N, S, D], targets [N, L]) -> logits [N, L-1, num_classes]`` (teacher forcing:
    the decoder reads ``targets[:, :-1]`` and predicts ``targets[:, 1:]``).
    """

    def __init__(self, num_classes: int, d_model: int = 384, nhead: Optional[int] = None,
                 num_decoder_layers: int = 4, dim_feedforward: Optional[int] = None,
                 attention_dropout: float = 0.0, residual_dropout: float = 0.1) -> None:
        super().__init__()
        nhead = nhead or max(1, d_model // 32)  # PaddleOCR: nrtr_dim // 32 heads
        dim_feedforward = dim_feedforward or 4 * d_model
        self.num_classes = num_classes
        self.d_model = d_model
        self.embedding = Embeddings(d_model, num_classes)
        self.positional_encoding = PositionalEncoding(d_model, residual_dropout)
        self.decoder = nn.LayerList([
            TransformerBlock(d_model, nhead, dim_feedforward, attention_dropout, residual_dropout)
            for _ in range(num_decoder_layers)])
        self.tgt_word_prj = nn.Linear(d_model, num_classes, bias_attr=False)
        self._init_weights()

    def _init_weights(self) -> None:
        # Xavier-normal linears with zero bias and N(0, d^-1/2) embeddings: the transformer
        # initialisation PaddleOCR's NRTR head also uses, so training from scratch behaves alike.
        xavier = nn.initializer.XavierNormal()
        zeros = nn.initializer.Constant(0.0)
        for layer in self.sublayers():
            if isinstance(layer, nn.Linear):
                xavier(layer.weight)
                if layer.bias is not None:
                    zeros(layer.bias)
        nn.initializer.Normal(0.0, self.d_model ** -0.5)(self.embedding.embedding.weight)

    def forward(self, memory: paddle.Tensor, targets: paddle.Tensor) -> paddle.Tensor:
        tgt = targets[:, :-1]
        x = self.positional_encoding(self.embedding(tgt))
        mask = causal_mask(x.shape[1])
        # No key-padding mask: padding only follows </s>, and the causal mask already keeps every
        # real position from seeing it (PaddleOCR's PP-OCRv4 head does the same).
        for layer in self.decoder:
            x = layer(x, memory, self_mask=mask)
        return self.tgt_word_prj(x)


class GTCBranch(nn.Layer):
    """``before_gtc`` (Flatten + FCTranspose to ``d_model``) + ``gtc_head`` (NRTR decoder).

    ``forward(features [N, C, H, W], targets [N, L]) -> logits [N, L-1, num_classes]``.
    ``num_classes`` is the GTC class count (``gtc_num_classes(charset)``).
    """

    def __init__(self, in_channels: int, num_classes: int, d_model: int = 384,
                 num_decoder_layers: int = 4, nhead: Optional[int] = None,
                 dim_feedforward: Optional[int] = None, residual_dropout: float = 0.1,
                 attention_dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes <= N_SPECIAL:
            raise ValueError(f"GTC num_classes {num_classes} leaves no room for characters "
                             f"after the {N_SPECIAL} special tokens")
        self.in_channels = in_channels
        self.num_classes = num_classes
        # Index 0 (Flatten) has no parameters; the projection sits at index 1 so its key is
        # ``before_gtc.1.fc.weight`` as in PaddleOCR.
        self.before_gtc = nn.Sequential(nn.Flatten(2), FCTranspose(in_channels, d_model))
        self.gtc_head = NRTRDecoderHead(num_classes, d_model, nhead, num_decoder_layers,
                                        dim_feedforward, attention_dropout, residual_dropout)

    def forward(self, features: paddle.Tensor, targets: paddle.Tensor) -> paddle.Tensor:
        return self.gtc_head(self.before_gtc(features), targets)


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------

def gtc_label_encode(labels: Sequence[str], charset: CharsetSpec,
                     max_len: int = DEFAULT_MAX_LEN) -> np.ndarray:
    """``[N, max_len]`` int64 rows ``<s> c1 .. cn </s> 0 ..`` in PaddleOCR's NRTR indices.

    ``max_len`` counts ``<s>`` and ``</s>`` (PaddleOCR's ``max_text_length``), so labels may have
    up to ``max_len - 2`` characters. Labels are normalised like CTC labels (``Charset.encode``).
    Unlike PaddleOCR, which silently drops unknown characters and skips over-long samples, this
    raises: a label the CTC branch would train on must not be changed behind its back here.
    """
    if max_len < 3:
        raise ValueError(f"max_len {max_len} leaves no room for a character between <s> and </s>")
    cs = load_charset(charset)
    out = np.zeros((len(labels), max_len), dtype=np.int64)
    for row, label in enumerate(labels):
        ids = cs.encode(label)
        if len(ids) > max_len - 2:
            raise DataError(f"label {label!r} has {len(ids)} characters; the GTC branch takes at "
                            f"most {max_len - 2} (max_len {max_len} includes <s> and </s>)")
        out[row, 0] = SOS
        out[row, 1:len(ids) + 1] = np.asarray(ids, dtype=np.int64) + CTC_TO_GTC_OFFSET
        out[row, len(ids) + 1] = EOS
    return out


def gtc_label_decode(indices: Union[np.ndarray, paddle.Tensor, Sequence[Sequence[int]]],
                     charset: CharsetSpec) -> List[str]:
    """Text of GTC index rows: a leading ``<s>`` is skipped, reading stops at ``</s>``, other
    special tokens and the spare slot are dropped (PaddleOCR's decoder would print them)."""
    cs = load_charset(charset)
    if isinstance(indices, paddle.Tensor):
        indices = indices.numpy()
    table = gtc_class_list(cs)
    texts = []
    for row in indices:
        chars = []
        for pos, idx in enumerate(int(i) for i in row):
            if idx == EOS:
                break
            if idx < N_SPECIAL or idx >= len(table) - 1:
                if not (pos == 0 and idx == SOS) and idx != PAD:
                    logger.debug("GTC decode: dropping token %d at position %d", idx, pos)
                continue
            chars.append(table[idx])
        texts.append("".join(chars))
    return texts


def gtc_lengths(targets: Union[np.ndarray, paddle.Tensor]) -> np.ndarray:
    """Character count of each label row (tokens between ``<s>`` and ``</s>``)."""
    arr = targets.numpy() if isinstance(targets, paddle.Tensor) else np.asarray(targets)
    is_eos = arr == EOS
    if not is_eos.any(axis=1).all():
        raise ValueError("a GTC label row has no </s> token")
    return is_eos.argmax(axis=1) - 1


def trim_gtc_targets(targets: Union[np.ndarray, paddle.Tensor]
                     ) -> Union[np.ndarray, paddle.Tensor]:
    """Cut label rows to the longest label in the batch plus ``<s>``/``</s>``.

    PaddleOCR does the same (``targets[:, :2 + max(length)]``); the dropped columns are all padding,
    so logits and loss are unchanged while the decoder runs on fewer positions.
    """
    width = int(gtc_lengths(targets).max()) + 2
    return targets[:, :width]


# --------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------

def gtc_loss(logits: paddle.Tensor, targets: paddle.Tensor,
             smoothing: float = 0.1) -> paddle.Tensor:
    """Label-smoothed cross-entropy of teacher-forced logits, averaged over non-padding tokens.

    ``logits`` [N, L-1, V] from ``GTCBranch(features, targets)``; ``targets`` [N, L] the same label
    rows, so position t is scored against ``targets[:, t+1]``. Smoothing follows PaddleOCR's
    NRTRLoss: the target class gets ``1 - eps`` and each of the other ``V - 1`` classes
    ``eps / (V - 1)``; positions whose target is padding (0) are ignored.
    """
    if logits.ndim != 3 or targets.ndim != 2:
        raise ValueError(f"expected logits [N, L-1, V] and targets [N, L], got "
                         f"{list(logits.shape)} and {list(targets.shape)}")
    if logits.shape[0] != targets.shape[0] or logits.shape[1] != targets.shape[1] - 1:
        raise ValueError(f"logits {list(logits.shape)} do not match targets {list(targets.shape)}:"
                         f" pass the same targets given to the forward pass")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    n_classes = logits.shape[-1]
    gold = targets[:, 1:].astype("int64").reshape([-1, 1])
    log_p = F.log_softmax(logits.reshape([-1, n_classes]).astype("float32"), axis=-1)
    gold_log_p = paddle.take_along_axis(log_p, gold, axis=1).squeeze(1)
    if smoothing > 0:
        # sum_c q_c log p_c with q = (1-eps) on gold, eps/(V-1) elsewhere, without a one-hot
        # [tokens, V] tensor: eps/(V-1) * sum(log p) + (1 - eps - eps/(V-1)) * log p_gold.
        off = smoothing / (n_classes - 1)
        per_token = -(off * log_p.sum(axis=1) + (1.0 - smoothing - off) * gold_log_p)
    else:
        per_token = -gold_log_p
    keep = (gold.squeeze(1) != PAD).astype(per_token.dtype)
    # Every row has </s>, so keep.sum() >= N; the clip only guards hand-made all-padding input.
    return (per_token * keep).sum() / keep.sum().clip(min=1.0)


# --------------------------------------------------------------------------------------------
# Dictionary change: carry pretrained GTC rows over to a new dictionary
# --------------------------------------------------------------------------------------------

def gtc_class_map(source_chars: Sequence[str], target_chars: Sequence[str]
                  ) -> Tuple[Dict[int, int], List[str]]:
    """``{target GTC index: source GTC index}`` for classes shared by two dictionaries, and the
    target characters with no source class (they keep their fresh initialisation).

    Special tokens, space and the spare slot map to themselves (space and spare by position from
    the end); characters map by value. Dictionaries are given without the space, as in ``Charset``.
    """
    n_src, n_dst = len(source_chars), len(target_chars)
    mapping = {i: i for i in range(N_SPECIAL)}
    src_index = {c: i + N_SPECIAL for i, c in enumerate(source_chars)}
    fresh = []
    for j, char in enumerate(target_chars, start=N_SPECIAL):
        if char in src_index:
            mapping[j] = src_index[char]
        else:
            fresh.append(char)
    mapping[n_dst + N_SPECIAL] = n_src + N_SPECIAL            # space
    mapping[n_dst + N_SPECIAL + 1] = n_src + N_SPECIAL + 1    # spare slot
    return mapping, fresh


def transfer_gtc_vocab(state: Mapping[str, np.ndarray], source_chars: Sequence[str],
                       target_chars: Sequence[str], init: Mapping[str, np.ndarray],
                       prefix: str = "head.") -> Tuple[Dict[str, np.ndarray], List[str]]:
    """Rewrite the vocabulary-sized GTC arrays of ``state`` (source dictionary) to the target
    dictionary, starting from ``init`` (the model's own arrays) for classes with no source.

    Only ``gtc_head.embedding.embedding.weight`` and ``gtc_head.tgt_word_prj.weight`` depend on the
    dictionary; everything else in the branch loads unchanged.
    """
    mapping, fresh = gtc_class_map(source_chars, target_chars)
    out = dict(state)
    for rel, axis in GTC_VOCAB_PARAMS.items():
        key = prefix + rel
        if key not in state:
            continue
        src, dst = np.asarray(state[key]), np.array(init[key], copy=True)
        n_src = len(source_chars) + N_SPECIAL + 2
        n_dst = len(target_chars) + N_SPECIAL + 2
        if src.shape[axis] != n_src:
            raise ValueError(f"{key}: {src.shape[axis]} classes in the checkpoint, but its "
                             f"dictionary gives {n_src}")
        if dst.shape[axis] != n_dst:
            raise ValueError(f"{key}: {dst.shape[axis]} classes in the model, but the target "
                             f"dictionary gives {n_dst}")
        d_idx = np.fromiter(mapping.keys(), dtype=np.int64)
        s_idx = np.fromiter(mapping.values(), dtype=np.int64)
        if axis == 0:
            dst[d_idx] = src[s_idx]
        else:
            dst[:, d_idx] = src[:, s_idx]
        out[key] = dst
    return out, fresh
