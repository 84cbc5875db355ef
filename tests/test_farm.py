"""Reconstruction on a Dask cluster (issue 15, ``lhaaso_joint/farm.py``): a LocalCluster of two
worker processes over six files, one worker killed (SIGKILL) mid-run: every event is
reconstructed exactly once and equals a single-process run within the fit's tolerance."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uproot

N_FILES, N_PER_FILE, BATCH = 6, 16, 8
COLUMNS = ("reco_core_x", "reco_core_y", "reco_zenith", "reco_azimuth", "reco_log10_energy",
           "nll", "status")


def test_cluster_spec_errors():
    from joint.io.errors import RunError
    from lhaaso_joint.farm import open_cluster

    for spec, msg in (("local:0", "positive integer"), ("local:x", "positive integer"),
                      ("mesos:3", "unknown kind")):
        with pytest.raises(RunError, match=msg):
            open_cluster(spec)


def test_htcondor_job_script():
    """The HTCondor job a farm run submits: one core, one process, the worker environment."""
    pytest.importorskip("dask_jobqueue")
    from lhaaso_joint.farm import jobqueue_cluster

    for kind in ("htcondor", "slurm"):
        cluster = jobqueue_cluster(kind, "6GB")
        try:
            script = cluster.job_script()
        finally:
            cluster.close()
        assert "XLA_PYTHON_CLIENT_PREALLOCATE=false" in script
        assert "--nthreads 1" in script and "--nworkers" not in script, script
        assert ("MY.DaskWorkerCores = 1" in script) if kind == "htcondor" else ("--cpus-per-task=1" in script), script


def _reco(path) -> dict:
    with uproot.open(path) as f:
        return f["reco"].arrays(library="np")


@pytest.mark.slow
def test_local_cluster_with_a_killed_worker(tmp_path):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from joint.io.schema import write_events
    from joint.simulation import simulate_records
    from lhaaso_joint.api import config_for
    from lhaaso_joint.farm import WORKER_ENV, DaskExecutor
    from joint import runner
    from analysis.observables import observables

    files = []
    for i in range(N_FILES):
        rec, _ = simulate_records(N_PER_FILE, primary="gamma", log10_energy_range=(4.8, 5.2),
                                  seed=100 + i, run=i + 1)
        files.append(tmp_path / f"run{i}.root")
        write_events(files[-1], rec)

    # the reference: one process (the CLI, float32 as the workers)
    ref = tmp_path / "ref.root"
    p = subprocess.run([sys.executable, "-m", "lhaaso_joint.cli", "reconstruct", *map(str, files),
                        "-o", str(ref), "--hypothesis", "gamma", "--batch-size", str(BATCH),
                        "--chunk-events", str(BATCH), "--quiet"], capture_output=True, text=True,
                       timeout=1800)
    assert p.returncode == 0, p.stderr

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, env=WORKER_ENV,
                           dashboard_address=None)
    client = Client(cluster)
    executor = DaskExecutor(client, cluster)
    out = tmp_path / "farm.root"
    work = tmp_path / "farm.root.work"
    killed = {}

    def kill_one_worker():
        t0 = time.time()
        while time.time() - t0 < 1500 and not killed:
            if len(list(work.glob("chunks-*/*.npz"))) >= 2:
                pids = client.run(os.getpid)
                addr, pid = sorted(pids.items())[0]
                os.kill(pid, signal.SIGKILL)
                killed[addr] = pid
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_one_worker, daemon=True)
    watcher.start()
    try:
        cfg = config_for(("km2a",), "gamma")
        summary = runner.reconstruct_files([str(f) for f in files], out, cfg, batch_size=BATCH,
                                           chunk_events=BATCH, progress=False, log=None,
                                           observables=observables, executor=executor)
    finally:
        watcher.join(5)
        executor.close()
    assert killed, "no worker was killed"
    n_chunks = N_FILES * N_PER_FILE // BATCH
    assert not work.exists()  # removed after the merge
    assert summary["events"] == N_FILES * N_PER_FILE and summary["chunks"] == n_chunks
    assert len(summary["workers"]) >= 2
    a, b = _reco(ref), _reco(out)
    key_a = list(zip(a["run"], a["event_id"]))
    key_b = list(zip(b["run"], b["event_id"]))
    assert key_b == key_a and len(set(key_b)) == len(key_b)  # each event once, input order
    for c in COLUMNS:
        np.testing.assert_allclose(b[c], a[c], rtol=1e-5, atol=1e-6, err_msg=c)
    run = json.loads(Path(str(out) + ".run.json").read_text())
    assert run["executor"].startswith("dask")
