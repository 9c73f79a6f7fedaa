"""Tests for holocat.tomo.flat_field against simulated raw counts with a known transmission."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from holocat.tomo import flat_field

N_PROJ, NY, NX = 9, 24, 32


@pytest.fixture
def scan():
    """Raw counts with a known transmission, a fixed dark and a linearly drifting beam.

    Flats are taken in two groups, 4 before (index 0) and 4 after (index N_PROJ) the scan.
    """
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:NY, :NX]
    transmission = 0.3 + 0.6 * rng.random((N_PROJ, NY, NX))
    dark = 100.0 + 5.0 * np.sin(xx / 3.0)
    beam_before = 2000.0 + 300.0 * np.cos(yy / 5.0)
    beam_after = 1.2 * beam_before + 50.0 * xx / NX
    frac = np.arange(N_PROJ)[:, None, None] / N_PROJ
    beam = beam_before * (1 - frac) + beam_after * frac
    data = dark + transmission * beam
    flats = np.concatenate(
        [np.repeat((dark + beam_before)[None], 4, 0), np.repeat((dark + beam_after)[None], 4, 0)]
    )
    darks = np.repeat(dark[None], 3, 0)
    # one flat and one dark with an outlier frame: the medians must ignore them
    flats[1] += 500.0
    darks[2] += 40.0
    positions = [0] * 4 + [N_PROJ] * 4
    return data, flats, darks, positions, transmission


def test_recovers_transmission_with_interpolated_flats(scan):
    data, flats, darks, positions, transmission = scan
    out = flat_field(data, flats, darks, flat_positions=positions)
    assert out.dtype == np.float32 and out.shape == data.shape
    np.testing.assert_allclose(out, transmission, rtol=1e-5, atol=1e-6)


def test_without_positions_uses_one_flat_group(scan):
    data, flats, darks, _, transmission = scan
    before = flats[:4]
    out = flat_field(data[:1], before, darks)  # projection 0: beam == beam_before
    np.testing.assert_allclose(out, transmission[:1], rtol=1e-5)


def test_projection_chunk_equals_full_scan(scan):
    data, flats, darks, positions, _ = scan
    full = flat_field(data, flats, darks, flat_positions=positions)
    chunk = flat_field(
        data[3:7], flats, darks, flat_positions=positions, projection_indices=[3, 4, 5, 6]
    )
    np.testing.assert_array_equal(chunk, full[3:7])


def test_uint16_input_and_2d_flats_darks():
    raw = np.full((2, 8, 8), 1100, dtype=np.uint16)
    out = flat_field(raw, np.full((8, 8), 2100, np.uint16), np.full((8, 8), 100, np.uint16))
    np.testing.assert_allclose(out, 0.5, rtol=1e-7)


def test_denominator_is_clamped():
    darks = np.full((1, 4, 4), 100.0)
    flats = np.full((1, 4, 4), 100.5)  # flat - dark = 0.5 counts < min_denominator
    data = np.full((1, 4, 4), 103.0)
    np.testing.assert_allclose(flat_field(data, flats, darks), 3.0)
    np.testing.assert_allclose(flat_field(data, flats, darks, min_denominator=0.25), 6.0)


def test_dead_pixels_replaced_by_neighbour_median(caplog):
    yy, xx = np.mgrid[:16, :16]
    transmission = 0.2 + 0.03 * xx + 0.01 * yy  # linear: the 8-neighbour median is exact
    dark = np.full((16, 16), 50.0)
    flat = np.full((16, 16), 1050.0)
    data = (dark + transmission * (flat - dark))[None]
    flats = flat[None].copy()
    dead = [(3, 4), (10, 0), (15, 15)]  # interior, edge and corner pixels
    for y, x in dead:
        flats[0, y, x] = dark[y, x] - 3.0
    flats[0, 7:9, 7:9] = 0.0  # a 2x2 cluster, filled from the outside in
    with caplog.at_level(logging.WARNING, logger="holocat.tomo.flatfield"):
        out = flat_field(data, flats, dark[None])
    assert "7 dead pixel" in caplog.text
    for y, x in dead:  # oracle: median of the in-bounds 3x3 neighbours
        window = transmission[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].ravel().tolist()
        window.remove(transmission[y, x])
        assert out[0, y, x] == pytest.approx(np.median(window), rel=1e-5)
    assert out[0, 3, 4] == pytest.approx(transmission[3, 4], rel=1e-5)  # linear: exact
    cluster = out[0, 7:9, 7:9]
    assert np.all(np.abs(cluster - transmission[7:9, 7:9]) <= 0.05)
    live = np.ones((16, 16), bool)
    live[7:9, 7:9] = False
    for y, x in dead:
        live[y, x] = False
    np.testing.assert_allclose(out[0][live], transmission[live], rtol=1e-5)


def test_zinger_removal():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:48, :48]
    expected = 4000.0 * (0.6 + 0.3 * np.sin(xx / 7.0) * np.cos(yy / 9.0))
    frames = rng.poisson(np.broadcast_to(expected, (4, 48, 48))).astype(float)
    clean = frames.copy()
    hits = (rng.integers(0, 4, 20), rng.integers(1, 47, 20), rng.integers(1, 47, 20))
    frames[hits] += 3000.0  # zingers: ~50 sigma of the Poisson noise
    flats = np.full((1, 48, 48), 4000.0)
    darks = np.zeros((1, 48, 48))
    out = flat_field(frames, flats, darks, zinger_threshold=8.0)
    # every zinger replaced by its 3x3 median: back within noise of the truth
    assert np.all(np.abs(out[hits] - expected[hits[1:]] / 4000.0) < 0.05)
    changed = ~np.isclose(out, clean / 4000.0, rtol=1e-6)
    changed[hits] = False
    assert changed.mean() < 0.002  # false positives among the noisy but clean pixels
    untouched = flat_field(frames, flats, darks)
    assert np.all(untouched[hits] > out[hits] + 0.5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"flats": np.ones((2, 8, 9))}, ValueError, "flats: expected frames of shape"),
        ({"darks": np.ones((2, 7, 8))}, ValueError, "darks: expected frames of shape"),
        ({"data": np.ones((8, 8))}, ValueError, r"data: expected shape \(n_proj, ny, nx\)"),
        ({"data": np.full((1, 8, 8), np.nan)}, ValueError, "data: contains 64 NaN"),
        ({"flats": np.full((1, 8, 8), np.inf)}, ValueError, "flats: contains"),
        ({"flats": np.zeros((2, 8, 8))}, ValueError, "flats: all flat-field frames are zero"),
        ({"flats": np.full((1, 8, 8), 5.0)}, ValueError, "flat - dark <= 0 at every pixel"),
        ({"flat_positions": [0, 1, 2]}, ValueError, "flat_positions: expected one"),
        ({"projection_indices": [0]}, ValueError, "projection_indices: expected one"),
        ({"min_denominator": 0.0}, ValueError, "min_denominator"),
        ({"zinger_threshold": -1.0}, ValueError, "zinger_threshold"),
        ({"data": np.ones((1, 8, 8), complex)}, TypeError, "data: expected a real"),
    ],
)
def test_errors_name_the_argument(kwargs, error, match):
    args = {
        "data": np.full((2, 8, 8), 500.0),
        "flats": np.full((2, 8, 8), 1000.0),
        "darks": np.full((1, 8, 8), 10.0),
    }
    args.update(kwargs)
    data, flats, darks = args.pop("data"), args.pop("flats"), args.pop("darks")
    with pytest.raises(error, match=match):
        flat_field(data, flats, darks, **args)


def test_input_not_modified(scan):
    data, flats, darks, positions, _ = scan
    data32 = data.astype(np.float32)
    copy = data32.copy()
    flat_field(data32, flats, darks, flat_positions=positions, zinger_threshold=5.0)
    np.testing.assert_array_equal(data32, copy)
