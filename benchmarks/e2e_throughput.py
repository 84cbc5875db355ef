"""End-to-end ``lhaaso-joint reconstruct`` throughput, file in -> file out (issue 15), old and new
code side by side on the same files in one run.

    git worktree add /tmp/old_code <commit>          # the code to compare with
    .venv/bin/python benchmarks/e2e_throughput.py --n-events 20000 --files 5 \
        --old-tree /tmp/old_code --json benchmarks/results/e2e_throughput.json

The files: 1000 simulated photons (log10 E/GeV in [4.7, 5.5], seed 2) repeated with new event ids
to ``--n-events``, split over ``--files`` files, written by the current ``write_events``. Each
variant runs in a fresh process (``python -m lhaaso_joint.cli reconstruct ... --batch-size B
--hypothesis gamma --quiet`` with ``PYTHONPATH`` set to its code tree), first on a small warm-up
file (compilation, into the persistent cache), then timed on all files: events/s includes
reading, validation, seeds, fit, straggler passes, observables, sky columns and writing. The
peak resident memory is ``/usr/bin/time``'s of the child (of the client with ``--cluster``: the
workers report their own in the run summary). Resolution from the output against the truth.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import common  # noqa: F401  (sys.path)

ROOT = Path(__file__).resolve().parents[1]


def make_files(work: Path, n_events: int, n_files: int):
    import awkward as ak

    from joint.io.schema import read_events, write_events
    from joint.simulation import simulate_records

    files = [work / f"e2e_{i}.root" for i in range(n_files)]
    if all(f.exists() for f in files) and (work / "warm.root").exists():
        return files, work / "warm.root"
    rec, _ = simulate_records(1000, primary="gamma", log10_energy_range=(4.7, 5.5), seed=2)
    reps = int(np.ceil(n_events / 1000))
    big = {k: (ak.concatenate([v] * reps)[:n_events] if isinstance(v, ak.Array)
               else np.concatenate([v] * reps)[:n_events]) for k, v in rec.items()}
    big["event_id"] = np.arange(n_events, dtype=np.int64)
    edges = np.linspace(0, n_events, n_files + 1).astype(int)
    for f, a, b in zip(files, edges[:-1], edges[1:]):
        write_events(f, {k: v[a:b] for k, v in big.items()})
    write_events(work / "warm.root", {k: v[:600] for k, v in rec.items()})
    return files, work / "warm.root"


def run(tree: Path, files, out: Path, batch: int, extra=()):
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = ["/usr/bin/time", "-f", "MAXRSS_KB %M", sys.executable, "-m", "lhaaso_joint.cli", "reconstruct", *map(str, files), "-o",
           str(out), "--hypothesis", "gamma", "--batch-size", str(batch), "--quiet",
           "--overwrite", *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=str(tree))
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{tree}: {p.stderr[-2000:]}")
    rss = [float(line.split()[1]) for line in p.stderr.splitlines() if line.startswith("MAXRSS_KB")]
    return wall, (rss[-1] / 1024.0 if rss else float("nan")), p.stdout


def quality(out: Path) -> dict:
    import uproot

    from analysis.performance import angle_deg

    with uproot.open(out) as f:
        a = f["reco"].arrays(library="np")
    ok = a["status"] == 0
    ang = angle_deg(a["reco_zenith"], a["reco_azimuth"], a["true_zenith"], a["true_azimuth"])
    core = np.hypot(a["reco_core_x"] - a["true_core_x"], a["reco_core_y"] - a["true_core_y"])
    return {"events": int(len(ok)), "converged": float(ok.mean()),
            "angle68_deg": float(np.percentile(ang, 68)), "core68_m": float(np.percentile(core, 68)),
            "status_counts": np.bincount(a["status"], minlength=4)[:4].tolist()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-events", type=int, default=20000)
    ap.add_argument("--files", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--old-tree", type=Path, default=None, help="checkout of the code to compare")
    ap.add_argument("--cluster", default=None, help="also run the new code with --cluster SPEC")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lhaaso_e2e"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    files, warm = make_files(args.work, args.n_events, args.files)
    variants = [("new", ROOT, ())]
    if args.old_tree:
        variants.insert(0, ("old", args.old_tree.resolve(), ()))
    if args.cluster:
        variants.append((f"new --cluster {args.cluster}", ROOT, ("--cluster", args.cluster)))
    print(f"# e2e reconstruct, {time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, "
          f"{os.cpu_count()} CPUs, {args.n_events} KM2A photons in {args.files} files, batch "
          f"{args.batch_size}")
    rows = []
    for name, tree, extra in variants:
        run(tree, [warm], args.work / f"warm_{len(rows)}.root", args.batch_size, extra)
        out = args.work / f"out_{len(rows)}.root"
        wall, rss, _ = run(tree, files, out, args.batch_size, extra)
        q = quality(out)
        row = {"variant": name, "seconds": wall, "events_per_s": q["events"] / wall,
               "peak_rss_mb": rss, **q}
        rows.append(row)
        print(f"{name:28s} {row['events_per_s']:8.1f} ev/s  {wall:7.1f} s  peak {rss:6.0f} MB  "
              f"conv {q['converged']:.3f}  ang68 {q['angle68_deg']:.3f}°  core68 "
              f"{q['core68_m']:.2f} m", flush=True)
    if args.old_tree:
        print(f"ratio new/old: {rows[1]['events_per_s'] / rows[0]['events_per_s']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
