"""Light/heavy separation at 0.3–3 PeV with Xmax from WFCTA, KM2A and the joint fit (issue 6,
item 4).

    .venv/bin/python benchmarks/light_heavy.py --n-per-mass 100 \\
        --json benchmarks/results/light_heavy.json --plots examples/output

Per mass (H, He, CNO, Fe): ``--n-per-mass`` KM2A+WFCTA events (both detectors simulated, an
event kept when either triggers), log10(E/GeV) 5.5–6.5 flat in log E, arrival directions within
5° of a telescope's optical axis and cores within 300 m of the telescopes, WFCTA shower-to-shower
fluctuations of the profile width (5%) and lateral spread (10%) [M]. The same events are
reconstructed three ways (hadron hypothesis): (a) WFCTA alone, log10 E and Xmax free, the
geometry fixed at a first KM2A fit (``geometry_from="km2a"``), no Xmax prior; (b) KM2A alone
(default free fields and Xmax prior); (c) KM2A+WFCTA jointly, no Xmax prior. Analysed: hybrid
events (KM2A and WFCTA triggered) whose fit converged (status 0) with a cleaned image (a, c).

Tables: Xmax resolution (68% half-width of Xmax_rec − Xmax_true and its std) and bias (median)
per mass and true-energy bin; energy resolution (std of log10 E_rec/E_true, 68% quantile of
|E_rec/E_true − 1|) and bias (median ratio − 1) for H+He at 1 PeV (5.9–6.1) and per mass;
light (H+He) selection efficiency at 90% and 95% purity with (1) an energy-dependent Xmax cut
(Xmax centred on its mean elongation in reconstructed log10 E) and (2) a Fisher discriminant in
(Xmax, log10(Nmu/Ne^0.86)) (each centred on a line in reconstructed log10 E); both trained on a
random half of the events (per mass), evaluated on the other half; events weighted to the flux
mix ``DEFAULT_COMPOSITION`` {H 0.30, He 0.30, CNO 0.15, Fe 0.25} [M] with E^-2.7. Nmu/Ne:
from the method's own KM2A fit (joint) or the KM2A-alone fit (WFCTA alone, KM2A alone).

Composition table (issue 16, ``analysis.composition.composition_table``), the same events for
five methods: Dist (``analysis.dist_xmax``: the image centroid's angular distance from the KM2A
direction, calibrated in Dist, R_p, viewing angle and size with image quality cuts, telescopes
combined; calibrated on one half of the events, applied to the other), WFCTA alone (KM2A
geometry), KM2A alone (Fisher of its Xmax and Nmu/Ne), joint (Xmax cut), joint + Nmu/Ne
(Fisher). Per true log10(E/GeV) bin 5.5–5.75–6.0–6.25–6.5 and mass: Xmax 68% half-width, std,
bias; for the light selection (cut tuned to 90% purity on the training half, applied to the test
half): purity and efficiency N_light,sel / N_light,all with binomial errors, N_light,all counting
every hybrid light event of the test half (failed fits and events without a usable image
included, never selected). ``--load-raw`` of an older file without the per-telescope image
columns gives no Dist estimate.

The computations live in ``analysis.composition`` (shared with the example notebook
``examples/xmax_light_heavy.ipynb``); this script formats the tables and draws the figures.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from analysis import composition as C  # noqa: E402

#: the 2-D (per telescope) output columns kept by --raw (the Dist method's inputs)
DIST_COLUMNS = ("hillas_size", "hillas_x", "hillas_y", "hillas_length", "hillas_width",
                "wfcta_leakage")
METHOD_TITLES = {"wfcta": "WFCTA (geometry: KM2A fit)", "km2a": "KM2A alone",
                 "joint": "KM2A+WFCTA joint"}
MASS_COLOURS = {"H": "tab:red", "He": "tab:orange", "CNO": "tab:green", "Fe": "tab:blue"}


def _f(x, fmt="6.1f"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return f"{'-':>{int(fmt.split('.')[0])}s}"
    return f"{x:{fmt}}"


def format_tables(summary, info=None):
    """The benchmark's tables as text (list of lines)."""
    L = []
    methods = [m for m in C.METHODS if m in summary["xmax"]]
    masses = [C.MASS_NAMES[a] for a in summary["masses"]]
    if info:
        rs = info.get("reconstruct_s", {})
        L.append(f"# {info['n_per_mass']} events per mass (seed {info['seed']}), thrown "
                 f"{info['thrown']}; simulate {info['simulate_s']:.0f} s, reconstruct "
                 + ", ".join(f"{m} {rs[m]:.0f} s" for m in methods if m in rs))
    L.append(f"# {summary['n_events']} events, {summary['n_hybrid']} hybrid (KM2A and WFCTA "
             "triggered)")
    L.append("# fit status (0 converged, 1 max_iter, 2 non_finite, 3 out_of_bounds) and "
             "analysed events per mass:")
    for m in methods:
        st = summary["status"][m]
        q = summary["n_quality"][m]
        L.append(f"#   {m:6s} status " + " ".join(f"{k}:{v}" for k, v in st.items())
                 + " | analysed " + " ".join(f"{k} {v}" for k, v in q.items()))
    L.append("")
    L.append("## Xmax_rec − Xmax_true [g/cm²] per true log10(E/GeV) bin: n, 68% half-width, "
             "std, bias (median)")
    head = f"{'mass':4s} {'lgE':9s} |" + "|".join(f" {METHOD_TITLES[m][:26]:26s} " for m in methods)
    L.append(head)
    L.append(f"{'':4s} {'':9s} |" + "|".join(f" {'n':>3s} {'h68':>6s} {'std':>6s} {'bias':>6s}   "
                                             for _ in methods))
    for mass in masses + ["all"]:
        nb = len(summary["edges"]) - 1
        for i in range(nb + 1):
            if i < nb:
                lab = (f"{summary['edges'][i]:.1f}-{summary['edges'][i + 1]:.1f}")
                rows = [summary["xmax"][m][mass]["bins"][i] for m in methods]
            else:
                lab = "5.5-6.5"
                rows = [summary["xmax"][m][mass]["all"] for m in methods]
            L.append(f"{mass:4s} {lab:9s} |" + "|".join(
                f" {r['n']:3d} {_f(r['half68'])} {_f(r['std'])} {_f(r['median'])}   "
                for r in rows))
    L.append("")
    L.append("## Xmax with the fits stopped at the iteration limit (status 1) included, and those "
             "alone: n, 68% half-width, std, bias")
    for m in methods:
        lo = summary["xmax_loose"][m]
        L.append(f"{m:6s} " + " | ".join(
            f"{lab} {lo[k]['n']:3d} {_f(lo[k]['half68'])} {_f(lo[k]['std'])} {_f(lo[k]['median'])}"
            for k, lab in (("all", "status 0+1, 5.5-6.5:"), ("pev", "1 PeV:"),
                           ("max_iter_only", "status 1 only:"))))
    L.append("")
    com = summary["xmax_common"]
    L.append(f"## The same {com['n']} events for every method (analysed by all three): Xmax "
             "n, 68% half-width, std, bias | H+He energy at 1 PeV: n, σlog10E, 68%|ΔE/E| [%]")
    for m in methods:
        c = com["methods"][m]
        el = c["energy_light_pev"]
        L.append(f"{m:6s} " + " | ".join(
            f"{lab} {c[k]['n']:4d} {_f(c[k]['half68'])} {_f(c[k]['std'])} {_f(c[k]['median'])}"
            for k, lab in (("all", "5.5-6.5:"), ("pev", "1 PeV:")))
            + f" | E: {el['n']:3d} {_f(el['sigma_log10E'], '6.3f')} {_f(el['res68_pct'], '5.1f')}")
    L.append("")
    pev = summary["pev_bin"]
    L.append(f"## Energy: H+He at 1 PeV (true log10 E {pev[0]:.1f}-{pev[1]:.1f}) and bias "
             "(median E_rec/E_true − 1) per mass [%]")
    L.append(f"{'method':6s} | {'n':>3s} {'σlog10E':>7s} {'68%|ΔE/E|':>9s} {'bias%':>6s} | "
             + " ".join(f"{'bias ' + k:>9s}" for k in masses)
             + " | " + " ".join(f"{k + '@1PeV':>9s}" for k in masses))
    for m in methods:
        e = summary["energy"][m]
        lp = e["light_pev"]
        L.append(f"{m:6s} | {lp['n']:3d} {_f(lp['sigma_log10E'], '7.3f')} "
                 f"{_f(lp['res68_pct'], '9.1f')} {_f(lp['bias_pct'], '6.1f')} | "
                 + " ".join(f"{_f(e[k]['bias_pct'], '9.1f')}" for k in masses)
                 + " | " + " ".join(f"{_f(e[k + '_pev']['bias_pct'], '9.1f')}" for k in masses))
    L.append("  (whole range, H+He: " + ", ".join(
        f"{m} σlog10E {_f(summary['energy'][m]['light_all']['sigma_log10E'], '.3f')} "
        f"68% {_f(summary['energy'][m]['light_all']['res68_pct'], '.1f')}%" for m in methods) + ")")
    L.append("")
    L.append("## Mean reconstructed Xmax [g/cm²] per mass (analysed events, all energies)")
    L.append(f"{'method':6s} | " + " ".join(f"{k:>7s}" for k in masses))
    for m in methods:
        L.append(f"{m:6s} | " + " ".join(_f(summary["mean_xmax"][m][k], "7.1f") for k in masses))
    L.append("")
    purs = [f"{p:.2f}" for p in summary["purities"]]
    L.append("## Light (H+He) selection, test half, flux-weighted: efficiency at purity "
             "(interpolated ROC) of the analysed light events | the same relative to all hybrid "
             "light events (failed fits count as lost) | cut set on the training half, applied "
             "to the test half (purity/efficiency)")
    L.append(f"{'method':6s} {'variables':13s} {'n L/H':>9s} | "
             + " ".join(f"{'eff@' + p:>9s}" for p in purs) + " | "
             + " ".join(f"{'hyb@' + p:>9s}" for p in purs) + " | "
             + " ".join(f"{'train cut @' + p:>17s}" for p in purs))
    for m in methods:
        sep = summary["separation"][m]
        if "error" in sep:
            L.append(f"{m:6s} {sep['error']}")
            continue
        for v, lab in (("xmax", "Xmax"), ("xmax_nmu", "Xmax+Nmu/Ne")):
            r = sep[v]
            L.append(f"{m:6s} {lab:13s} {r['n_test_light']:4d}/{r['n_test_heavy']:<4d} | "
                     + " ".join(_f(r["eff_at_purity"][p], "9.2f") for p in purs) + " | "
                     + " ".join(_f(r.get("eff_at_purity_hybrid", {}).get(p), "9.2f")
                                for p in purs) + " | "
                     + " ".join(f"{_f(r['train_cut_on_test'][p]['purity'], '8.2f')}/"
                                f"{_f(r['train_cut_on_test'][p]['efficiency'], '.2f'):<8s}"
                                for p in purs))
    return L


def format_composition_table(table):
    """The composition table of ``summary["table"]`` (issue 16) as text lines: per method, mass
    and true-energy bin the Xmax figures; per method and bin the light selection's purity and
    efficiency with binomial errors; the Xmax of every method on the events all analysed."""
    L = []
    edges = table["edges"]
    labs = [f"{edges[i]:.2f}-{edges[i + 1]:.2f}" for i in range(len(edges) - 1)] + [
        f"{edges[0]:.2f}-{edges[-1]:.2f}"]
    methods = [m for m in C.TABLE_METHODS if m in table["methods"]]
    L.append("## Composition table: Xmax_rec − Xmax_true [g/cm²] per true log10(E/GeV) bin, per "
             "mass, each method's analysed events: n, 68% half-width (16-84%), std, bias (median)")
    L.append(f"{'method':26s} {'mass':4s} | " + " | ".join(f"{lab:>22s}" for lab in labs))
    for m in methods:
        t = table["methods"][m]
        for mass, x in t["xmax"].items():
            cells = x["bins"] + [x["all"]]
            L.append(f"{C.TABLE_TITLES[m][:26]:26s} {mass:4s} | " + " | ".join(
                f"{c['n']:4d} {_f(c['half68'], '5.1f')} {_f(c['std'], '5.1f')} "
                f"{_f(c['median'], '+5.1f')}" for c in cells))
    L.append("")
    L.append(f"## Light (H+He) selection: cut of each method tuned to purity "
             f"{table['purity_target']:.2f} on the training half (flux-weighted), applied to the "
             "test half; per true-energy bin: purity ± err | efficiency ± err = N_light,sel / "
             "N_light,all (every hybrid light event, failed fits and cut events included; "
             "flux-weighted, binomial errors with effective counts) and the unweighted counts")
    L.append(f"{'method':26s} {'':4s} | " + " | ".join(f"{lab:>22s}" for lab in labs))
    for m in methods:
        t = table["methods"][m]
        cells = t["selection"]["bins"] + [t["selection"]["all"]]
        L.append(f"{C.TABLE_TITLES[m][:26]:26s} {'pur':4s} | " + " | ".join(
            f"{_f(c['purity'], '9.2f')} ± {_f(c['purity_err'], '.2f'):<10s}" for c in cells))
        L.append(f"{'':26s} {'eff':4s} | " + " | ".join(
            f"{_f(c['efficiency'], '4.2f')}±{_f(c['efficiency_err'], '.2f'):4s} "
            f"{c['n_light_sel']:4d}/{c['n_light_all']:<4d}" for c in cells))
        L.append(f"{'':26s} {'':4s}   (threshold {_f(t['threshold'], '.3g')}, analysed "
                 f"{_f(t['analysed_fraction'], '.2f')} of the hybrid events)")
    L.append("")
    com = table["common"]
    L.append(f"## The same {com['n']} events for every method of the table (analysed by all): "
             "Xmax n, 68% half-width, std, bias per mass, whole range")
    for m in methods:
        L.append(f"{C.TABLE_TITLES[m][:26]:26s} | " + " | ".join(
            f"{k} {r['n']:3d} {_f(r['half68'], '5.1f')} {_f(r['std'], '5.1f')} "
            f"{_f(r['median'], '+5.1f')}" for k, r in com["methods"][m].items()))
    di = table.get("dist_info", {})
    if di:
        L.append(f"# Dist: {di}")
    return L


# ------------------------------------------------------------------------------------------------
# figures (matplotlib, Agg)
# ------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_xmax_resolution(summary, path):
    """Xmax resolution (68% half-width) and bias (median) vs true energy per mass, one column
    per method."""
    plt = _plt()
    methods = [m for m in C.METHODS if m in summary["xmax"]]
    edges = np.asarray(summary["edges"])
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig, axes = plt.subplots(2, len(methods), figsize=(4.2 * len(methods), 6.5), sharex=True,
                             sharey="row", squeeze=False)
    for j, m in enumerate(methods):
        for k, a in enumerate(summary["masses"]):
            name = C.MASS_NAMES[a]
            bins = summary["xmax"][m][name]["bins"]
            ok = np.array([b["n"] >= 3 for b in bins])
            x = centres + 0.012 * (k - 1.5)
            res = np.array([b["half68"] for b in bins])
            bias = np.array([b["median"] for b in bins])
            # error of the median/half-width ≈ 1.25·σ/√n (Gaussian)
            err = np.array([1.25 * b["half68"] / np.sqrt(max(b["n"], 1)) for b in bins])
            kw = dict(color=MASS_COLOURS.get(name), marker="o", ms=4, label=name)
            axes[0, j].errorbar(x[ok], res[ok], yerr=err[ok] / 1.25 * 0.71, **kw)
            axes[1, j].errorbar(x[ok], bias[ok], yerr=err[ok], **kw)
        axes[0, j].set_title(METHOD_TITLES[m], fontsize=10)
        axes[1, j].axhline(0, color="k", lw=0.5)
        axes[1, j].set_xlabel("true log10(E/GeV)")
    for ax in axes[0]:
        ax.axhline(15, color="grey", ls=":", lw=1)
    axes[0, 0].set_ylabel("Xmax resolution, 68% half-width [g/cm²]")
    axes[1, 0].set_ylabel("Xmax bias (median) [g/cm²]")
    axes[0, 0].legend(fontsize=8)
    for ax in axes[0]:
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_xmax_nmu(summary, path, method="joint"):
    """Centred Xmax vs log10(Nmu/Ne^0.86) of the analysed events, per mass."""
    plt = _plt()
    ev = summary["events"]
    if method not in ev:
        method = [m for m in C.METHODS if m in ev][0]
    e = ev[method]
    a = np.asarray(ev["mass"])
    q = np.asarray(e["quality"], bool)
    f = lambda k: np.array([np.nan if v is None else v for v in e[k]], float)
    x, lg, nmn = f("reco_xmax"), f("reco_log10_energy"), f("nmu_ne")
    coeffs = summary["separation"][method].get("xmax", {}).get("elongation")
    xc = x - (np.polyval(coeffs, lg) if coeffs else np.nanmean(x[q]))
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for k in summary["masses"]:
        name = C.MASS_NAMES[k]
        s = q & (a == k)
        ax.scatter(nmn[s], xc[s], s=10, alpha=0.7, color=MASS_COLOURS.get(name), label=name)
    ax.set_xlabel("log10(Nmu / Ne^0.86)")
    ax.set_ylabel("Xmax − <Xmax>(log10 E_rec) [g/cm²]")
    ax.set_title(f"{METHOD_TITLES[method]}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_purity_efficiency(summary, path):
    """Purity vs light efficiency (test half, flux-weighted) of the Xmax cut and of the Fisher
    discriminant, per method."""
    plt = _plt()
    ev = summary["events"]
    a = np.asarray(ev["mass"])
    light = C.is_light(a)
    w = np.asarray(ev["weight"])
    test = ~np.asarray(ev["train"], bool)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    styles = {"wfcta": "tab:purple", "km2a": "tab:gray", "joint": "tab:red"}
    for m in C.METHODS:
        if m not in ev:
            continue
        q = np.asarray(ev[m]["quality"], bool) & test
        for key, ls, lab in (("score_xmax", ":", "Xmax"), ("score_xmax_nmu", "-", "Xmax+Nmu/Ne")):
            s = np.array([np.nan if v is None else v for v in ev[m][key]], float)
            if not np.isfinite(s[q]).any():
                continue
            thr = np.unique(s[q][np.isfinite(s[q])])[::-1]
            pur, eff, _ = C.purity_efficiency(s[q], light[q], thr, w[q])
            ax.plot(eff, pur, ls=ls, color=styles[m], label=f"{m}: {lab}")
    for p in summary["purities"]:
        ax.axhline(p, color="k", lw=0.5, ls="--")
    ax.set_xlabel("light (H+He) efficiency")
    ax.set_ylabel("purity N_light / N_selected")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0.4, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def make_figures(summary, outdir):
    """All figures into ``outdir``; returns their paths."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    return [plot_xmax_resolution(summary, out / "light_heavy_xmax_resolution.png"),
            plot_xmax_nmu(summary, out / "light_heavy_xmax_nmu_ne.png"),
            plot_purity_efficiency(summary, out / "light_heavy_purity_efficiency.png")]


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def save_raw(path, rec, outs, info):
    """The per-event scalar columns (truth, presence, every 1-D output of each method) to .npz."""
    cols = {k: np.asarray(v) for k, v in rec.items()
            if isinstance(v, np.ndarray) and v.ndim == 1}
    for m, out in outs.items():
        # 1-D columns, and the per-telescope image parameters the Dist method needs
        cols.update({f"{m}:{k}": np.asarray(v) for k, v in out.items()
                     if np.ndim(v) == 1 or (np.ndim(v) == 2 and k.startswith(DIST_COLUMNS))})
    cols["info"] = np.array(json.dumps(_jsonable(info)))
    np.savez_compressed(path, **cols)


def load_raw(path):
    """(records, outs, info) from :func:`save_raw`."""
    z = np.load(path)
    rec = {k: z[k] for k in z.files if ":" not in k and k != "info"}
    outs = {}
    for k in z.files:
        if ":" in k:
            m, c = k.split(":", 1)
            outs.setdefault(m, {})[c] = z[k]
    info = json.loads(str(z["info"]))
    info["thrown"] = {int(k): v for k, v in info["thrown"].items()}
    return rec, {m: outs[m] for m in C.METHODS if m in outs}, info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-per-mass", type=int, default=100)
    ap.add_argument("--seed", type=int, default=601)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="events per reconstruction batch (default: joint.config.auto_batch_size)")
    ap.add_argument("--json", default=None, help="write the summary (and per-event columns)")
    ap.add_argument("--plots", default=None, help="folder for the figures")
    ap.add_argument("--raw", default=None, help="save the per-event columns (truth and the three "
                    "reconstructions) to this .npz")
    ap.add_argument("--load-raw", default=None, help="summarise a --raw file instead of simulating")
    ap.add_argument("--events-in-json", action="store_true",
                    help="keep the per-event columns in the JSON (large)")
    args = ap.parse_args(argv)
    from common import machine

    t0 = time.perf_counter()
    command = " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))
    print(f"# light/heavy separation, {time.strftime('%Y-%m-%d %H:%M')}, {machine()}")
    print(f"# command: {command}", flush=True)
    log = lambda s: print(f"# [{time.perf_counter() - t0:6.0f} s] {s}", flush=True)
    if args.load_raw:
        rec, outs, info = load_raw(args.load_raw)
        print(f"# events and fits of: {info.get('command', '?')} ({info.get('date', '?')}, "
              f"{info.get('machine', '?')})")
    else:
        rec, outs, info = C.run_sample(args.n_per_mass, args.seed, batch_size=args.batch_size,
                                       progress=log)
        info.update(command=command, date=time.strftime("%Y-%m-%d %H:%M"), machine=machine())
    if args.raw:
        save_raw(args.raw, rec, outs, info)
    summary = C.summarise(rec, outs)
    print("\n".join(format_tables(summary, info)))
    print()
    print("\n".join(format_composition_table(summary["table"])))
    if args.plots:
        for p in make_figures(summary, args.plots):
            print(f"# figure {p}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as fh:
            keep = summary if args.events_in_json else {k: v for k, v in summary.items()
                                                        if k != "events"}
            json.dump(_jsonable({"machine": info.get("machine", machine()),
                                 "date": info.get("date", time.strftime("%Y-%m-%d")),
                                 "command": info.get("command", command),
                                 "tables_command": command, "info": info,
                                 "summary": keep}), fh, indent=1)
    print(f"# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
