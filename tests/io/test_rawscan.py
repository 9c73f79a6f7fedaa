"""Raw-scan Zarr: round trip, metadata validation on write and read, value checks."""

import json
import shutil

import numpy as np
import pytest

from holocat.io import (
    angular_coverage_deg,
    check_raw_scan_values,
    read_raw_scan,
    verify_manifest,
    write_raw_scan,
)

N_DIST, N_ANG, NY, NX, N_FLAT, N_DARK = 2, 12, 16, 20, 4, 3


@pytest.fixture
def scan_kwargs():
    rng = np.random.default_rng(42)
    return {
        "data": rng.integers(100, 4000, size=(N_DIST, N_ANG, NY, NX), dtype=np.uint16),
        "flats": rng.integers(3000, 4000, size=(N_DIST, N_FLAT, NY, NX), dtype=np.uint16),
        "darks": rng.integers(90, 110, size=(N_DARK, NY, NX), dtype=np.uint16),
        "energy_keV": 17.0,
        "detector_pixel_size_m": 3e-6,
        "focus_to_detector_m": 1.2,
        "focus_to_sample_m": [0.2, 0.21],
        "angles_rad": np.linspace(0, np.pi, N_ANG, endpoint=False),
    }


def _float_kwargs(kw):
    return {
        **kw,
        "data": kw["data"].astype(np.float32),
        "flats": kw["flats"].astype(np.float32),
        "darks": kw["darks"].astype(np.float32),
    }


def test_round_trip_uint16(tmp_path, scan_kwargs):
    path = tmp_path / "raw.zarr"
    out = write_raw_scan(path, **scan_kwargs, extra_attrs={"sample": "S1", "exposure_s": 0.2})
    assert out == path
    scan = read_raw_scan(path)
    for name in ("data", "flats", "darks"):
        arr = getattr(scan, name)
        assert arr.dtype == np.uint16
        np.testing.assert_array_equal(arr[:], scan_kwargs[name])
    assert scan.data.chunks == (1, 1, NY, NX)  # one projection per chunk by default
    assert scan.flats.chunks == (1, 1, NY, NX) and scan.darks.chunks == (1, NY, NX)
    assert scan.energy_keV == 17.0 and scan.detector_pixel_size_m == 3e-6
    assert scan.focus_to_detector_m == 1.2 and scan.focus_to_sample_m == (0.2, 0.21)
    np.testing.assert_array_equal(scan.angles_rad, scan_kwargs["angles_rad"])
    # default flat positions: first half before the scan, second half after it
    np.testing.assert_array_equal(scan.flat_positions, [0, 0, N_ANG, N_ANG])
    assert scan.extra == {"sample": "S1", "exposure_s": 0.2}
    assert scan.provenance["stage"] == "ingest" and scan.provenance["complete"] is True
    assert scan.provenance["params"]["focus_to_sample_m"] == [0.2, 0.21]
    assert (scan.n_dist, scan.n_angles, scan.detector_shape) == (N_DIST, N_ANG, (NY, NX))
    assert verify_manifest(path)


def test_round_trip_float32_chunk_angles_and_flat_positions(tmp_path, scan_kwargs):
    path = tmp_path / "raw.zarr"
    kw = _float_kwargs(scan_kwargs)
    write_raw_scan(path, **kw, chunk_angles=5, flat_positions=[0, 6, 12, 12], manifest=False)
    scan = read_raw_scan(path)
    assert scan.data.dtype == np.float32 and scan.data.chunks == (1, 5, NY, NX)
    np.testing.assert_array_equal(scan.data[:], kw["data"])
    np.testing.assert_array_equal(scan.flat_positions, [0, 6, 12, 12])
    assert not (tmp_path / "raw.zarr.manifest.json").exists()


def test_geometry_follows_cone_beam_formulas(tmp_path, scan_kwargs):
    write_raw_scan(tmp_path / "raw.zarr", **scan_kwargs, manifest=False)
    geo = read_raw_scan(tmp_path / "raw.zarr").geometry()
    for g, z1 in zip(geo, (0.2, 0.21), strict=True):
        m = 1.2 / z1
        assert g.magnification == pytest.approx(m, rel=1e-12)
        assert g.effective_pixel_size_m == pytest.approx(3e-6 / m, rel=1e-12)
        assert g.effective_distance_m == pytest.approx(z1 * (1.2 - z1) / 1.2, rel=1e-12)


def test_angular_coverage():
    for n in (12, 300, 1500):
        assert angular_coverage_deg(np.linspace(0, np.pi, n, endpoint=False)) == pytest.approx(180)
    assert angular_coverage_deg(np.linspace(0, np.pi / 2, 10)) == pytest.approx(100.0)


def _bad(kw, **changes):
    return {**kw, **changes}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"energy_keV": float("nan")}, "energy_keV"),
        ({"energy_keV": -17.0}, "energy_keV"),
        ({"energy_keV": 17000.0}, "energy_keV.*unit"),  # eV passed as keV
        ({"detector_pixel_size_m": 0.0}, "detector_pixel_size_m"),
        ({"detector_pixel_size_m": float("inf")}, "detector_pixel_size_m"),
        ({"detector_pixel_size_m": 3.0}, "detector_pixel_size_m.*unit"),  # um passed as m
        ({"focus_to_detector_m": -1.2}, "focus_to_detector_m"),
        ({"focus_to_sample_m": [0.2]}, "focus_to_sample_m"),
        ({"focus_to_sample_m": [0.2, 1.5]}, "focus_to_sample_m"),
        ({"focus_to_sample_m": [0.2, float("nan")]}, "focus_to_sample_m"),
        ({"angles_rad": np.linspace(0, np.pi, N_ANG - 1)}, "angles_rad"),
        ({"angles_rad": np.linspace(0, np.pi / 2, N_ANG)}, "min_span_deg"),
        ({"angles_rad": np.linspace(0, 180, N_ANG, endpoint=False)}, "angles_rad.*in degrees"),
        ({"angles_rad": np.r_[np.linspace(0, np.pi, N_ANG - 1), np.nan]}, "angles_rad.*NaN"),
        ({"flat_positions": [0, 12]}, "flat_positions"),
        ({"flat_positions": [0, 0, 12, 13]}, "flat_positions"),
    ],
)
def test_write_rejects_bad_metadata(tmp_path, scan_kwargs, change, match):
    with pytest.raises(ValueError, match=match):
        write_raw_scan(tmp_path / "raw.zarr", **_bad(scan_kwargs, **change))
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("name", "make", "match"),
    [
        ("data", lambda kw: kw["data"][0], r"data: expected 4 dimensions"),
        ("data", lambda kw: kw["data"].astype(np.float64), r"data: expected dtype uint16"),
        ("flats", lambda kw: kw["flats"][:, :, :-1], r"flats: expected \(n_dist=2"),
        ("flats", lambda kw: kw["flats"][:1], r"flats: expected \(n_dist=2"),
        ("flats", lambda kw: kw["flats"].astype(np.int32), r"flats: expected dtype"),
        ("darks", lambda kw: kw["darks"][:, :, :-2], r"darks: expected \(n_dark"),
        ("darks", lambda kw: kw["darks"][0], r"darks: expected 3 dimensions"),
    ],
)
def test_write_rejects_bad_arrays(tmp_path, scan_kwargs, name, make, match):
    with pytest.raises(ValueError, match=match):
        write_raw_scan(tmp_path / "raw.zarr", **_bad(scan_kwargs, **{name: make(scan_kwargs)}))


def _edit_attrs(path, edit):
    meta_file = path / "zarr.json"
    meta = json.loads(meta_file.read_text())
    edit(meta["attributes"])
    meta_file.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "key",
    [
        "energy_keV",
        "detector_pixel_size_m",
        "focus_to_detector_m",
        "focus_to_sample_m",
        "angles_rad",
    ],
)
def test_read_rejects_missing_metadata_key(tmp_path, scan_kwargs, key):
    path = tmp_path / "raw.zarr"
    write_raw_scan(path, **scan_kwargs, manifest=False)
    _edit_attrs(path, lambda a: a.pop(key))
    with pytest.raises(ValueError, match=rf"raw.zarr: missing metadata key\(s\) \['{key}'\]"):
        read_raw_scan(path)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("energy_keV", "17", "energy_keV"),
        ("focus_to_sample_m", [0.2, 0.21, 0.3], "focus_to_sample_m"),
        ("angles_rad", [0.0, 1.0], "angles_rad"),
        ("flat_positions", [0.0], "flat_positions"),
        ("detector_pixel_size_m", -3e-6, "detector_pixel_size_m"),
    ],
)
def test_read_rejects_bad_metadata(tmp_path, scan_kwargs, key, value, match):
    path = tmp_path / "raw.zarr"
    write_raw_scan(path, **scan_kwargs, manifest=False)
    _edit_attrs(path, lambda a: a.__setitem__(key, value))
    with pytest.raises(ValueError, match=f"raw.zarr.*{match}"):
        read_raw_scan(path)


def test_read_min_span_is_a_parameter(tmp_path, scan_kwargs):
    path = tmp_path / "raw.zarr"
    kw = _bad(scan_kwargs, angles_rad=np.linspace(0, np.pi / 2, N_ANG, endpoint=False))
    write_raw_scan(path, **kw, min_span_deg=90.0, manifest=False)
    assert read_raw_scan(path, min_span_deg=90.0).n_angles == N_ANG
    with pytest.raises(ValueError, match="min_span_deg=179"):
        read_raw_scan(path)


def test_read_rejects_missing_store_and_array(tmp_path, scan_kwargs):
    with pytest.raises(FileNotFoundError, match="nothing.zarr"):
        read_raw_scan(tmp_path / "nothing.zarr")
    path = tmp_path / "raw.zarr"
    write_raw_scan(path, **scan_kwargs, manifest=False)
    shutil.rmtree(path / "darks")
    with pytest.raises(ValueError, match="missing array 'darks'"):
        read_raw_scan(path)


def test_check_values_clean_scan_counts_frames(tmp_path, scan_kwargs):
    path = tmp_path / "raw.zarr"
    write_raw_scan(path, **scan_kwargs, chunk_angles=5, manifest=False)
    counts = check_raw_scan_values(path)
    assert counts == {"flats": N_DIST * N_FLAT, "darks": N_DARK, "data": N_DIST * N_ANG}
    assert check_raw_scan_values(read_raw_scan(path), max_frames=3)["data"] == N_DIST * 3


def test_check_values_finds_nan_in_float_flats(tmp_path, scan_kwargs):
    kw = _float_kwargs(scan_kwargs)
    kw["flats"][1, 2, 5, 7] = np.nan
    kw["flats"][1, 2, 0, 0] = np.inf
    path = tmp_path / "raw.zarr"
    write_raw_scan(path, **kw, manifest=False)
    with pytest.raises(ValueError, match=r"raw.zarr: flats\[1, 2\] contains 2 NaN/inf pixels"):
        check_raw_scan_values(path)


def test_check_values_finds_zero_flat_and_bad_projection(tmp_path, scan_kwargs):
    kw = {**scan_kwargs, "flats": scan_kwargs["flats"].copy()}
    kw["flats"][0, 3] = 0
    path = tmp_path / "raw.zarr"
    write_raw_scan(path, **kw, manifest=False)
    with pytest.raises(ValueError, match=r"flats\[0, 3\] is all zero"):
        check_raw_scan_values(path)
    kw = _float_kwargs(scan_kwargs)
    kw["data"][1, 7, 3, 3] = np.nan
    write_raw_scan(path, **kw, chunk_angles=4, manifest=False)
    with pytest.raises(ValueError, match=r"data\[1, 7\] contains 1 NaN/inf"):
        check_raw_scan_values(path)
    kw["data"][1, 7, 3, 3] = 1.0
    kw["darks"][2, 0, 1] = -np.inf
    write_raw_scan(path, **kw, manifest=False)
    with pytest.raises(ValueError, match=r"darks\[2\] contains 1 NaN/inf"):
        check_raw_scan_values(path)
