"""Trace + compile time of the joint fit with WFCTA's profiled nuisances against without them
(issue 16): the same few events reconstructed twice per configuration in one process (no
persistent caches); first call − second call ≈ tracing and XLA compilation.

    .venv/bin/python benchmarks/nuisance_compile_time.py --detectors km2a wfcta --n-events 8
"""
from __future__ import annotations

import argparse
import sys
import time

from common import machine, nuisance_config, reconstruct, simulate_and_reconstruct


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--detectors", nargs="+", default=["km2a", "wfcta"])
    ap.add_argument("--n-events", type=int, default=8)
    ap.add_argument("--log10-energy", type=float, default=6.0)
    args = ap.parse_args(argv)
    from joint.config import ReconstructionConfig

    dets = tuple(args.detectors)
    print(f"# {' '.join(['benchmarks/nuisance_compile_time.py'] + (sys.argv[1:] if argv is None else list(argv)))}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {machine()}")
    base = ReconstructionConfig(hypothesis="hadron", detectors=dets)
    off, on = nuisance_config(base, (0.0, 0.0)), nuisance_config(base, None)
    rec, _, _ = simulate_and_reconstruct("proton", args.log10_energy, args.n_events, 7, "hadron",
                                         cfg=ReconstructionConfig(hypothesis="hadron", detectors=("km2a",)),
                                         detectors=dets, cores_on="wfcta", core_radius=300.0,
                                         batch_size=args.n_events)
    for name, cfg in (("off", off), ("on", on)):
        _, t1 = reconstruct(rec, cfg, batch_size=args.n_events)
        out, t2 = reconstruct(rec, cfg, batch_size=args.n_events)
        conv = float((out["status"] == 0).mean())
        print(f"nuisances {name:3s}: first call {t1:7.1f} s, second {t2:6.1f} s, "
              f"trace+compile ≈ {t1 - t2:7.1f} s; converged {conv:.2f} of {len(out['status'])}",
              flush=True)


if __name__ == "__main__":
    main()
