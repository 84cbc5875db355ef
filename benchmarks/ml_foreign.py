"""The γ/hadron network outside its training distribution (issue 17, item 4): γ efficiency on
LHAASO's G4KM2A gammas and proton survival on CORSIKA throws, next to the own simulation at the
same cut.

    .venv/bin/python benchmarks/ml_foreign.py [--model analysis/ml/models/km2a_gamma_hadron]

1. Own simulation, the reference: photons at zenith 20° (G4KM2A's), E^−1 in 10–400 TeV, the 3/4
   layout (what G4KM2A simulated, docs/g4km2a.md), reconstructed with the photon hypothesis as
   G4KM2A's events are; weighted to G4KM2A's reconstructed-energy distribution
   (``analysis.gamma_hadron.energy_matching_weights``, 4 bins). The cut on each score is the one
   that keeps 90% (and 70%) of these photons.
2. G4KM2A (``KM2AMCTest.root``, 53 photons, real noise hits): the fraction of converged events
   above the same cut, with its binomial error (Wilson-free normal approximation, n = events).
3. CORSIKA: the unthinned 100 TeV proton (``proton_100TeV_3000m_DAT000002-32.gz``, observation
   level 3000 m, 1410 m below LHAASO: an older shower, fewer electrons per muon than at 4410 m) thrown ``--throws`` times on the full layout, and own-simulation
   protons at 100 TeV, zenith 20°: the proton survival at the cut of step 1.

Scores: the DGCNN's gammaness and the classic −log10(Nμ/Ne^0.86). Writes benchmarks/results/ml_foreign.{txt,json}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def reco(records, layout, hypothesis="gamma", batch_size=256):
    from detectors import km2a
    from joint.config import ReconstructionConfig
    from joint.io.schema import to_event_batch
    from lhaaso_joint.api import reconstruct_records

    geo = km2a.Geometry.from_layout(layout)
    batch = to_event_batch(records, km2a=layout, as_jax=False)
    return reconstruct_records(batch, {"km2a": geo}, {"km2a": km2a.Response.nominal(geo)},
                               ReconstructionConfig(hypothesis=hypothesis, detectors=("km2a",)),
                               batch_size=batch_size)


def fixed_zenith(zenith_deg):
    def hook(truth, rng):
        truth["true_zenith"] = np.full_like(truth["true_zenith"], np.radians(zenith_deg))
        return truth
    return hook


def scores(tm, sample):
    from analysis.ml.train import predict

    out, _ = predict(tm, sample)
    nm = np.asarray(sample["nmu_ne"], np.float64)
    return {"DGCNN": 1.0 / (1.0 + np.exp(-out[:, 0].astype(np.float64))),
            "Nmu/Ne^0.86": -np.where(np.isfinite(nm), nm, 5.0)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / "analysis" / "ml" / "models" / "km2a_gamma_hadron"))
    ap.add_argument("--n-own", type=int, default=1500, help="own-simulation photons (and protons)")
    ap.add_argument("--throws", type=int, default=300, help="throws of the CORSIKA proton")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ml_foreign"))
    a = ap.parse_args(argv)

    from analysis.gamma_hadron import energy_matching_weights
    from analysis.ml.data import km2a_sample
    from analysis.ml.metrics import cut_at_efficiency
    from analysis.ml.train import load
    from common import machine
    from detectors.layout import km2a_layout
    from joint.io import read_file
    from joint.simulation import simulate_records
    from lhaaso_joint.demo import shared_data_dir

    lines = []

    def log(s):
        print(s, flush=True)
        lines.append(s)

    tm = load(a.model)
    log(f"# ml_foreign  {time.strftime('%Y-%m-%d %H:%M')}  {machine()}  model {a.model} "
        f"(sim {tm.card.get('data', {}).get('sim_hash', '?')})")
    lay34 = km2a_layout("3/4")
    # G4KM2A
    path = Path(shared_data_dir()) / "lhaaso" / "km2a" / "KM2AMCTest.root"
    g4 = read_file(str(path), km2a=lay34)
    g4c = reco(g4, lay34)
    g4s = km2a_sample(g4, g4c, lay34)
    g4ok = g4s["status"] == 0
    sc_g4 = scores(tm, g4s)
    log(f"G4KM2A: {len(g4ok)} photons, {int(g4ok.sum())} converged")
    # own photons at 20°, 3/4 layout
    t0 = time.perf_counter()
    own, _ = simulate_records(a.n_own, primary="gamma", detectors=("km2a",),
                              log10_energy_range=(4.0, 5.6), seed=4242, km2a_layout=lay34,
                              spectral_index=-1.0, truth_hook=fixed_zenith(20.0))
    t_fit = time.perf_counter()
    oc = reco(own, lay34)
    t_fit = time.perf_counter() - t_fit
    t_pts = time.perf_counter()
    os_ = km2a_sample(own, oc, lay34)
    t_pts = time.perf_counter() - t_pts
    ook = os_["status"] == 0
    t_net = time.perf_counter()
    sc_own = scores(tm, os_)
    t_net = time.perf_counter() - t_net
    n_own = len(ook)
    log(f"throughput on {n_own} events, this machine (compilations included, as a user runs it): "
        f"fit {n_own / t_fit:.0f} events/s, point clouds {n_own / t_pts:.0f} events/s, "
        f"network {n_own / t_net:.0f} events/s")
    res_tp = {"fit_events_per_s": n_own / t_fit, "points_events_per_s": n_own / t_pts,
              "network_events_per_s": n_own / t_net, "n": n_own}
    log(f"own photons (20°, 3/4 layout): {len(ook)} triggered, {int(ook.sum())} converged "
        f"({time.perf_counter() - t0:.0f} s)")
    # weights: own photons to G4KM2A's reconstructed-energy distribution
    lo, hi = float(np.min(g4s["reco_log10_energy"][g4ok])), float(np.max(g4s["reco_log10_energy"][g4ok]))
    edges = np.linspace(lo, hi + 1e-6, 5)
    inr = ook & (os_["reco_log10_energy"] >= lo) & (os_["reco_log10_energy"] <= hi)
    w = energy_matching_weights(g4s["reco_log10_energy"][g4ok], os_["reco_log10_energy"][inr], edges)
    res = {"g4km2a": {"n": int(g4ok.sum())}, "own_gamma": {"n": int(inr.sum())}, "rows": [],
           "throughput": res_tp}
    log(f"\nγ efficiency at the cut that keeps ε of the own photons (energy-matched, "
        f"{int(inr.sum())} events), on G4KM2A's {int(g4ok.sum())} converged photons:")
    log(f"{'score':>14} {'ε own':>6} {'G4KM2A':>14} {'(G4 − own)/σ':>13}")
    cuts = {}
    for name in sc_own:
        for eff in (0.9, 0.7):
            cut = cut_at_efficiency(sc_own[name][inr], eff, w)
            cuts[(name, eff)] = cut
            k = int((sc_g4[name][g4ok] >= cut).sum())
            n = int(g4ok.sum())
            p = k / n
            err = np.sqrt(max(eff * (1 - eff), 1e-9) / n)
            log(f"{name:>14} {eff:6.2f} {p:6.3f} ± {np.sqrt(max(p * (1 - p), 1e-9) / n):.3f} "
                f"{(p - eff) / err:13.2f}")
            res["rows"].append(dict(sample="g4km2a", score=name, eff_own=eff, cut=cut,
                                    eff_g4km2a=p, k=k, n=n, pull=(p - eff) / err))
    # CORSIKA proton throws vs own protons at 100 TeV, 20°
    from joint.io.corsika import simulate_corsika

    cpath = Path(shared_data_dir()) / "corsika" / "proton_100TeV_3000m_DAT000002-32.gz"
    layf = km2a_layout("full")
    t0 = time.perf_counter()
    crec, _, _ = simulate_corsika([str(cpath)], a.throws, layout=layf, core_rmax=400.0, seed=7)
    cc = reco(crec, layf)
    cs = km2a_sample(crec, cc, layf)
    cok = cs["status"] == 0
    sc_c = scores(tm, cs)
    prot, _ = simulate_records(min(a.n_own, 800), primary="proton", detectors=("km2a",),
                               log10_energy_range=(5.0, 5.0), seed=4243, km2a_layout=layf,
                               truth_hook=fixed_zenith(20.0))
    pc = reco(prot, layf)
    ps = km2a_sample(prot, pc, layf)
    pok = ps["status"] == 0
    sc_p = scores(tm, ps)
    log(f"\nCORSIKA 100 TeV proton (3000 m): {len(cok)} triggered throws of {a.throws}, "
        f"{int(cok.sum())} converged; own 100 TeV protons (20°): {int(pok.sum())} converged "
        f"({time.perf_counter() - t0:.0f} s)")
    log(f"proton survival at the own-photon cuts above (full layout events, the 3/4-layout cut):")
    log(f"{'score':>14} {'ε_γ':>5} {'CORSIKA':>18} {'own':>18}")
    for name in sc_c:
        for eff in (0.9, 0.7):
            cut = cuts[(name, eff)]
            out = []
            for sc, ok in ((sc_c[name], cok), (sc_p[name], pok)):
                n = int(ok.sum())
                k = int((sc[ok] >= cut).sum())
                f = k / max(n, 1)
                out.append((f, np.sqrt(max(f * (1 - f), 1e-9) / max(n, 1)), k, n))
            txt = [f"{f:.3f} ± {e:.3f} ({k}/{n})" if k else f"< {2.3 / max(n, 1):.3f} (0/{n})"
                   for f, e, k, n in out]
            log(f"{name:>14} {eff:5.2f} {txt[0]:>18} {txt[1]:>18}")
            res["rows"].append(dict(sample="corsika_proton", score=name, eff_own=eff, cut=cut,
                                    survival_corsika=out[0][0], k_corsika=out[0][2],
                                    n_corsika=out[0][3], survival_own=out[1][0],
                                    k_own=out[1][2], n_own=out[1][3]))
    # classic variable distributions, for the record
    q = lambda x: np.percentile(x, [16, 50, 84])
    log(f"\nlog10(Nμ/Ne^0.86) 16/50/84%: CORSIKA protons {np.round(q(cs['nmu_ne'][cok]), 2)}, own "
        f"protons {np.round(q(ps['nmu_ne'][pok]), 2)}, G4KM2A photons "
        f"{np.round(q(g4s['nmu_ne'][g4ok]), 2)}, own photons {np.round(q(os_['nmu_ne'][ook]), 2)}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(res, indent=1, default=float))
    Path(a.out + ".txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
