"""Throughput of the batched fitter against iminuit (MIGRAD strategy 0 + HESSE, JAX value and
autodiff gradient) on the same KM2A likelihood, seeds and internal coordinates.

Reproduce the reference run (256 photons at 100 TeV, 48 of them also fitted by iminuit):

    .venv/bin/python benchmarks/bench_throughput.py --n-events 256 --primary gamma \
        --log10-energy 5.0 --batch-size 256 --n-iminuit 48 --seed 5 --json bench_throughput.json

Prints a table (events/s, converged fraction, 68 % angular and core errors, energy resolution)
and the line ``ratio: <batched events/s / iminuit events/s>``; see ``joint.bench.run_bench``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from joint.bench import run_bench  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-events", type=int, default=256, help="simulated triggered events")
    ap.add_argument("--primary", default="gamma", help="gamma, proton, helium, ... (default gamma)")
    ap.add_argument("--log10-energy", type=float, default=5.0, help="fixed log10(E/GeV)")
    ap.add_argument("--batch-size", type=int, default=256, help="events per batched-fitter call")
    ap.add_argument("--n-iminuit", type=int, default=None,
                    help="events fitted with iminuit (default min(n_events, 64))")
    ap.add_argument("--seed", type=int, default=5, help="simulation seed")
    ap.add_argument("--json", type=Path, default=None, help="write every number to this JSON file")
    ap.add_argument("--n-ed", type=int, default=None, help="active EDs per event (default 768)")
    ap.add_argument("--n-md", type=int, default=None, help="active MDs per event (default 192)")
    args = ap.parse_args(argv)
    from joint.config import ReconstructionConfig

    kw = {k: v for k, v in (("n_ed", args.n_ed), ("n_md", args.n_md)) if v is not None}
    cfg = ReconstructionConfig(hypothesis="gamma" if args.primary == "gamma" else "hadron", **kw)
    res = run_bench(n_events=args.n_events, primary=args.primary, log10_energy=args.log10_energy,
                    batch_size=args.batch_size, n_iminuit=args.n_iminuit, seed=args.seed, cfg=cfg)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
        print(f"wrote {args.json}")
    return res


if __name__ == "__main__":
    main()
