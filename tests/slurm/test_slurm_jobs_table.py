"""The job record every holocat command logs first, and the report's jobs table (no cluster)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from holocat.cli import main
from holocat.pipeline.jobs import JOB_COLUMNS, format_job_record, job_record, read_job_table

SLURM_ENV = {"SLURM_JOB_ID": "4711", "SLURMD_NODENAME": "gpu07", "HOME": "/root"}


def test_job_record_reads_the_slurm_environment():
    rec = job_record(SLURM_ENV, host="gpu07.cluster")
    assert rec["slurm_job_id"] == "4711" and rec["slurm_node"] == "gpu07"
    assert rec["host"] == "gpu07.cluster"
    assert len(rec["started"]) == 19 and rec["started"][10] == "T"


def test_job_record_of_an_array_task_names_array_and_task():
    env = {"SLURM_JOB_ID": "4712", "SLURM_ARRAY_JOB_ID": "4700", "SLURM_ARRAY_TASK_ID": "3"}
    assert job_record(env, host="n")["slurm_job_id"] == "4700_3"


def test_job_record_outside_slurm_is_empty():
    rec = job_record({"HOME": "/root"}, host="laptop")
    assert (rec["slurm_job_id"], rec["slurm_node"], rec["host"]) == ("", "", "laptop")


def test_job_record_rejects_a_non_mapping():
    with pytest.raises(TypeError, match="environ"):
        job_record(["SLURM_JOB_ID=1"])


def _write_log(path, *lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_read_job_table_collects_every_record(tmp_path):
    logs = tmp_path / "logs"
    for i, (name, jid) in enumerate(
        (("reconstruct/s1/0", "12"), ("reconstruct/s1/1", "13"), ("fem/single_particle", ""))
    ):
        rec = {"host": "n1", "slurm_job_id": jid, "slurm_node": "n1" if jid else ""}
        rec["started"] = f"2026-01-01T00:00:0{i}"
        _write_log(
            logs / f"{name}.log",
            f"2026-01-01 00:00:00,000 INFO holocat: {format_job_record(rec)}",
            "2026-01-01 00:00:01,000 INFO holocat.tomo: slab 0 done",
        )
    _write_log(logs / "phase" / "s1" / "0.log", "killed before holocat started")
    _write_log(logs / "phase" / "s1" / "1.log", "x INFO holocat: holocat job {not json")
    table = read_job_table(logs)
    assert list(table.columns) == list(JOB_COLUMNS)
    assert table["job"].tolist() == ["reconstruct/s1/0", "reconstruct/s1/1", "fem/single_particle"]
    assert table["slurm_job_id"].tolist() == ["12", "13", ""]
    assert table["slurm_node"].tolist() == ["n1", "n1", ""]


def test_read_job_table_of_a_missing_directory_is_empty(tmp_path):
    table = read_job_table(tmp_path / "nope")
    assert table.empty and list(table.columns) == list(JOB_COLUMNS)


def test_cli_logs_the_record_first(monkeypatch, caplog, tmp_path):
    for k, v in SLURM_ENV.items():
        monkeypatch.setenv(k, v)
    caplog.set_level("INFO")
    assert main(["config", str(tmp_path / "missing.yaml")]) == 2  # logged even when it fails
    first = [r.getMessage() for r in caplog.records if "holocat job " in r.getMessage()]
    assert len(first) == 1
    rec = json.loads(first[0].split("holocat job ", 1)[1])
    assert rec["slurm_job_id"] == "4711" and rec["slurm_node"] == "gpu07"


def test_report_renders_the_jobs_table(tmp_path, monkeypatch):
    """`holocat report --logs` on a minimal results tree: the table in the HTML and jobs.csv."""
    from holocat.pipeline import science

    res = tmp_path / "results"
    (res / "s1" / "analysis").mkdir(parents=True)
    table = pd.DataFrame(
        {"label": [1, 2], "Damage": [0.1, 0.3], "Volume": [10.0, 20.0], "cycles": [10, 10]}
    )
    table.to_parquet(res / "s1" / "attributes.parquet")
    pd.DataFrame({"rank": [1]}, index=pd.Index(["Volume"], name="attribute")).to_csv(
        res / "s1" / "analysis" / "importance.csv"
    )
    jobs = pd.DataFrame(
        [["phase/s1/0", "n1", "12", "n1", "2026-01-01T00:00:00"]], columns=list(JOB_COLUMNS)
    )
    science.report(res, res / "report", {"title": "t", "samples": ["s1"]}, jobs=jobs)
    html = (res / "report" / "summary.html").read_text()
    assert "<h2>Jobs</h2>" in html and "1 jobs, 1 of them SLURM jobs (1 distinct ids)" in html
    back = pd.read_csv(res / "report" / "jobs.csv", dtype=str)
    assert back.values.tolist() == jobs.values.tolist()
    science.report(res, res / "report2", {"title": "t", "samples": ["s1"]})
    assert "<h2>Jobs</h2>" not in (res / "report2" / "summary.html").read_text()
    assert not (res / "report2" / "jobs.csv").exists()
