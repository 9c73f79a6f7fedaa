"""Synthetic phantoms shared by the segmentation tests."""

from __future__ import annotations

import numpy as np


def packed_spheres(shape, n_target, rng, *, r_range=(6.0, 9.0), min_gap: float = 0.85):
    """Random sequential addition of spheres whose centres are >= min_gap * (r1 + r2) apart
    (slight overlaps allowed); overlapping voxels go to the sphere of smaller power distance
    |x - c|^2 - r^2. Returns labels (uint32), centres (n, 3) and radii (n,)."""
    shape = np.asarray(shape)
    centres, radii = [], []
    for _ in range(200_000):
        if len(centres) >= n_target:
            break
        r = rng.uniform(*r_range)
        c = rng.uniform(0, shape)
        if centres and np.any(
            np.linalg.norm(np.asarray(centres) - c, axis=1) < min_gap * (np.asarray(radii) + r)
        ):
            continue
        centres.append(c)
        radii.append(r)
    labels = np.zeros(tuple(shape), np.uint32)
    best = np.full(tuple(shape), np.inf, np.float32)
    for i, (c, r) in enumerate(zip(centres, radii, strict=True), start=1):
        lo = np.maximum(np.floor(c - r).astype(int), 0)
        hi = np.minimum(np.ceil(c + r).astype(int) + 1, shape)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        g = np.ogrid[sl]
        power = (sum((g[k] - c[k]) ** 2 for k in range(3)) - r * r).astype(np.float32)
        take = (power <= 0) & (power < best[sl])
        labels[sl][take] = i
        best[sl][take] = power[take]
    return labels, np.asarray(centres), np.asarray(radii)
