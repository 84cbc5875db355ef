"""Measure the fitter's design choices side by side on the same events (docs/fitter.md):
Fisher scoring vs Newton on the exact Hessian, and the number of active channels.

    .venv/bin/python benchmarks/fitter_choices.py --n-events 256 --json results/fitter_choices.json

Events: photons at log10(E/GeV) = 5.0, zenith < 40°, cores within 400 m. Timing: the fit only
(seeds and channel selection prepared once), warm (second call), one pass of n_iter iterations.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from common import angle_deg, machine


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-events", type=int, default=256)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from detectors import km2a
    from detectors.layout import km2a_layout
    from joint import fit as fitmod
    from joint.io.schema import to_event_batch
    from joint.config import ReconstructionConfig
    from joint.pipeline import nll_function, prepare
    from joint.simulation import simulate_records

    lay = km2a_layout("full")
    geo = km2a.Geometry.from_layout(lay)
    resp = km2a.Response.nominal(geo)
    rec, _ = simulate_records(args.n_events, primary="gamma", log10_energy_range=(5.0, 5.0),
                              seed=args.seed, km2a_layout=lay)
    batch = to_event_batch(rec, km2a=lay, as_jax=False)
    variants = [
        ("scoring, 768 ED + 192 MD (default)", dict()),
        ("newton (exact Hessian), 768 + 192", dict(algorithm="newton")),
        ("scoring, 384 ED + 96 MD", dict(n_ed=384, n_md=96)),
        ("scoring, all 5216 ED + 1188 MD", dict(n_ed=None, n_md=None)),
        ("scoring, 20 iterations", dict(n_iter=20)),
    ]
    rows = []
    print(f"# fitter choices, {time.strftime('%Y-%m-%d')}, {machine()}, {args.n_events} photons at 100 TeV")
    print(f"{'variant':38s} {'ev/s':>7s} {'conv':>5s} {'ang68°':>7s} {'core68':>7s} {'σlgE':>6s}")
    for name, kw in variants:
        cfg = ReconstructionConfig(hypothesis="gamma", **kw)
        seeds, data = prepare(batch, geo, resp, cfg)
        nll = nll_function(cfg)
        r, i = fitmod.fit_events(nll, data, seeds, cfg.fit_config)
        jax.block_until_ready(r)
        t0 = time.perf_counter()
        r, i = fitmod.fit_events(nll, data, seeds, cfg.fit_config)
        jax.block_until_ready(r)
        dt = time.perf_counter() - t0
        s = r.shower
        conv = np.asarray(i.status) == 0
        ang = angle_deg(np.asarray(s.zenith, float), np.asarray(s.azimuth, float), rec["true_zenith"], rec["true_azimuth"])
        core = np.hypot(np.asarray(s.core_x) - rec["true_core_x"], np.asarray(s.core_y) - rec["true_core_y"])
        de = np.asarray(s.log10_energy) - rec["true_log10_energy"]
        row = {"variant": name, "events_per_s": args.n_events / dt, "converged": float(conv.mean()),
               "ang68": float(np.percentile(ang[conv], 68)), "core68": float(np.percentile(core[conv], 68)),
               "sigma_log10E": float(np.std(de[conv]))}
        rows.append(row)
        print(f"{name:38s} {row['events_per_s']:7.1f} {row['converged']:5.2f} {row['ang68']:7.3f} "
              f"{row['core68']:7.2f} {row['sigma_log10E']:6.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "date": time.strftime("%Y-%m-%d"), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
