"""OME-Zarr (NGFF 0.5, Zarr v3): metadata, round trips, scattered region writes, finalisation."""

import hashlib
import json
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import zarr

from holocat.io import (
    checksum,
    create_ome_zarr,
    default_chunks,
    finalize_ome_zarr,
    manifest_path,
    open_ome_zarr,
    provenance,
    read_manifest,
    read_region,
    verify_manifest,
    write_ome_zarr,
    write_region,
)


@pytest.fixture
def volume():
    return np.random.default_rng(0).normal(size=(20, 24, 16)).astype(np.float32)


def _group_json(path):
    return json.loads((path / "zarr.json").read_text())


def _array_json(path):
    return json.loads((path / "0" / "zarr.json").read_text())


def test_volume_round_trip_and_ngff_metadata(tmp_path, volume):
    path = tmp_path / "volume.ome.zarr"
    out = write_ome_zarr(
        path,
        volume,
        voxel_size_um=(0.7, 0.5, 0.25),
        name="volume",
        chunks=(8, 24, 16),
        attrs={"filter": "ramp", "center_px": np.float64(8.5)},
    )
    assert out == path
    # metadata, read as plain JSON (the oracle is the NGFF 0.5 text, not our parser)
    group = _group_json(path)
    assert group["zarr_format"] == 3 and group["node_type"] == "group"
    ome = group["attributes"]["ome"]
    assert ome["version"] == "0.5"
    ms = ome["multiscales"][0]
    assert ms["name"] == "volume"
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert [a["type"] for a in ms["axes"]] == ["space"] * 3
    assert [a["unit"] for a in ms["axes"]] == ["micrometer"] * 3
    assert len(ms["datasets"]) == 1 and ms["datasets"][0]["path"] == "0"
    transforms = ms["datasets"][0]["coordinateTransformations"]
    assert transforms == [{"type": "scale", "scale": [0.7, 0.5, 0.25]}]
    assert "image-label" not in ome
    arr_meta = _array_json(path)
    assert arr_meta["zarr_format"] == 3 and arr_meta["node_type"] == "array"
    assert arr_meta["dimension_names"] == ["z", "y", "x"]
    assert arr_meta["shape"] == [20, 24, 16]
    # holocat attrs: user attrs + provenance + complete
    hc = group["attributes"]["holocat"]
    assert hc["complete"] is True and hc["filter"] == "ramp" and hc["center_px"] == 8.5
    assert hc["stage"] == "write_ome_zarr"
    # reading back
    img = open_ome_zarr(path)
    assert img.voxel_size_um == (0.7, 0.5, 0.25)
    assert img.axes == ("z", "y", "x") and img.name == "volume" and not img.labels
    assert img.dtype == np.float32 and img.chunks == (8, 24, 16) and img.shape == volume.shape
    np.testing.assert_array_equal(img.array[:], volume)
    np.testing.assert_array_equal(read_region(path, 5, 13), volume[5:13])
    np.testing.assert_array_equal(read_region(img, 19, 20), volume[19:20])
    # the manifest is written and verifies
    assert manifest_path(path).is_file() and verify_manifest(path)


def test_labels_round_trip_uint32(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=(12, 10, 9)).astype(np.uint32)
    labels[0, 0, 0] = 2**32 - 1  # the full uint32 range survives
    path = tmp_path / "labels.ome.zarr"
    write_ome_zarr(path, labels, voxel_size_um=0.07, name="labels", labels=True, chunks=(4, 10, 9))
    ome = _group_json(path)["attributes"]["ome"]
    assert ome["version"] == "0.5"
    assert ome["image-label"]["colors"] == [{"label-value": 0, "rgba": [0, 0, 0, 0]}]
    assert ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [
        0.07,
        0.07,
        0.07,
    ]
    assert _array_json(path)["data_type"] == "uint32"
    img = open_ome_zarr(path)
    assert img.labels and img.dtype == np.uint32 and img.chunks == (4, 10, 9)
    assert img.voxel_size_um == (0.07, 0.07, 0.07)
    np.testing.assert_array_equal(img.array[:], labels)


def test_label_images_need_integer_dtype(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        create_ome_zarr(
            tmp_path / "l.ome.zarr", (4, 4, 4), "float32", voxel_size_um=1, name="l", labels=True
        )


def test_phase_stack_uses_custom_angle_axis(tmp_path):
    stack = np.random.default_rng(2).normal(size=(6, 8, 10)).astype(np.float32)
    path = tmp_path / "phase.ome.zarr"
    write_ome_zarr(path, stack, voxel_size_um=(0.3, 0.2), name="phase", axes=("angle", "y", "x"))
    ms = _group_json(path)["attributes"]["ome"]["multiscales"][0]
    assert ms["axes"][0] == {"name": "angle", "type": "angle"}  # custom type, no unit
    assert [a["type"] for a in ms["axes"][1:]] == ["space", "space"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.3, 0.2]
    assert _array_json(path)["dimension_names"] == ["angle", "y", "x"]
    img = open_ome_zarr(path)
    assert img.axes == ("angle", "y", "x") and img.voxel_size_um == (0.3, 0.2)
    np.testing.assert_array_equal(read_region(img, 2, 4), stack[2:4])


@pytest.mark.parametrize(
    ("shape", "axes", "scale"),
    [
        ((8, 6), ("y", "x"), [0.5, 0.5]),
        ((3, 4, 6, 5), ("c", "z", "y", "x"), [1.0, 0.5, 0.5, 0.5]),
        ((2, 3, 4, 6, 5), ("t", "c", "z", "y", "x"), [1.0, 1.0, 0.5, 0.5, 0.5]),
    ],
)
def test_2d_4d_5d_default_axes(tmp_path, shape, axes, scale):
    data = np.arange(math.prod(shape), dtype=np.uint16).reshape(shape)
    path = tmp_path / "img.ome.zarr"
    write_ome_zarr(path, data, voxel_size_um=0.5, name="img")
    ms = _group_json(path)["attributes"]["ome"]["multiscales"][0]
    assert tuple(a["name"] for a in ms["axes"]) == axes
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == scale
    img = open_ome_zarr(path)
    n_space = sum(a in ("z", "y", "x") for a in axes)
    assert img.axes == axes and img.voxel_size_um == (0.5,) * n_space
    np.testing.assert_array_equal(img.array[:], data)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"axes": ("y", "angle", "x")}, "axes"),
        ({"axes": ("angle", "c", "x")}, "axes"),
        ({"axes": ("z", "y")}, "axes"),
        ({"axes": ("z", "y", "q")}, "axes"),
        ({"voxel_size_um": -1.0}, "voxel_size_um"),
        ({"voxel_size_um": (1.0, 1.0)}, "voxel_size_um"),
        ({"voxel_size_um": float("nan")}, "voxel_size_um"),
        ({"chunks": (0, 4, 4)}, "chunks"),
    ],
)
def test_create_rejects_bad_arguments(tmp_path, kwargs, match):
    args = {"voxel_size_um": 1.0, "name": "v", **kwargs}
    with pytest.raises(ValueError, match=match):
        create_ome_zarr(tmp_path / "v.ome.zarr", (4, 4, 4), "float32", **args)
    assert not (tmp_path / "v.ome.zarr").exists()


def test_default_chunks_respect_budget_and_slab():
    itemsize = 4
    plane = 64 * 64 * itemsize
    # slab 48, budget of 20 planes: the largest divisor of 48 that fits is 16
    assert default_chunks((100, 64, 64), "float32", slab=48, max_bytes=20 * plane) == (16, 64, 64)
    # no slab: as many whole planes as fit
    assert default_chunks((100, 64, 64), "float32", max_bytes=20 * plane) == (20, 64, 64)
    assert default_chunks((5, 64, 64), "float32", max_bytes=20 * plane) == (5, 64, 64)
    # a plane larger than the budget: one plane, trailing axes halved until it fits
    chunks = default_chunks((10, 64, 64), "float32", max_bytes=plane // 3)
    assert chunks[0] == 1 and math.prod(chunks) * itemsize <= plane // 3
    assert chunks == (1, 32, 32)  # 32*32*4 = 4096 B <= 5461 B; (32, 64) would be 8192 B
    # the real default: 64 MiB
    c = default_chunks((96, 2048, 2048), "float32", slab=48)
    assert 48 % c[0] == 0 and math.prod(c) * 4 <= 64 * 2**20 and c == (4, 2048, 2048)  # 4 x 16 MiB


def _slab_provenance():
    return provenance("reconstruct", {"filter": "ramp", "slab_rows": 16})


def test_scattered_region_writes_assemble_full_array(tmp_path, volume):
    data = volume[:19]  # 19 planes: the last slab ends on a partial chunk
    path = tmp_path / "volume.ome.zarr"
    create_ome_zarr(
        path, data.shape, np.float32, voxel_size_um=0.5, name="volume", slab=8, attrs={"k": 1}
    )
    assert open_ome_zarr(path, require_complete=False).chunks == (8, 24, 16)
    assert _group_json(path)["attributes"]["holocat"] == {"k": 1, "complete": False}
    slabs = [(0, 8), (8, 16), (16, 19)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        futures = [pool.submit(write_region, path, data[a:b], a) for a, b in slabs]
        results = [f.result(timeout=120) for f in futures]
    assert [r["offset"] for r in results] == [[0, 0, 0], [8, 0, 0], [16, 0, 0]]
    assert [r["shape"][0] for r in results] == [8, 8, 3]
    # each region record's digest is the digest of exactly those bytes
    assert results[1]["sha256"] == hashlib.sha256(data[8:16].tobytes()).hexdigest()
    # not readable as complete before finalisation
    with pytest.raises(ValueError, match="incomplete"):
        open_ome_zarr(path)
    np.testing.assert_array_equal(open_ome_zarr(path, require_complete=False).array[:], data)
    man = finalize_ome_zarr(path, provenance=_slab_provenance())
    assert man == manifest_path(path)
    img = open_ome_zarr(path)
    np.testing.assert_array_equal(img.array[:], data)
    assert img.attrs["complete"] is True and img.attrs["k"] == 1
    assert img.attrs["stage"] == "reconstruct" and img.attrs["params"]["slab_rows"] == 16
    record = read_manifest(path)
    assert record["checksum"] == checksum(path) and record["kind"] == "directory"
    assert record["provenance"]["stage"] == "reconstruct"
    assert verify_manifest(man)


def test_region_writes_in_two_dimensions(tmp_path):
    data = np.arange(12 * 10, dtype=np.int32).reshape(12, 10)
    path = tmp_path / "img.ome.zarr"
    create_ome_zarr(path, data.shape, np.int32, voxel_size_um=1.0, name="img", chunks=(4, 5))
    for y0 in (0, 4, 8):
        for x0 in (0, 5):
            write_region(path, data[y0 : y0 + 4, x0 : x0 + 5], (y0, x0))
    finalize_ome_zarr(path, provenance={"stage": "test"})
    np.testing.assert_array_equal(open_ome_zarr(path).array[:], data)


@pytest.mark.parametrize(
    ("start", "stop", "match"),
    [
        (3, 11, "not aligned"),  # start off the grid
        (0, 5, "not aligned"),  # end off the grid and not the array end
        (16, 24, "outside"),  # past the end
    ],
)
def test_misaligned_or_outside_region_is_rejected(tmp_path, volume, start, stop, match):
    path = tmp_path / "v.ome.zarr"
    create_ome_zarr(path, volume.shape, np.float32, voxel_size_um=1, name="v", chunks=(8, 24, 16))
    block = np.ones((stop - start, 24, 16), np.float32)
    with pytest.raises(ValueError, match=match):
        write_region(path, block, start)
    # nothing was written: still all fill value
    np.testing.assert_array_equal(open_ome_zarr(path, require_complete=False).array[:], 0)


def test_region_dtype_and_shape_checks(tmp_path):
    path = tmp_path / "labels.ome.zarr"
    create_ome_zarr(
        path, (8, 4, 4), np.uint32, voxel_size_um=1, name="l", labels=True, chunks=(4, 4, 4)
    )
    with pytest.raises(TypeError, match="float"):
        write_region(path, np.ones((4, 4, 4), np.float32), 0)
    with pytest.raises(ValueError, match="do not fit"):
        write_region(path, np.full((4, 4, 4), -1, np.int64), 0)
    with pytest.raises(ValueError, match="dimensions"):
        write_region(path, np.ones((4, 4), np.uint32), 0)
    with pytest.raises(ValueError, match="offset"):
        write_region(path, np.ones((4, 4, 4), np.uint32), (0, 0))
    write_region(path, np.full((4, 4, 4), 7, np.int64), 4)  # int64 values that fit are fine
    got = open_ome_zarr(path, require_complete=False).array[:]
    assert got.dtype == np.uint32 and got[4:].min() == 7 and got[:4].max() == 0


def test_tampering_changes_checksum_and_fails_verification(tmp_path, volume):
    path = tmp_path / "v.ome.zarr"
    write_ome_zarr(path, volume, voxel_size_um=1, name="v", chunks=(8, 24, 16))
    recorded = read_manifest(path)["checksum"]
    assert checksum(path) == recorded
    arr = zarr.open_array(str(path / "0"), mode="r+")
    arr[0, 0, 0] = volume[0, 0, 0] + 1.0
    assert checksum(path) != recorded
    assert not verify_manifest(path)


def test_recreate_replaces_stale_store_and_manifest(tmp_path, volume):
    path = tmp_path / "v.ome.zarr"
    write_ome_zarr(path, volume, voxel_size_um=1, name="v")
    assert manifest_path(path).is_file()
    with pytest.raises(FileExistsError, match="overwrite"):
        create_ome_zarr(path, (4, 4, 4), np.float32, voxel_size_um=1, name="v", overwrite=False)
    create_ome_zarr(path, (4, 4, 4), np.float32, voxel_size_um=1, name="v")
    assert not manifest_path(path).exists()
    with pytest.raises(ValueError, match="incomplete"):
        open_ome_zarr(path)
    img = open_ome_zarr(path, require_complete=False)
    assert img.shape == (4, 4, 4) and img.attrs == {"complete": False}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.ome.zarr"]


def test_open_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.ome.zarr"
    with pytest.raises(FileNotFoundError, match="nope.ome.zarr"):
        open_ome_zarr(missing)
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w", zarr_format=3, attributes={"a": 1})
    with pytest.raises(ValueError, match="plain.zarr.*not an OME-Zarr"):
        open_ome_zarr(plain)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty_dir.*no zarr.json"):
        open_ome_zarr(empty)
    with pytest.raises(FileNotFoundError, match="nope.ome.zarr"):
        read_region(missing, 0, 1)


def test_read_region_bounds(tmp_path, volume):
    path = tmp_path / "v.ome.zarr"
    write_ome_zarr(path, volume, voxel_size_um=1, name="v")
    for z0, z1 in [(-1, 2), (3, 3), (0, 21)]:
        with pytest.raises(ValueError, match="z0, z1"):
            read_region(path, z0, z1)
