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
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from holocat.attributes._kernels import code_labels, count_nonfinite, label_boxes, label_range
from holocat.attributes.definitions import (
    COLUMNS,
    LOCAL_COLUMNS,
    _order_columns,
)
from holocat.attributes.neighbours import (
    _pdensity_by_slices,
    neighbour_attributes,
    pdensity,
    summed_area_table,
)
from holocat.attributes.shape import OTHER, SELF, LocalParams, local_attributes

__all__ = ["extract", "particle_attributes"]

logger = logging.getLogger(__name__)

#: Radius (voxels) below which surface areas and roughness are biased (SCIENCE.md §5).
_MIN_RELIABLE_RADIUS_VOX = 5.0
#: Default roughness sigma_r (voxels) when ``roughness_sigma_um`` is None.
_DEFAULT_ROUGHNESS_SIGMA_VOX = 2.0
#: Default Damage margin (voxels) when ``damage_margin_um`` is None: for a reconstruction blur of
#: sigma ~ 1 voxel plus the segmentation's boundary offset: on simulated demo-scale electrodes
#: segmented by watershed, Pearson r against the planted damage was 0.95 (0.89 with 2 voxels,
#: 0.92-0.94 with 3).
_DEFAULT_DAMAGE_MARGIN_VOX = 2.5

#: Columns returned by :func:`particle_attributes`.
PARTICLE_COLUMNS: tuple[str, ...] = (
    "label",
    *LOCAL_COLUMNS,
    "DamageVoxels",
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
    roughness_sigma_um: float | None = None,
    damage_margin_um: float | None = None,
    void_level: float | None = None,
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
        One row per particle, sorted by label, columns :data:`PARTICLE_COLUMNS`: ``label, X, Y,
        Z, Yaw, Pitch, Roll, EDensity, Homogeneity, SurfaceInner, SurfaceOuter, Volume, Damage,
        Elongation, Sphericity, VSratio, RoughInner, RoughOuter, Contact, DamageVoxels,
        EDensityStd, touches_border, n_voxels, near_spherical``.

    Examples
    --------
    >>> import numpy as np
    >>> z, y, x = np.ogrid[:40, :40, :40]
    >>> labels = (((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) <= 12**2).astype(np.uint32)
    >>> volume = np.where(labels > 0, 3.0, 1.0)  # solid 3, matrix 1: no crack
    >>> t = particle_attributes(labels, volume, voxel_size_um=0.5)
    >>> t[["X", "EDensity", "Damage", "DamageVoxels"]].values.round(3).tolist()
    [[10.0, 3.0, 0.0, 0.0]]
    """
    checked = _check_inputs(
        labels,
        volume,
        voxel_size_um=voxel_size_um,
        label_ids=label_ids,
        r_close_um=r_close_um,
        contact_gap_um=contact_gap_um,
        smooth_sigma_vox=smooth_sigma_vox,
        roughness_sigma_um=roughness_sigma_um,
        damage_margin_um=damage_margin_um,
        void_level=void_level,
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
    roughness_sigma_um: float | None = None,
    damage_margin_um: float | None = None,
    void_level: float | None = None,
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
    of radius ``r_close_um`` (exact Euclidean ball) and 3D hole-filled; areas ``A(.)`` by
    marching cubes at level 0.5 on the mask smoothed by a Gaussian of ``smooth_sigma_vox``, in
    um^2 (summed cube by cube without a mesh; within 5e-5 of skimage's mesh area, tests).

    * X, Y, Z: centroid of F (um, full-volume frame, voxel centres at ``index * voxel_size``).
    * Yaw, Pitch, Roll: ``Rotation.from_matrix(R).as_euler("ZYX", degrees=True)`` with R the
      eigenvectors of F's (x, y, z) covariance as columns, major axis first, the largest
      component of e1 and e2 positive and e3 = e1 x e2.
    * EDensity: mean of ``volume`` over S (over S eroded by one voxel if ``erode_edensity``);
      Homogeneity = 1 / std (ddof = 0; inf for a constant field); EDensityStd = std.
    * SurfaceOuter = A(F); SurfaceInner = max(A(S) - A(F), 0); Volume = |F| v;
      Elongation = sqrt(lambda1 / lambda3); Sphericity = 36 pi V^2 / A(F)^3;
      VSratio = V^(1/3) / (A(F) + SurfaceInner)^(1/2).
    * Damage: crack volume fraction with partial-volume correction, from the grey values:
      ``sum_C (ref - v) / (ref - v_void) / |F|`` over F's core C (voxels deeper than
      ``damage_margin_um`` inside F, so the blur across the outer surface is not counted),
      ``ref`` = the intact solid level of C (the mean over the window ``|v - ref| < 2 sigma``,
      iterated from the median, sigma from the MAD of the values above the median: the crack's
      one-sided tail of low values does not pull it down as it pulls the median), ``v_void`` =
      ``void_level`` or the median of the matrix around the particle (crop voxels farther than
      the margin from every particle). Unlike the voxel count it sees cracks thinner than the
      segmentation resolves. Cracks in the outer shell are not counted (a lower bound when
      they reach the surface: on the demo electrodes the slope against the planted fraction is
      1.02 at 10 cycles, 0.63 at 50 where cracks are larger), and at 5 % noise a crack's
      blurred tail loses 7-8 % (2-3 % at 2 % noise); it can be slightly negative for intact
      particles (noise is not clipped); NaN when the core is empty or there is no contrast to
      the void level.
      DamageVoxels = (|F| - |S|) / |F| (the voxel count; exact when S resolves the cracks).
    * RoughOuter / RoughInner: RMS about the mean of the signed distance from F's boundary
      voxels / S's crack-wall voxels (S voxels next to a void of F) to the level-0.5 surface of
      F / S smoothed by a Gaussian of ``roughness_sigma_um`` (um; RoughInner 0 without voids).
      The distance comes from the smoothed field and its gradient at the voxel (exact for a
      locally planar surface); removing the mean removes the half-voxel offset of voxel
      centres and the uniform shrinkage of a smoothed curved surface, so a digital ball gives
      the voxel-staircase floor of about 0.25 voxel and a ripple of amplitude a gives ~a/sqrt 2.
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
        Grey values (e.g. delta) in any unit, particles brighter than the matrix; EDensity is
        reported in that unit.
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
    roughness_sigma_um : float, optional
        Gaussian sigma (um, > 0) of the mask smoothing that defines the reference surface of
        RoughOuter / RoughInner. Default: two voxels.
    damage_margin_um : float, optional
        Depth (um, >= 0) of F's outer shell left out of Damage, about twice the blur (PSF
        sigma) of the reconstruction plus the segmentation's boundary offset. Default: 2.5
        voxels (for a blur sigma of about 1 voxel; use 3-3.5 voxels for sigma 1.5).
    void_level : float, optional
        Grey value of a void (pore, electrolyte) in the volume's unit for Damage. Default:
        estimated per particle as the median of the matrix around it.
    erode_edensity : bool, optional
        Average the volume over S eroded by one voxel (against partial-volume edges).
    sample_mask : array_like of bool, shape (nz, ny, nx), optional
        Voxels inside the sample; PDensity counts only these (outside is not pore).
    n_workers : int, optional
        Processes for the per-particle work (default 1: in-process). On Linux, when the
        caller runs no thread but zarr's I/O threads (the CLI and the workflow's jobs), the
        workers are forked and inherit the block: no copy, no start-up imports. Otherwise
        (threads of dask, torch, a GUI could hold a lock a forked child needs) they come from a
        fork server (spawned where there is none), so a calling script needs the usual ``if
        __name__ == "__main__":`` guard, and the labels and volume are copied once into shared
        memory (a second copy of the block for the pool's duration); without room for it in
        /dev/shm or under the job's memory limit (cgroup, e.g. a SLURM job) everything is
        computed in-process (a warning says so). The workers cut their own crops; particles
        are handed out as label and box in chunks of about 2 million crop voxels, and less
        than ~16 million crop voxels in all are computed in-process (the pool's start-up
        would not pay).
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
        Table S1 attributes, ``DamageVoxels``, ``EDensityStd``, ``touches_border``,
        ``n_voxels``, ``near_spherical``.

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
    :func:`~holocat.attributes.neighbour_attributes`. Every per-particle value depends only on
    the particle's crop, so a block that holds the particle and its crop padding gives the
    same row as the whole volume.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((40, 40, 80), np.uint32)
    >>> z, y, x = np.ogrid[:40, :40, :80]
    >>> labels[((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) <= 100] = 1
    >>> labels[((z - 20) ** 2 + (y - 20) ** 2 + (x - 60) ** 2) <= 100] = 2
    >>> t = extract(labels, np.where(labels > 0, 2.0, 0.5), voxel_size_um=1.0)
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
        roughness_sigma_um=roughness_sigma_um,
        damage_margin_um=damage_margin_um,
        void_level=void_level,
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
    offset = np.asarray(checked["offset_vox"], dtype=np.float64)
    block_index = table[["Z", "Y", "X"]].to_numpy(dtype=np.float64) / s - offset
    if k == 1:  # exact, one z-slice at a time (no full-volume table)
        table["PDensity"] = _pdensity_by_slices(lab, block_index, cube_um / s, sample_mask=mask)
    else:
        occupied = lab > 0
        if mask is not None:
            occupied &= mask
        sat = summed_area_table(occupied, downsample=k)
        del occupied
        sample = np.ones(lab.shape, dtype=bool) if mask is None else mask
        sample_sat = summed_area_table(sample, downsample=k)
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
        damage_margin_vox=checked["damage_margin_vox"],
        void_level=checked["void_level"],
        erode_edensity=erode_edensity,
    )
    pad = params.pad_vox
    offset = np.asarray(checked["offset_vox"], dtype=np.int64)
    full = np.asarray(checked["full_shape"], dtype=np.int64)
    block = np.asarray(lab.shape, dtype=np.int64)
    crop_dtype = vol.dtype if vol.dtype in (np.float32, np.float64) else np.float64
    logger.info(
        "particle attributes: %d particle(s), block %s at offset %s of %s, voxel %.4g um, "
        "r_close %.3g vox, roughness sigma %.3g vox, damage margin %.3g vox, void level %s, "
        "pad %d vox, %d worker(s)",
        len(ids),
        tuple(block.tolist()),
        tuple(offset.tolist()),
        tuple(full.tolist()),
        s,
        params.r_close_vox,
        params.roughness_sigma_vox,
        params.damage_margin_vox,
        "local matrix median" if params.void_level is None else f"{params.void_level:.4g}",
        pad,
        n_workers,
    )

    geometry = _CropGeometry(
        pad=pad,
        block=tuple(int(v) for v in block),
        offset=tuple(int(v) for v in offset),
        crop_dtype=np.dtype(crop_dtype).str,
    )
    boxes = [(label, tuple((x.start, x.stop) for x in slices[label - 1])) for label in ids]
    extents = np.array([[b - a for a, b in box] for _, box in boxes]) + 2 * pad
    crop_voxels = np.prod(extents, axis=1, dtype=np.float64)
    rows = _run_tasks(lab, vol, boxes, crop_voxels, params, geometry, n_workers=n_workers)
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
    n_nan = int(table["Damage"].isna().sum())
    if n_nan:
        logger.warning(
            "Damage is NaN for %d particle(s): no core deeper than the damage margin, no "
            "matrix around them or no contrast to the void level (DamageVoxels is set)",
            n_nan,
        )
    table = table.sort_values("label", kind="stable").reset_index(drop=True)
    table["label"] = table["label"].astype(np.int64)
    table["n_voxels"] = table["n_voxels"].astype(np.int64)
    table["touches_border"] = table["touches_border"].astype(bool)
    table["near_spherical"] = table["near_spherical"].astype(bool)
    return _order_columns(table)[list(PARTICLE_COLUMNS)]


@dataclass(frozen=True)
class _CropGeometry:
    """Where particle crops come from: padding, block shape and offset, crop dtype (picklable)."""

    pad: int
    block: tuple[int, int, int]
    offset: tuple[int, int, int]
    crop_dtype: str


#: A particle's work item: label and its bounding box ((start, stop) per axis) in the block.
_Task = tuple[int, tuple[tuple[int, int], ...]]
#: Crop voxels per chunk sent to a worker (amortises the per-task overhead of small particles).
_CHUNK_VOXELS = 2_000_000
#: Below this many crop voxels in all (about 1 s of work) the pool's start-up (workers that load
#: the compiled kernels; forkserver ones also import numba: 1-2 s) does not pay: the particles
#: are computed in-process.
_MIN_POOL_VOXELS = 16_000_000


def _crop(
    lab: NDArray, vol: NDArray, task: _Task, geometry: _CropGeometry
) -> tuple[NDArray[np.uint8], NDArray[np.floating], tuple[int, int, int]]:
    """A particle's padded crop: codes (SELF / OTHER / BACKGROUND), grey values, origin.

    The volume crop is NaN where the padding leaves the block (never part of the matrix
    sample), and a view of the block where it does not; the origin is the full-volume index of
    the crop's first voxel.
    """
    label, box = task
    pad = geometry.pad
    lo = np.array([a for a, _ in box]) - pad
    hi = np.array([b for _, b in box]) + pad
    clo = np.maximum(lo, 0)
    chi = np.minimum(hi, geometry.block)
    src = tuple(slice(int(a), int(b)) for a, b in zip(clo, chi, strict=True))
    dst = tuple(slice(int(a - l0), int(b - l0)) for a, b, l0 in zip(clo, chi, lo, strict=True))
    size = tuple(int(v) for v in hi - lo)
    block_labels = lab[src]
    codes = np.zeros(size, dtype=np.uint8)
    code_labels(block_labels, label, SELF, OTHER, codes[dst])
    crop_dtype = np.dtype(geometry.crop_dtype)
    if np.array_equal(clo, lo) and np.array_equal(chi, hi) and vol.dtype == crop_dtype:
        vol_crop = vol[src]  # inside the block: a view, only read
    else:
        vol_crop = np.full(size, np.nan, dtype=crop_dtype)
        vol_crop[dst] = vol[src]
    origin = tuple(int(v) for v in lo + np.asarray(geometry.offset))
    return codes, vol_crop, origin  # type: ignore[return-value]


def _local_row(
    lab: NDArray, vol: NDArray, task: _Task, geometry: _CropGeometry, params: LocalParams
) -> dict[str, Any]:
    codes, vol_crop, origin = _crop(lab, vol, task, geometry)
    return local_attributes(task[0], codes, vol_crop, origin, params)


#: The worker's view of the block: (shared memory, labels, volume), set by :func:`_attach`.
_SHARED: tuple[Any, NDArray, NDArray] | None = None


def _attach(name: str, specs: tuple[tuple[tuple[int, ...], str, int], ...]) -> None:
    """Pool initializer: map the labels and volume of the block from shared memory (no copy)."""
    from multiprocessing import shared_memory

    global _SHARED
    shm = shared_memory.SharedMemory(name=name)
    arrays = [
        np.ndarray(shape, dtype=np.dtype(dtype), buffer=shm.buf, offset=offset)
        for shape, dtype, offset in specs
    ]
    _SHARED = (shm, arrays[0], arrays[1])


def _inherit(lab: NDArray, vol: NDArray) -> None:
    """Pool initializer of forked workers: the block is the parent's, inherited."""
    global _SHARED
    _SHARED = (None, lab, vol)


def _run_chunk(
    chunk: list[_Task], params: LocalParams, geometry: _CropGeometry
) -> list[dict[str, Any]]:
    """Worker entry: crop each particle of the chunk from the shared block and compute it."""
    if _SHARED is None:
        raise RuntimeError("particle attributes worker: not attached to the shared block")
    _, lab, vol = _SHARED
    return [_local_row(lab, vol, task, geometry, params) for task in chunk]


def _chunks(tasks: Sequence[_Task], crop_voxels: NDArray[np.float64]) -> Iterator[list[_Task]]:
    chunk: list[_Task] = []
    size = 0.0
    for task, voxels in zip(tasks, crop_voxels, strict=True):
        chunk.append(task)
        size += float(voxels)
        if size >= _CHUNK_VOXELS:
            yield chunk
            chunk, size = [], 0.0
    if chunk:
        yield chunk


#: Where POSIX shared memory lives on Linux, and the margin asked of its free space.
_SHM_DIR = "/dev/shm"
_SHM_HEADROOM = 1.1


def _shared_memory_room() -> int | None:
    """Free bytes of the shared-memory file system, or None where it cannot be told."""
    try:
        st = os.statvfs(_SHM_DIR)
    except (OSError, AttributeError):  # no /dev/shm (macOS), no statvfs (Windows)
        return None
    return int(st.f_bavail) * int(st.f_frsize)


def _memory_room() -> int | None:
    """Bytes this process may still allocate: the smaller of the machine's available memory
    and the room under its cgroup's limit (SLURM and containers charge shared memory there);
    None where neither can be read."""
    rooms = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    rooms.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/proc/self/cgroup") as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        entries = []
    for _, controllers, path in (e for e in entries if len(e) == 3):
        if controllers == "":  # cgroup v2
            files = [("/sys/fs/cgroup" + path.rstrip("/"), "memory.max", "memory.current")]
        elif "memory" in controllers.split(","):  # cgroup v1 (inside a container: its root)
            files = [
                (base, "memory.limit_in_bytes", "memory.usage_in_bytes")
                for base in ("/sys/fs/cgroup/memory" + path.rstrip("/"), "/sys/fs/cgroup/memory")
            ]
        else:
            continue
        for base, limit_name, usage_name in files:
            try:
                with open(os.path.join(base, limit_name)) as f:
                    limit = f.read().strip()
                with open(os.path.join(base, usage_name)) as f:
                    usage = int(f.read().strip())
            except (OSError, ValueError):
                continue
            if limit != "max" and int(limit) < 2**60:  # "max" / ~2^63: no limit
                rooms.append(int(limit) - usage)
            break
    return min(rooms) if rooms else None


class _SharedBlock:
    """One shared-memory segment laid out for the given arrays; :meth:`fill` copies them in.

    Unlinked on exit. Allocating first and filling later lets the pool's workers start (their
    fork server imports numpy, scipy and numba) while the parent copies the block.
    """

    def __init__(self, *arrays: NDArray) -> None:
        from multiprocessing import shared_memory

        self.arrays = arrays
        offsets, total = [], 0
        for a in arrays:
            total = -(-total // 64) * 64  # 64-byte aligned views
            offsets.append(total)
            total += a.nbytes
        self.shm = shared_memory.SharedMemory(create=True, size=max(total, 1))
        self.specs = [
            (tuple(a.shape), a.dtype.str, offset) for a, offset in zip(arrays, offsets, strict=True)
        ]

    def fill(self) -> None:
        for a, (shape, dtype, offset) in zip(self.arrays, self.specs, strict=True):
            view = np.ndarray(shape, dtype=np.dtype(dtype), buffer=self.shm.buf, offset=offset)
            view[...] = a
            del view
        self.arrays = ()

    def close(self) -> None:
        self.shm.close()
        self.shm.unlink()

    def __enter__(self) -> _SharedBlock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ready() -> bool:
    """A no-op task: submitting it starts a worker (and the fork server) early."""
    return _SHARED is not None


def _run_tasks(
    lab: NDArray,
    vol: NDArray,
    tasks: Sequence[_Task],
    crop_voxels: NDArray[np.float64],
    params: LocalParams,
    geometry: _CropGeometry,
    *,
    n_workers: int,
) -> list[dict[str, Any]]:
    """Evaluate the tasks in order, in-process or in a bounded process pool (``n_workers > 1``).

    Pool workers cut their own crops from the block, so the parent only sends labels and
    boxes. Forked workers (:func:`_pool_start_method`) inherit the block; otherwise they map
    one shared-memory copy of it, made while they start.
    """
    rows: list[dict[str, Any]] = []
    n_total = len(tasks)
    step = max(1, n_total // 10)
    reported = [0]

    def progress() -> None:
        if len(rows) - reported[0] >= step or len(rows) == n_total:
            reported[0] = len(rows)
            logger.info("particle attributes: %d / %d done", len(rows), n_total)

    total_voxels = float(np.sum(crop_voxels))
    in_process = n_workers == 1 or n_total <= 1 or total_voxels < _MIN_POOL_VOXELS
    if n_workers > 1 and in_process:
        logger.info(
            "particle attributes: %.3g crop voxels, below %.3g: computed in-process",
            total_voxels,
            _MIN_POOL_VOXELS,
        )
    method = None if in_process else _pool_start_method()
    if method is not None and method != "fork" and not _room_for_a_copy(lab, vol, n_workers):
        method = None
    if method is None:
        for task in tasks:
            rows.append(_local_row(lab, vol, task, geometry, params))
            progress()
        return rows

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if method == "fork":
        # the workers inherit the block (copy-on-write pages that they only read): no copy of
        # it, no imports and the kernels already loaded
        with ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_inherit,
            initargs=(lab, vol),
        ) as pool:
            _collect(pool, tasks, crop_voxels, params, geometry, n_workers, rows, progress)
        return rows

    # a fork server is a fresh single-threaded process that imports this module once and forks
    # the workers from it (about 0.5 s a worker instead of 1-2 s for spawn); spawn where the
    # platform has no fork server. The workers map one shared-memory copy of the block
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload([__name__])
    with (
        _SharedBlock(np.ascontiguousarray(lab), np.ascontiguousarray(vol)) as block,
        ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=ctx,
            initializer=_attach,
            initargs=(block.shm.name, tuple(block.specs)),
        ) as pool,
    ):
        # start the workers, then copy the block while they come up; no task reads the block
        # before it is filled (the chunks are submitted after)
        starting = [pool.submit(_ready) for _ in range(n_workers)]
        block.fill()
        for future in starting:
            future.result()
        _collect(pool, tasks, crop_voxels, params, geometry, n_workers, rows, progress)
    return rows


#: Threads the pool may fork beside: zarr's I/O loop and thread pool, and the executor threads
#: of asyncio loops (zarr's). zarr resets them in a forked child (``os.register_at_fork``) and
#: the child never reads zarr; idle, they hold no lock the child could need.
_FORK_SAFE_THREADS = ("zarr_io", "zarr_pool", "asyncio_")


def _pool_start_method() -> str:
    """How the pool starts its workers: ``fork`` on Linux from the main thread while no other
    thread runs but zarr's I/O threads (the CLI and the workflow's jobs), else ``forkserver``
    (or ``spawn`` where there is none).

    Forking a process that holds other threads (dask, torch, a GUI) can copy a lock held by
    one of them into the child, which then waits forever; a fork server is a fresh process.
    """
    import multiprocessing
    import sys
    import threading

    main = threading.main_thread()
    others = [t.name for t in threading.enumerate() if t is not main]
    if (
        sys.platform.startswith("linux")
        and "fork" in multiprocessing.get_all_start_methods()
        and threading.current_thread() is main
        and all(name.startswith(_FORK_SAFE_THREADS) for name in others)
    ):
        return "fork"
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _room_for_a_copy(lab: NDArray, vol: NDArray, n_workers: int) -> bool:
    """Whether /dev/shm and the job's memory can hold the pool's shared copy of the block
    (a warning says what to do where they cannot)."""
    need = lab.nbytes + vol.nbytes
    for room, where, remedy in (
        (_shared_memory_room(), _SHM_DIR, "enlarge /dev/shm"),
        (_memory_room(), "memory (the job's limit or the machine)", "give the job more memory"),
    ):
        if room is not None and room < _SHM_HEADROOM * need:
            # writing past a full /dev/shm (e.g. Docker's default 64 MB) is a SIGBUS, past the
            # job's memory limit an OOM kill: neither is an exception, so do not try
            logger.warning(
                "particle attributes: the pool needs %.3g GB of shared memory for a copy of "
                "the block, %s has %.3g GB free: computed in-process (%s to use %d workers)",
                need / 1e9,
                where,
                room / 1e9,
                remedy,
                n_workers,
            )
            return False
    return True


def _collect(
    pool: Any,
    tasks: Sequence[_Task],
    crop_voxels: NDArray[np.float64],
    params: LocalParams,
    geometry: _CropGeometry,
    n_workers: int,
    rows: list[dict[str, Any]],
    progress: Any,
) -> None:
    """Submit the tasks in chunks, at most 2 per worker in flight, and append the rows in order."""
    from collections import deque

    pending: deque = deque()
    for chunk in _chunks(tasks, crop_voxels):
        pending.append(pool.submit(_run_chunk, chunk, params, geometry))
        if len(pending) >= 2 * n_workers:  # bounds the results held at once
            rows.extend(pending.popleft().result())
            progress()
    while pending:
        rows.extend(pending.popleft().result())
        progress()


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
    roughness_sigma_um: float | None,
    damage_margin_um: float | None,
    void_level: float | None,
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
    if not lab.dtype.isnative:  # e.g. big-endian from a file: the compiled kernels need native
        lab = lab.astype(lab.dtype.newbyteorder("="))
    vol = np.asarray(volume)
    if vol.dtype == np.bool_ or not (
        np.issubdtype(vol.dtype, np.floating) or np.issubdtype(vol.dtype, np.integer)
    ):
        raise TypeError(f"volume: expected a real-valued (float) array; got dtype {vol.dtype}")
    if vol.shape != lab.shape:
        raise ValueError(
            f"volume: expected the labels' shape (nz, ny, nx) = {lab.shape}; got {vol.shape}"
        )
    if np.issubdtype(vol.dtype, np.floating) and vol.size:
        n_bad = count_nonfinite(vol)
        if n_bad:
            raise ValueError(f"volume: expected finite values; got {n_bad} NaN/inf voxel(s)")
    min_label, max_label = label_range(lab) if lab.size else (0, 0)
    if min_label < 0:
        raise ValueError(f"labels: expected labels >= 0; got minimum {min_label}")
    if max_label == 0:
        raise ValueError("labels: no particles (every voxel is 0 = background)")

    r_close = _positive("r_close_um", r_close_um, allow_zero=True)
    gap_vox = 1.0 if contact_gap_um is None else _positive("contact_gap_um", contact_gap_um) / s
    sigma_s = _positive("smooth_sigma_vox", smooth_sigma_vox)
    sigma_r = (
        _DEFAULT_ROUGHNESS_SIGMA_VOX
        if roughness_sigma_um is None
        else _positive("roughness_sigma_um", roughness_sigma_um) / s
    )
    margin = (
        _DEFAULT_DAMAGE_MARGIN_VOX
        if damage_margin_um is None
        else _positive("damage_margin_um", damage_margin_um, allow_zero=True) / s
    )
    void = None
    if void_level is not None:
        if isinstance(void_level, bool) or not isinstance(
            void_level, int | float | np.integer | np.floating
        ):
            raise TypeError(
                f"void_level: expected a finite number or None; got {type(void_level).__name__} "
                f"{void_level!r}"
            )
        void = float(void_level)
        if not math.isfinite(void):
            raise ValueError(f"void_level: expected a finite number or None; got {void_level!r}")
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
        slices = label_boxes(lab, max_label)
        ids = [i + 1 for i, sl in enumerate(slices) if sl is not None]
    else:
        try:
            ids = sorted({int(i) for i in label_ids})
        except (TypeError, ValueError):
            raise TypeError(f"label_ids: expected an iterable of ints; got {label_ids!r}") from None
        if not ids:
            raise ValueError("label_ids: expected at least one label; got none")
        slices = label_boxes(lab, max_label)
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
        "damage_margin_vox": margin,
        "void_level": void,
        "offset_vox": offset,
        "full_shape": full,
        "sub_block": sub_block,
    }
