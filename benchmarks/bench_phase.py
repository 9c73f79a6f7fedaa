"""Phase-retrieval throughput: projections per second of holocat's Paganin, 4-distance CTF and
the iterative refinement (``refine_phase``, Paganin start + ``--iterations`` L-BFGS steps).

Usage: python benchmarks/bench_phase.py [--size 512] [--n 16] [--iterations 20] [--device cpu]
       [--out results.json]

Noise-free holograms of random smooth phase objects (17 keV, 0.5 µm pixels, ID16A-like distances) are
made once with holocat.optics; the retrievals are then timed on batches of n projections (padding 2x,
as in the pipeline). ``refine_phase`` models each distance's detector pixel (p_eff,j = 0.5 µm x
M_ref / M_j, area average + cubic-spline resampling), as in the demo workflow. Prints JSON with the
machine, seconds and projections/s. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
from scipy.ndimage import gaussian_filter

from holocat.optics import distance_geometry, fresnel_propagate
from holocat.tomo import ctf_multi, paganin, refine_phase


def _holograms(n: int, size: int, z_m: list[float], pixel_m: float, rng) -> np.ndarray:
    out = np.empty((n, len(z_m), size, size), np.float32)
    for i in range(n):
        phi = gaussian_filter(rng.random((size, size)), 6.0)
        phi = 0.3 * (phi - phi.min()) / np.ptp(phi)
        wave = np.exp(-1j * phi - phi / 40.6)
        for j, z in enumerate(z_m):
            out[i, j] = (
                np.abs(fresnel_propagate(wave, pixel_size_m=pixel_m, distance_m=z, energy_keV=17.0))
                ** 2
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--n", type=int, default=16, help="projections per batch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20, help="refine_phase L-BFGS iterations")
    ap.add_argument("--out")
    a = ap.parse_args()
    import torch

    pixel = 0.5e-6
    geo = distance_geometry(
        detector_pixel_size_m=pixel * 60,
        focus_to_detector_m=1.2,
        focus_to_sample_m=[0.020, 0.022, 0.025, 0.030],
    )
    z = [g.effective_distance_m for g in geo]
    holo = _holograms(a.n, a.size, z, pixel, np.random.default_rng(0))

    def best(fn):
        fn()  # warm-up (FFT plans, kernels)
        t = min(_timed(fn) for _ in range(a.repeat))
        return t

    t_pag = best(
        lambda: paganin(
            holo[:, 0],
            energy_keV=17.0,
            distance_m=z[0],
            pixel_size_m=pixel,
            delta_beta=40.6,
            device=a.device,
        )
    )
    t_ctf = best(
        lambda: ctf_multi(
            holo,
            energy_keV=17.0,
            distances_m=z,
            pixel_size_m=pixel,
            delta_beta=40.6,
            reg=1e-6,
            device=a.device,
        )
    )
    mags = [g.magnification for g in geo]
    t_ref = best(
        lambda: refine_phase(
            holo,
            energy_keV=17.0,
            distances_m=z,
            pixel_size_m=pixel,
            delta_beta=40.6,
            detector_pixel_sizes_m=[pixel * max(mags) / m for m in mags],
            n_iter=a.iterations,
            device=a.device,
        )
    )
    refine_key = f"refine_phase_{a.iterations}_iterations"
    res = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(),
        },
        "size": a.size,
        "n": a.n,
        "device": a.device,
        "seconds": {"paganin": t_pag, "ctf_multi_4_distances": t_ctf, refine_key: t_ref},
        "projections_per_s": {
            "paganin": a.n / t_pag,
            "ctf_multi_4_distances": a.n / t_ctf,
            refine_key: a.n / t_ref,
        },
    }
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as fh:
            fh.write(text)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
