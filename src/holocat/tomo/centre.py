"""Centre of rotation of a parallel-beam 180° scan (SCIENCE.md §3).

For a 180° pair, p_pi(u) = p_0(2c - u): the 180° projection mirrored along the detector is
the 0° projection shifted. If ``mirrored(u) = p_0(u + s)`` then ``c = (N - 1) / 2 + s / 2``
(0-based detector column, pixel k centred at coordinate k). This is exactly the ``center``
of :func:`holocat.tomo.fbp` (skimage's convention: the default axis ``N // 2`` is the value
this formula returns for an unshifted :func:`skimage.transform.radon` sinogram).

Axis order: projections ``(n_det,)`` or ``(ny, n_det)``; sinograms ``(n_angles, n_det)`` or
``(n_angles, n_rows, n_det)``.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

__all__ = ["estimate_center", "nearest_opposite", "center_from_sinogram"]

logger = logging.getLogger(__name__)


def _check_projection(name: str, proj: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(proj)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric array; got dtype {a.dtype}")
    if a.ndim not in (1, 2):
        raise ValueError(f"{name}: expected shape (n_det,) or (ny, n_det); got shape {a.shape}")
    if a.shape[-1] < 4:
        raise ValueError(f"{name}: expected n_det >= 4; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or inf")
    return a.astype(np.float64)


def estimate_center(
    proj_0: ArrayLike,
    proj_180: ArrayLike,
    *,
    upsample_factor: int = 20,
    sigma_px: float = 1.0,
) -> float:
    """Rotation-axis detector column from a projection and the one taken 180° later.

    The 180° projection is mirrored along the detector; both are edge-padded to twice their
    width (no wrap-around in the FFT), low-pass filtered (Gaussian, ``sigma_px``), and their
    sub-pixel shift ``s`` is found by cross-correlation
    (:func:`skimage.registration.phase_cross_correlation`, ``normalization=None``, refined to
    1/``upsample_factor`` px). Returns ``c = (N - 1) / 2 + s / 2``.

    Parameters
    ----------
    proj_0, proj_180 : array_like, shape (n_det,) or (ny, n_det)
        Projections (or single detector rows) at theta and theta + pi, same shape.
    upsample_factor : int
        Sub-pixel precision of the shift, 1/upsample_factor px; >= 1. Default 20.
    sigma_px : float
        Gaussian low-pass standard deviation in pixels; >= 0. Default 1.

    Returns
    -------
    float
        Detector column (0-based) of the rotation axis, the ``center`` of
        :func:`holocat.tomo.fbp`.

    Raises
    ------
    TypeError, ValueError
        If the projections are not finite real 1D/2D arrays of equal shape or a parameter is
        out of range.

    Examples
    --------
    >>> import numpy as np
    >>> u = np.arange(64.0)
    >>> p0 = np.exp(-((u - 20) / 3) ** 2)
    >>> p180 = np.exp(-((u - (2 * 33.5 - 20)) / 3) ** 2)   # axis at 33.5
    >>> round(estimate_center(p0, p180), 2)
    33.5
    """
    from skimage.registration import phase_cross_correlation

    p0 = _check_projection("proj_0", proj_0)
    p180 = _check_projection("proj_180", proj_180)
    if p0.shape != p180.shape:
        raise ValueError(
            f"proj_180: expected the shape of proj_0 {p0.shape}; got shape {p180.shape}"
        )
    if isinstance(upsample_factor, bool) or not isinstance(upsample_factor, int | np.integer):
        raise TypeError(f"upsample_factor: expected an int >= 1; got {upsample_factor!r}")
    if upsample_factor < 1:
        raise ValueError(f"upsample_factor: expected an int >= 1; got {upsample_factor}")
    sigma_px = float(sigma_px)
    if not np.isfinite(sigma_px) or sigma_px < 0:
        raise ValueError(f"sigma_px: expected a standard deviation >= 0 px; got {sigma_px!r}")
    n_det = p0.shape[-1]
    mirrored = p180[..., ::-1]
    pad = [(0, 0)] * (p0.ndim - 1) + [(n_det // 2, n_det // 2)]

    def prepare(a: NDArray[np.float64]) -> NDArray[np.float64]:
        padded = np.pad(a, pad, mode="edge")
        if sigma_px > 0:
            padded = ndimage.gaussian_filter(padded, sigma_px, mode="nearest")
        return padded - padded.mean()

    shift, _, _ = phase_cross_correlation(
        prepare(p0), prepare(mirrored), upsample_factor=int(upsample_factor), normalization=None
    )
    # phase_cross_correlation: p0(u) ≈ mirrored(u - shift), i.e. mirrored(u) = p0(u + s)
    s = float(shift[-1])
    if p0.ndim == 2 and abs(float(shift[0])) > 0.5:
        logger.warning("estimate_center: vertical shift of %.2f px between the pair", shift[0])
    center = (n_det - 1) / 2 + s / 2
    logger.info("estimate_center: shift %.3f px -> center %.3f (n_det %d)", s, center, n_det)
    return center


def nearest_opposite(angles_rad: ArrayLike, index: int = 0) -> int:
    """Index of the projection whose angle is closest to ``angles_rad[index] + pi``.

    Angular differences are taken modulo 2 pi.

    Parameters
    ----------
    angles_rad : array_like, shape (n_angles,)
        Projection angles in radians.
    index : int
        Index of the reference projection; negative values count from the end.

    Returns
    -------
    int

    Raises
    ------
    TypeError, ValueError
        If ``angles_rad`` is not a finite 1D array with >= 2 angles or ``index`` is not a
        valid integer index.

    Examples
    --------
    >>> import numpy as np
    >>> nearest_opposite(np.deg2rad(np.arange(0, 360, 10)), index=2)
    20
    """
    theta = np.asarray(angles_rad, dtype=float)
    if theta.ndim != 1 or theta.size < 2:
        raise ValueError(f"angles_rad: expected a 1D array of >= 2 angles; got shape {theta.shape}")
    if not np.all(np.isfinite(theta)):
        raise ValueError("angles_rad: contains NaN or inf")
    if isinstance(index, bool) or not isinstance(index, int | np.integer):
        raise TypeError(f"index: expected an int; got {index!r}")
    if not -theta.size <= index < theta.size:
        raise ValueError(f"index: expected -{theta.size} <= index < {theta.size}; got {index}")
    target = theta[index] + np.pi
    diff = np.abs(np.angle(np.exp(1j * (theta - target))))
    best = int(np.argmin(diff))
    logger.debug("nearest_opposite: %d -> %d, off by %.4f deg", index, best, np.rad2deg(diff[best]))
    return best


def center_from_sinogram(
    sinogram: ArrayLike,
    angles_rad: ArrayLike,
    *,
    index: int = 0,
    upsample_factor: int = 20,
    sigma_px: float = 1.0,
) -> float:
    """Rotation-axis column from a sinogram: :func:`estimate_center` of the nearest 180° pair.

    Parameters
    ----------
    sinogram : array_like, shape (n_angles, n_det) or (n_angles, n_rows, n_det)
        Projections in the axis order of :func:`holocat.tomo.fbp`.
    angles_rad : array_like, shape (n_angles,)
        Projection angles in radians; the scan must reach ``angles_rad[index] + pi`` to
        within about one angular step (a warning is logged otherwise).
    index : int
        Reference projection. Default 0.
    upsample_factor, sigma_px
        Passed to :func:`estimate_center`.

    Returns
    -------
    float
        Detector column (0-based) of the rotation axis.

    Raises
    ------
    TypeError, ValueError
        If the sinogram's first axis does not match ``angles_rad`` or the inputs are invalid.
    """
    sino = np.asarray(sinogram)
    if sino.ndim not in (2, 3):
        raise ValueError(
            f"sinogram: expected shape (n_angles, n_det) or (n_angles, n_rows, n_det); "
            f"got shape {sino.shape}"
        )
    theta = np.asarray(angles_rad, dtype=float)
    if theta.ndim != 1 or theta.size != sino.shape[0]:
        raise ValueError(
            f"sinogram: expected n_angles == len(angles_rad) == {theta.size} along axis 0; "
            f"got shape {sino.shape}"
        )
    opposite = nearest_opposite(theta, index)
    miss = abs(float(np.angle(np.exp(1j * (theta[opposite] - theta[index] - np.pi)))))
    step = float(np.median(np.abs(np.diff(theta)))) if theta.size > 1 else 0.0
    if miss > max(step, 1e-12):
        logger.warning(
            "center_from_sinogram: nearest opposite projection is %.3f deg from theta + 180 deg",
            np.rad2deg(miss),
        )
    return estimate_center(
        sino[index], sino[opposite], upsample_factor=upsample_factor, sigma_px=sigma_px
    )
