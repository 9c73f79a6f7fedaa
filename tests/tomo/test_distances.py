"""Tests for holocat.tomo.distances: magnification rescaling, registration, Fourier shift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from holocat.optics import fresnel_propagate
from holocat.tomo import apply_shift, prepare_distances, register_distances, rescale_to_reference

ENERGY_KEV = 17.0
PIXEL_M = 0.5e-6
DELTA_BETA = 40.6


def blobs(shape, pixel, center, shift=(0.0, 0.0)):
    """Smooth asymmetric test image sampled at pixel pitch ``pixel`` (arbitrary length unit).

    Physical coordinate of pixel (i, j) is ((i - center[0]) * pixel, (j - center[1]) * pixel);
    ``shift`` moves the content by (dy, dx) in the same unit.
    """
    yy = (np.arange(shape[0]) - center[0])[:, None] * pixel - shift[0]
    xx = (np.arange(shape[1]) - center[1])[None, :] * pixel - shift[1]
    out = np.ones(shape)
    for y0, x0, r, a in [(-6.0, 4.0, 5.0, -0.4), (9.0, -7.0, 3.5, -0.25), (-12.0, -10.0, 2.5, 0.2)]:
        out += a * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * r**2))
    return out


def test_rescale_identity():
    img = blobs((40, 48), 1.0, (20, 24))
    out = rescale_to_reference(img, scale=1.0, out_shape=(40, 48))
    assert out.dtype == np.float32 and out.shape == (40, 48)
    np.testing.assert_allclose(out, img, atol=1e-6)


def test_rescale_matches_analytic_zoom():
    # distance j: coarse pixel 1.3; reference grid: pixel 1.0, scale = 1.3
    coarse = blobs((48, 56), 1.3, (24, 28))
    out = rescale_to_reference(coarse, scale=1.3, out_shape=(50, 60))
    expected = blobs((50, 60), 1.0, (25, 30))
    np.testing.assert_allclose(out, expected, atol=1e-3)  # measured 2.1e-4


def test_rescale_custom_center_and_stack():
    img = blobs((40, 40), 1.0, (17.5, 22.25))  # optical axis off the centre pixel
    stack = np.stack([img, 2 * img])
    out = rescale_to_reference(stack, scale=1.25, out_shape=(36, 44), center=(17.5, 22.25))
    expected = blobs((36, 44), 1 / 1.25, (18, 22))
    assert out.shape == (2, 36, 44)
    np.testing.assert_allclose(out[0], expected, atol=1e-3)  # measured 2.9e-4
    np.testing.assert_allclose(out[1], 2 * out[0], rtol=1e-6)


def test_rescale_preserves_constant_and_mean():
    np.testing.assert_allclose(
        rescale_to_reference(np.full((30, 30), 0.97), scale=1.7, out_shape=(30, 30)), 0.97
    )
    img = blobs((64, 64), 1.0, (32, 32))
    out = rescale_to_reference(img, scale=1.2, out_shape=(64, 64))
    assert out.mean() == pytest.approx(blobs((64, 64), 1 / 1.2, (32, 32)).mean(), rel=1e-4)


def test_apply_shift_matches_analytic_and_ndimage():
    img = blobs((48, 48), 1.0, (24, 24))
    out = apply_shift(img, (1.3, -2.7))
    np.testing.assert_allclose(out, blobs((48, 48), 1.0, (24, 24), (1.3, -2.7)), atol=1e-3)
    ref = ndimage.shift(img, (1.3, -2.7), order=5, mode="nearest")
    np.testing.assert_allclose(out[4:-4, 4:-4], ref[4:-4, 4:-4], atol=1e-3)
    stack = apply_shift(np.stack([img, img]), (2.0, 0.0))
    np.testing.assert_allclose(stack[1, 2:], img[:-2], atol=1e-5)
    np.testing.assert_array_equal(apply_shift(img, (0, 0)), img.astype(np.float32))


def _hologram(phi, distance_m):
    wave = np.exp(-1j * phi - phi / DELTA_BETA)
    field = fresnel_propagate(
        wave, pixel_size_m=PIXEL_M, distance_m=distance_m, energy_keV=ENERGY_KEV
    )
    return np.abs(field) ** 2


def test_register_holograms_at_different_distances():
    """Holograms of one object at four distances, each drifted by a known sub-pixel shift."""
    drifts = [(0.0, 0.0), (1.37, -0.62), (-2.21, 3.05), (0.4, 0.15)]
    distances = [0.05, 0.06, 0.08, 0.11]
    images = np.stack(
        [
            _hologram(2.5 * (blobs((96, 96), 1.0, (48, 48), d) - 1), z)
            for d, z in zip(drifts, distances, strict=True)
        ]
    )
    shifts = register_distances(images)
    assert shifts.shape == (4, 2)
    np.testing.assert_array_equal(shifts[0], 0.0)
    # the shift that re-aligns distance j undoes its drift; measured error <= 0.05 px
    np.testing.assert_allclose(shifts, -np.asarray(drifts), atol=0.1)


def test_prepare_distances_rescales_and_registers():
    """Cone-beam-like set: 3 magnifications, drifts; all distances end on the reference grid."""
    mags = [20.0, 25.0, 16.0]  # reference: M = 25 (finest pixel)
    p_det = 25.0  # physical pixel on the reference grid = 25 / 25 = 1
    drifts = [(0.8, -1.1), (0.0, 0.0), (-1.4, 0.6)]  # in reference pixels
    stacks = []
    for m, d in zip(mags, drifts, strict=True):
        frames = [blobs((40, 44), p_det / m, (20, 22), (d[0] + k * 0.1, d[1])) for k in range(2)]
        stacks.append(np.stack(frames))
    out = prepare_distances(stacks, magnifications=mags, out_shape=(36, 40), sigma_px=1.0)
    assert out.shape == (3, 2, 36, 40) and out.dtype == np.float32
    for k in range(2):
        expected = blobs((36, 40), 1.0, (18, 20), (k * 0.1, 0.0))
        for j in range(3):
            # measured max error 6.4e-4 (distance 2, M = 16, zoom 1.56)
            np.testing.assert_allclose(out[j, k, 6:-6, 6:-6], expected[6:-6, 6:-6], atol=2e-3)
    raw = prepare_distances(stacks, magnifications=mags, out_shape=(36, 40), register=False)
    drifted = blobs((36, 40), 1.0, (18, 20), drifts[0])
    np.testing.assert_allclose(raw[0, 0], drifted, atol=0.01)
    assert np.abs(raw[0, 0] - out[1, 0]).max() > 0.05


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: rescale_to_reference(np.ones(5), scale=1, out_shape=(4, 4)), ValueError, "image"),
        (
            lambda: rescale_to_reference(np.ones((4, 4)), scale=0, out_shape=(4, 4)),
            ValueError,
            "scale",
        ),
        (
            lambda: rescale_to_reference(np.ones((4, 4)), scale=1, out_shape=(4,)),
            ValueError,
            "out_shape",
        ),
        (
            lambda: rescale_to_reference(np.ones((4, 4)), scale=1, out_shape=(4, 4), center=(1,)),
            ValueError,
            "center",
        ),
        (
            lambda: rescale_to_reference(np.full((4, 4), np.nan), scale=1, out_shape=(4, 4)),
            ValueError,
            "image: contains NaN",
        ),
        (lambda: apply_shift(np.ones((4, 4)), (1.0, np.inf)), ValueError, "shift"),
        (lambda: register_distances(np.ones((4, 4))), ValueError, "images"),
        (
            lambda: register_distances(np.ones((2, 4, 4)), upsample_factor=0),
            ValueError,
            "upsample_factor",
        ),
        (lambda: register_distances(np.ones((2, 4, 4)), sigma_px=-1), ValueError, "sigma_px"),
        (
            lambda: prepare_distances([], magnifications=[], out_shape=(4, 4)),
            TypeError,
            "intensities",
        ),
        (
            lambda: prepare_distances(
                [np.ones((2, 4, 4)), np.ones((3, 4, 4))], magnifications=[1, 2], out_shape=(4, 4)
            ),
            ValueError,
            r"intensities\[1\]",
        ),
        (
            lambda: prepare_distances(
                [np.ones((2, 4, 4))] * 2, magnifications=[1], out_shape=(4, 4)
            ),
            ValueError,
            "magnifications",
        ),
        (
            lambda: prepare_distances(
                [np.ones((2, 4, 4))] * 2, magnifications=[1, -2], out_shape=(4, 4)
            ),
            ValueError,
            "magnifications",
        ),
    ],
)
def test_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
