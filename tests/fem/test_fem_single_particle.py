"""Tests of holocat.fem.single_particle against analytic solutions (SCIENCE.md §7)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq

from holocat.fem import plot_single_particle, single_particle

# SCIENCE.md §7 sanity case: NMC particle at 5C
R_UM = 5.0
D_M2_S = 2e-14
FLUX = 8.2e-5
OMEGA = 1.4e-6
E_GPA = 140.0
NU = 0.3


def _crank_roots(n_terms: int) -> np.ndarray:
    """Positive roots of tan(a) = a, one in each (k pi, k pi + pi/2)."""
    eps = 1e-12
    return np.array(
        [
            brentq(lambda a: np.tan(a) - a, k * np.pi + eps, k * np.pi + np.pi / 2 - eps)
            for k in range(1, n_terms + 1)
        ]
    )


ALPHA = _crank_roots(400)


def crank_constant_flux(r_m, t_s, *, radius_m, diffusivity_m2_s, flux_mol_m2_s, c0_mol_m3=0.0):
    """Crank (Mathematics of Diffusion, ch. 6) constant-flux sphere; r -> 0 via sinc."""
    r = np.asarray(r_m, dtype=float)[:, None]
    # 400 terms (>= 50); the first omitted one is negligible at the times tested
    assert np.exp(-(ALPHA[-1] ** 2) * diffusivity_m2_s * t_s / radius_m**2) < 1e-12
    a = ALPHA[None, :]
    # (2R/r) sin(a r/R) = 2 a sinc(a r/(pi R)), finite at r = 0
    series = (
        2.0
        * a
        * np.sinc(a * r / (np.pi * radius_m))
        * np.exp(-(a**2) * diffusivity_m2_s * t_s / radius_m**2)
        / (a**2 * np.sin(a))
    ).sum(axis=1)
    rr = r[:, 0] / radius_m
    return c0_mol_m3 + flux_mol_m2_s * radius_m / diffusivity_m2_s * (
        3.0 * diffusivity_m2_s * t_s / radius_m**2 + rr**2 / 2.0 - 0.3 - series
    )


def _p1_moment(r_um: np.ndarray, c: np.ndarray) -> float:
    """Exact ∫ c r² dr of the piecewise-linear interpolant through (r_um, c)."""
    a, b = r_um[:-1], r_um[1:]
    ca, cb = c[:-1], c[1:]
    slope = (cb - ca) / (b - a)
    # ∫_a^b (ca + slope (x - a)) x² dx
    return float(np.sum((ca - slope * a) * (b**3 - a**3) / 3.0 + slope * (b**4 - a**4) / 4.0))


@pytest.fixture(scope="module")
def sanity_run() -> pd.DataFrame:
    return single_particle(
        radius_um=R_UM, diffusivity_m2_s=D_M2_S, flux_mol_m2_s=FLUX, t_end_s=720.0, n_out=50
    )


def test_output_layout(sanity_run):
    df = sanity_run
    assert list(df.columns) == ["r_um", "t_s", "c_mol_m3", "sigma_r_MPa", "sigma_t_MPa"]
    assert len(df) == 50 * 101
    times = np.sort(df["t_s"].unique())
    np.testing.assert_allclose(times, 720.0 * np.arange(1, 51) / 50, rtol=1e-12)
    assert df["r_um"].min() == 0.0 and df["r_um"].max() == R_UM
    assert df.attrs["partial_molar_volume_m3_mol"] == OMEGA
    assert df.attrs["youngs_modulus_GPa"] == E_GPA and df.attrs["poisson_ratio"] == NU
    assert df.attrs["diffusivity_m2_s"] == D_M2_S and df.attrs["flux_mol_m2_s"] == FLUX
    assert df.attrs["radius_um"] == R_UM and df.attrs["c0_mol_m3"] == 0.0
    assert df.attrs["diffusion_time_s"] == pytest.approx(1250.0)  # tau_D = R²/D
    assert all(np.isfinite(df[c]).all() for c in df.columns)


@pytest.mark.parametrize("time_scheme", ["bdf2", "euler"])
def test_matches_crank_series(sanity_run, time_scheme):
    df = (
        sanity_run
        if time_scheme == "bdf2"
        else single_particle(
            radius_um=R_UM,
            diffusivity_m2_s=D_M2_S,
            flux_mol_m2_s=FLUX,
            t_end_s=720.0,
            n_out=50,
            time_scheme="euler",
        )
    )
    for t in (14.4, 72.0, 216.0, 720.0):  # D t / R² from 0.0115 to 0.576
        rows = df[np.isclose(df["t_s"], t)]
        exact = crank_constant_flux(
            rows["r_um"].to_numpy() * 1e-6,
            t,
            radius_m=R_UM * 1e-6,
            diffusivity_m2_s=D_M2_S,
            flux_mol_m2_s=FLUX,
        )
        rise = exact.max()  # c(R, t) - c0
        err = np.abs(rows["c_mol_m3"].to_numpy() - exact).max()
        # measured: bdf2 <= 6e-4 of the rise, euler <= 7.3e-3 (first output time)
        assert err < 0.01 * rise, (time_scheme, t, err / rise)


def test_matches_crank_early_time_with_c0_and_extraction():
    # D t/R² = 1e-3 at the first output, negative flux (Li leaving), large c0
    t_end = 4 * 1e-3 * (3e-6) ** 2 / 1e-14
    df = single_particle(
        radius_um=3.0,
        diffusivity_m2_s=1e-14,
        flux_mol_m2_s=-2e-5,
        t_end_s=t_end,
        n_out=4,
        c0_mol_m3=3e4,
        n_elements=80,
    )
    for t in np.sort(df["t_s"].unique()):
        rows = df[df["t_s"] == t]
        exact = crank_constant_flux(
            rows["r_um"].to_numpy() * 1e-6,
            t,
            radius_m=3e-6,
            diffusivity_m2_s=1e-14,
            flux_mol_m2_s=-2e-5,
            c0_mol_m3=3e4,
        )
        drop = 3e4 - exact.min()
        assert np.abs(rows["c_mol_m3"].to_numpy() - exact).max() < 0.01 * drop


@pytest.mark.parametrize(
    ("mass", "time_scheme", "c0"),
    [("consistent", "bdf2", 0.0), ("consistent", "euler", 1.2e4)],
)
def test_mass_balance_exact(mass, time_scheme, c0):
    df = single_particle(
        radius_um=R_UM,
        diffusivity_m2_s=D_M2_S,
        flux_mol_m2_s=FLUX,
        t_end_s=400.0,
        n_out=8,
        c0_mol_m3=c0,
        mass=mass,
        time_scheme=time_scheme,
    )
    volume_um3 = 4.0 / 3.0 * np.pi * R_UM**3
    for t, rows in df.groupby("t_s"):
        amount = 4.0 * np.pi * _p1_moment(rows["r_um"].to_numpy(), rows["c_mol_m3"].to_numpy())
        # mol m⁻³ µm³: 4πR² [µm²] F [mol m⁻² s⁻¹] t [s] × 1e6 µm/m
        expected_added = 4.0 * np.pi * R_UM**2 * FLUX * t * 1e6
        assert amount == pytest.approx(c0 * volume_um3 + expected_added, rel=1e-6)
        assert amount - c0 * volume_um3 == pytest.approx(expected_added, rel=1e-6)


def test_cheng_verbrugge_identities(sanity_run):
    prefactor = OMEGA * E_GPA * 1e3 / (3.0 * (1.0 - NU))  # MPa per mol m⁻³
    for t, rows in sanity_run.groupby("t_s"):
        r = rows["r_um"].to_numpy()
        c = rows["c_mol_m3"].to_numpy()
        c_avg = 3.0 * _p1_moment(r, c) / R_UM**3
        surface, centre = rows.iloc[-1], rows.iloc[0]
        assert surface["sigma_r_MPa"] == pytest.approx(0.0, abs=1e-9)
        assert surface["sigma_t_MPa"] == pytest.approx(
            prefactor * (c_avg - surface["c_mol_m3"]), rel=1e-9
        )
        assert centre["sigma_r_MPa"] == pytest.approx(centre["sigma_t_MPa"], rel=1e-12)
        assert centre["sigma_r_MPa"] == pytest.approx(
            2.0 * OMEGA * E_GPA * 1e3 / (9.0 * (1.0 - NU)) * (c_avg - centre["c_mol_m3"]),
            rel=1e-9,
        ), t


def test_stress_against_analytic_profiles(sanity_run):
    # σ_r, σ_t from Crank's c(r) integrated with a fine trapezoid rule: < 1 % of max |σ_t|
    t = 360.0
    rows = sanity_run[np.isclose(sanity_run["t_s"], t)]
    r_fine = np.linspace(0.0, R_UM, 20001)
    c_fine = crank_constant_flux(
        r_fine * 1e-6, t, radius_m=R_UM * 1e-6, diffusivity_m2_s=D_M2_S, flux_mol_m2_s=FLUX
    )
    from scipy.integrate import cumulative_trapezoid

    moment = cumulative_trapezoid(c_fine * r_fine**2, r_fine, initial=0.0)
    i_r = np.empty_like(r_fine)
    i_r[1:] = moment[1:] / r_fine[1:] ** 3
    i_r[0] = c_fine[0] / 3.0  # r -> 0 limit
    k = OMEGA * E_GPA * 1e3 / (3.0 * (1.0 - NU))
    sigma_r = 2 * k * (i_r[-1] - i_r)
    sigma_t = k * (2 * i_r[-1] + i_r - c_fine)
    ref_r = np.interp(rows["r_um"], r_fine, sigma_r)
    ref_t = np.interp(rows["r_um"], r_fine, sigma_t)
    scale = np.abs(sigma_t).max()
    assert np.abs(rows["sigma_r_MPa"].to_numpy() - ref_r).max() < 0.01 * scale
    assert np.abs(rows["sigma_t_MPa"].to_numpy() - ref_t).max() < 0.01 * scale


def test_sanity_numbers(sanity_run):
    """SCIENCE.md §7: quasi-steady gap 0.2 jR/D = 4.1e3 mol m⁻³, surface hoop ≈ -382 MPa."""
    final = sanity_run[sanity_run["t_s"] == sanity_run["t_s"].max()]
    r = final["r_um"].to_numpy()
    c = final["c_mol_m3"].to_numpy()
    c_avg = 3.0 * _p1_moment(r, c) / R_UM**3
    gap = c[-1] - c_avg
    expected_gap = 0.2 * FLUX * R_UM * 1e-6 / D_M2_S  # 4100 mol m⁻³ (t = 720 s = 0.58 tau_D)
    assert gap == pytest.approx(expected_gap, rel=0.01)
    # mean rises as 3 F t / R (exact)
    assert c_avg == pytest.approx(3 * FLUX * 720.0 / (R_UM * 1e-6), rel=1e-6)
    hoop = final["sigma_t_MPa"].iloc[-1]
    expected_hoop = -273.0 * OMEGA / 1e-6  # ≈ -382 MPa, compressive on insertion
    assert hoop < 0
    assert hoop == pytest.approx(expected_hoop, rel=0.01)
    # centre in tension, surface in compression throughout
    surface = sanity_run[sanity_run["r_um"] == R_UM]
    centre = sanity_run[sanity_run["r_um"] == 0.0]
    assert (surface["sigma_t_MPa"] < 0).all() and (centre["sigma_t_MPa"] > 0).all()


def test_omega_scales_stress_linearly(sanity_run):
    half = single_particle(
        radius_um=R_UM,
        diffusivity_m2_s=D_M2_S,
        flux_mol_m2_s=FLUX,
        t_end_s=720.0,
        n_out=50,
        partial_molar_volume_m3_mol=0.7e-6,
    )
    np.testing.assert_allclose(half["c_mol_m3"], sanity_run["c_mol_m3"], rtol=1e-12)
    np.testing.assert_allclose(
        half["sigma_t_MPa"], 0.5 * sanity_run["sigma_t_MPa"], rtol=1e-10, atol=1e-9
    )
    assert half.attrs["partial_molar_volume_m3_mol"] == 0.7e-6


def test_c_max_out_of_range_recorded(caplog):
    df = single_particle(
        radius_um=R_UM,
        diffusivity_m2_s=D_M2_S,
        flux_mol_m2_s=FLUX,
        t_end_s=720.0,
        n_out=10,
        c_max_mol_m3=3.0e4,
    )
    surface = df[df["r_um"] == R_UM]
    first = surface.loc[surface["c_mol_m3"] > 3.0e4, "t_s"].min()
    assert df.attrs["t_out_of_range_s"] == pytest.approx(first)
    assert "leaves" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"radius_um": 0.0}, "radius_um"),
        ({"radius_um": -1.0}, "radius_um"),
        ({"diffusivity_m2_s": 0.0}, "diffusivity_m2_s"),
        ({"diffusivity_m2_s": -2e-14}, "diffusivity_m2_s"),
        ({"t_end_s": 0.0}, "t_end_s"),
        ({"t_end_s": -5.0}, "t_end_s"),
        ({"n_out": 0}, "n_out"),
        ({"n_elements": 1}, "n_elements"),
        ({"flux_mol_m2_s": float("nan")}, "flux_mol_m2_s"),
        ({"poisson_ratio": 0.5}, "poisson_ratio"),
        ({"c_max_mol_m3": 10.0, "c0_mol_m3": 20.0}, "c_max_mol_m3"),
        ({"mass": "diagonal"}, "mass"),
        ({"time_scheme": "rk4"}, "time_scheme"),
        ({"dt_s": 0.0}, "dt_s"),
    ],
)
def test_errors(kwargs, match):
    base = dict(radius_um=R_UM, diffusivity_m2_s=D_M2_S, flux_mol_m2_s=FLUX, t_end_s=10.0, n_out=2)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        single_particle(**base)


def test_type_errors():
    with pytest.raises(TypeError, match="n_out"):
        single_particle(
            radius_um=R_UM, diffusivity_m2_s=D_M2_S, flux_mol_m2_s=FLUX, t_end_s=1.0, n_out=2.5
        )
    with pytest.raises(TypeError, match="radius_um"):
        single_particle(radius_um="5", diffusivity_m2_s=D_M2_S, flux_mol_m2_s=FLUX, t_end_s=1.0)


def test_plot_single_particle(sanity_run):
    fig = plot_single_particle(sanity_run, n_profiles=4)
    ax_c, ax_s = fig.axes
    assert len(ax_c.get_lines()) == 4
    last = ax_c.get_lines()[-1]
    final = sanity_run[sanity_run["t_s"] == sanity_run["t_s"].max()]
    np.testing.assert_allclose(last.get_ydata(), final["c_mol_m3"])
    hoop = ax_s.get_lines()[0]
    surface = sanity_run[sanity_run["r_um"] == R_UM]
    np.testing.assert_allclose(hoop.get_xdata(), surface["t_s"])
    np.testing.assert_allclose(hoop.get_ydata(), surface["sigma_t_MPa"])
    with pytest.raises(ValueError, match="df"):
        plot_single_particle(sanity_run.drop(columns="sigma_t_MPa"))
