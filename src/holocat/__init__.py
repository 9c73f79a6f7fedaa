"""holocat: X-ray phase-contrast holotomography of composite battery cathodes.

Raw multi-distance scans -> phase retrieval -> 3D reconstruction -> particle segmentation ->
particle attributes (Table S1 of Li et al., Science 376, 517 (2022)) -> interpretable ML,
beside finite-element simulations of the particle network.

Subpackages are imported lazily so that ``import holocat.attributes`` works in an environment
that lacks, say, torch: ``holocat.tomo``, ``holocat.segment``, ``holocat.attributes``,
``holocat.analysis``, ``holocat.fem``, ``holocat.simulate``, ``holocat.io``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("io", "simulate", "tomo", "segment", "attributes", "analysis", "fem", "optics")

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"holocat.{name}")
    raise AttributeError(f"module 'holocat' has no attribute {name!r}")
