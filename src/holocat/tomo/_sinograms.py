"""Validation of sinogram stacks shared by the tomography functions (fbp, remove_rings)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def as_sinograms(sinograms: ArrayLike, *, min_angles: int = 1, min_det: int = 2) -> NDArray:
    """``sinograms`` as an array of shape (n_angles, n_det) or (n_angles, n_rows, n_det), checked.

    Raises TypeError for a non-real dtype and ValueError for a wrong ndim, too few angles or
    detector columns, or NaN/inf values; every message names ``sinograms``. No copy is made.
    """
    sino = np.asarray(sinograms)
    if sino.dtype.kind not in "biuf":
        raise TypeError(
            f"sinograms: expected a real numeric array (n_angles, n_rows, n_det) or "
            f"(n_angles, n_det); got dtype {sino.dtype}"
        )
    if sino.ndim not in (2, 3):
        raise ValueError(
            f"sinograms: expected shape (n_angles, n_rows, n_det) or (n_angles, n_det); "
            f"got shape {sino.shape}"
        )
    if sino.shape[0] < min_angles or sino.shape[-1] < min_det:
        raise ValueError(
            f"sinograms: expected n_angles >= {min_angles} and n_det >= {min_det}; got shape {sino.shape}"
        )
    if not np.all(np.isfinite(sino)):
        n_bad = int(sino.size - np.count_nonzero(np.isfinite(sino)))
        raise ValueError(f"sinograms: contains {n_bad} NaN or inf value(s)")
    return sino
