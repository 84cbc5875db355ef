"""Where a KM2A reconstruction spends its time, phase by phase (issue 15), for configuration
variants side by side on the same events in one process (warm: every variant runs once before
it is timed).

    .venv/bin/python benchmarks/pipeline_phases.py --n-events 1024 --batch-size 512 \
        --core-scan-channels default 384,96 256,64 --json results/pipeline_phases.json

Events: simulated photons, log10(E/GeV) uniform in [4.7, 5.5], zenith < 40°, cores within 400 m
(seed 2, the sample of ``e2e_throughput.py``). Phases per batch (``jax.block_until_ready`` after
each): ``dense`` (records -> dense blocks), ``prepare`` (seeds, core scan, channel selection),
``fit`` (first pass), ``straggler`` (refit passes), ``gof`` and ``observables``. Quality: the
converged fraction and the 68% angle / core / |Δlog10 E| against the truth.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

import common  # noqa: F401  (sys.path)
from common import angle_deg, machine


def phases(rec, cfg, batch_size, layouts, geometry, response):
    import jax

    from analysis.observables import observables
    from joint import fit as fitmod
    from joint import pipeline as P
    from joint.event import pad_batch
    from joint.io.schema import to_event_batch

    def blk(x):
        jax.block_until_ready(x)
        return x

    T = dict.fromkeys(("dense", "prepare", "fit", "straggler", "gof", "observables"), 0.0)
    outs = []
    n = len(rec["event_id"])
    for a in range(0, n, batch_size):
        sub = {k: v[a:a + batch_size] for k, v in rec.items()}
        t = time.perf_counter()
        batch, _ = pad_batch(to_event_batch(sub, layouts, as_jax=False), batch_size)
        T["dense"] += time.perf_counter() - t
        t = time.perf_counter()
        blocks, geos, resps = P._normalise(batch, geometry, response, cfg)
        prep, model, terms = P._pipeline(cfg)
        seeds, data = blk(prep(blocks, geos, resps))
        T["prepare"] += time.perf_counter() - t
        t = time.perf_counter()
        result, info = blk(fitmod.fit_events(model, data, seeds, cfg.fit_config, terms_fn=terms,
                                             trace_key=repr(cfg)))
        T["fit"] += time.perf_counter() - t
        t = time.perf_counter()
        result, info = blk(P.straggler_passes(model, terms, data, result, info, cfg))
        T["straggler"] += time.perf_counter() - t
        t = time.perf_counter()
        blk(P._gof_fn(cfg)(result.shower, data))
        T["gof"] += time.perf_counter() - t
        t = time.perf_counter()
        observables(cfg, result.shower, blocks, geos, resps)
        T["observables"] += time.perf_counter() - t
        m = min(batch_size, n - a)
        outs.append({"status": np.asarray(info.status)[:m],
                     **{f: np.asarray(getattr(result.shower, f))[:m]
                        for f in ("core_x", "core_y", "zenith", "azimuth", "log10_energy")}})
    return T, {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def quality(rec, out):
    ang = angle_deg(out["zenith"], out["azimuth"], rec["true_zenith"], rec["true_azimuth"])
    core = np.hypot(out["core_x"] - rec["true_core_x"], out["core_y"] - rec["true_core_y"])
    de = np.abs(out["log10_energy"] - rec["true_log10_energy"])
    return {"converged": float(np.mean(out["status"] == 0)),
            "angle68_deg": float(np.percentile(ang, 68)), "core68_m": float(np.percentile(core, 68)),
            "dlog10e68": float(np.percentile(de, 68))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-events", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--core-scan-channels", nargs="+", default=["default"],
                   help="variants: 'default' or NED,NMD")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from joint.config import config_for, detector_setup
    from joint.simulation import simulate_records

    rec, _ = simulate_records(args.n_events, primary="gamma", log10_energy_range=(4.7, 5.5),
                              seed=2)
    layouts, geometry, response = detector_setup({"km2a"})
    base = config_for(("km2a",), "gamma")
    print(f"# pipeline phases, {time.strftime('%Y-%m-%d %H:%M')}, {machine()}, {args.n_events} "
          f"photons, batch {args.batch_size}; seconds per 1000 events")
    print(f"{'core scan channels':20s} " + " ".join(f"{k:>10s}" for k in
          ("dense", "prepare", "fit", "straggler", "gof", "observables", "total")) +
          "   ev/s   conv  ang68°  core68m  |dlgE|68")
    rows = []
    for v in args.core_scan_channels:
        cfg = base if v == "default" else dataclasses.replace(
            base, core_scan_channels=tuple(int(x) for x in v.split(",")))
        phases(rec, cfg, args.batch_size, layouts, geometry, response)  # warm (compile)
        T, out = phases(rec, cfg, args.batch_size, layouts, geometry, response)
        q = quality(rec, out)
        total = sum(T.values())
        rows.append({"core_scan_channels": v, "seconds": T, "total": total,
                     "events_per_s": args.n_events / total, **q})
        print(f"{v:20s} " + " ".join(f"{1000 * T[k] / args.n_events:10.3f}" for k in T) +
              f" {1000 * total / args.n_events:10.3f} {args.n_events / total:6.1f}  "
              f"{q['converged']:.3f}  {q['angle68_deg']:.3f}  {q['core68_m']:6.2f}  "
              f"{q['dlog10e68']:.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
