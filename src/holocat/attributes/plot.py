"""Distribution plots of particle attributes across samples (like Fig. S6 of Li et al. 2022)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from holocat.attributes.definitions import ATTRIBUTE_UNITS, TABLE_S1_COLUMNS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_distributions"]

logger = logging.getLogger(__name__)

#: Attributes shown by default: Table S1 without the positions X, Y, Z.
_DEFAULT_COLUMNS = tuple(c for c in TABLE_S1_COLUMNS if c not in ("X", "Y", "Z"))


def plot_distributions(
    tables: Mapping[str, pd.DataFrame],
    *,
    columns: Sequence[str] | None = None,
    bins: int = 30,
    ncols: int = 5,
) -> Figure:
    """Overlay each sample's per-attribute distribution (histogram + Gaussian KDE), one panel each.

    Rows with ``touches_border`` True are excluded (truncated shapes, missing neighbours), and so
    are non-finite values. Histograms are density-normalised on bins shared by all samples; a
    KDE line is drawn where a sample has at least 3 distinct finite values.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        Sample name (legend label, e.g. "10 cycles") to attribute table.
    columns : sequence of str, optional
        Attributes to show; default the Table S1 attributes without X, Y, Z.
    bins : int, optional
        Histogram bins per panel (default 30).
    ncols : int, optional
        Panels per row (default 5).

    Returns
    -------
    matplotlib.figure.Figure
        One axis per attribute (unused grid cells are hidden); built without pyplot, so no
        global figure state is touched.

    Raises
    ------
    TypeError
        If ``tables`` is not a mapping of DataFrames.
    ValueError
        If ``tables`` is empty, a column is missing from a table, or a table has no row left
        after excluding border particles.
    """
    from matplotlib.figure import Figure
    from scipy.stats import gaussian_kde

    if not isinstance(tables, Mapping) or not tables:
        raise ValueError("tables: expected a non-empty mapping of sample name to DataFrame")
    cols = list(_DEFAULT_COLUMNS if columns is None else columns)
    if not cols:
        raise ValueError("columns: expected at least one attribute name; got none")
    kept: dict[str, pd.DataFrame] = {}
    for name, table in tables.items():
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"tables[{name!r}]: expected a DataFrame; got {type(table).__name__}")
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise ValueError(f"tables[{name!r}]: missing column(s) {missing}")
        if "touches_border" in table.columns:
            table = table[~table["touches_border"].astype(bool)]
        if len(table) == 0:
            raise ValueError(f"tables[{name!r}]: no particle left after excluding border ones")
        kept[str(name)] = table

    nrows = math.ceil(len(cols) / ncols)
    ncol = min(ncols, len(cols))
    fig = Figure(figsize=(3.0 * ncol, 2.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncol, squeeze=False).ravel()
    colours = [f"C{i}" for i in range(len(kept))]
    for ax, col in zip(axes, cols, strict=False):
        data = {
            name: t[col].to_numpy(dtype=np.float64)[np.isfinite(t[col].to_numpy(np.float64))]
            for name, t in kept.items()
        }
        finite = [v for v in data.values() if v.size]
        if not finite:
            ax.set_title(f"{col} (no finite values)", fontsize=9)
            continue
        allv = np.concatenate(finite)
        lo, hi = float(allv.min()), float(allv.max())
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        grid = np.linspace(lo, hi, 200)
        for colour, (name, values) in zip(colours, data.items(), strict=True):
            if values.size == 0:
                continue
            ax.hist(values, bins=edges, density=True, alpha=0.35, color=colour, label=name)
            if np.unique(values).size >= 3:
                ax.plot(grid, gaussian_kde(values)(grid), color=colour, lw=1.2)
        unit = ATTRIBUTE_UNITS.get(col, "")
        ax.set_xlabel(col if unit in ("", "1") else f"{col} [{unit}]", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(cols) :]:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside upper center", ncols=len(handles))
    logger.debug("plot_distributions: %d sample(s), %d attribute(s)", len(kept), len(cols))
    return fig
