"""Where each workflow job ran: the record every ``holocat`` command logs first, and the job table.

Each stage command starts by logging one line ``holocat job {...}`` (JSON: host, SLURM job id, SLURM
node, start time) to its stderr, which the workflow's rules redirect into ``logs/<rule>/...log``.
Under SLURM the ids come from the job step's environment (``SLURM_JOB_ID``, ``SLURMD_NODENAME``);
in a local run they are empty. :func:`read_job_table` collects these records from a ``logs/``
tree into the report's "jobs" table, so that every job of a run can be found again in SLURM
(``squeue``/``sacct``/``scontrol show job``) and in ``.snakemake/slurm_logs/**/<jobid>.log``.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

__all__ = ["JOB_MARKER", "JOB_COLUMNS", "job_record", "format_job_record", "read_job_table"]

log = logging.getLogger(__name__)

JOB_MARKER = "holocat job "
JOB_COLUMNS = ("job", "host", "slurm_job_id", "slurm_node", "started")


def job_record(environ: Mapping[str, str], *, host: str | None = None) -> dict[str, str]:
    """The record of the current process: where it runs and, under SLURM, which job it is.

    Parameters
    ----------
    environ : Mapping[str, str]
        The process environment (``os.environ``); ``SLURM_JOB_ID`` (``SLURM_ARRAY_JOB_ID`` and
        ``SLURM_ARRAY_TASK_ID`` for array tasks) and ``SLURMD_NODENAME`` are read when present.
    host : str, optional
        Host name; default ``socket.gethostname()``.

    Returns
    -------
    dict
        ``host``, ``slurm_job_id`` (``"<array job>_<task>"`` for array tasks, ``""`` outside
        SLURM), ``slurm_node`` (``""`` outside SLURM) and ``started`` (local time, ISO 8601).

    Examples
    --------
    >>> rec = job_record({"SLURM_JOB_ID": "42", "SLURMD_NODENAME": "gpu07"}, host="gpu07")
    >>> rec["slurm_job_id"], rec["slurm_node"], rec["host"]
    ('42', 'gpu07', 'gpu07')
    >>> job_record({}, host="laptop")["slurm_job_id"]
    ''
    """
    if not isinstance(environ, Mapping):
        raise TypeError(f"environ: expected a mapping such as os.environ; got {type(environ)}")
    job_id = environ.get("SLURM_JOB_ID", "")
    if environ.get("SLURM_ARRAY_JOB_ID") and environ.get("SLURM_ARRAY_TASK_ID"):
        job_id = f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    return {
        "host": host if host is not None else socket.gethostname(),
        "slurm_job_id": job_id,
        "slurm_node": environ.get("SLURMD_NODENAME", ""),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def format_job_record(record: Mapping[str, str]) -> str:
    """The log line of a record: ``holocat job`` and the record as one line of JSON.

    Examples
    --------
    >>> format_job_record({"host": "n1", "slurm_job_id": "7"})
    'holocat job {"host": "n1", "slurm_job_id": "7"}'
    """
    return JOB_MARKER + json.dumps(dict(record), sort_keys=True)


def _record_of(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if JOB_MARKER in line:
                    text = line.split(JOB_MARKER, 1)[1].strip()
                    try:
                        rec = json.loads(text)
                    except json.JSONDecodeError:
                        log.warning("%s: unreadable job record %r", path, text[:200])
                        return None
                    return rec if isinstance(rec, dict) else None
    except OSError as exc:
        log.warning("%s: cannot read (%s)", path, exc)
    return None


def read_job_table(logs_dir: str | Path) -> pd.DataFrame:
    """Collect the job records of every ``*.log`` under ``logs_dir`` into one table.

    Parameters
    ----------
    logs_dir : str or Path
        The workflow's log directory (``logs/``): ``<rule>/<wildcards...>.log``.

    Returns
    -------
    pandas.DataFrame
        One row a job that logged a record, sorted by start time then job: ``job`` (the log path
        relative to ``logs_dir`` without ``.log``: rule folder and wildcards, e.g.
        ``reconstruct/tiny10/2``), ``host``, ``slurm_job_id``, ``slurm_node``, ``started``. Logs without a record (a job
        that died before its command started) are left out. Empty (with these columns) when
        ``logs_dir`` does not exist.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "phase" / "s1").mkdir(parents=True)
    >>> rec = {"host": "n1", "slurm_job_id": "12", "slurm_node": "n1", "started": "2026-01-01T00:00:00"}
    >>> _ = (d / "phase" / "s1" / "0.log").write_text("x INFO holocat: " + format_job_record(rec))
    >>> read_job_table(d)[["job", "host", "slurm_job_id"]].values.tolist()
    [['phase/s1/0', 'n1', '12']]
    """
    logs_dir = Path(logs_dir)
    rows = []
    if logs_dir.is_dir():
        for path in sorted(logs_dir.rglob("*.log")):
            rec = _record_of(path)
            if rec is None:
                continue
            rel = path.relative_to(logs_dir).with_suffix("")
            row = {"job": rel.as_posix()}
            row.update({k: str(rec.get(k, "")) for k in JOB_COLUMNS[1:]})
            rows.append(row)
    table = pd.DataFrame(rows, columns=list(JOB_COLUMNS))
    return table.sort_values(["started", "job"], kind="stable").reset_index(drop=True)
