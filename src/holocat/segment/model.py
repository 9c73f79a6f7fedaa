"""The star-convex 2D network (a StarDist-style U-Net in PyTorch) and its model folder.

``StarUNet`` is the network of SCIENCE.md §4: a stem of two 3×3 convolutions + 2×2 max pooling
per factor 2 of the output ``grid`` (default (2, 2): outputs at half resolution), a U-Net of
``depth`` levels (default 3) with ``base_filters`` (default 32) doubling per level, two 3×3
convolutions + ReLU per level, no batch norm, one extra 3×3 convolution to 128 channels, then
1×1 heads: one object-probability logit (sigmoid) and ``n_rays`` ray distances (softplus, so
distances are >= 0), in pixels of the full-resolution image.

``StarModel`` bundles the network with its ``config`` (architecture, normalisation percentiles,
patch size, training summary) and ``thresholds`` ({"prob", "nms"}); it predicts on batches of
normalised 2D images on any device and reads/writes a model folder::

    <folder>/weights.pt        state_dict (tensors only; loaded with weights_only=True)
    <folder>/config.json       architecture + normalisation + training summary
    <folder>/thresholds.json   {"prob": p, "nms": t, "optimization": {...}}

Predictions are aligned like StarDist's: grid output (i, j) belongs to image pixel
(g_row i, g_col j). ``predict`` interpolates the grid outputs bilinearly back to every pixel
(pixel y sits at grid coordinate y / g_row); distances need no rescaling because they are
predicted in full-resolution pixels.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from holocat._device import import_torch, resolve_device

torch = import_torch()  # the network module needs torch (the 'segment' extra)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MODEL_FORMAT",
    "StarModel",
    "StarUNet",
    "default_config",
    "default_model_path",
    "load_default_model",
    "receptive_field",
]

logger = logging.getLogger(__name__)

#: Identifier written to config.json["format"].
MODEL_FORMAT = "holocat-star2d"
_FORMAT_VERSION = 1
#: Thresholds used when a model folder has none (or invalid ones): SCIENCE.md §4 defaults.
DEFAULT_THRESHOLDS = {"prob": 0.5, "nms": 0.4}
_ENV_MODEL_DIR = "HOLOCAT_MODEL_DIR"
_DEFAULT_MODEL_NAME = "holocat-star2d"
_ARCH_KEYS = ("n_rays", "grid", "base_filters", "depth", "n_conv_per_level", "conv_after_unet")


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


def default_config(**overrides: Any) -> dict[str, Any]:
    """A model configuration: SCIENCE.md §4 defaults, updated with ``overrides``.

    Keys: ``n_rays`` (32; a multiple of 4 so the 8 dihedral augmentations permute rays),
    ``grid`` ([2, 2]; powers of 2), ``base_filters`` (32), ``depth`` (3), ``n_conv_per_level``
    (2), ``conv_after_unet`` (128; 0 = none), ``normalize`` ({"low_pct": 1.0,
    "high_pct": 99.8}: percentiles that map a volume to [0, 1] once, before prediction),
    ``patch_size`` ([256, 256]; training patches, multiples of ``2**depth * grid``) and
    ``training`` (None until trained: the training summary).

    Raises
    ------
    ValueError
        An unknown key or an invalid value (the message names the key).

    Examples
    --------
    >>> c = default_config(base_filters=16)
    >>> c["base_filters"], c["grid"], c["normalize"]
    (16, [2, 2], {'low_pct': 1.0, 'high_pct': 99.8})
    """
    config: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "format_version": _FORMAT_VERSION,
        "n_rays": 32,
        "grid": [2, 2],
        "base_filters": 32,
        "depth": 3,
        "n_conv_per_level": 2,
        "conv_after_unet": 128,
        "normalize": {"low_pct": 1.0, "high_pct": 99.8},
        "patch_size": [256, 256],
        "training": None,
    }
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"config: unknown key(s) {unknown}; expected some of {sorted(config)}")
    config.update(deepcopy(overrides))
    return _check_config(config)


def _int_at_least(value: Any, name: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise ValueError(f"config[{name!r}]: expected an int >= {lo}; got {value!r}")
    return int(value)


def _check_config(config: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate a configuration mapping; return a normalised copy (lists for pairs)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"{source}: expected a mapping; got {type(config).__name__}")
    missing = [k for k in (*_ARCH_KEYS, "normalize") if k not in config]
    if missing:
        raise ValueError(f"{source}: missing key(s) {missing}")
    c = dict(deepcopy(config))
    if c.get("format", MODEL_FORMAT) != MODEL_FORMAT:
        raise ValueError(
            f"{source}: expected format {MODEL_FORMAT!r}; got {c.get('format')!r} (not a "
            f"holocat star-convex model)"
        )
    c["format"] = MODEL_FORMAT
    c.setdefault("format_version", _FORMAT_VERSION)
    n_rays = _int_at_least(c["n_rays"], "n_rays", 4)
    if n_rays % 4:
        raise ValueError(f"config['n_rays']: expected a multiple of 4; got {n_rays}")
    c["n_rays"] = n_rays
    grid = c["grid"]
    if (
        not isinstance(grid, list | tuple)
        or len(grid) != 2
        or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 or g & (g - 1) for g in grid)
    ):
        raise ValueError(f"config['grid']: expected two powers of 2 (e.g. [2, 2]); got {grid!r}")
    c["grid"] = [int(g) for g in grid]
    c["base_filters"] = _int_at_least(c["base_filters"], "base_filters", 1)
    c["depth"] = _int_at_least(c["depth"], "depth", 0)
    c["n_conv_per_level"] = _int_at_least(c["n_conv_per_level"], "n_conv_per_level", 1)
    c["conv_after_unet"] = _int_at_least(c["conv_after_unet"], "conv_after_unet", 0)
    norm = c["normalize"]
    if not isinstance(norm, Mapping) or set(norm) != {"low_pct", "high_pct"}:
        raise ValueError(
            f"config['normalize']: expected {{'low_pct': float, 'high_pct': float}}; got {norm!r}"
        )
    lo, hi = float(norm["low_pct"]), float(norm["high_pct"])
    if not 0.0 <= lo < hi <= 100.0:
        raise ValueError(
            f"config['normalize']: expected 0 <= low_pct < high_pct <= 100; got {norm!r}"
        )
    c["normalize"] = {"low_pct": lo, "high_pct": hi}
    div = [2 ** c["depth"] * g for g in c["grid"]]
    patch = c.get("patch_size", [256, 256])
    if (
        not isinstance(patch, list | tuple)
        or len(patch) != 2
        or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in patch)
        or any(p % d for p, d in zip(patch, div, strict=True))
    ):
        raise ValueError(
            f"config['patch_size']: expected two positive multiples of 2**depth * grid = {div}; "
            f"got {patch!r}"
        )
    c["patch_size"] = [int(p) for p in patch]
    c.setdefault("training", None)
    return c


def _input_interval(lo: int, hi: int, c: Mapping[str, Any], axis: int) -> tuple[int, int]:
    """Input pixels [lo', hi'] that full-resolution outputs [lo, hi] depend on (one axis).

    Follows the network backwards: bilinear interpolation from the grid (pixel y uses grid
    points y // g and, unless y % g == 0, the next one), 3×3 convolutions (±1), nearest
    upsampling (// 2), skip concatenations (union), 2×2 max pooling (×2, +1) and the stem.
    """
    n, depth, g = c["n_conv_per_level"], c["depth"], c["grid"][axis]
    a, b = lo // g, hi // g + (1 if hi % g else 0)
    if c["conv_after_unet"]:
        a, b = a - 1, b + 1

    def level(lev: int, a: int, b: int) -> tuple[int, int]:
        # decoder block at level `lev` output -> encoder block at level `lev` input
        if lev == depth:  # bottom block
            return a - n, b + n
        a, b = a - n, b + n  # decoder convolutions
        skip = (a - n, b + n)  # skip branch through the encoder convolutions
        da, db = level(lev + 1, a // 2, b // 2)  # nearest upsampling, deeper levels
        deep = (2 * da - n, 2 * db + 1 + n)  # max pooling, encoder convolutions
        return min(skip[0], deep[0]), max(skip[1], deep[1])

    a, b = level(0, a, b)
    # stem stages (one per factor 2 of the larger grid entry), last first: pooling, convolutions
    n_stages = max(c["grid"]).bit_length() - 1
    for stage in reversed(range(n_stages)):
        p = 2 if g > 2**stage else 1
        a, b = p * a - n, p * b + p - 1 + n
    return a, b


def receptive_field(config: Mapping[str, Any]) -> tuple[int, int]:
    """Receptive field (rows, cols) of a full-resolution output pixel, symmetric, in pixels.

    ``2 r + 1`` where r is the farthest reach, over every output position, of the input pixels
    an output depends on through the network and the bilinear interpolation from the grid
    (exact interval arithmetic, ``_input_interval``; pooling alignment makes the reach differ
    between positions and sides). An input pixel farther than ``rf // 2`` from an output pixel,
    along that axis, cannot change it: a slab halo of ``rf // 2`` is enough.

    Examples
    --------
    >>> receptive_field(default_config())  # the SCIENCE.md §4 network
    (217, 217)
    """
    c = _check_config(config)
    out = []
    for axis in (0, 1):
        period = 2 ** c["depth"] * c["grid"][axis]
        reach = 0
        for y in range(2 * period):
            lo, hi = _input_interval(y, y, c, axis)
            reach = max(reach, y - lo, hi - y)
        out.append(2 * reach + 1)
    return int(out[0]), int(out[1])


# --------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------


class StarUNet(torch.nn.Module):
    """The star-convex U-Net; see the module docstring.

    Parameters
    ----------
    n_rays : int
        Number of rays (a multiple of 4).
    base_filters : int
        Filters of the first level; doubled per level.
    depth : int
        Number of U-Net levels (poolings).
    grid : (int, int)
        Output subsampling per axis (powers of 2).
    n_conv_per_level : int
        3×3 convolutions (+ ReLU) per level.
    conv_after_unet : int
        Channels of the extra 3×3 convolution after the U-Net (0 = none).
    seed : int
        Seed of the weight initialisation (a ``torch.Generator``; the global RNG is not used).

    Examples
    --------
    >>> net = StarUNet(n_rays=8, base_filters=4, depth=2, conv_after_unet=8)
    >>> logit, dist = net(torch.zeros(1, 1, 32, 32))
    >>> tuple(logit.shape), tuple(dist.shape), bool((dist >= 0).all())
    ((1, 1, 16, 16), (1, 8, 16, 16), True)
    """

    def __init__(
        self,
        *,
        n_rays: int = 32,
        base_filters: int = 32,
        depth: int = 3,
        grid: tuple[int, int] | list[int] = (2, 2),
        n_conv_per_level: int = 2,
        conv_after_unet: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__()
        grid = list(grid) if isinstance(grid, list | tuple) else grid
        c = default_config(
            n_rays=n_rays,
            base_filters=base_filters,
            depth=depth,
            grid=grid,
            n_conv_per_level=n_conv_per_level,
            conv_after_unet=conv_after_unet,
            patch_size=[2**depth * g for g in grid] if isinstance(grid, list) else grid,
        )
        nn = torch.nn
        self.n_rays = c["n_rays"]
        self.grid = (c["grid"][0], c["grid"][1])
        self.depth = c["depth"]
        f, n = c["base_filters"], c["n_conv_per_level"]

        def block(cin: int, couts: list[int]) -> torch.nn.Sequential:
            layers: list[torch.nn.Module] = []
            for cout in couts:
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
            return nn.Sequential(*layers)

        # built on the meta device (no draws from the global RNG), then initialised from `seed`
        with torch.device("meta"):
            stem: list[torch.nn.Module] = []
            cin, pooled = 1, [1, 1]
            while pooled != list(self.grid):
                pool = tuple(2 if g > p else 1 for g, p in zip(self.grid, pooled, strict=True))
                pooled = [p * q for p, q in zip(pooled, pool, strict=True)]
                stem += [block(cin, [f] * n), nn.MaxPool2d(pool)]
                cin = f
            self.stem = nn.Sequential(*stem)
            self.down = nn.ModuleList()
            for level in range(self.depth):
                self.down.append(block(cin, [f * 2**level] * n))
                cin = f * 2**level
            self.pool = nn.MaxPool2d(2)
            mid = f * 2 ** max(0, self.depth - 1)
            self.bottom = block(cin, [f * 2**self.depth] * (n - 1) + [mid])
            cin = mid
            self.up = nn.ModuleList()
            for level in reversed(range(self.depth)):
                outs = [f * 2**level] * (n - 1) + [f * 2 ** max(0, level - 1)]
                self.up.append(block(cin + f * 2**level, outs))
                cin = outs[-1]
            if c["conv_after_unet"]:
                self.features: torch.nn.Module = block(cin, [c["conv_after_unet"]])
                cin = c["conv_after_unet"]
            else:
                self.features = nn.Identity()
            self.prob_head = nn.Conv2d(cin, 1, 1)
            self.dist_head = nn.Conv2d(cin, self.n_rays, 1)
        self.to_empty(device="cpu")
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int = 0) -> None:
        """Kaiming-normal convolutions, zero biases, small heads; drawn with ``seed``."""
        gen = torch.Generator().manual_seed(int(seed))
        nn = torch.nn
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
                    nn.init.zeros_(m.bias)
            nn.init.normal_(self.prob_head.weight, std=0.01, generator=gen)
            nn.init.normal_(self.dist_head.weight, std=0.01, generator=gen)

    def forward(
        self, x: torch.Tensor, with_dist: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 1, H, W), H and W multiples of ``2**depth * grid`` -> probability logit
        (B, 1, H/g, W/g) and distances (B, n_rays, H/g, W/g) (None if not ``with_dist``)."""
        x = self.stem(x)
        skips = []
        for level in self.down:
            x = level(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for level, skip in zip(self.up, reversed(skips), strict=True):
            x = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            x = level(torch.cat([x, skip], dim=1))
        x = self.features(x)
        logit = self.prob_head(x)
        if not with_dist:
            return logit, None
        return logit, torch.nn.functional.softplus(self.dist_head(x))


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


def _check_thresholds(thr: Any, source: str) -> dict[str, float]:
    """Thresholds in (0, 1) or the defaults (with a warning), like StarDist's model loading."""
    out = dict(DEFAULT_THRESHOLDS)
    if not isinstance(thr, Mapping):
        logger.warning("%s: no thresholds mapping; using defaults %s", source, out)
        return out
    for key in ("prob", "nms"):
        v = thr.get(key)
        ok = (
            isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and 0.0 < v < 1.0
        )
        if ok:
            out[key] = float(v)
        else:
            logger.warning(
                "%s: threshold %r = %r is not in (0, 1); using the default %s",
                source,
                key,
                v,
                DEFAULT_THRESHOLDS[key],
            )
    return out


class StarModel:
    """A trained (or fresh) star-convex network with its configuration and thresholds.

    Parameters
    ----------
    net : torch.nn.Module
        A ``StarUNet`` whose architecture matches ``config``.
    config : mapping
        See :func:`default_config`.
    thresholds : mapping, optional
        {"prob": float, "nms": float} in (0, 1); default :data:`DEFAULT_THRESHOLDS`.
    threshold_report : mapping, optional
        How the thresholds were found (scores per candidate); saved to thresholds.json.

    Attributes
    ----------
    net, config, thresholds, threshold_report

    Examples
    --------
    >>> m = StarModel.from_config(default_config(n_rays=8, base_filters=4, depth=1,
    ...                                          conv_after_unet=0, patch_size=[16, 16]))
    >>> prob, dist = m.predict(np.zeros((2, 20, 24), np.float32), device="cpu")
    >>> prob.shape, dist.shape, m.thresholds
    ((2, 20, 24), (2, 20, 24, 8), {'prob': 0.5, 'nms': 0.4})
    """

    def __init__(
        self,
        net: Any,
        config: Mapping[str, Any],
        thresholds: Mapping[str, float] | None = None,
        *,
        threshold_report: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(net, torch.nn.Module):
            raise TypeError(f"net: expected a torch.nn.Module; got {type(net).__name__}")
        self.config = _check_config(config)
        if getattr(net, "n_rays", self.config["n_rays"]) != self.config["n_rays"]:
            raise ValueError(
                f"net: mismatched ray count: the network predicts {net.n_rays} rays, "
                f"config['n_rays'] = {self.config['n_rays']}"
            )
        self.net = net
        self.thresholds = (
            dict(DEFAULT_THRESHOLDS)
            if thresholds is None
            else _check_thresholds(thresholds, "thresholds")
        )
        self.threshold_report = dict(threshold_report) if threshold_report else None

    # ---------------------------------------------------------------- construction, I/O
    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None, *, seed: int = 0) -> StarModel:
        """A model with freshly initialised weights (drawn with ``seed``)."""
        c = default_config() if config is None else _check_config(config)
        net = StarUNet(**{k: c[k] for k in _ARCH_KEYS}, seed=seed)
        return cls(net, c)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> StarModel:
        """Load a model folder (weights.pt, config.json, optional thresholds.json).

        Raises
        ------
        FileNotFoundError
            The folder, config.json or weights.pt does not exist.
        ValueError
            config.json is not valid JSON or not a holocat star model, the weights do not fit
            the configured architecture ("mismatched ray count" when the distance head's output
            channels differ from ``n_rays``).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"model folder {str(folder)!r} does not exist")
        cfg_path = folder / "config.json"
        w_path = folder / "weights.pt"
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise FileNotFoundError(f"model folder {str(folder)!r}: missing {p.name}")
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{cfg_path}: not valid JSON ({exc})") from exc
        config = _check_config(config, source=str(cfg_path))
        try:
            state = torch.load(w_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"{w_path}: cannot be read as a weights-only state_dict ({exc})"
            ) from exc
        if not isinstance(state, Mapping) or "dist_head.weight" not in state:
            raise ValueError(f"{w_path}: expected a StarUNet state_dict with 'dist_head.weight'")
        n_out = int(state["dist_head.weight"].shape[0])
        if n_out != config["n_rays"]:
            raise ValueError(
                f"{folder}: mismatched ray count: weights.pt predicts {n_out} rays, "
                f"config.json n_rays = {config['n_rays']}"
            )
        net = StarUNet(**{k: config[k] for k in _ARCH_KEYS})
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"{w_path}: weights do not fit the architecture in config.json ({exc})"
            ) from exc
        thr_path = folder / "thresholds.json"
        thresholds: Any = None
        report = None
        if thr_path.is_file():
            try:
                raw = json.loads(thr_path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{thr_path}: not valid JSON ({exc})") from exc
            thresholds = raw
            report = raw.get("optimization") if isinstance(raw, Mapping) else None
        else:
            logger.warning("%s: no thresholds.json; using defaults %s", folder, DEFAULT_THRESHOLDS)
        model = cls(net, config, _check_thresholds(thresholds, str(thr_path)))
        model.threshold_report = report
        logger.info(
            "loaded star model %s: %d rays, grid %s, thresholds %s",
            folder,
            config["n_rays"],
            config["grid"],
            model.thresholds,
        )
        return model

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the model folder atomically; returns its path.

        The files are written to a temporary folder beside ``folder`` that is then renamed;
        an interrupted save leaves no ``folder``. An existing ``folder`` is replaced only with
        ``overwrite=True`` (else ``FileExistsError``).
        """
        folder = Path(folder)
        if folder.exists() and not overwrite:
            raise FileExistsError(
                f"model folder {str(folder)!r} exists; pass overwrite=True to replace it"
            )
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
            state = {k: v.detach().to("cpu").clone() for k, v in self.net.state_dict().items()}
            torch.save(state, tmp / "weights.pt")
            (tmp / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")
            thr: dict[str, Any] = dict(self.thresholds)
            if self.threshold_report:
                thr["optimization"] = self.threshold_report
            (tmp / "thresholds.json").write_text(json.dumps(thr, indent=2) + "\n")
            if folder.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
                old.rmdir()
                os.rename(folder, old)
                try:
                    os.rename(tmp, folder)
                except OSError:
                    os.rename(old, folder)  # put the previous model back
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                try:
                    os.rename(tmp, folder)
                except OSError as exc:
                    raise FileExistsError(
                        f"model folder {str(folder)!r} appeared while saving; not replaced"
                    ) from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("saved star model to %s", folder)
        return folder

    # ---------------------------------------------------------------- properties
    @property
    def n_rays(self) -> int:
        """Number of rays."""
        return int(self.config["n_rays"])

    @property
    def grid(self) -> tuple[int, int]:
        """Output subsampling (rows, cols)."""
        return int(self.config["grid"][0]), int(self.config["grid"][1])

    @property
    def div_by(self) -> tuple[int, int]:
        """Image sizes are padded to multiples of this (2**depth * grid); slab origins aligned
        to it give predictions identical to those of the whole image."""
        d = 2 ** int(self.config["depth"])
        return d * self.grid[0], d * self.grid[1]

    @property
    def receptive_field_px(self) -> int:
        """Receptive field (pixels, symmetric, larger axis) of a full-resolution output: an input
        pixel farther than ``receptive_field_px // 2`` cannot change it, so a slab halo of
        ``receptive_field_px // 2`` (origins aligned to ``div_by``) makes the core's prediction
        equal to that of the whole image."""
        return max(receptive_field(self.config))

    def set_thresholds(
        self, prob: float, nms: float, *, report: Mapping[str, Any] | None = None
    ) -> None:
        """Set the instance thresholds (both in (0, 1)) and, optionally, how they were found."""
        for name, v in (("prob", prob), ("nms", nms)):
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float | np.floating)
                or not 0.0 < float(v) < 1.0
            ):
                raise ValueError(f"{name}: expected a threshold in (0, 1); got {v!r}")
        self.thresholds = {"prob": float(prob), "nms": float(nms)}
        self.threshold_report = dict(report) if report else None

    # ---------------------------------------------------------------- prediction
    def _check_images(self, images: Any) -> np.ndarray:
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images: expected a numpy array; got {type(images).__name__}")
        if images.ndim != 3:
            raise ValueError(
                f"images: expected a (B, H, W) stack of normalised 2D images (use images[None] "
                f"for one image); got shape {images.shape}"
            )
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(
                f"images: expected a float array normalised to ~[0, 1]; got dtype {images.dtype}"
            )
        if 0 in images.shape:
            raise ValueError(f"images: expected a non-empty stack; got shape {images.shape}")
        if not np.all(np.isfinite(images)):
            raise ValueError("images: expected finite values; found NaN or inf")
        return images

    def _batches(
        self,
        images: np.ndarray,
        *,
        device: Any,
        batch_size: int,
        amp: bool | None,
        want_dist: bool,
        upsample: bool,
    ):
        """Yield (start, prob, dist) per batch; grid-resolution or upsampled, cropped."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1; got {batch_size!r}")
        dev = resolve_device(device)
        if amp is None:
            amp = dev.type == "cuda"
        n, h, w = images.shape
        dy, dx = self.div_by
        gy, gx = self.grid
        hp, wp = -(-h // dy) * dy, -(-w // dx) * dx
        hg, wg = -(-h // gy), -(-w // gx)
        net = self.net.to(dev).eval()
        for start in range(0, n, batch_size):
            chunk = images[start : start + batch_size].astype(np.float32, copy=False)
            if (hp, wp) != (h, w):
                modes = ("reflect" if h > 1 else "edge", "reflect" if w > 1 else "edge")
                chunk = np.pad(chunk, ((0, 0), (0, hp - h), (0, 0)), mode=modes[0])
                chunk = np.pad(chunk, ((0, 0), (0, 0), (0, wp - w)), mode=modes[1])
            x = torch.from_numpy(np.ascontiguousarray(chunk))[:, None].to(dev)
            with torch.inference_mode():
                with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bool(amp)):
                    logit, dist = net(x, with_dist=want_dist)
                prob = torch.sigmoid(logit.float())
                dist = dist.float() if dist is not None else None
                if upsample:
                    prob = _upsample(prob, (gy, gx))[:, 0, :h, :w]
                    if dist is not None:
                        dist = _upsample(dist, (gy, gx))[:, :, :h, :w]
                else:
                    prob = prob[:, 0, :hg, :wg]
                    if dist is not None:
                        dist = dist[:, :, :hg, :wg]
                prob_np = prob.cpu().numpy()
                dist_np = dist.permute(0, 2, 3, 1).cpu().numpy() if dist is not None else None
            yield start, prob_np, dist_np

    def predict(
        self,
        images: NDArray[np.floating],
        *,
        device: Any = "auto",
        batch_size: int = 8,
        amp: bool | None = None,
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Object probability and ray distances at every pixel of normalised images.

        Parameters
        ----------
        images : ndarray of float, shape (B, H, W)
            Images normalised to ~[0, 1] with ``config["normalize"]`` percentiles (any H, W:
            padded by reflection to multiples of ``div_by`` and cropped back).
        device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device
            "auto" picks CUDA when available.
        batch_size : int
            Images per forward pass.
        amp : bool or None
            bfloat16 autocast; None = on for CUDA, off for CPU.

        Returns
        -------
        prob : ndarray of float32, shape (B, H, W), in [0, 1]
        dist : ndarray of float32, shape (B, H, W, n_rays), >= 0, in pixels

        Raises
        ------
        TypeError, ValueError
            ``images`` not a (B, H, W) float array, NaN/inf, bad ``batch_size`` or ``device``.
        RuntimeError
            ``device="cuda"`` without a GPU.
        """
        imgs = self._check_images(images)
        b, h, w = imgs.shape
        prob = np.empty((b, h, w), np.float32)
        dist = np.empty((b, h, w, self.n_rays), np.float32)
        for s, p, d in self._batches(
            imgs, device=device, batch_size=batch_size, amp=amp, want_dist=True, upsample=True
        ):
            prob[s : s + len(p)] = p
            dist[s : s + len(p)] = d
        return prob, dist

    def predict_probability(
        self,
        images: NDArray[np.floating],
        *,
        device: Any = "auto",
        batch_size: int = 8,
        amp: bool | None = None,
    ) -> NDArray[np.float32]:
        """Object probability (B, H, W) in [0, 1] only (no distances); see :meth:`predict`."""
        imgs = self._check_images(images)
        prob = np.empty(imgs.shape, np.float32)
        for s, p, _ in self._batches(
            imgs, device=device, batch_size=batch_size, amp=amp, want_dist=False, upsample=True
        ):
            prob[s : s + len(p)] = p
        return prob

    def predict_grid(
        self,
        images: NDArray[np.floating],
        *,
        device: Any = "auto",
        batch_size: int = 8,
        amp: bool | None = None,
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Raw grid-resolution outputs: prob (B, ceil(H/g_r), ceil(W/g_c)) and dist (..., n_rays).

        Output (i, j) belongs to image pixel (g_r i, g_c j); pass ``grid=model.grid`` to
        :func:`holocat.segment.star.star_nms` / ``instances_from_prediction``.
        """
        imgs = self._check_images(images)
        probs, dists = [], []
        for _, p, d in self._batches(
            imgs, device=device, batch_size=batch_size, amp=amp, want_dist=True, upsample=False
        ):
            probs.append(p)
            dists.append(d)
        return np.concatenate(probs), np.concatenate(dists)

    def predict_instances(
        self,
        images: NDArray[np.floating],
        *,
        prob_thresh: float | None = None,
        nms_thresh: float | None = None,
        device: Any = "auto",
        batch_size: int = 8,
        amp: bool | None = None,
    ) -> NDArray[np.uint32]:
        """Instance labels (B, H, W) uint32: NMS on the grid outputs with the model's thresholds
        (or the given ones), like StarDist's ``predict_instances``."""
        from .star import instances_from_prediction

        imgs = self._check_images(images)
        pt = self.thresholds["prob"] if prob_thresh is None else prob_thresh
        nt = self.thresholds["nms"] if nms_thresh is None else nms_thresh
        out = np.zeros(imgs.shape, np.uint32)
        for s, p, d in self._batches(
            imgs, device=device, batch_size=batch_size, amp=amp, want_dist=True, upsample=False
        ):
            for k in range(len(p)):
                out[s + k] = instances_from_prediction(
                    p[k],
                    d[k],
                    prob_thresh=pt,
                    nms_thresh=nt,
                    grid=self.grid,
                    shape=imgs.shape[1:],
                )
        return out


def _upsample(t: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Bilinear interpolation from grid (h, w) to (g_r h, g_c w) with pixel y at grid y / g_r."""
    gy, gx = grid
    if (gy, gx) == (1, 1):
        return t
    h, w = t.shape[-2:]
    size = (gy * (h - 1) + 1, gx * (w - 1) + 1)
    if h == 1 or w == 1:
        up = torch.nn.functional.interpolate(t, size=size, mode="nearest")
    else:
        up = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=True)
    return torch.nn.functional.pad(up, (0, gx - 1, 0, gy - 1), mode="replicate")


# --------------------------------------------------------------------------------------------
# the shipped default model
# --------------------------------------------------------------------------------------------


def default_model_path() -> Path:
    """Folder of the shipped default model.

    ``$HOLOCAT_MODEL_DIR`` (the model folder itself) when set, else
    ``<repository>/resources/models/holocat-star2d`` found from the installed package
    (``Path(holocat.__file__).parents[2]``, an editable/source install).

    Raises
    ------
    FileNotFoundError
        Neither location holds a model folder; the message names both.
    """
    import holocat

    env = os.environ.get(_ENV_MODEL_DIR)
    repo = Path(holocat.__file__).resolve().parents[2] / "resources" / "models"
    candidate = repo / _DEFAULT_MODEL_NAME
    if env:
        path = Path(env)
        if path.is_dir():
            return path
        raise FileNotFoundError(
            f"${_ENV_MODEL_DIR}={env!r} is not a model folder (and it overrides the shipped "
            f"default {str(candidate)!r}); unset it or point it to a folder with weights.pt"
        )
    if candidate.is_dir():
        return candidate
    raise FileNotFoundError(
        f"no default star model: {str(candidate)!r} does not exist and ${_ENV_MODEL_DIR} is not "
        f"set; build it with scripts/train_default_model.py or set {_ENV_MODEL_DIR}"
    )


def load_default_model() -> StarModel:
    """``StarModel.load(default_model_path())``."""
    return StarModel.load(default_model_path())
