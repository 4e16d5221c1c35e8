"""Model *parts* for the fine-tuning techniques: named groups of parameters, by ordered regexes.

A part is what a technique freezes, unfreezes or gives a learning-rate multiplier. The default
rules cover the built-in architectures (their parameter names do not overlap, so one ordered list
serves all of them):

==================  ====================================  ==============================  =================================
part                PP-OCRv4 (mobile and teacher)         PP-OCRv6 small                  CRNN
==================  ====================================  ==============================  =================================
``stem``            ``backbone.conv1``, ``blocks2``,      ``backbone.stem``,              ``backbone.features.0-1`` (conv 1)
                    ``blocks3``                           ``stages.0``, ``stages.1``
``early_backbone``  ``backbone.blocks4``                  ``backbone.stages.2``           ``backbone.features.2-4`` (convs 2-3)
``late_backbone``   ``backbone.blocks5``, ``blocks6``     ``backbone.stages.3``           ``backbone.features.5-9`` (convs 4-6)
``neck``            ``head.ctc_encoder`` (SVTR)           ``head.ctc_encoder`` (light)    ``head.rnn`` (BiLSTM)
``head``            ``head.ctc_head`` (CTC linear)        ``head.ctc_head``               ``head.fc``
``aux_head``        ``head.before_gtc``, ``head.gtc_head``  (none)                        (none)
==================  ====================================  ==============================  =================================

PP-OCRv6 small's split follows the resolution, as PP-OCRv4's does: the stem and the two
96-channel stages at H/4 are ``stem``, the 192-channel stage (seven blocks, the first halving the
height) is ``early_backbone``, the 384-channel stage ``late_backbone``.

The ``Technique.parts`` option replaces these rules with ``{part: regex}`` (in order; a regex is
searched in the structured parameter name, anchor it with ``^`` as the defaults do; the first
matching part wins). Every parameter must fall into a part: an unmatched one is an error naming it,
so a new architecture cannot silently leave parameters out of a schedule.

BatchNorm running statistics (``_mean`` / ``_variance``) are Paddle parameters that never train
(``stop_gradient`` always True). They belong to the part of their layer (so a part's BatchNorms
can be found) but are never made trainable and are not counted as parameters
(:mod:`vinocr.models.trainable`). The BatchNorms of frozen parts stay in eval mode while training:
the trainer sees to it for every technique.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import paddle

from vinocr.errors import ConfigError
from vinocr.models.layers import batchnorm_layers, running_stat_ids  # noqa: F401 (re-exported)
# One way to count and to freeze BatchNorms, shared with the engine (re-exported for techniques).
from vinocr.models.trainable import (count_params, eval_frozen_batchnorms,  # noqa: F401
                                     learnable_parameters, trainable_summary)

logger = logging.getLogger(__name__)

#: Keyword for "every part" in part lists (schedules, freeze lists).
ALL = "all"

#: (part, regex) rules tried in order; see the module docstring.
DEFAULT_RULES: Tuple[Tuple[str, str], ...] = (
    # PP-OCRv4: PPLCNetV3 backbone, SVTR neck, CTC linear, optional GTC branch
    ("stem", r"^backbone\.(conv1|blocks2|blocks3)\."),
    ("early_backbone", r"^backbone\.blocks4\."),
    ("late_backbone", r"^backbone\.(blocks5|blocks6)\."),
    ("neck", r"^head\.ctc_encoder\."),
    ("head", r"^head\.ctc_head\."),
    ("aux_head", r"^head\.(before_gtc|gtc_head)\."),
    # PP-OCRv6 small: PPLCNetV4 (stem + 4 stages); neck and head keys are PP-OCRv4's (above)
    ("stem", r"^backbone\.(stem|stages\.[01])\."),
    ("early_backbone", r"^backbone\.stages\.2\."),
    ("late_backbone", r"^backbone\.stages\.3\."),
    # CRNN: features is a Sequential of 6 conv blocks and 4 pools (indices 0-9): the first conv
    # is the stem, convs 2-3 the early half, convs 4-6 (index 5 onward) the late half.
    ("stem", r"^backbone\.features\.[01]\."),
    ("early_backbone", r"^backbone\.features\.[2-4]\."),
    ("late_backbone", r"^backbone\.features\.[5-9]\."),
    ("neck", r"^head\.rnn\."),
    ("head", r"^head\.fc\."),
)

#: Backbone parts in the default rules, input side first.
BACKBONE_PARTS: Tuple[str, ...] = ("stem", "early_backbone", "late_backbone")


class PartMap:
    """Ordered ``(part, regex)`` rules mapping structured parameter names to parts.

    Args:
        rules: the rules, tried in order (several rules may name the same part).
        key: the config key named in errors.
        custom: whether the rules come from the config (only changes error wording).
    """

    def __init__(self, rules: Sequence[Tuple[str, str]], key: str = "Technique.parts",
                 custom: bool = False) -> None:
        self.key, self.custom = key, custom
        self.rules: List[Tuple[str, "re.Pattern[str]"]] = []
        for part, pattern in rules:
            try:
                self.rules.append((part, re.compile(pattern)))
            except re.error as exc:
                raise ConfigError(f"{key}: part {part!r} has an invalid regex {pattern!r}: "
                                  f"{exc}") from None
        self.names: List[str] = list(dict.fromkeys(part for part, _ in rules))

    @classmethod
    def from_option(cls, parts: Optional[Mapping[str, Any]],
                    key: str = "Technique.parts") -> "PartMap":
        """The ``parts`` option (``{part: regex}``), or the default rules when it is None."""
        if parts is None:
            return cls(DEFAULT_RULES, key)
        if not isinstance(parts, Mapping) or not parts:
            raise ConfigError(f"{key}: expected a non-empty mapping part -> regex, got {parts!r}")
        rules = []
        for part, pattern in parts.items():
            if not isinstance(part, str) or not part or part == ALL:
                raise ConfigError(f"{key}: part names must be non-empty strings other than "
                                  f"{ALL!r}, got {part!r}")
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"{key}: part {part!r} needs a regex string, got {pattern!r}")
            rules.append((part, pattern))
        return cls(rules, key, custom=True)

    def part_of(self, name: str) -> Optional[str]:
        for part, regex in self.rules:
            if regex.search(name):
                return part
        return None

    def assign(self, model: paddle.nn.Layer) -> Dict[str, str]:
        """``{parameter name: part}`` for every parameter of ``model`` (statistics included);
        a parameter no rule matches is a ConfigError naming it."""
        out: Dict[str, str] = {}
        for name, _ in model.named_parameters():
            part = self.part_of(name)
            if part is None:
                hint = ("add a rule for it" if self.custom else
                        "the default parts do not know this architecture; set Technique.parts "
                        "{part: regex}")
                raise ConfigError(f"{self.key}: parameter {name!r} matches no part "
                                  f"({', '.join(self.names)}); {hint}")
            out[name] = part
        return out

    def params_by_part(self, model: paddle.nn.Layer) -> Dict[str, List[Tuple[str, paddle.Tensor]]]:
        """Learnable ``(name, parameter)`` lists per part, in part order (empty parts included)."""
        assigned = self.assign(model)
        out: Dict[str, List[Tuple[str, paddle.Tensor]]] = {part: [] for part in self.names}
        for name, p in learnable_parameters(model):
            out[assigned[name]].append((name, p))
        return out

    def resolve(self, parts: Any, key: str) -> List[str]:
        """A list of part names from config (a name or a list of names; ``all`` = every part),
        checked against the known parts."""
        if isinstance(parts, str):
            parts = [parts]
        if not isinstance(parts, (list, tuple)) or not all(isinstance(p, str) for p in parts):
            raise ConfigError(f"{key}: expected a part name or a list of them, got {parts!r}")
        out: List[str] = []
        for part in parts:
            if part == ALL:
                names = self.names
            elif part in self.names:
                names = [part]
            else:
                raise ConfigError(f"{key}: unknown part {part!r}; parts: "
                                  f"{', '.join(self.names)} (or {ALL!r})")
            out.extend(n for n in names if n not in out)
        return out


def set_trainable_parts(model: paddle.nn.Layer, partmap: PartMap,
                        trainable: Iterable[str]) -> bool:
    """Make exactly the parts in ``trainable`` train (``stop_gradient`` False) and freeze the rest;
    BatchNorm statistics are never touched. Returns whether any parameter changed."""
    wanted = set(trainable)
    changed = False
    for part, params in partmap.params_by_part(model).items():
        for _, p in params:
            stop = part not in wanted
            if bool(p.stop_gradient) != stop:
                p.stop_gradient = stop
                changed = True
    return changed
