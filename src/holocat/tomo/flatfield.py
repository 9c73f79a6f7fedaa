"""Flat- and dark-field correction of one distance of a holotomography scan.

Axis order: projections ``(n_proj, ny, nx)``, flats ``(n_flats, ny, nx)``, darks
``(n_darks, ny, nx)``, all raw detector counts of the SAME distance (SCIENCE.md §1: the
diverging KB beam makes the illumination distance-dependent, so each distance has its own
flats). The result ``I = (raw - dark) / (flat - dark)`` is ≈ 1 in open beam.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

__all__ = ["flat_field"]

logger = logging.getLogger(__name__)

#: 1.4826 * MAD estimates the standard deviation of Gaussian noise
_MAD_TO_SIGMA = 1.4826


def _as_stack(name: str, arr: ArrayLike, expected: str) -> NDArray[np.float32]:
    """Validate a frame stack: numeric, finite, 3D (a 2D frame is promoted to a stack of 1)."""
    a = np.asarray(arr)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric array {expected}; got dtype {a.dtype}")
    if a.ndim == 2 and name != "data":
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{name}: expected shape {expected}; got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one frame {expected}; got shape {a.shape}")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        n_bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{name}: contains {n_bad} NaN or inf value(s)")
    return a


def _flat_groups(
    flats: NDArray[np.float32], flat_positions: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """Median flat per group of equal position; returns (sorted positions, (n_groups, ny, nx))."""
    n_flats = flats.shape[0]
    if flat_positions is None:
        return np.zeros(1), np.median(flats, axis=0, keepdims=True).astype(np.float32)
    pos = np.asarray(flat_positions, dtype=float)
    if pos.ndim != 1 or pos.size != n_flats:
        raise ValueError(
            f"flat_positions: expected one projection index per flat, length n_flats == "
            f"{n_flats}; got shape {pos.shape}"
        )
    if not np.all(np.isfinite(pos)):
        raise ValueError("flat_positions: contains NaN or inf")
    groups = np.unique(pos)
    means = np.stack([np.median(flats[pos == g], axis=0) for g in groups]).astype(np.float32)
    return groups, means


def _interpolation_weights(
    group_pos: NDArray[np.float64], proj_idx: NDArray[np.float64]
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Lower/upper group and upper weight for each projection (constant beyond the ends)."""
    if group_pos.size == 1:
        zeros = np.zeros(proj_idx.size, dtype=np.intp)
        return zeros, zeros, np.zeros(proj_idx.size)
    clipped = np.clip(proj_idx, group_pos[0], group_pos[-1])
    upper = np.clip(np.searchsorted(group_pos, clipped, side="right"), 1, group_pos.size - 1)
    lower = upper - 1
    w = (clipped - group_pos[lower]) / (group_pos[upper] - group_pos[lower])
    return lower.astype(np.intp), upper.astype(np.intp), w


def _remove_zingers(
    frames: NDArray[np.float32], threshold: float
) -> tuple[NDArray[np.float32], int]:
    """Replace outliers above the median of their 8 neighbours by that median.

    A pixel is a zinger when ``frame - med8 > threshold * noise`` with
    ``noise = 1.4826 * max(local MAD, MAD of the frame / 2)``: the MAD of the residual
    ``frame - med8`` over a 5x5 window, bounded below by half the frame-wide MAD so that
    flat patches (and replicated borders) do not produce a zero noise estimate.

    Returns the cleaned copy and the number of pixels replaced.
    """
    footprint = np.ones((1, 3, 3), dtype=bool)
    footprint[0, 1, 1] = False
    med = ndimage.median_filter(frames, footprint=footprint, mode="nearest")
    resid = frames - med
    abs_resid = np.abs(resid)
    local = ndimage.median_filter(abs_resid, size=(1, 5, 5), mode="nearest")
    global_mad = np.median(abs_resid.reshape(frames.shape[0], -1), axis=1)[:, None, None]
    # final floor for noiseless (synthetic) data, where every MAD is 0
    floor = 1e-6 * np.maximum(np.abs(med), 1.0)
    noise = np.maximum(_MAD_TO_SIGMA * np.maximum(local, 0.5 * global_mad), floor)
    hot = resid > threshold * noise
    return np.where(hot, med, frames), int(np.count_nonzero(hot))


def _fill_dead(result: NDArray[np.float32], dead: NDArray[np.bool_]) -> None:
    """Replace, in place, dead pixels by the median of their live 3x3 neighbours.

    Clusters of dead pixels are filled from the outside in; a pixel with no live neighbour
    waits for the next sweep.
    """
    ny, nx = dead.shape
    todo = dead.copy()
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    while np.any(todo):
        yy, xx = np.nonzero(todo)
        raw_y = yy[:, None] + np.array([o[0] for o in offsets])
        raw_x = xx[:, None] + np.array([o[1] for o in offsets])
        inside = (raw_y >= 0) & (raw_y < ny) & (raw_x >= 0) & (raw_x < nx)
        ny_idx, nx_idx = np.clip(raw_y, 0, ny - 1), np.clip(raw_x, 0, nx - 1)
        live = inside & ~todo[ny_idx, nx_idx]  # (k, 8)
        fillable = live.any(axis=1)
        if not np.any(fillable):  # pragma: no cover - impossible while any pixel is live
            break
        values = result[:, ny_idx, nx_idx]  # (n, k, 8)
        values = np.where(live[None], values, np.nan)
        with np.errstate(all="ignore"):
            med = np.nanmedian(values[:, fillable], axis=-1)
        result[:, yy[fillable], xx[fillable]] = med
        todo[yy[fillable], xx[fillable]] = False


def flat_field(
    data: ArrayLike,
    flats: ArrayLike,
    darks: ArrayLike,
    *,
    flat_positions: ArrayLike | None = None,
    projection_indices: ArrayLike | None = None,
    min_denominator: float = 1.0,
    zinger_threshold: float | None = None,
) -> NDArray[np.float32]:
    """Flat- and dark-field correct the projections of one distance.

    ``I = (raw - dark) / max(flat(i) - dark, min_denominator)`` where ``dark`` is the median
    of the darks and ``flat(i)`` is the median flat of each group of equal
    ``flat_positions``, interpolated linearly in projection index ``i`` (constant beyond the
    first/last group). Pixels whose ``flat - dark <= 0`` in any flat group are dead: they are
    replaced in the result by the median of their live 3x3 neighbours and counted in the log.

    Parameters
    ----------
    data : array_like, shape (n_proj, ny, nx)
        Raw projections in detector counts (any real dtype, e.g. uint16).
    flats : array_like, shape (n_flats, ny, nx) or (ny, nx)
        Raw open-beam frames in counts.
    darks : array_like, shape (n_darks, ny, nx) or (ny, nx)
        Raw dark frames in counts.
    flat_positions : array_like of float, shape (n_flats,), optional
        Projection index at which each flat was taken, e.g. ``[0] * 10 + [n_angles] * 10``
        for 10 flats before and 10 after the scan. Default: one group for all flats.
    projection_indices : array_like of float, shape (n_proj,), optional
        Global projection index of each frame of ``data`` (so a chunk of angles can be
        corrected alone). Default ``arange(n_proj)``.
    min_denominator : float
        Lower clamp of ``flat - dark`` in counts; > 0. Default 1.
    zinger_threshold : float, optional
        If given (> 0), pixels of ``data`` exceeding the median of their 8 neighbours by
        more than ``zinger_threshold`` times the local noise (1.4826 x the median absolute
        deviation from that median over 5x5 pixels, at least half the frame-wide one) are
        replaced by that median before normalisation. Default: off.

    Returns
    -------
    numpy.ndarray, float32, shape (n_proj, ny, nx)
        Normalised transmission, ≈ 1 in open beam.

    Raises
    ------
    TypeError
        If an array is not real-valued numeric.
    ValueError
        If shapes do not match, an array holds NaN/inf, all flats are zero,
        ``flat_positions``/``projection_indices`` have the wrong length, or
        ``min_denominator``/``zinger_threshold`` are not > 0.

    Examples
    --------
    >>> import numpy as np
    >>> darks = np.full((2, 4, 4), 100.0)
    >>> flats = np.full((3, 4, 4), 1100.0)
    >>> data = np.full((5, 4, 4), 600.0)
    >>> float(flat_field(data, flats, darks)[0, 0, 0])
    0.5
    """
    data_a = _as_stack("data", data, "(n_proj, ny, nx)")
    flats_a = _as_stack("flats", flats, "(n_flats, ny, nx)")
    darks_a = _as_stack("darks", darks, "(n_darks, ny, nx)")
    n_proj, ny, nx = data_a.shape
    for name, arr in (("flats", flats_a), ("darks", darks_a)):
        if arr.shape[1:] != (ny, nx):
            raise ValueError(
                f"{name}: expected frames of shape (ny, nx) == {(ny, nx)} like data; "
                f"got shape {arr.shape}"
            )
    min_denominator = float(min_denominator)
    if not np.isfinite(min_denominator) or min_denominator <= 0:
        raise ValueError(f"min_denominator: expected a number > 0 counts; got {min_denominator!r}")
    if zinger_threshold is not None:
        zinger_threshold = float(zinger_threshold)
        if not np.isfinite(zinger_threshold) or zinger_threshold <= 0:
            raise ValueError(f"zinger_threshold: expected None or > 0; got {zinger_threshold!r}")
    if not np.any(flats_a):
        raise ValueError("flats: all flat-field frames are zero (no open-beam signal)")
    if projection_indices is None:
        proj_idx = np.arange(n_proj, dtype=float)
    else:
        proj_idx = np.asarray(projection_indices, dtype=float)
        if proj_idx.ndim != 1 or proj_idx.size != n_proj:
            raise ValueError(
                f"projection_indices: expected one index per frame of data, length "
                f"n_proj == {n_proj}; got shape {proj_idx.shape}"
            )
        if not np.all(np.isfinite(proj_idx)):
            raise ValueError("projection_indices: contains NaN or inf")

    dark = np.median(darks_a, axis=0).astype(np.float32)
    group_pos, group_flats = _flat_groups(flats_a, flat_positions)
    group_flats -= dark
    dead = np.any(group_flats <= 0, axis=0)
    n_dead = int(np.count_nonzero(dead))
    if n_dead == ny * nx:
        raise ValueError("flats: flat - dark <= 0 at every pixel (flats and darks swapped?)")

    frames = data_a
    if zinger_threshold is not None:
        frames, n_zingers = _remove_zingers(frames, zinger_threshold)
        logger.info("flat_field: replaced %d zinger pixel(s) in %d frame(s)", n_zingers, n_proj)

    lower, upper, w = _interpolation_weights(group_pos, proj_idx)
    w32 = w.astype(np.float32)[:, None, None]
    denom = group_flats[lower] * (1 - w32) + group_flats[upper] * w32
    np.maximum(denom, np.float32(min_denominator), out=denom)
    result = (frames - dark) / denom

    if n_dead:
        yy, xx = np.nonzero(dead)
        logger.warning(
            "flat_field: %d dead pixel(s) (flat - dark <= 0) replaced by the 3x3 median; "
            "first at (y, x) = %s",
            n_dead,
            list(zip(yy[:5].tolist(), xx[:5].tolist(), strict=True)),
        )
        _fill_dead(result, dead)
    logger.debug(
        "flat_field: %d frame(s), %d flat group(s) at %s, %d dark(s)",
        n_proj,
        group_pos.size,
        group_pos.tolist(),
        darks_a.shape[0],
    )
    return result.astype(np.float32, copy=False)
