"""Where the shipped assets live: ``resources/`` (δ/β table, pretrained model).

``resources/`` sits at the repository root (DESIGN.md) and is used from a source checkout or an
editable install. A site without the checkout (a wheel install, a container with the library
only) points ``HOLOCAT_RESOURCES`` at a copy of that folder.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RESOURCES_ENV", "resource_path"]

#: Environment variable that overrides the location of the ``resources/`` folder.
RESOURCES_ENV = "HOLOCAT_RESOURCES"


def _candidates() -> list[Path]:
    found = []
    env = os.environ.get(RESOURCES_ENV)
    if env:
        found.append(Path(env).expanduser())
    found.append(Path(__file__).resolve().parents[2] / "resources")
    return found


def resource_path(relative: str, *, must_exist: bool = True) -> Path:
    """Absolute path of ``relative`` inside the shipped ``resources/`` folder.

    Parameters
    ----------
    relative : str
        Path below ``resources/``, e.g. ``"materials.csv"`` or ``"models/holocat-star2d"``.
    must_exist : bool
        Raise when no candidate folder holds it (default); otherwise return the first
        candidate's path.

    Returns
    -------
    pathlib.Path
        ``$HOLOCAT_RESOURCES/<relative>`` when that variable is set and the path exists there,
        else ``<repository>/resources/<relative>``.

    Raises
    ------
    FileNotFoundError
        ``must_exist`` and the path is in none of the candidate folders (both are named).

    Examples
    --------
    >>> resource_path("materials.csv").name
    'materials.csv'
    """
    candidates = [c / relative for c in _candidates()]
    for path in candidates:
        if path.exists():
            return path
    if must_exist:
        tried = ", ".join(str(p) for p in candidates)
        raise FileNotFoundError(
            f"resources: {relative!r} not found (looked in {tried}); run from a holocat source "
            f"checkout or set {RESOURCES_ENV} to a copy of its resources/ folder"
        )
    return candidates[0]
