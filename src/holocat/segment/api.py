"""``segment_volume``: the public segmentation entry point of ``DESIGN.md``.

It normalises a reconstructed volume once (percentiles of the whole volume, never per slice)
and segments it with the tri-planar star-convex route (``method="star"``, the default:
``holocat.segment.triplanar.star_segment`` with a 2D network) or the classical watershed
baseline (``method="watershed"``, ``holocat.segment.watershed.watershed_segment``). Both return
*solid* particle labels by default: crack voids inside a particle are 0, as the attribute stage
expects.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .normalize import _check_volume, normalize_intensity
from .stitch import drop_layers as _drop_layers
from .triplanar import _accepts_keyword, _predict_fn, star_segment
from .watershed import watershed_segment

__all__ = ["segment_volume"]

logger = logging.getLogger(__name__)

_WATERSHED_PARAMS = frozenset(
    {
        "threshold",
        "smooth_sigma_vox",
        "close_radius_vox",
        "min_distance_vox",
        "h_max_vox",
        "min_volume_vox",
        "compactness",
    }
)

_STAR_PARAMS = frozenset(
    {
        "fg_threshold",
        "seed_threshold",
        "seed_h",
        "refine_threshold",
        "refine_sigma_vox",
        "min_volume_vox",
        "batch_size",
        "planes",
        "fusion",
        "input_sigma_vox",
    }
)

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

#: Normalisation percentiles when neither the call nor the model's config gives them
#: (StarDist/CSBDeep's defaults, SCIENCE.md §4).
_DEFAULT_PCT = (1.0, 99.8)


def _default_model() -> Any:
    """``holocat.segment.model.load_default_model()``, with a clear error if unavailable."""
    try:
        from .model import load_default_model
    except ImportError as exc:
        raise ImportError(
            f"model: method='star' with model=None loads the default network through "
            f"holocat.segment.model.load_default_model, which could not be imported ({exc}); "
            f"install the 'segment' extra (torch), pass a model, or use method='watershed'"
        ) from exc
    return load_default_model()


def _load_model(folder: str | os.PathLike[str]) -> Any:
    """``StarModel.load(folder)`` with a clear error if the model module is unavailable."""
    try:
        from .model import StarModel
    except ImportError as exc:
        raise ImportError(
            f"model: loading the model folder {os.fspath(folder)!r} needs "
            f"holocat.segment.model.StarModel, which could not be imported ({exc})"
        ) from exc
    return StarModel.load(folder)


def _resolve_model(model: Any) -> Any:
    if model is None:
        model = _default_model()
    elif isinstance(model, str | os.PathLike):
        model = _load_model(model)
    try:
        _predict_fn(model)
    except TypeError:
        raise TypeError(
            f"model: expected None (the default model), a model folder path, a "
            f"holocat.segment.model.StarModel or any object with predict_probability(images); "
            f"got {type(model).__name__}"
        ) from None
    return model


def _percentiles(model: Any, low_pct: float | None, high_pct: float | None) -> tuple[float, float]:
    """Call arguments first, then the model's ``config["normalize"]``, then the defaults."""
    cfg = getattr(model, "config", None)
    norm = cfg.get("normalize", {}) if isinstance(cfg, dict) else {}
    norm = norm if isinstance(norm, dict) else {}
    low = low_pct if low_pct is not None else norm.get("low_pct", _DEFAULT_PCT[0])
    high = high_pct if high_pct is not None else norm.get("high_pct", _DEFAULT_PCT[1])
    return float(low), float(high)


def segment_volume(
    volume: ArrayLike,
    model: Any = None,
    *,
    device: Literal["auto", "cpu", "cuda"] | str = "auto",
    method: Literal["star", "watershed"] = "star",
    low_pct: float | None = None,
    high_pct: float | None = None,
    drop_layers: bool = True,
    **params: Any,
) -> NDArray[np.uint32]:
    """Segment the particles of a reconstructed volume (``DESIGN.md`` public entry point).

    The volume is normalised once (``normalize_intensity``: the ``low_pct`` percentile maps to
    0, ``high_pct`` to 1) and segmented by ``method``:

    * ``"star"`` (default): the 2D star-convex network on every xy, yz and xz section, mean
      probability, seeded watershed and intensity refinement (``star_segment``; SCIENCE.md §4,
      "Tri-planar 3D fusion"). The refinement threshold defaults to Otsu's threshold of the
      smoothed normalised volume, so the labels are solid like the baseline's.
    * ``"watershed"``: the classical distance-transform watershed (``watershed_segment``), on
      the CPU.

    Parameters
    ----------
    volume : ndarray, shape (nz, ny, nx)
        Reconstructed volume, float32 (any real dtype accepted) in arbitrary units, particles
        brighter than the matrix; finite and not constant.
    model : None, str, os.PathLike or object
        ``method="star"`` only. ``None``: ``holocat.segment.model.load_default_model()``; a
        path: ``StarModel.load(path)``; otherwise a ``StarModel`` or any object with
        ``predict_probability(images) -> prob`` (``ProbabilityPredictor``). Must be None for
        ``method="watershed"``.
    device : {"auto", "cpu", "cuda"} or "cuda:N"
        Compute device. ``"star"``: when the model's ``predict_probability`` takes a
        ``device`` keyword (a ``StarModel`` does), resolved by
        ``holocat._device.resolve_device`` ("auto" picks CUDA when present, an explicit
        "cuda" without a GPU raises) and passed on; a model without one runs where it runs,
        and only "auto" or "cpu" are accepted for it. ``"watershed"``: "auto" and "cpu".
    method : {"star", "watershed"}
        Segmentation route.
    drop_layers : bool
        Remove objects that span the field along two or more axes (the current collector;
        ``holocat.segment.drop_layers``).
    low_pct, high_pct : float or None
        Normalisation percentiles. ``None``: the model's ``config["normalize"]`` (``"star"``)
        when it has one, else 1.0 and 99.8.
    **params
        ``"star"``: keyword arguments of ``star_segment`` (``fg_threshold``,
        ``seed_threshold``, ``seed_h``, ``refine_threshold`` (normalised units, "otsu" or
        None for filled labels), ``refine_sigma_vox``, ``min_volume_vox``, ``batch_size``,
        ``planes``, ``fusion``, ``input_sigma_vox``). ``"watershed"``: keyword arguments of
        ``watershed_segment`` (``threshold`` in normalised units, ``smooth_sigma_vox``, ``close_radius_vox``,
        ``min_distance_vox``, ``h_max_vox``, ``min_volume_vox``, ``compactness``).

    Returns
    -------
    ndarray of uint32, shape (nz, ny, nx)
        Particle labels 1..n, 0 = background (matrix, pores, crack voids).

    Raises
    ------
    ValueError
        Unknown ``method`` or ``device``; ``device="cuda"`` with the watershed or with a model
        that takes no device; a ``model`` with the watershed; a bad ``volume`` (not 3-D, not
        numeric, empty, NaN/inf, constant) or parameter.
    TypeError
        An unknown keyword in ``params`` for the method, or an unusable ``model``.
    RuntimeError
        An explicit CUDA device that torch cannot see (``method="star"``).
    ImportError
        ``method="star"`` with a model to load while ``holocat.segment.model`` is unavailable.

    Examples
    --------
    >>> z, y, x = np.mgrid[:24, :24, :24]
    >>> vol = 0.3 + 0.7 * ((z - 12) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 < 49)
    >>> int(segment_volume(vol.astype(np.float32), method="watershed", device="cpu").max())
    1
    """
    if method not in ("star", "watershed"):
        raise ValueError(f"method: expected 'star' or 'watershed'; got {method!r}")
    allowed = _STAR_PARAMS if method == "star" else _WATERSHED_PARAMS
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise TypeError(
            f"params: unknown keyword(s) {unknown} for method {method!r}; expected a subset of "
            f"{sorted(allowed)}"
        )
    if method == "watershed":
        if model is not None:
            raise ValueError(
                f"model: method 'watershed' takes no model; pass model=None (got "
                f"{type(model).__name__})"
            )
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda'; got {device!r}")
        if device == "cuda":
            raise ValueError(
                "device: method 'watershed' runs on the CPU only; pass device='cpu' or 'auto' "
                "(got 'cuda')"
            )
        _check_volume(volume, name="volume", ndims=(3,))
        low, high = _percentiles(None, low_pct, high_pct)
        logger.info("segment_volume: method watershed on cpu, params %s", params)
        normalised = normalize_intensity(volume, low_pct=low, high_pct=high)
        labels = watershed_segment(normalised, **params)
        return _drop_layers(labels) if drop_layers else labels

    _check_volume(volume, name="volume", ndims=(3,))
    if isinstance(device, str) and not _DEVICE_PATTERN.match(device.strip().lower()):
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    predictor = _resolve_model(model)
    device_arg: str | None = None
    if _accepts_keyword(predictor.predict_probability, "device"):
        from holocat._device import resolve_device

        # RuntimeError for an explicit CUDA device that torch cannot see
        device_arg = str(resolve_device(device))
    elif not (isinstance(device, str) and device.strip().lower() in ("auto", "cpu")):
        raise ValueError(
            f"device: {type(predictor).__name__}.predict_probability takes no device keyword, "
            f"so device={device!r} cannot be honoured; pass device='auto' or 'cpu'"
        )
    low, high = _percentiles(predictor, low_pct, high_pct)
    logger.info(
        "segment_volume: method star with %s on %s, percentiles %.3g/%.3g, params %s",
        type(predictor).__name__,
        device_arg or "the model's own device",
        low,
        high,
        params,
    )
    normalised = normalize_intensity(volume, low_pct=low, high_pct=high)
    labels = star_segment(normalised, predictor, device=device_arg, **params)
    return _drop_layers(labels) if drop_layers else labels
