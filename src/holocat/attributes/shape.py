"""Per-particle morphology on a padded crop: closing, surfaces, roughness, damage, principal axes.

Everything here works on one particle's crop (array axes (z, y, x), voxel units) and is private
to :mod:`holocat.attributes`; :func:`holocat.attributes.particle_attributes` is the public entry.

Morphology never runs ``scipy.ndimage.binary_closing`` (SCIENCE.md §5, *Speed*). Dilation by the
Euclidean ball ``{k : |k| <= r}`` is the set ``EDT(~m) <= r``; here it is computed exactly as
the union of the mask's 1D dilations along x by the ball's chords, one chord per (dz, dy) row of
the ball, OR-ed on bit-packed rows (64 voxels a word); erosion is the same with AND. Both, and
the Gaussians of masks, are compiled kernels (:mod:`holocat.attributes._kernels`); surface
areas are summed cube by cube without a mesh (:mod:`holocat.attributes._marching`). Heavy fields
(Gaussians, marching cubes) run on the particle's bounding box, not on the whole crop; crack
terms run on the bounding box of the crack voids only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from holocat.attributes._kernels import TRUNCATE as _TRUNCATE
from holocat.attributes._kernels import (
    ball_morphology,
    boundary_indices,
    fill_holes,
    gaussian_of_mask,
    iso_distances,
    mask_box,
    wall_indices,
    window_mean,
)
from holocat.attributes._marching import mc_area, mc_area_change

logger = logging.getLogger(__name__)

#: Cap of the local profile width of the roughness distance, in units of sigma_r (the width
#: diverges where the smoothed field is flat, e.g. mid-way across a thin crack).
_MAX_WIDTH_SIGMAS = 4.0
#: Voxels of matrix ring kept in the crop beyond the damage margin (the void-level sample).
_MATRIX_RING_VOX = 3
#: Codes of the per-particle crop handed to :func:`local_attributes`.
BACKGROUND, SELF, OTHER = 0, 1, 2


@dataclass(frozen=True)
class LocalParams:
    """Parameters of the per-particle computation, in voxel units (picklable for workers)."""

    voxel_size_um: float
    r_close_vox: float
    contact_gap_vox: float
    smooth_sigma_vox: float
    roughness_sigma_vox: float
    damage_margin_vox: float
    void_level: float | None
    erode_edensity: bool

    @property
    def pad_vox(self) -> int:
        """Crop padding: room for the closing, the contact gap and the damage's matrix ring.

        Gaussian fields need no padding (zero extension is exact for a particle's own mask).
        """
        return max(
            math.ceil(self.r_close_vox) + 1,
            math.ceil(self.contact_gap_vox) + 1,
            math.ceil(self.damage_margin_vox) + _MATRIX_RING_VOX,
            2,
        )


# --------------------------------------------------------------------------------------------
# exact Euclidean-ball morphology
# --------------------------------------------------------------------------------------------


def dilate_ball(mask: NDArray[np.bool_], radius_vox: float) -> NDArray[np.bool_]:
    """Dilation by the Euclidean ball ``{k : |k| <= radius_vox}``: ``EDT(~mask) <= radius_vox``.

    Exact (the same set as the EDT threshold); voxels outside the array count as background.
    """
    return ball_morphology(mask, radius_vox, erode=False)


def erode_ball(mask: NDArray[np.bool_], radius_vox: float) -> NDArray[np.bool_]:
    """Erosion by the Euclidean ball ``{k : |k| <= radius_vox}``: ``EDT(mask) > radius_vox``.

    Exact; voxels outside the array count as background (so the faces erode).
    """
    return ball_morphology(mask, radius_vox, erode=True)


def _box(lo, hi) -> tuple[slice, ...]:
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def close_and_fill(solid: NDArray[np.bool_], radius_vox: float) -> NDArray[np.bool_]:
    """Close ``solid`` with a ball of ``radius_vox`` and fill 3D holes.

    The closing is ``erode(dilate(S, B), B) | S`` with exact Euclidean-ball morphology (the
    EDT thresholds ``EDT(~S) <= r`` then ``EDT(D) > r`` of SCIENCE.md §5). The crop must leave at
    least ``ceil(radius_vox) + 1`` background voxels around ``solid`` so the dilation fits in
    it. The result always contains ``solid``.
    """
    closed = solid
    if radius_vox >= 1.0:
        closed = erode_ball(dilate_ball(solid, radius_vox), radius_vox) | solid
    return fill_holes(closed)


# --------------------------------------------------------------------------------------------
# smoothed fields: areas and roughness
# --------------------------------------------------------------------------------------------


def smoothed(mask: NDArray[np.bool_], sigma_vox: float) -> NDArray[np.float32]:
    """Gaussian of ``mask`` (zero outside the array), float32.

    Separable; the pass along x sums the kernel over the mask's runs
    (:func:`holocat.attributes._kernels.gaussian_of_mask`).
    """
    return gaussian_of_mask(mask, sigma_vox)


def _gauss_reach(sigma_vox: float) -> int:
    """Radius (voxels) of scipy's truncated Gaussian kernel."""
    return int(_TRUNCATE * float(sigma_vox) + 0.5)


def surface_areas(
    filled: NDArray[np.bool_], voids: NDArray[np.bool_], sigma_vox: float
) -> tuple[float, float]:
    """(A(F), A(S) - A(F)) in voxel^2, S = F & ~voids (SurfaceOuter, SurfaceInner before max).

    A(F): marching cubes at level 0.5 on F smoothed by ``sigma_vox`` (SCIENCE.md §5), summed
    without a mesh (:func:`holocat.attributes._marching.mc_area`). ``smoothed(S) = smoothed(F)
    - smoothed(voids)``, and the smoothed voids vanish beyond the Gaussian's reach, where the
    two surfaces coincide cube by cube: A(S) - A(F) sums the difference over the cubes that
    see a smoothed void (:func:`~holocat.attributes._marching.mc_area_change`), on the voids'
    bounding box grown by the reach + 2. ``filled`` must be the particle's bounding box with a
    background margin of at least one voxel.
    """
    f_field = smoothed(filled, sigma_vox)
    a_outer = mc_area(f_field)
    box = mask_box(voids)
    if box is None:
        return a_outer, 0.0
    reach = _gauss_reach(sigma_vox) + 2
    region = _box(np.maximum(box[0] - reach, 0), np.minimum(box[1] + reach, filled.shape))
    return a_outer, mc_area_change(f_field[region], smoothed(voids[region], sigma_vox))


def iso_distance(
    field: NDArray[np.float32],
    points: tuple[NDArray[np.intp], ...] | NDArray[np.int64],
    sigma_vox: float,
) -> NDArray[np.float64]:
    """Signed distance (voxels, > 0 inside) from voxel centres to the field's level-0.5 surface.

    Across its level-0.5 surface a Gaussian-smoothed mask is locally a planar edge profile
    ``f = Phi(d / w)``, with d the signed distance along the normal and w the profile width
    (sigma for a smooth surface, more next to a rough one). The value at the voxel gives
    ``u = d / w = Phi^-1(f)``; along the normal the central difference of that profile is
    exactly ``g = (Phi(u + 1 / w) - Phi(u - 1 / w)) / 2``, which is inverted for w (taking
    the magnitude of the three axis differences as g), and ``d = w u``. Exact for a plane
    along an axis smoothed by any Gaussian; for an oblique plane the error is below 0.03
    voxel for sigma >= 2 (tests). Near a rough surface the local width keeps the distance
    geometric (a ripple of amplitude a is recovered to within 10 % for a <= 1.5 voxels at
    sigma_r = 3, tests). The width is capped at 4 sigma where the field is flat (mid-way
    across a thin crack). ``points``: index arrays (z, y, x) or C-order flat indices; their
    6-neighbours must lie inside ``field``.
    """
    flat = points if isinstance(points, np.ndarray) else np.ravel_multi_index(points, field.shape)
    return _iso_distance_at(field, flat, sigma_vox)


def _iso_distance_at(
    field: NDArray[np.float32], flat: NDArray[np.int64], sigma_vox: float
) -> NDArray[np.float64]:
    """:func:`iso_distance` at the C-order flat indices ``flat`` of ``field``."""
    from scipy.special import ndtri

    field = np.ascontiguousarray(field)
    u = ndtri(np.clip(field.ravel()[flat].astype(np.float64), 1e-7, 1.0 - 1e-7))
    # h = 1 / w; w >= 0.25 voxel covers every Gaussian of sigma >= 0.5
    return iso_distances(field, flat, u, 0.5 - 1e-12, 4.0, _MAX_WIDTH_SIGMAS * sigma_vox)


def centred_rms(values: NDArray[np.float64]) -> float:
    """RMS of ``values`` about their mean (Rq with the mean line removed); 0.0 when empty."""
    if values.size == 0:
        return 0.0
    return float(np.sqrt(np.mean((values - values.mean()) ** 2)))


def roughness(
    filled: NDArray[np.bool_],
    solid: NDArray[np.bool_],
    voids: NDArray[np.bool_],
    sigma_vox: float,
) -> tuple[float, float]:
    """(RoughOuter, RoughInner) in voxels (SCIENCE.md §5, Table S1 #16-17).

    RoughOuter: RMS about the mean of the signed distance (:func:`iso_distance`) from F's
    boundary voxels to the level-0.5 surface of F smoothed by ``sigma_vox``. RoughInner: the
    same from S's crack-wall voxels (S voxels with a 6-neighbour in the voids ``F & ~S``) to
    the surface of S smoothed the same way; 0 without voids. Removing the mean removes the
    half-voxel offset of voxel centres and the uniform shrinkage (~sigma^2 / R) of a smoothed
    curved surface, so a digital ball gives the voxel-staircase floor (0.21-0.26 voxels for
    radii 10-20, any sigma) and an ideal plane 0. ``filled`` must be the particle's bounding
    box with a background margin of at least two voxels.
    """
    f_field = smoothed(filled, sigma_vox)
    rough_outer = centred_rms(_iso_distance_at(f_field, boundary_indices(filled), sigma_vox))
    walls = wall_indices(solid, voids)
    if walls.size == 0:
        return rough_outer, 0.0
    # smoothed S = smoothed F - smoothed voids, the latter on the voids' box only
    box = mask_box(voids)
    reach = _gauss_reach(sigma_vox) + 2
    lo = np.maximum(box[0] - reach, 0)
    hi = np.minimum(box[1] + reach, filled.shape)
    s_field = f_field.copy()
    s_field[_box(lo, hi)] -= smoothed(voids[_box(lo, hi)], sigma_vox)
    rough_inner = centred_rms(_iso_distance_at(s_field, walls, sigma_vox))
    return rough_outer, rough_inner


# --------------------------------------------------------------------------------------------
# moments and orientation
# --------------------------------------------------------------------------------------------


def moments(mask: NDArray[np.bool_]) -> tuple[int, NDArray[np.float64], NDArray[np.float64]]:
    """Voxel count, centroid (z, y, x) and covariance (ddof = 0, z-y-x order), in index units.

    From the three 2D projections of the mask (exact integer sums in float64), which avoids
    materialising every voxel's coordinates.
    """
    nz, ny, nx = mask.shape
    cz, cy, cx = (nz - 1) / 2.0, (ny - 1) / 2.0, (nx - 1) / 2.0
    z = np.arange(nz, dtype=np.float64) - cz
    y = np.arange(ny, dtype=np.float64) - cy
    x = np.arange(nx, dtype=np.float64) - cx
    p_zy = mask.sum(axis=2, dtype=np.int64).astype(np.float64)
    p_zx = mask.sum(axis=1, dtype=np.int64).astype(np.float64)
    p_yx = mask.sum(axis=0, dtype=np.int64).astype(np.float64)
    n = float(p_zy.sum())
    pz, py, px = p_zy.sum(axis=1), p_zy.sum(axis=0), p_zx.sum(axis=0)
    mean = np.array([z @ pz, y @ py, x @ px]) / n
    second = np.empty((3, 3))
    second[0, 0] = (z * z) @ pz
    second[1, 1] = (y * y) @ py
    second[2, 2] = (x * x) @ px
    second[0, 1] = second[1, 0] = z @ p_zy @ y
    second[0, 2] = second[2, 0] = z @ p_zx @ x
    second[1, 2] = second[2, 1] = y @ p_yx @ x
    cov = second / n - np.outer(mean, mean)
    return int(n), mean + np.array([cz, cy, cx]), cov


def principal_axes(
    cov_xyz: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Eigenvalues (descending) and rotation R (axes as columns) of an (x, y, z) covariance.

    Signs follow SCIENCE.md §5: the largest-magnitude component of e1 and of e2 is positive,
    e3 = e1 x e2 so that det R = +1.
    """
    evals, evecs = np.linalg.eigh(cov_xyz)
    order = np.argsort(evals)[::-1]
    evals = np.clip(evals[order], 0.0, None)
    e1 = evecs[:, order[0]]
    e2 = evecs[:, order[1]]
    e1 = e1 * np.sign(e1[np.argmax(np.abs(e1))])
    e2 = e2 * np.sign(e2[np.argmax(np.abs(e2))])
    e3 = np.cross(e1, e2)
    return evals, np.column_stack([e1, e2, e3])


def euler_zyx_deg(rotation: NDArray[np.float64]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees with R = Rz(yaw) Ry(pitch) Rx(roll)."""
    import warnings

    from scipy.spatial.transform import Rotation

    with warnings.catch_warnings():
        # gimbal lock (pitch = +-90 deg) only makes the split between yaw and roll arbitrary
        warnings.simplefilter("ignore", UserWarning)
        yaw, pitch, roll = Rotation.from_matrix(rotation).as_euler("ZYX", degrees=True)
    return float(yaw), float(pitch), float(roll)


# --------------------------------------------------------------------------------------------
# damage
# --------------------------------------------------------------------------------------------


#: Half-width of the intact-level window, in robust standard deviations (:func:`intact_level`).
_INTACT_WINDOW_SIGMAS = 2.0
#: Iterations of the intact-level window (it converges in 2-4 on particles).
_INTACT_MAX_ITER = 8
#: MAD of a normal distribution in standard deviations (Phi^-1(3/4)).
_MAD_SIGMA = 0.6744897501960817


def _median_in_place(values: NDArray[np.floating]) -> tuple[float, NDArray[np.floating]]:
    """(median, upper part): ``np.median(values)`` by partitioning ``values`` in place (no
    copy); the upper part is the view ``values[n // 2:]``, which holds every value above the
    median. Empty input gives NaN."""
    n = values.size
    if n == 0:
        return math.nan, values
    k = n // 2
    if n % 2:
        values.partition(k)
        return float(values[k]), values[k:]
    values.partition((k - 1, k))
    return float((values[k - 1] + values[k]) / 2), values[k:]


def intact_level(values: NDArray[np.float64]) -> float:
    """Grey level of a particle's intact solid from its core values, robust to its cracks.

    Crack voxels and their blur form a one-sided tail below the solid's level, which pulls the
    median down (by about a quarter of the noise sigma when a sixth of the core is crack halo,
    more for noisier particles). Here: the spread is the MAD of the upper half about the median
    (``sigma = median(v - m | v > m) / 0.6745``, which the lower tail does not reach), then the
    mean over the symmetric window ``|v - ref| < 2 sigma`` is iterated from the median. For
    symmetric noise the window mean is unbiased, and the tail beyond 2 sigma below no longer
    counts. Falls back to the median when the spread is 0. Reorders ``values``.
    """
    ref, upper = _median_in_place(values)
    above = upper[upper > ref]
    if above.size == 0:
        return ref
    half_width = _INTACT_WINDOW_SIGMAS * _median_in_place(above - ref)[0] / _MAD_SIGMA
    if not half_width > 0:
        return ref
    return float(window_mean(values, ref, half_width, _INTACT_MAX_ITER, 1e-3 * half_width))


def partial_volume_damage(
    core_values: NDArray,
    matrix_values: NDArray,
    n_filled: int,
    void_level: float | None,
) -> float:
    """Crack volume fraction of F from grey values, with partial-volume correction.

    ``D = sum_{x in C} (ref - v(x)) / (ref - v_void) / |F|`` over the core ``C`` of F (the
    caller passes ``core_values`` = v over the voxels deeper than the damage margin, ``EDT(F) >
    margin``, so the blur across F's outer surface never counts as crack); ``ref`` = the intact
    solid level of C (:func:`intact_level`: a window mean robust to the crack's tail);
    ``v_void`` = ``void_level``, or else the median of the finite ``matrix_values`` (the matrix
    around the particle: cracks are taken to hold what the pores hold). Each voxel counts the
    fraction of it that is void, without clipping, so noise averages out; cracks in the outer
    shell are not counted, hence D is a lower bound when cracks reach the surface. NaN for an
    empty core, no matrix sample, or no contrast (``ref <= v_void``).
    """
    if core_values.size == 0 or n_filled == 0:
        return math.nan
    if void_level is None:
        sample = matrix_values[np.isfinite(matrix_values)]
        if sample.size == 0:
            return math.nan
        void = _median_in_place(sample)[0]
    else:
        void = float(void_level)
    values = core_values.astype(np.float64)
    ref = intact_level(values)
    contrast = ref - void
    if not contrast > 0:
        return math.nan
    return float(np.sum(ref - values) / contrast / n_filled)


# --------------------------------------------------------------------------------------------
# one particle
# --------------------------------------------------------------------------------------------


def _orientation(
    filled: NDArray[np.bool_], box_origin_vox: NDArray[np.float64], s: float
) -> dict[str, float | int | bool]:
    """Position (centroid of F) and orientation of F's principal axes, in um and degrees."""
    n_filled, mean_zyx, cov_zyx = moments(filled)
    centroid_zyx = (mean_zyx + box_origin_vox) * s
    out: dict[str, float | int | bool] = {
        "X": float(centroid_zyx[2]),
        "Y": float(centroid_zyx[1]),
        "Z": float(centroid_zyx[0]),
        "n_filled": n_filled,
    }
    if n_filled >= 4:
        evals, rot = principal_axes(cov_zyx[::-1, ::-1] * s * s)
        out["Yaw"], out["Pitch"], out["Roll"] = euler_zyx_deg(rot)
        out["Elongation"] = math.sqrt(evals[0] / evals[2]) if evals[2] > 0 else math.inf
        out["near_spherical"] = bool(evals[0] > 0 and evals[2] / evals[0] > 0.9)
    else:
        out["Yaw"] = out["Pitch"] = out["Roll"] = out["Elongation"] = math.nan
        out["near_spherical"] = False
    return out


def _chemistry(
    label: int, solid: NDArray[np.bool_], volume: NDArray[np.floating], erode: bool
) -> dict[str, float]:
    """EDensity, its standard deviation and Homogeneity over S (or S eroded by one voxel)."""
    support = solid
    if erode:
        eroded = erode_ball(solid, 1.0)  # the ball of radius 1 is the 6-neighbourhood
        if eroded.any():
            support = eroded
        else:
            logger.debug("label %d: erosion by one voxel leaves nothing; using S", label)
    values = volume[support].astype(np.float64)
    std = float(values.std())
    return {
        "EDensity": float(values.mean()),
        "EDensityStd": std,
        "Homogeneity": 1.0 / std if std > 0 else math.inf,
    }


def _damage(
    filled: NDArray[np.bool_],
    unpad: tuple[slice, ...],
    box: tuple[slice, ...],
    codes: NDArray[np.uint8],
    filled_crop: NDArray[np.bool_],
    volume: NDArray[np.floating],
    n_filled: int,
    params: LocalParams,
) -> float:
    """Grey-value Damage: core of F (on F's padded box) and the matrix sample (on the crop)."""
    core = erode_ball(filled, params.damage_margin_vox)[unpad]
    matrix = ~dilate_ball((codes != BACKGROUND) | filled_crop, params.damage_margin_vox)
    return partial_volume_damage(volume[box][core], volume[matrix], n_filled, params.void_level)


def _contact(
    codes: NDArray[np.uint8],
    filled_crop: NDArray[np.bool_],
    box_lo: NDArray[np.int64],
    box_hi: NDArray[np.int64],
    gap_vox: float,
) -> float:
    """Fraction of F's boundary voxels within ``gap_vox`` of another particle (on F's box + gap)."""
    others = codes == OTHER
    if not others.any():
        return 0.0
    reach = math.ceil(gap_vox)
    lo = np.maximum(box_lo - reach, 0)
    hi = np.minimum(box_hi + reach, codes.shape)
    sub_others = others[_box(lo, hi)]
    if not sub_others.any():
        return 0.0
    near_other = dilate_ball(sub_others, gap_vox)
    boundary = boundary_indices(filled_crop[_box(lo, hi)])
    return float(np.mean(near_other.ravel()[boundary]))


def local_attributes(
    label: int,
    codes: NDArray[np.uint8],
    volume_crop: NDArray[np.floating],
    origin_vox: tuple[int, int, int],
    params: LocalParams,
) -> dict[str, float | int | bool]:
    """Attributes of one particle from its padded crop.

    Parameters
    ----------
    label : int
        The particle's label.
    codes : ndarray of uint8, shape (nz, ny, nx)
        :data:`SELF` for the particle's voxels, :data:`OTHER` for other particles', else
        :data:`BACKGROUND`; padded by ``params.pad_vox`` (background where the padding leaves
        the volume).
    volume_crop : ndarray, shape (nz, ny, nx)
        Grey values on the same crop, NaN where it leaves the volume (or the block).
    origin_vox : tuple of int
        Full-volume (z, y, x) index of ``codes[0, 0, 0]``.
    params : LocalParams
        Parameters in voxel units.

    Returns
    -------
    dict
        The local Table S1 columns plus ``DamageVoxels``, ``EDensityStd``, ``n_voxels``,
        ``near_spherical``.
    """
    s = params.voxel_size_um
    solid_crop = codes == SELF
    filled_crop = close_and_fill(solid_crop, params.r_close_vox)

    # F's bounding box with a 2-voxel background margin (gradients of the smoothed fields)
    box_lo, box_hi = mask_box(filled_crop)
    lo = np.maximum(box_lo - 2, 0)
    hi = np.minimum(box_hi + 2, filled_crop.shape)
    pad_lo = 2 - (box_lo - lo)
    pad = tuple((int(a), int(2 - (b - c))) for a, b, c in zip(pad_lo, hi, box_hi, strict=True))
    filled = np.pad(filled_crop[_box(lo, hi)], pad)
    solid = np.pad(solid_crop[_box(lo, hi)], pad)
    voids = filled & ~solid
    n_solid = int(np.count_nonzero(solid))

    row: dict[str, float | int | bool] = {"label": int(label)}
    row |= _orientation(filled, np.asarray(origin_vox, dtype=np.float64) + lo - pad_lo, s)
    n_filled = int(row.pop("n_filled"))
    row |= _chemistry(label, solid_crop, volume_crop, params.erode_edensity)

    # structure
    volume_um3 = n_filled * s**3
    row["Volume"] = float(volume_um3)
    row["DamageVoxels"] = (n_filled - n_solid) / n_filled
    row["Damage"] = _damage(
        filled,
        _box(pad_lo, pad_lo + (hi - lo)),
        _box(lo, hi),
        codes,
        filled_crop,
        volume_crop,
        n_filled,
        params,
    )
    area_outer, area_inner = surface_areas(filled, voids, params.smooth_sigma_vox)
    area_outer *= s**2
    area_inner = max(area_inner * s**2, 0.0)
    if area_outer > 0:
        row["Sphericity"] = 36.0 * math.pi * volume_um3**2 / area_outer**3
        row["VSratio"] = volume_um3 ** (1.0 / 3.0) / math.sqrt(area_outer + area_inner)
    else:
        area_outer = row["Sphericity"] = row["VSratio"] = math.nan
    row["SurfaceOuter"] = float(area_outer)
    row["SurfaceInner"] = float(area_inner)
    rough_outer, rough_inner = roughness(filled, solid, voids, params.roughness_sigma_vox)
    row["RoughOuter"] = rough_outer * s
    row["RoughInner"] = rough_inner * s

    # local morphology
    row["Contact"] = _contact(codes, filled_crop, box_lo, box_hi, params.contact_gap_vox)
    row["n_voxels"] = n_solid
    return row
