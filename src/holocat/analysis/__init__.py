"""Interpretable analysis of particle-attribute tables (SCIENCE.md §6).

Correlations with Damage and between attributes, the 10- vs 50-cycle comparison with a
permutation test (Fig. S11), random-forest + SHAP attribute importance, and their figures.
scikit-learn and shap (the ``analysis`` extra) are imported only when a forest is fitted.
"""

from holocat.analysis.correlation import (
    PAPER_PREDICTORS,
    compare_samples,
    correlation_matrix,
    correlations,
    default_predictors,
)
from holocat.analysis.importance import ForestShap, fit_forest_shap, importance
from holocat.analysis.plots import plot_comparison, plot_correlation_matrix, plot_importance

__all__ = [
    "PAPER_PREDICTORS",
    "default_predictors",
    "correlations",
    "correlation_matrix",
    "compare_samples",
    "importance",
    "fit_forest_shap",
    "ForestShap",
    "plot_correlation_matrix",
    "plot_importance",
    "plot_comparison",
]
