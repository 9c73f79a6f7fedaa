"""Iterative multi-distance phase retrieval: a least-squares fit of the Fresnel forward model.

Linear retrievals (:func:`holocat.tomo.paganin`, :func:`holocat.tomo.ctf_multi`) invert a
linearised hologram model. A battery electrode seen edge-on is a *strong* object: tens of
radians of projected phase with steep gradients at particle edges, so the holograms at
ID16A-like distances (Fresnel number ~0.2 per pixel) are far outside the linear regime; both
methods blur the projected phase (Paganin acts like a ~1-pixel Gaussian), and at 0.5 um voxels
that costs several points of volume Pearson r (SCIENCE.md §2 "Validity"). :func:`refine_phase`
starts from Paganin and minimises, for every projection independently,

    L(phi) = 1/2 sum_j || D_j |F^-1[ P_j F[T(phi)] ]|^2 - I_j ||^2

with ``T = exp(-(beta/delta + i) phi)`` (homogeneous object: B = phi / (delta/beta)),
``P_j = exp(-i pi lambda z_j |f|^2)`` (the conventions of :mod:`holocat.optics`) and ``D_j``
the detector of distance ``j`` as :func:`holocat.tomo.prepare_distances` leaves it: the area
average over that distance's pixel (``p_eff,j / p_common`` common pixels wide, about the
optical-axis pixel) followed by the same cubic-spline resampling onto the common grid. The
reference distance (pixel = common pixel) is sampled as is. An optional Gaussian detector PSF
(``detector_psf_px``, in detector pixels, the same at every distance) acts before the pixel
integration. Because ``D_j`` reproduces pixel integration *and* the aliasing of the coarser
distances, the fit has no model error from the detector (a linear CTF with a sinc MTF does).

Optimiser: limited-memory BFGS (history 8) with an Armijo backtracking line search
(quadratic interpolation), batched over projections but with every scalar (step, curvature)
per projection, so a projection's result does not depend on which other projections share
its batch. The gradient is analytic (adjoint FFTs and detector transposes), checked against
torch autograd in the tests. A fixed iteration count is the regulariser (early stopping).

Grid: the common field of view padded by ``margin_px`` on every side (phase edge-extended from
the start value) so that Fresnel fringes neither wrap around nor leave the fitted region; the
data term covers the field of view only.

The same code runs on CPU and CUDA (``device``; see :mod:`holocat._device`); float32 /
complex64 arithmetic.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from scipy.fft import next_fast_len

from holocat._device import import_torch, resolve_device
from holocat.optics import wavelength_m
from holocat.tomo.phase import _check_distances, _check_stack, _positive, _to_tensor, paganin

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = ["predict_intensities", "refine_phase"]

logger = logging.getLogger(__name__)

#: Detector-matrix entries below this are dropped (the cubic-spline prefilter decays as 0.268^k)
_MATRIX_EPS = 1e-7
#: Grid elements (float32) per batch of projections: bounds memory to a few hundred MiB
_BATCH_ELEMENTS = 1 << 21
#: Largest step of the first iteration along the (scaled) negative gradient, radians
_FIRST_STEP_RAD = 0.1
#: Armijo sufficient-decrease constant and the number of backtracking steps
_ARMIJO_C1 = 1e-4
_MAX_BACKTRACK = 8


# --------------------------------------------------------------------------------------------
# the forward model
# --------------------------------------------------------------------------------------------


def _area_matrix(n_coarse: int, zoom: float, n_fine: int, centre_fine: float) -> NDArray:
    """(n_coarse, n_fine) box average: coarse pixel r is ``zoom`` fine pixels wide, centred at
    ``centre_fine + (r - n_coarse // 2) * zoom``; fine pixel i covers [i - 1/2, i + 1/2]."""
    centre = centre_fine + (np.arange(n_coarse) - n_coarse // 2) * zoom
    lo, hi = centre - zoom / 2, centre + zoom / 2
    i = np.arange(n_fine, dtype=float)
    overlap = np.minimum(hi[:, None], i + 0.5) - np.maximum(lo[:, None], i - 0.5)
    return np.clip(overlap, 0.0, None) / zoom


def _spline_matrix(n_out: int, n_in: int, zoom: float) -> NDArray:
    """(n_out, n_in) cubic-spline sampling (scipy ``map_coordinates``, order 3, mode "nearest")
    of an input at ``n_in // 2 + (i - n_out // 2) / zoom`` — one axis of
    :func:`holocat.tomo.rescale_to_reference`."""
    coords = n_in // 2 + (np.arange(n_out) - n_out // 2) / zoom
    out = np.empty((n_out, n_in))
    unit = np.zeros(n_in)
    for k in range(n_in):
        unit[k] = 1.0
        out[:, k] = ndimage.map_coordinates(unit, [coords], order=3, mode="nearest")
        unit[k] = 0.0
    return out


def _detector_axis(
    n_ref: int, n_fine: int, offset: int, zoom: float
) -> tuple[int, int, NDArray | None]:
    """One axis of a detector operator on the padded grid: (first, stop, matrix or None).

    ``None`` means point sampling (a crop ``[first, stop)``); otherwise ``matrix`` is the
    (n_ref, stop - first) area average + cubic-spline resampling restricted to the fine
    pixels it touches.
    """
    if abs(zoom - 1.0) < 1e-6:
        return offset, offset + n_ref, None
    centre = offset + n_ref // 2  # optical axis on the padded grid
    half = int((min(centre, n_fine - 1 - centre) - zoom / 2 - 0.5) // zoom)
    if half < 1:
        raise RuntimeError("refine_phase: grid too small for the detector model; holocat bug")
    n_coarse = 2 * half + 1
    mat = _spline_matrix(n_ref, n_coarse, zoom) @ _area_matrix(n_coarse, zoom, n_fine, centre)
    cols = np.flatnonzero(np.abs(mat).max(axis=0) > _MATRIX_EPS)
    first, stop = int(cols[0]), int(cols[-1]) + 1
    return first, stop, mat[:, first:stop]


@dataclass(frozen=True, eq=False)
class _SparseAxis:
    """A sparse (n_out, n_in) detector matrix and its transpose (torch CSR tensors).

    The detector matrices have ~30 entries per row above :data:`_MATRIX_EPS` (box average +
    the decaying cubic-spline prefilter); as sparse products they cost O(30 n^2) per image
    instead of the dense O(n^3): 10x faster at 512^2 and 5x at 2048^2 on 2 CPU cores [M].
    """

    matrix: Any  # (n_out, n_in) sparse CSR, float32
    transpose: Any  # (n_in, n_out) sparse CSR, float32
    n_in: int
    n_out: int

    @staticmethod
    def _product(mat: Any, x: torch.Tensor, dim: int, n: int) -> torch.Tensor:
        moved = x.movedim(dim, 0)
        rest = moved.shape[1:]
        out = mat @ moved.reshape(moved.shape[0], -1)
        return out.reshape(n, *rest).movedim(0, dim)

    def apply(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """``M`` along ``dim`` of ``x`` (length n_in there -> n_out); autograd-safe in x."""
        return self._product(self.matrix, x, dim, self.n_out)

    def adjoint(self, y: torch.Tensor, dim: int) -> torch.Tensor:
        """``M^T`` along ``dim`` of ``y`` (length n_out there -> n_in)."""
        return self._product(self.transpose, y, dim, self.n_in)


def _sparse_axis(mat: NDArray, device: torch.device) -> _SparseAxis:
    """Sparse form of a dense (n_out, n_in) matrix without its entries <= :data:`_MATRIX_EPS`
    (the weight dropped per row is below ~1e-6)."""
    import warnings

    torch = import_torch()
    kept = np.where(np.abs(mat) > _MATRIX_EPS, mat, 0.0).astype(np.float32)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": mm is what we use
        warnings.simplefilter("ignore", UserWarning)
        matrix = torch.from_numpy(kept).to_sparse_csr().to(device)
        transpose = torch.from_numpy(np.ascontiguousarray(kept.T)).to_sparse_csr().to(device)
    return _SparseAxis(matrix=matrix, transpose=transpose, n_in=mat.shape[1], n_out=mat.shape[0])


@dataclass(frozen=True, eq=False)
class _Model:
    """Forward model of one set of distances on a padded grid (torch tensors on ``device``)."""

    shape: tuple[int, int]  # field of view (ny, nx)
    grid: tuple[int, int]  # padded grid (Ny, Nx)
    top: int
    left: int
    coef: complex  # T = exp(coef * phi)
    kernels: Any  # (n_dist, Ny, Nx) complex64 Fresnel propagators
    psf: Any  # (n_dist, Ny, Nx // 2 + 1) float32 Gaussian transfer, or None
    detectors: tuple[tuple[int, int, int, int, Any, Any], ...]  # y0, y1, x0, x1, Dy, Dx

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Edge-extend (b, ny, nx) to the grid."""
        torch = import_torch()
        ny, nx = self.shape
        pads = (self.left, self.grid[1] - nx - self.left, self.top, self.grid[0] - ny - self.top)
        return torch.nn.functional.pad(x.unsqueeze(1), pads, mode="replicate").squeeze(1)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.top : self.top + self.shape[0], self.left : self.left + self.shape[1]]


def _margin(lam: float, z_max: float, pixel: float, zoom_max: float) -> int:
    """Padding that holds the Fresnel spread lambda z / (2 p^2) of the highest frequency and the
    detector model's spline support (8 coarse pixels beyond the field of view)."""
    spread = lam * z_max / (2 * pixel**2)
    return int(max(16, math.ceil(spread) + 8, math.ceil(9 * zoom_max) + 2))


@dataclass(frozen=True)
class _Setup:
    """Validated parameters of one set of distances (SI units; zooms = p_eff,j / p)."""

    lam: float
    distances: NDArray[np.float64]
    pixel: float
    delta_beta: float
    zooms: NDArray[np.float64]
    psf_px: float
    margin: int


def _build_model(shape: tuple[int, int], cfg: _Setup, device: torch.device) -> _Model:
    torch = import_torch()
    lam, distances, pixel, zooms, psf_px, margin = (
        cfg.lam,
        cfg.distances,
        cfg.pixel,
        cfg.zooms,
        cfg.psf_px,
        cfg.margin,
    )
    ny, nx = shape
    grid = (next_fast_len(ny + 2 * margin, real=True), next_fast_len(nx + 2 * margin, real=True))
    top, left = (grid[0] - ny) // 2, (grid[1] - nx) // 2
    fy = np.fft.fftfreq(grid[0], d=pixel)
    fx = np.fft.fftfreq(grid[1], d=pixel)
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2
    kernels = np.exp(-1j * np.pi * lam * distances[:, None, None] * f2[None])
    psf = None
    if psf_px > 0:
        fxr = np.fft.rfftfreq(grid[1], d=pixel)
        f2r = fy[:, None] ** 2 + fxr[None, :] ** 2
        sigma = psf_px * zooms * pixel  # detector pixels -> metres in the sample plane
        psf = np.exp(-2 * np.pi**2 * sigma[:, None, None] ** 2 * f2r[None])
        psf = torch.from_numpy(psf.astype(np.float32)).to(device)
    detectors = []
    for zoom in zooms:
        y0, y1, dy = _detector_axis(ny, grid[0], top, float(zoom))
        x0, x1, dx = _detector_axis(nx, grid[1], left, float(zoom))
        if dy is None:
            detectors.append((y0, y1, x0, x1, None, None))
            continue
        detectors.append((y0, y1, x0, x1, _sparse_axis(dy, device), _sparse_axis(dx, device)))
    return _Model(
        shape=(ny, nx),
        grid=grid,
        top=top,
        left=left,
        coef=complex(-1.0 / cfg.delta_beta, -1.0),
        kernels=torch.from_numpy(kernels.astype(np.complex64)).to(device),
        psf=psf,
        detectors=tuple(detectors),
    )


def _blur(model: _Model, image: torch.Tensor, j: int) -> torch.Tensor:
    """Gaussian detector PSF of distance j (self-adjoint), or the identity."""
    if model.psf is None:
        return image
    torch = import_torch()
    return torch.fft.irfft2(torch.fft.rfft2(image) * model.psf[j], s=model.grid)


def _detect(model: _Model, intensity: torch.Tensor, j: int) -> torch.Tensor:
    """(b, Ny, Nx) intensity at distance j -> (b, ny, nx) as recorded on the common grid."""
    y0, y1, x0, x1, dy, dx = model.detectors[j]
    window = _blur(model, intensity, j)[:, y0:y1, x0:x1]
    return window if dy is None else dx.apply(dy.apply(window, 1), 2)


def _predict(model: _Model, phi: torch.Tensor) -> torch.Tensor:
    """Predicted intensities (b, n_dist, ny, nx) of grid phases (b, Ny, Nx); autograd-safe."""
    torch = import_torch()
    spectrum = torch.fft.fft2(torch.exp(phi * model.coef))
    out = []
    for j in range(model.kernels.shape[0]):
        wave = torch.fft.ifft2(spectrum * model.kernels[j])
        out.append(_detect(model, wave.real**2 + wave.imag**2, j))
    return torch.stack(out, dim=1)


def _loss_grad(
    model: _Model, phi: torch.Tensor, data: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-projection loss 1/2 sum (D|U|^2 - I)^2, shape (b,), and its gradient in phi."""
    torch = import_torch()
    transmission = torch.exp(phi * model.coef)
    spectrum = torch.fft.fft2(transmission)
    grad_spectrum = torch.zeros_like(spectrum)
    loss = torch.zeros(phi.shape[0], dtype=phi.dtype, device=phi.device)
    for j, (y0, y1, x0, x1, dy, dx) in enumerate(model.detectors):
        wave = torch.fft.ifft2(spectrum * model.kernels[j])
        intensity = _blur(model, wave.real**2 + wave.imag**2, j)
        window = intensity[:, y0:y1, x0:x1]
        resid = (window if dy is None else dx.apply(dy.apply(window, 1), 2)) - data[:, j]
        loss = loss + 0.5 * (resid * resid).flatten(1).sum(1)
        back = torch.zeros(phi.shape, dtype=phi.dtype, device=phi.device)
        back[:, y0:y1, x0:x1] = resid if dy is None else dy.adjoint(dx.adjoint(resid, 2), 1)
        # dL/dU* = 2 (dL/dI) U; adjoint of ifft2 is fft2 / N, of fft2 is N ifft2
        grad_spectrum += model.kernels[j].conj() * torch.fft.fft2(2 * _blur(model, back, j) * wave)
    grad_t = torch.fft.ifft2(grad_spectrum)
    grad = (grad_t.conj() * (model.coef * transmission)).real
    return loss, grad


# --------------------------------------------------------------------------------------------
# batched L-BFGS with per-projection scalars
# --------------------------------------------------------------------------------------------


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1)


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def _scaled(direction: torch.Tensor) -> torch.Tensor:
    """Scale each projection's direction to a largest entry of _FIRST_STEP_RAD."""
    peak = direction.flatten(1).abs().amax(1).clamp(min=1e-30)
    return direction * _col(_FIRST_STEP_RAD / peak, direction)


def _lbfgs(
    fg: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    x0: torch.Tensor,
    *,
    n_iter: int,
    history: int,
) -> torch.Tensor:
    """Minimise independent objectives, one per batch element; ``fg(x, rows)`` returns the loss
    (len(rows),) and gradient for the batch rows ``rows``."""
    torch = import_torch()
    rows_all = torch.arange(x0.shape[0], device=x0.device)
    x = x0.clone()
    f, g = fg(x, rows_all)
    s_hist: list[torch.Tensor] = []
    y_hist: list[torch.Tensor] = []
    rho_hist: list[torch.Tensor] = []
    for _ in range(n_iter):
        q = g.clone()
        alphas = []
        for s, y, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rho_hist), strict=True):
            a = rho * _dot(s, q)
            alphas.append(a)
            q -= _col(a, q) * y
        if s_hist:
            sy, yy = _dot(s_hist[-1], y_hist[-1]), _dot(y_hist[-1], y_hist[-1])
            gamma = torch.where(sy > 0, sy / yy.clamp(min=1e-30), torch.zeros_like(sy))
            q = torch.where(_col(gamma > 0, q), q * _col(gamma, q), _scaled(q))
        else:
            q = _scaled(q)
        for s, y, rho, a in zip(s_hist, y_hist, rho_hist, reversed(alphas), strict=True):
            q += _col(a - rho * _dot(y, q), q) * s
        p = -q
        slope = _dot(g, p)
        uphill = slope >= 0
        if bool(uphill.any()):  # lost curvature information: steepest descent
            p[uphill] = -_scaled(g[uphill])
            slope = _dot(g, p)
        step = torch.ones_like(f)
        x_new, f_new, g_new = x.clone(), f.clone(), g.clone()
        rows = rows_all
        for _ in range(_MAX_BACKTRACK + 1):
            t = step[rows]
            x_try = x[rows] + _col(t, p) * p[rows]
            f_try, g_try = fg(x_try, rows)
            ok = f_try <= f[rows] + _ARMIJO_C1 * t * slope[rows]
            accepted = rows[ok]
            x_new[accepted], f_new[accepted], g_new[accepted] = x_try[ok], f_try[ok], g_try[ok]
            if bool(ok.all()):
                break
            rows = rows[~ok]
            t, f_bad = t[~ok], f_try[~ok]
            curv = 2 * (f_bad - f[rows] - slope[rows] * t)
            t_quad = torch.where(curv > 0, -slope[rows] * t**2 / curv.clamp(min=1e-30), 0.1 * t)
            step[rows] = torch.minimum(torch.maximum(t_quad, 0.1 * t), 0.5 * t)
        s, y = x_new - x, g_new - g
        sy = _dot(s, y)
        s_hist.append(s)
        y_hist.append(y)
        rho_hist.append(torch.where(sy > 1e-20, 1.0 / sy.clamp(min=1e-30), torch.zeros_like(sy)))
        if len(s_hist) > history:
            del s_hist[0], y_hist[0], rho_hist[0]
        x, f, g = x_new, f_new, g_new
    return x


# --------------------------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------------------------


def _setup(
    n_dist: int,
    *,
    energy_keV: float,
    distances_m: Sequence[float],
    pixel_size_m: float,
    delta_beta: float,
    detector_pixel_sizes_m: Sequence[float] | None,
    detector_psf_px: float,
    margin_px: int | None,
    shape_name: str,
    shape: tuple[int, ...],
) -> _Setup:
    lam = wavelength_m(energy_keV)
    z = _check_distances(distances_m, n_dist, shape_name, shape)
    pixel = _positive("pixel_size_m", pixel_size_m)
    db = _positive("delta_beta", delta_beta)
    if detector_pixel_sizes_m is None:
        zooms = np.ones(n_dist)
    else:
        sizes = np.asarray(detector_pixel_sizes_m, dtype=float)
        if sizes.shape != (n_dist,) or not np.all(np.isfinite(sizes)):
            raise ValueError(
                f"detector_pixel_sizes_m: expected {n_dist} finite effective pixel sizes in "
                f"metres, one per distance; got {detector_pixel_sizes_m!r}"
            )
        zooms = sizes / pixel
        if np.any(zooms < 1 - 1e-6):
            raise ValueError(
                "detector_pixel_sizes_m: every distance's effective pixel must be >= the common "
                f"pixel pixel_size_m = {pixel:.6g} m (the common grid is the finest); got "
                f"{sizes.tolist()}"
            )
        zooms = np.maximum(zooms, 1.0)
    psf = _positive("detector_psf_px", detector_psf_px, allow_zero=True)
    if margin_px is None:
        margin = _margin(lam, float(z.max()), pixel, float(zooms.max()))
    else:
        if isinstance(margin_px, bool) or not isinstance(margin_px, numbers.Integral):
            raise TypeError(f"margin_px: expected an integer or None; got {margin_px!r}")
        margin = int(margin_px)
        need = math.ceil(9 * zooms.max()) + 2
        if margin < need:
            raise ValueError(
                f"margin_px: expected >= {need} pixels for detector pixels up to "
                f"{zooms.max():.3g} common pixels wide; got {margin}"
            )
    return _Setup(lam, z, pixel, db, zooms, psf, margin)


def predict_intensities(
    phase: ArrayLike,
    *,
    energy_keV: float,
    distances_m: Sequence[float],
    pixel_size_m: float,
    delta_beta: float,
    detector_pixel_sizes_m: Sequence[float] | None = None,
    detector_psf_px: float = 0.0,
    margin_px: int | None = None,
    device: str | Any = "auto",
) -> NDArray[np.float32]:
    """Holograms of a homogeneous object as :func:`refine_phase` models them.

    ``T = exp(-(beta/delta + i) phi)`` (phase edge-extended beyond the field of view),
    propagated by ``exp(-i pi lambda z_j |f|^2)``, ``|.|^2``, optionally blurred by the
    detector PSF, then recorded by distance j's detector: the area average over its pixel
    (``detector_pixel_sizes_m[j] / pixel_size_m`` common pixels, about the optical-axis pixel
    ``(ny // 2, nx // 2)``) resampled onto the common grid by the cubic spline of
    :func:`holocat.tomo.rescale_to_reference`.

    Parameters
    ----------
    phase : array_like, shape (ny, nx) or (n, ny, nx)
        Projected phase phi in radians (>= 0 for matter) on the common grid.
    energy_keV : float
        Photon energy in keV; > 0.
    distances_m : sequence of float, length n_dist
        Effective propagation distances in metres; >= 0.
    pixel_size_m : float
        Common (reference) effective pixel size in metres; > 0.
    delta_beta : float
        delta / beta of the (homogeneous) material; > 0.
    detector_pixel_sizes_m : sequence of float, optional
        Effective pixel size p_eff,j of each distance in the sample plane, metres, each
        >= ``pixel_size_m``. ``None``: every distance sampled on the common grid.
    detector_psf_px : float
        Gaussian detector PSF sigma in detector pixels (the same detector at every distance);
        >= 0; 0 (default) = none.
    margin_px : int, optional
        Padding of the field of view on each side, pixels; default from the Fresnel spread
        and the detector pixel sizes.
    device : str or torch.device
        "auto", "cpu", "cuda" or "cuda:N".

    Returns
    -------
    numpy.ndarray, float32, shape (n_dist, ny, nx) or (n, n_dist, ny, nx)
        Flat-field-normalised intensities (1 in open beam).

    Raises
    ------
    TypeError, ValueError
        If ``phase`` is not a finite real (ny, nx)/(n, ny, nx) array or a parameter is out of
        range (see :func:`refine_phase`).

    Examples
    --------
    >>> import numpy as np
    >>> holo = predict_intensities(np.full((16, 16), 0.5), energy_keV=17.0,
    ...                            distances_m=[0.0, 0.01], pixel_size_m=5e-7,
    ...                            delta_beta=50.0, device="cpu")
    >>> holo.shape, round(float(holo[0, 8, 8]), 4)  # exp(-2 * 0.5 / 50)
    ((2, 16, 16), 0.9802)
    """
    img = _check_stack("phase", phase, (2, 3), "(ny, nx) or (n, ny, nx)")
    n_dist = len(np.atleast_1d(np.asarray(distances_m, dtype=object)))
    cfg = _setup(
        n_dist,
        energy_keV=energy_keV,
        distances_m=distances_m,
        pixel_size_m=pixel_size_m,
        delta_beta=delta_beta,
        detector_pixel_sizes_m=detector_pixel_sizes_m,
        detector_psf_px=detector_psf_px,
        margin_px=margin_px,
        shape_name="phase",
        shape=img.shape,
    )
    dev = resolve_device(device)
    torch = import_torch()
    stack = img.reshape(-1, *img.shape[-2:])
    model = _build_model(stack.shape[-2:], cfg, dev)
    out = np.empty((stack.shape[0], n_dist, *stack.shape[-2:]), np.float32)
    size = max(1, _BATCH_ELEMENTS // (model.grid[0] * model.grid[1]))
    with torch.no_grad():
        for a in range(0, stack.shape[0], size):
            x = _to_tensor(stack[a : a + size], dev)
            out[a : a + size] = _predict(model, model.pad(x)).cpu().numpy()
    return out.reshape(img.shape[:-2] + (n_dist,) + img.shape[-2:])


def refine_phase(
    intensities: ArrayLike,
    *,
    energy_keV: float,
    distances_m: Sequence[float],
    pixel_size_m: float,
    delta_beta: float,
    detector_pixel_sizes_m: Sequence[float] | None = None,
    detector_psf_px: float = 0.0,
    initial: ArrayLike | None = None,
    n_iter: int = 20,
    history: int = 8,
    margin_px: int | None = None,
    device: str | Any = "auto",
) -> NDArray[np.float32]:
    """Multi-distance phase retrieval by a nonlinear least-squares fit of the holograms.

    Minimises ``1/2 sum_j ||D_j |F^-1[P_j F[T(phi)]]|^2 - I_j||^2`` over the projected phase
    phi of a homogeneous object (``T = exp(-(beta/delta + i) phi)``), projection by projection,
    with ``n_iter`` L-BFGS iterations from ``initial`` (default: Paganin at the distance
    sampled on the common grid, the shortest if none is). The forward model is
    :func:`predict_intensities`; see the module docstring for the detector model.

    Accuracy [M] (noise-free cone-beam holograms from :mod:`holocat.simulate`): a weak sphere
    with sharp edges at four magnified distances (detector pixels 1.0-1.57 common pixels),
    0.3 % relative L2 after 10 iterations where :func:`ctf_multi` gives 2.8 %; on the demo
    electrode (z1 = 20-30 mm, 0.5 um pixels, 10^4 photons) 20 iterations raise the volume
    Pearson r against the simulator's delta from 0.909 / 0.890 (Paganin) to 0.949 / 0.940 at
    NMC's own delta/beta (40.6) and to 0.962 / 0.955 at the particle-matrix contrast ratio
    (27.0, :func:`holocat.optics.contrast_delta_beta`). Cost per iteration ~ 1.1 evaluations
    of the model and its gradient: (1 + 2 n_dist) complex FFTs of the padded grid, plus the
    sparse detector matrices.

    Parameters
    ----------
    intensities : array_like, shape (n_dist, ny, nx) or (n, n_dist, ny, nx)
        Flat-field-normalised intensities of every distance on the common grid (output of
        :func:`holocat.tomo.prepare_distances`, distances on axis -3).
    energy_keV : float
        Photon energy in keV; > 0.
    distances_m : sequence of float, length n_dist
        Effective propagation distances z_eff in metres; >= 0.
    pixel_size_m : float
        Common (reference) effective pixel size in metres; > 0.
    delta_beta : float
        delta / beta of the material; for particles in a matrix the contrast ratio
        (:func:`holocat.optics.contrast_delta_beta`; NMC811 in carbon-binder + electrolyte at
        17 keV: 27.0, NMC811 alone 40.6); > 0.
    detector_pixel_sizes_m : sequence of float, optional
        Effective pixel size p_eff,j = p_det / M_j of each distance in metres, each
        >= ``pixel_size_m``: the model integrates over it and resamples like
        :func:`holocat.tomo.prepare_distances`. ``None``: all distances point-sampled on the
        common grid (data already on one pixel size).
    detector_psf_px : float
        Gaussian PSF sigma of the detector in detector pixels (the same detector at every
        distance, ``detector_psf_px * p_eff,j`` in the sample plane); >= 0, default 0.
    initial : array_like, optional
        Starting phase, shape (ny, nx) or (n, ny, nx) like the result; default Paganin.
    n_iter : int
        L-BFGS iterations; >= 0 (0 returns the start). Default 20: on the demo the volume r
        gains 0.005 from 10 to 20 iterations and 0.001 from 20 to 30 [M].
    history : int
        L-BFGS memory (pairs); >= 1.
    margin_px : int, optional
        Padding of the field of view on each side; default from the Fresnel spread
        ``lambda z_max / (2 p^2)`` and the detector pixel sizes.
    device : str or torch.device
        "auto", "cpu", "cuda" or "cuda:N".

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx) or (n, ny, nx)
        Projected phase in radians.

    Raises
    ------
    TypeError, ValueError
        If ``intensities`` is not a finite real array of the shapes above, the number of
        distances or detector pixel sizes differs from ``intensities.shape[-3]``, a pixel
        size is smaller than ``pixel_size_m``, ``initial`` has the wrong shape, or a
        parameter is out of range.
    RuntimeError
        If ``device="cuda"`` is requested without a GPU.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:32, :32] - 16.0
    >>> phi = 1.5 * np.exp(-(yy**2 + xx**2) / 40.0)
    >>> kw = dict(energy_keV=17.0, distances_m=[0.01, 0.012], pixel_size_m=5e-7,
    ...           delta_beta=40.0, device="cpu")
    >>> holo = predict_intensities(phi, **kw)
    >>> est = refine_phase(holo, n_iter=30, **kw)
    >>> bool(np.abs(est - phi).max() < 0.02)
    True
    """
    img = _check_stack(
        "intensities", intensities, (3, 4), "(n_dist, ny, nx) or (n, n_dist, ny, nx)"
    )
    n_dist = img.shape[-3]
    cfg = _setup(
        n_dist,
        energy_keV=energy_keV,
        distances_m=distances_m,
        pixel_size_m=pixel_size_m,
        delta_beta=delta_beta,
        detector_pixel_sizes_m=detector_pixel_sizes_m,
        detector_psf_px=detector_psf_px,
        margin_px=margin_px,
        shape_name="intensities",
        shape=img.shape,
    )
    if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 0:
        raise ValueError(f"n_iter: expected an integer >= 0; got {n_iter!r}")
    if isinstance(history, bool) or not isinstance(history, numbers.Integral) or history < 1:
        raise ValueError(f"history: expected an integer >= 1; got {history!r}")
    stack = img.reshape(-1, *img.shape[-3:])
    out_shape = img.shape[:-3] + img.shape[-2:]
    if initial is None:
        ref = int(np.argmin(cfg.zooms + 1e-9 * cfg.distances))  # common-grid pixel, shortest z
        start = paganin(
            stack[:, ref],
            energy_keV=energy_keV,
            distance_m=float(cfg.distances[ref]),
            pixel_size_m=cfg.pixel,
            delta_beta=cfg.delta_beta,
            device=device,
        )
    else:
        start = _check_stack("initial", initial, (2, 3), "(ny, nx) or (n, ny, nx)")
        if start.shape != out_shape:
            raise ValueError(
                f"initial: expected shape {out_shape} (the result's); got {start.shape}"
            )
        start = start.reshape(-1, *start.shape[-2:])
    dev = resolve_device(device)
    torch = import_torch()
    model = _build_model(stack.shape[-2:], cfg, dev)
    logger.debug(
        "refine_phase: %d projection(s), %d distance(s) %dx%d on a %s grid (margin %d px), "
        "detector pixels %s common px, %d iterations on %s",
        stack.shape[0],
        n_dist,
        *stack.shape[-2:],
        model.grid,
        cfg.margin,
        np.round(cfg.zooms, 4).tolist(),
        n_iter,
        dev,
    )
    out = np.empty((stack.shape[0], *stack.shape[-2:]), np.float32)
    size = max(1, _BATCH_ELEMENTS // (model.grid[0] * model.grid[1]))
    with torch.no_grad():
        for a in range(0, stack.shape[0], size):
            data = _to_tensor(stack[a : a + size], dev)
            x0 = model.pad(_to_tensor(start[a : a + size], dev))

            def fg(x: torch.Tensor, rows: torch.Tensor, data=data):
                return _loss_grad(model, x, data[rows])

            x = _lbfgs(fg, x0, n_iter=int(n_iter), history=int(history)) if n_iter else x0
            out[a : a + size] = model.crop(x).cpu().numpy()
    return out.reshape(out_shape)
