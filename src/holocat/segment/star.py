"""Star-convex polygon geometry: training targets, polygons, NMS and label rendering (SCIENCE.md §4).

A star-convex object is described, at every pixel inside it, by ``n_rays`` distances d_k along the
angles φ_k = 2πk / n_rays to the object's boundary, plus an object probability (the pixel's
Euclidean distance to the nearest pixel outside the object, divided by the object's maximum).
The conventions are StarDist's (``stardist.star_dist``, ``stardist.edt_prob``, ``dist_to_coord``,
``non_maximum_suppression``, ``polygons_to_label``), re-implemented here in numpy so the library
does not depend on the ``stardist`` package (the tests use it as the oracle):

* Ray k points along (row, col) = (sin φ_k, cos φ_k); a polygon vertex is
  ``(row, col) = point + d_k (sin φ_k, cos φ_k)``.
* ``star_distances`` marches along each ray in unit steps (float32 arithmetic, round-half-even
  pixel lookup, as StarDist's C++ ``c_star_dist``) until it leaves the image or the object, then
  backs up to the boundary crossing: distances are in pixels of the full-resolution image, also
  when they are sampled on a coarser ``grid``.
* ``star_nms`` keeps polygons greedily in order of decreasing probability; a candidate is dropped
  when ``area(P_kept ∩ P) / min(area(P_kept), area(P)) > nms_thresh``. Like StarDist (whose
  Clipper polygons have integer coordinates), vertex coordinates are truncated to integers before
  areas are computed; the intersection area of the two integer polygons is then computed exactly
  (Green's theorem over the edge pieces inside the other polygon, degeneracies resolved by
  simulation of simplicity), where StarDist's Clipper rounds intersection vertices to integers.
  Disc bounds (inscribed/circumscribed about the centres) decide clear cases without the exact
  area. Kept sets agree with StarDist's except for candidates whose overlap lies within Clipper's
  rounding of the threshold (none in the tests: identical kept sets on the DSB image).
* ``polygons_to_labels`` paints polygons with ``skimage.draw.polygon`` in order of increasing
  probability, so a more probable polygon overwrites a less probable one where they overlap.

``instances_from_prediction`` chains NMS, rendering and the intensity refinement of SCIENCE.md §4
(pixels darker than a threshold inside a shape are removed, so crack voids open up again).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ray_angles",
    "star_distances",
    "edt_probability",
    "polygon_coordinates",
    "star_nms",
    "polygons_to_labels",
    "instances_from_prediction",
]

logger = logging.getLogger(__name__)

# polygons per vectorised intersection batch (temporaries of _NMS_BATCH · n_rays² floats)
_NMS_BATCH = 256
# direction of the symbolic perturbation (x, y) of the exact intersection; irrational slope
_PX, _PY = 1.0, math.sqrt(2.0)
# relative safety margin on the overlap bounds before they decide without the exact area
_BOUND_MARGIN = 1e-6


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _check_n_rays(n_rays: Any) -> int:
    if isinstance(n_rays, bool) or not isinstance(n_rays, int | np.integer):
        raise TypeError(f"n_rays: expected an int >= 3; got {type(n_rays).__name__} {n_rays!r}")
    if n_rays < 3:
        raise ValueError(f"n_rays: expected an int >= 3; got {n_rays}")
    return int(n_rays)


def _check_grid(grid: Any) -> tuple[int, int]:
    if isinstance(grid, int | np.integer) and not isinstance(grid, bool):
        grid = (grid, grid)
    if (
        not isinstance(grid, Sequence | np.ndarray)
        or len(grid) != 2
        or any(isinstance(g, bool) or not isinstance(g, int | np.integer) or g < 1 for g in grid)
    ):
        raise ValueError(f"grid: expected two ints >= 1 (subsampling per axis); got {grid!r}")
    return int(grid[0]), int(grid[1])


def _check_labels2d(labels: Any, name: str = "labels2d") -> np.ndarray:
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array of labels; got {type(labels).__name__}")
    if labels.ndim != 2:
        raise ValueError(f"{name}: expected a (ny, nx) label image; got shape {labels.shape}")
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: expected integer labels (0 = background); got {labels.dtype}")
    if labels.size == 0:
        raise ValueError(f"{name}: expected a non-empty label image; got shape {labels.shape}")
    if np.issubdtype(labels.dtype, np.signedinteger) and int(labels.min()) < 0:
        raise ValueError(f"{name}: expected non-negative labels; found {int(labels.min())}")
    return labels


def _check_thresh01(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name}: expected a number in [0, 1]; got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ValueError(f"{name}: expected a number in [0, 1]; got {v}")
    return v


def _check_prob_dist(prob: Any, dist: Any) -> tuple[np.ndarray, np.ndarray]:
    for name, arr, nd in (("prob", prob, 2), ("dist", dist, 3)):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{name}: expected a numpy array; got {type(arr).__name__}")
        if arr.ndim != nd:
            want = "(ny, nx)" if nd == 2 else "(ny, nx, n_rays)"
            raise ValueError(f"{name}: expected a {want} array; got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{name}: expected a float array; got dtype {arr.dtype}")
    if prob.shape != dist.shape[:2]:
        raise ValueError(
            f"prob, dist: expected dist.shape[:2] == prob.shape; got prob {prob.shape} and "
            f"dist {dist.shape}"
        )
    if dist.shape[2] < 3:
        raise ValueError(f"dist: expected n_rays >= 3 in the last axis; got shape {dist.shape}")
    if not (np.all(np.isfinite(prob)) and np.all(np.isfinite(dist))):
        raise ValueError("prob, dist: expected finite values; found NaN or inf")
    return prob, dist


# --------------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------------


def ray_angles(n_rays: int = 32) -> NDArray[np.float64]:
    """Ray angles φ_k = 2πk / n_rays in radians, k = 0..n_rays-1 (``stardist.ray_angles``).

    Examples
    --------
    >>> np.round(ray_angles(4) / np.pi, 3).tolist()
    [0.0, 0.5, 1.0, 1.5]
    """
    n = _check_n_rays(n_rays)
    return np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)


def _ray_steps(n_rays: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-ray unit steps (d_row, d_col) in float32, as StarDist's C++ computes them."""
    st = np.float32(2.0 * np.pi / n_rays)
    phi = (np.arange(n_rays, dtype=np.float32) * st).astype(np.float64)
    d_row = np.sin(phi).astype(np.float32)
    d_col = np.cos(phi).astype(np.float32)
    return d_row, d_col


def star_distances(
    labels2d: NDArray[np.integer], n_rays: int = 32, *, grid: tuple[int, int] = (1, 1)
) -> NDArray[np.float32]:
    """Distance from each object pixel to its object's boundary along ``n_rays`` rays.

    For a pixel (i, j) inside object L, ray k (angle φ_k = 2πk / n_rays, direction
    (row, col) = (sin φ_k, cos φ_k)) is followed in unit steps t = 1, 2, ... until the pixel
    ``(rint(i + t sin φ_k), rint(j + t cos φ_k))`` lies outside the image or outside L; the
    overshoot is then corrected by ``1 - 0.5 / max(|sin φ_k|, |cos φ_k|)`` steps. All arithmetic
    is float32 as in StarDist's ``star_dist`` (C++ mode), which this reproduces.

    Parameters
    ----------
    labels2d : ndarray of int, shape (ny, nx)
        Instance labels, 0 = background; each object should be one connected region.
    n_rays : int
        Number of rays, >= 3.
    grid : (int, int)
        Subsampling per axis: distances are returned at pixels (g_row i, g_col j); they are in
        full-resolution pixels.

    Returns
    -------
    ndarray of float32, shape ((ny - 1) // g_row + 1, (nx - 1) // g_col + 1, n_rays)
        Distances in pixels; 0 on background.

    Raises
    ------
    TypeError, ValueError
        ``labels2d`` is not a 2D non-negative integer array, ``n_rays`` < 3, or ``grid`` invalid.

    Examples
    --------
    >>> lbl = np.zeros((9, 9), np.uint16); lbl[2:7, 2:7] = 1  # a 5 x 5 square
    >>> d = star_distances(lbl, 4)
    >>> d[4, 4].tolist()  # centre: 2 pixels to each side, + 0.5 to the pixel edge
    [2.5, 2.5, 2.5, 2.5]
    """
    lbl = _check_labels2d(labels2d)
    n = _check_n_rays(n_rays)
    gy, gx = _check_grid(grid)
    ny, nx = lbl.shape
    sub = lbl[::gy, ::gx]
    out = np.zeros(sub.shape + (n,), np.float32)
    rows, cols = np.nonzero(sub)
    if rows.size == 0:
        return out
    values = sub[rows, cols]
    r0 = (rows * gy).astype(np.float32)
    c0 = (cols * gx).astype(np.float32)

    d_row, d_col = _ray_steps(n)
    n_steps = int(math.ceil(max(ny, nx) * math.sqrt(2.0))) + 3
    # cumulative float32 positions along each ray: x_t = x_{t-1} + dx (sequential, as in C)
    steps_row = np.add.accumulate(
        np.broadcast_to(d_row[:, None], (n, n_steps)).astype(np.float32), axis=1
    )
    steps_col = np.add.accumulate(
        np.broadcast_to(d_col[:, None], (n, n_steps)).astype(np.float32), axis=1
    )

    # every (pixel, ray) pair marches together; pairs drop out as they stop
    pix = np.repeat(np.arange(rows.size), n)
    ray = np.tile(np.arange(n), rows.size)
    stop_t = np.zeros(pix.size, np.int64)
    active = np.arange(pix.size)
    for t in range(n_steps):
        if active.size == 0:
            break
        p = pix[active]
        k = ray[active]
        ii = np.rint(r0[p] + steps_row[k, t]).astype(np.int64)
        jj = np.rint(c0[p] + steps_col[k, t]).astype(np.int64)
        inside = (ii >= 0) & (ii < ny) & (jj >= 0) & (jj < nx)
        same = np.zeros(active.size, bool)
        same[inside] = lbl[ii[inside], jj[inside]] == values[p[inside]]
        done = ~same
        stop_t[active[done]] = t
        active = active[same]
    if active.size:  # pragma: no cover - n_steps always leaves the image
        raise RuntimeError("star_distances: ray marching did not terminate")

    x = steps_row[ray, stop_t]
    y = steps_col[ray, stop_t]
    t_corr = np.float32(0.5) / np.maximum(np.abs(d_row), np.abs(d_col))
    x = x + (t_corr[ray] - np.float32(1.0)) * d_row[ray]
    y = y + (t_corr[ray] - np.float32(1.0)) * d_col[ray]
    dist = np.sqrt(x * x + y * y).astype(np.float32)
    out[rows[pix], cols[pix], ray] = dist
    return out


def edt_probability(labels2d: NDArray[np.integer]) -> NDArray[np.float32]:
    """Object probability: Euclidean distance to the nearest pixel outside the object, / its max.

    The distance is to pixel centres not carrying the pixel's own label; the image border is not
    treated as background (StarDist's ``edt_prob``), so an object cut by the border peaks there.
    A label image with a single object filling it is padded with background first.

    Parameters
    ----------
    labels2d : ndarray of int, shape (ny, nx)
        Instance labels, 0 = background.

    Returns
    -------
    ndarray of float32, shape (ny, nx)
        In (0, 1] inside objects (1 at each object's innermost pixels), 0 on background.

    Examples
    --------
    >>> lbl = np.zeros((7, 7), np.int32); lbl[1:6, 1:6] = 3
    >>> p = edt_probability(lbl)
    >>> round(float(p[3, 3]), 4), round(float(p[1, 1]), 4), float(p[0, 0])
    (1.0, 0.3333, 0.0)
    """
    from scipy.ndimage import distance_transform_edt, find_objects

    lbl = _check_labels2d(labels2d)
    constant = lbl.min() == lbl.max() and lbl.flat[0] > 0
    if constant:
        lbl = np.pad(lbl, 1)
    prob = np.zeros(lbl.shape, np.float32)
    for i, sl in enumerate(find_objects(lbl), start=1):
        if sl is None:
            continue
        # grow the box by one pixel where it is not at the image border
        grown = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, size))
            for s, size in zip(sl, lbl.shape, strict=True)
        )
        inner = tuple(
            slice(s.start - g.start, s.stop - g.start) for s, g in zip(sl, grown, strict=True)
        )
        grown_mask = lbl[grown] == i
        mask = grown_mask[inner]
        edt = distance_transform_edt(grown_mask)[inner][mask]
        prob[sl][mask] = edt / (np.max(edt) + 1e-10)
    if constant:
        prob = prob[1:-1, 1:-1].copy()
    return prob


# --------------------------------------------------------------------------------------------
# polygons
# --------------------------------------------------------------------------------------------


def polygon_coordinates(
    dist: ArrayLike, points: ArrayLike, n_rays: int | None = None
) -> NDArray[np.float32]:
    """Polygon vertices from ray distances and centre points (StarDist's ``dist_to_coord``).

    Parameters
    ----------
    dist : array, shape (n_polys, n_rays)
        Ray distances in pixels, >= 0.
    points : array, shape (n_polys, 2)
        Centres (row, col) in pixels.
    n_rays : int, optional
        Expected number of rays; checked against ``dist.shape[1]`` when given.

    Returns
    -------
    ndarray of float32, shape (n_polys, 2, n_rays)
        ``[:, 0, k]`` = row = point_row + d_k sin φ_k, ``[:, 1, k]`` = col = point_col + d_k cos φ_k.

    Examples
    --------
    >>> c = polygon_coordinates([[1.0, 2.0, 3.0, 4.0]], [[10, 10]])
    >>> np.round(c[0], 3).tolist()
    [[10.0, 12.0, 10.0, 6.0], [11.0, 10.0, 7.0, 10.0]]
    """
    d = np.asarray(dist, dtype=np.float32)
    p = np.asarray(points, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"dist: expected (n_polys, n_rays); got shape {d.shape}")
    if p.shape != (d.shape[0], 2):
        raise ValueError(
            f"points: expected shape (n_polys, 2) = ({d.shape[0]}, 2) to match dist; got {p.shape}"
        )
    if n_rays is not None and _check_n_rays(n_rays) != d.shape[1]:
        raise ValueError(f"dist: expected {n_rays} rays (n_rays); got shape {d.shape}")
    phi = ray_angles(d.shape[1]) if d.shape[1] >= 3 else np.zeros(d.shape[1])
    unit = np.stack([np.sin(phi), np.cos(phi)]).astype(np.float32)  # (2, n_rays)
    coord = d[:, None, :] * unit[None]
    coord += p[:, :, None]
    return coord.astype(np.float32, copy=False)


def _nms_vertices(
    points: np.ndarray, dists: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float32 vertices as StarDist's NMS computes them; returns (rows, cols, integer rows/cols).

    Returns rows (n, R) float32, cols (n, R) float32 and the truncated integer vertex
    coordinates as float64 (n, 2, R): the polygon that areas and intersections are computed for.
    """
    n_rays = dists.shape[1]
    step = np.float32(2.0 * np.pi / n_rays)
    ang = (np.arange(n_rays, dtype=np.float32) * step).astype(np.float64)
    s = np.sin(ang).astype(np.float32)
    c = np.cos(ang).astype(np.float32)
    pr = points[:, 0:1].astype(np.float32)
    pc = points[:, 1:2].astype(np.float32)
    rows = pr + dists * s[None]
    cols = pc + dists * c[None]
    trunc = np.stack([np.trunc(rows), np.trunc(cols)], axis=1).astype(np.float64)
    return rows, cols, trunc


def _shoelace(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed area of closed polygons along the last axis (positive when counter-clockwise)."""
    xn = np.roll(x, -1, axis=-1)
    yn = np.roll(y, -1, axis=-1)
    return 0.5 * np.sum(x * yn - xn * y, axis=-1)


def _positive(x0: np.ndarray, x1: np.ndarray | float) -> np.ndarray:
    """Sign test of x0 + ε·x1 > 0 for an infinitesimal ε > 0 (simulation of simplicity)."""
    return (x0 > 0) | ((x0 == 0) & (x1 > 0))


def _winding_numbers(
    px: np.ndarray, py: np.ndarray, x: np.ndarray, y: np.ndarray, sign: float
) -> np.ndarray:
    """Winding numbers of points (px, py) + sign·ε·(_PX, _PY) about the polygons (x, y) (n, R)."""
    x2 = np.roll(x, -1, axis=1)
    y2 = np.roll(y, -1, axis=1)
    qx = px[:, None]
    qy = py[:, None]
    # "vertex below the point", the tie y == qy broken by the perturbation's y component
    below1 = (y <= qy) if sign > 0 else (y < qy)
    below2 = (y2 <= qy) if sign > 0 else (y2 < qy)
    ex = x2 - x
    ey = y2 - y
    side0 = ex * (qy - y) - ey * (qx - x)
    side1 = sign * (ex * _PY - ey * _PX)
    up = below1 & ~below2 & _positive(side0, side1)
    down = ~below1 & below2 & _positive(-side0, -side1)
    return up.sum(axis=1) - down.sum(axis=1)


def _intersection_areas_batch(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray
) -> np.ndarray:
    n_b, n_v = bx.shape
    dax = np.roll(ax, -1) - ax
    day = np.roll(ay, -1) - ay
    dbx = np.roll(bx, -1, axis=1) - bx
    dby = np.roll(by, -1, axis=1) - by
    # every (edge e of A, edge f of B) pair, p + t d = q + u g; arrays (n_b, e, f)
    dx = dax[None, :, None]
    dy = day[None, :, None]
    gx = dbx[:, None, :]
    gy = dby[:, None, :]
    rx = bx[:, None, :] - ax[None, :, None]
    ry = by[:, None, :] - ay[None, :, None]
    den = dx * gy - dy * gx
    s = np.sign(den)
    ad = np.abs(den)
    tn = (rx * gy - ry * gx) * s  # t = tn / |den|
    un = (rx * dy - ry * dx) * s  # u = un / |den|
    # how tn and un change when B moves by ε·(_PX, _PY): breaks every tie consistently
    eg = (_PX * gy - _PY * gx) * s
    ed = (_PX * dy - _PY * dx) * s
    hit = (
        (s != 0)
        & _positive(tn, eg)
        & _positive(ad - tn, -eg)
        & _positive(un, ed)
        & _positive(ad - un, -ed)
    )
    enter_a = np.where(hit, s, 0.0)  # +1 where B's edge enters A (and A's edge leaves B)
    adh = np.where(hit, ad, 1.0)
    steps_a = -enter_a.sum(axis=2)  # change of w_B along each edge of A
    steps_b = enter_a.sum(axis=1)  # change of w_A along each edge of B
    # ∫_0^1 w(p + t d) dt = w(p) + Σ_crossings σ (1 − t)
    tail_a = (-enter_a * (1.0 - tn / adh)).sum(axis=2)
    tail_b = (enter_a * (1.0 - un / adh)).sum(axis=1)
    wa0 = _winding_numbers(np.full(n_b, ax[0]), np.full(n_b, ay[0]), bx, by, -1.0)
    wb0 = _winding_numbers(
        bx[:, 0], by[:, 0], np.broadcast_to(ax, (n_b, n_v)), np.broadcast_to(ay, (n_b, n_v)), 1.0
    )
    zero = np.zeros((n_b, 1))
    wa = wa0[:, None] + np.concatenate([zero, np.cumsum(steps_a, axis=1)[:, :-1]], axis=1)
    wb = wb0[:, None] + np.concatenate([zero, np.cumsum(steps_b, axis=1)[:, :-1]], axis=1)
    # ½ ∮ (x dy − y dx) along a straight piece of an edge = ½ (p × d) · (its parameter length)
    fa = (wa + tail_a) * (ax * day - ay * dax)[None]
    fb = (wb + tail_b) * (bx * dby - by * dbx)
    return 0.5 * (fa.sum(axis=1) + fb.sum(axis=1))


def _intersection_areas(poly_a: np.ndarray, polys_b: np.ndarray) -> NDArray[np.float64]:
    """Exact intersection areas of polygon A (2, R) with each polygon B (n, 2, R).

    Green's theorem: area(A ∩ B) = ½ ∮ (x dy − y dx) over the pieces of A's edges inside B
    plus the pieces of B's edges inside A. Along an edge the other polygon's winding number
    changes by ±1 at each crossing, so an edge's inside length is w(p) + Σ σ_c (1 − t_c)
    (σ = +1 entering, −1 leaving), with no sorting of crossings. Degenerate configurations
    (shared vertices, vertices on edges, collinear overlapping edges: common with integer
    vertices) are resolved by simulation of simplicity: every sign test is evaluated as if B
    were shifted by ε·(1, √2) (no integer edge is parallel to that), and the area is the ε → 0
    limit, computed from the unshifted coordinates. Vertices are (row, col); areas use
    (x=col, y=row), in which the polygons of ``polygon_coordinates`` are counter-clockwise.
    """
    n_b = polys_b.shape[0]
    out = np.zeros(n_b)
    ax = poly_a[1].astype(np.float64)
    ay = poly_a[0].astype(np.float64)
    for start in range(0, n_b, _NMS_BATCH):
        sl = slice(start, start + _NMS_BATCH)
        out[sl] = _intersection_areas_batch(ax, ay, polys_b[sl, 1], polys_b[sl, 0])
    return np.maximum(out, 0.0)


def _polygon_extents(
    verts: np.ndarray, centres: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area, inscribed and circumscribed radius about the centre of each polygon (n, 2, R).

    The circumscribed radius is the largest centre-vertex distance (the polygon lies in that
    disc). The inscribed radius is the distance from the centre to the nearest edge when the
    polygon is star-shaped about its centre (every fan triangle positively oriented), else 0.
    """
    x = verts[:, 1, :]
    y = verts[:, 0, :]
    cy = centres[:, 0:1]
    cx = centres[:, 1:2]
    x2 = np.roll(x, -1, axis=1)
    y2 = np.roll(y, -1, axis=1)
    orient = (x - cx) * (y2 - cy) - (y - cy) * (x2 - cx)
    star = np.all(orient >= 0, axis=1)
    ex = x2 - x
    ey = y2 - y
    length2 = ex * ex + ey * ey
    t = np.clip(((cx - x) * ex + (cy - y) * ey) / np.where(length2 > 0, length2, 1.0), 0.0, 1.0)
    edge_dist = np.hypot(x + t * ex - cx, y + t * ey - cy)
    r_in = np.where(star, edge_dist.min(axis=1), 0.0)
    r_out = np.hypot(x - cx, y - cy).max(axis=1)
    areas = np.abs(_shoelace(x, y))
    return areas, r_in, r_out


def _lens_area(r1: Any, r2: Any, gap: Any) -> np.ndarray:
    """Area of the intersection of two discs of radii r1, r2 whose centres are ``gap`` apart."""
    r1, r2, d = np.broadcast_arrays(
        np.asarray(r1, float), np.asarray(r2, float), np.asarray(gap, float)
    )
    small = np.minimum(r1, r2)
    nested = d <= np.abs(r1 - r2)
    partial = (d < r1 + r2) & ~nested & (small > 0)
    dd = np.where(partial, d, 1.0)
    s1 = np.where(partial, r1, 1.0)
    s2 = np.where(partial, r2, 1.0)
    a1 = np.arccos(np.clip((dd * dd + s1 * s1 - s2 * s2) / (2 * dd * s1), -1.0, 1.0))
    a2 = np.arccos(np.clip((dd * dd + s2 * s2 - s1 * s1) / (2 * dd * s2), -1.0, 1.0))
    kite = 0.5 * np.sqrt(
        np.maximum((-dd + s1 + s2) * (dd + s1 - s2) * (dd - s1 + s2) * (dd + s1 + s2), 0.0)
    )
    lens = s1 * s1 * a1 + s2 * s2 * a2 - kite
    return np.where(partial, lens, np.where(nested, np.pi * small * small, 0.0))


def star_nms(
    prob: NDArray[np.floating],
    dist: NDArray[np.floating],
    *,
    prob_thresh: float,
    nms_thresh: float,
    grid: tuple[int, int] = (1, 1),
    border: int = 2,
) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.float32]]:
    """Greedy non-maximum suppression of the star-convex polygon candidates of a prediction.

    Candidates are the pixels with ``prob > prob_thresh`` (not within ``border`` pixels of the
    map's edge, as StarDist's ``b=2``). In order of decreasing probability, each surviving
    polygon suppresses every later candidate P with
    ``area(kept ∩ P) / min(area(kept), area(P)) > nms_thresh``. Polygon vertices are truncated
    to integer coordinates first and the intersection is exact (see the module docstring).

    Parameters
    ----------
    prob : ndarray of float, shape (h, w)
        Object probabilities on the (possibly subsampled) prediction grid, in [0, 1].
    dist : ndarray of float, shape (h, w, n_rays)
        Ray distances in full-resolution pixels, >= 0.
    prob_thresh : float
        Candidate threshold in [0, 1].
    nms_thresh : float
        Overlap threshold in [0, 1]; smaller suppresses more.
    grid : (int, int)
        Subsampling of ``prob``/``dist``: map pixel (i, j) is image pixel (g_row i, g_col j).
    border : int
        Candidates within this many map pixels of the edge are ignored; >= 0.

    Returns
    -------
    points : ndarray of int64, shape (n, 2)
        Kept centres (row, col) in full-resolution pixels, by decreasing probability.
    probs : ndarray of float32, shape (n,)
    dists : ndarray of float32, shape (n, n_rays)

    Raises
    ------
    TypeError, ValueError
        Arrays of the wrong type, ndim or dtype, mismatched shapes, NaN/inf, thresholds outside
        [0, 1], a bad grid or a negative border.

    Examples
    --------
    >>> prob = np.zeros((20, 20), np.float32); prob[9:12, 9:12] = 0.6; prob[10, 10] = 0.9
    >>> dist = np.full((20, 20, 8), 4.0, np.float32)
    >>> points, probs, _ = star_nms(prob, dist, prob_thresh=0.5, nms_thresh=0.3)
    >>> points.tolist(), probs.tolist()
    ([[10, 10]], [0.8999999761581421])
    """
    prob, dist = _check_prob_dist(prob, dist)
    pt = _check_thresh01(prob_thresh, "prob_thresh")
    nt = _check_thresh01(nms_thresh, "nms_thresh")
    gy, gx = _check_grid(grid)
    if isinstance(border, bool) or not isinstance(border, int | np.integer) or border < 0:
        raise ValueError(f"border: expected an int >= 0; got {border!r}")
    n_rays = dist.shape[2]

    mask = prob > pt
    if border > 0:
        inner = np.zeros_like(mask)
        inner[border:-border, border:-border] = True
        mask &= inner
    points = np.stack(np.nonzero(mask), axis=1)
    scores = prob[mask].astype(np.float32)
    cand_dist = dist[mask].astype(np.float32)
    order = np.argsort(scores)[::-1]  # StarDist's candidate order, ties included
    points = points[order] * np.array([gy, gx])
    scores = scores[order]
    cand_dist = cand_dist[order]
    n = points.shape[0]
    if n == 0:
        return (
            np.zeros((0, 2), np.int64),
            np.zeros(0, np.float32),
            np.zeros((0, n_rays), np.float32),
        )

    rows, cols, verts = _nms_vertices(points, cand_dist)
    box = np.stack([rows.min(1), rows.max(1), cols.min(1), cols.max(1)], axis=1)
    centres = points.astype(np.float64)
    areas, r_in, r_out = _polygon_extents(verts, centres)

    suppressed = np.zeros(n, bool)
    n_exact = 0
    for i in range(n - 1):
        if suppressed[i]:
            continue
        rest = slice(i + 1, n)
        b = box[rest]
        cand = (
            ~suppressed[rest]
            & (b[:, 0] <= box[i, 1])
            & (box[i, 0] <= b[:, 1])
            & (b[:, 2] <= box[i, 3])
            & (box[i, 2] <= b[:, 3])
        )
        j = np.flatnonzero(cand) + i + 1
        if j.size == 0:
            continue
        # discs inscribed in / circumscribed about both polygons bound the intersection area;
        # only candidates the bounds cannot decide get the exact (expensive) intersection
        gap = np.hypot(centres[j, 0] - centres[i, 0], centres[j, 1] - centres[i, 1])
        smaller = np.minimum(areas[i] + 1e-10, areas[j] + 1e-10)
        low = _lens_area(r_in[i], r_in[j], gap) / smaller
        high = np.minimum(_lens_area(r_out[i], r_out[j], gap), smaller) / smaller
        sure = low > nt + _BOUND_MARGIN
        unsure = ~sure & (high >= nt - _BOUND_MARGIN)
        hit = j[sure]
        if unsure.any():
            ju = j[unsure]
            n_exact += ju.size
            inter = _intersection_areas(verts[i], verts[ju])
            overlap = inter / np.minimum(areas[i] + 1e-10, areas[ju] + 1e-10)
            hit = np.concatenate([hit, ju[overlap > nt]])
        suppressed[hit] = True
    keep = ~suppressed
    logger.debug(
        "star_nms: %d candidates (prob > %.3g), %d kept (nms_thresh %.3g), %d exact overlaps",
        n,
        pt,
        keep.sum(),
        nt,
        n_exact,
    )
    return points[keep].astype(np.int64), scores[keep], cand_dist[keep]


def polygons_to_labels(
    points: ArrayLike,
    dists: ArrayLike,
    shape: tuple[int, int],
    probs: ArrayLike | None = None,
) -> NDArray[np.uint32]:
    """Render star-convex polygons into a label image (StarDist's ``polygons_to_label``).

    Polygons are painted with ``skimage.draw.polygon`` in order of increasing probability (stable
    for ties), so where polygons overlap the more probable one wins. Polygon i gets label i + 1;
    a polygon painted over completely leaves no pixel with its label.

    Parameters
    ----------
    points : array of int or float, shape (n, 2)
        Centres (row, col) in pixels.
    dists : array, shape (n, n_rays)
        Ray distances in pixels.
    shape : (int, int)
        Output shape (ny, nx).
    probs : array, shape (n,), optional
        Painting priority; default: all equal (painted in input order).

    Returns
    -------
    ndarray of uint32, shape ``shape``

    Examples
    --------
    >>> lab = polygons_to_labels([[5, 5], [5, 8]], np.full((2, 8), 3.0), (12, 14), [0.9, 0.6])
    >>> int(lab[5, 5]), int(lab[5, 9]), int(lab[5, 7])  # polygon 1 wins the overlap
    (1, 2, 1)
    """
    from skimage.draw import polygon

    d = np.asarray(dists, dtype=np.float32)
    p = np.asarray(points)
    if d.ndim != 2:
        raise ValueError(f"dists: expected (n, n_rays); got shape {d.shape}")
    if p.shape != (d.shape[0], 2):
        raise ValueError(f"points: expected shape ({d.shape[0]}, 2) to match dists; got {p.shape}")
    if (
        not isinstance(shape, Sequence | np.ndarray)
        or len(shape) != 2
        or any(isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 1 for s in shape)
    ):
        raise ValueError(f"shape: expected (ny, nx), two ints >= 1; got {shape!r}")
    shape = (int(shape[0]), int(shape[1]))
    pr = np.full(d.shape[0], np.inf) if probs is None else np.asarray(probs, dtype=np.float64)
    if pr.shape != (d.shape[0],):
        raise ValueError(f"probs: expected shape ({d.shape[0]},) to match dists; got {pr.shape}")
    out = np.zeros(shape, np.uint32)
    if d.shape[0] == 0:
        return out
    order = np.argsort(pr, kind="stable")
    coord = polygon_coordinates(d[order], p[order])
    for idx, c in zip(order, coord, strict=True):
        rr, cc = polygon(c[0], c[1], shape)
        out[rr, cc] = idx + 1
    return out


def instances_from_prediction(
    prob: NDArray[np.floating],
    dist: NDArray[np.floating],
    *,
    prob_thresh: float,
    nms_thresh: float,
    image: NDArray[np.floating] | None = None,
    refine_threshold: float | None = None,
    grid: tuple[int, int] = (1, 1),
    shape: tuple[int, int] | None = None,
    border: int = 2,
) -> NDArray[np.uint32]:
    """Instance labels of one 2D prediction: NMS, rendering and optional intensity refinement.

    Parameters
    ----------
    prob, dist : ndarray
        Probability (h, w) and ray distances (h, w, n_rays) of one image, e.g. from
        ``StarModel.predict`` (full resolution, ``grid=(1, 1)``) or its grid-resolution outputs.
    prob_thresh, nms_thresh : float
        Thresholds in [0, 1] (see ``star_nms``).
    image : ndarray of float, shape (ny, nx), optional
        The (normalised) intensity image; with ``refine_threshold``, pixels of a shape darker
        than the threshold are set to background (SCIENCE.md §4 refinement: crack voids reopen).
    refine_threshold : float, optional
        Intensity threshold in the units of ``image``; requires ``image``.
    grid : (int, int)
        Subsampling of ``prob``/``dist`` (see ``star_nms``).
    shape : (int, int), optional
        Output shape; default ``image.shape`` if given, else ``prob.shape`` times ``grid``.
    border : int
        See ``star_nms``.

    Returns
    -------
    ndarray of uint32, shape ``shape``
        Labels 1..n, numbered by decreasing probability of their polygon; 0 = background.

    Examples
    --------
    >>> prob = np.zeros((24, 24), np.float32); prob[11, 11] = 0.9
    >>> dist = np.full((24, 24, 16), 5.0, np.float32)
    >>> img = np.ones((24, 24), np.float32); img[11, 9:14] = 0.0  # a dark crack
    >>> lab = instances_from_prediction(prob, dist, prob_thresh=0.5, nms_thresh=0.4,
    ...                                 image=img, refine_threshold=0.5)
    >>> int(lab.max()), int(lab[11, 11]), int(lab[9, 11])
    (1, 0, 1)
    """
    from skimage.segmentation import relabel_sequential

    gy, gx = _check_grid(grid)
    if refine_threshold is not None and image is None:
        raise ValueError("refine_threshold: given without image; pass the intensity image too")
    if image is not None:
        if not isinstance(image, np.ndarray) or image.ndim != 2:
            raise ValueError(
                f"image: expected a (ny, nx) array; got "
                f"{getattr(image, 'shape', type(image).__name__)}"
            )
        if shape is None:
            shape = image.shape
        elif tuple(shape) != image.shape:
            raise ValueError(f"image: expected shape {tuple(shape)} (shape); got {image.shape}")
    if shape is None:
        _check_prob_dist(prob, dist)
        shape = (prob.shape[0] * gy, prob.shape[1] * gx)
    points, probs, dists = star_nms(
        prob, dist, prob_thresh=prob_thresh, nms_thresh=nms_thresh, grid=(gy, gx), border=border
    )
    labels = polygons_to_labels(points, dists, tuple(shape), probs)
    if refine_threshold is not None:
        if isinstance(refine_threshold, bool) or not isinstance(
            refine_threshold, int | float | np.integer | np.floating
        ):
            raise TypeError(f"refine_threshold: expected a number; got {refine_threshold!r}")
        labels[np.asarray(image) < float(refine_threshold)] = 0
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.uint32, copy=False)
