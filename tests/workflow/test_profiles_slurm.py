"""`snakemake --profile profiles/slurm -n` plans the cluster run on a machine without SLURM.

The dry runs use the tiny configuration and a PATH from which every SLURM command is hidden, so
they show what a laptop or a CI machine without SLURM sees; the planned jobs must carry the
profile's cluster resources (account, partitions, GPUs, attempt-scaled memory, groups).
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml
from wf_helpers import BIN, ROOT

from holocat.pipeline.config import load_config
from holocat.pipeline.plan import sample_plan

SLURM_COMMANDS = re.compile(
    r"^(s(batch|queue|info|acct|acctmgr|control|cancel|run|alloc|share|stat|prio|report|diag"
    r"|trigger|attach|bcast|crontab|h5util|view|sh5util|jobexitmod|jstat)|slurm.*)$"
)


@pytest.fixture(scope="module")
def no_slurm_path(tmp_path_factory):
    """A PATH with the project's venv and the system's commands, minus every SLURM command."""
    shadow = tmp_path_factory.mktemp("bin-without-slurm")
    for d in ("/usr/local/bin", "/usr/bin", "/bin"):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            target = os.path.join(d, name)
            link = shadow / name
            if SLURM_COMMANDS.match(name) or link.exists() or not os.access(target, os.X_OK):
                continue
            link.symlink_to(target)
    return f"{BIN}{os.pathsep}{shadow}"


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    src = ROOT / "tests" / "workflow" / "config_tiny"
    cfg = yaml.safe_load((src / "config.yaml").read_text())
    cfg["samples"] = str(src / "samples.tsv")
    path = tmp_path_factory.mktemp("tinycfg") / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def fan_out(tiny_config):
    """Jobs per fanned-out rule of the tiny config (two synthetic samples), from its plan."""
    plan = sample_plan(load_config(tiny_config), "synthetic")
    return {"phase": 2 * plan.n_angle_chunks, "slab": 2 * plan.n_slabs}


def _total(text: str) -> int:
    return int(re.search(r"^total\s+(\d+)\s*$", text, re.M).group(1))


def _dry_run(workdir, config, path, *args, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HOLOCAT_SLURM"))}
    env["PATH"] = path
    env.update(extra_env or {})
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(config),
        "-n",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _resources(text: str, rule: str) -> list[dict[str, str]]:
    """The `resources:` line of every planned job of ``rule`` (plain or inside a group)."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        if re.search(rf"^\s*rule {rule}:", block, re.M):
            line = re.search(r"^\s*resources: (.*)$", block, re.M).group(1)
            out.append(dict(kv.split("=", 1) for kv in line.split(", ")))
    return out


def _threads(text: str, rule: str) -> set[int]:
    found = set()
    for block in re.split(r"\n\s*\n", text):
        if re.search(rf"^\s*rule {rule}:", block, re.M):
            found.add(int(re.search(r"^\s*threads: (\d+)", block, re.M).group(1)))
    return found


def test_slurm_profile_dry_run_without_slurm(tmp_path, tiny_config, no_slurm_path, fan_out):
    text = _dry_run(
        tmp_path,
        tiny_config,
        no_slurm_path,
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        extra_env={
            "HOLOCAT_SLURM_ACCOUNT": "mx1234",
            "HOLOCAT_SLURM_PARTITION": "cpu",
            "HOLOCAT_SLURM_GPU_PARTITION": "gpu",
        },
    )
    assert _total(text) > fan_out["phase"] + 3 * fan_out["slab"]
    for rule, n in (
        ("phase", fan_out["phase"]),
        ("reconstruct", fan_out["slab"]),
        ("segment", fan_out["slab"]),
    ):
        res = _resources(text, rule)
        assert len(res) == n, rule
        for r in res:
            assert r["gpu"] == "1" and r["slurm_partition"] == "gpu", (rule, r)
            assert r["slurm_account"] == "mx1234", (rule, r)
        assert _threads(text, rule) == {8}, rule
    # first attempts as in the profile: 32 GB per angle chunk, 48 GB per segment slab
    assert {r["mem_mb"] for r in _resources(text, "phase")} == {"32000"}
    assert {r["mem_mb"] for r in _resources(text, "segment")} == {"48000"}
    for rule in ("attributes", "simulate_electrode", "analysis"):
        for r in _resources(text, rule):
            assert r["gpu"] == "0" and r["slurm_partition"] == "cpu", (rule, r)
    # the tiny bookkeeping jobs are planned as group jobs, one of each kind per sample
    for group in ("prepare_phase", "prepare_reconstruct", "prepare_segment"):
        assert len(re.findall(rf"Group job {group} ", text)) == 2, group


def test_slurm_profile_dry_run_with_defaults(tmp_path, tiny_config, no_slurm_path):
    """No site variables set: no account or partition is forced, GPUs still requested."""
    text = _dry_run(
        tmp_path,
        tiny_config,
        no_slurm_path,
        "--profile",
        str(ROOT / "profiles" / "slurm"),
    )
    for r in _resources(text, "reconstruct"):
        assert "slurm_account" not in r and "slurm_partition" not in r, r
        assert r["gpu"] == "1"


def test_slurm_ci_profile_dry_run_without_slurm(tmp_path, tiny_config, no_slurm_path, fan_out):
    text = _dry_run(
        tmp_path,
        tiny_config,
        no_slurm_path,
        "--profile",
        str(ROOT / "profiles" / "slurm-ci"),
    )
    res = _resources(text, "reconstruct")
    assert len(res) == fan_out["slab"]
    for r in res:
        assert r["gpu"] == "1" and r["slurm_account"] == "holocat-ci", r
        assert r["slurm_partition"] == "ci" and r["mem_mb"] == "1500", r
    for r in _resources(text, "attributes"):
        assert r["gpu"] == "0" and r["cpus_per_task"] == "1", r


def test_plain_profile_option_is_not_overridden_by_a_workflow_profile(
    tmp_path, tiny_config, no_slurm_path, fan_out
):
    """`snakemake --profile profiles/slurm -n` alone: no workflow profile (profiles/default) is
    layered over the cluster profile, so the account and the GPU requests survive."""
    assert not (ROOT / "profiles" / "default").exists()
    text = _dry_run(
        tmp_path,
        tiny_config,
        no_slurm_path,
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        extra_env={"HOLOCAT_SLURM_ACCOUNT": "mx1234"},
    )
    assert "workflow specific profile" not in text
    res = _resources(text, "phase")
    assert len(res) == fan_out["phase"]
    for r in res:
        assert r["slurm_account"] == "mx1234" and r["gpu"] == "1", r
