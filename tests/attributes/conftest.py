"""Synthetic particle phantoms with analytic attributes for the holocat.attributes tests."""

from __future__ import annotations

import numpy as np
import pytest


def centred_grid(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, y, x) coordinates of an n^3 grid relative to its centre, in voxels."""
    c = (n - 1) / 2.0
    return np.meshgrid(*([np.arange(n, dtype=np.float64) - c] * 3), indexing="ij")


def ball(n: int, radius_vox: float) -> np.ndarray:
    """Boolean digital ball of ``radius_vox`` centred in an n^3 array."""
    z, y, x = centred_grid(n)
    return z * z + y * y + x * x <= radius_vox**2


def place_balls(shape: tuple[int, int, int], centres, radii) -> np.ndarray:
    """uint32 labels 1..n of digital balls at (z, y, x) voxel centres (later ones overwrite)."""
    labels = np.zeros(shape, dtype=np.uint32)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for i, (c, r) in enumerate(zip(centres, radii, strict=True), start=1):
        m = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r
        labels[m] = i
    return labels


@pytest.fixture(scope="session")
def random_balls() -> tuple[np.ndarray, np.ndarray]:
    """80 x 72 x 64 labels with 8 non-touching balls (r 6-9 voxels) and a seeded grey volume.

    The volume is N(2.0, 0.3) on the particles and N(0.5, 0.3) on the matrix (particles
    brighter than the matrix, as DESIGN.md's volumes).
    """
    rng = np.random.default_rng(7)
    shape = (80, 72, 64)
    centres: list[np.ndarray] = []
    radii: list[float] = []
    while len(centres) < 8:
        r = float(rng.uniform(6, 9))
        c = rng.uniform(r + 2, np.array(shape) - r - 2)
        if all(np.linalg.norm(c - c2) > r + r2 + 3 for c2, r2 in zip(centres, radii, strict=True)):
            centres.append(c)
            radii.append(r)
    labels = place_balls(shape, centres, radii)
    volume = rng.normal(0.0, 0.3, size=shape).astype(np.float32)
    volume += np.where(labels > 0, 2.0, 0.5).astype(np.float32)
    return labels, volume


@pytest.fixture(scope="session")
def phantoms():
    """The phantom builders of this module, for use inside tests."""
    from types import SimpleNamespace

    return SimpleNamespace(centred_grid=centred_grid, ball=ball, place_balls=place_balls)
