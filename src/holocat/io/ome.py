"""OME-Zarr images (NGFF 0.5 on Zarr v3): create, region writes, finalise, open.

Layout of one image (``volume.ome.zarr``, ``labels.ome.zarr``, ``phase.ome.zarr``)::

    volume.ome.zarr/
        zarr.json     group; attributes {"ome": {"version": "0.5", "multiscales": [...]},
                                         "holocat": {..., "complete": true}}
        0/zarr.json   the full-resolution array, dimension_names = axis names
        0/c/...       chunks
    volume.ome.zarr.manifest.json   sidecar written by finalize_ome_zarr

One resolution level (path ``"0"``) with one ``scale`` coordinate transformation: the voxel
size in micrometres for the ``space`` axes, 1.0 for the others. Axis names and types:

=========  ============  ===========================================================
name       NGFF type     used for
=========  ============  ===========================================================
``z``,     ``space``     unit ``micrometer``; 2 or 3 of them, always last, ``z y x``
``y``,
``x``
``angle``  ``angle``     projection index of a phase stack (n_angles, ny, nx). A custom
                         type (NGFF 0.5 allows one "channel or custom" axis before the
                         space axes): napari shows it as a slider, where a ``channel``
                         axis would be split into one layer per projection.
``c``      ``channel``   channels
``t``      ``time``      time points (first)
=========  ============  ===========================================================

Defaults by dimensionality: 2D ``(y, x)``, 3D ``(z, y, x)``, 4D ``(c, z, y, x)``, 5D
``(t, c, z, y, x)``; a phase stack passes ``axes=("angle", "y", "x")``.

Labels (``labels=True``, integer dtype, 0 = background) are an image group that also carries
``ome["image-label"]`` (background colour transparent), which napari-ome-zarr opens as a labels
layer.

Scattered writing (the workflow's fan-out): one job calls :func:`create_ome_zarr` (empty store,
``holocat.complete = False``), concurrent jobs call :func:`write_region` for chunk-aligned
regions (so no two jobs touch the same chunk file), the gather job calls
:func:`finalize_ome_zarr`. :func:`open_ome_zarr` refuses a store that was never finalised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from holocat.io.atomic import _remove, atomic_path, to_jsonable
from holocat.io.manifest import manifest_path, write_manifest
from holocat.io.manifest import provenance as make_provenance

__all__ = [
    "AXIS_TYPES",
    "MAX_CHUNK_BYTES",
    "OmeImage",
    "create_ome_zarr",
    "default_axes",
    "default_chunks",
    "finalize_ome_zarr",
    "open_ome_zarr",
    "read_region",
    "write_ome_zarr",
    "write_region",
]

log = logging.getLogger(__name__)

NGFF_VERSION = "0.5"
#: axis name -> NGFF axis type
AXIS_TYPES: Mapping[str, str] = {
    "t": "time",
    "c": "channel",
    "angle": "angle",
    "z": "space",
    "y": "space",
    "x": "space",
}
_DEFAULT_AXES = {
    2: ("y", "x"),
    3: ("z", "y", "x"),
    4: ("c", "z", "y", "x"),
    5: ("t", "c", "z", "y", "x"),
}
_TYPE_ORDER = {"time": 0, "channel": 1, "angle": 1, "space": 2}
#: default upper bound of one chunk, in bytes (64 MiB)
MAX_CHUNK_BYTES = 64 * 2**20
_LEVEL = "0"


@dataclass(frozen=True, eq=False)
class OmeImage:
    """An opened OME-Zarr image.

    Attributes
    ----------
    array : zarr.Array
        Level 0, lazy: index it to read (``image.array[10:20]``).
    voxel_size_um : tuple of float
        Scale of the space axes in micrometres, in axis order (``(z, y, x)`` for a volume,
        ``(y, x)`` for a phase stack).
    attrs : dict
        ``attrs["holocat"]``: user attributes, provenance and ``complete``.
    path : pathlib.Path
        The store directory.
    axes : tuple of str
        Axis names, e.g. ``("z", "y", "x")`` or ``("angle", "y", "x")``.
    name : str
        ``multiscales[0]["name"]``.
    labels : bool
        True for a label image (``image-label`` metadata).
    """

    array: Any
    voxel_size_um: tuple[float, ...]
    attrs: dict[str, Any]
    path: Path
    axes: tuple[str, ...] = field(default=())
    name: str = ""
    labels: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self.array.chunks)

    @property
    def complete(self) -> bool:
        return self.attrs.get("complete") is True


# ----------------------------------------------------------------------------- validation


def _as_path(path: Any, what: str = "path") -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{what}: expected a str or path-like; got {type(path).__name__}")
    return Path(path)


def default_axes(ndim: int) -> tuple[str, ...]:
    """Default axis names for a 2D-5D image (see the module docstring)."""
    if ndim not in _DEFAULT_AXES:
        raise ValueError(f"ndim: OME-Zarr images have 2 to 5 dimensions; got {ndim}")
    return _DEFAULT_AXES[ndim]


def _check_axes(axes: Sequence[str] | None, ndim: int) -> tuple[str, ...]:
    if axes is None:
        return default_axes(ndim)
    if isinstance(axes, str) or not isinstance(axes, Sequence):
        raise TypeError(f"axes: expected a sequence of axis names; got {axes!r}")
    axes = tuple(axes)
    if len(axes) != ndim:
        raise ValueError(f"axes: expected {ndim} names, one per array dimension; got {axes}")
    unknown = [a for a in axes if a not in AXIS_TYPES]
    if unknown:
        raise ValueError(
            f"axes: unknown axis name(s) {unknown}; expected names from {list(AXIS_TYPES)}"
        )
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes: names must be unique; got {axes}")
    types = [AXIS_TYPES[a] for a in axes]
    n_space = types.count("space")
    if n_space not in (2, 3):
        raise ValueError(f"axes: NGFF 0.5 needs 2 or 3 space axes (z, y, x); got {axes}")
    if types.count("channel") + types.count("angle") > 1:
        raise ValueError(f"axes: at most one channel or angle axis is allowed; got {axes}")
    order = [_TYPE_ORDER[t] for t in types]
    if order != sorted(order):
        raise ValueError(f"axes: NGFF 0.5 orders axes time, channel/angle, space; got {axes}")
    return axes


def _check_voxel_size(voxel_size_um: Any, n_space: int) -> tuple[float, ...]:
    if isinstance(voxel_size_um, int | float | np.integer | np.floating) and not isinstance(
        voxel_size_um, bool
    ):
        values = (float(voxel_size_um),) * n_space
    elif isinstance(voxel_size_um, Sequence | np.ndarray) and not isinstance(voxel_size_um, str):
        values = tuple(float(v) for v in voxel_size_um)
    else:
        raise TypeError(
            f"voxel_size_um: expected a number or one number per space axis; got {voxel_size_um!r}"
        )
    if len(values) != n_space:
        raise ValueError(
            f"voxel_size_um: expected {n_space} values (one per space axis); got {values}"
        )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"voxel_size_um: expected finite sizes > 0 um; got {values}")
    return values


def _check_shape(shape: Any) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise TypeError(f"shape: expected a sequence of ints; got {shape!r}") from exc
    if not 2 <= len(out) <= 5 or any(s < 1 for s in out):
        raise ValueError(f"shape: expected 2 to 5 dimensions, each >= 1; got {out}")
    return out


def _check_dtype(dtype: DTypeLike, labels: bool) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: not a numpy dtype: {dtype!r}") from exc
    if labels and dt.kind not in "iu":
        raise ValueError(f"dtype: label images need an integer dtype (uint32); got {dt}")
    if dt.kind not in "iuf" or dt.itemsize > 8:
        raise ValueError(f"dtype: expected an integer or float dtype; got {dt}")
    return dt


def _check_chunks(chunks: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    try:
        out = tuple(int(c) for c in chunks)
    except TypeError as exc:
        raise TypeError(f"chunks: expected a sequence of ints; got {chunks!r}") from exc
    if len(out) != len(shape) or any(c < 1 for c in out):
        raise ValueError(f"chunks: expected {len(shape)} ints >= 1 for shape {shape}; got {out}")
    return tuple(min(c, s) for c, s in zip(out, shape, strict=True))


def default_chunks(
    shape: Sequence[int],
    dtype: DTypeLike,
    *,
    slab: int | None = None,
    max_bytes: int = MAX_CHUNK_BYTES,
) -> tuple[int, ...]:
    """Chunk shape of at most ``max_bytes``, whole planes where they fit.

    Parameters
    ----------
    shape : sequence of int
        Array shape; the first axis is the one scattered jobs split (angles, z).
    dtype : dtype-like
        Array dtype.
    slab : int, optional
        Planes per scattered job along the first axis. The first-axis chunk is then the largest
        divisor of ``slab`` that fits ``max_bytes``, so every slab boundary is a chunk boundary.
    max_bytes : int
        Upper bound of one chunk; > 0.

    Returns
    -------
    tuple of int
        Without ``slab``: as many whole planes as fit. When one plane exceeds ``max_bytes``
        the first-axis chunk is 1 and the trailing axes are halved (largest first) until it fits.

    Examples
    --------
    >>> default_chunks((100, 64, 64), "float32", slab=48, max_bytes=64 * 64 * 4 * 20)
    (16, 64, 64)
    >>> default_chunks((300, 2048, 2048), "float32")
    (4, 2048, 2048)
    """
    shape = _check_shape(shape)
    itemsize = np.dtype(dtype).itemsize
    if int(max_bytes) < itemsize:
        raise ValueError(f"max_bytes: expected >= one element ({itemsize} B); got {max_bytes}")
    trailing = list(shape[1:])
    plane = itemsize * math.prod(trailing)
    while plane > max_bytes:
        ax = int(np.argmax(trailing))
        trailing[ax] = -(-trailing[ax] // 2)
        plane = itemsize * math.prod(trailing)
    fit = max(1, int(max_bytes) // plane)
    if slab is None:
        first = min(shape[0], fit)
    else:
        slab = int(slab)
        if slab < 1:
            raise ValueError(f"slab: expected planes per job >= 1; got {slab}")
        first = max(d for d in range(1, slab + 1) if slab % d == 0 and d <= fit)
    return (first, *trailing)


# ----------------------------------------------------------------------------- metadata


def _ome_attrs(
    axes: tuple[str, ...], voxel: tuple[float, ...], name: str, labels: bool
) -> dict[str, Any]:
    axes_md = []
    scale = []
    voxel_iter = iter(voxel)
    for a in axes:
        entry: dict[str, Any] = {"name": a, "type": AXIS_TYPES[a]}
        if AXIS_TYPES[a] == "space":
            entry["unit"] = "micrometer"
            scale.append(next(voxel_iter))
        else:
            scale.append(1.0)
        axes_md.append(entry)
    ome: dict[str, Any] = {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": axes_md,
                "datasets": [
                    {
                        "path": _LEVEL,
                        "coordinateTransformations": [{"type": "scale", "scale": scale}],
                    }
                ],
                "type": "none",
                "metadata": {"description": "single resolution level, no downsampling"},
            }
        ],
    }
    if labels:
        ome["image-label"] = {"colors": [{"label-value": 0, "rgba": [0, 0, 0, 0]}]}
    return ome


def _read_group_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"OME-Zarr store not found: {path}")
    meta_file = path / "zarr.json"
    if not path.is_dir() or not meta_file.is_file():
        raise ValueError(f"{path}: not an OME-Zarr store (no zarr.json; expected a Zarr v3 group)")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_file}: not valid JSON ({exc})") from exc
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "group":
        raise ValueError(
            f"{path}: not an OME-Zarr 0.5 image: expected a Zarr v3 group, got zarr_format="
            f"{meta.get('zarr_format')!r}, node_type={meta.get('node_type')!r}"
        )
    return meta


def _parse_image(path: Path) -> tuple[dict[str, Any], tuple[str, ...], tuple[float, ...], str]:
    """Validate the OME metadata of ``path``; return (group attributes, axes, voxel size, name)."""
    attributes = _read_group_json(path).get("attributes", {})
    ome = attributes.get("ome")
    if not isinstance(ome, dict) or "multiscales" not in ome:
        raise ValueError(f"{path}: not an OME-Zarr image (no attributes.ome.multiscales)")
    if ome.get("version") != NGFF_VERSION:
        raise ValueError(
            f"{path}: expected OME-Zarr version {NGFF_VERSION!r}; got {ome.get('version')!r}"
        )
    try:
        ms = ome["multiscales"][0]
        axes = tuple(a["name"] for a in ms["axes"])
        types = tuple(a.get("type") for a in ms["axes"])
        dataset = ms["datasets"][0]
        level = dataset["path"]
        scales = [t for t in dataset["coordinateTransformations"] if t.get("type") == "scale"]
        scale = [float(s) for s in scales[0]["scale"]]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: malformed OME multiscales metadata ({exc!r})") from exc
    if level != _LEVEL:
        raise ValueError(f"{path}: expected multiscales[0].datasets[0].path == '0'; got {level!r}")
    if len(scale) != len(axes):
        raise ValueError(f"{path}: scale {scale} does not match axes {axes}")
    voxel = tuple(s for s, t in zip(scale, types, strict=True) if t == "space")
    return attributes, axes, voxel, str(ms.get("name", ""))


# ----------------------------------------------------------------------------- public API


def create_ome_zarr(
    path: str | os.PathLike[str],
    shape: Sequence[int],
    dtype: DTypeLike,
    *,
    voxel_size_um: float | Sequence[float],
    name: str,
    chunks: Sequence[int] | None = None,
    slab: int | None = None,
    axes: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
    labels: bool = False,
    overwrite: bool = True,
    fill_value: int | float = 0,
) -> Path:
    """Create an empty, not-yet-complete OME-Zarr image for scattered region writes.

    Parameters
    ----------
    path : str or path-like
        Store directory (``results/S1/volume.ome.zarr``). A stale store there, and its
        manifest, are removed. The new store appears atomically (built in a temporary sibling).
    shape : sequence of int
        Full array shape, 2 to 5 dimensions, e.g. ``(nz, ny, nx)`` or ``(n_angles, ny, nx)``.
    dtype : dtype-like
        Element type, e.g. ``float32``; integer for labels (``uint32``).
    voxel_size_um : float or sequence of float
        Size of a voxel along the space axes in micrometres (one number = isotropic); > 0.
    name : str
        Image name in the multiscales metadata.
    chunks : sequence of int, optional
        Chunk shape. Default :func:`default_chunks` (``<= 64 MiB``, aligned to ``slab``).
    slab : int, optional
        Planes per scattered job along the first axis, used for the default chunks.
    axes : sequence of str, optional
        Axis names (module docstring); default by dimensionality, ``("z", "y", "x")`` in 3D.
    attrs : mapping, optional
        JSON-safe attributes stored in ``attrs["holocat"]`` (method, parameters).
    labels : bool
        Write ``image-label`` metadata (a segmentation; needs an integer dtype).
    overwrite : bool
        If False and ``path`` exists, raise FileExistsError.
    fill_value : int or float
        Value of chunks never written.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import zarr

    target = _as_path(path)
    shape = _check_shape(shape)
    dt = _check_dtype(dtype, labels)
    axes = _check_axes(axes, len(shape))
    voxel = _check_voxel_size(voxel_size_um, [AXIS_TYPES[a] for a in axes].count("space"))
    if not isinstance(name, str):
        raise TypeError(f"name: expected a string; got {type(name).__name__}")
    if chunks is None:
        chunks = default_chunks(shape, dt, slab=slab)
    else:
        chunks = _check_chunks(chunks, shape)
    if attrs is not None and not isinstance(attrs, Mapping):
        raise TypeError(f"attrs: expected a mapping or None; got {type(attrs).__name__}")
    holocat_attrs = {**to_jsonable(dict(attrs or {}), _where="attrs"), "complete": False}
    if target.exists() and not overwrite:
        raise FileExistsError(f"path: OME-Zarr store already exists and overwrite=False: {target}")
    _remove(manifest_path(target))
    with atomic_path(target) as tmp:
        group = zarr.open_group(
            str(tmp),
            mode="w",
            zarr_format=3,
            attributes={"ome": _ome_attrs(axes, voxel, name, labels), "holocat": holocat_attrs},
        )
        group.create_array(
            _LEVEL,
            shape=shape,
            dtype=dt,
            chunks=chunks,
            fill_value=fill_value,
            dimension_names=axes,
        )
    log.info(
        "created OME-Zarr %s: shape %s %s, chunks %s, axes %s, voxel %s um",
        target,
        shape,
        dt,
        chunks,
        axes,
        voxel,
    )
    return target


def _cast_for_store(data: NDArray, dtype: np.dtype, what: str) -> NDArray:
    """Cast ``data`` to the store dtype without silently changing values."""
    if data.dtype == dtype:
        return data
    src = data.dtype
    if src.kind not in "biuf":
        raise TypeError(f"{what}: expected a numeric array for a {dtype} store; got {src}")
    if dtype.kind in "iu":
        if src.kind == "f":
            raise TypeError(f"{what}: refusing to write float {src} into an integer {dtype} store")
        if data.size:
            lo, hi = int(data.min()), int(data.max())
            info = np.iinfo(dtype)
            if lo < info.min or hi > info.max:
                raise ValueError(
                    f"{what}: values [{lo}, {hi}] do not fit the store dtype {dtype} "
                    f"([{info.min}, {info.max}])"
                )
        return data.astype(dtype)
    out = data.astype(dtype)
    if src.kind == "f" and np.count_nonzero(np.isinf(out)) > np.count_nonzero(np.isinf(data)):
        raise ValueError(f"{what}: values overflow the store dtype {dtype}")
    return out


def write_region(
    path: str | os.PathLike[str],
    array: NDArray,
    offset: int | Sequence[int],
) -> dict[str, Any]:
    """Write one chunk-aligned region of a store made by :func:`create_ome_zarr`.

    Concurrent jobs may write disjoint regions at the same time: each touches only the chunk
    files inside its region, and the store's metadata is not rewritten.

    Parameters
    ----------
    path : str or path-like
        The store.
    array : ndarray
        Region data, same number of dimensions as the store; cast to the store dtype only if
        no value changes (integers must fit, floats never go into integer stores).
    offset : int or sequence of int
        Start index of the region along each axis; an int is the first-axis offset (the
        others 0).

    Returns
    -------
    dict
        ``{"path", "offset", "shape", "sha256"}`` (SHA-256 of the written bytes, C order), for
        a per-slab manifest.

    Raises
    ------
    ValueError
        If the region lies outside the array, or its start or end is not on the chunk grid
        along some axis (the end may equal the array length), or the data does not fit.
    """
    import zarr

    target = _as_path(path)
    attributes, axes, _, _ = _parse_image(target)
    arr = zarr.open_array(str(target / _LEVEL), mode="r+")
    data = np.asarray(array)
    shape, chunks = tuple(arr.shape), tuple(arr.chunks)
    if data.ndim != len(shape):
        raise ValueError(
            f"array: expected {len(shape)} dimensions {axes} like the store {target} {shape}; "
            f"got shape {data.shape}"
        )
    if isinstance(offset, int | np.integer):
        offset = (int(offset),) + (0,) * (len(shape) - 1)
    try:
        offset = tuple(int(o) for o in offset)
    except TypeError as exc:
        raise TypeError(f"offset: expected an int or a sequence of ints; got {offset!r}") from exc
    if len(offset) != len(shape):
        raise ValueError(f"offset: expected {len(shape)} values for axes {axes}; got {offset}")
    for ax, (o, n, s, c) in enumerate(zip(offset, data.shape, shape, chunks, strict=True)):
        end = o + n
        if o < 0 or end > s or n == 0:
            raise ValueError(
                f"offset: region [{o}, {end}) along axis {ax} ({axes[ax]}) lies outside "
                f"[0, {s}) of {target}, or is empty"
            )
        if o % c or (end % c and end != s):
            raise ValueError(
                f"offset: region [{o}, {end}) along axis {ax} ({axes[ax]}) is not aligned to the "
                f"chunk grid of {target} (chunk {c}, length {s}): start and end must be multiples "
                f"of {c}, the end may be {s}; concurrent writers would share a chunk"
            )
    data = np.ascontiguousarray(_cast_for_store(data, np.dtype(arr.dtype), "array"))
    if attributes.get("holocat", {}).get("complete") is True:
        log.warning("writing into the finalised store %s: its manifest is now stale", target)
    region = tuple(slice(o, o + n) for o, n in zip(offset, data.shape, strict=True))
    arr[region] = data
    log.info("wrote region offset %s shape %s into %s", offset, data.shape, target)
    return {
        "path": str(target),
        "offset": list(offset),
        "shape": list(data.shape),
        "sha256": hashlib.sha256(memoryview(data).cast("B")).hexdigest(),
    }


def _set_holocat_attrs(path: Path, prov: Mapping[str, Any]) -> dict[str, Any]:
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    current = dict(group.attrs.get("holocat", {}))
    clash = sorted(set(current) & set(prov) - {"complete"})
    if clash:
        log.warning("finalize %s: provenance replaces attrs %s", path, clash)
    merged = {**current, **to_jsonable(dict(prov), _where="provenance"), "complete": True}
    group.attrs.update({"holocat": merged})
    return merged


def finalize_ome_zarr(path: str | os.PathLike[str], *, provenance: Mapping[str, Any]) -> Path:
    """Mark a store complete and write its manifest (the gather step).

    Sets ``attrs["holocat"] = {**attrs_given_at_creation, **provenance, "complete": True}``,
    then writes ``<path>.manifest.json`` with the content checksum of the whole store.

    Parameters
    ----------
    path : str or path-like
        A store made by :func:`create_ome_zarr` whose regions have all been written.
    provenance : mapping
        Provenance record (:func:`holocat.io.provenance`).

    Returns
    -------
    pathlib.Path
        The manifest path.
    """
    target = _as_path(path)
    if not isinstance(provenance, Mapping):
        raise TypeError(f"provenance: expected a mapping; got {type(provenance).__name__}")
    _parse_image(target)
    merged = _set_holocat_attrs(target, provenance)
    out = write_manifest(target, provenance=merged)
    log.info("finalised %s", target)
    return out


def open_ome_zarr(path: str | os.PathLike[str], *, require_complete: bool = True) -> OmeImage:
    """Open an OME-Zarr image lazily.

    Parameters
    ----------
    path : str or path-like
        Store directory.
    require_complete : bool
        Refuse a store whose ``attrs["holocat"]["complete"]`` is not true (never finalised,
        or its writer was killed).

    Returns
    -------
    OmeImage

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not an OME-Zarr 0.5 image, or is incomplete; the message names ``path``.
    """
    import zarr

    target = _as_path(path)
    attributes, axes, voxel, name = _parse_image(target)
    holocat_attrs = attributes.get("holocat", {})
    if require_complete and holocat_attrs.get("complete") is not True:
        raise ValueError(
            f"{target}: OME-Zarr store is incomplete (attrs holocat.complete is not true): it was "
            "never finalised or the job writing it was killed; rerun the step that produces it "
            "(require_complete=False opens it anyway, for inspection)"
        )
    level = target / _LEVEL
    if not (level / "zarr.json").is_file():
        raise ValueError(f"{target}: OME-Zarr image lacks its level-0 array {level}")
    arr = zarr.open_array(str(level), mode="r")
    if arr.ndim != len(axes):
        raise ValueError(f"{target}: array has {arr.ndim} dimensions but axes are {axes}")
    return OmeImage(
        array=arr,
        voxel_size_um=voxel,
        attrs=dict(holocat_attrs),
        path=target,
        axes=axes,
        name=name,
        labels="image-label" in attributes["ome"],
    )


def read_region(
    source: str | os.PathLike[str] | OmeImage,
    z0: int,
    z1: int,
    *,
    require_complete: bool = True,
) -> NDArray:
    """Read planes ``z0:z1`` along the first axis into memory.

    Parameters
    ----------
    source : path-like or OmeImage
        A store (opened with ``require_complete``) or an opened image.
    z0, z1 : int
        Half-open range along the first axis; ``0 <= z0 < z1 <= shape[0]``.

    Returns
    -------
    ndarray
        ``(z1 - z0, *shape[1:])`` in the store dtype.
    """
    image = (
        source
        if isinstance(source, OmeImage)
        else open_ome_zarr(source, require_complete=require_complete)
    )
    n = image.shape[0]
    if not all(isinstance(z, int | np.integer) and not isinstance(z, bool) for z in (z0, z1)):
        raise TypeError(f"z0, z1: expected ints; got {z0!r}, {z1!r}")
    if not 0 <= z0 < z1 <= n:
        raise ValueError(
            f"z0, z1: expected 0 <= z0 < z1 <= {n} (first axis {image.axes[:1]} of "
            f"{image.path}); got {z0}, {z1}"
        )
    return np.asarray(image.array[int(z0) : int(z1)])


def write_ome_zarr(
    path: str | os.PathLike[str],
    array: NDArray,
    *,
    voxel_size_um: float | Sequence[float],
    name: str,
    chunks: Sequence[int] | None = None,
    axes: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
    labels: bool = False,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write a whole in-memory array as a finished OME-Zarr image, atomically, with manifest.

    Create in a temporary sibling, write, mark complete, rename onto ``path``, then write
    ``<path>.manifest.json``. For small arrays; large ones use :func:`create_ome_zarr` +
    :func:`write_region` + :func:`finalize_ome_zarr`.

    Parameters
    ----------
    path : str or path-like
        Store directory; an existing one is replaced.
    array : ndarray
        2D to 5D integer or float data (integer for labels).
    voxel_size_um, name, chunks, axes, attrs, labels
        As in :func:`create_ome_zarr`.
    provenance : mapping, optional
        Provenance record; default ``provenance("write_ome_zarr", {})``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "vol.ome.zarr"
    >>> _ = write_ome_zarr(p, np.ones((4, 8, 8), np.float32), voxel_size_um=0.5, name="vol")
    >>> img = open_ome_zarr(p)
    >>> img.shape, img.voxel_size_um, img.axes
    ((4, 8, 8), (0.5, 0.5, 0.5), ('z', 'y', 'x'))
    """
    target = _as_path(path)
    data = np.asarray(array)
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    prov = make_provenance("write_ome_zarr", {}) if provenance is None else provenance
    if not isinstance(prov, Mapping):
        raise TypeError(f"provenance: expected a mapping or None; got {type(prov).__name__}")
    _remove(manifest_path(target))
    with atomic_path(target) as tmp:
        create_ome_zarr(
            tmp,
            data.shape,
            data.dtype,
            voxel_size_um=voxel_size_um,
            name=name,
            chunks=chunks,
            axes=axes,
            attrs=attrs,
            labels=labels,
        )
        write_region(tmp, data, (0,) * data.ndim)
        merged = _set_holocat_attrs(tmp, prov)
    write_manifest(target, provenance=merged)
    return target
