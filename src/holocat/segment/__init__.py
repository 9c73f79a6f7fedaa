"""Particle segmentation: tri-planar star-convex fusion, watershed baseline, slabs, metrics.

``segment_volume`` (``DESIGN.md``) normalises a reconstructed volume and segments it with the
2D star-convex network run on three planes and fused in 3D (``star_segment`` =
``predict_planes`` + ``fuse_probability``, the default) or with the classical watershed baseline
(``watershed_segment``). ``segment_slab`` / ``face_merge_pairs`` / ``stitch_tables`` /
``apply_lookup`` are the slab-parallel machinery of the workflow; ``matching`` / ``evaluate``
score instance labels.
"""

from __future__ import annotations

from .api import segment_volume
from .metrics import Matching, evaluate, matched_pairs, matching, matching_dataset
from .normalize import normalize_intensity
from .stitch import (
    Slab,
    apply_lookup,
    crop_core,
    drop_layers,
    face_merge_pairs,
    segment_slab,
    slab_ranges,
    stitch_labels,
    stitch_tables,
)
from .triplanar import PLANES, ProbabilityPredictor, fuse_probability, predict_planes, star_segment
from .watershed import otsu_threshold, watershed_segment

__all__ = [
    "Matching",
    "PLANES",
    "ProbabilityPredictor",
    "Slab",
    "apply_lookup",
    "crop_core",
    "drop_layers",
    "evaluate",
    "face_merge_pairs",
    "fuse_probability",
    "matching",
    "matched_pairs",
    "matching_dataset",
    "normalize_intensity",
    "otsu_threshold",
    "predict_planes",
    "segment_slab",
    "segment_volume",
    "slab_ranges",
    "stitch_labels",
    "star_segment",
    "stitch_tables",
    "watershed_segment",
]
