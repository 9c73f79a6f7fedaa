"""Stage drivers: ingest (validation + geometry), phase retrieval per angle chunk, FBP per row slab."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from holocat.io import (
    create_ome_zarr,
    open_ome_zarr,
    read_raw_scan,
    write_json_atomic,
    write_region,
)
from holocat.optics import distance_geometry
from holocat.pipeline.common import read_json, reset_scatter, write_part
from holocat.pipeline.plan import chunk_range

__all__ = [
    "run_ingest",
    "phase_init",
    "phase_chunk",
    "reconstruct_init",
    "reconstruct_slab",
]

log = logging.getLogger(__name__)


def run_ingest(raw_path: str | Path, out_json: str | Path, params: dict) -> dict:
    """Validate a raw-scan Zarr (metadata, shapes, flats and darks) and write the scan geometry JSON.

    The JSON holds, per distance, the magnification, effective pixel size and effective
    (plane-wave equivalent) propagation distance, and the reference distance (largest
    magnification) onto whose grid every distance is resampled.
    """
    from holocat.io import check_raw_scan_values

    raw_path = Path(raw_path)
    scan = read_raw_scan(raw_path, min_span_deg=float(params.get("min_angle_span_deg", 179.0)))
    check_raw_scan_values(scan)
    geo = distance_geometry(
        detector_pixel_size_m=scan.detector_pixel_size_m,
        focus_to_detector_m=scan.focus_to_detector_m,
        focus_to_sample_m=scan.focus_to_sample_m,
    )
    ref = int(np.argmax([g.magnification for g in geo]))
    n_dist, n_angles, ny, nx = (int(v) for v in scan.data.shape)
    sim = dict((scan.extra or {}).get("simulated", {}))
    info = {
        "raw": str(raw_path),
        "n_dist": n_dist,
        "n_angles": n_angles,
        "detector_shape": [ny, nx],
        "energy_keV": scan.energy_keV,
        "angles_rad": np.asarray(scan.angles_rad, dtype=float).tolist(),
        "flat_positions": np.asarray(scan.flat_positions, dtype=int).tolist(),
        "reference_index": ref,
        "pixel_size_m": geo[ref].effective_pixel_size_m,
        "magnifications": [g.magnification for g in geo],
        "effective_pixel_sizes_m": [g.effective_pixel_size_m for g in geo],
        "effective_distances_m": [g.effective_distance_m for g in geo],
        "sample_shape": sim.get("sample_shape"),
        "sample_origin_px": sim.get("sample_origin_px"),
        "params": params,
    }
    write_json_atomic(Path(out_json), info)
    log.info(
        "ingest %s: %d distances x %d angles of %dx%d px; reference distance %d, p_eff %.1f nm",
        raw_path,
        n_dist,
        n_angles,
        ny,
        nx,
        ref,
        info["pixel_size_m"] * 1e9,
    )
    return info


def phase_init(ingest_json: str | Path, store: str | Path, params: dict) -> None:
    """Create the empty phase-stack store (n_angles, ny, nx), chunked (angle_chunk, slab_rows, nx)."""
    info = read_json(ingest_json)
    n_angles = info["n_angles"]
    ny, nx = info["detector_shape"]
    chunks = (int(params["angle_chunk"]), min(int(params["slab_rows"]), ny), nx)
    p_um = info["pixel_size_m"] * 1e6
    attrs = {
        "method": params["method"],
        "delta_beta": params["delta_beta"],
        "regularisation": params["regularisation"],
        "refine_iterations": int(params.get("refine_iterations", 0)),
        "detector_psf_px": float(params.get("detector_psf_px", 0.0)),
        "effective_pixel_size_m": info["pixel_size_m"],
        "energy_keV": info["energy_keV"],
        "angles_rad": info["angles_rad"],
        "unit": "rad",
        "ingest": info,
    }
    reset_scatter(store)
    create_ome_zarr(
        store,
        (n_angles, ny, nx),
        np.float32,
        chunks=chunks,
        voxel_size_um=(p_um, p_um),
        axes=("angle", "y", "x"),
        name="phase",
        attrs=attrs,
        overwrite=True,
    )
    write_json_atomic(
        Path(f"{store}.init.json"),
        {
            "shape": [n_angles, ny, nx],
            "chunks": list(chunks),
            "params": params,
            "ingest": str(ingest_json),
        },
    )


def _retrieve(intensity: np.ndarray, info: dict, params: dict) -> np.ndarray:
    """Phase of flat-corrected intensities on the reference grid, (n_dist, n, ny, nx) -> (n, ny, nx).

    ``phase.method`` gives the linear retrieval: Paganin on ``distance_index`` or the
    multi-distance CTF. With ``phase.refine_iterations > 0`` that result starts
    :func:`holocat.tomo.refine_phase`, a least-squares fit of the multi-distance Fresnel
    forward model (with each distance's detector pixel) to all distances; ``intensity`` then
    holds every distance, otherwise (Paganin alone) only the one Paganin uses.
    """
    from holocat.tomo import ctf_multi, paganin, refine_phase

    energy = info["energy_keV"]
    pix = info["pixel_size_m"]
    z = info["effective_distances_m"]
    n_iter = int(params.get("refine_iterations", 0))
    if params["method"] == "paganin":
        d = int(params["distance_index"])
        start = paganin(
            intensity[d if n_iter > 0 else 0],
            energy_keV=energy,
            distance_m=z[d],
            pixel_size_m=pix,
            delta_beta=params["delta_beta"],
            device=params["device"],
        )
    else:
        start = ctf_multi(
            np.moveaxis(intensity, 0, 1),
            energy_keV=energy,
            distances_m=z,
            pixel_size_m=pix,
            delta_beta=params["delta_beta"],
            reg=params["regularisation"],
            device=params["device"],
        )
    if n_iter == 0:
        return start
    return refine_phase(
        np.moveaxis(intensity, 0, 1),
        energy_keV=energy,
        distances_m=z,
        pixel_size_m=pix,
        delta_beta=params["delta_beta"],
        detector_pixel_sizes_m=info["effective_pixel_sizes_m"],
        detector_psf_px=float(params.get("detector_psf_px", 0.0)),
        initial=start,
        n_iter=n_iter,
        device=params["device"],
    )


def phase_chunk(
    raw_path: str | Path,
    ingest_json: str | Path,
    store: str | Path,
    chunk: int,
    params: dict,
    out: str | Path,
) -> None:
    """Flat/dark-correct, put on the reference grid, register and phase-retrieve one angle chunk.

    Writes rows ``[a0, a1)`` of the phase stack (exactly one chunk along the angle axis).
    """
    from holocat.tomo import flat_field, prepare_distances, rescale_to_reference

    t0 = time.perf_counter()
    info = read_json(ingest_json)
    init = read_json(f"{store}.init.json")
    a0, a1 = chunk_range(info["n_angles"], int(init["chunks"][0]), chunk, flag="--chunk")
    scan = read_raw_scan(raw_path)
    ny, nx = info["detector_shape"]
    ref = info["reference_index"]
    if params["method"] == "paganin" and int(params["distance_index"]) >= info["n_dist"]:
        raise ValueError(
            f"phase.distance_index: {params['distance_index']} but the scan has "
            f"{info['n_dist']} distances"
        )
    if params["method"] == "paganin" and int(params.get("refine_iterations", 0)) == 0:
        dists = [int(params["distance_index"])]
    else:
        dists = list(range(info["n_dist"]))
    darks = np.asarray(scan.darks[:])
    corrected = []
    for d in dists:
        corrected.append(
            flat_field(
                np.asarray(scan.data[d, a0:a1]),
                np.asarray(scan.flats[d]),
                darks,
                flat_positions=info["flat_positions"],
                projection_indices=np.arange(a0, a1),
            )
        )
    mags = info["magnifications"]
    if len(dists) == 1:
        d = dists[0]
        img = corrected[0]
        if d != ref:  # put the chosen distance on the reference (finest) grid
            img = rescale_to_reference(img, scale=mags[ref] / mags[d], out_shape=(ny, nx))
        intensity = img[None]
    else:
        intensity = prepare_distances(
            corrected, magnifications=mags, out_shape=(ny, nx), register=bool(params["register"])
        )
    phase = _retrieve(intensity, info, params).astype(np.float32)
    if not np.all(np.isfinite(phase)):
        raise ValueError(f"phase retrieval produced non-finite values in projections [{a0}, {a1})")
    write_region(store, phase, (a0, 0, 0))
    write_part(
        out,
        {
            "start": a0,
            "stop": a1,
            "seconds": time.perf_counter() - t0,
            "phase_mean": float(phase.mean()),
        },
    )
    log.info(
        "phase chunk %d: projections [%d, %d) in %.1f s", chunk, a0, a1, time.perf_counter() - t0
    )


def _roi(info: dict, params: dict) -> tuple[int, int, int, int]:
    """(row0, n_rows, n_yx, det_cols) of the reconstructed region in the reference detector frame."""
    ny, nx = info["detector_shape"]
    shape = info.get("sample_shape")
    if params.get("roi", "auto") == "auto" and shape:
        row0 = (
            int(info["sample_origin_px"][0])
            if info.get("sample_origin_px")
            else (ny - shape[0]) // 2
        )
        return row0, int(shape[0]), int(shape[1]), nx
    return 0, ny, nx, nx


def reconstruct_init(phase_store: str | Path, volume_store: str | Path, params: dict) -> None:
    """Estimate the centre of rotation (if ``center == "auto"``) and create the empty volume store."""
    from holocat.tomo import estimate_center, nearest_opposite

    img = open_ome_zarr(phase_store)
    if "ingest" not in img.attrs:
        raise ValueError(f"{phase_store}: attrs lack 'ingest' (scan geometry); rerun phase_init")
    info = img.attrs["ingest"]
    angles = np.asarray(info["angles_rad"])
    row0, n_rows, n_yx, n_det = _roi(info, params)
    if params["center"] == "auto":
        j = nearest_opposite(angles, 0)
        rows = slice(row0, row0 + n_rows)
        center = float(
            estimate_center(np.asarray(img.array[0, rows]), np.asarray(img.array[j, rows]))
        )
        log.info(
            "centre of rotation from projections 0 and %d (%.2f deg): %.2f px",
            j,
            np.rad2deg(angles[j] - angles[0]),
            center,
        )
    else:
        center = float(params["center"])
    slab = int(params["slab_rows"])
    p_um = info["pixel_size_m"] * 1e6
    attrs = {
        "unit": "delta",
        "energy_keV": info["energy_keV"],
        "voxel_size_um": p_um,
        "center_of_rotation_px": center,
        "filter": params["filter"],
        "backend": params["backend"],
        "ring_removal": params.get("rings", "none"),
        "roi": {"row0": row0, "n_rows": n_rows, "n_yx": n_yx, "n_det": n_det},
    }
    reset_scatter(volume_store)
    create_ome_zarr(
        volume_store,
        (n_rows, n_yx, n_yx),
        np.float32,
        chunks=(slab, n_yx, n_yx),
        voxel_size_um=(p_um, p_um, p_um),
        name="volume",
        attrs=attrs,
        overwrite=True,
    )
    write_json_atomic(
        Path(f"{volume_store}.init.json"),
        {
            "shape": [n_rows, n_yx, n_yx],
            "center": center,
            "row0": row0,
            "n_det": n_det,
            "params": params,
            "phase": str(phase_store),
        },
    )


def reconstruct_slab(
    phase_store: str | Path, volume_store: str | Path, slab: int, params: dict, out: str | Path
) -> None:
    """FBP of one slab of detector rows, cropped to the sample, converted to δ, written in place."""
    from holocat.tomo import fbp, phase_to_delta, remove_rings

    t0 = time.perf_counter()
    init = read_json(f"{volume_store}.init.json")
    img = open_ome_zarr(phase_store)
    angles = np.asarray(img.attrs["angles_rad"])
    n_rows, n_yx = init["shape"][0], init["shape"][1]
    z0, z1 = chunk_range(n_rows, int(init["params"]["slab_rows"]), slab)
    r0 = init["row0"]
    sino = np.asarray(img.array[:, r0 + z0 : r0 + z1, :], dtype=np.float32)
    if params.get("rings", "none") != "none":
        sino = remove_rings(sino, method=params["rings"])
    rec = fbp(
        sino,
        angles,
        center=init["center"],
        filter=params["filter"],
        device=params["device"],
        backend=params["backend"],
    )
    n_det = rec.shape[-1]
    c0 = n_det // 2 - n_yx // 2
    rec = rec[:, c0 : c0 + n_yx, c0 : c0 + n_yx]
    delta = phase_to_delta(
        rec, energy_keV=img.attrs["energy_keV"], pixel_size_m=img.attrs["effective_pixel_size_m"]
    ).astype(np.float32)
    write_region(volume_store, delta, (z0, 0, 0))
    write_part(out, {"start": z0, "stop": z1, "seconds": time.perf_counter() - t0})
    log.info("reconstruct slab %d: rows [%d, %d) in %.1f s", slab, z0, z1, time.perf_counter() - t0)
