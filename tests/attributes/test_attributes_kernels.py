"""Compiled kernels against their array definitions: scipy's Gaussian passes and EDT thresholds.

The row lengths straddle the 64-bit words of the packed morphology (63, 64, 65, 130 voxels) and
the masks include empty rows, full rows and single voxels at the array faces.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from holocat.attributes._kernels import ball_morphology, fill_holes, gaussian_of_mask


def _reference_gaussian(mask, sigma):
    field = mask.astype(np.float64)
    for axis in range(3):
        field = ndi.gaussian_filter1d(field, sigma, axis=axis, mode="constant", truncate=4.0)
    return field


def _masks(nx):
    rng = np.random.default_rng(nx)
    blobs = ndi.gaussian_filter(rng.random((21, 18, nx)), 1.5) > 0.5
    sparse = rng.random((9, 11, nx)) > 0.93
    faces = np.zeros((7, 6, nx), dtype=bool)
    faces[0, 0, 0] = faces[-1, -1, -1] = faces[3, 2, :] = True  # corners and one full row
    return blobs, sparse, faces, np.zeros((4, 5, nx), dtype=bool)


@pytest.mark.parametrize("nx", [1, 5, 63, 64, 65, 130])
@pytest.mark.parametrize("sigma", [0.6, 1.0, 2.0, 2.7])
def test_gaussian_of_mask_equals_scipy_passes(nx, sigma):
    # runs shorter and longer than the kernel (with and without a plateau of exactly 1)
    for mask in _masks(nx):
        got = gaussian_of_mask(mask, sigma)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, _reference_gaussian(mask, sigma), atol=2e-6)


@pytest.mark.parametrize("nx", [1, 5, 63, 64, 65, 130])
@pytest.mark.parametrize("radius", [1.0, 1.5, 2.5, 3.2, 5.1])
def test_ball_morphology_equals_edt_thresholds(nx, radius):
    for mask in _masks(nx):
        dilated = ball_morphology(mask, radius, erode=False)
        assert dilated.dtype == bool and dilated.shape == mask.shape
        # (the EDT of a mask without background is undefined: an empty mask dilates to nothing)
        reference = ndi.distance_transform_edt(~mask) <= radius if mask.any() else mask
        np.testing.assert_array_equal(dilated, reference)
        # erosion: outside the array counts as background
        padded = np.pad(mask, 1)
        reference = (ndi.distance_transform_edt(padded) > radius)[1:-1, 1:-1, 1:-1]
        np.testing.assert_array_equal(ball_morphology(mask, radius, erode=True), reference)


def test_ball_smaller_than_a_voxel_step_is_the_identity():
    mask = np.random.default_rng(0).random((5, 6, 7)) > 0.5
    for erode in (False, True):
        out = ball_morphology(mask, 0.9, erode=erode)
        np.testing.assert_array_equal(out, mask)
        assert out is not mask


@pytest.mark.parametrize("seed", range(6))
def test_fill_holes_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 40, 3))
    mask = ndi.gaussian_filter(rng.random(shape), 1.0) > rng.uniform(0.45, 0.55)
    np.testing.assert_array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))
    shell = np.zeros((12, 13, 14), dtype=bool)
    shell[2:10, 2:11, 2:12] = True
    shell[4:8, 4:9, 4:10] = False  # a closed cavity, filled
    shell[0:3, 6, 6] = False  # a tunnel from the face into the wall: stays open
    np.testing.assert_array_equal(fill_holes(shell), ndi.binary_fill_holes(shell))


def test_window_mean_is_the_fixed_point_of_the_window():
    from holocat.attributes._kernels import window_mean

    values = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 10.0])
    # window |v - 1| < 1.2 holds 0..2 (mean 1.0): a fixed point at once
    assert window_mean(values, 1.0, 1.2, 8, 1e-12) == pytest.approx(1.0)
    # from 9: the window holds 10 only, then stays there
    assert window_mean(values, 9.0, 1.2, 8, 1e-12) == pytest.approx(10.0)
    # an empty window returns the start
    assert window_mean(values, 5.0, 0.5, 8, 1e-12) == 5.0


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_block_counts_equal_padded_block_sums(k):
    from holocat.attributes._kernels import block_counts

    labels = np.random.default_rng(k).integers(0, 4, (13, 8, 11)).astype(np.uint32)
    for arr in (labels, labels > 0):
        pad = [(0, (-n) % k) for n in arr.shape]
        m = np.pad(arr > 0, pad)
        mz, my, mx = (n // k for n in m.shape)
        expected = m.reshape(mz, k, my, k, mx, k).sum(axis=(1, 3, 5))
        got = block_counts(arr, k)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.uint32, np.int64])
def test_code_labels_marks_self_and_others_in_a_view(dtype):
    from holocat.attributes._kernels import code_labels

    labels = np.random.default_rng(1).integers(0, 5, (6, 7, 8)).astype(dtype)
    codes = np.full((8, 9, 10), 9, dtype=np.uint8)
    codes[1:7, 1:8, 1:9] = 0
    code_labels(labels[:, ::-1], 3, 1, 2, codes[1:7, 1:8, 1:9])  # strided in and out
    expected = np.where(labels[:, ::-1] == 3, 1, np.where(labels[:, ::-1] != 0, 2, 0))
    np.testing.assert_array_equal(codes[1:7, 1:8, 1:9], expected)
    assert np.all(codes[0] == 9)  # outside the view: untouched


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.uint32, np.int64, ">i4"])
def test_label_boxes_and_range_equal_find_objects(dtype):
    from holocat.attributes._kernels import label_boxes, label_range

    rng = np.random.default_rng(7)
    lab = np.zeros((23, 31, 70), dtype=np.int64)
    for label in (1, 2, 3, 5, 9):  # 4, 6, 7, 8 absent
        z, y, x = (rng.integers(0, n, 40) for n in lab.shape)
        lab[z, y, x] = label
    lab[0, 0, 0] = lab[-1, -1, -1] = 9  # the array's first and last voxels
    lab[11, 4, :] = 2  # a full row
    lab = lab.astype(dtype)
    for arr in (lab, lab[:, 3:, ::2]):  # and a strided view
        assert label_range(arr) == (int(arr.min()), int(arr.max()))
        assert label_boxes(arr, 9) == ndi.find_objects(arr, 9)
        assert label_boxes(arr, 11)[9:] == [None, None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_count_nonfinite_counts_nan_and_inf(dtype):
    from holocat.attributes._kernels import count_nonfinite

    vol = np.zeros((5, 6, 7), dtype=dtype)
    assert count_nonfinite(vol) == 0
    vol[0, 0, 0], vol[4, 5, 6], vol[2, 3, 1] = np.nan, np.inf, -np.inf
    assert count_nonfinite(vol) == 3
    assert count_nonfinite(vol[:, :, 1:]) == 2


def _neighbour_any(a, fill):
    """Whether any 6-neighbour is True, by padding (outside the array counts as ``fill``)."""
    p = np.pad(a, 1, constant_values=fill)
    return (
        p[:-2, 1:-1, 1:-1]
        | p[2:, 1:-1, 1:-1]
        | p[1:-1, :-2, 1:-1]
        | p[1:-1, 2:, 1:-1]
        | p[1:-1, 1:-1, :-2]
        | p[1:-1, 1:-1, 2:]
    )


@pytest.mark.parametrize("nx", [1, 5, 64])
def test_boundary_and_wall_indices_equal_the_shifted_mask_definitions(nx):
    from holocat.attributes._kernels import boundary_indices, wall_indices

    for mask, wider in zip(_masks(nx), _masks(nx + 1), strict=True):
        other = wider[..., :nx]  # another mask of the same shape
        boundary = mask & _neighbour_any(~mask, True)
        got = boundary_indices(mask)
        np.testing.assert_array_equal(got, np.flatnonzero(boundary))
        walls = mask & _neighbour_any(other, False)
        got = wall_indices(mask, other)
        np.testing.assert_array_equal(got, np.flatnonzero(walls))


@pytest.mark.parametrize("nx", [1, 5, 64, 130])
def test_mask_box_is_the_bounding_box(nx):
    from holocat.attributes._kernels import mask_box

    for mask in _masks(nx):
        for m in (mask, mask[:, ::-1], mask[1:, :, : max(1, nx - 2)]):  # and strided views
            got = mask_box(m)
            if not m.any():
                assert got is None
                continue
            idx = np.nonzero(m)
            np.testing.assert_array_equal(got[0], [i.min() for i in idx])
            np.testing.assert_array_equal(got[1], [i.max() + 1 for i in idx])
