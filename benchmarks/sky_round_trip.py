"""Round trip of the Crab through the whole chain: IRFs (IRF-seed libraries) → simulated sky
(sky-seed libraries, independent) → DL3 → gammapy 3-D fit.

Scenario (docs/dl3.md): the Crab at (83.633°, 22.014°) with LHAASO's log-parabola
(analysis.sky_sim.CRAB_LHAASO: φ0 = 8.2e-14 cm⁻² s⁻¹ TeV⁻¹ at 10 TeV, α = 2.90, β = 0.19),
isotropic cosmic-ray protons, ``--days`` sidereal days (≥ 30) of KM2A drift scan from
MJD 61000, events within 3.5° of the Crab. The fit: point source (position free) with a
log-parabola at E0 = 50 TeV (amplitude and α free; β fixed at the injected 0.19, as the fitted
range 25 TeV–1 PeV barely constrains it), background normalisation and spectral tilt free per
event type; events within 3.5° of the Crab exported, 3° used.

    python benchmarks/sky_round_trip.py --days 30

Criteria (issue 18): position within 2σ, amplitude within 10%, index within 2σ of the truth.
Writes benchmarks/results/sky_round_trip.{json,txt}."""
import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "results", "irf_cache")
CRAB = (83.633, 22.014)
E0_FIT = 50.0
ROI_DEG = 3.5


def irf_file(det, n_g, n_p, out):
    from analysis.irf import build_irfs
    from analysis.irf_library import library_path, load_library

    path = os.path.join(out, f"irf_{det}.fits")
    if not os.path.exists(path):
        g = load_library(library_path(CACHE, det, "gamma", "irf", n_g))
        p = load_library(library_path(CACHE, det, "proton", "irf", n_p))
        build_irfs(g, p, det).write(path)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--irf-gammas", type=int, default=12000)
    ap.add_argument("--irf-protons", type=int, default=12000)
    ap.add_argument("--sky-gammas", type=int, default=8000)
    ap.add_argument("--sky-protons", type=int, default=6000)
    ap.add_argument("--work", default="/tmp/lhaaso_sky_round_trip")
    ap.add_argument("--tag", default="")
    a = ap.parse_args(argv)

    import astropy.units as u
    from gammapy.data import DataStore
    from gammapy.modeling import Fit
    from gammapy.modeling.models import (FoVBackgroundModel, LogParabolaSpectralModel, Models,
                                         PointSpatialModel, SkyModel)

    from analysis.dl3 import export_dl3
    from analysis.irf_library import library_path, load_library
    from analysis.sky_analysis import make_datasets, map_geometry
    from analysis.sky_sim import CRAB_LHAASO, Source, crab_lhaaso, simulate_sky, write_sky

    t0 = time.time()
    os.makedirs(a.work, exist_ok=True)
    irf = irf_file("km2a", a.irf_gammas, a.irf_protons, a.work)
    libs = {"km2a": (load_library(library_path(CACHE, "km2a", "gamma", "sky", a.sky_gammas)),
                     load_library(library_path(CACHE, "km2a", "proton", "sky", a.sky_protons)))}
    sky = simulate_sky([Source("Crab", *CRAB, crab_lhaaso())], libs, 61000.0, a.days,
                       (*CRAB, ROI_DEG), seed=a.seed)
    run = os.path.join(a.work, f"seed{a.seed}_{int(a.days)}d")
    paths = write_sky(sky, run, overwrite=True)
    n_sim = {"photons": int((sky["km2a"]["truth_source"] >= 0).sum()),
             "cosmic_rays": int((sky["km2a"]["truth_source"] < 0).sum())}
    res = export_dl3(paths, [irf], os.path.join(run, "dl3"), CRAB, object_name="Crab",
                     max_offset_deg=ROI_DEG, overwrite=True)
    t_sim = time.time() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # the export must load without a warning
        store = DataStore.from_dir(os.path.join(run, "dl3"))
        geom, et = map_geometry(CRAB, width_deg=6.0, binsz_deg=0.1,
                                energy_edges_tev=np.geomspace(25, 1000, 9))
        datasets = make_datasets(store.get_observations(), geom, et, offset_max_deg=3.0)
    t_data = time.time() - t0 - t_sim
    # truth at the fit's reference energy
    c = CRAB_LHAASO
    x = E0_FIT / c["reference_tev"]
    amp_true = c["amplitude_cm2_s_tev"] * x ** (-c["alpha"] - c["beta"] * np.log10(x))
    alpha_true = c["alpha"] + 2 * c["beta"] * np.log10(x)
    spec = LogParabolaSpectralModel(amplitude=1e-15 * u.Unit("cm-2 s-1 TeV-1"),
                                    reference=E0_FIT * u.TeV, alpha=3.0, beta=c["beta"])
    spec.beta.frozen = True
    spec.alpha.min, spec.alpha.max = 1.5, 5.0
    spatial = PointSpatialModel(lon_0=(CRAB[0] + 0.1) * u.deg, lat_0=(CRAB[1] - 0.1) * u.deg,
                                frame="icrs")
    spatial.lon_0.min, spatial.lon_0.max = CRAB[0] - 1, CRAB[0] + 1     # the fit stays in the field
    spatial.lat_0.min, spatial.lat_0.max = CRAB[1] - 1, CRAB[1] + 1
    models = Models([SkyModel(spectral_model=spec, spatial_model=spatial, name="crab")])
    for d in datasets:
        bkg = FoVBackgroundModel(dataset_name=d.name)
        bkg.spectral_model.tilt.frozen = False       # norm and spectral tilt free per event type
        models.append(bkg)
    datasets.models = models
    fit = Fit()
    result = fit.run(datasets)
    p = datasets.models["crab"].parameters
    val = lambda n: (p[n].value, p[n].error)
    lon, elon = val("lon_0")
    lat, elat = val("lat_0")
    amp, eamp = val("amplitude")
    al, eal = val("alpha")
    dra = (lon - CRAB[0]) * np.cos(np.radians(CRAB[1]))
    pulls = {"ra": (lon - CRAB[0]) / elon, "dec": (lat - CRAB[1]) / elat,
             "alpha": (al - alpha_true) / eal}
    out = {
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs)", "days": a.days, "seed": a.seed,
        "scenario": "Crab log-parabola (LHAASO), KM2A, β fixed 0.19, E0 = 50 TeV, 25 TeV–1 PeV",
        "simulated": n_sim, "exported": res["events"], "transits": res["transits"],
        "fit_success": bool(result.success),
        "ra": [lon, elon], "dec": [lat, elat], "offset_deg": float(np.hypot(dra, lat - CRAB[1])),
        "amplitude": [amp, eamp], "amplitude_true": amp_true,
        "amplitude_ratio": amp / amp_true, "alpha": [al, eal], "alpha_true": alpha_true,
        "pulls": pulls,
        "background_norm_tilt": {d.name: [float(models[f"{d.name}-bkg"].parameters[k].value)
                                          for k in ("norm", "tilt")] for d in datasets},
        "pass": {"position_2sigma": bool(abs(pulls["ra"]) < 2 and abs(pulls["dec"]) < 2),
                 "amplitude_10pct": bool(abs(amp / amp_true - 1) < 0.10),
                 "index_2sigma": bool(abs(pulls["alpha"]) < 2)},
        "seconds": {"simulate_and_export": t_sim, "datasets": t_data,
                    "fit": time.time() - t0 - t_sim - t_data},
    }
    tag = a.tag or f"seed{a.seed}"
    with open(os.path.join(HERE, "results", f"sky_round_trip_{tag}.json"), "w") as f:
        json.dump(out, f, indent=1, default=float)
    lines = [f"# sky round trip {out['date']} {out['machine']}: {out['scenario']}, "
             f"{a.days:.0f} days, seed {a.seed}",
             f"simulated: {n_sim}; exported after cuts: {res['events']}",
             f"RA  {lon:.4f} ± {elon:.4f} (truth {CRAB[0]}; pull {pulls['ra']:+.2f})",
             f"Dec {lat:.4f} ± {elat:.4f} (truth {CRAB[1]}; pull {pulls['dec']:+.2f})",
             f"amplitude@50TeV {amp:.3e} ± {eamp:.1e} (truth {amp_true:.3e}; ratio "
             f"{amp / amp_true:.3f})",
             f"alpha@50TeV {al:.3f} ± {eal:.3f} (truth {alpha_true:.3f}; pull {pulls['alpha']:+.2f})",
             f"background norm, tilt per type {out['background_norm_tilt']}",
             f"pass: {out['pass']}"]
    txt = "\n".join(lines)
    print(txt)
    with open(os.path.join(HERE, "results", f"sky_round_trip_{tag}.txt"), "w") as f:
        f.write(txt + "\n")


if __name__ == "__main__":
    main()
