"""Random-forest regression of Damage and SHAP attribute importance (SCIENCE.md §6).

The forest is the authors' notebook's ([C]):
``RandomForestRegressor(n_estimators=40, criterion="absolute_error", max_leaf_nodes=30,
max_features="sqrt", min_impurity_decrease=1.02e-5, bootstrap=True, oob_score=True,
random_state=seed)`` fitted after ``train_test_split(test_size=0.05, random_state=seed)``.
SHAP values come from ``shap.TreeExplainer`` (path-dependent TreeSHAP, no background data) on
the training rows; the global importance of an attribute is its mean |SHAP| (the text says
sum: same ranking within a table, not across tables of different size). Robustness as the
paper: (1) seeds on all particles; (2) subsets ``sample(n=subsample_size, random_state=k)``,
each split and fitted with seed k. A k-fold MAE is added because a 5 % test set is small.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from holocat.analysis.correlation import (
    _check_table,
    _check_target,
    _complete_rows,
    _exclude_border,
    _mean_std,
    _usable_features,
)

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestRegressor

__all__ = ["ForestShap", "fit_forest_shap", "importance", "MIN_ROWS"]

logger = logging.getLogger(__name__)

#: Fewest usable rows (after border exclusion and NaN removal) a forest is fitted on.
MIN_ROWS = 20
Criterion = Literal["absolute_error", "squared_error", "friedman_mse", "poisson"]


@dataclass(frozen=True)
class ForestShap:
    """One fitted forest with the SHAP values of its training rows.

    Attributes
    ----------
    model : sklearn.ensemble.RandomForestRegressor
        The fitted forest (predictors in ``features`` order).
    features : tuple of str
        Predictor names, the columns of ``x_train`` and ``shap_values``.
    x_train, y_train, x_test, y_test : ndarray
        The split (float64).
    shap_values : ndarray, shape (n_train, n_features)
        TreeSHAP values φ of the training rows: ``φ.sum(1) + expected_value == predict(x_train)``.
    expected_value : float
        E[f], the explainer's base value.
    test_mae : float
        Mean |y_test − predict(x_test)|, in the target's unit.
    oob_r2 : float
        Out-of-bag R² of the forest.
    """

    model: RandomForestRegressor
    features: tuple[str, ...]
    x_train: NDArray[np.float64]
    y_train: NDArray[np.float64]
    x_test: NDArray[np.float64]
    y_test: NDArray[np.float64]
    shap_values: NDArray[np.float64]
    expected_value: float
    test_mae: float
    oob_r2: float

    @property
    def mean_abs_shap(self) -> NDArray[np.float64]:
        """Mean |SHAP| per predictor over the training rows."""
        return np.abs(self.shap_values).mean(axis=0)


def _make_forest(seed: int, criterion: str) -> RandomForestRegressor:
    try:
        from sklearn.ensemble import RandomForestRegressor
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "holocat.analysis.importance needs scikit-learn: install the 'analysis' extra"
        ) from err
    return RandomForestRegressor(
        n_estimators=40,
        criterion=criterion,
        max_leaf_nodes=30,
        max_features="sqrt",
        min_impurity_decrease=PAPER_MIN_IMPURITY_DECREASE,
        bootstrap=True,
        oob_score=True,
        random_state=seed,
        n_jobs=1,
    )


#: the authors' threshold, in units of the target (their criterion is the absolute error)
PAPER_MIN_IMPURITY_DECREASE = 1.02e-5


def _fit(model: RandomForestRegressor, x: NDArray, y: NDArray) -> RandomForestRegressor:
    if model.criterion == "squared_error":
        # The paper's threshold is an absolute-error impurity (units of the target); the squared
        # error is in target units squared, where 1.02e-5 would forbid every split of a target of
        # scale 1e-3 (crack fractions). Rescale by the target's mean absolute deviation so the
        # pruning is equally strict relative to the data.
        mad = float(np.mean(np.abs(y - np.median(y))))
        model.set_params(min_impurity_decrease=PAPER_MIN_IMPURITY_DECREASE * mad)
    with warnings.catch_warnings():
        # few rows: some may never be out of bag; the OOB score then uses the others
        warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
        return model.fit(x, y)


def _fit_split_shap(
    data: NDArray[np.float64], features: Sequence[str], *, seed: int, criterion: str
) -> ForestShap:
    """Split (5 % test), fit, and explain the training rows; last column of data = target."""
    try:
        from sklearn.model_selection import train_test_split

        with warnings.catch_warnings():
            # shap's plotting colour maps use matplotlib calls pending deprecation
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            import shap
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "holocat.analysis.importance needs scikit-learn and shap: install the 'analysis' extra"
        ) from err
    x, y = data[:, :-1], data[:, -1]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.05, random_state=seed)
    model = _fit(_make_forest(seed, criterion), x_train, y_train)
    explainer = shap.TreeExplainer(model)
    phi = np.asarray(explainer.shap_values(x_train, check_additivity=True), dtype=np.float64)
    base = float(np.ravel(explainer.expected_value)[0])
    mae = float(np.abs(y_test - model.predict(x_test)).mean())
    return ForestShap(
        model=model,
        features=tuple(features),
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        shap_values=phi,
        expected_value=base,
        test_mae=mae,
        oob_r2=float(model.oob_score_),
    )


def _check_seed(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < 0:
        raise ValueError(f"{name}: expected a non-negative integer seed; got {value!r}")
    return int(value)


def _prepare(
    table: pd.DataFrame,
    *,
    target: str,
    features: Sequence[str] | None,
    exclude_border: bool,
) -> tuple[list[str], NDArray[np.float64]]:
    table = _check_table(table)
    _check_target(table, target)
    rows = _exclude_border(table, exclude_border, "table")
    feats = _usable_features(rows, features, target)
    data = _complete_rows(rows, [*feats, target], "table")
    if len(data) < MIN_ROWS:
        raise ValueError(
            f"table: expected >= {MIN_ROWS} particles with finite predictors and {target!r} "
            f"after excluding border particles; got {len(data)} (of {len(table)} rows)"
        )
    return feats, data


def fit_forest_shap(
    table: pd.DataFrame,
    *,
    target: str = "Damage",
    features: Sequence[str] | None = None,
    seed: int = 0,
    criterion: Criterion = "absolute_error",
    exclude_border: bool = True,
) -> ForestShap:
    """Fit one forest (the notebook's settings) and compute TreeSHAP on its training rows.

    Parameters are those of :func:`importance` for a single ``seed``.

    Returns
    -------
    ForestShap

    Raises
    ------
    TypeError, ValueError
        As :func:`importance`.
    """
    seed = _check_seed("seed", seed)
    feats, data = _prepare(table, target=target, features=features, exclude_border=exclude_border)
    return _fit_split_shap(data, feats, seed=seed, criterion=criterion)


def _kfold_mae(
    data: NDArray[np.float64], *, n_splits: int, seed: int, criterion: str
) -> NDArray[np.float64]:
    from sklearn.model_selection import KFold

    maes = []
    for train, test in KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(data):
        model = _fit(_make_forest(seed, criterion), data[train, :-1], data[train, -1])
        maes.append(np.abs(data[test, -1] - model.predict(data[test, :-1])).mean())
    return np.asarray(maes)


def importance(
    table: pd.DataFrame,
    *,
    target: str = "Damage",
    features: Sequence[str] | None = None,
    seeds: Iterable[int] = range(10),
    n_subsamples: int = 10,
    subsample_size: int = 500,
    criterion: Criterion = "absolute_error",
    n_splits: int = 5,
    exclude_border: bool = True,
) -> pd.DataFrame:
    """Global attribute importance for ``target``: mean |SHAP| of random forests.

    For every seed s the table (all usable particles) is split 95/5 with ``random_state=s``, a
    forest with ``random_state=s`` is fitted on the 95 %, and mean |SHAP| over its training
    rows is recorded; ``mean_abs_shap``/``std_abs_shap`` are the mean and std (ddof = 1)
    over seeds. For k = 0 … n_subsamples − 1 a subset of ``min(subsample_size, n_rows)`` rows
    (``DataFrame.sample(random_state=k)``) is split and fitted with seed k: the
    ``*_subsample`` columns. ``rank`` orders ``mean_abs_shap`` (1 = most important).

    Parameters
    ----------
    table : pandas.DataFrame
        Attribute table (Table S1 columns), one row a particle.
    target : str
        Column to predict (default ``Damage``); numeric.
    features : sequence of str or None
        Predictors; default :func:`~holocat.analysis.default_predictors` (the paper's 21 that
        are present). Absent, all-NaN and constant predictors are dropped with a warning;
        rows with NaN/inf in a used column are dropped with a warning.
    seeds : iterable of int
        Seeds of the full-table forests (paper: 0–9); non-empty, >= 0.
    n_subsamples : int
        Number of subsets (paper: 10); 0 skips them (subsample columns NaN).
    subsample_size : int
        Rows per subset (paper: 500), capped at the table size; >= 20.
    criterion : {"absolute_error", "squared_error", "friedman_mse", "poisson"}
        Split criterion; the paper's ``"absolute_error"`` (sklearn's former ``"mae"``) is
        slower than ``"squared_error"`` on large tables.
    n_splits : int
        Folds of the k-fold MAE (shuffled, ``random_state`` = first seed); >= 2.
    exclude_border : bool
        Drop rows with ``touches_border == True`` first (default).

    Returns
    -------
    pandas.DataFrame
        Index ``attribute``, sorted by rank; columns ``mean_abs_shap``, ``std_abs_shap``,
        ``rank`` (int, 1 = most important), ``mean_abs_shap_subsample``,
        ``std_abs_shap_subsample``. ``attrs``: ``test_mae`` and ``kfold_mae`` (dicts with
        ``mean``, ``std``, ``values``), ``oob_r2`` (same form), ``n_rows``, ``features``,
        ``target``, ``criterion``, ``seeds``, ``n_subsamples``, ``subsample_size``,
        ``exclude_border``.

    Raises
    ------
    TypeError
        ``table`` not a DataFrame, ``features`` a string.
    ValueError
        Missing or non-numeric target, non-numeric predictor, no usable predictor, fewer than
        20 usable rows, empty or negative seeds, bad counts.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> t = pd.DataFrame(rng.normal(size=(120, 3)), columns=["Z", "Contact", "Volume"])
    >>> t["Damage"] = 0.1 * t["Z"] + 0.01 * rng.normal(size=120)
    >>> imp = importance(t, seeds=[0, 1], n_subsamples=0, criterion="squared_error")
    >>> imp.index[0], int(imp.loc["Z", "rank"])
    ('Z', 1)
    """
    if isinstance(seeds, Integral):
        raise TypeError(f"seeds: expected an iterable of integers (e.g. range(10)); got {seeds!r}")
    seed_list = [_check_seed("seeds", s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds: expected at least one seed; got an empty iterable")
    for pname, value, minimum in (
        ("n_subsamples", n_subsamples, 0),
        ("subsample_size", subsample_size, MIN_ROWS),
        ("n_splits", n_splits, 2),
    ):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
            raise ValueError(f"{pname}: expected an integer >= {minimum}; got {value!r}")
    valid = ("absolute_error", "squared_error", "friedman_mse", "poisson")
    if criterion not in valid:
        raise ValueError(f"criterion: expected one of {valid}; got {criterion!r}")

    feats, data = _prepare(table, target=target, features=features, exclude_border=exclude_border)
    n_rows = len(data)
    if n_splits > n_rows:
        raise ValueError(f"n_splits: expected <= the {n_rows} usable rows; got {n_splits}")
    logger.info(
        "importance: %d particles, %d predictors, target %r, criterion %s, seeds %s, "
        "%d subsets of %d",
        n_rows,
        len(feats),
        target,
        criterion,
        seed_list,
        n_subsamples,
        min(subsample_size, n_rows),
    )

    runs = [_fit_split_shap(data, feats, seed=s, criterion=criterion) for s in seed_list]
    shap_seeds = np.stack([r.mean_abs_shap for r in runs])
    mean_abs, std_abs = _mean_std(shap_seeds)

    size = min(int(subsample_size), n_rows)
    if n_subsamples:
        frame = pd.DataFrame(data)
        shap_sub = np.stack(
            [
                _fit_split_shap(
                    frame.sample(n=size, random_state=k).to_numpy(),
                    feats,
                    seed=k,
                    criterion=criterion,
                ).mean_abs_shap
                for k in range(n_subsamples)
            ]
        )
        mean_sub, std_sub = _mean_std(shap_sub)
    else:
        mean_sub = std_sub = np.full(len(feats), np.nan)

    kfold = _kfold_mae(data, n_splits=n_splits, seed=seed_list[0], criterion=criterion)
    test_mae = np.array([r.test_mae for r in runs])
    oob = np.array([r.oob_r2 for r in runs])

    def summary(values: NDArray[np.float64]) -> dict[str, object]:
        mean, std = _mean_std(values)
        return {"mean": float(mean), "std": float(std), "values": values.tolist()}

    df = pd.DataFrame(
        {
            "mean_abs_shap": mean_abs,
            "std_abs_shap": std_abs,
            "mean_abs_shap_subsample": mean_sub,
            "std_abs_shap_subsample": std_sub,
        },
        index=pd.Index(feats, name="attribute"),
    )
    df.insert(2, "rank", df["mean_abs_shap"].rank(ascending=False, method="first").astype(int))
    df = df.sort_values("rank")
    df.attrs.update(
        {
            "test_mae": summary(test_mae),
            "kfold_mae": summary(kfold),
            "oob_r2": summary(oob),
            "n_rows": n_rows,
            "features": list(feats),
            "target": target,
            "criterion": criterion,
            "seeds": seed_list,
            "n_subsamples": int(n_subsamples),
            "subsample_size": size,
            "n_splits": int(n_splits),
            "exclude_border": exclude_border,
        }
    )
    logger.info(
        "importance: top %s; test MAE %.4g ± %.4g, %d-fold MAE %.4g ± %.4g",
        list(df.index[:3]),
        df.attrs["test_mae"]["mean"],
        df.attrs["test_mae"]["std"],
        n_splits,
        df.attrs["kfold_mae"]["mean"],
        df.attrs["kfold_mae"]["std"],
    )
    return df
