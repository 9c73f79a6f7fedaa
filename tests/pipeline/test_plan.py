"""Static job plan: chunk lists, per-sample sizes, code digests."""

from __future__ import annotations

import pytest

from holocat.pipeline.config import validate_config
from holocat.pipeline.plan import chunk_ranges, code_digest, sample_plan


def test_chunk_ranges_tile_exactly():
    assert chunk_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_ranges(8, 4) == [(0, 4), (4, 8)]
    assert chunk_ranges(3, 10) == [(0, 3)]
    for n, k in [(192, 48), (193, 48), (300, 60), (1, 1)]:
        r = chunk_ranges(n, k)
        assert r[0][0] == 0 and r[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(r, r[1:], strict=False))


@pytest.mark.parametrize(("n", "size", "match"), [(0, 4, "n:"), (10, 0, "size:")])
def test_chunk_ranges_errors(n, size, match):
    with pytest.raises(ValueError, match=match):
        chunk_ranges(n, size)


def test_synthetic_plan_follows_config():
    cfg = validate_config(
        {
            "samples": "x",
            "slab_rows": 32,
            "angle_chunk": 70,
            "simulate": {"shape": [96, 80, 80], "n_angles": 210, "detector_shape": [120, 100]},
        }
    )
    plan = sample_plan(cfg, "synthetic")
    assert plan.volume_shape == (96, 80, 80)
    assert plan.n_slabs == 3 and plan.slabs[-1] == (64, 96)
    assert plan.n_angle_chunks == 3 and plan.angle_chunks[-1] == (140, 210)
    cfg["reconstruct"]["roi"] = "full"
    assert sample_plan(cfg, "synthetic").volume_shape == (120, 100, 100)


def test_synthetic_plan_rejects_detector_smaller_than_phantom():
    cfg = validate_config(
        {"samples": "x", "simulate": {"shape": [96, 96, 96], "detector_shape": [80, 120]}}
    )
    with pytest.raises(ValueError, match="simulate.detector_shape"):
        sample_plan(cfg, "synthetic")


def test_code_digest_changes_with_the_subpackage_set():
    a = code_digest("tomo")
    assert a == code_digest("tomo") and len(a) == 16
    assert a != code_digest("segment")


def test_chunk_range_selects_and_names_the_flag():
    from holocat.pipeline.plan import chunk_range

    assert chunk_range(10, 4, 0) == (0, 4)
    assert chunk_range(10, 4, 2) == (8, 10)
    with pytest.raises(ValueError, match=r"--chunk: expected 0\.\.2"):
        chunk_range(10, 4, 3, flag="--chunk")
    with pytest.raises(ValueError, match="--slab"):
        chunk_range(10, 4, -1)


def test_pdensity_block_counts_match_the_full_resolution_table():
    import numpy as np

    from holocat.attributes import summed_area_table
    from holocat.pipeline.particles import _block_counts, _sat_downsample

    rng = np.random.default_rng(0)
    labels = (rng.random((37, 20, 23)) < 0.3).astype(np.uint32) * rng.integers(1, 9, (37, 20, 23))
    for k in (1, 2, 3):
        counts = _block_counts(labels, k, slab_rows=8)
        assert np.array_equal(
            summed_area_table(counts), summed_area_table(labels > 0, downsample=k)
        )
    assert _sat_downsample((192, 192, 192)) == 1
    assert _sat_downsample((2048, 2048, 2048)) == 7
