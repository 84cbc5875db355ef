"""Photon density of the WFCTA Cherenkov model against any CORSIKA-IACT file(s): every telescope
sphere within 300 m of a core (every reuse of every shower), and the table per core-distance bin
(Σ model / Σ CORSIKA, dark telescopes included). For showers kept outside the repository: the
light model's parameters were fitted on the shared files only (benchmarks/cherenkov_fit.py).

    .venv/bin/python benchmarks/cherenkov_vs_corsika.py FILE.eventio [FILE ...]
        [--atmprof ../shared/data/iact/atmprof8.dat] [--out benchmarks/results/x.txt]

Photon showers are modelled with the Greisen profile (hadron files are refused: the comparison
is for the mean photon shower). The model uses ``--atmprof`` (default atmprof8, the atmosphere of
gamma_100gev_1216); give the file's own atmospheric profile when it is at hand. Columns "now":
the default light model; "ADS (issue 5)": cone_inside_level 1, lateral_fraction 0.4, scale 1.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from benchmarks.common import machine  # noqa: E402
from analysis import cherenkov_check as cc  # noqa: E402
from detectors import atmosphere, wfcta  # noqa: E402
from joint.io.iact import read_iact_photons  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "iact"
NOW = wfcta.WFCTAPhysics(is_gamma=1.0, n_slices=256, x_top=5.0)
ISSUE5 = NOW._replace(cone_inside_level=1.0, lateral_fraction=0.4, cherenkov_scale=1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--atmprof", type=Path, default=DATA / "atmprof8.dat")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    for f in args.files:
        if not f.is_file():
            ap.error(f"{f}: no such file")
    atm = atmosphere.load_atmprof(args.atmprof)
    lines = []

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    say(f"# WFCTA Cherenkov density vs CORSIKA-IACT, {time.strftime('%Y-%m-%d')}, {machine()}")
    say(f"# command: {' '.join(sys.argv)}; atmosphere {args.atmprof.name}")
    rows_now, rows_old = [], []
    for f in args.files:
        data = read_iact_photons(f)
        bad = [e["particle_id"] for e in data["events"] if e["particle_id"] != 1]
        if bad:
            raise SystemExit(f"{f}: particle_id {bad[0]} is not a photon (1); the comparison "
                             "is for photon showers")
        now = cc.compare_telescopes(data, atm, NOW)
        old = cc.compare_telescopes(data, atm, ISSUE5)
        say(f"## {f.name}: {len(data['events'])} events (showers × reuses), "
            f"{len(now)} telescopes within {cc.RADIAL_BINS_M[-1]:.0f} m")
        say(f"   {'ev':>3s} {'tel':>3s} {'E GeV':>6s} {'r [m]':>6s} {'CORSIKA':>8s} {'±':>5s} "
            f"{'now':>6s} {'ADS(5)':>6s}  band")
        for a, b in zip(now, old):
            say(f"   {a['event']:3d} {a['telescope']:3d} {a['energy_gev']:6.0f} "
                f"{a['distance_m']:6.1f} {a['corsika']:8.2f} {a['corsika_err']:5.2f} "
                f"{a['model'] / a['corsika'] if a['corsika'] > 0 else float('inf'):6.2f} "
                f"{b['model'] / b['corsika'] if b['corsika'] > 0 else float('inf'):6.2f}  {a['band']}")
        rows_now += now
        rows_old += old
    say("## per core-distance bin: Σ model / Σ CORSIKA (target: within 30%)")
    say(f"   {'bin [m]':>9s} {'n':>3s} {'CORSIKA':>9s} {'now':>11s} {'ADS (issue 5)':>13s}")
    for (lo, hi, n, c, m, r, e), (_, _, _, _, _, r_old, _) in zip(cc.radial_table(rows_now),
                                                                 cc.radial_table(rows_old)):
        say(f"   {lo:4.0f}-{hi:<4.0f} {n:3d} {c / n:9.2f} {r:6.2f}±{e:4.2f} {r_old:13.2f}"
            f"{'' if abs(r - 1) <= 0.3 else '   outside 30%'}")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
