"""Attributes that need more than one particle's crop: PDensity and the 6-neighbour statistics.

``summed_area_table`` + ``pdensity`` give the labelled fraction of any axis-aligned box in O(1)
per particle (SCIENCE.md §5, *PDensity*); the workflow builds the table once for the whole
volume (optionally on a block-summed, downsampled mask) and shares it between slab jobs.
``neighbour_attributes`` runs at the gather, when every centroid is known.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from holocat.attributes._kernels import block_counts, plane_summed_area_table
from holocat.attributes.definitions import _order_columns

__all__ = ["summed_area_table", "pdensity", "add_pdensity", "neighbour_attributes"]

logger = logging.getLogger(__name__)


def summed_area_table(mask: ArrayLike, *, downsample: int = 1) -> NDArray[np.int64]:
    """3D summed-area table (integral image) of a mask, optionally on a block-summed grid.

    Parameters
    ----------
    mask : array_like, shape (nz, ny, nx)
        Boolean mask (e.g. ``labels > 0``) or non-negative integer counts.
    downsample : int, optional
        Block edge ``k`` >= 1 in voxels. With ``k > 1`` the mask is first summed over
        ``k x k x k`` blocks (the last block of an axis may be partial), so each cell of the
        table's grid holds a voxel count; memory drops by ``k**3``.

    Returns
    -------
    ndarray of int64, shape (mz + 1, my + 1, mx + 1)
        ``sat[i, j, l]`` = sum of the (block-summed) mask over ``[:i, :j, :l]``, with
        ``m = ceil(n / k)`` cells per axis. The leading zero plane on each axis makes box sums
        a fixed 8-term inclusion-exclusion.

    Raises
    ------
    TypeError
        If ``mask`` is neither boolean nor integer.
    ValueError
        If ``mask`` is not 3D, holds negative values, or ``downsample`` < 1.

    Examples
    --------
    >>> import numpy as np
    >>> sat = summed_area_table(np.ones((2, 3, 4), dtype=bool))
    >>> int(sat[-1, -1, -1]), sat.shape
    (24, (3, 4, 5))
    """
    arr = np.asarray(mask)
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"mask: expected a boolean or integer array; got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(f"mask: expected shape (nz, ny, nx); got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.size and arr.min() < 0:
        raise ValueError("mask: expected non-negative counts; got negative values")
    if isinstance(downsample, bool) or not isinstance(downsample, int | np.integer):
        raise TypeError(f"downsample: expected an int >= 1; got {downsample!r}")
    if downsample < 1:
        raise ValueError(f"downsample: expected an int >= 1; got {downsample}")
    k = int(downsample)
    counts = arr
    if k > 1:
        if arr.dtype == np.bool_:
            counts = block_counts(arr, k)
        else:  # counts: sums per block
            padded_shape = [math.ceil(n / k) * k for n in arr.shape]
            pad = [(0, p - n) for p, n in zip(padded_shape, arr.shape, strict=True)]
            mz, my, mx = (p // k for p in padded_shape)
            counts = (
                np.pad(arr, pad).reshape(mz, k, my, k, mx, k).sum(axis=(1, 3, 5), dtype=np.int64)
            )
    # one int64 table, filled and summed in place: no full-size temporaries (at 1000^3 the
    # chained cumsums needed ~4 copies of 8 GB)
    sat = np.zeros(tuple(n + 1 for n in counts.shape), dtype=np.int64)
    inner = sat[1:, 1:, 1:]
    inner[...] = counts
    for axis in range(3):
        np.cumsum(inner, axis=axis, out=inner)
    return sat


def _box_sum(
    sat: NDArray[np.int64], lo: NDArray[np.int64], hi: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Sum over the half-open boxes ``[lo, hi)`` (rows of (z, y, x) indices) from a table."""
    z0, y0, x0 = lo.T
    z1, y1, x1 = hi.T
    return (
        sat[z1, y1, x1]
        - sat[z0, y1, x1]
        - sat[z1, y0, x1]
        - sat[z1, y1, x0]
        + sat[z0, y0, x1]
        + sat[z0, y1, x0]
        + sat[z1, y0, x0]
        - sat[z0, y0, x0]
    )


def _check_sat(name: str, sat: ArrayLike) -> NDArray[np.int64]:
    arr = np.asarray(sat)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected an integer summed-area table; got dtype {arr.dtype}")
    if arr.ndim != 3 or min(arr.shape) < 2:
        raise ValueError(
            f"{name}: expected a summed-area table of shape (mz + 1, my + 1, mx + 1) with "
            f"every axis >= 2 (from summed_area_table); got shape {arr.shape}"
        )
    return arr


def pdensity(
    centroids_vox: ArrayLike,
    sat: ArrayLike,
    cube_vox: float,
    *,
    sample_sat: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Labelled fraction of a cube centred on each centroid, clipped to the volume (Table S1 #20).

    Parameters
    ----------
    centroids_vox : array_like, shape (n, 3)
        Centroids as (z, y, x) coordinates on the table's grid (cell centres at integer
        indices). For a table built with ``downsample=k`` from full-resolution index ``c``,
        pass ``(c + 0.5) / k - 0.5``.
    sat : array_like of int, shape (mz + 1, my + 1, mx + 1)
        :func:`summed_area_table` of the labelled mask (``labels > 0``, and-ed with the sample
        mask when one is used).
    cube_vox : float
        Cube edge in cells of the table's grid; > 0. A cell belongs to the cube when its
        centre lies in ``[c - cube_vox / 2, c + cube_vox / 2)`` along every axis.
    sample_sat : array_like of int, optional
        :func:`summed_area_table` of the sample mask (same shape as ``sat``): the denominator
        counts only the cube's voxels inside the sample. Without it the denominator is the
        clipped cube's voxel count, which is exact only for ``downsample=1`` (for a downsampled
        table pass the table of ``np.ones(shape, bool)`` to count partial edge cells right).

    Returns
    -------
    ndarray of float64, shape (n,)
        Fraction in [0, 1]; NaN where the clipped cube holds no sample voxel.

    Raises
    ------
    TypeError, ValueError
        If ``centroids_vox`` is not (n, 3) finite, ``cube_vox`` is not finite and > 0, or the
        tables are not integer 3D arrays of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((10, 10, 10), bool)
    >>> mask[:5] = True
    >>> sat = summed_area_table(mask)
    >>> pdensity([[4.5, 4.5, 4.5]], sat, 10.0).round(3).tolist()
    [0.5]
    """
    table = _check_sat("sat", sat)
    cents = np.asarray(centroids_vox, dtype=np.float64)
    if cents.ndim != 2 or cents.shape[1] != 3:
        raise ValueError(f"centroids_vox: expected shape (n, 3) as (z, y, x); got {cents.shape}")
    if not np.all(np.isfinite(cents)):
        raise ValueError("centroids_vox: expected finite coordinates; got NaN or inf")
    cube = float(cube_vox)
    if not math.isfinite(cube) or cube <= 0:
        raise ValueError(f"cube_vox: expected a finite cube edge > 0 cells; got {cube_vox!r}")
    lo, hi = _cube_boxes(cents, cube, tuple(int(v) - 1 for v in table.shape))
    numerator = _box_sum(table, lo, hi).astype(np.float64)
    if sample_sat is None:
        denominator = np.prod(hi - lo, axis=1).astype(np.float64)
    else:
        sample = _check_sat("sample_sat", sample_sat)
        if sample.shape != table.shape:
            raise ValueError(
                f"sample_sat: expected the shape of sat {table.shape}; got {sample.shape}"
            )
        denominator = _box_sum(sample, lo, hi).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denominator > 0, numerator / denominator, np.nan)
    return out


def _cube_boxes(
    centroids_vox: NDArray[np.float64], cube_vox: float, shape: tuple[int, ...]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Half-open index boxes of the cubes clipped to ``shape`` (the rule of :func:`pdensity`)."""
    upper = np.array(shape, dtype=np.int64)
    half = cube_vox / 2.0
    lo = np.clip(np.ceil(centroids_vox - half).astype(np.int64), 0, upper)
    hi = np.clip(np.ceil(centroids_vox + half).astype(np.int64), 0, upper)
    return lo, np.maximum(hi, lo)


def _pdensity_by_slices(
    labels: NDArray[np.integer],
    centroids_vox: NDArray[np.float64],
    cube_vox: float,
    *,
    sample_mask: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """:func:`pdensity` at full resolution without a 3D summed-area table.

    Sums each cube slice by slice from one 2D summed-area table per z-slice, so memory stays
    at one slice (a full int64 table of a 1000^3 volume would take 8 GB); the counts, and so
    the result, are identical to ``pdensity(c, summed_area_table(labels > 0), cube_vox,
    sample_sat=...)``.
    """
    lo, hi = _cube_boxes(centroids_vox, cube_vox, labels.shape)
    n = len(lo)
    numerator = np.zeros(n, dtype=np.int64)
    denominator = np.zeros(n, dtype=np.int64)
    _, ny, nx = labels.shape
    table = np.zeros((ny + 1, nx + 1), dtype=np.int64)

    def rect_sums(rows: NDArray[np.intp]) -> NDArray[np.int64]:
        y0, x0 = lo[rows, 1], lo[rows, 2]
        y1, x1 = hi[rows, 1], hi[rows, 2]
        return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]

    z_start = int(lo[:, 0].min()) if n else 0
    z_stop = int(hi[:, 0].max()) if n else 0
    for z in range(z_start, z_stop):
        rows = np.flatnonzero((lo[:, 0] <= z) & (z < hi[:, 0]))
        if rows.size == 0:
            continue
        inside = None if sample_mask is None else sample_mask[z]
        if inside is not None:
            plane_summed_area_table(inside, None, table)
            denominator[rows] += rect_sums(rows)
        plane_summed_area_table(labels[z], inside, table)
        numerator[rows] += rect_sums(rows)
    if sample_mask is None:
        denominator = np.prod(hi - lo, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def add_pdensity(
    table: pd.DataFrame,
    sat: ArrayLike,
    *,
    voxel_size_um: float,
    pdensity_cube_um: float = 100.0,
    sample_sat: ArrayLike | None = None,
    sat_downsample: int = 1,
) -> pd.DataFrame:
    """Return a copy of an attribute table with the ``PDensity`` column from a shared table.

    Parameters
    ----------
    table : pandas.DataFrame
        Needs columns ``X``, ``Y``, ``Z`` in micrometres in the full-volume frame.
    sat, sample_sat : array_like of int
        Summed-area tables of the full volume's labelled mask and (optionally) sample mask,
        built with ``summed_area_table(..., downsample=sat_downsample)``.
    voxel_size_um : float
        Voxel edge of the labels in micrometres; > 0.
    pdensity_cube_um : float, optional
        Cube edge in micrometres; > 0 (default 100 um, SCIENCE.md §5).
    sat_downsample : int, optional
        The ``downsample`` the tables were built with.

    Returns
    -------
    pandas.DataFrame
        A copy with ``PDensity`` set, columns in the canonical order.
    """
    _check_table(table, ("X", "Y", "Z"))
    s = _check_positive("voxel_size_um", voxel_size_um)
    cube_um = _check_positive("pdensity_cube_um", pdensity_cube_um)
    k = int(sat_downsample)
    if k < 1:
        raise ValueError(f"sat_downsample: expected an int >= 1; got {sat_downsample!r}")
    full_index = table[["Z", "Y", "X"]].to_numpy(dtype=np.float64) / s
    cents = (full_index + 0.5) / k - 0.5
    out = table.copy()
    out["PDensity"] = pdensity(cents, sat, cube_um / (s * k), sample_sat=sample_sat)
    return _order_columns(out)


def neighbour_attributes(table: pd.DataFrame, *, k: int = 6) -> pd.DataFrame:
    """Add DistNearest, ElongStd, VolumeStd and OrienIso over each particle's k nearest centroids.

    Table S1 #21-24 (SCIENCE.md §5): neighbours by ``scipy.spatial.cKDTree`` on the centroids
    (X, Y, Z) in micrometres, self excluded; standard deviations with ddof = 1 (as MATLAB's
    ``std``); OrienIso is the nematic order parameter, the largest eigenvalue of
    ``Q = mean_j (3 u_j u_j^T - I) / 2`` over the neighbours' major axes ``u_j`` (the first
    column of the rotation given by Yaw, Pitch, Roll), which is sign-free: 1 when all
    neighbours are aligned, about 0.35 for 6 random axes.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per particle with columns ``X, Y, Z, Elongation, Volume, Yaw, Pitch, Roll``
        (e.g. the concatenated :func:`particle_attributes` of all slabs).
    k : int, optional
        Number of neighbours (default 6). With fewer than ``k + 1`` particles all others are
        used; the standard deviations need at least 2 neighbours (NaN otherwise).

    Returns
    -------
    pandas.DataFrame
        A copy with the four columns set, columns in the canonical order.

    Raises
    ------
    ValueError
        If a column is missing, a centroid is not finite, or ``k`` < 1.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"X": [0.0, 1.0, 3.0], "Y": 0.0, "Z": 0.0, "Elongation": 1.0,
    ...                   "Volume": [1.0, 2.0, 3.0], "Yaw": 0.0, "Pitch": 0.0, "Roll": 0.0})
    >>> neighbour_attributes(t, k=2)[["DistNearest", "VolumeStd", "OrienIso"]].round(3).values.tolist()
    [[2.0, 0.707, 1.0], [1.5, 1.414, 1.0], [2.5, 0.707, 1.0]]
    """
    from scipy.spatial import cKDTree
    from scipy.spatial.transform import Rotation

    needed = ("X", "Y", "Z", "Elongation", "Volume", "Yaw", "Pitch", "Roll")
    _check_table(table, needed)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k: expected an int >= 1; got {k!r}")
    xyz = table[["X", "Y", "Z"]].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(xyz)):
        raise ValueError("table: expected finite centroids X, Y, Z; got NaN or inf")
    n = len(table)
    out = table.copy()
    k_eff = min(int(k), n - 1)
    if k_eff < 1:
        logger.warning("neighbour_attributes: %d particle(s), no neighbours; columns are NaN", n)
        for col in ("DistNearest", "ElongStd", "VolumeStd", "OrienIso"):
            out[col] = np.nan
        return _order_columns(out)

    dist, idx = cKDTree(xyz).query(xyz, k=k_eff + 1)
    rows = np.arange(n)[:, None]
    not_self = idx != rows
    # drop self; if a duplicate centroid hid self from the k + 1 results, drop the farthest
    missing_self = not_self.all(axis=1)
    not_self[missing_self, -1] = False
    nb = idx[not_self].reshape(n, k_eff)
    nb_dist = dist[not_self].reshape(n, k_eff)

    elong = table["Elongation"].to_numpy(dtype=np.float64)
    vol = table["Volume"].to_numpy(dtype=np.float64)
    angles = table[["Yaw", "Pitch", "Roll"]].to_numpy(dtype=np.float64)
    finite = np.all(np.isfinite(angles), axis=1)
    axes = np.full((n, 3), np.nan)
    if finite.any():
        rot = Rotation.from_euler("ZYX", angles[finite], degrees=True).as_matrix()
        axes[finite] = rot[:, :, 0]
    u = axes[nb]  # (n, k, 3), (x, y, z)
    q = 1.5 * np.einsum("nki,nkj->nij", u, u) / k_eff - 0.5 * np.eye(3)
    order = np.full(n, np.nan)
    ok = np.all(np.isfinite(q), axis=(1, 2))
    if ok.any():
        order[ok] = np.linalg.eigvalsh(q[ok])[:, -1]

    out["DistNearest"] = nb_dist.mean(axis=1)
    if k_eff >= 2:
        out["ElongStd"] = np.std(elong[nb], axis=1, ddof=1)
        out["VolumeStd"] = np.std(vol[nb], axis=1, ddof=1)
    else:
        out["ElongStd"] = np.nan
        out["VolumeStd"] = np.nan
    out["OrienIso"] = order
    return _order_columns(out)


def _check_table(table: pd.DataFrame, columns: tuple[str, ...]) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table: expected a pandas.DataFrame; got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"table: missing column(s) {missing}; got columns {list(table.columns)}")
    if len(table) == 0:
        raise ValueError("table: expected at least one particle row; got an empty table")


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name}: expected a finite number > 0; got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: expected a finite number > 0; got {value!r}")
    return v
