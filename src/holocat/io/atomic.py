"""Atomic finalisation of files and directories, and JSON helpers.

A non-scattered output (a raw scan, a whole volume, a table, a JSON file) is written to a
temporary sibling path ``<parent>/.<name>.tmp-<pid>-<hex>`` and renamed onto its target only
when the writer succeeds, so a reader (or Snakemake) never sees a half-written artefact:

>>> import json, tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> with atomic_path(d / "params.json") as tmp:
...     _ = tmp.write_text(json.dumps({"filter": "ramp"}))
>>> json.loads((d / "params.json").read_text())
{'filter': 'ramp'}
>>> sorted(p.name for p in d.iterdir())
['params.json']

A job killed inside the ``with`` block (SIGKILL, ``os._exit``) leaves only the dot-prefixed
temporary, which :func:`holocat.io.checksum` ignores and :func:`remove_stale_temps` deletes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "is_temp_name",
    "remove_stale_temps",
    "to_jsonable",
    "write_json_atomic",
]

log = logging.getLogger(__name__)

_TMP_TAG = ".tmp-"
_OLD_TAG = ".old-"


def is_temp_name(name: str) -> bool:
    """True for names of temporaries made by :func:`atomic_path` (``.<name>.tmp-<pid>-<hex>``)."""
    return name.startswith(".") and (_TMP_TAG in name or _OLD_TAG in name)


def _sibling(target: Path, tag: str) -> Path:
    return target.parent / f".{target.name}{tag}{os.getpid()}-{secrets.token_hex(4)}"


def _remove(path: Path) -> None:
    """Delete a file, link or directory tree if it exists."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _replace(tmp: Path, target: Path) -> None:
    """Move ``tmp`` onto ``target``; an existing target (file or directory) is replaced."""
    target_is_dir = target.is_dir() and not target.is_symlink()
    if not target_is_dir and not tmp.is_dir():
        os.replace(tmp, target)  # atomic for files on POSIX
        return
    old = None
    if target_is_dir or target.exists() or target.is_symlink():
        # rename() cannot replace a non-empty directory: move the old one aside first.
        old = _sibling(target, _OLD_TAG)
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        _remove(old)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; on success move it onto ``path``, on error delete it.

    Parameters
    ----------
    path : str or path-like
        Final location of a file or directory. Its parent directory is created if missing.
        An existing file or directory at ``path`` is replaced only after the body succeeded.

    Yields
    ------
    pathlib.Path
        ``<parent>/.<name>.tmp-<pid>-<hex>``, not yet existing; the body creates it (a file or
        a directory).

    Raises
    ------
    FileNotFoundError
        If the body finished without creating the temporary path.
    Exception
        Whatever the body raised, after the temporary was deleted; the old target is untouched.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path: expected a str or path-like; got {type(path).__name__}")
    target = Path(path)
    if target.name in ("", ".", ".."):
        raise ValueError(f"path: expected a file or directory name; got {str(path)!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, _TMP_TAG)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if not (tmp.exists() or tmp.is_symlink()):
        raise FileNotFoundError(
            f"atomic_path({target}): the body wrote nothing to the temporary path {tmp}"
        )
    try:
        _replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    log.debug("atomically wrote %s", target)


def remove_stale_temps(path: str | os.PathLike[str], *, older_than_s: float = 3600.0) -> list[Path]:
    """Delete temporaries of ``path`` left by killed writers.

    Parameters
    ----------
    path : str or path-like
        The artefact whose ``.<name>.tmp-*`` / ``.<name>.old-*`` siblings are removed.
    older_than_s : float
        Only temporaries whose modification time is at least this many seconds old are removed
        (a concurrent writer may still own a younger one); >= 0.

    Returns
    -------
    list of pathlib.Path
        The removed paths.
    """
    older_than_s = float(older_than_s)
    if not math.isfinite(older_than_s) or older_than_s < 0:
        raise ValueError(f"older_than_s: expected a finite number >= 0; got {older_than_s!r}")
    target = Path(path)
    if not target.parent.is_dir():
        return []
    now = time.time()
    removed = []
    for tag in (_TMP_TAG, _OLD_TAG):
        for cand in target.parent.glob(f".{target.name}{tag}*"):
            try:
                age = now - cand.lstat().st_mtime
            except FileNotFoundError:
                continue
            if age >= older_than_s:
                _remove(cand)
                removed.append(cand)
    if removed:
        log.info("removed %d stale temporaries of %s", len(removed), target)
    return removed


def to_jsonable(obj: Any, *, _where: str = "obj") -> Any:
    """Convert ``obj`` to plain JSON types (dict with str keys, list, str, int, float, bool, None).

    numpy scalars and arrays become Python numbers and lists, paths become strings, tuples and
    sets become lists, dataclasses become dicts; non-finite floats become the strings
    ``"nan"``, ``"inf"`` and ``"-inf"`` (strict JSON has no NaN).

    Raises
    ------
    TypeError
        For any other type; the message names where in ``obj`` it sits (``obj['params']['x']``).

    Examples
    --------
    >>> to_jsonable({"shape": (2, 3), "voxel": np.float32(0.5), "bad": float("nan")})
    {'shape': [2, 3], 'voxel': 0.5, 'bad': 'nan'}
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v, _where=f"{_where}[{i}]") for i, v in enumerate(obj.tolist())]
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj), _where=_where)
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str | int | np.integer):
                raise TypeError(
                    f"{_where}: JSON object keys must be str or int; got {type(key).__name__} "
                    f"key {key!r}"
                )
            out[str(key)] = to_jsonable(value, _where=f"{_where}[{key!r}]")
        return out
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj
        return [to_jsonable(v, _where=f"{_where}[{i}]") for i, v in enumerate(items)]
    raise TypeError(f"{_where}: cannot be stored as JSON: {type(obj).__name__} {obj!r:.80}")


def write_json_atomic(
    path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temporary sibling, fsync, rename).

    Parameters
    ----------
    path : str or path-like
        Destination file.
    obj : object
        Anything :func:`to_jsonable` accepts.
    indent : int or None
        JSON indentation.
    sort_keys : bool
        Sort object keys.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        If ``obj`` holds something that is not JSON-serialisable (nothing is written).
    """
    text = json.dumps(to_jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)
    target = Path(path)
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    return target
