"""Tables (particle attributes, FEM time series) as Parquet with JSON metadata, plus CSV.

``write_table(df, "attributes.parquet", metadata=...)`` writes ``attributes.parquet`` and a
sibling ``attributes.csv``, each atomically. ``metadata`` (units, column definitions,
provenance) is stored as JSON under the key ``b"holocat"`` of the Parquet schema's key-value
metadata, next to pandas' own ``b"pandas"`` entry, so any Parquet reader can see it:

>>> import tempfile, pandas as pd
>>> p = Path(tempfile.mkdtemp()) / "t.parquet"
>>> _ = write_table(pd.DataFrame({"label": [1, 2], "Volume": [3.5, 4.0]}), p,
...                 metadata={"units": {"Volume": "um^3"}})
>>> df, meta = read_table(p)
>>> df["Volume"].tolist(), meta["units"]
([3.5, 4.0], {'Volume': 'um^3'})
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from holocat.io.atomic import atomic_path, to_jsonable

__all__ = ["METADATA_KEY", "read_table", "write_table"]

log = logging.getLogger(__name__)

#: key of holocat's JSON metadata in the Parquet schema metadata
METADATA_KEY = b"holocat"


def _parquet_path(path: Any) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path: expected a str or path-like; got {type(path).__name__}")
    p = Path(path)
    if p.suffix != ".parquet":
        raise ValueError(f"path: expected a file name ending in .parquet; got {p.name!r}")
    return p


def write_table(
    df: Any,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
    csv: bool = True,
) -> Path:
    """Write a DataFrame to Parquet (with metadata) and CSV, atomically.

    Parameters
    ----------
    df : pandas.DataFrame
        The table; column names must be strings. A non-default index is kept (Parquet via
        pandas metadata, CSV as leading column(s)).
    path : str or path-like
        Destination ``*.parquet``; the CSV goes to the same path with suffix ``.csv``.
    metadata : mapping, optional
        JSON-safe metadata (units, definitions, provenance), stored under ``b"holocat"``.
    csv : bool
        Also write the CSV (written first, so a complete Parquet always has its CSV).

    Returns
    -------
    pathlib.Path
        The Parquet path.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df: expected a pandas DataFrame; got {type(df).__name__}")
    target = _parquet_path(path)
    bad = [c for c in df.columns if not isinstance(c, str)]
    if bad:
        raise ValueError(f"df: Parquet needs string column names; got non-string column(s) {bad}")
    if df.columns.has_duplicates:
        dup = sorted(set(df.columns[df.columns.duplicated()]))
        raise ValueError(f"df: duplicate column name(s) {dup}")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata: expected a mapping or None; got {type(metadata).__name__}")
    meta_json = json.dumps(to_jsonable(dict(metadata or {}), _where="metadata"), allow_nan=False)
    keep_index = not (
        isinstance(df.index, pd.RangeIndex)
        and df.index.start == 0
        and df.index.step == 1
        and df.index.name is None
    )
    table = pa.Table.from_pandas(df, preserve_index=keep_index)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[METADATA_KEY] = meta_json.encode("utf-8")
    table = table.replace_schema_metadata(schema_meta)
    if csv:
        with atomic_path(target.with_suffix(".csv")) as tmp:
            df.to_csv(tmp, index=keep_index)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)
    log.info("wrote table %s (%d rows x %d columns)", target, len(df), len(df.columns))
    return target


def read_table(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Read a Parquet table written by :func:`write_table`.

    Returns
    -------
    (pandas.DataFrame, dict)
        The table and its ``b"holocat"`` metadata (``{}`` when absent).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a Parquet file or its metadata is not JSON.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = _parquet_path(path)
    if not target.is_file():
        raise FileNotFoundError(f"table not found: {target}")
    try:
        table = pq.read_table(target)
    except pa.ArrowException as exc:
        raise ValueError(f"{target}: not a readable Parquet file ({exc})") from exc
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    try:
        metadata = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{target}: holocat metadata is not valid JSON ({exc})") from exc
    return table.to_pandas(), metadata
