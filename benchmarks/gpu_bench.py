"""GPU benchmark of the batched fitter (run by benchmarks/gpu.sh on the lent GPU machine).

1. The same simulated KM2A events fitted in float32 on the GPU and in float64 on the CPU:
   differences of the fitted parameters, in units of their errors.
2. Throughput of KM2A-only fits at batch sizes 10^3, 10^4, 10^5 (float32, GPU): compile time,
   fit-only events/s, seeds+fit events/s, converged fraction.
Joint fits (KM2A+WCDA+WFCTA) are not measured: those detector models are not built yet.

Needs only jax + numpy (the GPU image has no uproot/awkward): events are simulated in memory.
    python benchmarks/gpu_bench.py --out results.json [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # float64 available for the CPU reference
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


class _Batch:  # the two blocks reconstruct_batch reads
    def __init__(self, ed, md):
        self.km2a_ed, self.km2a_md = ed, md


def simulate(n, seed, log10_energy=5.0, primary="gamma"):
    from detectors import km2a
    from detectors.layout import km2a_layout
    from detectors.primaries import sample_primaries, shower_from_truth
    from joint.simulation import simulate_km2a_blocks

    lay = km2a_layout("full")
    geo = km2a.Geometry.from_layout(lay)
    resp = km2a.Response.nominal(geo)
    f32 = lambda t: jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float32) if np.issubdtype(np.asarray(a).dtype, np.floating) else jnp.asarray(a), t)
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    kept_truth, eds, mds, n_kept = [], [], [], 0
    while n_kept < n:
        chunk = 2048
        truth = sample_primaries(rng, chunk, primary=primary, log10_energy_range=(log10_energy, log10_energy))
        key, sub = jax.random.split(key)
        obs, trig = simulate_km2a_blocks(sub, shower_from_truth(truth, dtype=jnp.float32),
                                         np.full(chunk, 1.0 if primary == "gamma" else 0.0, np.float32),
                                         f32(geo), f32(resp))
        sel = np.nonzero(np.asarray(trig))[0][: n - n_kept]
        kept_truth.append({k: v[sel] for k, v in truth.items()})
        eds.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[sel], obs.ed))
        mds.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[sel], obs.md))
        n_kept += sel.size
    cat = lambda xs: jax.tree_util.tree_map(lambda *a: np.concatenate(a), *xs)
    truth = {k: np.concatenate([t[k] for t in kept_truth]) for k in kept_truth[0]}
    return truth, _Batch(cat(eds), cat(mds)), geo, resp


def fit(batch, geo, resp, dtype, device, hypothesis="gamma"):
    from joint.reconstruct import ReconstructionConfig, reconstruct_batch

    cfg = ReconstructionConfig(hypothesis=hypothesis, dtype=dtype)
    with jax.default_device(device):
        t0 = time.perf_counter()
        out = reconstruct_batch(batch, geo, resp, cfg)
        return out, time.perf_counter() - t0


def throughput(batch, geo, resp, n, device):
    from joint import fit as fitmod
    from joint.reconstruct import ReconstructionConfig, nll_function, prepare

    cfg = ReconstructionConfig(hypothesis="gamma", dtype="float32")
    reps = int(np.ceil(n / batch.km2a_ed.signal.shape[0]))
    tile = lambda t: jax.tree_util.tree_map(lambda a: np.concatenate([a] * reps)[:n], t)
    b = _Batch(tile(batch.km2a_ed), tile(batch.km2a_md))
    with jax.default_device(device):
        t0 = time.perf_counter()
        seeds, data = prepare(b, geo, resp, cfg)
        jax.block_until_ready(data)
        t_prep_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        seeds, data = prepare(b, geo, resp, cfg)
        jax.block_until_ready(data)
        t_prep = time.perf_counter() - t0
        nll = nll_function(cfg)
        t0 = time.perf_counter()
        r, i = fitmod.fit_events(nll, data, seeds, cfg.fit_config)
        jax.block_until_ready(r)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        r, i = fitmod.fit_events(nll, data, seeds, cfg.fit_config)
        jax.block_until_ready(r)
        t_fit = time.perf_counter() - t0
    conv = float(np.mean(np.asarray(i.status) == 0))
    return {"batch": n, "compile_plus_first_fit_s": t_first, "fit_s": t_fit, "fit_events_per_s": n / t_fit,
            "prepare_first_s": t_prep_first, "prepare_s": t_prep,
            "seeds_plus_fit_events_per_s": n / (t_fit + t_prep), "converged_fraction_first_pass": conv,
            "n_iter": cfg.n_iter}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (to test the script on a CPU)")
    args = ap.parse_args(argv)
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "devices": [str(d) for d in jax.devices()],
           "jax": jax.__version__}
    gpu = jax.devices()[0]
    cpu = jax.devices("cpu")[0]
    res["device"] = gpu.device_kind
    print("devices:", res["devices"], flush=True)
    n_cmp = 64 if args.quick else 1024
    t0 = time.perf_counter()
    truth, batch, geo, resp = simulate(n_cmp, seed=3)
    res["simulate_s"] = time.perf_counter() - t0
    out32, t32 = fit(batch, geo, resp, "float32", gpu)
    out64, t64 = fit(batch, geo, resp, "float64", cpu)
    both = (out32["status"] == 0) & (out64["status"] == 0)
    cmp = {"n": n_cmp, "both_converged": int(both.sum()), "gpu_f32_first_call_s": t32, "cpu_f64_first_call_s": t64,
           "converged_f32": float(np.mean(out32["status"] == 0)), "converged_f64": float(np.mean(out64["status"] == 0))}
    for f in ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "xmax", "t0"):
        d = (out32[f"reco_{f}"] - out64[f"reco_{f}"])[both]
        e = out64[f"reco_{f}_err"][both]
        cmp[f] = {"median_abs_diff": float(np.median(np.abs(d))), "max_abs_diff_over_err": float(np.max(np.abs(d) / e)),
                  "median_abs_diff_over_err": float(np.median(np.abs(d) / e))}
    dn = (out32["nll_km2a"] - out64["nll_km2a"])[both]
    cmp["nll_median_abs_diff"] = float(np.median(np.abs(dn)))
    res["float32_gpu_vs_float64_cpu"] = cmp
    print(json.dumps(cmp, indent=1), flush=True)
    sizes = [256, 1024] if args.quick else [1000, 10000, 100000]
    res["throughput"] = []
    for n in sizes:
        try:
            r = throughput(batch, geo, resp, n, gpu)
        except Exception as exc:  # keep the other sizes (e.g. out of memory)
            r = {"batch": n, "error": repr(exc)[:500]}
        res["throughput"].append(r)
        print(json.dumps(r), flush=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
