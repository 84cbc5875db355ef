"""The ``lhaaso-joint`` command line.

Subcommands:

* ``show FILE...``      summary of event files (own schema or G4KM2A LHEvent): events, detectors,
                         hits per event, truth ranges.
* ``simulate``          sample primaries with the truth generator, simulate the detectors
                         (``--detectors`` any of km2a, wcda, wfcta, e.g. ``km2a,wcda,wfcta`` for
                         coincident events; ``none`` writes truth only) and write the project's
                         schema; only triggered events are written, each with the detectors that
                         triggered (``--cores-on wcda|wfcta`` throws the cores on the ponds / in
                         the telescopes' view; ``--wfcta-clear-fraction``: WFCTA's duty cycle).
                         ``--from-corsika FILES... --throws N`` throws CORSIKA showers onto KM2A
                         instead (``joint/io/corsika.py``).
* ``reconstruct``       batched fits of event files (own schema or G4KM2A) into a ``reco`` tree;
                         ``--detectors auto`` (default) fits every built detector in the file
                         jointly (events lacking one are fitted with the others), or a comma
                         list chooses; output per-detector ``nll_<det>`` and ``gof_<det>``.
* ``bench``             throughput of the batched fitter next to iminuit on the same likelihood.
* ``demo``              the end-to-end demonstration behind ``make demo``.

* ``calibrate``         learn a detector response from the events of one run period and store it
                         in a calibration database (``calib/``); ``reconstruct --calib-db`` uses it.
 A WFCTA-only fit needs the geometry
fixed: ``reconstruct --detectors wfcta --fix core,direction [--geometry-from truth|km2a|wcda]``.

Errors: every bad input of every command is found before any work starts and printed by
:func:`main` as ONE line on stderr, ``lhaaso-joint: error: <message naming the file or option>``,
with exit status 2 and no traceback (``EventFileError`` for event files, ``RunError``/
:class:`UsageError` for arguments and output paths, ``CalibrationDBError`` for calibration
databases). A command that fails leaves no partial output behind and never modifies its inputs.
argparse's own usage errors (an unknown option, a missing required one) keep argparse's format
(usage line + ``lhaaso-joint: error: ...``, status 2).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
from pathlib import Path

#: detectors whose forward model exists; the CLI refuses others with a clear message
from detectors.registry import names as _registered
from joint.io.errors import EventFileError, RunError, reading

BUILT_DETECTORS: tuple[str, ...] = _registered()

#: --fix names -> Shower fields
FIX_GROUPS = {"core": ("core_x", "core_y"), "direction": ("zenith", "azimuth")}


class UsageError(RunError):
    """A bad command-line argument or output path, found before any work starts. :func:`main`
    prints it as one line ``lhaaso-joint: error: <message>`` and exits with status 2; the message
    names the option or the path at fault (``--n-events must be ≥ 1, got 0``)."""


#: the one prefix of every error line of the command line
ERROR_PREFIX = "lhaaso-joint: error: "


def _one_line(text) -> str:
    """``text`` on one line (an exception's message may span several)."""
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


def _parse_detectors(text: str) -> tuple[str, ...]:
    if text in ("", "none"):
        return ()
    dets = tuple(d.strip().lower() for d in text.split(",") if d.strip())
    known = ("km2a", "wcda", "wfcta")
    for d in dets:
        if d not in known:
            raise UsageError(f"--detectors: unknown detector '{d}' (known: {', '.join(known)})")
        if d not in BUILT_DETECTORS:
            raise UsageError(f"--detectors: the {d.upper()} forward model is not built yet "
                             f"(built: {', '.join(BUILT_DETECTORS) or 'none'})")
    return dets


# ---------------------------------------------------------------------------------------------
# checks of inputs and outputs, before any work starts
# ---------------------------------------------------------------------------------------------
def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_path(path, option: str = "-o/--output", inputs=()) -> Path:
    """An output file path that can be written: not a directory, not one of ``inputs``, its
    directory (or the nearest existing ancestor, the rest is created on writing) a writable
    directory. UsageError naming ``option`` and the path otherwise."""
    out = Path(path)
    if str(path) == "":
        raise UsageError(f"{option} is empty")
    if out.is_dir():
        raise UsageError(f"{option} {out} is a directory, not a file")
    resolved = out.resolve()
    for f in inputs:
        if Path(f).resolve() == resolved:
            raise UsageError(f"{option} {out} is also an input file (it would be overwritten)")
    anc = _nearest_existing(out.parent if str(out.parent) else Path("."))
    if not anc.is_dir():
        raise UsageError(f"{option} {out}: {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {out}: directory {anc} is not writable")
    return out


def _missing_dirs(path: Path) -> list:
    """The directories above ``path`` that do not exist yet, innermost first."""
    out, d = [], Path(path).parent
    while not d.exists() and d != d.parent:
        out.append(d)
        d = d.parent
    return out


@contextlib.contextmanager
def atomic_output(path: Path):
    """Yield a temporary path beside ``path`` (``.<name>.part``) to write to; renamed to ``path``
    when the block succeeds, removed (with the directories created for it) when it fails, so a
    failed command leaves no partial file."""
    path = Path(path)
    created = _missing_dirs(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        for d in created:  # innermost first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def _check_number(value, option: str, *, minimum=None, maximum=None, above=None, below=None,
                  integer: bool = False) -> None:
    """UsageError naming ``option`` when ``value`` is not finite or outside the bounds."""
    if not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number, got {value}")
    bounds = []
    if minimum is not None and value < minimum:
        bounds.append(f"≥ {minimum:g}")
    if above is not None and value <= above:
        bounds.append(f"> {above:g}")
    if maximum is not None and value > maximum:
        bounds.append(f"≤ {maximum:g}")
    if below is not None and value >= below:
        bounds.append(f"< {below:g}")
    if bounds:
        raise UsageError(f"{option} must be {' and '.join(bounds)}, got {value:g}")


def cmd_show(args) -> int:
    import awkward as ak
    import numpy as np

    from joint.io import read_file
    from detectors import registry
    from joint.io.schema import TRUTH, groups_present

    from calib.cli import check_event_file  # (the CLI's; loaded with the calibrate parser)

    kinds = [check_event_file(path) for path in args.files]  # every file, before any output
    for path, kind in zip(args.files, kinds):
        with reading(path):  # a damaged file: one line naming it
            records = read_file(path)
        n = len(records["event_id"])
        print(f"{path}  ({kind} format): {n} events")
        for g in groups_present(records):
            key = next(b.key for b in registry.spec_of_block(g).blocks if b.name == g)
            counts = ak.to_numpy(ak.num(records[f"{g}_{key}"], axis=1))
            print(f"  {g:8s} hits/event: median {np.median(counts):.0f}, min {counts.min()}, max {counts.max()}")
        for t in TRUTH:
            if t in records:
                v = np.asarray(records[t], float)
                if np.all(np.isnan(v)):
                    print(f"  {t:22s} (unknown)")
                else:
                    print(f"  {t:22s} {np.nanmin(v):12.4g} .. {np.nanmax(v):12.4g}")
    return 0


def _check_simulate_common(args) -> None:
    """Options shared by the truth generator and --from-corsika."""
    if args.layout not in ("full", "3/4"):
        raise UsageError(f"--layout must be 'full' or '3/4', got {args.layout!r}")
    if args.seed < 0:
        raise UsageError(f"--seed must be ≥ 0, got {args.seed}")
    _check_number(args.core_radius, "--core-radius", minimum=0.0)
    _check_number(args.mjd, "--mjd")
    if args.run < 0:
        raise UsageError(f"--run must be ≥ 0, got {args.run}")


def _check_simulate(args) -> None:
    """Every option of the truth generator, before anything is simulated."""
    from detectors.primaries import GUMBEL_COEFFICIENTS, mass_number_of

    _check_simulate_common(args)
    if args.n_events < 1:
        raise UsageError(f"--n-events must be ≥ 1, got {args.n_events}")
    lo, hi = args.log10_energy_range
    _check_number(lo, "--log10-energy-range A")
    _check_number(hi, "--log10-energy-range B")
    if lo > hi:
        raise UsageError(f"--log10-energy-range A B must have A ≤ B (A = B: one energy), got "
                         f"{lo:g} {hi:g}")
    _check_number(args.zenith_max, "--zenith-max", minimum=0.0, below=90.0)
    _check_number(args.age_sigma, "--age-sigma", minimum=0.0)
    _check_number(args.wfcta_clear_fraction, "--wfcta-clear-fraction", minimum=0.0, maximum=1.0)
    if str(args.primary).strip().lower() != "mixed":
        try:
            mass_number_of(args.primary)
        except ValueError:
            raise UsageError(f"--primary: unknown primary {args.primary!r} (gamma, proton, "
                             "helium, nitrogen, iron, ... or mixed)") from None
    if args.model not in GUMBEL_COEFFICIENTS:
        raise UsageError(f"--model: unknown hadronic model {args.model!r} (choose from "
                         f"{', '.join(GUMBEL_COEFFICIENTS)})")


def cmd_simulate_corsika(args) -> int:
    """``simulate --from-corsika FILES... --throws N``: CORSIKA showers thrown onto KM2A
    (``joint/io/corsika.py``, ``docs/corsika.md``)."""
    from joint.io.corsika import CorsikaResponse, detect_thinning, extra_path, write_corsika_events

    dets = _parse_detectors(args.detectors) or ("km2a",)
    if "km2a" not in dets or not set(dets) <= {"km2a", "wcda"}:
        raise UsageError("--from-corsika simulates km2a (and optionally wcda): "
                         f"--detectors {args.detectors} is not supported")
    if args.throws < 1:
        raise UsageError(f"--throws must be ≥ 1, got {args.throws}")
    _check_simulate_common(args)
    _check_number(args.core_rmin, "--core-rmin", minimum=0.0)
    if not args.core_rmin <= args.core_radius:
        raise UsageError("need 0 ≤ --core-rmin ≤ --core-radius, got "
                         f"{args.core_rmin} and {args.core_radius}")
    try:
        response = CorsikaResponse(photon_conversion=args.photon_conversion,
                                   md_muon_threshold_gev=args.md_muon_threshold_gev)
    except ValueError as err:
        raise UsageError(f"{_one_line(err)} (--photon-conversion, --md-muon-threshold-gev)") \
            from None
    out = check_output_path(args.output, inputs=args.from_corsika)
    side = extra_path(out)
    if side.is_dir():
        raise UsageError(f"-o/--output {out}: its side file {side} is a directory")
    for f in args.from_corsika:  # exists, readable, a CORSIKA particle file (its header)
        detect_thinning(f)
    if out.exists() and not args.overwrite:
        print(f"lhaaso-joint: {out} exists (a finished run); skipping. Use --overwrite to redo it.")
        return 0
    thinning = {"auto": None, "yes": True, "no": False}[args.corsika_thinning]
    parts = (out.with_name(out.name + ".part"), side.with_name(side.name + ".part.npz"))
    created = _missing_dirs(out)
    try:
        meta = write_corsika_events(
            args.from_corsika, out, args.throws, overwrite=True, layout=args.layout,
            core_rmax=args.core_radius, core_rmin=args.core_rmin, seed=args.seed,
            response=response, run=args.run, mjd=args.mjd, wcda="wcda" in dets,
            thinning=thinning, progress=not args.quiet)
    except BaseException:
        for p in parts:  # no partial file under any name
            with contextlib.suppress(OSError):
                p.unlink()
        for d in created:  # innermost first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    levels = sorted({lv for per_file in meta["obs_level_m"] for lv in per_file})
    print(f"wrote {meta['n_triggered']} triggered events ({meta['n_showers']} CORSIKA showers × "
          f"{args.throws} throws = {meta['n_thrown']} thrown, {meta['n_not_triggered']} not "
          f"triggered and not written; detectors: {','.join(dets)}) to {out}")
    print(f"  shower development of the observation level(s) {', '.join(f'{lv:g}' for lv in levels)}"
          f" m a.s.l. (obs_level_m); extra truth (true_md_muons, true_ed_particles, ...) in "
          f"{extra_path(out)}")
    return 0


def cmd_simulate(args) -> int:
    import numpy as np

    if args.from_corsika:
        return cmd_simulate_corsika(args)

    from detectors.primaries import sample_primaries
    from joint.io.schema import write_events

    dets = _parse_detectors(args.detectors)
    _check_simulate(args)
    out = check_output_path(args.output)
    n = args.n_events
    if not dets:
        truth = sample_primaries(np.random.default_rng(args.seed), n, primary=args.primary,
                                 log10_energy_range=tuple(args.log10_energy_range),
                                 zenith_max_deg=args.zenith_max, core_radius_m=args.core_radius,
                                 model=args.model)
        records = {"run": np.full(n, args.run, np.int32), "event_id": np.arange(n, dtype=np.int64),
                   "time_mjd": np.full(n, args.mjd, np.float64), **truth}
        with atomic_output(out) as tmp:
            write_events(tmp, records)
        print(f"wrote {n} events ({args.primary}, truth only) to {out}")
        return 0
    from tqdm import tqdm

    from detectors.layout import km2a_layout
    from joint.simulation import simulate_records

    bar = tqdm(total=n, unit="ev", desc=f"simulate {args.primary}")

    def progress(kept, thrown):
        bar.update(kept - bar.n)
        bar.set_postfix(thrown=thrown)

    records, thrown = simulate_records(
        n, primary=args.primary, detectors=dets, log10_energy_range=tuple(args.log10_energy_range),
        zenith_max_deg=args.zenith_max, core_radius_m=args.core_radius, seed=args.seed,
        run=args.run, mjd=args.mjd, km2a_layout=km2a_layout(args.layout), model=args.model,
        progress=progress, age_sigma=args.age_sigma, cores_on=args.cores_on,
        wfcta_clear_fraction=args.wfcta_clear_fraction)
    bar.close()
    with atomic_output(out) as tmp:
        write_events(tmp, records)
    print(f"wrote {n} triggered events ({args.primary}, {thrown} thrown, detectors: "
          f"{','.join(dets)}) to {out}")
    return 0


def _batch_size(text: str):
    """--batch-size: a positive integer or 'auto' (checked by the runner: one message)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        return text


def cmd_reconstruct(args) -> int:
    from joint.runner import check_batch_size, check_output
    from lhaaso_joint.api import reconstruct_files

    dets = None if args.detectors == "auto" else _parse_detectors(args.detectors)
    if dets == ():
        raise RunError("reconstruct needs at least one detector (--detectors)")
    # the arguments first: nothing is read or fitted before they are all right
    check_batch_size(args.batch_size)
    if args.chunk_events is not None:
        check_batch_size(args.chunk_events, "--chunk-events")
    if args.max_memory is not None and not args.max_memory > 0:
        raise RunError(f"--max-memory must be a positive number of GB, got {args.max_memory}")
    if args.n_iter < 1:
        raise RunError(f"--n-iter must be a positive integer, got {args.n_iter}")
    if not (args.output.endswith("/") or Path(args.output).is_dir()):
        check_output(args.output, args.inputs)
    # an existing output: the runner compares its configuration hash (OUTPUT.run.json) — the
    # same configuration is not refitted, another one is refused without --overwrite
    from lhaaso_joint.api import config_for
    from joint.runner import detectors_in_file

    fixed = ()
    for name in (args.fix.split(",") if args.fix else ()):
        name = name.strip()
        if name in FIX_GROUPS:
            fixed += FIX_GROUPS[name]
        elif name:
            fixed += (name,)
    fit_dets = dets or detectors_in_file(args.inputs[0])
    try:
        cfg = config_for(fit_dets, args.hypothesis, fix=fixed, geometry_from=args.geometry_from,
                         xmax_prior=args.xmax_prior,
                         free=tuple(args.free.split(",")) if args.free else None,
                         n_iter=args.n_iter)
    except ValueError as err:
        raise RunError(f"{err} (CLI: --fix core,direction "
                       "[--geometry-from truth|km2a|wcda])") from None
    summary = reconstruct_files(args.inputs, args.output, cfg, batch_size=args.batch_size,
                                layout_config=args.layout, progress=not args.quiet,
                                detectors="auto" if dets is None else dets,
                                frame_rotation_deg=args.frame_rotation_deg,
                                calib_db=args.calib_db, calib_missing=args.calib_missing,
                                max_memory_gb=args.max_memory, chunk_events=args.chunk_events,
                                overwrite=args.overwrite, cluster=args.cluster,
                                log=lambda m: print(f"lhaaso-joint: {m}", file=sys.stderr))
    st = summary["status_counts"]
    print(f"reconstructed {summary['events']} events in {summary['seconds']:.1f} s "
          f"({summary['events_per_s']:.1f} events/s incl. compilation and I/O) -> {args.output}")
    print(f"detectors fitted: {','.join(summary['detectors'])}; batch size "
          f"{summary['batch_size']}; peak memory {summary.get('peak_rss_mb', float('nan')):.0f} MB"
          + (" (largest process)" if args.cluster else ""))
    print(f"status: converged {st[0]}, max_iter {st[1]}, non_finite {st[2]}, out_of_bounds {st[3]}")
    return 0


def cmd_classify(args) -> int:
    from analysis.ml.classify import ClassifyError, MODELS, available_models, classify_files

    models = available_models()
    if args.gamma_hadron_model:
        models["gamma_hadron"] = args.gamma_hadron_model
    if args.composition_model:
        models["composition"] = args.composition_model
    hit_model = None
    if args.hit_probability:
        hit_model = models.get("gamma_hadron")
        if hit_model is None:
            raise RunError("--hit-probability needs the γ/hadron model (its per-hit head): "
                           f"none shipped ({MODELS['gamma_hadron']}) and no --gamma-hadron-model")
    try:
        res = classify_files(args.events, args.reco, args.output, models=models,
                             layout=args.layout, hit_model=hit_model, overwrite=args.overwrite)
    except ClassifyError as err:
        raise RunError(str(err)) from None
    print(f"classified {res['events']} events: columns {', '.join(res['columns'])}"
          + (", tree 'hits' (per-hit signal probability)" if res["hits"] else "")
          + f" -> {args.output}")
    return 0


def cmd_bench(args) -> int:
    from joint.bench import format_table, run_bench

    import dataclasses

    from lhaaso_joint.api import config_for

    kw = {k: v for k, v in (("n_ed", args.n_ed), ("n_md", args.n_md)) if v is not None}
    dets = _parse_detectors(args.detectors)
    if not dets:
        raise UsageError("bench needs at least one detector (--detectors km2a, wcda, ...)")
    if dets == ("wfcta",):
        raise UsageError("bench fits the whole shower; WFCTA alone needs the geometry fixed "
                         "(use reconstruct --fix core,direction)")
    for opt, v, lo in (("--n-events", args.n_events, 1), ("--batch-size", args.batch_size, 1),
                       ("--n-iminuit", args.n_iminuit, 0), ("--seed", args.seed, 0),
                       ("--n-ed", args.n_ed, 1), ("--n-md", args.n_md, 1)):
        if v is not None and v < lo:
            raise UsageError(f"{opt} must be ≥ {lo}, got {v}")
    if args.log10_energy is not None:
        _check_number(args.log10_energy, "--log10-energy")
    cfg = dataclasses.replace(config_for(dets, "gamma" if args.primary == "gamma" else "hadron"),
                              **kw)
    lg = args.log10_energy
    if lg is None:  # a typical energy of the detector combination
        lg = 6.0 if "wfcta" in dets else 5.0 if "km2a" in dets else 4.0
    res = run_bench(n_events=args.n_events, primary=args.primary, log10_energy=lg,
                    batch_size=args.batch_size, n_iminuit=args.n_iminuit, seed=args.seed, cfg=cfg,
                    out=lambda *a, **k: None)
    print(format_table(res))
    return 0


def cmd_demo(args) -> int:
    from lhaaso_joint.demo import run_demo

    if args.n_events < 1:
        raise UsageError(f"--n-events must be ≥ 1, got {args.n_events}")
    if args.seed < 0:
        raise UsageError(f"--seed must be ≥ 0, got {args.seed}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory")
    anc = _nearest_existing(out)
    if not anc.is_dir():
        raise UsageError(f"--out {out}: {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: directory {anc} is not writable")
    return run_demo(out, n_events=args.n_events, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lhaaso-joint",
                                description="Joint reconstruction of LHAASO air showers (KM2A, WCDA, WFCTA)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("show", help="summarise event files")
    s.add_argument("files", nargs="+")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("simulate", help="simulate events into the project's ROOT schema")
    s.add_argument("--detectors", default="none", help="comma list of detectors (built: "
                   + (", ".join(BUILT_DETECTORS) or "none yet") + ")")
    s.add_argument("--primary", default="proton",
                   help="gamma, proton, helium, nitrogen, iron or mixed")
    s.add_argument("--n-events", type=int, default=100)
    s.add_argument("--log10-energy-range", type=float, nargs=2, default=(4.0, 6.0),
                   metavar=("A", "B"), help="log10(E/GeV) range")
    s.add_argument("--zenith-max", type=float, default=40.0, help="degrees")
    s.add_argument("--core-radius", type=float, default=400.0, help="m")
    s.add_argument("--model", default="EPOS-LHC", help="hadronic model of the Xmax parameterisation")
    s.add_argument("--run", type=int, default=1)
    s.add_argument("--mjd", type=float, default=60000.0, help="event time [MJD] written to the file")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--layout", default="full", help="KM2A layout: full or 3/4")
    s.add_argument("--age-sigma", type=float, default=0.05,
                   help="shower-to-shower lateral-age fluctuation (not in the fit model)")
    s.add_argument("--cores-on", default="array", choices=("array", "wcda", "wfcta"),
                   help="array: cores uniform within --core-radius of the KM2A centre; "
                        "wcda: cores uniform on the WCDA cells; wfcta: directions within 5° of "
                        "a telescope's axis, cores within 300 m of the telescopes")
    s.add_argument("--wfcta-clear-fraction", type=float, default=1.0,
                   help="probability that WFCTA takes data for an event (clear moonless night)")
    c = s.add_argument_group("CORSIKA input (--from-corsika; docs/corsika.md)")
    c.add_argument("--from-corsika", nargs="+", default=None, metavar="FILE",
                   help="throw the showers of these CORSIKA 7 particle files (unthinned or "
                        "thinned) onto KM2A with an approximate particle-level response, instead "
                        "of the truth generator; uses --core-radius, --layout, --seed, --run, "
                        "--mjd and --detectors (km2a or km2a,wcda)")
    c.add_argument("--throws", type=int, default=10, help="throws per CORSIKA shower")
    c.add_argument("--core-rmin", type=float, default=0.0,
                   help="m: cores uniform over the annulus --core-rmin..--core-radius")
    c.add_argument("--photon-conversion", type=float, default=0.5,
                   help="probability that a photon (> 5 MeV) converts in the ED's lead [M]")
    c.add_argument("--md-muon-threshold-gev", type=float, default=1.0,
                   help="total muon energy needed to reach the MDs through the soil [M]")
    c.add_argument("--corsika-thinning", default="auto", choices=("auto", "yes", "no"),
                   help="thinned file format (auto: detected per file)")
    c.add_argument("--overwrite", action="store_true",
                   help="with --from-corsika: redo the run even if the output exists")
    c.add_argument("--quiet", action="store_true", help="with --from-corsika: no progress bar")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("reconstruct", help="fit event files in batches")
    s.add_argument("inputs", nargs="+", help="own-schema or G4KM2A LHEvent ROOT files")
    s.add_argument("-o", "--output", required=True, help="output ROOT file (tree 'reco')")
    s.add_argument("--detectors", default="auto",
                   help="auto (every built detector present in the first input), or a comma "
                        "list: km2a, wcda, wfcta, km2a,wcda, ...")
    s.add_argument("--hypothesis", default="hadron", choices=("hadron", "gamma"))
    s.add_argument("--free", default=None, help="comma list of fitted Shower fields")
    s.add_argument("--fix", default=None,
                   help="comma list of fields fixed from --geometry-from: core, direction or "
                        "Shower field names (a WFCTA-only fit needs --fix core,direction)")
    s.add_argument("--geometry-from", default="truth", choices=("truth", "km2a", "wcda"),
                   help="where --fix takes its values: the simulation truth, or a first fit of "
                        "KM2A or WCDA alone")
    s.add_argument("--xmax-prior", dest="xmax_prior", action="store_true", default=None,
                   help="add the Xmax prior of the hypothesis (default: on, except for WFCTA alone; "
                   "in joint fits only events without WFCTA images use it)")
    s.add_argument("--no-xmax-prior", dest="xmax_prior", action="store_false")
    s.add_argument("--batch-size", type=_batch_size, default="auto",
                   help="events fitted at once (default auto: the largest power of two whose "
                        "estimated memory fits --max-memory)")
    s.add_argument("--max-memory", type=float, default=None, metavar="GB",
                   help="memory budget of one process for --batch-size auto (default 3 GB); the "
                        "run summary reports the peak")
    s.add_argument("--chunk-events", type=int, default=None,
                   help="entries per chunk, the unit of resume and of a cluster task (default 8 "
                        "batches)")
    s.add_argument("--cluster", default=None, metavar="SPEC",
                   help="fit on a Dask cluster: local:N (N worker processes here), "
                        "tcp://HOST:PORT (a running scheduler), htcondor:N or slurm:N (N batch "
                        "jobs, dask-jobqueue); docs/farm.md")
    s.add_argument("--frame-rotation-deg", type=float, default=0.0,
                   help="angle of the array's +x axis from true East, for ra/dec [deg]")
    s.add_argument("--n-iter", type=int, default=12)
    s.add_argument("--layout", default="full", help="KM2A layout: full or 3/4 (with --calib-db: "
                   "the layout of events no entry covers; the entries carry their own)")
    s.add_argument("--calib-db", default=None, metavar="DB",
                   help="calibration database (lhaaso-joint calibrate --db): each event is fitted "
                        "with the entry valid at its time (its Response, layout and dead channels); "
                        "columns calib_<det> and the log say which")
    s.add_argument("--calib-missing", default="raise", choices=("raise", "nominal"),
                   help="events no entry covers: stop with an error (default) or fit them nominal")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--overwrite", action="store_true",
                   help="redo the run even if the output exists (default: a finished output is kept), "
                        "and discard an unfinished run of another configuration")
    s.set_defaults(func=cmd_reconstruct)

    s = sub.add_parser("classify", help="add the networks' gammaness, p_light, ln_a (and a "
                       "per-hit signal probability) to a reconstruction (docs/ml.md)")
    s.add_argument("events", help="the event file that was reconstructed")
    s.add_argument("reco", help="its reconstruction (lhaaso-joint reconstruct output, KM2A fitted)")
    s.add_argument("-o", "--output", required=True, help="new ROOT file: tree 'reco' with the "
                   "network columns added (and tree 'hits' with --hit-probability)")
    s.add_argument("--gamma-hadron-model", default=None, metavar="PATH",
                   help="saved γ/hadron model (default: the shipped analysis/ml/models/km2a_gamma_hadron)")
    s.add_argument("--composition-model", default=None, metavar="PATH",
                   help="saved composition model (default: the shipped one, when there is one)")
    s.add_argument("--hit-probability", action="store_true",
                   help="also write the per-hit probability that each KM2A hit is a shower hit")
    s.add_argument("--layout", default="full", help="KM2A layout of the events: full or 3/4")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    s.set_defaults(func=cmd_classify)

    s = sub.add_parser("bench", help="batched fitter vs iminuit on the same likelihood")
    s.add_argument("--n-events", type=int, default=256)
    s.add_argument("--primary", default="gamma")
    s.add_argument("--log10-energy", type=float, default=None,
                   help="log10(E/GeV) (default 5.0 with KM2A, 4.0 for WCDA alone)")
    s.add_argument("--detectors", default="km2a",
                   help="comma list of km2a, wcda, wfcta (e.g. km2a,wcda,wfcta)")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--n-iminuit", type=int, default=48)
    s.add_argument("--seed", type=int, default=5)
    s.add_argument("--n-ed", type=int, default=None, help="active EDs per event (default 768)")
    s.add_argument("--n-md", type=int, default=None, help="active MDs per event (default 192)")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("demo", help="run the demonstration (make demo)")
    s.add_argument("--out", default="demo_output")
    s.add_argument("--n-events", type=int, default=2000)
    s.add_argument("--seed", type=int, default=7)
    s.set_defaults(func=cmd_demo)
    from calib.cli import add_parser as add_calibrate_parser
    add_calibrate_parser(sub)
    from lhaaso_joint.cli_irf import add_parsers as add_irf_parsers
    add_irf_parsers(sub)
    return p


def _error(message) -> int:
    """Print the one error line and return the exit status (2)."""
    print(ERROR_PREFIX + _one_line(message), file=sys.stderr)
    return 2


def main(argv=None) -> int:
    """Run the command line; the one place that formats errors: a bad input of any command
    (``EventFileError``, ``RunError`` and its :class:`UsageError`, ``CalibrationDBError``) is
    printed as one line ``lhaaso-joint: error: <message>`` on stderr and gives status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (EventFileError, RunError) as exc:
        return _error(exc)
    except SystemExit as exc:
        # an older "raise SystemExit('lhaaso-joint: ...')" message: the same one-line format
        code = exc.code
        if isinstance(code, str):
            text = code[len("lhaaso-joint:"):] if code.startswith("lhaaso-joint:") else code
            text = text.strip()
            if text.startswith("error:"):
                text = text[len("error:"):].strip()
            return _error(text)
        raise
    except Exception as exc:
        # calib.db.CalibrationDBError (a malformed or missing calibration database), without
        # importing calib (and jax) for the commands that never touch a database
        db = sys.modules.get("calib.db")
        if db is not None and isinstance(exc, db.CalibrationDBError):
            return _error(exc)
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
