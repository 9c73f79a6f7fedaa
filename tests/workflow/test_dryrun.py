"""`snakemake -n` plans the whole DAG with its fan-out; every rule declares what the conventions ask."""

from __future__ import annotations

import re
import subprocess
import sys

from wf_helpers import BIN, ROOT, run_snakemake

from holocat.pipeline.config import load_config
from holocat.pipeline.plan import sample_plan

STAGE_RULES = {
    "simulate": ["simulate_electrode", "simulate_scan"],
    "ingest": ["ingest"],
    "phase": ["phase_init", "phase", "phase_gather"],
    "reconstruct": ["reconstruct_init", "reconstruct", "reconstruct_gather"],
    "segment": ["segment_init", "segment", "segment_stitch"],
    "attributes": ["attributes", "attributes_gather"],
    "analysis": ["analysis", "analysis_compare"],
    "fem": ["fem_single_particle"],
    "report": ["validate", "report"],
}


def _job_counts(stdout: str) -> dict[str, int]:
    block = stdout.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", block, re.M)}


def test_dry_run_plans_all_nine_stages_with_fan_out(tmp_path):
    cfg = ROOT / "config" / "config.yaml"
    proc = run_snakemake(
        tmp_path,
        "-n",
        "--configfile",
        str(cfg),
        "--config",
        f"samples={ROOT / 'config' / 'samples.tsv'}",
    )
    counts = _job_counts(proc.stdout)
    for stage, rules in STAGE_RULES.items():
        for rule in rules:
            assert counts.get(rule, 0) >= 1, f"stage {stage}: rule {rule} not planned"
    config = load_config(cfg)
    plan = sample_plan(config, "synthetic")
    n_samples = 2
    assert counts["phase"] == n_samples * plan.n_angle_chunks
    assert counts["reconstruct"] == n_samples * plan.n_slabs
    assert counts["segment"] == n_samples * plan.n_slabs
    assert counts["attributes"] == n_samples * plan.n_slabs
    assert plan.n_slabs > 1 and plan.n_angle_chunks > 1


def test_every_rule_declares_threads_resources_log_benchmark_conda():
    text = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    rules = re.split(r"^rule ", text, flags=re.M)[1:]
    assert len(rules) >= 20
    for body in rules:
        name = body.split(":")[0]
        for key in (
            "log:",
            "benchmark:",
            "threads:",
            "resources:",
            "conda:",
            "mem_mb=",
            "runtime=",
        ):
            assert key in body, f"rule {name} lacks {key}"


def test_holocat_help_lists_stage_subcommands():
    out = subprocess.run(
        [str(BIN / "holocat"), "--help"], capture_output=True, text=True, check=True
    )
    for stage in STAGE_RULES:
        assert re.search(rf"^\s+{stage}\s", out.stdout, re.M), stage
    out = subprocess.run(
        [sys.executable, "-m", "holocat.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("holocat ")
