"""RoughOuter / RoughInner (SCIENCE.md §5): RMS signed distance to the Gaussian-smoothed surface.

Oracles: a plane (distance exact), digital balls (only the voxel staircase remains) and balls
with a sinusoidal surface ripple of amplitude a, whose RMS over the surface is a / sqrt(2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from holocat.attributes import particle_attributes
from holocat.attributes.shape import iso_distance, smoothed


def _rippled_ball(phantoms, radius: float, amplitude: float, wavelength: float):
    """r <= R + a cos(m phi): an azimuthal ripple of about ``wavelength`` voxels at the equator.

    cos^2 averages to 1/2 over phi at every latitude, so the ripple's RMS over the sphere is
    exactly a / sqrt(2).
    """
    n = int(2 * (radius + amplitude) + 10)
    z, y, x = phantoms.centred_grid(n)
    r = np.sqrt(x * x + y * y + z * z)
    m = round(2 * math.pi * radius / wavelength)
    return r <= radius + amplitude * np.cos(m * np.arctan2(y, x))


@pytest.mark.parametrize(
    ("sigma", "reach", "atol"), [(1.0, 1.5, 0.015), (2.0, 3.5, 2e-3), (3.0, 3.5, 1e-3)]
)
def test_iso_distance_of_a_smoothed_plane_is_exact(sigma, reach, atol):
    # a half-space z < 24.5: voxel centre k lies at signed distance 24.5 - k from the surface
    mask = np.zeros((48, 48, 48), dtype=bool)
    mask[:25] = True
    field = smoothed(mask, sigma)
    z = np.arange(48)[np.abs(24.5 - np.arange(48)) <= reach]
    pts = (z, np.full_like(z, 24), np.full_like(z, 24))
    np.testing.assert_allclose(iso_distance(field, pts, sigma), 24.5 - z, atol=atol)


@pytest.mark.parametrize("normal", [(0.8, 0.36, 0.48), (1.0, 1.0, 1.0), (1.0, 0.5, 0.0)])
def test_iso_distance_of_oblique_planes(normal):
    # the digitised oblique plane is a staircase whose mean offset the centred RMS removes;
    # what is left (the error's spread) is what would add to a roughness: measured RMS
    # 0.019-0.055 voxel at sigma = 1, <= 0.02 at sigma = 2, <= 0.011 at sigma = 3
    zz, yy, xx = np.indices((60, 60, 60))
    n = np.array(normal) / np.linalg.norm(normal)
    dist = n @ [30.0, 30.0, 30.0] + 0.2 - (n[0] * zz + n[1] * yy + n[2] * xx)
    box = (np.abs(zz - 30) < 6) & (np.abs(yy - 30) < 6) & (np.abs(xx - 30) < 6)
    pts = np.nonzero((np.abs(dist) < 1.5) & box)
    for sigma, tol in ((1.0, 0.06), (2.0, 0.02), (3.0, 0.012)):
        err = iso_distance(smoothed(dist >= 0, sigma), pts, sigma) - dist[pts]
        assert err.std() < tol
        assert abs(err.mean()) < 0.12  # the staircase's offset


@pytest.mark.parametrize("radius", [10.0, 15.0, 20.0])
@pytest.mark.parametrize("sigma_vox", [2.0, 3.0])
def test_ball_roughness_is_the_voxel_staircase(phantoms, radius, sigma_vox):
    # measured 0.24-0.26 voxel for radii 10-20 and sigma_r 2-3: the resolution floor
    s = 0.1
    mask = phantoms.ball(int(2 * radius) + 8, radius)
    t = particle_attributes(
        mask.astype(np.uint8),
        np.where(mask, 2.0, 1.0),
        voxel_size_um=s,
        roughness_sigma_um=sigma_vox * s,
    )
    assert 0.15 * s < t.RoughOuter.iloc[0] < 0.27 * s
    assert t.RoughInner.iloc[0] == 0.0


@pytest.mark.parametrize("amplitude", [1.0, 1.5])
def test_rippled_ball_roughness_is_amplitude_over_sqrt2(phantoms, amplitude):
    # 8-voxel ripple, sigma_r = 3 voxels: the smoothed surface keeps exp(-k^2 sigma^2 / 2) = 6 %
    # of the ripple; measured -1 % (a = 1) and -9 % (a = 1.5) against a / sqrt(2)
    s = 0.2
    mask = _rippled_ball(phantoms, 20.0, amplitude, 8.0)
    t = particle_attributes(
        mask.astype(np.uint8),
        np.where(mask, 2.0, 1.0),
        voxel_size_um=s,
        r_close_um=0.0,  # the closing would fill the ripple's troughs: F would be smoother
        roughness_sigma_um=3 * s,
    )
    expected = amplitude / math.sqrt(2.0) * s
    assert abs(t.RoughOuter.iloc[0] / expected - 1) <= 0.15


def test_roughness_sigma_is_configurable_in_um(phantoms):
    s = 0.2
    mask = _rippled_ball(phantoms, 16.0, 1.0, 8.0)
    labels, volume = mask.astype(np.uint8), np.where(mask, 2.0, 1.0)

    def rough(**kw):
        t = particle_attributes(labels, volume, voxel_size_um=s, r_close_um=0.0, **kw)
        return t.RoughOuter.iloc[0]

    default = rough()
    assert default == rough(roughness_sigma_um=2 * s)  # default: two voxels
    # a narrower Gaussian follows the 8-voxel ripple (less of it is roughness), a wider one not
    narrow, wide = rough(roughness_sigma_um=0.8 * s), rough(roughness_sigma_um=3 * s)
    assert narrow < 0.6 * default < default < wide
    with pytest.raises(ValueError, match="roughness_sigma_um"):
        particle_attributes(labels, volume, voxel_size_um=s, roughness_sigma_um=0.0)


def test_rough_inner_sees_rippled_crack_walls(phantoms):
    # an internal crack 8 voxels thick whose walls follow z = a sin(2 pi x / 8); the flat crack's
    # RoughInner is its rim (where the walls turn), the ripple adds a / sqrt(2) in quadrature
    # (measured +9 % for a = 1.5)
    s, n, radius = 0.1, 50, 20.0
    z, y, x = phantoms.centred_grid(n)
    ball = x * x + y * y + z * z <= radius**2

    def rough_inner(a: float) -> float:
        crack = ball & (np.abs(z - a * np.sin(2 * np.pi * x / 8.0)) < 4) & (x * x + y * y <= 196)
        solid = ball & ~crack
        t = particle_attributes(
            solid.astype(np.uint8),
            np.where(solid, 3.0, 1.0),
            voxel_size_um=s,
            r_close_um=1.0,
            roughness_sigma_um=3 * s,
        )
        assert t.DamageVoxels.iloc[0] == pytest.approx(crack.sum() / ball.sum())
        return t.RoughInner.iloc[0] / s

    flat, wavy = rough_inner(0.0), rough_inner(1.5)
    assert 0.0 < flat < wavy
    excess = math.sqrt(wavy**2 - flat**2)
    assert abs(excess / (1.5 / math.sqrt(2.0)) - 1) <= 0.25


def test_roughness_does_not_depend_on_the_crop_padding(phantoms):
    mask = _rippled_ball(phantoms, 12.0, 1.0, 6.0)
    volume = np.where(mask, 2.0, 1.0)
    t0 = particle_attributes(mask.astype(np.uint8), volume, voxel_size_um=0.5)
    big = np.pad(mask, 9)
    t1 = particle_attributes(big.astype(np.uint8), np.pad(volume, 9), voxel_size_um=0.5)
    for col in ("RoughOuter", "SurfaceOuter", "Damage"):
        assert t1[col].iloc[0] == pytest.approx(t0[col].iloc[0], rel=1e-6)
    # a Gaussian smoothing of the whole padded mask gives the same field as the crop's
    assert np.allclose(
        smoothed(big, 2.0)[9:-9, 9:-9, 9:-9],
        ndi.gaussian_filter(mask.astype(np.float32), 2.0, mode="constant"),
        atol=1e-6,
    )


def test_inverse_half_difference_recovers_the_width():
    from scipy.special import ndtr

    from holocat.attributes._kernels import inverse_half_difference

    rng = np.random.default_rng(3)
    u = rng.uniform(-5.3, 5.3, 20_000)
    h = rng.uniform(0.05, 3.9, 20_000)
    g = 0.5 * (ndtr(u + h) - ndtr(u - h))
    keep = g > 1e-9  # h is undetermined where the difference underflows
    got = inverse_half_difference(u[keep], g[keep], 4.0)
    np.testing.assert_allclose(got, h[keep], atol=1e-8)
    # a difference at or above the one at h_max gives h_max
    assert inverse_half_difference(np.array([0.0]), np.array([0.49999]), 4.0)[0] == 4.0
