"""Peak resident memory of ``reconstruct`` per batch size and detector set (issue 15): the
figures behind ``joint.config.MEMORY_BASE_MB`` / ``MEMORY_PER_EVENT_MB`` (the memory budget's
batch size, ``reconstruct --max-memory``).

Each measurement runs in a fresh process (``/usr/bin/time``-style: ``getrusage`` peak RSS of
the child), on the first ``--n-events`` events of FILE, with the persistent compilation cache
on (warm caches do not change the peak: the compiled programs are loaded either way):

    .venv/bin/python benchmarks/memory_per_event.py FILE --detectors km2a,wcda,wfcta \
        --batch-sizes 8 16 32 --n-events 64

Prints one line per batch size (peak MB) and the least-squares line base + per_event × batch.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys
from lhaaso_joint.api import reconstruct_files, config_for
from joint.io.schema import read_events, write_events
path, dets, bs, n, work = sys.argv[1], tuple(sys.argv[2].split(',')), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rec = read_events(path, entry_stop=n)
write_events(work + '/in.root', rec)
cfg = config_for(dets, 'hadron')
s = reconstruct_files([work + '/in.root'], work + f'/out{bs}.root', cfg, batch_size=bs, progress=False, overwrite=True)
print(json.dumps({'batch_size': bs, 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'status': s['status_counts']}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--detectors", default="km2a")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--n-events", type=int, default=64)
    ap.add_argument("--work", default="/tmp/lhaaso_memory_per_event")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    rows = []
    for bs in args.batch_sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, args.file, args.detectors, str(bs),
                              str(args.n_events), args.work], capture_output=True, text=True,
                             cwd=ROOT)
        if out.returncode != 0:
            print(out.stderr[-3000:])
            raise SystemExit(f"batch size {bs}: exit {out.returncode}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{args.detectors} batch {bs:5d}: peak RSS {row['peak_rss_mb']:8.0f} MB", flush=True)
    b = np.array([r["batch_size"] for r in rows], float)
    m = np.array([r["peak_rss_mb"] for r in rows], float)
    slope, base = np.polyfit(b, m, 1) if len(rows) > 1 else (np.nan, m[0])
    print(f"fit: peak ≈ {base:.0f} MB + {slope:.2f} MB × batch size")
    res = {"detectors": args.detectors, "rows": rows, "base_mb": base, "per_event_mb": slope}
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
