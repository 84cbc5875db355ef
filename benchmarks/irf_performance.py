"""Effective area, PSF 68% and energy resolution per event type, and the one-year point-source
sensitivity of KM2A, WCDA and their joint set, from the IRF-seed libraries (analysis/irf.py),
next to LHAASO's published figures (PHYSICS.md; [M] where unconfirmed).

    python benchmarks/irf_performance.py

Transit-averaged at the Crab's declination (22.01°). Sensitivity: 5σ (Li & Ma, α = 0.2), ≥ 10
photons and signal ≥ 5% of the background per 0.2-dex reco-energy bin, photons within the 68%
PSF radius (analysis.irf.sensitivity_curve; the 5% floor per event type), one year = 365 transits; the joint set adds the
Li & Ma TS of all KM2A and WCDA event types in a bin. Writes benchmarks/results/
irf_performance.{json,txt,png}."""
import datetime
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "results", "irf_cache")
N = {"km2a": (12000, 12000), "wcda": (6000, 6000)}
DEC = 22.0145
#: published figures (PHYSICS.md §5): (E [TeV], value, tag)
PUBLISHED = {
    "psf68_km2a": [(20, 0.5, "M"), (20, 0.8, "M"), (100, 0.2, "M"), (100, 0.25, "M")],
    "psf68_wcda": [(1, 0.45, "C"), (6, 0.2, "C")],
    "eres_km2a": [(20, 24, "M"), (100, 13, "M")],
    "eres_wcda": [(6, 33, "C")],
    # WCDA-1: 65 mCU for one year (integral, 5σ) [C]; KM2A ~1–2% Crab at 50–100 TeV [M]
    "sens_crab_units": [(3, 0.065, "C, WCDA-1 integral"), (50, 0.015, "M, KM2A"),
                        (100, 0.015, "M, KM2A")],
}


def main():
    import astropy.units as u
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.irf import build_irfs, sensitivity_curve, transit_response
    from analysis.irf_library import library_path, load_library
    from analysis.sky_sim import crab_lhaaso

    resp, out = {}, {"date": datetime.datetime.now().isoformat(timespec="minutes"),
                     "machine": f"{platform.node()} ({os.cpu_count()} CPUs)",
                     "declination": DEC, "libraries": N, "per_type": {}, "sensitivity": {}}
    for det, (ng, npr) in N.items():
        g = load_library(library_path(CACHE, det, "gamma", "irf", ng))
        p = load_library(library_path(CACHE, det, "proton", "irf", npr))
        irfs = build_irfs(g, p, det)
        resp[det] = [transit_response(irfs, t, DEC) for t in range(irfs.n_types)]
        for t, r in enumerate(resp[det]):
            e = r.aeff.axes["energy_true"].center.to_value("TeV")
            a = r.aeff.data[:, 0]
            ok = a > 0
            r68 = np.full(len(e), np.nan)
            r68[ok] = r.psf.containment_radius(0.68, energy_true=e[ok] * u.TeV,
                                               offset=0 * u.deg).to_value("deg")
            mig = r.edisp.data[:, :, 0]
            mu = np.log10(r.edisp.axes["migra"].center.value)
            w = mig * np.diff(r.edisp.axes["migra"].edges.value)[None]
            sw = np.maximum(w.sum(1), 1e-12)
            mean = (w * mu).sum(1) / sw
            sd = np.sqrt((w * (mu[None] - mean[:, None]) ** 2).sum(1) / sw)
            out["per_type"][irfs.type_names()[t]] = {
                "energy_tev": e[ok].tolist(), "aeff_m2": a[ok].tolist(), "r68_deg": r68[ok].tolist(),
                "eres_pct": ((10 ** sd[ok] - 1) * 100).tolist(), "bias_pct": ((10 ** mean[ok] - 1) * 100).tolist()}
    year = 365 * resp["km2a"][0].livetime_s
    crab = crab_lhaaso()
    # where the libraries hold the cosmic rays that reconstruct there (protons from 2× the
    # photons' lower energy: WCDA ≥ 1.3 TeV, KM2A ≥ 20 TeV true; reco energies of about half)
    edges = {"km2a": 10 ** np.arange(1.4, 3.01, 0.2), "wcda": 10 ** np.arange(0.2, 1.61, 0.2),
             "joint": 10 ** np.arange(0.2, 3.01, 0.2)}
    for name in ("km2a", "wcda"):
        scale, _ = sensitivity_curve(resp[name], crab, edges[name], year)
        out["sensitivity"][name] = {"edges_tev": edges[name].tolist(), "crab_units": scale.tolist()}
    # joint: per bin, the event types of every detector whose libraries cover the bin
    ej, joint = edges["joint"], []
    for lo, hi in zip(ej[:-1], ej[1:]):
        rs = [r for d in ("km2a", "wcda") for r in resp[d]
              if edges[d][0] * 0.999 <= lo and hi <= edges[d][-1] * 1.001]
        joint.append(sensitivity_curve(rs, crab, np.array([lo, hi]), year)[0][0])
    out["sensitivity"]["joint"] = {"edges_tev": ej.tolist(), "crab_units": joint}

    # -- figures --------------------------------------------------------------------------------
    fig, ax = plt.subplots(2, 2, figsize=(13, 9))
    for name, d in out["per_type"].items():
        ls = "-" if name.startswith("KM2A") else "--"
        ax[0, 0].loglog(d["energy_tev"], np.array(d["aeff_m2"]) / 1e6, ls, marker=".", label=name)
        ax[0, 1].semilogx(d["energy_tev"], d["r68_deg"], ls, marker=".", label=name)
        ax[1, 0].semilogx(d["energy_tev"], d["eres_pct"], ls, marker=".", label=name)
    for key, axx in (("psf68", ax[0, 1]), ("eres", ax[1, 0])):
        for det, mk in (("km2a", "s"), ("wcda", "D")):
            pts = PUBLISHED[f"{key}_{det}"]
            axx.plot([p[0] for p in pts], [p[1] for p in pts], mk, color="k", mfc="none",
                     label=f"LHAASO {det.upper()} published [{pts[0][2]}]")
    ax[0, 0].axhline(1.0, color="k", lw=0.5)
    ax[0, 0].set(xlabel="E true [TeV]", ylabel="A_eff [km²] (after cuts)", ylim=(1e-4, 3),
                 title=f"effective area, transit average δ = {DEC}°")
    ax[0, 1].set(xlabel="E true [TeV]", ylabel="PSF 68% [deg]", ylim=(0, 1.5), title="PSF")
    ax[1, 0].set(xlabel="E true [TeV]", ylabel="σ(log10 E) as % [%]", ylim=(0, 100),
                 title="energy resolution")
    for a_ in (ax[0, 0], ax[0, 1], ax[1, 0]):
        a_.legend(fontsize=7)
    for name, st in (("km2a", "-"), ("wcda", "--"), ("joint", ":")):
        s = out["sensitivity"][name]
        e = np.sqrt(np.array(s["edges_tev"][1:]) * np.array(s["edges_tev"][:-1]))
        ax[1, 1].loglog(e, s["crab_units"], st, marker="o", label=f"{name.upper()} (this work)")
    pts = PUBLISHED["sens_crab_units"]
    ax[1, 1].plot([p[0] for p in pts], [p[1] for p in pts], "k*", ms=10,
                  label="LHAASO published (WCDA-1 65 mCU [C]; KM2A ~1.5% [M])")
    ax[1, 1].set(xlabel="E reco [TeV]", ylabel="5σ flux / Crab (LHAASO log-parabola)",
                 title="point-source sensitivity, 1 year, per 0.2-dex bin")
    ax[1, 1].legend(fontsize=7)
    plt.tight_layout()
    plt.savefig(os.path.join(HERE, "results", "irf_performance.png"), dpi=90)
    with open(os.path.join(HERE, "results", "irf_performance.json"), "w") as f:
        json.dump(out, f, indent=1)
    lines = [f"# irf performance {out['date']} {out['machine']}, δ = {DEC}°, libraries {N}"]
    for name, d in out["per_type"].items():
        for i in range(0, len(d["energy_tev"]), 3):
            lines.append(f"{name:8s} E {d['energy_tev'][i]:8.1f} TeV  A {d['aeff_m2'][i] / 1e6:7.4f} km²"
                         f"  r68 {d['r68_deg'][i]:5.2f}°  σE {d['eres_pct'][i]:5.1f}%  bias {d['bias_pct'][i]:+5.1f}%")
    for name, s in out["sensitivity"].items():
        e = np.sqrt(np.array(s["edges_tev"][1:]) * np.array(s["edges_tev"][:-1]))
        lines.append(f"sensitivity {name}: " + ", ".join(
            f"{x:.1f} TeV {c * 100:.1f}%" for x, c in zip(e, s["crab_units"]) if np.isfinite(c)))
    txt = "\n".join(lines)
    print(txt)
    with open(os.path.join(HERE, "results", "irf_performance.txt"), "w") as f:
        f.write(txt + "\n")


if __name__ == "__main__":
    main()
