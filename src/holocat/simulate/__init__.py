"""Synthetic electrode phantoms and the multi-distance holotomography forward model.

``electrode``/``Electrode``/``planted_damage``/``DamageModel`` build the phantom with ground truth
(:mod:`holocat.simulate.electrode`); ``load_materials``/``Material`` read the δ/β table
(:mod:`holocat.simulate.materials`); ``holotomo``, ``detector_holograms``, ``holograms``,
``project`` and ``scan_geometry`` are the forward model (:mod:`holocat.simulate.holotomo`).

The imports are eager on purpose: ``from .electrode import electrode`` rebinds the package
attribute ``electrode`` (first set to the submodule by the import system) to the function, and a
later ``import holocat.simulate.electrode`` does not set it back.
"""

from __future__ import annotations

from holocat.simulate.electrode import DamageModel, Electrode, electrode, planted_damage
from holocat.simulate.holotomo import (
    DEFAULT_FOCUS_TO_DETECTOR_M,
    DEFAULT_FOCUS_TO_SAMPLE_M,
    HoloScan,
    ScanGeometry,
    detector_holograms,
    holograms,
    holotomo,
    project,
    scan_geometry,
)
from holocat.simulate.materials import Material, load_materials

__all__ = [
    "electrode",
    "Electrode",
    "planted_damage",
    "DamageModel",
    "load_materials",
    "Material",
    "DEFAULT_FOCUS_TO_SAMPLE_M",
    "DEFAULT_FOCUS_TO_DETECTOR_M",
    "HoloScan",
    "ScanGeometry",
    "scan_geometry",
    "project",
    "holograms",
    "detector_holograms",
    "holotomo",
]
