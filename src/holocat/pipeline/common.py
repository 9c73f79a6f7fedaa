"""Helpers shared by the stage drivers: JSON parts, provenance, parameter access."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from holocat.io import finalize_ome_zarr, provenance, write_json_atomic

__all__ = [
    "discard_manifest",
    "gather_store",
    "read_json",
    "require",
    "reset_scatter",
    "write_part",
]

log = logging.getLogger(__name__)


def read_json(path: str | Path) -> dict:
    """Read a JSON file written by a previous stage; a clear error if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (did the previous stage finish?)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete it and rerun its stage") from exc


def require(params: dict, key: str, where: str) -> Any:
    """``params[key]``, or a ValueError naming the parameter and the stage."""
    if key not in params:
        raise ValueError(f"{where}: missing parameter '{key}' in --params")
    return params[key]


def discard_manifest(store: str | Path) -> None:
    """Remove ``<store>.manifest.json`` before a store is rebuilt, so a half-rebuilt store never sits
    beside a manifest that claims it is complete."""
    Path(f"{store}.manifest.json").unlink(missing_ok=True)


def reset_scatter(store: str | Path) -> None:
    """Before an init job (re)creates a scattered store: drop its manifest and its part records.

    The parts (``<store>.parts/*.json``) certify regions written into *this* store; once the store
    is recreated they are stale, and Snakemake must see them missing, not up to date (an init whose
    JSON output is byte-identical to the last run's does not trigger reruns by itself).
    """
    import shutil

    discard_manifest(store)
    shutil.rmtree(f"{store}.parts", ignore_errors=True)


def write_part(out: str | Path, info: dict) -> None:
    """Record that one scattered job (a slab or an angle chunk) finished: written last, atomically."""
    write_json_atomic(Path(out), info)


def gather_store(store: str | Path, parts: list[str | Path], *, stage: str) -> Path:
    """Finalise a store written region by region: check every part, mark complete, write the manifest.

    Each part JSON names the region it wrote (``start``, ``stop`` along the first axis); the parts
    must tile the first axis exactly, so a missing or duplicated job is an error, not a silent hole.
    """
    store = Path(store)
    init = read_json(f"{store}.init.json")
    n = int(init["shape"][0])
    regions = sorted((int(p["start"]), int(p["stop"])) for p in (read_json(x) for x in parts))
    expected = 0
    for start, stop in regions:
        if start != expected:
            raise ValueError(
                f"{store}: parts do not tile axis 0: expected a region starting at {expected}, "
                f"got [{start}, {stop}); regions = {regions}"
            )
        expected = stop
    if expected != n:
        raise ValueError(
            f"{store}: parts cover [0, {expected}) of {n} along axis 0; regions = {regions}"
        )
    prov = provenance(
        stage, init.get("params", {}), inputs=[str(p) for p in parts], extra={"init": init}
    )
    finalize_ome_zarr(store, provenance=prov)
    log.info("finalised %s from %d parts", store, len(parts))
    return Path(f"{store}.manifest.json")
