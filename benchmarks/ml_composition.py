"""Composition network (issue 17): light (H+He) selection at 90% purity and ln A regression at
0.3–3 PeV, DGCNN on KM2A hits + WFCTA image + Xmax vs the notebook's Fisher discriminant
(joint Xmax + log10(Nμ/Ne^0.86)) on the same test events.

    .venv/bin/python benchmarks/ml_composition.py                       # the measured run: ~1 h on 2 cores
    .venv/bin/python benchmarks/ml_composition.py --stage joint &       # optional: joint fits in a 2nd process
                                                  # (then the main run with --wait-joint 3000)
    .venv/bin/python benchmarks/ml_composition.py --quick --no-joint    # smoke run, tiny samples, no Fisher

Samples (``analysis.ml.composition_data``): KM2A + WFCTA simulated together
(``analysis.composition.simulate_sample``: H, He, CNO, Fe, log10(E/GeV) 5.5–6.5 E^−1, flux
weights E^−2.7 with the 30/30/15/25% mix), one seed per split (train / val / test). Every event
is fitted with KM2A alone (hadron hypothesis; its fitted shower gives the point cloud and the six
KM2A event features; the WFCTA image parameters are computed at its geometry). The joint
KM2A+WFCTA fit (``analysis.composition.method_configs()["joint"]``, the notebook's) is run on the
first ``--n-joint-test`` test events per mass (simulation order): these are the events of the
comparison (the Fisher discriminant's Xmax and Nμ/Ne); with ``--n-joint-train`` > 0 also on the
training split's first events per mass (the Fisher's training sample), else the Fisher is
cross-fitted on the comparison events (two halves per mass, each selected with the discriminant
and cut trained on the other: ``fisher_selection``).

Network Xmax input (``--xmax-input``): ``km2a`` (default, the shipped model): the KM2A-alone
fit's Xmax, available for every split at no extra cost; ``wfcta``: the Xmax of the WFCTA-alone
fit with the geometry of the KM2A fit (``method_configs()["wfcta"]``, ~0.25 s per event, run on
every split; not measured); ``none``. The joint fit is too slow here (1–3 s per event and ~20
min of compilation on the shared 2-core machine) for a training sample of useful size, so the
network never sees the joint fit's Xmax; the Fisher discriminant does.

Selection: the network's cut (``p_light``) is the lowest threshold reaching 90% purity on the
validation split; the Fisher's on its training events (as ``analysis.composition`` does with its
training half). Both applied to the comparison events of the test split: efficiency N_light,sel / N_light,all with
N_light,all every triggered light event of the test split (failed fits and events without a
usable image count as lost), binomial errors with effective counts of the flux weights, per
true-energy bin (``TABLE_EDGES``) and overall; also on the hybrid (KM2A and WFCTA triggered)
events only, as the notebook's table. ln A: median bias, 68% half-width and std of
ln A_pred − ln A per mass (test split, converged KM2A fits).

Writes benchmarks/results/ml_composition.{txt,json} and the model
analysis/ml/models/km2a_composition.{npz,json}. Samples cache in benchmarks/results/ml_cache/.
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

TARGET = "1 − ε_net ≤ 0.5 (1 − ε_Fisher)"


#: files whose change makes new cached samples (beside ``ml_gamma_hadron.SIM_SOURCES``)
CACHE_SOURCES = ("analysis/composition.py", "analysis/observables.py", "analysis/hillas.py",
                 "detectors/wfcta.py", "analysis/ml/composition_data.py")


def _cache_key(split, n, seed):
    import hashlib

    from ml_gamma_hadron import sim_hash

    h = hashlib.sha1(sim_hash().encode())
    for f in CACHE_SOURCES:
        if (ROOT / f).exists():
            h.update((ROOT / f).read_bytes())
    return f"comp_{split}_n{n}_s{seed}_{h.hexdigest()[:10]}"


def build_split(split, n_per_mass, cache: Path, log, setup, fit_wfcta=False):
    """Simulate a split (its own seed), fit KM2A alone, WFCTA image parameters at the KM2A fit:
    the sample of ``analysis.ml.composition_data.composition_sample`` plus the KM2A fit's Xmax
    and the image columns, cached as npz."""
    from analysis.composition import MASSES
    from analysis.ml import composition_data as CD

    seed = CD.SPLIT_SEEDS[split]
    path = cache / f"{_cache_key(split, n_per_mass, seed)}{'_w' if fit_wfcta else ''}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            log(f"{split}: cached {path.name}")
            return {k: z[k] for k in z.files}
    t0 = time.perf_counter()
    rec, thrown = CD.simulate_split(n_per_mass, seed, layouts=setup[0])
    t_sim = time.perf_counter() - t0
    methods = ("km2a", "wfcta") if fit_wfcta else ("km2a",)
    outs, sec, img = CD.reconstruct_split(rec, methods=methods, setup=setup)
    n = len(rec["event_id"])
    s = CD.composition_sample(rec, outs["km2a"], img, layout=setup[0]["km2a"])
    out = dict(s)
    out["km2a_reco_xmax"] = np.asarray(outs["km2a"]["reco_xmax"], np.float64)
    if fit_wfcta:
        for k in ("reco_xmax", "reco_log10_energy", "status", "wfcta_size"):
            out[f"wfcta_{k}"] = np.asarray(outs["wfcta"][k], np.float64)
    for k in ("hillas_size", "hillas_length", "hillas_width", "hillas_dist", "x_dist",
              "wfcta_size"):
        out[f"img_{k}"] = np.asarray(img[k], np.float64)
    out["thrown"] = np.array([thrown[int(m)] for m in MASSES])
    out["timing_s"] = np.array([t_sim, sec["km2a"], sec.get("wfcta", 0.0)])
    log(f"{split}: {n} events ({n_per_mass} per mass, seed {seed}, thrown "
        f"{out['thrown'].tolist()}): simulate {t_sim:.0f} s, KM2A fit + image {sec['km2a']:.0f} s"
        + (f", WFCTA fit (KM2A geometry) {sec['wfcta']:.0f} s" if fit_wfcta else ""))
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)
    return out


JOINT_KEYS = ("reco_xmax", "reco_log10_energy", "status", "nmu", "ne", "wfcta_size")


def joint_path(cache, split, n_per_mass, n_joint):
    from analysis.ml.composition_data import SPLIT_SEEDS

    return cache / f"{_cache_key(split, n_per_mass, SPLIT_SEEDS[split])}_joint{n_joint}.npz"


def joint_split(split, n_per_mass, n_joint, cache: Path, log, setup, wait_s=0.0):
    """The joint KM2A+WFCTA fit (the notebook's ``method_configs()["joint"]``) of the first
    ``n_joint`` events of each mass of a split (simulation order, independent of any outcome);
    the split is simulated again from its seed (deterministic). Columns :data:`JOINT_KEYS`
    (``joint_*``; NaN / status −1 where not fitted), ``has_joint``; cached. With ``wait_s`` > 0,
    waits that long for another process to write the cache before computing it here."""
    from analysis.composition import MASSES, reconstruct_sample
    from analysis.ml import composition_data as CD

    path = joint_path(cache, split, n_per_mass, n_joint)
    t_wait = time.perf_counter()
    while not path.exists() and time.perf_counter() - t_wait < wait_s:
        time.sleep(10.0)
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            log(f"{split}: joint fits cached {path.name}")
            return {k: z[k] for k in z.files}
    t0 = time.perf_counter()
    rec, _ = CD.simulate_split(n_per_mass, CD.SPLIT_SEEDS[split], layouts=setup[0])
    n = len(rec["event_id"])
    a = np.rint(np.asarray(rec["true_mass_number"], float)).astype(int)
    out = {f"joint_{k}": np.full(n, np.nan) for k in JOINT_KEYS}
    out["joint_status"] = np.full(n, -1, np.int32)
    has = np.zeros(n, bool)
    for m in MASSES:
        has[np.nonzero(a == m)[0][:n_joint]] = True
    sel = np.nonzero(has)[0]
    t1 = time.perf_counter()
    if sel.size:
        sub = {k: v[sel] for k, v in rec.items()}
        jo, _ = reconstruct_sample(sub, methods=("joint",), setup=setup,
                                   progress=lambda msg: log(f"{split}: {msg}"))
        for k in JOINT_KEYS:
            if k in jo["joint"]:
                out[f"joint_{k}"][sel] = np.asarray(jo["joint"][k])
    out["has_joint"] = has
    out["true_log10_energy"] = np.asarray(rec["true_log10_energy"], np.float64)
    out["timing_s"] = np.array([t1 - t0, time.perf_counter() - t1])
    log(f"{split}: joint fit of {sel.size} events in {time.perf_counter() - t1:.0f} s")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **out)
    tmp.replace(path)
    return out


def merge_joint(s, j):
    """The sample with the joint columns of the same events (checked on the true energies)."""
    if not np.array_equal(np.asarray(s["true_log10_energy"]), j["true_log10_energy"]):
        raise RuntimeError("the joint fits are not of the same events (simulation not "
                           "reproduced from its seed)")
    out = dict(s)
    for k, v in j.items():
        if k.startswith("joint_") or k == "has_joint":
            out[k] = v
    out["joint_timing_s"] = j["timing_s"]
    return out


def with_xmax_input(s, source):
    """The sample with its Xmax features set from ``source`` ('km2a': the KM2A fit's Xmax where
    the KM2A fit converged; 'wfcta': the WFCTA-alone fit's (geometry of the KM2A fit) where it
    converged with an image; 'joint': the joint fit's where it converged with an image)."""
    from analysis.ml.composition_data import XMAX_FEATURES, COMPOSITION_EVENT_FEATURES, \
        xmax_features

    s = dict(s)
    if source == "km2a":
        x, ok = s["km2a_reco_xmax"], s["status"] == 0
    elif source == "wfcta":
        x = s["wfcta_reco_xmax"]
        ok = (s["wfcta_status"] == 0) & (np.nan_to_num(s["wfcta_wfcta_size"]) > 0)
    elif source == "joint":
        x = s["joint_reco_xmax"]
        ok = (s["joint_status"] == 0) & (np.nan_to_num(s["joint_wfcta_size"]) > 0)
    else:
        x, ok = np.full(len(s["label"]), np.nan), np.zeros(len(s["label"]), bool)
    ev = s["event"].copy()
    i0 = COMPOSITION_EVENT_FEATURES.index(XMAX_FEATURES[0])
    ev[:, i0:i0 + 2] = xmax_features(x, ok)
    s["event"] = ev
    s["xmax_source"] = np.array(source)
    return s


def _fisher_columns(s):
    """(variables (n, 2), joint log10 E, analysed mask) of the notebook's Fisher discriminant:
    joint Xmax and log10(Nμ/Ne^0.86) of the joint fit, on the joint-fitted hybrid events whose fit
    converged with an image."""
    from analysis.composition import nmu_ne_variable

    hyb = s["present_km2a"] & s["present_wfcta"]
    ok = (s["has_joint"] & hyb & (s["joint_status"] == 0)
          & np.isfinite(s["joint_reco_xmax"]) & (np.nan_to_num(s["joint_wfcta_size"]) > 0))
    nmn = nmu_ne_variable(s["joint_nmu"], s["joint_ne"])
    ok &= np.isfinite(nmn) & np.isfinite(s["joint_reco_log10_energy"])
    x = np.c_[np.nan_to_num(s["joint_reco_xmax"]), np.nan_to_num(nmn)]
    return x, np.nan_to_num(s["joint_reco_log10_energy"]), ok


def fisher_selection(test_s, purity, train_s=None, split_seed=0):
    """The notebook's Fisher discriminant (``analysis.composition.FisherDiscriminant`` of joint
    Xmax and log10(Nμ/Ne^0.86), each centred on a line in the joint fit's log10 E, flux weights)
    and its light selection on ``test_s``: trained, and its cut tuned to ``purity``
    (``threshold_at_purity``), on ``train_s``'s analysed events; with ``train_s`` None,
    cross-fitted on the test events themselves: two random halves per mass
    (``analysis.composition.split_halves``), each half selected with the discriminant and cut of
    the other half. Returns (chosen (n,) bool, score − cut (n,), NaN where not analysed, info)."""
    from analysis.composition import FisherDiscriminant, split_halves, threshold_at_purity

    x, lg, ok = _fisher_columns(test_s)
    n = len(ok)
    light = test_s["label"].astype(bool)
    w = test_s["weight"]
    chosen = np.zeros(n, bool)
    rel = np.full(n, np.nan)
    info = {"folds": []}
    if train_s is not None:
        xt, lgt, okt = _fisher_columns(train_s)
        folds = [(xt, lgt, okt, train_s["label"].astype(bool), train_s["weight"], ok)]
        info["trained_on"] = f"training split, {int(okt.sum())} joint-fitted events"
    else:
        half = split_halves(test_s["true_mass_number"], split_seed)
        folds = [(x, lg, ok & h, light, w, ok & ~h) for h in (half, ~half)]
        info["trained_on"] = ("cross-fitted on the joint-fitted test events: two halves per mass, "
                              "each selected with the other's discriminant and cut")
    for xt, lgt, okt, lt, wt, apply in folds:
        try:
            fis = FisherDiscriminant.fit(xt[okt], lgt[okt], lt[okt], wt[okt])
        except ValueError as err:  # no joint fits (smoke run)
            info["error"] = str(err)
            continue
        thr = threshold_at_purity(fis.score(xt[okt], lgt[okt]), lt[okt], purity, wt[okt])
        sc = fis.score(x, lg) - thr
        chosen[apply] = sc[apply] >= 0 if np.isfinite(thr) else False
        rel[apply] = sc[apply]
        info["folds"].append({"n_train": int(okt.sum()), "n_applied": int(apply.sum()),
                              "w": fis.w.tolist(), "centring": fis.centring.tolist(),
                              "offset": fis.offset, "cut": thr})
    return chosen, rel, info


def selection_table(chosen, s, population, edges):
    """``analysis.composition.selection_counts`` of the selection ``chosen`` (bool) on
    ``population`` per true-energy bin and overall (flux weights)."""
    from analysis.composition import selection_counts

    light = s["label"].astype(bool)
    chosen = np.asarray(chosen, bool)
    lg = s["true_log10_energy"]
    nb = len(edges) - 1
    rows = []
    for i in range(nb):
        b = (lg >= edges[i]) & ((lg < edges[i + 1]) if i < nb - 1 else (lg <= edges[i + 1]))
        rows.append(selection_counts(chosen, light, population & b, s["weight"]))
    return {"bins": rows, "all": selection_counts(chosen, light, population, s["weight"])}


def lost_ratio(e_net, e_f, err_net, err_f):
    """(1 − ε_net) / (1 − ε_F) and a first-order error (errors treated as independent)."""
    ln, lf = 1.0 - e_net, 1.0 - e_f
    if not (np.isfinite(ln) and np.isfinite(lf)) or lf <= 0:
        return float("nan"), float("nan")
    r = ln / lf
    err = r * np.sqrt((err_net / max(ln, 1e-9)) ** 2 + (err_f / lf) ** 2)
    return float(r), float(err)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-train", type=int, default=400, help="events per mass, training split")
    ap.add_argument("--n-val", type=int, default=125)
    ap.add_argument("--n-test", type=int, default=125)
    ap.add_argument("--n-joint-test", type=int, default=60,
                    help="joint fits per mass on the test split: the events of the comparison")
    ap.add_argument("--n-joint-train", type=int, default=40,
                    help="joint fits per mass on the training split (Fisher training); 0: the "
                         "Fisher is cross-fitted on the joint-fitted test events (two halves)")
    ap.add_argument("--xmax-input", default="km2a", choices=("km2a", "wfcta", "none"))
    ap.add_argument("--stage", default="all", choices=("all", "joint"),
                    help="joint: only the joint fits (test, then the training subset) into the "
                         "cache, for a second process running beside the main one")
    ap.add_argument("--wait-joint", type=float, default=0.0,
                    help="seconds to wait for the joint fits of a --stage joint process")
    ap.add_argument("--xmax-dropout", type=float, default=0.15,
                    help="fraction of training events whose Xmax input is removed (flag 0), so "
                         "that the network also works where no Xmax is present")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--learning-rate", type=float, default=2e-3)
    ap.add_argument("--time-budget", type=float, default=900.0, help="training wall limit [s]")
    ap.add_argument("--purity", type=float, default=0.90)
    ap.add_argument("--quick", action="store_true", help="tiny samples (a smoke run)")
    ap.add_argument("--no-save-model", action="store_true")
    ap.add_argument("--load-model", default=None,
                    help="skip training: evaluate this saved model (trained by an earlier run "
                         "on the same training split)")
    ap.add_argument("--no-joint", action="store_true",
                    help="smoke runs: no joint fits (the Fisher discriminant is not evaluated)")
    ap.add_argument("--cache", default=str(ROOT / "benchmarks" / "results" / "ml_cache"))
    ap.add_argument("--save-model", default=str(ROOT / "analysis" / "ml" / "models" / "km2a_composition"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ml_composition"))
    a = ap.parse_args(argv)
    if a.quick:
        a.n_train, a.n_val, a.n_test, a.n_joint_test, a.epochs = 16, 8, 8, 4, 2
        a.batch_size = 16
        a.out += "_quick"
        a.save_model += "_quick"
    from analysis import composition as C
    from analysis.ml.composition_data import COMPOSITION_EVENT_FEATURES
    from analysis.ml.dgcnn import DGCNNConfig
    from analysis.ml.train import predict, save, train
    from common import machine
    from joint.config import detector_setup
    from ml_gamma_hadron import sim_hash

    lines = []

    def log(s=""):
        print(s, flush=True)
        lines.append(s)

    t_start = time.perf_counter()
    log(f"# ml_composition  {time.strftime('%Y-%m-%d %H:%M')}  {machine()}  sim {sim_hash()}")
    log(f"# per mass: train {a.n_train} (joint fits {a.n_joint_train}), val {a.n_val}, test "
        f"{a.n_test} (joint fits {a.n_joint_test}); network Xmax input: {a.xmax_input}")
    setup = detector_setup(("km2a", "wfcta"))
    cache = Path(a.cache)
    if a.stage == "joint":
        for split, n, nj in (("test", a.n_test, a.n_joint_test),
                             ("train", a.n_train, a.n_joint_train)):
            if nj > 0:
                joint_split(split, n, nj, cache, log, setup)
        return
    raw = {split: build_split(split, n, cache, log, setup, a.xmax_input == "wfcta")
           for split, n in (("train", a.n_train), ("val", a.n_val), ("test", a.n_test))}
    sets = {k: with_xmax_input(v, a.xmax_input) for k, v in raw.items()}
    # the network trains on the events whose KM2A fit converged (the point cloud is relative to
    # it); the others are never selected
    fit_ok = {k: v["status"] == 0 for k, v in sets.items()}
    from analysis.ml.composition_data import subset

    tr, va = subset(sets["train"], fit_ok["train"]), subset(sets["val"], fit_ok["val"])
    if a.xmax_dropout > 0:
        from analysis.ml.composition_data import XMAX_FEATURES

        i0 = COMPOSITION_EVENT_FEATURES.index(XMAX_FEATURES[0])
        drop = np.random.default_rng(17).random(len(tr["label"])) < a.xmax_dropout
        tr["event"] = tr["event"].copy()
        tr["event"][drop, i0:i0 + 2] = 0.0
        log(f"Xmax input removed (flag 0) for {int(drop.sum())} training events "
            f"(--xmax-dropout {a.xmax_dropout})")
    log(f"training on {len(tr['label'])} events ({int(tr['label'].sum())} light), validation "
        f"{len(va['label'])}")
    cfg = DGCNNConfig(n_features=tr["points"].shape[-1], n_event=len(COMPOSITION_EVENT_FEATURES),
                      n_regress=1)
    t0 = time.perf_counter()
    if a.load_model:
        from analysis.ml.train import load

        tm = load(a.load_model)
        log(f"model loaded from {a.load_model} (trained by an earlier run)")
    else:
        tm = train(tr, va, cfg, epochs=a.epochs, batch_size=a.batch_size,
                   learning_rate=a.learning_rate, regress="ln_a", time_budget_s=a.time_budget,
                   progress=False)
        if not a.no_save_model:  # written now, the card completed below
            save(tm, a.save_model, overwrite=True)
    t_train = time.perf_counter() - t0
    hist = tm.card["training"]["history"]
    log(f"DGCNN trained in {tm.card['training']['wall_s']:.0f} s: {len(hist)} epochs, best "
        f"(validation loss) {tm.card['training']['best_epoch']}; val loss per epoch "
        + " ".join(f"{h['val_loss']:.3f}" for h in hist))

    def net_scores(s, ok):
        out, _ = predict(tm, s, batch_size=64)
        p = 1.0 / (1.0 + np.exp(-out[:, 0].astype(np.float64)))
        return np.where(ok, p, np.nan), np.where(ok, out[:, 1].astype(np.float64), np.nan)

    def no_joint(split):
        n_ev = len(sets[split]["label"])
        j = {f"joint_{k}": np.full(n_ev, np.nan) for k in JOINT_KEYS}
        j.update(joint_status=np.full(n_ev, -1), has_joint=np.zeros(n_ev, bool),
                 true_log10_energy=sets[split]["true_log10_energy"], timing_s=np.zeros(2))
        return j

    sets["test"] = merge_joint(sets["test"], no_joint("test") if a.no_joint else joint_split(
        "test", a.n_test, a.n_joint_test, cache, log, setup, a.wait_joint))
    use_train = a.n_joint_train > 0 and not a.no_joint
    if use_train:
        sets["train"] = merge_joint(sets["train"], joint_split(
            "train", a.n_train, a.n_joint_train, cache, log, setup, a.wait_joint))
    p_val, _ = net_scores(sets["val"], fit_ok["val"])
    t0 = time.perf_counter()
    p_test, lna_test = net_scores(sets["test"], fit_ok["test"])
    t_inf = time.perf_counter() - t0
    val, test = sets["val"], sets["test"]
    vok = np.isfinite(p_val)
    cut_net = C.threshold_at_purity(p_val[vok], val["label"][vok].astype(bool), a.purity,
                                    val["weight"][vok])
    net_chosen = np.isfinite(p_test) & (p_test >= cut_net)
    f_chosen, f_rel, f_info = fisher_selection(test, a.purity,
                                               sets["train"] if use_train else None)
    log(f"cuts at {a.purity:.2f} purity: network p_light ≥ {cut_net:.3f} (validation split, "
        f"{int(vok.sum())} events); Fisher ({f_info['trained_on']}): "
        + "; ".join(f"cut {f['cut']:.3f}, w {np.round(f['w'], 4).tolist()}, {f['n_train']} "
                    f"training events" for f in f_info["folds"]))
    edges = C.TABLE_EDGES
    n = len(test["label"])
    cmp = test["has_joint"] if not a.no_joint else np.ones(n, bool)
    hybrid = test["present_km2a"] & test["present_wfcta"]
    pops = {"triggered": cmp, "hybrid": cmp & hybrid}
    light = test["label"].astype(bool)
    f_ok = np.isfinite(f_rel)
    res = {"cuts": {"network": cut_net, "fisher": f_info}, "populations": {}}
    log("")
    log(f"## Light (H+He) selection on the test split, cut tuned to {a.purity:.2f} purity "
        f"(network: validation split; Fisher: see above), flux-weighted; efficiency relative "
        f"to ALL light events of the population (failed fits, no image: lost); binomial errors")
    log(f"comparison events: the first {a.n_joint_test} test events per mass (simulation order), "
        f"{int(cmp.sum())}; analysed: network (KM2A fit converged) "
        f"{int((fit_ok['test'] & cmp).sum())}, Fisher (joint fit converged, image, hybrid) "
        f"{int((f_ok & cmp).sum())}")
    for pname, pop in pops.items():
        tab = {"network": selection_table(net_chosen, test, pop, edges),
               "fisher": selection_table(f_chosen, test, pop, edges)}
        # the same events, interpolated ROC on the test events (no cut transfer)
        roc = {}
        for m, sc in (("network", p_test), ("fisher", f_rel)):
            e = C.efficiency_at_purity(sc[pop], light[pop], a.purity, test["weight"][pop])
            roc[m] = float(e)
        tab["roc_eff_at_purity"] = roc
        res["populations"][pname] = tab
        log("")
        log(f"### population: {pname} test events ({int(pop.sum())}, {int((pop & light).sum())} "
            "light)")
        log(f"{'log10 E':>11} | {'n_L':>4} | {'network purity':>15} {'efficiency':>14} | "
            f"{'Fisher purity':>15} {'efficiency':>14} | {'(1-e_net)/(1-e_F)':>18} | target")
        labs = [f"{edges[i]:.2f}-{edges[i + 1]:.2f}" for i in range(len(edges) - 1)] + \
            [f"{edges[0]:.2f}-{edges[-1]:.2f}"]
        rows_n = tab["network"]["bins"] + [tab["network"]["all"]]
        rows_f = tab["fisher"]["bins"] + [tab["fisher"]["all"]]
        tab["lost_ratio"] = []
        for lab, rn, rf in zip(labs, rows_n, rows_f):
            r, re = lost_ratio(rn["efficiency"], rf["efficiency"], rn["efficiency_err"],
                               rf["efficiency_err"])
            met = "met" if (np.isfinite(r) and r <= 0.5) else "missed"
            tab["lost_ratio"].append({"bin": lab, "ratio": r, "error": re, "met": met == "met"})
            log(f"{lab:>11} | {rn['n_light_all']:4d} | {rn['purity']:6.3f} ± {rn['purity_err']:.3f} "
                f"{rn['efficiency']:6.3f} ± {rn['efficiency_err']:.3f} | {rf['purity']:6.3f} ± "
                f"{rf['purity_err']:.3f} {rf['efficiency']:6.3f} ± {rf['efficiency_err']:.3f} | "
                f"{r:8.2f} ± {re:5.2f} | {met}")
        log(f"  interpolated ROC on these events (no cut transfer): efficiency at "
            f"{a.purity:.2f} purity network {roc['network']:.3f}, Fisher {roc['fisher']:.3f}")
    # the network alone on the whole test split
    tab_all = selection_table(net_chosen, test, np.ones(n, bool), edges)
    res["populations"]["network_whole_test"] = tab_all
    r = tab_all["all"]
    log(f"\nnetwork on the whole test split ({n} events, {int(light.sum())} light): purity "
        f"{r['purity']:.3f} ± {r['purity_err']:.3f}, efficiency {r['efficiency']:.3f} ± "
        f"{r['efficiency_err']:.3f}")
    # ln A regression
    log("")
    log("## ln A regression on the test split (converged KM2A fits): ln A_pred − ln A")
    log(f"{'mass':>4} {'ln A':>5} | {'n':>4} {'bias (median)':>13} {'68% half':>9} {'std':>6} "
        f"{'mean pred':>9}")
    res["ln_a"] = {}
    a_true = np.rint(test["true_mass_number"]).astype(int)
    for m in C.MASSES:
        sel = (a_true == m) & np.isfinite(lna_test)
        st = C.robust_stats(lna_test[sel] - np.log(m))
        st["mean_pred"] = float(np.mean(lna_test[sel])) if sel.any() else float("nan")
        res["ln_a"][C.MASS_NAMES[m]] = st
        log(f"{C.MASS_NAMES[m]:>4} {np.log(m):5.2f} | {st['n']:4d} {st['median']:+13.2f} "
            f"{st['half68']:9.2f} {st['std']:6.2f} {st['mean_pred']:9.2f}")
    allsel = np.isfinite(lna_test)
    res["ln_a"]["all"] = C.robust_stats(lna_test[allsel] - np.log(a_true[allsel]))
    log(f"{'all':>4} {'':5s} | {res['ln_a']['all']['n']:4d} {res['ln_a']['all']['median']:+13.2f} "
        f"{res['ln_a']['all']['half68']:9.2f} {res['ln_a']['all']['std']:6.2f}")
    ov = res["populations"]["triggered"]["lost_ratio"][-1]
    verdict = "met" if ov["met"] else "missed"
    log("")
    log(f"target {TARGET}, 0.3–3 PeV, all triggered light events: ratio {ov['ratio']:.2f} ± "
        f"{ov['error']:.2f} → {verdict}")
    log(f"inference {n / max(t_inf, 1e-9):.0f} events/s (batch 64, test split, compile "
        f"included); training {t_train:.0f} s; total {time.perf_counter() - t_start:.0f} s")
    res.update({"target": TARGET, "verdict": verdict, "xmax_input": a.xmax_input,
                "n_per_mass": {"train": a.n_train, "val": a.n_val, "test": a.n_test,
                               "joint_test": a.n_joint_test, "joint_train": a.n_joint_train},
                "timing_s": {k: v["timing_s"].tolist() for k, v in raw.items()},
                "joint_timing_s": {k: sets[k]["joint_timing_s"].tolist()
                                   for k in ("train", "test") if "joint_timing_s" in sets[k]},
                "thrown": {k: v["thrown"].tolist() for k, v in raw.items()},
                "train_s": t_train, "card": tm.card, "sim_hash": sim_hash(),
                "fisher": f_info})
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(res, indent=1, default=float))
    Path(a.out + ".txt").write_text("\n".join(lines) + "\n")
    if not a.no_save_model:
        tm.card["data"] = {
            "task": "KM2A(+WFCTA image, Xmax) composition: light (H+He) logit 0, ln A regression",
            "samples": "analysis.ml.composition_data / analysis.composition.simulate_sample: "
                       "H, He, CNO, Fe, log10(E/GeV) 5.5-6.5 E^-1, weighted E^-2.7 mix "
                       "30/30/15/25%, KM2A+WFCTA, directions within 5 deg of a telescope axis, "
                       "cores within 300 m of the telescopes",
            "seeds": "analysis.ml.composition_data.SPLIT_SEEDS (+ mass index)",
            "n_per_mass": res["n_per_mass"], "sim_hash": sim_hash(),
            "event_features": list(COMPOSITION_EVENT_FEATURES),
            "event_features_function": "analysis.ml.composition_data.classify_event_features "
                                       "(records read with KM2A+WFCTA layouts, KM2A-alone reco "
                                       "columns) -> composition_event_features",
            "xmax_input": a.xmax_input + {
                "km2a": " (KM2A-alone fit's Xmax, flag 1 where it converged)",
                "wfcta": " (WFCTA-alone fit's Xmax, geometry of the KM2A fit, analysis."
                         "composition.method_configs()['wfcta']; flag 1 where it converged with "
                         "an image)"}.get(a.xmax_input, ""),
            "image_input": "WFCTA observables at the KM2A fit's geometry "
                           "(composition_data.wfcta_image_columns)",
            "cuts": "training/validation: KM2A fit converged (status 0); selection cut p_light "
                    f">= {cut_net:.4f} for {a.purity:.2f} purity (validation split)",
            "benchmark": "benchmarks/ml_composition.py"}
        tm.card["metrics"] = {"test_selection": res["populations"], "ln_a": res["ln_a"],
                              "verdict": verdict, "p_light_cut_90": cut_net}
        save(tm, a.save_model, overwrite=True)
        log(f"model written: {a.save_model}.npz/.json")
        Path(a.out + ".txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
