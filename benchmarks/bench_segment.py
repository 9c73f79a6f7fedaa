"""Segmentation throughput: tri-planar star route (predict / fusion / stitching) vs watershed.

Usage: python benchmarks/bench_segment.py [--sizes 128 192] [--sections 24] [--full-predict]
       [--batch-size 8] [--threads N] [--slabs 4] [--halo 24] [--gpu-size 1000]
       [--gpu-batch-size 32] [--gpu-fusion-rows 128] [--gpu-full-fusion] [--no-gpu]
       [--out results.json]

Model: the shipped model ``resources/models/holocat-star2d`` (``load_default_model``) when it
exists, else a freshly initialised ``StarModel`` of the default size (SCIENCE.md §4: depth 3,
32 base filters, grid 2) -- labelled ``"untrained"``: its timings are real, its probabilities
are not, so fusion then runs on an *oracle* p̄ (the exact per-section StarDist edt_prob of the
ground truth, i.e. a perfect network) and the accuracies describe the fusion, not the network.

Per volume size N (a simulated electrode, ``holocat.simulate.electrode`` at 0.6 um/voxel:
particles ~18 voxels across; delta blurred with sigma 1.5 voxels plus 15 % Gaussian noise,
normalised once):

* predict: 2D inference on CPU, sections/s measured on ``--sections`` N x N sections, and the
  projected ``predict_planes`` time for all 3N sections (``--full-predict`` runs and times it);
* fusion: ``fuse_probability`` (seeded watershed + refinement with the volume's Otsu threshold)
  on the whole p̄;
* slabs: the workflow's path without I/O: ``--slabs`` z-slabs with a ``--halo``-row halo
  (the largest particle diameter; a real run needs max(receptive field / 2, diameter) rows for
  the network), fusion per slab + ``crop_core``, then stitching (``face_merge_pairs``,
  ``stitch_tables``, ``apply_lookup``) timed separately; agreement with the whole-volume labels;
* watershed: ``watershed_segment`` on the same volume and threshold;
* accuracy TP / (TP + FP + FN) at IoU 0.5 of both routes against the solid ground truth.

GPU section (only when torch sees CUDA): the last volume tiled to ``--gpu-size``^3, the model in
bfloat16 on all three planes (``predict_planes`` with device "cuda"), then the fusion, which
runs on the CPU (two scikit-image watersheds, ~1 us per voxel each on one core: about half an
hour for 1000^3). By default one workflow slab (``--gpu-fusion-rows`` core rows plus the halo)
is fused and the time projected to the volume, as the workflow fuses slabs in parallel jobs;
``--gpu-full-fusion`` fuses the whole volume. Reports sections/s, seconds, peak GPU memory.

Prints JSON with the machine (CPUs, load average, torch threads, GPU) and every number. Not a
test: no timing is asserted anywhere. A default run takes about 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from holocat.segment import (
    PLANES,
    apply_lookup,
    crop_core,
    face_merge_pairs,
    fuse_probability,
    matching,
    normalize_intensity,
    otsu_threshold,
    predict_planes,
    slab_ranges,
    stitch_tables,
    watershed_segment,
)
from holocat.simulate import electrode


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _edt_prob_2d(section: np.ndarray) -> np.ndarray:
    """StarDist's edt_prob of one 2D label image (the image edge is not background)."""
    prob = np.zeros(section.shape, np.float32)
    for i, sl in enumerate(ndi.find_objects(section), start=1):
        if sl is None:
            continue
        grown = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, n))
            for s, n in zip(sl, section.shape, strict=True)
        )
        inside = section[grown] == i
        dist = ndi.distance_transform_edt(inside)
        prob[grown][inside] = dist[inside] / dist.max()
    return prob


def _oracle_pbar(labels: np.ndarray) -> np.ndarray:
    """Mean over the three planes of the exact per-section edt_prob of ``labels``."""
    acc = np.zeros(labels.shape, np.float32)
    for perm in PLANES.values():
        lt, at = labels.transpose(perm), acc.transpose(perm)
        for k in range(lt.shape[0]):
            at[k] += _edt_prob_2d(np.ascontiguousarray(lt[k]))
    acc /= len(PLANES)
    return acc


def _load_model():
    from holocat.segment.model import StarModel, default_config, default_model_path

    try:
        path = default_model_path()
    except FileNotFoundError:
        model = StarModel.from_config(default_config(), seed=0)
        return model, "untrained (default size, random weights: timing only)"
    return StarModel.load(path), f"trained ({path})"


def _volume(n: int, seed: int) -> tuple[np.ndarray, object]:
    e = electrode(
        (n, n, n),
        voxel_size_um=0.6,
        seed=seed,
        cycles=50,
        active_fraction=0.5,
        ellipsoid_max_aspect=1.8,
        pillar=False,
        collector_thickness_um=0.0,
    )
    rng = np.random.default_rng(seed)
    image = ndi.gaussian_filter(e.delta, 1.5)
    image += rng.normal(0.0, 0.15 * float(e.delta.max()), image.shape).astype(np.float32)
    return normalize_intensity(image), e


def _acc(truth: np.ndarray, labels: np.ndarray) -> float:
    return float(matching(truth, labels, thresh=0.5).accuracy)


def _bench_size(n: int, model, trained: bool, a: argparse.Namespace) -> tuple[dict, dict]:
    t_sim, (vol, e) = _timed(lambda: _volume(n, seed=n))
    out: dict = {"shape": [n, n, n], "particles": int(e.n_particles), "simulate_s": t_sim}
    k = min(a.sections, n)
    stack = np.ascontiguousarray(vol[:k])
    model.predict_probability(stack[:1], device="cpu")  # warm-up
    t_k, _ = _timed(lambda: model.predict_probability(stack, device="cpu", batch_size=a.batch_size))
    rate = k / t_k
    out["predict"] = {
        "sections_timed": k,
        "section_shape": [n, n],
        "cpu_sections_per_s": rate,
        "projected_predict_planes_s": 3 * n / rate,
    }
    pbar = None
    if a.full_predict:
        t_p, pbar = _timed(
            lambda: predict_planes(vol, model, batch_size=a.batch_size, device="cpu")
        )
        out["predict"]["predict_planes_s"] = t_p
    if pbar is None or not trained:
        t_o, pbar = _timed(lambda: _oracle_pbar(e.filled_labels))
        out["pbar_source"] = "oracle (exact edt_prob of the ground truth)"
        out["oracle_pbar_s"] = t_o
    else:
        out["pbar_source"] = "model"
    threshold = otsu_threshold(vol)
    t_f, whole = _timed(lambda: fuse_probability(pbar, volume_norm=vol, refine_threshold=threshold))
    out["fusion_s"] = t_f

    slabs = slab_ranges(n, slab_rows=-(-n // a.slabs), halo=a.halo)
    cores, t_slab_fusion = [], 0.0
    for s in slabs:
        t, core = _timed(
            lambda s=s: crop_core(
                fuse_probability(
                    pbar[s.read_start : s.read_stop],
                    volume_norm=vol[s.read_start : s.read_stop],
                    refine_threshold=threshold,
                ),
                halo=s.halo,
            )
        )
        t_slab_fusion += t
        cores.append(core)

    def stitch():
        pairs = [face_merge_pairs(cores[i][-1], cores[i + 1][0]) for i in range(len(cores) - 1)]
        luts = stitch_tables([int(c.max()) for c in cores], pairs)
        return np.concatenate([apply_lookup(c, lut) for c, lut in zip(cores, luts, strict=True)])

    t_st, stitched = _timed(stitch)
    out["slabs"] = {
        "n_slabs": len(slabs),
        "halo_rows": a.halo,
        "fusion_s_all_slabs": t_slab_fusion,
        "stitch_s": t_st,
        "accuracy_iou0.5_whole_vs_slabs": _acc(whole, stitched),
    }
    t_ws, ws = _timed(lambda: watershed_segment(vol, threshold=threshold))
    out["watershed_s"] = t_ws
    out["accuracy_iou0.5_vs_truth"] = {
        "star": _acc(e.labels, whole),
        "watershed": _acc(e.labels, ws),
    }
    out["star_total_s_projected"] = (
        out["predict"].get("predict_planes_s", out["predict"]["projected_predict_planes_s"]) + t_f
    )
    out["star_over_watershed_time"] = out["star_total_s_projected"] / t_ws
    return out, {"vol": vol, "pbar": pbar, "threshold": threshold}


def _bench_gpu(
    model, trained: bool, last: dict, a: argparse.Namespace, device: str = "cuda"
) -> dict:
    import torch

    cuda = device.startswith("cuda")
    n = a.gpu_size
    reps = -(-n // last["vol"].shape[0])
    vol = np.ascontiguousarray(np.tile(last["vol"], (reps, reps, reps))[:n, :n, :n])
    res: dict = {
        "shape": [n, n, n],
        "device": torch.cuda.get_device_name(0) if cuda else device,
        "amp": "bfloat16" if cuda else None,
    }
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model.predict_probability(vol[:2], device=device, batch_size=2)  # warm-up
    if cuda:
        torch.cuda.synchronize()
    t_p, pbar = _timed(
        lambda: predict_planes(vol, model, batch_size=a.gpu_batch_size, device=device)
    )
    if cuda:
        torch.cuda.synchronize()
        res["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    res["predict_planes_s"] = t_p
    res["sections_per_s"] = 3 * n / t_p
    res["fusion_pbar"] = "model"
    if not trained:
        # fuse the tiled oracle p̄ so that fusion sees particles, not random-network output
        del pbar
        pbar = np.ascontiguousarray(np.tile(last["pbar"], (reps, reps, reps))[:n, :n, :n])
        res["fusion_pbar"] = "tiled oracle"
    thr = last["threshold"]
    if a.gpu_full_fusion:
        t_f, labels = _timed(lambda: fuse_probability(pbar, volume_norm=vol, refine_threshold=thr))
        res["fusion_cpu_s"] = t_f
        res["particles"] = int(labels.max())
    else:
        # one z-slab of the workflow (core rows + halo on both sides), projected to all slabs
        rows = min(a.gpu_fusion_rows, n)
        lo, hi = max(n // 2 - a.halo, 0), min(n // 2 + rows + a.halo, n)
        t_f, labels = _timed(
            lambda: fuse_probability(pbar[lo:hi], volume_norm=vol[lo:hi], refine_threshold=thr)
        )
        res["fusion_cpu_s_one_slab"] = t_f
        res["fusion_slab_rows"] = [rows, a.halo]
        res["fusion_cpu_s"] = t_f * n / rows
        res["fusion_cpu_s_projected"] = True
    res["total_s"] = t_p + res["fusion_cpu_s"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 192])
    ap.add_argument("--sections", type=int, default=24, help="sections timed per size (CPU)")
    ap.add_argument("--full-predict", action="store_true", help="run predict_planes on all 3N")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--slabs", type=int, default=4)
    ap.add_argument("--halo", type=int, default=24)
    ap.add_argument("--gpu-size", type=int, default=1000)
    ap.add_argument("--gpu-batch-size", type=int, default=32)
    ap.add_argument("--gpu-fusion-rows", type=int, default=128, help="core rows of the slab fused")
    ap.add_argument("--gpu-full-fusion", action="store_true", help="fuse the whole GPU volume")
    ap.add_argument("--no-gpu", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    model, model_kind = _load_model()
    trained = model_kind.startswith("trained")
    res: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "load_avg_at_start": os.getloadavg(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "model": model_kind,
        "receptive_field_px": int(model.receptive_field_px),
        "batch_size": a.batch_size,
        "sizes": {},
    }
    last: dict = {}
    for n in a.sizes:
        res["sizes"][str(n)], last = _bench_size(n, model, trained, a)
    if torch.cuda.is_available() and not a.no_gpu:
        res["gpu"] = _bench_gpu(model, trained, last, a)
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
