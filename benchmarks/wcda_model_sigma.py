"""WCDA's model uncertainty κ (``WCDAPhysics.model_rel_sigma``): the goodness of fit of WCDA's
cells at the TRUE shower for a grid of κ, on simulated showers (sub-showers on for hadrons, as
``joint.simulation`` does). κ is chosen on one sample (``--seed``) and judged on another
(``--check-seed``): the median z-score of the charge deviance ``gof_wcda`` should be ≈ 0 and its
spread ≈ 1 when the model (with κ) describes the cells.

Usage: .venv/bin/python benchmarks/wcda_model_sigma.py [--n-events 64] [--seed 11]
       [--check-seed 12] [--kappas 0,0.1,0.2,0.3,0.4,0.5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine  # noqa: E402


R_KAPPA = 20.0  # set by --core-radius


def truth_gof(rec, batch, geo, resp, kappas, is_gamma):
    """(n_kappa, n_events) gof_wcda z-scores at the true shower, and the cells used."""
    import jax
    import jax.numpy as jnp

    from detectors import wcda
    from detectors.channel import deviance_sums
    from detectors.registry import DEFAULT_N_WCDA, select_wcda
    from joint.simulation import shower_from_truth

    showers = shower_from_truth(rec, dtype=jnp.float32)
    block = batch.wcda

    def one(kappa, shower, blk):
        phys = wcda.WCDAPhysics(is_gamma=is_gamma, model_rel_sigma=kappa,
                                model_sigma_log10e_on=0.0, model_sigma_core_radius_m=R_KAPPA)
        core = jnp.stack([shower.core_x, shower.core_y])
        d = select_wcda(blk, core, geo, resp, DEFAULT_N_WCDA)
        pred = wcda.predict(shower, d.geometry, d.response, phys)
        sums = [deviance_sums(*c) for c in wcda.gof_counts(d.observed, pred, d.geometry,
                                                            d.response)]
        dev, e, v, n = (sum(s[i] for s in sums) for i in range(4))
        c = d.observed.cells
        use = (c.valid & c.hit & (c.signal < d.response.switch_pe)).astype(pred.cell_pe.dtype)
        return (dev - e) / jnp.sqrt(v), n, (c.signal, pred.cell_pe, pred.cell_fano, use)

    f = jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
    blk = jax.tree_util.tree_map(jnp.asarray, block)
    out = [f(jnp.float32(k), showers, blk) for k in kappas]
    return (np.array([np.asarray(o[0]) for o in out]), np.asarray(out[0][1]),
            [np.asarray(x) for x in out[0][2]])


def kappa_moment(q, mu, f0, use, mu_min):
    """κ from the cells' excess variance over the model's (κ = 0) F·μ, cells of μ ≥ mu_min
    below the large PMT's switch-over: mean and median of ((q − μ)² − Fμ)/μ² (κ² estimates)."""
    m = (use > 0) & (mu >= mu_min)
    x = ((q - mu) ** 2 - f0 * mu)[m] / mu[m] ** 2
    return np.sqrt(max(np.mean(x), 0.0)), np.sqrt(max(np.median(x), 0.0)), int(m.sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-events", type=int, default=64)
    ap.add_argument("--primary", default="proton")
    ap.add_argument("--log10-energy", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--check-seed", type=int, default=12)
    ap.add_argument("--cores-on", default="wfcta")
    ap.add_argument("--kappas", default="0,0.1,0.2,0.3,0.4,0.5,0.7")
    ap.add_argument("--core-radius", type=float, default=20.0,
                    help="r_κ [m] (WCDAPhysics.model_sigma_core_radius_m; 0 = flat)")
    args = ap.parse_args()
    global R_KAPPA
    R_KAPPA = args.core_radius
    import jax.numpy as jnp  # noqa: F401

    from joint.config import detector_setup
    from joint.io.schema import to_event_batch
    from joint.simulation import simulate_records

    kappas = [float(k) for k in args.kappas.split(",")]
    lays, geos, resps = detector_setup(("wcda",))
    print(f"# WCDA gof at the true shower vs κ, log10(E/GeV) = {args.log10_energy}, "
          f"{args.primary}, cores on {args.cores_on}, r_κ = {args.core_radius} m, {time.strftime('%Y-%m-%d')}, {machine()}")
    print(f"# command: {' '.join(sys.argv)}")
    is_gamma = 1.0 if args.primary == "gamma" else 0.0
    for role, seed in (("choose", args.seed), ("check", args.check_seed)):
        rec, thrown = simulate_records(args.n_events, primary=args.primary, detectors=("wcda",),
                                       cores_on=args.cores_on, seed=seed,
                                       log10_energy_range=(args.log10_energy,) * 2,
                                       wcda_layout=lays["wcda"])
        batch = to_event_batch(rec, wcda=lays["wcda"], as_jax=False)
        z, n, cells = truth_gof(rec, batch, geos["wcda"], resps["wcda"], kappas, is_gamma)
        for mu_min in (30.0, 100.0, 300.0):
            km, kmed, nc = kappa_moment(*cells, mu_min)
            print(f"# excess variance of the cells with μ ≥ {mu_min:.0f} PE at truth ({nc} "
                  f"cells): κ from the mean {km:.3f}, from the median {kmed:.3f}")
        print(f"## {role} sample: seed {seed}, {args.n_events} events ({thrown} thrown), "
              f"median cells used {np.median(n):.0f}")
        print(f"{'kappa':>6s} {'median z':>9s} {'robust sd':>9s} {'frac z>3':>9s} {'max z':>8s}")
        for k, zk in zip(kappas, z):
            zk = zk[np.isfinite(zk)]
            rsd = 1.4826 * np.median(np.abs(zk - np.median(zk)))
            print(f"{k:6.2f} {np.median(zk):9.2f} {rsd:9.2f} {np.mean(zk > 3):9.2f} "
                  f"{zk.max():8.1f}", flush=True)


if __name__ == "__main__":
    main()
