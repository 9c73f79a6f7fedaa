"""Tests of holocat.simulate.electrode: the synthetic cathode phantom and its planted damage."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from holocat.simulate.electrode import (
    AIR,
    ALUMINIUM,
    CARBON_BINDER,
    ELECTROLYTE,
    NMC,
    DamageModel,
    Electrode,
    _draw_population,
    _shape_s,
    _surface_radius,
    electrode,
    planted_damage,
)
from holocat.simulate.materials import Material, load_materials

SHAPE = (64, 64, 64)
VOXEL_UM = 1.0


@pytest.fixture(scope="module")
def e50() -> Electrode:
    return electrode(SHAPE, voxel_size_um=VOXEL_UM, mean_diameter_um=10.0, cycles=50, seed=0)


@pytest.fixture(scope="module")
def e10() -> Electrode:
    return electrode(SHAPE, voxel_size_um=VOXEL_UM, mean_diameter_um=10.0, cycles=10, seed=0)


def _pillar_mask(ny: int, nx: int) -> np.ndarray:
    r = min(ny, nx) / 2 - 1
    jj, ii = np.ogrid[:ny, :nx]
    return (jj - (ny - 1) / 2) ** 2 + (ii - (nx - 1) / 2) ** 2 <= r * r


def _electrode_region(e: Electrode) -> np.ndarray:
    region = np.zeros(e.material.shape, bool)
    region[e.meta["collector_voxels"] :] = _pillar_mask(*e.material.shape[1:])
    return region


# ------------------------------------------------------------------ structure and labels


def test_volume_fraction_and_contacts(e50):
    region = _electrode_region(e50)
    achieved = np.count_nonzero(e50.filled_labels[region]) / np.count_nonzero(region)
    assert achieved == pytest.approx(e50.meta["active_fraction_achieved"], abs=1e-12)
    assert abs(achieved - 0.40) <= 0.05
    assert np.count_nonzero(e50.filled_labels[~region]) == 0  # no particle in air or collector
    assert np.mean(e50.particles["contact"] > 0) >= 0.5
    assert e50.n_particles >= 50


def test_labels_are_consistent(e50):
    lab, fil = e50.labels, e50.filled_labels
    assert lab.dtype == np.uint32 and fil.dtype == np.uint32 and e50.crack_mask.dtype == bool
    n = e50.n_particles
    np.testing.assert_array_equal(np.unique(fil), np.arange(n + 1))
    assert set(np.unique(lab)) <= set(range(n + 1))
    solid = lab > 0
    np.testing.assert_array_equal(lab[solid], fil[solid])  # labels ⊂ filled_labels
    np.testing.assert_array_equal(e50.crack_mask, (fil > 0) & (lab == 0))
    df = e50.particles
    assert len(df) == n
    np.testing.assert_array_equal(df["label"].to_numpy(), np.arange(1, n + 1))
    counts_f = np.bincount(fil.ravel(), minlength=n + 1)[1:]
    counts_s = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    np.testing.assert_allclose(df["volume_um3"], counts_f * VOXEL_UM**3, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(df["n_voxels_solid"], counts_s)
    np.testing.assert_allclose(df["damage"], 1 - counts_s / counts_f, atol=1e-12)


def test_cracks_stay_inside_their_particle(e50):
    # every 6-neighbour of a crack voxel belongs to the same filled particle: cracks never
    # reach the particle surface, a neighbour or the matrix
    fil = np.pad(e50.filled_labels, 1)
    k, j, i = np.nonzero(np.pad(e50.crack_mask, 1))
    assert k.size > 0
    own = fil[k, j, i]
    for dk, dj, di in [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]:
        np.testing.assert_array_equal(fil[k + dk, j + dj, i + di], own)


def test_contact_matches_label_adjacency(e50):
    # oracle: a particle has contact > 0 iff one of its voxels has a 26-neighbour of another
    # label (whole-volume shifted comparisons, independent of the per-crop code)
    fil = np.pad(e50.filled_labels, 1)
    core = fil[1:-1, 1:-1, 1:-1]
    touching = set()
    nz, ny, nx = core.shape
    for dk in (-1, 0, 1):
        for dj in (-1, 0, 1):
            for di in (-1, 0, 1):
                nb = fil[1 + dk : 1 + dk + nz, 1 + dj : 1 + dj + ny, 1 + di : 1 + di + nx]
                m = (core > 0) & (nb > 0) & (nb != core)
                touching.update(np.unique(core[m]).tolist())
    has_contact = set(e50.particles.loc[e50.particles["contact"] > 0, "label"].tolist())
    assert has_contact == touching


def test_pillar_and_collector(e50):
    mat = e50.material
    pillar = _pillar_mask(*mat.shape[1:])
    n_coll = e50.meta["collector_voxels"]
    assert n_coll == 3  # 3 µm at 1 µm voxels
    np.testing.assert_array_equal(e50.sample_mask, np.broadcast_to(pillar, mat.shape))
    assert np.all(mat[:, ~pillar] == AIR)
    assert np.all(e50.delta[:, ~pillar] == 0) and np.all(e50.beta[:, ~pillar] == 0)
    assert np.all(mat[:n_coll][:, pillar] == ALUMINIUM)
    assert not np.any(mat[n_coll:] == ALUMINIUM)


def test_delta_beta_maps(e50):
    mats = load_materials()
    mat, delta, beta = e50.material, e50.delta, e50.beta
    assert delta.dtype == np.float32 and beta.dtype == np.float32
    nmc = mats["NMC811"]
    rel = delta[mat == NMC] / nmc.delta
    assert rel.min() >= 0.94 - 1e-6 and rel.max() <= 1.06 + 1e-6
    np.testing.assert_allclose(beta[mat == NMC] / nmc.beta, rel, rtol=1e-5)
    np.testing.assert_allclose(delta[mat == ALUMINIUM], mats["Al"].delta, rtol=1e-6)
    np.testing.assert_allclose(beta[mat == ALUMINIUM], mats["Al"].beta, rtol=1e-6)
    np.testing.assert_allclose(delta[mat == ELECTROLYTE], mats["electrolyte"].delta, rtol=1e-6)
    # carbon-binder: 1:1 by mass acetylene carbon + PVDF, volume-weighted
    v_c = (0.5 / 1.9) / (0.5 / 1.9 + 0.5 / 1.78)
    cb_delta = v_c * mats["carbon"].delta + (1 - v_c) * mats["PVDF"].delta
    np.testing.assert_allclose(delta[mat == CARBON_BINDER], cb_delta, rtol=1e-6)
    assert np.all(mat[e50.crack_mask] == ELECTROLYTE)
    assert np.all(mat[e50.labels > 0] == NMC)
    # the matrix (electrode layer outside particles) is half pore, half CB
    matrix = _electrode_region(e50) & (e50.filled_labels == 0)
    pore = np.count_nonzero(mat[matrix] == ELECTROLYTE) / np.count_nonzero(matrix)
    assert pore == pytest.approx(0.5, abs=0.01)


def test_edensity_factor_is_the_particle_mean(e50):
    nmc_delta = load_materials()["NMC811"].delta
    lab = e50.labels.ravel()
    solid = lab > 0
    n = e50.n_particles
    mean_delta = np.bincount(lab[solid], weights=e50.delta.ravel()[solid], minlength=n + 1)[1:]
    mean_delta /= np.bincount(lab[solid], minlength=n + 1)[1:]
    factor = e50.particles["edensity_factor"].to_numpy()
    # the ≤ 1 % texture averages out (measured ≤ 0.0014 for seeds 0-1)
    np.testing.assert_allclose(mean_delta / nmc_delta, factor, atol=0.003)
    assert np.all(np.abs(factor - 1) <= 0.06 + 1e-12)
    assert 0.01 < factor.std() < 0.03  # ε ~ N(0, 0.02)


def test_energy_scaling_of_maps():
    e17 = electrode((32, 32, 32), voxel_size_um=1.0, mean_diameter_um=8.0, seed=3)
    e34 = electrode((32, 32, 32), voxel_size_um=1.0, mean_diameter_um=8.0, seed=3, energy_keV=34)
    np.testing.assert_array_equal(e17.material, e34.material)
    np.testing.assert_allclose(e34.delta, e17.delta / 4, rtol=1e-6)
    np.testing.assert_allclose(e34.beta, e17.beta / 16, rtol=1e-6)


# ------------------------------------------------------------------ geometry of the table


def test_table_geometry_matches_voxels(e50):
    df = e50.particles
    fil = e50.filled_labels
    n = e50.n_particles
    kk, jj, ii = np.nonzero(fil)
    lab = fil[kk, jj, ii].astype(np.intp)
    cnt = np.bincount(lab, minlength=n + 1)[1:]
    for col, c in (("X", ii), ("Y", jj), ("Z", kk)):
        np.testing.assert_allclose(
            df[col], np.bincount(lab, weights=c * VOXEL_UM, minlength=n + 1)[1:] / cnt, atol=1e-9
        )
    intact = df[~df["touches_border"]]
    assert len(intact) >= 20
    # centroid of the voxels ≈ placed centre (overlap resolution and roughness shift it a bit)
    dist = np.hypot(
        intact["X"] - intact["centre_x_um"],
        np.hypot(intact["Y"] - intact["centre_y_um"], intact["Z"] - intact["centre_z_um"]),
    )
    assert np.median(dist) < 0.3 and dist.max() < 1.0
    # voxel volume ≈ ellipsoid volume (4/3)πabc; overlaps are resolved, so never much more
    ell = 4 / 3 * np.pi * intact["radius_a_um"] * intact["radius_b_um"] * intact["radius_c_um"]
    ratio = intact["volume_um3"] / ell
    assert np.median(ratio) == pytest.approx(1.0, abs=0.03)
    assert ratio.max() < 1.15 and ratio.min() > 0.85


def test_orientation_is_the_major_axis(e50):
    # oracle: the top eigenvector of the voxel covariance (in x, y, z) of elongated, intact
    # particles is the major axis R[:, 0] of R = Rz(yaw) Ry(pitch) Rx(roll)
    df = e50.particles
    fil = e50.filled_labels
    sel = df[(~df["touches_border"]) & (df["radius_a_um"] / df["radius_c_um"] > 1.2)]
    assert len(sel) >= 10
    cosines = []
    for row in sel.itertuples():
        k, j, i = np.nonzero(fil == row.label)
        cov = np.cov(np.stack([i, j, k]).astype(float))
        e1 = np.linalg.eigh(cov)[1][:, -1]
        rot = Rotation.from_euler("ZYX", [row.yaw_deg, row.pitch_deg, row.roll_deg], degrees=True)
        cosines.append(abs(e1 @ rot.as_matrix()[:, 0]))
    # roughness and 1 µm voxels blur mildly elongated shapes: seeds 0-4 give medians 0.967-0.984
    assert np.median(cosines) > 0.95
    assert np.mean(np.array(cosines) > 0.9) >= 0.75


def test_touches_border_known_cases():
    e = electrode((48, 48, 48), voxel_size_um=1.0, mean_diameter_um=10.0, seed=5, pillar=False)
    df = e.particles
    z_top = 47 + 0.5
    lo, hi = -0.5, 47.5
    reach = df["radius_a_um"] + 1.5  # semi-major axis + roughness bound + margin
    inner = (
        (df["centre_x_um"] - reach > lo)
        & (df["centre_x_um"] + reach < hi)
        & (df["centre_y_um"] - reach > lo)
        & (df["centre_y_um"] + reach < hi)
        & (df["centre_z_um"] + reach < z_top)
    )
    outside = (
        (df["centre_x_um"] < lo)
        | (df["centre_x_um"] > hi)
        | (df["centre_y_um"] < lo)
        | (df["centre_y_um"] > hi)
        | (df["centre_z_um"] > z_top)
    )
    assert inner.sum() >= 3 and outside.sum() >= 3
    assert not df.loc[inner, "touches_border"].any()
    assert df.loc[outside, "touches_border"].all()
    assert e.meta["pillar"] is False and np.all(e.sample_mask)


def test_local_packing_matches_brute_force(e50):
    fil = e50.filled_labels > 0
    region = _electrode_region(e50)
    radius = 2 * 10.0 / VOXEL_UM
    df = e50.particles
    kk, jj, ii = np.ogrid[: fil.shape[0], : fil.shape[1], : fil.shape[2]]
    ref = []
    for row in df.itertuples():
        ball = (kk - row.Z) ** 2 + (jj - row.Y) ** 2 + (ii - row.X) ** 2 <= radius**2
        ref.append(np.count_nonzero(fil & ball & region) / np.count_nonzero(ball & region))
    # coarse-grid FFT estimate vs full-resolution count: measured max error 0.006
    np.testing.assert_allclose(df["local_packing"], ref, atol=0.015)


def test_shape_function_is_one_on_the_surface():
    # two independent codes of the same surface: _surface_radius (pairwise packing) and
    # _shape_s (rasterisation) must agree: s(ρ(u) u) == 1
    rng = np.random.default_rng(1)
    _, shapes = _draw_population(4, 10.0, 0.2, max_aspect=1.3, roughness_um=0.5, rng=rng)
    u = rng.standard_normal((200, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    for p in range(4):
        rho = _surface_radius(shapes, np.full(200, p), u)
        d = (rho[:, None] * u).astype(np.float32)
        s = _shape_s(shapes, p, d[:, 0], d[:, 1], d[:, 2])
        np.testing.assert_allclose(s, 1.0, atol=2e-5)
        # without roughness the surface radius of a sphere is its radius
    _, smooth = _draw_population(2, 10.0, 0.0, max_aspect=1.0, roughness_um=0.0, rng=rng)
    np.testing.assert_allclose(_surface_radius(smooth, np.zeros(200, int), u), 5.0, rtol=1e-12)


# ------------------------------------------------------------------ damage


def test_achieved_damage_meets_target(e50):
    df = e50.particles
    err = (df["damage"] - df["damage_target"]).abs()
    assert np.mean(err <= 0.03) >= 0.9
    # the last sheet is cut to size: the error is a rounding of at most half a voxel (thin
    # fragments cut by the pillar may have no interior left to crack)
    ok = ~df["touches_border"]
    assert np.all(err[ok] <= 0.5 / df.loc[ok, "n_voxels_filled"] + 1e-12)
    assert df["damage_target"].between(0, 0.35).all()


def test_geometry_is_independent_of_cycles_and_damage_rises(e10, e50):
    np.testing.assert_array_equal(e10.filled_labels, e50.filled_labels)
    np.testing.assert_array_equal(e10.material > 0, e50.material > 0)
    t10, t50 = e10.particles["damage_target"], e50.particles["damage_target"]
    assert t50.mean() > 1.5 * t10.mean()
    assert e50.particles["damage"].mean() > e10.particles["damage"].mean()
    assert e50.crack_mask.sum() > e10.crack_mask.sum()
    assert e10.meta["damage_coefficients"]["b_z"] == 0.8
    assert e50.meta["damage_coefficients"]["b_z"] == 2.0


def test_deterministic_for_a_seed(e10):
    again = electrode(SHAPE, voxel_size_um=VOXEL_UM, mean_diameter_um=10.0, cycles=10, seed=0)
    np.testing.assert_array_equal(again.labels, e10.labels)
    np.testing.assert_array_equal(again.delta, e10.delta)
    pd.testing.assert_frame_equal(again.particles, e10.particles)
    other = electrode(SHAPE, voxel_size_um=VOXEL_UM, mean_diameter_um=10.0, cycles=10, seed=1)
    assert not np.array_equal(other.filled_labels, e10.filled_labels)


def _design(df: pd.DataFrame) -> np.ndarray:
    vn = df["volume_um3"] / df["volume_um3"].median()
    return np.column_stack(
        [
            np.ones(len(df)),
            df["depth_norm"] - 0.5,
            np.log(vn),
            df["contact"] - df["contact"].mean(),
            df["local_packing"] - df["local_packing"].mean(),
        ]
    )


@pytest.mark.parametrize(("fixture", "b_z"), [("e10", 0.8), ("e50", 2.0)])
def test_depth_effect_recoverable_by_regression(request, fixture, b_z):
    e = request.getfixturevalue(fixture)
    df = e.particles
    y = df["damage_target"] / 0.35
    coef, *_ = np.linalg.lstsq(_design(df), np.log(y / (1 - y)), rcond=None)
    # n ≈ 150 particles, σ = 0.3 noise: standard error of b_z ≈ 0.1
    assert coef[1] > 0
    assert coef[1] == pytest.approx(b_z, abs=0.4)


def test_planted_damage_recovers_coefficients():
    rng = np.random.default_rng(7)
    n = 4000
    table = pd.DataFrame(
        {
            "depth_norm": rng.uniform(0, 1, n),
            "volume_um3": rng.lognormal(np.log(500), 0.5, n),
            "contact": rng.uniform(0, 0.4, n),
            "local_packing": rng.uniform(0.3, 0.5, n),
        }
    )
    model = DamageModel(anchor_cycles=(10, 40))
    for cycles, expected in [
        (10, [-3.2, 0.8, 0.5, 0.5, -0.5]),
        (40, [-2.2, 2.0, 0.8, 1.5, -0.5]),
        (20, [-2.7, 1.4, 0.65, 1.0, -0.5]),  # 20 = geometric mean of 10 and 40: midpoint
    ]:
        d = planted_damage(table, cycles, np.random.default_rng(cycles), model=model)
        assert d.shape == (n,) and np.all((d > 0) & (d < 0.35))
        y = d / 0.35
        coef, *_ = np.linalg.lstsq(_design(table), np.log(y / (1 - y)), rcond=None)
        resid = np.log(y / (1 - y)) - _design(table) @ coef
        np.testing.assert_allclose(coef[:4], expected[:4], atol=0.06)
        assert coef[4] == pytest.approx(expected[4], abs=0.3)  # P spans only 0.2
        assert resid.std() == pytest.approx(0.3, abs=0.02)


def test_planted_damage_exact_without_noise():
    table = pd.DataFrame(
        {
            "depth_norm": [0.0, 0.5, 1.0],
            "volume_um3": [250.0, 500.0, 1000.0],
            "contact": [0.0, 0.1, 0.2],
            "local_packing": [0.5, 0.4, 0.3],
        }
    )
    d = planted_damage(table, 50, 0, model=DamageModel(sigma=0.0))
    eta = (
        -2.2
        + 2.0 * np.array([-0.5, 0.0, 0.5])
        + 0.8 * np.log([0.5, 1.0, 2.0])
        + 1.5 * np.array([-0.1, 0.0, 0.1])
        - 0.5 * np.array([0.1, 0.0, -0.1])
    )
    np.testing.assert_allclose(d, 0.35 / (1 + np.exp(-eta)), rtol=1e-12)


def test_planted_damage_determinism_and_pristine():
    table = pd.DataFrame(
        {
            "depth_norm": np.linspace(0, 1, 50),
            "volume_um3": np.linspace(100, 900, 50),
            "contact": np.linspace(0, 0.3, 50),
            "local_packing": np.full(50, 0.4),
        }
    )
    a = planted_damage(table, 10, np.random.default_rng(3))
    b = planted_damage(table, 10, np.random.default_rng(3))
    c = planted_damage(table, 10, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(planted_damage(table, 0, 3), np.zeros(50))


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ({"table": "x"}, TypeError, "table"),
        ({"table": pd.DataFrame({"depth_norm": [0.5]})}, ValueError, "volume_um3"),
        ({"cycles": -1}, ValueError, "cycles"),
        ({"cycles": 1.5}, ValueError, "cycles"),
        ({"rng": "seed"}, TypeError, "rng"),
        ({"model": {"b0": 1}}, TypeError, "model"),
        ({"nan": True}, ValueError, "contact"),
    ],
)
def test_planted_damage_bad_input(args, exc, match):
    table = pd.DataFrame(
        {"depth_norm": [0.5], "volume_um3": [500.0], "contact": [0.1], "local_packing": [0.4]}
    )
    if args.pop("nan", False):
        table.loc[0, "contact"] = np.nan
    kw = {"table": table, "cycles": 10, "rng": 0, **args}
    model = kw.pop("model", None)
    with pytest.raises(exc, match=match):
        planted_damage(kw["table"], kw["cycles"], kw["rng"], model=model)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"anchor_cycles": (10, 10)}, "anchor_cycles"),
        ({"anchor_cycles": (0, 50)}, "anchor_cycles"),
        ({"b_z": (1.0,)}, "b_z"),
        ({"sigma": -0.1}, "sigma"),
        ({"d_max": 1.0}, "d_max"),
    ],
)
def test_damage_model_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DamageModel(**kwargs)


def test_damage_model_interpolates_in_log_cycles():
    m = DamageModel()
    mid = m.coefficients(math.sqrt(10 * 50))
    assert mid["b0"] == pytest.approx(-2.7) and mid["b_c"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cycles"):
        m.coefficients(0)


def test_meta_records_parameters_and_model(e50):
    meta = e50.meta
    for key, value in [
        ("voxel_size_um", 1.0),
        ("energy_keV", 17.0),
        ("cycles", 50),
        ("seed", 0),
        ("active_fraction", 0.4),
        ("mean_diameter_um", 10.0),
        ("n_particles", e50.n_particles),
    ]:
        assert meta[key] == value
    assert meta["damage_model"]["b0"] == (-3.2, -2.2)
    nmc = load_materials()["NMC811"]
    assert meta["materials_delta_beta"]["NMC811"] == [nmc.delta, nmc.beta]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"shape": (64, 64)}, ValueError, "shape"),
        ({"shape": (8, 64, 64)}, ValueError, "shape"),
        ({"shape": (64, 64.0, 64)}, TypeError, "shape"),
        ({"voxel_size_um": 0.0}, ValueError, "voxel_size_um"),
        ({"voxel_size_um": -1.0}, ValueError, "voxel_size_um"),
        ({"voxel_size_um": float("nan")}, ValueError, "voxel_size_um"),
        ({"active_fraction": 0.0}, ValueError, "active_fraction"),
        ({"active_fraction": 0.65}, ValueError, "active_fraction"),
        ({"cycles": -1}, ValueError, "cycles"),
        ({"mean_diameter_um": 2.0}, ValueError, "mean_diameter_um"),
        ({"diameter_cv": 1.0}, ValueError, "diameter_cv"),
        ({"ellipsoid_max_aspect": 0.9}, ValueError, "ellipsoid_max_aspect"),
        ({"roughness_um": 5.0}, ValueError, "roughness_um"),
        ({"collector_thickness_um": 60.0}, ValueError, "collector_thickness_um"),
        ({"energy_keV": 0}, ValueError, "energy_keV"),
        ({"pillar": "yes"}, TypeError, "pillar"),
        ({"damage_model": {"b0": 1}}, TypeError, "damage_model"),
        ({"materials": {"NMC811": None}}, ValueError, "materials"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, exc, match):
    args = {"shape": SHAPE, "voxel_size_um": VOXEL_UM, **kwargs}
    with pytest.raises(exc, match=match):
        electrode(args.pop("shape"), **args)


def test_custom_materials_are_used():
    mats = dict(load_materials())
    mats["Al"] = Material("Al", 2.0e-6, 1.0e-8, 2.7, 17.0)
    e = electrode((32, 32, 32), voxel_size_um=1.0, mean_diameter_um=8.0, seed=2, materials=mats)
    np.testing.assert_allclose(e.delta[e.material == ALUMINIUM], 2.0e-6, rtol=1e-6)


@pytest.mark.slow
def test_default_size_smoke():
    # the default phantom: 192³ at 0.5 µm; run time is logged and reported, not asserted
    e = electrode()
    assert e.labels.shape == (192, 192, 192)
    assert 200 <= e.n_particles <= 1500
    assert abs(e.meta["active_fraction_achieved"] - 0.40) <= 0.05
    err = (e.particles["damage"] - e.particles["damage_target"]).abs()
    assert np.mean(err <= 0.03) >= 0.9
