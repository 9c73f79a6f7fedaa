"""The tiny workflow end to end through sbatch on the real single-node SLURM cluster, with faults.

One run of ``tests/workflow/config_tiny`` through ``profiles/slurm-ci`` while a local run of the
same configuration goes on beside it as the reference. Three faults are injected into the SLURM
run, each checked by its own test:

- memory: ``fem_single_particle``'s first attempt asks for 100 MB (a profile override through its
  attempt scaling); SLURM kills it for exceeding that, Snakemake retries with 2000 MB;
- scancel: a running group of reconstruct slabs is cancelled once holocat runs inside it;
  Snakemake's retry redoes it;
- node down: while a segment slab job runs, the node is set DOWN (``scontrol update``) for
  ~15 s, then resumed; the jobs complete after it returns.

The results must equal the local run's, and every job must be traceable to its SLURM job.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from slurm_helpers import (
    BIN,
    ROOT,
    array_digest,
    env,
    job_records,
    jobcomp,
    node_state,
    queue,
    run,
    store_digest,
    submitted_ids,
)

from holocat.io import open_ome_zarr, read_manifest
from holocat.pipeline.config import load_config
from holocat.pipeline.plan import sample_plan

RUN_TIMEOUT_S = 2400
# the module's first test carries the whole SLURM run (fixture setup)
pytestmark = [pytest.mark.slurm, pytest.mark.timeout(RUN_TIMEOUT_S + 600)]

SAMPLES = ("tiny10", "tiny50")
STORES = ("raw.zarr", "phase.ome.zarr", "volume.ome.zarr", "labels.ome.zarr")
FAULT_MEM_MB = 100  # below the ~150 MB a Python process with numpy/snakemake needs at all


def _tiny_config(work: Path) -> Path:
    src = ROOT / "tests" / "workflow" / "config_tiny"
    cfg = yaml.safe_load((src / "config.yaml").read_text())
    cfg["samples"] = str(src / "samples.tsv")
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _fault_profile(dest: Path) -> Path:
    """profiles/slurm-ci with fem_single_particle's first attempt far below its memory need."""
    cfg = yaml.safe_load((ROOT / "profiles" / "slurm-ci" / "config.v8+.yaml").read_text())
    cfg["set-resources"]["fem_single_particle"]["mem_mb"] = (
        f"{FAULT_MEM_MB} if attempt == 1 else 1000 * attempt"
    )
    dest.mkdir(parents=True)
    (dest / "config.v8+.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def _snakemake(work: Path, config: Path, *args: str) -> list[str]:
    return [
        str(BIN / "snakemake"),
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(work),
        "--configfile",
        str(config),
        *args,
    ]


class FaultInjector(threading.Thread):
    """Cancels one running reconstruct slab job, then takes the node down during a segment job."""

    def __init__(self, work: Path, node: str, min_id: int, proc: subprocess.Popen):
        super().__init__(daemon=True)
        self.work, self.node, self.min_id, self.proc = work, node, min_id, proc
        self.events: dict[str, dict] = {}
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            self.events["cancel"] = self._cancel_slab_job()
            self.events["node_down"] = self._node_down()
        except Exception as exc:  # reported by the tests, never swallowed
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _running_with_holocat(self, group: str, rule: str, timeout: float = 1500):
        """A RUNNING job of ``group`` in which a holocat ``rule`` command has started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            running = {
                jid
                for jid, j in queue(self.min_id).items()
                if j["state"] == "RUNNING" and group in j["comment"]
            }
            if running:
                for log, rec in job_records(self.work / "logs" / rule).items():
                    if rec.get("slurm_job_id", "").isdigit():
                        if int(rec["slurm_job_id"]) in running:
                            return int(rec["slurm_job_id"]), log
            time.sleep(0.2)
        raise TimeoutError(f"no running {group} job with holocat {rule} started")

    def _cancel_slab_job(self) -> dict:
        jid, log = self._running_with_holocat("reconstruct_slabs", "reconstruct")
        sample = log.split("/")[0]
        run("scancel", str(jid))
        state = ""
        for _ in range(150):
            state = queue(self.min_id).get(jid, {}).get("state", "")
            if state and state not in ("RUNNING", "COMPLETING"):
                break
            time.sleep(0.2)
        res = self.work / "results" / sample
        try:
            open_ome_zarr(res / "volume.ome.zarr")
            opened = "opened"
        except ValueError as exc:
            opened = str(exc)
        return {
            "job_id": jid,
            "slab_log": log,
            "sample": sample,
            "state": state,
            "manifest_exists": (res / "volume.ome.zarr.manifest.json").exists(),
            "open_error": opened,
        }

    def _node_down(self) -> dict:
        jid, log = self._running_with_holocat("segment_slabs", "segment")
        running = {i for i, j in queue(self.min_id).items() if j["state"] == "RUNNING"}
        run("scontrol", "update", f"nodename={self.node}", "state=down", "reason=holocat-test")
        seen: dict[int, set[str]] = {i: set() for i in running}
        down_states = set()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 15:
            down_states.add(node_state(self.node))
            q = queue(self.min_id)
            for i in running:
                seen[i].add(q.get(i, {}).get("state", "gone"))
            time.sleep(0.5)
        run("scontrol", "update", f"nodename={self.node}", "state=resume")
        after = ""
        for _ in range(120):
            after = node_state(self.node)
            if after.startswith(("idle", "mixed", "allocated")):
                break
            time.sleep(0.5)
        return {
            "job_id": jid,
            "slab_log": log,
            "running": sorted(running),
            "states_seen": {i: sorted(s) for i, s in seen.items()},
            "node_states_while_down": sorted(down_states),
            "node_state_after": after,
        }


def _stop(proc: subprocess.Popen, first: int) -> None:
    """End a snakemake still running (after a failure): ``first`` signal, then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, first)  # SIGINT: snakemake scancels its SLURM jobs
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("slurmrun")
    work, local = base / "slurm", base / "local"
    work.mkdir()
    local.mkdir()
    config = _tiny_config(work)
    profile = _fault_profile(base / "profile")
    min_id = max(queue(), default=0)
    # both runs import holocat from a snapshot of src/ taken now, so that an edit of the working
    # tree during the ~10 min of the runs cannot make them compute with different code
    # (holocat finds workflow/schemas and resources/ beside src/: linked, not copied)
    shutil.copytree(
        ROOT / "src" / "holocat",
        base / "src" / "holocat",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("workflow", "resources"):
        (base / name).symlink_to(ROOT / name, target_is_directory=True)
    run_env = env() | {"PYTHONPATH": str(base / "src")}
    log_path = work / "snakemake.log"
    with open(local / "snakemake.log", "w") as local_log, open(log_path, "w") as log:
        # the reference: the same configuration run locally, beside the SLURM run
        local_proc = subprocess.Popen(
            _snakemake(local, config, "--cores", "2"),
            stdout=local_log,
            stderr=subprocess.STDOUT,
            env=run_env,
            start_new_session=True,
        )
        t0 = time.monotonic()
        proc = subprocess.Popen(
            _snakemake(work, config, "--profile", str(profile)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=run_env,
            cwd=work,
            start_new_session=True,
        )
        faults = FaultInjector(work, slurm_cluster["node"], min_id, proc)
        faults.start()
        try:
            rc = proc.wait(timeout=RUN_TIMEOUT_S)
            seconds = time.monotonic() - t0
            local_rc = local_proc.wait(timeout=RUN_TIMEOUT_S)
        finally:
            _stop(proc, signal.SIGINT)
            _stop(local_proc, signal.SIGTERM)
            faults.join(timeout=60)
    text = log_path.read_text(errors="replace")
    assert rc == 0, f"SLURM run failed ({rc}):\n{text[-8000:]}"
    assert local_rc == 0, (local / "snakemake.log").read_text()[-4000:]
    print(f"\nSLURM run of the tiny config: {seconds:.0f} s; fault events: {faults.events}")
    plan = sample_plan(load_config(config), "synthetic")
    return {
        "work": work,
        "local": local,
        "log": text,
        "n_jobs": int(re.search(r"^total\s+(\d+)\s*$", text, re.M).group(1)),
        "n_slab_jobs": len(SAMPLES) * plan.n_slabs,
        "ids": submitted_ids(text),
        "node": slurm_cluster["node"],
        "min_id": min_id,
        "events": faults.events,
        "errors": faults.errors,
        "seconds": seconds,
    }


def test_tiny_workflow_runs_end_to_end_through_sbatch(slurm_run):
    n = slurm_run["n_jobs"]
    assert re.search(rf"^{n} of {n} steps \(100%\) done", slurm_run["log"], re.M)
    assert not slurm_run["errors"], slurm_run["errors"]
    # every job but the target rule `all` ran inside a SLURM job: its log's record says which
    records = job_records(slurm_run["work"] / "logs")
    assert len(records) == slurm_run["n_jobs"] - 1 > 50
    assert all(r["slurm_job_id"].isdigit() for r in records.values()), records
    assert len(slurm_run["ids"]) >= 30 and len(set(slurm_run["ids"])) == len(slurm_run["ids"])
    res = slurm_run["work"] / "results"
    for s in SAMPLES:
        for store in STORES:
            assert read_manifest(res / s / f"{store}.manifest.json")["checksum"]
    assert (res / "report" / "summary.html").is_file()


@pytest.mark.parametrize("sample", SAMPLES)
def test_results_equal_the_local_run(slurm_run, sample):
    res, ref = slurm_run["work"] / "results" / sample, slurm_run["local"] / "results" / sample
    for store in STORES:
        # the manifests' checksums cover the provenance too (timestamps, inputs' provenance):
        # compare every chunk and the metadata without it
        assert store_digest(res / store) == store_digest(ref / store), store
    pd.testing.assert_frame_equal(
        pd.read_parquet(res / "attributes.parquet"), pd.read_parquet(ref / "attributes.parquet")
    )
    for name in ("importance.csv", "correlations.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(res / "analysis" / name), pd.read_csv(ref / "analysis" / name)
        )
    got, want = (json.loads((d / "validation.json").read_text()) for d in (res, ref))
    got.pop("provenance"), want.pop("provenance")  # timestamps and inputs' provenance differ
    assert got == want


def test_shared_results_equal_the_local_run(slurm_run):
    res, ref = slurm_run["work"] / "results", slurm_run["local"] / "results"
    pd.testing.assert_frame_equal(
        pd.read_parquet(res / "fem" / "single_particle.parquet"),
        pd.read_parquet(ref / "fem" / "single_particle.parquet"),
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(res / "comparison" / "comparison.csv"),
        pd.read_csv(ref / "comparison" / "comparison.csv"),
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(res / "report" / "summary.csv"), pd.read_csv(ref / "report" / "summary.csv")
    )


def test_every_job_is_known_to_slurm(slurm_run):
    work, node = slurm_run["work"], slurm_run["node"]
    done = jobcomp()
    slurm_logs = {int(p.stem): p for p in (work / ".snakemake" / "slurm_logs").rglob("*.log")}
    for jid in slurm_run["ids"]:
        assert jid in done, f"SLURM job {jid} not in the cluster's job completion log"
        rec = done[jid]
        assert rec["NodeList"] == node and rec["Partition"] == "ci", rec
        assert rec["Account"] == "holocat-ci", rec
        assert jid in slurm_logs, f"no .snakemake/slurm_logs/**/{jid}.log"
    # slurmctld itself still lists them (MinJobAge 900 s) unless the run took longer than that
    if slurm_run["seconds"] < 800:
        assert set(slurm_run["ids"]) <= set(queue(slurm_run["min_id"]))


def test_jobs_table_names_each_jobs_slurm_id_and_node(slurm_run):
    work, node = slurm_run["work"], slurm_run["node"]
    records = job_records(work / "logs")
    table = pd.read_csv(work / "results" / "report" / "jobs.csv", dtype=str).fillna("")
    assert len(records) == slurm_run["n_jobs"] - 1  # every job but `all` logs its record
    assert sorted(table["job"]) == sorted(records)
    done = jobcomp()
    ids = set(slurm_run["ids"])
    for row in table.itertuples():
        assert row.slurm_node == node and row.host == node, row
        jid = int(row.slurm_job_id)
        # the job that wrote the log is one this run submitted, and its final SLURM state is
        # COMPLETED (a cancelled or killed attempt was overwritten by its retry's log)
        assert jid in ids, row
        assert done[jid]["JobState"] == "COMPLETED", (row, done[jid])
        assert records[row.job]["slurm_job_id"] == row.slurm_job_id
    html = (work / "results" / "report" / "summary.html").read_text()
    assert "<h2>Jobs</h2>" in html and f"{len(table)} jobs, {len(table)} of them SLURM" in html


def _event(slurm_run, name: str) -> dict:
    assert name in slurm_run["events"], f"fault {name!r} not injected: {slurm_run['errors']}"
    return slurm_run["events"][name]


def test_cancelled_slab_job_left_nothing_complete_and_was_redone(slurm_run):
    ev = _event(slurm_run, "cancel")
    assert ev["state"] == "CANCELLED", ev
    assert jobcomp()[ev["job_id"]]["JobState"] == "CANCELLED"
    # right after the kill: no manifest, and holocat refuses the half-written store
    assert not ev["manifest_exists"], ev
    assert "incomplete" in ev["open_error"], ev
    # the slab was redone by a later SLURM job, and the volume equals the local one
    rec = job_records(slurm_run["work"] / "logs" / "reconstruct")[ev["slab_log"]]
    assert int(rec["slurm_job_id"]) > ev["job_id"]
    assert re.search(r"Trying to restart job", slurm_run["log"])
    s = ev["sample"]
    assert array_digest(slurm_run["work"] / "results" / s / "volume.ome.zarr") == array_digest(
        slurm_run["local"] / "results" / s / "volume.ome.zarr"
    )


def test_job_over_its_memory_was_killed_and_retried_with_more(slurm_run):
    work = slurm_run["work"]
    logs = sorted(
        (work / ".snakemake" / "slurm_logs" / "rule_fem_single_particle").rglob("*.log"),
        key=lambda p: int(p.stem),
    )
    assert len(logs) == 2, logs  # attempt 1 (killed) and attempt 2
    done = jobcomp()
    first, second = done[int(logs[0].stem)], done[int(logs[1].stem)]
    assert f"mem={FAULT_MEM_MB}M" in first["Tres"], first
    assert first["JobState"] in ("OUT_OF_MEMORY", "FAILED"), first
    text = logs[0].read_text(errors="replace")
    assert re.search(r"oom-kill|out of memory|exceeded .*memory limit", text, re.I), text[-2000:]
    assert "mem=2000M" in second["Tres"] and second["JobState"] == "COMPLETED", second


def test_jobs_complete_after_the_node_returns(slurm_run):
    ev = _event(slurm_run, "node_down")
    assert any(s.startswith("down") for s in ev["node_states_while_down"]), ev
    assert ev["node_state_after"].startswith(("idle", "mixed", "allocated")), ev
    # the segment job running at the time did not finish normally while the node was down ...
    seen = ev["states_seen"][ev["job_id"]]
    assert set(seen) - {"RUNNING", "COMPLETING"}, ev
    # ... yet every segment slab ended with a completed SLURM job, and the labels equal the
    # local run's (test_results_equal_the_local_run)
    done = jobcomp()
    recs = job_records(slurm_run["work"] / "logs" / "segment")
    assert len(recs) == slurm_run["n_slab_jobs"]
    assert all(done[int(r["slurm_job_id"])]["JobState"] == "COMPLETED" for r in recs.values())
    assert node_state(slurm_run["node"]).startswith(("idle", "mixed", "allocated"))


def test_no_slurm_job_is_left_behind(slurm_run):
    q = queue(slurm_run["min_id"])
    assert not [j for j in q.values() if j["state"] in ("RUNNING", "PENDING", "COMPLETING")], q
