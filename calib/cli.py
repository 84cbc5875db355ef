"""``lhaaso-joint calibrate``: learn one run period's Response from event files and store it in a
calibration database (``calib.learn`` + ``calib.db``).

    lhaaso-joint calibrate --period km2a-2021-03 --from 2021-03-01 --to 2021-04-01 \\
        run_0001.root run_0002.root --db calib_db [--detectors km2a] [--n-outer 3] \\
        [--batch-size 64] [--checkpoint km2a-2021-03.ckpt.npz]

Everything is checked before the inputs are read and anything is learned (:func:`check_args`):
the options' values, the validity interval, the database (a directory, readable, writable, the
period name free unless ``--replace``), the checkpoint's location and the input files (existing
event files with the calibrated detectors). Errors are ``joint.io.errors.RunError`` (options,
paths), ``EventFileError`` (input files) or ``calib.db.CalibrationDBError`` (a malformed
database); ``lhaaso_joint.cli.main`` prints them as one line ``lhaaso-joint: error: ...``.

The learning is checkpointed (``--checkpoint``, or a temporary checkpoint when none is given):
should storing the entry in the database fail after learning, the learned state is kept — the
user's checkpoint, or the temporary one moved to ``<period>.learned.npz`` beside ``--db`` — and
the error line says where; rerunning the same command with ``--checkpoint`` that file stores it
without learning again.

Registered in ``lhaaso_joint/cli.py``'s ``build_parser`` by ``calib.cli.add_parser(sub)``.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from joint.io.errors import EventFileError, RunError, reading

__all__ = ["add_parser", "check_event_file", "cmd_calibrate", "check_args", "parse_time",
           "read_inputs"]


def _one_line(text) -> str:
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


def parse_time(text: str, option: str = "time"):
    """A validity bound: an MJD number (UTC) or an ISO time string (UTC), as
    ``calib.db.make_entry`` takes it; RunError naming ``option`` when it is neither."""
    from astropy.time import Time

    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise RunError(f"{option} {text!r} is not a finite MJD")
        return value
    try:
        Time(text, scale="utc")
    except ValueError:
        raise RunError(f"{option} {text!r} is neither an MJD nor an ISO UTC time "
                       "(e.g. 59274, 2021-03-01 or 2021-03-01T12:00:00)") from None
    return text


def _as_time(value):
    from astropy.time import Time

    if isinstance(value, float):
        return Time(value, format="mjd", scale="utc")
    return Time(value, scale="utc")


def _isot(t) -> str:
    """An astropy Time as ISO UTC to the millisecond."""
    return str(t.utc.isot)


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable_dir(path: Path, option: str, what: str) -> None:
    """``path`` (a directory to write in; created when absent) can be written."""
    anc = _nearest_existing(path)
    if not anc.is_dir():
        raise RunError(f"{option} {what}: {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise RunError(f"{option} {what}: directory {anc} is not writable")


def _root_size(path: Path):
    """The size a ROOT file says it has (``fEND`` of its header), None when ``path`` does not
    start like a ROOT file."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    if len(head) < 16 or head[:4] != b"root":
        return None
    version = int.from_bytes(head[4:8], "big")
    if version >= 1000000:  # 64-bit seek pointers
        return int.from_bytes(head[12:20], "big") if len(head) >= 20 else None
    return int.from_bytes(head[12:16], "big")


def check_event_file(path, detectors=()) -> str:
    """An existing, readable, complete event file (own schema or G4KM2A) with hits of every
    detector in ``detectors``; returns its kind ('own' or 'lhevent'). EventFileError naming the
    file otherwise: missing, a directory, unreadable, not ROOT, truncated (shorter than its
    header says: a copy or a write that stopped), without an event tree, or without a detector.
    Reads the header and the tree's branch names only (``lhaaso-joint show`` and ``calibrate``
    check every input with it before any work)."""
    from joint.io import file_kind

    p = Path(path)
    if not p.exists():
        raise EventFileError(p, "<file>", "does not exist", kind="file")
    if p.is_dir():
        raise EventFileError(p, "<file>", "is a directory, not an event file", kind="file")
    if not os.access(p, os.R_OK):
        raise EventFileError(p, "<file>", "is not readable (permission denied)", kind="file")
    try:
        expected = _root_size(p)
    except OSError as err:
        raise EventFileError(p, "<file>", f"cannot be read ({_one_line(err)})",
                             kind="file") from None
    if expected is None:
        raise EventFileError(p, "<file>", "is not a ROOT file (no 'root' header)", kind="file")
    size = p.stat().st_size
    if size < expected:
        raise EventFileError(p, "<file>", f"is truncated: {size} of its {expected} bytes",
                             kind="file")
    try:
        kind = file_kind(p)
        present = ()
        if detectors:
            from joint.runner import detectors_in_file

            present = detectors_in_file(p)
    except EventFileError:
        raise
    except Exception as err:  # noqa: BLE001 - uproot raises many types for damaged files
        raise EventFileError(p, "<file>", "cannot be read (damaged or truncated? "
                             f"{type(err).__name__}: {_one_line(err)})", kind="file") from None
    for d in detectors:
        if d not in present:
            group = {"km2a": "km2a_ed_id", "wcda": "wcda_id", "wfcta": "wfcta_tel"}[d]
            raise EventFileError(p, group, f"is missing: the calibration fits {d.upper()}")
    return kind


def read_inputs(inputs, detectors, layouts, max_events=None):
    """The events of ``inputs`` (own schema or G4KM2A) as one dense numpy Event batch; every
    file must have hits of every detector in ``detectors`` (EventFileError otherwise; a file that
    cannot be read is an EventFileError naming it too)."""
    import jax
    import numpy as np

    from detectors import registry
    from joint.io import read_file
    from joint.io.schema import to_event_batch

    for path in inputs:
        check_event_file(path, detectors)
    batches, n = [], 0
    for path in inputs:
        if max_events is not None and n >= max_events:
            break
        with reading(path):  # a damaged file: one line naming it
            rec = read_file(path, km2a=layouts.get("km2a"), wcda=layouts.get("wcda"),
                            wfcta=layouts.get("wfcta"))
        if max_events is not None and len(rec["event_id"]) > max_events - n:
            rec = {k: v[:max_events - n] for k, v in rec.items()}
        batch = to_event_batch(rec, km2a=layouts.get("km2a"), wcda=layouts.get("wcda"),
                               wfcta=layouts.get("wfcta"), source=path, as_jax=False)
        # only the fitted detectors' blocks (the others may differ from file to file)
        keep = {b for d in detectors for b in registry.get(d).block_names}
        batch = batch._replace(blocks={b: v for b, v in batch.blocks.items() if b in keep})
        batches.append(batch)
        n += len(rec["event_id"])
    if not batches or n == 0:
        raise EventFileError(", ".join(str(p) for p in inputs), "<file>",
                             "no events in the inputs", kind="file")
    if any(b.truth is None for b in batches):
        batches = [b._replace(truth=None) for b in batches]
    if len(batches) == 1:
        return batches[0]
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *batches)


def _positive(args, option: str, attr: str, minimum=1) -> None:
    v = getattr(args, attr)
    if v is not None and v < minimum:
        raise RunError(f"{option} must be ≥ {minimum}, got {v}")


def check_args(args):
    """Every check of ``calibrate`` that needs neither the events nor the learning, in the order
    a user would fix them: detectors, options, validity interval, database, checkpoint, inputs.
    Returns (detectors, valid_from, valid_to, CalibrationDB). RunError / EventFileError /
    CalibrationDBError naming the option or file otherwise."""
    from calib.db import ARRAY_DIR, INDEX_NAME, CalibrationDB, is_entry_name
    from detectors import registry
    from detectors.shower import FIELDS

    dets = tuple(d.strip().lower() for d in args.detectors.split(",") if d.strip())
    known = registry.names()
    for d in dets:
        if d not in known:
            raise RunError(f"--detectors: unknown detector '{d}' (known: {', '.join(known)})")
    if not dets:
        raise RunError("--detectors: calibrate needs at least one detector")
    if len(set(dets)) != len(dets):
        raise RunError(f"--detectors {args.detectors}: a detector is named twice")
    if dets == ("wfcta",):
        raise RunError("--detectors wfcta: calibrate fits the whole shower; WFCTA needs a ground "
                       "array with it (e.g. --detectors km2a,wfcta)")
    for option, attr, lo in (("--n-outer", "n_outer", 1), ("--n-steps", "n_steps", 1),
                             ("--batch-size", "batch_size", 1), ("--max-events", "max_events", 1),
                             ("--learn-min-hits", "learn_min_hits", 0), ("--seed", "seed", 0),
                             ("--n-ed", "n_ed", 1), ("--n-md", "n_md", 1)):
        _positive(args, option, attr, lo)
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise RunError(f"--learning-rate must be a finite number > 0, got {args.learning_rate}")
    if args.layout not in ("full", "3/4"):
        raise RunError(f"--layout must be 'full' or '3/4', got {args.layout!r}")
    bad = [f for f in (f.strip() for f in args.profile.split(",")) if f and f not in FIELDS]
    if bad:
        raise RunError(f"--profile: unknown Shower field(s) {', '.join(bad)} (fields: "
                       f"{', '.join(FIELDS)})")
    if not is_entry_name(args.period):
        raise RunError(f"--period {args.period!r}: a period name is letters, digits and _ . - "
                       "(starting with a letter or digit)")

    t_from, t_to = parse_time(args.valid_from, "--from"), parse_time(args.valid_to, "--to")
    lo, hi = _as_time(t_from), _as_time(t_to)
    if not lo.utc.mjd < hi.utc.mjd:
        raise RunError(f"--from {args.valid_from} must be before --to {args.valid_to} (the "
                       "entry is valid on [from, to))")

    # the database: a directory (created when absent) we can read and write
    db_path = Path(args.db)
    if db_path.exists() and not db_path.is_dir():
        raise RunError(f"--db {db_path} is a file, not a calibration database directory")
    if db_path.is_dir():
        if not os.access(db_path, os.R_OK | os.W_OK | os.X_OK):
            raise RunError(f"--db {db_path}: directory {db_path} is not writable")
        index, arrays = db_path / INDEX_NAME, db_path / ARRAY_DIR
        if index.is_dir():
            raise RunError(f"--db {db_path}: {index} is a directory, not the database's index")
        if index.exists() and not os.access(index, os.R_OK):
            raise RunError(f"--db {db_path}: {index} is not readable")
        if arrays.exists() and not arrays.is_dir():
            raise RunError(f"--db {db_path}: {arrays} is not a directory (the database's array "
                           "files go there)")
        if arrays.is_dir() and not os.access(arrays, os.W_OK | os.X_OK):
            raise RunError(f"--db {db_path}: directory {arrays} is not writable")
    else:
        _check_writable_dir(db_path.parent if str(db_path.parent) else Path("."), "--db",
                            str(db_path))
    db = CalibrationDB(db_path)  # a malformed database fails here (CalibrationDBError)
    if not args.replace:
        for e in db.entries():
            e_lo, e_hi = e.mjd_range
            span = f"[{_isot(e.valid_from)}, {_isot(e.valid_to)})"
            if e.name == args.period:
                raise RunError(f"--period {args.period}: {db.index_path} already has an entry of "
                               f"that name ({span}); pass --replace to replace it")
            shared = sorted(set(e.detectors) & set(dets))
            if shared and e_lo < hi.utc.mjd and lo.utc.mjd < e_hi:
                raise RunError(f"--from/--to: [{_isot(lo)}, {_isot(hi)}) overlaps entry "
                               f"{e.name!r} ({span}) of {db.index_path} for "
                               f"{', '.join(shared)}; pass --replace to replace it")

    inputs = [Path(p).resolve() for p in args.inputs]
    if len(set(inputs)) != len(inputs):
        dup = next(p for p in args.inputs if inputs.count(Path(p).resolve()) > 1)
        raise RunError(f"input file {dup} is given twice")
    if args.checkpoint is not None:
        ckpt = Path(args.checkpoint)
        if ckpt.resolve() in inputs:
            raise RunError(f"--checkpoint {ckpt} is also an input file")
        if ckpt.is_dir():
            raise RunError(f"--checkpoint {ckpt} is a directory, not a file")
        if ckpt.exists():
            _check_checkpoint_file(ckpt)
            if not os.access(ckpt.parent, os.W_OK | os.X_OK):
                raise RunError(f"--checkpoint {ckpt}: directory {ckpt.parent} is not writable")
        else:
            _check_writable_dir(ckpt.parent if str(ckpt.parent) else Path("."), "--checkpoint",
                                str(ckpt))
    for path in args.inputs:
        check_event_file(path, dets)
    return dets, t_from, t_to, db


def _check_checkpoint_file(ckpt: Path) -> None:
    """An existing ``--checkpoint`` is a checkpoint written by ``calib.learn`` (its events and
    settings are compared later, once the events are read)."""
    import numpy as np

    try:
        with np.load(ckpt, allow_pickle=False) as z:
            ok = "meta" in z.files
    except Exception as err:  # noqa: BLE001 - not an npz at all
        raise RunError(f"--checkpoint {ckpt} exists but is not a calibration checkpoint "
                       f"({type(err).__name__}: {_one_line(err)}); remove it or choose another "
                       "path") from None
    if not ok:
        raise RunError(f"--checkpoint {ckpt} exists but is not a calibration checkpoint (no "
                       "'meta'); remove it or choose another path")


def _rescue_path(db_path: Path, period: str) -> Path:
    """``<period>.learned.npz`` beside the database (a new name if that exists)."""
    d = db_path.resolve().parent
    p, i = d / f"{period}.learned.npz", 1
    while p.exists() or p.with_name(p.name + ".json").exists():
        p, i = d / f"{period}.learned-{i}.npz", i + 1
    return p


def _keep_learned(tmp_ckpt: Path, db_path: Path, period: str) -> Path:
    """Move the temporary checkpoint (and its ``.json``) beside the database; where it is."""
    for dest in (_rescue_path(db_path, period), Path.cwd() / f"{period}.learned.npz"):
        try:
            shutil.move(str(tmp_ckpt), str(dest))
            with contextlib.suppress(OSError):
                shutil.move(str(tmp_ckpt) + ".json", str(dest) + ".json")
            return dest
        except OSError:
            continue
    return tmp_ckpt  # left in the temporary directory


def cmd_calibrate(args) -> int:
    import numpy as np

    from calib.db import DetectorConfig, make_entry
    from calib import learn as calib_learn
    from calib.learn import LearnConfig
    from joint.config import config_for, detector_setup

    dets, t_from, t_to, db = check_args(args)
    cfg = config_for(dets, args.hypothesis)
    kw = {k: v for k, v in (("n_ed", args.n_ed), ("n_md", args.n_md)) if v is not None}
    if kw:
        import dataclasses

        cfg = dataclasses.replace(cfg, **kw)
    fields = None if args.fields in (None, "all") else tuple(
        f.strip() for f in args.fields.split(",") if f.strip())
    lcfg = LearnConfig(fields=fields, n_outer=args.n_outer, n_steps=args.n_steps,
                       batch_size=args.batch_size, learning_rate=args.learning_rate,
                       seed=args.seed, learn_min_hits=args.learn_min_hits,
                       profile=tuple(f.strip() for f in args.profile.split(",") if f.strip()))
    try:
        lcfg.fields_of(cfg.detectors)
    except ValueError as err:
        raise RunError(f"--fields: {_one_line(err)}") from None
    layouts, geometry, nominal = detector_setup(cfg.detectors, args.layout)
    batch = read_inputs(args.inputs, cfg.detectors, layouts, args.max_events)
    n = int(np.shape(batch.event_id)[0])
    t = np.asarray(batch.time_mjd, np.float64)
    lo, hi = _as_time(t_from), _as_time(t_to)
    outside = int(np.sum(~((t >= lo.utc.mjd) & (t < hi.utc.mjd))))
    if args.checkpoint is not None and Path(args.checkpoint).exists():
        # a checkpoint of other events or settings is refused before anything is learned
        problem = calib_learn.learn_problem(batch, geometry, nominal, cfg, lcfg)
        try:
            calib_learn.load_checkpoint(args.checkpoint, problem)
        except Exception as err:  # noqa: BLE001 - a mismatch (ValueError) or a damaged file
            raise RunError(f"--checkpoint {_one_line(err)}") from None
        del problem
    if outside:
        print(f"lhaaso-joint: warning: {outside} of {n} events lie outside the validity interval "
              f"[{lo.utc.isot}, {hi.utc.isot}) (simulated files have a fixed or unknown time)",
              file=sys.stderr)
    print(f"calibrating {','.join(cfg.detectors)} on {n} events from {len(args.inputs)} file(s)")
    # the learned state always goes to a checkpoint: the user's, or a temporary one that is
    # kept (moved beside --db) only when the result cannot be stored
    tmp_dir = None
    if args.checkpoint is not None:
        ckpt = Path(args.checkpoint)
    else:
        tmp_dir = Path(tempfile.mkdtemp(prefix="lhaaso-joint-calibrate-"))
        ckpt = tmp_dir / f"{args.period}.learned.npz"
    try:
        responses, history = calib_learn.learn_response(
            batch, geometry, nominal, cfg, lcfg, checkpoint=ckpt, progress=not args.quiet,
            log=None if args.quiet else print)
        last = history["outer"][-1] if history["outer"] else {}
        notes = (f"calib.learn: {n} events, detectors {','.join(cfg.detectors)}, hypothesis "
                 f"{cfg.hypothesis}, fields {history['fields']}, {lcfg.n_outer} outer x "
                 f"{lcfg.n_steps} steps, batch {lcfg.batch_size}, lr {lcfg.learning_rate}, "
                 f"learn_min_hits {lcfg.learn_min_hits}, KM2A compound charge below "
                 f"{lcfg.compound_particles:g} particles; final "
                 f"mean fit nll {last.get('fit_nll', float('nan')):.3f}")
        if args.notes:
            notes = args.notes + " | " + notes
        configs = {d: DetectorConfig(d, layout=args.layout if d == "km2a" else "default")
                   for d in cfg.detectors}
        try:
            entry = make_entry(args.period, t_from, t_to, responses, configs,
                               input_files=[str(Path(p).resolve()) for p in args.inputs],
                               notes=notes)
            db.add(entry, replace=args.replace)
            db.save()
        except Exception as err:  # noqa: BLE001 - keep what was learned, say where
            where = ckpt if tmp_dir is None else _keep_learned(ckpt, Path(args.db), args.period)
            raise RunError(f"--db {args.db}: the learned calibration could not be stored "
                           f"({type(err).__name__}: {_one_line(err)}); it is saved in {where}: "
                           f"rerun the same command with --checkpoint {where} to store it "
                           "without learning again") from None
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    stored = {d: sorted(f) for d, f in entry.parameters.items()}
    lo_s, hi_s = entry.mjd_range
    print(f"stored calibration {entry.name!r} valid [{entry.valid_from.utc.isot}, "
          f"{entry.valid_to.utc.isot}) UTC (MJD {lo_s:.6f} .. {hi_s:.6f}) in {db.index_path}")
    for d, fs in stored.items():
        print(f"  {d}: {', '.join(fs)}")
    if last:
        print("  last outer iteration: " + ", ".join(
            f"{k} rms change {v:.3g}" for k, v in last["dparam"].items())
            + f"; {last['n_usable']}/{n} usable fits")
    return 0


def add_parser(subparsers):
    """Add the ``calibrate`` subcommand to an argparse subparsers object."""
    s = subparsers.add_parser("calibrate", help="learn a run period's response and store it in "
                              "a calibration database")
    s.add_argument("inputs", nargs="+", help="own-schema or G4KM2A LHEvent ROOT files of the period")
    s.add_argument("--period", required=True, help="name of the calibration entry (letters, "
                   "digits, _ . -)")
    s.add_argument("--from", dest="valid_from", required=True,
                   help="start of validity (inclusive): ISO UTC time or MJD")
    s.add_argument("--to", dest="valid_to", required=True,
                   help="end of validity (exclusive): ISO UTC time or MJD")
    s.add_argument("--db", required=True, help="calibration database directory (created if absent)")
    s.add_argument("--detectors", default="km2a",
                   help="comma list of detectors calibrated jointly (km2a, wcda, wfcta)")
    s.add_argument("--fields", default="all",
                   help="comma list of learned parameters (calib.response names, e.g. "
                        "ed_log_gain,ed_time_offset) or 'all'")
    s.add_argument("--hypothesis", default="hadron", choices=("hadron", "gamma"))
    s.add_argument("--n-outer", type=int, default=3, help="outer iterations (shower fits + "
                   "response steps)")
    s.add_argument("--n-steps", type=int, default=100, help="optax steps per outer iteration")
    s.add_argument("--batch-size", type=int, default=64, help="events per minibatch")
    s.add_argument("--learning-rate", type=float, default=0.1,
                   help="adam step size in scaled units (0.1 in log-gain, 2 ns in time offset)")
    s.add_argument("--seed", type=int, default=0, help="seed of the minibatch draws")
    s.add_argument("--learn-min-hits", type=int, default=0,
                   help="learn only channels with at least this many hits in the period (the "
                        "others keep their starting values)")
    s.add_argument("--profile", default="",
                   help="comma list of Shower fields re-optimised per event inside the response "
                        "steps (e.g. log10_energy: needed for a telescope efficiency, which is "
                        "strongly coupled to the energy; calib.learn.LearnConfig.profile)")
    s.add_argument("--max-events", type=int, default=None,
                   help="use at most this many events (memory: ~140 kB per KM2A event)")
    s.add_argument("--n-ed", type=int, default=None, help="active EDs per event (default 768)")
    s.add_argument("--n-md", type=int, default=None, help="active MDs per event (default 192)")
    s.add_argument("--layout", default="full", help="KM2A layout: full or 3/4")
    s.add_argument("--checkpoint", default=None,
                   help="checkpoint .npz written after every outer iteration; resumed if present")
    s.add_argument("--replace", action="store_true",
                   help="replace entries with the same name or an overlapping interval")
    s.add_argument("--notes", default="", help="free text stored with the entry")
    s.add_argument("--quiet", action="store_true", help="no progress bar or per-iteration lines")
    s.set_defaults(func=cmd_calibrate)
    return s
