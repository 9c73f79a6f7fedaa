"""Parquet + CSV tables with JSON metadata in the Parquet schema."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from holocat.io import read_table, write_table


@pytest.fixture
def table():
    rng = np.random.default_rng(7)
    n = 25
    return pd.DataFrame(
        {
            "label": np.arange(1, n + 1, dtype=np.uint32),
            "sample": ["S1"] * n,
            "cycles": np.full(n, 10, dtype=np.int64),
            "Volume": rng.uniform(100, 600, n),
            "Sphericity": rng.uniform(0.5, 1.0, n),
        }
    )


METADATA = {
    "units": {"Volume": "um^3", "Sphericity": "1"},
    "definitions": {"Sphericity": "pi^(1/3) (6V)^(2/3) / A"},
    "provenance": {"stage": "attributes", "voxel_size_um": 0.07},
}


def test_parquet_and_csv_round_trip(tmp_path, table):
    path = tmp_path / "attributes.parquet"
    out = write_table(table, path, metadata=METADATA)
    assert out == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attributes.csv", "attributes.parquet"]
    df, meta = read_table(path)
    pd.testing.assert_frame_equal(df, table)
    assert meta == METADATA
    # oracle: pyarrow sees the metadata in the schema key-value store
    raw = pq.read_schema(path).metadata
    assert json.loads(raw[b"holocat"]) == METADATA and b"pandas" in raw
    # oracle: pandas reads the CSV back to the same values
    csv = pd.read_csv(tmp_path / "attributes.csv")
    assert list(csv.columns) == list(table.columns)
    np.testing.assert_allclose(csv["Volume"], table["Volume"], rtol=1e-15)
    assert csv["label"].tolist() == table["label"].tolist()


def test_named_index_is_kept(tmp_path, table):
    indexed = table.set_index("label")
    path = tmp_path / "t.parquet"
    write_table(indexed, path)
    df, meta = read_table(path)
    pd.testing.assert_frame_equal(df, indexed)
    assert meta == {}
    csv = pd.read_csv(tmp_path / "t.csv", index_col="label")
    assert csv.index.tolist() == indexed.index.tolist()


def test_csv_optional(tmp_path, table):
    write_table(table, tmp_path / "t.parquet", csv=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_failed_write_keeps_old_files(tmp_path, table, monkeypatch):
    path = tmp_path / "t.parquet"
    write_table(table.iloc[:3], path, metadata={"v": 1})
    old_parquet, old_csv = path.read_bytes(), (tmp_path / "t.csv").read_bytes()

    def broken_write_table(tbl, where, **kwargs):
        with open(where, "wb") as fh:
            fh.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken_write_table)
    with pytest.raises(OSError, match="disk full"):
        write_table(table, path, metadata={"v": 2}, csv=False)
    assert path.read_bytes() == old_parquet and (tmp_path / "t.csv").read_bytes() == old_csv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.parquet"]
    monkeypatch.undo()
    df, meta = read_table(path)
    assert meta == {"v": 1} and len(df) == 3


def test_bad_metadata_writes_nothing(tmp_path, table):
    with pytest.raises(TypeError, match=r"metadata\['model'\]"):
        write_table(table, tmp_path / "t.parquet", metadata={"model": object()})
    assert list(tmp_path.iterdir()) == []


def test_argument_errors(tmp_path, table):
    with pytest.raises(ValueError, match="parquet"):
        write_table(table, tmp_path / "t.csv")
    with pytest.raises(TypeError, match="DataFrame"):
        write_table(table.to_dict(), tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="string column"):
        write_table(pd.DataFrame({0: [1.0]}), tmp_path / "t.parquet")
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        read_table(tmp_path / "missing.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="junk.parquet"):
        read_table(tmp_path / "junk.parquet")
