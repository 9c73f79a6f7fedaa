"""Tests for holocat.tomo.centre: rotation axis from 180-degree pairs, nearest opposite angle."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import radon

from holocat.tomo import apply_shift, center_from_sinogram, estimate_center, fbp, nearest_opposite

N_IMG = 64
PAD = 24  # detector margin so that axis offsets up to 20 px keep the object on the detector


@pytest.fixture(scope="module")
def sample():
    """Asymmetric object; its sinogram over [0, pi] inclusive on an (N_IMG + 2 PAD) detector."""
    img = np.zeros((N_IMG, N_IMG))
    yy, xx = np.mgrid[:N_IMG, :N_IMG]
    img[(yy - 25) ** 2 + (xx - 38) ** 2 < 64] = 1.0
    img[20:26, 18:30] = 0.5
    img[40:46, 30:34] = 0.8
    angles = np.linspace(0, np.pi, 181)
    sino = radon(img, np.rad2deg(angles), circle=True).T
    return img, angles, np.pad(sino, ((0, 0), (PAD, PAD)))


@pytest.mark.parametrize("offset", [-20.0, -13.37, -4.5, -1.0, 0.0, 1.0, 2.71, 9.2, 20.0])
def test_estimate_center_on_simulated_offsets(sample, offset):
    """Axis moved to n // 2 + offset (Fourier shift), Poisson-like noise 1 % of the maximum."""
    _, _, sino = sample
    n_det = sino.shape[1]
    rng = np.random.default_rng(int(abs(offset) * 100))
    shifted = apply_shift(sino, (0.0, offset))
    noisy = shifted + 0.01 * shifted.max() * rng.standard_normal(shifted.shape)
    expected = n_det // 2 + offset
    c = estimate_center(noisy[0], noisy[-1])
    assert abs(c - expected) < 0.1  # measured <= 0.03 px; requirement 0.5 px


def test_estimate_center_2d_projections(sample):
    _, _, sino = sample
    n_det = sino.shape[1]
    shifted = apply_shift(sino, (0.0, -6.3))
    # three detector rows: the same sinogram with different weights
    p0 = np.stack([shifted[0], 0.5 * shifted[0], 2 * shifted[0]])
    p180 = np.stack([shifted[-1], 0.5 * shifted[-1], 2 * shifted[-1]])
    assert estimate_center(p0, p180) == pytest.approx(n_det // 2 - 6.3, abs=0.1)


def test_unshifted_radon_gives_skimage_default_center(sample):
    """The convention: an unshifted skimage sinogram has its axis at n_det // 2."""
    img, angles, _ = sample
    for size in (N_IMG, N_IMG + 1):  # even and odd detectors
        sino = radon(np.pad(img, ((0, size - N_IMG), (0, size - N_IMG))), np.rad2deg(angles)).T
        assert sino.shape[1] == size
        assert center_from_sinogram(sino, angles) == pytest.approx(size // 2, abs=0.05)


def test_estimated_center_reconstructs_the_object(sample):
    img, angles, sino = sample
    shifted = apply_shift(sino, (0.0, 7.4))[:-1]  # drop the 180-degree projection for FBP
    theta = angles[:-1]
    c = center_from_sinogram(apply_shift(sino, (0.0, 7.4)), angles)
    rec = fbp(shifted, theta, center=c, device="cpu")
    ref = fbp(sino[:-1], theta, device="cpu")
    inner = slice(PAD, PAD + N_IMG)
    err = np.linalg.norm(rec[inner, inner] - img) / np.linalg.norm(img)
    err_ref = np.linalg.norm(ref[inner, inner] - img) / np.linalg.norm(img)
    assert err <= 1.2 * err_ref
    wrong = fbp(shifted, theta, device="cpu")
    assert np.linalg.norm(wrong[inner, inner] - img) / np.linalg.norm(img) > 3 * err_ref


def test_nearest_opposite_against_brute_force():
    rng = np.random.default_rng(5)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 50))
    for index in (0, 7, 49, -1):
        j = nearest_opposite(angles, index)
        target = angles[index] + np.pi
        dist = [abs((a - target + np.pi) % (2 * np.pi) - np.pi) for a in angles]
        assert j == int(np.argmin(dist))


def test_nearest_opposite_simple_cases():
    deg = np.arange(0, 360, 10.0)
    assert nearest_opposite(np.deg2rad(deg), 2) == 20  # 20 -> 200 deg
    assert nearest_opposite(np.deg2rad(deg), 25) == 7  # 250 -> 70 deg (wraps)
    half = np.linspace(0, np.pi, 181)
    assert nearest_opposite(half, 0) == 180
    assert nearest_opposite(np.linspace(0, np.pi, 180, endpoint=False), 0) == 179


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: estimate_center(np.ones(32), np.ones(31)), ValueError, "proj_180: expected"),
        (
            lambda: estimate_center(np.ones((2, 2, 32)), np.ones((2, 2, 32))),
            ValueError,
            "proj_0: expected shape",
        ),
        (
            lambda: estimate_center(np.full(32, np.nan), np.ones(32)),
            ValueError,
            "proj_0: contains NaN",
        ),
        (
            lambda: estimate_center(np.ones(32), np.ones(32), upsample_factor=0),
            ValueError,
            "upsample_factor",
        ),
        (lambda: estimate_center(np.ones(32), np.ones(32), sigma_px=-1), ValueError, "sigma_px"),
        (lambda: nearest_opposite([0.0]), ValueError, "angles_rad"),
        (lambda: nearest_opposite([0.0, np.nan]), ValueError, "angles_rad: contains"),
        (lambda: nearest_opposite([0.0, 1.0, 2.0], index=3), ValueError, "index"),
        (lambda: nearest_opposite([0.0, 1.0, 2.0], index=1.0), TypeError, "index"),
        (
            lambda: center_from_sinogram(np.ones((5, 32)), np.linspace(0, 3, 4)),
            ValueError,
            "sinogram: expected n_angles",
        ),
        (
            lambda: center_from_sinogram(np.ones(32), np.linspace(0, 3, 4)),
            ValueError,
            "sinogram: expected shape",
        ),
    ],
)
def test_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
