"""Simulate and reconstruct the event libraries of the instrument response and the simulated sky
(analysis/irf_library.py): independent seeds for the two purposes (IRF_SEEDS, SKY_SEEDS).

    python benchmarks/irf_libraries.py --detector km2a --purpose irf --gammas 12000 --protons 12000

Writes benchmarks/results/irf_cache/{purpose}_{detector}_{primary}_{n}.npz (gitignored; an
existing file is kept, not recomputed)."""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tqdm import tqdm  # noqa: E402

from analysis.irf_library import (IRF_SEEDS, SKY_SEEDS, library_path, save_library,  # noqa: E402
                                  simulate_library)

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "irf_cache")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--detector", choices=("km2a", "wcda"), required=True)
    ap.add_argument("--purpose", choices=("irf", "sky"), required=True)
    ap.add_argument("--gammas", type=int, default=12000)
    ap.add_argument("--protons", type=int, default=12000)
    ap.add_argument("--out", default=CACHE)
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    seeds = IRF_SEEDS if a.purpose == "irf" else SKY_SEEDS
    for primary, n in (("gamma", a.gammas), ("proton", a.protons)):
        if n <= 0:
            continue
        path = library_path(a.out, a.detector, primary, a.purpose, n)
        if os.path.exists(path):
            print(f"{path}: exists, kept")
            continue
        t0 = time.time()
        bar = tqdm(total=n, desc=f"{a.purpose} {a.detector} {primary}", unit="ev", mininterval=10)
        lib = simulate_library(a.detector, primary, n, seeds[(a.detector, primary)],
                               progress=bar.update)
        bar.close()
        save_library(path, lib)
        print(f"{path}: {n} events, {int(lib['n_thrown'])} thrown, "
              f"{int(lib['quality'].sum())} pass quality, {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
