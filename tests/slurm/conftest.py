"""The real single-node SLURM cluster of ``.ci/slurm-cluster.sh``, started once per session.

With ``HOLOCAT_SLURM_TESTS=1`` (``.ci/run``) a cluster that cannot start fails the tests; without
it they are skipped (e.g. ``pytest -m slurm`` as a non-root user). A cluster that was already
running before the session is left running afterwards.
"""

from __future__ import annotations

import os
import time

import pytest
from slurm_helpers import STATE, cluster


@pytest.fixture(scope="session")
def slurm_cluster():
    required = os.environ.get("HOLOCAT_SLURM_TESTS") == "1"
    was_running = cluster("status").returncode == 0
    t0 = time.monotonic()
    proc = cluster("start")
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        msg = f"the SLURM test cluster did not start:\n{proc.stdout}\n{proc.stderr}"
        if required:
            pytest.fail(msg)
        pytest.skip(msg)
    status = cluster("status")
    assert status.returncode == 0, status.stdout + status.stderr
    node = os.uname().nodename.split(".")[0]
    info = {"node": node, "partition": "ci", "state_dir": STATE, "start_seconds": seconds}
    print(f"\nSLURM test cluster up in {seconds:.1f} s:\n{status.stdout}")
    yield info
    if not was_running:
        stop = cluster("stop")
        assert stop.returncode == 0, stop.stdout + stop.stderr
