"""WFCTA Xmax resolution with the shower geometry fixed from truth: the model fit next to the
classic Dist estimator and the Cramér–Rao bound (issue 5).

    .venv/bin/python benchmarks/wfcta_xmax.py --n-events 150 --json benchmarks/results/wfcta_xmax.json

For protons and iron at log10(E/GeV) = 5.5, 6.0, 6.5: simulate WFCTA events (the 6 public
telescopes; arrival directions within 5° of a telescope's optical axis, i.e. zenith 25–35°;
cores within 300 m of the telescopes; shower-to-shower fluctuations of the profile width (5%)
and of the lateral spread (10%): ``detectors.wfcta.NUISANCE_SIGMAS``, the same numbers as the
fit's priors [M]), then
* the model fit: log10 E and Xmax free, core and direction fixed at the truth, no Xmax prior,
  with WFCTA's two nuisances (profile width, lateral spread) profiled under their priors ("on",
  the pipeline's default) and without them ("off", the fit model keeps both at 1): the SAME
  events reconstructed twice (``--nuisances on off``);
* the Dist estimator (``analysis.dist_xmax``): the depth on the axis that the image centroid of
  the brightest telescope points at, calibrated linearly (Xmax = a + b·X_dist) on an independent
  sample of the same primary and energy (a different seed);
* the Cramér–Rao bound of the model fit without nuisances ("CRB") and with them ("CRB+ν": the
  bound of the profiled model, ``wfcta.fisher_stats`` with the nuisances on; cross-checked
  against the direct Schur complement of the information of (log10 E, Xmax, width, lateral)
  plus the priors, "ν-check").
Reported: σ(ΔXmax) (std, ± σ/√(2n)), the 68% quantile of |ΔXmax|, the bias (± σ/√n), the ratio
σ/CRB+ν, and the mean and spread of the fitted nuisances, over converged events with at least
one image. ``--fluctuations 0 0`` simulates the fit model's own showers (the fit then
reaches the bound: a check of the fitter, not a resolution). LHAASO's published Dist figure:
≈ 20 g/cm² (PoS(ICRC2023)407 [C]); target ≤ 15 g/cm² at 1 PeV within 1.1 × the bound.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from common import (crb_covariances, machine, nuisance_config, reconstruct,
                    simulate_and_reconstruct)

GEOMETRY = ("core_x", "core_y", "zenith", "azimuth")


def nuisance_bounds(rec, sigmas, cfg):
    """σ(Xmax) bound per event when the profile width and the lateral spread are unknown with
    Gaussian priors of relative σ ``sigmas``: the Fisher information of (log10 E, Xmax, width
    scale, lateral scale) from the same model (pixel PE, variance F μ) plus the priors,
    inverted — the Schur complement written out (an independent check of the profiled bound of
    ``wfcta.fisher_stats``). [g/cm²]"""
    import jax
    import jax.numpy as jnp

    from detectors import wfcta
    from detectors.primaries import shower_from_truth
    from common import detector_setup

    _, geos, resps = detector_setup(("wfcta",))
    geo, resp = geos["wfcta"], resps["wfcta"]
    base = cfg.physics_of("wfcta")._replace(nuisance_sigmas=(0.0, 0.0))
    truth = shower_from_truth(rec, dtype=jnp.float64)

    def one(shower):
        def mu(theta):
            s = shower._replace(log10_energy=theta[0], xmax=theta[1] * 100.0)
            ph = base._replace(profile_width_scale=theta[2], lateral_scale=theta[3])
            return jnp.ravel(wfcta.predict(s, geo, resp, ph))

        th = jnp.stack([shower.log10_energy, shower.xmax / 100.0, 1.0, 1.0])
        m = mu(th)
        j = jax.jacfwd(mu)(th)
        w = jnp.ravel(jnp.asarray(geo.pixel_live, m.dtype)) / (resp.excess_noise * jnp.maximum(m, 1e-6))
        info = (j * w[:, None]).T @ j
        prior = jnp.diag(jnp.array([0.0, 0.0, 1.0 / max(sigmas[0], 1e-6) ** 2,
                                    1.0 / max(sigmas[1], 1e-6) ** 2]))
        cov = jnp.linalg.inv(info + prior)
        return 100.0 * jnp.sqrt(cov[1, 1])

    f = jax.jit(jax.vmap(one))
    out = []
    for a in range(0, len(rec["true_xmax"]), 32):
        out.append(np.asarray(f(jax.tree_util.tree_map(lambda x: jnp.asarray(x)[a:a + 32], truth))))
    return np.concatenate(out)


def fitted_nuisances(rec, out, cfg):
    """ν̂ (B, 2) = (width scale, lateral scale) profiled at the fitted showers (NaN columns
    when the configuration has no nuisances)."""
    import jax
    import jax.numpy as jnp

    from detectors import wfcta
    from detectors.shower import FIELDS, Shower
    from detectors.registry import select_wfcta
    from joint.io.schema import to_event_batch
    from common import detector_setup

    phys = cfg.physics_of("wfcta")
    active = [i for i, v in enumerate(phys.nuisance_sigmas) if v > 0]
    n = len(out["reco_xmax"])
    if not active:
        return np.full((n, 2), np.nan)
    lays, geos, resps = detector_setup(("wfcta",))
    batch = to_event_batch(rec, wfcta=lays["wfcta"], as_jax=False)
    shower = Shower(*[jnp.asarray(np.nan_to_num(out[f"reco_{f}"]), jnp.float32) for f in FIELDS])

    def one(s, blk):
        d = select_wfcta(blk, geos["wfcta"], resps["wfcta"])
        nu = wfcta.profile_nuisances(s, d.observed, d.geometry, d.response, phys)[0]
        full = jnp.ones(2, nu.dtype)
        for a, i in enumerate(active):
            full = full.at[i].set(nu[a].astype(full.dtype))
        return full

    f = jax.jit(jax.vmap(one))
    res = []
    for a in range(0, n, 32):
        sl = slice(a, a + 32)
        res.append(np.asarray(f(jax.tree_util.tree_map(lambda x: x[sl], shower),
                                jax.tree_util.tree_map(lambda x: jnp.asarray(x)[sl], batch.wfcta))))
    return np.concatenate(res)


def _sim(primary, lg, n, seed, fluct, cfg, batch_size=32):
    return simulate_and_reconstruct(primary, lg, n, seed, "hadron", cfg=cfg, detectors=("wfcta",),
                                    cores_on="wfcta", core_radius=300.0, batch_size=batch_size,
                                    wfcta_fluctuations=tuple(fluct))


def main(argv=None):
    import sys

    from detectors import wfcta

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-events", type=int, default=150)
    ap.add_argument("--energies", type=float, nargs="+", default=[5.5, 6.0, 6.5])
    ap.add_argument("--primaries", nargs="+", default=["proton", "iron"])
    ap.add_argument("--fluctuations", type=float, nargs=2, default=list(wfcta.NUISANCE_SIGMAS),
                    help="simulated σ of the profile width and of the lateral spread "
                         "(default: wfcta.NUISANCE_SIGMAS, the fit's priors)")
    ap.add_argument("--nuisances", nargs="+", default=["off", "on"], choices=["off", "on"],
                    help="reconstruct the same events without / with WFCTA's profiled nuisances")
    ap.add_argument("--model-rel-sigma", type=float, default=0.0,
                    help="κ of the pixel variance F·μ + (κ·μ_signal)² in the 'on' fits")
    ap.add_argument("--no-dist", action="store_true", help="skip the Dist estimator (and its "
                    "calibration sample)")
    ap.add_argument("--seed", type=int, default=91)
    ap.add_argument("--batch-size", type=int, default=32, help="events per fit batch (the "
                    "profiled fit holds ≈ 95 MB per event: 128 took 12 GB)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from detectors.shower import FIELDS
    from joint.config import ReconstructionConfig

    base = ReconstructionConfig(hypothesis="hadron", detectors=("wfcta",),
                                free=("log10_energy", "xmax"), truth_fields=GEOMETRY,
                                xmax_prior=False)
    cfgs = {"off": nuisance_config(base, (0.0, 0.0)),
            "on": nuisance_config(base, None, args.model_rel_sigma)}
    priors = cfgs["on"].physics_of("wfcta").nuisance_sigmas
    ix = FIELDS.index("xmax")
    rows = []
    print(f"# {' '.join(['benchmarks/wfcta_xmax.py'] + (sys.argv[1:] if argv is None else list(argv)))}")
    print(f"# WFCTA Xmax, {time.strftime('%Y-%m-%d %H:%M')}, {machine()}")
    print(f"# {args.n_events} events per point, geometry from truth, simulated fluctuations width "
          f"{args.fluctuations[0]}, lateral {args.fluctuations[1]}; fit priors (on) {priors}, "
          f"κ {args.model_rel_sigma}")
    print(f"{'primary':7s} {'lgE':>4s} {'ν':>3s} {'n':>4s} {'conv':>4s} | {'fit σ':>10s} {'68%':>5s} "
          f"{'bias':>9s} | {'CRB':>5s} {'CRB+ν':>5s} {'ν-chk':>5s} {'σ/CRB+ν':>10s} | "
          f"{'ν̂ width':>11s} {'ν̂ lateral':>11s} | {'Dist σ':>6s} | {'E σ%':>5s} {'reco s':>6s}")
    for p_i, prim in enumerate(args.primaries):
        for k, lg in enumerate(args.energies):
            s0 = args.seed + 100 * {"proton": 0, "iron": 1}.get(prim, p_i) + 17 * k
            rec, out0, t = _sim(prim, lg, args.n_events, s0, args.fluctuations, cfgs[args.nuisances[0]],
                                args.batch_size)
            outs = {args.nuisances[0]: (out0, t["reconstruct_s"])}
            for nu in args.nuisances[1:]:
                outs[nu] = reconstruct(rec, cfgs[nu], batch_size=args.batch_size)
            dist = (np.nan, None)
            if not args.no_dist:
                from analysis.dist_xmax import calibrate

                cal, cout, _ = _sim(prim, lg, args.n_events, s0 + 5000, args.fluctuations, cfgs["off"])
                okc = np.isfinite(cout["x_dist"]) & (cout["wfcta_size"] > 0)
                a, b = calibrate(cout["x_dist"][okc], cal["true_xmax"][okc])
                dist = (a, b)
            crb = np.sqrt(crb_covariances(rec, "hadron", cfgs["off"])[:, ix, ix])
            crbn = np.sqrt(crb_covariances(rec, "hadron", cfgs["on"])[:, ix, ix])
            chk = nuisance_bounds(rec, priors, cfgs["on"])
            for nu, (out, t_reco) in outs.items():
                ok = (out["status"] == 0) & (out["wfcta_size"] > 0)
                n = int(ok.sum())
                dx = (out["reco_xmax"] - rec["true_xmax"])[ok]
                de = (out["reco_log10_energy"] - rec["true_log10_energy"])[ok]
                sig = float(np.std(dx))
                pooled = lambda c: float(np.sqrt(np.mean(c[ok] ** 2)))
                crb_p, crbn_p, chk_p = pooled(crb), pooled(crbn), pooled(chk)
                nus = fitted_nuisances(rec, out, cfgs[nu])[ok]
                row = {"primary": prim, "log10_energy": lg, "nuisances": nu, "n": n,
                       "converged_fraction": float(np.mean(out["status"] == 0)),
                       "fit_sigma": sig, "fit_sigma_err": sig / np.sqrt(2 * n),
                       "fit_68": float(np.percentile(np.abs(dx), 68)),
                       "fit_bias": float(np.mean(dx)), "fit_bias_err": sig / np.sqrt(n),
                       "crb_sigma_rms": crb_p, "crb_nuisance_rms": crbn_p,
                       "crb_nuisance_check_rms": chk_p,
                       "ratio_to_crb_nuisance": sig / crbn_p,
                       "ratio_err": sig / crbn_p / np.sqrt(2 * n),
                       "nu_width_mean": float(np.mean(nus[:, 0])), "nu_width_std": float(np.std(nus[:, 0])),
                       "nu_lateral_mean": float(np.mean(nus[:, 1])), "nu_lateral_std": float(np.std(nus[:, 1])),
                       "energy_sigma_pct": float(100 * np.std(10 ** de - 1)),
                       "median_fit_error": float(np.median(out["reco_xmax_err"][ok])),
                       "reconstruct_s": t_reco, "simulate_s": t["simulate_s"]}
                if dist[1] is not None:
                    a, b = dist
                    dd = (a + b * out["x_dist"] - rec["true_xmax"])[ok & np.isfinite(out["x_dist"])]
                    row.update(dist_sigma=float(np.std(dd)), dist_68=float(np.percentile(np.abs(dd), 68)),
                               dist_bias=float(np.mean(dd)), dist_calibration=[a, b])
                rows.append(row)
                print(f"{prim:7s} {lg:4.1f} {nu:>3s} {n:4d} {row['converged_fraction']:4.2f} | "
                      f"{sig:5.1f}±{row['fit_sigma_err']:4.1f} {row['fit_68']:5.1f} "
                      f"{row['fit_bias']:4.1f}±{row['fit_bias_err']:3.1f} | {crb_p:5.1f} {crbn_p:5.1f} "
                      f"{chk_p:5.1f} {row['ratio_to_crb_nuisance']:4.2f}±{row['ratio_err']:4.2f} | "
                      f"{row['nu_width_mean']:5.3f}±{row['nu_width_std']:5.3f} "
                      f"{row['nu_lateral_mean']:5.3f}±{row['nu_lateral_std']:5.3f} | "
                      f"{row.get('dist_sigma', np.nan):6.1f} | {row['energy_sigma_pct']:5.1f} {t_reco:6.1f}",
                      flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                       "fluctuations": list(args.fluctuations), "priors": list(priors),
                       "model_rel_sigma": args.model_rel_sigma, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
