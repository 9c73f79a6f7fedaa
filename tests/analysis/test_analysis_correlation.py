"""Tests of holocat.analysis correlations, the two-sample comparison and their figures."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from holocat.analysis import (
    PAPER_PREDICTORS,
    compare_samples,
    correlation_matrix,
    correlations,
    default_predictors,
    plot_comparison,
    plot_correlation_matrix,
)

TABLE_S1 = (
    "label X Y Z Yaw Pitch Roll EDensity Homogeneity SurfaceInner SurfaceOuter Volume Damage "
    "Elongation Sphericity VSratio RoughInner RoughOuter Contact PDensity DistNearest ElongStd "
    "VolumeStd OrienIso"
).split()


def synthetic_table(
    n: int, seed: int, *, z_coef: float = 0.002, contact_coef: float = 0.1, cycles: int = 10
) -> pd.DataFrame:
    """Table S1 columns of noise; Damage = 0.02 + z_coef Z + contact_coef Contact + noise."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.normal(size=(n, len(TABLE_S1))), columns=TABLE_S1)
    table["label"] = np.arange(1, n + 1)
    table["Z"] = rng.uniform(0.0, 50.0, n)
    table["Contact"] = rng.uniform(0.0, 1.0, n)
    table["Damage"] = (
        0.02 + z_coef * table["Z"] + contact_coef * table["Contact"] + 0.005 * rng.normal(size=n)
    )
    table["touches_border"] = False
    table["sample"] = f"s{cycles}"
    table["cycles"] = cycles
    return table


def test_paper_predictors_and_defaults():
    assert len(PAPER_PREDICTORS) == 21
    assert {"X", "Y", "Damage", "label"}.isdisjoint(PAPER_PREDICTORS)
    table = synthetic_table(30, 0)
    preds = default_predictors(table)
    # locSphericity is not in Table S1: skipped; order is the paper's
    assert preds == [p for p in PAPER_PREDICTORS if p != "locSphericity"]
    assert "Z" not in default_predictors(table, target="Z")


@pytest.mark.parametrize(
    ("method", "oracle"), [("pearson", stats.pearsonr), ("spearman", stats.spearmanr)]
)
def test_correlations_match_scipy(method, oracle):
    table = synthetic_table(120, 1)
    table.loc[[3, 7, 11], "Volume"] = np.nan  # pairwise-complete rows
    out = correlations(table, method=method)
    assert out.index.name == "attribute" and list(out.columns) == ["r", "p_value", "n"]
    assert list(out.index) == default_predictors(table)
    for attr, row in out.iterrows():
        ok = table[attr].notna()
        ref = oracle(table.loc[ok, attr], table.loc[ok, "Damage"])
        assert row["r"] == pytest.approx(ref.statistic, abs=1e-12)
        assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
        assert row["n"] == ok.sum()
    assert out.loc["Volume", "n"] == 117
    assert out.loc["Z", "r"] > 0.5 and out.loc["Contact", "r"] > 0.5


def test_correlations_exclude_border_and_constant(caplog):
    table = synthetic_table(100, 2)
    border = np.arange(0, 100, 4)
    table.loc[border, "touches_border"] = True
    table.loc[border, "Damage"] = 5.0 - 0.1 * table.loc[border, "Z"]  # would flip the sign
    table["Yaw"] = 3.0  # constant
    table = table.drop(columns=["OrienIso"])  # missing
    with caplog.at_level(logging.WARNING):
        out = correlations(table)
    inner = table[~table["touches_border"]]
    assert (out["n"] == 75).all()
    assert out.loc["Z", "r"] == pytest.approx(stats.pearsonr(inner["Z"], inner["Damage"])[0])
    assert "Yaw" not in out.index and "OrienIso" not in out.index
    assert "constant" in caplog.text and "Yaw" in caplog.text
    kept = correlations(table, exclude_border=False)
    assert (kept["n"] == 100).all()
    assert kept.loc["Z", "r"] == pytest.approx(stats.pearsonr(table["Z"], table["Damage"])[0])


def test_correlation_matrix_matches_numpy():
    table = synthetic_table(80, 3)
    feats = ["Z", "Contact", "Volume", "Damage"]
    corr = correlation_matrix(table, feats)
    ref = np.corrcoef(table[feats].to_numpy().T)
    np.testing.assert_allclose(corr.to_numpy(), ref, atol=1e-12)
    assert list(corr.index) == feats == list(corr.columns)
    default = correlation_matrix(table)
    assert list(default.columns) == [*default_predictors(table), "Damage"]
    np.testing.assert_allclose(np.diag(default), 1.0)
    np.testing.assert_allclose(default.to_numpy(), default.to_numpy().T)


def test_correlation_errors():
    table = synthetic_table(40, 4)
    with pytest.raises(TypeError, match="table"):
        correlations(table.to_numpy())
    with pytest.raises(ValueError, match="Damage"):
        correlations(table.drop(columns="Damage"))
    with pytest.raises(ValueError, match="sample"):
        correlations(table, features=["Z", "sample"])
    with pytest.raises(ValueError, match="method"):
        correlations(table, method="kendall-tau")
    with pytest.raises(ValueError, match="no usable predictor"):
        correlations(table.assign(Z=1.0), features=["Z"])
    with pytest.raises(TypeError, match="features"):
        correlations(table, features="Z")
    with pytest.raises(ValueError, match="touches_border"):
        correlations(table.assign(touches_border=np.nan))


@pytest.fixture(scope="module")
def flipped_pair() -> dict[str, pd.DataFrame]:
    """10 cycles: damage rises with Contact; 50 cycles: falls. Z acts the same in both."""
    ten = synthetic_table(400, 10, contact_coef=0.03, cycles=10)
    fifty = synthetic_table(450, 50, contact_coef=-0.03, cycles=50)
    return {"fifty": fifty, "ten": ten}  # deliberately out of cycle order


def test_compare_samples_detects_sign_flip(flipped_pair):
    cmp = compare_samples(
        flipped_pair, features=["Z", "Contact", "Volume"], n_subsamples=10, subsample_size=200
    )
    assert cmp.attrs["samples"] == ["ten", "fifty"]  # ordered by the cycles column
    assert cmp.attrs["subsample_sizes"] == {"ten": 200, "fifty": 200}
    assert cmp.loc["Contact", "r_mean_ten"] > 0.2 and cmp.loc["Contact", "r_mean_fifty"] < -0.2
    assert cmp.loc["Contact", "delta_r_mean"] < -0.4
    assert cmp.loc["Contact", "p_value"] < 0.05 and cmp.loc["Contact", "significant"]
    # shared relations: no significant difference
    assert cmp.loc["Z", "p_value"] > 0.05 and cmp.loc["Volume", "p_value"] > 0.05
    assert not cmp.loc["Z", "significant"]
    # Δr of the full tables
    ten, fifty = flipped_pair["ten"], flipped_pair["fifty"]
    ref = (
        stats.pearsonr(fifty["Contact"], fifty["Damage"])[0]
        - stats.pearsonr(ten["Contact"], ten["Damage"])[0]
    )
    assert cmp.loc["Contact", "delta_r_full"] == pytest.approx(ref, abs=1e-12)
    assert (cmp[["r_std_ten", "r_std_fifty", "delta_r_std"]] > 0).all().all()


def test_compare_samples_full_subsets_and_permutation_oracle(flipped_pair):
    # subsample_size >= table size: every subset is the whole table, std = 0
    small = {k: v.iloc[:60] for k, v in flipped_pair.items()}
    cmp = compare_samples(small, features=["Z"], n_subsamples=3, subsample_size=1000)
    ten, fifty = small["ten"], small["fifty"]
    r10 = stats.pearsonr(ten["Z"], ten["Damage"])[0]
    r50 = stats.pearsonr(fifty["Z"], fifty["Damage"])[0]
    assert cmp.loc["Z", "r_mean_ten"] == pytest.approx(r10, abs=1e-12)
    assert cmp.loc["Z", "r_mean_fifty"] == pytest.approx(r50, abs=1e-12)
    assert cmp.loc["Z", "r_std_ten"] == pytest.approx(0.0, abs=1e-12)
    assert cmp.loc["Z", "delta_r_mean"] == pytest.approx(r50 - r10, abs=1e-12)

    # p value against scipy's permutation test of the same statistic (Monte Carlo: ±0.05)
    pooled = pd.concat([ten, fifty])[["Z", "Damage"]].to_numpy()

    def delta_r(i, j):
        a, b = pooled[i.astype(int)], pooled[j.astype(int)]
        return stats.pearsonr(b[:, 0], b[:, 1])[0] - stats.pearsonr(a[:, 0], a[:, 1])[0]

    ref = stats.permutation_test(
        (np.arange(60), np.arange(60, 120)),
        delta_r,
        permutation_type="independent",
        vectorized=False,
        n_resamples=999,
        rng=np.random.default_rng(123),
    )
    assert cmp.loc["Z", "p_value"] == pytest.approx(ref.pvalue, abs=0.05)


def test_compare_samples_is_seeded(flipped_pair):
    kw = dict(features=["Contact", "Z"], n_subsamples=4, subsample_size=100, n_permutations=99)
    a = compare_samples(flipped_pair, seed=5, **kw)
    b = compare_samples(flipped_pair, seed=5, **kw)
    c = compare_samples(flipped_pair, seed=6, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["r_mean_ten"], c["r_mean_ten"])


def test_compare_samples_common_features_and_errors(flipped_pair, caplog):
    pair = {"ten": flipped_pair["ten"].assign(Volume=2.0), "fifty": flipped_pair["fifty"]}
    with caplog.at_level(logging.WARNING):
        cmp = compare_samples(pair, features=["Z", "Volume"], n_subsamples=2, n_permutations=49)
    assert list(cmp.index) == ["Z"]
    assert "Volume" in caplog.text
    with pytest.raises(ValueError, match="exactly two"):
        compare_samples({"ten": flipped_pair["ten"]})
    with pytest.raises(ValueError, match="Damage"):
        compare_samples(
            {"a": flipped_pair["ten"], "b": flipped_pair["fifty"].drop(columns="Damage")}
        )
    with pytest.raises(TypeError, match="tables"):
        compare_samples([flipped_pair["ten"], flipped_pair["fifty"]])
    with pytest.raises(ValueError, match="n_subsamples"):
        compare_samples(flipped_pair, n_subsamples=0)


def test_plot_correlation_matrix_shows_values():
    table = synthetic_table(60, 5)
    corr = correlation_matrix(table, ["Z", "Contact", "Damage"])
    fig = plot_correlation_matrix(corr, title="10 cycles")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.get_images()[0].get_array(), corr.to_numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Z", "Contact", "Damage"]
    assert ax.get_title() == "10 cycles"
    with pytest.raises(ValueError, match="square"):
        plot_correlation_matrix(corr.iloc[:2])


def test_plot_comparison_highlights_significant(flipped_pair):
    cmp = compare_samples(
        flipped_pair, features=["Z", "Contact", "Volume"], n_subsamples=3, n_permutations=199
    )
    fig = plot_comparison(cmp)
    ax_r, ax_d = fig.axes[:2]
    bars = ax_d.patches
    assert len(bars) == 3
    red = [tuple(b.get_facecolor()) for b in bars]
    significant = cmp["significant"].to_numpy()
    from matplotlib.colors import to_rgba

    assert [c == to_rgba("tab:red") for c in red] == list(significant)
    # bar lengths are the mean Δr, top bar = first attribute
    widths = [b.get_width() for b in sorted(bars, key=lambda b: -b.get_y())]
    np.testing.assert_allclose(widths, cmp["delta_r_mean"].to_numpy())
    # one error-bar series per sample with the mean r as x
    lines = [ln for ln in ax_r.get_lines() if ln.get_marker() == "o"]
    np.testing.assert_allclose(lines[0].get_xdata(), cmp["r_mean_ten"].to_numpy())
    np.testing.assert_allclose(lines[1].get_xdata(), cmp["r_mean_fifty"].to_numpy())
    stripped = cmp.copy()
    stripped.attrs = {}
    with pytest.raises(ValueError, match="samples"):
        plot_comparison(stripped)
