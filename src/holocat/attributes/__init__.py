"""Particle attributes of Table S1 (Li et al., Science 376, 517 (2022); SCIENCE.md §5).

``extract(labels, volume, voxel_size_um=...)`` returns one row per particle with the 23
attributes. Slab jobs call ``particle_attributes`` on their block; the gather applies
``add_pdensity`` (with a ``summed_area_table`` of the whole labelled mask) and
``neighbour_attributes`` to the concatenated table.
"""

from holocat.attributes.definitions import (
    ATTRIBUTE_DEFINITIONS,
    ATTRIBUTE_UNITS,
    COLUMNS,
    EXTRA_COLUMNS,
    LOCAL_COLUMNS,
    NEIGHBOUR_COLUMNS,
    TABLE_S1_COLUMNS,
)
from holocat.attributes.extract import PARTICLE_COLUMNS, extract, particle_attributes
from holocat.attributes.neighbours import (
    add_pdensity,
    neighbour_attributes,
    pdensity,
    summed_area_table,
)
from holocat.attributes.plot import plot_distributions

__all__ = [
    "extract",
    "particle_attributes",
    "neighbour_attributes",
    "add_pdensity",
    "pdensity",
    "summed_area_table",
    "plot_distributions",
    "TABLE_S1_COLUMNS",
    "LOCAL_COLUMNS",
    "NEIGHBOUR_COLUMNS",
    "EXTRA_COLUMNS",
    "COLUMNS",
    "PARTICLE_COLUMNS",
    "ATTRIBUTE_UNITS",
    "ATTRIBUTE_DEFINITIONS",
]
