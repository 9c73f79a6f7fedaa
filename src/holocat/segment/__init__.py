"""Particle segmentation: watershed baseline, slab segmentation and stitching, metrics.

``segment_volume`` (``DESIGN.md``) normalises a reconstructed volume and segments it; today
with the classical watershed baseline (``watershed_segment``), later with the star-convex
model. ``segment_slab`` / ``face_merge_pairs`` / ``stitch_tables`` / ``apply_lookup`` are the
slab-parallel machinery of the workflow; ``matching`` / ``evaluate`` score instance labels.
"""

from __future__ import annotations

from .metrics import Matching, evaluate, matched_pairs, matching, matching_dataset
from .normalize import normalize_intensity
from .stitch import (
    Slab,
    apply_lookup,
    crop_core,
    face_merge_pairs,
    segment_slab,
    slab_ranges,
    stitch_labels,
    stitch_tables,
)
from .watershed import otsu_threshold, segment_volume, watershed_segment

__all__ = [
    "Matching",
    "Slab",
    "apply_lookup",
    "crop_core",
    "evaluate",
    "face_merge_pairs",
    "matching",
    "matched_pairs",
    "matching_dataset",
    "normalize_intensity",
    "otsu_threshold",
    "segment_slab",
    "segment_volume",
    "slab_ranges",
    "stitch_labels",
    "stitch_tables",
    "watershed_segment",
]
