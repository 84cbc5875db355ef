"""Joint fits at 1 PeV in the telescopes' view: KM2A+WCDA+WFCTA events simulated together and
fitted with several detector combinations on the same events (convergence, core and direction
68% containment, Xmax and energy errors, goodness of fit per detector), and the geometry of the
fits with images against KM2A+WCDA on the same events (paired bootstrap errors).

Usage: .venv/bin/python benchmarks/joint_pev.py [--n-events 32] [--primary proton]
       [--fits km2a,km2a+wcda,km2a+wfcta,km2a+wcda+wfcta] [--save out.npz]

Statistical errors: 68% intervals of 400 bootstrap resamples of the events (the same resample
for every fit, so the differences between fits are paired).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import angle_deg, machine  # noqa: E402

N_BOOT = 400
FITS = "km2a,km2a+wcda,km2a+wfcta,km2a+wcda+wfcta"


def _q68(x):
    return np.percentile(np.abs(x), 68) if x.size else np.nan


def _boot(stat, idx_sets, *arrays):
    """(value, bootstrap standard deviation) of ``stat(*arrays)``."""
    val = stat(*arrays)
    reps = [stat(*[a[i] for a in arrays]) for i in idx_sets]
    return val, float(np.nanstd(reps))


def figures(rec, out, n):
    ok = out["status"][:n] == 0
    dc = np.hypot(out["reco_core_x"][:n] - rec["true_core_x"],
                  out["reco_core_y"][:n] - rec["true_core_y"])
    da = angle_deg(out["reco_zenith"][:n], out["reco_azimuth"][:n], rec["true_zenith"],
                   rec["true_azimuth"])
    dx = out["reco_xmax"][:n] - rec["true_xmax"]
    de = out["reco_log10_energy"][:n] - rec["true_log10_energy"]
    return dict(ok=ok, dc=dc, da=da, dx=dx, de=de)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-events", type=int, default=32)
    ap.add_argument("--primary", default="proton")
    ap.add_argument("--log10-energy", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--fits", default=FITS, help="comma-separated detector sets (a+b+c)")
    ap.add_argument("--save", default=None, help="npz file for the per-event figures")
    args = ap.parse_args()
    from lhaaso_joint.api import config_for
    from joint.event import pad_batch
    from joint.io.schema import to_event_batch
    from joint.config import detector_setup
    from lhaaso_joint.api import reconstruct_batch
    from joint.simulation import simulate_records

    dets = ("km2a", "wcda", "wfcta")
    lays, geos, resps = detector_setup(dets)
    print(f"# joint fits at log10(E/GeV) = {args.log10_energy}, {args.primary}, "
          f"{time.strftime('%Y-%m-%d')}, {machine()}")
    print(f"# command: {' '.join(sys.argv)}")
    rec, thrown = simulate_records(args.n_events, primary=args.primary, detectors=dets,
                                   cores_on="wfcta", seed=args.seed,
                                   log10_energy_range=(args.log10_energy,) * 2,
                                   km2a_layout=lays["km2a"], wcda_layout=lays["wcda"],
                                   wfcta_layout=lays["wfcta"])
    batch = to_event_batch(rec, km2a=lays["km2a"], wcda=lays["wcda"], wfcta=lays["wfcta"],
                           as_jax=False)
    n = args.n_events
    padded, _ = pad_batch(batch, n)
    print(f"# {n} events ({thrown} thrown); present: " + ", ".join(
        f"{d} {int(rec[f'present_{d}'].sum())}" for d in dets))
    print("# every figure on all events with a finite fit (failed fits included); ± bootstrap sd")
    idx_sets = [np.random.default_rng(100 + i).integers(0, n, n) for i in range(N_BOOT)]
    print(f"{'fit':16s} {'conv':>10s} {'core68 m':>12s} {'dir68 deg':>13s} {'dXmax68':>11s} "
          f"{'dXmax σ':>8s} {'bias':>6s} {'dlgE σ':>7s} "
          + " ".join(f"{'gof_' + d:>10s}" for d in dets) + "  (median gof)")
    res, saved = {}, {}
    for name in args.fits.split(","):
        fit = tuple(name.split("+"))
        cfg = config_for(fit)
        t0 = time.perf_counter()
        out = reconstruct_batch(padded, geos, resps, cfg)
        dt = time.perf_counter() - t0
        f = figures(rec, out, n)
        res[name] = f
        fin = np.isfinite(f["dx"]) & np.isfinite(f["dc"]) & np.isfinite(f["da"])
        conv = _boot(np.mean, idx_sets, f["ok"].astype(float))
        core = _boot(lambda x, m: _q68(x[m]), idx_sets, f["dc"], fin)
        ang = _boot(lambda x, m: _q68(x[m]), idx_sets, f["da"], fin)
        xm = _boot(lambda x, m: _q68(x[m]), idx_sets, f["dx"], fin)
        gofs = " ".join(f"{np.nanmedian(out[f'gof_{d}'][:n]):10.2f}" if f"gof_{d}" in out
                        else f"{'-':>10s}" for d in dets)
        print(f"{name:16s} {conv[0]:4.2f}±{conv[1]:4.2f} {core[0]:6.2f}±{core[1]:4.2f} "
              f"{ang[0]:6.3f}±{ang[1]:5.3f} {xm[0]:5.1f}±{xm[1]:4.1f} "
              f"{np.std(f['dx'][fin]):8.1f} {np.median(f['dx'][fin]):6.1f} "
              f"{np.std(f['de'][fin]):7.3f} {gofs}   ({dt:.0f} s, {int((~fin).sum())} not finite)",
              flush=True)
        saved.update({f"{name}:{k}": v for k, v in f.items()})
        for d in dets:
            if f"gof_{d}" in out:
                saved[f"{name}:gof_{d}"] = out[f"gof_{d}"][:n]
        for k in ("status",):
            if k in out:
                saved[f"{name}:{k}"] = out[k][:n]
    ref = "km2a+wcda"
    if ref in res:
        print(f"# geometry against {ref} on the same events (difference fit − {ref}; "
              "negative = better)")
        r = res[ref]
        for name, f in res.items():
            if name == ref:
                continue
            fin = (np.isfinite(f["dc"]) & np.isfinite(r["dc"]) & np.isfinite(f["da"])
                   & np.isfinite(r["da"]))
            dcore = _boot(lambda a, b, m: _q68(a[m]) - _q68(b[m]), idx_sets, f["dc"], r["dc"], fin)
            dang = _boot(lambda a, b, m: _q68(a[m]) - _q68(b[m]), idx_sets, f["da"], r["da"], fin)
            print(f"{name:16s} Δcore68 {dcore[0]:+6.2f} ± {dcore[1]:4.2f} m   Δdir68 "
                  f"{dang[0]:+6.3f} ± {dang[1]:5.3f} deg   (n = {int(fin.sum())})")
    if args.save:
        np.savez(args.save, **saved, **{f"true_{k}": rec[f"true_{k}"] for k in
                                        ("xmax", "core_x", "core_y")})


if __name__ == "__main__":
    main()
