"""Particle attributes of Table S1 from a label volume and its grey-value volume.

Array axes are (z, y, x); attribute X is along the last axis and Z along the first; lengths in
micrometres with voxel centres at ``index * voxel_size_um`` in the full volume's frame
(DESIGN.md). Definitions: SCIENCE.md §5 and :data:`ATTRIBUTE_DEFINITIONS`.

Work split for slab jobs (DESIGN.md, *Data flow*):

* :func:`particle_attributes` - everything that needs only one particle's padded bounding-box
  crop (``scipy.ndimage.find_objects``), its neighbourhood and the labels; runs per slab on the
  particles the slab owns (``label_ids``), with ``offset_vox``/``full_shape`` placing the block
  in the full volume. The block must contain each owned particle whole (a halo).
* :func:`~holocat.attributes.add_pdensity` with a :func:`~holocat.attributes.summed_area_table`
  of the whole labelled mask (built once, possibly downsampled) and
  :func:`~holocat.attributes.neighbour_attributes` - at the gather, on the concatenated table.
* :func:`extract` - both, for a volume held in memory.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage as ndi
from scipy.fft import next_fast_len

from holocat.attributes.definitions import (
    COLUMNS,
    LOCAL_COLUMNS,
    _order_columns,
)
from holocat.attributes.neighbours import neighbour_attributes, pdensity, summed_area_table
from holocat.attributes.shape import LocalParams, local_attributes

__all__ = ["extract", "particle_attributes"]

logger = logging.getLogger(__name__)

#: Radius (voxels) below which surface areas and roughness are biased (SCIENCE.md §5).
_MIN_RELIABLE_RADIUS_VOX = 5.0

#: Columns returned by :func:`particle_attributes`.
PARTICLE_COLUMNS: tuple[str, ...] = (
    "label",
    *LOCAL_COLUMNS,
    "EDensityStd",
    "touches_border",
    "n_voxels",
    "near_spherical",
)


def particle_attributes(
    labels: ArrayLike,
    volume: ArrayLike,
    *,
    voxel_size_um: float,
    label_ids: Iterable[int] | None = None,
    r_close_um: float = 0.7,
    contact_gap_um: float | None = None,
    smooth_sigma_vox: float = 1.0,
    roughness_sigma_vox: float = 2.0,
    erode_edensity: bool = False,
    n_workers: int = 1,
    offset_vox: Sequence[int] = (0, 0, 0),
    full_shape: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Per-particle ("local") attributes from each particle's padded bounding-box crop.

    Computes every Table S1 attribute except PDensity and the four neighbour attributes
    (DistNearest, ElongStd, VolumeStd, OrienIso); see :func:`extract` for the definitions
    and parameters.

    Returns
    -------
    pandas.DataFrame
        One row per particle, sorted by label, columns ``label, X, Y, Z, Yaw, Pitch, Roll,
        EDensity, Homogeneity, SurfaceInner, SurfaceOuter, Volume, Damage, Elongation,
        Sphericity, VSratio, RoughInner, RoughOuter, Contact, EDensityStd, touches_border,
        n_voxels, near_spherical``.

    Examples
    --------
    >>> import numpy as np
    >>> z, y, x = np.ogrid[:40, :40, :40]
    >>> labels = (((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) <= 12**2).astype(np.uint32)
    >>> t = particle_attributes(labels, np.full(labels.shape, 2.0), voxel_size_um=0.5)
    >>> t[["X", "EDensity", "Damage"]].values.round(3).tolist()
    [[10.0, 2.0, 0.0]]
    """
    checked = _check_inputs(
        labels,
        volume,
        voxel_size_um=voxel_size_um,
        label_ids=label_ids,
        r_close_um=r_close_um,
        contact_gap_um=contact_gap_um,
        smooth_sigma_vox=smooth_sigma_vox,
        roughness_sigma_vox=roughness_sigma_vox,
        n_workers=n_workers,
        offset_vox=offset_vox,
        full_shape=full_shape,
    )
    return _particle_table(checked, erode_edensity=bool(erode_edensity), n_workers=n_workers)


def extract(
    labels: ArrayLike,
    volume: ArrayLike,
    *,
    voxel_size_um: float,
    label_ids: Iterable[int] | None = None,
    r_close_um: float = 0.7,
    contact_gap_um: float | None = None,
    pdensity_cube_um: float = 100.0,
    smooth_sigma_vox: float = 1.0,
    roughness_sigma_vox: float = 2.0,
    erode_edensity: bool = False,
    sample_mask: ArrayLike | None = None,
    n_workers: int = 1,
    offset_vox: Sequence[int] = (0, 0, 0),
    full_shape: Sequence[int] | None = None,
    pdensity_downsample: int = 1,
) -> pd.DataFrame:
    """The 23 particle attributes of Table S1 (SCIENCE.md §5), one row per particle.

    Per particle, on its bounding-box crop padded by the largest morphology radius:
    ``S`` = the particle's solid voxels (crack voids are 0); ``F`` = ``S`` closed with a ball
    of radius ``r_close_um`` (EDT-based) and 3D hole-filled; areas ``A(.)`` by marching cubes
    at level 0.5 on the mask smoothed by a Gaussian of ``smooth_sigma_vox``, in um^2.

    * X, Y, Z: centroid of F (um, full-volume frame, voxel centres at ``index * voxel_size``).
    * Yaw, Pitch, Roll: ``Rotation.from_matrix(R).as_euler("ZYX", degrees=True)`` with R the
      eigenvectors of F's (x, y, z) covariance as columns, major axis first, the largest
      component of e1 and e2 positive and e3 = e1 x e2.
    * EDensity: mean of ``volume`` over S (over S eroded by one voxel if ``erode_edensity``);
      Homogeneity = 1 / std (ddof = 0; inf for a constant field); EDensityStd = std.
    * SurfaceOuter = A(F); SurfaceInner = max(A(S) - A(F), 0); Volume = |F| v;
      Damage = (|F| - |S|) / |F|; Elongation = sqrt(lambda1 / lambda3);
      Sphericity = 36 pi V^2 / A(F)^3; VSratio = V^(1/3) / (A(F) + SurfaceInner)^(1/2).
    * RoughOuter / RoughInner: RMS about the mean of the normal displacement of F's surface /
      of S's crack-wall vertices (deeper than 1.5 voxels inside F) when the surface is smoothed
      along itself by a Gaussian of ``roughness_sigma_vox`` (um; 0 without cracks). Smoothing
      the surface, not the mask, keeps opposite walls of a thin crack apart; removing the mean
      removes the uniform shrinkage (about sigma^2 / R) of a curved surface.
    * Contact: fraction of F's boundary voxels within ``contact_gap_um`` of another label.
    * PDensity: labelled fraction of a cube of edge ``pdensity_cube_um`` centred on the
      centroid, counted inside the volume (and ``sample_mask``), from a summed-area table.
    * DistNearest, ElongStd, VolumeStd, OrienIso: over the 6 nearest centroids
      (:func:`~holocat.attributes.neighbour_attributes`).
    * touches_border: the bounding box touches a face of the full volume (truncated shape,
      missing neighbours: exclude from analysis); near_spherical: lambda3 / lambda1 > 0.9
      (orientation is noise); n_voxels = |S|.

    Parameters
    ----------
    labels : array_like of int, shape (nz, ny, nx)
        Particle labels, 0 = background; the solid particle voxels (cracks are 0).
    volume : array_like of float, shape (nz, ny, nx)
        Grey values (e.g. delta) in any unit; EDensity is reported in that unit.
    voxel_size_um : float
        Voxel edge in micrometres; finite and > 0.
    label_ids : iterable of int, optional
        Compute only these labels (all present in ``labels``). Default: every label.
    r_close_um : float, optional
        Closing radius in micrometres, >= 0 (default 0.7 um = 10 voxels at 70 nm, [C]).
    contact_gap_um : float, optional
        Contact gap in micrometres, > 0. Default: one voxel.
    pdensity_cube_um : float, optional
        PDensity cube edge in micrometres, > 0 (default 100 um).
    smooth_sigma_vox : float, optional
        Gaussian sigma (voxels, > 0) of the mask before marching cubes (default 1).
    roughness_sigma_vox : float, optional
        Gaussian sigma (voxels, > 0) of the surface smoothing for roughness (default 2).
    erode_edensity : bool, optional
        Average the volume over S eroded by one voxel (against partial-volume edges).
    sample_mask : array_like of bool, shape (nz, ny, nx), optional
        Voxels inside the sample; PDensity counts only these (outside is not pore).
    n_workers : int, optional
        Processes for the per-particle work (default 1: in-process). Workers are spawned, not
        forked, so a calling script needs the usual ``if __name__ == "__main__":`` guard.
    offset_vox : sequence of 3 int, optional
        (z, y, x) index of ``labels[0, 0, 0]`` in the full volume (sub-block calls).
    full_shape : sequence of 3 int, optional
        Shape of the full volume; default ``offset_vox + labels.shape``.
    pdensity_downsample : int, optional
        Block edge of the summed-area table (default 1 = exact; 4 saves 64x memory).

    Returns
    -------
    pandas.DataFrame
        One row per particle, sorted by label, columns :data:`COLUMNS`: ``label``, the 23
        Table S1 attributes, ``EDensityStd``, ``touches_border``, ``n_voxels``,
        ``near_spherical``.

    Raises
    ------
    TypeError
        If ``labels`` is not an integer array, ``volume`` not real-valued, or a scalar
        parameter has the wrong type.
    ValueError
        If the arrays are not 3D or differ in shape, ``labels`` holds negative values or no
        particle, ``volume`` holds NaN, ``voxel_size_um`` is not finite and > 0, a requested
        label is absent, or the block does not fit in ``full_shape``.

    Notes
    -----
    With ``label_ids`` or a sub-block (``offset_vox``/``full_shape``), PDensity counts only the
    block given and the neighbour attributes only the rows returned (a warning is logged); the
    workflow instead gathers :func:`particle_attributes` of all slabs and then applies
    :func:`~holocat.attributes.add_pdensity` and
    :func:`~holocat.attributes.neighbour_attributes`.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((40, 40, 80), np.uint32)
    >>> z, y, x = np.ogrid[:40, :40, :80]
    >>> labels[((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) <= 100] = 1
    >>> labels[((z - 20) ** 2 + (y - 20) ** 2 + (x - 60) ** 2) <= 100] = 2
    >>> t = extract(labels, np.ones(labels.shape), voxel_size_um=1.0)
    >>> t["DistNearest"].tolist(), bool(t["Damage"].eq(0).all())
    ([40.0, 40.0], True)
    """
    checked = _check_inputs(
        labels,
        volume,
        voxel_size_um=voxel_size_um,
        label_ids=label_ids,
        r_close_um=r_close_um,
        contact_gap_um=contact_gap_um,
        smooth_sigma_vox=smooth_sigma_vox,
        roughness_sigma_vox=roughness_sigma_vox,
        n_workers=n_workers,
        offset_vox=offset_vox,
        full_shape=full_shape,
    )
    cube_um = _positive("pdensity_cube_um", pdensity_cube_um)
    if (
        isinstance(pdensity_downsample, bool)
        or not isinstance(pdensity_downsample, int | np.integer)
        or pdensity_downsample < 1
    ):
        raise ValueError(f"pdensity_downsample: expected an int >= 1; got {pdensity_downsample!r}")
    lab = checked["labels"]
    mask = None
    if sample_mask is not None:
        mask = np.asarray(sample_mask)
        if mask.shape != lab.shape:
            raise ValueError(
                f"sample_mask: expected the labels' shape {lab.shape}; got {mask.shape}"
            )
        if mask.dtype != np.bool_ and not np.issubdtype(mask.dtype, np.integer):
            raise TypeError(f"sample_mask: expected a boolean array; got dtype {mask.dtype}")
        mask = mask.astype(bool, copy=False)

    sub_block = checked["sub_block"] or label_ids is not None
    if sub_block:
        logger.warning(
            "extract on a sub-block or a subset of labels: PDensity counts only this block and "
            "the neighbour attributes only these %d particles; slab jobs should use "
            "particle_attributes and gather with add_pdensity + neighbour_attributes",
            len(checked["label_ids"]),
        )
    table = _particle_table(checked, erode_edensity=bool(erode_edensity), n_workers=n_workers)

    s = checked["voxel_size_um"]
    k = int(pdensity_downsample)
    occupied = lab > 0
    if mask is not None:
        occupied &= mask
    sat = summed_area_table(occupied, downsample=k)
    sample_sat = None
    if mask is not None:
        sample_sat = summed_area_table(mask, downsample=k)
    elif k > 1:
        sample_sat = summed_area_table(np.ones(lab.shape, dtype=bool), downsample=k)
    offset = np.asarray(checked["offset_vox"], dtype=np.float64)
    block_index = table[["Z", "Y", "X"]].to_numpy(dtype=np.float64) / s - offset
    table["PDensity"] = pdensity(
        (block_index + 0.5) / k - 0.5, sat, cube_um / (s * k), sample_sat=sample_sat
    )
    table = neighbour_attributes(table)
    return table[list(COLUMNS)]


def _particle_table(
    checked: dict[str, Any], *, erode_edensity: bool, n_workers: int
) -> pd.DataFrame:
    """Run :func:`local_attributes` over the requested labels, serially or in a process pool."""
    lab = checked["labels"]
    vol = checked["volume"]
    ids: list[int] = checked["label_ids"]
    slices = checked["slices"]
    s = checked["voxel_size_um"]
    params = LocalParams(
        voxel_size_um=s,
        r_close_vox=checked["r_close_um"] / s,
        contact_gap_vox=checked["contact_gap_vox"],
        smooth_sigma_vox=checked["smooth_sigma_vox"],
        roughness_sigma_vox=checked["roughness_sigma_vox"],
        erode_edensity=erode_edensity,
    )
    pad = params.pad_vox
    offset = np.asarray(checked["offset_vox"], dtype=np.int64)
    full = np.asarray(checked["full_shape"], dtype=np.int64)
    block = np.asarray(lab.shape, dtype=np.int64)
    logger.info(
        "particle attributes: %d particle(s), block %s at offset %s of %s, voxel %.4g um, "
        "r_close %.3g vox, pad %d vox, %d worker(s)",
        len(ids),
        tuple(block.tolist()),
        tuple(offset.tolist()),
        tuple(full.tolist()),
        s,
        params.r_close_vox,
        pad,
        n_workers,
    )

    def tasks() -> Iterable[tuple[int, NDArray, NDArray, tuple[int, int, int]]]:
        for label in ids:
            sl = slices[label - 1]
            lo = np.array([x.start for x in sl]) - pad
            hi = np.array([x.stop for x in sl]) + pad
            # grow the crop to FFT-friendly sizes (more padding never changes the result)
            hi = lo + np.array([next_fast_len(int(n), real=True) for n in hi - lo])
            clo = np.maximum(lo, 0)
            chi = np.minimum(hi, block)
            src = tuple(slice(int(a), int(b)) for a, b in zip(clo, chi, strict=True))
            dst = tuple(
                slice(int(a - l0), int(b - l0)) for a, b, l0 in zip(clo, chi, lo, strict=True)
            )
            size = tuple(int(v) for v in hi - lo)
            lab_crop = np.zeros(size, dtype=lab.dtype)
            lab_crop[dst] = lab[src]
            vol_crop = np.zeros(size, dtype=vol.dtype)
            vol_crop[dst] = vol[src]
            origin = tuple(int(v) for v in lo + offset)
            yield label, lab_crop, vol_crop, origin

    rows = _run_tasks(tasks(), params, n_workers=n_workers, n_total=len(ids))
    table = pd.DataFrame(rows)
    bbox_lo = np.array([[x.start for x in slices[i - 1]] for i in ids]) + offset
    bbox_hi = np.array([[x.stop for x in slices[i - 1]] for i in ids]) + offset
    table["touches_border"] = np.any((bbox_lo == 0) | (bbox_hi == full), axis=1)
    at_block_edge = np.any(
        ((bbox_lo == offset) & (offset > 0))
        | ((bbox_hi == offset + block) & (offset + block < full)),
        axis=1,
    )
    if at_block_edge.any():
        logger.warning(
            "%d particle(s) reach the edge of the block but not of the full volume and may be "
            "truncated (labels %s...): give the block a halo that contains them whole",
            int(at_block_edge.sum()),
            [ids[i] for i in np.flatnonzero(at_block_edge)[:10]],
        )
    small = table["n_voxels"].to_numpy() < (4.0 / 3.0) * math.pi * _MIN_RELIABLE_RADIUS_VOX**3
    if small.any():
        logger.warning(
            "%d particle(s) smaller than a ball of radius %.0f voxels: areas, Sphericity and "
            "roughness are biased for them",
            int(small.sum()),
            _MIN_RELIABLE_RADIUS_VOX,
        )
    table = table.sort_values("label", kind="stable").reset_index(drop=True)
    table["label"] = table["label"].astype(np.int64)
    table["n_voxels"] = table["n_voxels"].astype(np.int64)
    table["touches_border"] = table["touches_border"].astype(bool)
    table["near_spherical"] = table["near_spherical"].astype(bool)
    return _order_columns(table)[list(PARTICLE_COLUMNS)]


def _run_tasks(
    tasks: Iterable[tuple[int, NDArray, NDArray, tuple[int, int, int]]],
    params: LocalParams,
    *,
    n_workers: int,
    n_total: int,
) -> list[dict[str, Any]]:
    """Evaluate the tasks in order; a bounded process pool when ``n_workers > 1``."""
    rows: list[dict[str, Any]] = []
    step = max(1, n_total // 10)

    def progress() -> None:
        if len(rows) % step == 0 or len(rows) == n_total:
            logger.info("particle attributes: %d / %d done", len(rows), n_total)

    if n_workers == 1 or n_total <= 1:
        for label, lab_crop, vol_crop, origin in tasks:
            rows.append(local_attributes(label, lab_crop, vol_crop, origin, params))
            progress()
        return rows

    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the caller may hold threads (dask, torch) that fork would copy locked
    ctx = multiprocessing.get_context("spawn")
    max_in_flight = 4 * n_workers  # bounds the crops held in memory at once
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
        pending: deque = deque()
        for label, lab_crop, vol_crop, origin in tasks:
            pending.append(pool.submit(local_attributes, label, lab_crop, vol_crop, origin, params))
            if len(pending) >= max_in_flight:
                rows.append(pending.popleft().result())
                progress()
        while pending:
            rows.append(pending.popleft().result())
            progress()
    return rows


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name}: expected a finite number; got {type(value).__name__} {value!r}")
    v = float(value)
    bound = "a finite number >= 0" if allow_zero else "a finite number > 0"
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name}: expected {bound}; got {value!r}")
    return v


def _triple(name: str, value: Any, *, minimum: int) -> tuple[int, int, int]:
    try:
        vals = tuple(value)
    except TypeError:
        raise TypeError(f"{name}: expected 3 ints (z, y, x); got {value!r}") from None
    if len(vals) != 3 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) for v in vals
    ):
        raise TypeError(f"{name}: expected 3 ints (z, y, x); got {value!r}")
    if any(v < minimum for v in vals):
        raise ValueError(f"{name}: expected 3 ints >= {minimum}; got {value!r}")
    return tuple(int(v) for v in vals)  # type: ignore[return-value]


def _check_inputs(
    labels: ArrayLike,
    volume: ArrayLike,
    *,
    voxel_size_um: float,
    label_ids: Iterable[int] | None,
    r_close_um: float,
    contact_gap_um: float | None,
    smooth_sigma_vox: float,
    roughness_sigma_vox: float,
    n_workers: int,
    offset_vox: Sequence[int],
    full_shape: Sequence[int] | None,
) -> dict[str, Any]:
    """Validate everything once at the public boundary; return normalised values."""
    s = _positive("voxel_size_um", voxel_size_um)
    lab = np.asarray(labels)
    if lab.dtype == np.bool_ or not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(
            f"labels: expected an integer label array (0 = background); got dtype {lab.dtype}"
        )
    if lab.ndim != 3:
        raise ValueError(f"labels: expected shape (nz, ny, nx); got shape {lab.shape}")
    vol = np.asarray(volume)
    if vol.dtype == np.bool_ or not (
        np.issubdtype(vol.dtype, np.floating) or np.issubdtype(vol.dtype, np.integer)
    ):
        raise TypeError(f"volume: expected a real-valued (float) array; got dtype {vol.dtype}")
    if vol.shape != lab.shape:
        raise ValueError(
            f"volume: expected the labels' shape (nz, ny, nx) = {lab.shape}; got {vol.shape}"
        )
    if np.issubdtype(vol.dtype, np.floating):
        n_bad = int(np.count_nonzero(~np.isfinite(vol)))
        if n_bad:
            raise ValueError(f"volume: expected finite values; got {n_bad} NaN/inf voxel(s)")
    if np.issubdtype(lab.dtype, np.signedinteger) and lab.size and lab.min() < 0:
        raise ValueError(f"labels: expected labels >= 0; got minimum {int(lab.min())}")
    max_label = int(lab.max()) if lab.size else 0
    if max_label == 0:
        raise ValueError("labels: no particles (every voxel is 0 = background)")

    r_close = _positive("r_close_um", r_close_um, allow_zero=True)
    gap_vox = 1.0 if contact_gap_um is None else _positive("contact_gap_um", contact_gap_um) / s
    sigma_s = _positive("smooth_sigma_vox", smooth_sigma_vox)
    sigma_r = _positive("roughness_sigma_vox", roughness_sigma_vox)
    if isinstance(n_workers, bool) or not isinstance(n_workers, int | np.integer):
        raise TypeError(f"n_workers: expected an int >= 1; got {n_workers!r}")
    if n_workers < 1:
        raise ValueError(f"n_workers: expected an int >= 1; got {n_workers}")

    offset = _triple("offset_vox", offset_vox, minimum=0)
    if full_shape is None:
        full = tuple(o + n for o, n in zip(offset, lab.shape, strict=True))
    else:
        full = _triple("full_shape", full_shape, minimum=1)
    if any(o + n > f for o, n, f in zip(offset, lab.shape, full, strict=True)):
        raise ValueError(
            f"full_shape: the block of shape {lab.shape} at offset_vox {offset} does not fit in "
            f"full_shape {full}"
        )
    sub_block = any(offset) or tuple(full) != lab.shape

    if label_ids is None:
        slices = ndi.find_objects(lab)
        ids = [i + 1 for i, sl in enumerate(slices) if sl is not None]
    else:
        try:
            ids = sorted({int(i) for i in label_ids})
        except (TypeError, ValueError):
            raise TypeError(f"label_ids: expected an iterable of ints; got {label_ids!r}") from None
        if not ids:
            raise ValueError("label_ids: expected at least one label; got none")
        slices = ndi.find_objects(lab)
        bad = [i for i in ids if i <= 0 or i > max_label or slices[i - 1] is None]
        if bad:
            raise ValueError(f"label_ids: label(s) {sorted(bad)[:10]} not present in labels")
    return {
        "labels": lab,
        "volume": vol,
        "voxel_size_um": s,
        "label_ids": ids,
        "slices": slices,
        "r_close_um": r_close,
        "contact_gap_vox": gap_vox,
        "smooth_sigma_vox": sigma_s,
        "roughness_sigma_vox": sigma_r,
        "offset_vox": offset,
        "full_shape": full,
        "sub_block": sub_block,
    }
