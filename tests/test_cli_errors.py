"""Every bad input of ``simulate``, ``show``, ``calibrate``, ``bench`` and ``demo`` (and the
calibration database errors of ``reconstruct --calib-db``): ONE line ``lhaaso-joint: error: <message>`` on stderr,
exit status 2, found before any work starts (nothing simulated, nothing learned, nothing on
stdout), no file left behind and no input modified (checksums of the whole working directory
before and after).

Each row of a table is (argv, expected substring of the error line); the argv's paths are
relative to a fresh working directory holding the inputs of :func:`_make_inputs`.
"""
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from lhaaso_joint.cli import main

PREFIX = "lhaaso-joint: error: "
#: the validity interval of the database's entry 'p1' (and of most calibrate rows)
B = ["--from", "2021-03-01", "--to", "2021-04-01"]


def _make_inputs(d: Path) -> None:
    """ev.root (4 KM2A photon events), trunc.root (its first half), damaged.root (same length,
    garbage in the tree's metadata), notroot.root (text), notree.root (ROOT without an event
    tree), afile (a plain file), sub/ (an empty directory), ro/ (a directory made unwritable in
    the rows that name it), db/ (a calibration database with entry 'p1' for KM2A, March 2021), baddb/ (an
    index that is not JSON), brokendb/ (a file where the array directory goes), dirdb/ (a
    directory where the index goes) and wrongckpt.npz (a checkpoint of other events)."""
    import uproot

    from calib.db import CalibrationDB, DetectorConfig, make_entry
    from joint.config import detector_setup
    from joint.io.schema import write_events
    from joint.simulation import simulate_records

    rec, _ = simulate_records(4, primary="gamma", detectors=("km2a",),
                              log10_energy_range=(5.0, 5.0), core_radius_m=100.0, seed=3, chunk=8)
    write_events(d / "ev.root", rec)
    data = (d / "ev.root").read_bytes()
    (d / "trunc.root").write_bytes(data[:len(data) // 2])
    at = len(data) // 5  # the tree's metadata: garbage there fails uproot's deserialisation
    (d / "damaged.root").write_bytes(data[:at] + b"\xaa" * 2000 + data[at + 2000:])
    (d / "notroot.root").write_text("hello\n")
    with uproot.recreate(d / "notree.root") as f:
        f["other"] = {"x": np.arange(3)}
    (d / "afile").write_text("a plain file\n")
    (d / "sub").mkdir()
    (d / "ro").mkdir()
    _, _, nominal = detector_setup(("km2a",))
    db = CalibrationDB(d / "db")
    db.add(make_entry("p1", "2021-03-01", "2021-04-01", {"km2a": nominal["km2a"]},
                      {"km2a": DetectorConfig("km2a", "full")}))
    db.save()
    (d / "baddb").mkdir()
    (d / "baddb" / "calib_db.json").write_text("{ not json\n")
    (d / "brokendb").mkdir()
    (d / "brokendb" / "entries").write_text("not the array directory\n")
    (d / "dirdb" / "calib_db.json").mkdir(parents=True)
    np.savez(d / "wrongckpt.npz", meta=np.asarray('{"outer": 1, "loss": [], "records": [], '
                                                  '"fingerprint": {"n_events": 99}}'))


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_error_inputs")
    _make_inputs(d)
    return d


def _snapshot(root: Path) -> dict:
    """{relative path: sha256 (files) or 'dir'} of everything under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def workdir(inputs_dir, tmp_path, monkeypatch):
    """A fresh copy of the inputs as the working directory, with a private temporary directory
    (so that a leftover temporary file shows in the snapshot) and ``ro/`` reported unwritable
    (also to root, who may write anywhere)."""
    import tempfile

    work = tmp_path / "work"
    shutil.copytree(inputs_dir, work)
    (work / "tmp").mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(work / "tmp"))
    ro = (work / "ro").resolve()
    real_access = os.access

    def access(path, mode, *a, **k):
        p = Path(path).resolve()
        if (p == ro or ro in p.parents) and mode & os.W_OK:
            return False
        return real_access(path, mode, *a, **k)

    monkeypatch.setattr(os, "access", access)
    return work


@pytest.fixture
def no_work(monkeypatch):
    """Every entry point of real work fails the test: nothing may be simulated or learned
    before the error."""
    import calib.learn
    import detectors.primaries
    import joint.io.corsika
    import joint.simulation

    def forbidden(*a, **k):
        pytest.fail("work started before the error")

    import joint.bench
    import lhaaso_joint.demo

    for mod, name in ((calib.learn, "learn_response"), (calib.learn, "learn_step"),
                      (joint.bench, "run_bench"), (lhaaso_joint.demo, "run_demo"),
                      (joint.simulation, "simulate_records"),
                      (detectors.primaries, "sample_primaries"),
                      (joint.io.corsika, "simulate_corsika"),
                      (joint.io.corsika, "write_corsika_events")):
        monkeypatch.setattr(mod, name, forbidden)


def _run_error(argv, workdir, capsys) -> str:
    """Run ``main(argv)``; assert the error contract; return the error line."""
    before = _snapshot(workdir)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX), err
    assert out == "", out  # refused before any work (nothing printed)
    assert _snapshot(workdir) == before  # nothing left behind, no input modified
    return lines[0]


SIMULATE = [
    (["--n-events", "0"], "--n-events must be ≥ 1, got 0"),
    (["--n-events", "-5"], "--n-events must be ≥ 1, got -5"),
    (["--log10-energy-range", "6", "5"], "--log10-energy-range A B must have A ≤ B"),
    (["--log10-energy-range", "5", "nan"], "--log10-energy-range B must be a finite number"),
    (["--zenith-max", "-1"], "--zenith-max must be ≥ 0, got -1"),
    (["--zenith-max", "95"], "--zenith-max must be < 90, got 95"),
    (["--core-radius", "-5"], "--core-radius must be ≥ 0, got -5"),
    (["--wfcta-clear-fraction", "1.5"], "--wfcta-clear-fraction must be ≤ 1"),
    (["--age-sigma", "-0.1"], "--age-sigma must be ≥ 0"),
    (["--primary", "unicorn"], "--primary: unknown primary 'unicorn'"),
    (["--model", "nope"], "--model: unknown hadronic model 'nope'"),
    (["--layout", "1/2"], "--layout must be 'full' or '3/4', got '1/2'"),
    (["--seed", "-1"], "--seed must be ≥ 0, got -1"),
    (["--detectors", "km2a,hess"], "--detectors: unknown detector 'hess'"),
]
OUTPUTS = [
    (["-o", "afile/out.root"], "-o/--output afile/out.root: afile is not a directory"),
    (["-o", "afile/deeper/out.root"], "afile is not a directory"),
    (["-o", "sub"], "-o/--output sub is a directory, not a file"),
    (["-o", "ro/out.root"], "-o/--output ro/out.root: directory ro is not writable"),
    (["-o", "ro/new/out.root"], "directory ro is not writable"),
]
CORSIKA = [
    (["--from-corsika", "missing.dat"], "missing.dat: does not exist"),
    (["--from-corsika", "notroot.root"], "notroot.root: is empty or too short to be a CORSIKA"),
    (["--from-corsika", "ev.root"], "ev.root: is not a CORSIKA particle file (no 'RUNH'"),
    (["--from-corsika", "sub"], "sub: is a directory"),
    (["--from-corsika", "missing.dat", "--throws", "0"], "--throws must be ≥ 1, got 0"),
    (["--from-corsika", "missing.dat", "--core-rmin", "500"],
     "need 0 ≤ --core-rmin ≤ --core-radius, got 500.0 and 400.0"),
    (["--from-corsika", "missing.dat", "--photon-conversion", "2"],
     "photon_conversion must be in [0, 1], got 2.0 (--photon-conversion"),
    (["--from-corsika", "missing.dat", "--detectors", "wcda"],
     "--from-corsika simulates km2a (and optionally wcda): --detectors wcda"),
    (["--from-corsika", "missing.dat", "--seed", "-2"], "--seed must be ≥ 0, got -2"),
    (["--from-corsika", "missing.dat", "--core-radius", "-1"], "--core-radius must be ≥ 0"),
]


@pytest.mark.parametrize("args, message", SIMULATE + OUTPUTS + CORSIKA,
                         ids=[" ".join(a) for a, _ in SIMULATE + OUTPUTS + CORSIKA])
def test_simulate_errors(args, message, workdir, no_work, capsys):
    argv = ["simulate", *args]
    if "-o" not in args:
        argv += ["-o", "out.root"]
    assert message in _run_error(argv, workdir, capsys)


def test_simulate_refuses_to_overwrite_its_corsika_input(workdir, no_work, capsys):
    line = _run_error(["simulate", "--from-corsika", "afile", "-o", "afile"], workdir, capsys)
    assert "-o/--output afile is also an input file" in line


SHOW = [
    (["missing.root"], "missing.root: does not exist"),
    (["trunc.root"], "trunc.root: is truncated: "),
    (["notroot.root"], "notroot.root: is not a ROOT file"),
    (["notree.root"], "notree.root: tree 'events' tree not found"),
    (["sub"], "sub: is a directory, not an event file"),
    (["damaged.root"], "damaged.root: cannot be read"),
    (["ev.root", "trunc.root"], "trunc.root: is truncated"),  # checked before ev.root is shown
]


@pytest.mark.parametrize("args, message", SHOW, ids=[" ".join(a) for a, _ in SHOW])
def test_show_errors(args, message, workdir, no_work, capsys):
    assert message in _run_error(["show", *args], workdir, capsys)


CALIBRATE = [
    # the database
    (["--db", "afile"], "--db afile is a file, not a calibration database directory"),
    (["--db", "afile/db"], "--db afile/db: afile is not a directory"),
    (["--db", "ro/db"], "--db ro/db: directory ro is not writable"),
    (["--db", "ro"], "--db ro: directory ro is not writable"),
    (["--db", "baddb"], "baddb/calib_db.json: field '<json>' is not valid JSON"),
    (["--db", "brokendb"], "--db brokendb: brokendb/entries is not a directory"),
    (["--db", "dirdb"], "--db dirdb: dirdb/calib_db.json is a directory, not the database's"),
    (["--db", "db", "--period", "p1", "--from", "2022-01-01", "--to", "2022-02-01"],
     "--period p1: db/calib_db.json already has an entry of that name"),
    (["--db", "db", "--from", "2021-03-15", "--to", "2021-05-01"],
     "overlaps entry 'p1' ([2021-03-01T00:00:00.000, 2021-04-01T00:00:00.000))"),
    # the validity interval and the period name
    (["--from", "2021-04-01", "--to", "2021-03-01"],
     "--from 2021-04-01 must be before --to 2021-03-01"),
    (["--from", "59300", "--to", "59300"], "--from 59300 must be before --to 59300"),
    (["--from", "2021-03-01", "--to", "next week"], "--to 'next week' is neither an MJD nor"),
    (["--from", "inf", "--to", "59300"], "--from 'inf' is not a finite MJD"),
    (["--period", "bad name"], "--period 'bad name': a period name is letters, digits"),
    # the checkpoint
    (["--checkpoint", "afile/c.npz"], "--checkpoint afile/c.npz: afile is not a directory"),
    (["--checkpoint", "ro/c.npz"], "--checkpoint ro/c.npz: directory ro is not writable"),
    (["--checkpoint", "sub"], "--checkpoint sub is a directory, not a file"),
    (["--checkpoint", "notroot.root"],
     "--checkpoint notroot.root exists but is not a calibration checkpoint"),
    (["--checkpoint", "ev.root"], "--checkpoint ev.root is also an input file"),
    (["--checkpoint", "wrongckpt.npz"],
     "--checkpoint wrongckpt.npz: checkpoint field 'fingerprint.n_events' does not match"),
    # the options
    (["--detectors", "hess"], "--detectors: unknown detector 'hess'"),
    (["--detectors", ""], "--detectors: calibrate needs at least one detector"),
    (["--detectors", "km2a,km2a"], "--detectors km2a,km2a: a detector is named twice"),
    (["--detectors", "wfcta"], "--detectors wfcta: calibrate fits the whole shower"),
    (["--batch-size", "0"], "--batch-size must be ≥ 1, got 0"),
    (["--n-outer", "0"], "--n-outer must be ≥ 1, got 0"),
    (["--n-steps", "-3"], "--n-steps must be ≥ 1, got -3"),
    (["--max-events", "0"], "--max-events must be ≥ 1, got 0"),
    (["--learn-min-hits", "-1"], "--learn-min-hits must be ≥ 0, got -1"),
    (["--seed", "-1"], "--seed must be ≥ 0, got -1"),
    (["--n-ed", "0"], "--n-ed must be ≥ 1, got 0"),
    (["--learning-rate", "0"], "--learning-rate must be a finite number > 0, got 0.0"),
    (["--learning-rate", "nan"], "--learning-rate must be a finite number > 0, got nan"),
    (["--layout", "1/2"], "--layout must be 'full' or '3/4', got '1/2'"),
    (["--fields", "nope"], "--fields: unknown calibration field 'nope'"),
    (["--profile", "nope"], "--profile: unknown Shower field(s) nope"),
]
CALIBRATE_INPUTS = [
    (["missing.root"], "missing.root: does not exist"),
    (["trunc.root"], "trunc.root: is truncated: "),
    (["notroot.root"], "notroot.root: is not a ROOT file"),
    (["notree.root"], "notree.root: tree 'events' tree not found"),
    (["sub"], "sub: is a directory, not an event file"),
    (["damaged.root"], "damaged.root: cannot be read"),
    (["ev.root", "ev.root"], "input file ev.root is given twice"),
    (["ev.root", "--detectors", "km2a,wcda"],
     "ev.root: branch 'wcda_id' is missing: the calibration fits WCDA"),
]


def _calibrate_argv(args):
    """``calibrate`` with the row's options and the defaults it does not give: the input
    ev.root, --period p2, the interval B and --db newdb."""
    argv = ["calibrate", *args]
    if not args or args[0].startswith("--"):  # no input file given
        argv.insert(1, "ev.root")
    for opt, default in (("--period", ["p2"]), ("--db", ["newdb"])):
        if opt not in args:
            argv += [opt, *default]
    if "--from" not in args:
        argv += B
    return argv


@pytest.mark.parametrize("args, message", CALIBRATE + CALIBRATE_INPUTS,
                         ids=[" ".join(a) for a, _ in CALIBRATE + CALIBRATE_INPUTS])
def test_calibrate_errors(args, message, workdir, no_work, capsys):
    assert message in _run_error(_calibrate_argv(args), workdir, capsys)


RECONSTRUCT_CALIB = [
    (["--calib-db", "nodb"], "nodb: no calibration database here"),
    (["--calib-db", "nodb"], "--calib-db / calib_db= takes the directory"),
    (["--calib-db", "afile"], "afile is a file, not a calibration database (--calib-db"),
    (["--calib-db", "baddb"], "baddb/calib_db.json: field '<json>' is not valid JSON"),
    (["--calib-db", "db"], "ev.root: 4 of 4 event(s) have no KM2A calibration in "
                           "db/calib_db.json (MJD 60000.000000 .. 60000.000000)"),
    (["--calib-db", "db"], "(--calib-missing nominal / calib_missing='nominal')"),
    (["--detectors", "none"], "reconstruct needs at least one detector"),
]


@pytest.mark.parametrize("args, message", RECONSTRUCT_CALIB,
                         ids=[" ".join(a) for a, _ in RECONSTRUCT_CALIB])
def test_reconstruct_calibration_errors_name_the_cli_options(args, message, workdir, no_work,
                                                             capsys):
    """The database errors of ``reconstruct --calib-db`` (calib.provider) reach the command
    line as one line naming the command-line options, before anything is fitted."""
    argv = ["reconstruct", "ev.root", "-o", "reco.root", "--quiet", *args]
    assert message in _run_error(argv, workdir, capsys)


OTHERS = [
    (["bench", "--n-events", "0"], "--n-events must be ≥ 1, got 0"),
    (["bench", "--batch-size", "-1"], "--batch-size must be ≥ 1, got -1"),
    (["bench", "--detectors", "wfcta"], "bench fits the whole shower; WFCTA alone needs"),
    (["bench", "--detectors", "none"], "bench needs at least one detector"),
    (["demo", "--n-events", "0"], "--n-events must be ≥ 1, got 0"),
    (["demo", "--out", "afile"], "--out afile is a file, not a directory"),
    (["demo", "--out", "ro/demo"], "--out ro/demo: directory ro is not writable"),
]


@pytest.mark.parametrize("argv, message", OTHERS, ids=[" ".join(a) for a, _ in OTHERS])
def test_bench_and_demo_errors(argv, message, workdir, no_work, capsys):
    assert message in _run_error(argv, workdir, capsys)


# ---------------------------------------------------------------------------------------------
# failures after the checks: no partial output, the learned calibration kept
# ---------------------------------------------------------------------------------------------
def test_simulate_failing_write_leaves_nothing(workdir, capsys, monkeypatch):
    """A write that fails half-way (disk full) leaves no partial file and no directory that
    was created for the output."""
    import joint.io.schema

    def failing(path, records):
        Path(path).write_bytes(b"root" + bytes(100))
        raise OSError(28, "No space left on device")

    # the real simulation (truth only: fast), but the disk is full
    monkeypatch.setattr(joint.io.schema, "write_events", failing)
    before = _snapshot(workdir)
    with pytest.raises(OSError, match="No space left"):
        main(["simulate", "--n-events", "3", "-o", "new/dir/out.root"])
    assert _snapshot(workdir) == before


def test_simulate_corsika_failure_removes_its_part_files(workdir, capsys, monkeypatch):
    import joint.io.corsika

    def failing(files, output, *a, **k):
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.with_name(output.name + ".part").write_bytes(b"partial")
        side = joint.io.corsika.extra_path(output)
        side.with_name(side.name + ".part.npz").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(joint.io.corsika, "write_corsika_events", failing)
    monkeypatch.setattr(joint.io.corsika, "detect_thinning", lambda f: False)
    before = _snapshot(workdir)
    with pytest.raises(KeyboardInterrupt):
        main(["simulate", "--from-corsika", "afile", "--quiet", "-o", "new/throws.root"])
    assert _snapshot(workdir) == before


def _fake_learning(calls):
    """A stand-in for calib.learn.learn_response: writes a checkpoint file where it is asked
    to, returns the nominal response."""
    def learn(batch, geometry, nominal, cfg, lcfg, checkpoint=None, **kw):
        calls.append(checkpoint)
        Path(checkpoint).write_bytes(b"learned state")
        Path(str(checkpoint) + ".json").write_text("{}\n")
        return ({d: nominal[d] for d in cfg.detectors},
                {"outer": [], "fields": {"km2a": ["ed_log_gain"]}})

    return learn


@pytest.mark.parametrize("user_checkpoint", [False, True])
def test_calibrate_keeps_the_learned_result_when_the_db_cannot_be_written(
        user_checkpoint, workdir, capsys, monkeypatch):
    """Learning done, the database refuses the write (disk full): the learned state is kept
    (a temporary checkpoint moved beside --db as <period>.learned.npz, or the user's
    --checkpoint) and the one error line says where and how to store it without learning."""
    import calib.learn
    from calib.db import CalibrationDB

    calls = []
    monkeypatch.setattr(calib.learn, "learn_response", _fake_learning(calls))

    def full(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(CalibrationDB, "save", full)
    before = _snapshot(workdir)
    argv = _calibrate_argv(["--db", "db", "--from", "59990", "--to", "60010",
                            "--quiet"])
    if user_checkpoint:
        argv += ["--checkpoint", "mine.npz"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), err
    assert "--db db: the learned calibration could not be stored (OSError" in lines[0]
    assert "No space left on device" in lines[0]
    kept = "mine.npz" if user_checkpoint else "p2.learned.npz"
    assert f"it is saved in {'mine.npz' if user_checkpoint else workdir / kept}" in lines[0]
    assert "rerun the same command with --checkpoint" in lines[0]
    after = _snapshot(workdir)
    assert set(after) - set(before) == {kept, kept + ".json"}   # the learned state, nothing else
    assert {k: v for k, v in after.items() if k in before} == before  # inputs and db untouched
    assert len(calls) == 1 and (user_checkpoint or Path(calls[0]).parent.parent == workdir / "tmp")


@pytest.mark.slow
def test_calibrate_rerun_with_the_kept_state_stores_it_without_learning_again(
        workdir, capsys, monkeypatch):
    """The real learning (1 outer iteration of 2 steps), a database write that fails, then the
    same command with --checkpoint <the kept file>: stored, and no learning step is run."""
    import calib.learn
    from calib.db import CalibrationDB

    real_save = CalibrationDB.save

    def full(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(CalibrationDB, "save", full)
    argv = _calibrate_argv(["--db", "db", "--from", "59990", "--to", "60010", "--quiet",
                            "--n-outer", "1", "--n-steps", "2", "--batch-size", "4",
                            "--n-ed", "256", "--n-md", "64"])
    assert main(argv) == 2
    err = capsys.readouterr().err
    kept = workdir / "p2.learned.npz"
    assert len(err.splitlines()) == 1 and f"it is saved in {kept}" in err, err
    assert kept.exists() and not any((workdir / "tmp").iterdir())

    monkeypatch.setattr(CalibrationDB, "save", real_save)

    def forbidden(*a, **k):
        pytest.fail("learned again")

    monkeypatch.setattr(calib.learn, "learn_step", forbidden)
    assert main(argv + ["--checkpoint", str(kept)]) == 0
    assert "stored calibration 'p2'" in capsys.readouterr().out
    assert [e.name for e in CalibrationDB(workdir / "db").entries()] == ["p1", "p2"]


def test_calibrate_success_leaves_no_temporary_checkpoint(workdir, capsys, monkeypatch):
    import calib.learn
    from calib.db import CalibrationDB

    monkeypatch.setattr(calib.learn, "learn_response", _fake_learning([]))
    before = _snapshot(workdir)
    assert main(_calibrate_argv(["--db", "db", "--from", "59990", "--to", "60010",
                                 "--quiet"])) == 0
    assert "stored calibration 'p2'" in capsys.readouterr().out
    after = _snapshot(workdir)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed and all(k.startswith("db/") for k in changed), changed  # only the database
    assert [e.name for e in CalibrationDB(workdir / "db").entries()] == ["p1", "p2"]


def test_one_line_for_multiline_messages(capsys, monkeypatch):
    """main() keeps the error on one line even when a message has line breaks."""
    import lhaaso_joint.cli as cli

    def bad(args):
        raise cli.UsageError("first\nsecond\n")

    monkeypatch.setattr(cli, "cmd_demo", bad)
    assert main(["demo"]) == 2
    assert capsys.readouterr().err == PREFIX + "first second\n"
