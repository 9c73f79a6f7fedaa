"""The command line: stage subcommands, parameter handling, and clear errors (exit 2, no traceback)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from holocat.cli import main
from holocat.io import write_raw_scan


def _raw_scan(path, **over):
    rng = np.random.default_rng(0)
    n_dist, n_angles, ny, nx = 2, 8, 16, 16
    kw = dict(
        data=rng.integers(900, 1100, (n_dist, n_angles, ny, nx), dtype=np.uint16),
        flats=rng.integers(900, 1100, (n_dist, 4, ny, nx), dtype=np.uint16),
        darks=np.full((2, ny, nx), 100, np.uint16),
        energy_keV=17.0,
        detector_pixel_size_m=3e-6,
        focus_to_detector_m=1.2,
        focus_to_sample_m=[0.2, 0.25],
        angles_rad=np.linspace(0, np.pi, n_angles, endpoint=False),
    )
    kw.update(over)
    write_raw_scan(path, **kw)
    return path


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for stage in (
        "simulate",
        "ingest",
        "phase",
        "reconstruct",
        "segment",
        "attributes",
        "analysis",
        "fem",
        "report",
    ):
        assert f"    {stage}" in out


def test_ingest_writes_geometry(tmp_path):
    raw = _raw_scan(tmp_path / "raw.zarr")
    out = tmp_path / "ingest.json"
    assert main(["ingest", str(raw), str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["n_dist"] == 2 and info["n_angles"] == 8 and info["reference_index"] == 0
    np.testing.assert_allclose(info["magnifications"], [6.0, 4.8])
    np.testing.assert_allclose(info["pixel_size_m"], 0.5e-6)
    np.testing.assert_allclose(info["effective_distances_m"][0], 0.2 * 1.0 / 1.2)


def test_ingest_names_missing_metadata(tmp_path, caplog):
    raw = _raw_scan(tmp_path / "raw.zarr")
    group = zarr.open_group(str(raw), mode="r+")
    attrs = dict(group.attrs)
    attrs.pop("energy_keV")
    group.attrs.clear()
    group.attrs.update(attrs)
    assert main(["ingest", str(raw), str(tmp_path / "i.json")]) == 2
    assert "energy_keV" in caplog.text
    assert not (tmp_path / "i.json").exists()


def test_ingest_names_nan_flats(tmp_path, caplog):
    flats = np.ones((2, 4, 16, 16), np.float32) * 1000
    flats[1, 2, 3, 4] = np.nan
    data = np.ones((2, 8, 16, 16), np.float32) * 900
    raw = _raw_scan(
        tmp_path / "raw.zarr", flats=flats, data=data, darks=np.zeros((2, 16, 16), np.float32)
    )
    assert main(["ingest", str(raw), str(tmp_path / "i.json")]) == 2
    assert "flats" in caplog.text and "NaN" in caplog.text


def test_ingest_rejects_short_angular_range(tmp_path, caplog):
    raw = _raw_scan(tmp_path / "raw.zarr", angles_rad=np.linspace(0, np.pi / 2, 8), min_span_deg=0)
    assert main(["ingest", str(raw), str(tmp_path / "i.json")]) == 2
    assert "angles_rad" in caplog.text


def test_params_unknown_key_is_named(tmp_path, caplog):
    raw = _raw_scan(tmp_path / "raw.zarr")
    code = main(["ingest", str(raw), str(tmp_path / "i.json"), "--params", '{"min_span": 3}'])
    assert code == 2 and "min_span" in caplog.text


def test_params_must_be_a_json_object(tmp_path, caplog):
    raw = _raw_scan(tmp_path / "raw.zarr")
    assert main(["ingest", str(raw), str(tmp_path / "i.json"), "--params", "[1, 2]"]) == 2
    assert "--params" in caplog.text


def test_slab_commands_require_out(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["reconstruct", "slab", "a", "b", "--slab", "0"])
    assert exc.value.code == 2
    assert "--out is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["segment", "stitch", "slabs.zarr", "labels.zarr", "part0.json"])
    assert "--index is required" in capsys.readouterr().err


def test_config_subcommand(tmp_path, capsys, caplog):
    sheet = tmp_path / "s.tsv"
    sheet.write_text("sample\tcycles\tsource\na\t10\tsynthetic\n")
    good = tmp_path / "c.yaml"
    good.write_text(f"samples: {sheet}\n")
    assert main(["config", str(good)]) == 0
    assert "valid; 1 sample(s): a" in capsys.readouterr().out
    bad = tmp_path / "b.yaml"
    bad.write_text(f"samples: {sheet}\nphase:\n  metod: ctf\n")
    assert main(["config", str(bad)]) == 2
    assert "phase.metod" in caplog.text
