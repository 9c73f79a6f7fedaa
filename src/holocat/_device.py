"""Compute-device resolution: the only place in holocat that asks what hardware exists.

Every GPU-capable function takes ``device="auto"`` and passes it through
:func:`resolve_device`; ``"auto"`` picks CUDA when torch sees a GPU (and logs the choice),
an explicit ``"cuda"`` without one raises instead of falling back silently. ASTRA's CUDA
algorithms kill the interpreter when no GPU is present, so every ASTRA call site asks
:func:`astra_cuda_available` first.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = ["resolve_device", "astra_cuda_available", "import_torch"]

logger = logging.getLogger(__name__)

_CUDA_PATTERN = re.compile(r"^cuda(?::(\d+))?$")


def import_torch() -> Any:
    """Import and return :mod:`torch`, or raise an ImportError naming the holocat extra.

    Returns
    -------
    module
        The :mod:`torch` module.

    Raises
    ------
    ImportError
        If torch is not installed (install ``holocat[tomo]`` or ``holocat[segment]``).
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is installed in the dev env
        raise ImportError(
            "torch is required for this operation; install the 'tomo' or 'segment' extra "
            "(pip install 'holocat[tomo]')"
        ) from exc
    return torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device request into a :class:`torch.device`.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA device 0 when torch sees a GPU, else the CPU; the choice is logged),
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, or a :class:`torch.device` of type cpu/cuda.

    Returns
    -------
    torch.device

    Raises
    ------
    TypeError
        If ``device`` is neither a string nor a :class:`torch.device`.
    ValueError
        If ``device`` is a string other than the forms above, or a device type other than
        cpu/cuda.
    RuntimeError
        If CUDA is requested explicitly but torch sees no GPU, or ``cuda:N`` names a GPU that
        does not exist.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    torch = import_torch()
    if isinstance(device, torch.device):
        kind, index = device.type, device.index
    elif isinstance(device, str):
        name = device.strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                chosen = torch.device("cuda", 0)
                logger.info("device='auto': using %s (%s)", chosen, torch.cuda.get_device_name(0))
            else:
                chosen = torch.device("cpu")
                logger.info("device='auto': no CUDA device visible to torch, using cpu")
            return chosen
        if name == "cpu":
            return torch.device("cpu")
        match = _CUDA_PATTERN.match(name)
        if match is None:
            raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
        kind = "cuda"
        index = None if match.group(1) is None else int(match.group(1))
    else:
        raise TypeError(
            f"device: expected a str ('auto', 'cpu', 'cuda', 'cuda:N') or torch.device; "
            f"got {type(device).__name__}"
        )

    if kind == "cpu":
        return torch.device("cpu")
    if kind != "cuda":
        raise ValueError(f"device: expected a cpu or cuda device; got {device!r}")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"device: {device!r} was requested but torch sees no CUDA device "
            "(use device='cpu' or 'auto')"
        )
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        raise RuntimeError(
            f"device: {device!r} was requested but only {count} CUDA device(s) are visible"
        )
    return torch.device("cuda", 0 if index is None else index)


def astra_cuda_available() -> bool:
    """Whether ASTRA's CUDA algorithms can run here.

    Imports :mod:`astra` lazily and returns ``astra.use_cuda()``. Calling an ASTRA CUDA
    algorithm without a GPU kills the interpreter (SIGFPE), so gate every such call on this.

    Returns
    -------
    bool
        ``astra.use_cuda()``; False when astra-toolbox is not installed (logged).
    """
    try:
        import astra
    except ImportError:
        logger.info("astra-toolbox is not installed; ASTRA CUDA algorithms unavailable")
        return False
    return bool(astra.use_cuda())
