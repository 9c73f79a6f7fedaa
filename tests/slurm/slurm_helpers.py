"""Helpers of the SLURM tests: the cluster script, SLURM queries, job records, result digests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CLUSTER = ROOT / ".ci" / "slurm-cluster.sh"
STATE = Path(os.environ.get("HOLOCAT_SLURM_DIR", "/var/lib/holocat-slurm"))
JOBCOMP = STATE / "log" / "jobcomp.txt"
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")


def env() -> dict:
    out = dict(os.environ)
    out["PATH"] = f"{BIN}{os.pathsep}{out.get('PATH', '')}"
    return out


def cluster(action: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CLUSTER), action], capture_output=True, text=True, timeout=timeout
    )


def run(*cmd: str, check: bool = True, timeout: int = 60) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


def queue(min_id: int = 0) -> dict[int, dict[str, str]]:
    """Every job slurmctld still knows (running, pending, and finished within MinJobAge)."""
    out = run("squeue", "-h", "--states=all", "-o", "%i|%T|%k|%N|%r")
    jobs = {}
    for line in out.splitlines():
        jid, state, comment, node, reason = line.split("|", 4)
        if jid.isdigit() and int(jid) > min_id:
            jobs[int(jid)] = {"state": state, "comment": comment, "node": node, "reason": reason}
    return jobs


def jobcomp() -> dict[int, dict[str, str]]:
    """Finished jobs as recorded by jobcomp/filetxt (the last record of a requeued job wins)."""
    jobs: dict[int, dict[str, str]] = {}
    if not JOBCOMP.exists():
        return jobs
    for line in JOBCOMP.read_text(errors="replace").splitlines():
        fields = dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))
        if fields.get("JobId", "").isdigit():
            jobs[int(fields["JobId"])] = fields
    return jobs


def submitted_ids(snakemake_log: str) -> list[int]:
    return [int(m) for m in SUBMITTED.findall(snakemake_log)]


def node_state(node: str) -> str:
    return run("sinfo", "-h", "-n", node, "-o", "%T").strip()


def job_records(logs: Path) -> dict[str, dict]:
    """The ``holocat job {...}`` record at the top of every rule log, by log path."""
    recs = {}
    for path in sorted(logs.rglob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if "holocat job " in line:
                recs[path.relative_to(logs).with_suffix("").as_posix()] = json.loads(
                    line.split("holocat job ", 1)[1]
                )
                break
    return recs


def store_digest(store: Path) -> str:
    """Content digest of a Zarr store without its provenance (timestamps, host, git state).

    Every chunk file's bytes and every ``zarr.json`` with ``attributes.holocat`` removed, by
    relative path: equal digests mean equal arrays, shapes, dtypes, chunking and metadata.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in store.rglob("*") if p.is_file()):
        rel = path.relative_to(store).as_posix()
        if path.name == "zarr.json":
            meta = json.loads(path.read_text())
            meta.get("attributes", {}).pop("holocat", None)
            body = json.dumps(meta, sort_keys=True).encode()
        else:
            body = path.read_bytes()
        digest.update(f"{rel}\t{hashlib.sha256(body).hexdigest()}\n".encode())
    return digest.hexdigest()


def array_digest(store: Path) -> str:
    import numpy as np

    from holocat.io import open_ome_zarr

    data = np.ascontiguousarray(open_ome_zarr(store).array[:])
    return hashlib.sha256(data.tobytes()).hexdigest() + f"/{data.dtype}/{data.shape}"
