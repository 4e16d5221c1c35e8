"""CTC decoding of recogniser outputs: greedy, prefix beam search and grammar-constrained search.

Typical use::

    from vinocr.decode import build_decoder
    decoder = build_decoder({"method": "vin", "beam_size": 16, "check_digit": "auto"}, "vin")
    result = decoder.decode(probs)        # probs: softmax output [T, C] (or [N, T, C] -> list)
    result.text, result.confidence, result.satisfied

For a model with more classes than the characters of interest (e.g. the 6625-class PP-OCR head
read as a VIN), pass the model's own class list: ``build_decoder(cfg, classes=model_classes)``.
"""
from vinocr.decode.constrained import CompiledGrammar, ConstrainedDecoder, constrained_beam_search
from vinocr.decode.constraints import (CHECK_DIGIT_MODES, DEFAULT_PLATE_PATTERNS, Grammar,
                                       GrammarError, PlateGrammar, VinGrammar)
from vinocr.decode.ctc import (Beam, BeamSearchDecoder, DecodeError, DecodeResult, Decoder,
                               GreedyDecoder, SearchConstraint, ctc_forced_align, ctc_greedy,
                               ctc_log_prob, ctc_log_prob_batch, prefix_beam_search,
                               resolve_classes)
from vinocr.decode.factory import METHODS, build_decoder

__all__ = [
    "Beam", "BeamSearchDecoder", "CHECK_DIGIT_MODES", "CompiledGrammar", "ConstrainedDecoder",
    "DEFAULT_PLATE_PATTERNS", "DecodeError", "DecodeResult", "Decoder", "Grammar", "GrammarError",
    "GreedyDecoder", "METHODS", "PlateGrammar", "SearchConstraint", "VinGrammar",
    "build_decoder", "constrained_beam_search", "ctc_forced_align", "ctc_greedy", "ctc_log_prob",
    "ctc_log_prob_batch", "prefix_beam_search", "resolve_classes",
]
