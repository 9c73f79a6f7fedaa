"""FBP throughput, side by side in one run: holocat torch vs skimage iradon vs ASTRA CPU FBP.

Usage: python benchmarks/bench_fbp.py [--size 512] [--angles 720] [--rows 8] [--out results.json]
       [--skip-bp]

"torch" is the default backend (Fourier gridding back-projection), "torch-bp" the direct
grid_sample back-projection it replaced (skip it with --skip-bp: it is slow on a CPU).
Also reports each reconstruction's RMSE against the phantom (inside the circle).

Reports seconds per slice and the ratios against the peers measured in the same run, plus the
relative L2 difference between the reconstructions (they must agree, or the timing is meaningless).
Records the machine (CPU count, torch threads, GPU if any). Not a test: no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
from skimage.data import shepp_logan_phantom
from skimage.transform import iradon, radon, resize

from holocat.tomo import fbp


def _best_of(fn, repeat: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--angles", type=int, default=720)
    ap.add_argument("--rows", type=int, default=8, help="slices per batched call")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out")
    ap.add_argument("--skip-bp", action="store_true", help="do not time backend='torch-bp'")
    a = ap.parse_args()
    import torch

    image = resize(shepp_logan_phantom(), (a.size, a.size), anti_aliasing=True).astype(np.float32)
    theta = np.linspace(0.0, 180.0, a.angles, endpoint=False)
    sino2d = radon(image, theta=theta, circle=True).T.astype(np.float32)  # (n_angles, n_det)
    angles = np.deg2rad(theta)
    sino3d = np.repeat(sino2d[:, None, :], a.rows, axis=1)
    res: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(),
        },
        "size": a.size,
        "angles": a.angles,
        "rows": a.rows,
    }
    t_ir, ref = _best_of(lambda: iradon(sino2d.T, theta=theta, circle=True), 1)
    t_t1, rec1 = _best_of(lambda: fbp(sino2d, angles, device="cpu"), a.repeat)
    t_tb, recb = _best_of(lambda: fbp(sino3d, angles, device="cpu"), a.repeat)
    t_as, reca = _best_of(lambda: fbp(sino3d, angles, device="cpu", backend="astra"), 1)
    per = {
        "iradon_s_per_slice": t_ir,
        "torch_cpu_s_per_slice_single": t_t1,
        "torch_cpu_s_per_slice_batched": t_tb / a.rows,
        "astra_cpu_s_per_slice": t_as / a.rows,
    }
    recbp = None
    if not a.skip_bp:
        t_bp, recbp = _best_of(lambda: fbp(sino3d, angles, device="cpu", backend="torch-bp"), 1)
        per["torch_bp_cpu_s_per_slice_batched"] = t_bp / a.rows
    if torch.cuda.is_available():
        fbp(sino3d, angles, device="cuda")
        t_g, _ = _best_of(lambda: fbp(sino3d, angles, device="cuda"), a.repeat)
        per["torch_cuda_s_per_slice_batched"] = t_g / a.rows
    res["seconds"] = per
    res["ratios"] = {
        "iradon_over_torch_batched": t_ir / per["torch_cpu_s_per_slice_batched"],
        "astra_over_torch_batched": per["astra_cpu_s_per_slice"]
        / per["torch_cpu_s_per_slice_batched"],
        "iradon_over_torch_single": t_ir / t_t1,
        "astra_over_torch_single": per["astra_cpu_s_per_slice"] / t_t1,
    }
    if recbp is not None:
        res["ratios"]["torch_bp_over_torch_batched"] = (
            per["torch_bp_cpu_s_per_slice_batched"] / per["torch_cpu_s_per_slice_batched"]
        )

    def rel(x, y):
        return float(np.linalg.norm(x - y) / np.linalg.norm(y))

    res["agreement_rel_l2"] = {
        "torch_vs_iradon": rel(rec1, ref),
        "astra_vs_iradon": rel(reca[0], ref),
        "batched_vs_single": rel(recb[0], rec1),
        "torch_vs_astra": rel(rec1, reca[0]),
    }
    r = np.arange(a.size) - a.size // 2
    inside = r[:, None] ** 2 + r[None, :] ** 2 <= (a.size // 2) ** 2
    truth = image * inside

    def rmse(x):
        return float(np.sqrt(np.mean((x - truth) ** 2)))

    res["rmse_vs_phantom"] = {"iradon": rmse(ref), "torch": rmse(rec1), "astra": rmse(reca[0])}
    res["rmse_vs_phantom"]["torch_over_iradon"] = res["rmse_vs_phantom"]["torch"] / rmse(ref)
    if recbp is not None:
        res["agreement_rel_l2"]["torch_bp_vs_iradon"] = rel(recbp[0], ref)
        res["agreement_rel_l2"]["torch_vs_torch_bp"] = rel(rec1, recbp[0])
        res["rmse_vs_phantom"]["torch_bp"] = rmse(recbp[0])
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
