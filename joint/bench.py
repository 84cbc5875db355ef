"""Throughput benchmark: the batched fitter against iminuit on the same likelihood.

``run_bench`` simulates events of the configured detectors (``cfg.detectors``: KM2A, WCDA or
both; cores on the ponds when WCDA takes part) at one fixed energy, prepares seeds and active-channel data
once (``joint.pipeline.prepare``) and fits them

* with the batched fitter as production runs it — ``fit_events(nll_function(cfg), data, seeds,
  cfg.fit_config)`` then the straggler passes on the events left at MAX_ITER (scoring, then
  the exact Hessian; ``joint.pipeline.straggler_passes``; their time is in the events/s, so that the speed ratio is quoted at the
  converged fraction production reaches) — in chunks of ``batch_size`` (the last chunk is
  filled up with repeats of real events so that one compilation serves every chunk; only real
  events are counted), and
* with iminuit MIGRAD (+ HESSE), one event at a time, on the **same** nll function, the **same**
  seeds and the **same** internal coordinates (``joint.fit.to_internal``/``from_internal``), with
  a jitted JAX value and an autodiff gradient (the fastest iminuit set-up of
  ``PERFORMANCE.md`` §1.3: strategy 0 + JAX gradient), ``errordef = 0.5`` (the cost is −ln L).
  The cost is evaluated in the dtype of the batched fit (``cfg.dtype``, float32 in production);
  Minuit itself works in float64 (θ is cast to the fit dtype on the way in, the value and the
  gradient to float64 on the way out).

Timings: the preparation (seeds + channel selection) and the first call of each fitter (trace +
compile + one run) are reported separately from the fit throughput, which is measured on a
second, warm pass (``block_until_ready``). iminuit fits one event per call on one core; the
batched fitter uses whatever XLA gives it (every core of the CPU, or the GPU).

Quality, against the simulated truth, over converged events (batched: ``status == 0``; iminuit:
``Minuit.valid`` after MIGRAD; the fraction still valid, with an accurate covariance, after HESSE
is reported apart: in float32 HESSE's finite-difference Hessian is often not positive definite): 68 % containment of the opening angle between the fitted and true
directions [deg], 68 % quantile of the core distance [m], standard deviation of
Δlog10 E. Agreement: for events converged in both, the nll of both minima evaluated in float64
(same data, same function) and the median of |Δnll|; ``nll_batched − nll_iminuit`` > 0 means
iminuit found a lower point.
"""
from __future__ import annotations

import math
import os
import platform
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["run_bench", "format_table"]


def _quality(reco: dict, truth: dict, mask: np.ndarray) -> dict:
    """68 % angle [deg], 68 % core [m], std and mean of Δlog10 E over ``mask``."""
    from detectors.shower import direction

    m = np.asarray(mask, bool)
    if not m.any():
        return {"angle68_deg": math.nan, "core68_m": math.nan, "dlog10e_std": math.nan,
                "dlog10e_mean": math.nan, "n": 0}
    n_r = np.asarray(direction(np.asarray(reco["zenith"])[m], np.asarray(reco["azimuth"])[m]),
                     np.float64)
    n_t = np.asarray(direction(np.asarray(truth["zenith"])[m], np.asarray(truth["azimuth"])[m]),
                     np.float64)
    cosang = np.clip(np.sum(n_r * n_t, axis=-1), -1.0, 1.0)
    ang = np.degrees(np.arccos(cosang))
    core = np.hypot(np.asarray(reco["core_x"], np.float64)[m] - truth["core_x"][m],
                    np.asarray(reco["core_y"], np.float64)[m] - truth["core_y"][m])
    dle = np.asarray(reco["log10_energy"], np.float64)[m] - truth["log10_energy"][m]
    return {"angle68_deg": float(np.quantile(ang, 0.68)), "core68_m": float(np.quantile(core, 0.68)),
            "dlog10e_std": float(np.std(dle)), "dlog10e_mean": float(np.mean(dle)), "n": int(m.sum())}


def _take(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def _to_f64(tree):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
        else jnp.asarray(a), tree)


def format_table(res: dict) -> str:
    """The result table of :func:`run_bench` as text (ends with the ``ratio:`` line)."""
    rows = [("method", "events/s", "converged", "angle68 [deg]", "core68 [m]", "sigma dlog10E", "n")]
    for key, label in (("batched", "batched (all events)"),
                       ("batched_subset", "batched (iminuit events)"),
                       ("iminuit", "iminuit migrad+hesse")):
        r = res[key]
        q = r["quality"]
        eps = r.get("events_per_s")
        rows.append((label, "-" if eps is None else f"{eps:.1f}", f"{r['converged_fraction']:.3f}",
                     f"{q['angle68_deg']:.3f}", f"{q['core68_m']:.2f}", f"{q['dlog10e_std']:.4f}",
                     str(r["n_events"])))
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    a = res["agreement"]
    lines += [
        f"detectors: {'+'.join(res.get('detectors', ['km2a']))}, {res.get('primary', '?')} at "
        f"log10(E/GeV) = {res.get('log10_energy', float('nan')):g}, {res.get('dtype', '?')}",
        f"prepare (seeds + channel selection, {res['n_events']} events): {res['prepare_s']:.3f} s "
        f"warm, {res['prepare_first_call_s']:.2f} s first call (incl. compile); not in events/s",
        f"batched: first call (trace + compile + run, {res['batch_size']} events) "
        f"{res['batched']['first_call_s']:.2f} s; timed pass {res['batched']['fit_s']:.3f} s",
        f"iminuit: warm-up fit (incl. compile) {res['iminuit']['first_call_s']:.2f} s; timed loop "
        f"{res['iminuit']['fit_s']:.3f} s; median calls fcn {res['iminuit']['median_nfcn']:.0f}, "
        f"grad {res['iminuit']['median_ngrad']:.0f}; after hesse: valid "
        f"{res['iminuit']['hesse_valid_fraction']:.3f}, accurate covariance "
        f"{res['iminuit'].get('hesse_accurate_fraction', math.nan):.3f} (converged = valid after migrad)",
        f"agreement (float64 nll, {a['n_both']} events converged in both): median |dnll| "
        f"{a['median_abs_dnll']:.4g}, max (nll_batched - nll_iminuit) {a['max_dnll']:.4g}",
        f"ratio: {res['ratio']:.3g}",
    ]
    return "\n".join(lines)


def run_bench(n_events: int = 256, primary: str = "gamma", log10_energy: float = 5.0,
              batch_size: int = 256, n_iminuit: Optional[int] = None, seed: int = 5, cfg=None,
              out: Optional[Callable[[str], None]] = print) -> dict:
    """Run the batched-vs-iminuit throughput comparison; returns a dict of every number.

    Parameters
    ----------
    n_events : simulated (triggered) KM2A events, zenith < 40°, cores within 400 m.
    primary : "gamma", "proton", ... (the fit hypothesis is "gamma" for photons, else "hadron",
        unless ``cfg`` is given).
    log10_energy : fixed log10(E/GeV) of every event.
    batch_size : events per call of the batched fitter.
    n_iminuit : events fitted by iminuit (the first ones; default ``min(n_events, 64)``).
    seed : simulation seed.
    cfg : ``joint.config.ReconstructionConfig`` (default: production settings for the
        hypothesis).
    out : printer for progress and the table (None: silent).
    """
    import iminuit  # noqa: F401  (fail early when it is missing)

    say = out or (lambda *_: None)
    from joint.config import ReconstructionConfig

    if n_events < 1 or batch_size < 1:
        raise ValueError("n_events and batch_size must be positive")
    if cfg is None:
        cfg = ReconstructionConfig(hypothesis="gamma" if primary == "gamma" else "hadron")
    n_iminuit = min(n_events, 64) if n_iminuit is None else min(int(n_iminuit), n_events)
    if n_iminuit < 1:
        raise ValueError("n_iminuit must be >= 1")
    # Everything but the agreement check runs as production does: 64-bit types enabled only for a
    # float64 configuration (the float32 CLI path runs with jax_enable_x64 off).
    with jax.enable_x64(cfg.dtype != "float32"):
        res = _run(n_events, primary, log10_energy, batch_size, n_iminuit, seed, cfg, say)
    say(format_table(res))
    return res


def _run(n_events, primary, log10_energy, batch_size, n_iminuit, seed, cfg, say):
    from iminuit import Minuit

    from joint import fit as fitmod
    from joint.io.schema import to_event_batch
    from joint.pipeline import nll_function, prepare, straggler_passes
    from joint.config import detector_setup
    from joint.simulation import simulate_records

    fc = cfg.fit_config
    nll_fn = nll_function(cfg)

    # ---- simulation and preparation -------------------------------------------------------
    layouts, geometry, response = detector_setup(cfg.detectors)
    # showers on the ponds when WCDA takes part (its 1–30 TeV range, or joint fits of the
    # showers that both arrays see)
    # (WFCTA: directions and cores in the telescopes' view)
    cores_on = ("wfcta" if "wfcta" in cfg.detectors else
                "wcda" if "wcda" in cfg.detectors else "array")
    t0 = time.perf_counter()
    rec, thrown = simulate_records(n_events, primary=primary, detectors=cfg.detectors,
                                   log10_energy_range=(log10_energy, log10_energy),
                                   zenith_max_deg=40.0, core_radius_m=400.0, seed=seed,
                                   km2a_layout=layouts.get("km2a"), response=response.get("km2a"),
                                   wcda_layout=layouts.get("wcda"),
                                   wcda_response=response.get("wcda"),
                                   wfcta_layout=layouts.get("wfcta"),
                                   wfcta_response=response.get("wfcta"), cores_on=cores_on)
    sim_s = time.perf_counter() - t0
    say(f"simulated {n_events} triggered {primary} events at log10E = {log10_energy} "
        f"({thrown} thrown) in {sim_s:.1f} s")
    truth = {f: np.asarray(rec[f"true_{f}"], np.float64)
             for f in ("core_x", "core_y", "zenith", "azimuth", "log10_energy")}
    batch = to_event_batch(rec, km2a=layouts.get("km2a"), wcda=layouts.get("wcda"),
                           wfcta=layouts.get("wfcta"), source="<bench>", as_jax=False)
    t0 = time.perf_counter()
    seeds, data = prepare(batch, geometry, response, cfg)
    jax.block_until_ready((seeds, data))
    prepare_first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    seeds, data = prepare(batch, geometry, response, cfg)  # warm: what a production chunk costs
    jax.block_until_ready((seeds, data))
    prepare_s = time.perf_counter() - t0

    # ---- batched fitter -------------------------------------------------------------------
    n_chunks = -(-n_events // batch_size)
    idx = np.arange(n_chunks * batch_size) % n_events  # fill the last chunk with repeats
    chunks = [(_take(data, jnp.asarray(idx[k * batch_size:(k + 1) * batch_size])),
               _take(seeds, jnp.asarray(idx[k * batch_size:(k + 1) * batch_size])))
              for k in range(n_chunks)]
    jax.block_until_ready(chunks)

    def production_fit(d, s):
        """The production fit of a chunk: the scoring pass, then the exact-Hessian straggler
        pass on the events it left at MAX_ITER (``joint.pipeline``)."""
        r, i = fitmod.fit_events(nll_fn, d, s, fc)
        return straggler_passes(nll_fn, None, d, r, i, cfg)

    t0 = time.perf_counter()
    jax.block_until_ready(production_fit(*chunks[0]))
    first_s = time.perf_counter() - t0
    say(f"batched fitter: first call {first_s:.1f} s")
    results = []
    t0 = time.perf_counter()
    for d, s in chunks:
        results.append(production_fit(d, s))
    jax.block_until_ready(results)
    fit_s = time.perf_counter() - t0
    b_shower = {f: np.concatenate([np.asarray(getattr(r.shower, f)) for r, _ in results])[:n_events]
                for f in ("core_x", "core_y", "zenith", "azimuth", "log10_energy")}
    b_status = np.concatenate([np.asarray(i.status) for _, i in results])[:n_events]
    b_shower_tree = jax.tree_util.tree_map(
        lambda *a: jnp.concatenate(a)[:n_events], *[r.shower for r, _ in results])
    b_conv = b_status == fitmod.CONVERGED
    b_eps = n_events / fit_s
    say(f"batched fitter: {n_events} events in {fit_s:.3f} s -> {b_eps:.1f} events/s")

    # ---- iminuit ----------------------------------------------------------------------------
    dtype = jnp.dtype(jnp.float32 if cfg.dtype == "float32" else jnp.float64)

    def cost_internal(theta, seed_i, data_i):
        return nll_fn(fitmod.from_internal(theta, seed_i, fc), data_i)

    val_fn = jax.jit(cost_internal)
    grad_fn = jax.jit(jax.grad(cost_internal))
    to_int = jax.jit(lambda s: fitmod.to_internal(s, s, fc))
    from_int = jax.jit(lambda th, s: fitmod.from_internal(th, s, fc))
    names = fitmod.internal_names(fc)

    def fit_one_minuit(i):
        seed_i, data_i = _take(seeds, i), _take(data, i)
        theta0 = np.asarray(to_int(seed_i), np.float64)
        if "u" in names:  # the batched fitter's nudge off the exact zenith
            iu = names.index("u")
            s = math.hypot(theta0[iu], theta0[iu + 1])
            if s < 1e-4:
                theta0[iu:iu + 2] = (theta0[iu:iu + 2] / s if s > 0 else np.array([1.0, 0.0])) * 1e-4

        def fcn(theta):
            return float(val_fn(jnp.asarray(theta, dtype), seed_i, data_i))

        def grad(theta):
            return np.asarray(grad_fn(jnp.asarray(theta, dtype), seed_i, data_i), np.float64)

        m = Minuit(fcn, theta0, grad=grad, name=names)
        m.errordef = Minuit.LIKELIHOOD
        m.strategy = 0
        m.migrad()
        migrad_valid = bool(m.valid)
        m.hesse()
        return m, migrad_valid, seed_i

    t0 = time.perf_counter()
    fit_one_minuit(0)  # warm-up: compiles value and gradient (shared by all events)
    im_first_s = time.perf_counter() - t0
    minuits = []
    t0 = time.perf_counter()
    for i in range(n_iminuit):
        minuits.append(fit_one_minuit(i))
    im_fit_s = time.perf_counter() - t0
    im_eps = n_iminuit / im_fit_s
    say(f"iminuit: {n_iminuit} events in {im_fit_s:.2f} s -> {im_eps:.1f} events/s")
    # converged = MIGRAD's own verdict (FunctionMinimum.is_valid). HESSE's verdict is kept
    # apart: on a float32 cost its finite-difference Hessian is often not positive definite
    # ("made posdef", EDM then above the maximum), which says nothing about the minimum found.
    im_conv = np.array([v for _, v, _ in minuits])
    im_hesse_valid = np.array([bool(m.valid) for m, _, _ in minuits])
    im_hesse_accurate = np.array([bool(m.accurate) for m, _, _ in minuits])
    im_showers = [from_int(jnp.asarray(np.asarray(m.values), dtype), s) for m, _, s in minuits]
    im_tree = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *im_showers)
    im_shower = {f: np.asarray(getattr(im_tree, f), np.float64)
                 for f in ("core_x", "core_y", "zenith", "azimuth", "log10_energy")}

    # ---- agreement: float64 nll at both minima ---------------------------------------------
    sub = np.arange(n_iminuit)
    with jax.enable_x64(True):
        data64 = _to_f64(_take(data, sub))
        nll64 = jax.jit(jax.vmap(nll_fn))
        nll_b = np.asarray(nll64(_to_f64(_take(b_shower_tree, sub)), data64), np.float64)
        nll_i = np.asarray(nll64(_to_f64(im_tree), data64), np.float64)
    both = b_conv[:n_iminuit] & im_conv
    dnll = nll_b[both] - nll_i[both]

    truth_sub = {k: v[:n_iminuit] for k, v in truth.items()}
    res = {
        "n_events": n_events, "primary": primary, "log10_energy": float(log10_energy),
        "batch_size": batch_size, "n_iminuit": n_iminuit, "seed": seed,
        "hypothesis": cfg.hypothesis, "dtype": cfg.dtype, "n_iter": fc.n_iter, "free": list(fc.free),
        "n_ed": cfg.n_ed, "n_md": cfg.n_md, "n_wcda": cfg.n_wcda, "detectors": list(cfg.detectors),
        "backend": jax.default_backend(), "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "jax_version": jax.__version__, "iminuit_version": __import__("iminuit").__version__,
        "simulate_s": sim_s, "n_thrown": int(thrown), "prepare_s": prepare_s,
        "prepare_first_call_s": prepare_first_s,
        "batched": {
            "events_per_s": b_eps, "fit_s": fit_s, "first_call_s": first_s, "n_events": n_events,
            "converged_fraction": float(b_conv.mean()),
            "status_counts": np.bincount(b_status, minlength=4)[:4].tolist(),
            "quality": _quality(b_shower, truth, b_conv),
        },
        "batched_subset": {
            "n_events": n_iminuit, "converged_fraction": float(b_conv[:n_iminuit].mean()),
            "quality": _quality({k: v[:n_iminuit] for k, v in b_shower.items()}, truth_sub,
                                b_conv[:n_iminuit]),
        },
        "iminuit": {
            "events_per_s": im_eps, "fit_s": im_fit_s, "first_call_s": im_first_s,
            "n_events": n_iminuit, "converged_fraction": float(im_conv.mean()),
            "hesse_valid_fraction": float(im_hesse_valid.mean()),
            "hesse_accurate_fraction": float(im_hesse_accurate.mean()),
            "median_nfcn": float(np.median([m.nfcn for m, _, _ in minuits])),
            "median_ngrad": float(np.median([m.ngrad for m, _, _ in minuits])),
            "strategy": 0, "hesse": True,
            "quality": _quality(im_shower, truth_sub, im_conv),
        },
        "agreement": {
            "n_both": int(both.sum()),
            "median_abs_dnll": float(np.median(np.abs(dnll))) if dnll.size else math.nan,
            "max_dnll": float(np.max(dnll)) if dnll.size else math.nan,
            "min_dnll": float(np.min(dnll)) if dnll.size else math.nan,
            "dnll": dnll.tolist(),
            "nll_batched": nll_b.tolist(), "nll_iminuit": nll_i.tolist(),
            "both_converged": both.tolist(),
        },
        "ratio": b_eps / im_eps,
    }
    return res
