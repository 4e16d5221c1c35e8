"""Build a decoder from a config mapping.

Example config (YAML)::

    decode:
      method: vin          # greedy | beam | vin | plate
      beam_size: 16
      check_digit: auto    # vin: auto | always | never
      year_rule: true      # vin: position 10 must be a model-year code
      # patterns: [LLLNNNN, LLLNLNN]   # plate: slot patterns (L letter, N digit, A either)
      # formats: [eu_de, eu_fr]        # plate: registered formats/groups (vinocr.decode.formats)
      # prune_logp: -12.0              # beam / vin / plate: skip classes below this log-prob

Unknown keys and methods are errors naming the key and the valid choices. A key that belongs to
another method (e.g. ``patterns`` with ``method: vin``) is accepted and ignored, so one config
section with defaults for every method stays valid whichever method is picked.

``formats`` wins over ``patterns`` when both are set: the plate configs' base sets ``patterns``,
and ``-o Decode.formats=[us]`` on top of it must mean US plates, not US plus Brazil.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from vinocr.charset import Charset
from vinocr.decode.constrained import ConstrainedDecoder
from vinocr.decode.constraints import (CHECK_DIGIT_MODES, DEFAULT_PLATE_PATTERNS, FormatGrammar,
                                       Grammar, GrammarError, PlateGrammar, VinGrammar)
from vinocr.decode.ctc import BeamSearchDecoder, Decoder, GreedyDecoder
from vinocr.decode.formats import FormatError
from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)

METHODS: Tuple[str, ...] = ("greedy", "beam", "vin", "plate")
DEFAULTS: Dict[str, Any] = {
    "method": "greedy",
    "beam_size": 16,
    "prune_logp": None,
    "check_digit": "auto",
    "year_rule": False,
    "patterns": list(DEFAULT_PLATE_PATTERNS),
    "formats": None,
}
_METHOD_KEYS: Dict[str, Tuple[str, ...]] = {
    "greedy": ("method",),
    "beam": ("method", "beam_size", "prune_logp"),
    "vin": ("method", "beam_size", "prune_logp", "check_digit", "year_rule"),
    "plate": ("method", "beam_size", "prune_logp", "patterns", "formats"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def build_decoder(cfg: Optional[Mapping[str, Any]], charset: Union[Charset, str, None] = None,
                  classes: Optional[Sequence[str]] = None, key: str = "decode") -> Decoder:
    """A decoder for ``cfg`` (see the module docstring); ``key`` prefixes error messages.

    Args:
        cfg: the decode section; None or {} gives a greedy decoder.
        charset: the model's charset (or built-in name), used when ``classes`` is None.
        classes: explicit class index -> character list of the model.
    """
    method, opts, grammar = _parse(cfg, key)
    if method == "greedy":
        return GreedyDecoder(charset, classes)
    if method == "beam":
        return BeamSearchDecoder(charset, classes, beam_size=opts["beam_size"],
                                 prune_logp=opts["prune_logp"])
    assert grammar is not None
    decoder = ConstrainedDecoder(grammar, charset, classes, beam_size=opts["beam_size"],
                                 prune_logp=opts["prune_logp"])
    decoder.name = method
    return decoder


def build_grammar(cfg: Optional[Mapping[str, Any]], key: str = "decode") -> Optional[Grammar]:
    """The grammar a decode section constrains reads to (VIN, plate formats), None for greedy/beam.

    Verifiers (e.g. pseudo-labelling) check reads against the same grammar the decoder searches.
    """
    return _parse(cfg, key)[2]


def check_decode_config(cfg: Optional[Mapping[str, Any]], key: str = "decode") -> None:
    """Validate a decode section (keys, values, format names) without a model's class list."""
    _parse(cfg, key)


def _parse(cfg: Optional[Mapping[str, Any]], key: str
           ) -> Tuple[str, Dict[str, Any], Optional[Grammar]]:
    """``(method, options, grammar)`` of a decode section; the grammar is None for greedy/beam."""
    cfg = dict(cfg or {})
    for k in cfg:
        if k not in DEFAULTS:
            raise ConfigError(f"{key}: unknown key {k!r} (valid: {', '.join(sorted(DEFAULTS))})")
    opts = {**DEFAULTS, **cfg}
    method = opts["method"]
    if method not in METHODS:
        raise ConfigError(f"{key}.method: unknown method {method!r} (valid: {', '.join(METHODS)})")
    unused = sorted(k for k in cfg if k not in _METHOD_KEYS[method])
    if unused:
        logger.debug("%s: keys %s are not used by method %r", key, ", ".join(unused), method)

    beam_size = opts["beam_size"]
    if not _is_int(beam_size) or beam_size < 1:
        raise ConfigError(f"{key}.beam_size: expected a positive int, got {beam_size!r}")
    prune = opts["prune_logp"]
    if prune is not None and (not isinstance(prune, (int, float)) or isinstance(prune, bool)
                              or prune > 0):
        raise ConfigError(f"{key}.prune_logp: expected a log-probability <= 0 or null, "
                          f"got {prune!r}")
    opts["prune_logp"] = None if prune is None else float(prune)
    check = opts["check_digit"]
    if check not in CHECK_DIGIT_MODES:
        raise ConfigError(f"{key}.check_digit: unknown mode {check!r} "
                          f"(valid: {', '.join(CHECK_DIGIT_MODES)})")
    year_rule = opts["year_rule"]
    if not isinstance(year_rule, bool):
        raise ConfigError(f"{key}.year_rule: expected true or false, got {year_rule!r}")
    patterns = opts["patterns"]
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, (list, tuple)):
        raise ConfigError(f"{key}.patterns: expected a list of patterns, got {patterns!r}")
    formats = opts["formats"]
    if isinstance(formats, str):
        formats = [formats]
    if formats is not None and (not isinstance(formats, (list, tuple)) or not formats
                                or not all(isinstance(f, str) for f in formats)):
        raise ConfigError(f"{key}.formats: expected a list of format names (e.g. [eu_de, eu_fr] "
                          f"or [us]), got {formats!r}")

    if method in ("greedy", "beam"):
        return method, opts, None
    try:
        if method == "vin":
            return method, opts, VinGrammar(check_digit=check, year_rule=year_rule)
        if formats is not None:
            if "patterns" in cfg:
                logger.debug("%s: formats %s given, so patterns %s are not used", key,
                            list(formats), list(patterns))
            try:
                return method, opts, FormatGrammar(list(formats))
            except FormatError as exc:  # unknown name (GrammarErrors name their key already)
                raise ConfigError(f"{key}.formats: {exc}") from None
        return method, opts, PlateGrammar(list(patterns))
    except GrammarError as exc:
        raise ConfigError(f"{key}.{exc}") from None
