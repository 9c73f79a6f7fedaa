"""Stage driver: synthetic electrode (ground truth directory) and its raw holotomography scan."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from holocat.io import (
    atomic_path,
    open_ome_zarr,
    provenance,
    write_manifest,
    write_ome_zarr,
    write_raw_scan,
    write_table,
)

__all__ = ["run_electrode", "run_scan", "TRUTH_ARRAYS"]

log = logging.getLogger(__name__)

#: arrays of the ground-truth directory: name -> (Electrode attribute, dtype, is a label image)
TRUTH_ARRAYS = {
    "delta": ("delta", np.float32, False),
    "beta": ("beta", np.float32, False),
    "labels": ("labels", np.uint32, True),
    "filled_labels": ("filled_labels", np.uint32, True),
    "crack_mask": ("crack_mask", np.uint8, True),
    "material": ("material", np.uint8, True),
}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    return obj


def run_electrode(out_dir: str | Path, params: dict) -> Path:
    """Simulate one electrode and write its ground truth to ``out_dir`` (atomic) + manifest.

    ``out_dir`` receives ``delta``, ``beta`` (float32), ``labels`` (solid particle voxels),
    ``filled_labels`` (particles including cracks), ``crack_mask``, ``material`` as OME-Zarr,
    ``particles.parquet`` (generative parameters and planted damage) and ``meta.json``.
    """
    from holocat.simulate import electrode

    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    p = dict(params)
    kwargs = {
        "shape": tuple(p.pop("shape")),
        "voxel_size_um": p.pop("voxel_size_um"),
        "cycles": p.pop("cycles"),
        "seed": p.pop("seed"),
    }
    kwargs.update(p)
    el = electrode(**kwargs)
    log.info("electrode: %d particles in %.1f s", len(el.particles), time.perf_counter() - t0)
    vox = float(kwargs["voxel_size_um"])
    prov = provenance("simulate_electrode", params)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for name, (attr, dtype, is_label) in TRUTH_ARRAYS.items():
            arr = np.asarray(getattr(el, attr)).astype(dtype, copy=False)
            write_ome_zarr(
                tmp / f"{name}.ome.zarr",
                arr,
                voxel_size_um=vox,
                name=name,
                labels=is_label,
                provenance=prov,
            )
        write_table(
            el.particles,
            tmp / "particles.parquet",
            metadata={"provenance": prov, "meta": _jsonable(el.meta)},
        )
        (tmp / "meta.json").write_text(json.dumps(_jsonable(el.meta), indent=2), encoding="utf-8")
    write_manifest(out_dir, provenance=prov)
    log.info("wrote %s in %.1f s", out_dir, time.perf_counter() - t0)
    return out_dir


def run_scan(truth_dir: str | Path, out_path: str | Path, params: dict) -> Path:
    """Simulate the 4-distance holotomography scan of a ground-truth electrode; write the raw-scan Zarr."""
    from holocat.simulate import holotomo

    truth_dir = Path(truth_dir)
    t0 = time.perf_counter()
    delta_img = open_ome_zarr(truth_dir / "delta.ome.zarr")
    beta_img = open_ome_zarr(truth_dir / "beta.ome.zarr")
    p = dict(params)
    angle_chunk = int(p.pop("angle_chunk", 60))
    scan = holotomo(
        np.asarray(delta_img.array[:]),
        np.asarray(beta_img.array[:]),
        voxel_size_um=float(delta_img.voxel_size_um[-1]),
        energy_keV=p.pop("energy_keV"),
        n_angles=p.pop("n_angles"),
        focus_to_sample_m=tuple(p.pop("focus_to_sample_m")),
        focus_to_detector_m=p.pop("focus_to_detector_m"),
        detector_shape=tuple(p.pop("detector_shape")),
        **p,
    )
    log.info("holotomo: data %s in %.1f s", scan.data.shape, time.perf_counter() - t0)
    a = dict(scan.attrs)
    prov = provenance("simulate_scan", params, inputs=[str(truth_dir)])
    extra = {k: v for k, v in a.items() if k not in _RAW_KEYS}
    extra["defect_pixels"] = np.argwhere(scan.defect_mask).tolist()
    write_raw_scan(
        out_path,
        data=scan.data,
        flats=scan.flats,
        darks=scan.darks,
        energy_keV=a["energy_keV"],
        detector_pixel_size_m=a["detector_pixel_size_m"],
        focus_to_detector_m=a["focus_to_detector_m"],
        focus_to_sample_m=a["focus_to_sample_m"],
        angles_rad=a["angles_rad"],
        flat_positions=a.get("flat_positions"),
        extra_attrs=_jsonable(extra),
        chunks=(1, angle_chunk, scan.data.shape[2], scan.data.shape[3]),
        provenance=prov,
    )
    log.info("wrote %s in %.1f s", out_path, time.perf_counter() - t0)
    return Path(out_path)


_RAW_KEYS = {
    "energy_keV",
    "detector_pixel_size_m",
    "focus_to_detector_m",
    "focus_to_sample_m",
    "angles_rad",
    "flat_positions",
}
