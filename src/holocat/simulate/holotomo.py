"""ID16A-style multi-distance holotomography forward model.

A phantom of refractive-index decrements ``delta`` and absorption indices ``beta`` (arrays
``(nz, ny, nx)``, rotation axis along z = array axis 0) is projected for every angle, turned into
an exit wave, propagated to four focus-to-sample distances of a cone beam (Fresnel scaling
theorem: plane-wave holograms at ``z_eff`` magnified by ``M``), integrated over the pixels of one
detector, multiplied by a structured, drifting illumination and exposed with Poisson and read
noise. The result is a raw scan in the layout of the raw-scan contract (DESIGN.md): ``data``
``(n_dist, n_angles, ny, nx)``, ``flats`` ``(n_dist, n_flats, ny, nx)`` and ``darks``
``(n_darks, ny, nx)``, all uint16.

Conventions (SCIENCE.md §1-3, fixed because the reconstruction engine relies on them):

* Parallel projection of each z-slice follows ``skimage.transform.radon(slice_yx,
  theta=np.rad2deg(angles_rad), circle=True)``: a voxel at column ``x`` and row ``y`` (measured
  from ``(ny // 2, nx // 2)``) lands on detector coordinate ``t = x cos(theta) - y sin(theta)``,
  i.e. detector index ``n_det // 2 + center_offset_px + t``.
* Object: ``phi = k * int(delta dz)``, ``B = k * int(beta dz)``, ``T = exp(-i phi - B)``;
  propagator ``P = exp(-i pi lambda z_eff |f|^2)`` (:func:`holocat.optics.fresnel_kernel`).
* The optical axis hits every detector at pixel ``(ny_det // 2, nx_det // 2)``; magnification is
  about that point. The rotation axis sits ``cor_offset_px`` reference pixels from the optical
  axis, i.e. at column ``nx_det // 2 + cor_offset_px * M_j / M_ref`` at distance ``j``.
* Holograms are computed on a fine grid whose pixel is the reference (largest-magnification)
  effective pixel, which must equal the phantom voxel; distance ``j``'s detector pixel covers
  ``M_ref / M_j`` fine pixels and records their area average.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft
import scipy.ndimage as ndi
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from holocat.optics import (
    DistanceGeometry,
    distance_geometry,
    fresnel_kernel,
    fresnel_number,
    wavelength_m,
)

__all__ = [
    "DEFAULT_FOCUS_TO_SAMPLE_M",
    "DEFAULT_FOCUS_TO_DETECTOR_M",
    "HoloScan",
    "ScanGeometry",
    "scan_geometry",
    "project",
    "holograms",
    "detector_holograms",
    "holotomo",
]

logger = logging.getLogger(__name__)

#: Default focus-to-sample distances z1 in metres (the first, smallest, is the reference).
#: Chosen so that the zeros of the four phase CTFs interleave: min_f sum_j sin^2(chi_j) = 0.91
#: between the first maximum and the tenth zero of the shortest distance.
DEFAULT_FOCUS_TO_SAMPLE_M: tuple[float, float, float, float] = (0.021, 0.023, 0.029, 0.033)
#: Default focus-to-detector distance D in metres (fixed at ID16A).
DEFAULT_FOCUS_TO_DETECTOR_M = 1.2

_UINT16_MAX = 65535
_GRID_MARGIN_PX = 8
_ILLUMINATION_SHIFT_PX = 0.5


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanGeometry:
    """Cone-beam geometry of a multi-distance scan.

    Attributes
    ----------
    energy_keV : float
        Photon energy in keV.
    detector_pixel_size_m : float
        Detector pixel size p_det in metres.
    focus_to_detector_m : float
        Focus-to-detector distance D in metres.
    distances : tuple of DistanceGeometry
        One entry per focus-to-sample distance, in the order given.
    reference_index : int
        Index of the reference distance: the largest magnification (smallest z1).
    """

    energy_keV: float
    detector_pixel_size_m: float
    focus_to_detector_m: float
    distances: tuple[DistanceGeometry, ...]
    reference_index: int

    @property
    def magnifications(self) -> tuple[float, ...]:
        """M_j = D / z1_j."""
        return tuple(d.magnification for d in self.distances)

    @property
    def effective_pixel_sizes_m(self) -> tuple[float, ...]:
        """p_eff,j = p_det / M_j in metres."""
        return tuple(d.effective_pixel_size_m for d in self.distances)

    @property
    def effective_distances_m(self) -> tuple[float, ...]:
        """z_eff,j = z1_j (D - z1_j) / D in metres."""
        return tuple(d.effective_distance_m for d in self.distances)

    @property
    def zoom_factors(self) -> tuple[float, ...]:
        """p_eff,j / p_eff,ref = M_ref / M_j (>= 1): fine pixels per detector pixel."""
        m_ref = self.distances[self.reference_index].magnification
        return tuple(m_ref / d.magnification for d in self.distances)

    @property
    def fresnel_numbers(self) -> tuple[float, ...]:
        """Pixel Fresnel numbers N_F,j = p_eff,j^2 / (lambda z_eff,j)."""
        return tuple(
            fresnel_number(
                pixel_size_m=d.effective_pixel_size_m,
                distance_m=d.effective_distance_m,
                energy_keV=self.energy_keV,
            )
            for d in self.distances
        )


def scan_geometry(
    *,
    voxel_size_um: float,
    energy_keV: float = 17.0,
    focus_to_sample_m: float | Sequence[float] = DEFAULT_FOCUS_TO_SAMPLE_M,
    focus_to_detector_m: float = DEFAULT_FOCUS_TO_DETECTOR_M,
    detector_pixel_size_m: float | None = None,
) -> ScanGeometry:
    """Geometry of a simulated scan whose reference effective pixel equals the voxel size.

    Parameters
    ----------
    voxel_size_um : float
        Phantom voxel size in micrometres; > 0. Must equal the reference effective pixel
        ``p_det / M_ref`` (reference = smallest focus-to-sample distance).
    energy_keV : float
        Photon energy in keV; > 0.
    focus_to_sample_m : float or sequence of float
        Focus-to-sample distances z1 in metres, each in (0, focus_to_detector_m).
    focus_to_detector_m : float
        Focus-to-detector distance D in metres; > 0.
    detector_pixel_size_m : float or None
        Detector pixel size in metres. ``None`` derives it as ``voxel_size * M_ref``.

    Returns
    -------
    ScanGeometry

    Raises
    ------
    ValueError
        For non-positive or non-finite values, z1 outside (0, D), or a detector pixel that does
        not give the voxel size as the reference effective pixel.

    Examples
    --------
    >>> g = scan_geometry(voxel_size_um=0.07)
    >>> round(g.detector_pixel_size_m * 1e6, 6), g.reference_index
    (4.0, 0)
    >>> [round(m, 2) for m in g.magnifications]
    [57.14, 52.17, 41.38, 36.36]
    """
    voxel_m = _positive_float(voxel_size_um, "voxel_size_um") * 1e-6
    wavelength_m(energy_keV)  # validates energy_keV
    # validate the distances (names focus_to_sample_m / focus_to_detector_m on error)
    probe = distance_geometry(
        detector_pixel_size_m=1.0,
        focus_to_detector_m=focus_to_detector_m,
        focus_to_sample_m=focus_to_sample_m,
    )
    ref = int(np.argmax([g.magnification for g in probe]))
    m_ref = probe[ref].magnification
    if detector_pixel_size_m is None:
        p_det = voxel_m * m_ref
    else:
        p_det = _positive_float(detector_pixel_size_m, "detector_pixel_size_m")
        if not math.isclose(p_det / m_ref, voxel_m, rel_tol=1e-6):
            raise ValueError(
                "detector_pixel_size_m: the reference (largest-magnification) effective pixel "
                f"p_det / M_ref = {p_det:.6g} m / {m_ref:.6g} = {p_det / m_ref:.6g} m must equal "
                f"the voxel size voxel_size_um = {voxel_size_um} um; pass "
                f"detector_pixel_size_m={voxel_m * m_ref:.6g} or None"
            )
    geoms = distance_geometry(
        detector_pixel_size_m=p_det,
        focus_to_detector_m=focus_to_detector_m,
        focus_to_sample_m=focus_to_sample_m,
    )
    return ScanGeometry(
        energy_keV=float(energy_keV),
        detector_pixel_size_m=float(p_det),
        focus_to_detector_m=float(focus_to_detector_m),
        distances=tuple(geoms),
        reference_index=ref,
    )


# --------------------------------------------------------------------------------------------
# parallel projection
# --------------------------------------------------------------------------------------------


def project(
    volume: ArrayLike,
    angles_rad: ArrayLike,
    *,
    n_det: int | None = None,
    center_offset_px: float = 0.0,
) -> NDArray[np.float32]:
    """Parallel-beam line integrals of every z-slice, in skimage ``radon`` geometry.

    Joseph's method: for each ray, linear interpolation of the slice at every row (or column)
    crossing, weighted by the path length per row (column). The geometry is that of
    ``skimage.transform.radon(slice_yx, theta=np.rad2deg(angles_rad), circle=True)``: a voxel
    at ``(row, col)`` projects to detector index
    ``n_det // 2 + center_offset_px + (col - nx // 2) cos(theta) - (row - ny // 2) sin(theta)``.

    Parameters
    ----------
    volume : array_like, shape (nz, ny, nx) or (ny, nx)
        Real values per voxel (e.g. delta). Voxels outside the detector's reach are ignored.
    angles_rad : array_like, shape (n_angles,)
        Projection angles in radians (finite).
    n_det : int or None
        Number of detector pixels; default ``max(ny, nx)``.
    center_offset_px : float
        Position of the rotation axis on the detector relative to index ``n_det // 2``, pixels.

    Returns
    -------
    ndarray, float32, shape (n_angles, nz, n_det) or (n_angles, n_det) for a 2D input
        Line integrals in voxel units (multiply by the voxel size for a length).

    Raises
    ------
    ValueError
        Wrong number of dimensions, empty or non-finite input, or bad ``n_det``.
    TypeError
        Non-numeric input.

    Examples
    --------
    >>> img = np.zeros((8, 8), np.float32); img[4, 6] = 1.0   # 2 px right of the centre
    >>> p = project(img, [0.0, np.pi / 2])
    >>> int(np.argmax(p[0])), int(np.argmax(p[1]))
    (6, 4)
    """
    vol = _real_array(volume, "volume", ndims=(2, 3))
    angles = _angles(angles_rad, "angles_rad")
    squeeze = vol.ndim == 2
    if squeeze:
        vol = vol[None]
    nz, ny, nx = vol.shape
    n_det = max(ny, nx) if n_det is None else _positive_int(n_det, "n_det")
    offset = _finite_float(center_offset_px, "center_offset_px")
    center = n_det // 2 + offset
    columns = _voxel_columns(vol)
    out = np.empty((angles.size, nz, n_det), np.float32)
    for a, theta in enumerate(angles):
        out[a] = (_joseph_matrix(float(theta), ny, nx, n_det, center) @ columns).T
    return out[:, 0] if squeeze else out


def _voxel_columns(*volumes: NDArray) -> NDArray[np.float32]:
    """Stack volumes (nz, ny, nx) into one (ny * nx, n_vol * nz) float32 matrix (C order)."""
    nz, ny, nx = volumes[0].shape
    out = np.empty((ny * nx, len(volumes) * nz), np.float32)
    for i, v in enumerate(volumes):
        out[:, i * nz : (i + 1) * nz] = v.reshape(nz, ny * nx).T
    return out


def _joseph_matrix(theta: float, ny: int, nx: int, n_det: int, center: float) -> sp.csr_array:
    """Sparse (n_det, ny * nx) projection matrix of one angle (Joseph, radon geometry)."""
    c, s = math.cos(theta), math.sin(theta)
    t = np.arange(n_det, dtype=np.float64) - center
    if abs(c) >= abs(s):  # march over rows, interpolate along x
        y = np.arange(ny, dtype=np.float64) - ny // 2
        pos = (t[:, None] + y[None, :] * s) / c + nx // 2
        weight, n_lim = 1.0 / abs(c), nx
    else:  # march over columns, interpolate along y
        x = np.arange(nx, dtype=np.float64) - nx // 2
        pos = (x[None, :] * c - t[:, None]) / s + ny // 2
        weight, n_lim = 1.0 / abs(s), ny
    i0 = np.floor(pos)
    frac = pos - i0
    idx = i0.astype(np.int64)[..., None] + np.array([0, 1])
    wts = np.stack([1.0 - frac, frac], axis=-1) * weight
    valid = (idx >= 0) & (idx < n_lim) & (wts > 0)
    if abs(c) >= abs(s):
        flat = np.arange(ny)[None, :, None] * nx + idx
    else:
        flat = idx * nx + np.arange(nx)[None, :, None]
    counts = valid.reshape(n_det, -1).sum(axis=1)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return sp.csr_array(
        (wts[valid].astype(np.float32), flat[valid].astype(np.int32), indptr.astype(np.int32)),
        shape=(n_det, ny * nx),
    )


# --------------------------------------------------------------------------------------------
# plane-wave holograms
# --------------------------------------------------------------------------------------------


def holograms(
    phase: ArrayLike,
    absorption: ArrayLike,
    *,
    energy_keV: float,
    pixel_size_m: float,
    distances_m: float | Sequence[float],
    pad: int | None = None,
    pad_mode: Literal["air", "edge"] = "air",
) -> NDArray[np.float32]:
    """Noise-free plane-wave holograms of a thin object at several propagation distances.

    ``T = exp(-i phase - absorption)`` is padded, propagated with
    ``P = exp(-i pi lambda z |f|^2)`` (as :func:`holocat.optics.fresnel_propagate`) and
    ``|.|^2`` is cropped back. No magnification: use effective distances and pixel size.

    Parameters
    ----------
    phase : array_like, shape (ny, nx)
        Projected phase phi = k int(delta dz) in radians (>= 0 for matter).
    absorption : array_like, shape (ny, nx)
        B = k int(beta dz) (dimensionless, >= 0); the intensity transmission is exp(-2B).
    energy_keV : float
        Photon energy in keV; > 0.
    pixel_size_m : float
        Pixel size of the maps in metres; > 0.
    distances_m : float or sequence of float
        Propagation distances in metres; >= 0 (0 gives the contact image exp(-2B)).
    pad : int or None
        Padding in pixels per side. Default: half the size per axis, raised so that
        ``lambda z_max <= N_pad pixel_size_m^2`` (well-sampled propagator).
    pad_mode : {"air", "edge"}
        ``"air"`` pads with T = 1 (an isolated object); ``"edge"`` repeats the border values.

    Returns
    -------
    ndarray, float32, shape (n_dist, ny, nx)
        Intensities, 1 in open beam.

    Examples
    --------
    >>> phi = np.zeros((16, 16)); b = np.full((16, 16), 0.5)
    >>> h = holograms(phi, b, energy_keV=17.0, pixel_size_m=1e-7, distances_m=[0.0])
    >>> bool(np.allclose(h[0], np.exp(-1.0)))
    True
    """
    phi = _real_array(phase, "phase", ndims=(2,)).astype(np.float64)
    b = _real_array(absorption, "absorption", ndims=(2,)).astype(np.float64)
    if phi.shape != b.shape:
        raise ValueError(
            f"phase, absorption: expected equal shapes (ny, nx); got {phi.shape} and {b.shape}"
        )
    lam = wavelength_m(energy_keV)
    p = _positive_float(pixel_size_m, "pixel_size_m")
    z = np.atleast_1d(np.asarray(distances_m, dtype=np.float64))
    if z.ndim != 1 or z.size == 0 or not np.all(np.isfinite(z)) or np.any(z < 0):
        raise ValueError(f"distances_m: expected one or more finite distances >= 0 m; got {z}")
    if pad_mode not in ("air", "edge"):
        raise ValueError(f"pad_mode: expected 'air' or 'edge'; got {pad_mode!r}")
    ny, nx = phi.shape
    n_min = math.ceil(lam * float(z.max()) / p**2)
    if pad is None:
        py = max(ny // 2, math.ceil((n_min - ny) / 2))
        px = max(nx // 2, math.ceil((n_min - nx) / 2))
    else:
        py = px = _nonnegative_int(pad, "pad")
    wave = np.exp(-b) * (np.cos(phi) - 1j * np.sin(phi))
    if pad_mode == "air":
        wave = np.pad(wave, ((py, py), (px, px)), mode="constant", constant_values=1.0)
    else:
        wave = np.pad(wave, ((py, py), (px, px)), mode="edge")
    spectrum = scipy.fft.fft2(wave)
    out = np.empty((z.size, ny, nx), np.float32)
    for j, zj in enumerate(z):
        kernel = fresnel_kernel(
            wave.shape, pixel_size_m=p, distance_m=float(zj), energy_keV=energy_keV
        )
        field = scipy.fft.ifft2(spectrum * kernel)[py : py + ny, px : px + nx]
        out[j] = field.real**2 + field.imag**2
    return out


# --------------------------------------------------------------------------------------------
# magnified, pixel-integrated holograms of a rotating phantom
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _FinePlan:
    """Fine (reference-pixel) simulation grid and its mapping onto every detector."""

    shape: tuple[int, int]
    row0: int  # fine-grid row of phantom slice z = 0
    axis_col: float  # fine-grid column of the rotation axis
    kernels: tuple[NDArray[np.complex64], ...]
    rows: tuple[sp.csr_array, ...]  # (ny_det, N_y) area-averaging per distance
    cols: tuple[sp.csr_array, ...]  # (nx_det, N_x)


def _even_fast_len(n: int) -> int:
    n = scipy.fft.next_fast_len(max(int(n), 2))
    while n % 2:
        n = scipy.fft.next_fast_len(n + 1)
    return n


def _area_average_matrix(n_out: int, zoom: float, n_fine: int) -> sp.csr_array:
    """(n_out, n_fine) weights averaging fine pixels over detector pixels ``zoom`` fine px wide.

    Detector pixel ``r`` is centred at fine coordinate ``n_fine // 2 + (r - n_out // 2) * zoom``;
    fine pixel ``i`` covers [i - 1/2, i + 1/2]. Each row sums to 1 (exact box integration).
    """
    centre = n_fine // 2 + (np.arange(n_out) - n_out // 2) * zoom
    lo, hi = centre - zoom / 2, centre + zoom / 2
    n_cand = math.ceil(zoom) + 2
    first = np.floor(lo + 0.5).astype(np.int64)
    idx = first[:, None] + np.arange(n_cand)[None, :]
    overlap = np.minimum(hi[:, None], idx + 0.5) - np.maximum(lo[:, None], idx - 0.5)
    valid = overlap > 1e-12
    if np.any(idx[valid] < 0) or np.any(idx[valid] >= n_fine):
        raise RuntimeError("fine grid does not cover the detector; this is a holocat bug")
    counts = valid.sum(axis=1)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return sp.csr_array(
        ((overlap[valid] / zoom).astype(np.float32), idx[valid].astype(np.int32), indptr),
        shape=(n_out, n_fine),
    )


def _fine_plan(
    geometry: ScanGeometry,
    sample_shape: tuple[int, int, int],
    detector_shape: tuple[int, int],
    cor_offset_px: float,
) -> _FinePlan:
    nz, ny, nx = sample_shape
    ny_det, nx_det = detector_shape
    p = geometry.effective_pixel_sizes_m[geometry.reference_index]
    lam = wavelength_m(geometry.energy_keV)
    zooms = geometry.zoom_factors
    z_max = max(geometry.effective_distances_m)
    m = _GRID_MARGIN_PX
    n_sampling = math.ceil(lam * z_max / p**2)  # lambda z <= N p^2
    radius = math.hypot(ny, nx) / 2 + 2
    half_y = max((ny_det // 2 + 1) * max(zooms), nz - nz // 2) + m
    half_x = max((nx_det // 2 + 1) * max(zooms), radius + abs(cor_offset_px)) + m
    n_y = _even_fast_len(max(2 * math.ceil(half_y), n_sampling))
    n_x = _even_fast_len(max(2 * math.ceil(half_x), n_sampling))
    kernels = tuple(
        fresnel_kernel(
            (n_y, n_x), pixel_size_m=p, distance_m=zeff, energy_keV=geometry.energy_keV
        ).astype(np.complex64)
        for zeff in geometry.effective_distances_m
    )
    return _FinePlan(
        shape=(n_y, n_x),
        row0=n_y // 2 - nz // 2,
        axis_col=n_x // 2 + cor_offset_px,
        kernels=kernels,
        rows=tuple(_area_average_matrix(ny_det, zm, n_y) for zm in zooms),
        cols=tuple(_area_average_matrix(nx_det, zm, n_x) for zm in zooms),
    )


def _iter_detector_intensities(
    delta: NDArray[np.float32],
    beta: NDArray[np.float32],
    angles: NDArray[np.float64],
    geometry: ScanGeometry,
    detector_shape: tuple[int, int],
    cor_offset_px: float,
) -> Iterator[NDArray[np.float32]]:
    """Yield the noise-free detector intensities (n_dist, ny_det, nx_det) angle by angle."""
    nz, ny, nx = delta.shape
    plan = _fine_plan(geometry, (nz, ny, nx), detector_shape, cor_offset_px)
    n_y, n_x = plan.shape
    logger.info(
        "holotomo fine grid %d x %d px (%.4g m), zoom factors %s",
        n_y,
        n_x,
        geometry.effective_pixel_sizes_m[geometry.reference_index],
        [round(z, 4) for z in geometry.zoom_factors],
    )
    k_p = (2 * np.pi / wavelength_m(geometry.energy_keV)) * geometry.effective_pixel_sizes_m[
        geometry.reference_index
    ]
    columns = _voxel_columns(delta, beta)
    wave = np.ones(plan.shape, np.complex64)  # air (T = 1) outside the phantom's rows
    band = slice(plan.row0, plan.row0 + nz)
    out = np.empty((len(plan.kernels), *detector_shape), np.float32)
    for theta in angles:
        proj = _joseph_matrix(float(theta), ny, nx, n_x, plan.axis_col) @ columns
        phi = proj[:, :nz].T * np.float32(k_p)
        absorb = proj[:, nz:].T * np.float32(k_p)
        wave[band] = np.exp(-absorb) * (np.cos(phi) - 1j * np.sin(phi))
        spectrum = scipy.fft.fft2(wave)
        for j, kernel in enumerate(plan.kernels):
            field = scipy.fft.ifft2(spectrum * kernel)
            intensity = field.real**2 + field.imag**2
            out[j] = (plan.cols[j] @ (plan.rows[j] @ intensity).T).T
        yield out.copy()


def detector_holograms(
    delta: ArrayLike,
    beta: ArrayLike,
    angles_rad: ArrayLike,
    *,
    voxel_size_um: float,
    energy_keV: float = 17.0,
    focus_to_sample_m: float | Sequence[float] = DEFAULT_FOCUS_TO_SAMPLE_M,
    focus_to_detector_m: float = DEFAULT_FOCUS_TO_DETECTOR_M,
    detector_pixel_size_m: float | None = None,
    detector_shape: tuple[int, int] | None = None,
    cor_offset_px: float = 0.0,
) -> NDArray[np.float32]:
    """Noise-free, flat-field-normalised detector images of a rotating phantom.

    The noise-free core of :func:`holotomo`: magnified holograms integrated over each distance's
    detector pixels, 1 in open beam, without illumination structure, drift or noise.

    Parameters
    ----------
    delta, beta : array_like, shape (nz, ny, nx)
        Refractive-index decrement and absorption index per voxel (finite, beta >= 0).
    angles_rad : array_like, shape (n_angles,)
        Rotation angles in radians.
    voxel_size_um, energy_keV, focus_to_sample_m, focus_to_detector_m, detector_pixel_size_m
        As in :func:`holotomo`.
    detector_shape : (int, int) or None
        Detector (ny, nx); default as in :func:`holotomo`.
    cor_offset_px : float
        Rotation axis offset from the optical axis in reference detector pixels.

    Returns
    -------
    ndarray, float32, shape (n_dist, n_angles, ny_det, nx_det)

    Examples
    --------
    >>> vol = np.zeros((8, 8, 8), np.float32)
    >>> h = detector_holograms(vol, vol, [0.0], voxel_size_um=1.0, detector_shape=(16, 16))
    >>> h.shape, bool(np.allclose(h, 1.0))
    ((4, 1, 16, 16), True)
    """
    d, b = _phantom(delta, beta)
    angles = _angles(angles_rad, "angles_rad")
    cor = _finite_float(cor_offset_px, "cor_offset_px")
    geometry = scan_geometry(
        voxel_size_um=voxel_size_um,
        energy_keV=energy_keV,
        focus_to_sample_m=focus_to_sample_m,
        focus_to_detector_m=focus_to_detector_m,
        detector_pixel_size_m=detector_pixel_size_m,
    )
    shape = _detector_shape(detector_shape, d.shape, cor)
    out = np.empty((len(geometry.distances), angles.size, *shape), np.float32)
    for a, frame in enumerate(_iter_detector_intensities(d, b, angles, geometry, shape, cor)):
        out[:, a] = frame
    return out


# --------------------------------------------------------------------------------------------
# the raw scan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HoloScan:
    """A simulated raw multi-distance holotomography scan (raw-scan contract of DESIGN.md).

    Attributes
    ----------
    data : ndarray, uint16, shape (n_dist, n_angles, ny, nx)
        Projections, one scan per focus-to-sample distance.
    flats : ndarray, uint16, shape (n_dist, n_flats, ny, nx)
        Open-beam frames per distance, taken at the projection indices ``attrs["flat_positions"]``.
    darks : ndarray, uint16, shape (n_darks, ny, nx)
        Dark frames (shutter closed).
    attrs : dict
        JSON-serialisable metadata: ``energy_keV``, ``detector_pixel_size_m``,
        ``focus_to_detector_m``, ``focus_to_sample_m`` (list), ``angles_rad`` (list),
        ``flat_positions`` (list) and ``simulated`` (ground truth of the simulation:
        ``cor_offset_px``, ``photons_per_pixel``, ``seed``, ``flat_drift``,
        ``defective_pixel_fraction``, ``voxel_size_um``, ``sample_shape`` [nz, ny, nx],
        ``sample_origin_px`` [row0, col0] of the phantom's (z=0, x=0) corner in the reference
        detector frame at angle 0).
    defect_mask : ndarray, bool, shape (ny, nx)
        Ground truth: pixels whose gain differs between flats and projections, or dead.
    """

    data: NDArray[np.uint16]
    flats: NDArray[np.uint16]
    darks: NDArray[np.uint16]
    attrs: dict
    defect_mask: NDArray[np.bool_]


def holotomo(
    delta: ArrayLike,
    beta: ArrayLike,
    *,
    voxel_size_um: float,
    energy_keV: float = 17.0,
    n_angles: int = 300,
    focus_to_sample_m: float | Sequence[float] = DEFAULT_FOCUS_TO_SAMPLE_M,
    focus_to_detector_m: float = DEFAULT_FOCUS_TO_DETECTOR_M,
    detector_pixel_size_m: float | None = None,
    detector_shape: tuple[int, int] | None = None,
    photons_per_pixel: float = 1e4,
    n_flats: int = 10,
    n_darks: int = 10,
    dark_level: float = 100.0,
    read_noise: float = 2.0,
    flat_drift: float = 0.03,
    defective_pixel_fraction: float = 0.0,
    cor_offset_px: float = 0.0,
    seed: int = 0,
    angle_range_rad: float = np.pi,
) -> HoloScan:
    """Simulate a raw ID16A-style multi-distance holotomography scan of a phantom.

    For each angle: project delta and beta (:func:`project` geometry), form
    ``T = exp(-i k p int delta - k p int beta)`` on the reference-pixel grid padded with air,
    propagate it by each effective distance ``z_eff,j = z1_j (D - z1_j) / D`` with
    ``exp(-i pi lambda z_eff |f|^2)``, average the intensity over distance ``j``'s detector
    pixels (``p_det / M_j`` in the sample plane, magnified about the optical axis), multiply by
    the illumination and expose: ``Poisson(photons * illumination * gain * I) + dark``, rounded
    and clipped to uint16.

    Default geometry (``energy_keV=17``, ``D = 1.2 m``, z1 = 21, 23, 29, 33 mm) for the
    70 nm voxels of the default electrode (``detector_pixel_size_m`` = 4.0 um):

    ======  ======  ===========  ============  =========  ==================
    z1/mm   M       p_eff / nm   z_eff / mm    N_F        1st CTF zero /um^-1
    ======  ======  ===========  ============  =========  ==================
    21      57.14   70.00        20.63         3.26e-3    0.815
    23      52.17   76.67        22.56         3.57e-3    0.780
    29      41.38   96.67        28.30         4.53e-3    0.696
    33      36.36   110.00       32.09         5.17e-3    0.654
    ======  ======  ===========  ============  =========  ==================

    The CTF zeros interleave: ``min sum_j sin^2(pi lambda z_eff,j f^2) = 0.91`` for f between
    the first CTF maximum and the tenth zero of the shortest distance.
    Illumination: per distance a smooth beam profile (Gaussian, falling to 0.6-0.85 at the
    edges of the field), a low-frequency speckle (3 % rms) and mirror stripes along rows and
    columns (2 % rms each), normalised to mean 1 at projection index 0; over the scan it is multiplied by
    ``1 + flat_drift * q / n_angles`` and shifted laterally by up to 0.5 px
    (q = projection index). Flats: ``ceil(n_flats / 2)`` at index 0, the rest at
    ``n_angles``. Dead pixels read 0 in data, flats and darks.

    Parameters
    ----------
    delta, beta : array_like, shape (nz, ny, nx)
        Refractive-index decrement and absorption index (finite; beta >= 0); z is the
        rotation axis and the detector's row direction.
    voxel_size_um : float
        Voxel size in micrometres; must equal the reference effective pixel p_det / M_ref.
    energy_keV : float
        Photon energy in keV.
    n_angles : int
        Number of projections (>= 2), equally spaced on [0, angle_range_rad).
    focus_to_sample_m : sequence of float
        Focus-to-sample distances z1 in metres, each in (0, focus_to_detector_m).
    focus_to_detector_m : float
        Focus-to-detector distance D in metres.
    detector_pixel_size_m : float or None
        Detector pixel size in metres; ``None`` = voxel size * M_ref.
    detector_shape : (int, int) or None
        Detector (ny, nx) in pixels. ``None``: ny = 1.25 nz and
        nx = max(1.25 nx, hypot(ny, nx) + 2 |cor_offset_px| + 4), rounded up to even, so the
        phantom stays inside the reference field of view at every angle.
    photons_per_pixel : float
        Mean photons per pixel and frame in open beam (> 0).
    n_flats, n_darks : int
        Flat frames per distance and dark frames (>= 1).
    dark_level : float
        Dark offset in counts (>= 0).
    read_noise : float
        Gaussian read noise standard deviation in counts (>= 0).
    flat_drift : float
        Relative change of the illumination from the first to the last flat (> -1).
    defective_pixel_fraction : float
        Fraction of pixels in [0, 0.5] whose projection gain differs by +-5-20 % from the flats;
        one in ten of them is dead instead.
    cor_offset_px : float
        Rotation-axis offset from the optical axis in reference pixels (column
        ``nx_det // 2 + cor_offset_px`` at the reference distance).
    seed : int
        Seed of ``np.random.default_rng`` (>= 0).
    angle_range_rad : float
        Angular range in radians, in (0, 2 pi].

    Returns
    -------
    HoloScan

    Raises
    ------
    ValueError
        Mismatched, non-3D or non-finite phantoms, a geometry whose reference effective pixel is
        not the voxel size, distances outside (0, D), or any out-of-range parameter.
    TypeError
        Non-numeric phantoms or non-integer counts.

    Examples
    --------
    >>> vol = np.zeros((8, 8, 8), np.float32)
    >>> scan = holotomo(vol, vol, voxel_size_um=1.0, n_angles=2, detector_shape=(16, 16))
    >>> scan.data.shape, scan.data.dtype.name, scan.flats.shape, scan.darks.shape
    ((4, 2, 16, 16), 'uint16', (4, 10, 16, 16), (10, 16, 16))
    """
    d, b = _phantom(delta, beta)
    n_angles = _integer(n_angles, "n_angles")
    if n_angles < 2:
        raise ValueError(f"n_angles: expected an integer >= 2; got {n_angles}")
    photons = _positive_float(photons_per_pixel, "photons_per_pixel")
    n_flats = _positive_int(n_flats, "n_flats")
    n_darks = _positive_int(n_darks, "n_darks")
    dark_level = _nonnegative_float(dark_level, "dark_level")
    read_noise = _nonnegative_float(read_noise, "read_noise")
    flat_drift = _finite_float(flat_drift, "flat_drift")
    if flat_drift <= -1:
        raise ValueError(f"flat_drift: expected a relative change > -1; got {flat_drift}")
    fraction = _nonnegative_float(defective_pixel_fraction, "defective_pixel_fraction")
    if fraction > 0.5:
        raise ValueError(f"defective_pixel_fraction: expected a value in [0, 0.5]; got {fraction}")
    cor = _finite_float(cor_offset_px, "cor_offset_px")
    seed = _nonnegative_int(seed, "seed")
    span = _positive_float(angle_range_rad, "angle_range_rad")
    if span > 2 * np.pi + 1e-12:
        raise ValueError(f"angle_range_rad: expected a range in (0, 2 pi]; got {span}")
    geometry = scan_geometry(
        voxel_size_um=voxel_size_um,
        energy_keV=energy_keV,
        focus_to_sample_m=focus_to_sample_m,
        focus_to_detector_m=focus_to_detector_m,
        detector_pixel_size_m=detector_pixel_size_m,
    )
    shape = _detector_shape(detector_shape, d.shape, cor)
    n_dist = len(geometry.distances)
    angles = np.arange(n_angles) * (span / n_angles)

    rng_illum, rng_defect, rng_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    illumination = _illumination_fields(rng_illum, n_dist, shape)
    directions = rng_illum.uniform(0, 2 * np.pi, n_dist)
    shifts = _ILLUMINATION_SHIFT_PX * np.stack([np.sin(directions), np.cos(directions)], axis=1)
    gain, dead = _defects(rng_defect, shape, fraction)
    if photons * float(illumination.max()) * 1.5 + dark_level > _UINT16_MAX:
        logger.warning(
            "photons_per_pixel=%g with peak illumination %.2f may saturate uint16 counts",
            photons,
            float(illumination.max()),
        )

    corners = [
        _shift_corners(field, shift) for field, shift in zip(illumination, shifts, strict=True)
    ]

    def beam(j: int, q: float) -> NDArray[np.float64]:
        frac = q / n_angles
        field = _shifted(corners[j], np.abs(shifts[j]) * frac)
        return photons * (1.0 + flat_drift * frac) * field

    def expose(expected: NDArray[np.float64]) -> NDArray[np.uint16]:
        counts = rng_noise.poisson(expected).astype(np.float64)
        counts += dark_level + read_noise * rng_noise.standard_normal(expected.shape)
        counts = np.clip(np.rint(counts), 0, _UINT16_MAX).astype(np.uint16)
        counts[dead] = 0
        return counts

    flat_positions = [0] * ((n_flats + 1) // 2) + [n_angles] * (n_flats // 2)
    flats = np.empty((n_dist, n_flats, *shape), np.uint16)
    for j in range(n_dist):
        for i, q in enumerate(flat_positions):
            flats[j, i] = expose(beam(j, q))
    darks = np.empty((n_darks, *shape), np.uint16)
    for i in range(n_darks):
        darks[i] = expose(np.zeros(shape))

    data = np.empty((n_dist, n_angles, *shape), np.uint16)
    frames = _iter_detector_intensities(d, b, angles, geometry, shape, cor)
    step = max(1, n_angles // 10)
    for a, intensity in enumerate(frames):
        for j in range(n_dist):
            data[j, a] = expose(beam(j, a) * gain * np.maximum(intensity[j], 0.0))
        if (a + 1) % step == 0 or a + 1 == n_angles:
            logger.info("holotomo: %d / %d angles simulated", a + 1, n_angles)

    nz, _, nx = d.shape
    attrs = {
        "energy_keV": float(energy_keV),
        "detector_pixel_size_m": float(geometry.detector_pixel_size_m),
        "focus_to_detector_m": float(geometry.focus_to_detector_m),
        "focus_to_sample_m": [float(g.focus_to_sample_m) for g in geometry.distances],
        "angles_rad": [float(a) for a in angles],
        "flat_positions": flat_positions,
        "simulated": {
            "cor_offset_px": cor,
            "photons_per_pixel": photons,
            "seed": seed,
            "flat_drift": flat_drift,
            "defective_pixel_fraction": fraction,
            "voxel_size_um": float(voxel_size_um),
            "sample_shape": [int(n) for n in d.shape],
            "sample_origin_px": [
                float(shape[0] // 2 - nz // 2),
                float(shape[1] // 2 + cor - nx // 2),
            ],
        },
    }
    return HoloScan(
        data=data, flats=flats, darks=darks, attrs=attrs, defect_mask=(gain != 1.0) | dead
    )


def _illumination_fields(
    rng: np.random.Generator, n_dist: int, shape: tuple[int, int]
) -> NDArray[np.float64]:
    """Structured, distance-dependent beam profiles (n_dist, ny, nx), each with mean 1."""
    ny, nx = shape
    yy = np.linspace(-1.0, 1.0, ny)[:, None]
    xx = np.linspace(-1.0, 1.0, nx)[None, :]
    out = np.empty((n_dist, ny, nx))
    for j in range(n_dist):
        cy, cx = rng.uniform(-0.1, 0.1, 2)
        wy, wx = rng.uniform(1.6, 2.2, 2)
        profile = np.exp(-(((yy - cy) / wy) ** 2) - ((xx - cx) / wx) ** 2)
        speckle = ndi.gaussian_filter(rng.standard_normal(shape), sigma=max(shape) / 24)
        stripes_x = ndi.gaussian_filter1d(rng.standard_normal(nx), sigma=max(nx / 64, 1.0))
        stripes_y = ndi.gaussian_filter1d(rng.standard_normal(ny), sigma=max(ny / 64, 1.0))
        field = (
            profile
            * (1 + 0.03 * _standardise(speckle))
            * (1 + 0.02 * _standardise(stripes_x))[None, :]
            * (1 + 0.02 * _standardise(stripes_y))[:, None]
        )
        out[j] = np.clip(field, 0.05, None) / field.mean()
    return out


def _shift_corners(
    field: NDArray[np.float64], shift: NDArray[np.float64]
) -> tuple[NDArray[np.float64], ...]:
    """``field`` and its one-pixel neighbours in the direction of ``shift`` (edges repeated).

    With these, a sub-pixel shift is a bilinear combination (``_shifted``), equivalent to
    ``scipy.ndimage.shift(field, shift, order=1, mode="nearest")`` for ``|shift| <= 1``.
    """
    ny, nx = field.shape
    rows = np.clip(np.arange(ny) - int(np.sign(shift[0])), 0, ny - 1)
    cols = np.clip(np.arange(nx) - int(np.sign(shift[1])), 0, nx - 1)
    return field, field[rows], field[:, cols], field[rows][:, cols]


def _shifted(corners: tuple[NDArray[np.float64], ...], frac_yx: NDArray) -> NDArray[np.float64]:
    """Bilinear shift by ``frac_yx`` (each in [0, 1]) towards the neighbours of ``corners``."""
    fy, fx = float(frac_yx[0]), float(frac_yx[1])
    f00, f10, f01, f11 = corners
    return (1 - fy) * ((1 - fx) * f00 + fx * f01) + fy * ((1 - fx) * f10 + fx * f11)


def _standardise(x: NDArray[np.float64]) -> NDArray[np.float64]:
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)


def _defects(
    rng: np.random.Generator, shape: tuple[int, int], fraction: float
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Projection gain map (1 for good pixels) and dead-pixel mask."""
    gain = np.ones(shape)
    dead = np.zeros(shape, bool)
    n_def = round(fraction * shape[0] * shape[1])
    if n_def == 0:
        return gain, dead
    pick = rng.choice(shape[0] * shape[1], size=n_def, replace=False)
    n_dead = n_def // 10
    dead.flat[pick[:n_dead]] = True
    rest = pick[n_dead:]
    gain.flat[rest] = 1.0 + rng.choice([-1.0, 1.0], rest.size) * rng.uniform(0.05, 0.2, rest.size)
    return gain, dead


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _real_array(x: ArrayLike, name: str, *, ndims: tuple[int, ...]) -> NDArray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric array; got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        want = " or ".join(f"{n}D" for n in ndims)
        raise ValueError(f"{name}: expected a {want} array; got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf (shape {arr.shape})")
    return arr


def _phantom(delta: ArrayLike, beta: ArrayLike) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    d = _real_array(delta, "delta", ndims=(3,)).astype(np.float32)
    b = _real_array(beta, "beta", ndims=(3,)).astype(np.float32)
    if d.shape != b.shape:
        raise ValueError(
            f"delta, beta: expected equal shapes (nz, ny, nx); got {d.shape} and {b.shape}"
        )
    if np.any(b < 0):
        raise ValueError(f"beta: expected absorption indices >= 0; minimum is {b.min():.3g}")
    return d, b


def _angles(x: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.atleast_1d(np.asarray(x))
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real angles in radians; got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected a 1D array of finite angles; got shape {arr.shape}")
    return arr


def _detector_shape(
    detector_shape: tuple[int, int] | None, sample_shape: tuple[int, ...], cor: float
) -> tuple[int, int]:
    nz, ny, nx = sample_shape
    if detector_shape is None:
        rows = 1.25 * nz
        cols = max(1.25 * nx, math.hypot(ny, nx) + 2 * abs(cor) + 4)
        return 2 * math.ceil(rows / 2), 2 * math.ceil(cols / 2)
    try:
        dims = tuple(detector_shape)
    except TypeError:
        raise TypeError(
            f"detector_shape: expected (ny, nx) integers; got {detector_shape!r}"
        ) from None
    if len(dims) != 2:
        raise ValueError(f"detector_shape: expected (ny, nx); got {detector_shape!r}")
    dims = tuple(_positive_int(n, "detector_shape") for n in dims)
    if min(dims) < 4:
        raise ValueError(f"detector_shape: expected at least 4 x 4 pixels; got {dims}")
    return dims  # type: ignore[return-value]


def _finite_float(x: object, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name}: expected a real number; got {type(x).__name__} {x!r}")
    val = float(x)
    if not math.isfinite(val):
        raise ValueError(f"{name}: expected a finite number; got {val}")
    return val


def _positive_float(x: object, name: str) -> float:
    val = _finite_float(x, name)
    if val <= 0:
        raise ValueError(f"{name}: expected a value > 0; got {val}")
    return val


def _nonnegative_float(x: object, name: str) -> float:
    val = _finite_float(x, name)
    if val < 0:
        raise ValueError(f"{name}: expected a value >= 0; got {val}")
    return val


def _integer(x: object, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name}: expected an integer; got {type(x).__name__} {x!r}")
    return int(x)


def _positive_int(x: object, name: str) -> int:
    val = _integer(x, name)
    if val < 1:
        raise ValueError(f"{name}: expected an integer >= 1; got {val}")
    return val


def _nonnegative_int(x: object, name: str) -> int:
    val = _integer(x, name)
    if val < 0:
        raise ValueError(f"{name}: expected an integer >= 0; got {val}")
    return val
