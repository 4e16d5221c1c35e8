"""CTC decoding of recogniser outputs: greedy, prefix beam search and grammar-constrained search.

Typical use::

    from vinocr.decode import build_decoder
    decoder = build_decoder({"method": "vin", "beam_size": 16, "check_digit": "auto"}, "vin")
    result = decoder.decode(probs)        # probs: softmax output [T, C] (or [N, T, C] -> list)
    result.text, result.confidence, result.satisfied

For a model with more classes than the characters of interest (e.g. the 6625-class PP-OCR head
read as a VIN), pass the model's own class list: ``build_decoder(cfg, classes=model_classes)``.

Plates by registered format (:mod:`vinocr.decode.formats`)::

    decoder = build_decoder({"method": "plate", "formats": ["eu_de", "eu_fr"]}, "plate")
    result = decoder.decode(probs)
    result.text, result.format            # e.g. "BAB123", "eu_de"
"""
from vinocr.decode.constrained import CompiledGrammar, ConstrainedDecoder, constrained_beam_search
from vinocr.decode.constraints import (CHECK_DIGIT_MODES, DEFAULT_PLATE_PATTERNS, FormatGrammar,
                                       Grammar, GrammarError, PlateGrammar, VinGrammar)
from vinocr.decode.ctc import (Beam, BeamSearchDecoder, DecodeError, DecodeResult, Decoder,
                               GreedyDecoder, SearchConstraint, ctc_forced_align, ctc_greedy,
                               ctc_log_prob, ctc_log_prob_batch, prefix_beam_search,
                               resolve_classes)
from vinocr.decode.factory import METHODS, build_decoder, build_grammar, check_decode_config
from vinocr.decode.formats import FormatError, PlateFormat, resolve_formats
from vinocr.decode.regex import RegexError

__all__ = [
    "Beam", "BeamSearchDecoder", "CHECK_DIGIT_MODES", "CompiledGrammar", "ConstrainedDecoder",
    "DEFAULT_PLATE_PATTERNS", "DecodeError", "DecodeResult", "Decoder", "FormatError",
    "FormatGrammar", "Grammar", "GrammarError", "GreedyDecoder", "METHODS", "PlateFormat",
    "PlateGrammar", "RegexError", "SearchConstraint", "VinGrammar", "build_decoder", "build_grammar",
    "check_decode_config", "constrained_beam_search", "ctc_forced_align", "ctc_greedy",
    "ctc_log_prob", "ctc_log_prob_batch", "prefix_beam_search", "resolve_classes",
    "resolve_formats",
]
