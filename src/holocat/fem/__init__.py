"""Finite-element models: the single-particle diffusion–stress baseline.

The particle-network chemo-mechanical model (``simulate``, SfePy) is not implemented yet.
"""

from holocat.fem.single_particle import plot_single_particle, single_particle

__all__ = ["single_particle", "plot_single_particle"]
