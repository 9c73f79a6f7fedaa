"""Tests of holocat.optics: wavelength, cone-beam geometry and Fresnel propagation.

Oracles: the photon-energy/wavelength relation, the Fresnel scaling formulas of SCIENCE.md §1,
Parseval's theorem, the weak-object contrast transfer function and the transport-of-intensity
limit I - 1 = (lambda z / 2 pi) laplacian(phi) (SCIENCE.md §2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi

from holocat.optics import (
    contrast_delta_beta,
    distance_geometry,
    fresnel_kernel,
    fresnel_number,
    fresnel_propagate,
    wavelength_m,
)

ENERGY_KEV = 17.0
PIXEL_M = 1e-7
N = 64


@pytest.fixture
def radius_px() -> np.ndarray:
    yy, xx = np.mgrid[:N, :N] - N // 2
    return np.hypot(yy, xx)


def test_wavelength_at_17_keV():
    lam = wavelength_m(ENERGY_KEV)
    assert lam == pytest.approx(7.2932e-11, rel=1e-4)
    assert 2 * np.pi / lam == pytest.approx(8.615e10, rel=1e-3)  # k of SCIENCE.md §1


@pytest.mark.parametrize("energy", [0.0, -1.0, np.nan, np.inf])
def test_wavelength_rejects_bad_energy(energy):
    with pytest.raises(ValueError, match="energy_keV"):
        wavelength_m(energy)


def test_distance_geometry_values():
    d = 1.2
    z1 = [0.021, 0.12, 0.6]
    geoms = distance_geometry(
        detector_pixel_size_m=3e-6, focus_to_detector_m=d, focus_to_sample_m=z1
    )
    assert [g.focus_to_sample_m for g in geoms] == z1  # order kept
    for g, z in zip(geoms, z1, strict=True):
        m = d / z
        assert g.magnification == pytest.approx(m, rel=1e-12)
        assert g.effective_pixel_size_m == pytest.approx(3e-6 / m, rel=1e-12)
        assert g.effective_distance_m == pytest.approx(z * (d - z) / d, rel=1e-12)
        assert g.effective_distance_m == pytest.approx((d - z) / m, rel=1e-12)
        assert g.focus_to_detector_m == d
    # M = 10, p_eff = 300 nm, z_eff = 0.108 m (docstring example)
    assert geoms[1].magnification == pytest.approx(10.0)
    assert geoms[1].effective_pixel_size_m == pytest.approx(3e-7)
    assert geoms[1].effective_distance_m == pytest.approx(0.108)


def test_distance_geometry_scalar_distance():
    (g,) = distance_geometry(
        detector_pixel_size_m=1e-6, focus_to_detector_m=1.0, focus_to_sample_m=0.5
    )
    assert g.magnification == pytest.approx(2.0)
    assert g.effective_distance_m == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"focus_to_sample_m": [0.1, 1.2]}, "focus_to_sample_m"),  # z1 == D
        ({"focus_to_sample_m": [1.5]}, "focus_to_sample_m"),  # z1 > D
        ({"focus_to_sample_m": [-0.1]}, "focus_to_sample_m"),
        ({"focus_to_sample_m": []}, "focus_to_sample_m"),
        ({"detector_pixel_size_m": -3e-6}, "detector_pixel_size_m"),
        ({"detector_pixel_size_m": 0.0}, "detector_pixel_size_m"),
        ({"focus_to_detector_m": -1.2}, "focus_to_detector_m"),
    ],
)
def test_distance_geometry_errors(kwargs, name):
    args = {"detector_pixel_size_m": 3e-6, "focus_to_detector_m": 1.2, "focus_to_sample_m": [0.1]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        distance_geometry(**args)


def test_fresnel_number():
    lam = wavelength_m(ENERGY_KEV)
    nf = fresnel_number(pixel_size_m=1e-7, distance_m=0.02, energy_keV=ENERGY_KEV)
    assert nf == pytest.approx(1e-14 / (lam * 0.02), rel=1e-12)


def test_fresnel_kernel_is_unitary_and_conserves_energy():
    rng = np.random.default_rng(0)
    shape = (48, 40)
    wave = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    kernel = fresnel_kernel(shape, pixel_size_m=PIXEL_M, distance_m=0.01, energy_keV=ENERGY_KEV)
    assert kernel.shape == shape
    np.testing.assert_allclose(np.abs(kernel), 1.0, rtol=0, atol=1e-12)
    assert kernel[0, 0] == 1.0  # no phase at f = 0
    out = np.fft.ifft2(np.fft.fft2(wave) * kernel)
    e_in, e_out = np.sum(np.abs(wave) ** 2), np.sum(np.abs(out) ** 2)
    assert abs(e_out - e_in) / e_in < 1e-10
    # the kernel follows exp(-i pi lambda z |f|^2) on the fftfreq grid
    lam = wavelength_m(ENERGY_KEV)
    fy, fx = np.fft.fftfreq(shape[0], d=PIXEL_M)[3], np.fft.fftfreq(shape[1], d=PIXEL_M)[5]
    expect = np.exp(-1j * np.pi * lam * 0.01 * (fy**2 + fx**2))
    assert abs(kernel[3, 5] - expect) < 1e-12


def test_fresnel_propagate_zero_distance_is_identity():
    rng = np.random.default_rng(1)
    wave = np.exp(-1j * rng.random((16, 20)) - 0.1 * rng.random((16, 20)))
    out = fresnel_propagate(wave, pixel_size_m=PIXEL_M, distance_m=0.0, energy_keV=ENERGY_KEV)
    assert out.dtype == np.complex128 and out is not wave
    np.testing.assert_array_equal(out, wave)


def test_fresnel_propagate_forward_backward(radius_px):
    phi = 0.8 * np.exp(-(radius_px**2) / (2 * 6.0**2))
    wave = np.exp(-1j * phi - 0.1 * phi)
    kw = {"pixel_size_m": PIXEL_M, "energy_keV": ENERGY_KEV}
    # periodic (no padding): exact inverse
    fwd = fresnel_propagate(wave, distance_m=1e-3, pad=0, **kw)
    back = fresnel_propagate(fwd, distance_m=-1e-3, pad=0, **kw)
    np.testing.assert_allclose(back, wave, rtol=0, atol=1e-12)
    # default edge padding, object in air: recovered to 1e-6 (measured 4e-7 worst pixel)
    fwd = fresnel_propagate(wave, distance_m=1e-3, **kw)
    assert np.max(np.abs(fwd - wave)) > 0.01  # the propagation did something (0.023)
    back = fresnel_propagate(fwd, distance_m=-1e-3, **kw)
    np.testing.assert_allclose(back, wave, rtol=0, atol=1e-6)


@pytest.mark.parametrize("compact", [False, True])
def test_weak_object_matches_ctf(compact, radius_px):
    """F[I - 1] = -(2 sin chi + 2 (beta/delta) cos chi) F[phi] for phi << 1."""
    rng = np.random.default_rng(2)
    g = ndi.gaussian_filter(rng.standard_normal((N, N)), 2.0, mode="wrap")
    phi = 0.01 * g / np.abs(g).max()
    if compact:  # object fading out towards the edges: default (edge) padding is harmless
        phi *= np.exp(-(radius_px**2) / (2 * 12.0**2))
    beta_delta = 0.1
    z = 1e-3  # chi reaches 11 rad at the Nyquist corner: several CTF zeros
    wave = np.exp(-1j * phi - beta_delta * phi)
    pad = None if compact else 0
    out = fresnel_propagate(
        wave, pixel_size_m=PIXEL_M, distance_m=z, energy_keV=ENERGY_KEV, pad=pad
    )
    intensity = np.abs(out) ** 2
    f = np.fft.fftfreq(N, d=PIXEL_M)
    chi = np.pi * wavelength_m(ENERGY_KEV) * z * (f[:, None] ** 2 + f[None, :] ** 2)
    ctf = -(2 * np.sin(chi) + 2 * beta_delta * np.cos(chi))
    pred = np.real(np.fft.ifft2(ctf * np.fft.fft2(phi)))
    err = np.linalg.norm(intensity - 1 - pred) / np.linalg.norm(pred)
    # measured 0.15 % (periodic) and 1.0 % (padded, compact object)
    assert err < 0.03
    # the opposite sign convention would be off by ~200 %
    flipped = np.real(
        np.fft.ifft2(-(-2 * np.sin(chi) + 2 * beta_delta * np.cos(chi)) * np.fft.fft2(phi))
    )
    assert np.linalg.norm(intensity - 1 - flipped) / np.linalg.norm(pred) > 0.5


def test_transport_of_intensity_limit(radius_px):
    """Smooth pure-phase object, small z: I - 1 = (lambda z / 2 pi) laplacian(phi)."""
    s, a, z = 5.0, 0.1, 3e-4
    phi = a * np.exp(-(radius_px**2) / (2 * s**2))
    laplacian = phi * (radius_px**2 / s**4 - 2 / s**2) / PIXEL_M**2  # analytic, rad m^-2
    pred = wavelength_m(ENERGY_KEV) * z / (2 * np.pi) * laplacian
    out = fresnel_propagate(
        np.exp(-1j * phi), pixel_size_m=PIXEL_M, distance_m=z, energy_keV=ENERGY_KEV
    )
    intensity = np.abs(out) ** 2
    err = np.linalg.norm(intensity - 1 - pred) / np.linalg.norm(pred)
    assert err < 0.01  # measured 0.14 %
    assert intensity[N // 2, N // 2] < 1 - 0.5 * abs(
        pred[N // 2, N // 2]
    )  # focusing would brighten


def test_sphere_dark_inside_rim_bright_outside(radius_px):
    """Homogeneous sphere: I - 1 ~ (lambda z / 2 pi) laplacian(phi) < 0 just inside the rim."""
    radius, phi_max, z = 12.0, 0.5, 5e-4  # fringe width sqrt(lambda z) = 1.9 px
    phi = phi_max * np.sqrt(np.clip(1 - (radius_px / radius) ** 2, 0, None))
    out = fresnel_propagate(
        np.exp(-1j * phi), pixel_size_m=PIXEL_M, distance_m=z, energy_keV=ENERGY_KEV
    )
    intensity = np.abs(out) ** 2
    inside = (radius_px > radius - 2.5) & (radius_px < radius - 0.5)
    outside = (radius_px > radius + 0.5) & (radius_px < radius + 2.5)
    assert intensity[inside].mean() < 0.98  # measured 0.961
    assert intensity[outside].mean() > 1.005  # measured 1.013
    # a pure phase object only redistributes intensity
    assert intensity.mean() == pytest.approx(1.0, abs=1e-6)


def test_fresnel_propagate_rejects_bad_wave():
    with pytest.raises(ValueError, match="wave"):
        fresnel_propagate(np.ones(5), pixel_size_m=PIXEL_M, distance_m=0.01, energy_keV=ENERGY_KEV)
    bad = np.ones((4, 4), complex)
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="wave"):
        fresnel_propagate(bad, pixel_size_m=PIXEL_M, distance_m=0.01, energy_keV=ENERGY_KEV)


def test_contrast_delta_beta_of_the_demo_matrix_is_the_configured_default():
    """NMC811 in the simulator's matrix (half carbon-binder, half electrolyte by volume) at 17 keV:
    (delta_p - delta_m) / (beta_p - beta_m) = 27.0 from the shipped table, and config.yaml
    retrieves with it."""
    import yaml

    from holocat.simulate.materials import load_materials, mix_by_mass

    mats = load_materials()
    cb = mix_by_mass([(mats["carbon"], 0.5), (mats["PVDF"], 0.5)], name="carbon_binder")
    d_cb, b_cb = cb.at(17.0)
    d_el, b_el = mats["electrolyte"].at(17.0)
    d_p, b_p = mats["NMC811"].at(17.0)
    ratio = contrast_delta_beta(d_p, b_p, (d_cb + d_el) / 2, (b_cb + b_el) / 2)
    assert ratio == pytest.approx(27.0, abs=0.05)
    assert contrast_delta_beta(d_p, b_p, 0.0, 0.0) == pytest.approx(mats["NMC811"].delta_beta)
    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    assert config["phase"]["delta_beta"] == pytest.approx(ratio, abs=0.05)


@pytest.mark.parametrize(
    "args, match",
    [
        ((-1e-6, 1e-8, 0.0, 0.0), "delta_particle"),
        ((1e-6, float("nan"), 0.0, 0.0), "beta_particle"),
        ((1e-6, 1e-8, "x", 0.0), "delta_matrix"),
        ((1e-6, 1e-8, 2e-6, 0.0), "exceed the matrix"),
        ((1e-6, 1e-8, 0.0, 1e-8), "exceed the matrix"),
    ],
)
def test_contrast_delta_beta_rejects_bad_values(args, match):
    with pytest.raises(ValueError, match=match):
        contrast_delta_beta(*args)
