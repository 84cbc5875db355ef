"""The "Dist" Xmax baseline as LHAASO uses it (issue 16, item 4): the image centroid's angular
distance from the arrival direction, calibrated against Xmax per impact distance R_p and viewing
angle, the geometry (core, direction) from a KM2A fit, image quality cuts, the telescopes of an
event combined (weighted mean). ``analysis/dist_xmax.py`` holds the method.

    .venv/bin/python benchmarks/dist_baseline.py --n-cal 150 --n-test 150 \\
        --json benchmarks/results/dist_baseline.json | tee benchmarks/results/dist_baseline.txt

Samples (KM2A+WFCTA, ``analysis.composition.simulate_sample``: directions within 5° of a
telescope's axis, cores within 300 m of the telescopes, WFCTA profile-width 5% and
lateral-spread 10% fluctuations [M]):
* calibration: ``--n-cal`` events of each of H, He, CNO, Fe, log10(E/GeV) 5.5–6.5 flat in log E
  (seed ``--seed``);
* test, independent: ``--n-test`` protons and ``--n-test`` iron nuclei at log10(E/GeV) = 6.0
  (seeds ``--seed`` + 1000, + 1001);
* same-primary calibration, independent: as the test sample, seeds ``--seed`` + 2000, + 2001
  (the Dist relation calibrated per primary at the test energy, as a per-primary resolution is
  usually quoted; the mixed-composition calibration is the one a composition analysis can use).
Every event is reconstructed with the "wfcta" configuration of ``analysis.composition``: a KM2A
fit gives core and direction, the WFCTA image parameters (Hillas, tail-cuts 25/12 PE) are computed
there; the Dist features are recomputed from the image centroids for the KM2A geometry and for
the true geometry. The calibration (``analysis.dist_xmax.DistCalibration``) is fitted on the
calibration sample with KM2A geometry (headline) and, separately, with the true geometry.
Reported per primary: n (events with at least one image passing the cuts), fraction of events
with a Dist estimate, σ (std), 68% half-width (16–84%), 68% quantile of |ΔXmax| and bias
(median) with bootstrap errors; LHAASO's ≈ 20 g/cm² (PoS(ICRC2023)407 [C]); target ≤ 25 for
protons at 1 PeV.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

#: the per-telescope columns of the WFCTA observables kept for the Dist method
HILLAS_KEYS = ("hillas_size", "hillas_x", "hillas_y", "hillas_length", "hillas_width")
GEOM_KEYS = ("reco_core_x", "reco_core_y", "reco_zenith", "reco_azimuth", "status")
TRUTH_KEYS = ("true_core_x", "true_core_y", "true_zenith", "true_azimuth", "true_xmax",
              "true_log10_energy", "true_mass_number", "present_km2a", "present_wfcta")


def make_sample(masses, n_per_mass, seed, log10_energy_range, progress=None):
    """Simulate KM2A+WFCTA events and reconstruct them with the "wfcta" method (geometry from a
    KM2A fit); returns a dict of per-event arrays (truth, KM2A geometry, Hillas per telescope,
    leakage per telescope)."""
    from analysis import composition as C
    from joint.config import detector_setup

    setup = detector_setup(("km2a", "wfcta"))
    rec, thrown = C.simulate_sample(n_per_mass, seed, masses=masses,
                                    log10_energy_range=log10_energy_range, layouts=setup[0],
                                    progress=progress)
    outs, secs = C.reconstruct_sample(rec, methods=("wfcta",), setup=setup, progress=progress)
    out = outs["wfcta"]
    d = {k: np.asarray(rec[k]) for k in TRUTH_KEYS if k in rec}
    d.update({k: np.asarray(out[k]) for k in HILLAS_KEYS + GEOM_KEYS})
    d["leakage"] = np.asarray(out["wfcta_leakage"])
    return d


def save(path, d):
    np.savez_compressed(path, **d)


def load(path):
    z = np.load(path)
    return {k: z[k] for k in z.files}


def _boot(x, fn, n_boot=300, seed=0):
    """fn(x) and its bootstrap standard error."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size < 3:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    b = [fn(x[rng.integers(0, x.size, x.size)]) for _ in range(n_boot)]
    return float(fn(x)), float(np.std(b))


FIGURES = {"sigma": np.std, "half68": lambda r: 0.5 * np.diff(np.percentile(r, [16, 84]))[0],
           "abs68": lambda r: np.percentile(np.abs(r), 68), "bias": np.median}


def evaluate(cal, test, geometry, geometry_source, primaries):
    """Calibrate on ``cal`` and report on ``test`` with the geometry of ``geometry_source``
    ("reco": the KM2A fit, "true")."""
    from analysis.dist_xmax import DistCalibration, dist_xmax_event_features

    fc, lc, kc = dist_xmax_event_features(cal, geometry, geometry_source)
    okc = cal["status"] == 0 if geometry_source == "reco" else np.ones(len(kc), bool)
    dc = DistCalibration.fit({k: v[okc] for k, v in fc.items()}, lc[okc], kc[okc],
                             cal["true_xmax"][okc])
    ft, lt, kt = dist_xmax_event_features(test, geometry, geometry_source)
    xt, et, nt = dc.predict(ft, lt, kt)
    if geometry_source == "reco":
        xt = np.where(test["status"] == 0, xt, np.nan)
    rows = []
    a = np.rint(test["true_mass_number"]).astype(int)
    hybrid = (test["present_km2a"] > 0) & (test["present_wfcta"] > 0)
    for name, A in primaries:
        m = (a == A) & hybrid
        r = (xt - test["true_xmax"])[m]
        row = {"primary": name, "geometry": geometry_source, "n_hybrid": int(m.sum()),
               "n": int(np.isfinite(r).sum()), "fraction": float(np.isfinite(r).mean()),
               "n_images_mean": float(np.mean(nt[m][np.isfinite(r)])) if np.isfinite(r).any()
               else float("nan"),
               "median_error": float(np.nanmedian(et[m])) if np.isfinite(r).any() else float("nan")}
        for k, fn in FIGURES.items():
            row[k], row[k + "_err"] = _boot(r, fn)
        rows.append(row)
    return dc, rows


def same_primary(cal_same, test, geometry, geometry_source, primaries):
    """Dist calibrated on the SAME primary and energy as it is judged on (as
    ``benchmarks/wfcta_xmax.py`` did, and as a per-primary resolution is usually quoted): fitted
    per primary on the independent sample ``cal_same``, applied to ``test``."""
    from analysis.dist_xmax import DistCalibration, dist_xmax_event_features

    fc, lc, kc = dist_xmax_event_features(cal_same, geometry, geometry_source)
    ft, lt, kt = dist_xmax_event_features(test, geometry, geometry_source)
    ac = np.rint(cal_same["true_mass_number"]).astype(int)
    at = np.rint(test["true_mass_number"]).astype(int)
    okc = (cal_same["status"] == 0) if geometry_source == "reco" else np.ones(len(ac), bool)
    hybrid = (test["present_km2a"] > 0) & (test["present_wfcta"] > 0)
    rows = []
    for name, A in primaries:
        m = okc & (ac == A)
        cal = DistCalibration.fit({k: v[m] for k, v in fc.items()}, lc[m], kc[m],
                                  cal_same["true_xmax"][m])
        x = cal.predict(ft, lt, kt)[0]
        if geometry_source == "reco":
            x = np.where(test["status"] == 0, x, np.nan)
        r = (x - test["true_xmax"])[hybrid & (at == A)]
        row = {"primary": name, "geometry": geometry_source + ", same-primary calibration",
               "n_hybrid": int((hybrid & (at == A)).sum()), "n": int(np.isfinite(r).sum())}
        for k, fn in FIGURES.items():
            row[k], row[k + "_err"] = _boot(r, fn)
        rows.append(row)
    return rows


def ceiling(cal, test, geometry, primaries, shape=False):
    """Diagnostic: a flexible regression (scikit-learn gradient boosting, 200 trees of depth 3)
    of Xmax on the same per-image features (truth geometry, the same cuts), brightest kept image
    per event — what the Dist features can give at best; ``shape`` adds the image length and
    width (no longer Dist). None when scikit-learn is missing."""
    try:
        from sklearn.ensemble import GradientBoostingRegressor
    except ImportError:
        return None
    from analysis.dist_xmax import dist_xmax_event_features

    def feats(d):
        f, ls, keep = dist_xmax_event_features(d, geometry, "true")
        cols = [f["dist"], f["rp"], f["view"], f["x_dist"], f["x_ground"], ls]
        if shape:
            cols += [d["hillas_length"], d["hillas_width"]]
        return np.stack(cols, -1), keep

    xc, kc = feats(cal)
    xt, kt = feats(test)
    yc = np.broadcast_to(cal["true_xmax"][:, None], kc.shape)
    g = GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05,
                                  subsample=0.8, random_state=0).fit(xc[kc], yc[kc])
    pred = np.full(kt.shape, np.nan)
    pred[kt] = g.predict(xt[kt])
    best = np.argmax(np.where(kt, test["hillas_size"], -1.0), 1)
    pe = pred[np.arange(len(best)), best]
    a = np.rint(test["true_mass_number"]).astype(int)
    rows = []
    for name, A in primaries:
        r = (pe - test["true_xmax"])[a == A]
        row = {"primary": name, "geometry": "true, GBR ceiling" + (" + shape" if shape else ""),
               "n_hybrid": int((a == A).sum()), "n": int(np.isfinite(r).sum())}
        for k, fn in FIGURES.items():
            row[k], row[k + "_err"] = _boot(r, fn)
        rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cal", type=int, default=150, help="calibration events per mass")
    ap.add_argument("--n-test", type=int, default=150, help="test events per primary")
    ap.add_argument("--test-log10-energy", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=2101)
    ap.add_argument("--raw", default=None, help="save the samples to this .npz prefix")
    ap.add_argument("--load-raw", default=None, help="use the samples of a --raw prefix")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from common import machine
    from joint.config import detector_setup

    t0 = time.perf_counter()
    command = " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))
    print(f"# Dist Xmax baseline, {time.strftime('%Y-%m-%d %H:%M')}, {machine()}")
    print(f"# command: {command}", flush=True)
    log = lambda s: print(f"# [{time.perf_counter() - t0:6.0f} s] {s}", flush=True)
    if args.load_raw:
        cal, test = load(args.load_raw + "_cal.npz"), load(args.load_raw + "_test.npz")
        same_path = Path(args.load_raw + "_same.npz")
        cal_same = load(same_path) if same_path.exists() else None
        print(f"# samples of: {cal.get('provenance', '?')}")
    else:
        cal = make_sample((1, 4, 14, 56), args.n_cal, args.seed, (5.5, 6.5), progress=log)
        lg = args.test_log10_energy
        test = make_sample((1, 56), args.n_test, args.seed + 1000, (lg, lg), progress=log)
        cal_same = make_sample((1, 56), args.n_test, args.seed + 2000, (lg, lg), progress=log)
        prov = np.array(f"{command} ({time.strftime('%Y-%m-%d %H:%M')}, {machine()})")
        cal["provenance"] = test["provenance"] = cal_same["provenance"] = prov
        if args.raw:
            save(args.raw + "_cal.npz", cal)
            save(args.raw + "_test.npz", test)
            save(args.raw + "_same.npz", cal_same)
    geo = detector_setup(("wfcta",))[1]["wfcta"]
    from analysis import dist_xmax as D

    print(f"# calibration: {len(cal['true_xmax'])} events (H, He, CNO, Fe, log10 E 5.5-6.5); "
          f"test: {len(test['true_xmax'])} events (p, Fe at log10 E "
          f"{args.test_log10_energy}), independent seeds")
    print(f"# quality cuts [M]: size >= {D.MIN_SIZE_PE:.0f} PE, leakage (outer ring) <= "
          f"{D.MAX_LEAKAGE}, centroid >= {D.EDGE_LENGTHS} length + 1 pixel inside the camera edge")
    print(f"{'geometry':8s} {'primary':7s} {'n/hyb':>9s} {'frac':>5s} {'img':>4s} | "
          f"{'σ':>11s} {'68% (16-84)':>11s} {'68%|Δ|':>11s} {'bias':>11s} | {'err':>5s}")
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "command": command,
              "cuts": {"min_size_pe": D.MIN_SIZE_PE, "max_leakage": D.MAX_LEAKAGE,
                       "edge_lengths": D.EDGE_LENGTHS}, "rows": [], "calibrations": {}}
    for gs, lab in (("reco", "KM2A"), ("true", "truth")):
        dc, rows = evaluate(cal, test, geo, gs, (("p", 1), ("Fe", 56)))
        result["calibrations"][gs] = {"coeffs": dc.coeffs.tolist(),
                                      "sigma_table": dc.sigma_table.tolist(),
                                      "n_images": dc.n_images}
        for r in rows:
            result["rows"].append(r)
            fm = lambda k: f"{r[k]:5.1f}±{r[k + '_err']:<4.1f}"
            print(f"{lab:8s} {r['primary']:7s} {r['n']:4d}/{r['n_hybrid']:<4d} {r['fraction']:5.2f} "
                  f"{r['n_images_mean']:4.1f} | {fm('sigma')} {fm('half68')} {fm('abs68')} "
                  f"{fm('bias')} | {r['median_error']:5.1f}", flush=True)
    print("# the same test events, Dist calibrated on the same primary and energy (an "
          "independent sample of the test's size, seed + 2000), and the diagnostic ceiling of "
          "the features (see ceiling(): mixed calibration sample, truth geometry)")
    extra = []
    for gs in ("reco", "true"):
        if cal_same is not None:
            extra += same_primary(cal_same, test, geo, gs, (("p", 1), ("Fe", 56)))
    for shape in (False, True):
        extra += ceiling(cal, test, geo, (("p", 1), ("Fe", 56)), shape) or []
    for r in extra:
        result["rows"].append(r)
        fm = lambda k: f"{r[k]:5.1f}±{r[k + '_err']:<4.1f}"
        print(f"{r['geometry']:34s} {r['primary']:3s} {r['n']:4d}/{r['n_hybrid']:<4d} | "
              f"{fm('sigma')} {fm('half68')} {fm('abs68')} {fm('bias')}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    print(f"# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
