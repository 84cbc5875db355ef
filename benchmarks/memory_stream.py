"""Peak memory of reconstructing 10^5 events streamed from one file (issue 3).

    .venv/bin/python benchmarks/memory_stream.py --n-events 100000 --work /tmp/mem
    /usr/bin/time -v .venv/bin/lhaaso-joint reconstruct /tmp/mem/big.root -o /tmp/mem/reco.root \
        --hypothesis gamma --batch-size 512 --quiet      # "Maximum resident set size"

The file is built from 1000 simulated photons (log10 E in [4.7, 5.5]) repeated with new event ids
(the content does not matter for memory; the size does), written in one go.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import common  # noqa: F401  (sys.path)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-events", type=int, default=100000)
    ap.add_argument("--work", default="/tmp/lhaaso_mem")
    args = ap.parse_args(argv)
    import awkward as ak

    from joint.io.schema import write_events
    from joint.simulation import simulate_records

    rec, _ = simulate_records(1000, primary="gamma", log10_energy_range=(4.7, 5.5), seed=2)
    reps = int(np.ceil(args.n_events / 1000))
    big = {}
    for k, v in rec.items():
        if isinstance(v, ak.Array):
            big[k] = ak.concatenate([v] * reps)[: args.n_events]
        else:
            big[k] = np.concatenate([v] * reps)[: args.n_events]
    big["event_id"] = np.arange(args.n_events, dtype=np.int64)
    out = Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    write_events(out / "big.root", big)
    print(f"wrote {args.n_events} events to {out / 'big.root'} ({(out / 'big.root').stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
