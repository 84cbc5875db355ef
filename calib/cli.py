"""``lhaaso-joint calibrate``: learn one run period's Response from event files and store it in a
calibration database (``calib.learn`` + ``calib.db``).

    lhaaso-joint calibrate --period km2a-2021-03 --from 2021-03-01 --to 2021-04-01 \\
        run_0001.root run_0002.root --db calib_db [--detectors km2a] [--n-outer 3] \\
        [--batch-size 64] [--checkpoint km2a-2021-03.ckpt.npz]

Registered in ``lhaaso_joint/cli.py``'s ``build_parser`` by ``calib.cli.add_parser(sub)``.
"""
from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_parser", "cmd_calibrate", "parse_time", "read_inputs"]


def parse_time(text: str):
    """A validity bound: an MJD number (UTC) or an ISO time string (UTC), as
    ``calib.db.make_entry`` takes it; SystemExit with a message when it is neither."""
    from astropy.time import Time

    try:
        return float(text)
    except ValueError:
        pass
    try:
        Time(text, scale="utc")
    except ValueError:
        raise SystemExit(f"lhaaso-joint: {text!r} is neither an MJD nor an ISO UTC time "
                         "(e.g. 59274, 2021-03-01 or 2021-03-01T12:00:00)") from None
    return text


def read_inputs(inputs, detectors, layouts, max_events=None):
    """The events of ``inputs`` (own schema or G4KM2A) as one dense numpy Event batch; every
    file must have hits of every detector in ``detectors`` (EventFileError otherwise)."""
    import jax
    import numpy as np

    from joint.io import read_file
    from joint.io.errors import EventFileError
    from joint.io.schema import to_event_batch
    from joint.runner import detectors_in_file

    batches, n = [], 0
    for path in inputs:
        present = detectors_in_file(path)
        for d in detectors:
            if d not in present:
                group = {"km2a": "km2a_ed_id", "wcda": "wcda_id", "wfcta": "wfcta_tel"}[d]
                raise EventFileError(path, group, f"is missing: the calibration fits {d.upper()}")
    for path in inputs:
        if max_events is not None and n >= max_events:
            break
        rec = read_file(path, km2a=layouts.get("km2a"), wcda=layouts.get("wcda"),
                        wfcta=layouts.get("wfcta"))
        if max_events is not None and len(rec["event_id"]) > max_events - n:
            rec = {k: v[:max_events - n] for k, v in rec.items()}
        batch = to_event_batch(rec, km2a=layouts.get("km2a"), wcda=layouts.get("wcda"),
                               wfcta=layouts.get("wfcta"), source=path, as_jax=False)
        # only the fitted detectors' blocks (the others may differ from file to file)
        keep = {"km2a_ed": "km2a", "km2a_md": "km2a", "wcda": "wcda", "wfcta": "wfcta"}
        batch = batch._replace(**{b: None for b, d in keep.items() if d not in detectors})
        batches.append(batch)
        n += len(rec["event_id"])
    if not batches:
        raise SystemExit("lhaaso-joint: calibrate: no events in the inputs")
    if any(b.truth is None for b in batches):
        batches = [b._replace(truth=None) for b in batches]
    if len(batches) == 1:
        return batches[0]
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *batches)


def cmd_calibrate(args) -> int:
    import numpy as np

    from calib.db import CalibrationDB, DetectorConfig, make_entry
    from calib.learn import LearnConfig, learn_response
    from detectors import registry
    from joint.config import config_for, detector_setup

    dets = tuple(d.strip().lower() for d in args.detectors.split(",") if d.strip())
    known = registry.names()
    for d in dets:
        if d not in known:
            raise SystemExit(f"lhaaso-joint: unknown detector '{d}' (known: {', '.join(known)})")
    if not dets:
        raise SystemExit("lhaaso-joint: calibrate needs at least one detector")
    if dets == ("wfcta",):
        raise SystemExit("lhaaso-joint: calibrate fits the whole shower; WFCTA needs a ground "
                         "array with it (e.g. --detectors km2a,wfcta)")
    t_from, t_to = parse_time(args.valid_from), parse_time(args.valid_to)
    db = CalibrationDB(args.db)  # opened first: a malformed database fails before any fitting
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
        raise SystemExit(f"lhaaso-joint: {err}") from None
    layouts, geometry, nominal = detector_setup(cfg.detectors, args.layout)
    batch = read_inputs(args.inputs, cfg.detectors, layouts, args.max_events)
    n = int(np.shape(batch.event_id)[0])
    t = np.asarray(batch.time_mjd, np.float64)
    from astropy.time import Time

    lo = Time(t_from, format="mjd", scale="utc") if isinstance(t_from, float) else Time(t_from, scale="utc")
    hi = Time(t_to, format="mjd", scale="utc") if isinstance(t_to, float) else Time(t_to, scale="utc")
    outside = int(np.sum(~((t >= lo.utc.mjd) & (t < hi.utc.mjd))))
    if outside:
        print(f"lhaaso-joint: warning: {outside} of {n} events lie outside the validity interval "
              f"[{lo.utc.isot}, {hi.utc.isot}) (simulated files have a fixed or unknown time)",
              file=sys.stderr)
    print(f"calibrating {','.join(cfg.detectors)} on {n} events from {len(args.inputs)} file(s)")
    responses, history = learn_response(batch, geometry, nominal, cfg, lcfg,
                                        checkpoint=args.checkpoint, progress=not args.quiet,
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
    entry = make_entry(args.period, t_from, t_to, responses, configs,
                       input_files=[str(Path(p).resolve()) for p in args.inputs], notes=notes)
    try:
        db.add(entry, replace=args.replace)
    except ValueError as err:
        raise SystemExit(f"lhaaso-joint: {err}") from None
    db.save()
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
