"""Bring the holograms of several focus-to-sample distances onto one common pixel grid.

Each distance j of a cone-beam holotomography scan is magnified by M_j = D / z1_j, so its
effective pixel p_eff,j = p_det / M_j differs (SCIENCE.md §1). The reference is the distance
with the largest magnification (finest pixel); distance j is zoomed by
``scale = M_ref / M_j >= 1`` about the detector pixel on the optical axis, then the
remaining sub-pixel drifts are estimated by phase correlation of low-pass-filtered images
and removed by a Fourier shift.

Image axis order is ``(..., ny, nx)``; shifts are ``(dy, dx)`` in pixels of the reference
grid, positive towards larger indices (the :func:`scipy.ndimage.shift` convention).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

__all__ = ["rescale_to_reference", "register_distances", "apply_shift", "prepare_distances"]

logger = logging.getLogger(__name__)


def _check_image(name: str, image: ArrayLike, min_ndim: int = 2) -> NDArray:
    a = np.asarray(image)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric array; got dtype {a.dtype}")
    if a.ndim < min_ndim:
        raise ValueError(
            f"{name}: expected at least {min_ndim} dimensions (..., ny, nx); got shape {a.shape}"
        )
    if a.shape[-1] < 2 or a.shape[-2] < 2:
        raise ValueError(f"{name}: expected ny, nx >= 2; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or inf")
    return a


def _check_shape2(name: str, shape: Sequence[int]) -> tuple[int, int]:
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected two positive integers (ny, nx); got {shape!r}") from exc
    if len(out) != 2 or min(out) < 1 or any(o != s for o, s in zip(out, shape, strict=True)):
        raise ValueError(f"{name}: expected two positive integers (ny, nx); got {shape!r}")
    return out  # type: ignore[return-value]


def rescale_to_reference(
    image: ArrayLike,
    *,
    scale: float,
    out_shape: Sequence[int],
    center: Sequence[float] | None = None,
) -> NDArray[np.float32]:
    """Zoom an image by ``scale`` about its optical-axis pixel onto the reference grid.

    Output pixel ``(i, j)`` samples the input at
    ``(cy + (i - out_ny // 2) / scale, cx + (j - out_nx // 2) / scale)``: the point
    ``center = (cy, cx)`` of the input lands on the output's centre pixel
    ``(out_ny // 2, out_nx // 2)``. Interpolation is the cubic spline of
    :func:`scipy.ndimage.map_coordinates` (order 3, mode "nearest"); it interpolates values,
    so a constant image stays constant and the mean (open beam ≈ 1) is preserved.

    Parameters
    ----------
    image : array_like, shape (..., ny, nx)
        Image(s) of one distance, e.g. flat-field-normalised intensities.
    scale : float
        Zoom factor M_ref / M_j = p_eff,j / p_eff,ref; > 0 (>= 1 for every distance other
        than the reference, 1 for the reference itself).
    out_shape : (int, int)
        Shape (ny, nx) of the reference grid.
    center : (float, float), optional
        Input pixel (row, column) on the optical axis; default ``(ny // 2, nx // 2)``.

    Returns
    -------
    numpy.ndarray, float32, shape (..., out_ny, out_nx)

    Raises
    ------
    TypeError, ValueError
        If ``image`` is not a finite real array of >= 2 dimensions, ``scale`` is not > 0,
        ``out_shape`` is not two positive integers, or ``center`` is not two finite numbers.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.arange(16.0).reshape(4, 4)
    >>> out = rescale_to_reference(img, scale=1.0, out_shape=(4, 4))
    >>> bool(np.allclose(out, img, atol=1e-5))
    True
    """
    img = _check_image("image", image)
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale: expected M_ref / M_j > 0; got {scale!r}")
    out_ny, out_nx = _check_shape2("out_shape", out_shape)
    ny, nx = img.shape[-2:]
    if center is None:
        cy, cx = float(ny // 2), float(nx // 2)
    else:
        c = np.asarray(center, dtype=float)
        if c.shape != (2,) or not np.all(np.isfinite(c)):
            raise ValueError(f"center: expected two finite numbers (row, column); got {center!r}")
        cy, cx = float(c[0]), float(c[1])
    yy = cy + (np.arange(out_ny) - out_ny // 2) / scale
    xx = cx + (np.arange(out_nx) - out_nx // 2) / scale
    coords = np.stack(np.meshgrid(yy, xx, indexing="ij"))
    flat = img.reshape(-1, ny, nx).astype(np.float64, copy=False)
    out = np.empty((flat.shape[0], out_ny, out_nx), dtype=np.float32)
    for k, frame in enumerate(flat):
        out[k] = ndimage.map_coordinates(frame, coords, order=3, mode="nearest")
    return out.reshape(*img.shape[:-2], out_ny, out_nx)


def apply_shift(image: ArrayLike, shift: Sequence[float]) -> NDArray[np.float32]:
    """Shift image(s) by a sub-pixel ``(dy, dx)`` with a Fourier phase ramp.

    The image is padded with its edge values by half its size per side before the shift (so
    nothing wraps around) and cropped back; content moves towards larger indices for
    positive shifts, as with :func:`scipy.ndimage.shift`.

    Parameters
    ----------
    image : array_like, shape (..., ny, nx)
    shift : (float, float)
        Shift (dy, dx) in pixels, applied to every leading-axis frame.

    Returns
    -------
    numpy.ndarray, float32, shape (..., ny, nx)

    Raises
    ------
    TypeError, ValueError
        If ``image`` is not a finite real array of >= 2 dimensions or ``shift`` is not two
        finite numbers.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((8, 8)); img[2, 3] = 1.0
    >>> out = apply_shift(img, (1.0, 2.0))
    >>> [int(v) for v in np.unravel_index(np.argmax(out), out.shape)]
    [3, 5]
    """
    img = _check_image("image", image)
    s = np.asarray(shift, dtype=float)
    if s.shape != (2,) or not np.all(np.isfinite(s)):
        raise ValueError(f"shift: expected two finite numbers (dy, dx) in pixels; got {shift!r}")
    ny, nx = img.shape[-2:]
    if np.all(s == 0):
        return img.astype(np.float32)
    py = ny // 2 + int(np.ceil(abs(s[0])))
    px = nx // 2 + int(np.ceil(abs(s[1])))
    widths = [(0, 0)] * (img.ndim - 2) + [(py, py), (px, px)]
    padded = np.pad(img.astype(np.float64), widths, mode="edge")
    fy = np.fft.fftfreq(padded.shape[-2])[:, None]
    fx = np.fft.rfftfreq(padded.shape[-1])[None, :]
    ramp = np.exp(-2j * np.pi * (fy * s[0] + fx * s[1]))
    shifted = np.fft.irfft2(np.fft.rfft2(padded) * ramp, s=padded.shape[-2:])
    return shifted[..., py : py + ny, px : px + nx].astype(np.float32)


def register_distances(
    images: ArrayLike, *, upsample_factor: int = 20, sigma_px: float = 2.0
) -> NDArray[np.float64]:
    """Sub-pixel translation of each distance's image relative to the first one.

    Holograms recorded at different distances carry different fringes, so the images are
    low-pass filtered (Gaussian, ``sigma_px``) and registered by plain cross-correlation
    (:func:`skimage.registration.phase_cross_correlation` with ``normalization=None``, which
    keeps the low-pass weighting; whitening would give the sign-flipping fringe frequencies
    full weight), refined to 1/``upsample_factor`` pixel.

    Parameters
    ----------
    images : array_like, shape (n_dist, ny, nx)
        One image per distance, already on the common (reference) pixel grid.
    upsample_factor : int
        Sub-pixel precision 1 / upsample_factor; >= 1. Default 20.
    sigma_px : float
        Gaussian low-pass standard deviation in pixels; >= 0. Default 2.

    Returns
    -------
    numpy.ndarray, float64, shape (n_dist, 2)
        ``shifts[j] = (dy, dx)`` such that ``apply_shift(images[j], shifts[j])`` aligns with
        ``images[0]``; ``shifts[0] = (0, 0)``.

    Raises
    ------
    TypeError, ValueError
        If ``images`` is not a finite real (n_dist, ny, nx) array, ``upsample_factor`` is not
        an integer >= 1 or ``sigma_px`` is negative.
    """
    from skimage.registration import phase_cross_correlation

    stack = _check_image("images", images)
    if stack.ndim != 3:
        raise ValueError(f"images: expected shape (n_dist, ny, nx); got shape {stack.shape}")
    if isinstance(upsample_factor, bool) or not isinstance(upsample_factor, int | np.integer):
        raise TypeError(f"upsample_factor: expected an int >= 1; got {upsample_factor!r}")
    if upsample_factor < 1:
        raise ValueError(f"upsample_factor: expected an int >= 1; got {upsample_factor}")
    sigma_px = float(sigma_px)
    if not np.isfinite(sigma_px) or sigma_px < 0:
        raise ValueError(f"sigma_px: expected a standard deviation >= 0 px; got {sigma_px!r}")
    smooth = [
        ndimage.gaussian_filter(frame.astype(np.float64), sigma_px, mode="nearest")
        if sigma_px > 0
        else frame.astype(np.float64)
        for frame in stack
    ]
    ref = smooth[0] - smooth[0].mean()
    shifts = np.zeros((stack.shape[0], 2))
    for j in range(1, stack.shape[0]):
        moving = smooth[j] - smooth[j].mean()
        shift, _, _ = phase_cross_correlation(
            ref, moving, upsample_factor=int(upsample_factor), normalization=None
        )
        shifts[j] = shift
    return shifts


def prepare_distances(
    intensities: Sequence[ArrayLike],
    *,
    magnifications: Sequence[float],
    out_shape: Sequence[int],
    register: bool = True,
    centers: Sequence[Sequence[float]] | None = None,
    upsample_factor: int = 20,
    sigma_px: float = 2.0,
) -> NDArray[np.float32]:
    """Rescale every distance to the reference grid and register it to the reference.

    The reference is the distance with the largest magnification. Distance j is zoomed by
    ``M_ref / M_j`` (:func:`rescale_to_reference`); with ``register=True`` each projection of
    each other distance is then shifted onto the reference's projection
    (:func:`register_distances`, :func:`apply_shift`), one translation per distance and
    projection.

    Parameters
    ----------
    intensities : sequence of array_like, each shape (n, ny_j, nx_j)
        Flat-field-normalised projections per distance, the same ``n`` projections each.
    magnifications : sequence of float, length n_dist
        M_j = D / z1_j of each distance; > 0.
    out_shape : (int, int)
        Shape (ny, nx) of the common grid (crop of the common field of view).
    register : bool
        Estimate and remove residual translations. Default True.
    centers : sequence of (float, float), optional
        Optical-axis pixel (row, column) of each distance's input; default the centre pixel.
    upsample_factor, sigma_px
        Passed to :func:`register_distances`.

    Returns
    -------
    numpy.ndarray, float32, shape (n_dist, n, ny, nx)
        In the input order of distances.

    Raises
    ------
    TypeError, ValueError
        If the lists are empty or of different lengths, arrays are not (n, ny_j, nx_j) with a
        common ``n``, or a magnification is not > 0.
    """
    if isinstance(intensities, np.ndarray) and intensities.ndim == 4:
        intensities = list(intensities)
    if not isinstance(intensities, Sequence) or len(intensities) == 0:
        raise TypeError(
            "intensities: expected a non-empty list of (n, ny_j, nx_j) arrays, one per distance; "
            f"got {type(intensities).__name__}"
        )
    stacks = [_check_image(f"intensities[{j}]", a) for j, a in enumerate(intensities)]
    for j, a in enumerate(stacks):
        if a.ndim != 3:
            raise ValueError(f"intensities[{j}]: expected shape (n, ny_j, nx_j); got {a.shape}")
    n = stacks[0].shape[0]
    for j, a in enumerate(stacks):
        if a.shape[0] != n:
            raise ValueError(
                f"intensities[{j}]: expected n == {n} projections like intensities[0]; "
                f"got shape {a.shape}"
            )
    n_dist = len(stacks)
    mags = np.asarray(magnifications, dtype=float)
    if mags.shape != (n_dist,) or not np.all(np.isfinite(mags)) or np.any(mags <= 0):
        raise ValueError(
            f"magnifications: expected {n_dist} finite values > 0, one per distance; "
            f"got {magnifications!r}"
        )
    out_ny, out_nx = _check_shape2("out_shape", out_shape)
    if centers is not None and len(centers) != n_dist:
        raise ValueError(f"centers: expected {n_dist} (row, column) pairs; got {len(centers)}")
    ref = int(np.argmax(mags))
    scales = mags[ref] / mags
    logger.info("prepare_distances: reference distance %d, scales %s", ref, scales.round(5))
    out = np.empty((n_dist, n, out_ny, out_nx), dtype=np.float32)
    for j, a in enumerate(stacks):
        out[j] = rescale_to_reference(
            a,
            scale=scales[j],
            out_shape=(out_ny, out_nx),
            center=None if centers is None else centers[j],
        )
    if register and n_dist > 1:
        order = [ref] + [j for j in range(n_dist) if j != ref]
        max_shift = 0.0
        for k in range(n):
            shifts = register_distances(
                out[order, k], upsample_factor=upsample_factor, sigma_px=sigma_px
            )
            for pos, j in enumerate(order[1:], start=1):
                out[j, k] = apply_shift(out[j, k], shifts[pos])
            max_shift = max(max_shift, float(np.abs(shifts).max()))
        logger.info("prepare_distances: largest registration shift %.3f px", max_shift)
    return out
