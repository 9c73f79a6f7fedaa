"""Tests of holocat.segment.stitch: slab ranges, slab segmentation, face merging, union-find
tables, lookup and the full slab-vs-whole-volume comparison on packed spheres."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from segment_phantoms import packed_spheres

from holocat.segment import (
    apply_lookup,
    crop_core,
    face_merge_pairs,
    matching,
    normalize_intensity,
    otsu_threshold,
    segment_slab,
    slab_ranges,
    stitch_labels,
    stitch_tables,
    watershed_segment,
)

MATRIX, PARTICLE = 0.3, 1.0


def segment_in_slabs(volume, *, slab_rows, halo, **params):
    slabs = [
        segment_slab(volume[s.read_start : s.read_stop], halo=s.halo, **params)
        for s in slab_ranges(volume.shape[0], slab_rows=slab_rows, halo=halo)
    ]
    return slabs, stitch_labels(slabs)


@pytest.fixture(scope="module")
def packed_volume():
    """96 x 64 x 64 volume of ~55 packed spheres (r 6-9 vox), blurred, light noise; normalised."""
    rng = np.random.default_rng(777)
    labels, centres, radii = packed_spheres((96, 64, 64), 55, rng, min_gap=0.9)
    image = np.where(labels > 0, PARTICLE, MATRIX).astype(np.float32)
    image = ndi.gaussian_filter(image, 1.0) + rng.normal(0, 0.04, image.shape).astype(np.float32)
    return normalize_intensity(image), labels, centres, radii


# --------------------------------------------------------------------------- small pieces


def test_slab_ranges_cover_volume_once():
    slabs = slab_ranges(100, slab_rows=32, halo=8)
    assert [(s.core_start, s.core_stop) for s in slabs] == [(0, 32), (32, 64), (64, 96), (96, 100)]
    assert [(s.read_start, s.read_stop) for s in slabs] == [(0, 40), (24, 72), (56, 100), (88, 100)]
    assert [s.halo for s in slabs] == [(0, 8), (8, 8), (8, 4), (8, 0)]
    with pytest.raises(ValueError, match="slab_rows"):
        slab_ranges(10, slab_rows=0, halo=2)
    with pytest.raises(ValueError, match="halo"):
        slab_ranges(10, slab_rows=4, halo=-1)


def test_crop_core_drops_halo_and_renumbers():
    labels = np.zeros((10, 4, 4), np.uint32)
    labels[0:2] = 7  # only in the lower halo: disappears
    labels[1:5, 0, 0] = 9  # crosses into the core: keeps its core part
    labels[8:10, 3, 3] = 4  # only in the upper halo
    labels[5, 2, 2] = 12
    core = crop_core(labels, halo=(2, 3))
    assert core.shape == (5, 4, 4) and core.dtype == np.uint32
    assert sorted(np.unique(core).tolist()) == [0, 1, 2]
    np.testing.assert_array_equal(core[0:3, 0, 0], [1, 1, 1])
    assert core[3, 2, 2] == 2
    with pytest.raises(ValueError, match="halo"):
        crop_core(labels, halo=(5, 5))
    with pytest.raises(ValueError, match="halo"):
        crop_core(labels, halo=(1,))


def test_face_merge_pairs_overlap_fraction_and_one_to_one():
    below = np.zeros((6, 10), np.int32)
    above = np.zeros((6, 10), np.int32)
    below[0:2, 0:4] = 1  # area 8
    above[0:2, 0:2] = 5  # area 4, fully on label 1: 4 / min(8, 4) = 1 -> merge
    below[3:6, 0:4] = 2  # area 12
    above[3:6, 3:10] = 6  # touches 2 on 3 px: 3 / min(12, 21) = 0.25 -> no merge
    below[0:3, 6:10] = 3  # area 12; label 7 covers it (and more) on 12 px
    above[0:3, 5:10] = 7  # area 15: 12 / 12 = 1 -> merge
    pairs = face_merge_pairs(below, above, min_overlap=0.5)
    assert pairs.dtype == np.int64 and pairs.shape == (2, 2)
    assert pairs.tolist() == [[1, 5], [3, 7]]
    assert face_merge_pairs(below, above, min_overlap=0.2).tolist() == [[1, 5], [2, 6], [3, 7]]
    # one-to-one: label 1 above touches both 1 (6 px) and 2 (4 px) below, both fully
    b2 = np.zeros((2, 10), np.int32)
    a2 = np.ones((2, 10), np.int32)
    b2[:, 0:3], b2[:, 5:7] = 1, 2
    assert face_merge_pairs(b2, a2).tolist() == [[1, 1]]
    assert face_merge_pairs(np.zeros((3, 3), int), np.ones((3, 3), int)).shape == (0, 2)


def test_face_merge_pairs_rejects_bad_faces():
    face = np.ones((4, 4), np.int32)
    with pytest.raises(ValueError, match="face_below, face_above"):
        face_merge_pairs(face, np.ones((4, 5), np.int32))
    with pytest.raises(ValueError, match="face_below"):
        face_merge_pairs(face.astype(float), face)
    with pytest.raises(ValueError, match="face_above"):
        face_merge_pairs(face, -face)
    with pytest.raises(ValueError, match="min_overlap"):
        face_merge_pairs(face, face, min_overlap=0.0)


def test_stitch_tables_union_find_and_first_appearance_order():
    # slab 0: 1..3, slab 1: 1..2, slab 2: 1..3. Particle A = (0,2)-(1,1)-(2,3) spans 3 slabs;
    # B = (0,3)-(1,2); everything else stands alone.
    luts = stitch_tables([3, 2, 3], [np.array([[2, 1], [3, 2]]), np.array([[1, 3]])])
    assert [lut.tolist() for lut in luts] == [[0, 1, 2, 3], [0, 2, 3], [0, 4, 5, 2]]
    assert all(lut.dtype == np.uint32 for lut in luts)
    # two chains joined only in the last slab (0:1-1:1-2:1 and 0:2-1:2-2:1) become one id
    luts = stitch_tables([2, 2, 1], [np.array([[1, 1], [2, 2]]), np.array([[1, 1], [2, 1]])])
    assert [lut.tolist() for lut in luts] == [[0, 1, 1], [0, 1, 1], [0, 1]]
    # empty slabs and no pairs
    luts = stitch_tables([0, 2], [np.zeros((0, 2), np.int64)])
    assert [lut.tolist() for lut in luts] == [[0], [0, 1, 2]]


def test_stitch_tables_rejects_inconsistent_input():
    with pytest.raises(ValueError, match="pairs_per_boundary: expected 2"):
        stitch_tables([1, 1, 1], [np.array([[1, 1]])])
    with pytest.raises(ValueError, match=r"pairs_per_boundary\[0\]"):
        stitch_tables([1, 1], [np.array([[2, 1]])])
    with pytest.raises(ValueError, match="counts"):
        stitch_tables([1, -1], [np.zeros((0, 2), int)])


def test_apply_lookup_values_and_errors():
    labels = np.array([[0, 1], [2, 2]], np.uint16)
    out = apply_lookup(labels, np.array([0, 7, 3]))
    assert out.dtype == np.uint32
    assert out.tolist() == [[0, 7], [3, 3]]
    with pytest.raises(ValueError, match="labels: max label 2"):
        apply_lookup(labels, np.array([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        apply_lookup(labels.astype(np.float32), np.array([0, 1, 2]))


# --------------------------------------------------------------------------- full pipeline


def test_three_slabs_match_one_slab(packed_volume):
    volume, truth, centres, radii = packed_volume
    # spheres crossing the two slab boundaries (z = 32, 64): the test must exercise stitching
    crossing = [
        i + 1
        for i, (c, r) in enumerate(zip(centres, radii, strict=True))
        if min(abs(c[0] - 32), abs(c[0] - 64)) < r - 1
    ]
    assert len(crossing) >= 8
    threshold = otsu_threshold(volume)  # one threshold for every slab, as the workflow does
    whole = watershed_segment(volume, threshold=threshold)
    slabs, stitched = segment_in_slabs(volume, slab_rows=32, halo=8, threshold=threshold)
    assert stitched.shape == volume.shape and stitched.dtype == np.uint32
    assert sorted(np.unique(stitched))[1:] == list(range(1, int(stitched.max()) + 1))
    m = matching(whole, stitched, thresh=0.5)
    assert m.accuracy >= 0.99
    # every sphere is one label: one-to-one matches with the ground truth, nothing extra
    for labels in (whole, stitched):
        m_true = matching(truth, labels, thresh=0.5)
        assert (m_true.tp, m_true.fp, m_true.fn) == (truth.max(), 0, 0)
    for i in crossing:
        ids = np.unique(stitched[(truth == i) & (stitched > 0)], return_counts=True)
        assert ids[1].max() >= 0.95 * ids[1].sum()
    # concatenating without stitching gives the crossing spheres two labels each
    naive = np.concatenate(
        [s + np.uint32(sum(int(t.max()) for t in slabs[:k])) * (s > 0) for k, s in enumerate(slabs)]
    )
    assert matching(truth, naive, thresh=0.5).fp >= len(crossing) // 2


@pytest.mark.parametrize("centre_z", [32.0, 31.5, 26.0, 37.5])
def test_sphere_cut_at_boundary_gets_one_label(centre_z):
    """A sphere centred on the boundary plane, or crossing it by a thin cap on either side."""
    shape = (64, 40, 40)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    sphere = (z - centre_z) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 7.0**2
    assert sphere[:32].any() and sphere[32:].any()
    volume = np.where(sphere, PARTICLE, MATRIX).astype(np.float32)
    params = dict(threshold=0.65, smooth_sigma_vox=0.0, min_volume_vox=50)
    slabs, stitched = segment_in_slabs(volume, slab_rows=32, halo=8, **params)
    assert [int(s.max()) for s in slabs] == [1, 1]
    assert stitched.max() == 1
    np.testing.assert_array_equal(stitched > 0, sphere)


def test_segment_slab_validates_and_uses_custom_function():
    volume = np.zeros((12, 8, 8), np.float32)
    volume[3:9, 2:6, 2:6] = 1.0

    def threshold_cc(v, *, level):
        return ndi.label(v > level)[0].astype(np.uint32)

    core = segment_slab(volume, halo=(4, 2), segment_fn=threshold_cc, level=0.5)
    assert core.shape == (6, 8, 8) and core.dtype == np.uint32
    np.testing.assert_array_equal(core > 0, volume[4:10] > 0.5)
    with pytest.raises(ValueError, match="halo"):
        segment_slab(volume, halo=(6, 6), segment_fn=threshold_cc, level=0.5)
    with pytest.raises(ValueError, match="volume_with_halo"):
        segment_slab(volume[0], halo=(0, 0))
    with pytest.raises(ValueError, match="segment_fn"):
        segment_slab(volume, halo=(1, 1), segment_fn=lambda v: np.zeros((2, 2), np.uint32))
