"""γ/proton separation: classic cuts, a gradient-boosted baseline and the DGCNN on the same test
events (issue 17) — KM2A at 10 TeV–1 PeV (Nμ/Ne^0.86) or WCDA at 1–10 TeV (compactness, PINCness).

    .venv/bin/python benchmarks/ml_gamma_hadron.py                 # KM2A, full: ~1 h on 2 CPU cores
    .venv/bin/python benchmarks/ml_gamma_hadron.py --quick         # a few minutes, small samples
    .venv/bin/python benchmarks/ml_gamma_hadron.py --detector wcda --n-train 3000 --n-val 1000 --n-test 2000

Steps: simulate + reconstruct (photon hypothesis) photons and protons, E^−1 in 10 TeV–1 PeV,
zenith < 40°, three independent seeds (train / validation / test, ``analysis.ml.data``); train the
DGCNN (event head + per-hit head on the simulation's noise labels) choosing the epoch on the
validation split; fit the boosted baseline on the training split; then, on the test split only,
the proton survival at 90% and 70% γ efficiency per reconstructed-energy bin with errors / upper
limits and the Q-factor, flux-weighted (E^−2.6 photons, E^−2.7 protons). Writes
benchmarks/results/ml_gamma_hadron.{txt,json,png} and the model (``--save-model``, default
analysis/ml/models/km2a_gamma_hadron.{npz,json}).

Samples are cached in benchmarks/results/ml_cache/ under a name that includes a hash of the
simulation's source files, so a change of the simulation makes new samples.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SIM_SOURCES = ("detectors/km2a.py", "detectors/wcda.py", "joint/simulation.py", "detectors/primaries.py",
               "detectors/lateral.py", "analysis/ml/points.py", "analysis/ml/data.py")


def sim_hash() -> str:
    h = hashlib.sha1()
    for f in SIM_SOURCES:
        p = ROOT / f
        if p.exists():
            h.update(p.read_bytes())
    sub = ROOT / "detectors" / "substructure.py"
    if sub.exists():
        h.update(sub.read_bytes())
    return h.hexdigest()[:10]


#: per detector: reconstructed-energy bins [TeV], the lowest energy kept [TeV], classic scores
DETECTOR = {
    "km2a": dict(bins=((10, 25), (25, 60), (60, 100), (100, 300), (300, np.inf)), e_min=10.0,
                 classic=lambda t: {"Nmu/Ne^0.86": -np.where(np.isfinite(t["nmu_ne"]),
                                                             t["nmu_ne"], 5.0)}),
    "wcda": dict(bins=((1, 2.5), (2.5, 6), (6, 10)), e_min=1.0,
                 classic=lambda t: {"compactness": np.log10(np.maximum(t["compactness"], 1e-6)),
                                    "C & PINCness": np.where(np.isfinite(t["wcda_score"]),
                                                             t["wcda_score"], -10.0)}),
}


def get_sample(detector, split, primary, n, cache: Path, log):
    from analysis.ml.data import SPLIT_SEEDS, load_sample, save_sample, simulate_km2a, simulate_wcda

    seed = SPLIT_SEEDS[split] + (0 if primary == "gamma" else 100) + (0 if detector == "km2a" else 1000)
    path = cache / f"{detector}_{primary}_{split}_n{n}_s{seed}_{sim_hash()}.npz"
    if path.exists():
        log(f"{split} {primary}: cached {path.name}")
        return load_sample(path)
    t0 = time.perf_counter()
    s = simulate_km2a(primary, n, seed) if detector == "km2a" else simulate_wcda(primary, n, seed)
    log(f"{split} {primary}: {n} events simulated + reconstructed in {time.perf_counter() - t0:.0f} s")
    cache.mkdir(parents=True, exist_ok=True)
    save_sample(path, s)
    return s


def select(s, zenith_max_deg=40.0, e_min_tev=10.0):
    """Converged fits, reconstructed zenith below ``zenith_max_deg``, E_reco ≥ ``e_min_tev``."""
    ok = ((s["status"] == 0) & (np.degrees(s["reco_zenith"]) < zenith_max_deg)
          & (10 ** s["reco_log10_energy"] / 1e3 >= e_min_tev))
    return {k: (v[ok] if (hasattr(v, "shape") and v.ndim and v.shape[0] == len(ok)) else v)
            for k, v in s.items()}


def merge(a, b):
    from analysis.ml.data import concat

    return concat([a, b])


def fmt_row(r):
    if not np.isfinite(r.get("survival", np.nan)):
        return f"{'n/a':>20}"
    if r["upper_limit"]:
        return f"{'< %.2e' % r['survival']:>20}"
    return f"{r['survival']:.2e} ± {r['error']:.1e}".rjust(20)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detector", default="km2a", choices=sorted(DETECTOR))
    ap.add_argument("--n-train", type=int, default=5000, help="events per class, training split")
    ap.add_argument("--n-val", type=int, default=1500)
    ap.add_argument("--n-test", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--time-budget", type=float, default=1500.0, help="training wall limit [s]")
    ap.add_argument("--hit-weight", type=float, default=0.3)
    ap.add_argument("--quick", action="store_true", help="small samples (a smoke run)")
    ap.add_argument("--cache", default=str(ROOT / "benchmarks" / "results" / "ml_cache"))
    ap.add_argument("--save-model", default=str(ROOT / "analysis" / "ml" / "models" / "km2a_gamma_hadron"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ml_gamma_hadron"))
    a = ap.parse_args(argv)
    det = DETECTOR[a.detector]
    if a.detector != "km2a":
        a.out = a.out.replace("ml_gamma_hadron", f"ml_gamma_hadron_{a.detector}")
        a.save_model = a.save_model.replace("km2a_gamma_hadron", f"{a.detector}_gamma_hadron")
    if a.quick:
        a.n_train, a.n_val, a.n_test, a.epochs = 400, 200, 400, 3
        a.out += "_quick"
        a.save_model += "_quick"
    from common import machine

    lines = []

    def log(s):
        print(s, flush=True)
        lines.append(s)

    cache = Path(a.cache)
    log(f"# ml_gamma_hadron {a.detector}  {time.strftime('%Y-%m-%d %H:%M')}  {machine()}  "
        f"sim {sim_hash()}")
    sets = {}
    for split, n in (("train", a.n_train), ("val", a.n_val), ("test", a.n_test)):
        sets[split] = select(merge(get_sample(a.detector, split, "gamma", n, cache, log),
                                   get_sample(a.detector, split, "proton", n, cache, log)),
                             e_min_tev=det["e_min"])
        log(f"{split}: {int((sets[split]['label'] == 1).sum())} photons, "
            f"{int((sets[split]['label'] == 0).sum())} protons after cuts (converged, "
            f"zenith < 40°, E_reco ≥ {det['e_min']:g} TeV)")

    from analysis.ml.baseline import baseline_features, fit_baseline
    from analysis.ml.metrics import auc, roc_curve, survival_table
    from analysis.ml.train import predict, save, train

    t0 = time.perf_counter()
    tm = train(sets["train"], sets["val"], epochs=a.epochs, hit_weight=a.hit_weight,
               time_budget_s=a.time_budget)
    t_train = time.perf_counter() - t0
    log(f"DGCNN trained in {t_train:.0f} s ({tm.card['training']['epochs_run']} epochs, best "
        f"{tm.card['training']['best_epoch']})")
    t0 = time.perf_counter()
    bdt = fit_baseline(sets["train"], classic=a.detector)
    log(f"boosted baseline trained in {time.perf_counter() - t0:.1f} s")

    test = sets["test"]
    predict(tm, {k: v[:256] for k, v in test.items() if hasattr(v, 'shape') and v.ndim})  # compile
    t0 = time.perf_counter()
    out, hitp = predict(tm, test)
    t_inf = time.perf_counter() - t0
    scores = {**det["classic"](test),
              "boosted": bdt.predict_proba(baseline_features(test, a.detector))[:, 1],
              "DGCNN": 1.0 / (1.0 + np.exp(-out[:, 0]))}
    e_tev = 10 ** test["reco_log10_energy"] / 1e3
    rows = survival_table(scores, test["label"], e_tev, test["weight"], bins=det["bins"])
    log(f"\nTest split ({len(e_tev)} events): proton survival at fixed γ efficiency "
        f"(flux-weighted; '<' = 90% upper limit), Q = ε_γ/√ε_p")
    log(f"{'E_reco [TeV]':>13} {'eff':>4} {'n_γ':>5} {'n_p':>5} " +
        " ".join(f"{m:>20} {'Q':>5}" for m in scores))
    for i in range(0, len(rows), len(scores) * 2):
        chunk = rows[i:i + len(scores) * 2]
        for eff in (0.9, 0.7):
            rr = [r for r in chunk if r["eff_gamma"] == eff]
            log(f"{rr[0]['bin']:>13} {eff:>4} {rr[0]['n_gamma']:>5} {rr[0]['n_proton']:>5} " +
                " ".join(f"{fmt_row(r)} {r.get('q', np.nan):5.1f}" for r in rr))
    # the ratio classic / DGCNN survival at 90%
    classic = list(det["classic"](test))
    log(f"\nclassic ({', '.join(classic)}) / DGCNN proton survival at 90% γ efficiency "
        f"(KM2A target ≥ 2 below 100 TeV):")
    for b in sorted({r["bin"] for r in rows}, key=lambda s: float(s.split("-")[0])):
        c = [r for r in rows if r["bin"] == b and r["eff_gamma"] == 0.9]
        d = {r["method"]: r for r in c}
        dg = d["DGCNN"]
        parts = []
        for name in classic:
            cl = d[name]
            ratio = cl["survival"] / dg["survival"] if dg["survival"] > 0 else np.nan
            flag = ("classic<" if cl["upper_limit"] else "") + ("DGCNN<" if dg["upper_limit"] else "")
            parts.append(f"{name} {ratio:6.2f}{' (' + flag + ' limits)' if flag else ''}")
        log(f"  {b:>9} TeV: " + "; ".join(parts))
    aucs = {m: auc(s, test["label"], test["weight"]) for m, s in scores.items()}
    log("AUC (all bins, weighted): " + ", ".join(f"{m} {v:.4f}" for m, v in aucs.items()))
    # noise tagging on the own simulation (per-hit head)
    lab = test["hit_label"]
    known = test["mask"] & (lab >= 0)
    noise_auc = np.nan
    if known.any() and (lab[known] == 0).any():
        noise_auc = auc(hitp[known], lab[known])
        log(f"per-hit head on the test split: AUC signal vs noise hit {noise_auc:.4f} "
            f"({int((lab[known] == 1).sum())} shower hits, {int((lab[known] == 0).sum())} noise hits)")
    n_ev = len(e_tev)
    log(f"inference: {n_ev / t_inf:.0f} events/s ({n_ev} events, batch 256, compile excluded) "
        f"on this machine")
    res = {"rows": rows, "auc": aucs, "noise_hit_auc": noise_auc, "train_s": t_train,
           "inference_events_per_s": n_ev / t_inf, "n_test": n_ev, "card": tm.card,
           "sim_hash": sim_hash()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(res, indent=1, default=float))
    Path(a.out + ".txt").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        for m, s in scores.items():
            eff, rej = roc_curve(s, test["label"], test["weight"], n=400)
            ax.plot(eff, 1 - rej, label=f"{m} (AUC {aucs[m]:.3f})")
        ax.set_yscale("log")
        ax.set_xlabel("γ efficiency")
        ax.set_ylabel("proton survival")
        ax.set_xlim(0.3, 1.0)
        ax.legend()
        ax.set_title(f"{a.detector.upper()} γ/proton, test split")
        fig.tight_layout()
        fig.savefig(a.out + ".png", dpi=110)
    except ImportError:
        pass
    tm.card["metrics"] = {"test_auc": aucs, "noise_hit_auc": noise_auc,
                          "survival_table": rows, "n_test": n_ev}
    tm.card["data"] = {"task": f"{a.detector.upper()} gamma/proton", "sim_hash": sim_hash(),
                       "seeds": "analysis.ml.data.SPLIT_SEEDS (+100 protons, +1000 WCDA)",
                       "n_per_class": {"train": a.n_train, "val": a.n_val, "test": a.n_test},
                       "spectra": "simulated E^-1 (KM2A 10 TeV-1 PeV, WCDA 1-10 TeV), "
                                  "weighted E^-2.6 (gamma), E^-2.7 (proton)",
                       "cuts": f"converged, reco zenith < 40 deg, E_reco >= {det['e_min']:g} TeV",
                       "benchmark": "benchmarks/ml_gamma_hadron.py"}
    save(tm, a.save_model, overwrite=True)
    log(f"model written: {a.save_model}.npz/.json")
    Path(a.out + ".txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
