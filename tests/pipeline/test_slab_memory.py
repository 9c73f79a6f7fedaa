"""Memory of one scattered job is bounded by its slab, not by the volume (DESIGN.md fan-out).

Peak traced (numpy/zarr) memory of one reconstruct-slab and one segment-slab job is measured with
tracemalloc on stacks whose row count doubles; it must not grow by more than 1.2x.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from holocat.io import create_ome_zarr, finalize_ome_zarr, write_region
from holocat.pipeline import particles, tomo

N_ANGLES, N_DET, SLAB = 120, 96, 16


def _phase_stack(path, n_rows):
    rng = np.random.default_rng(0)
    attrs = {
        "angles_rad": np.linspace(0, np.pi, N_ANGLES, endpoint=False).tolist(),
        "energy_keV": 17.0,
        "effective_pixel_size_m": 5e-7,
        "ingest": {
            "angles_rad": np.linspace(0, np.pi, N_ANGLES, endpoint=False).tolist(),
            "detector_shape": [n_rows, N_DET],
            "energy_keV": 17.0,
            "pixel_size_m": 5e-7,
        },
    }
    create_ome_zarr(
        path,
        (N_ANGLES, n_rows, N_DET),
        np.float32,
        chunks=(N_ANGLES, SLAB, N_DET),
        voxel_size_um=(0.5, 0.5),
        axes=("angle", "y", "x"),
        name="phase",
        attrs=attrs,
    )
    write_region(path, rng.random((N_ANGLES, n_rows, N_DET), dtype=np.float32), (0, 0, 0))
    finalize_ome_zarr(path, provenance={"stage": "test"})


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _reconstruct_peak(tmp_path, n_rows) -> int:
    phase = tmp_path / f"phase{n_rows}.ome.zarr"
    vol = tmp_path / f"vol{n_rows}.ome.zarr"
    _phase_stack(phase, n_rows)
    params = {
        "filter": "ramp",
        "center": float(N_DET // 2),
        "backend": "torch",
        "device": "cpu",
        "roi": "full",
        "slab_rows": SLAB,
    }
    tomo.reconstruct_init(phase, vol, params)
    return _peak(lambda: tomo.reconstruct_slab(phase, vol, 1, params, tmp_path / f"r{n_rows}.json"))


def test_reconstruct_slab_memory_does_not_grow_with_rows(tmp_path):
    for _ in range(2):  # first calls allocate one-off caches (imports, codecs): not slab memory
        _reconstruct_peak(tmp_path, 32)
    small = _reconstruct_peak(tmp_path, 64)
    large = _reconstruct_peak(tmp_path, 128)
    # reading the whole stack instead of the slab would add 120 x 128 x 96 x 4 B = 5.9 MB here
    assert large <= 1.2 * small, (small, large)


@pytest.mark.parametrize("n_rows", [64])
def test_segment_slab_memory_does_not_grow_with_rows(tmp_path, n_rows):
    peaks = []
    # the first run is a warm-up (one-off allocations of imports and codecs)
    for i, rows in enumerate((n_rows, n_rows, 2 * n_rows)):
        rng = np.random.default_rng(1)
        vol_path = tmp_path / f"v{i}.ome.zarr"
        vol = rng.normal(0, 0.05, (rows, 48, 48)).astype(np.float32)
        zz, yy, xx = np.mgrid[:rows, :48, :48]
        for cz in range(8, rows, 16):
            vol[(zz - cz) ** 2 + (yy - 24) ** 2 + (xx - 24) ** 2 < 36] += 1.0
        create_ome_zarr(
            vol_path, vol.shape, np.float32, chunks=(SLAB, 48, 48), voxel_size_um=0.5, name="volume"
        )
        write_region(vol_path, vol, (0, 0, 0))
        finalize_ome_zarr(vol_path, provenance={"stage": "test"})
        slabs = tmp_path / f"s{i}.zarr"
        params = {
            "slab_rows": SLAB,
            "halo_rows": 8,
            "method": "watershed",
            "watershed": {"min_distance_vox": 3, "min_volume_vox": 20},
        }
        particles.segment_init(vol_path, slabs, params)
        out = tmp_path / f"p{i}.json"
        peaks.append(_peak(lambda: particles.segment_slab(vol_path, slabs, 1, params, out)))  # noqa: B023
    assert peaks[2] <= 1.2 * peaks[1], peaks
