"""Slab-wise segmentation with a halo and label stitching across slab boundaries.

The workflow segments a volume in z-slabs, each in its own process (``DESIGN.md``, segment
fan-out). A slab job reads its core rows plus a halo above and below (``slab_ranges``),
segments the whole block so that particles near the core boundary see their full context, and
keeps only the core rows, renumbered 1..n_k (``segment_slab``). Particles crossing a boundary
then carry one label in each slab; the stitch step reads the two faces of every boundary (the
last z-row of slab k and the first z-row of slab k+1), pairs labels that overlap
(``face_merge_pairs``), merges the pairs across all boundaries by union-find into consecutive
global ids (``stitch_tables``) and relabels each slab through its lookup table
(``apply_lookup``). Only faces and per-slab counts travel between jobs, never whole slabs.
``stitch_labels`` runs the same steps in memory.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .watershed import watershed_segment

__all__ = [
    "Slab",
    "slab_ranges",
    "segment_slab",
    "crop_core",
    "face_merge_pairs",
    "stitch_tables",
    "apply_lookup",
    "stitch_labels",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slab:
    """Row ranges of one z-slab (half-open, in voxels along axis 0 of the volume).

    Attributes
    ----------
    index : int
        Slab number, 0 at the top of the volume.
    read_start, read_stop : int
        Rows read by the job: the core plus its halo, clipped to the volume.
    core_start, core_stop : int
        Rows the job owns and writes.
    """

    index: int
    read_start: int
    read_stop: int
    core_start: int
    core_stop: int

    @property
    def halo(self) -> tuple[int, int]:
        """``(lo, hi)`` halo rows below and above the core inside the read block."""
        return (self.core_start - self.read_start, self.read_stop - self.core_stop)


def slab_ranges(nz: int, *, slab_rows: int, halo: int) -> list[Slab]:
    """Split ``nz`` rows into consecutive cores of ``slab_rows`` rows with a ``halo`` each side.

    Parameters
    ----------
    nz : int
        Number of z-rows of the volume; >= 1.
    slab_rows : int
        Core rows per slab (the last slab may be shorter); >= 1. Align it with the Zarr chunk
        size along z so that slab jobs never write the same chunk.
    halo : int
        Extra rows read on each side, clipped at the volume's ends; >= 0.

    Returns
    -------
    list of Slab

    Examples
    --------
    >>> [(s.read_start, s.read_stop, s.halo) for s in slab_ranges(10, slab_rows=4, halo=2)]
    [(0, 6, (0, 2)), (2, 10, (2, 2)), (6, 10, (2, 0))]
    """
    for name, value, minimum in (("nz", nz, 1), ("slab_rows", slab_rows, 1), ("halo", halo, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise ValueError(f"{name}: expected an int >= {minimum}; got {value!r}")
    slabs = []
    for index, start in enumerate(range(0, int(nz), int(slab_rows))):
        stop = min(start + int(slab_rows), int(nz))
        slabs.append(
            Slab(
                index=index,
                read_start=max(start - int(halo), 0),
                read_stop=min(stop + int(halo), int(nz)),
                core_start=start,
                core_stop=stop,
            )
        )
    return slabs


def _check_labels(labels: Any, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    """Validate a label array: ndarray of a non-negative integer dtype with ``ndim in ndims``."""
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array of labels; got {type(labels).__name__}")
    if labels.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name}: expected a {want} label array; got shape {labels.shape}")
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: expected an integer label dtype; got dtype {labels.dtype}")
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        raise ValueError(f"{name}: expected non-negative labels; found {int(labels.min())}")
    return labels


def _relabel_sequential(labels: np.ndarray) -> tuple[NDArray[np.uint32], int]:
    """Renumber the nonzero labels present in ``labels`` to 1..n (in increasing order)."""
    if labels.size == 0:
        return labels.astype(np.uint32), 0
    top = int(labels.max())
    if top <= max(4 * labels.size, 1 << 16):
        present = np.bincount(labels.ravel(), minlength=top + 1) > 0
        present[0] = False
        n = int(present.sum())
        lut = np.zeros(top + 1, dtype=np.uint32)
        lut[present] = np.arange(1, n + 1, dtype=np.uint32)
        return lut[labels], n
    values, inverse = np.unique(labels, return_inverse=True)
    ids = np.arange(values.size, dtype=np.uint32) + (0 if values[0] == 0 else 1)
    return ids[inverse.reshape(labels.shape)], int(values.size - (values[0] == 0))


def crop_core(labels_with_halo: np.ndarray, *, halo: tuple[int, int]) -> NDArray[np.uint32]:
    """Drop ``halo = (lo, hi)`` rows from both z-ends of a slab's labels; renumber 1..n_k.

    Objects lying entirely in the halo disappear; an object crossing the core boundary keeps
    the part inside the core (it is joined to its other part by stitching).

    Parameters
    ----------
    labels_with_halo : ndarray of non-negative ints, shape (nz, ny, nx)
    halo : (int, int)
        Rows to drop at the start and at the end of axis 0; ``lo + hi < nz``.

    Returns
    -------
    ndarray of uint32, shape (nz - lo - hi, ny, nx)
    """
    labels = _check_labels(labels_with_halo, "labels_with_halo", (3,))
    lo, hi = _check_halo(halo, labels.shape[0], "labels_with_halo")
    core, _ = _relabel_sequential(labels[lo : labels.shape[0] - hi])
    return core


def _check_halo(halo: Any, nz: int, name: str) -> tuple[int, int]:
    try:
        lo, hi = halo
    except (TypeError, ValueError):
        raise ValueError(f"halo: expected a pair (lo, hi) of ints >= 0; got {halo!r}") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise ValueError(f"halo: expected a pair (lo, hi) of ints >= 0; got {halo!r}")
    if int(lo) + int(hi) >= nz:
        raise ValueError(
            f"halo: lo + hi = {int(lo) + int(hi)} leaves no core rows in {name} with {nz} z-rows"
        )
    return int(lo), int(hi)


def segment_slab(
    volume_with_halo: ArrayLike,
    *,
    halo: tuple[int, int],
    segment_fn: Callable[..., np.ndarray] | None = None,
    **ws_params: Any,
) -> NDArray[np.uint32]:
    """Segment a z-slab including its halo and return the labels of its core rows, 1..n_k.

    Parameters
    ----------
    volume_with_halo : ndarray, shape (lo + n_core + hi, ny, nx)
        Normalised intensities of the slab and its halo (normalise the whole volume once with
        ``normalize_intensity`` before cutting slabs; pass one ``threshold`` to all slabs, e.g.
        from ``otsu_threshold``).
    halo : (int, int)
        Halo rows ``(lo, hi)`` at the start and end of axis 0 (``Slab.halo``); the halo should be
        at least the largest particle radius so that particles crossing the core boundary are
        segmented alike in both slabs.
    segment_fn : callable or None
        ``segment_fn(volume, **ws_params) -> labels``; default ``watershed_segment``.
    **ws_params
        Keyword arguments of ``segment_fn``.

    Returns
    -------
    ndarray of uint32, shape (n_core, ny, nx)
        Core labels renumbered 1..n_k; n_k = ``labels.max()`` is the count ``stitch_tables``
        needs.
    """
    vol = np.asarray(volume_with_halo)
    if vol.ndim != 3:
        raise ValueError(f"volume_with_halo: expected a (nz, ny, nx) array; got shape {vol.shape}")
    lo, hi = _check_halo(halo, vol.shape[0], "volume_with_halo")
    fn = watershed_segment if segment_fn is None else segment_fn
    labels = np.asarray(fn(vol, **ws_params))
    if labels.shape != vol.shape:
        raise ValueError(
            f"segment_fn: returned labels of shape {labels.shape}; expected {vol.shape}"
        )
    core = crop_core(labels, halo=(lo, hi))
    logger.info(
        "segment_slab: %d rows (halo %d/%d) -> %d core labels", vol.shape[0], lo, hi, core.max()
    )
    return core


def face_merge_pairs(
    face_below: ArrayLike, face_above: ArrayLike, *, min_overlap: float = 0.5
) -> NDArray[np.int64]:
    """Pairs of labels that continue one particle across a slab boundary.

    ``face_below`` is the last z-row of slab k, ``face_above`` the first z-row of slab k+1
    (adjacent planes). A pair (a, b) qualifies when the area where ``face_below == a`` and
    ``face_above == b`` divided by ``min(area of a on face_below, area of b on face_above)`` is
    at least ``min_overlap``. Qualifying pairs are made one-to-one greedily, largest touching
    area first (ties by smaller a, then smaller b).

    Parameters
    ----------
    face_below, face_above : ndarray of non-negative ints, shape (ny, nx)
        Slab-local labels, 0 = background.
    min_overlap : float
        Minimum touching fraction of the smaller face cross-section; in (0, 1].

    Returns
    -------
    ndarray of int64, shape (m, 2)
        Rows (a, b), sorted by a.

    Examples
    --------
    >>> below = np.array([[1, 1, 0, 2, 2]]); above = np.array([[3, 3, 0, 0, 1]])
    >>> face_merge_pairs(below, above).tolist()
    [[1, 3], [2, 1]]
    """
    fb = _check_labels(np.asarray(face_below), "face_below", (2,))
    fa = _check_labels(np.asarray(face_above), "face_above", (2,))
    if fb.shape != fa.shape:
        raise ValueError(
            f"face_below, face_above: expected equal (ny, nx) shapes; got {fb.shape} and {fa.shape}"
        )
    min_overlap = float(min_overlap)
    if not 0.0 < min_overlap <= 1.0:
        raise ValueError(f"min_overlap: expected a value in (0, 1]; got {min_overlap}")
    both = (fb > 0) & (fa > 0)
    if not both.any():
        return np.zeros((0, 2), dtype=np.int64)
    a_ids, a_area = np.unique(fb[fb > 0], return_counts=True)
    b_ids, b_area = np.unique(fa[fa > 0], return_counts=True)
    pairs, touch = np.unique(
        np.stack([fb[both].astype(np.int64), fa[both].astype(np.int64)], axis=1),
        axis=0,
        return_counts=True,
    )
    area_a = a_area[np.searchsorted(a_ids, pairs[:, 0])]
    area_b = b_area[np.searchsorted(b_ids, pairs[:, 1])]
    ok = touch >= min_overlap * np.minimum(area_a, area_b)
    pairs, touch = pairs[ok], touch[ok]
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -touch))
    used_a: set[int] = set()
    used_b: set[int] = set()
    chosen = []
    for i in order:
        a, b = int(pairs[i, 0]), int(pairs[i, 1])
        if a in used_a or b in used_b:
            continue
        used_a.add(a)
        used_b.add(b)
        chosen.append((a, b))
    out = np.array(sorted(chosen), dtype=np.int64).reshape(-1, 2)
    return out


def stitch_tables(
    counts: Sequence[int], pairs_per_boundary: Sequence[ArrayLike]
) -> list[NDArray[np.uint32]]:
    """Lookup tables from slab-local label ids to consecutive global ids.

    Every local label (slab k, id i in 1..n_k) is a node; each pair (a, b) of boundary k joins
    (k, a) with (k+1, b). Connected nodes (union-find) share one global id; global ids are
    1..N in order of first appearance (slab order, then local id).

    Parameters
    ----------
    counts : sequence of int
        n_k, the number of labels of each slab (labels are 1..n_k); >= 0.
    pairs_per_boundary : sequence of (m_k, 2) int arrays
        ``len(counts) - 1`` arrays; row (a, b) merges label a of slab k with label b of slab
        k+1 (``face_merge_pairs`` of that boundary).

    Returns
    -------
    list of ndarray of uint32
        One table per slab, length n_k + 1, ``lut[0] == 0``; apply with ``apply_lookup``.

    Examples
    --------
    >>> luts = stitch_tables([2, 1, 2], [np.array([[2, 1]]), np.array([[1, 2]])])
    >>> [lut.tolist() for lut in luts]
    [[0, 1, 2], [0, 2], [0, 3, 2]]
    """
    counts_list = []
    for k, n in enumerate(counts):
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"counts: expected ints >= 0; got {n!r} for slab {k}")
        counts_list.append(int(n))
    if len(counts_list) == 0:
        raise ValueError("counts: expected at least one slab; got an empty sequence")
    if len(pairs_per_boundary) != len(counts_list) - 1:
        raise ValueError(
            f"pairs_per_boundary: expected {len(counts_list) - 1} arrays (one per boundary "
            f"between {len(counts_list)} slabs); got {len(pairs_per_boundary)}"
        )
    offsets = np.concatenate([[0], np.cumsum(counts_list)]).astype(np.int64)
    parent = np.arange(int(offsets[-1]), dtype=np.int64)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = int(parent[root])
        while parent[i] != root:  # path compression
            parent[i], i = root, int(parent[i])
        return root

    for k, pairs in enumerate(pairs_per_boundary):
        arr = np.asarray(pairs)
        if arr.size == 0:
            continue
        if arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"pairs_per_boundary[{k}]: expected an (m, 2) integer array; got shape "
                f"{arr.shape}, dtype {arr.dtype}"
            )
        bad_a = (arr[:, 0] < 1) | (arr[:, 0] > counts_list[k])
        bad_b = (arr[:, 1] < 1) | (arr[:, 1] > counts_list[k + 1])
        if bad_a.any() or bad_b.any():
            raise ValueError(
                f"pairs_per_boundary[{k}]: labels must lie in 1..{counts_list[k]} (slab {k}) and "
                f"1..{counts_list[k + 1]} (slab {k + 1}); got rows {arr[bad_a | bad_b][:5].tolist()}"
            )
        for a, b in arr.tolist():
            ra, rb = find(offsets[k] + a - 1), find(offsets[k + 1] + b - 1)
            if ra != rb:
                # keep the earlier node as root so ids follow first appearance
                parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(parent.size)], dtype=np.int64)
    # roots are the smallest node of each component, so ranking them by value numbers the
    # components in order of first appearance
    _, global_ids = np.unique(roots, return_inverse=True)
    global_ids = global_ids.astype(np.uint32) + 1
    n_global = int(global_ids.max()) if global_ids.size else 0
    logger.info(
        "stitch_tables: %d slabs, %d local labels -> %d global labels",
        len(counts_list),
        parent.size,
        n_global,
    )
    return [
        np.concatenate([[0], global_ids[offsets[k] : offsets[k + 1]]]).astype(np.uint32)
        for k in range(len(counts_list))
    ]


def apply_lookup(labels: ArrayLike, lut: ArrayLike) -> NDArray[np.uint32]:
    """Map labels through a lookup table: ``out = lut[labels]``.

    Parameters
    ----------
    labels : ndarray of non-negative ints
        Slab-local labels, max < ``len(lut)``.
    lut : ndarray of non-negative ints, shape (n + 1,)
        From ``stitch_tables``.

    Returns
    -------
    ndarray of uint32, same shape as ``labels``
    """
    lab = _check_labels(np.asarray(labels), "labels", (1, 2, 3))
    table = np.asarray(lut)
    if table.ndim != 1 or table.size == 0:
        raise ValueError(f"lut: expected a non-empty 1-D table; got shape {table.shape}")
    _check_labels(table, "lut", (1,))
    if lab.size and int(lab.max()) >= table.size:
        raise ValueError(
            f"labels: max label {int(lab.max())} has no entry in lut of length {table.size}"
        )
    return table.astype(np.uint32, copy=False)[lab]


def stitch_labels(slabs: Sequence[ArrayLike], *, min_overlap: float = 0.5) -> NDArray[np.uint32]:
    """Stitch per-slab core labels (each 1..n_k) into one volume with global ids 1..N.

    In-memory version of the workflow's stitch step: ``face_merge_pairs`` on every boundary,
    ``stitch_tables``, ``apply_lookup``, concatenation along z.

    Parameters
    ----------
    slabs : sequence of ndarray, shapes (nz_k, ny, nx)
        Core labels of consecutive slabs (``segment_slab`` output), equal (ny, nx).
    min_overlap : float
        See ``face_merge_pairs``.

    Returns
    -------
    ndarray of uint32, shape (sum nz_k, ny, nx)
    """
    if len(slabs) == 0:
        raise ValueError("slabs: expected at least one slab; got an empty sequence")
    arrays = [_check_labels(np.asarray(s), f"slabs[{k}]", (3,)) for k, s in enumerate(slabs)]
    for k, s in enumerate(arrays[1:], start=1):
        if s.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(
                f"slabs[{k}]: expected (ny, nx) = {arrays[0].shape[1:]} like slabs[0]; got "
                f"{s.shape[1:]}"
            )
    counts = [int(s.max()) if s.size else 0 for s in arrays]
    pairs = [
        face_merge_pairs(arrays[k][-1], arrays[k + 1][0], min_overlap=min_overlap)
        for k in range(len(arrays) - 1)
    ]
    luts = stitch_tables(counts, pairs)
    return np.concatenate([apply_lookup(s, lut) for s, lut in zip(arrays, luts, strict=True)])


def drop_layers(labels: ArrayLike, *, min_span: float = 0.9) -> NDArray[np.uint32]:
    """Remove objects that span the field along two or more axes (a layer, not a particle).

    The aluminium current collector (and a separator or a glass wall) is as bright as the
    particles and segments as one huge object that crosses the whole field of view laterally; a
    particle never does. An object is dropped when its bounding box covers at least ``min_span``
    of the array's extent along two or more axes; the rest are renumbered 1..n in order.

    Parameters
    ----------
    labels : ndarray of int, 2D or 3D
        Instance labels, 0 = background.
    min_span : float
        Fraction of an axis's extent in (0, 1].

    Returns
    -------
    ndarray of uint32
        The labels without layers, renumbered sequentially.

    Examples
    --------
    >>> lab = np.zeros((8, 10, 10), np.uint32)
    >>> lab[0:2] = 1            # a sheet across y and x: the collector
    >>> lab[4:7, 3:6, 3:6] = 2  # a particle
    >>> np.unique(drop_layers(lab)).tolist()
    [0, 1]
    """
    from scipy import ndimage

    lab = _check_labels(labels, "labels", (2, 3))
    span = float(min_span)
    if not 0.0 < span <= 1.0:
        raise ValueError(f"min_span: expected a fraction in (0, 1]; got {min_span!r}")
    need = [max(1, math.ceil(span * n)) for n in lab.shape]
    layers = [
        i
        for i, sl in enumerate(ndimage.find_objects(lab), start=1)
        if sl is not None and sum(s.stop - s.start >= k for s, k in zip(sl, need, strict=True)) >= 2
    ]
    if not layers:
        return _relabel_sequential(lab)[0]
    logger.info("drop_layers: %d object(s) span the field along >= 2 axes: %s", len(layers), layers)
    keep = np.ones(int(lab.max()) + 1, dtype=bool)
    keep[layers] = False
    return _relabel_sequential(np.where(keep[lab], lab, 0))[0]
