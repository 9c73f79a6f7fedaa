"""X-ray refractive-index decrements (δ, β) of the electrode's materials.

The table ``resources/materials.csv`` (columns ``name, formula, density_g_cm3, delta, beta,
energy_keV, source``) holds δ and β at 17 keV, computed with xraylib 4.3.0 (SCIENCE.md §2):

=========== ===================== ======= ========= ========= ======
name        formula               ρ g/cm³ δ         β         δ/β
=========== ===================== ======= ========= ========= ======
NMC811      LiNi0.8Mn0.1Co0.1O2   4.75    3.29e-6   8.11e-8   40.6
carbon      C (acetylene black)   1.90    1.36e-6   6.8e-10   2000
PVDF        C2H2F2                1.78    1.28e-6   1.32e-9   970
electrolyte C4H8O3 (EMC proxy)    1.20    0.93e-6   6.2e-10   1500
Al          Al                    2.70    1.88e-6   8.62e-9   218
=========== ===================== ======= ========= ========= ======

At other photon energies :meth:`Material.at` scales δ ∝ E⁻² and β ∝ E⁻⁴. This is an
approximation, valid away from absorption edges (Ni K 8.33 keV, Co K 7.71 keV, Mn K 6.54 keV lie
below 17 keV; β ∝ E⁻⁴ ignores the Compton share of attenuation, which grows for light elements at
high energy). Only the tabulated 17 keV values are exact.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["Material", "load_materials", "mix_by_mass", "default_materials_path"]

_COLUMNS = ("name", "formula", "density_g_cm3", "delta", "beta", "energy_keV", "source")


def default_materials_path() -> Path:
    """Path of the shipped δ/β table, ``resources/materials.csv`` (``HOLOCAT_RESOURCES`` overrides)."""
    from holocat._resources import resource_path

    return resource_path("materials.csv")


def _positive(value: float, what: str, *, allow_zero: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what}: expected a real number; got {value!r}") from None
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{what}: expected a finite number {bound}; got {value!r}")
    return x


@dataclass(frozen=True)
class Material:
    """Refractive index n = 1 − δ + iβ of one homogeneous material at one photon energy.

    Parameters
    ----------
    name : str
        Key in the materials table, e.g. ``"NMC811"``.
    delta : float
        Refractive-index decrement δ at ``energy_keV``; >= 0 (dimensionless).
    beta : float
        Absorption index β at ``energy_keV``; >= 0 (dimensionless).
    density_g_cm3 : float
        Mass density in g cm⁻³; > 0.
    energy_keV : float
        Photon energy in keV at which ``delta`` and ``beta`` hold; > 0.
    formula : str, optional
        Chemical (sum) formula, informational.
    source : str, optional
        Where the numbers come from.

    Examples
    --------
    >>> nmc = Material("NMC811", 3.29e-6, 8.11e-8, 4.75, 17.0)
    >>> d, b = nmc.at(34.0)
    >>> round(d / 3.29e-6, 6), round(b / 8.11e-8, 6)
    (0.25, 0.0625)
    """

    name: str
    delta: float
    beta: float
    density_g_cm3: float
    energy_keV: float
    formula: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Material.name: expected a non-empty str; got {self.name!r}")
        _positive(self.delta, f"Material {self.name!r}: delta", allow_zero=True)
        _positive(self.beta, f"Material {self.name!r}: beta", allow_zero=True)
        _positive(self.density_g_cm3, f"Material {self.name!r}: density_g_cm3")
        _positive(self.energy_keV, f"Material {self.name!r}: energy_keV")

    @property
    def delta_beta(self) -> float:
        """δ/β ratio (inf when β = 0)."""
        return self.delta / self.beta if self.beta > 0 else math.inf

    def at(self, energy_keV: float) -> tuple[float, float]:
        """δ and β at another photon energy, scaled δ ∝ E⁻², β ∝ E⁻⁴.

        Parameters
        ----------
        energy_keV : float
            Photon energy in keV; > 0.

        Returns
        -------
        (delta, beta) : tuple of float
            Exact at the tabulated energy; approximate elsewhere (no absorption edges).
        """
        e = _positive(energy_keV, "energy_keV")
        ratio = self.energy_keV / e
        return self.delta * ratio**2, self.beta * ratio**4


def mix_by_mass(parts: Sequence[tuple[Material, float]], *, name: str) -> Material:
    """Homogeneous mixture of materials given by mass fractions.

    δ and β are proportional to (electron, absorber) number densities, so for a pore-free
    mixture they are the volume-fraction-weighted means of the components, with volume fractions
    v_i = (w_i / ρ_i) / Σ_j (w_j / ρ_j); the mixture density is 1 / Σ_i (w_i / ρ_i) (w
    normalised to 1). Components tabulated at different energies are first scaled to the first
    component's energy with :meth:`Material.at`.

    Parameters
    ----------
    parts : sequence of (Material, float)
        Components and their mass weights (>= 0, not all 0; normalised internally).
    name : str
        Name of the mixture.

    Returns
    -------
    Material
        The mixture at the first component's energy.

    Examples
    --------
    >>> a = Material("a", 2e-6, 2e-9, 2.0, 17.0)
    >>> b = Material("b", 1e-6, 1e-9, 1.0, 17.0)
    >>> m = mix_by_mass([(a, 0.5), (b, 0.5)], name="ab")
    >>> round(m.density_g_cm3, 6), round(m.delta * 1e6, 6)
    (1.333333, 1.333333)
    """
    if not parts:
        raise ValueError("parts: expected at least one (Material, weight) pair; got none")
    for p in parts:
        if not (isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], Material)):
            raise TypeError(f"parts: expected (Material, weight) pairs; got {p!r}")
    weights = [_positive(w, f"parts weight of {m.name!r}", allow_zero=True) for m, w in parts]
    total = sum(weights)
    if total <= 0:
        raise ValueError(f"parts: expected mass weights with a positive sum; got {weights}")
    energy = parts[0][0].energy_keV
    spec_vol = [w / total / m.density_g_cm3 for (m, _), w in zip(parts, weights, strict=True)]
    vol_total = sum(spec_vol)
    delta = beta = 0.0
    for (m, _), v in zip(parts, spec_vol, strict=True):
        d, b = m.at(energy)
        delta += v / vol_total * d
        beta += v / vol_total * b
    formula = " + ".join(
        f"{w / total:.3g} {m.name}" for (m, _), w in zip(parts, weights, strict=True)
    )
    return Material(
        name=name,
        delta=delta,
        beta=beta,
        density_g_cm3=1.0 / vol_total,
        energy_keV=energy,
        formula=f"mass mix: {formula}",
        source="holocat.simulate.materials.mix_by_mass (volume-fraction average)",
    )


def load_materials(path: str | Path | None = None) -> dict[str, Material]:
    """Read a δ/β table into a dict of :class:`Material` keyed by name.

    Parameters
    ----------
    path : str or Path, optional
        CSV with a header ``name, formula, density_g_cm3, delta, beta, energy_keV, source``;
        default :func:`default_materials_path` (the table shipped in ``resources/``).

    Returns
    -------
    dict[str, Material]
        One entry per row, in file order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist (the message names the path).
    ValueError
        If a column is missing, a value is not a finite number of the right sign, a name repeats,
        or the table is empty (the message names file, row and column).

    Examples
    --------
    >>> mats = load_materials()
    >>> mats["NMC811"].delta, round(mats["NMC811"].delta_beta, 1)
    (3.29e-06, 40.6)
    """
    p = default_materials_path() if path is None else Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"materials table not found: {p} (expected a CSV with {_COLUMNS})")
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"{p}: missing column(s) {missing}; expected {list(_COLUMNS)}, got {header}"
            )
        out: dict[str, Material] = {}
        for row_no, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            name = row["name"]
            if not name:
                raise ValueError(f"{p}, line {row_no}: empty 'name'")
            if name in out:
                raise ValueError(f"{p}, line {row_no}: duplicate material name {name!r}")
            values = {}
            for col in ("density_g_cm3", "delta", "beta", "energy_keV"):
                try:
                    values[col] = float(row[col])
                except ValueError:
                    raise ValueError(
                        f"{p}, line {row_no} ({name}): column {col!r} expected a number; "
                        f"got {row[col]!r}"
                    ) from None
            try:
                out[name] = Material(
                    name=name, formula=row["formula"], source=row["source"], **values
                )
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{p}, line {row_no}: {exc}") from None
    if not out:
        raise ValueError(f"{p}: the materials table has no rows")
    logger.debug("loaded %d materials from %s", len(out), p)
    return out
