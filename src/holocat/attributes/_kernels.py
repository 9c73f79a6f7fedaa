"""Compiled (numba) kernels of the particle attributes.

Gaussians of masks, Euclidean-ball morphology, hole filling, triangle areas, the intact-level
window mean, block counts and crop codes. Each is an exact replacement of the array formulation
it speeds up (tests compare them with ``scipy.ndimage.gaussian_filter1d``, EDT thresholds,
``binary_fill_holes``, numpy's cross products, padded block sums and ``np.where``), written for
one particle's crop on one core: the per-particle pool, not threads, is the parallelism.
Compiled on first use (about 7 s) and cached on disk (``cache=True``) next to this module, or
in numba's user cache where that is read-only, so later runs and workers load the machine code.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np
from numpy.typing import NDArray

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


@numba.njit(cache=True, boundscheck=False)
def _mask_pass_x(mask, cum, r, step, out):  # pragma: no cover - compiled
    """out[z, y, o] = sum_j k_j mask[z, y, o * step + j]: per run [a, b) of a row, C differences.

    A run contributes ``C(b - 1 - x) - C(a - 1 - x)`` at x (C = cumulative kernel, 0 below -r,
    1 from r on), so the cost is the runs' lengths plus their reach, not the taps.
    """
    nz, ny, nx = mask.shape
    nxo = out.shape[2]
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
                for o in range((lo + step - 1) // step, min(hi // step, nxo - 1) + 1):
                    tb = b - 1 - o * step
                    ta = a - 1 - o * step
                    cb = 1.0 if tb >= r else (0.0 if tb < -r else cum[tb + r])
                    ca = 1.0 if ta >= r else (0.0 if ta < -r else cum[ta + r])
                    out[z, y, o] += cb - ca


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _field_pass_z(src, k, step, out):  # pragma: no cover - compiled
    """out[o] = sum_j k_|j| src[o * step + j] (zero outside), planes vectorised."""
    nz, ny, nx = src.shape
    r = k.shape[0] - 1
    for o in range(out.shape[0]):
        z = o * step
        for y in range(ny):
            for x in range(nx):
                out[o, y, x] = k[0] * src[z, y, x]
        for j in range(1, r + 1):
            w = k[j]
            if z + j < nz:
                for y in range(ny):
                    for x in range(nx):
                        out[o, y, x] += w * src[z + j, y, x]
            if z - j >= 0:
                for y in range(ny):
                    for x in range(nx):
                        out[o, y, x] += w * src[z - j, y, x]


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _field_pass_y(src, k, step, out):  # pragma: no cover - compiled
    """out[z, o, :] = sum_j k_|j| src[z, o * step + j, :]: the z pass on each (y, x) plane."""
    nz, ny, nx = src.shape
    nyo = out.shape[1]
    for z in range(nz):
        _field_pass_z(src[z].reshape((ny, 1, nx)), k, step, out[z].reshape((nyo, 1, nx)))


def gaussian_of_mask(
    mask: NDArray[np.bool_], sigma_vox: float, step: int = 1
) -> NDArray[np.float32]:
    """Gaussian of a boolean mask (zero outside the array), sampled every ``step`` voxels.

    The same values as three ``scipy.ndimage.gaussian_filter1d(mode="constant", truncate=4)``
    passes followed by ``[::step]`` on every axis (to float32 rounding), with each pass computed
    only on the samples the next passes need.
    """
    taps, cum, r = _gaussian_taps(float(sigma_vox))
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    nz, ny, nx = mask.shape
    along_x = np.zeros((nz, ny, -(-nx // step)), np.float32)
    _mask_pass_x(mask, cum, r, step, along_x)
    along_y = np.empty((nz, -(-ny // step), along_x.shape[2]), np.float32)
    _field_pass_y(along_x, taps, step, along_y)
    out = np.empty((-(-nz // step), along_y.shape[1], along_y.shape[2]), np.float32)
    _field_pass_z(along_y, taps, step, out)
    return out


# --------------------------------------------------------------------------------------------
# Euclidean-ball morphology on bit-packed rows
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, boundscheck=False)
def _line_step(rows, erode):  # pragma: no cover - compiled
    """One voxel of 1D dilation (OR) or erosion (AND) along x of rows packed in uint64 words.

    Bit i of word q is x = 64 q + i. Bits shifted in from beyond the row are 0, which is the
    background outside the array for erosion; for dilation, bits pushed beyond nx stay there
    and are never unpacked.
    """
    nz, ny, nw = rows.shape
    out = np.empty_like(rows)
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
    return out


@numba.njit(cache=True, boundscheck=False)
def _combine_chords(lines, chords, erode):  # pragma: no cover - compiled
    """OR (AND) over the ball's rows of the 1D-dilated (eroded) rows shifted by (dz, dy).

    ``lines[i]`` is the mask dilated (eroded) along x by width index i; ``chords`` holds (dz,
    dy, width index) per row of the ball. For erosion a row with any chord source outside the
    array is background (the outside counts as 0).
    """
    _, nz, ny, nw = lines.shape
    flat = lines.reshape((lines.shape[0], nz, ny * nw))
    out = np.empty((nz, ny * nw), np.uint64)
    out[:] = ~np.uint64(0) if erode else np.uint64(0)
    reach_z = 0
    reach_y = 0
    for c in range(chords.shape[0]):
        dz = chords[c, 0]
        dy = chords[c, 1]
        wi = chords[c, 2]
        reach_z = max(reach_z, abs(dz))
        reach_y = max(reach_y, abs(dy))
        n = (ny - abs(dy)) * nw
        o0 = max(0, dy) * nw
        s0 = max(0, -dy) * nw
        for z in range(max(0, dz), min(nz, nz + dz)):
            src = flat[wi, z - dz]
            dst = out[z]
            if erode:
                for i in range(n):
                    dst[o0 + i] &= src[s0 + i]
            else:
                for i in range(n):
                    dst[o0 + i] |= src[s0 + i]
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
    """(distinct widths, (dz, dy, width index) rows) of the ball."""
    chords = ball_chords(radius_vox)
    widths = tuple(sorted({w for _, _, w in chords}))
    index = {w: i for i, w in enumerate(widths)}
    table = np.array([(dz, dy, index[w]) for dz, dy, w in chords], dtype=np.int64)
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
    padded = np.zeros((nz, ny, 64 * nw), dtype=np.bool_)
    padded[..., :nx] = mask
    rows = np.packbits(padded, axis=-1, bitorder="little").view(np.uint64)
    lines = np.empty((len(widths), nz, ny, nw), dtype=np.uint64)
    for w in range(widths[-1] + 1):
        if w > 0:
            rows = _line_step(rows, erode)
        if w in widths:
            lines[widths.index(w)] = rows
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
# mesh areas
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, boundscheck=False)
def _triangle_areas(verts, faces, spacing, areas, corners):  # pragma: no cover - compiled
    for t in range(faces.shape[0]):
        a = faces[t, 0]
        b = faces[t, 1]
        c = faces[t, 2]
        ux = verts[b, 0] - verts[a, 0]
        uy = verts[b, 1] - verts[a, 1]
        uz = verts[b, 2] - verts[a, 2]
        vx = verts[c, 0] - verts[a, 0]
        vy = verts[c, 1] - verts[a, 1]
        vz = verts[c, 2] - verts[a, 2]
        nx = uy * vz - uz * vy
        ny = uz * vx - ux * vz
        nz = ux * vy - uy * vx
        areas[t] = 0.5 * math.sqrt(nx * nx + ny * ny + nz * nz)
        for k in range(3):
            low = min(verts[a, k], verts[b, k], verts[c, k])
            corners[t, k] = int(math.floor(low / spacing + 1e-4)) + 1


def triangle_areas(
    verts: NDArray[np.floating], faces: NDArray[np.integer], spacing: float
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Area of every triangle (float64) and its marching cube's upper corner (vertex min / spacing,
    floored, + 1)."""
    verts = np.ascontiguousarray(verts, dtype=np.float64)
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    areas = np.empty(len(faces), dtype=np.float64)
    corners = np.empty((len(faces), 3), dtype=np.int64)
    _triangle_areas(verts, faces, float(spacing), areas, corners)
    return areas, corners


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
