"""KM2A on showers the project did not simulate: CORSIKA throws by core distance, next to the
project's own simulation of the same primary (issue 13).

    .venv/bin/python benchmarks/foreign_showers.py --throws 60 --json benchmarks/results/foreign_showers.json

CORSIKA: the shared unthinned 100 TeV proton (zenith 20°, observation level 3000 m) thrown onto
the full KM2A layout by ``joint.io.corsika.simulate_corsika`` (particle-level response, docs/corsika.md)
with cores uniform in each core-distance bin (0–100 m includes the centre, i.e. the ED-free area
around WCDA) and random rotations. Own simulation: 100 TeV protons at zenith 20° from
``joint.simulation.simulate_records`` with cores uniform in the same bins. Both reconstructed with
the KM2A fit of today (hadron hypothesis, default configuration, the fitter's tolerances).

Reported per bin, over ALL events (converged or not): 68% angular error and 68% core error with
bootstrap 90% intervals, the converged fraction, fits at a parameter bound, the robust width
(1.4826 · MAD) of the angle pulls (zenith and sin θ · azimuth, converged fits), the energy bias
(reported only: the CORSIKA shower ends at 3000 m, the model's ground is 4410 m), and — CORSIKA —
the fitted muon number in the MDs (the model's MD muons at the fitted shower, summed over all
MDs; converged fits) next to the muons above the soil threshold that actually crossed them; then the same over
the events the quality flag ``core_inside`` selects, with the selected fraction.

Throws of one shower are one shower: no constant of the fit model was fitted on it (docs/km2a.md).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import angle_deg, machine, ROOT

BINS = ((0.0, 100.0), (100.0, 200.0), (200.0, 300.0), (300.0, 400.0))
PROTON_FILE = "proton_100TeV_3000m_DAT000002-32.gz"


def shared_data() -> Path:
    import os

    return Path(os.environ.get("LHAASO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def q68_ci(x, rng, n_boot=400):
    """68% quantile and its bootstrap 90% interval."""
    x = np.asarray(x, np.float64)
    x = np.where(np.isfinite(x), x, 1e9)  # a failed fit counts as a miss, never as a hit
    q = float(np.percentile(x, 68))
    boots = np.percentile(rng.choice(x, size=(n_boot, len(x))), 68, axis=1)
    return q, float(np.percentile(boots, 5)), float(np.percentile(boots, 95))


def robust_width(x):
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if len(x) > 3 else float("nan")


def reconstruct(records, layout, batch_size=64, cfg=None):
    from joint.io.schema import to_event_batch
    from joint.config import ReconstructionConfig, detector_setup
    from lhaaso_joint.api import reconstruct_records

    _, geos, resps = detector_setup(("km2a",))
    cfg = cfg or ReconstructionConfig(hypothesis="hadron")
    batch = to_event_batch(records, km2a=layout, as_jax=False)
    return reconstruct_records(batch, geos, resps, cfg, batch_size=batch_size)


def fitted_md_muons(out, layout, hypothesis="hadron"):
    """Σ over all MDs of the model's expected muons at each fitted shower."""
    import jax

    from detectors import km2a
    from detectors.shower import FIELDS, Shower

    geo = km2a.Geometry.from_layout(layout)
    resp = km2a.Response.nominal(geo)
    phys = km2a.KM2APhysics(is_gamma=1.0 if hypothesis == "gamma" else 0.0)
    showers = Shower(**{f: np.nan_to_num(np.asarray(out[f"reco_{f}"], np.float64)) for f in FIELDS})
    fn = jax.jit(jax.vmap(lambda s: km2a.expected(s, geo, resp, phys).md_muons.sum()))
    return np.where(out["status"] == 0, np.asarray(fn(showers), np.float64), np.nan)


def figures(rec, out, sel, rng):
    ang = angle_deg(rec["true_zenith"], rec["true_azimuth"], out["reco_zenith"], out["reco_azimuth"])
    dcore = np.hypot(out["reco_core_x"] - rec["true_core_x"], out["reco_core_y"] - rec["true_core_y"])
    st = out["status"]
    conv = st == 0
    pz = (out["reco_zenith"] - rec["true_zenith"]) / out["reco_zenith_err"]
    daz = np.angle(np.exp(1j * (out["reco_azimuth"] - rec["true_azimuth"])))
    pa = daz / out["reco_azimuth_err"]
    lg = out["reco_log10_energy"] - rec["true_log10_energy"]
    n = int(sel.sum())
    if n == 0:
        return {"n": 0}
    a68 = q68_ci(ang[sel], rng)
    c68 = q68_ci(dcore[sel], rng)
    return {"n": n, "converged": float(np.mean(conv[sel])),
            "at_bound": int(np.sum(st[sel] == 3)), "status_counts": np.bincount(st[sel], minlength=4).tolist(),
            "ang68": a68[0], "ang68_lo": a68[1], "ang68_hi": a68[2],
            "core68": c68[0], "core68_lo": c68[1], "core68_hi": c68[2],
            "pull_zenith": robust_width(pz[sel & conv]), "pull_azimuth": robust_width(pa[sel & conv]),
            "energy_bias_dex": float(np.nanmedian(lg[sel])),
            "energy_res_dex": robust_width(lg[sel])}


def own_simulation(lo, hi, n_events, seed, layout, zenith_deg=20.0, log10_energy=5.0):
    from joint.simulation import simulate_records

    def hook(truth, rng):
        k = len(truth["true_core_x"])
        r = np.sqrt(rng.uniform(lo ** 2, hi ** 2, k))
        phi = rng.uniform(0, 2 * np.pi, k)
        truth["true_core_x"], truth["true_core_y"] = r * np.cos(phi), r * np.sin(phi)
        truth["true_zenith"] = np.full(k, np.radians(zenith_deg))
        return truth

    rec, _ = simulate_records(n_events, primary="proton", log10_energy_range=(log10_energy, log10_energy),
                              zenith_max_deg=zenith_deg, core_radius_m=hi, seed=seed,
                              km2a_layout=layout, truth_hook=hook)
    return rec


def print_row(name, lo, hi, f, extra=""):
    if f.get("n", 0) == 0:
        print(f"{name:6s} {lo:4.0f}-{hi:<4.0f} n=0")
        return
    print(f"{name:6s} {lo:4.0f}-{hi:<4.0f} {f['n']:4d} {100 * f['converged']:5.1f} {f['at_bound']:3d} | "
          f"{f['ang68']:6.3f} [{f['ang68_lo']:.3f},{f['ang68_hi']:.3f}] | {f['core68']:6.1f} "
          f"[{f['core68_lo']:.1f},{f['core68_hi']:.1f}] | {f['pull_zenith']:5.2f} {f['pull_azimuth']:5.2f} | "
          f"{f['energy_bias_dex']:+.3f} {f['energy_res_dex']:.3f} {extra}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--throws", type=int, default=60, help="CORSIKA throws per core-distance bin")
    ap.add_argument("--own", type=int, default=None, help="own-simulation events per bin (default: --throws)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--skip-own", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--core-scan-channels", type=int, nargs=2, default=None, metavar=("NED", "NMD"),
                    help="ReconstructionConfig.core_scan_channels (default: the fit's channels)")
    args = ap.parse_args(argv)
    from detectors.layout import km2a_layout
    from joint.config import ReconstructionConfig
    from joint.io.corsika import simulate_corsika

    path = shared_data() / "corsika" / PROTON_FILE
    if not path.exists():
        raise SystemExit(f"{path} is missing (set LHAASO_SHARED_DATA)")
    layout = km2a_layout("full")
    rng = np.random.default_rng(args.seed)
    print(f"# KM2A on CORSIKA throws vs own simulation, {time.strftime('%Y-%m-%d')}, {machine()}")
    print(f"# {PROTON_FILE}: {args.throws} throws per bin; own: 100 TeV protons, zenith 20°, "
          f"{args.own or args.throws} per bin; hadron hypothesis, KM2A alone, full layout")
    print("# sample  r[m]       n  conv% bnd | ang68° [90% CI]       | core68 m [90% CI]  | pull z  az | "
          "dlgE   sdlgE | Nmu fit / true (CORSIKA)")
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "throws": args.throws, "bins": []}
    pooled = {"corsika": [], "own": []}
    t_start = time.time()
    for b, (lo, hi) in enumerate(BINS):
        entry = {"r_lo": lo, "r_hi": hi}
        rec, extra, meta = simulate_corsika([path], args.throws, layout=layout, core_rmin=lo,
                                            core_rmax=hi, seed=args.seed + 100 * b)
        cfg = ReconstructionConfig(hypothesis="hadron", core_scan_channels=None if
                                   args.core_scan_channels is None else tuple(args.core_scan_channels))
        out = reconstruct(rec, layout, cfg=cfg)
        pooled["corsika"].append((rec, out))
        allsel = np.ones(len(rec["event_id"]), bool)
        inside = out["core_inside"].astype(bool)
        f_all = figures(rec, out, allsel, rng)
        f_sel = figures(rec, out, inside, rng)
        nmu_fit = fitted_md_muons(out, layout)
        nmu_true = np.asarray(extra["true_md_muons"], np.float64)
        conv = out["status"] == 0  # failed fits have no fitted muon number
        f_all["nmu_fit_median"] = float(np.median(nmu_fit[conv]))
        f_all["nmu_true_median"] = float(np.median(nmu_true[conv]))
        f_all["nmu_ratio_median"] = float(np.median(nmu_fit[conv] / np.maximum(nmu_true[conv], 1.0)))
        f_all["triggered"] = f"{meta['n_triggered']}/{meta['n_thrown']}"
        entry["corsika"], entry["corsika_selected"] = f_all, f_sel
        entry["corsika_selected"]["fraction"] = float(inside.mean())
        print_row("CORSIKA", lo, hi, f_all, f"Nmu {f_all['nmu_fit_median']:.0f} / {f_all['nmu_true_median']:.0f}"
                  f" (ratio {f_all['nmu_ratio_median']:.2f}), trig {f_all['triggered']}")
        print_row("  sel", lo, hi, f_sel, f"core_inside fraction {inside.mean():.2f}")
        if not args.skip_own:
            own = own_simulation(lo, hi, args.own or args.throws, args.seed + 7 + 100 * b, layout)
            out_o = reconstruct(own, layout, cfg=cfg)
            pooled["own"].append((own, out_o))
            f_o = figures(own, out_o, np.ones(len(own["event_id"]), bool), rng)
            ins_o = out_o["core_inside"].astype(bool)
            f_os = figures(own, out_o, ins_o, rng)
            f_os["fraction"] = float(ins_o.mean())
            entry["own"], entry["own_selected"] = f_o, f_os
            print_row("own", lo, hi, f_o)
            print_row("  sel", lo, hi, f_os, f"core_inside fraction {ins_o.mean():.2f}")
            if f_o.get("ang68"):
                entry["ratio_ang68"] = f_all["ang68"] / f_o["ang68"]
                entry["ratio_core68"] = f_all["core68"] / f_o["core68"]
                print(f"        ratio CORSIKA/own: angle {entry['ratio_ang68']:.2f}, core {entry['ratio_core68']:.2f}")
        result["bins"].append(entry)
    # every bin together (equal numbers per 100 m of core distance), and per event
    result["pooled"] = {}
    for name, parts in pooled.items():
        if not parts:
            continue
        rec = {k: np.concatenate([np.asarray(r[k]) for r, _ in parts])
               for k in ("true_core_x", "true_core_y", "true_zenith", "true_azimuth",
                         "true_log10_energy")}
        out = {k: np.concatenate([np.asarray(o[k]) for _, o in parts]) for k in parts[0][1]}
        inside = out["core_inside"].astype(bool)
        f_all = figures(rec, out, np.ones(len(inside), bool), rng)
        f_sel = figures(rec, out, inside, rng)
        f_sel["fraction"] = float(inside.mean())
        result["pooled"][name] = {"all": f_all, "selected": f_sel}
        print_row(f"{name[:7]}", 0, 400, f_all, "(all bins)")
        print_row("  sel", 0, 400, f_sel, f"core_inside fraction {inside.mean():.2f}")
        result["pooled"][name]["events"] = {
            "r_true": np.hypot(rec["true_core_x"], rec["true_core_y"]).tolist(),
            "angle_deg": angle_deg(rec["true_zenith"], rec["true_azimuth"], out["reco_zenith"],
                                   out["reco_azimuth"]).tolist(),
            "core_err_m": np.hypot(out["reco_core_x"] - rec["true_core_x"],
                                   out["reco_core_y"] - rec["true_core_y"]).tolist(),
            "status": out["status"].tolist(), "core_inside": out["core_inside"].tolist()}
    result["elapsed_s"] = time.time() - t_start
    print(f"# {result['elapsed_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
