"""Pulls of every fitted parameter of WCDA-only and KM2A+WCDA fits (issue 4).

    .venv/bin/python benchmarks/wcda_pulls.py --n-events 600 --json benchmarks/results/wcda_pulls.json

Photons (photon hypothesis), cores on the WCDA cells, zenith < 40°, lateral-age fluctuation off
(the pulls test the covariance against the fluctuations the model describes, as
benchmarks/km2a_pulls.py does for KM2A). WCDA alone: log10(E/GeV) in [3.3, 4.5] (E^-1);
KM2A+WCDA: [4.7, 5.5]. Reported per parameter: mean, std, robust std (1.4826 MAD), |pull| > 4.
"""
from __future__ import annotations

import argparse
import json
import time

from common import machine, simulate_and_reconstruct
from km2a_pulls import pull_stats

CASES = {"wcda": (("wcda",), (3.3, 4.5)), "km2a+wcda": (("km2a", "wcda"), (4.7, 5.5))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-events", type=int, default=600)
    ap.add_argument("--cases", nargs="+", default=list(CASES))
    ap.add_argument("--seed", type=int, default=33)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from joint.config import ReconstructionConfig

    print(f"# WCDA / KM2A+WCDA pulls, {time.strftime('%Y-%m-%d')}, {machine()}; {args.n_events} "
          "photons per case, cores on the ponds, age fluctuation off")
    allres = {}
    for name in args.cases:
        dets, lg = CASES[name]
        cfg = ReconstructionConfig(hypothesis="gamma", detectors=dets)
        rec, out, _ = simulate_and_reconstruct("gamma", None, args.n_events, args.seed, "gamma",
                                               cfg=cfg, detectors=dets, cores_on="wcda",
                                               log10_energy_range=lg, age_sigma=0.0,
                                               spectral_index=-1.0)
        res, conv = pull_stats(rec, out, cfg.fit_config.free)
        allres[name] = {"converged_fraction": conv, "log10_energy_range": lg, "pulls": res}
        print(f"{name}: log10E {lg}, converged {100 * conv:.1f}%")
        print(f"  {'field':15s} {'mean':>6s} {'std':>6s} {'robust':>6s} {'|p|>4':>6s}")
        for f, r in res.items():
            print(f"  {f:15s} {r['mean']:6.2f} {r['std']:6.2f} {r['robust_std']:6.2f} {100 * r['frac_gt4']:5.1f}%",
                  flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "date": time.strftime("%Y-%m-%d"), "results": allres}, fh, indent=1)


if __name__ == "__main__":
    main()
