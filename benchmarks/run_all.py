"""``make bench``: a quick pass over the main benchmarks (small samples, minutes on 2 CPU cores).

The figures quoted in BENCHMARKS.md come from the full-size commands recorded there; this runs
the same scripts small, to check they work and to see the order of magnitude. ``--list`` prints
the commands without running them. Outputs go to ``benchmarks/results/quick/<name>.txt``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
QUICK = [
    ("throughput_km2a", [PY, "benchmarks/bench_throughput.py", "--n-events", "256",
                         "--batch-size", "128", "--n-iminuit", "32"]),
    ("calib_recovery_km2a", [PY, "benchmarks/calib_recovery.py", "--detector", "km2a",
                             "--n-events", "256", "--n-test", "256", "--n-outer", "2"]),
    ("calib_recovery_km2a_34_db", [PY, "benchmarks/calib_recovery.py", "--detector", "km2a",
                                   "--layout", "3/4", "--via-db", "--n-events", "256",
                                   "--n-test", "256", "--n-outer", "2"]),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--list", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    out = ROOT / "benchmarks" / "results" / "quick"
    failed = []
    for name, cmd in QUICK:
        print(f"[{name}] {' '.join(cmd)}", flush=True)
        if args.list:
            continue
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(out / f"{name}.txt", "w") as f:
            rc = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        print(f"[{name}] exit {rc} after {time.perf_counter() - t0:.0f} s -> {out / (name + '.txt')}",
              flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
