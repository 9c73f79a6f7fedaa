"""Static plan of one sample's jobs: sizes, slab and angle-chunk lists, artefact paths.

The plan is known when the DAG is built (``snakemake -n`` shows every job): for synthetic samples
it follows from the ``simulate`` config, for real scans from the raw-scan Zarr's metadata, read
without loading any pixel data.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SamplePlan", "chunk_range", "chunk_ranges", "code_digest", "sample_plan"]


def chunk_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into consecutive ``[start, stop)`` ranges of ``size`` (the last may be shorter).

    >>> chunk_ranges(10, 4)
    [(0, 4), (4, 8), (8, 10)]
    """
    if n < 1:
        raise ValueError(f"n: expected >= 1 items to split; got {n}")
    if size < 1:
        raise ValueError(f"size: expected a chunk size >= 1; got {size}")
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def chunk_range(n: int, size: int, index: int, *, flag: str = "--slab") -> tuple[int, int]:
    """The ``index``-th range of :func:`chunk_ranges`; a ValueError naming ``flag`` if out of range.

    >>> chunk_range(10, 4, 2)
    (8, 10)
    """
    ranges = chunk_ranges(n, size)
    if not 0 <= index < len(ranges):
        raise ValueError(
            f"{flag}: expected 0..{len(ranges) - 1} for {n} items in chunks of {size}; got {index}"
        )
    return ranges[index]


@dataclass(frozen=True)
class SamplePlan:
    """Sizes of one sample's artefacts and its fan-out."""

    n_angles: int
    detector_shape: tuple[int, int]
    volume_shape: tuple[int, int, int]
    slab_rows: int
    angle_chunk: int

    @property
    def angle_chunks(self) -> list[tuple[int, int]]:
        return chunk_ranges(self.n_angles, self.angle_chunk)

    @property
    def slabs(self) -> list[tuple[int, int]]:
        return chunk_ranges(self.volume_shape[0], self.slab_rows)

    @property
    def n_angle_chunks(self) -> int:
        return math.ceil(self.n_angles / self.angle_chunk)

    @property
    def n_slabs(self) -> int:
        return math.ceil(self.volume_shape[0] / self.slab_rows)


def sample_plan(config: dict, source: str) -> SamplePlan:
    """The plan of a sample whose ``source`` is ``"synthetic"`` or a raw-scan Zarr path.

    ``reconstruct.roi == "auto"`` crops the volume to the sample region the scan records
    (the phantom's shape for synthetic scans) and otherwise reconstructs the full field,
    (n_rows, n_det, n_det).
    """
    roi = config["reconstruct"]["roi"]
    if source == "synthetic":
        sim = config["simulate"]
        n_angles = int(sim["n_angles"])
        det = (int(sim["detector_shape"][0]), int(sim["detector_shape"][1]))
        shape = tuple(int(v) for v in sim["shape"])
        if det[0] < shape[0] or det[1] < max(shape[1], shape[2]):
            raise ValueError(
                f"config key 'simulate.detector_shape': {list(det)} must be at least the phantom's "
                f"(rows >= shape[0], columns >= shape[1:]) = {[shape[0], max(shape[1:])]}"
            )
        sample_shape = shape
    else:
        from holocat.io import read_raw_scan

        scan = read_raw_scan(source)
        n_angles = int(scan.data.shape[1])
        det = (int(scan.data.shape[2]), int(scan.data.shape[3]))
        hint = (scan.extra or {}).get("simulated", {}).get("sample_shape")
        sample_shape = tuple(int(v) for v in hint) if hint else None
    if roi == "auto" and sample_shape is not None:
        volume_shape = sample_shape
    else:
        volume_shape = (det[0], det[1], det[1])
    return SamplePlan(
        n_angles=n_angles,
        detector_shape=det,
        volume_shape=volume_shape,  # type: ignore[arg-type]
        slab_rows=int(config["slab_rows"]),
        angle_chunk=int(config["angle_chunk"]),
    )


def code_digest(*subpackages: str) -> str:
    """Short sha256 of the source files of holocat subpackages (and ``optics``, ``io``).

    Rules pass it as a param so that a change in the library code a rule calls reruns the rule.
    """
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for name in sorted({*subpackages, "io", "optics"}):
        base = root / name
        files = sorted(base.rglob("*.py")) if base.is_dir() else [root / f"{name}.py"]
        for f in files:
            if f.is_file():
                h.update(str(f.relative_to(root)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]
