"""Correlations of particle attributes with Damage, and the 10- vs 50-cycle comparison (Fig. S11).

Inputs are attribute tables with the Table S1 columns (SCIENCE.md §5–6), one row a particle.
Rows flagged ``touches_border`` are excluded by default (truncated shapes, missing
neighbours); predictors that are absent, entirely missing or constant are dropped with a
logged warning, so a table from any stage of the pipeline can be analysed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

__all__ = [
    "PAPER_PREDICTORS",
    "default_predictors",
    "correlations",
    "correlation_matrix",
    "compare_samples",
]

logger = logging.getLogger(__name__)

#: The 21 predictors of the authors' regression (SCIENCE.md §6, [C]): Table S1 without X, Y and
#: the target Damage, plus locSphericity (std of Sphericity over the 6 nearest neighbours).
PAPER_PREDICTORS: tuple[str, ...] = (
    "Z",
    "Roll",
    "Pitch",
    "Yaw",
    "EDensity",
    "Homogeneity",
    "SurfaceInner",
    "SurfaceOuter",
    "Volume",
    "Elongation",
    "Sphericity",
    "VSratio",
    "RoughInner",
    "RoughOuter",
    "Contact",
    "PDensity",
    "DistNearest",
    "VolumeStd",
    "OrienIso",
    "ElongStd",
    "locSphericity",
)

BORDER_COLUMN = "touches_border"
CorrelationMethod = Literal["pearson", "spearman"]
_METHODS = ("pearson", "spearman")


def _check_table(table: object, name: str = "table") -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{name}: expected a pandas.DataFrame; got {type(table).__name__}")
    if table.columns.has_duplicates:
        dup = table.columns[table.columns.duplicated()].tolist()
        raise ValueError(f"{name}: duplicate column names {dup}")
    return table


def _check_method(method: str) -> str:
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}; got {method!r}")
    return method


def _check_target(table: pd.DataFrame, target: str, name: str = "table") -> None:
    if target not in table.columns:
        raise ValueError(
            f"{name}: target column {target!r} is missing; columns are {list(table.columns)}"
        )
    if not _is_numeric(table[target]):
        raise ValueError(
            f"{name}: target column {target!r} must be numeric; got dtype {table[target].dtype}"
        )


def _is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)


def _exclude_border(table: pd.DataFrame, exclude_border: bool, name: str) -> pd.DataFrame:
    """Drop rows with ``touches_border == True`` (when the column exists and asked to)."""
    if not exclude_border or BORDER_COLUMN not in table.columns:
        return table
    flag = table[BORDER_COLUMN]
    if flag.isna().any() or not (pd.api.types.is_bool_dtype(flag) or flag.isin([0, 1]).all()):
        raise ValueError(
            f"{name}: column {BORDER_COLUMN!r} must be boolean without missing values; got "
            f"dtype {flag.dtype}, {int(flag.isna().sum())} missing, values "
            f"{pd.unique(flag.dropna())[:5].tolist()}"
        )
    keep = ~flag.astype(bool).to_numpy()
    n_drop = int((~keep).sum())
    if n_drop:
        logger.info("%s: excluding %d of %d border particles", name, n_drop, len(table))
    return table.loc[keep]


def default_predictors(table: pd.DataFrame, target: str = "Damage") -> list[str]:
    """The paper's predictors (:data:`PAPER_PREDICTORS`) present in ``table``, without ``target``.

    Parameters
    ----------
    table : pandas.DataFrame
        Attribute table (Table S1 columns).
    target : str
        Target column, never a predictor.

    Returns
    -------
    list of str
        Present predictors in the paper's order; absent ones are logged and skipped.

    Examples
    --------
    >>> import pandas as pd
    >>> default_predictors(pd.DataFrame(columns=["Z", "Damage", "Contact", "X"]))
    ['Z', 'Contact']
    """
    table = _check_table(table)
    present = [c for c in PAPER_PREDICTORS if c in table.columns and c != target]
    absent = [c for c in PAPER_PREDICTORS if c not in table.columns]
    if absent:
        logger.info("paper predictors absent from the table, skipped: %s", absent)
    return present


def _usable_features(
    table: pd.DataFrame,
    features: Iterable[str] | None,
    target: str | None,
    name: str = "table",
) -> list[str]:
    """Resolve the predictor list: absent, all-NaN or constant columns dropped with a warning.

    ``target`` (if not None) is never a predictor. Raises ValueError for a non-numeric
    predictor or when no predictor remains.
    """
    if features is None:
        candidates = default_predictors(table, target if target is not None else "")
    else:
        if isinstance(features, str):
            raise TypeError(f"features: expected a sequence of column names; got {features!r}")
        candidates = list(dict.fromkeys(features))
        if target is not None and target in candidates:
            logger.warning("features: dropping the target %r from the predictors", target)
            candidates = [c for c in candidates if c != target]
        absent = [c for c in candidates if c not in table.columns]
        if absent:
            logger.warning("%s: requested predictors absent, dropped: %s", name, absent)
            candidates = [c for c in candidates if c in table.columns]
    non_numeric = [c for c in candidates if not _is_numeric(table[c])]
    if non_numeric:
        raise ValueError(
            f"{name}: predictors must be numeric; non-numeric columns "
            f"{ {c: str(table[c].dtype) for c in non_numeric} }"
        )
    usable, constant, empty = [], [], []
    for c in candidates:
        col = pd.to_numeric(table[c].astype(float), errors="coerce")
        col = col[np.isfinite(col)]
        if col.empty:
            empty.append(c)
        elif col.nunique() < 2:
            constant.append(c)
        else:
            usable.append(c)
    if empty:
        logger.warning("%s: predictors without finite values, dropped: %s", name, empty)
    if constant:
        logger.warning("%s: constant predictors, dropped: %s", name, constant)
    if not usable:
        raise ValueError(
            f"{name}: no usable predictor left (absent, empty or constant); "
            f"candidates were {candidates}"
        )
    return usable


def _complete_rows(table: pd.DataFrame, columns: Sequence[str], name: str) -> NDArray[np.float64]:
    """Columns as float64, rows with any non-finite value dropped (logged)."""
    values = table.loc[:, list(columns)].astype(float).to_numpy()
    finite = np.isfinite(values).all(axis=1)
    n_drop = int((~finite).sum())
    if n_drop:
        bad = [c for c, ok in zip(columns, np.isfinite(values).all(axis=0), strict=True) if not ok]
        logger.warning(
            "%s: dropping %d of %d rows with NaN/inf in %s", name, n_drop, len(values), bad
        )
    return values[finite]


def _corr_with_last(values: NDArray[np.float64], method: str) -> NDArray[np.float64]:
    """Correlation of every column but the last with the last column.

    ``values`` may carry leading batch axes: shape (..., n_rows, n_columns).
    """
    if method == "spearman":
        values = stats.rankdata(values, axis=-2)
    centred = values - values.mean(axis=-2, keepdims=True)
    x, y = centred[..., :-1], centred[..., -1:]
    num = (x * y).sum(axis=-2)
    den = np.sqrt((x * x).sum(axis=-2) * (y * y).sum(axis=-2))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    return np.clip(r, -1.0, 1.0)


def correlations(
    table: pd.DataFrame,
    *,
    target: str = "Damage",
    features: Sequence[str] | None = None,
    method: CorrelationMethod = "pearson",
    exclude_border: bool = True,
) -> pd.DataFrame:
    """Correlation of each predictor with the target, with its p value.

    Parameters
    ----------
    table : pandas.DataFrame
        Attribute table, one row a particle.
    target : str
        Target column (numeric).
    features : sequence of str or None
        Predictors; default :func:`default_predictors`. Absent or constant ones are dropped
        with a warning.
    method : {"pearson", "spearman"}
        ``scipy.stats.pearsonr`` or ``scipy.stats.spearmanr``.
    exclude_border : bool
        Drop rows with ``touches_border == True`` first.

    Returns
    -------
    pandas.DataFrame
        Index ``attribute`` (predictor order kept); columns ``r``, ``p_value`` (two-sided) and
        ``n`` (rows with finite predictor and target: pairwise-complete).
        A predictor constant over those rows gets r = p = NaN.

    Raises
    ------
    TypeError
        ``table`` not a DataFrame.
    ValueError
        Missing or non-numeric target, non-numeric predictor, no usable predictor, bad method.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> t = pd.DataFrame({"Z": [1.0, 2, 3, 4], "Damage": [0.1, 0.2, 0.2, 0.4]})
    >>> round(float(correlations(t).loc["Z", "r"]), 4)
    0.9234
    """
    table = _check_table(table)
    method = _check_method(method)
    _check_target(table, target)
    rows = _exclude_border(table, exclude_border, "table")
    feats = _usable_features(rows, features, target)
    y_all = rows[target].astype(float).to_numpy()
    func = stats.pearsonr if method == "pearson" else stats.spearmanr
    out = []
    for f in feats:
        x = rows[f].astype(float).to_numpy()
        ok = np.isfinite(x) & np.isfinite(y_all)
        n = int(ok.sum())
        if n < 3 or np.ptp(x[ok]) == 0 or np.ptp(y_all[ok]) == 0:
            logger.warning("correlations: %r has < 3 rows or no spread with %r: r = NaN", f, target)
            out.append((np.nan, np.nan, n))
            continue
        res = func(x[ok], y_all[ok])
        out.append((float(res.statistic), float(res.pvalue), n))
    df = pd.DataFrame(out, index=pd.Index(feats, name="attribute"), columns=["r", "p_value", "n"])
    df.attrs.update({"target": target, "method": method, "exclude_border": exclude_border})
    return df


def correlation_matrix(
    table: pd.DataFrame,
    features: Sequence[str] | None = None,
    *,
    target: str | None = "Damage",
    method: CorrelationMethod = "pearson",
    exclude_border: bool = True,
) -> pd.DataFrame:
    """Pairwise correlation matrix of attributes (pairwise-complete rows).

    Parameters
    ----------
    table : pandas.DataFrame
        Attribute table.
    features : sequence of str or None
        Attributes; default the paper predictors present followed by ``target`` (if present).
        Absent or constant ones are dropped with a warning.
    target : str or None
        Column appended to the default list (ignored when ``features`` is given).
    method : {"pearson", "spearman"}
        Correlation coefficient.
    exclude_border : bool
        Drop rows with ``touches_border == True`` first.

    Returns
    -------
    pandas.DataFrame
        Symmetric (n_attributes, n_attributes) matrix with ones on the diagonal.

    Raises
    ------
    TypeError, ValueError
        As :func:`correlations`.
    """
    table = _check_table(table)
    method = _check_method(method)
    rows = _exclude_border(table, exclude_border, "table")
    if features is None:
        features = default_predictors(rows, target if target is not None else "")
        if target is not None and target in rows.columns:
            features = [*features, target]
    feats = _usable_features(rows, features, target=None)
    values = rows.loc[:, feats].astype(float).replace([np.inf, -np.inf], np.nan)
    corr = values.corr(method=method)
    corr.index.name = "attribute"
    corr.columns.name = "attribute"
    corr.attrs.update({"method": method, "exclude_border": exclude_border, "n_rows": len(rows)})
    return corr


def _sample_order(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Sample names in cycle order when every table carries one ``cycles`` value, else as given."""
    names = list(tables)
    cycles = {}
    for name, t in tables.items():
        if "cycles" in t.columns:
            values = pd.unique(t["cycles"].dropna())
            if len(values) == 1 and _is_numeric(t["cycles"]):
                cycles[name] = float(values[0])
    if len(cycles) == len(names) and len(set(cycles.values())) == len(names):
        names = sorted(names, key=cycles.__getitem__)
        logger.info("compare_samples: cycle order %s", [(n, cycles[n]) for n in names])
    else:
        logger.info("compare_samples: no distinct per-table cycles, keeping order %s", names)
    return names


def _mean_std(values: NDArray[np.float64], axis: int = 0) -> tuple[NDArray, NDArray]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    mean = values.mean(axis=axis)
    if values.shape[axis] < 2:
        return mean, np.zeros_like(mean)
    return mean, values.std(axis=axis, ddof=1)


def compare_samples(
    tables: Mapping[str, pd.DataFrame],
    *,
    target: str = "Damage",
    features: Sequence[str] | None = None,
    n_subsamples: int = 10,
    subsample_size: int = 500,
    n_permutations: int = 999,
    seed: int = 0,
    method: CorrelationMethod = "pearson",
    alpha: float = 0.05,
    exclude_border: bool = True,
) -> pd.DataFrame:
    """Compare r(attribute, target) between two samples (Fig. S11 with a permutation test).

    For each sample, ``n_subsamples`` subsets of ``min(subsample_size, n_rows)`` rows are drawn
    without replacement and r(attribute, target) is computed on each: mean ± std (ddof = 1).
    Δr = r(second) − r(first), second = the later in cycle order, is taken subset by subset
    (pairs k = 0 … n_subsamples − 1): mean ± std. The p value tests H0 "both tables come from
    the same joint distribution of (attribute, target)" with the statistic
    |r_second − r_first| on the full tables: rows are pooled and reassigned at random to groups
    of the original sizes ``n_permutations`` times; p = (1 + #{|Δr_perm| ≥ |Δr_obs|}) /
    (1 + n_permutations). Rows with NaN/inf in any compared column are dropped (logged).

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        Exactly two attribute tables keyed by sample name. Ordered by their ``cycles`` column
        when each holds one distinct value, else in mapping order.
    target : str
        Target column (numeric) present in both.
    features : sequence of str or None
        Predictors; default the paper predictors. Only those usable (present, numeric,
        non-constant) in both tables are compared; the others are dropped with a warning.
    n_subsamples : int
        Subsets per sample; >= 1.
    subsample_size : int
        Rows per subset (capped at the table size); >= 3.
    n_permutations : int
        Permutations of the test; >= 1.
    seed : int
        Seed of ``numpy.random.default_rng`` for subsets and permutations.
    method : {"pearson", "spearman"}
        Correlation coefficient.
    alpha : float
        Level for the ``significant`` column, in (0, 1).
    exclude_border : bool
        Drop rows with ``touches_border == True`` first.

    Returns
    -------
    pandas.DataFrame
        Index ``attribute``; columns ``r_mean_<name>``, ``r_std_<name>``, ``r_full_<name>`` for
        each sample (first, then second), ``delta_r_mean``, ``delta_r_std``, ``delta_r_full``,
        ``p_value`` and ``significant`` (p < alpha). ``attrs``: ``samples`` (ordered names),
        ``n_rows``, ``subsample_sizes``, ``target``, ``method``, ``n_permutations``, ``seed``,
        ``alpha``.

    Raises
    ------
    TypeError
        ``tables`` not a mapping of DataFrames.
    ValueError
        Not exactly two tables, missing target, < 3 complete rows, no common predictor, bad
        counts or level.
    """
    if not isinstance(tables, Mapping):
        raise TypeError(f"tables: expected a dict of sample name -> DataFrame; got {type(tables)}")
    if len(tables) != 2:
        raise ValueError(f"tables: expected exactly two samples; got {len(tables)}: {list(tables)}")
    for name, t in tables.items():
        _check_table(t, f"tables[{name!r}]")
        _check_target(t, target, f"tables[{name!r}]")
    method = _check_method(method)
    for pname, value, minimum in (
        ("n_subsamples", n_subsamples, 1),
        ("subsample_size", subsample_size, 3),
        ("n_permutations", n_permutations, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
            raise ValueError(f"{pname}: expected an integer >= {minimum}; got {value!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha: expected a level in (0, 1); got {alpha!r}")

    names = _sample_order(tables)
    rows = {n: _exclude_border(tables[n], exclude_border, f"tables[{n!r}]") for n in names}
    usable = [_usable_features(rows[n], features, target, f"tables[{n!r}]") for n in names]
    feats = [f for f in usable[0] if f in usable[1]]
    only_one = sorted(set(usable[0]) ^ set(usable[1]))
    if only_one:
        logger.warning(
            "compare_samples: predictors usable in one sample only, dropped: %s", only_one
        )
    if not feats:
        raise ValueError(f"tables: no predictor usable in both samples {names}")

    data = [_complete_rows(rows[n], [*feats, target], f"tables[{n!r}]") for n in names]
    for n, d in zip(names, data, strict=True):
        if len(d) < 3 or np.ptp(d[:, -1]) == 0:
            raise ValueError(
                f"tables[{n!r}]: expected >= 3 complete rows with a varying {target!r}; "
                f"got {len(d)} rows"
            )

    rng = np.random.default_rng(seed)
    r_sub, r_full, sizes = [], [], []
    for d in data:
        size = min(int(subsample_size), len(d))
        sizes.append(size)
        idx = np.stack([rng.choice(len(d), size=size, replace=False) for _ in range(n_subsamples)])
        r_sub.append(_corr_with_last(d[idx], method))  # (n_subsamples, n_features)
        r_full.append(_corr_with_last(d, method))
    delta_sub = r_sub[1] - r_sub[0]
    delta_full = r_full[1] - r_full[0]

    pooled = np.concatenate(data)
    n_first = len(data[0])
    exceed = np.zeros(len(feats))
    batch = 32
    done = 0
    while done < n_permutations:
        b = min(batch, n_permutations - done)
        perm = np.stack([rng.permutation(len(pooled)) for _ in range(b)])
        shuffled = pooled[perm]  # (b, n_rows, n_cols)
        d_perm = _corr_with_last(shuffled[:, n_first:], method) - _corr_with_last(
            shuffled[:, :n_first], method
        )
        # NaN (a constant permuted column) never counts as extreme
        exceed += (np.abs(d_perm) >= np.abs(delta_full) - 1e-12).sum(axis=0)
        done += b
    p_value = (1.0 + exceed) / (1.0 + n_permutations)
    p_value[~np.isfinite(delta_full)] = np.nan  # r undefined in one sample (no spread)

    out = {}
    for n, r_s, r_f in zip(names, r_sub, r_full, strict=True):
        mean, std = _mean_std(r_s)
        out[f"r_mean_{n}"], out[f"r_std_{n}"], out[f"r_full_{n}"] = mean, std, r_f
    out["delta_r_mean"], out["delta_r_std"] = _mean_std(delta_sub)
    out["delta_r_full"] = delta_full
    out["p_value"] = p_value
    out["significant"] = p_value < alpha
    df = pd.DataFrame(out, index=pd.Index(feats, name="attribute"))
    df.attrs.update(
        {
            "samples": names,
            "n_rows": {n: len(d) for n, d in zip(names, data, strict=True)},
            "subsample_sizes": dict(zip(names, sizes, strict=True)),
            "n_subsamples": int(n_subsamples),
            "target": target,
            "method": method,
            "n_permutations": int(n_permutations),
            "seed": int(seed),
            "alpha": float(alpha),
            "exclude_border": exclude_border,
        }
    )
    logger.info(
        "compare_samples %s: %d predictors, %d significant at alpha=%g",
        names,
        len(feats),
        int(df["significant"].sum()),
        alpha,
    )
    return df
