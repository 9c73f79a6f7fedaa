"""Stage drivers: segmentation per z-slab + stitching, attributes per slab + gather."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from holocat.io import (
    create_ome_zarr,
    finalize_ome_zarr,
    open_ome_zarr,
    provenance,
    read_table,
    write_json_atomic,
    write_region,
    write_table,
)
from holocat.pipeline.common import discard_manifest, read_json, reset_scatter, write_part
from holocat.pipeline.plan import chunk_range, chunk_ranges

__all__ = [
    "segment_init",
    "segment_slab",
    "segment_stitch",
    "attributes_slab",
    "attributes_gather",
    "attributes_truth",
]

log = logging.getLogger(__name__)

_N_SAMPLE = 2_000_000  # voxels drawn for the volume-wide intensity statistics


def _volume_sample(arr, slab_rows: int, rng: np.random.Generator) -> np.ndarray:
    """A random subsample of a (lazy) volume's voxels, read slab by slab (memory bounded by a slab)."""
    n = int(np.prod(arr.shape))
    frac = min(1.0, _N_SAMPLE / n)
    out = []
    for z0, z1 in chunk_ranges(arr.shape[0], slab_rows):
        block = np.asarray(arr[z0:z1]).ravel()
        k = max(1, int(round(block.size * frac)))
        out.append(rng.choice(block, size=k, replace=False) if k < block.size else block)
    return np.concatenate(out)


def segment_init(volume_store: str | Path, slabs_store: str | Path, params: dict) -> None:
    """Volume-wide normalisation and threshold (so every slab uses one scale); empty slab-label store."""
    from skimage.filters import threshold_otsu

    img = open_ome_zarr(volume_store)
    slab = int(params["slab_rows"])
    sample = _volume_sample(img.array, slab, np.random.default_rng(0))
    if not np.all(np.isfinite(sample)):
        raise ValueError(f"{volume_store}: the volume contains NaN or inf")
    lo, hi = (float(v) for v in np.percentile(sample, [1.0, 99.8]))
    if not hi > lo:
        raise ValueError(f"{volume_store}: the volume is constant ({lo}); nothing to segment")
    norm = (sample - lo) / (hi - lo)
    threshold = float(threshold_otsu(norm))
    log.info(
        "normalisation: p1 %.4g, p99.8 %.4g; Otsu threshold %.3f (normalised)", lo, hi, threshold
    )
    shape = tuple(int(v) for v in img.array.shape)
    reset_scatter(slabs_store)
    create_ome_zarr(
        slabs_store,
        shape,
        np.uint32,
        chunks=(slab, shape[1], shape[2]),
        voxel_size_um=img.voxel_size_um,
        name="slab_labels",
        labels=True,
        attrs={"note": "slab-local labels before stitching"},
        overwrite=True,
    )
    write_json_atomic(
        Path(f"{slabs_store}.init.json"),
        {
            "shape": list(shape),
            "low": lo,
            "high": hi,
            "threshold": threshold,
            "params": params,
            "volume": str(volume_store),
        },
    )


def _slab_segmenter(params: dict, init: dict, model_dir: str | Path | None):
    """``(segment_fn, kwargs)`` for ``holocat.segment.segment_slab`` from the stage parameters.

    ``method: star`` runs the tri-planar star-convex model (``model_dir``, else
    ``params["model"]``: ``"default"`` = the shipped model) and refines the fused shapes with the
    volume-wide Otsu threshold of ``segment_init``; ``method: watershed`` is the classical baseline
    with the same threshold.
    """
    method = params.get("method", "watershed")
    if method == "watershed":
        ws = dict(params.get("watershed", {}))
        ws["threshold"] = init["threshold"]
        return None, ws
    if method != "star":
        raise ValueError(f"segment.method: expected 'star' or 'watershed'; got {method!r}")
    from holocat.segment import star_segment
    from holocat.segment.model import StarModel, load_default_model

    source = model_dir if model_dir is not None else params.get("model", "default")
    model = load_default_model() if source in (None, "default") else StarModel.load(source)
    star = dict(params.get("star", {}))
    star["planes"] = tuple(star.get("planes", ("xy", "yz", "xz")))
    star.setdefault("seed_threshold", params.get("prob_threshold", 0.5))
    star.setdefault("device", params.get("device", "auto"))
    return star_segment, {"predictor": model, "refine_threshold": init["threshold"], **star}


def segment_slab(
    volume_store: str | Path,
    slabs_store: str | Path,
    slab: int,
    params: dict,
    out: str | Path,
    *,
    model_dir: str | Path | None = None,
) -> None:
    """Segment z-slab ``slab`` with a halo of ``halo_rows`` rows; write its core with local ids 1..n.

    The slab is normalised with the volume-wide percentiles of ``segment_init`` (one scale for
    every slab and every view) and segmented by ``params["method"]`` (``_slab_segmenter``).
    """
    from holocat.segment import segment_slab as seg

    t0 = time.perf_counter()
    init = read_json(f"{slabs_store}.init.json")
    img = open_ome_zarr(volume_store)
    n = img.array.shape[0]
    z0, z1 = chunk_range(n, int(init["params"]["slab_rows"]), slab)
    h = int(params["halo_rows"])
    a, b = max(0, z0 - h), min(n, z1 + h)
    block = np.asarray(img.array[a:b], dtype=np.float32)
    block = (block - init["low"]) / (init["high"] - init["low"])
    segment_fn, kwargs = _slab_segmenter(params, init, model_dir)
    labels = seg(block, halo=(z0 - a, b - z1), segment_fn=segment_fn, **kwargs).astype(np.uint32)
    if params.get("drop_layers", True):
        from holocat.segment import drop_layers

        labels = drop_layers(labels)
    write_region(slabs_store, labels, (z0, 0, 0))
    n_labels = int(labels.max()) if labels.size else 0
    seconds = time.perf_counter() - t0
    write_part(out, {"start": z0, "stop": z1, "n_labels": n_labels, "seconds": seconds})
    log.info(
        "segment slab %d (%s): rows [%d, %d) + halo -> %d labels in %.1f s",
        slab,
        params.get("method", "watershed"),
        z0,
        z1,
        n_labels,
        seconds,
    )


def segment_stitch(
    slabs_store: str | Path,
    labels_store: str | Path,
    parts: list[str],
    index_out: str | Path,
    *,
    min_overlap: float = 0.5,
) -> None:
    """Merge slab-local labels across slab boundaries into consecutive global ids; write labels + index.

    The labels store is created as incomplete, written slab by slab and only then finalised (manifest),
    so a killed stitch leaves nothing that looks complete; the index table lists each particle's
    bounding box (for the attribute jobs).
    """
    from scipy import ndimage

    from holocat.segment import apply_lookup, face_merge_pairs, stitch_tables

    t0 = time.perf_counter()
    init = read_json(f"{slabs_store}.init.json")
    src = open_ome_zarr(
        slabs_store, require_complete=False
    )  # intermediate: the parts prove it whole
    info = sorted((read_json(p) for p in parts), key=lambda d: d["start"])
    shape = tuple(init["shape"])
    if [(d["start"], d["stop"]) for d in info] != chunk_ranges(
        shape[0], int(init["params"]["slab_rows"])
    ):
        raise ValueError(
            f"{slabs_store}: the slab parts do not tile the volume: {[d['start'] for d in info]}"
        )
    counts = [int(d["n_labels"]) for d in info]
    pairs = []
    for d in info[:-1]:
        z = d["stop"]
        pairs.append(
            face_merge_pairs(
                np.asarray(src.array[z - 1]), np.asarray(src.array[z]), min_overlap=min_overlap
            )
        )
    luts = stitch_tables(counts, pairs)
    n_total = int(max((int(lut.max()) for lut in luts), default=0))
    discard_manifest(labels_store)
    create_ome_zarr(
        labels_store,
        shape,
        np.uint32,
        chunks=tuple(src.array.chunks),
        voxel_size_um=src.voxel_size_um,
        name="labels",
        labels=True,
        overwrite=True,
        attrs={
            "n_particles": n_total,
            "method": init["params"].get("method"),
            "thresholds": {
                "intensity": init["threshold"],
                "prob_threshold": init["params"].get("prob_threshold"),
                "nms_threshold": init["params"].get("nms_threshold"),
            },
        },
    )
    boxes: dict[int, list[int]] = {}
    sizes = np.zeros(n_total + 1, dtype=np.int64)
    for d, lut in zip(info, luts, strict=True):
        z0, z1 = d["start"], d["stop"]
        glob = apply_lookup(np.asarray(src.array[z0:z1]), lut).astype(np.uint32)
        write_region(labels_store, glob, (z0, 0, 0))
        sizes += np.bincount(glob.ravel(), minlength=n_total + 1)[: n_total + 1]
        for lab, sl in enumerate(ndimage.find_objects(glob), start=1):
            if sl is None:
                continue
            bb = [
                sl[0].start + z0,
                sl[0].stop + z0,
                sl[1].start,
                sl[1].stop,
                sl[2].start,
                sl[2].stop,
            ]
            if lab in boxes:
                old = boxes[lab]
                bb = [
                    min(old[0], bb[0]),
                    max(old[1], bb[1]),
                    min(old[2], bb[2]),
                    max(old[3], bb[3]),
                    min(old[4], bb[4]),
                    max(old[5], bb[5]),
                ]
            boxes[lab] = bb
    index = pd.DataFrame(
        [[lab, *bb, int(sizes[lab])] for lab, bb in sorted(boxes.items())],
        columns=["label", "z0", "z1", "y0", "y1", "x0", "x1", "n_voxels"],
    )
    prov = provenance(
        "segment_stitch",
        init["params"],
        inputs=[str(p) for p in parts],
        extra={"n_particles": n_total, "merges": [len(p) for p in pairs]},
    )
    write_table(index, index_out, metadata={"provenance": prov}, csv=False)
    finalize_ome_zarr(labels_store, provenance=prov)
    log.info(
        "stitched %d slabs: %d particles (%d merges) in %.1f s",
        len(info),
        n_total,
        sum(len(p) for p in pairs),
        time.perf_counter() - t0,
    )


_ATTRIBUTE_KEYS = (
    "r_close_um",
    "contact_gap_um",
    "erode_edensity",
    "roughness_sigma_um",
    "damage_margin_um",
    "void_level",
)


def _attribute_kwargs(params: dict) -> dict:
    return {k: params[k] for k in _ATTRIBUTE_KEYS if k in params}


def _attribute_margin_vox(params: dict, vox: float) -> int:
    """Rows beyond the owned particles' boxes that their crops read (attributes' crop padding)."""
    r_close = float(params.get("r_close_um", 0.7)) / vox
    gap = params.get("contact_gap_um")
    damage = params.get("damage_margin_um")
    return max(
        math.ceil(r_close) + 3,
        1 if gap is None else math.ceil(float(gap) / vox) + 1,
        (3 if damage is None else math.ceil(float(damage) / vox)) + 3,
    )


def attributes_slab(
    labels_store: str | Path,
    volume_store: str | Path,
    index_path: str | Path,
    slab: int,
    params: dict,
    out: str | Path,
    *,
    n_workers: int = 1,
) -> None:
    """Local (per-particle) attributes of the particles whose bounding box starts in z-slab ``slab``.

    Every particle is owned by exactly one slab and computed whole, on a block that spans its
    bounding box (plus the morphology margin), so slab seams never split or double-count particles.
    """
    from holocat.attributes import particle_attributes

    t0 = time.perf_counter()
    labels = open_ome_zarr(labels_store)
    volume = open_ome_zarr(volume_store)
    if tuple(labels.array.shape) != tuple(volume.array.shape):
        raise ValueError(
            f"{labels_store} {labels.array.shape} and {volume_store} {volume.array.shape}: "
            "labels and volume shapes differ"
        )
    index, _ = read_table(index_path)
    shape = tuple(int(v) for v in labels.array.shape)
    s0, s1 = chunk_range(shape[0], int(params["slab_rows"]), slab)
    owned = index[(index["z0"] >= s0) & (index["z0"] < s1)]
    vox = float(labels.voxel_size_um[-1])
    if owned.empty:
        table = pd.DataFrame()
    else:
        margin = _attribute_margin_vox(params, vox)
        a = max(0, int(owned["z0"].min()) - margin)
        b = min(shape[0], int(owned["z1"].max()) + margin)
        table = particle_attributes(
            np.asarray(labels.array[a:b]),
            np.asarray(volume.array[a:b], dtype=np.float32),
            voxel_size_um=vox,
            label_ids=owned["label"].to_numpy(),
            offset_vox=(a, 0, 0),
            full_shape=shape,
            n_workers=n_workers,
            **_attribute_kwargs(params),
        )
    write_table(table, out, metadata={"slab": slab, "rows": [s0, s1]}, csv=False)
    log.info(
        "attributes slab %d: %d particles in %.1f s", slab, len(owned), time.perf_counter() - t0
    )


#: budget of the PDensity summed-area table (int64 cells); larger volumes use block-summed cells
_SAT_BUDGET_BYTES = 256 * 2**20


def _sat_downsample(shape: tuple[int, ...]) -> int:
    """Smallest block edge k whose (n/k)^3 int64 table fits the budget (1 for the demo's 192^3)."""
    return max(1, math.ceil((np.prod(shape, dtype=float) * 8 / _SAT_BUDGET_BYTES) ** (1 / 3)))


def _block_counts(labels_arr, k: int, slab_rows: int):
    """Particle-voxel counts on k x k x k blocks, read slab by slab (slabs are multiples of k rows)."""
    from holocat.attributes._kernels import block_counts

    nz = labels_arr.shape[0]
    rows = max(k, (slab_rows // k) * k)
    return np.concatenate(
        [block_counts(np.asarray(labels_arr[z0:z1]), k) for z0, z1 in chunk_ranges(nz, rows)]
    )


def _finish_table(
    table: pd.DataFrame, labels_arr, voxel_size_um: float, params: dict
) -> pd.DataFrame:
    """Volume-wide attributes: PDensity from one summed-area table, then the neighbour attributes.

    The table is built from block counts read slab by slab; above ~256 MiB of int64 cells the blocks
    grow (k voxels per edge), which is exact for cube edges that are multiples of k voxels and
    otherwise rounds the cube to whole blocks (a 100 µm cube is ~1400 voxels at 70 nm, k = 7).
    """
    from holocat.attributes import add_pdensity, neighbour_attributes, summed_area_table

    k = _sat_downsample(tuple(labels_arr.shape))
    counts = _block_counts(labels_arr, k, int(params.get("slab_rows", 64)))
    sat = summed_area_table(counts)
    del counts
    if k > 1:
        log.info("PDensity on %d^3-voxel blocks (summed-area table %s)", k, sat.shape)
    table = add_pdensity(
        table,
        sat,
        voxel_size_um=voxel_size_um,
        pdensity_cube_um=float(params.get("pdensity_cube_um", 100.0)),
        sat_downsample=k,
    )
    return neighbour_attributes(table)


def _table_metadata(params: dict, inputs: list[str], stage: str) -> dict:
    from holocat.attributes import ATTRIBUTE_DEFINITIONS, ATTRIBUTE_UNITS

    return {
        "units": ATTRIBUTE_UNITS,
        "definitions": ATTRIBUTE_DEFINITIONS,
        "provenance": provenance(stage, params, inputs=inputs),
    }


def attributes_gather(
    labels_store: str | Path, out: str | Path, parts: list[str], params: dict
) -> None:
    """Concatenate the slab tables, add the volume-wide attributes, ``sample`` and ``cycles``."""
    from holocat.attributes import TABLE_S1_COLUMNS

    labels = open_ome_zarr(labels_store)
    tables = [read_table(p)[0] for p in parts]
    table = pd.concat([t for t in tables if not t.empty], ignore_index=True)
    if table.empty:
        raise ValueError(
            f"{labels_store}: no particles to describe (all attribute parts are empty)"
        )
    table = table.sort_values("label", ignore_index=True)
    if table["label"].duplicated().any():
        raise ValueError("attribute parts overlap: a particle was computed by two slabs")
    table = _finish_table(table, labels.array, float(labels.voxel_size_um[-1]), params)
    table.insert(len(TABLE_S1_COLUMNS), "sample", params["sample"])
    table.insert(len(TABLE_S1_COLUMNS) + 1, "cycles", int(params["cycles"]))
    write_table(table, out, metadata=_table_metadata(params, [str(p) for p in parts], "attributes"))
    log.info("attributes of %d particles -> %s", len(table), out)


def attributes_truth(
    truth_dir: str | Path, out: str | Path, params: dict, *, n_workers: int = 1
) -> None:
    """Attributes of the simulator's ground-truth labels on its δ map (the validation reference)."""
    from holocat.attributes import extract

    truth_dir = Path(truth_dir)
    labels = open_ome_zarr(truth_dir / "labels.ome.zarr")
    delta = open_ome_zarr(truth_dir / "delta.ome.zarr")
    vox = float(labels.voxel_size_um[-1])
    table = extract(
        np.asarray(labels.array[:]),
        np.asarray(delta.array[:]),
        voxel_size_um=vox,
        pdensity_cube_um=float(params.get("pdensity_cube_um", 100.0)),
        n_workers=n_workers,
        **_attribute_kwargs(params),
    )
    write_table(table, out, metadata=_table_metadata(params, [str(truth_dir)], "truth_attributes"))
    log.info("ground-truth attributes of %d particles -> %s", len(table), out)
