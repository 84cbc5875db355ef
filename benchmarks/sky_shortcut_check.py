"""Check the simulated sky's shortcut (library events reused at new positions and times,
analysis/sky_sim.py) against a direct run on a small sky: the Crab (LHAASO log-parabola) over
one transit, KM2A.

Direct: ``--n`` primaries at the Crab's true direction at uniform random times in its transit
window (zenith < 50°), cores uniform on the 700 m disc, E⁻¹ in 10–1000 TeV, through the forward
model and the fit (joint.simulation + joint.pipeline), the IRF file's cuts; expected photons =
Σ F(E)/p(E) · A cos θ · T / N_thrown over the events passing them. Shortcut: the same transit
from the sky library (simulate_sky, 200 independent Poisson skies). Compared: photons passing
the cuts per transit, PSF 68% and median reconstructed energy.

    python benchmarks/sky_shortcut_check.py --n 3000

Writes benchmarks/results/sky_shortcut_check.{json,txt}."""
import argparse
import datetime
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "results", "irf_cache")
CRAB = (83.633, 22.014)
SEED = 1901


def weighted_quantile(x, w, q):
    o = np.argsort(x)
    c = np.cumsum(w[o]) / w.sum()
    return float(np.interp(q, c, x[o]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--skies", type=int, default=200)
    a = ap.parse_args(argv)

    from analysis.dl3 import transit_windows
    from analysis.irf import IRFSet, angular_distance_deg, build_irfs
    from analysis.irf_library import (DEFAULTS, event_variables, library_path, load_library)
    from analysis.observables import observables
    from analysis.sky_sim import Source, crab_lhaaso, simulate_sky
    from detectors import km2a
    from detectors.layout import km2a_layout
    from joint.config import ReconstructionConfig
    from joint.io.schema import to_event_batch
    from joint.pipeline import reconstruct_records
    from joint.simulation import simulate_records
    from joint.sky import from_icrs, to_icrs

    irfs = build_irfs(load_library(library_path(CACHE, "km2a", "gamma", "irf", 12000)),
                      load_library(library_path(CACHE, "km2a", "proton", "irf", 12000)), "km2a")
    lo, hi, cul = transit_windows(*CRAB, 61000.0, 61001.0, 50.0)[0]
    T = (hi - lo) * 86400.0
    radius = DEFAULTS["km2a"]["core_radius_m"]

    def hook(truth, rng):
        n = len(truth["true_zenith"])
        t = rng.uniform(lo, hi, n)
        z, az = from_icrs(*CRAB, t)
        truth["true_zenith"], truth["true_azimuth"], truth["time_mjd"] = z, az, t
        return truth

    lay = km2a_layout("full")
    geo = km2a.Geometry.from_layout(lay)
    rec, thrown = simulate_records(a.n, primary="gamma", detectors=("km2a",),
                                   log10_energy_range=(4.0, 6.0), zenith_max_deg=50.0,
                                   core_radius_m=radius, seed=SEED, km2a_layout=lay,
                                   spectral_index=-1.0, truth_hook=hook)
    cfg = ReconstructionConfig(hypothesis="gamma", detectors=("km2a",))
    cols = reconstruct_records(to_event_batch(rec, km2a=lay, as_jax=False), {"km2a": geo},
                               {"km2a": km2a.Response.nominal(geo)}, cfg, 256, observables)
    v = event_variables("km2a", cols, lay)
    t, ok = irfs.classify(v["size"], cols["reco_log10_energy"], v["gh_score"])
    sel = ok & (v["quality"] == 1)
    e = 10.0 ** rec["true_log10_energy"]
    p_e = 1.0 / (e * np.log(10.0) * 2.0)
    w = (crab_lhaaso()(e / 1e3) * 1e4 / 1e3 / p_e * np.pi * radius ** 2
         * np.cos(rec["true_zenith"]) * T / thrown)
    ra, dec = to_icrs(cols["reco_zenith"], cols["reco_azimuth"], rec["time_mjd"])
    d_sep = angular_distance_deg(np.radians(90 - CRAB[1]), np.radians(CRAB[0]),
                                 np.radians(90 - dec), np.radians(ra))
    direct = {"expected": float(w[sel].sum()),
              "expected_err": float(np.sqrt((w[sel] ** 2).sum())),
              "psf68_deg": weighted_quantile(d_sep[sel], w[sel], 0.68),
              "median_reco_tev": 10 ** (weighted_quantile(cols["reco_log10_energy"][sel], w[sel],
                                                          0.5) - 3),
              "n_pass": int(sel.sum()), "n_thrown": int(thrown)}

    libs = {"km2a": (load_library(library_path(CACHE, "km2a", "gamma", "sky", 8000)),
                     load_library(library_path(CACHE, "km2a", "proton", "sky", 6000)))}
    counts, seps, lgs = [], [], []
    for s in range(a.skies):
        sky = simulate_sky([Source("Crab", *CRAB, crab_lhaaso())], libs, lo - 0.01,
                           (hi - lo + 0.02) * 86400 / 86164.0905, (*CRAB, 3.0), seed=100 + s,
                           cosmic_rays=False)["km2a"]
        vv = event_variables("km2a", sky, lay)
        tt, okk = irfs.classify(vv["size"], sky["reco_log10_energy"], vv["gh_score"])
        m = okk & (vv["quality"] == 1) & (sky["time_mjd"] >= lo) & (sky["time_mjd"] < hi)
        counts.append(int(m.sum()))
        seps.append(angular_distance_deg(np.radians(90 - CRAB[1]), np.radians(CRAB[0]),
                                         np.radians(90 - sky["dec"][m]), np.radians(sky["ra"][m])))
        lgs.append(sky["reco_log10_energy"][m])
    seps, lgs = np.concatenate(seps), np.concatenate(lgs)
    shortcut = {"mean_count": float(np.mean(counts)),
                "mean_count_err": float(np.std(counts) / np.sqrt(len(counts))),
                "psf68_deg": float(np.quantile(seps, 0.68)),
                "median_reco_tev": float(10 ** (np.median(lgs) - 3))}
    out = {"date": datetime.datetime.now().isoformat(timespec="minutes"),
           "machine": f"{platform.node()} ({os.cpu_count()} CPUs)",
           "scenario": "Crab log-parabola, one transit (MJD 61000), KM2A, IRF cuts",
           "transit_s": T, "direct": direct, "shortcut": shortcut,
           "ratio_counts": shortcut["mean_count"] / direct["expected"]}
    with open(os.path.join(HERE, "results", "sky_shortcut_check.json"), "w") as f:
        json.dump(out, f, indent=1)
    txt = (f"# sky shortcut check {out['date']} {out['machine']}: {out['scenario']}\n"
           f"direct ({a.n} fitted, {thrown} thrown): {direct['expected']:.1f} ± "
           f"{direct['expected_err']:.1f} photons/transit, PSF68 {direct['psf68_deg']:.3f}°, "
           f"median E_reco {direct['median_reco_tev']:.1f} TeV\n"
           f"shortcut ({a.skies} skies): {shortcut['mean_count']:.1f} ± "
           f"{shortcut['mean_count_err']:.1f} photons/transit, PSF68 {shortcut['psf68_deg']:.3f}°, "
           f"median E_reco {shortcut['median_reco_tev']:.1f} TeV\n"
           f"ratio shortcut/direct {out['ratio_counts']:.3f}\n")
    print(txt)
    with open(os.path.join(HERE, "results", "sky_shortcut_check.txt"), "w") as f:
        f.write(txt)


if __name__ == "__main__":
    main()
