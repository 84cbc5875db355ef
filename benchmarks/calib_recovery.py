"""Issue 7: recover injected miscalibrations from simulated runs, and reconstruct after.

For one detector (``--detector``):

* km2a  — ED gains with a 20% spread (σ of ln G) and ED time offsets with a 5 ns spread;
  KM2A-only events (protons, cores over the array), fit hypothesis "hadron";
* wcda  — cell efficiencies set to the measured ``water_eff_0110.txt`` values (pond 1; the
  other ponds keep 1) while the fit starts from efficiency 1 everywhere, plus cell time offsets
  with a 2 ns spread; WCDA-only events with cores on the ponds;
* wfcta — pixel gains with a 10% spread and telescope 1 15% less efficient; KM2A + WFCTA events
  (cores near the telescopes), only the WFCTA parameters learned (KM2A calibrated).

A run of ``max(--n-events)`` events is simulated with the true Response, and the Response is
learned back (``calib.learn.learn_response``, starting from nominal) from the first N events for
each N of ``--n-events``: rms error of the learned parameters (projected on the constraints, so
comparable) over the channels with at least ``--min-hits`` hits, next to the injected rms.
Then an independent sample of ``--n-test`` events is reconstructed with the true Response
("perfect"), the nominal one ("before") and the learned one ("after", largest N): 68% angular
resolution, energy bias (mean of Δlog10 E, in %) and energy resolution.

    python benchmarks/calib_recovery.py --detector km2a --n-events 1000 3000 10000 20000

``--layout 3/4`` runs KM2A on the 3/4 array of 2020-2021 (cores on it), and ``--via-db`` makes
the "after" reconstruction go the way a user's does: the learned Response is stored as an entry
of a calibration database (with its layout), the test events are written to a file, and
``joint.pipeline.reconstruct_files(calib_db=...)`` picks the entry by the events' time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import angle_deg, machine  # noqa: E402

FIELDS = {"km2a": ("ed_log_gain", "ed_time_offset"),
          "wcda": ("log_efficiency", "time_offset"),
          "wfcta": ("pixel_log_gain", "tel_log_efficiency")}
DETS = {"km2a": ("km2a",), "wcda": ("wcda",), "wfcta": ("km2a", "wfcta")}


def truth_responses(det, geos, noms, seed):
    """{detector: true Response} with the injected miscalibration of ``det``."""
    import jax.numpy as jnp

    from calib import response as R

    rng = np.random.default_rng(seed)
    out = dict(noms)
    if det == "km2a":
        nom = noms["km2a"]
        n_ed, n_md = nom.ed_gain.shape[0], nom.md_gain.shape[0]
        p = R.KM2AParams(ed_log_gain=jnp.asarray(rng.normal(0.0, 0.2, n_ed)),
                         md_log_gain=jnp.zeros(n_md),
                         ed_time_offset=jnp.asarray(rng.normal(0.0, 5.0, n_ed)),
                         md_time_offset=jnp.zeros(n_md))
    elif det == "wcda":
        from detectors import wcda
        from detectors.layout import wcda_layout

        nom = noms["wcda"]
        eff = wcda.Response.measured_efficiency(wcda_layout())
        n = eff.size
        p = R.WCDAParams(log_efficiency=jnp.asarray(np.log(eff)),
                         time_offset=jnp.asarray(rng.normal(0.0, 2.0, n)))
    else:
        nom = noms["wfcta"]
        n_tel, n_pix = np.shape(nom.pixel_gain)
        tel = np.zeros(n_tel)
        tel[0] = np.log(0.85)
        p = R.WFCTAParams(pixel_log_gain=jnp.asarray(rng.normal(0.0, 0.1, (n_tel, n_pix))),
                          tel_log_efficiency=jnp.asarray(tel))
    cons = R.default_constraints(det, geos[det])
    r = R.apply(p, nom, cons)
    out[det] = r._replace(**{f: np.asarray(getattr(r, f), np.float64) for f in R.LEARNED_FIELDS[det]})
    return out, cons


def simulate(det, n, seed, lays, truth, energy_range, mjd=60000.0, core_centre=None):
    from joint.io.schema import to_event_batch
    from joint.simulation import simulate_records

    kw = dict(log10_energy_range=energy_range, seed=seed, mjd=mjd, km2a_layout=lays.get("km2a"),
              chunk=256)
    if det == "km2a":
        extra = {} if core_centre is None else {"core_centre": core_centre}
        rec, thrown = simulate_records(n, primary="proton", detectors=("km2a",), zenith_max_deg=35.0,
                                       core_radius_m=560.0 if core_centre is None else 450.0,
                                       response=truth["km2a"], **kw, **extra)
    elif det == "wcda":
        rec, thrown = simulate_records(n, primary="gamma", detectors=("wcda",), zenith_max_deg=35.0,
                                       cores_on="wcda", wcda_layout=lays["wcda"],
                                       wcda_response=truth["wcda"], **kw)
    else:
        rec, thrown = simulate_records(n, primary="proton", detectors=("km2a", "wfcta"),
                                       cores_on="wfcta", wfcta_layout=lays["wfcta"],
                                       response=truth["km2a"], wfcta_response=truth["wfcta"], **kw)
    batch = to_event_batch(rec, km2a=lays.get("km2a"), wcda=lays.get("wcda"),
                           wfcta=lays.get("wfcta"), as_jax=False)
    return rec, batch, thrown


def take(batch, idx):
    import jax

    return jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], batch)


def reco_columns(batch, rec, geos, resps, cfg, batch_size=256):
    """Fit the events directly (reconstruct_records): the columns figures() needs."""
    from lhaaso_joint.api import reconstruct_records

    out = reconstruct_records(batch, geos, resps, cfg, batch_size=batch_size, observables=False)
    return {k: np.asarray(v) for k, v in out.items() if k in _COLS}


_COLS = ("reco_zenith", "reco_azimuth", "reco_log10_energy", "status")


def reco_columns_via_db(rec, learned, layout_name, cfg, out_dir, mjd, batch_size=256):
    """Store ``learned`` as a database entry valid around ``mjd``, write the events to a file
    and reconstruct it with ``calib_db``: the columns figures() needs, and the entries used."""
    import uproot

    from calib.db import CalibrationDB, DetectorConfig, make_entry
    from joint.io.schema import write_events
    from lhaaso_joint.api import reconstruct_files

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    db = CalibrationDB(out_dir / "calib_db")
    configs = {d: DetectorConfig(d, layout_name if d == "km2a" else "default") for d in learned}
    db.add(make_entry("bench-period", mjd - 1.0, mjd + 1.0, learned, configs,
                      notes="benchmarks/calib_recovery.py"), replace=True)
    db.save()
    events = out_dir / "test_events.root"
    write_events(events, rec)
    summary = reconstruct_files([events], out_dir / "reco.root", cfg, batch_size=batch_size,
                                progress=False, calib_db=CalibrationDB(out_dir / "calib_db"),
                                log=lambda m: print("#   " + m, flush=True))
    with uproot.open(out_dir / "reco.root") as f:
        c = f["reco"].arrays(list(_COLS), library="np")
    return c, summary["calibration"]


def figures(c, rec):
    """68% angle [deg], energy bias [%] (mean Δlog10E → 10^x − 1), σ(Δlog10E), converged."""
    n = len(rec["event_id"])
    ok = (c["status"] == 0) & np.isfinite(c["reco_log10_energy"])
    ang = angle_deg(c["reco_zenith"], c["reco_azimuth"], rec["true_zenith"], rec["true_azimuth"])
    de = c["reco_log10_energy"] - rec["true_log10_energy"]
    de, ang = de[ok], ang[ok]
    # robust: events within 0.5 dex (a failed fit does not set the bias)
    core = np.abs(de - np.median(de)) < 0.5
    return {"angle68_deg": float(np.percentile(ang, 68)),
            "energy_bias_pct": float((10 ** np.mean(de[core]) - 1) * 100),
            "energy_bias_err_pct": float(np.std(de[core]) / np.sqrt(core.sum()) * np.log(10) * 100),
            "sigma_log10E": float(np.std(de[core])), "converged": float(ok.mean()), "n": int(n)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detector", choices=tuple(FIELDS), default="km2a")
    ap.add_argument("--n-events", type=int, nargs="+", default=[1000, 3000, 10000, 20000])
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--log10-energy", type=float, nargs=2, default=None,
                    help="log10(E/GeV) range (default km2a 5.5-6, wcda 4-4.5, wfcta 5.5-6)")
    ap.add_argument("--n-outer", type=int, default=4)
    ap.add_argument("--epochs", type=float, default=1.0, help="minibatch passes per outer iteration")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--min-steps", type=int, default=100)
    ap.add_argument("--min-hits", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--lr-decay", type=float, default=0.5, help="LearnConfig.lr_decay")
    ap.add_argument("--profile", nargs="*", default=[],
                    help="Shower fields re-optimised per event in the response steps "
                         "(LearnConfig.profile), e.g. log10_energy")
    ap.add_argument("--wcda-pond-scale", action="store_true",
                    help="WCDA: each pond's mean efficiency fixed at its true value (the "
                         "single-muon peak of each pond) and only the cells within a pond learned "
                         "(constraint efficiency_mean='pond'); default: one mean over WCDA, the "
                         "ponds' relative scales learned from the showers")
    ap.add_argument("--layout", default="full", choices=("full", "3/4"), help="KM2A layout")
    ap.add_argument("--via-db", action="store_true",
                    help="'after' through a calibration database and reconstruct_files")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from calib.learn import LearnConfig, learn_response, response_errors
    from lhaaso_joint.api import config_for
    from joint.config import detector_setup

    det = args.detector
    dets = DETS[det]
    erange = tuple(args.log10_energy or {"km2a": (5.5, 6.0), "wcda": (4.0, 4.5),
                                         "wfcta": (5.5, 6.0)}[det])
    print(f"# calibration recovery, {det}, {time.strftime('%Y-%m-%d %H:%M')}, {machine()}")
    print(f"# command: python {' '.join(sys.argv)}")
    lays, geos, noms = detector_setup(dets, args.layout)
    truth, cons = truth_responses(det, geos, noms, args.seed)
    n_max = max(args.n_events)
    t0 = time.perf_counter()
    centre = None
    if args.layout != "full":  # cores on the part of the array that existed
        centre = tuple(float(v) for v in np.mean(np.asarray(lays["km2a"].ed_pos)[:, :2], axis=0))
    mjd = 59300.5 if args.layout == "3/4" else 60000.0   # 2021-03-27 for the 3/4 array
    rec, batch, thrown = simulate(det, n_max, args.seed + 1, lays, truth, erange, mjd, centre)
    rec_t, batch_t, _ = simulate(det, args.n_test, args.seed + 2, lays, truth, erange, mjd, centre)
    print(f"# simulated {n_max} + {args.n_test} (test) events, log10(E/GeV) {erange} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    hyp = "gamma" if det == "wcda" else "hadron"
    cfg = config_for(dets, hyp)
    start = dict(noms)   # what learning starts from and is constrained around
    if det == "wcda" and args.wcda_pond_scale:
        from calib import response as R

        pond = np.asarray(geos["wcda"].pond)
        lg = np.log(np.asarray(truth["wcda"].efficiency) / np.asarray(noms["wcda"].efficiency))
        scale = np.zeros_like(lg)
        for k in np.unique(pond):
            scale[pond == k] = lg[pond == k].mean()
        start["wcda"] = noms["wcda"]._replace(
            efficiency=np.asarray(noms["wcda"].efficiency) * np.exp(scale))
        cons = R.wcda_constraints(geos["wcda"], efficiency_mean="pond")
        print("# WCDA pond scales fixed at the true pond means (single-muon peaks): "
              + ", ".join(f"pond {k}: {np.exp(scale[pond == k][0]):.3f}" for k in np.unique(pond)))
    results = {"detector": det, "energy_range": erange, "runs": [], "command": " ".join(sys.argv),
               "layout": args.layout,
               "date": time.strftime("%Y-%m-%d"), "machine": machine()}
    learned_last = None
    print(f"{'N events':>8s} " + " ".join(f"{f + ' rms err':>24s} {'(inj.)':>7s} {'n ch':>5s}"
                                          for f in FIELDS[det]) + f" {'seconds':>8s}")
    for n in sorted(args.n_events):
        sub = take(batch, np.arange(n))
        steps = max(args.min_steps, int(np.ceil(args.epochs * n / args.batch_size)))
        lc = LearnConfig(fields=FIELDS[det], n_outer=args.n_outer, n_steps=steps,
                         batch_size=args.batch_size, min_hits=args.min_hits, seed=args.seed,
                         lr_decay=args.lr_decay, profile=tuple(args.profile))
        t0 = time.perf_counter()
        learned, hist = learn_response(sub, geos, start, cfg, lc, constraints={det: cons},
                                       truth={d: truth[d] for d in dets}, progress=False,
                                       log=lambda m: print("#   " + m, flush=True))
        secs = time.perf_counter() - t0
        masks = {det: {f: hist["n_hits"][det][f] >= args.min_hits for f in FIELDS[det]}}
        err = response_errors({det: learned[det]}, {det: truth[det]}, {det: start[det]},
                              {det: cons}, masks=masks, remove_mean=False)
        if det == "wcda":  # the ponds' relative scales vs the cells within each pond
            pond = np.asarray(geos["wcda"].pond)
            e = np.log(np.asarray(learned["wcda"].efficiency) / np.asarray(truth["wcda"].efficiency))
            within = e.copy()
            for k in np.unique(pond):
                within[pond == k] -= e[pond == k].mean()
            err["log_efficiency_within_pond"] = {"rms_error": float(np.sqrt(np.mean(within ** 2))),
                                                 "rms_true": float("nan"), "n": int(e.size)}
            err["pond_mean_error"] = {str(k): float(e[pond == k].mean()) for k in np.unique(pond)}
            print("#   WCDA: rms error within ponds %.4f; pond mean errors %s" % (
                err["log_efficiency_within_pond"]["rms_error"],
                {k: round(v, 4) for k, v in err["pond_mean_error"].items()}), flush=True)
        if args.json:
            from calib import response as R

            np.savez(Path(args.json).with_suffix(f".N{n}.npz"),
                     **{f"learned.{f}": np.asarray(getattr(learned[det], f)) for f in R.LEARNED_FIELDS[det]},
                     **{f"truth.{f}": np.asarray(getattr(truth[det], f)) for f in R.LEARNED_FIELDS[det]},
                     **{f"hits.{f}": hist["n_hits"][det][f] for f in FIELDS[det]})
        row = {"n_events": n, "seconds": secs, "errors": err, "n_steps": steps,
               "history": [{k: v for k, v in o.items() if k != "errors"} for o in hist["outer"]]}
        if det == "wfcta":
            row["tel_efficiency_learned"] = np.asarray(learned["wfcta"].tel_efficiency).tolist()
            row["tel_efficiency_true"] = np.asarray(truth["wfcta"].tel_efficiency).tolist()
        results["runs"].append(row)
        print(f"{n:8d} " + " ".join(f"{err[f]['rms_error']:24.4f} {err[f]['rms_true']:7.3f} "
                                    f"{err[f]['n']:5d}" if f in err else f"{'-':>38s}"
                                    for f in FIELDS[det]) + f" {secs:8.0f}", flush=True)
        learned_last = learned
    print(f"# reconstruction of {args.n_test} independent events (fit hypothesis {hyp}):")
    print(f"{'response':>10s} {'angle68 deg':>12s} {'E bias %':>9s} {'±':>5s} {'σ lgE':>7s} {'conv':>5s}")
    results["reconstruction"] = {}
    for name, resp in (("perfect", truth), ("before", noms), ("after", learned_last)):
        r = {d: resp[d] for d in dets}
        if name == "after" and args.via_db:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="calib_recovery_") as tmp:
                c, used = reco_columns_via_db(rec_t, r, args.layout, cfg, tmp, mjd)
            results["after_calibration_entries"] = used
        else:
            c = reco_columns(batch_t, rec_t, geos, r, cfg)
        f = figures(c, rec_t)
        results["reconstruction"][name] = f
        print(f"{name:>10s} {f['angle68_deg']:12.4f} {f['energy_bias_pct']:9.2f} "
              f"{f['energy_bias_err_pct']:5.2f} {f['sigma_log10E']:7.4f} {f['converged']:5.2f}",
              flush=True)
    p, a = results["reconstruction"]["perfect"], results["reconstruction"]["after"]
    print(f"# after/perfect: angle68 ×{a['angle68_deg'] / p['angle68_deg']:.3f}, energy bias "
          f"{a['energy_bias_pct'] - p['energy_bias_pct']:+.2f} percentage points")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
