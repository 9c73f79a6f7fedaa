"""Tests of holocat.simulate.holotomo: projector, geometry, holograms and the raw-scan simulator.

Oracles: ``skimage.transform.radon`` (projection geometry), analytic point positions,
the Fresnel scaling formulas, ``holocat.optics.fresnel_propagate``, Beer-Lambert, the
magnification of a sphere's shadow, Poisson statistics and the simulation's own ground truth.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.data import shepp_logan_phantom
from skimage.transform import radon, resize

from holocat.optics import fresnel_propagate, wavelength_m
from holocat.simulate import (
    DEFAULT_FOCUS_TO_SAMPLE_M,
    HoloScan,
    detector_holograms,
    holograms,
    holotomo,
    project,
    scan_geometry,
)

ENERGY_KEV = 17.0
K = 2 * np.pi / wavelength_m(ENERGY_KEV)


# ------------------------------------------------------------------------------------------
# fixtures and helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asymmetric_slice() -> np.ndarray:
    """64 x 64 Shepp-Logan plus an off-centre block, zero outside the inscribed circle."""
    img = resize(shepp_logan_phantom(), (64, 64), anti_aliasing=True)
    img[40:48, 10:16] += 0.7
    yy, xx = np.mgrid[:64, :64]
    img[(yy - 32) ** 2 + (xx - 32) ** 2 > 31**2] = 0
    return img


def ball(shape, centre, radius) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    c = centre
    return ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) <= radius**2


def flat_corrected(scan: HoloScan) -> np.ndarray:
    """Naive flat-field: (data - mean dark) / (flat interpolated by projection index - dark)."""
    dark = scan.darks.astype(np.float64).mean(axis=0)
    pos = np.asarray(scan.attrs["flat_positions"])
    n_angles = scan.data.shape[1]
    before = scan.flats[:, pos == 0].astype(np.float64).mean(axis=1)
    after = scan.flats[:, pos == n_angles].astype(np.float64).mean(axis=1)
    w = (np.arange(n_angles) / n_angles)[None, :, None, None]
    flat = (1 - w) * before[:, None] + w * after[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (scan.data - dark) / (flat - dark)


@pytest.fixture(scope="module")
def open_beam() -> HoloScan:
    vol = np.zeros((16, 16, 16), np.float32)
    return holotomo(
        vol,
        vol,
        voxel_size_um=1.0,
        n_angles=4,
        detector_shape=(48, 64),
        photons_per_pixel=3e4,
        n_flats=20,
        flat_drift=0.05,
        seed=3,
    )


# ------------------------------------------------------------------------------------------
# projector
# ------------------------------------------------------------------------------------------


def test_project_matches_radon(asymmetric_slice):
    angles = np.linspace(0, np.pi, 90, endpoint=False)
    ref = radon(asymmetric_slice, theta=np.rad2deg(angles), circle=True).T
    out = project(asymmetric_slice, angles)
    assert out.shape == ref.shape == (90, 64) and out.dtype == np.float32
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert err < 0.02  # measured 0.58 %
    # also over a full turn, including angles beyond pi
    angles = np.linspace(0, 2 * np.pi, 37)
    ref = radon(asymmetric_slice, theta=np.rad2deg(angles), circle=True).T
    out = project(asymmetric_slice, angles)
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 0.02
    # a mirrored detector or reversed angle would be far off
    assert np.linalg.norm(out[:, ::-1] - ref) / np.linalg.norm(ref) > 0.1


def test_project_off_centre_point_orientation():
    row, col = 20, 41  # above and right of the centre (32, 32)
    yy, xx = np.mgrid[:64, :64]
    r2 = (yy - row) ** 2 + (xx - col) ** 2
    blob = np.where(r2 <= 36, np.exp(-r2 / (2 * 1.5**2)), 0.0).astype(np.float32)
    angles = np.deg2rad([0.0, 30.0, 90.0, 135.0, 200.0, 290.0])
    out = project(blob, angles)
    u = np.arange(64)
    centroid = (out * u).sum(axis=1) / out.sum(axis=1)
    # radon geometry: t = x cos(theta) - y sin(theta), x right, y down from (n//2, n//2)
    expect = 32 + (col - 32) * np.cos(angles) - (row - 32) * np.sin(angles)
    np.testing.assert_allclose(centroid, expect, atol=0.01)  # measured <= 1.7e-3 px
    ref = radon(blob, theta=np.rad2deg(angles), circle=True).T
    np.testing.assert_allclose(centroid, (ref * u).sum(axis=1) / ref.sum(axis=1), atol=0.01)
    # mass: exact at multiples of 90 degrees, within 0.2 % otherwise (Joseph sampling)
    np.testing.assert_allclose(out.sum(axis=1), blob.sum(), rtol=3e-3)
    np.testing.assert_allclose(out[[0, 2]].sum(axis=1), blob.sum(), rtol=1e-5)
    # a single voxel peaks on the same detector pixel as radon's
    point = np.zeros((64, 64), np.float32)
    point[row, col] = 1.0
    peak = np.argmax(project(point, angles), axis=1)
    np.testing.assert_array_equal(
        peak, np.argmax(radon(point, theta=np.rad2deg(angles), circle=True).T, axis=1)
    )
    # the rotation axis moves with center_offset_px; a wider detector keeps the centre at n//2
    shifted = project(blob, angles, n_det=80, center_offset_px=2.5)
    c2 = (shifted * np.arange(80)).sum(axis=1) / shifted.sum(axis=1)
    np.testing.assert_allclose(c2, centroid - 32 + 40 + 2.5, atol=0.01)


def test_project_volume_is_slicewise():
    rng = np.random.default_rng(0)
    vol = rng.random((3, 24, 24)).astype(np.float32)
    angles = np.linspace(0, np.pi, 7, endpoint=False)
    out = project(vol, angles, n_det=36)
    assert out.shape == (7, 3, 36) and out.dtype == np.float32
    for z in range(3):
        np.testing.assert_allclose(out[:, z], project(vol[z], angles, n_det=36), rtol=1e-6)
    # mass is conserved (to the Joseph sampling error) when the detector covers the slice
    np.testing.assert_allclose(out.sum(axis=2) / vol.sum(axis=(1, 2)), 1.0, rtol=1e-2)
    np.testing.assert_allclose(out[0].sum(axis=1), vol.sum(axis=(1, 2)), rtol=1e-5)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "name"),
    [
        ((np.zeros(5), [0.0]), {}, ValueError, "volume"),
        ((np.zeros((2, 2, 2, 2)), [0.0]), {}, ValueError, "volume"),
        ((np.full((4, 4), np.nan), [0.0]), {}, ValueError, "volume"),
        ((np.zeros((4, 4), complex), [0.0]), {}, TypeError, "volume"),
        ((np.zeros((4, 4)), [np.nan]), {}, ValueError, "angles_rad"),
        ((np.zeros((4, 4)), [0.0]), {"n_det": 0}, ValueError, "n_det"),
    ],
)
def test_project_rejects_bad_input(args, kwargs, exc, name):
    with pytest.raises(exc, match=name):
        project(*args, **kwargs)


# ------------------------------------------------------------------------------------------
# geometry
# ------------------------------------------------------------------------------------------


def test_scan_geometry_defaults():
    g = scan_geometry(voxel_size_um=0.07)
    d = 1.2
    z1 = np.asarray(DEFAULT_FOCUS_TO_SAMPLE_M)
    assert len(g.distances) == 4 and g.reference_index == 0
    np.testing.assert_allclose(g.magnifications, d / z1, rtol=1e-12)
    assert g.detector_pixel_size_m == pytest.approx(0.07e-6 * d / z1.min(), rel=1e-12)
    assert g.effective_pixel_sizes_m[0] == pytest.approx(0.07e-6, rel=1e-12)
    np.testing.assert_allclose(g.effective_distances_m, z1 * (d - z1) / d, rtol=1e-12)
    np.testing.assert_allclose(g.zoom_factors, z1 / z1.min(), rtol=1e-12)
    lam = wavelength_m(ENERGY_KEV)
    nf = np.asarray(g.effective_pixel_sizes_m) ** 2 / (lam * np.asarray(g.effective_distances_m))
    np.testing.assert_allclose(g.fresnel_numbers, nf, rtol=1e-12)
    np.testing.assert_allclose(g.fresnel_numbers, [3.26e-3, 3.57e-3, 4.53e-3, 5.17e-3], rtol=3e-3)
    # the CTF zeros interleave (docstring claim): sum_j sin^2 chi_j stays >= 0.9 up to the
    # tenth zero of the shortest distance
    zeff = np.asarray(g.effective_distances_m)
    f = np.linspace(1 / np.sqrt(2 * lam * zeff.min()), np.sqrt(10 / (lam * zeff.min())), 20000)
    s2 = (np.sin(np.pi * lam * zeff[:, None] * f**2) ** 2).sum(axis=0)
    assert s2.min() > 0.9


def test_scan_geometry_reference_and_pixel_check():
    g = scan_geometry(voxel_size_um=0.1, focus_to_sample_m=[0.05, 0.02, 0.03])
    assert g.reference_index == 1  # smallest z1 = largest magnification
    assert g.effective_pixel_sizes_m[1] == pytest.approx(1e-7)
    ok = scan_geometry(voxel_size_um=0.1, focus_to_sample_m=[0.02], detector_pixel_size_m=6e-6)
    assert ok.magnifications[0] == pytest.approx(60.0)
    with pytest.raises(ValueError, match="detector_pixel_size_m"):
        scan_geometry(voxel_size_um=0.1, focus_to_sample_m=[0.02], detector_pixel_size_m=3e-6)
    with pytest.raises(ValueError, match="focus_to_sample_m"):
        scan_geometry(voxel_size_um=0.1, focus_to_sample_m=[0.02, 1.2])
    with pytest.raises(ValueError, match="voxel_size_um"):
        scan_geometry(voxel_size_um=-0.1)


# ------------------------------------------------------------------------------------------
# plane-wave holograms
# ------------------------------------------------------------------------------------------


def test_holograms_contact_and_propagation():
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:48, :40] - np.array([24, 20])[:, None, None]
    env = np.exp(-(yy**2 + xx**2) / (2 * 7.0**2))
    phase = 1.5 * env * (1 + 0.2 * rng.random((48, 40)))
    absorption = 0.05 * phase
    kw = {"energy_keV": ENERGY_KEV, "pixel_size_m": 1e-7}
    h = holograms(phase, absorption, distances_m=[0.0, 1e-3, 4e-3], pad=24, **kw)
    assert h.shape == (3, 48, 40) and h.dtype == np.float32
    np.testing.assert_allclose(h[0], np.exp(-2 * absorption), rtol=1e-6)  # Beer-Lambert
    wave = np.exp(-1j * phase - absorption)
    for j, z in enumerate([1e-3, 4e-3]):
        # air padding = the periodic propagation of the wave embedded in T = 1
        in_air = np.pad(wave, 24, constant_values=1.0)
        ref = np.abs(fresnel_propagate(in_air, distance_m=z, pad=0, **kw))[24:-24, 24:-24] ** 2
        np.testing.assert_allclose(h[j + 1], ref, atol=1e-5)
        # edge padding = fresnel_propagate's own padding
        ref = np.abs(fresnel_propagate(wave, distance_m=z, pad=24, **kw)) ** 2
        edge = holograms(phase, absorption, distances_m=[z], pad=24, pad_mode="edge", **kw)
        np.testing.assert_allclose(edge[0], ref, atol=1e-5)
    assert np.abs(h[2] - h[0]).max() > 0.1  # fringes appear


def test_holograms_rejects_bad_input():
    kw = {"energy_keV": ENERGY_KEV, "pixel_size_m": 1e-7, "distances_m": [0.01]}
    with pytest.raises(ValueError, match="phase, absorption"):
        holograms(np.zeros((4, 4)), np.zeros((4, 5)), **kw)
    with pytest.raises(ValueError, match="phase"):
        holograms(np.zeros(4), np.zeros(4), **kw)
    with pytest.raises(ValueError, match="distances_m"):
        holograms(np.zeros((4, 4)), np.zeros((4, 4)), **{**kw, "distances_m": [-1.0]})
    with pytest.raises(ValueError, match="pixel_size_m"):
        holograms(np.zeros((4, 4)), np.zeros((4, 4)), **{**kw, "pixel_size_m": 0.0})
    with pytest.raises(ValueError, match="pad_mode"):
        holograms(np.zeros((4, 4)), np.zeros((4, 4)), pad_mode="zero", **kw)


# ------------------------------------------------------------------------------------------
# magnified detector holograms (noise-free core)
# ------------------------------------------------------------------------------------------


def test_magnification_scales_sphere_shadow():
    """The shadow of a weak absorbing sphere: size ~ M_j / M_ref, position scaled about the axis."""
    n, radius, voxel_um, cor = 32, 8.0, 5.0, 2.5  # N_F ~ 17: nearly geometric shadow
    off = (3, -3, 4)  # (z, y, x) offset of the sphere from the phantom centre
    sphere = ball((n, n, n), (n // 2 + off[0], n // 2 + off[1], n // 2 + off[2]), radius)
    beta = np.where(sphere, 0.05 / (2 * radius * K * voxel_um * 1e-6), 0).astype(np.float32)
    delta = np.zeros_like(beta)
    angles = [0.0, np.pi / 2]
    h = detector_holograms(delta, beta, angles, voxel_size_um=voxel_um, cor_offset_px=cor)
    zoom = scan_geometry(voxel_size_um=voxel_um).zoom_factors
    ny, nx = h.shape[-2:]
    assert h.shape == (4, 2, 40, 56) and h.dtype == np.float32
    rr, cc = np.mgrid[:ny, :nx]
    for a, t in enumerate([off[2], -off[1]]):  # detector coordinate t = x cos - y sin
        for j, s in enumerate(zoom):
            w = 1.0 - h[j, a]
            m = w.sum()
            r0, c0 = (w * rr).sum() / m, (w * cc).sum() / m
            assert r0 == pytest.approx(ny // 2 + off[0] / s, abs=0.01)
            assert c0 == pytest.approx(nx // 2 + (cor + t) / s, abs=0.01)
            # projected ball: <r^2> = 2 R^2 / 5; Sheppard's correction for binning 1/12 per axis
            var = (w * ((rr - r0) ** 2 + (cc - c0) ** 2)).sum() / m / 2 - 1 / 12
            assert np.sqrt(5 * var) / (radius / s) == pytest.approx(1.0, abs=0.02)  # <= 0.8 %
            # area averaging conserves the integrated contrast in sample-plane units
            assert m * s**2 == pytest.approx((1.0 - h[0, a]).sum(), rel=2e-3)


def test_detector_holograms_reference_distance_matches_holograms():
    """At the reference distance the detector is the fine grid: compare with holograms()."""
    n, voxel_um, cor = 24, 0.1, 1.5
    rng = np.random.default_rng(5)
    sphere = ball((n, n, n), (12, 11, 13), 7.0)
    delta = np.where(sphere, 3.3e-6, 0.0) * (1 + 0.1 * rng.random((n, n, n)))
    beta = delta / 40.6
    theta = 0.7
    z1 = [0.021, 0.029]
    shape = (32, 40)
    h = detector_holograms(
        delta,
        beta,
        [theta],
        voxel_size_um=voxel_um,
        focus_to_sample_m=z1,
        detector_shape=shape,
        cor_offset_px=cor,
    )
    g = scan_geometry(voxel_size_um=voxel_um, focus_to_sample_m=z1)
    proj = project(
        np.stack([delta, beta]).reshape(2 * n, n, n), [theta], n_det=40, center_offset_px=cor
    )
    kp = K * voxel_um * 1e-6
    phase = np.zeros(shape)
    absorption = np.zeros(shape)
    row0 = shape[0] // 2 - n // 2
    phase[row0 : row0 + n] = kp * proj[0, :n]
    absorption[row0 : row0 + n] = kp * proj[0, n:]
    ref = holograms(
        phase,
        absorption,
        energy_keV=ENERGY_KEV,
        pixel_size_m=voxel_um * 1e-6,
        distances_m=[g.effective_distances_m[0]],
        pad=200,
    )[0]
    assert np.abs(ref - 1).max() > 0.2  # strong phase contrast
    np.testing.assert_allclose(h[0, 0], ref, atol=2e-3)


def test_detector_holograms_beer_lambert():
    """Large pixels (N_F ~ 600): the contact regime, I = exp(-2 k beta L) through a sphere."""
    n, voxel_um, radius = 24, 30.0, 8
    sphere = ball((n, n, n), (12, 12, 12), radius)
    beta = np.where(sphere, 1e-9, 0.0).astype(np.float32)
    h = detector_holograms(np.zeros_like(beta), beta, [0.3], voxel_size_um=voxel_um)
    ny, nx = h.shape[-2:]
    chord = 2 * radius + 1  # voxels on the line through the centre at theta = 0.3 (Joseph)
    expect = np.exp(-2 * K * 1e-9 * voxel_um * 1e-6 * chord)
    assert h[0, 0, ny // 2, nx // 2] == pytest.approx(expect, rel=0.01)
    assert h[0, 0, 0, 0] == pytest.approx(1.0, abs=1e-5)  # open beam corner


# ------------------------------------------------------------------------------------------
# the raw scan
# ------------------------------------------------------------------------------------------


def test_holoscan_shapes_dtypes_attrs():
    vol = np.zeros((12, 10, 14), np.float32)
    scan = holotomo(
        vol, vol, voxel_size_um=0.5, n_angles=6, n_flats=5, n_darks=3, cor_offset_px=1.25
    )
    g = scan_geometry(voxel_size_um=0.5)
    ny, nx = 16, 2 * int(np.ceil((np.hypot(10, 14) + 2 * 1.25 + 4) / 2))  # default detector
    assert scan.data.shape == (4, 6, ny, nx) and scan.data.dtype == np.uint16
    assert scan.flats.shape == (4, 5, ny, nx) and scan.flats.dtype == np.uint16
    assert scan.darks.shape == (3, ny, nx) and scan.darks.dtype == np.uint16
    assert scan.defect_mask.shape == (ny, nx) and scan.defect_mask.dtype == bool
    assert not scan.defect_mask.any()
    a = scan.attrs
    assert set(a) == {
        "energy_keV",
        "detector_pixel_size_m",
        "focus_to_detector_m",
        "focus_to_sample_m",
        "angles_rad",
        "flat_positions",
        "simulated",
    }
    assert json.loads(json.dumps(a)) == a  # JSON-serialisable, no numpy scalars lost
    assert a["energy_keV"] == 17.0 and a["focus_to_detector_m"] == 1.2
    assert a["focus_to_sample_m"] == list(DEFAULT_FOCUS_TO_SAMPLE_M)
    assert a["detector_pixel_size_m"] == pytest.approx(g.detector_pixel_size_m)
    np.testing.assert_allclose(a["angles_rad"], np.arange(6) * np.pi / 6, rtol=1e-12)
    assert a["flat_positions"] == [0, 0, 0, 6, 6]
    sim = a["simulated"]
    assert set(sim) == {
        "cor_offset_px",
        "photons_per_pixel",
        "seed",
        "flat_drift",
        "defective_pixel_fraction",
        "voxel_size_um",
        "sample_shape",
        "sample_origin_px",
    }
    assert sim["sample_shape"] == [12, 10, 14] and sim["cor_offset_px"] == 1.25
    assert sim["sample_origin_px"] == [ny // 2 - 6, nx // 2 + 1.25 - 7]


def test_sample_origin_locates_phantom():
    """A thin absorbing rod along z at phantom column x0: found at sample_origin col + x0."""
    n, voxel_um = 16, 30.0  # contact regime
    beta = np.zeros((n, n, n), np.float32)
    beta[3:13, n // 2, 11] = 2e-8  # rows z 3..12 at y = centre, x = 11
    scan = holotomo(
        np.zeros_like(beta),
        beta,
        voxel_size_um=voxel_um,
        n_angles=2,
        photons_per_pixel=3e4,
        cor_offset_px=2.0,
        read_noise=0.0,
    )
    row0, col0 = scan.attrs["simulated"]["sample_origin_px"]
    i = flat_corrected(scan)[0, 0]  # reference distance, theta = 0
    contrast = (1 - i).mean(axis=0)
    assert int(np.argmax(contrast)) == col0 + 11
    rows = np.flatnonzero((1 - i)[:, int(col0 + 11)] > 0.5 * (1 - i[:, int(col0 + 11)]).max())
    assert rows.min() == row0 + 3 and rows.max() == row0 + 12


def test_open_beam_flat_field_is_one(open_beam):
    i = flat_corrected(open_beam)
    assert np.all(np.isfinite(i))
    assert abs(i.mean() - 1) < 2e-3
    per_frame = i.mean(axis=(2, 3))
    np.testing.assert_allclose(per_frame, 1.0, atol=3e-3)  # drift removed by interpolation
    # residual noise: Poisson of data (~1/sqrt(3e4) = 0.58 %) and of 10 averaged flats
    assert 0.004 < i.std() < 0.009


def test_counts_follow_poisson(open_beam):
    photons = 3e4
    before = open_beam.flats[:, :10].astype(np.float64) - 100.0  # 10 flats at index 0
    mean = before.mean(axis=1)
    # illumination has mean 1 at projection index 0
    np.testing.assert_allclose(mean.mean(axis=(1, 2)), photons, rtol=2e-3)
    assert mean.min() > 0.5 * photons and mean.max() < 1.6 * photons  # structured, not flat
    var = before.var(axis=1, ddof=1)
    ratio = var.mean() / (mean.mean() + 2.0**2 + 1 / 12)  # + read noise and rounding
    assert ratio == pytest.approx(1.0, abs=0.04)
    darks = open_beam.darks.astype(np.float64)
    assert darks.mean() == pytest.approx(100.0, abs=0.05)
    assert darks.std() == pytest.approx(np.sqrt(2.0**2 + 1 / 12), rel=0.05)


def test_flat_drift_and_shift(open_beam):
    pos = np.asarray(open_beam.attrs["flat_positions"])
    assert pos.tolist() == [0] * 10 + [4] * 10
    f = open_beam.flats.astype(np.float64) - 100.0
    for j in range(4):
        before, after = f[j, pos == 0].mean(axis=0), f[j, pos == 4].mean(axis=0)
        assert after.mean() / before.mean() == pytest.approx(1.05, abs=2e-3)
        # lateral shift of the beam: after = before(x - d), |d| = 0.5 px (least squares)
        gy, gx = np.gradient(before)
        sl = (slice(2, -2), slice(2, -2))
        a = np.stack([-gy[sl].ravel(), -gx[sl].ravel()], axis=1)
        rhs = (after * before.mean() / after.mean() - before)[sl].ravel()
        d = np.linalg.lstsq(a, rhs, rcond=None)[0]
        assert np.hypot(*d) == pytest.approx(0.5, abs=0.05)  # measured 0.49-0.51
    vol = np.zeros((8, 8, 8), np.float32)
    steady = holotomo(
        vol,
        vol,
        voxel_size_um=1.0,
        n_angles=2,
        flat_drift=0.0,
        n_flats=20,
        detector_shape=(48, 64),
        photons_per_pixel=3e4,
    )
    fs = steady.flats.astype(np.float64) - 100.0
    np.testing.assert_allclose(
        fs[:, 10:].mean(axis=(1, 2, 3)) / fs[:, :10].mean(axis=(1, 2, 3)), 1, atol=2e-3
    )
    # flats differ between distances (distance-dependent illumination)
    assert np.corrcoef(fs[0, :10].mean(0).ravel(), fs[1, :10].mean(0).ravel())[0, 1] < 0.99


def test_data_matches_noise_free_core():
    """Flat-corrected counts reproduce detector_holograms within Poisson noise."""
    n, voxel_um = 20, 0.1
    rng = np.random.default_rng(6)
    sphere = ball((n, n, n), (10, 9, 11), 7.0)
    delta = np.where(sphere, 3.3e-6, 0.0) * (1 + 0.1 * rng.random((n, n, n)))
    beta = delta / 40.6
    kw = {"voxel_size_um": voxel_um, "cor_offset_px": -1.0, "detector_shape": (32, 36)}
    scan = holotomo(delta, beta, n_angles=3, photons_per_pixel=2e4, flat_drift=0.02, **kw)
    clean = detector_holograms(delta, beta, scan.attrs["angles_rad"], **kw)
    resid = flat_corrected(scan) - clean
    assert np.abs(clean - 1).max() > 0.3  # real contrast to reproduce
    assert abs(resid.mean()) < 1e-3
    expected_sd = np.sqrt(clean / 2e4).mean()  # Poisson of the data frame dominates
    assert resid.std() == pytest.approx(expected_sd, rel=0.2)


def test_defective_pixels_make_column_stripes():
    vol = np.zeros((16, 16, 16), np.float32)
    scan = holotomo(
        vol,
        vol,
        voxel_size_um=1.0,
        n_angles=8,
        detector_shape=(40, 48),
        photons_per_pixel=3e4,
        defective_pixel_fraction=0.02,
        seed=7,
    )
    mask = scan.defect_mask
    assert mask.sum() == round(0.02 * 40 * 48)
    dead = (scan.flats == 0).all(axis=(0, 1)) & (scan.data == 0).all(axis=(0, 1))
    assert dead.sum() == mask.sum() // 10 and np.all(mask[dead])
    assert np.all(scan.darks[:, dead] == 0)
    i = flat_corrected(scan)
    assert np.all(~np.isfinite(i[:, :, dead]))  # 0 / 0: must be flagged downstream
    gain = mask & ~dead
    dev = i.mean(axis=(0, 1)) - 1  # averaged over distances and angles
    assert np.abs(dev[gain]).min() > 0.04  # +-5-20 % gain errors
    assert np.abs(dev[~mask]).max() < 0.02
    # a stripe: every angle of a defective pixel's sinogram column deviates with the same sign
    sign = np.sign(dev[gain])
    per_angle = i[:, :, gain] - 1  # (n_dist, n_angles, n_gain)
    assert np.all(np.sign(per_angle) == sign[None, None, :])


def test_holotomo_is_deterministic():
    rng = np.random.default_rng(8)
    delta = (rng.random((8, 8, 8)) * 1e-7).astype(np.float32)
    kw = {"voxel_size_um": 1.0, "n_angles": 2, "defective_pixel_fraction": 0.05}
    a = holotomo(delta, delta / 50, seed=11, **kw)
    b = holotomo(delta, delta / 50, seed=11, **kw)
    c = holotomo(delta, delta / 50, seed=12, **kw)
    for name in ("data", "flats", "darks", "defect_mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.attrs == b.attrs
    assert not np.array_equal(a.data, c.data)
    assert not np.array_equal(a.defect_mask, c.defect_mask)


@pytest.mark.parametrize(
    ("change", "exc", "name"),
    [
        ({"beta": np.zeros((8, 8, 9))}, ValueError, "delta, beta"),
        ({"delta": np.full((8, 8, 8), np.nan)}, ValueError, "delta"),
        ({"delta": np.zeros((8, 8)), "beta": np.zeros((8, 8))}, ValueError, "delta"),
        ({"beta": -np.ones((8, 8, 8))}, ValueError, "beta"),
        ({"delta": np.zeros((8, 8, 8), complex)}, TypeError, "delta"),
        ({"focus_to_sample_m": [0.02, 1.2]}, ValueError, "focus_to_sample_m"),
        ({"focus_to_sample_m": [0.02, 1.5]}, ValueError, "focus_to_sample_m"),
        ({"n_angles": 1}, ValueError, "n_angles"),
        ({"n_angles": 2.5}, TypeError, "n_angles"),
        ({"voxel_size_um": 0.0}, ValueError, "voxel_size_um"),
        ({"detector_pixel_size_m": 1e-6}, ValueError, "detector_pixel_size_m"),
        ({"photons_per_pixel": 0}, ValueError, "photons_per_pixel"),
        ({"defective_pixel_fraction": 0.7}, ValueError, "defective_pixel_fraction"),
        ({"flat_drift": -1.0}, ValueError, "flat_drift"),
        ({"n_flats": 0}, ValueError, "n_flats"),
        ({"detector_shape": (16,)}, ValueError, "detector_shape"),
        ({"angle_range_rad": 7.0}, ValueError, "angle_range_rad"),
        ({"energy_keV": -17.0}, ValueError, "energy_keV"),
    ],
)
def test_holotomo_rejects_bad_input(change, exc, name):
    args = {"delta": np.zeros((8, 8, 8)), "beta": np.zeros((8, 8, 8)), "voxel_size_um": 1.0}
    args.update(change)
    delta, beta = args.pop("delta"), args.pop("beta")
    with pytest.raises(exc, match=name):
        holotomo(delta, beta, **args)
