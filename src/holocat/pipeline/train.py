"""Stage driver: train the star-convex 2D model (``holocat train``, rule ``train_model``).

Training data are 2D sections with instance labels: sections of synthetic electrodes
(``holocat.simulate.electrode`` with varied particle sizes, size spreads and damage, imaged as
a blurred, noisy δ map — ``holocat.segment.train.sections_from_electrode``) and/or the user's own
annotated images (``images_dir``: ``images/<name>.tif`` + ``masks/<name>.tif``). One further
synthetic electrode, never trained on, is scored at the end (held-out AP at IoU 0.3/0.5/0.7) and
recorded in the model's ``config.json`` together with the command and every parameter.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TRAIN_DEFAULTS", "training_sections", "train_star_model"]

log = logging.getLogger(__name__)

#: Defaults of the ``segment.train`` config section (config/README.md explains each key).
TRAIN_DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "synthetic": True,
    "n_electrodes": 6,
    "shape": [128, 128, 128],
    "voxel_size_um": 0.5,
    "diameters_um": [8.0, 10.0, 12.0],
    "cycles": [0, 10, 50],
    "diameter_cv": [0.15, 0.25],
    "section_step": 8,
    "images_dir": None,
    "base_filters": 16,
    "patch_size": 96,
    "epochs": 40,
    "steps_per_epoch": 40,
    "batch_size": 4,
    "lr": 1.0e-3,
    "lr_patience": 5,
    "seed": 0,
    "heldout_seed": 999,
    "threads": 1,
}


def _settings(params: dict) -> dict:
    unknown = sorted(set(params) - set(TRAIN_DEFAULTS) - {"device"})
    if unknown:
        raise ValueError(
            f"segment.train: unknown key(s) {unknown}; expected a subset of {sorted(TRAIN_DEFAULTS)}"
        )
    p = TRAIN_DEFAULTS | dict(params)
    if not p["synthetic"] and not p["images_dir"]:
        raise ValueError(
            "segment.train: no training data: set synthetic: true and/or images_dir to a folder "
            "of images/<name>.tif + masks/<name>.tif"
        )
    for key in ("n_electrodes", "section_step", "epochs", "steps_per_epoch", "batch_size"):
        if int(p[key]) < 1:
            raise ValueError(f"segment.train.{key}: expected an integer >= 1; got {p[key]!r}")
    for key in ("diameters_um", "cycles", "diameter_cv"):
        if not isinstance(p[key], list | tuple) or not p[key]:
            raise ValueError(f"segment.train.{key}: expected a non-empty list; got {p[key]!r}")
    return p


def _electrode_sections(
    seed: int, p: dict, *, diameter_um: float, cycles: int, cv: float, step: int
):
    from holocat.segment.train import sections_from_electrode
    from holocat.simulate import electrode

    e = electrode(
        tuple(int(v) for v in p["shape"]),
        voxel_size_um=float(p["voxel_size_um"]),
        cycles=int(cycles),
        seed=seed,
        mean_diameter_um=float(diameter_um),
        diameter_cv=float(cv),
    )
    pairs = sections_from_electrode(e, axes=(0, 1, 2), step=step, seed=seed)
    log.info(
        "electrode seed %d (%.1f um, cv %.2f, %d cycles): %d particles, %d sections",
        seed,
        diameter_um,
        cv,
        cycles,
        e.n_particles,
        len(pairs),
    )
    return pairs


def training_sections(params: dict) -> tuple[list, list, dict]:
    """The training images and labels of ``segment.train`` and a record of where they came from.

    Electrode ``i`` (seed ``seed + 100 + i``) cycles through ``diameters_um``, ``cycles`` and
    ``diameter_cv`` so that every size, damage level and spread is represented.
    """
    p = _settings(params)
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    record: dict[str, Any] = {}
    if p["synthetic"]:
        seeds = []
        d, c, v = p["diameters_um"], p["cycles"], p["diameter_cv"]
        for i in range(int(p["n_electrodes"])):
            seed = int(p["seed"]) + 100 + i
            pairs = _electrode_sections(
                seed,
                p,
                diameter_um=d[i % len(d)],
                cycles=c[(i // len(d) + i) % len(c)],
                cv=v[i % len(v)],
                step=int(p["section_step"]),
            )
            images += [a for a, _ in pairs]
            labels += [b for _, b in pairs]
            seeds.append(seed)
        record["synthetic"] = {
            k: p[k]
            for k in ("n_electrodes", "shape", "voxel_size_um", "diameters_um", "cycles")
            + ("diameter_cv", "section_step")
        } | {"seeds": seeds, "n_sections": len(images)}
    if p["images_dir"]:
        from holocat.segment.train import load_image_mask_folder

        pairs = load_image_mask_folder(p["images_dir"])
        images += [a for a, _ in pairs]
        labels += [b for _, b in pairs]
        record["images_dir"] = {"folder": str(p["images_dir"]), "n_images": len(pairs)}
    return images, labels, record


def train_star_model(out_dir: str | Path, params: dict, *, command: str | None = None):
    """Train, tune thresholds, score a held-out synthetic electrode and save the model folder.

    Parameters
    ----------
    out_dir : path
        Model folder to write (``weights.pt``, ``config.json``, ``thresholds.json``); must not
        exist (the workflow's output, or a new folder on the command line).
    params : dict
        The ``segment.train`` section (``TRAIN_DEFAULTS`` fill missing keys) plus ``device``.
    command : str, optional
        The command line, recorded in ``config.json``.

    Returns
    -------
    holocat.segment.model.StarModel
    """
    import torch

    from holocat.segment.metrics import matching_dataset
    from holocat.segment.model import default_config
    from holocat.segment.train import train_model

    p = _settings(params)
    device = params.get("device", "auto")
    torch.set_num_threads(int(p["threads"]))
    t0 = time.perf_counter()
    images, labels, record = training_sections(p)
    heldout = _electrode_sections(
        int(p["heldout_seed"]), p, diameter_um=10.0, cycles=10, cv=0.2, step=16
    )
    log.info("%d training sections in %.0f s", len(images), time.perf_counter() - t0)
    patch = int(p["patch_size"])
    config = default_config(base_filters=int(p["base_filters"]), patch_size=[patch, patch])
    model = train_model(
        images,
        labels,
        config=config,
        epochs=int(p["epochs"]),
        steps_per_epoch=int(p["steps_per_epoch"]),
        batch_size=int(p["batch_size"]),
        lr=float(p["lr"]),
        lr_patience=int(p["lr_patience"]),
        val_fraction=0.1,
        seed=int(p["seed"]),
        device=device,
        log_every=10**9,
        command=command,
    )
    preds = [model.predict_instances(img[None], device=device)[0] for img, _ in heldout]
    truth = [lab for _, lab in heldout]
    heldout_acc = {
        str(t): matching_dataset(truth, preds, thresh=t).accuracy for t in (0.3, 0.5, 0.7)
    }
    training = model.config["training"]
    training["data"] = record
    training["params"] = p
    training["heldout"] = {"seed": int(p["heldout_seed"]), "n_sections": len(heldout), "step": 16}
    training["heldout_accuracy"] = heldout_acc
    training["wall_time_total_s"] = round(time.perf_counter() - t0, 1)
    model.save(out_dir)
    log.info(
        "saved %s: thresholds %s, validation AP %s, held-out AP %s, %.0f s in total",
        out_dir,
        model.thresholds,
        training.get("val_accuracy"),
        heldout_acc,
        training["wall_time_total_s"],
    )
    return model
