"""Synthetic training data: VIN text-line crops in five real-world styles, Brazilian / Mercosur
plates and LRLPR-26-style plate tracks (HR + separately captured LR frames).

Everything is deterministic by seed (sample ``i`` uses ``numpy.random.default_rng([seed, i])``).
Command line: ``vinocr-synth vin ...`` / ``vinocr-synth plates ...`` (:mod:`vinocr.cli.synth`).
"""
from vinocr.data.synth.fonts import FontSpec, list_fonts
from vinocr.data.synth.plates import (LAYOUT_NAMES, PLATE_LAYOUTS, plate_matches_layout,
                                      random_plate, render_plate, write_track)
from vinocr.data.synth.vin_render import STYLES, render_vin
from vinocr.data.synth.vin_text import WMIS, random_vin
from vinocr.data.synth.writer import (encode_png, generate_plate_tracks, generate_vin_dataset,
                                      make_vin_sample)

__all__ = ["FontSpec", "list_fonts", "LAYOUT_NAMES", "PLATE_LAYOUTS", "plate_matches_layout",
           "random_plate", "render_plate", "write_track", "STYLES", "render_vin", "WMIS",
           "random_vin", "encode_png", "generate_plate_tracks", "generate_vin_dataset",
           "make_vin_sample"]
