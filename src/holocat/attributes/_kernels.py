"""Compiled (numba) kernels of the particle attributes.

Gaussians of masks, Euclidean-ball morphology, hole filling, the roughness width solve,
boundary and crack-wall voxels, bounding boxes, the intact-level window mean, block counts and
per-slice area tables, the input checks' whole-block passes and crop codes. Each is an exact
replacement of the array formulation it speeds up (tests compare them with
``scipy.ndimage.gaussian_filter1d``, EDT thresholds, ``binary_fill_holes``, the true width,
shifted-mask definitions, ``np.nonzero``, padded block sums, ``find_objects`` and
``np.where``), written for one particle's crop on one core: the per-particle pool, not threads,
is the parallelism. Hot loops index from 0 (numba then knows the index is not negative and
vectorises them). Compiled on first use (about 18 s for these and the marching-cubes kernels)
and cached on disk (``cache=True``) next to this module, or in numba's user cache where that is
read-only, so later runs and workers load the machine code.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

#: Gaussian truncation (sigmas), as scipy's default.
TRUNCATE = 4.0


# --------------------------------------------------------------------------------------------
# Gaussian of a binary mask
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _gaussian_taps(sigma: float) -> tuple[NDArray[np.float32], NDArray[np.float64], int]:
    """(half kernel k[0..r], cumulative kernel C(t) for t = -r..r-1, r) of scipy's Gaussian."""
    r = int(TRUNCATE * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * x * x)
    phi /= phi.sum()
    return phi[r:].astype(np.float32), np.cumsum(phi)[: 2 * r], r


@numba.njit(cache=True, boundscheck=False, inline="always")
def _cumulative(cum, r, t):  # pragma: no cover - compiled
    """C(t): the Gaussian's cumulative kernel, 0 below -r and 1 from r on."""
    return 1.0 if t >= r else (0.0 if t < -r else cum[t + r])


@numba.njit(cache=True, boundscheck=False)
def _mask_pass_x(mask, cum, r, out):  # pragma: no cover - compiled
    """out[z, y, x] = sum_j k_j mask[z, y, x + j]: per run [a, b) of a row, C differences.

    A run contributes ``C(b - 1 - x) - C(a - 1 - x)`` at x (C = cumulative kernel, 0 below -r,
    1 from r on), so the cost is the runs' lengths plus their reach, not the taps; on the
    plateau ``a + r <= x <= b - 1 - r`` that is exactly 1.
    """
    nz, ny, nx = mask.shape
    for z in range(nz):
        for y in range(ny):
            x = 0
            while x < nx:
                if not mask[z, y, x]:
                    x += 1
                    continue
                a = x
                while x < nx and mask[z, y, x]:
                    x += 1
                b = x
                lo = max(a - r, 0)
                hi = min(b - 1 + r, nx - 1)
                p0 = max(lo, a + r)
                p1 = min(hi, b - 1 - r)
                for o in range(lo, min(hi, p0 - 1) + 1):
                    out[z, y, o] += _cumulative(cum, r, b - 1 - o) - _cumulative(cum, r, a - 1 - o)
                if p1 >= p0:
                    plateau = out[z, y, p0 : p1 + 1]
                    for i in range(p1 - p0 + 1):
                        plateau[i] += 1.0
                for o in range(max(lo, p0, p1 + 1), hi + 1):
                    out[z, y, o] += _cumulative(cum, r, b - 1 - o) - _cumulative(cum, r, a - 1 - o)


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _field_pass_z(src, k, out):  # pragma: no cover - compiled
    """out[z] = sum_j k_|j| src[z + j] (zero outside), planes vectorised."""
    nz, ny, nx = src.shape
    r = k.shape[0] - 1
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                out[z, y, x] = k[0] * src[z, y, x]
        for j in range(1, r + 1):
            w = k[j]
            if z + j < nz and z - j >= 0:  # both taps at once: one pass over out
                for y in range(ny):
                    for x in range(nx):
                        out[z, y, x] += w * (src[z + j, y, x] + src[z - j, y, x])
            elif z + j < nz:
                for y in range(ny):
                    for x in range(nx):
                        out[z, y, x] += w * src[z + j, y, x]
            elif z - j >= 0:
                for y in range(ny):
                    for x in range(nx):
                        out[z, y, x] += w * src[z - j, y, x]


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _field_pass_y(src, k, out):  # pragma: no cover - compiled
    """out[z, y, :] = sum_j k_|j| src[z, y + j, :]: the z pass on each (y, x) plane."""
    nz, ny, nx = src.shape
    for z in range(nz):
        _field_pass_z(src[z].reshape((ny, 1, nx)), k, out[z].reshape((ny, 1, nx)))


def gaussian_of_mask(mask: NDArray[np.bool_], sigma_vox: float) -> NDArray[np.float32]:
    """Gaussian of a boolean mask (zero outside the array), float32.

    The same values as three ``scipy.ndimage.gaussian_filter1d(mode="constant", truncate=4)``
    passes (to float32 rounding); the pass along x sums the kernel over the mask's runs.
    """
    taps, cum, r = _gaussian_taps(float(sigma_vox))
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    along_x = np.zeros(mask.shape, np.float32)
    _mask_pass_x(mask, cum, r, along_x)
    along_y = np.empty_like(along_x)
    _field_pass_y(along_x, taps, along_y)
    out = np.empty_like(along_y)
    _field_pass_z(along_y, taps, out)
    return out


# --------------------------------------------------------------------------------------------
# Euclidean-ball morphology on bit-packed rows
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, boundscheck=False)
def _line_step(rows, erode, out):  # pragma: no cover - compiled
    """One voxel of 1D dilation (OR) or erosion (AND) along x of rows packed in uint64 words.

    Bit i of word q is x = 64 q + i. Bits shifted in from beyond the row are 0, which is the
    background outside the array for erosion; for dilation, bits pushed beyond nx stay there
    and are never unpacked. ``out`` must not overlap ``rows``.
    """
    nz, ny, nw = rows.shape
    one = np.uint64(1)
    top = np.uint64(63)
    for z in range(nz):
        for y in range(ny):
            for q in range(nw):
                w = rows[z, y, q]
                up = w << one
                if q > 0:
                    up |= rows[z, y, q - 1] >> top
                down = w >> one
                if q + 1 < nw:
                    down |= rows[z, y, q + 1] << top
                out[z, y, q] = (w & up & down) if erode else (w | up | down)


@numba.njit(cache=True, boundscheck=False)
def _pack_rows(mask, out):  # pragma: no cover - compiled
    """out[z, y, q] bit i = mask[z, y, 64 q + i] (0 beyond the row); ``mask`` as uint8."""
    nz, ny, nx = mask.shape
    for z in range(nz):
        for y in range(ny):
            for q in range(out.shape[2]):
                word = np.uint64(0)
                x0 = 64 * q
                for i in range(min(64, nx - x0)):
                    word |= np.uint64(mask[z, y, x0 + i]) << np.uint64(i)
                out[z, y, q] = word


@numba.njit(cache=True, boundscheck=False)
def _combine_chords(lines, chords, erode):  # pragma: no cover - compiled
    """OR (AND) over the ball's rows of the 1D-dilated (eroded) rows shifted by (dz, dy).

    ``lines[i]`` is the mask dilated (eroded) along x by width index i; ``chords`` holds (dz,
    dy, width index) for the rows of the ball with dz >= 0 (the ball is symmetric in dz). The
    rows of each slice dz = d are combined once into ``planes[d]`` (a 2D disk's (y, x)
    dilation of every plane), which then serves dz = +d and -d. For erosion a row with any
    chord source outside the array is background (the outside counts as 0).
    """
    _, nz, ny, nw = lines.shape
    flat = lines.reshape((lines.shape[0], nz, ny * nw))
    identity = ~np.uint64(0) if erode else np.uint64(0)
    reach_z = 0
    reach_y = 0
    for c in range(chords.shape[0]):
        reach_z = max(reach_z, chords[c, 0])
        reach_y = max(reach_y, abs(chords[c, 1]))
    planes = np.empty((reach_z + 1, nz, ny * nw), np.uint64)
    planes[:] = identity
    for c in range(chords.shape[0]):
        d = chords[c, 0]
        dy = chords[c, 1]
        wi = chords[c, 2]
        n = (ny - abs(dy)) * nw
        o0 = max(0, dy) * nw
        s0 = max(0, -dy) * nw
        for z in range(nz):
            # slices starting at the shifts: indices from 0 let the loops vectorise (an
            # offset index may be negative as far as numba knows, which costs a check)
            src = flat[wi, z, s0 : s0 + n]
            dst = planes[d, z, o0 : o0 + n]
            if erode:
                for i in range(n):
                    dst[i] &= src[i]
            else:
                for i in range(n):
                    dst[i] |= src[i]
    out = np.empty((nz, ny * nw), np.uint64)
    out[:] = identity
    for dz in range(-reach_z, reach_z + 1):
        d = abs(dz)
        for z in range(max(0, dz), min(nz, nz + dz)):
            src = planes[d, z - dz]
            dst = out[z]
            if erode:
                for i in range(ny * nw):
                    dst[i] &= src[i]
            else:
                for i in range(ny * nw):
                    dst[i] |= src[i]
    out3 = out.reshape((nz, ny, nw))
    if erode:
        out3[:reach_z] = 0
        out3[nz - reach_z :] = 0
        out3[:, :reach_y] = 0
        out3[:, ny - reach_y :] = 0
    return out3


@lru_cache(maxsize=32)
def ball_chords(radius_vox: float) -> tuple[tuple[int, int, int], ...]:
    """(dz, dy, w) for every row of the ball ``{k : |k|^2 <= r^2}``: its x-chord is [-w, w]."""
    r = math.floor(radius_vox)
    r2 = radius_vox * radius_vox
    rows = []
    for dz in range(-r, r + 1):
        for dy in range(-r, r + 1):
            rest = r2 - dz * dz - dy * dy
            if rest < 0:
                continue
            w = math.isqrt(math.floor(rest))
            while (w + 1) * (w + 1) <= rest:
                w += 1
            rows.append((dz, dy, w))
    return tuple(rows)


@lru_cache(maxsize=32)
def _chord_table(radius_vox: float) -> tuple[tuple[int, ...], NDArray[np.int64]]:
    """(distinct widths, (dz, dy, width index) rows with dz >= 0) of the ball; the rows with
    dz < 0 mirror them."""
    chords = ball_chords(radius_vox)
    widths = tuple(sorted({w for _, _, w in chords}))
    index = {w: i for i, w in enumerate(widths)}
    table = np.array([(dz, dy, index[w]) for dz, dy, w in chords if dz >= 0], dtype=np.int64)
    return widths, table


def ball_morphology(mask: NDArray[np.bool_], radius_vox: float, *, erode: bool) -> NDArray:
    """Dilation or erosion by the ball ``{k : |k| <= radius_vox}``; outside counts as 0.

    The ball is the union of its x-chords, one per (dz, dy) row: the mask's rows are packed in
    64-bit words, dilated (eroded) along x once per chord width by word shifts, then OR-ed
    (AND-ed) per chord with the (dz, dy) shift.
    """
    if radius_vox < 1.0:  # the ball is the centre voxel only
        return mask.copy()
    widths, table = _chord_table(float(radius_vox))
    nz, ny, nx = mask.shape
    nw = -(-nx // 64)
    # lines[i]: the rows dilated (eroded) along x by widths[i]; widths missing from the ball
    # pass through two scratch buffers
    lines = np.empty((len(widths), nz, ny, nw), dtype=np.uint64)
    scratch = [np.empty((nz, ny, nw), dtype=np.uint64) for _ in range(2)]
    rows = lines[0] if widths[0] == 0 else scratch[0]
    _pack_rows(mask.view(np.uint8), rows)
    for w in range(1, widths[-1] + 1):
        target = lines[widths.index(w)] if w in widths else scratch[w % 2]
        if target is rows:  # two missing widths in a row: the other scratch buffer
            target = scratch[(w + 1) % 2]
        _line_step(rows, erode, target)
        rows = target
    words = _combine_chords(lines, table, erode)
    return np.unpackbits(words.view(np.uint8), axis=-1, count=nx, bitorder="little").view(bool)


# --------------------------------------------------------------------------------------------
# hole filling
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, boundscheck=False)
def _outside_background(mask):  # pragma: no cover - compiled
    """Background voxels 6-connected to the array's faces.

    Background before a row's first or after its last mask voxel reaches the x faces along the
    row, and every background voxel of a row on a z or y face is a face voxel: those are
    outside without a search. The flood fill then runs only from the remaining (between-run)
    background voxels that touch them, over the between-run background.
    """
    nz, ny, nx = mask.shape
    seen = np.zeros((nz, ny, nx), np.bool_)
    first = np.full((nz, ny), nx, np.int64)
    last = np.full((nz, ny), -1, np.int64)
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if mask[z, y, x]:
                    if first[z, y] == nx:
                        first[z, y] = x
                    last[z, y] = x
            on_face = z == 0 or z == nz - 1 or y == 0 or y == ny - 1
            for x in range(nx):
                if x < first[z, y] or x > last[z, y] or (on_face and not mask[z, y, x]):
                    seen[z, y, x] = True
    stack = np.empty(16, np.int64)
    top = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(first[z, y] + 1, last[z, y]):
                if mask[z, y, x] or seen[z, y, x]:
                    continue
                if (
                    seen[z, y, x - 1]
                    or seen[z, y, x + 1]
                    or (y > 0 and seen[z, y - 1, x])
                    or (y + 1 < ny and seen[z, y + 1, x])
                    or (z > 0 and seen[z - 1, y, x])
                    or (z + 1 < nz and seen[z + 1, y, x])
                ):
                    seen[z, y, x] = True
                    if top == stack.size:
                        stack = np.concatenate((stack, np.empty(stack.size, np.int64)))
                    stack[top] = (z * ny + y) * nx + x
                    top += 1
    while top > 0:
        top -= 1
        i = stack[top]
        x = i % nx
        y = (i // nx) % ny
        z = i // (nx * ny)
        for d in range(6):
            zz, yy, xx = z, y, x
            if d == 0:
                zz -= 1
            elif d == 1:
                zz += 1
            elif d == 2:
                yy -= 1
            elif d == 3:
                yy += 1
            elif d == 4:
                xx -= 1
            else:
                xx += 1
            if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                continue
            if mask[zz, yy, xx] or seen[zz, yy, xx]:
                continue
            seen[zz, yy, xx] = True
            if top == stack.size:
                stack = np.concatenate((stack, np.empty(stack.size, np.int64)))
            stack[top] = (zz * ny + yy) * nx + xx
            top += 1
    return seen


def fill_holes(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """3D hole filling (6-connected background): ``scipy.ndimage.binary_fill_holes``' result.

    Everything that is not background reachable from the array's faces is filled.
    """
    return ~_outside_background(np.ascontiguousarray(mask, dtype=np.bool_))


# --------------------------------------------------------------------------------------------
# roughness: distance to the iso-surface of a smoothed mask
# --------------------------------------------------------------------------------------------

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


@numba.njit(cache=True)
def _ndtr(x):  # pragma: no cover - compiled
    """Standard normal CDF (accurate in the left tail through erfc)."""
    return 0.5 * math.erfc(-x * _INV_SQRT2)


@numba.njit(cache=True)
def _solve_half_difference(u, g, h_max):  # pragma: no cover - compiled
    """h in [0, h_max] with (Phi(u + h) - Phi(u - h)) / 2 = g; h_max when g reaches F(h_max).

    Evaluated at -|u| (the equation is symmetric in u) so Phi's differences keep their
    precision. Newton from the small-h start (the cubic Taylor expansion of F inverted by one
    step), kept in the bracket [lo, hi] that every evaluation narrows (a step leaving it bisects
    it), until a Newton step moves h by at most 1e-6 h_max (its error is then ~1e-12 h_max; a
    bisection step that small ends within 2e-6 h_max of the root).
    """
    u = -abs(u)
    lo = 0.0
    hi = h_max
    # start: F(h) = phi(u) (h + (u^2 - 1) h^3 / 6) + O(h^5), one Newton step on the cubic
    h = g / (_INV_SQRT2PI * math.exp(-0.5 * u * u))
    c = (u * u - 1.0) / 6.0
    denominator = 1.0 + 3.0 * c * h * h
    if denominator > 0.5:
        h -= c * h * h * h / denominator
    if not (0.0 < h < h_max):
        h = 0.5 * h_max
    for _ in range(200):
        f = 0.5 * (_ndtr(u + h) - _ndtr(u - h)) - g
        if f < 0.0:
            lo = h
        elif f > 0.0:
            hi = h
        else:
            return h
        slope = 0.5 * _INV_SQRT2PI * (math.exp(-0.5 * (u + h) ** 2) + math.exp(-0.5 * (u - h) ** 2))
        step = h - f / slope if slope > 0.0 else 0.5 * (lo + hi)
        if not (lo < step < hi):
            step = 0.5 * (lo + hi)
        if abs(step - h) <= 1e-6 * h_max:  # Newton: the error of step is ~ the square
            h = step
            break
        h = step
    # no root below h_max (g at or above F(h_max)): the iterates climb to h_max
    return h_max if h >= h_max * (1.0 - 2e-6) else h


@numba.njit(cache=True, boundscheck=False)
def _inverse_half_differences(u, g, h_max, out):  # pragma: no cover - compiled
    for i in range(u.size):
        out[i] = _solve_half_difference(u[i], g[i], h_max)


def inverse_half_difference(
    u: NDArray[np.float64], g: NDArray[np.float64], h_max: float
) -> NDArray[np.float64]:
    """h in [0, h_max] with ``(Phi(u + h) - Phi(u - h)) / 2 = g`` per element (increasing in h);
    g at or above the value at h_max gives h_max. Safeguarded Newton, |error| < 1e-8 h_max where
    Newton converges (tests), 2e-6 h_max at worst."""
    u = np.ascontiguousarray(u, dtype=np.float64).ravel()
    g = np.ascontiguousarray(g, dtype=np.float64).ravel()
    out = np.empty_like(u)
    _inverse_half_differences(u, g, float(h_max), out)
    return out


@numba.njit(cache=True, boundscheck=False)
def _iso_distances(flat_field, strides, flat, u, g_max, h_max, cap, out):  # pragma: no cover
    sz, sy = strides
    for i in range(flat.size):
        p = flat[i]
        gz = 0.5 * (np.float64(flat_field[p + sz]) - flat_field[p - sz])
        gy = 0.5 * (np.float64(flat_field[p + sy]) - flat_field[p - sy])
        gx = 0.5 * (np.float64(flat_field[p + 1]) - flat_field[p - 1])
        g = min(math.sqrt(gz * gz + gy * gy + gx * gx), g_max)
        h = _solve_half_difference(u[i], g, h_max)
        width = 1.0 / max(h, 1e-300) if h * cap > 1.0 else cap
        out[i] = width * u[i]


def iso_distances(
    field: NDArray[np.floating],
    flat: NDArray[np.int64],
    u: NDArray[np.float64],
    g_max: float,
    h_max: float,
    cap: float,
) -> NDArray[np.float64]:
    """``w u`` at the C-order flat indices ``flat`` of ``field``: w = 1 / h (at most ``cap``)
    with h solving the half difference of the profile ``Phi(u)`` for the magnitude g (at most
    ``g_max``) of the field's central differences there
    (:func:`holocat.attributes.shape.iso_distance`). The points' 6-neighbours must lie inside
    ``field``."""
    field = np.ascontiguousarray(field)
    nz, ny, nx = field.shape
    flat = np.ascontiguousarray(flat, dtype=np.int64)
    u = np.ascontiguousarray(u, dtype=np.float64)
    out = np.empty(u.size, dtype=np.float64)
    strides = (ny * nx, nx)
    _iso_distances(field.ravel(), strides, flat, u, float(g_max), float(h_max), float(cap), out)
    return out


# --------------------------------------------------------------------------------------------
# damage
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, boundscheck=False)
def window_mean(values, start, half_width, max_iter, tol):  # pragma: no cover - compiled
    """Fixed point of ``ref <- mean(v : |v - ref| < half_width)`` from ``start``.

    Stops when ref moves by at most ``tol`` (returning the new mean) or after ``max_iter``
    means, or when the window is empty (returning the last ref).
    """
    ref = start
    for _ in range(max_iter):
        total = 0.0
        count = 0
        for v in values:
            if abs(v - ref) < half_width:
                total += v
                count += 1
        if count == 0:
            return ref
        new = total / count
        if abs(new - ref) <= tol:
            return new
        ref = new
    return ref


# --------------------------------------------------------------------------------------------
# block counts (PDensity's summed-area table)
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, boundscheck=False)
def _count_nonzero_blocks(arr, k, out):  # pragma: no cover - compiled
    nz, ny, nx = arr.shape
    for z in range(nz):
        bz = z // k
        for y in range(ny):
            by = y // k
            row = arr[z, y]
            for bx in range(out.shape[2]):
                c = 0
                for x in range(bx * k, min(bx * k + k, nx)):
                    c += row[x] != 0
                out[bz, by, bx] += c


@numba.njit(cache=True, boundscheck=False)
def _plane_table(plane, inside, masked, table):  # pragma: no cover - compiled
    ny, nx = plane.shape
    for y in range(ny):
        run = 0
        for x in range(nx):
            run += plane[y, x] != 0 and (not masked or inside[y, x] != 0)
            table[y + 1, x + 1] = table[y, x + 1] + run


def plane_summed_area_table(
    plane: NDArray, inside: NDArray[np.bool_] | None, table: NDArray[np.int64]
) -> None:
    """``table[1:, 1:]`` = 2D summed-area table of ``(plane != 0) & inside`` (``inside`` None:
    everywhere); row 0 and column 0 of ``table`` must be 0 (one pass, no temporaries)."""
    if plane.dtype == np.bool_:
        plane = plane.view(np.uint8)
    if inside is None:  # an empty placeholder, never read
        _plane_table(plane, np.zeros((0, 0), np.uint8), False, table)
    else:
        _plane_table(plane, inside.view(np.uint8), True, table)


def block_counts(arr: NDArray, k: int) -> NDArray[np.int64]:
    """Nonzero voxels of ``arr`` per ``k x k x k`` block (the last block of an axis may be
    partial), in one pass without padding or temporaries."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    out = np.zeros(tuple(-(-n // k) for n in arr.shape), dtype=np.int64)
    _count_nonzero_blocks(arr, int(k), out)
    return out


# --------------------------------------------------------------------------------------------
# boundary voxels
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, boundscheck=False)
def _boundary(mask, out):  # pragma: no cover - compiled
    """Write the flat indices of the mask voxels with a 6-neighbour outside the mask or the
    array; return how many."""
    nz, ny, nx = mask.shape
    count = 0
    for z in range(nz):
        for y in range(ny):
            on_face = z == 0 or z == nz - 1 or y == 0 or y == ny - 1
            for x in range(nx):
                if not mask[z, y, x]:
                    continue
                if (
                    on_face
                    or x == 0
                    or x == nx - 1
                    or not (
                        mask[z, y, x - 1]
                        and mask[z, y, x + 1]
                        and mask[z, y - 1, x]
                        and mask[z, y + 1, x]
                        and mask[z - 1, y, x]
                        and mask[z + 1, y, x]
                    )
                ):
                    out[count] = (z * ny + y) * nx + x
                    count += 1
    return count


@numba.njit(cache=True, boundscheck=False, inline="always")
def _row_any(a, z, y):  # pragma: no cover - compiled
    """Whether row (z, y) of a uint8 array has a nonzero (an OR over the row, vectorised)."""
    acc = np.uint8(0)
    for x in range(a.shape[2]):
        acc |= a[z, y, x]
    return acc != 0


@numba.njit(cache=True, boundscheck=False)
def _walls(mask, other, out):  # pragma: no cover - compiled
    """Write the flat indices of the mask voxels with a 6-neighbour in ``other``; return how
    many. ``mask`` and ``other`` as uint8. Rows with no ``other`` in the row or the four rows
    beside it are skipped after an OR over each (``other`` is sparse: crack voids)."""
    nz, ny, nx = mask.shape
    near = np.zeros((nz, ny), np.bool_)
    for z in range(nz):
        for y in range(ny):
            if _row_any(other, z, y):
                near[z, y] = True
                if y > 0:
                    near[z, y - 1] = True
                if y + 1 < ny:
                    near[z, y + 1] = True
                if z > 0:
                    near[z - 1, y] = True
                if z + 1 < nz:
                    near[z + 1, y] = True
    count = 0
    for z in range(nz):
        for y in range(ny):
            if not near[z, y]:
                continue
            for x in range(nx):
                if mask[z, y, x] and (
                    (x > 0 and other[z, y, x - 1])
                    or (x + 1 < nx and other[z, y, x + 1])
                    or (y > 0 and other[z, y - 1, x])
                    or (y + 1 < ny and other[z, y + 1, x])
                    or (z > 0 and other[z - 1, y, x])
                    or (z + 1 < nz and other[z + 1, y, x])
                ):
                    out[count] = (z * ny + y) * nx + x
                    count += 1
    return count


@numba.njit(cache=True, boundscheck=False, inline="always")
def _extend_box(box, z, y, x0, x1):  # pragma: no cover - compiled
    """Grow box = (z0, y0, x0, z1, y1, x1) (half-open; z0 = -1: empty) by the run [x0, x1) of
    row (z, y); rows come in increasing z, so z0 is the first z seen and z1 the last + 1."""
    if box[0] < 0:
        box[0], box[1], box[2] = z, y, x0
        box[3], box[4], box[5] = z + 1, y + 1, x1
    else:
        box[1] = min(box[1], y)
        box[2] = min(box[2], x0)
        box[3] = z + 1
        box[4] = max(box[4], y + 1)
        box[5] = max(box[5], x1)


@numba.njit(cache=True, boundscheck=False)
def _mask_box(mask, box):  # pragma: no cover - compiled
    """box = (z0, y0, x0, z1, y1, x1) of the nonzero voxels of a uint8 array (half-open); z0 =
    -1 when none. Empty rows cost one vectorised OR."""
    nz, ny, nx = mask.shape
    for z in range(nz):
        for y in range(ny):
            if not _row_any(mask, z, y):
                continue
            first = 0
            while not mask[z, y, first]:
                first += 1
            last = nx - 1
            while not mask[z, y, last]:
                last -= 1
            _extend_box(box, z, y, first, last + 1)


def mask_box(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int64], NDArray[np.int64]] | None:
    """(lo, hi) half-open (z, y, x) index box of a 3D mask's True voxels, or None when empty
    (one pass; a row is scanned from both ends to its first and last True voxel)."""
    box = np.full(6, -1, dtype=np.int64)
    _mask_box(mask.view(np.uint8), box)
    return None if box[0] < 0 else (box[:3], box[3:])


def boundary_indices(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
    """C-order flat indices (ascending) of the voxels of ``mask`` with a 6-neighbour outside it
    (outside the array counts)."""
    out = np.empty(mask.size, dtype=np.int64)
    return out[: _boundary(mask, out)].copy()


def wall_indices(mask: NDArray[np.bool_], other: NDArray[np.bool_]) -> NDArray[np.int64]:
    """C-order flat indices (ascending) of the voxels of ``mask`` with a 6-neighbour in
    ``other`` (same shape)."""
    out = np.empty(mask.size, dtype=np.int64)
    return out[: _walls(mask.view(np.uint8), other.view(np.uint8), out)].copy()


# --------------------------------------------------------------------------------------------
# whole-block passes of the input checks
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, boundscheck=False)
def _count_nonfinite(vol):  # pragma: no cover - compiled
    nz, ny, nx = vol.shape
    n = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                n += not math.isfinite(vol[z, y, x])
    return n


def count_nonfinite(vol: NDArray[np.floating]) -> int:
    """NaN and infinite voxels of a 3D float array (one pass, no temporaries)."""
    if vol.dtype not in (np.float32, np.float64) or not vol.dtype.isnative:
        return int(np.count_nonzero(~np.isfinite(vol)))
    return int(_count_nonfinite(vol))


@numba.njit(cache=True, boundscheck=False)
def _label_range(lab):  # pragma: no cover - compiled
    lo = lab[0, 0, 0]
    hi = lo
    nz, ny, nx = lab.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                v = lab[z, y, x]
                if v < lo:
                    lo = v
                elif v > hi:
                    hi = v
    return lo, hi


@numba.njit(cache=True, boundscheck=False)
def _label_boxes(lab, boxes):  # pragma: no cover - compiled
    """boxes[l - 1] = (z0, y0, x0, z1, y1, x1) of label l, half-open; z0 = -1 if absent."""
    nz, ny, nx = lab.shape
    for z in range(nz):
        for y in range(ny):
            x = 0
            while x < nx:
                v = lab[z, y, x]
                if v <= 0:
                    x += 1
                    continue
                start = x
                while x < nx and lab[z, y, x] == v:
                    x += 1
                _extend_box(boxes[v - 1], z, y, start, x)


def label_range(lab: NDArray[np.integer]) -> tuple[int, int]:
    """(min, max) of a non-empty 3D integer array in one pass."""
    if not lab.dtype.isnative:
        return int(lab.min()), int(lab.max())
    lo, hi = _label_range(lab)
    return int(lo), int(hi)


def label_boxes(lab: NDArray[np.integer], max_label: int) -> list[tuple[slice, ...] | None]:
    """``scipy.ndimage.find_objects(lab, max_label)``: the bounding box (slices) of every label
    1..max_label, None where absent, in one pass over the runs of equal labels along x. Labels
    must lie in [0, max_label]."""
    if not lab.dtype.isnative:
        return list(ndi.find_objects(lab, max_label))
    boxes = np.full((max_label, 6), -1, dtype=np.int64)
    _label_boxes(lab, boxes)
    return [
        None if b[0] < 0 else (slice(b[0], b[3]), slice(b[1], b[4]), slice(b[2], b[5]))
        for b in boxes.tolist()
    ]


# --------------------------------------------------------------------------------------------
# crops
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, boundscheck=False)
def _code_labels(block_labels, label, self_code, other_code, out):  # pragma: no cover
    nz, ny, nx = block_labels.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                v = block_labels[z, y, x]
                if v == label:
                    out[z, y, x] = self_code
                elif v != 0:
                    out[z, y, x] = other_code


def code_labels(
    block_labels: NDArray[np.integer], label: int, self_code: int, other_code: int, out: NDArray
) -> None:
    """``out[...] = self_code`` where ``block_labels == label``, ``other_code`` where another
    label is, untouched elsewhere (one pass; ``out`` is a uint8 view of the crop)."""
    _code_labels(block_labels, block_labels.dtype.type(label), self_code, other_code, out)
