"""Cold and warm time of ``lhaaso_joint.reconstruct`` on a 16-event file, per detector
combination (issue 14: compile once per machine).

Each measurement runs in a fresh Python process (nothing cached in memory). "cold": an empty
persistent compilation cache directory; "warm": the same directory again, as a user's second
run. The time is the ``reconstruct`` call (read, seed, fit, write, table), not the imports nor
the simulation of the input file (done beforehand in another process).

    python benchmarks/compile_times.py [--events 16] [--combos km2a km2a+wcda km2a+wcda+wfcta]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIM = {
    "km2a": dict(primary="gamma", log10_energy_range=(5.0, 5.3)),
    "km2a+wcda": dict(primary="gamma", log10_energy_range=(4.6, 5.0), cores_on="wcda"),
    "km2a+wcda+wfcta": dict(primary="proton", log10_energy_range=(5.8, 6.1), cores_on="wfcta"),
}

CHILD = r"""
import json, sys, time
t_import = time.perf_counter()
from lhaaso_joint import reconstruct
t0 = time.perf_counter()
tab = reconstruct(sys.argv[1], sys.argv[2], progress=False, batch_size=int(sys.argv[3]))
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "import_s": t0 - t_import, "events": len(tab),
                  "converged": int((tab["status"] == 0).sum())}))
"""


def _run(args, env):
    res = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                         env=env)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=16)
    ap.add_argument("--combos", nargs="+", default=list(SIM))
    ap.add_argument("--out", default="benchmarks/results/compile_times.json")
    a = ap.parse_args(argv)
    from lhaaso_joint import simulate

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for combo in a.combos:
            dets = tuple(combo.split("+"))
            src = simulate(Path(tmp) / f"{combo}.root", a.events, detectors=dets, seed=5,
                           **SIM[combo])
            cache = Path(tmp) / f"cache-{combo}"
            env = dict(os.environ, LHAASO_JOINT_CACHE_DIR=str(cache))
            cold = _run([str(src), str(Path(tmp) / f"{combo}-cold.root"), str(a.events)], env)
            warm = _run([str(src), str(Path(tmp) / f"{combo}-warm.root"), str(a.events)], env)
            n_files = sum(1 for _ in cache.rglob("*") if _.is_file())
            rows[combo] = {"cold_s": cold["seconds"], "warm_s": warm["seconds"],
                           "events": cold["events"], "converged_cold": cold["converged"],
                           "converged_warm": warm["converged"], "cache_entries": n_files}
            print(f"{combo:18s} cold {cold['seconds']:7.1f} s   warm {warm['seconds']:6.1f} s   "
                  f"({cold['events']} events, converged {cold['converged']}/{warm['converged']}, "
                  f"{n_files} cache entries)", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "events": a.events,
                               "results": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
