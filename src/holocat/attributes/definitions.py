"""Names, units and one-line definitions of the particle attributes (Table S1, SCIENCE.md §5).

Table S1 of Li et al., Science 376, 517 (2022) lists 23 attributes (ID 18 is absent). holocat's
definitions follow SCIENCE.md §5: ``S`` is the solid (labelled) mask of a particle, cracks are
holes; ``F`` is ``S`` closed with a ball of radius ``r_close`` and 3D hole-filled; areas ``A(.)``
come from marching cubes on the mask smoothed with a Gaussian of sigma = 1 voxel at level 0.5.
Coordinates follow DESIGN.md: array axes (z, y, x), attribute X along the last axis, Z along the
first, lengths in micrometres, voxel centres at ``index * voxel_size_um``.

Two holocat decisions [H] beyond SCIENCE.md §5's table: ``Damage`` is the crack volume fraction
measured from the grey values with partial-volume correction (cracks 1-2 voxels thick vanish from
a segmented S after the reconstruction's blur, so the voxel count (|F| - |S|) / |F| of the table is
mostly noise there; it stays available as ``DamageVoxels``); RoughOuter / RoughInner are RMS about
the mean (the metrology Rq), which removes the half-voxel offset of voxel centres and the uniform
shrinkage of a smoothed curved surface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "TABLE_S1_COLUMNS",
    "LOCAL_COLUMNS",
    "NEIGHBOUR_COLUMNS",
    "EXTRA_COLUMNS",
    "COLUMNS",
    "ATTRIBUTE_UNITS",
    "ATTRIBUTE_DEFINITIONS",
]

#: The 23 attributes of Table S1 in table order (IDs 1-17 and 19-24).
TABLE_S1_COLUMNS: tuple[str, ...] = (
    "X",
    "Y",
    "Z",
    "Yaw",
    "Pitch",
    "Roll",
    "EDensity",
    "Homogeneity",
    "SurfaceInner",
    "SurfaceOuter",
    "Volume",
    "Damage",
    "Elongation",
    "Sphericity",
    "VSratio",
    "RoughInner",
    "RoughOuter",
    "Contact",
    "PDensity",
    "DistNearest",
    "ElongStd",
    "VolumeStd",
    "OrienIso",
)

#: Attributes that need all particles' centroids (computed at the gather).
NEIGHBOUR_COLUMNS: tuple[str, ...] = ("DistNearest", "ElongStd", "VolumeStd", "OrienIso")

#: Attributes computed from one particle's crop, its neighbourhood and the labels.
LOCAL_COLUMNS: tuple[str, ...] = tuple(
    c for c in TABLE_S1_COLUMNS if c not in NEIGHBOUR_COLUMNS and c != "PDensity"
)

#: Extra per-particle columns appended after the Table S1 attributes.
EXTRA_COLUMNS: tuple[str, ...] = (
    "DamageVoxels",
    "EDensityStd",
    "touches_border",
    "n_voxels",
    "near_spherical",
)

#: Full column order of :func:`holocat.attributes.extract`.
COLUMNS: tuple[str, ...] = ("label", *TABLE_S1_COLUMNS, *EXTRA_COLUMNS)

#: Unit of every column ("1" = dimensionless); "volume unit" is the unit of the input volume.
ATTRIBUTE_UNITS: dict[str, str] = {
    "label": "1",
    "X": "um",
    "Y": "um",
    "Z": "um",
    "Yaw": "deg",
    "Pitch": "deg",
    "Roll": "deg",
    "EDensity": "volume unit",
    "Homogeneity": "1/volume unit",
    "SurfaceInner": "um^2",
    "SurfaceOuter": "um^2",
    "Volume": "um^3",
    "Damage": "1",
    "Elongation": "1",
    "Sphericity": "1",
    "VSratio": "1",
    "RoughInner": "um",
    "RoughOuter": "um",
    "Contact": "1",
    "PDensity": "1",
    "DistNearest": "um",
    "ElongStd": "1",
    "VolumeStd": "um^3",
    "OrienIso": "1",
    "DamageVoxels": "1",
    "EDensityStd": "volume unit",
    "touches_border": "bool",
    "n_voxels": "voxels",
    "near_spherical": "bool",
}

#: One-line definition of every column.
ATTRIBUTE_DEFINITIONS: dict[str, str] = {
    "label": "particle id in the label volume",
    "X": "centroid of the filled particle F along the array's last axis (x), full-volume frame",
    "Y": "centroid of F along the array's middle axis (y)",
    "Z": "centroid of F along the array's first axis (z, electrode depth)",
    "Yaw": "ZYX Euler angle about z of R = [e1 e2 e1 x e2] from F's covariance (major axis first)",
    "Pitch": "ZYX Euler angle about y of F's principal-axis rotation R",
    "Roll": "ZYX Euler angle about x of F's principal-axis rotation R",
    "EDensity": "mean of the volume over the solid S (optionally S eroded by one voxel)",
    "Homogeneity": "1 / standard deviation (ddof=0) of the volume over the EDensity voxels",
    "SurfaceInner": "crack-wall area max(A(S) - A(F), 0) by marching cubes",
    "SurfaceOuter": "outer area A(F) by marching cubes on F smoothed with sigma = 1 voxel",
    "Volume": "|F| times the voxel volume",
    "Damage": (
        "crack volume fraction with partial-volume correction: sum over F's core (deeper than "
        "the damage margin) of (ref - v) / (ref - v_void), over |F|; ref = intact level of the "
        "core (mean over |v - ref| < 2 sigma, robust to the crack tail), v_void = void level "
        "(default: median of the surrounding matrix); "
        "cracks in the outer shell are not counted (lower bound)"
    ),
    "Elongation": "sqrt(lambda1 / lambda3) of F's coordinate covariance (longest / shortest axis)",
    "Sphericity": "36 pi Volume^2 / SurfaceOuter^3 (1 for a ball; Wadell's Psi cubed)",
    "VSratio": "Volume^(1/3) / (SurfaceOuter + SurfaceInner)^(1/2) (0.4547 for an intact ball)",
    "RoughInner": (
        "RMS (about the mean) signed distance from S's crack-wall voxels to the level-0.5 "
        "surface of S smoothed by a Gaussian of sigma_r; 0 without cracks"
    ),
    "RoughOuter": (
        "RMS (about the mean) signed distance from F's boundary voxels to the level-0.5 "
        "surface of F smoothed by a Gaussian of sigma_r"
    ),
    "Contact": "fraction of F's boundary voxels within the contact gap of another particle",
    "PDensity": "labelled fraction of a cube centred on the centroid, inside volume and sample",
    "DistNearest": "mean centroid distance to the 6 nearest particles",
    "ElongStd": "standard deviation (ddof=1) of Elongation over the 6 nearest particles",
    "VolumeStd": "standard deviation (ddof=1) of Volume over the 6 nearest particles",
    "OrienIso": "nematic order parameter of the 6 nearest particles' major axes (1 = aligned)",
    "DamageVoxels": "crack voxel fraction (|F| - |S|) / |F| (the segmented voids of F)",
    "EDensityStd": "standard deviation (ddof=0) of the volume over the EDensity voxels",
    "touches_border": "the particle's bounding box touches a face of the full volume",
    "n_voxels": "number of solid voxels |S| (the label's voxel count)",
    "near_spherical": "lambda3 / lambda1 > 0.9: Yaw, Pitch, Roll are noise",
}


def _order_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Return ``table`` with the known columns in :data:`COLUMNS` order, others after."""
    known = [c for c in COLUMNS if c in table.columns]
    rest = [c for c in table.columns if c not in COLUMNS]
    return table[known + rest]
