"""holocat.io: OME-Zarr images, raw scans, atomic writes, manifests, provenance and tables.

- :mod:`holocat.io.atomic`: ``atomic_path`` (write to a temporary sibling, rename on success),
  ``write_json_atomic``, ``to_jsonable``.
- :mod:`holocat.io.ome`: OME-Zarr (NGFF 0.5, Zarr v3) images: ``create_ome_zarr`` +
  ``write_region`` + ``finalize_ome_zarr`` for scattered jobs, ``write_ome_zarr`` for whole
  arrays, ``open_ome_zarr`` / ``read_region`` for reading.
- :mod:`holocat.io.rawscan`: raw multi-distance scans (``write_raw_scan``, ``read_raw_scan``,
  ``check_raw_scan_values``).
- :mod:`holocat.io.manifest`: ``checksum``, ``provenance``, sidecar ``*.manifest.json``.
- :mod:`holocat.io.tables`: Parquet + CSV tables with JSON metadata.
"""

from holocat.io.atomic import (
    atomic_path,
    is_temp_name,
    remove_stale_temps,
    to_jsonable,
    write_json_atomic,
)
from holocat.io.manifest import (
    MANIFEST_SUFFIX,
    checksum,
    git_commit,
    input_record,
    manifest_path,
    provenance,
    read_manifest,
    sha256_file,
    software_versions,
    verify_manifest,
    write_manifest,
)
from holocat.io.ome import (
    AXIS_TYPES,
    MAX_CHUNK_BYTES,
    OmeImage,
    create_ome_zarr,
    default_axes,
    default_chunks,
    finalize_ome_zarr,
    open_ome_zarr,
    read_region,
    write_ome_zarr,
    write_region,
)
from holocat.io.rawscan import (
    RAW_SCAN_DTYPES,
    RawScan,
    angular_coverage_deg,
    check_raw_scan_values,
    read_raw_scan,
    write_raw_scan,
)
from holocat.io.tables import METADATA_KEY, read_table, write_table

__all__ = [
    "AXIS_TYPES",
    "MANIFEST_SUFFIX",
    "MAX_CHUNK_BYTES",
    "METADATA_KEY",
    "RAW_SCAN_DTYPES",
    "OmeImage",
    "RawScan",
    "angular_coverage_deg",
    "atomic_path",
    "check_raw_scan_values",
    "checksum",
    "create_ome_zarr",
    "default_axes",
    "default_chunks",
    "finalize_ome_zarr",
    "git_commit",
    "input_record",
    "is_temp_name",
    "manifest_path",
    "open_ome_zarr",
    "provenance",
    "read_manifest",
    "read_raw_scan",
    "read_region",
    "read_table",
    "remove_stale_temps",
    "sha256_file",
    "software_versions",
    "to_jsonable",
    "verify_manifest",
    "write_json_atomic",
    "write_manifest",
    "write_ome_zarr",
    "write_raw_scan",
    "write_region",
    "write_table",
]
