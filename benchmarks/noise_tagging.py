"""Noise-hit tagging on LHAASO's G4KM2A sample (issue 17): ROC of the likelihood's posterior, the
classic time window and (``--network PATH``) a network, and the angular resolution when the fit
drops the hits a tagger calls noise.

    LHAASO_SHARED_DATA=../shared/data .venv/bin/python benchmarks/noise_tagging.py
    -> benchmarks/results/noise_tagging.txt, .json, _roc.png   (docs/noise_tagging.md)

Sample: KM2AMCTest.root (53 triggered gammas, 10–388 TeV, zenith 20°), read with
``read_lhevent(hit_labels=True)``: every pulse labelled by ``np`` (−1 noise). The hits scored are
the pulses the pipeline keeps (largest charge per channel) at or above the fit's threshold (ED
8 PE, MD 22.5 PE), on live channels of the 3/4 layout G4KM2A simulated (docs/g4km2a.md).

Reconstruction as ``benchmarks/g4km2a_table.py``: photon hypothesis, nominal response, the
pipeline's default configuration. Taggers are evaluated at the fit with all hits ("today"); then
the hits a tagger calls noise are made invalid channels (neither their hit nor their emptiness
enters: ``to_event_batch(valid=...)``) and the events are refitted. Working points:
  - likelihood: P(shower) < 0.5 (the Bayes decision of the model's own prior odds; no truth
    used) and the threshold of 99% ED signal efficiency on this sample (chosen WITH the truth
    labels of these same events: an optimistic, stated working point);
  - time window: the classic [−30, +50] ns of the fitted front (no truth used; no radius cut,
    see the .txt for the r < 200 m variant's ROC point) and the 99%-efficiency |Δt| cut;
  - oracle: every true noise hit dropped (the best any tagger can do for the fit).
Angular resolution: 68% containment against the file's truth (Phi + 180°) and the declination
convention (Phi + 180° + 1.429°, docs/g4km2a.md).

Own simulation: gammas 10–300 TeV at zenith 20° from ``simulate_records(..., hit_labels=True)``
when that option exists (another engineer adds it); otherwise reported as pending.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import time

import numpy as np

from common import ROOT, angle_deg, machine

RESULTS = ROOT / "benchmarks" / "results"
DECLINATION_DEG = 1.429
GROUPS = ("km2a_ed", "km2a_md")


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def tagger_scores(out, batch, geo, resp, physics):
    """Per group (B, n) scores of the likelihood (log odds) and the time window (−|Δt − 10 ns|,
    and with r < 200 m) at the fitted showers, plus the classic cuts' keep masks."""
    import jax
    import jax.numpy as jnp

    from analysis import noise
    from detectors.block import ChannelBlock

    shower = noise.shower_from_columns(out)
    ed = ChannelBlock(*[jnp.asarray(x) for x in batch.blocks["km2a_ed"]])
    md = ChannelBlock(*[jnp.asarray(x) for x in batch.blocks["km2a_md"]])
    ax = (0, 0, 0, None, None)
    lo = jax.jit(jax.vmap(lambda s, e, m, g, r: noise.signal_log_odds(s, e, m, g, r, physics),
                          in_axes=ax))(shower, ed, md, geo, resp)
    tw = jax.jit(jax.vmap(lambda s, e, m, g, r: noise.time_window_signal(s, e, m, g, r, physics),
                          in_axes=ax))(shower, ed, md, geo, resp)
    twr = jax.jit(jax.vmap(lambda s, e, m, g, r: noise.time_window_signal(
        s, e, m, g, r, physics, r_max=noise.CLASSIC_R_MAX_M), in_axes=ax))(shower, ed, md, geo, resp)
    res = {}
    for i, g in enumerate(GROUPS):
        res[g] = {"likelihood": np.asarray(lo[i], np.float64),
                  "time_window": np.asarray(tw[i][1], np.float64),
                  "time_window_r200": np.asarray(twr[i][1], np.float64),
                  "keep_window": np.asarray(tw[i][0]), "keep_window_r200": np.asarray(twr[i][0])}
    return res


def network_scores(path, rec, out, lay):
    """(B, n) network scores per group from ``analysis.ml.classify.hit_signal_probability``
    (imported here only). Accepts per-event arrays aligned with the records' pulses (mapped to
    the kept pulse as the labels are) or with the layout's channels (dense), returned as a dict
    {"km2a_ed": [...], "km2a_md": [...]} or a pair (ed, md)."""
    from analysis.ml.classify import hit_signal_probability
    from analysis.noise import dense_hit_values

    # analysis.ml.classify (main, e82a71b): (ed, md), lists of per-event arrays aligned with
    # km2a_ed_id / km2a_md_id (every pulse of a channel the channel's value), NaN for hits
    # beyond the network's largest-charge points and for events whose fit did not converge
    got = hit_signal_probability(path, rec, out, layout=lay)
    if not isinstance(got, dict):
        got = dict(zip(GROUPS, got))
    n_ch = {"km2a_ed": lay.n_ed, "km2a_md": lay.n_md}
    res, per_pulse = {}, {}
    for g in GROUPS:
        arrs = [np.asarray(a, np.float64) for a in got[g]]
        if all(a.shape == (n_ch[g],) for a in arrs):
            res[g] = np.stack(arrs)
        else:
            per_pulse[g] = arrs
    if per_pulse:
        res.update(dense_hit_values(rec, lay, per_pulse))
    return res


def reconstruct(rec, lay, geo, resp, cfg, valid=None):
    from joint.io.schema import to_event_batch
    from lhaaso_joint.api import reconstruct_batch

    batch = to_event_batch(rec, km2a=lay, as_jax=False, valid=valid)
    return batch, reconstruct_batch(batch, geo, resp, cfg)


def resolution(out, rec, hi, inside):
    """68% containment [deg] against the file's truth and the declination convention (all,
    above 100 TeV, and the fixed selection ``inside``: core_inside of the fit with all hits)."""
    az_decl = np.mod(rec["true_azimuth"] + np.radians(DECLINATION_DEG), 2 * np.pi)
    res = {}
    for name, az in (("file", rec["true_azimuth"]), ("declination", az_decl)):
        ang = angle_deg(out["reco_zenith"], out["reco_azimuth"], rec["true_zenith"], az)
        res[name] = {"all": float(np.percentile(ang, 68)),
                     "above_100TeV": float(np.percentile(ang[hi], 68)),
                     "core_inside": float(np.percentile(ang[inside], 68)),
                     "n_core_inside": int(inside.sum()), "angle_deg": ang}
    res["converged"] = int((out["status"] == 0).sum())
    return res


def paired_delta68(ang, ang0, n_boot=2000, seed=1):
    """Δ of the 68% containment (variant − today) on the same events, with the 16–84% range of
    a bootstrap over events (both fits resampled together)."""
    rng = np.random.default_rng(seed)
    d = np.percentile(ang, 68) - np.percentile(ang0, 68)
    idx = rng.integers(0, len(ang), (n_boot, len(ang)))
    boot = np.percentile(ang[idx], 68, axis=1) - np.percentile(ang0[idx], 68, axis=1)
    return float(d), [float(x) for x in np.percentile(boot, [16, 84])]


def own_simulation_status():
    """'ready' when ``simulate_records`` takes ``hit_labels``, else why not."""
    from joint import simulation

    params = inspect.signature(simulation.simulate_records).parameters
    return "ready" if "hit_labels" in params else (
        "pending: joint.simulation.simulate_records has no hit_labels option on this branch")


def own_simulation(n_events, seed, physics_cfg, network=None):
    """Taggers' ROC on the project's own simulation (gammas 10–300 TeV, zenith 20°)."""
    from analysis import noise
    from common import detector_setup
    from joint.io.schema import to_event_batch
    from joint.simulation import simulate_records
    from lhaaso_joint.api import reconstruct_batch

    lays, geos, resps = detector_setup(("km2a",))
    lay, geo, resp = lays["km2a"], geos["km2a"], resps["km2a"]

    def zenith_20(truth, rng):
        truth["true_zenith"] = np.full_like(np.asarray(truth["true_zenith"]), np.radians(20.0))
        return truth

    rec, thrown = simulate_records(n_events, primary="gamma", log10_energy_range=(4.0, np.log10(3e5)),
                                   km2a_layout=lay, seed=seed, truth_hook=zenith_20,
                                   hit_labels=True)
    batch = to_event_batch(rec, km2a=lay, as_jax=False)
    out = reconstruct_batch(batch, geo, resp, physics_cfg)
    labels = noise.dense_labels(rec, lay)
    scores = tagger_scores(out, batch, geo, resp, physics_cfg.physics)
    if network:
        net = network_scores(network, rec, out, lay)
        for g in GROUPS:
            scores[g]["network"] = np.where(np.isnan(scores[g]["likelihood"]), np.nan, net[g])
    return {"n_events": int(len(out["status"])), "thrown": int(thrown),
            "roc": {g: {k: noise.roc(v, labels[g]) for k, v in scores[g].items()
                        if not k.startswith("keep") and k != "time_window_r200"} for g in GROUPS},
            "window_cut": {g: noise.cut_point(scores[g]["keep_window"], np.where(
                np.isnan(scores[g]["likelihood"]), -1, labels[g])) for g in GROUPS}}


def _roc_line(name, r):
    wp = r["working_points"]
    pts = "  ".join(f"eff {float(k):.3f}: rej {p['rej']:.3f}±{p['rej_err']:.3f}"
                    for k, p in wp.items())
    return f"  {name:28s} AUC {r['auc']:.4f}  ({r['n_signal']} shower / {r['n_noise']} noise)  {pts}"


def _plot(rocs, path, title, cuts=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rocs), figsize=(5.5 * len(rocs), 4.5))
    for ax, (g, by) in zip(np.atleast_1d(axes), rocs.items()):
        for name, r in by.items():
            if len(r["eff"]):
                ax.plot(r["rej"], r["eff"], label=f"{name} (AUC {r['auc']:.3f})")
        for (cname, c), m in zip((cuts or {}).get(g, {}).items(), "osd^v"):
            ax.plot([c["rej"]], [c["eff"]], m, color="k", mfc="none", label=f"cut {cname}")
        ax.set_xlabel("noise-hit rejection")
        ax.set_ylabel("shower-hit efficiency")
        ax.set_title(f"{title}: {g}")
        ax.set_xlim(0.8, 1.002)
        ax.set_ylim(0.75 if g == "km2a_ed" else 0.5, 1.005)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", default=None)
    ap.add_argument("--network", default=None, help="model for analysis.ml.classify")
    ap.add_argument("--out", default=str(RESULTS / "noise_tagging"),
                    help="output stem (.txt, .json, _roc.png)")
    ap.add_argument("--own-events", type=int, default=200, help="own-simulation events")
    ap.add_argument("--no-own", action="store_true", help="skip the own simulation")
    args = ap.parse_args(argv)
    from analysis import noise
    from detectors import km2a
    from detectors.layout import km2a_layout
    from joint.config import ReconstructionConfig
    from joint.io.lhevent import read_lhevent
    from lhaaso_joint.demo import shared_data_dir

    t_start = time.perf_counter()
    path = args.file or os.path.join(shared_data_dir(), "lhaaso/km2a/KM2AMCTest.root")
    lay = km2a_layout("3/4")
    geo = km2a.Geometry.from_layout(lay)
    resp = km2a.Response.nominal(geo)
    cfg = ReconstructionConfig(hypothesis="gamma")
    rec = read_lhevent(path, km2a=lay, hit_labels=True)
    labels = noise.dense_labels(rec, lay)
    hi = 10 ** rec["true_log10_energy"] / 1e3 > 100
    batch, out = reconstruct(rec, lay, geo, resp, cfg)
    scores = tagger_scores(out, batch, geo, resp, cfg.physics)
    # the hits the likelihood scores (kept pulse at or above threshold on a live channel): every
    # tagger is ranked, and drops, on this same population
    scored = {g: ~np.isnan(scores[g]["likelihood"]) for g in GROUPS}
    if args.network:
        net = network_scores(args.network, rec, out, lay)
        for g in GROUPS:
            scores[g]["network"] = np.where(scored[g], net[g], np.nan)
    # the r < 200 m window is a cut, not a ranking (every hit beyond 200 m ties at −∞): its
    # point is in ``cuts``
    rocs = {g: {k: noise.roc(v, labels[g]) for k, v in scores[g].items()
                if not k.startswith("keep") and k != "time_window_r200"} for g in GROUPS}
    if args.network:
        # the network scores a subset (NaN beyond its largest-charge points and for events whose
        # fit did not converge): the other taggers again on that same subset, like for like
        for g in GROUPS:
            has = ~np.isnan(scores[g]["network"])
            for k in ("likelihood", "time_window"):
                rocs[g][f"{k} (network's hits)"] = noise.roc(np.where(has, scores[g][k], np.nan),
                                                             labels[g])
    # cuts on the same population as the ROC: the scored hits (others labelled −1: ignored)
    lab_scored = {g: np.where(scored[g], labels[g], -1) for g in GROUPS}
    cuts = {g: {"window": noise.cut_point(scores[g]["keep_window"], lab_scored[g]),
                "window_r200": noise.cut_point(scores[g]["keep_window_r200"], lab_scored[g]),
                "likelihood_p05": noise.cut_point(scores[g]["likelihood"] >= 0.0, lab_scored[g])}
            for g in GROUPS}
    # pulses the likelihood does not score (below threshold): counted, not tagged
    counts = {g: {"noise_pulses_file": int(np.sum(np.concatenate(
                      [np.asarray(a) for a in rec[f"{g}_signal"]]) == 0)),
                  "shower_pulses_file": int(np.sum(np.concatenate(
                      [np.asarray(a) for a in rec[f"{g}_signal"]]) == 1)),
                  "noise_kept_pulse": int((labels[g] == 0).sum()),
                  "shower_kept_pulse": int((labels[g] == 1).sum()),
                  "noise_scored": int(((labels[g] == 0) & scored[g]).sum()),
                  "shower_scored": int(((labels[g] == 1) & scored[g]).sum())} for g in GROUPS}

    # refits without the hits each tagger calls noise
    def drop(score_by_group, thr_by_group):
        return {g: ~noise.tagged_hits(score_by_group[g], thr_by_group[g]) for g in GROUPS}

    wp99 = {name: {g: rocs[g][name]["working_points"]["0.99"]["threshold"] for g in GROUPS}
            for name in rocs["km2a_ed"]}
    half = 0.5 * (noise.CLASSIC_WINDOW_NS[1] - noise.CLASSIC_WINDOW_NS[0])
    variants = {
        "all hits (today)": None,
        "oracle: true noise dropped": {g: labels[g] != 0 for g in GROUPS},
        "oracle, scored hits only": {g: ~(scored[g] & (labels[g] == 0)) for g in GROUPS},
        # diagnostic: only the noise hits the likelihood calls shower (P >= 0.5) dropped
        "oracle, noise with P>=0.5": {g: ~(scored[g] & (labels[g] == 0)
                                            & (np.nan_to_num(scores[g]["likelihood"], nan=-1.0) >= 0))
                                       for g in GROUPS},
        "likelihood P<0.5 dropped": drop({g: scores[g]["likelihood"] for g in GROUPS},
                                         {g: 0.0 for g in GROUPS}),
        "likelihood 99% eff": drop({g: scores[g]["likelihood"] for g in GROUPS}, wp99["likelihood"]),
        "window [-30,+50] ns": {g: ~(scored[g] & ~scores[g]["keep_window"]) for g in GROUPS},
        "window 99% eff": drop({g: scores[g]["time_window"] for g in GROUPS}, wp99["time_window"]),
    }
    if args.network:
        variants["network P<0.5 dropped"] = drop({g: scores[g]["network"] for g in GROUPS},
                                                 {g: 0.5 for g in GROUPS})
        variants["network 99% eff"] = drop({g: scores[g]["network"] for g in GROUPS}, wp99["network"])
    fits = {}
    inside = out["core_inside"].astype(bool)
    for name, valid in variants.items():
        t0 = time.perf_counter()
        o = out if valid is None else reconstruct(rec, lay, geo, resp, cfg, valid)[1]
        r = resolution(o, rec, hi, inside)
        if valid is not None:
            for conv in ("file", "declination"):
                base = fits["all hits (today)"]["resolution"][conv]["angle_deg"]
                r[conv]["delta68_all"] = paired_delta68(r[conv]["angle_deg"], base)
                r[conv]["delta68_above_100TeV"] = paired_delta68(r[conv]["angle_deg"][hi], base[hi])
        dropped = {} if valid is None else {
            g: {"noise": int((~valid[g] & (labels[g] == 0)).sum()),
                "shower": int((~valid[g] & (labels[g] == 1)).sum())} for g in GROUPS}
        fits[name] = {"resolution": r, "dropped": dropped, "seconds": time.perf_counter() - t0}

    own_status = "skipped (--no-own)" if args.no_own else own_simulation_status()
    own = None
    if own_status == "ready":
        own = own_simulation(args.own_events, 17, cfg, args.network)
        own_status = f"done: {own['n_events']} events"

    # ---- report
    lines = [f"# noise tagging (issue 17): {os.path.basename(path)}, 53 G4KM2A photons, layout 3/4, "
             f"photon hypothesis; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}",
             "# command: LHAASO_SHARED_DATA=../shared/data .venv/bin/python benchmarks/noise_tagging.py"
             + (f" --network {args.network}" if args.network else ""),
             "", "## hits (kept pulse = largest charge per channel; scored = at or above the fit's "
             "threshold on a live channel)"]
    for g in GROUPS:
        c = counts[g]
        lines.append(f"  {g}: file pulses {c['shower_pulses_file']} shower / {c['noise_pulses_file']} "
                     f"noise; kept pulses {c['shower_kept_pulse']} / {c['noise_kept_pulse']}; "
                     f"scored {c['shower_scored']} / {c['noise_scored']}")
    lines += ["", "## ROC at the fit with all hits (rejection at fixed shower-hit efficiency, "
              "binomial errors; thresholds chosen on these same labels)"]
    for g in GROUPS:
        lines.append(f" {g}:")
        for name, r in rocs[g].items():
            lines.append(_roc_line(name, r))
        for name, c in cuts[g].items():
            lines.append(f"  cut {name:14s} eff {c['eff']:.4f}±{c['eff_err']:.4f}  rej "
                         f"{c['rej']:.4f}±{c['rej_err']:.4f}  (noise kept {c['noise_kept']}, "
                         f"shower lost {c['n_signal'] - c['signal_kept']})")
    lines += ["", "## angular resolution, 68% containment [deg] (refit without the dropped hits; "
              "dropped = channels made invalid)",
              f"  {'fit':28s} {'file: all':>9s} {'>100TeV':>8s} {'inside':>7s} | "
              f"{'decl: all':>9s} {'>100TeV':>8s} {'inside':>7s} | conv | dropped ED noise/shower, "
              f"MD noise/shower"]
    for name, f in fits.items():
        a, d = f["resolution"]["file"], f["resolution"]["declination"]
        dr = f["dropped"]
        dtxt = "-" if not dr else (f"{dr['km2a_ed']['noise']}/{dr['km2a_ed']['shower']}, "
                                   f"{dr['km2a_md']['noise']}/{dr['km2a_md']['shower']}")
        lines.append(f"  {name:28s} {a['all']:9.3f} {a['above_100TeV']:8.3f} {a['core_inside']:7.3f} | "
                     f"{d['all']:9.3f} {d['above_100TeV']:8.3f} {d['core_inside']:7.3f} | "
                     f"{f['resolution']['converged']:2d}/53 | {dtxt}")
    lines.append(f"  (> 100 TeV: {int(hi.sum())} events; inside = core_inside of the fit with all "
                 f"hits, {int(inside.sum())} events, the same for every row)")
    lines.append("  paired Δ68% against 'all hits' [deg] (16–84% bootstrap over events):")
    for name, f in fits.items():
        if "delta68_all" not in f["resolution"]["file"]:
            continue
        txt = "  ".join(f"{conv[:4]} all {f['resolution'][conv]['delta68_all'][0]:+.3f} "
                        f"[{f['resolution'][conv]['delta68_all'][1][0]:+.3f}, "
                        f"{f['resolution'][conv]['delta68_all'][1][1]:+.3f}] >100 "
                        f"{f['resolution'][conv]['delta68_above_100TeV'][0]:+.3f} "
                        f"[{f['resolution'][conv]['delta68_above_100TeV'][1][0]:+.3f}, "
                        f"{f['resolution'][conv]['delta68_above_100TeV'][1][1]:+.3f}]"
                        for conv in ("file", "declination"))
        lines.append(f"  {name:28s} {txt}")
    lines.append("  per event, declination truth: median |Δangle|, and the events that moved by "
                 "> 0.1° (event_id: before → after [deg]):")
    base = fits["all hits (today)"]["resolution"]["declination"]["angle_deg"]
    for name, f in fits.items():
        if name == "all hits (today)":
            continue
        ang = f["resolution"]["declination"]["angle_deg"]
        d = ang - base
        moved = [f"{int(rec['event_id'][i])}: {base[i]:.2f} → {ang[i]:.2f}"
                 for i in np.argsort(-np.abs(d)) if abs(d[i]) > 0.1]
        f["moved_events"] = moved
        lines.append(f"  {name:28s} median |Δ| {np.median(np.abs(d)):.4f}°; "
                     + ("; ".join(moved) if moved else "none"))
    lines += ["", f"## own simulation (gammas 10–300 TeV, zenith 20°): {own_status}"]
    if own is not None:
        for g in GROUPS:
            lines.append(f" {g}:")
            for name, r in own["roc"][g].items():
                lines.append(_roc_line(name, r))
            c = own["window_cut"][g]
            lines.append(f"  cut window         eff {c['eff']:.4f}±{c['eff_err']:.4f}  rej "
                         f"{c['rej']:.4f}±{c['rej_err']:.4f}")
    lines.append(f"\n# wall time {time.perf_counter() - t_start:.0f} s")
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".txt", "w") as fh:
        fh.write(text + "\n")
    roc_small = {g: {k: {kk: vv for kk, vv in r.items() if kk not in ("threshold", "eff", "rej")}
                     for k, r in by.items()} for g, by in rocs.items()}
    with open(args.out + ".json", "w") as fh:
        json.dump(_jsonable({"machine": machine(), "date": time.strftime("%Y-%m-%d"), "counts": counts,
                             "roc": roc_small, "cuts": cuts,
                             "fits": {k: {"resolution": {kk: (vv if not isinstance(vv, dict) else
                                                              {a: b for a, b in vv.items()})
                                                         for kk, vv in f["resolution"].items()},
                                          "dropped": f["dropped"],
                                          "moved_events": f.get("moved_events", [])}
                                      for k, f in fits.items()},
                             "event_id": rec["event_id"], "E_TeV": 10 ** rec["true_log10_energy"] / 1e3,
                             "own_simulation": own_status if own is None else
                             {"status": own_status, "roc": {g: {k: {kk: vv for kk, vv in r.items()
                                                                    if kk not in ("threshold", "eff", "rej")}
                                                                for k, r in by.items()}
                                                            for g, by in own["roc"].items()},
                              "window_cut": own["window_cut"]}}), fh, indent=1)
    _plot(rocs, args.out + "_roc.png", "G4KM2A", cuts)


if __name__ == "__main__":
    main()
