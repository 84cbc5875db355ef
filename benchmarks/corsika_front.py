"""The arrival-time structure of CORSIKA ground particles next to the KM2A fit model (issue 13).

    .venv/bin/python benchmarks/corsika_front.py [--json benchmarks/results/corsika_front.json]

For every shower of the CORSIKA particle files in ``../shared/data/corsika`` (the unthinned
100 TeV proton at 3000 m, the thinned 0.1–1 PeV protons at sea level, weights used), the delay
of each particle behind a plane front through the core (t − (x·u)/c, u the primary's direction of
travel; zero = the 5% quantile of the e± within 10 m of the axis), in bins of the distance r to
the axis, for e± and μ± separately: the 10% quantile, the median and the mean; and the mean
delay of the FIRST of n particles (n = 1, 3, 10, 30, drawn from the bin's weighted delays)
— what a KM2A detector hit by n particles records. Next to them the model of
``detectors.km2a``: a spherical leading edge (R = 5 km) plus an exponential lag of mean T(r)/n,
T(r) = Linsley's thickness σ₀(1 + r/r_t)^b. Also the leading edge L and thickness T of
first-of-n ≈ L + T/n (from n = 1 and 30). R was read off the leading edge of the 10 TeV photons
at sea level (corsika_77500_particle); T is Linsley's; the other rows are checks. Lateral
shapes: the e± density in the shower plane against the model's modified NKG (r_m = 136 m, age and
size fitted) and the μ± density against its Greisen shape (r₀ = 320 m, normalisation fitted),
as data/model per distance bin.

The showers cover zenith 13–44° and the observation levels 4 m and 3000 m (none at 4410 m);
the 100 TeV proton at 3000 m is one of the showers the CORSIKA-throw benchmark reports on,
so no constant may be fitted on its rows.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.shower_front import N_FIRST, lateral_rows, shower_rows  # noqa: E402

def shared_corsika() -> Path:
    import os

    base = Path(os.environ.get("LHAASO_SHARED_DATA", ROOT.parent / "shared" / "data"))
    return base / "corsika"


FILES = (("proton_100TeV_3000m_DAT000002-32.gz", False), ("corsika76900_thin", True),
         ("corsika_77500_particle", False))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    import corsikaio

    rng = np.random.default_rng(args.seed)
    base = shared_corsika()
    out = []
    print(f"# CORSIKA front structure vs the KM2A model, {time.strftime('%Y-%m-%d')}")
    print("# delays [ns] behind the plane front; e± (em) and μ± (mu); first-of-n means; model = "
          "0.1 ns/m · r + T(r)/n (Linsley T)")
    for name, thinned in FILES:
        path = base / name
        if not path.exists():
            print(f"# {path} missing: skipped")
            continue
        with corsikaio.CorsikaParticleFile(path, thinning=thinned) as f:
            for k, ev in enumerate(f):
                h = ev.header
                obs = float(h["observation_height"][0]) / 100.0
                info = {"file": name, "event": k, "energy_tev": float(h["total_energy"]) / 1e3,
                        "zenith_deg": float(np.degrees(h["zenith"])), "obs_level_m": obs}
                rows = shower_rows(h, ev.particles, thinned, rng)
                lat, lat_fit = lateral_rows(h, ev.particles, thinned)
                out.append({**info, "rows": rows, "lateral": lat, "lateral_fit": lat_fit})
                print(f"\n## {name} #{k}: {info['energy_tev']:.0f} TeV, zenith "
                      f"{info['zenith_deg']:.1f}°, obs {obs:.0f} m")
                print(f"{'r [m]':>9s} | {'em q10':>6s} {'med':>6s} {'mean':>6s} | "
                      + " ".join(f"{'em1st' + str(n):>8s}" for n in N_FIRST) + " | "
                      + " ".join(f"{'mod1st' + str(n):>8s}" for n in N_FIRST) + " | "
                      f"{'mu med':>6s} {'mu1st10':>7s} | {'em L':>5s} {'em T':>5s} {'T(r)':>5s}")
                for r in rows:
                    em = " ".join(f"{r.get(f'em_first{n}', np.nan):8.1f}" for n in N_FIRST)
                    mod = " ".join(f"{r[f'model_first{n}']:8.1f}" for n in N_FIRST)
                    print(f"{r['r_lo']:4d}-{r['r_hi']:<4d} | {r.get('em_q10', np.nan):6.1f} "
                          f"{r.get('em_median', np.nan):6.1f} {r.get('em_mean', np.nan):6.1f} | {em} | "
                          f"{mod} | {r.get('mu_median', np.nan):6.1f} {r.get('mu_first10', np.nan):7.1f} | "
                          f"{r.get('em_L', np.nan):5.1f} {r.get('em_T', np.nan):5.1f} {r['model_T_ns']:5.1f}")
                print(f"lateral (shower plane): modified NKG r_m = {lat_fit['r_m']:.0f} m fitted: "
                      f"age {lat_fit['nkg_age']:.2f}, size {lat_fit['nkg_size']:.3g}; Greisen r0 = "
                      f"{lat_fit['muon_r0']:.0f} m: N_mu {lat_fit['greisen_n_mu']:.3g}")
                print("  r [m]    " + " ".join(f"{r['r_lo']:>4d}-{r['r_hi']:<4d}" for r in lat))
                print("  e±  d/m  " + " ".join(f"{r['em_ratio']:9.2f}" for r in lat))
                print("  μ±  d/m  " + " ".join(f"{r['mu_ratio']:9.2f}" for r in lat))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"\n# written {args.json}")


if __name__ == "__main__":
    main()
