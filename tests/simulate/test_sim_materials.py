"""Tests of holocat.simulate.materials: the shipped δ/β table, energy scaling and mixing."""

from __future__ import annotations

import math
import re

import pytest

from holocat.optics import CLASSICAL_ELECTRON_RADIUS_M, wavelength_m
from holocat.simulate.materials import (
    Material,
    default_materials_path,
    load_materials,
    mix_by_mass,
)

AVOGADRO = 6.02214076e23
# (Z, standard atomic weight g/mol)
ELEMENTS = {
    "H": (1, 1.008),
    "Li": (3, 6.94),
    "C": (6, 12.011),
    "O": (8, 15.999),
    "F": (9, 18.998),
    "Al": (13, 26.982),
    "Mn": (25, 54.938),
    "Co": (27, 58.933),
    "Ni": (28, 58.693),
}

# SCIENCE.md §2 (xraylib 4.3.0, 17 keV): delta and the delta/beta ratio
EXPECTED = {
    "NMC811": (3.29e-6, 40.6),
    "carbon": (1.36e-6, 2000.0),
    "PVDF": (1.28e-6, 970.0),
    "electrolyte": (0.93e-6, 1500.0),
    "Al": (1.88e-6, 218.0),
}


def _electrons_per_m3(formula: str, density_g_cm3: float) -> float:
    z_sum = mass = 0.0
    for sym, count in re.findall(r"([A-Z][a-z]?)([0-9.]*)", formula):
        n = float(count) if count else 1.0
        z, a = ELEMENTS[sym]
        z_sum += n * z
        mass += n * a
    return density_g_cm3 * AVOGADRO * z_sum / mass * 1e6


def test_default_table_matches_science_digest():
    mats = load_materials()
    assert list(mats) == list(EXPECTED)
    for name, (delta, ratio) in EXPECTED.items():
        m = mats[name]
        assert m.energy_keV == 17.0
        assert m.delta == pytest.approx(delta, rel=1e-12)
        # β was derived from the rounded ratios of SCIENCE.md; NMC's β is tabulated directly
        assert m.delta_beta == pytest.approx(ratio, rel=0.005)
    assert mats["NMC811"].beta == pytest.approx(8.11e-8, rel=1e-12)
    assert default_materials_path().name == "materials.csv"


def test_delta_agrees_with_free_electron_density():
    # oracle: far above the K edges δ ≈ r_e λ² n_e / (2π) from formula and density alone;
    # the anomalous correction f' at 17 keV is < 2 % for these materials.
    lam = wavelength_m(17.0)
    for m in load_materials().values():
        n_e = _electrons_per_m3(m.formula, m.density_g_cm3)
        delta_free = CLASSICAL_ELECTRON_RADIUS_M * lam**2 * n_e / (2 * math.pi)
        assert m.delta == pytest.approx(delta_free, rel=0.02), m.name


def test_energy_scaling():
    nmc = load_materials()["NMC811"]
    assert nmc.at(17.0) == (nmc.delta, nmc.beta)
    d, b = nmc.at(8.5)  # half the energy: δ × 4, β × 16
    assert d == pytest.approx(4 * nmc.delta, rel=1e-12)
    assert b == pytest.approx(16 * nmc.beta, rel=1e-12)
    d, b = nmc.at(25.0)
    assert d == pytest.approx(nmc.delta * (17 / 25) ** 2, rel=1e-12)
    assert b == pytest.approx(nmc.beta * (17 / 25) ** 4, rel=1e-12)
    with pytest.raises(ValueError, match="energy_keV"):
        nmc.at(0.0)


def test_mix_by_mass_carbon_binder():
    mats = load_materials()
    c, p = mats["carbon"], mats["PVDF"]
    cb = mix_by_mass([(c, 0.5), (p, 0.5)], name="cb")
    # volume fractions of 1:1 by mass: v_i ∝ 1/ρ_i
    v_c = (1 / 1.9) / (1 / 1.9 + 1 / 1.78)
    assert v_c == pytest.approx(0.4837, abs=1e-4)
    assert cb.delta == pytest.approx(v_c * 1.36e-6 + (1 - v_c) * 1.28e-6, rel=1e-12)
    assert cb.beta == pytest.approx(v_c * c.beta + (1 - v_c) * p.beta, rel=1e-12)
    assert cb.density_g_cm3 == pytest.approx(2 / (1 / 1.9 + 1 / 1.78), rel=1e-12)
    # weights are normalised; a material mixed with itself is itself
    same = mix_by_mass([(c, 3.0), (c, 1.0)], name="c2")
    assert same.delta == pytest.approx(c.delta) and same.density_g_cm3 == pytest.approx(1.9)


def test_mix_scales_components_to_a_common_energy():
    a = Material("a", 2e-6, 2e-9, 2.0, 17.0)
    b34 = Material("b", 0.25e-6, 0.0625e-9, 2.0, 34.0)  # = a's twin b at 17 keV: 1e-6, 1e-9
    m = mix_by_mass([(a, 1.0), (b34, 1.0)], name="ab")
    assert m.energy_keV == 17.0
    assert m.delta == pytest.approx(1.5e-6, rel=1e-12)
    assert m.beta == pytest.approx(1.5e-9, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delta": -1e-6}, "delta"),
        ({"beta": float("nan")}, "beta"),
        ({"density_g_cm3": 0.0}, "density_g_cm3"),
        ({"energy_keV": -17.0}, "energy_keV"),
    ],
)
def test_material_validation(kwargs, match):
    args = {"name": "x", "delta": 1e-6, "beta": 1e-9, "density_g_cm3": 1.0, "energy_keV": 17.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Material(**args)


def test_mix_validation():
    with pytest.raises(ValueError, match="parts"):
        mix_by_mass([], name="x")
    with pytest.raises(TypeError, match="parts"):
        mix_by_mass([("carbon", 1.0)], name="x")


def test_load_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_materials(missing)


HEADER = "name,formula,density_g_cm3,delta,beta,energy_keV,source\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name,formula,delta,beta,energy_keV,source\nx,C,1e-6,1e-9,17,s\n", "density_g_cm3"),
        (HEADER + "x,C,1.0,abc,1e-9,17,s\n", "line 2.*delta"),
        (HEADER + "x,C,1.0,1e-6,1e-9,17,s\nx,C,1.0,1e-6,1e-9,17,s\n", "duplicate"),
        (HEADER + "x,C,1.0,-1e-6,1e-9,17,s\n", "line 2.*delta"),
        (HEADER, "no rows"),
    ],
)
def test_load_bad_tables(tmp_path, text, match):
    path = tmp_path / "m.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        load_materials(path)


def test_load_custom_table(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(HEADER + "glass,SiO2,2.2,1.5e-6,5e-9,20,test\n", encoding="utf-8")
    mats = load_materials(str(path))
    g = mats["glass"]
    assert (g.delta, g.beta, g.density_g_cm3, g.energy_keV) == (1.5e-6, 5e-9, 2.2, 20.0)
    assert g.formula == "SiO2" and g.source == "test"


def test_resources_env_override_and_clear_error(tmp_path, monkeypatch):
    from holocat._resources import RESOURCES_ENV, resource_path

    (tmp_path / "materials.csv").write_text("x")
    monkeypatch.setenv(RESOURCES_ENV, str(tmp_path))
    assert resource_path("materials.csv") == tmp_path / "materials.csv"
    with pytest.raises(FileNotFoundError, match=r"'no-such-asset'.*HOLOCAT_RESOURCES"):
        resource_path("no-such-asset")
