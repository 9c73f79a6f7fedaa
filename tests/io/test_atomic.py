"""Atomic finalisation: success replaces, failure and kill leave the old target untouched."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from holocat.io import (
    atomic_path,
    checksum,
    is_temp_name,
    remove_stale_temps,
    to_jsonable,
    write_json_atomic,
)


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_temp_path_is_hidden_sibling_with_pid(tmp_path):
    target = tmp_path / "volume.ome.zarr"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert re.fullmatch(rf"\.volume\.ome\.zarr\.tmp-{os.getpid()}-[0-9a-f]{{8}}", tmp.name)
        assert is_temp_name(tmp.name) and not tmp.exists()
        tmp.mkdir()
    assert target.is_dir()
    assert not is_temp_name(target.name)


def test_success_creates_and_replaces_file(tmp_path):
    target = tmp_path / "sub" / "a.json"  # parent created on demand
    with atomic_path(target) as tmp:
        tmp.write_text("first")
    assert target.read_text() == "first"
    with atomic_path(target) as tmp:
        tmp.write_text("second")
    assert target.read_text() == "second"
    assert _names(target.parent) == ["a.json"]


def test_success_replaces_directory(tmp_path):
    target = tmp_path / "store.zarr"
    target.mkdir()
    (target / "old_chunk").write_bytes(b"\x00" * 10)
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new_chunk").write_bytes(b"\x01" * 3)
    assert _names(target) == ["new_chunk"]
    assert (target / "new_chunk").read_bytes() == b"\x01" * 3
    assert _names(tmp_path) == ["store.zarr"]


def test_directory_replaced_by_file_and_back(tmp_path):
    target = tmp_path / "thing"
    target.mkdir()
    (target / "x").write_text("x")
    with atomic_path(target) as tmp:
        tmp.write_text("file now")
    assert target.is_file() and target.read_text() == "file now"
    with atomic_path(target) as tmp:
        tmp.mkdir()
    assert target.is_dir() and _names(tmp_path) == ["thing"]


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_exception_keeps_old_target_and_removes_temp(tmp_path, kind):
    target = tmp_path / "out"
    if kind == "file":
        target.write_text("old")
    else:
        target.mkdir()
        (target / "chunk").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            if kind == "file":
                tmp.write_text("partial")
            else:
                tmp.mkdir()
                (tmp / "chunk").write_text("partial")
            raise RuntimeError("boom")
    assert _names(tmp_path) == ["out"]
    old = target if kind == "file" else target / "chunk"
    assert old.read_text() == "old"


def test_exception_without_old_target_leaves_nothing(tmp_path):
    with pytest.raises(KeyError):
        with atomic_path(tmp_path / "new.json") as tmp:
            tmp.write_text("{")
            raise KeyError("x")
    assert _names(tmp_path) == []


def test_body_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="wrote nothing"):
        with atomic_path(tmp_path / "empty"):
            pass
    assert _names(tmp_path) == []


_KILLED_WRITER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import zarr
    from holocat.io import atomic_path

    with atomic_path(sys.argv[1]) as tmp:
        g = zarr.open_group(str(tmp), mode="w", zarr_format=3, attributes={"complete": True})
        a = g.create_array("0", shape=(8, 8), chunks=(4, 8), dtype="float32")
        a[:4] = np.full((4, 8), 7.0, np.float32)
        os._exit(1)  # SIGKILL-like: no exception handling, no cleanup
    """
)


@pytest.mark.parametrize("with_old", [False, True])
def test_killed_writer_leaves_no_complete_looking_target(tmp_path, with_old):
    target = tmp_path / "phase.ome.zarr"
    if with_old:
        target.mkdir()
        (target / "zarr.json").write_text('{"old": true}')
    before = checksum(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(target)], capture_output=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr.decode()
    if with_old:
        assert json.loads((target / "zarr.json").read_text()) == {"old": True}
        assert _names(target) == ["zarr.json"]
    else:
        assert not target.exists()
    leftovers = [n for n in _names(tmp_path) if n != target.name]
    assert len(leftovers) == 1 and is_temp_name(leftovers[0])  # the killed writer's temporary
    assert (tmp_path / leftovers[0] / "0" / "c" / "0" / "0").is_file()  # it did write a chunk
    # the leftover is invisible to content checksums and removable
    assert checksum(tmp_path) == before
    assert remove_stale_temps(target, older_than_s=3600) == []  # too young to be stale
    removed = remove_stale_temps(target, older_than_s=0)
    assert [p.name for p in removed] == leftovers
    assert _names(tmp_path) == ([target.name] if with_old else [])


def test_write_json_atomic_round_trip(tmp_path):
    obj = {
        "shape": (2, 3),
        "voxel_size_um": np.float32(0.5),
        "n": np.int64(7),
        "flags": np.array([True, False]),
        "path": tmp_path / "x",
        "bad": float("nan"),
        "neg": -np.inf,
    }
    out = write_json_atomic(tmp_path / "p.json", obj)
    assert out == tmp_path / "p.json"
    assert json.loads(out.read_text()) == {
        "shape": [2, 3],
        "voxel_size_um": 0.5,
        "n": 7,
        "flags": [True, False],
        "path": str(tmp_path / "x"),
        "bad": "nan",
        "neg": "-inf",
    }


def test_write_json_atomic_rejects_unserialisable_and_keeps_old(tmp_path):
    target = tmp_path / "p.json"
    target.write_text('{"v": 1}')
    with pytest.raises(TypeError, match=r"obj\['params'\]\['model'\]"):
        write_json_atomic(target, {"params": {"model": object()}})
    assert json.loads(target.read_text()) == {"v": 1}
    assert _names(tmp_path) == ["p.json"]


def test_to_jsonable_types():
    assert to_jsonable({1: {2, 1}, "a": [np.uint8(3), np.float64(1.5)]}) == {
        "1": [1, 2],
        "a": [3, 1.5],
    }
    assert to_jsonable(np.arange(3, dtype=np.int16)) == [0, 1, 2]
    assert to_jsonable(np.bool_(True)) is True
    with pytest.raises(TypeError, match="keys"):
        to_jsonable({(1, 2): 3})
