"""Workflow configuration: JSON-Schema validation with defaults, and the sample sheet.

Used by ``workflow/rules/common.smk`` before any job runs and by ``holocat validate-config``.
Errors name the offending key as a dotted path (``reconstruct.filter``) and say what was expected.
"""

from __future__ import annotations

import copy
import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "Sample",
    "default_schema_dir",
    "load_config",
    "read_samples",
    "validate_config",
]

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration or sample-sheet error; the message names the key, column or file."""


def default_schema_dir() -> Path:
    """``workflow/schemas`` of the source checkout this package is installed from."""
    return Path(__file__).resolve().parents[3] / "workflow" / "schemas"


def _load_schema(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"schema file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _fill_defaults(instance: Any, schema: dict, root: dict) -> Any:
    """Insert schema defaults into ``instance`` (a copy), recursing into object properties."""
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"unsupported $ref {ref!r} in schema")
        schema = {
            **root["$defs"][ref.split("/")[-1]],
            **{k: v for k, v in schema.items() if k != "$ref"},
        }
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return instance
    out = dict(instance)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = _fill_defaults(out[key], sub, root)
    return out


def _describe(sub: dict) -> str:
    if "enum" in sub:
        return " or ".join(repr(v) for v in sub["enum"])
    if "$ref" in sub:
        return "a number > 0"
    if sub.get("type") == "array":
        return "a list"
    return {
        "number": "a number",
        "integer": "an integer",
        "string": "a string",
        "null": "null",
    }.get(sub.get("type"), str(sub.get("type")))


def _format_error(err, what: str) -> str:
    path = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        where = f"{path}." if path else ""
        keys = ", ".join(f"'{where}{k}'" for k in extra)
        return f"{what}: unknown key {keys}; allowed keys here: {', '.join(allowed)}"
    if err.validator == "required":
        return f"{what}: {err.message} (at '{path or '<top level>'}')"
    if err.validator in ("oneOf", "anyOf"):
        options = " or ".join(_describe(sub) for sub in err.validator_value)
        return f"{what} key '{path}': expected {options}; got {err.instance!r}"
    return f"{what} key '{path}': {err.message}"


def validate_config(config: dict, schema_path: str | Path | None = None) -> dict:
    """Validate a workflow configuration and return a copy with the schema's defaults filled in.

    Parameters
    ----------
    config : dict
        The parsed ``config.yaml``.
    schema_path : path, optional
        JSON-Schema (2020-12, YAML); default ``workflow/schemas/config.schema.yaml``.

    Raises
    ------
    ConfigError
        Naming the first offending key (dotted path) and what was expected.

    Examples
    --------
    >>> validate_config({"samples": "s.tsv", "reconstruct": {"filtr": "ramp"}})
    Traceback (most recent call last):
    ...
    holocat.pipeline.config.ConfigError: config: unknown key 'reconstruct.filtr'; allowed keys here: backend, center, device, filter, rings, roi
    """
    import jsonschema

    path = Path(schema_path) if schema_path else default_schema_dir() / "config.schema.yaml"
    schema = _load_schema(path)
    if not isinstance(config, dict):
        raise ConfigError(
            f"config: expected a mapping at the top level; got {type(config).__name__}"
        )
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise ConfigError(_format_error(errors[0], "config"))
    filled = _fill_defaults(config, schema, schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: len(e.absolute_path))
    if errors:  # a default that violates the schema is a bug in the schema
        raise ConfigError(_format_error(errors[0], "config (after defaults)"))
    return filled


def load_config(path: str | Path, schema_path: str | Path | None = None) -> dict:
    """Read a YAML configuration file and validate it (see :func:`validate_config`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        try:
            config = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}: not valid YAML: {exc}") from exc
    return validate_config(config, schema_path)


@dataclass(frozen=True)
class Sample:
    """One row of the sample sheet."""

    sample: str
    cycles: int
    source: str
    seed: int = 0

    @property
    def synthetic(self) -> bool:
        return self.source == "synthetic"


def read_samples(path: str | Path, schema_path: str | Path | None = None) -> list[Sample]:
    """Read and validate ``samples.tsv`` (columns sample, cycles, source[, seed]).

    Raises
    ------
    ConfigError
        Naming the file, the row (1-based, header = row 1) and the column.
    """
    import jsonschema

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample sheet not found: {path}")
    schema = _load_schema(
        Path(schema_path) if schema_path else default_schema_dir() / "samples.schema.yaml"
    )
    validator = jsonschema.Draft202012Validator(schema)
    out: list[Sample] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(
            (line for line in fh if line.strip() and not line.startswith("#")), delimiter="\t"
        )
        for i, row in enumerate(reader, start=2):
            if None in row:
                raise ConfigError(f"{path} row {i}: more fields than header columns")
            rec: dict[str, Any] = {k.strip(): (v or "").strip() for k, v in row.items()}
            for key in ("cycles", "seed"):
                if key in rec:
                    try:
                        rec[key] = int(rec[key])
                    except ValueError:
                        raise ConfigError(
                            f"{path} row {i}: column '{key}' must be an integer; got {rec[key]!r}"
                        ) from None
            errors = list(validator.iter_errors(rec))
            if errors:
                raise ConfigError(
                    f"{path} row {i}: "
                    + _format_error(errors[0], "column").replace("column key", "column")
                )
            out.append(Sample(rec["sample"], rec["cycles"], rec["source"], rec.get("seed", 0)))
    if not out:
        raise ConfigError(f"{path}: no samples")
    names = [s.sample for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: duplicate sample names {dup}")
    return out
