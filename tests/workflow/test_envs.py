"""envs/*.yaml mirror the pyproject extras (conda cannot be solved here, so a test keeps them in sync)."""

from __future__ import annotations

import tomllib

import pytest
import yaml
from wf_helpers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CORE = PYPROJECT["project"]["dependencies"]
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
STAGE_ENVS = ["core", "tomo", "segment", "analysis", "fem"]


def _pip_deps(env: str) -> list[str]:
    spec = yaml.safe_load((ROOT / "envs" / f"{env}.yaml").read_text())
    pip = [d for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, f"envs/{env}.yaml: expected one pip section"
    return [d for d in pip[0]["pip"] if d != "-e .."]


@pytest.mark.parametrize("env", STAGE_ENVS)
def test_env_mirrors_pyproject(env):
    expected = CORE + ([] if env == "core" else EXTRAS[env])
    assert sorted(_pip_deps(env)) == sorted(expected)
    spec = yaml.safe_load((ROOT / "envs" / f"{env}.yaml").read_text())
    assert "python=3.11" in spec["dependencies"]


def test_every_rule_env_exists_and_every_stage_env_is_used():
    used = set()
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for line in smk.read_text().splitlines():
            if "/envs/" in line or "{ENVS}/" in line:
                used.add(line.split("}/")[-1].split("/")[-1].strip().strip('",'))
    assert used, "no conda directive found in the rules"
    for name in used:
        assert (ROOT / "envs" / name).is_file(), name
    assert {f"{e}.yaml" for e in STAGE_ENVS} >= used


def test_all_extra_covers_every_stage_extra():
    assert {"tomo", "segment", "analysis", "fem", "slurm", "dev", "all"} <= set(EXTRAS)
    (all_spec,) = EXTRAS["all"]
    for extra in ("tomo", "segment", "analysis", "fem", "slurm", "dev"):
        assert extra in all_spec
    assert "torch==2.13.0" in EXTRAS["tomo"] and "torch==2.13.0" in EXTRAS["segment"]
