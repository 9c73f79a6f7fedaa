"""Figures of the analysis stage: correlation matrix, SHAP importance, 10- vs 50-cycle comparison.

Every function builds a :class:`matplotlib.figure.Figure` on an Agg canvas without touching
pyplot's global state and returns it; callers save it (``fig.savefig(path)``).
"""

from __future__ import annotations

import logging
from numbers import Integral
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_correlation_matrix", "plot_importance", "plot_comparison"]

logger = logging.getLogger(__name__)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _check_frame(df: object, name: str, columns: tuple[str, ...]) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name}: expected a pandas.DataFrame; got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing or df.empty:
        raise ValueError(
            f"{name}: expected a non-empty table with columns {list(columns)}; "
            f"missing {missing}, {len(df)} rows"
        )
    return df


def plot_correlation_matrix(corr: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Heat map of a correlation matrix (r from −1, blue, to +1, red).

    Parameters
    ----------
    corr : pandas.DataFrame
        Square matrix with matching index and columns, e.g. from
        :func:`~holocat.analysis.correlation_matrix`.
    title : str or None
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        One image axes (values as given, NaN blank) and a colour bar.

    Raises
    ------
    TypeError
        ``corr`` not a DataFrame.
    ValueError
        Not square, labels differing, empty, or values outside [−1, 1].
    """
    corr = _check_frame(corr, "corr", ())
    if corr.shape[0] != corr.shape[1] or list(corr.index) != list(corr.columns):
        raise ValueError(
            f"corr: expected a square matrix with identical index and columns; got shape "
            f"{corr.shape}"
        )
    values = corr.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size and np.abs(finite).max() > 1.0 + 1e-9:
        raise ValueError(f"corr: expected coefficients in [-1, 1]; got max |r| {finite.max()}")
    n = values.shape[0]
    size = max(4.0, 0.32 * n + 2.0)
    fig = _new_figure((size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
    labels = [str(c) for c in corr.columns]
    ax.set_xticks(np.arange(n), labels, rotation=90, fontsize="small")
    ax.set_yticks(np.arange(n), labels, fontsize="small")
    fig.colorbar(image, ax=ax, label=f"{corr.attrs.get('method', 'pearson')} r", shrink=0.8)
    if title:
        ax.set_title(title)
    return fig


def plot_importance(imp: pd.DataFrame, *, title: str | None = None, top: int = 15) -> Figure:
    """Horizontal bars of mean |SHAP| ± std for the ``top`` attributes, most important on top.

    Parameters
    ----------
    imp : pandas.DataFrame
        Output of :func:`~holocat.analysis.importance` (``mean_abs_shap``, ``std_abs_shap``).
    title : str or None
        Axes title; the test MAE from ``imp.attrs`` is appended when present.
    top : int
        Number of attributes shown; >= 1.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; bar lengths are mean |SHAP| in the target's unit.

    Raises
    ------
    TypeError
        ``imp`` not a DataFrame.
    ValueError
        Missing columns, empty table, top < 1.
    """
    imp = _check_frame(imp, "imp", ("mean_abs_shap", "std_abs_shap"))
    if isinstance(top, bool) or not isinstance(top, Integral) or top < 1:
        raise ValueError(f"top: expected an integer >= 1; got {top!r}")
    shown = imp.sort_values("mean_abs_shap", ascending=False).head(int(top))
    fig = _new_figure((6.0, 0.3 * len(shown) + 1.5))
    ax = fig.add_subplot()
    y = np.arange(len(shown))[::-1]
    ax.barh(
        y,
        shown["mean_abs_shap"].to_numpy(),
        xerr=shown["std_abs_shap"].to_numpy(),
        color="tab:blue",
        ecolor="0.3",
        capsize=2,
    )
    ax.set_yticks(y, [str(i) for i in shown.index])
    target = imp.attrs.get("target", "target")
    ax.set_xlabel(f"mean |SHAP| on {target}")
    text = title or ""
    mae = imp.attrs.get("test_mae")
    if isinstance(mae, dict) and "mean" in mae:
        text = f"{text}  (test MAE {mae['mean']:.3g} ± {mae['std']:.2g})".strip()
    if text:
        ax.set_title(text, fontsize="medium")
    return fig


def plot_comparison(cmp: pd.DataFrame, *, title: str | None = None) -> Figure:
    """r(attribute, target) per sample with error bars; significant Δr highlighted.

    Parameters
    ----------
    cmp : pandas.DataFrame
        Output of :func:`~holocat.analysis.compare_samples` (``attrs["samples"]`` names the
        two samples in cycle order).
    title : str or None
        Title of the figure.

    Returns
    -------
    matplotlib.figure.Figure
        Left axes: mean ± std of r per sample (one error-bar series per sample, in
        ``attrs["samples"]`` order). Right axes: Δr mean ± std as bars, significant ones
        (``significant``) in red and their tick labels bold.

    Raises
    ------
    TypeError
        ``cmp`` not a DataFrame.
    ValueError
        Missing columns or ``attrs["samples"]``.
    """
    if not isinstance(cmp, pd.DataFrame):
        raise TypeError(f"cmp: expected a pandas.DataFrame; got {type(cmp).__name__}")
    samples = cmp.attrs.get("samples")
    if not samples or len(samples) != 2:
        raise ValueError(
            "cmp: expected attrs['samples'] with the two sample names, as set by compare_samples; "
            f"got {samples!r}"
        )
    needed = tuple(f"r_{s}_{n}" for n in samples for s in ("mean", "std"))
    cmp = _check_frame(cmp, "cmp", (*needed, "delta_r_mean", "delta_r_std", "significant"))
    n = len(cmp)
    fig = _new_figure((10.0, 0.28 * n + 1.8))
    ax_r, ax_d = fig.subplots(1, 2, sharey=True)
    y = np.arange(n)[::-1].astype(float)
    offsets = (-0.15, 0.15)
    for off, name, color in zip(offsets, samples, ("tab:blue", "tab:orange"), strict=True):
        ax_r.errorbar(
            cmp[f"r_mean_{name}"].to_numpy(),
            y + off,
            xerr=cmp[f"r_std_{name}"].to_numpy(),
            fmt="o",
            color=color,
            capsize=2,
            label=str(name),
        )
    ax_r.axvline(0.0, color="0.5", lw=0.8)
    ax_r.set_yticks(y, [str(i) for i in cmp.index])
    ax_r.set_xlabel(f"r(attribute, {cmp.attrs.get('target', 'target')})")
    ax_r.legend(fontsize="small")
    significant = cmp["significant"].to_numpy(dtype=bool)
    colors = np.where(significant, "tab:red", "0.6")
    ax_d.barh(
        y,
        cmp["delta_r_mean"].to_numpy(),
        xerr=cmp["delta_r_std"].to_numpy(),
        color=colors,
        ecolor="0.3",
        capsize=2,
    )
    ax_d.axvline(0.0, color="0.5", lw=0.8)
    ax_d.set_xlabel(f"Δr = r({samples[1]}) − r({samples[0]})")
    for label, sig in zip(ax_r.get_yticklabels(), significant, strict=True):
        if sig:
            label.set_fontweight("bold")
            label.set_color("tab:red")
    alpha = cmp.attrs.get("alpha")
    ax_d.set_title(
        f"red: permutation p < {alpha}" if alpha is not None else "red: significant",
        fontsize="small",
    )
    if title:
        fig.suptitle(title)
    return fig
