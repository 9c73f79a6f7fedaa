"""extract / particle_attributes: table layout, slab split, process pool, errors, plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from holocat.attributes import (
    ATTRIBUTE_DEFINITIONS,
    ATTRIBUTE_UNITS,
    COLUMNS,
    PARTICLE_COLUMNS,
    TABLE_S1_COLUMNS,
    add_pdensity,
    extract,
    neighbour_attributes,
    particle_attributes,
    plot_distributions,
    summed_area_table,
)


def test_table_layout_and_metadata(random_balls):
    labels, volume = random_balls
    t = extract(labels, volume, voxel_size_um=0.5)
    assert len(TABLE_S1_COLUMNS) == 23
    assert tuple(t.columns) == COLUMNS
    assert COLUMNS[:24] == ("label", *TABLE_S1_COLUMNS)
    assert COLUMNS[24:] == (
        "DamageVoxels",
        "EDensityStd",
        "touches_border",
        "n_voxels",
        "near_spherical",
    )
    assert set(ATTRIBUTE_UNITS) == set(COLUMNS) == set(ATTRIBUTE_DEFINITIONS)
    assert t.label.tolist() == sorted(np.unique(labels[labels > 0]).tolist())
    assert t.label.dtype == np.int64 and t.n_voxels.dtype == np.int64
    assert t.touches_border.dtype == bool and t.near_spherical.dtype == bool
    assert t[list(TABLE_S1_COLUMNS)].notna().all().all()


def test_edensity_is_the_exact_mean_of_a_varying_field(random_balls):
    labels, _ = random_balls
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in labels.shape), indexing="ij")
    volume = 1.5 + 0.01 * x - 0.02 * y + 0.005 * z * z
    volume[labels == 3] = 7.0  # one particle with a constant value
    t = particle_attributes(labels, volume, voxel_size_um=0.5)
    for row in t.itertuples():
        values = volume[labels == row.label]
        assert row.EDensity == pytest.approx(values.mean(), rel=1e-13)
        assert row.EDensityStd == pytest.approx(values.std(), rel=1e-12, abs=1e-15)
        if row.label == 3:
            assert row.EDensity == 7.0 and np.isinf(row.Homogeneity)
        else:
            assert row.Homogeneity == pytest.approx(1.0 / values.std(), rel=1e-12)


def test_non_native_byte_order_and_narrow_dtypes_give_the_same_table(random_balls):
    labels, volume = random_balls
    t = particle_attributes(labels, volume.astype(np.float32), voxel_size_um=0.5)
    big_endian = labels.astype(labels.dtype.newbyteorder(">"))
    t2 = particle_attributes(big_endian, volume.astype(">f4"), voxel_size_um=0.5)
    pd.testing.assert_frame_equal(t, t2)
    with pytest.raises(ValueError, match="volume: expected finite"):
        bad = volume.astype(np.float16)
        bad[3, 4, 5] = np.inf
        particle_attributes(labels, bad, voxel_size_um=0.5)


def _slab_owner_ids(labels: np.ndarray, z0: int, z1: int) -> list[int]:
    """Labels whose lowest voxel lies in [z0, z1): exactly one slab owns each particle."""
    from scipy import ndimage as ndi

    return [
        i + 1
        for i, sl in enumerate(ndi.find_objects(labels))
        if sl is not None and z0 <= sl[0].start < z1
    ]


def test_sub_block_rows_equal_whole_volume_rows_and_gather_equals_extract(random_balls):
    labels, volume = random_balls
    s = 0.5
    whole = particle_attributes(labels, volume, voxel_size_um=s).set_index("label")
    halo = 24  # larger than any particle (diameter <= 19 voxels) plus the crop padding
    parts = []
    for z0, z1 in ((0, 40), (40, 80)):
        ids = _slab_owner_ids(labels, z0, z1)
        b0, b1 = max(z0 - halo, 0), min(z1 + halo, labels.shape[0])
        part = particle_attributes(
            labels[b0:b1],
            volume[b0:b1],
            voxel_size_um=s,
            label_ids=ids,
            offset_vox=(b0, 0, 0),
            full_shape=labels.shape,
        )
        assert tuple(part.columns) == PARTICLE_COLUMNS
        pd.testing.assert_frame_equal(part.set_index("label"), whole.loc[ids], rtol=1e-12)
        parts.append(part)
    # the gather: concatenate the slabs, PDensity from one shared table, then neighbours
    gathered = pd.concat(parts, ignore_index=True).sort_values("label", ignore_index=True)
    gathered = add_pdensity(
        gathered, summed_area_table(labels > 0), voxel_size_um=s, pdensity_cube_um=20.0
    )
    gathered = neighbour_attributes(gathered)
    full = extract(labels, volume, voxel_size_um=s, pdensity_cube_um=20.0)
    pd.testing.assert_frame_equal(gathered[list(COLUMNS)], full, rtol=1e-12)


def test_sub_block_touches_border_against_full_shape(phantoms):
    labels = phantoms.place_balls((40, 40, 40), [(20, 20, 20), (20, 20, 3)], [6, 6])
    whole = particle_attributes(labels, np.ones(labels.shape), voxel_size_um=1.0)
    assert whole.touches_border.tolist() == [False, True]
    # the block starts at x = 0 of the full volume, but its last face is interior
    block = particle_attributes(
        labels[:, :, :30],
        np.ones((40, 40, 30)),
        voxel_size_um=1.0,
        offset_vox=(0, 0, 0),
        full_shape=(40, 40, 40),
    )
    assert block.touches_border.tolist() == [False, True]
    pd.testing.assert_frame_equal(block, whole, rtol=1e-12)


def test_truncated_particle_in_a_block_is_reported(phantoms, caplog):
    labels = phantoms.place_balls((40, 40, 40), [(20, 20, 20)], [8])
    with caplog.at_level("WARNING", logger="holocat.attributes.extract"):
        particle_attributes(
            labels[:24], np.ones((24, 40, 40)), voxel_size_um=1.0, full_shape=(40, 40, 40)
        )
    assert "may be truncated" in caplog.text


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_process_pool_matches_serial(random_balls, monkeypatch, method):
    import importlib
    import multiprocessing

    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method on this platform")
    # the package re-exports the function ``extract``, which shadows the module's name
    extract_module = importlib.import_module("holocat.attributes.extract")
    labels, volume = random_balls
    serial = particle_attributes(labels, volume, voxel_size_um=0.5, label_ids=[1, 2, 3, 4, 5])
    # one particle per chunk: the chunks come back in order from both workers
    monkeypatch.setattr(extract_module, "_CHUNK_VOXELS", 1)
    monkeypatch.setattr(extract_module, "_MIN_POOL_VOXELS", 0)
    monkeypatch.setattr(extract_module, "_pool_start_method", lambda: method)
    shm_dir = Path("/dev/shm")
    before = set(shm_dir.iterdir()) if shm_dir.is_dir() else set()
    pooled = particle_attributes(
        labels, volume, voxel_size_um=0.5, label_ids=[1, 2, 3, 4, 5], n_workers=2
    )
    pd.testing.assert_frame_equal(pooled, serial, rtol=0, atol=0)
    # forked workers inherit the block; a fork server's map one shared-memory copy, unlinked
    if shm_dir.is_dir():
        assert set(shm_dir.iterdir()) <= before


@pytest.mark.parametrize(("thread_name", "forks"), [("zarr_io", True), ("loader", False)])
def test_pool_forks_only_beside_zarr_threads(thread_name, forks):
    import importlib
    import sys
    import threading

    extract_module = importlib.import_module("holocat.attributes.extract")
    main = threading.main_thread()
    known = all(
        t is main or t.name.startswith(extract_module._FORK_SAFE_THREADS)
        for t in threading.enumerate()
    )
    release = threading.Event()
    other = threading.Thread(target=release.wait, name=thread_name)
    other.start()
    try:
        method = extract_module._pool_start_method()
    finally:
        release.set()
        other.join()
    if not forks:
        assert method != "fork"  # a thread that could hold a lock the child needs
    elif known and sys.platform.startswith("linux"):
        assert method == "fork"


@pytest.mark.parametrize(
    ("full", "message"),
    [("_shared_memory_room", "/dev/shm"), ("_memory_room", "give the job more memory")],
)
def test_pool_without_room_for_the_block_computes_in_process(
    random_balls, monkeypatch, caplog, full, message
):
    import importlib

    extract_module = importlib.import_module("holocat.attributes.extract")
    labels, volume = random_balls
    serial = particle_attributes(labels, volume, voxel_size_um=0.5, label_ids=[1, 2, 3])
    monkeypatch.setattr(extract_module, "_MIN_POOL_VOXELS", 0)
    monkeypatch.setattr(extract_module, "_pool_start_method", lambda: "forkserver")
    monkeypatch.setattr(extract_module, full, lambda: 1000)  # a full /dev/shm or memory limit
    with caplog.at_level("WARNING", logger="holocat.attributes.extract"):
        pooled = particle_attributes(
            labels, volume, voxel_size_um=0.5, label_ids=[1, 2, 3], n_workers=2
        )
    assert message in caplog.text and "computed in-process" in caplog.text
    pd.testing.assert_frame_equal(pooled, serial, rtol=0, atol=0)


def test_memory_room_reads_this_machine():
    import importlib

    extract_module = importlib.import_module("holocat.attributes.extract")
    room = extract_module._memory_room()
    if Path("/proc/meminfo").exists():
        assert room is not None and room < 2**60


def test_sample_mask_excludes_outside_from_pdensity(phantoms):
    labels = phantoms.place_balls((40, 40, 60), [(20, 20, 15), (20, 20, 35)], [8, 8])
    sample = np.zeros(labels.shape, dtype=bool)
    sample[:, :, :45] = True  # x >= 45: outside the sample (e.g. air above the electrode)
    vol = np.ones(labels.shape)
    cube = 30.0
    t = extract(labels, vol, voxel_size_um=1.0, sample_mask=sample, pdensity_cube_um=cube)
    t0 = extract(labels, vol, voxel_size_um=1.0, pdensity_cube_um=cube)
    idx = np.indices(labels.shape)
    for row, row0 in zip(t.itertuples(), t0.itertuples(), strict=True):
        c = np.array([row.Z, row.Y, row.X])
        in_cube = np.all(
            (idx >= (c - cube / 2)[:, None, None, None])
            & (idx < (c + cube / 2)[:, None, None, None]),
            axis=0,
        )
        n_lab = (in_cube & (labels > 0)).sum()
        assert row.PDensity == pytest.approx(n_lab / (in_cube & sample).sum(), rel=1e-12)
        assert row0.PDensity == pytest.approx(n_lab / in_cube.sum(), rel=1e-12)
    assert (t.PDensity > t0.PDensity).any()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels": np.zeros((8, 8, 8), np.float32)}, TypeError, "labels: expected an integer"),
        ({"labels": np.ones((8, 8, 8), bool)}, TypeError, "labels"),
        ({"labels": np.ones((8, 8), np.int32)}, ValueError, r"labels: expected shape \(nz"),
        ({"volume": np.ones((8, 8, 9))}, ValueError, "volume: expected the labels' shape"),
        ({"labels": np.zeros((8, 8, 8), np.int32)}, ValueError, "labels: no particles"),
        ({"labels": -np.ones((8, 8, 8), np.int32)}, ValueError, "labels: expected labels >= 0"),
        ({"volume": np.full((8, 8, 8), np.nan)}, ValueError, "volume: expected finite"),
        ({"volume": np.ones((8, 8, 8), complex)}, TypeError, "volume"),
        ({"voxel_size_um": 0.0}, ValueError, "voxel_size_um"),
        ({"voxel_size_um": -1.0}, ValueError, "voxel_size_um"),
        ({"voxel_size_um": float("nan")}, ValueError, "voxel_size_um"),
        ({"voxel_size_um": float("inf")}, ValueError, "voxel_size_um"),
        ({"voxel_size_um": "0.1"}, TypeError, "voxel_size_um"),
        ({"label_ids": [5]}, ValueError, "label_ids"),
        ({"r_close_um": -0.1}, ValueError, "r_close_um"),
        ({"contact_gap_um": 0.0}, ValueError, "contact_gap_um"),
        ({"smooth_sigma_vox": 0.0}, ValueError, "smooth_sigma_vox"),
        ({"n_workers": 0}, ValueError, "n_workers"),
        ({"offset_vox": (0, 0)}, TypeError, "offset_vox"),
        ({"offset_vox": (0, 0, 4), "full_shape": (8, 8, 8)}, ValueError, "full_shape"),
        ({"sample_mask": np.ones((8, 8, 7), bool)}, ValueError, "sample_mask"),
        ({"pdensity_cube_um": 0.0}, ValueError, "pdensity_cube_um"),
    ],
)
def test_extract_rejects_bad_input(kwargs, error, match):
    labels = np.zeros((8, 8, 8), np.int32)
    labels[2:6, 2:6, 2:6] = 1
    args = {"labels": labels, "volume": np.ones((8, 8, 8)), "voxel_size_um": 0.5, **kwargs}
    with pytest.raises(error, match=match):
        extract(args.pop("labels"), args.pop("volume"), **args)


def test_voxel_size_is_required():
    labels = np.ones((4, 4, 4), np.int32)
    with pytest.raises(TypeError, match="voxel_size_um"):
        extract(labels, np.ones((4, 4, 4)))  # type: ignore[call-arg]


def test_plot_distributions_overlays_samples_without_border_particles():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    rng = np.random.default_rng(4)

    def table(n, shift):
        t = pd.DataFrame({c: rng.normal(shift, 1.0, n) for c in TABLE_S1_COLUMNS})
        t["touches_border"] = False
        t.loc[:4, "touches_border"] = True
        t.loc[:4, "Damage"] = 1e6  # border particles: must not appear in the histograms
        return t

    tables = {"10 cycles": table(60, 0.0), "50 cycles": table(80, 1.0)}
    fig = plot_distributions(tables, columns=["Damage", "Volume", "Contact"])
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3
    dmg = visible[0]
    interior = np.concatenate([t.Damage[~t.touches_border] for t in tables.values()])
    xs = [p.get_x() for p in dmg.patches]
    assert min(xs) == pytest.approx(interior.min()) and max(xs) < interior.max()
    assert len(dmg.lines) == 2  # one KDE per sample
    assert [text.get_text() for text in fig.legends[0].get_texts()] == list(tables)
    with pytest.raises(ValueError, match="tables"):
        plot_distributions({})
    with pytest.raises(ValueError, match="missing column"):
        plot_distributions(tables, columns=["NotAnAttribute"])
