"""Side-by-side figures of reconstruction files of the same events (e.g. landed main against
this code, or the same fit on two simulations).

    .venv/bin/python benchmarks/compare_reco.py LABEL:EVENTS.root:RECO.root [LABEL:EVENTS:RECO ...]

Per entry, over ALL events of the file (a failed fit counts with whatever it returned): the
converged fraction, fits at a parameter bound (status 3), 68% angular error [deg] and 68% core
error [m] against the truth of EVENTS.root. Entries whose label shares a prefix before "/" are
also pooled (e.g. ``main/b0``, ``main/b1`` -> ``main``).
"""
from __future__ import annotations

import sys

import numpy as np
import uproot

from common import angle_deg


def figures(events, reco):
    from joint.io.schema import read_events

    rec = read_events(events)
    with uproot.open(reco) as f:
        out = f["reco"].arrays(["reco_zenith", "reco_azimuth", "reco_core_x", "reco_core_y",
                                "status"], library="np")
    ang = angle_deg(rec["true_zenith"], rec["true_azimuth"], out["reco_zenith"], out["reco_azimuth"])
    core = np.hypot(out["reco_core_x"] - rec["true_core_x"], out["reco_core_y"] - rec["true_core_y"])
    return np.nan_to_num(ang, nan=180.0), np.nan_to_num(core, nan=1e4), np.asarray(out["status"])


def line(label, ang, core, st):
    return (f"{label:22s} n={len(st):4d} conv={100 * np.mean(st == 0):5.1f}% bound={int(np.sum(st == 3)):3d} "
            f"ang68={np.percentile(ang, 68):6.3f}° core68={np.percentile(core, 68):7.2f} m")


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    pooled = {}
    for spec in args:
        label, events, reco = spec.split(":")
        a, c, s = figures(events, reco)
        print(line(label, a, c, s))
        if "/" in label:
            p = pooled.setdefault(label.split("/")[0], [[], [], []])
            for lst, v in zip(p, (a, c, s)):
                lst.append(v)
    for label, (a, c, s) in pooled.items():
        print(line(label + " (pooled)", np.concatenate(a), np.concatenate(c), np.concatenate(s)))


if __name__ == "__main__":
    main()
