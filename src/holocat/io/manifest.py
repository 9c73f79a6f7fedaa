"""Content checksums, sidecar manifests and provenance records.

Every holocat artefact carries ``attrs["holocat"]`` = :func:`provenance` (package version, git
commit, stage, exact parameters, inputs with checksums, software versions, UTC timestamp,
host). Directory artefacts (Zarr stores) also get a sidecar ``<artefact>.manifest.json`` with a
content checksum, so that workflow reruns can trigger on content rather than on mtime and a
reader can verify that nothing changed since the artefact was finalised.

Checksum of a directory: SHA-256 over the sorted lines ``<relative posix path>\\t<sha256 of
file>\\n`` of every regular file below it, skipping dot-files, dot-directories and the
temporaries of :func:`holocat.io.atomic_path`. File contents are streamed, never loaded whole.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from holocat.io.atomic import is_temp_name, to_jsonable, write_json_atomic

__all__ = [
    "MANIFEST_SUFFIX",
    "checksum",
    "git_commit",
    "input_record",
    "manifest_path",
    "provenance",
    "read_manifest",
    "sha256_file",
    "software_versions",
    "verify_manifest",
    "write_manifest",
]

log = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".manifest.json"

#: distributions whose versions go into provenance (import names differ for some)
_SOFTWARE = (
    "numpy",
    "scipy",
    "zarr",
    "pandas",
    "pyarrow",
    "scikit-image",
    "torch",
    "astra-toolbox",
    "scikit-learn",
    "shap",
    "snakemake",
)


def _as_path(path: Any, what: str) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{what}: expected a str or path-like; got {type(path).__name__}")
    return Path(path)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of one file's bytes (streamed)."""
    p = _as_path(path, "path")
    with open(p, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _skip(name: str) -> bool:
    return name.startswith(".") or is_temp_name(name)


def checksum(path: str | os.PathLike[str]) -> str:
    """Content checksum (hex SHA-256) of a file or a directory tree.

    Parameters
    ----------
    path : str or path-like
        A regular file (its bytes are hashed) or a directory (see the module docstring: sorted
        relative paths and per-file hashes; dot-files and temporaries ignored, so the result
        does not depend on file-system order, mtimes or a crashed writer's leftovers).

    Returns
    -------
    str
        64 hex digits.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("holocat")
    >>> checksum(d / "a.txt") == hashlib.sha256(b"holocat").hexdigest()
    True
    """
    p = _as_path(path, "path")
    if p.is_file():
        return sha256_file(p)
    if not p.is_dir():
        raise FileNotFoundError(f"checksum: no such file or directory: {p}")
    entries = []
    for root, dirs, files in os.walk(p):
        dirs[:] = [d for d in dirs if not _skip(d)]
        for name in files:
            if _skip(name):
                continue
            full = Path(root) / name
            if not full.is_file():
                continue
            entries.append((full.relative_to(p).as_posix(), full))
    entries.sort(key=lambda e: e[0])
    digest = hashlib.sha256()
    for rel, full in entries:
        digest.update(f"{rel}\t{sha256_file(full)}\n".encode())
    return digest.hexdigest()


_content_checksum = checksum  # reachable from write_manifest, whose keyword shadows the name


def manifest_path(artefact_path: str | os.PathLike[str]) -> Path:
    """Sidecar manifest of an artefact: ``<artefact>.manifest.json``."""
    p = _as_path(artefact_path, "artefact_path")
    return p.with_name(p.name + MANIFEST_SUFFIX)


def _artefact_of(path: Path) -> Path:
    if path.name.endswith(MANIFEST_SUFFIX):
        return path.with_name(path.name[: -len(MANIFEST_SUFFIX)])
    return path


def input_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Provenance record of one input: ``{"path", "sha256", "from_manifest"}``.

    The checksum is taken from the input's sidecar manifest when one exists (cheap for large
    Zarr stores, and it is the checksum the producer recorded), else computed by
    :func:`checksum`.

    Raises
    ------
    FileNotFoundError
        If the input exists neither as a file/directory nor as a manifest.
    ValueError
        If its manifest cannot be parsed.
    """
    p = _as_path(path, "inputs")
    side = manifest_path(p)
    if side.is_file():
        return {"path": str(p), "sha256": read_manifest(side)["checksum"], "from_manifest": True}
    if not p.exists():
        raise FileNotFoundError(f"inputs: provenance input does not exist: {p}")
    return {"path": str(p), "sha256": checksum(p), "from_manifest": False}


def git_commit(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Git commit of the checkout that holds ``path`` (default: the holocat package).

    Never raises: without git, outside a repository or before the first commit it returns
    ``{"commit": None, "dirty": None}``.

    Returns
    -------
    dict
        ``commit``: 40 hex digits or None; ``dirty``: True when tracked files under ``path``
        differ from that commit, None when unknown.
    """
    where = Path(__file__).resolve().parents[1] if path is None else Path(path)
    unknown: dict[str, Any] = {"commit": None, "dirty": None}
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--verify", "-q", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        commit = head.stdout.strip()
        if head.returncode != 0 or len(commit) != 40:
            return unknown
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("git commit of %s unavailable: %s", where, exc)
        return unknown
    return {"commit": commit, "dirty": dirty}


def software_versions() -> dict[str, str | None]:
    """Versions of Python, holocat and the scientific stack (None where not installed).

    Uses distribution metadata only, so it never imports torch or astra.
    """
    from holocat import __version__

    out: dict[str, str | None] = {
        "python": platform.python_version(),
        "holocat": __version__,
    }
    for dist in _SOFTWARE:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def provenance(
    stage: str,
    params: Mapping[str, Any],
    inputs: Iterable[str | os.PathLike[str]] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance record stored as ``attrs["holocat"]`` and in manifests.

    Parameters
    ----------
    stage : str
        Workflow stage or operation that produced the artefact (``"reconstruct"``); non-empty.
    params : mapping
        The exact parameters used; converted by :func:`holocat.io.to_jsonable` (numpy scalars,
        tuples and paths are fine; other objects raise TypeError naming the key).
    inputs : iterable of path-like
        Input files or directories; each becomes :func:`input_record` (path and SHA-256, from
        the input's manifest when it has one).
    extra : mapping, optional
        More JSON-safe entries stored under ``"extra"`` (seeds, device, timings).

    Returns
    -------
    dict
        Keys ``holocat_version``, ``git_commit``, ``git_dirty``, ``stage``, ``params``,
        ``inputs``, ``software``, ``timestamp`` (UTC ISO 8601), ``hostname``, ``platform``,
        ``command`` (``sys.argv``) and ``extra``; JSON-serialisable.

    Examples
    --------
    >>> rec = provenance("reconstruct", {"filter": "ramp", "center": None})
    >>> rec["stage"], rec["params"], rec["inputs"]
    ('reconstruct', {'filter': 'ramp', 'center': None}, [])
    >>> _ = json.dumps(rec)
    """
    from holocat import __version__

    if not isinstance(stage, str) or not stage:
        raise ValueError(f"stage: expected a non-empty string; got {stage!r}")
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a mapping; got {type(params).__name__}")
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"extra: expected a mapping or None; got {type(extra).__name__}")
    git = git_commit()
    return {
        "holocat_version": __version__,
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "stage": stage,
        "params": to_jsonable(dict(params), _where="params"),
        "inputs": [input_record(p) for p in inputs],
        "software": software_versions(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "command": list(sys.argv),
        "extra": to_jsonable(dict(extra or {}), _where="extra"),
    }


def write_manifest(
    artefact_path: str | os.PathLike[str],
    *,
    provenance: Mapping[str, Any],
    checksum: str | None = None,
) -> Path:
    """Write ``<artefact>.manifest.json`` atomically.

    Parameters
    ----------
    artefact_path : str or path-like
        The finished artefact (file or directory); must exist.
    provenance : mapping
        Its provenance record (see :func:`provenance`).
    checksum : str, optional
        Its content checksum if already known; computed with :func:`holocat.io.checksum`
        otherwise.

    Returns
    -------
    pathlib.Path
        The manifest path. Its JSON holds ``artefact`` (the artefact's file name, so the pair
        can be moved together), ``kind`` (``"file"`` or ``"directory"``), ``algorithm``
        (``"sha256"``), ``checksum`` and ``provenance``.
    """
    p = _as_path(artefact_path, "artefact_path")
    if not p.exists():
        raise FileNotFoundError(f"artefact_path: cannot write a manifest for missing {p}")
    if not isinstance(provenance, Mapping):
        raise TypeError(f"provenance: expected a mapping; got {type(provenance).__name__}")
    if checksum is None:
        checksum = _content_checksum(p)
    elif not (isinstance(checksum, str) and len(checksum) == 64):
        raise ValueError(f"checksum: expected 64 hex digits of SHA-256; got {checksum!r}")
    record = {
        "artefact": p.name,
        "kind": "directory" if p.is_dir() else "file",
        "algorithm": "sha256",
        "checksum": checksum,
        "provenance": dict(provenance),
    }
    out = write_json_atomic(manifest_path(p), record)
    log.info("wrote manifest %s (sha256 %s)", out, checksum[:12])
    return out


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a manifest, given either the manifest path or its artefact's path.

    Raises
    ------
    FileNotFoundError
        If there is no manifest.
    ValueError
        If it is not valid JSON or lacks ``checksum``/``artefact``.
    """
    p = _as_path(path, "path")
    side = p if p.name.endswith(MANIFEST_SUFFIX) else manifest_path(p)
    if not side.is_file():
        raise FileNotFoundError(f"manifest not found: {side}")
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{side}: not a valid JSON manifest ({exc})") from exc
    keys = record if isinstance(record, dict) else {}
    missing = [k for k in ("artefact", "checksum") if k not in keys]
    if missing:
        raise ValueError(f"{side}: manifest lacks key(s) {missing}")
    return record


def verify_manifest(path: str | os.PathLike[str]) -> bool:
    """Recompute the artefact's checksum and compare it with its manifest.

    Parameters
    ----------
    path : str or path-like
        The manifest or the artefact.

    Returns
    -------
    bool
        True when the content matches; False (and a warning in the log) when the artefact is
        missing or changed.
    """
    p = _as_path(path, "path")
    side = p if p.name.endswith(MANIFEST_SUFFIX) else manifest_path(p)
    record = read_manifest(side)
    artefact = _artefact_of(side)
    if not artefact.exists():
        log.warning("manifest %s: artefact %s is missing", side, artefact)
        return False
    actual = checksum(artefact)
    if actual != record["checksum"]:
        log.warning(
            "manifest %s: checksum mismatch (recorded %s, now %s)",
            side,
            record["checksum"][:12],
            actual[:12],
        )
        return False
    return True
