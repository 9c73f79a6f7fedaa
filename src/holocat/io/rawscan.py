"""Raw multi-distance holotomography scans as a Zarr v3 group.

Layout (``raw.zarr``)::

    raw.zarr/
        zarr.json   attributes: energy_keV, detector_pixel_size_m, focus_to_detector_m,
                    focus_to_sample_m (one per distance), angles_rad (one per projection),
                    flat_positions (one per flat), extra (free JSON), holocat (provenance)
        data/       (n_dist, n_angles, ny, nx)  uint16 or float32, chunks (1, chunk_angles, ny, nx)
        flats/      (n_dist, n_flat, ny, nx)    uint16 or float32, chunks (1, 1, ny, nx)
        darks/      (n_dark, ny, nx)            uint16 or float32, chunks (1, ny, nx)
    raw.zarr.manifest.json

Lengths in SI metres, energy in keV, angles in radians. ``flat_positions`` gives, for each flat
frame, the projection index at which it was taken (0 = before the first projection, n_angles =
after the last), so flat-field correction can interpolate between flats taken before and after
the scan. The cone-beam geometry (magnification, effective pixel and distance) follows from
these attributes via :meth:`RawScan.geometry` (:func:`holocat.optics.distance_geometry`).

The same validation runs when writing and when reading, so a scan that was written can be read,
and a foreign or damaged scan fails with a message naming the file and the key or array.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from holocat.io.atomic import _remove, atomic_path, to_jsonable
from holocat.io.manifest import manifest_path, write_manifest
from holocat.io.manifest import provenance as make_provenance

__all__ = [
    "RAW_SCAN_DTYPES",
    "RawScan",
    "angular_coverage_deg",
    "check_raw_scan_values",
    "read_raw_scan",
    "write_raw_scan",
]

log = logging.getLogger(__name__)

#: element types accepted for data, flats and darks
RAW_SCAN_DTYPES = (np.dtype(np.uint16), np.dtype(np.float32))
_REQUIRED_KEYS = (
    "energy_keV",
    "detector_pixel_size_m",
    "focus_to_detector_m",
    "focus_to_sample_m",
    "angles_rad",
)
_RESERVED_KEYS = (*_REQUIRED_KEYS, "flat_positions", "extra", "holocat")
#: plausibility bounds that catch unit mistakes (eV for keV, um for m)
_MAX_ENERGY_KEV = 1000.0
_MAX_PIXEL_M = 1e-3
_MAX_DISTANCE_M = 1000.0
_MAX_COVERAGE_DEG = 720.0
_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True, eq=False)
class RawScan:
    """A raw scan opened by :func:`read_raw_scan`: lazy arrays and validated metadata.

    Attributes
    ----------
    path : pathlib.Path
        The store.
    data : zarr.Array
        Projections, (n_dist, n_angles, ny, nx), uint16 or float32.
    flats : zarr.Array
        Flat fields per distance, (n_dist, n_flat, ny, nx).
    darks : zarr.Array
        Dark fields, (n_dark, ny, nx).
    energy_keV : float
        Photon energy in keV.
    detector_pixel_size_m : float
        Detector pixel size in metres.
    focus_to_detector_m : float
        Focus-to-detector distance D in metres.
    focus_to_sample_m : tuple of float
        Focus-to-sample distance z1 of each distance in metres, ``len == n_dist``.
    angles_rad : ndarray of float64
        Rotation angle of each projection in radians, ``len == n_angles``.
    flat_positions : ndarray of float64
        Projection index at which each flat was taken, ``len == n_flat``, in [0, n_angles].
    extra : dict
        Free-form metadata given at writing (``extra_attrs``).
    provenance : dict
        ``attrs["holocat"]``.
    """

    path: Path
    data: Any
    flats: Any
    darks: Any
    energy_keV: float
    detector_pixel_size_m: float
    focus_to_detector_m: float
    focus_to_sample_m: tuple[float, ...]
    angles_rad: NDArray[np.float64]
    flat_positions: NDArray[np.float64]
    extra: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_dist(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_angles(self) -> int:
        return int(self.data.shape[1])

    @property
    def detector_shape(self) -> tuple[int, int]:
        return (int(self.data.shape[2]), int(self.data.shape[3]))

    def geometry(self) -> list:
        """Plane-wave-equivalent geometry of each distance (list of DistanceGeometry)."""
        from holocat.optics import distance_geometry

        return distance_geometry(
            detector_pixel_size_m=self.detector_pixel_size_m,
            focus_to_detector_m=self.focus_to_detector_m,
            focus_to_sample_m=self.focus_to_sample_m,
        )


# ----------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Dims:
    n_dist: int
    n_angles: int
    n_flat: int
    n_dark: int
    ny: int
    nx: int


def _check_arrays(where: str, data: Any, flats: Any, darks: Any) -> _Dims:
    """Check ndim, dtype and mutual shapes of data, flats and darks."""
    expected = {
        "data": "(n_dist, n_angles, ny, nx)",
        "flats": "(n_dist, n_flat, ny, nx)",
        "darks": "(n_dark, ny, nx)",
    }
    shapes = {}
    for name, arr, ndim in (("data", data, 4), ("flats", flats, 4), ("darks", darks, 3)):
        if not (hasattr(arr, "shape") and hasattr(arr, "dtype") and hasattr(arr, "__getitem__")):
            raise TypeError(f"{where}: {name}: expected an array; got {type(arr).__name__}")
        shape = tuple(int(s) for s in arr.shape)
        if len(shape) != ndim:
            raise ValueError(
                f"{where}: {name}: expected {ndim} dimensions {expected[name]}; got shape {shape}"
            )
        if any(s < 1 for s in shape):
            raise ValueError(f"{where}: {name}: every dimension must be >= 1; got shape {shape}")
        if np.dtype(arr.dtype) not in RAW_SCAN_DTYPES:
            raise ValueError(
                f"{where}: {name}: expected dtype uint16 or float32; got {np.dtype(arr.dtype)}"
            )
        shapes[name] = shape
    n_dist, n_angles, ny, nx = shapes["data"]
    if shapes["flats"][0] != n_dist or shapes["flats"][2:] != (ny, nx):
        raise ValueError(
            f"{where}: flats: expected (n_dist={n_dist}, n_flat, ny={ny}, nx={nx}) to match data "
            f"{shapes['data']}; got shape {shapes['flats']}"
        )
    if shapes["darks"][1:] != (ny, nx):
        raise ValueError(
            f"{where}: darks: expected (n_dark, ny={ny}, nx={nx}) to match data {shapes['data']}; "
            f"got shape {shapes['darks']}"
        )
    return _Dims(n_dist, n_angles, shapes["flats"][1], shapes["darks"][0], ny, nx)


def _positive(where: str, key: str, value: Any, upper: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{where}: {key}: expected a number in {unit}; got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{where}: {key}: expected a finite value > 0 {unit}; got {v!r}")
    if v > upper:
        raise ValueError(
            f"{where}: {key}: {v} {unit} is implausible (> {upper} {unit}); check the unit"
        )
    return v


def _vector(where: str, key: str, value: Any) -> NDArray[np.float64]:
    if isinstance(value, str | bytes | Mapping):
        raise ValueError(f"{where}: {key}: expected a list of numbers; got {value!r:.60}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {key}: expected a list of numbers; got {value!r:.60}") from exc
    arr = np.atleast_1d(arr)
    if arr.ndim != 1:
        raise ValueError(f"{where}: {key}: expected a 1D list; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: {key}: contains NaN or inf: {arr.tolist()!r:.120}")
    return arr


def angular_coverage_deg(angles_rad: NDArray[np.float64]) -> float:
    """Angular range covered by projections: span plus one median angular step, in degrees.

    ``linspace(0, pi, n, endpoint=False)`` covers exactly 180 degrees.
    """
    a = np.unique(np.asarray(angles_rad, dtype=np.float64))
    if a.size < 2:
        return 0.0
    return float(np.degrees(a[-1] - a[0] + np.median(np.diff(a))))


def _check_metadata(
    where: str, meta: Mapping[str, Any], dims: _Dims, min_span_deg: float
) -> dict[str, Any]:
    """Validate and normalise the metadata of a scan with dimensions ``dims``."""
    missing = [k for k in _REQUIRED_KEYS if k not in meta or meta[k] is None]
    if missing:
        raise ValueError(
            f"{where}: missing metadata key(s) {missing}; expected all of {list(_REQUIRED_KEYS)}"
        )
    energy = _positive(where, "energy_keV", meta["energy_keV"], _MAX_ENERGY_KEV, "keV")
    pixel_key, det_key = "detector_pixel_size_m", "focus_to_detector_m"
    pixel = _positive(where, pixel_key, meta[pixel_key], _MAX_PIXEL_M, "m")
    det = _positive(where, det_key, meta[det_key], _MAX_DISTANCE_M, "m")
    z1 = _vector(where, "focus_to_sample_m", meta["focus_to_sample_m"])
    if z1.size != dims.n_dist:
        raise ValueError(
            f"{where}: focus_to_sample_m: expected one distance per data distance "
            f"(n_dist={dims.n_dist}); got {z1.size}: {z1.tolist()}"
        )
    if np.any(z1 <= 0) or np.any(z1 >= det):
        raise ValueError(
            f"{where}: focus_to_sample_m: expected every distance in (0, focus_to_detector_m="
            f"{det}) m; got {z1.tolist()}"
        )
    angles = _vector(where, "angles_rad", meta["angles_rad"])
    if angles.size != dims.n_angles:
        raise ValueError(
            f"{where}: angles_rad: expected one angle per projection (n_angles={dims.n_angles}); "
            f"got {angles.size}"
        )
    coverage = angular_coverage_deg(angles)
    if coverage < min_span_deg:
        raise ValueError(
            f"{where}: angles_rad: projections cover {coverage:.2f} deg (span plus one step); "
            f"expected at least min_span_deg={min_span_deg} deg (a half scan covers 180 deg); "
            "are the angles in radians?"
        )
    if coverage > _MAX_COVERAGE_DEG:
        raise ValueError(
            f"{where}: angles_rad: projections cover {coverage:.0f} deg, more than "
            f"{_MAX_COVERAGE_DEG:.0f} deg: are the angles in degrees instead of radians?"
        )
    positions = meta.get("flat_positions")
    if positions is None:
        n_before = (dims.n_flat + 1) // 2
        positions = np.where(np.arange(dims.n_flat) < n_before, 0.0, float(dims.n_angles))
    else:
        positions = _vector(where, "flat_positions", positions)
        if positions.size != dims.n_flat:
            raise ValueError(
                f"{where}: flat_positions: expected one projection index per flat "
                f"(n_flat={dims.n_flat}); got {positions.size}"
            )
        if np.any(positions < 0) or np.any(positions > dims.n_angles):
            raise ValueError(
                f"{where}: flat_positions: expected projection indices in [0, n_angles="
                f"{dims.n_angles}]; got {positions.tolist()}"
            )
    return {
        "energy_keV": energy,
        "detector_pixel_size_m": pixel,
        "focus_to_detector_m": det,
        "focus_to_sample_m": tuple(float(v) for v in z1),
        "angles_rad": angles,
        "flat_positions": np.asarray(positions, dtype=np.float64),
    }


def _check_min_span(min_span_deg: Any) -> float:
    v = float(min_span_deg)
    if not 0 <= v <= 360:
        raise ValueError(f"min_span_deg: expected degrees in [0, 360]; got {min_span_deg!r}")
    return v


# ----------------------------------------------------------------------------- write / read


def _copy_blocks(src: Any, dst: Any, axis_chunk: int, what: str) -> None:
    """Copy ``src`` into zarr array ``dst`` in blocks of whole chunks along axis 1 (or 0)."""
    lead = dst.ndim == 4
    n = dst.shape[1] if lead else dst.shape[0]
    frame_bytes = dst.dtype.itemsize * math.prod(dst.shape[-2:])
    block = axis_chunk * max(1, _BLOCK_BYTES // max(1, frame_bytes * axis_chunk))
    outer = range(dst.shape[0]) if lead else [None]
    for d in outer:
        for a0 in range(0, n, block):
            a1 = min(n, a0 + block)
            sel = (d, slice(a0, a1)) if lead else (slice(a0, a1),)
            chunk = np.asarray(src[sel])
            if chunk.dtype != dst.dtype:
                raise ValueError(
                    f"{what}: block {sel} came back as {chunk.dtype}, expected {dst.dtype}"
                )
            dst[sel] = chunk


def write_raw_scan(
    path: str | os.PathLike[str],
    *,
    data: Any,
    flats: Any,
    darks: Any,
    energy_keV: float,
    detector_pixel_size_m: float,
    focus_to_detector_m: float,
    focus_to_sample_m: float | Sequence[float],
    angles_rad: Sequence[float] | NDArray,
    flat_positions: Sequence[float] | NDArray | None = None,
    extra_attrs: Mapping[str, Any] | None = None,
    chunks: Sequence[int] | None = None,
    chunk_angles: int = 1,
    min_span_deg: float = 179.0,
    provenance: Mapping[str, Any] | None = None,
    manifest: bool = True,
) -> Path:
    """Write a raw scan atomically (and its manifest).

    Parameters
    ----------
    path : str or path-like
        Destination store (``results/S1/raw.zarr``); an existing one is replaced.
    data : array-like
        Projections (n_dist, n_angles, ny, nx), uint16 or float32. Anything indexable with
        ``shape`` and ``dtype`` (ndarray, h5py dataset, zarr array); copied block by block.
    flats : array-like
        Flat fields (n_dist, n_flat, ny, nx), uint16 or float32.
    darks : array-like
        Dark fields (n_dark, ny, nx), uint16 or float32.
    energy_keV : float
        Photon energy in keV; > 0.
    detector_pixel_size_m : float
        Detector pixel size in metres; > 0.
    focus_to_detector_m : float
        Focus-to-detector distance in metres; > every focus-to-sample distance.
    focus_to_sample_m : float or sequence of float
        Focus-to-sample distance of each of the n_dist distances, in metres.
    angles_rad : sequence of float
        Rotation angle of each projection in radians; n_angles values covering at least
        ``min_span_deg``.
    flat_positions : sequence of float, optional
        Projection index at which each flat was taken, in [0, n_angles]; default: the first
        half of the flats at 0, the rest at n_angles.
    extra_attrs : mapping, optional
        More JSON-safe metadata (sample name, beamline, exposure), stored under ``"extra"``.
    chunks : sequence of 4 int, optional
        Chunk shape of ``data``; default ``(1, chunk_angles, ny, nx)``.
    chunk_angles : int
        Projections per chunk of ``data`` when ``chunks`` is not given; >= 1.
    min_span_deg : float
        Smallest angular coverage accepted (see ``angular_coverage_deg``), degrees. Coverage
        above 720 degrees is rejected as angles given in degrees.
    provenance : mapping, optional
        Provenance record; default ``provenance("ingest", <the scalar metadata>)``.
    manifest : bool
        Also write ``<path>.manifest.json`` (content checksum).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        Shapes, dtypes or metadata that :func:`read_raw_scan` would reject; the message names
        the array or key.
    """
    import zarr

    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path: expected a str or path-like; got {type(path).__name__}")
    target = Path(path)
    where = f"write_raw_scan({target})"
    min_span = _check_min_span(min_span_deg)
    dims = _check_arrays(where, data, flats, darks)
    meta = _check_metadata(
        where,
        {
            "energy_keV": energy_keV,
            "detector_pixel_size_m": detector_pixel_size_m,
            "focus_to_detector_m": focus_to_detector_m,
            "focus_to_sample_m": focus_to_sample_m,
            "angles_rad": angles_rad,
            "flat_positions": flat_positions,
        },
        dims,
        min_span,
    )
    if extra_attrs is not None and not isinstance(extra_attrs, Mapping):
        raise TypeError(f"extra_attrs: expected a mapping; got {type(extra_attrs).__name__}")
    extra = to_jsonable(dict(extra_attrs or {}), _where="extra_attrs")
    is_int = isinstance(chunk_angles, int | np.integer) and not isinstance(chunk_angles, bool)
    if not is_int or chunk_angles < 1:
        raise ValueError(f"chunk_angles: expected an int >= 1; got {chunk_angles!r}")
    if chunks is None:
        data_chunks = (1, min(int(chunk_angles), dims.n_angles), dims.ny, dims.nx)
    else:
        data_chunks = tuple(int(c) for c in chunks)
        if len(data_chunks) != 4 or any(c < 1 for c in data_chunks):
            raise ValueError(
                f"chunks: expected 4 ints >= 1 for data (n_dist, n_angles, ny, nx); got {chunks!r}"
            )
    scalars = {k: meta[k] for k in ("energy_keV", "detector_pixel_size_m", "focus_to_detector_m")}
    prov = (
        make_provenance(
            "ingest",
            {
                **scalars,
                "focus_to_sample_m": meta["focus_to_sample_m"],
                "n_angles": dims.n_angles,
                "detector_shape": (dims.ny, dims.nx),
            },
        )
        if provenance is None
        else provenance
    )
    if not isinstance(prov, Mapping):
        raise TypeError(f"provenance: expected a mapping or None; got {type(prov).__name__}")
    attributes = {
        **scalars,
        "focus_to_sample_m": list(meta["focus_to_sample_m"]),
        "angles_rad": meta["angles_rad"].tolist(),
        "flat_positions": meta["flat_positions"].tolist(),
        "extra": extra,
        "holocat": {**to_jsonable(dict(prov), _where="provenance"), "complete": True},
    }
    _remove(manifest_path(target))
    with atomic_path(target) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3, attributes=attributes)
        specs = (
            ("data", data, data_chunks, ("distance", "angle", "y", "x")),
            ("flats", flats, (1, 1, dims.ny, dims.nx), ("distance", "flat", "y", "x")),
            ("darks", darks, (1, dims.ny, dims.nx), ("dark", "y", "x")),
        )
        for name, src, chunk_shape, dim_names in specs:
            dst = group.create_array(
                name,
                shape=tuple(int(s) for s in src.shape),
                dtype=np.dtype(src.dtype),
                chunks=tuple(min(c, s) for c, s in zip(chunk_shape, src.shape, strict=True)),
                fill_value=0,
                dimension_names=dim_names,
            )
            _copy_blocks(src, dst, dst.chunks[1] if dst.ndim == 4 else dst.chunks[0], name)
    log.info(
        "wrote raw scan %s: %d distances x %d angles of %dx%d, %d flats, %d darks",
        target,
        dims.n_dist,
        dims.n_angles,
        dims.ny,
        dims.nx,
        dims.n_flat,
        dims.n_dark,
    )
    if manifest:
        write_manifest(target, provenance=attributes["holocat"])
    return target


def read_raw_scan(path: str | os.PathLike[str], *, min_span_deg: float = 179.0) -> RawScan:
    """Open a raw scan lazily and validate its metadata.

    Parameters
    ----------
    path : str or path-like
        Store written by :func:`write_raw_scan` (or any Zarr v3 group with that layout).
    min_span_deg : float
        Smallest angular coverage accepted, in degrees (180 for a half scan, minus tolerance).

    Returns
    -------
    RawScan

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Missing arrays or metadata keys, non-finite or non-positive energy, pixel size or
        distances, mismatched lengths or shapes, wrong ndim or dtype, too small angular
        coverage; the message names the file and the key or array.
    """
    import zarr

    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path: expected a str or path-like; got {type(path).__name__}")
    target = Path(path)
    where = f"raw scan {target}"
    min_span = _check_min_span(min_span_deg)
    if not target.exists():
        raise FileNotFoundError(f"{where}: no such store")
    if not (target / "zarr.json").is_file():
        raise ValueError(f"{where}: not a Zarr v3 group (no zarr.json)")
    try:
        group = zarr.open_group(str(target), mode="r")
    except Exception as exc:  # zarr raises several types for damaged stores
        raise ValueError(f"{where}: cannot open as a Zarr group ({exc})") from exc
    arrays = {}
    for name in ("data", "flats", "darks"):
        node = group.get(name)
        if node is None or not isinstance(node, zarr.Array):
            raise ValueError(f"{where}: missing array '{name}'")
        arrays[name] = node
    dims = _check_arrays(where, arrays["data"], arrays["flats"], arrays["darks"])
    attrs = dict(group.attrs)
    meta = _check_metadata(where, attrs, dims, min_span)
    extra = attrs.get("extra", {})
    prov = attrs.get("holocat", {})
    return RawScan(
        path=target,
        data=arrays["data"],
        flats=arrays["flats"],
        darks=arrays["darks"],
        energy_keV=meta["energy_keV"],
        detector_pixel_size_m=meta["detector_pixel_size_m"],
        focus_to_detector_m=meta["focus_to_detector_m"],
        focus_to_sample_m=meta["focus_to_sample_m"],
        angles_rad=meta["angles_rad"],
        flat_positions=meta["flat_positions"],
        extra=dict(extra) if isinstance(extra, Mapping) else {"value": extra},
        provenance=dict(prov) if isinstance(prov, Mapping) else {},
    )


def _check_frames(where: str, name: str, block: NDArray, index: tuple, zero_is_bad: bool) -> None:
    """Raise on non-finite pixels (float) or an all-zero frame in ``block`` (..., ny, nx)."""
    frames = block.reshape(-1, *block.shape[-2:])
    if block.dtype.kind == "f":
        bad = ~np.isfinite(frames).all(axis=(1, 2))
        if bad.any():
            k = int(np.argmax(bad))
            n_bad = int(np.count_nonzero(~np.isfinite(frames[k])))
            raise ValueError(
                f"{where}: {name}[{', '.join(map(str, index[k]))}] contains {n_bad} NaN/inf pixels"
            )
    if zero_is_bad:
        zero = ~frames.any(axis=(1, 2))
        if zero.any():
            k = int(np.argmax(zero))
            raise ValueError(
                f"{where}: {name}[{', '.join(map(str, index[k]))}] is all zero (a missing frame?)"
            )


def check_raw_scan_values(
    scan: RawScan | str | os.PathLike[str], *, max_frames: int | None = None
) -> dict[str, int]:
    """Scan the pixel values of a raw scan for damage.

    Checks every flat (NaN/inf in float data, all-zero frames), every dark (NaN/inf) and the
    projections chunk by chunk (NaN/inf, all-zero frames). Memory is bounded by one chunk.

    Parameters
    ----------
    scan : RawScan or path-like
        An opened scan or its store.
    max_frames : int, optional
        Check only this many projections per distance, evenly spaced over the angles; default
        all of them.

    Returns
    -------
    dict
        Frames checked: ``{"flats": n, "darks": n, "data": n}``.

    Raises
    ------
    ValueError
        At the first damaged frame; the message names the array and the index
        ``[distance, frame]`` (``[frame]`` for darks).
    """
    if not isinstance(scan, RawScan):
        scan = read_raw_scan(scan)
    if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) < 1):
        raise ValueError(f"max_frames: expected an int >= 1 or None; got {max_frames!r}")
    where = f"raw scan {scan.path}"
    n_dist, n_angles = scan.n_dist, scan.n_angles
    counts = {"flats": 0, "darks": 0, "data": 0}
    for d in range(n_dist):
        block = np.asarray(scan.flats[d])
        _check_frames(where, "flats", block, [(d, f) for f in range(block.shape[0])], True)
        counts["flats"] += block.shape[0]
    darks = np.asarray(scan.darks)
    _check_frames(where, "darks", darks, [(f,) for f in range(darks.shape[0])], False)
    counts["darks"] = darks.shape[0]
    if max_frames is None:
        step = int(scan.data.chunks[1])
        selections = [list(range(a0, min(n_angles, a0 + step))) for a0 in range(0, n_angles, step)]
    else:
        picks = np.unique(np.linspace(0, n_angles - 1, min(int(max_frames), n_angles)).round())
        selections = [[int(i)] for i in picks]
    for d in range(n_dist):
        for sel in selections:
            block = np.asarray(scan.data[d, sel[0] : sel[-1] + 1])
            _check_frames(where, "data", block, [(d, a) for a in sel], True)
            counts["data"] += len(sel)
    log.info("raw scan %s: values ok (%s frames checked)", scan.path, counts)
    return counts
