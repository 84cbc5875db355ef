"""GPU benchmark of the batched fitter (run by benchmarks/gpu.sh on the lent GPU machine).

KM2A alone (part "km2a"; 100 TeV photons, cores uniform within 400 m of the KM2A centre):
1. The same simulated KM2A events (1024) fitted in float32 on the GPU and in float64 on the CPU:
   differences of the fitted parameters, in units of their errors (|Δ|/σ).
2. Throughput of KM2A-only fits at batch sizes 10^3, 10^4, 10^5 (float32, GPU): compile time,
   fit-only events/s, seeds+fit events/s, converged fraction.

KM2A+WCDA jointly (part "joint"; photons at log10(E/GeV) = 5.0, zenith < 40°, cores uniform on
the WCDA cells; only events where BOTH KM2A and WCDA triggered are kept — the selection counts
are in the JSON):
3. The same as 1. for joint fits (512 events; ``ReconstructionConfig(detectors=("km2a", "wcda"))``),
   plus the differences of ``nll_km2a``, ``nll_wcda`` and the total ``nll``.
4. The same as 2. for joint fits at 10^3, 10^4, 10^5. The dense inputs are (B, 6404) KM2A and
   (B, 3120) WCDA channels; at 10^5 that is ~13 GB on the host and on the device. By default the
   10^5 batch is tried whole; if it fails (e.g. out of memory) the error is recorded and it is
   measured again in chunks of 10^4 (the compilation of the 10^4 size is reused; the chunks run
   one after another, each prepared and fitted on its own). ``--joint-chunk N`` forces chunks of
   N for every batch larger than N. Each throughput row says what was done ("chunk": null or
   the chunk size; "whole_batch_error" when the whole batch failed first).

Throughput rows: compile_plus_first_fit_s and prepare_first_s are the first (compiling) calls;
fit_s and prepare_s are the second, warm calls (prepare_s includes the host->device transfer of
the dense blocks). The comparison events are tiled to the batch size. Results are written to
--out after every step, so a timeout keeps what was measured. ``--parts km2a`` or
``--parts joint`` runs one part (the default runs both: about 3–4 min for KM2A and, estimated,
3–4 min for the joint part on an H200).

Needs only jax + numpy (the GPU image has no uproot/awkward): events are simulated in memory.
    python benchmarks/gpu_bench.py --out results.json [--quick] [--parts km2a,joint]
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

PARTS = ("km2a", "joint")
JOINT = ("km2a", "wcda")
#: dense blocks each detector contributes to a batch
BLOCKS = {"km2a": ("km2a_ed", "km2a_md"), "wcda": ("wcda",)}
FIT_FIELDS = ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "xmax", "t0")


class _Batch:  # the blocks reconstruct_batch / prepare read (km2a_ed, km2a_md, wcda)
    def __init__(self, **blocks):
        self.blocks = blocks
        for k, v in blocks.items():
            setattr(self, k, v)

    def __len__(self):
        return next(iter(self.blocks.values())).signal.shape[0]


def _f32(tree):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float32) if np.issubdtype(np.asarray(a).dtype, np.floating)
        else jnp.asarray(a), tree)


def _setup(detectors):
    """{detector: (layout, geometry, response)} (nominal, float64 on the host)."""
    from detectors import km2a, wcda
    from detectors.layout import km2a_layout, wcda_layout

    out = {}
    if "km2a" in detectors:
        lay = km2a_layout("full")
        geo = km2a.Geometry.from_layout(lay)
        out["km2a"] = (lay, geo, km2a.Response.nominal(geo))
    if "wcda" in detectors:
        lay = wcda_layout()
        geo = wcda.Geometry.from_layout(lay)
        out["wcda"] = (lay, geo, wcda.Response.nominal(geo))
    return out


def simulate(n, seed, log10_energy=5.0, primary="gamma", detectors=("km2a",), chunk=2048):
    """``n`` triggered events of ``detectors`` (simulated in float32 on the default device).

    KM2A alone: cores uniform within 400 m of the KM2A centre, events where KM2A triggered.
    KM2A+WCDA: cores uniform on the WCDA cells, events where every detector triggered.
    Returns (truth, batch, geometries, responses, selection counts); geometries/responses are
    dicts {detector: ...}.
    """
    from detectors.primaries import sample_primaries, shower_from_truth
    from joint.simulation import simulate_km2a_blocks, simulate_wcda_blocks, wcda_core_sampler

    setup = _setup(detectors)
    geos = {d: s[1] for d, s in setup.items()}
    resps = {d: s[2] for d, s in setup.items()}
    geos32, resps32 = _f32(geos), _f32(resps)
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    kept_truth, kept = [], {b: [] for d in detectors for b in BLOCKS[d]}
    n_kept = thrown = 0
    n_trig = {d: 0 for d in detectors}
    while n_kept < n:
        truth = sample_primaries(rng, chunk, primary=primary, log10_energy_range=(log10_energy, log10_energy))
        if "wcda" in detectors:
            truth["true_core_x"], truth["true_core_y"] = wcda_core_sampler(setup["wcda"][0], rng, chunk)
        showers = shower_from_truth(truth, dtype=jnp.float32)
        is_gamma = np.full(chunk, 1.0 if primary == "gamma" else 0.0, np.float32)
        blocks, trig = {}, []
        for d in detectors:
            key, sub = jax.random.split(key)
            if d == "km2a":
                obs, t = simulate_km2a_blocks(sub, showers, is_gamma, geos32[d], resps32[d])
                blocks["km2a_ed"], blocks["km2a_md"] = obs.ed, obs.md
            else:
                obs, t = simulate_wcda_blocks(sub, showers, is_gamma, geos32[d], resps32[d])
                blocks["wcda"] = obs.cells
            t = np.asarray(t)
            n_trig[d] += int(t.sum())
            trig.append(t)
        thrown += chunk
        sel = np.nonzero(np.logical_and.reduce(trig))[0][: n - n_kept]
        kept_truth.append({k: v[sel] for k, v in truth.items()})
        for b, v in blocks.items():
            kept[b].append(jax.tree_util.tree_map(lambda a: np.asarray(a)[sel], v))
        n_kept += sel.size
        if thrown > 200 * n + 10 * chunk and n_kept == 0:
            raise RuntimeError(f"no event triggered in {thrown} thrown")
    cat = lambda xs: jax.tree_util.tree_map(lambda *a: np.concatenate(a), *xs)
    truth = {k: np.concatenate([t[k] for t in kept_truth]) for k in kept_truth[0]}
    counts = {"thrown": thrown, **{f"triggered_{d}": c for d, c in n_trig.items()},
              "kept": n_kept, "kept_when": "all of " + "+".join(detectors) + " triggered"}
    return truth, _Batch(**{b: cat(v) for b, v in kept.items()}), geos, resps, counts


def _config(detectors, dtype):
    from joint.config import ReconstructionConfig

    return ReconstructionConfig(detectors=tuple(detectors), hypothesis="gamma", dtype=dtype)


def fit(batch, geos, resps, cfg, device):
    from lhaaso_joint.api import reconstruct_batch

    with jax.default_device(device):
        t0 = time.perf_counter()
        out = reconstruct_batch(batch, geos, resps, cfg)
        return out, time.perf_counter() - t0


def compare(batch, geos, resps, detectors, gpu, cpu):
    """float32 on ``gpu`` vs float64 on ``cpu`` on the same events."""
    out32, t32 = fit(batch, geos, resps, _config(detectors, "float32"), gpu)
    out64, t64 = fit(batch, geos, resps, _config(detectors, "float64"), cpu)
    both = (out32["status"] == 0) & (out64["status"] == 0)
    cmp = {"n": len(batch), "both_converged": int(both.sum()), "gpu_f32_first_call_s": t32,
           "cpu_f64_first_call_s": t64, "converged_f32": float(np.mean(out32["status"] == 0)),
           "converged_f64": float(np.mean(out64["status"] == 0))}
    if not both.any():
        cmp["error"] = "no event converged in both fits"
        return cmp
    for f in FIT_FIELDS:
        d = (out32[f"reco_{f}"] - out64[f"reco_{f}"])[both]
        e = out64[f"reco_{f}_err"][both]
        cmp[f] = {"median_abs_diff": float(np.median(np.abs(d))), "max_abs_diff_over_err": float(np.max(np.abs(d) / e)),
                  "median_abs_diff_over_err": float(np.median(np.abs(d) / e))}
    if tuple(detectors) == ("km2a",):
        dn = (out32["nll_km2a"] - out64["nll_km2a"])[both]
        cmp["nll_median_abs_diff"] = float(np.median(np.abs(dn)))
    else:
        for name in ["nll"] + [f"nll_{d}" for d in detectors]:
            dn = np.abs(out32[name] - out64[name])[both]
            cmp[f"{name}_median_abs_diff"] = float(np.median(dn))
            cmp[f"{name}_max_abs_diff"] = float(np.max(dn))
    return cmp


def _tile(batch, n):
    reps = int(np.ceil(n / len(batch)))
    tile = lambda t: jax.tree_util.tree_map(lambda a: np.concatenate([a] * reps)[:n], t)
    return _Batch(**{k: tile(v) for k, v in batch.blocks.items()})


def _slice(batch, start, stop):
    return _Batch(**{k: jax.tree_util.tree_map(lambda a: a[start:stop], v) for k, v in batch.blocks.items()})


def _peak_bytes(device):
    try:
        stats = device.memory_stats() or {}
    except Exception:  # CPU backends may not implement it
        stats = {}
    return stats.get("peak_bytes_in_use")


def throughput(batch, geos, resps, n, device, detectors=("km2a",), chunk=None):
    """Fit ``n`` events (the batch tiled) in float32 on ``device``, twice: the first calls compile,
    the second are timed. With ``chunk`` (< n) the events go through in chunks of ``chunk``
    (each prepared and fitted on its own; the first chunk is the warm-up)."""
    from joint import fit as fitmod
    from joint.pipeline import nll_function, prepare

    cfg = _config(detectors, "float32")
    b = _tile(batch, n)
    step = n if chunk is None or chunk >= n else int(chunk)
    if n % step:
        raise ValueError(f"batch {n} is not a multiple of the chunk {step}")
    nll = nll_function(cfg)

    def run(part):
        t0 = time.perf_counter()
        seeds, data = prepare(part, geos, resps, cfg)
        jax.block_until_ready(data)
        tp = time.perf_counter() - t0
        t0 = time.perf_counter()
        r, i = fitmod.fit_events(nll, data, seeds, cfg.fit_config)
        jax.block_until_ready(r)
        return tp, time.perf_counter() - t0, np.asarray(i.status)

    with jax.default_device(device):
        t_prep_first, t_first, _ = run(_slice(b, 0, step))  # compiles (or reuses) the step shape
        t_prep = t_fit = 0.0
        status = []
        for start in range(0, n, step):
            tp, tf, st = run(_slice(b, start, start + step))
            t_prep += tp
            t_fit += tf
            status.append(st)
    conv = float(np.mean(np.concatenate(status) == 0))
    return {"batch": n, "chunk": None if step == n else step,
            "compile_plus_first_fit_s": t_first, "fit_s": t_fit, "fit_events_per_s": n / t_fit,
            "prepare_first_s": t_prep_first, "prepare_s": t_prep,
            "seeds_plus_fit_events_per_s": n / (t_fit + t_prep), "converged_fraction_first_pass": conv,
            "n_iter": cfg.n_iter, "device_peak_bytes_in_use": _peak_bytes(device)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (to test the script on a CPU)")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="comma-separated parts to run: km2a, joint (default both)")
    ap.add_argument("--joint-chunk", type=int, default=None,
                    help="process joint batches larger than this in chunks of this size "
                         "(default: whole batch; on failure retry in chunks of 10^4, quick: 64)")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        ap.error(f"--parts must be a subset of {PARTS}, got {args.parts!r}")
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "devices": [str(d) for d in jax.devices()],
           "jax": jax.__version__, "quick": bool(args.quick), "parts": parts}
    gpu = jax.devices()[0]
    cpu = jax.devices("cpu")[0]
    res["device"] = gpu.device_kind
    print("devices:", res["devices"], flush=True)
    out = Path(args.out)
    save = lambda: out.write_text(json.dumps(res, indent=1))
    t_start = time.perf_counter()

    if "km2a" in parts:
        n_cmp = 64 if args.quick else 1024
        t0 = time.perf_counter()
        truth, batch, geos, resps, _ = simulate(n_cmp, seed=3)
        res["simulate_s"] = time.perf_counter() - t0
        cmp = compare(batch, geos, resps, ("km2a",), gpu, cpu)
        res["float32_gpu_vs_float64_cpu"] = cmp
        print(json.dumps(cmp, indent=1), flush=True)
        save()
        sizes = [256, 1024] if args.quick else [1000, 10000, 100000]
        res["throughput"] = []
        for n in sizes:
            try:
                r = throughput(batch, geos, resps, n, gpu)
            except Exception as exc:  # keep the other sizes (e.g. out of memory)
                r = {"batch": n, "error": repr(exc)[:500]}
            res["throughput"].append(r)
            print(json.dumps(r), flush=True)
            save()
        del truth, batch
        res["km2a_part_s"] = time.perf_counter() - t_start

    if "joint" in parts:
        t_joint = time.perf_counter()
        n_cmp = 32 if args.quick else 512
        t0 = time.perf_counter()
        truth, batch, geos, resps, counts = simulate(n_cmp, seed=5, detectors=JOINT,
                                                     chunk=256 if args.quick else 1024)
        res["joint_events"] = {"primary": "gamma", "log10_energy": 5.0, "cores": "uniform on the WCDA cells",
                               "zenith_max_deg": 40.0, **counts}
        res["joint_simulate_s"] = time.perf_counter() - t0
        print(json.dumps(res["joint_events"]), flush=True)
        cmp = compare(batch, geos, resps, JOINT, gpu, cpu)
        res["joint_float32_gpu_vs_float64_cpu"] = cmp
        print(json.dumps(cmp, indent=1), flush=True)
        save()
        sizes = [64, 128] if args.quick else [1000, 10000, 100000]
        fallback = 64 if args.quick else 10000
        res["joint_throughput"] = []
        for n in sizes:
            chunk = args.joint_chunk if args.joint_chunk and args.joint_chunk < n else None
            try:
                r = throughput(batch, geos, resps, n, gpu, JOINT, chunk)
            except Exception as exc:  # keep the other sizes (e.g. out of memory)
                r = {"batch": n, "chunk": chunk, "error": repr(exc)[:500]}
            # retry outside the except block, so that the failed attempt's buffers (held by the
            # traceback) are released first
            if "error" in r and chunk is None and n > fallback and n % fallback == 0:
                print(json.dumps(r), "-> retrying in chunks of", fallback, flush=True)
                try:
                    r = {**throughput(batch, geos, resps, n, gpu, JOINT, fallback),
                         "whole_batch_error": r["error"]}
                except Exception as exc:
                    r["chunked_error"] = repr(exc)[:500]
            res["joint_throughput"].append(r)
            print(json.dumps(r), flush=True)
            save()
        res["joint_part_s"] = time.perf_counter() - t_joint
    res["total_s"] = time.perf_counter() - t_start
    res["uproot_or_awkward_imported"] = [m for m in ("uproot", "awkward") if sys.modules.get(m) is not None]
    save()


if __name__ == "__main__":
    main()
