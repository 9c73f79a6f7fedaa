"""Tomography engine: flat/dark correction, distance rescaling and registration, phase
retrieval (Paganin, multi-distance CTF, iterative refinement of the Fresnel forward model), centre of rotation and filtered back-projection.

Conventions (DESIGN.md, SCIENCE.md §1-3): SI metres in every argument, phase
phi = (2 pi / lambda) int(delta dz) >= 0 for matter, skimage's parallel-beam geometry for
:func:`fbp`. torch and astra are imported only when a function needs them, so importing
this package is cheap.
"""

from __future__ import annotations

from holocat.tomo.centre import center_from_sinogram, estimate_center, nearest_opposite
from holocat.tomo.distances import (
    apply_shift,
    prepare_distances,
    register_distances,
    rescale_to_reference,
)
from holocat.tomo.fbp import BACKENDS, FILTERS, fbp
from holocat.tomo.flatfield import flat_field
from holocat.tomo.phase import ctf_multi, paganin, phase_to_delta
from holocat.tomo.refine import predict_intensities, refine_phase
from holocat.tomo.rings import RING_METHODS, remove_rings, ring_metric

__all__ = [
    "BACKENDS",
    "FILTERS",
    "RING_METHODS",
    "apply_shift",
    "center_from_sinogram",
    "ctf_multi",
    "estimate_center",
    "fbp",
    "flat_field",
    "nearest_opposite",
    "paganin",
    "phase_to_delta",
    "predict_intensities",
    "prepare_distances",
    "refine_phase",
    "remove_rings",
    "register_distances",
    "rescale_to_reference",
    "ring_metric",
]
