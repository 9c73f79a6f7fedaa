"""Synthetic multilayer NMC811 composite cathode with known ground truth.

The phantom mimics the electrodes of Li et al., Science 376, 517 (2022) (SCIENCE.md §0): 10 µm
polycrystalline NMC811 secondary particles at ≈ 40 vol %, a 50 % porous carbon-binder (CB) matrix
filled with electrolyte, on an aluminium current collector, prepared as a cylindrical pillar so
that tomography of it is not truncated. Every particle carries intergranular cracks whose volume
fraction was planted from a documented function of the particle's attributes
(:func:`planted_damage`), which is the known right answer of the analysis stage.

Conventions
-----------
* Array axes (z, y, x); z is the electrode normal: the collector at low z, the separator side at
  high z. Voxel (k, j, i) sits at (z, y, x) = (k, j, i) · ``voxel_size_um`` µm; the attribute X is
  along the last axis.
* Material codes (``Electrode.material``): 0 air, 1 electrolyte (pores and cracks),
  2 carbon-binder, 3 NMC, 4 aluminium (:data:`MATERIAL_NAMES`).
* ``filled_labels`` is each particle including its cracks, ``labels`` its solid voxels only,
  ``crack_mask = filled_labels > 0 & labels == 0``; Damage = crack voxels / filled voxels.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage, signal
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from .materials import Material, load_materials, mix_by_mass

logger = logging.getLogger(__name__)

__all__ = [
    "AIR",
    "ALUMINIUM",
    "CARBON_BINDER",
    "DamageModel",
    "Electrode",
    "ELECTROLYTE",
    "MATERIAL_NAMES",
    "NMC",
    "electrode",
    "planted_damage",
]

#: Material codes of ``Electrode.material``; ``MATERIAL_NAMES[code]`` is the name.
AIR, ELECTROLYTE, CARBON_BINDER, NMC, ALUMINIUM = 0, 1, 2, 3, 4
MATERIAL_NAMES = ("air", "electrolyte", "carbon_binder", "NMC811", "Al")

#: Materials the phantom needs from the table.
_REQUIRED_MATERIALS = ("NMC811", "carbon", "PVDF", "electrolyte", "Al")

# Fixed modelling constants (documented in ``electrode``'s Notes and recorded in ``meta``).
_PACK_OVERLAP = 0.03  # allowed overlap, fraction of the sum of the two surface radii
_N_ROUGH_WAVES = 8  # plane waves on the unit sphere that make the radial roughness
_ROUGH_WAVENUMBER = (2.0, 5.0)  # their angular wavenumber range (low-order: l ≈ 2..5)
_DIAMETER_CLIP = (0.5, 2.0)  # lognormal diameters truncated to this range x mean
_EPS_SD, _EPS_CLIP = 0.02, 0.06  # per-particle density variation: N(0, 0.02), clipped ±6 %
_TEXTURE_AMPLITUDE = 0.01  # intra-particle texture ≤ 1 %
_MATRIX_SIGMA_UM = 0.4  # smoothing of the matrix texture: CB/pore domains of ≈ 1 µm
_FRAGMENT_MIN = 0.10  # particles cut to < 10 % of their volume (or < 8 voxels) are dropped
_CRACK_THICKNESS_VOX = (1.0, 2.0)  # crack sheet thickness range, voxels
_MAX_SHEETS = 200


@dataclass(frozen=True)
class DamageModel:
    """Coefficients of the planted per-particle damage (crack volume fraction).

    For a particle with normalised depth zn (0 at the collector, 1 at the separator side), volume
    ratio Vn = V / median(V), contact fraction C and local packing P::

        η = b0 + b_z (zn − 0.5) + b_v ln Vn + b_c (C − mean C) + b_p (P − mean P) + σ ε,
        D = d_max / (1 + exp(−η)),     ε ~ N(0, 1),

    so D ∈ (0, d_max) and logit(D / d_max) = η. Each coefficient is given at the two
    ``anchor_cycles`` (default 10 and 50 cycles) and interpolated linearly in ln(cycles) (and
    extrapolated the same way outside them); zero cycles means a pristine electrode (D = 0).
    The defaults make the 50-cycle electrode more damaged, with stronger depth (separator side
    worse), size and contact effects, and a weak protective effect of dense local packing.

    Parameters
    ----------
    anchor_cycles : (float, float)
        Cycle numbers at which the coefficient pairs hold; distinct, >= 1.
    b0, b_z, b_v, b_c, b_p : (float, float)
        Intercept and slopes (per unit zn, ln Vn, C, P) at the two anchors.
    sigma : float
        Standard deviation of the particle-level noise on η; >= 0.
    d_max : float
        Upper bound of the crack fraction; in (0, 1).
    """

    anchor_cycles: tuple[float, float] = (10.0, 50.0)
    b0: tuple[float, float] = (-3.2, -2.2)
    b_z: tuple[float, float] = (0.8, 2.0)
    b_v: tuple[float, float] = (0.5, 0.8)
    b_c: tuple[float, float] = (0.5, 1.5)
    b_p: tuple[float, float] = (-0.5, -0.5)
    sigma: float = 0.3
    d_max: float = 0.35

    def __post_init__(self) -> None:
        for name in ("anchor_cycles", "b0", "b_z", "b_v", "b_c", "b_p"):
            v = getattr(self, name)
            if (
                not isinstance(v, tuple | list)
                or len(v) != 2
                or not all(isinstance(x, Real) and math.isfinite(x) for x in v)
            ):
                raise ValueError(f"DamageModel.{name}: expected two finite numbers; got {v!r}")
        c0, c1 = self.anchor_cycles
        if c0 < 1 or c1 < 1 or c0 == c1:
            raise ValueError(
                f"DamageModel.anchor_cycles: expected two distinct cycle numbers >= 1; "
                f"got {self.anchor_cycles!r}"
            )
        if not (isinstance(self.sigma, Real) and math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(
                f"DamageModel.sigma: expected a finite number >= 0; got {self.sigma!r}"
            )
        if not (isinstance(self.d_max, Real) and 0 < self.d_max < 1):
            raise ValueError(f"DamageModel.d_max: expected a number in (0, 1); got {self.d_max!r}")

    def coefficients(self, cycles: float) -> dict[str, float]:
        """Coefficients at ``cycles`` (>= 1), interpolated linearly in ln(cycles).

        Examples
        --------
        >>> m = DamageModel()
        >>> m.coefficients(10)["b0"], m.coefficients(50)["b_z"]
        (-3.2, 2.0)
        >>> round(m.coefficients(math.sqrt(500))["b0"], 6)  # geometric mean of 10 and 50
        -2.7
        """
        if not isinstance(cycles, Real) or not math.isfinite(cycles) or cycles < 1:
            raise ValueError(f"cycles: expected a number >= 1; got {cycles!r}")
        c0, c1 = self.anchor_cycles
        t = (math.log(cycles) - math.log(c0)) / (math.log(c1) - math.log(c0))
        out = {
            k: float(v0 + t * (v1 - v0))
            for k in ("b0", "b_z", "b_v", "b_c", "b_p")
            for v0, v1 in [getattr(self, k)]
        }
        out["sigma"] = float(self.sigma)
        out["d_max"] = float(self.d_max)
        return out


@dataclass(frozen=True, eq=False)
class Electrode:
    """A synthetic electrode volume and its ground truth.

    Attributes
    ----------
    labels : ndarray, (nz, ny, nx), uint32
        Solid particle voxels: 0 background (including crack voxels), particle ids 1..n.
    filled_labels : ndarray, (nz, ny, nx), uint32
        The particles including their cracks.
    crack_mask : ndarray, (nz, ny, nx), bool
        Crack voxels, ``(filled_labels > 0) & (labels == 0)``.
    material : ndarray, (nz, ny, nx), uint8
        0 air, 1 electrolyte (pores, cracks), 2 carbon-binder, 3 NMC, 4 aluminium.
    delta, beta : ndarray, (nz, ny, nx), float32
        Refractive-index decrement and absorption index at ``meta["energy_keV"]``.
    particles : pandas.DataFrame
        One row per particle (column ``label`` = id); see :func:`electrode`.
    meta : dict
        Every parameter, the damage-model coefficients, counts, achieved fractions and the δ/β
        used per material.
    """

    labels: NDArray[np.uint32]
    filled_labels: NDArray[np.uint32]
    crack_mask: NDArray[np.bool_]
    material: NDArray[np.uint8]
    delta: NDArray[np.float32]
    beta: NDArray[np.float32]
    particles: pd.DataFrame
    meta: dict[str, Any]

    @property
    def sample_mask(self) -> NDArray[np.bool_]:
        """Voxels that are sample (pillar and not air): ``material != 0``."""
        return self.material != AIR

    @property
    def n_particles(self) -> int:
        """Number of particles (labels run 1..n_particles)."""
        return len(self.particles)


# --------------------------------------------------------------------------------------------
# planted damage
# --------------------------------------------------------------------------------------------

_DAMAGE_COLUMNS = ("depth_norm", "volume_um3", "contact", "local_packing")


def planted_damage(
    table: pd.DataFrame,
    cycles: int,
    rng: np.random.Generator | int,
    *,
    model: DamageModel | None = None,
) -> NDArray[np.float64]:
    """Target crack fraction of each particle from its intact attributes (the planted truth).

    ``logit(D / d_max) = b0 + b_z (zn − 0.5) + b_v ln(V / median V) + b_c (C − mean C)
    + b_p (P − mean P) + σ N(0, 1)`` with the coefficients of ``model`` at ``cycles``
    (:class:`DamageModel`).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per particle with columns ``depth_norm`` (zn = (Z − z_min) / thickness of the
        electrode layer, in [0, 1], 1 = separator side), ``volume_um3`` (> 0), ``contact`` (share
        of surface voxels touching another particle, [0, 1]) and ``local_packing`` (active
        fraction around the centroid, [0, 1]).
    cycles : int
        Number of cycles, >= 0; 0 returns zeros (pristine).
    rng : numpy.random.Generator or int
        Source of the particle-level noise (an int seeds ``default_rng``).
    model : DamageModel, optional
        Coefficients; default ``DamageModel()``.

    Returns
    -------
    ndarray, (n,), float64
        Target crack fraction per row, in [0, d_max).

    Examples
    --------
    >>> t = pd.DataFrame({"depth_norm": [0.1, 0.9], "volume_um3": [500.0, 500.0],
    ...                   "contact": [0.1, 0.1], "local_packing": [0.4, 0.4]})
    >>> d = planted_damage(t, 50, 0, model=DamageModel(sigma=0.0))
    >>> round(float(d[0]), 4), round(0.35 / (1 + math.exp(3.0)), 4)  # η = -2.2 + 2.0 (0.1 - 0.5)
    (0.0166, 0.0166)
    >>> bool(d[1] > d[0])
    True
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table: expected a pandas DataFrame; got {type(table).__name__}")
    missing = [c for c in _DAMAGE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"table: missing column(s) {missing}; expected {list(_DAMAGE_COLUMNS)}, "
            f"got {list(table.columns)}"
        )
    if isinstance(cycles, bool) or not isinstance(cycles, Integral) or cycles < 0:
        raise ValueError(f"cycles: expected an int >= 0; got {cycles!r}")
    model = DamageModel() if model is None else model
    if not isinstance(model, DamageModel):
        raise TypeError(f"model: expected a DamageModel; got {type(model).__name__}")
    if not isinstance(rng, np.random.Generator):
        if isinstance(rng, bool) or not isinstance(rng, Integral):
            raise TypeError(f"rng: expected a numpy Generator or an int seed; got {rng!r}")
        rng = np.random.default_rng(int(rng))
    cols = {c: table[c].to_numpy(dtype=np.float64) for c in _DAMAGE_COLUMNS}
    for c, v in cols.items():
        if not np.all(np.isfinite(v)):
            raise ValueError(f"table[{c!r}]: expected finite values; found NaN or inf")
    n = len(table)
    if n == 0 or cycles == 0:
        return np.zeros(n, dtype=np.float64)
    if np.any(cols["volume_um3"] <= 0):
        raise ValueError("table['volume_um3']: expected volumes > 0 µm³")
    k = model.coefficients(int(cycles))
    vn = cols["volume_um3"] / np.median(cols["volume_um3"])
    eta = (
        k["b0"]
        + k["b_z"] * (cols["depth_norm"] - 0.5)
        + k["b_v"] * np.log(vn)
        + k["b_c"] * (cols["contact"] - cols["contact"].mean())
        + k["b_p"] * (cols["local_packing"] - cols["local_packing"].mean())
        + k["sigma"] * rng.standard_normal(n)
    )
    return k["d_max"] / (1.0 + np.exp(-eta))


# --------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------


def _real(value: Any, name: str, lo: float, hi: float, *, lo_open: bool, hi_open: bool = False):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected a real number; got {type(value).__name__} {value!r}")
    x = float(value)
    ok = math.isfinite(x) and (x > lo if lo_open else x >= lo) and (x < hi if hi_open else x <= hi)
    if not ok:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ValueError(f"{name}: expected a finite number in {lb}{lo}, {hi}{rb}; got {value!r}")
    return x


def _int(value: Any, name: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}: expected an int; got {type(value).__name__} {value!r}")
    if value < lo:
        raise ValueError(f"{name}: expected an int >= {lo}; got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# particle geometry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shapes:
    """Per-particle geometry (n particles), lengths in µm, vectors in (x, y, z)."""

    semi_axes: NDArray[np.float64]  # (n, 3) a >= b >= c
    rot: NDArray[np.float64]  # (n, 3, 3), columns = body axes (major first) in xyz
    omega: NDArray[np.float64]  # (n, K, 3) roughness wave vectors
    phase: NDArray[np.float64]  # (n, K)
    amp: NDArray[np.float64]  # (n,) amplitude per wave
    offset: NDArray[np.float64]  # (n, K) mean-removal terms cos(phase) sinc|omega|
    rough_bound: NDArray[np.float64]  # (n,) bound of |δr|
    half_extent: NDArray[np.float64]  # (n, 3) half-extent along x, y, z incl. roughness


def _fibonacci_sphere(n: int) -> NDArray[np.float64]:
    i = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * i / n)
    azim = np.pi * (1 + 5**0.5) * i
    return np.stack(
        [np.cos(azim) * np.sin(polar), np.sin(azim) * np.sin(polar), np.cos(polar)], axis=1
    )


def _draw_shapes(
    diam_um: NDArray[np.float64], *, max_aspect: float, roughness_um: float, rng
) -> _Shapes:
    n = len(diam_um)
    r = diam_um / 2
    aspect = rng.uniform(1.0, max_aspect, n)
    semi = np.stack([r * np.sqrt(aspect), r, r / np.sqrt(aspect)], axis=1)  # abc = r³
    rot = Rotation.random(n, rng=rng).as_matrix() if n else np.zeros((0, 3, 3))
    # sign convention of SCIENCE.md §5: largest component of e1 and e2 positive, e3 = e1 × e2
    for col in (0, 1):
        v = rot[:, :, col]
        big = v[np.arange(n), np.argmax(np.abs(v), axis=1)]
        rot[:, :, col] = v * np.where(big < 0, -1.0, 1.0)[:, None]
    rot[:, :, 2] = np.cross(rot[:, :, 0], rot[:, :, 1])

    k = _N_ROUGH_WAVES
    dirs = rng.standard_normal((n, k, 3))
    dirs /= np.linalg.norm(dirs, axis=2, keepdims=True)
    kmag = rng.uniform(*_ROUGH_WAVENUMBER, (n, k))
    omega = dirs * kmag[..., None]
    phase = rng.uniform(0, 2 * np.pi, (n, k))
    amp = np.full(n, roughness_um * math.sqrt(2.0 / k))  # RMS of δr over directions ≈ roughness
    offset = np.cos(phase) * np.sin(kmag) / kmag  # sphere average of cos(ω·u + φ)
    # bound of |δr|: max on 768 directions + Lipschitz constant × half the sample spacing
    u = _fibonacci_sphere(768)
    dr = _rough_dr(u, omega, phase, amp, offset)  # (n, 768)
    lip = amp * kmag.sum(axis=1)
    bound = np.abs(dr).max(axis=1, initial=0.0) + lip * 0.5 * math.sqrt(4 * math.pi / 768)
    # ellipsoid half-extent along world axis m: sqrt(Σ_k (R[m, k] a_k)²)
    half = np.sqrt(np.einsum("nmk,nk->nm", rot**2, semi**2)) + bound[:, None]
    return _Shapes(semi, rot, omega, phase, amp, offset, bound, half)


def _rough_dr(u, omega, phase, amp, offset):
    """Radial perturbation δr(u) in µm for unit vectors u (..., 3) of n particles.

    ``u`` is (m, 3) and the wave arrays are (n, K, 3), (n, K), (n,), (n, K); returns (n, m).
    """
    arg = np.einsum("md,nkd->nmk", u, omega) + phase[:, None, :]
    return amp[:, None] * (np.cos(arg) - offset[:, None, :]).sum(axis=2)


def _surface_radius(shapes: _Shapes, idx: NDArray[np.intp], u: NDArray[np.float64]):
    """Distance from the centre of particle ``idx[p]`` to its surface along unit vector ``u[p]``."""
    body = np.einsum("pmk,pm->pk", shapes.rot[idx], u)
    q = np.sum((body / shapes.semi_axes[idx]) ** 2, axis=1)
    arg = np.einsum("pd,pkd->pk", u, shapes.omega[idx]) + shapes.phase[idx]
    dr = shapes.amp[idx] * (np.cos(arg) - shapes.offset[idx]).sum(axis=1)
    return np.maximum(1.0 / np.sqrt(q) + dr, 0.5 / np.sqrt(q))


def _shape_s(shapes: _Shapes, p: int, dx, dy, dz) -> NDArray[np.float32]:
    """Normalised radial coordinate s = |d| / r_surface(d̂) of particle p (s <= 1 inside).

    ``dx, dy, dz`` are broadcastable float32 displacement arrays in µm from the particle centre;
    the result is float32 with their broadcast shape.
    """
    # coefficients as Python floats keep the arithmetic in float32 (NEP 50)
    cm = (shapes.rot[p] / shapes.semi_axes[p][None, :]).tolist()  # b_k / a_k = Σ_m cm[m][k] d_m
    q = np.zeros(np.broadcast_shapes(np.shape(dx), np.shape(dy), np.shape(dz)), np.float32)
    for k in range(3):
        b = cm[0][k] * dx + cm[1][k] * dy + cm[2][k] * dz
        q += b * b
    sq = np.sqrt(q, out=q)  # = |d| / r_ellipsoid(d̂)
    amp = float(shapes.amp[p])
    if amp == 0:
        return sq
    inv = np.sqrt(dx * dx + dy * dy + dz * dz)
    np.maximum(inv, 1e-6, out=inv)
    np.divide(1.0, inv, out=inv)
    ux, uy, uz = dx * inv, dy * inv, dz * inv
    dr = np.zeros_like(sq)
    arg = np.empty_like(sq)
    for (o0, o1, o2), ph in zip(shapes.omega[p].tolist(), shapes.phase[p].tolist(), strict=True):
        np.add(o0 * ux + o1 * uy, o2 * uz, out=arg)
        arg += ph
        dr += np.cos(arg, out=arg)
    dr -= float(shapes.offset[p].sum())
    dr *= amp
    # r_surface = r_ell + δr, floored at r_ell / 2  =>  s = sq / max(1 + δr sq / |d|, 0.5)
    dr *= sq
    dr *= inv
    dr += 1.0
    np.maximum(dr, 0.5, out=dr)
    return sq / dr


# --------------------------------------------------------------------------------------------
# packing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Domain:
    """Where particle centres may lie (µm, xyz)."""

    pillar: bool
    centre_xy: tuple[float, float]
    radius_um: float  # pillar radius (if pillar)
    box_xy: tuple[tuple[float, float], tuple[float, float]]  # lateral box (if not pillar)
    z_bottom_um: float  # electrode bottom face (collector top)
    z_top_um: float  # top face of the volume
    ext_um: float  # how far centres may lie beyond the lateral/top faces

    def sample(self, n: int, rng) -> NDArray[np.float64]:
        z = rng.uniform(self.z_bottom_um, self.z_top_um + self.ext_um, n)
        if self.pillar:
            rad = (self.radius_um + self.ext_um) * np.sqrt(rng.uniform(0, 1, n))
            ang = rng.uniform(0, 2 * np.pi, n)
            x = self.centre_xy[0] + rad * np.cos(ang)
            y = self.centre_xy[1] + rad * np.sin(ang)
        else:
            (x0, x1), (y0, y1) = self.box_xy
            x = rng.uniform(x0 - self.ext_um, x1 + self.ext_um, n)
            y = rng.uniform(y0 - self.ext_um, y1 + self.ext_um, n)
        return np.stack([x, y, z], axis=1)

    def clamp(self, pos: NDArray[np.float64], half_z: NDArray[np.float64]) -> None:
        if self.pillar:
            cx, cy = self.centre_xy
            dx, dy = pos[:, 0] - cx, pos[:, 1] - cy
            rad = np.hypot(dx, dy)
            lim = self.radius_um + self.ext_um
            f = np.where(rad > lim, lim / np.maximum(rad, 1e-12), 1.0)
            pos[:, 0] = cx + dx * f
            pos[:, 1] = cy + dy * f
        else:
            (x0, x1), (y0, y1) = self.box_xy
            np.clip(pos[:, 0], x0 - self.ext_um, x1 + self.ext_um, out=pos[:, 0])
            np.clip(pos[:, 1], y0 - self.ext_um, y1 + self.ext_um, out=pos[:, 1])
        lo = self.z_bottom_um + half_z
        hi = np.maximum(lo, self.z_top_um + self.ext_um)
        np.clip(pos[:, 2], lo, hi, out=pos[:, 2])

    def contains(self, pts: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Whether points (..., 3) in µm (xyz) lie in the electrode layer itself."""
        z = pts[..., 2]
        ok = (z >= self.z_bottom_um) & (z <= self.z_top_um)
        if self.pillar:
            r = np.hypot(pts[..., 0] - self.centre_xy[0], pts[..., 1] - self.centre_xy[1])
            return ok & (r <= self.radius_um)
        (x0, x1), (y0, y1) = self.box_xy
        x, y = pts[..., 0], pts[..., 1]
        return ok & (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)

    def centre_volume(self) -> float:
        height = self.z_top_um + self.ext_um - self.z_bottom_um
        if self.pillar:
            return math.pi * (self.radius_um + self.ext_um) ** 2 * height
        (x0, x1), (y0, y1) = self.box_xy
        return (x1 - x0 + 2 * self.ext_um) * (y1 - y0 + 2 * self.ext_um) * height


def _relax(
    pos: NDArray[np.float64], shapes: _Shapes, domain: _Domain, *, max_iter: int = 400
) -> tuple[int, float]:
    """Push overlapping particles apart (in place) until overlaps ≤ the allowed few %.

    Pairs closer than (ρ_i(u) + ρ_j(−u)) (1 − overlap), with ρ the surface radius along the
    centre line u, move apart symmetrically. Returns (iterations, final max excess overlap µm).
    """
    n = len(pos)
    reach = shapes.semi_axes[:, 0] + shapes.rough_bound
    cutoff = 2 * float(reach.max()) if n else 0.0
    tol = 0.01 * float(np.median(shapes.semi_axes[:, 1])) if n else 0.0
    worst = 0.0
    steps = 0
    while steps < max_iter:
        steps += 1
        pairs = cKDTree(pos).query_pairs(cutoff, output_type="ndarray")
        if len(pairs) == 0:
            worst = 0.0
            break
        i, j = pairs[:, 0], pairs[:, 1]
        # cheap pre-filter with the bounding radii
        d = pos[j] - pos[i]
        dist = np.linalg.norm(d, axis=1)
        near = dist < reach[i] + reach[j]
        i, j, d, dist = i[near], j[near], d[near], dist[near]
        u = d / np.maximum(dist, 1e-9)[:, None]
        target = (_surface_radius(shapes, i, u) + _surface_radius(shapes, j, -u)) * (
            1 - _PACK_OVERLAP
        )
        excess = target - dist
        hit = excess > tol
        worst = float(excess.max(initial=0.0))
        if not hit.any():
            break
        push = 0.5 * (excess[hit] + 0.5 * tol)[:, None] * u[hit]
        disp = np.zeros_like(pos)
        np.add.at(disp, i[hit], -push)
        np.add.at(disp, j[hit], push)
        pos += disp
        domain.clamp(pos, shapes.half_extent[:, 2])
    return steps, worst


def _coverage(
    pos: NDArray[np.float64],
    shapes: _Shapes,
    points: NDArray[np.float64],
    which: NDArray[np.intp],
) -> NDArray[np.bool_]:
    """Whether each point (m, 3) in µm (xyz) lies inside any of the particles ``which``."""
    covered = np.zeros(len(points), bool)
    if len(which) == 0:
        return covered
    tree = cKDTree(points)
    reach = np.max(shapes.half_extent[which], axis=1)
    for p, hits in zip(which, tree.query_ball_point(pos[which], reach), strict=True):
        if not hits:
            continue
        hits = np.asarray(hits)
        hits = hits[~covered[hits]]
        if hits.size == 0:
            continue
        d = points[hits] - pos[p]
        s = _shape_s(shapes, p, d[:, 0], d[:, 1], d[:, 2])
        covered[hits[s <= 1]] = True
    return covered


def _lognormal_diameters(n: int, mean_um: float, cv: float, rng) -> NDArray[np.float64]:
    if cv == 0:
        return np.full(n, mean_um)
    sig2 = math.log1p(cv * cv)
    mu = math.log(mean_um) - sig2 / 2
    out = rng.lognormal(mu, math.sqrt(sig2), n)
    lo, hi = _DIAMETER_CLIP[0] * mean_um, _DIAMETER_CLIP[1] * mean_um
    bad = (out < lo) | (out > hi)
    while bad.any():  # truncated lognormal by rejection
        out[bad] = rng.lognormal(mu, math.sqrt(sig2), int(bad.sum()))
        bad = (out < lo) | (out > hi)
    return out


def _concat_shapes(a: _Shapes, b: _Shapes) -> _Shapes:
    return _Shapes(
        *(np.concatenate([getattr(a, f), getattr(b, f)]) for f in _Shapes.__dataclass_fields__)
    )


def _draw_population(
    n: int, mean_um: float, cv: float, *, max_aspect: float, roughness_um: float, rng
) -> tuple[NDArray[np.float64], _Shapes]:
    d = _lognormal_diameters(n, mean_um, cv, rng)
    return d, _draw_shapes(d, max_aspect=max_aspect, roughness_um=roughness_um, rng=rng)


def _unit_ball_points(step: float = 0.25) -> NDArray[np.float64]:
    g = np.arange(-1 + step / 2, 1, step)
    p = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    return p[np.sum(p * p, axis=1) <= 1]


def _inside_fraction(
    pos: NDArray[np.float64], shapes: _Shapes, domain: _Domain
) -> NDArray[np.float64]:
    """Approximate share of each particle's (smooth ellipsoid) volume inside the real domain."""
    pts = _unit_ball_points()
    world = pos[:, None, :] + np.einsum("nmk,nk,pk->npm", shapes.rot, shapes.semi_axes, pts)
    return domain.contains(world).mean(axis=1)


def _pack(
    domain: _Domain,
    region: NDArray[np.bool_],
    *,
    voxel_size_um: float,
    active_fraction: float,
    mean_volume_um3: float,
    draw,
    rng: np.random.Generator,
    n_mc: int = 20000,
    max_rounds: int = 6,
) -> tuple[NDArray[np.float64], NDArray[np.float64], _Shapes, dict[str, Any]]:
    """Place, relax and densify particles until the NMC fraction of ``region`` is reached.

    ``draw(k)`` returns k new (diameters, shapes). The fraction is estimated by Monte Carlo on
    ``n_mc`` points of ``region``, counting only particles that will survive the fragment rule
    (>= 10 % of their volume inside the domain); particles are added in proportion to the
    deficit and the packing relaxed again, for at most ``max_rounds`` rounds. Returns centres
    (n, 3) in µm (xyz), diameters, shapes and bookkeeping for ``meta``.
    """
    s = voxel_size_um
    n0 = max(1, int(active_fraction * domain.centre_volume() / mean_volume_um3))
    diam, shapes = draw(n0)
    pos = domain.sample(n0, rng)
    domain.clamp(pos, shapes.half_extent[:, 2])
    flat = np.flatnonzero(region)
    kz, ky, kx = np.unravel_index(rng.choice(flat, n_mc), region.shape)
    mc = (np.stack([kx, ky, kz], axis=1) + rng.uniform(-0.5, 0.5, (n_mc, 3))) * s
    steps, phi_est, worst, rounds = 0, 0.0, 0.0, 0
    for rounds in range(1, max_rounds + 1):
        its, worst = _relax(pos, shapes, domain)
        steps += its
        survive = np.flatnonzero(_inside_fraction(pos, shapes, domain) >= _FRAGMENT_MIN)
        phi_est = float(_coverage(pos, shapes, mc, survive).mean())
        logger.debug(
            "packing round %d: %d particles, %d relaxation steps, worst excess overlap "
            "%.3f µm, NMC fraction %.3f",
            rounds,
            len(pos),
            its,
            worst,
            phi_est,
        )
        if phi_est >= active_fraction - 0.003:
            break
        deficit = (active_fraction - phi_est) / max(phi_est, 0.05)
        n_add = max(1, int(math.ceil(deficit * len(pos) * 0.9)))
        d_add, sh_add = draw(n_add)
        p_add = domain.sample(n_add, rng)
        domain.clamp(p_add, sh_add.half_extent[:, 2])
        diam = np.concatenate([diam, d_add])
        shapes = _concat_shapes(shapes, sh_add)
        pos = np.concatenate([pos, p_add])
    info = {
        "packing_rounds": rounds,
        "packing_relaxation_steps": steps,
        "packing_max_excess_overlap_um": worst,
        "active_fraction_estimate_mc": phi_est,
    }
    return pos, diam, shapes, info


def _rasterise(
    pos: NDArray[np.float64],
    shapes: _Shapes,
    region: NDArray[np.bool_],
    mask2d: NDArray[np.bool_],
    *,
    voxel_size_um: float,
) -> tuple[NDArray[np.uint32], NDArray[np.intp], NDArray[np.bool_]]:
    """Voxelise the particles on their bounding-box crops; drop fragments; relabel 1..n.

    A voxel of ``region`` goes to the particle with the smallest normalised radius s <= 1.
    Returns (filled labels, indices of the kept particles, their ``touches_border`` flags).
    """
    s = voxel_size_um
    dims = np.array(region.shape)
    n_packed = len(pos)
    best = np.where(region, np.float32(np.inf), np.float32(-1.0))
    filled = np.zeros(region.shape, np.uint32)
    n_full = np.zeros(n_packed, np.int64)
    truncated = np.zeros(n_packed, bool)
    centre_vox = pos[:, ::-1] / s  # (z, y, x) in voxels
    half_vox = shapes.half_extent[:, ::-1] / s
    for p in range(n_packed):
        lo = np.floor(centre_vox[p] - half_vox[p]).astype(int) - 1
        hi = np.ceil(centre_vox[p] + half_vox[p]).astype(int) + 2
        if np.any(hi <= 0) or np.any(lo >= dims):
            continue
        ax = [(np.arange(lo[a], hi[a]) * s - pos[p, 2 - a]).astype(np.float32) for a in range(3)]
        sfull = _shape_s(
            shapes, p, ax[2][None, None, :], ax[1][None, :, None], ax[0][:, None, None]
        )
        inside = sfull <= 1
        n_full[p] = int(inside.sum())
        clo, chi = np.maximum(lo, 0), np.minimum(hi, dims)
        inner = tuple(slice(c0 - l0, c1 - l0) for c0, c1, l0 in zip(clo, chi, lo, strict=True))
        vol = tuple(slice(c0, c1) for c0, c1 in zip(clo, chi, strict=True))
        # truncated: part of the shape lies outside the volume or the pillar
        truncated[p] = np.count_nonzero(inside[inner] & mask2d[vol[1], vol[2]]) < n_full[p]
        sub = sfull[inner]
        b = best[vol]
        take = (sub <= 1) & (sub < b)
        b[take] = sub[take]
        filled[vol][take] = p + 1
    del best
    counts = np.bincount(filled.ravel(), minlength=n_packed + 1)[1:]
    keep = (counts >= 8) & (counts >= _FRAGMENT_MIN * n_full)
    lut = np.zeros(n_packed + 1, np.uint32)
    lut[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    kept = np.flatnonzero(keep)
    return lut[filled], kept, truncated[kept]


def _intact_attributes(
    filled: NDArray[np.uint32], n: int
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], list]:
    """Voxel counts, centroids (voxels, zyx), contact fractions and per-particle crops.

    Contact = share of the particle's boundary voxels (6-connected erosion) that have a voxel
    of another particle in their 3×3×3 neighbourhood. Each crop is ``(slices, interior)`` with
    the particle eroded by one voxel, where cracks may go.
    """
    dims = filled.shape
    flat_idx = np.flatnonzero(filled)
    lab = filled.ravel()[flat_idx].astype(np.intp)
    nvox = np.bincount(lab, minlength=n + 1)[1:].astype(np.int64)
    coords = np.unravel_index(flat_idx, dims)
    cen_vox = np.stack(
        [np.bincount(lab, weights=c, minlength=n + 1)[1:] / nvox for c in coords], axis=1
    )
    del flat_idx, lab, coords
    ball6 = ndimage.generate_binary_structure(3, 1)
    cube = np.ones((3, 3, 3), bool)
    contact = np.zeros(n)
    crops = []
    for q, sl in enumerate(ndimage.find_objects(filled)):
        sl = tuple(
            slice(max(a.start - 1, 0), min(a.stop + 1, d)) for a, d in zip(sl, dims, strict=True)
        )
        crop = filled[sl]
        own = crop == q + 1
        interior = ndimage.binary_erosion(own, ball6, border_value=0)
        surface = own & ~interior
        other = (crop != 0) & ~own
        if other.any():
            near = ndimage.binary_dilation(other, cube)
            contact[q] = np.count_nonzero(surface & near) / max(np.count_nonzero(surface), 1)
        crops.append((sl, interior))
    return nvox, cen_vox, contact, crops


def _optical_constants(mats: Mapping[str, Material], energy_keV: float) -> dict[str, tuple]:
    """(δ, β) at ``energy_keV`` of NMC811, electrolyte, carbon-binder (1:1 by mass C + PVDF), Al."""
    cb = mix_by_mass([(mats["carbon"], 0.5), (mats["PVDF"], 0.5)], name="carbon_binder")
    return {
        "NMC811": mats["NMC811"].at(energy_keV),
        "electrolyte": mats["electrolyte"].at(energy_keV),
        "carbon_binder": cb.at(energy_keV),
        "Al": mats["Al"].at(energy_keV),
    }


def _fill_volume(
    labels: NDArray[np.uint32],
    filled: NDArray[np.uint32],
    crack: NDArray[np.bool_],
    region: NDArray[np.bool_],
    n_coll: int,
    mask2d: NDArray[np.bool_],
    eps: NDArray[np.float64],
    used: dict[str, tuple],
    *,
    voxel_size_um: float,
    rng: np.random.Generator,
) -> tuple[NDArray[np.uint8], NDArray[np.float32], NDArray[np.float32], float]:
    """Material map (matrix split at the median of a smoothed noise), δ and β maps."""
    dims = filled.shape
    noise = rng.standard_normal(dims, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=_MATRIX_SIGMA_UM / voxel_size_um, mode="wrap")
    material = np.zeros(dims, np.uint8)
    material[:n_coll][:, mask2d] = ALUMINIUM
    matrix = region & (filled == 0)
    vals = noise[matrix]
    if vals.size:
        material[matrix] = np.where(vals > np.median(vals), CARBON_BINDER, ELECTROLYTE)
    pore_fraction = float(np.count_nonzero(material[matrix] == ELECTROLYTE) / max(vals.size, 1))
    del vals
    material[filled > 0] = NMC
    material[crack] = ELECTROLYTE
    delta = np.zeros(dims, np.float32)
    beta = np.zeros(dims, np.float32)
    for code, key in (
        (ELECTROLYTE, "electrolyte"),
        (CARBON_BINDER, "carbon_binder"),
        (ALUMINIUM, "Al"),
    ):
        sel = material == code
        delta[sel], beta[sel] = used[key]
    solid = material == NMC
    sd = float(noise.std()) or 1.0
    tex = _TEXTURE_AMPLITUDE * np.clip(noise[solid] / (3 * sd), -1.0, 1.0)
    factor = np.clip(
        (1.0 + eps[labels[solid].astype(np.intp) - 1]) * (1.0 + tex), 1 - _EPS_CLIP, 1 + _EPS_CLIP
    )
    delta[solid] = used["NMC811"][0] * factor
    beta[solid] = used["NMC811"][1] * factor
    return material, delta, beta, pore_fraction


# --------------------------------------------------------------------------------------------
# the phantom
# --------------------------------------------------------------------------------------------


def electrode(
    shape: tuple[int, int, int] = (192, 192, 192),
    *,
    voxel_size_um: float = 0.5,
    cycles: int = 10,
    seed: int = 0,
    energy_keV: float = 17.0,
    mean_diameter_um: float = 10.0,
    diameter_cv: float = 0.2,
    active_fraction: float = 0.40,
    ellipsoid_max_aspect: float = 1.3,
    roughness_um: float = 0.25,
    collector_thickness_um: float = 3.0,
    pillar: bool = True,
    damage_model: DamageModel | None = None,
    materials: Mapping[str, Material] | None = None,
) -> Electrode:
    """Synthesise a multilayer NMC811 composite cathode pillar with planted particle damage.

    Parameters
    ----------
    shape : (nz, ny, nx) of int
        Volume shape in voxels, each >= 16; z is the electrode normal.
    voxel_size_um : float
        Voxel edge in µm; > 0.
    cycles : int
        Cycles the electrode went through (>= 0); sets the damage model's coefficients.
    seed : int
        Seed (>= 0) of every random choice. The geometry (packing, shapes, matrix, density
        factors) depends only on the seed and the geometric parameters, not on ``cycles`` or
        ``damage_model``: the same seed at 10 and 50 cycles gives the same particles.
    energy_keV : float
        Photon energy in keV (> 0) of the δ and β maps.
    mean_diameter_um : float
        Mean volume-equivalent particle diameter in µm; >= 4 voxels.
    diameter_cv : float
        Coefficient of variation of the lognormal diameters, in [0, 1); truncated to
        [0.5, 2] × mean.
    active_fraction : float
        Requested NMC volume fraction of the electrode layer (pillar minus collector), (0, 0.6].
    ellipsoid_max_aspect : float
        Largest axis ratio a/c of the ellipsoids (a = r√α, b = r, c = r/√α, α ~ U[1, max]),
        in [1, 3].
    roughness_um : float
        RMS radial surface perturbation in µm (sum of 8 random low-order waves on the sphere),
        in [0, 0.1 mean_diameter_um].
    collector_thickness_um : float
        Thickness of the aluminium current collector at low z in µm, >= 0; it must leave at
        least 8 voxels of electrode layer.
    pillar : bool
        If True, everything outside the cylinder inscribed in (y, x) (radius min(ny, nx)/2 − 1
        voxels, axis through the array centre) is air (δ = β = 0), so tomography of the sample
        is not truncated; if False the electrode fills the whole box.
    damage_model : DamageModel, optional
        Coefficients of the planted damage; default ``DamageModel()``.
    materials : mapping of str to Material, optional
        δ/β table with at least ``NMC811, carbon, PVDF, electrolyte, Al``; default
        :func:`holocat.simulate.materials.load_materials`.

    Returns
    -------
    Electrode
        Volumes, particle table and metadata. ``particles`` has one row per particle:
        ``label``, ``centre_z_um, centre_y_um, centre_x_um`` (placed shape centre), ``X, Y, Z``
        (centroid of the filled particle in µm), ``radius_a_um, radius_b_um, radius_c_um``
        (ellipsoid semi-axes, a >= b >= c), ``yaw_deg, pitch_deg, roll_deg`` (ZYX Euler angles
        of the body axes as in SCIENCE.md §5), ``diameter_um`` (drawn volume-equivalent
        diameter), ``volume_um3`` (filled voxels × voxel volume), ``n_voxels_filled``,
        ``n_voxels_solid``, ``depth_norm`` (zn), ``contact``, ``local_packing``,
        ``edensity_factor`` (1 + ε_i), ``damage_target``, ``damage`` (achieved crack
        fraction), ``n_crack_sheets`` and ``touches_border`` (shape truncated by the volume
        faces or the pillar surface).

    Raises
    ------
    ValueError, TypeError
        On a bad parameter; the message names it.

    Notes
    -----
    Construction, in order (each step draws from its own stream of ``SeedSequence(seed)``):

    1. *Population.* Lognormal diameters, ellipsoid semi-axes and random orientations; radial
       roughness δr(u) = A Σ_k [cos(ω_k·u + φ_k) − cos φ_k sinc|ω_k|], |ω_k| ∈ [2, 5],
       A = roughness √(2/8). Centres lie in the electrode layer extended by one mean radius
       beyond the lateral and top faces (so the clipped packing is homogeneous up to the
       faces), and above the collector (no particle enters it).
    2. *Packing.* Random placement, then collective rearrangement: pairs closer than the sum of
       their surface radii along the centre line less 3 % are pushed apart (cKDTree
       neighbour search), until no pair exceeds that overlap. The volume fraction is
       estimated by Monte Carlo (20 000 points, counting only particles that will survive
       the fragment rule of step 3) and particles are added and relaxed again until it
       reaches ``active_fraction`` − 0.003 (at most 6 rounds). The achieved fraction is
       recorded in ``meta["active_fraction_achieved"]`` (0.399 at the defaults).
    3. *Rasterisation* per particle on its bounding-box crop: a voxel belongs to the particle
       with the smallest normalised radius s = |d| / r_surface(d̂) <= 1 (overlaps go to the
       nearer centre in this sense, so labels never overlap). Particles cut to < 10 % of their
       volume or < 8 voxels by the pillar or volume faces are dropped (their voxels become
       matrix); the rest are relabelled 1..n.
    4. *Intact attributes.* Filled centroid, zn = (Z − z_min) / thickness of the electrode
       layer, Contact = share of surface voxels (6-connected boundary) with another particle in
       their 3×3×3 neighbourhood, local packing = NMC fraction of the electrode layer within a
       sphere of radius 2 × ``mean_diameter_um`` around the centroid (on a grid coarsened so
       the sphere spans >= 8 cells, FFT convolution, linear interpolation).
    5. *Damage.* Targets from :func:`planted_damage`; cracks are sheets 1–2 voxels thick
       (planes near the centre, half of them half-planes: radial "pie" cracks) restricted to
       the particle eroded by one voxel (cracks never reach the particle surface or a
       neighbour), added until the crack fraction reaches the target; the last sheet is cut
       to the disc of its voxels nearest to its origin, so the target is met to within half a
       voxel (rounding) unless the interior runs out (thin fragments at the pillar surface).
    6. *Matrix.* White noise smoothed with a Gaussian of σ = 0.4 µm, thresholded at its median
       over the matrix voxels: half carbon-binder (CB), half electrolyte-filled pore. CB δ/β
       is the 1:1 by mass mix of acetylene carbon and PVDF (volume-weighted, pore-free).
    7. *δ and β.* Air 0; Al, electrolyte, CB from the table at ``energy_keV`` (δ ∝ E⁻²,
       β ∝ E⁻⁴ away from 17 keV); NMC voxels NMC811 × (1 + ε_i) × (1 + t(x)), ε_i ~ N(0, 0.02)
       clipped to ±6 %, texture |t| <= 1 % (the same smoothed noise), product clipped to ±6 %.

    Examples
    --------
    >>> e = electrode((48, 48, 48), voxel_size_um=1.0, mean_diameter_um=10.0, seed=1)
    >>> e.labels.dtype == np.uint32 and e.n_particles == int(e.filled_labels.max())
    True
    """
    t_start = time.perf_counter()
    # ---------------------------------------------------------------- validation
    if isinstance(shape, str) or not hasattr(shape, "__len__") or len(shape) != 3:
        raise ValueError(f"shape: expected (nz, ny, nx), three ints; got {shape!r}")
    if any(isinstance(v, bool) or not isinstance(v, Integral) for v in shape):
        raise TypeError(f"shape: expected three ints; got {shape!r}")
    nz, ny, nx = (int(v) for v in shape)
    if min(nz, ny, nx) < 16:
        raise ValueError(f"shape: expected every dimension >= 16 voxels; got {tuple(shape)}")
    s = _real(voxel_size_um, "voxel_size_um", 0.0, math.inf, lo_open=True, hi_open=True)
    cycles = _int(cycles, "cycles", 0)
    seed = _int(seed, "seed", 0)
    energy = _real(energy_keV, "energy_keV", 0.0, math.inf, lo_open=True, hi_open=True)
    mean_d = _real(mean_diameter_um, "mean_diameter_um", 0.0, math.inf, lo_open=True, hi_open=True)
    if mean_d < 4 * s:
        raise ValueError(
            f"mean_diameter_um: expected >= 4 voxels ({4 * s} µm at voxel_size_um={s}); "
            f"got {mean_diameter_um!r}"
        )
    cv = _real(diameter_cv, "diameter_cv", 0.0, 1.0, lo_open=False, hi_open=True)
    phi = _real(active_fraction, "active_fraction", 0.0, 0.6, lo_open=True)
    max_aspect = _real(ellipsoid_max_aspect, "ellipsoid_max_aspect", 1.0, 3.0, lo_open=False)
    rough = _real(roughness_um, "roughness_um", 0.0, 0.1 * mean_d, lo_open=False)
    coll_um = _real(collector_thickness_um, "collector_thickness_um", 0.0, math.inf, lo_open=False)
    n_coll = int(round(coll_um / s))
    if nz - n_coll < 8:
        raise ValueError(
            f"collector_thickness_um: expected to leave >= 8 voxels of electrode in z "
            f"(nz={nz}); got {collector_thickness_um!r} µm = {n_coll} voxels"
        )
    if not isinstance(pillar, bool | np.bool_):
        raise TypeError(f"pillar: expected a bool; got {type(pillar).__name__}")
    model = DamageModel() if damage_model is None else damage_model
    if not isinstance(model, DamageModel):
        raise TypeError(f"damage_model: expected a DamageModel; got {type(model).__name__}")
    mats = load_materials() if materials is None else materials
    if not isinstance(mats, Mapping):
        raise TypeError(f"materials: expected a mapping name -> Material; got {type(mats)}")
    missing = [m for m in _REQUIRED_MATERIALS if m not in mats]
    if missing:
        raise ValueError(
            f"materials: missing {missing}; expected at least {list(_REQUIRED_MATERIALS)}"
        )
    for m in _REQUIRED_MATERIALS:
        if not isinstance(mats[m], Material):
            raise TypeError(f"materials[{m!r}]: expected a Material; got {type(mats[m])}")

    streams = [np.random.default_rng(ss) for ss in np.random.SeedSequence(seed).spawn(6)]
    rng_pack, rng_shape, rng_tex, rng_eps, rng_dmg, rng_crack = streams

    # 1-2. regions, population, packing
    dims = (nz, ny, nx)
    cyv, cxv = (ny - 1) / 2, (nx - 1) / 2
    r_pillar_vox = min(ny, nx) / 2 - 1
    if pillar:
        jj, ii = np.ogrid[:ny, :nx]
        mask2d = (jj - cyv) ** 2 + (ii - cxv) ** 2 <= r_pillar_vox**2
    else:
        mask2d = np.ones((ny, nx), bool)
    region = np.zeros(dims, bool)  # the electrode layer: pillar above the collector
    region[n_coll:] = mask2d
    n_electrode = int(region.sum())
    domain = _Domain(
        pillar=bool(pillar),
        centre_xy=(cxv * s, cyv * s),
        radius_um=r_pillar_vox * s,
        box_xy=((-0.5 * s, (nx - 0.5) * s), (-0.5 * s, (ny - 0.5) * s)),
        z_bottom_um=(n_coll - 0.5) * s,
        z_top_um=(nz - 0.5) * s,
        ext_um=mean_d / 2,
    )
    pos, diam, shapes, pack_info = _pack(
        domain,
        region,
        voxel_size_um=s,
        active_fraction=phi,
        mean_volume_um3=math.pi / 6 * mean_d**3 * (1 + cv * cv) ** 3,  # E[d³] of the lognormal
        draw=lambda k: _draw_population(
            k, mean_d, cv, max_aspect=max_aspect, roughness_um=rough, rng=rng_shape
        ),
        rng=rng_pack,
    )

    # 3. rasterisation
    filled, kept, truncated = _rasterise(pos, shapes, region, mask2d, voxel_size_um=s)
    n = len(kept)
    if n == 0:
        raise ValueError(
            f"shape: no particle fits; the electrode layer {tuple(shape)} at voxel_size_um={s} "
            f"is too small for mean_diameter_um={mean_d}"
        )
    logger.info(
        "electrode %s @ %.3g µm: %d particles packed, %d kept (%d fragments dropped)",
        dims,
        s,
        len(pos),
        n,
        len(pos) - n,
    )

    # 4. intact attributes
    nvox, cen_vox, contact, crops = _intact_attributes(filled, n)
    z_min_um = n_coll * s
    thickness_um = (nz - 1 - n_coll) * s
    depth = np.clip((cen_vox[:, 0] * s - z_min_um) / thickness_um, 0.0, 1.0)
    packing = _local_packing(filled > 0, region, cen_vox, radius_vox=2 * mean_d / s)

    # 5. planted damage and cracks
    intact = pd.DataFrame(
        {
            "depth_norm": depth,
            "volume_um3": nvox * s**3,
            "contact": contact,
            "local_packing": packing,
        }
    )
    target = planted_damage(intact, cycles, rng_dmg, model=model)
    crack = np.zeros(dims, bool)
    n_crack = np.zeros(n, np.int64)
    n_sheets = np.zeros(n, np.int64)
    r_eq_vox = diam[kept] / 2 / s
    for q, (sl, interior) in enumerate(crops):
        want = int(round(target[q] * nvox[q]))
        if want == 0:
            continue
        origin = cen_vox[q] - np.array([a.start for a in sl])
        cmask, n_crack[q], n_sheets[q] = _crack_sheets(
            interior, want, origin, r_eq_vox[q], rng_crack
        )
        crack[sl] |= cmask
    del crops
    damage = n_crack / nvox
    err = damage - target
    labels = np.where(crack, np.uint32(0), filled)

    # 6-7. matrix, δ and β
    used = _optical_constants(mats, energy)
    eps = np.clip(rng_eps.normal(0.0, _EPS_SD, n), -_EPS_CLIP, _EPS_CLIP)
    material, delta, beta, pore_fraction = _fill_volume(
        labels, filled, crack, region, n_coll, mask2d, eps, used, voxel_size_um=s, rng=rng_tex
    )

    # table + meta
    euler = (
        Rotation.from_matrix(shapes.rot[kept]).as_euler("ZYX", degrees=True)
        if n
        else np.zeros((0, 3))
    )
    nsolid = nvox - n_crack
    particles = pd.DataFrame(
        {
            "label": np.arange(1, n + 1, dtype=np.uint32),
            "centre_z_um": pos[kept, 2],
            "centre_y_um": pos[kept, 1],
            "centre_x_um": pos[kept, 0],
            "X": cen_vox[:, 2] * s,
            "Y": cen_vox[:, 1] * s,
            "Z": cen_vox[:, 0] * s,
            "radius_a_um": shapes.semi_axes[kept, 0],
            "radius_b_um": shapes.semi_axes[kept, 1],
            "radius_c_um": shapes.semi_axes[kept, 2],
            "yaw_deg": euler[:, 0],
            "pitch_deg": euler[:, 1],
            "roll_deg": euler[:, 2],
            "diameter_um": diam[kept],
            "volume_um3": nvox * s**3,
            "n_voxels_filled": nvox,
            "n_voxels_solid": nsolid,
            "depth_norm": depth,
            "contact": contact,
            "local_packing": packing,
            "edensity_factor": 1.0 + eps,
            "damage_target": target,
            "damage": damage,
            "n_crack_sheets": n_sheets,
            "touches_border": truncated,
        }
    )
    achieved = float(nvox.sum() / n_electrode)
    meta: dict[str, Any] = {
        "shape": [nz, ny, nx],
        "voxel_size_um": s,
        "energy_keV": energy,
        "cycles": cycles,
        "seed": seed,
        "mean_diameter_um": mean_d,
        "diameter_cv": cv,
        "active_fraction": phi,
        "ellipsoid_max_aspect": max_aspect,
        "roughness_um": rough,
        "collector_thickness_um": coll_um,
        "collector_voxels": n_coll,
        "pillar": bool(pillar),
        "pillar_radius_voxels": float(r_pillar_vox) if pillar else None,
        "damage_model": asdict(model),
        "damage_coefficients": model.coefficients(cycles) if cycles > 0 else None,
        "material_codes": dict(enumerate(MATERIAL_NAMES)),
        "materials_delta_beta": {k: [float(v[0]), float(v[1])] for k, v in used.items()},
        "carbon_binder_mix": {"carbon": 0.5, "PVDF": 0.5, "basis": "mass"},
        "n_particles": n,
        "n_packed": len(pos),
        "n_fragments_dropped": len(pos) - n,
        "n_touching_border": int(truncated.sum()),
        **pack_info,
        "packing_overlap_allowed": _PACK_OVERLAP,
        "active_fraction_achieved": achieved,
        "solid_fraction_achieved": float(nsolid.sum() / n_electrode),
        "matrix_pore_fraction": pore_fraction,
        "electrode_voxels": n_electrode,
        "electrode_z_min_um": z_min_um,
        "electrode_thickness_um": thickness_um,
        "local_packing_radius_um": 2 * mean_d,
        "damage_error_mean": float(err.mean()),
        "damage_error_max_abs": float(np.abs(err).max()),
        "constants": {
            "rough_waves": _N_ROUGH_WAVES,
            "rough_wavenumber": list(_ROUGH_WAVENUMBER),
            "diameter_clip": list(_DIAMETER_CLIP),
            "edensity_sd": _EPS_SD,
            "edensity_clip": _EPS_CLIP,
            "texture_amplitude": _TEXTURE_AMPLITUDE,
            "matrix_sigma_um": _MATRIX_SIGMA_UM,
            "fragment_min": _FRAGMENT_MIN,
            "crack_thickness_voxels": list(_CRACK_THICKNESS_VOX),
        },
    }
    logger.info(
        "electrode done in %.1f s: NMC fraction %.3f (requested %.3f), %d/%d particles in "
        "contact, mean damage %.4f (target %.4f, max |error| %.4f)",
        time.perf_counter() - t_start,
        achieved,
        phi,
        int(np.count_nonzero(contact > 0)),
        n,
        float(damage.mean()),
        float(target.mean()),
        meta["damage_error_max_abs"],
    )
    return Electrode(
        labels=labels,
        filled_labels=filled,
        crack_mask=crack,
        material=material,
        delta=delta,
        beta=beta,
        particles=particles,
        meta=meta,
    )


def _local_packing(
    active: NDArray[np.bool_],
    region: NDArray[np.bool_],
    centres_vox: NDArray[np.float64],
    *,
    radius_vox: float,
) -> NDArray[np.float64]:
    """Active fraction of ``region`` within a ball of ``radius_vox`` around each centre.

    Both masks are block-summed by f = max(1, radius // 8) so the ball spans >= 8 coarse
    cells, convolved with the ball by FFT and interpolated linearly at the centres.
    """
    f = max(1, int(radius_vox // 8))
    shp = np.array(active.shape)
    pad = (-shp) % f
    cshape = tuple((shp + pad) // f)

    def coarse(m: NDArray[np.bool_]) -> NDArray[np.float64]:
        a = np.pad(m, [(0, int(p)) for p in pad]).astype(np.float32)
        return a.reshape(cshape[0], f, cshape[1], f, cshape[2], f).sum(axis=(1, 3, 5))

    rc = radius_vox / f
    h = int(math.ceil(rc))
    g = np.arange(-h, h + 1)
    ker = (g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) <= rc * rc
    ker = ker.astype(np.float64)
    num = signal.fftconvolve(coarse(active), ker, mode="same")
    den = signal.fftconvolve(coarse(region), ker, mode="same")
    coords = ((centres_vox + 0.5) / f - 0.5).T
    a = ndimage.map_coordinates(num, coords, order=1, mode="nearest")
    b = ndimage.map_coordinates(den, coords, order=1, mode="nearest")
    return np.clip(a / np.maximum(b, 1e-9), 0.0, 1.0)


def _crack_sheets(
    candidates: NDArray[np.bool_],
    want: int,
    origin_vox: NDArray[np.float64],
    radius_vox: float,
    rng: np.random.Generator,
) -> tuple[NDArray[np.bool_], int, int]:
    """Crack voxels (a mask shaped like ``candidates``) made of thin sheets near ``origin_vox``.

    Sheets are planes |n·(x − o)| <= t/2 with t ~ U[1, 2] voxels through o = origin + a small
    offset (<= 0.2 radius), half of them limited to a half-plane (radial cracks). Sheets are
    added until ``want`` voxels are cracked; the last one keeps only its voxels nearest to o.
    Returns (mask, number of crack voxels, number of sheets).
    """
    pts_idx = np.argwhere(candidates)
    out = np.zeros_like(candidates)
    if len(pts_idx) == 0:
        return out, 0, 0
    pts = pts_idx.astype(np.float64) - origin_vox
    free = np.ones(len(pts), bool)
    count = sheets = attempts = 0
    while count < want and attempts < _MAX_SHEETS and free.any():
        attempts += 1
        nrm = rng.standard_normal(3)
        nrm /= np.linalg.norm(nrm)
        off = rng.standard_normal(3) * 0.1 * radius_vox
        off_norm = np.linalg.norm(off)
        if off_norm > 0.2 * radius_vox:
            off *= 0.2 * radius_vox / off_norm
        thick = rng.uniform(*_CRACK_THICKNESS_VOX)
        rel = pts - off
        sel = free & (np.abs(rel @ nrm) <= thick / 2)
        if rng.uniform() < 0.5:  # radial "pie" crack: half-plane bounded by a line through o
            m = np.cross(nrm, rng.standard_normal(3))
            m /= max(np.linalg.norm(m), 1e-12)
            sel &= rel @ m >= 0
        hit = np.flatnonzero(sel)
        if hit.size == 0:
            continue
        sheets += 1
        if count + hit.size > want:
            r2 = np.sum(rel[hit] ** 2, axis=1)
            hit = hit[np.argsort(r2, kind="stable")[: want - count]]
        free[hit] = False
        count += hit.size
    out[tuple(pts_idx[~free].T)] = True
    return out, count, sheets
