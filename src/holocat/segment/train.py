"""Training data, training and threshold optimisation of the star-convex 2D model (SCIENCE.md §4).

* ``sections_from_electrode`` turns a synthetic electrode (``holocat.simulate.electrode``) into
  2D training pairs: labels are sections of ``filled_labels`` (cracked particles annotated as
  filled objects, SCIENCE.md §4), images a stand-in for reconstructed sections — the δ volume
  blurred by a Gaussian PSF and corrupted by Gaussian noise, both of random strength, normalised
  once per volume by percentiles.
* ``load_image_mask_folder`` reads a user's annotated 2D images.
* ``train_model`` trains a ``StarModel``: loss = BCE(p, p̂) + 0.2 · [mean(p |d − d̂|) / mean(p)
  + 1e-4 mean((1 − p) |d̂|)] at the grid points (targets subsampled on the grid, as StarDist),
  random patches, one of the 8 dihedral transforms (ray channels permuted accordingly) plus a
  mild intensity jitter, Adam with the learning rate halved on a validation-loss plateau, the
  best-validation weights kept; deterministic for a given ``seed`` on one machine.
* ``optimize_thresholds`` picks (prob, nms) maximising the mean accuracy over IoU thresholds on
  validation images: golden-section search over prob for each nms candidate.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .metrics import matching_dataset
from .normalize import normalize_intensity
from .star import edt_probability, instances_from_prediction, star_distances

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .model import StarModel

__all__ = [
    "dihedral_transform",
    "load_image_mask_folder",
    "optimize_thresholds",
    "sections_from_electrode",
    "train_model",
]

logger = logging.getLogger(__name__)

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_LAMBDA_DIST = 0.2  # weight of the distance loss (SCIENCE.md §4, StarDist's default)
_REG_BACKGROUND = 1e-4  # weight of the background-distance penalty
_JITTER_SCALE = (0.9, 1.1)  # intensity jitter: image * a + b
_JITTER_OFFSET = (-0.05, 0.05)


# --------------------------------------------------------------------------------------------
# training data
# --------------------------------------------------------------------------------------------


def _range_pair(value: Any, name: str, lo: float) -> tuple[float, float]:
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)
        or not (lo <= value[0] <= value[1])
        or not all(math.isfinite(v) for v in value)
    ):
        raise ValueError(f"{name}: expected (low, high) with {lo} <= low <= high; got {value!r}")
    return float(value[0]), float(value[1])


def _relabel_components(labels: np.ndarray) -> NDArray[np.uint32]:
    """One label per 8-connected piece of each object (a particle may cut a section twice)."""
    from skimage.measure import label

    return label(labels, background=0, connectivity=2).astype(np.uint32)


def sections_from_electrode(
    electrode: Any,
    *,
    axes: Sequence[int] = (0, 1, 2),
    step: int = 8,
    psf_sigma_vox: tuple[float, float] = (0.5, 1.5),
    noise_level: tuple[float, float] = (0.02, 0.2),
    low_pct: float = 1.0,
    high_pct: float = 99.8,
    min_objects: int = 1,
    seed: int = 0,
) -> list[tuple[NDArray[np.float32], NDArray[np.uint32]]]:
    """2D (image, labels) training pairs from sections of a synthetic electrode.

    The image volume is the electrode's δ map blurred with a Gaussian PSF of σ drawn uniformly
    from ``psf_sigma_vox``, plus white Gaussian noise of standard deviation
    ``level × (p99.8 − p1 of the blurred δ)`` with ``level`` drawn from ``noise_level``, then
    normalised once for the whole volume (``normalize_intensity`` with ``low_pct``,
    ``high_pct``). Labels are sections of ``filled_labels`` (particles including their cracks),
    relabelled so that every 8-connected piece is its own object.

    Parameters
    ----------
    electrode : holocat.simulate.Electrode
        Needs ``delta`` and ``filled_labels`` of equal shape (nz, ny, nx).
    axes : sequence of int
        Axes to cut along (0 = z: xy sections, 1 = y, 2 = x).
    step : int
        Spacing of the sections in voxels (first at ``step // 2``); >= 1.
    psf_sigma_vox, noise_level : (float, float)
        Ranges of the random PSF width (voxels, >= 0) and noise level (fraction of the range).
    low_pct, high_pct : float
        Normalisation percentiles (the model's ``config["normalize"]``).
    min_objects : int
        Sections with fewer objects are skipped; >= 0.
    seed : int
        Seed of the PSF width, noise level and noise.

    Returns
    -------
    list of (ndarray float32 (a, b), ndarray uint32 (a, b))

    Raises
    ------
    TypeError, ValueError
        ``electrode`` lacks ``delta``/``filled_labels`` or they disagree; invalid parameters.

    Examples
    --------
    >>> from holocat.simulate import electrode
    >>> e = electrode((32, 32, 32), voxel_size_um=1.0, mean_diameter_um=8.0, seed=1)
    >>> pairs = sections_from_electrode(e, axes=(0,), step=8, seed=0)
    >>> len(pairs), pairs[0][0].dtype, pairs[0][1].dtype, pairs[0][0].shape
    (4, dtype('float32'), dtype('uint32'), (32, 32))
    """
    from scipy.ndimage import gaussian_filter

    delta = getattr(electrode, "delta", None)
    filled = getattr(electrode, "filled_labels", None)
    if not isinstance(delta, np.ndarray) or not isinstance(filled, np.ndarray):
        raise TypeError(
            f"electrode: expected an Electrode with numpy arrays 'delta' and 'filled_labels'; "
            f"got {type(electrode).__name__}"
        )
    if delta.ndim != 3 or delta.shape != filled.shape:
        raise ValueError(
            f"electrode: expected delta and filled_labels of one (nz, ny, nx) shape; got "
            f"{delta.shape} and {filled.shape}"
        )
    ax = tuple(axes)
    if not ax or any(isinstance(a, bool) or a not in (0, 1, 2) for a in ax):
        raise ValueError(f"axes: expected a non-empty subset of (0, 1, 2); got {axes!r}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step: expected an int >= 1; got {step!r}")
    if isinstance(min_objects, bool) or not isinstance(min_objects, int) or min_objects < 0:
        raise ValueError(f"min_objects: expected an int >= 0; got {min_objects!r}")
    s_lo, s_hi = _range_pair(psf_sigma_vox, "psf_sigma_vox", 0.0)
    n_lo, n_hi = _range_pair(noise_level, "noise_level", 0.0)

    rng = np.random.default_rng(seed)
    sigma = rng.uniform(s_lo, s_hi)
    level = rng.uniform(n_lo, n_hi)
    vol = (
        gaussian_filter(delta.astype(np.float32), sigma) if sigma > 0 else delta.astype(np.float32)
    )
    p_lo, p_hi = np.percentile(vol, [1.0, 99.8])
    vol += rng.normal(0.0, level * float(p_hi - p_lo), vol.shape).astype(np.float32)
    vol = normalize_intensity(vol, low_pct=low_pct, high_pct=high_pct)
    pairs = []
    for a in ax:
        for k in range(step // 2, vol.shape[a], step):
            lbl = _relabel_components(np.take(filled, k, axis=a))
            if int(lbl.max()) < min_objects:
                continue
            img = np.ascontiguousarray(np.take(vol, k, axis=a))
            pairs.append((img, lbl))
    logger.info(
        "sections_from_electrode: %d sections (axes %s, step %d), PSF sigma %.2f vox, noise "
        "level %.3f",
        len(pairs),
        ax,
        step,
        sigma,
        level,
    )
    return pairs


def load_image_mask_folder(
    folder: str | os.PathLike[str],
    *,
    normalize: bool = True,
    low_pct: float = 1.0,
    high_pct: float = 99.8,
) -> list[tuple[NDArray[np.float32], NDArray[np.uint32]]]:
    """Annotated 2D images from ``<folder>/images/<name>.tif`` + ``<folder>/masks/<name>.tif``.

    Naming rule: an image and its mask share the file name (``.tif`` or ``.tiff``) in the
    sub-folders ``images/`` and ``masks/`` (StarDist's training-data layout). Masks hold integer
    instance labels, 0 = background; cracked particles should be annotated filled.

    Parameters
    ----------
    folder : path
        Folder holding ``images/`` and ``masks/``.
    normalize : bool
        Normalise each image to [0, 1] by its ``low_pct``/``high_pct`` percentiles.
    low_pct, high_pct : float
        Percentiles for ``normalize``.

    Returns
    -------
    list of (image float32 (ny, nx), labels uint32 (ny, nx)), sorted by name

    Raises
    ------
    FileNotFoundError
        ``folder``, ``images/`` or ``masks/`` missing, or no TIFF files.
    ValueError
        Unmatched names (listed), an image that is not 2D, a mask of another shape or not
        integer/non-negative.
    ImportError
        ``tifffile`` is not installed (the 'segment' extra).
    """
    try:
        import tifffile
    except ImportError as exc:  # pragma: no cover - installed with the segment extra
        raise ImportError(
            "tifffile is required to read TIFF training data; install the 'segment' extra"
        ) from exc
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"folder {str(root)!r} does not exist")
    dirs = {sub: root / sub for sub in ("images", "masks")}
    for sub, d in dirs.items():
        if not d.is_dir():
            raise FileNotFoundError(f"folder {str(root)!r}: missing sub-folder {sub}/")

    def tiffs(d: Path) -> dict[str, Path]:
        return {p.stem: p for p in sorted(d.iterdir()) if p.suffix.lower() in (".tif", ".tiff")}

    imgs, masks = tiffs(dirs["images"]), tiffs(dirs["masks"])
    if not imgs:
        raise FileNotFoundError(f"{dirs['images']}: no .tif/.tiff files")
    only_img = sorted(set(imgs) - set(masks))
    only_mask = sorted(set(masks) - set(imgs))
    if only_img or only_mask:
        raise ValueError(
            f"{root}: unmatched files (expected images/<name>.tif with masks/<name>.tif): "
            f"images without mask {only_img}, masks without image {only_mask}"
        )
    pairs = []
    for name in sorted(imgs):
        img = tifffile.imread(imgs[name])
        lbl = tifffile.imread(masks[name])
        if img.ndim != 2:
            raise ValueError(f"{imgs[name]}: expected a 2D (ny, nx) image; got shape {img.shape}")
        if lbl.shape != img.shape:
            raise ValueError(
                f"{masks[name]}: expected the image's shape {img.shape}; got {lbl.shape}"
            )
        if lbl.dtype == np.bool_ or not np.issubdtype(lbl.dtype, np.integer) or lbl.min() < 0:
            raise ValueError(
                f"{masks[name]}: expected non-negative integer labels; got dtype {lbl.dtype}"
            )
        image = (
            normalize_intensity(img, low_pct=low_pct, high_pct=high_pct)
            if normalize
            else img.astype(np.float32)
        )
        pairs.append((image, lbl.astype(np.uint32)))
    logger.info("load_image_mask_folder: %d pairs from %s", len(pairs), root)
    return pairs


# --------------------------------------------------------------------------------------------
# augmentation
# --------------------------------------------------------------------------------------------


def _ray_permutation(n_rays: int, variant: int) -> NDArray[np.int64]:
    """Index map p with new_dist[..., j] = old_dist[..., p[j]] for a dihedral ``variant``."""
    j = np.arange(n_rays)
    perm = j.copy()
    # applied in order: transpose, flip rows, flip cols; compose the index maps
    if variant & 4:
        perm = perm[(n_rays // 4 - j) % n_rays]
    if variant & 1:
        perm = perm[(-j) % n_rays]
    if variant & 2:
        perm = perm[(n_rays // 2 - j) % n_rays]
    return perm


def dihedral_transform(
    image: np.ndarray, prob: np.ndarray, dist: np.ndarray, variant: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply one of the 8 dihedral transforms to an image and its star-convex targets.

    ``variant`` bits: 4 = transpose, 1 = flip rows, 2 = flip columns (in that order). The ray
    channels of ``dist`` (n_rays a multiple of 4) are permuted so that ray k of the result still
    points along (sin φ_k, cos φ_k): transposing maps ray j to n/4 − j, flipping rows to −j,
    flipping columns to n/2 − j (mod n).

    Examples
    --------
    >>> lbl = np.zeros((9, 12), np.int32); lbl[2:5, 3:10] = 1
    >>> img, prob, dist = lbl.astype(np.float32), edt_probability(lbl), star_distances(lbl, 8)
    >>> _, p2, d2 = dihedral_transform(img, prob, dist, 4 | 2)
    >>> lbl2 = np.ascontiguousarray(lbl.T[:, ::-1])
    >>> bool(np.allclose(d2, star_distances(lbl2, 8))), bool(np.allclose(p2, edt_probability(lbl2)))
    (True, True)
    """
    if (
        isinstance(variant, bool)
        or not isinstance(variant, int | np.integer)
        or not 0 <= variant < 8
    ):
        raise ValueError(f"variant: expected an int in 0..7; got {variant!r}")
    n_rays = dist.shape[-1]
    if n_rays % 4:
        raise ValueError(f"dist: expected a multiple of 4 rays; got {n_rays}")
    if variant & 4:
        image, prob, dist = image.T, prob.T, dist.transpose(1, 0, 2)
    if variant & 1:
        image, prob, dist = image[::-1], prob[::-1], dist[::-1]
    if variant & 2:
        image, prob, dist = image[:, ::-1], prob[:, ::-1], dist[:, ::-1]
    dist = dist[..., _ray_permutation(n_rays, int(variant))]
    return np.ascontiguousarray(image), np.ascontiguousarray(prob), np.ascontiguousarray(dist)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def _check_pairs(images: Any, labels: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if isinstance(images, np.ndarray):
        images = list(images) if images.ndim == 3 else [images]
    if isinstance(labels, np.ndarray):
        labels = list(labels) if labels.ndim == 3 else [labels]
    images, labels = list(images), list(labels)
    if len(images) != len(labels):
        raise ValueError(
            f"images, labels: expected the same number; got {len(images)} and {len(labels)}"
        )
    if not images:
        raise ValueError("images: expected at least one training image; got none")
    for k, (img, lbl) in enumerate(zip(images, labels, strict=True)):
        if not isinstance(img, np.ndarray) or img.ndim != 2:
            raise ValueError(
                f"images[{k}]: expected a 2D (ny, nx) array; got "
                f"{getattr(img, 'shape', type(img).__name__)}"
            )
        if not np.issubdtype(img.dtype, np.floating) or not np.all(np.isfinite(img)):
            raise ValueError(
                f"images[{k}]: expected finite float values normalised to ~[0, 1]; got dtype "
                f"{img.dtype}"
            )
        if not isinstance(lbl, np.ndarray) or lbl.shape != img.shape:
            raise ValueError(
                f"labels[{k}]: expected shape {img.shape} (as images[{k}]); got "
                f"{getattr(lbl, 'shape', type(lbl).__name__)}"
            )
        if lbl.dtype == np.bool_ or not np.issubdtype(lbl.dtype, np.integer) or lbl.min() < 0:
            raise ValueError(
                f"labels[{k}]: expected non-negative integer labels; got dtype {lbl.dtype}"
            )
    return images, labels


class _Targets:
    """Images padded to at least the patch size, with full-resolution targets."""

    def __init__(
        self, images: list[np.ndarray], labels: list[np.ndarray], n_rays: int, patch: tuple
    ) -> None:
        self.images, self.prob, self.dist = [], [], []
        for img, lbl in zip(images, labels, strict=True):
            prob = edt_probability(lbl)
            dist = star_distances(lbl, n_rays).astype(np.float16)  # ample precision, half memory
            pad = [(0, max(0, p - s)) for p, s in zip(patch, img.shape, strict=True)]
            if any(p[1] for p in pad):
                img = np.pad(img, pad)  # constant 0: background level after normalisation
                prob = np.pad(prob, pad)
                dist = np.pad(dist, pad + [(0, 0)])
            self.images.append(img.astype(np.float32))
            self.prob.append(prob)
            self.dist.append(dist)

    def __len__(self) -> int:
        return len(self.images)

    def sample(
        self,
        rng: np.random.Generator,
        batch_size: int,
        patch: tuple[int, int],
        grid: tuple[int, int],
        *,
        augment: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        gy, gx = grid
        xs, ps, ds = [], [], []
        for _ in range(batch_size):
            k = int(rng.integers(len(self.images)))
            h, w = self.images[k].shape
            y0 = int(rng.integers(h - patch[0] + 1))
            x0 = int(rng.integers(w - patch[1] + 1))
            sl = (slice(y0, y0 + patch[0]), slice(x0, x0 + patch[1]))
            img, prob, dist = self.images[k][sl], self.prob[k][sl], self.dist[k][sl]
            if augment:
                img, prob, dist = dihedral_transform(img, prob, dist, int(rng.integers(8)))
                img = img * rng.uniform(*_JITTER_SCALE) + rng.uniform(*_JITTER_OFFSET)
            xs.append(img)
            ps.append(prob[::gy, ::gx])
            ds.append(dist[::gy, ::gx])
        return (
            np.stack(xs).astype(np.float32)[:, None],
            np.stack(ps).astype(np.float32),
            np.stack(ds).astype(np.float32).transpose(0, 3, 1, 2),
        )


def _loss(logit: Any, dist_pred: Any, prob_t: Any, dist_t: Any) -> tuple[Any, Any, Any]:
    """BCE(p, p̂) + 0.2 [mean(p |d − d̂|) / mean(p) + 1e-4 mean((1 − p) |d̂|)] on the grid."""
    import torch

    bce = torch.nn.functional.binary_cross_entropy_with_logits(logit[:, 0], prob_t)
    p = prob_t[:, None]
    l1 = (p * (dist_t - dist_pred).abs()).mean() / (p.mean() + 1e-6)
    reg = ((1.0 - p) * dist_pred.abs()).mean()
    dist_loss = l1 + _REG_BACKGROUND * reg
    return bce + _LAMBDA_DIST * dist_loss, bce, dist_loss


def _validation_batches(
    targets: _Targets, patch: tuple[int, int], grid: tuple[int, int], seed: int
):
    """Fixed validation patches (no augmentation), up to 4 per validation image."""
    rng = np.random.default_rng(seed)
    n = min(4 * len(targets), 64)
    batches = []
    for start in range(0, n, 8):
        batches.append(targets.sample(rng, min(8, n - start), patch, grid, augment=False))
    return batches


def train_model(
    images: Sequence[NDArray[np.floating]],
    labels: Sequence[NDArray[np.integer]],
    *,
    config: Mapping[str, Any] | None = None,
    epochs: int = 100,
    steps_per_epoch: int = 100,
    patch_size: tuple[int, int] | None = None,
    batch_size: int = 4,
    lr: float = 3e-4,
    val_fraction: float = 0.1,
    seed: int = 0,
    device: Any = "auto",
    out_dir: str | os.PathLike[str] | None = None,
    log_every: int = 50,
    lr_patience: int = 10,
    tune_thresholds: bool = True,
    overwrite: bool = False,
    command: str | None = None,
) -> StarModel:
    """Train a star-convex model on normalised 2D images and instance labels.

    Parameters
    ----------
    images : sequence of ndarray float, each (ny, nx)
        Images normalised to ~[0, 1] (as the model will see them; see ``config["normalize"]``).
    labels : sequence of ndarray int, each the shape of its image
        Instance labels, 0 = background.
    config : mapping, optional
        Model configuration (:func:`holocat.segment.model.default_config` keys; missing keys
        take the defaults).
    epochs, steps_per_epoch : int
        Training length; >= 1.
    patch_size : (int, int), optional
        Patch shape, multiples of ``2**depth * grid``; default ``config["patch_size"]``. Smaller
        images are padded with 0 (background).
    batch_size : int
        Patches per step.
    lr : float
        Adam learning rate; halved when the validation loss has not improved for
        ``lr_patience`` epochs.
    val_fraction : float
        Fraction of the images held out for validation (at least one when there are >= 2
        images and ``val_fraction > 0``); used for the learning-rate schedule, the choice of the
        best weights, the thresholds and the reported accuracy.
    seed : int
        Seed of the split, weights, patches and augmentation.
    device : str or torch.device
        "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
    out_dir : path, optional
        Save the trained model folder there (``overwrite`` to replace an existing one).
    log_every : int
        Log the training loss every this many steps.
    lr_patience : int
        Epochs without validation improvement before the learning rate is halved.
    tune_thresholds : bool
        Optimise (prob, nms) on the validation images (:func:`optimize_thresholds`).
    overwrite : bool
        Replace an existing ``out_dir``.
    command : str, optional
        The command line that ran the training, recorded in the summary.

    Returns
    -------
    StarModel
        With the best-validation weights, the thresholds and ``config["training"]``: params,
        epochs, per-epoch losses, final losses, validation accuracy (AP) at IoU 0.3/0.5/0.7,
        wall time, torch version, seed.

    Raises
    ------
    TypeError, ValueError
        Mismatched or invalid images/labels, invalid parameters or configuration.
    """
    import torch

    import holocat
    from holocat._device import resolve_device

    from .model import StarModel, StarUNet, _check_config, default_config

    t_start = time.perf_counter()
    imgs, lbls = _check_pairs(images, labels)
    cfg = default_config() if config is None else default_config(**dict(config))
    if patch_size is not None:
        cfg["patch_size"] = [int(p) for p in patch_size]
    cfg = _check_config(cfg)
    patch = (cfg["patch_size"][0], cfg["patch_size"][1])
    grid = (cfg["grid"][0], cfg["grid"][1])
    for name, v, lo in (
        ("epochs", epochs, 1),
        ("steps_per_epoch", steps_per_epoch, 1),
        ("batch_size", batch_size, 1),
        ("log_every", log_every, 1),
        ("lr_patience", lr_patience, 0),
        ("seed", seed, 0),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}: expected an int >= {lo}; got {v!r}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a positive number; got {lr!r}")
    if not (isinstance(val_fraction, int | float) and 0.0 <= val_fraction < 1.0):
        raise ValueError(f"val_fraction: expected a number in [0, 1); got {val_fraction!r}")
    if out_dir is not None and Path(out_dir).exists() and not overwrite:
        raise FileExistsError(f"out_dir {str(out_dir)!r} exists; pass overwrite=True to replace it")
    dev = resolve_device(device)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(imgs))
    n_val = 0
    if len(imgs) >= 2 and val_fraction > 0:
        n_val = min(len(imgs) - 1, max(1, int(round(val_fraction * len(imgs)))))
    val_idx, train_idx = order[:n_val], order[n_val:]
    train = _Targets(
        [imgs[i] for i in train_idx], [lbls[i] for i in train_idx], cfg["n_rays"], patch
    )
    val = (
        _Targets([imgs[i] for i in val_idx], [lbls[i] for i in val_idx], cfg["n_rays"], patch)
        if n_val
        else None
    )
    logger.info(
        "train_model: %d training / %d validation images, patch %s, grid %s, %d epochs x %d "
        "steps, batch %d, lr %.3g, device %s",
        len(train_idx),
        n_val,
        patch,
        grid,
        epochs,
        steps_per_epoch,
        batch_size,
        lr,
        dev,
    )

    net = StarUNet(
        **{
            k: cfg[k]
            for k in (
                "n_rays",
                "grid",
                "base_filters",
                "depth",
                "n_conv_per_level",
                "conv_after_unet",
            )
        },
        seed=seed,
    )
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=0.5, patience=lr_patience
    )
    val_batches = _validation_batches(val, patch, grid, seed + 1) if val is not None else []

    def to_dev(batch: tuple[np.ndarray, ...]) -> list[Any]:
        return [torch.from_numpy(a).to(dev) for a in batch]

    history: list[dict[str, float]] = []
    best_loss, best_state, best_epoch = math.inf, None, -1
    step = 0
    for epoch in range(epochs):
        net.train()
        sums = np.zeros(3)
        for _ in range(steps_per_epoch):
            x, p_t, d_t = to_dev(train.sample(rng, batch_size, patch, grid, augment=True))
            logit, d_pred = net(x)
            loss, bce, dl = _loss(logit, d_pred, p_t, d_t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            values = [loss.item(), bce.item(), dl.item()]
            sums += values
            step += 1
            if step % log_every == 0:
                logger.info(
                    "epoch %d step %d: loss %.4f (bce %.4f, dist %.4f)", epoch + 1, step, *values
                )
        train_loss = sums / steps_per_epoch
        if val_batches:
            net.eval()
            vs = np.zeros(3)
            with torch.no_grad():
                for vb in val_batches:
                    x, p_t, d_t = to_dev(vb)
                    logit, d_pred = net(x)
                    vs += [float(v) * len(vb[0]) for v in _loss(logit, d_pred, p_t, d_t)]
            val_loss = vs / sum(len(vb[0]) for vb in val_batches)
        else:
            val_loss = train_loss
        monitor = float(val_loss[0])
        sched.step(monitor)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": float(train_loss[0]),
                "train_bce": float(train_loss[1]),
                "train_dist": float(train_loss[2]),
                "val_loss": float(val_loss[0]),
                "val_bce": float(val_loss[1]),
                "val_dist": float(val_loss[2]),
                "lr": float(opt.param_groups[0]["lr"]),
            }
        )
        if monitor < best_loss:
            best_loss, best_epoch = monitor, epoch + 1
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        logger.info(
            "epoch %d/%d: train loss %.4f, val loss %.4f, lr %.3g",
            epoch + 1,
            epochs,
            train_loss[0],
            val_loss[0],
            opt.param_groups[0]["lr"],
        )
    if best_state is not None:
        net.load_state_dict(best_state)
    net.cpu()
    model = StarModel(net, cfg)

    val_accuracy = None
    if val is not None:
        val_imgs = [imgs[i] for i in val_idx]
        val_lbls = [lbls[i] for i in val_idx]
        if tune_thresholds:
            prob_t, nms_t, report = optimize_thresholds(
                model, val_imgs, val_lbls, device=dev, return_scores=True
            )
            model.set_thresholds(prob_t, nms_t, report=report)
        pred = [model.predict_instances(im[None], device=dev)[0] for im in val_imgs]
        val_accuracy = {
            str(t): matching_dataset(val_lbls, pred, thresh=t).accuracy for t in (0.3, 0.5, 0.7)
        }
    model.config["training"] = {
        "command": command,
        "params": {
            "epochs": epochs,
            "steps_per_epoch": steps_per_epoch,
            "patch_size": list(patch),
            "batch_size": batch_size,
            "lr": lr,
            "lr_patience": lr_patience,
            "val_fraction": val_fraction,
            "seed": seed,
            "device": str(dev),
            "loss": "BCE + 0.2 (masked L1 / mean(p) + 1e-4 background L1), on the grid",
            "augmentation": "dihedral (8) + intensity x U(0.9, 1.1) + U(-0.05, 0.05)",
        },
        "n_train_images": int(len(train_idx)),
        "n_val_images": int(n_val),
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "final_train_loss": history[-1]["train_loss"],
        "final_val_loss": history[-1]["val_loss"],
        "best_val_loss": float(best_loss),
        "history": history,
        "val_accuracy": val_accuracy,
        "thresholds": dict(model.thresholds),
        "wall_time_s": round(time.perf_counter() - t_start, 1),
        "torch_version": torch.__version__,
        "holocat_version": getattr(holocat, "__version__", None),
        "seed": seed,
    }
    logger.info(
        "train_model done in %.0f s: best val loss %.4f (epoch %d), thresholds %s, val AP %s",
        model.config["training"]["wall_time_s"],
        best_loss,
        best_epoch,
        model.thresholds,
        val_accuracy,
    )
    if out_dir is not None:
        model.save(out_dir, overwrite=overwrite)
    return model


# --------------------------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------------------------


def optimize_thresholds(
    model: StarModel,
    images_val: Sequence[NDArray[np.floating]],
    labels_val: Sequence[NDArray[np.integer]],
    *,
    nms_threshs: Sequence[float] = (0.3, 0.4, 0.5),
    iou_threshs: Sequence[float] = (0.3, 0.5, 0.7),
    prob_range: tuple[float, float] = (0.05, 0.95),
    tol: float = 0.02,
    device: Any = "auto",
    return_scores: bool = False,
) -> tuple[float, float] | tuple[float, float, dict[str, Any]]:
    """Thresholds (prob, nms) that maximise the mean accuracy over ``iou_threshs``.

    For each ``nms`` in ``nms_threshs`` a golden-section search over ``prob`` in
    ``prob_range`` (to width ``tol``) maximises the mean over ``iou_threshs`` of the pooled
    accuracy TP / (TP + FP + FN) (``matching_dataset``) of the instances predicted on the
    validation images. The default pair (0.5, 0.4) is scored too and wins ties, so the result is
    never worse than the defaults on these images. Predictions are computed once; only NMS runs
    per candidate.

    Parameters
    ----------
    model : StarModel
    images_val, labels_val : sequences of 2D arrays
        Normalised validation images and their instance labels.
    nms_threshs : sequence of float
        NMS thresholds to try, each in (0, 1).
    iou_threshs : sequence of float
        IoU thresholds the accuracy is averaged over.
    prob_range : (float, float)
        Search interval for the probability threshold, within (0, 1).
    tol : float
        Final interval width of the golden-section search.
    device : str or torch.device
        Device for the prediction.
    return_scores : bool
        Also return a report dict (every scored candidate, the best and the default score).

    Returns
    -------
    (prob, nms) or (prob, nms, report)

    Raises
    ------
    ValueError
        Mismatched images/labels or thresholds outside (0, 1).
    """
    from .model import DEFAULT_THRESHOLDS

    imgs, lbls = _check_pairs(images_val, labels_val)
    nms_list = [float(v) for v in nms_threshs]
    iou_list = [float(v) for v in iou_threshs]
    for name, vals in (("nms_threshs", nms_list), ("iou_threshs", iou_list)):
        if not vals or any(not 0.0 < v < 1.0 for v in vals):
            raise ValueError(f"{name}: expected values in (0, 1); got {vals}")
    lo, hi = _range_pair(prob_range, "prob_range", 0.0)
    if not (0.0 < lo < hi < 1.0):
        raise ValueError(f"prob_range: expected 0 < low < high < 1; got {prob_range!r}")
    if not (isinstance(tol, int | float) and tol > 0):
        raise ValueError(f"tol: expected a positive number; got {tol!r}")

    preds = [model.predict_grid(im[None], device=device) for im in imgs]
    cache: dict[tuple[float, float], float] = {}

    def score(prob_t: float, nms_t: float) -> float:
        key = (round(prob_t, 6), round(nms_t, 6))
        if key not in cache:
            inst = [
                instances_from_prediction(
                    p[0],
                    d[0],
                    prob_thresh=key[0],
                    nms_thresh=key[1],
                    grid=model.grid,
                    shape=im.shape,
                )
                for (p, d), im in zip(preds, imgs, strict=True)
            ]
            cache[key] = float(
                np.mean([matching_dataset(lbls, inst, thresh=t).accuracy for t in iou_list])
            )
            logger.debug("thresholds prob %.4f nms %.2f: score %.4f", key[0], key[1], cache[key])
        return cache[key]

    default = (DEFAULT_THRESHOLDS["prob"], DEFAULT_THRESHOLDS["nms"])
    best = (score(*default), default[0], default[1])
    for nms_t in nms_list:
        a, b = lo, hi
        c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        fc, fd = score(c, nms_t), score(d, nms_t)
        while b - a > tol:
            if fc >= fd:
                b, d, fd = d, c, fc
                c = b - _GOLDEN * (b - a)
                fc = score(c, nms_t)
            else:
                a, c, fc = c, d, fd
                d = a + _GOLDEN * (b - a)
                fd = score(d, nms_t)
    for (p_t, n_t), s in cache.items():
        if s > best[0]:
            best = (s, p_t, n_t)
    report = {
        "measure": "mean accuracy over IoU thresholds",
        "iou_threshs": iou_list,
        "nms_threshs": nms_list,
        "prob_range": [lo, hi],
        "n_images": len(imgs),
        "best_score": best[0],
        "default_score": cache[(round(default[0], 6), round(default[1], 6))],
        "candidates": [
            {"prob": p_t, "nms": n_t, "score": s} for (p_t, n_t), s in sorted(cache.items())
        ],
    }
    logger.info(
        "optimize_thresholds: prob %.4f, nms %.2f, score %.4f (defaults %.4f) from %d candidates",
        best[1],
        best[2],
        best[0],
        report["default_score"],
        len(cache),
    )
    if return_scores:
        return best[1], best[2], report
    return best[1], best[2]
