"""A simulated point source at the Crab's position, reconstructed by KM2A and located on the sky
(issue 6, item 2: joint/sky.py).

    .venv/bin/python benchmarks/crab_point_source.py --n-events 200

Photons with log10(E/GeV) uniform in (4.5, 5.0) (30–100 TeV), KM2A only, arrive from the Crab
(ICRS RA 83.6331°, Dec 22.0145°) at times uniform over the part of one night (default the night
of 2023-12-21 UTC: MJD 60299.5–60300.5 is searched) when the Crab is within 40° of the zenith at
LHAASO. The true array-frame direction of each event is ``joint.sky.from_icrs(Crab, time)``
(injected through the ``truth_hook`` of ``simulate_records``); the events are reconstructed
with the photon hypothesis and converted back with ``joint.sky.sky_columns``. Reported: the
mean (and error-weighted mean, and median) reconstructed position's offset from the Crab with
its statistical error, the 68% containment radius around the Crab, the pulls of the sky offsets
against ``ra_dec_err``, the fraction of events with a finite ``ra_dec_err``, and a consistency
check (the angle to the Crab on the sky equals the angle between reconstructed and true
directions in the array frame).

Writes its output to ``benchmarks/results/crab_point_source.txt`` (``--out``).
"""
from __future__ import annotations

import argparse
import io
import sys
import time

import numpy as np

from common import machine, on_array, simulate_and_reconstruct

CRAB_RA_DEG, CRAB_DEC_DEG = 83.6331, 22.0145


def angle_deg(z1, a1, z2, a2):
    """Angle between two array-frame directions [deg], float64 numpy (common.angle_deg goes
    through JAX in float32, whose arccos near 1 is only good to ~1 arcmin)."""
    def vec(z, a):
        return np.stack([np.sin(z) * np.cos(a), np.sin(z) * np.sin(a), np.cos(z)], -1)

    c = np.cross(vec(z1, a1), vec(z2, a2))
    d = (vec(z1, a1) * vec(z2, a2)).sum(-1)
    return np.degrees(np.arctan2(np.linalg.norm(c, axis=-1), d))


def crab_window(day_mjd, zenith_max_deg, frame_rotation_deg=0.0):
    """(start, end, culmination) MJD of the interval around the Crab's culmination within
    [day, day + 1) when its zenith angle is below ``zenith_max_deg``."""
    from joint.sky import from_icrs

    grid = day_mjd + np.linspace(0.0, 1.0, 2881)  # 30 s steps
    zen, _ = from_icrs(CRAB_RA_DEG, CRAB_DEC_DEG, grid, frame_rotation_deg)
    k = int(np.argmin(zen))
    up = np.degrees(zen) < zenith_max_deg
    lo = k
    while lo > 0 and up[lo - 1]:
        lo -= 1
    hi = k
    while hi < grid.size - 1 and up[hi + 1]:
        hi += 1
    return grid[lo], grid[hi], grid[k]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-events", type=int, default=200)
    ap.add_argument("--log10-energy-range", type=float, nargs=2, default=[4.5, 5.0])
    ap.add_argument("--day-mjd", type=float, default=60299.5,
                    help="start of the 24 h searched for the Crab's culmination (MJD, UTC)")
    ap.add_argument("--zenith-max", type=float, default=40.0)
    ap.add_argument("--frame-rotation-deg", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=2023)
    ap.add_argument("--out", default="benchmarks/results/crab_point_source.txt")
    args = ap.parse_args(argv)

    buf = io.StringIO()

    def say(line=""):
        print(line, flush=True)
        buf.write(line + "\n")

    import astropy.units as u
    from astropy.coordinates import AltAz, SkyCoord, get_sun
    from astropy.time import Time

    from joint import sky
    from joint.config import ReconstructionConfig

    t_start = time.perf_counter()
    rho = args.frame_rotation_deg
    lo, hi, cul = crab_window(args.day_mjd, args.zenith_max, rho)
    loc = sky.site_location()
    sun_alt = [get_sun(Time(t, format="mjd")).transform_to(
        AltAz(obstime=Time(t, format="mjd"), location=loc)).alt.deg for t in (lo, cul, hi)]
    say(f"# Crab point source, {time.strftime('%Y-%m-%d %H:%M')}, {machine()}")
    say("# command: .venv/bin/python " + " ".join(sys.argv))
    say(f"# photons, KM2A only, log10(E/GeV) uniform in {tuple(args.log10_energy_range)}, "
        f"{args.n_events} triggered events, cores within 400 m, age fluctuation 0.05, seed {args.seed}")
    say(f"# Crab ICRS ({CRAB_RA_DEG}, {CRAB_DEC_DEG}) deg; times uniform in MJD [{lo:.5f}, {hi:.5f}] "
        f"({Time(lo, format='mjd').isot[:16]} – {Time(hi, format='mjd').isot[11:16]} UTC, "
        f"{24 * (hi - lo):.2f} h), culmination {Time(cul, format='mjd').isot[:19]} UTC")
    say(f"# Sun altitude at start / culmination / end: {sun_alt[0]:.1f}° / {sun_alt[1]:.1f}° / "
        f"{sun_alt[2]:.1f}°; frame_rotation_deg = {rho} (assumption [M]); refraction off")

    def hook(truth, rng):
        n = len(truth["true_zenith"])
        t = rng.uniform(lo, hi, n)
        zen, azi = sky.from_icrs(CRAB_RA_DEG, CRAB_DEC_DEG, t, frame_rotation_deg=rho)
        truth["time_mjd"] = t
        truth["true_zenith"] = zen
        truth["true_azimuth"] = azi
        return truth

    cfg = ReconstructionConfig(hypothesis="gamma", detectors=("km2a",))
    rec, out, tim = simulate_and_reconstruct(
        "gamma", None, args.n_events, args.seed, "gamma", cfg=cfg, detectors=("km2a",),
        log10_energy_range=tuple(args.log10_energy_range), batch_size=min(256, args.n_events),
        truth_hook=hook)
    t0 = time.perf_counter()
    cols = sky.sky_columns(out, rec["time_mjd"], frame_rotation_deg=rho)
    t_sky = time.perf_counter() - t0
    say(f"# simulate {tim['simulate_s']:.1f} s ({tim['thrown']} thrown), reconstruct "
        f"{tim['reconstruct_s']:.1f} s, sky_columns {1e3 * t_sky:.1f} ms for {len(cols['ra'])} events")

    true_zen_deg = np.degrees(rec["true_zenith"])
    say(f"# true zenith: min {true_zen_deg.min():.2f}°, median {np.median(true_zen_deg):.2f}°, "
        f"max {true_zen_deg.max():.2f}°; time_mjd in records: "
        f"{rec['time_mjd'].min():.5f} – {rec['time_mjd'].max():.5f}")
    # the truth injected through the hook maps back onto the Crab
    ra_t, dec_t = sky.to_icrs(rec["true_zenith"], rec["true_azimuth"], rec["time_mjd"],
                              frame_rotation_deg=rho)
    crab = SkyCoord(CRAB_RA_DEG * u.deg, CRAB_DEC_DEG * u.deg)
    sep_true = SkyCoord(ra_t * u.deg, dec_t * u.deg).separation(crab).arcsec
    say(f"# check: true directions -> ICRS, max distance to the Crab {sep_true.max():.2e} arcsec")

    conv = out["status"] == 0
    from joint.config import detector_setup

    lays, _, _ = detector_setup(("km2a",))
    cut = on_array(out["reco_core_x"], out["reco_core_y"], lays["km2a"])
    say("")
    hdr = (f"{'selection':9s} {'N':>4s} | {'mean offset°':>12s} {'± stat':>7s} | {'w-mean°':>8s} "
           f"{'median°':>8s} | {'dRA·cosδ° ± stat':>15s} {'dDec° ± stat':>15s} | {'r68°':>6s} {'ang68 arr°':>10s} | "
           f"{'pull rms x,y':>12s} | {'err finite':>10s}")
    say(hdr)
    say("-" * len(hdr))
    for name, sel in (("converged", conv & np.isfinite(cols["ra"])),
                      ("+on-array", conv & cut & np.isfinite(cols["ra"]))):
        n = int(sel.sum())
        c = SkyCoord(cols["ra"][sel] * u.deg, cols["dec"][sel] * u.deg)
        dx, dy = crab.spherical_offsets_to(c)
        dx, dy = dx.deg, dy.deg  # tangent-plane offsets (ΔRA·cosδ, ΔDec) [deg]
        sep = c.separation(crab).deg
        r68 = float(np.percentile(sep, 68))
        mx, my = dx.mean(), dy.mean()
        sx, sy = dx.std(ddof=1) / np.sqrt(n), dy.std(ddof=1) / np.sqrt(n)
        off = float(np.hypot(mx, my))
        stat = float(np.sqrt(0.5 * (sx ** 2 + sy ** 2)))  # per-axis statistical error
        err = cols["ra_dec_err"][sel]
        fin = np.isfinite(err) & (err > 0)
        w = np.where(fin, 1.0 / np.where(fin, err, 1.0) ** 2, 0.0)
        wx, wy = (w * dx).sum() / w.sum(), (w * dy).sum() / w.sum()
        med = float(np.hypot(np.median(dx), np.median(dy)))
        px, py = dx[fin] / err[fin], dy[fin] / err[fin]
        ang_arr = angle_deg(out["reco_zenith"][sel], out["reco_azimuth"][sel],
                            rec["true_zenith"][sel], rec["true_azimuth"][sel])
        say(f"{name:9s} {n:4d} | {off:12.4f} {stat:7.4f} | {np.hypot(wx, wy):8.4f} {med:8.4f} | "
            f"{mx:+8.4f}±{sx:.4f} {my:+8.4f}±{sy:.4f} | {r68:6.3f} {np.percentile(ang_arr, 68):10.3f} | "
            f"{np.sqrt(np.mean(px ** 2)):5.2f},{np.sqrt(np.mean(py ** 2)):5.2f} | "
            f"{fin.mean():10.3f}")
        if name == "converged":
            dmax = float(np.max(np.abs(sep - ang_arr)))
            r68_over_sqrtn = r68 / np.sqrt(n)
    say("")
    say(f"# converged fraction {conv.mean():.3f}; events with finite ra_dec_err (all events): "
        f"{np.mean(np.isfinite(cols['ra_dec_err'])):.3f}")
    say(f"# stat = per-axis standard error of the mean offset (std/sqrt(N)); r68/sqrt(N) = "
        f"{r68_over_sqrtn:.4f}° for comparison")
    say(f"# consistency: |angle to the Crab on the sky − angle reco/true in the array frame| "
        f"max {3600 * dmax:.3f} arcsec")
    say(f"# pull rms x,y = rms of (ΔRA·cosδ, ΔDec) / ra_dec_err (1 = calibrated errors)")
    say(f"# total runtime {time.perf_counter() - t_start:.1f} s")
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(buf.getvalue())


if __name__ == "__main__":
    main()
