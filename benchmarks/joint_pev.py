"""Joint fits at 1 PeV in the telescopes' view: KM2A+WCDA+WFCTA events simulated together and
fitted with several detector combinations on the same events (core error, convergence, Xmax and
energy errors, goodness of fit per detector).

Usage: .venv/bin/python benchmarks/joint_pev.py [--n-events 32] [--primary proton]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-events", type=int, default=32)
    ap.add_argument("--primary", default="proton")
    ap.add_argument("--log10-energy", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=3)
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
    print(f"{'fit':18s} {'conv':>5s} {'core68 m':>8s} {'core max':>8s} {'dXmax68':>8s} "
          f"{'dXmax σ':>8s} {'dlgE σ':>7s} " + " ".join(f"{'gof_' + d + ' med':>14s}" for d in dets))
    for fit in (("km2a",), ("km2a", "wcda"), ("km2a", "wfcta"), ("km2a", "wcda", "wfcta")):
        cfg = config_for(fit)
        t0 = time.perf_counter()
        out = reconstruct_batch(padded, geos, resps, cfg)
        dt = time.perf_counter() - t0
        ok = out["status"][:n] == 0
        dc = np.hypot(out["reco_core_x"][:n] - rec["true_core_x"],
                      out["reco_core_y"][:n] - rec["true_core_y"])
        dx = out["reco_xmax"][:n] - rec["true_xmax"]
        de = out["reco_log10_energy"][:n] - rec["true_log10_energy"]
        fin = np.isfinite(dx)
        gofs = " ".join(f"{np.nanmedian(out[f'gof_{d}'][:n]):14.2f}" if f"gof_{d}" in out
                        else f"{'-':>14s}" for d in dets)
        print(f"{'+'.join(fit):18s} {ok.mean():5.2f} {np.percentile(dc[fin], 68):8.2f} "
              f"{dc[fin].max():8.1f} {np.percentile(np.abs(dx[fin]), 68):8.1f} "
              f"{np.std(dx[fin]):8.1f} {np.std(de[fin]):7.3f} {gofs}   ({dt:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
