"""Percentile intensity normalisation, computed once per volume (SCIENCE.md §4, Inference).

The segmentation stage normalises a reconstructed volume once, never per slice or per slab,
so that the three tri-planar views and all z-slabs share one intensity scale. The default
percentiles (1st and 99.8th) are those of StarDist/CSBDeep ``normalize``.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["normalize_intensity"]

logger = logging.getLogger(__name__)


def _check_volume(
    volume: ArrayLike,
    *,
    name: str = "volume",
    ndims: tuple[int, ...] = (3,),
    allow_constant: bool = False,
) -> tuple[np.ndarray, float, float]:
    """Validate an intensity array; return it as an ndarray with its finite min and max.

    Raises ``TypeError`` for non-array input and ``ValueError`` (naming ``name``) for a wrong
    ndim, a non-numeric dtype, an empty array, NaN/inf values or (unless ``allow_constant``) a
    constant array. Min and max are reduced without a volume-sized temporary.
    """
    if not isinstance(volume, np.ndarray):
        try:
            volume = np.asarray(volume)
        except Exception as exc:  # pragma: no cover - exotic array-likes
            raise TypeError(f"{name}: expected a numpy array; got {type(volume).__name__}") from exc
    shapes = " or ".join({2: "(ny, nx)", 3: "(nz, ny, nx)"}.get(n, f"{n}-D") for n in ndims)
    if volume.ndim not in ndims:
        raise ValueError(
            f"{name}: expected a {shapes} array; got shape {volume.shape} (ndim {volume.ndim})"
        )
    if volume.dtype == np.bool_ or not (
        np.issubdtype(volume.dtype, np.floating) or np.issubdtype(volume.dtype, np.integer)
    ):
        raise ValueError(
            f"{name}: expected a real float or integer dtype (intensities in arbitrary units); "
            f"got dtype {volume.dtype}"
        )
    if volume.size == 0:
        raise ValueError(f"{name}: expected a non-empty array; got shape {volume.shape}")
    vmin = float(np.min(volume))
    vmax = float(np.max(volume))
    if not (np.isfinite(vmin) and np.isfinite(vmax)):
        raise ValueError(
            f"{name}: expected finite values; found NaN or inf (min {vmin}, max {vmax})"
        )
    if vmin == vmax and not allow_constant:
        raise ValueError(
            f"{name}: expected a non-constant volume; every voxel equals {vmin} "
            f"(shape {volume.shape})"
        )
    return volume, vmin, vmax


def normalize_intensity(
    volume: ArrayLike,
    *,
    low_pct: float = 1.0,
    high_pct: float = 99.8,
    sample: int | None = None,
    rng: np.random.Generator | int | None = None,
) -> NDArray[np.float32]:
    """Map intensities so that the ``low_pct`` percentile becomes 0 and ``high_pct`` becomes 1.

    ``out = (volume - p_low) / (p_high - p_low)`` with both percentiles computed once over the
    whole array (or over a random subsample of its voxels). Values are not clipped, so voxels
    outside the percentile range map below 0 or above 1, as in CSBDeep's ``normalize``.

    Parameters
    ----------
    volume : ndarray, shape (nz, ny, nx) or (ny, nx)
        Intensities in arbitrary units, any real float or integer dtype; finite, not constant.
    low_pct, high_pct : float
        Percentiles in [0, 100] mapped to 0 and 1; ``low_pct < high_pct``.
    sample : int or None
        If given and smaller than ``volume.size``, estimate the percentiles from this many
        voxels drawn uniformly with replacement (for volumes too large to sort); >= 1.
    rng : numpy.random.Generator, int or None
        Source of the subsample (a Generator or a seed); ``None`` means seed 0, so results are
        reproducible. Unused when ``sample`` is None.

    Returns
    -------
    ndarray of float32, same shape as ``volume``
        Normalised intensities; a new array (the input is not modified).

    Raises
    ------
    ValueError
        Wrong ndim, a non-numeric dtype, an empty array, NaN/inf, a constant volume, percentiles
        out of order, or percentiles that coincide (too few distinct values).
    TypeError
        ``rng`` is neither a Generator, an int nor None.

    Examples
    --------
    >>> v = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    >>> out = normalize_intensity(v, low_pct=0.0, high_pct=100.0)
    >>> float(out.min()), float(out.max()), out.dtype
    (0.0, 1.0, dtype('float32'))
    """
    vol, _, _ = _check_volume(volume, name="volume", ndims=(2, 3))
    low_pct = float(low_pct)
    high_pct = float(high_pct)
    if not (0.0 <= low_pct < high_pct <= 100.0):
        raise ValueError(
            f"low_pct, high_pct: expected 0 <= low_pct < high_pct <= 100; "
            f"got low_pct={low_pct}, high_pct={high_pct}"
        )
    values: np.ndarray = vol
    if sample is not None:
        if isinstance(sample, bool) or not isinstance(sample, int | np.integer) or sample < 1:
            raise ValueError(f"sample: expected a positive int or None; got {sample!r}")
        if rng is None:
            rng = np.random.default_rng(0)
        elif isinstance(rng, int | np.integer) and not isinstance(rng, bool):
            rng = np.random.default_rng(int(rng))
        elif not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"rng: expected a numpy.random.Generator, an int seed or None; "
                f"got {type(rng).__name__}"
            )
        if sample < vol.size:
            idx = rng.integers(0, vol.size, size=int(sample))
            values = vol.flat[idx]
    p_low, p_high = (float(p) for p in np.percentile(values, [low_pct, high_pct]))
    if not p_high > p_low:
        raise ValueError(
            f"volume: the {low_pct} and {high_pct} percentiles coincide ({p_low}); the volume has "
            f"too few distinct values to normalise (widen low_pct/high_pct)"
        )
    scale = 1.0 / (p_high - p_low)
    if vol.dtype == np.float64:
        out = ((vol - p_low) * scale).astype(np.float32)
    else:
        out = np.array(vol, dtype=np.float32, copy=True)
        out -= np.float32(p_low)
        out *= np.float32(scale)
    logger.debug(
        "normalize_intensity: p%.3g=%.6g p%.3g=%.6g from %d voxels",
        low_pct,
        p_low,
        high_pct,
        p_high,
        values.size,
    )
    return out
