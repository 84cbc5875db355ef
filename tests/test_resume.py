"""Resumable runs (issue 15): a run killed mid-file continues where it stopped, with no event
lost or duplicated and the same output as an uninterrupted run; a changed configuration is
not mixed with the old chunks; bad run arguments and output paths are refused before any fit,
leaving the inputs untouched and no leftovers."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import uproot

from joint.io.errors import RunError

N_EVENTS, BATCH, CHUNK = 48, 8, 8
FIT_COLUMNS = ("reco_core_x", "reco_core_y", "reco_zenith", "reco_azimuth", "reco_log10_energy",
               "nll", "status")


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    from joint.io.schema import write_events
    from joint.simulation import simulate_records

    rec, _ = simulate_records(N_EVENTS, primary="gamma", log10_energy_range=(4.8, 5.2), seed=31)
    path = tmp_path_factory.mktemp("resume") / "events.root"
    write_events(path, rec)
    return path


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _cli(*args, **kw):
    """``lhaaso-joint ...`` in a fresh process (float32, as users run it)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "lhaaso_joint.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            **kw)


def _reco(path) -> dict:
    with uproot.open(path) as f:
        return f["reco"].arrays(library="np")


def _args(inp, out):
    return ["reconstruct", inp, "-o", out, "--hypothesis", "gamma", "--batch-size", BATCH,
            "--chunk-events", CHUNK, "--quiet"]


def test_sigkill_mid_file_resumes_and_equals_an_uninterrupted_run(events_file, tmp_path):
    before = _sha(events_file)
    ref = tmp_path / "ref.root"
    p = _cli(*_args(events_file, ref))
    out, err = p.communicate(timeout=900)
    assert p.returncode == 0, err
    run = json.loads((tmp_path / "ref.root.run.json").read_text())
    assert run["events"] == N_EVENTS and run["chunks"] == N_EVENTS // CHUNK

    killed = tmp_path / "killed.root"
    work = tmp_path / "killed.root.work"
    p = _cli(*_args(events_file, killed))
    t0 = time.time()
    while time.time() - t0 < 900:
        if len(list(work.glob("chunks-*/*.npz"))) >= 2:
            break
        if p.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {p.communicate()}")
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    n_before = len(list(work.glob("chunks-*/*.npz")))
    assert 2 <= n_before < N_EVENTS // CHUNK, "killed too late to test a resume"
    assert not killed.exists()
    manifest = json.loads((tmp_path / "killed.root.work" / "manifest.json").read_text())

    p = _cli(*_args(events_file, killed))
    out, err = p.communicate(timeout=900)
    assert p.returncode == 0, err
    assert f"{n_before} of {N_EVENTS // CHUNK} chunks already fitted" in err
    summary = json.loads((tmp_path / "killed.root.run.json").read_text())
    assert summary["config_hash"] == manifest["config_hash"]
    assert summary["chunks_reused"] == n_before
    assert summary["events_fitted_now"] == N_EVENTS - n_before * CHUNK  # less than the whole
    assert not (tmp_path / "killed.root.work").exists()
    a, b = _reco(ref), _reco(killed)
    np.testing.assert_array_equal(a["event_id"], b["event_id"])  # each event once, in order
    assert len(np.unique(b["event_id"])) == N_EVENTS
    for c in FIT_COLUMNS:
        np.testing.assert_allclose(b[c], a[c], rtol=1e-5, atol=1e-6, err_msg=c)
    assert _sha(events_file) == before
    assert not list(tmp_path.glob("*.part"))


def test_in_process_resume_after_a_failure_and_config_change(events_file, tmp_path, monkeypatch):
    """A chunk that fails stops the run with a RunError naming it; the finished chunks are
    kept and reused by the next run; a run of another configuration refuses to mix with them
    (and --overwrite discards them)."""
    from joint import runner
    from lhaaso_joint.api import config_for, reconstruct_files

    cfg = config_for(("km2a",), "gamma")
    real = runner.fit_records
    calls = []

    def flaky(task, rec, ctx):
        calls.append(task.start)
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        return real(task, rec, ctx)

    monkeypatch.setattr(runner, "fit_records", flaky)
    out = tmp_path / "reco.root"
    kw = dict(batch_size=BATCH, chunk_events=16, progress=False, log=None)
    with pytest.raises(RuntimeError, match="worker lost"):
        reconstruct_files([events_file], out, cfg, **kw)
    assert not out.exists() and not list(tmp_path.glob("*.part"))
    assert len(list((tmp_path / "reco.root.work").glob("chunks-*/*.npz"))) == 2

    with pytest.raises(RunError, match="different configuration"):
        reconstruct_files([events_file], out, config_for(("km2a",), "gamma", n_iter=6), **kw)
    monkeypatch.setattr(runner, "fit_records", real)
    logs = []
    s = reconstruct_files([events_file], out, cfg, **dict(kw, log=logs.append))
    assert s["chunks_reused"] == 2 and s["events"] == N_EVENTS
    assert any("2 of 3 chunks already fitted" in m for m in logs)
    # finished with the same configuration: not refitted
    logs.clear()
    s2 = reconstruct_files([events_file], out, cfg, **dict(kw, log=logs.append))
    assert s2["config_hash"] == s["config_hash"] and any("not refitted" in m for m in logs)
    with pytest.raises(RunError, match="exists"):
        reconstruct_files([events_file], out, config_for(("km2a",), "gamma", n_iter=6), **kw)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": -5}, "batch-size must be a positive integer"),
    ({"batch_size": 0}, "batch-size must be a positive integer"),
    ({"chunk_events": 0}, "chunk_events must be a positive integer"),
    ({"max_memory_gb": 0.0}, "--max-memory must be a positive number"),
])
def test_bad_run_arguments_refused_before_anything(events_file, tmp_path, kwargs, message,
                                                   monkeypatch):
    from joint import runner
    from lhaaso_joint.api import config_for, reconstruct_files

    monkeypatch.setattr(runner, "fit_records", lambda *a: pytest.fail("fitted"))
    with pytest.raises(RunError, match=message):
        reconstruct_files([events_file], tmp_path / "o.root", config_for(("km2a",), "gamma"),
                          progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_output_paths_refused(events_file, tmp_path, monkeypatch):
    from joint import runner
    from lhaaso_joint.api import config_for, reconstruct_files

    monkeypatch.setattr(runner, "fit_records", lambda *a: pytest.fail("fitted"))
    cfg = config_for(("km2a",), "gamma")
    before = _sha(events_file)
    with pytest.raises(RunError, match="is the input"):
        reconstruct_files([events_file], events_file, cfg, progress=False, overwrite=True)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(RunError, match="is a file, not a directory"):
        reconstruct_files([events_file], afile / "reco.root", cfg, progress=False)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(RunError, match="no write permission"):
            reconstruct_files([events_file], ro / "reco.root", cfg, progress=False)
    finally:
        ro.chmod(0o700)
    assert _sha(events_file) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "ro"]


def test_auto_batch_size_follows_the_memory_budget():
    from joint.config import MAX_AUTO_BATCH, MIN_AUTO_BATCH, auto_batch_size

    km2a = auto_batch_size(("km2a",))
    joint3 = auto_batch_size(("km2a", "wcda", "wfcta"))
    assert joint3 < km2a <= MAX_AUTO_BATCH
    assert auto_batch_size(("km2a", "wcda", "wfcta"), 0.5) == MIN_AUTO_BATCH
    assert auto_batch_size(("km2a", "wcda", "wfcta"), 8.0) > joint3
    for n in (km2a, joint3):
        assert n & (n - 1) == 0  # powers of two: shared compiled programs


def test_straggler_sub_batches_are_padded_to_powers_of_two():
    """The straggler pass fits full sub-batches of REFIT_BATCH and the rest padded to the next
    power of two (>= 8), so few stragglers do not pay for a whole sub-batch."""
    from joint.pipeline import straggler_chunks

    for n, size in ((66, 64), (3, 16), (20, 16), (128, 64), (1, 64)):
        parts = straggler_chunks(np.arange(n), size)
        got = np.concatenate([c for c, _ in parts])
        np.testing.assert_array_equal(got, np.arange(n))  # each straggler once, in order
        for c, s in parts:
            assert c.size <= s <= size and s & (s - 1) == 0 and s >= min(8, size)
        assert sum(s for _, s in parts) < n + max(8, n // 2 + 1) or n < 8
    assert [s for _, s in straggler_chunks(np.arange(66), 64)] == [64, 8]


def test_directory_output_one_file_per_input_and_rerun(events_file, tmp_path):
    """``-o DIR/``: one ``<stem>.reco.root`` per input; the same command again fits nothing and
    returns the combined summary; a file or directory name clash is refused."""
    import shutil

    from lhaaso_joint.cli import main

    second = tmp_path / "second.root"
    shutil.copy(events_file, second)
    argv = ["reconstruct", str(events_file), str(second), "-o", str(tmp_path / "out") + "/",
            "--hypothesis", "gamma", "--batch-size", str(BATCH), "--chunk-events", "16",
            "--quiet"]
    assert main(argv) == 0
    outs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outs == ["events.reco.root", "events.reco.root.run.json", "second.reco.root",
                    "second.reco.root.run.json"]
    a, b = _reco(tmp_path / "out" / "events.reco.root"), _reco(tmp_path / "out" / "second.reco.root")
    np.testing.assert_array_equal(a["event_id"], b["event_id"])
    np.testing.assert_allclose(a["reco_zenith"], b["reco_zenith"], rtol=1e-6)
    assert main(argv) == 0  # finished: not refitted, no traceback
    dup = tmp_path / "dup"
    dup.mkdir()
    shutil.copy(events_file, dup / "events.root")
    with pytest.raises(RunError, match="same name"):
        from lhaaso_joint.api import config_for, reconstruct_files

        reconstruct_files([events_file, dup / "events.root"], str(tmp_path / "o2") + "/",
                          config_for(("km2a",), "gamma"), progress=False)
