"""The registry of licence-plate formats (issue 18): one module per region family.

``resolve_formats(["eu_de", "us"])`` gives the :class:`PlateFormat` records a
:class:`~vinocr.decode.constraints.FormatGrammar` compiles into one automaton; ``Decode.formats``
in a config does the same (``-o Decode.formats=[eu_de, eu_fr]``). Groups: ``br`` (today's two
Brazilian layouts), ``cn``, ``eu`` (and per country ``eu_fr``, ``eu_es``, ``eu_nl``), ``uk``,
``europe``, ``us``, ``in``, ``all``. See each region module's docstring for what its regexes
simplify.
"""
from vinocr.decode.formats.base import (ALL, FormatError, PlateFormat, get_format, group_members,
                                        list_formats, list_groups, register_format,
                                        register_group, resolve_formats)
from vinocr.decode.formats import br, cn, europe, us, india, generic  # noqa: E402,F401  (register)

__all__ = ["ALL", "FormatError", "PlateFormat", "get_format", "group_members", "list_formats",
           "list_groups", "register_format", "register_group", "resolve_formats"]
