#!/usr/bin/env python
"""Build the shipped default star-convex 2D model, resources/models/holocat-star2d/.

The training data are synthetic: ``--n-electrodes`` phantoms from ``holocat.simulate.electrode``
(128³ voxels of 0.5 µm, seeds 100, 101, ...) with varied mean particle diameters (8/10/12 µm),
size spreads (cv 0.15/0.25) and damage (0/10/50 cycles), cut every 8 voxels along all three axes
by ``holocat.segment.train.sections_from_electrode`` (δ map blurred by a random PSF, random
noise, normalised once per volume; labels = particles filled, cracks included). One more electrode
(seed 999, 10 µm, 10 cycles) is held out and its sections scored at the end (AP at IoU 0.3/0.5/0.7,
recorded in config.json under training.heldout_accuracy).

The exact command that built the shipped model (858 s on 2 shared CPU cores, one torch thread)::

    python scripts/train_default_model.py --out resources/models/holocat-star2d --overwrite

Everything is seeded: the same command on the same machine gives the same weights.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("train_default_model")

DIAMETERS_UM = (8.0, 10.0, 12.0)
CYCLES = (0, 10, 50)
DIAMETER_CV = (0.15, 0.25)


def build_sections(seed: int, *, shape, diameter_um: float, cycles: int, cv: float, step: int):
    from holocat.segment.train import sections_from_electrode
    from holocat.simulate import electrode

    e = electrode(
        tuple(shape),
        voxel_size_um=0.5,
        cycles=cycles,
        seed=seed,
        mean_diameter_um=diameter_um,
        diameter_cv=cv,
    )
    pairs = sections_from_electrode(e, axes=(0, 1, 2), step=step, seed=seed)
    logger.info(
        "electrode seed %d (%.0f um, cv %.2f, %d cycles): %d particles, %d sections",
        seed,
        diameter_um,
        cv,
        cycles,
        e.n_particles,
        len(pairs),
    )
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("resources/models/holocat-star2d"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--n-electrodes", type=int, default=6)
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 128])
    parser.add_argument("--step", type=int, default=8, help="section spacing (voxels)")
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=64)
    parser.add_argument("--steps-per-epoch", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-patience", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1 is fastest on a shared 2-core machine)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)

    import torch

    from holocat._device import resolve_device
    from holocat.segment.metrics import matching_dataset
    from holocat.segment.model import default_config
    from holocat.segment.train import train_model

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.out.exists() and not args.overwrite:
        parser.error(f"{args.out} exists; pass --overwrite to replace it")
    t0 = time.perf_counter()
    images, labels = [], []
    for i in range(args.n_electrodes):
        pairs = build_sections(
            100 + i,
            shape=args.shape,
            diameter_um=DIAMETERS_UM[i % 3],
            cycles=CYCLES[(i // 3 + i) % 3],
            cv=DIAMETER_CV[i % 2],
            step=args.step,
        )
        images += [p[0] for p in pairs]
        labels += [p[1] for p in pairs]
    heldout = build_sections(999, shape=args.shape, diameter_um=10.0, cycles=10, cv=0.2, step=16)
    logger.info("%d training sections in %.0f s", len(images), time.perf_counter() - t0)

    config = default_config(base_filters=args.base_filters, patch_size=[args.patch, args.patch])
    model = train_model(
        images,
        labels,
        config=config,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_patience=args.lr_patience,
        val_fraction=0.1,
        seed=args.seed,
        device=device,
        log_every=10**9,
        command=shlex.join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
    )
    h_images = (
        np.stack([p[0] for p in heldout]) if len({p[0].shape for p in heldout}) == 1 else None
    )
    preds = (
        list(model.predict_instances(h_images, device=device))
        if h_images is not None
        else [model.predict_instances(p[0][None], device=device)[0] for p in heldout]
    )
    truth = [p[1] for p in heldout]
    heldout_acc = {
        str(t): matching_dataset(truth, preds, thresh=t).accuracy for t in (0.3, 0.5, 0.7)
    }
    training = model.config["training"]
    training["data"] = {
        "electrodes": args.n_electrodes,
        "shape": list(args.shape),
        "voxel_size_um": 0.5,
        "section_step": args.step,
        "n_sections": len(images),
        "diameters_um": list(DIAMETERS_UM),
        "cycles": list(CYCLES),
        "diameter_cv": list(DIAMETER_CV),
        "seeds": [100 + i for i in range(args.n_electrodes)],
    }
    training["heldout_accuracy"] = heldout_acc
    training["heldout"] = {"seed": 999, "n_sections": len(heldout), "step": 16}
    training["wall_time_total_s"] = round(time.perf_counter() - t0, 1)
    model.save(args.out, overwrite=args.overwrite)
    logger.info(
        "saved %s: thresholds %s, validation AP %s, held-out AP %s, %.0f s in total",
        args.out,
        model.thresholds,
        training["val_accuracy"],
        heldout_acc,
        training["wall_time_total_s"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
