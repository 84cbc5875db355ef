"""KM2A resolution on simulated gammas and protons next to the Cramér–Rao bound and LHAASO's
published figures (issue 3).

    .venv/bin/python benchmarks/km2a_resolution.py --n-events 300 --json km2a_resolution.json

For each primary and log10(E/GeV) in 4.3 4.7 5.0 5.5 6.0: simulate triggered events (zenith < 40°,
cores uniform within 400 m, lateral-age fluctuation on), reconstruct with the batched fitter
(photon or hadron hypothesis), and report 68% angular containment, 68% core error, energy
resolution (68% of |E_reco/E_true − 1|) and bias (median), for all converged events and with the
quality cut "≥ 3 EDs within 20 m of the reconstructed core"; next to the same figures predicted by
the Cramér–Rao bound of the same model at the true showers (same events, same free parameters).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from common import (crb_covariances, crb_figures, machine, on_array, resolution_figures,
                    simulate_and_reconstruct)

PUBLISHED = {  # PHYSICS.md §5.1 ([M] unless stated): gamma 68% angle, core, energy resolution
    4.3: "≈0.5–0.8°, core 4–8 m, E 24%",
    5.0: "≈0.2–0.25°, core 2–3 m, E 13% (>100 TeV)",
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-events", type=int, default=300)
    ap.add_argument("--energies", type=float, nargs="+", default=[4.3, 4.7, 5.0, 5.5, 6.0])
    ap.add_argument("--primaries", nargs="+", default=["gamma", "proton"])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", default=None)
    ap.add_argument("--age-sigma", type=float, default=0.05,
                    help="simulated lateral-age fluctuation (not in the model); 0 = model-consistent")
    args = ap.parse_args(argv)
    from detectors.layout import km2a_layout

    lay = km2a_layout("full")
    rows = []
    print(f"# KM2A resolution, {time.strftime('%Y-%m-%d')}, {machine()}")
    print(f"# {args.n_events} triggered events per point, zenith < 40°, cores within 400 m, "
          f"age fluctuation {args.age_sigma}")
    hdr = (f"{'primary':7s} {'lgE':>4s} {'sel':>4s} {'n':>4s} {'conv%':>5s} | {'ang68°':>7s} {'CRB':>6s} "
           f"{'ratio':>5s} | {'core68m':>7s} {'CRB':>5s} {'ratio':>5s} | {'Eres%':>6s} {'CRB':>5s} "
           f"{'ratio':>5s} {'bias%':>6s}")
    print(hdr)
    for prim in args.primaries:
        hyp = "gamma" if prim == "gamma" else "hadron"
        for k, lg in enumerate(args.energies):
            rec, out, t = simulate_and_reconstruct(prim, lg, args.n_events, args.seed + 17 * k, hyp,
                                                   age_sigma=args.age_sigma)
            conv = out["status"] == 0
            cov = crb_covariances(rec, hyp)
            for sel_name, sel in (("all", conv),
                                  ("cut", conv & on_array(out["reco_core_x"], out["reco_core_y"], lay))):
                fig = resolution_figures(rec, out, sel)
                crb = crb_figures(cov[sel], {kk: v[sel] for kk, v in rec.items()})
                row = {"primary": prim, "log10_energy": lg, "selection": sel_name,
                       "converged_fraction": float(conv.mean()), **fig,
                       **{f"crb_{kk}": v for kk, v in crb.items()}, **t}
                rows.append(row)
                print(f"{prim:7s} {lg:4.1f} {sel_name:>4s} {fig['n']:4d} {100 * conv.mean():5.1f} | "
                      f"{fig['ang68']:7.3f} {crb['ang68']:6.3f} {fig['ang68'] / crb['ang68']:5.2f} | "
                      f"{fig['core68']:7.2f} {crb['core68']:5.2f} {fig['core68'] / crb['core68']:5.2f} | "
                      f"{fig['E_res68_pct']:6.1f} {crb['E_res68_pct']:5.1f} "
                      f"{fig['E_res68_pct'] / crb['E_res68_pct']:5.2f} {fig['E_bias_pct']:6.1f}", flush=True)
    print("# published KM2A gamma figures (PHYSICS.md §5.1, [M]): " + "; ".join(f"lgE {k}: {v}" for k, v in PUBLISHED.items()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "date": time.strftime("%Y-%m-%d"), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
