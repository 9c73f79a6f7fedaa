"""PDensity (summed-area tables) and the 6-neighbour attributes against brute-force oracles."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from holocat.attributes import (
    add_pdensity,
    extract,
    neighbour_attributes,
    pdensity,
    summed_area_table,
)


def test_ball_lattice_distnearest_and_uniform_neighbours(phantoms):
    spacing, s = 30, 0.5  # voxels, um: face neighbours at 15 um
    grid = np.arange(3) * spacing + 15
    centres = np.array(list(itertools.product(grid, grid, grid)), dtype=float)
    labels = phantoms.place_balls((90, 90, 90), centres, [7] * len(centres))
    t = extract(labels, np.ones(labels.shape, np.float32), voxel_size_um=s)
    assert len(t) == 27
    # oracle: mean of the 6 smallest lattice distances, from the true centres
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1) * s
    expected = np.sort(d, axis=1)[:, 1:7].mean(axis=1)
    np.testing.assert_allclose(t.DistNearest, expected, rtol=0.02)
    interior = t.DistNearest[(d < 15.5).sum(axis=1) == 7]  # the centre ball: 6 face neighbours
    assert len(interior) == 1 and interior.iloc[0] == pytest.approx(15.0, rel=0.02)
    # identical digital balls: no spread of Volume or Elongation among neighbours
    assert t.VolumeStd.max() == pytest.approx(0.0, abs=1e-12)
    assert t.ElongStd.max() < 1e-6
    # a 100 um cube covers the whole 45 um volume: PDensity is the global labelled fraction
    np.testing.assert_allclose(t.PDensity, (labels > 0).mean(), rtol=1e-12)


def _brute_force_neighbours(table: pd.DataFrame, k: int) -> pd.DataFrame:
    xyz = table[["X", "Y", "Z"]].to_numpy()
    axes = Rotation.from_euler("ZYX", table[["Yaw", "Pitch", "Roll"]].to_numpy(), degrees=True)
    u_all = axes.as_matrix()[:, :, 0]
    rows = []
    for i in range(len(table)):
        d = np.linalg.norm(xyz - xyz[i], axis=1)
        d[i] = np.inf
        nb = np.argsort(d, kind="stable")[:k]
        q = sum(1.5 * np.outer(u, u) - 0.5 * np.eye(3) for u in u_all[nb]) / k
        rows.append(
            {
                "DistNearest": d[nb].mean(),
                "ElongStd": np.std(table.Elongation.to_numpy()[nb], ddof=1),
                "VolumeStd": np.std(table.Volume.to_numpy()[nb], ddof=1),
                "OrienIso": np.linalg.eigvalsh(q)[-1],
            }
        )
    return pd.DataFrame(rows)


def _random_table(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": np.arange(1, n + 1),
            "X": rng.uniform(0, 50, n),
            "Y": rng.uniform(0, 50, n),
            "Z": rng.uniform(0, 20, n),
            "Yaw": rng.uniform(-180, 180, n),
            "Pitch": rng.uniform(-90, 90, n),
            "Roll": rng.uniform(-180, 180, n),
            "Elongation": rng.uniform(1, 3, n),
            "Volume": rng.uniform(100, 600, n),
        }
    )


def test_neighbour_attributes_match_brute_force():
    table = _random_table(np.random.default_rng(11), 40)
    out = neighbour_attributes(table)
    ref = _brute_force_neighbours(table, 6)
    for col in ref.columns:
        np.testing.assert_allclose(out[col].to_numpy(), ref[col].to_numpy(), rtol=1e-10)
    assert list(out.columns[:9]) == ["label", "X", "Y", "Z", "Yaw", "Pitch", "Roll"] + [
        "Volume",
        "Elongation",
    ]
    assert table.shape[1] == 9  # input not modified


def test_orieniso_analytic_values():
    base = {"X": np.arange(7.0), "Y": 0.0, "Z": 0.0, "Elongation": 1.5, "Volume": 1.0}
    aligned = pd.DataFrame({**base, "Yaw": 40.0, "Pitch": 10.0, "Roll": 0.0})
    np.testing.assert_allclose(neighbour_attributes(aligned).OrienIso, 1.0, rtol=1e-12)
    # particle 0 at the centre of a unit hexagon whose six particles have axes evenly spread
    # in the xy plane (yaw 0, 30, ..., 150 deg, sign-free): <u u^T> = diag(1/2, 1/2, 0), so
    # Q = 3/2 <u u^T> - I/2 = diag(1/4, 1/4, -1/2) and OrienIso = 1/4
    in_plane = pd.DataFrame(
        {
            "X": [0.0] + [math.cos(a) for a in np.arange(6) * math.pi / 3],
            "Y": [0.0] + [math.sin(a) for a in np.arange(6) * math.pi / 3],
            "Z": 0.0,
            "Elongation": 1.5,
            "Volume": 1.0,
            "Yaw": [0.0] + list(np.arange(6) * 30.0),
            "Pitch": 0.0,
            "Roll": 0.0,
        }
    )
    assert neighbour_attributes(in_plane).OrienIso.iloc[0] == pytest.approx(0.25, abs=1e-12)


def test_neighbour_attributes_small_tables():
    t = _random_table(np.random.default_rng(2), 3)
    out = neighbour_attributes(t)  # two neighbours each: std with ddof = 1 still defined
    ref = _brute_force_neighbours(t, 2)
    np.testing.assert_allclose(out.DistNearest, ref.DistNearest, rtol=1e-12)
    np.testing.assert_allclose(out.VolumeStd, ref.VolumeStd, rtol=1e-12)
    single = neighbour_attributes(t.iloc[:1])
    assert single[["DistNearest", "ElongStd", "VolumeStd", "OrienIso"]].isna().all().all()


def test_summed_area_table_box_sums_and_downsampling():
    rng = np.random.default_rng(5)
    mask = rng.random((13, 17, 11)) < 0.3
    sat = summed_area_table(mask)
    assert sat.dtype == np.int64 and sat.shape == (14, 18, 12)
    for _ in range(20):
        lo = rng.integers(0, mask.shape)
        hi = lo + rng.integers(0, np.array(mask.shape) - lo + 1)
        box = sat[hi[0], hi[1], hi[2]] - sat[lo[0], hi[1], hi[2]] - sat[hi[0], lo[1], hi[2]]
        box += sat[lo[0], lo[1], hi[2]] - sat[hi[0], hi[1], lo[2]] + sat[lo[0], hi[1], lo[2]]
        box += sat[hi[0], lo[1], lo[2]] - sat[lo[0], lo[1], lo[2]]
        assert box == mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].sum()
    coarse = summed_area_table(mask, downsample=4)
    assert coarse.shape == (5, 6, 4)
    assert coarse[-1, -1, -1] == mask.sum()
    assert coarse[1, 1, 1] == mask[:4, :4, :4].sum()
    assert coarse[-1, 2, -1] == mask[:, :8, :].sum()


def test_pdensity_matches_brute_force_with_clipping_and_sample_mask():
    rng = np.random.default_rng(9)
    shape = (24, 30, 20)
    occupied = rng.random(shape) < 0.4
    sample = np.ones(shape, dtype=bool)
    sample[:, :, 14:] = False  # outside the sample: not pore
    occupied &= sample
    cents = rng.uniform(-2, np.array(shape) + 2, size=(25, 3))
    cube = 9.0
    got = pdensity(cents, summed_area_table(occupied), cube)
    got_s = pdensity(cents, summed_area_table(occupied), cube, sample_sat=summed_area_table(sample))
    idx = np.indices(shape).reshape(3, -1).T
    for c, g, gs in zip(cents, got, got_s, strict=True):
        inside = np.all((idx >= c - cube / 2) & (idx < c + cube / 2), axis=1)
        in_cube = inside.reshape(shape)
        assert g == pytest.approx(occupied[in_cube].sum() / in_cube.sum(), abs=1e-12)
        n_sample = (in_cube & sample).sum()
        if n_sample:
            assert gs == pytest.approx(occupied[in_cube].sum() / n_sample, abs=1e-12)
        else:
            assert np.isnan(gs)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.uint64])
def test_pdensity_by_slices_equals_the_3d_table(dtype):
    from holocat.attributes.neighbours import _pdensity_by_slices

    rng = np.random.default_rng(4)
    shape = (17, 26, 31)
    labels = (rng.integers(0, 6, shape) * (rng.random(shape) < 0.5)).astype(dtype)
    sample = np.ones(shape, dtype=bool)
    sample[:, 20:, :] = False
    cents = rng.uniform(-2, np.array(shape) + 2, size=(30, 3))
    for mask in (None, sample):
        occupied = labels > 0 if mask is None else (labels > 0) & mask
        expected = pdensity(
            cents,
            summed_area_table(occupied),
            7.0,
            sample_sat=None if mask is None else summed_area_table(mask),
        )
        got = _pdensity_by_slices(labels, cents, 7.0, sample_mask=mask)
        np.testing.assert_array_equal(got, expected)


def test_add_pdensity_from_a_downsampled_table(random_balls):
    labels, volume = random_balls
    s, cube_um = 0.5, 16.0
    table = extract(labels, volume, voxel_size_um=s, pdensity_cube_um=cube_um)
    exact = add_pdensity(
        table, summed_area_table(labels > 0), voxel_size_um=s, pdensity_cube_um=cube_um
    )
    np.testing.assert_allclose(exact.PDensity, table.PDensity, rtol=1e-12)
    k = 2
    coarse = add_pdensity(
        table,
        summed_area_table(labels > 0, downsample=k),
        voxel_size_um=s,
        pdensity_cube_um=cube_um,
        sample_sat=summed_area_table(np.ones(labels.shape, bool), downsample=k),
        sat_downsample=k,
    )
    # cube edges move by at most one coarse cell (2 voxels of 32): a few per cent
    np.testing.assert_allclose(coarse.PDensity, table.PDensity, rtol=0.1)
    assert list(coarse.columns) == list(table.columns)


def test_neighbour_and_pdensity_errors():
    t = _random_table(np.random.default_rng(1), 5)
    with pytest.raises(ValueError, match="table: missing column"):
        neighbour_attributes(t.drop(columns="Volume"))
    with pytest.raises(ValueError, match="finite centroids"):
        neighbour_attributes(t.assign(X=np.nan))
    with pytest.raises(ValueError, match="k: expected"):
        neighbour_attributes(t, k=0)
    sat = summed_area_table(np.ones((4, 4, 4), bool))
    with pytest.raises(ValueError, match="centroids_vox"):
        pdensity(np.zeros((3, 2)), sat, 2.0)
    with pytest.raises(ValueError, match="cube_vox"):
        pdensity(np.zeros((3, 3)), sat, -1.0)
    with pytest.raises(TypeError, match="sat"):
        pdensity(np.zeros((3, 3)), sat.astype(float), 2.0)
    with pytest.raises(ValueError, match="sample_sat"):
        pdensity(np.zeros((3, 3)), sat, 2.0, sample_sat=sat[:-1])
    with pytest.raises(TypeError, match="mask"):
        summed_area_table(np.ones((4, 4, 4)))
    with pytest.raises(ValueError, match="downsample"):
        summed_area_table(np.ones((4, 4, 4), bool), downsample=0)
    with pytest.raises(ValueError, match="voxel_size_um"):
        add_pdensity(t, sat, voxel_size_um=0.0)
