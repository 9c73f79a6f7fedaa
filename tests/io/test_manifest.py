"""Checksums, manifests and provenance records."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import zarr

import holocat
from holocat.io import (
    checksum,
    git_commit,
    input_record,
    manifest_path,
    provenance,
    read_manifest,
    sha256_file,
    software_versions,
    verify_manifest,
    write_manifest,
)


@pytest.fixture
def tree(tmp_path):
    """A small directory tree shaped like a Zarr store."""
    root = tmp_path / "store.zarr"
    (root / "0" / "c" / "0").mkdir(parents=True)
    (root / "zarr.json").write_text('{"zarr_format": 3}')
    (root / "0" / "zarr.json").write_text('{"node_type": "array"}')
    rng = np.random.default_rng(3)
    for i in range(3):
        (root / "0" / "c" / "0" / str(i)).write_bytes(rng.bytes(1000 + i))
    return root


def _reference_dir_checksum(root: Path) -> str:
    """The documented formula, written independently: sorted '<rel>\\t<sha256>\\n' lines."""
    lines = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            lines.append(f"{rel.as_posix()}\t{hashlib.sha256(p.read_bytes()).hexdigest()}\n")
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def test_file_checksum_is_sha256(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"holocat" * 1000)
    expected = hashlib.sha256(b"holocat" * 1000).hexdigest()
    assert checksum(p) == sha256_file(p) == expected


def test_directory_checksum_matches_formula_and_is_stable(tree, tmp_path):
    value = checksum(tree)
    assert value == _reference_dir_checksum(tree)
    assert checksum(tree) == value  # repeatable
    copy = tmp_path / "elsewhere" / "copy.zarr"
    shutil.copytree(tree, copy)
    assert checksum(copy) == value  # location-independent
    # dot-files and temporaries are ignored
    (tree / ".DS_Store").write_text("x")
    (tree / "0" / ".zarr.json.tmp-12-abcdef01").write_text("partial")
    (tree / ".hidden_dir").mkdir()
    (tree / ".hidden_dir" / "f").write_text("y")
    assert checksum(tree) == value


def test_directory_checksum_stable_across_processes(tree):
    code = "import sys; from holocat.io import checksum; print(checksum(sys.argv[1]))"
    out = subprocess.run(
        [sys.executable, "-c", code, str(tree)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == checksum(tree)


def test_directory_checksum_sensitive_to_content_and_names(tree):
    value = checksum(tree)
    chunk = tree / "0" / "c" / "0" / "1"
    original = chunk.read_bytes()
    chunk.write_bytes(bytes([original[0] ^ 1]) + original[1:])  # flip one bit
    assert checksum(tree) != value
    chunk.write_bytes(original)
    assert checksum(tree) == value
    chunk.rename(tree / "0" / "c" / "0" / "9")  # same bytes, other chunk index
    assert checksum(tree) != value


def test_checksum_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        checksum(tmp_path / "nope")


def test_write_read_verify_manifest(tree):
    prov = provenance("reconstruct", {"filter": "ramp"})
    man = write_manifest(tree, provenance=prov)
    assert man == manifest_path(tree) == tree.parent / "store.zarr.manifest.json"
    record = json.loads(man.read_text())
    assert record["artefact"] == "store.zarr" and record["kind"] == "directory"
    assert record["algorithm"] == "sha256" and record["checksum"] == checksum(tree)
    assert record["provenance"]["params"] == {"filter": "ramp"}
    assert read_manifest(tree) == record == read_manifest(man)
    assert verify_manifest(tree) and verify_manifest(man)
    (tree / "zarr.json").write_text('{"zarr_format": 2}')
    assert not verify_manifest(tree)
    shutil.rmtree(tree)
    assert not verify_manifest(man)


def test_manifest_with_given_checksum_and_file_artefact(tmp_path):
    f = tmp_path / "table.parquet"
    f.write_bytes(b"abc")
    man = write_manifest(f, provenance={"stage": "x"}, checksum=hashlib.sha256(b"abc").hexdigest())
    assert read_manifest(f)["kind"] == "file" and verify_manifest(man)
    with pytest.raises(ValueError, match="checksum"):
        write_manifest(f, provenance={}, checksum="abc")
    with pytest.raises(FileNotFoundError, match="missing"):
        write_manifest(tmp_path / "missing", provenance={})


def test_read_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="x.manifest.json"):
        read_manifest(tmp_path / "x")
    (tmp_path / "y.manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="y.manifest.json"):
        read_manifest(tmp_path / "y")
    (tmp_path / "z.manifest.json").write_text('{"artefact": "z"}')
    with pytest.raises(ValueError, match="checksum"):
        read_manifest(tmp_path / "z")


def test_provenance_record(tree, tmp_path):
    torch_before = "torch" in sys.modules
    raw = tmp_path / "params.yaml"
    raw.write_text("a: 1\n")
    write_manifest(tree, provenance={"stage": "phase"})
    rec = provenance(
        "segment",
        {"prob_threshold": np.float32(0.5), "shape": (4, 5), "model": Path("m/x"), "seed": 3},
        inputs=[raw, tree],
        extra={"device": "cpu"},
    )
    text = json.dumps(rec, allow_nan=False)  # strict JSON
    assert json.loads(text) == rec
    expected_keys = {
        "holocat_version",
        "git_commit",
        "git_dirty",
        "stage",
        "params",
        "inputs",
        "software",
        "timestamp",
        "hostname",
        "platform",
        "command",
        "extra",
    }
    assert set(rec) == expected_keys
    assert rec["holocat_version"] == holocat.__version__
    assert rec["stage"] == "segment"
    assert rec["params"] == {"prob_threshold": 0.5, "shape": [4, 5], "model": "m/x", "seed": 3}
    assert rec["inputs"] == [
        {"path": str(raw), "sha256": hashlib.sha256(b"a: 1\n").hexdigest(), "from_manifest": False},
        {"path": str(tree), "sha256": checksum(tree), "from_manifest": True},
    ]
    assert rec["extra"] == {"device": "cpu"}
    assert rec["hostname"] == socket.gethostname()
    stamp = datetime.fromisoformat(rec["timestamp"])
    assert stamp.tzinfo is not None and stamp.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert rec["git_commit"] is None or len(rec["git_commit"]) == 40
    sw = rec["software"]
    assert sw["numpy"] == np.__version__
    assert sw["python"] == ".".join(map(str, sys.version_info[:3]))
    assert sw["zarr"] == zarr.__version__ and sw["holocat"] == holocat.__version__
    assert ("torch" in sys.modules) == torch_before  # versions come from metadata only


def test_input_record_uses_manifest_checksum(tree):
    write_manifest(tree, provenance={}, checksum="0" * 64)  # recorded value wins: no rehash
    assert input_record(tree) == {"path": str(tree), "sha256": "0" * 64, "from_manifest": True}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        input_record(tree.parent / "missing.zarr")


def test_provenance_rejects_bad_arguments():
    with pytest.raises(ValueError, match="stage"):
        provenance("", {})
    with pytest.raises(TypeError, match="params"):
        provenance("x", [("a", 1)])
    with pytest.raises(TypeError, match=r"params\['model'\]"):
        provenance("x", {"model": object()})


def test_software_versions_lists_optional_packages():
    sw = software_versions()
    for key in ("python", "holocat", "numpy", "scipy", "zarr", "torch", "astra-toolbox"):
        assert key in sw
    assert all(v is None or isinstance(v, str) for v in sw.values())


def _git(cwd, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(cwd), GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def test_git_commit_of_a_throwaway_repository(tmp_path):
    assert git_commit(tmp_path / "no_repo_here") == {"commit": None, "dirty": None}
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    assert git_commit(repo) == {"commit": None, "dirty": None}  # no commit yet: never fails
    (repo / "f.py").write_text("x = 1\n")
    _git(repo, "add", "f.py")
    _git(repo, "commit", "-q", "-m", "init")
    head = _git(repo, "rev-parse", "HEAD")
    assert git_commit(repo) == {"commit": head, "dirty": False}
    (repo / "f.py").write_text("x = 2\n")
    assert git_commit(repo) == {"commit": head, "dirty": True}
