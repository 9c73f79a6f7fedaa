"""Ring-artefact removal on sinograms and a ring metric on slices (SCIENCE.md §3 "Ring removal").

A detector pixel whose flat-field correction is wrong (offset or gain error) adds the same
error to one detector column at every angle: a vertical stripe in the sinogram, a ring
about the rotation axis in the reconstruction. Two stripe filters are provided, chosen by
``method`` in :func:`remove_rings`:

- ``"sorting"`` (Vo, Atwood & Drakopoulos, Opt. Express 26, 28396 (2018), algorithm 3):
  every detector column is sorted over angle, the sorted sinogram is median-filtered across
  the detector (window ``size``, one angle high), and the values are put back in their
  original angular order. Sorting turns a stripe into a constant offset of one column of
  the sorted image, which the median across the detector removes, while genuine structure
  (whose sorted columns vary smoothly with detector position) passes.
- ``"wavelet-fft"`` (Münch, Trtik, Marone & Stampanoni, Opt. Express 17, 8567 (2009)): a
  ``level``-level orthogonal 2D wavelet decomposition (Daubechies filters, ``wavelet``); at
  every level the vertical-detail band (low-pass over angle, high-pass across the detector,
  where stripes live) is Fourier transformed along the angle axis and multiplied by
  ``1 - exp(-k^2 / (2 sigma^2))`` (``k`` = angular frequency index of that band), which
  removes its angle-independent part; then the image is resynthesised. The decomposition is
  our own periodic filter bank (PyWavelets is not a dependency): the sinogram is edge-padded
  to a multiple of ``2**level`` and mirrored along both axes, so the periodic transform sees
  a continuous signal (the role of PyWavelets' symmetric boundary mode); ``sigma`` keeps
  Münch's meaning of frequency bins of the un-mirrored band.

Axis order: ``(n_angles, n_det)`` or ``(n_angles, n_rows, n_det)`` (the phase stack); rows
are independent. :func:`ring_metric` measures what is left on a reconstructed slice.
"""

from __future__ import annotations

import functools
import logging
import re
from math import comb
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from holocat.tomo._sinograms import as_sinograms

__all__ = ["remove_rings", "ring_metric", "RING_METHODS"]

logger = logging.getLogger(__name__)

RingMethod = Literal["sorting", "wavelet-fft"]

#: stripe-removal methods accepted by :func:`remove_rings`
RING_METHODS: tuple[str, ...] = ("sorting", "wavelet-fft")

#: Daubechies orders accepted as ``wavelet="dbN"`` (spectral factorisation is accurate here)
_MAX_DB_ORDER = 10
#: float64 elements per block of rows in the wavelet-FFT filter (~128 MiB per array)
_BLOCK_ELEMENTS = 1 << 24
#: radial bins of the median that :func:`ring_metric` takes as the ring-free profile
_METRIC_WINDOW = 9


# ------------------------------------------------------------------------------- wavelets


@functools.lru_cache(maxsize=16)
def _daubechies_lowpass(order: int) -> NDArray[np.float64]:
    """Extremal-phase Daubechies scaling filter with ``order`` vanishing moments.

    Spectral factorisation (Daubechies, Ten Lectures on Wavelets, §6.1): with
    ``y = sin^2(w / 2) = -(z - 1)^2 / (4 z)`` on the unit circle,
    ``|Q(z)|^2 = P(y) = sum_{k<order} C(order - 1 + k, k) y^k``; the roots of
    ``z^(order-1) P(y(z))`` come in pairs (r, 1/r), the ``order - 1`` roots inside the unit
    circle form ``Q`` and ``h(z) ∝ (1 + z)^order Q(z)``, normalised to ``sum h = sqrt(2)``.
    Returned in PyWavelets' ``rec_lo`` order (``db2``: 0.4830, 0.8365, 0.2241, -0.1294);
    read-only, cached.
    """
    poly = np.zeros(1)
    minus_y_times_z = np.array([-1.0, 2.0, -1.0]) / 4.0  # -(z - 1)^2 / 4, ascending powers
    for k in range(order):
        term = np.array([float(comb(order - 1 + k, k))])
        for _ in range(k):
            term = np.polynomial.polynomial.polymul(term, minus_y_times_z)
        term = np.polynomial.polynomial.polymul(term, np.eye(order - k)[-1])  # * z^(N-1-k)
        poly = np.polynomial.polynomial.polyadd(poly, term)
    roots = np.polynomial.polynomial.polyroots(poly) if order > 1 else np.zeros(0)
    inside = roots[np.abs(roots) < 1]
    h = np.polynomial.polynomial.polyfromroots(inside).real if inside.size else np.ones(1)
    for _ in range(order):
        h = np.polynomial.polynomial.polymul(h, [1.0, 1.0])
    h = h * (np.sqrt(2.0) / h.sum())
    if abs(h[0]) < abs(h[-1]):  # start with the large taps, as PyWavelets' rec_lo
        h = h[::-1].copy()
    h.setflags(write=False)
    return h


def _wavelet_filters(name: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(low-pass, high-pass) orthonormal filter pair for ``"haar"`` or ``"dbN"``."""
    order = 1 if name == "haar" else int(name[2:])
    h = _daubechies_lowpass(order)
    g = h[::-1] * (-1.0) ** np.arange(h.size)  # quadrature mirror: g[j] = (-1)^j h[L-1-j]
    return h, g


def _analysis(
    x: NDArray[np.float64], h: NDArray[np.float64], g: NDArray[np.float64], axis: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """One periodic two-channel analysis step along ``axis`` (even length N).

    ``a[k] = sum_j h[j] x[(2k + j) mod N]`` and likewise ``d`` with ``g``: an orthogonal map
    for orthonormal (h, g), so :func:`_synthesis` (its transpose) inverts it exactly.
    """
    n = x.shape[axis]
    even = np.arange(0, n, 2)
    a = np.zeros_like(np.take(x, even, axis=axis))
    d = np.zeros_like(a)
    for j in range(h.size):
        xj = np.take(x, (even + j) % n, axis=axis)
        a += h[j] * xj
        d += g[j] * xj
    return a, d


def _synthesis(
    a: NDArray[np.float64],
    d: NDArray[np.float64],
    h: NDArray[np.float64],
    g: NDArray[np.float64],
    axis: int,
) -> NDArray[np.float64]:
    """Transpose of :func:`_analysis`: ``x[(2k + j) mod N] += h[j] a[k] + g[j] d[k]``."""
    shape = list(a.shape)
    n = 2 * shape[axis]
    shape[axis] = n
    x = np.zeros(shape)
    xm = np.moveaxis(x, axis, 0)  # view: writes land in x
    am = np.moveaxis(a, axis, 0)
    dm = np.moveaxis(d, axis, 0)
    even = np.arange(0, n, 2)
    for j in range(h.size):
        # for a fixed j the targets (2k + j) mod N are distinct, so += is safe
        xm[(even + j) % n] += h[j] * am + g[j] * dm
    return x


def _damp_stripes(
    block: NDArray[np.float64], level: int, sigma: float, wavelet: str
) -> NDArray[np.float64]:
    """Münch et al. wavelet-FFT filter of (b, n_angles, n_det) sinograms, float64."""
    b, n_angles, n_det = block.shape
    m = 2**level
    pad_a = -n_angles % m
    pad_d = -n_det % m
    x = np.pad(block, ((0, 0), (0, pad_a), (0, pad_d)), mode="edge")
    x = np.concatenate([x, x[:, ::-1]], axis=1)  # mirrored: periodic and continuous
    x = np.concatenate([x, x[:, :, ::-1]], axis=2)
    h, g = _wavelet_filters(wavelet)
    details = []
    approx = x
    for _ in range(level):
        lo_a, hi_a = _analysis(approx, h, g, axis=1)  # along angle
        approx, vertical = _analysis(lo_a, h, g, axis=2)  # lo/lo, lo(angle)/hi(det)
        horizontal, diagonal = _analysis(hi_a, h, g, axis=2)
        n_band = vertical.shape[1]
        k = np.fft.fftfreq(n_band, d=1.0 / n_band)  # integer frequency index
        # the band is mirrored: index k there is k / 2 in bins of the un-mirrored band
        damp = 1.0 - np.exp(-((k / 2.0) ** 2) / (2.0 * sigma**2))
        spectrum = np.fft.fft(vertical, axis=1) * damp[None, :, None]
        vertical = np.fft.ifft(spectrum, axis=1).real
        details.append((vertical, horizontal, diagonal))
    for vertical, horizontal, diagonal in reversed(details):
        lo_a = _synthesis(approx, vertical, h, g, axis=2)
        hi_a = _synthesis(horizontal, diagonal, h, g, axis=2)
        approx = _synthesis(lo_a, hi_a, h, g, axis=1)
    return approx[:, :n_angles, :n_det]


# ------------------------------------------------------------------------------- sorting


def _sorting_filter(sino: NDArray[np.float32], size: int) -> NDArray[np.float32]:
    """Vo et al. sorting-based stripe filter of (n_angles, n_rows, n_det) sinograms."""
    order = np.argsort(sino, axis=0, kind="stable")
    sorted_sino = np.take_along_axis(sino, order, axis=0)
    smoothed = ndimage.median_filter(sorted_sino, size=(1, 1, size), mode="reflect")
    out = np.empty_like(sino)
    np.put_along_axis(out, order, smoothed, axis=0)
    return out


# ------------------------------------------------------------------------------- public API


def _check_sinograms(sinograms: ArrayLike) -> NDArray[np.float32]:
    sino = as_sinograms(sinograms, min_angles=2, min_det=3)
    return sino.astype(np.float32)  # always a copy: the caller's array is never touched


def _check_wavelet(wavelet: object) -> str:
    if not isinstance(wavelet, str):
        raise TypeError(f"wavelet: expected a string 'haar' or 'db1'..'db10'; got {wavelet!r}")
    match = re.fullmatch(r"db(\d+)", wavelet)
    if wavelet != "haar" and (match is None or not 1 <= int(match[1]) <= _MAX_DB_ORDER):
        raise ValueError(f"wavelet: expected 'haar' or 'db1'..'db{_MAX_DB_ORDER}'; got {wavelet!r}")
    return wavelet


def _default_level(n_angles: int, n_det: int) -> int:
    """Most levels (1 to 6) whose bands keep >= 64 angles and 2**level <= n_det.

    Münch's notch is ``sigma`` bins wide in every band, so its relative width grows as
    ``2**level / n_angles``; keeping >= 64 samples per band bounds it (sigma = 2: <= 3 %).
    """
    level = 1
    while level < 6 and n_angles / 2 ** (level + 1) >= 64 and 2 ** (level + 1) <= n_det:
        level += 1
    return level


def remove_rings(
    sinograms: ArrayLike,
    *,
    method: RingMethod = "sorting",
    size: int = 21,
    sigma: float = 2.0,
    level: int | None = None,
    wavelet: str = "db5",
) -> NDArray[np.float32]:
    """Remove vertical stripes (rings in the reconstruction) from sinograms.

    Parameters
    ----------
    sinograms : array_like, shape (n_angles, n_det) or (n_angles, n_rows, n_det)
        Sinograms (e.g. projected phase in rad), angle along axis 0, detector along the
        last axis; each row is filtered on its own. Finite values; n_angles >= 2, n_det >= 3.
        Never modified.
    method : {"sorting", "wavelet-fft"}
        ``"sorting"``: sort each detector column over angle, median-filter across the
        detector with window ``size``, unsort (Vo et al. 2018). ``"wavelet-fft"``: damp the
        angle-independent part of the vertical-detail bands of a ``level``-level wavelet
        decomposition with a Gaussian notch of width ``sigma`` (Münch et al. 2009). See the
        module docstring.
    size : int
        Median window across the detector, in pixels, for ``"sorting"``; odd, >= 3; wider
        than the widest stripe (defective-pixel cluster). Default 21.
    sigma : float
        Width of the Gaussian notch ``1 - exp(-k^2 / (2 sigma^2))`` in angular-frequency
        bins of each band, for ``"wavelet-fft"``; > 0. Larger removes more (and more signal).
        Default 2.0.
    level : int, optional
        Decomposition levels for ``"wavelet-fft"``; >= 1 and ``2**level <= min(n_angles,
        n_det)``. Default: the most levels (1 to 6) whose bands keep >= 64 angles (2 for
        360 angles, 3 for 720, 4 for 1500): the notch is ``sigma`` bins wide in each band,
        so with few angles deep levels would also remove genuine structure.
    wavelet : str
        ``"haar"`` or ``"db1"`` .. ``"db10"`` (Daubechies extremal-phase filters, the
        PyWavelets ``dbN``), for ``"wavelet-fft"``. Default ``"db5"`` as in Münch et al.

    Returns
    -------
    numpy.ndarray, float32, same shape as ``sinograms``
        A new array.

    Raises
    ------
    TypeError
        If ``sinograms`` is not real numeric, or ``size``/``level``/``sigma``/``wavelet``
        have the wrong type.
    ValueError
        If ``sinograms`` has the wrong number of dimensions or non-finite values, or
        ``method``, ``size``, ``sigma``, ``level`` or ``wavelet`` is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sino = np.outer(np.sin(np.linspace(0, 3, 90)), np.ones(64)) + 0.01 * rng.random((90, 64))
    >>> striped = sino.copy(); striped[:, 20] += 0.5
    >>> clean = remove_rings(striped, method="sorting", size=11)
    >>> bool(np.abs(clean[:, 20] - sino[:, 20]).max() < 0.05)
    True
    >>> clean = remove_rings(striped, method="wavelet-fft", sigma=2.0, level=3)
    >>> bool(np.abs(clean - sino).max() < 0.5 / 2**3 + 0.02)  # spread over 2**level px
    True
    """
    sino = _check_sinograms(sinograms)
    if method not in RING_METHODS:
        raise ValueError(f"method: expected one of {RING_METHODS}; got {method!r}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise TypeError(f"size: expected an odd int >= 3; got {size!r}")
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size: expected an odd int >= 3; got {size}")
    if isinstance(sigma, bool) or not isinstance(sigma, int | float | np.integer | np.floating):
        raise TypeError(f"sigma: expected a float > 0; got {sigma!r}")
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma: expected a finite float > 0; got {sigma!r}")
    wavelet = _check_wavelet(wavelet)
    n_angles, n_det = sino.shape[0], sino.shape[-1]
    if level is None:
        n_level = _default_level(n_angles, n_det)
    else:
        if isinstance(level, bool) or not isinstance(level, int | np.integer):
            raise TypeError(f"level: expected None or an int >= 1; got {level!r}")
        if level < 1 or 2**level > min(n_angles, n_det):
            raise ValueError(
                f"level: expected 1 <= level with 2**level <= min(n_angles, n_det) = "
                f"{min(n_angles, n_det)}; got {level}"
            )
        n_level = int(level)

    squeeze = sino.ndim == 2
    if squeeze:
        sino = sino[:, None, :]
    n_rows = sino.shape[1]
    if method == "sorting":
        logger.info(
            "remove_rings: sorting, %d angle(s) x %d row(s) x %d px, median window %d px",
            n_angles,
            n_rows,
            n_det,
            size,
        )
        out = _sorting_filter(sino, int(size))
    else:
        logger.info(
            "remove_rings: wavelet-fft, %d angle(s) x %d row(s) x %d px, %s, %d level(s), "
            "sigma %.3g",
            n_angles,
            n_rows,
            n_det,
            wavelet,
            n_level,
            sigma,
        )
        out = np.empty_like(sino)
        padded = 4 * (n_angles + 2**n_level) * (n_det + 2**n_level)
        rows_per_block = max(1, _BLOCK_ELEMENTS // padded)
        for r0 in range(0, n_rows, rows_per_block):
            r1 = min(n_rows, r0 + rows_per_block)
            block = sino[:, r0:r1].transpose(1, 0, 2).astype(np.float64)
            filtered = _damp_stripes(block, n_level, float(sigma), wavelet)
            out[:, r0:r1] = filtered.transpose(1, 0, 2)
    return out[:, 0] if squeeze else out


def ring_metric(
    image: ArrayLike,
    *,
    center: tuple[float, float] | None = None,
    n_bins: int | None = None,
) -> float:
    """Ring-artefact strength of a reconstructed slice.

    Rings are narrow radial features of the azimuthal mean. The slice is averaged over
    annuli about the rotation axis (``n_bins`` equal-width bins on ``0 <= r < R``, ``R`` the
    radius of the largest circle about ``center`` inside the image), the profile is smoothed
    by a running median over 9 bins (which keeps steps and slopes of the object but removes
    features narrower than ~4 bins), and the metric is the root mean square over bins of
    (profile - smoothed profile). Empty bins are skipped.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Reconstructed slice, finite, real.
    center : tuple of float, optional
        (row, column) of the rotation axis in pixels; default ``(ny // 2, nx // 2)``, the
        axis of :func:`holocat.tomo.fbp`'s output.
    n_bins : int, optional
        Number of radial bins, >= 9; default ``floor(R)`` (1-px annuli).

    Returns
    -------
    float
        RMS ring amplitude, in the units of ``image``; 0 for a radially smooth image.

    Raises
    ------
    TypeError
        If ``image`` is not real numeric or ``n_bins``/``center`` have the wrong type.
    ValueError
        If ``image`` is not 2D or has non-finite values, ``center`` lies too close to the
        edge (``R < 9`` px), or ``n_bins`` < 9.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64] - 32
    >>> r = np.hypot(yy, xx)
    >>> smooth = np.exp(-r / 20)
    >>> ringed = smooth + 0.1 * (np.abs(r - 15) < 0.5)
    >>> ring_metric(smooth) < 1e-9 < 1e-3 < ring_metric(ringed)
    True
    """
    img = np.asarray(image)
    if img.dtype.kind not in "biuf":
        raise TypeError(f"image: expected a real numeric (ny, nx) array; got dtype {img.dtype}")
    if img.ndim != 2:
        raise ValueError(f"image: expected shape (ny, nx); got shape {img.shape}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image: contains NaN or inf")
    ny, nx = img.shape
    if center is None:
        cy, cx = float(ny // 2), float(nx // 2)
    else:
        try:
            cy, cx = (float(v) for v in center)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"center: expected (row, column) floats; got {center!r}") from exc
    radius = min(cy, cx, ny - 1 - cy, nx - 1 - cx)
    if not np.isfinite(radius) or radius < _METRIC_WINDOW:
        raise ValueError(
            f"center: expected a point >= {_METRIC_WINDOW} px inside the image of shape "
            f"{img.shape}; got {center!r}"
        )
    if n_bins is None:
        bins = int(np.floor(radius))
    else:
        if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer):
            raise TypeError(f"n_bins: expected None or an int >= {_METRIC_WINDOW}; got {n_bins!r}")
        if n_bins < _METRIC_WINDOW:
            raise ValueError(f"n_bins: expected an int >= {_METRIC_WINDOW}; got {n_bins}")
        bins = int(n_bins)
    yy, xx = np.mgrid[:ny, :nx]
    r = np.hypot(yy - cy, xx - cx)
    inside = r < radius
    index = np.minimum((r[inside] * (bins / radius)).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=img[inside].astype(np.float64), minlength=bins)
    filled = counts > 0
    profile = sums[filled] / counts[filled]
    smoothed = ndimage.median_filter(profile, size=_METRIC_WINDOW, mode="nearest")
    return float(np.sqrt(np.mean((profile - smoothed) ** 2)))
