"""Tests of holocat.segment.normalize and holocat.segment.watershed.

Oracles: analytic phantoms (packed spheres with known labels), numpy percentiles,
skimage's Otsu threshold, h-maxima and ball closing, and the metrics of holocat.segment.metrics.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from segment_phantoms import packed_spheres
from skimage.filters import threshold_otsu
from skimage.morphology import ball, h_maxima

from holocat.segment import (
    evaluate,
    matching,
    normalize_intensity,
    otsu_threshold,
    segment_volume,
    watershed_segment,
)
from holocat.segment.watershed import _close_ball, _h_maxima

MATRIX, PARTICLE = 0.3, 1.0


def planar_crack(labels, centre, rng):
    """1-voxel sheet through ``centre`` with a random normal, restricted to that sphere."""
    normal = rng.normal(size=3)
    normal /= np.linalg.norm(normal)
    z, y, x = np.ogrid[: labels.shape[0], : labels.shape[1], : labels.shape[2]]
    signed = (z - centre[0]) * normal[0] + (y - centre[1]) * normal[1] + (x - centre[2]) * normal[2]
    return np.abs(signed) < 0.5


@pytest.fixture(scope="module")
def cracked_electrode():
    """64^3 volume of ~60 packed spheres (r 6-9 vox), 4 of them cut by a planar crack,
    blurred (sigma 1 vox) with Gaussian noise (sigma 0.08 on a 0.7 contrast)."""
    rng = np.random.default_rng(20240611)
    labels, centres, _ = packed_spheres((64, 64, 64), 60, rng)
    solid = labels > 0
    cracked = rng.choice(np.arange(1, labels.max() + 1), size=4, replace=False)
    for i in cracked:
        solid &= ~(planar_crack(labels, centres[i - 1], rng) & (labels == i))
    image = np.where(solid, PARTICLE, MATRIX).astype(np.float32)
    image = ndi.gaussian_filter(image, 1.0) + rng.normal(0, 0.08, image.shape).astype(np.float32)
    truth = np.where(solid, labels, 0).astype(np.uint32)
    return image, truth, cracked


def ball_mask(shape, centre, radius):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


# --------------------------------------------------------------------------- normalisation


def test_normalize_matches_percentile_formula():
    rng = np.random.default_rng(1)
    vol = rng.gamma(2.0, 3.0, size=(20, 24, 28)).astype(np.float32)
    before = vol.copy()
    out = normalize_intensity(vol, low_pct=2.0, high_pct=98.0)
    lo, hi = np.percentile(vol, [2.0, 98.0])
    assert out.dtype == np.float32 and out.shape == vol.shape
    np.testing.assert_allclose(out, (vol - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(vol, before)  # input untouched
    # not clipped: the extremes lie outside [0, 1]
    assert out.min() < 0 and out.max() > 1
    assert np.mean(out < 0) == pytest.approx(0.02, abs=0.002)


def test_normalize_integer_and_float64_inputs():
    rng = np.random.default_rng(2)
    vol16 = rng.integers(100, 4000, size=(8, 16, 16), dtype=np.uint16)
    out = normalize_intensity(vol16, low_pct=0.0, high_pct=100.0)
    expect = (vol16.astype(np.float64) - vol16.min()) / (vol16.max() - vol16.min())
    np.testing.assert_allclose(out, expect, atol=1e-6)
    vol64 = 1e6 + rng.normal(size=(6, 10, 10))  # large offset: needs float64 arithmetic
    out64 = normalize_intensity(vol64, low_pct=0.0, high_pct=100.0)
    assert out64.dtype == np.float32
    np.testing.assert_allclose(out64, (vol64 - vol64.min()) / np.ptp(vol64), atol=1e-5)
    out2d = normalize_intensity(vol16[0], low_pct=0.0, high_pct=100.0)
    assert out2d.shape == (16, 16) and out2d.min() == 0.0 and out2d.max() == 1.0


def test_normalize_subsample_is_close_and_deterministic():
    rng = np.random.default_rng(3)
    vol = rng.normal(size=(48, 48, 48)).astype(np.float32)
    full = normalize_intensity(vol)
    sub = normalize_intensity(vol, sample=20_000, rng=7)
    sub_again = normalize_intensity(vol, sample=20_000, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(sub, sub_again)
    # 20k samples of a normal: percentile estimates within ~0.03 sigma, so after dividing by
    # the (~5.2 sigma) range the maps agree to ~0.02
    np.testing.assert_allclose(sub, full, atol=0.02)
    # a sample larger than the volume uses every voxel
    np.testing.assert_array_equal(normalize_intensity(vol, sample=10**7), full)


@pytest.mark.parametrize(
    ("volume", "match"),
    [
        (np.zeros((4, 4, 4, 4), np.float32), "volume: expected"),
        (np.zeros(5, np.float32), "volume: expected"),
        (np.ones((4, 4, 4), bool), "dtype bool"),
        (np.ones((4, 4, 4), np.complex64), "dtype complex64"),
        (np.full((4, 4, 4), np.nan, np.float32), "NaN"),
        (np.full((4, 4, 4), 3.0, np.float32), "constant"),
        (np.zeros((0, 4, 4), np.float32), "non-empty"),
    ],
)
def test_normalize_rejects_bad_volumes(volume, match):
    with pytest.raises(ValueError, match=match):
        normalize_intensity(volume)


def test_normalize_rejects_bad_parameters():
    vol = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    with pytest.raises(ValueError, match="low_pct, high_pct"):
        normalize_intensity(vol, low_pct=50, high_pct=10)
    with pytest.raises(ValueError, match="sample"):
        normalize_intensity(vol, sample=0)
    with pytest.raises(TypeError, match="rng"):
        normalize_intensity(vol, sample=10, rng="seed")
    spiky = np.zeros((10, 10, 10), np.float32)
    spiky[0, 0, 0] = 1.0  # 99.8th and 1st percentiles both 0
    with pytest.raises(ValueError, match="percentiles coincide"):
        normalize_intensity(spiky)


# --------------------------------------------------------------------------- building blocks


def test_otsu_threshold_matches_skimage_on_smoothed_volume():
    rng = np.random.default_rng(4)
    vol = rng.normal(size=(16, 20, 24)).astype(np.float32)
    vol[:, :, 12:] += 3.0
    expect = threshold_otsu(ndi.gaussian_filter(vol, 1.0, mode="nearest"))
    assert otsu_threshold(vol, smooth_sigma_vox=1.0) == pytest.approx(expect, rel=1e-6)
    assert otsu_threshold(vol, smooth_sigma_vox=0.0) == pytest.approx(threshold_otsu(vol))
    # a 5000-voxel subsample gives nearly the same bimodal split (classes 3 apart)
    assert otsu_threshold(vol, sample=5000, rng=0) == pytest.approx(expect, abs=0.15)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_close_ball_matches_binary_closing_with_ball(radius):
    rng = np.random.default_rng(10 + radius)
    # random blobs kept 2r+2 away from the border, where edge conventions do not matter
    mask = ndi.gaussian_filter(rng.normal(size=(40, 40, 40)), 1.5) > 0.15
    pad = 2 * radius + 2
    inner = np.zeros_like(mask)
    inner[pad:-pad, pad:-pad, pad:-pad] = mask[pad:-pad, pad:-pad, pad:-pad]
    expect = ndi.binary_closing(inner, structure=ball(radius))
    np.testing.assert_array_equal(_close_ball(inner, radius), expect)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("h", [0.01, 0.03, 0.1])
def test_h_maxima_matches_skimage(seed, h):
    """The dynamics-based h-maxima equal skimage's reconstruction-based ones (6-connectivity)
    on a tie-free random field."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=(30, 34, 38)), 2.5).astype(np.float32)
    field -= field.min()
    ref = h_maxima(field, h, footprint=ndi.generate_binary_structure(3, 1)).astype(bool)
    regions, n = _h_maxima(field, np.ones(field.shape, bool), h)
    np.testing.assert_array_equal(regions > 0, ref)
    assert n == ndi.label(ref)[1]
    assert n >= 3  # the field has several maxima at every tested h


# --------------------------------------------------------------------------- segmentation


def test_crack_void_stays_background_and_particle_keeps_one_label():
    shape = (40, 40, 40)
    sphere = ball_mask(shape, (20, 20, 20), 12)
    crack = (np.abs(np.arange(40) - 20) < 1)[None, None, :] & sphere  # 1-voxel sheet x = 20
    solid = sphere & ~crack
    assert ndi.label(solid)[1] == 2  # the crack cuts the particle in two halves
    volume = np.where(solid, PARTICLE, MATRIX).astype(np.float32)
    labels = watershed_segment(volume, smooth_sigma_vox=0.0, threshold=0.65)
    assert labels.dtype == np.uint32 and labels.shape == shape
    assert labels.max() == 1
    np.testing.assert_array_equal(labels > 0, solid)  # crack voxels are 0
    # a 2-voxel crack is bridged too by the default closing radius (2 voxels)
    crack2 = (np.abs(np.arange(40) - 20.5) < 1)[None, None, :] & sphere
    vol2 = np.where(sphere & ~crack2, PARTICLE, MATRIX).astype(np.float32)
    labels2 = watershed_segment(vol2, smooth_sigma_vox=0.0, threshold=0.65)
    assert labels2.max() == 1
    np.testing.assert_array_equal(labels2 > 0, sphere & ~crack2)


def test_two_touching_spheres_are_split():
    shape = (32, 32, 48)
    a = ball_mask(shape, (16, 16, 14), 8)
    b = ball_mask(shape, (16, 16, 29.5), 7.5)  # centre distance 15.5 = r_a + r_b
    truth = np.where(a, 1, np.where(b, 2, 0)).astype(np.uint32)
    labels = watershed_segment(np.where(truth > 0, PARTICLE, MATRIX), smooth_sigma_vox=0.0)
    m = matching(truth, labels, thresh=0.9)
    assert (m.n_pred, m.tp) == (2, 2)
    assert m.mean_matched_score > 0.97


def test_small_objects_removed_and_labels_sequential():
    shape = (32, 32, 32)
    big = ball_mask(shape, (10, 10, 10), 6)  # 925 voxels
    tiny = ball_mask(shape, (25, 25, 25), 2)  # 33 voxels < 50
    mid = ball_mask(shape, (24, 8, 24), 3)  # 123 voxels
    volume = np.where(big | tiny | mid, PARTICLE, MATRIX).astype(np.float32)
    labels = watershed_segment(volume, smooth_sigma_vox=0.0, threshold=0.65)
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]
    assert not labels[tiny].any()
    # each kept particle is reproduced voxel for voxel
    assert {int(big.sum()), int(mid.sum())} == set(np.bincount(labels.ravel())[1:].tolist())
    np.testing.assert_array_equal(labels > 0, big | mid)
    kept = watershed_segment(volume, smooth_sigma_vox=0.0, threshold=0.65, min_volume_vox=0)
    assert kept.max() == 3


def test_peak_local_max_markers_option():
    shape = (32, 32, 48)
    a = ball_mask(shape, (16, 16, 14), 8)
    b = ball_mask(shape, (16, 16, 30), 8)
    volume = np.where(a | b, PARTICLE, MATRIX).astype(np.float32)
    labels = watershed_segment(volume, smooth_sigma_vox=0.0, h_max_vox=None, min_distance_vox=5)
    truth = np.where(a, 1, np.where(b, 2, 0)).astype(np.uint32)
    assert matching(truth, labels, thresh=0.9).tp == 2


def test_watershed_quality_on_cracked_packed_spheres(cracked_electrode):
    """SCIENCE.md §4 baseline: accuracy TP/(TP+FP+FN) at IoU 0.5 against the filled spheres'
    labels intersected with the solid mask. Measured with this seed: accuracy 1.0 at IoU 0.3, 0.5
    and 0.7 (60/60 spheres, 4 cracked; mean matched IoU 0.93); the acceptance floor is 0.8,
    asserted here at 0.9."""
    image, truth, cracked = cracked_electrode
    assert 30 <= truth.max() <= 60
    labels = segment_volume(image, method="watershed", device="cpu")
    table = evaluate(truth, labels, thresholds=(0.3, 0.5, 0.7))
    assert table.loc[0.5, "accuracy"] >= 0.9
    assert table.loc[0.3, "accuracy"] >= table.loc[0.5, "accuracy"] >= table.loc[0.7, "accuracy"]
    assert table.loc[0.7, "accuracy"] >= 0.8
    # every cracked sphere is one particle (the blurred 1-voxel crack is mostly lost to partial
    # volume, so its voxels count against the IoU: measured 0.78-0.84)
    for i in cracked:
        inside = labels[truth == i]
        dominant = np.bincount(inside[inside > 0]).argmax()
        sphere, particle = truth == i, labels == dominant
        assert (sphere & particle).sum() / (sphere | particle).sum() >= 0.7


def test_segment_volume_equals_watershed_of_normalised_volume(cracked_electrode):
    image = cracked_electrode[0][:32, :32, :32]
    np.testing.assert_array_equal(
        segment_volume(image, method="watershed"), watershed_segment(normalize_intensity(image))
    )
    # invariance to an affine intensity change (a different reconstruction unit)
    rescaled = segment_volume(
        (image * 3.5e-6 + 1e-6).astype(np.float32), method="watershed", min_volume_vox=50
    )
    assert matching(segment_volume(image, method="watershed"), rescaled, thresh=0.9).accuracy == 1.0


def test_empty_solid_mask_gives_no_labels():
    volume = np.random.default_rng(5).normal(0.0, 0.01, (16, 16, 16)).astype(np.float32)
    labels = watershed_segment(volume, threshold=10.0)
    assert labels.dtype == np.uint32 and labels.max() == 0


@pytest.mark.parametrize(
    ("volume", "match"),
    [
        (np.zeros((8, 8), np.float32), r"volume: expected a \(nz, ny, nx\)"),
        (np.ones((4, 4, 4), np.complex64), "volume: expected a real float"),
        (np.ones((4, 4, 4), bool), "dtype bool"),
        (np.full((4, 4, 4), np.inf, np.float32), "NaN or inf"),
        (np.full((4, 4, 4), 2.0, np.float32), "non-constant"),
        (np.zeros((0, 4, 4), np.float32), "non-empty"),
    ],
)
def test_segment_volume_rejects_bad_volumes(volume, match):
    with pytest.raises(ValueError, match=match):
        segment_volume(volume)


def test_segment_volume_rejects_model_method_device_and_params():
    vol = np.random.default_rng(6).normal(size=(8, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="method 'watershed' takes no model"):
        segment_volume(vol, model=object(), method="watershed")
    with pytest.raises(ValueError, match="method"):
        segment_volume(vol, method="stardist")
    with pytest.raises(ValueError, match="device"):
        segment_volume(vol, method="watershed", device="cuda")
    with pytest.raises(ValueError, match="device"):
        segment_volume(vol, method="watershed", device="tpu")
    with pytest.raises(TypeError, match="prob_threshold"):
        segment_volume(vol, method="watershed", prob_threshold=0.5)


def test_watershed_rejects_bad_parameters():
    vol = np.random.default_rng(7).normal(size=(8, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="h_max_vox"):
        watershed_segment(vol, h_max_vox=0.0)
    with pytest.raises(ValueError, match="smooth_sigma_vox"):
        watershed_segment(vol, smooth_sigma_vox=-1.0)
    with pytest.raises(TypeError, match="min_volume_vox"):
        watershed_segment(vol, min_volume_vox=2.5)
    with pytest.raises(ValueError, match="threshold"):
        watershed_segment(vol, threshold=float("nan"))
    with pytest.raises(ValueError, match="non-constant"):
        watershed_segment(np.ones((4, 4, 4), np.float32))
    # a constant slab with an explicit threshold is legal (e.g. padding beyond the sample)
    assert watershed_segment(np.ones((4, 4, 4), np.float32), threshold=2.0).max() == 0
