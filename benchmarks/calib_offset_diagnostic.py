"""Issue 7 diagnostic: which part of the learned KM2A Response limits the angular resolution
after calibration. Reconstructs 1000 independent protons (the test setting of
``benchmarks/calib_recovery.py --detector km2a``) with the true Response, the learned one
(``benchmarks/results/calib_recovery_km2a_plane.N20000.npz``) and mixtures; then removes the
least-squares quadric of the offsets (a + b·x + c·y + d·x² + e·y² + f·xy).

Run on 2026-11-30 as two scripts (part 1, part 2; the code below, with their common set-up
moved into ``_setup``) while other benchmarks
shared the 2 cores; output in ``benchmarks/results/calib_offset_diagnostic.txt``.

    .venv/bin/python benchmarks/calib_offset_diagnostic.py
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _setup():
    """The test sample (1000 protons, the seed of calib_recovery's test sample), the learned
    arrays of the plane run, the fit configuration and the true KM2A Response."""
    from benchmarks.calib_recovery import truth_responses, simulate, DETS
    from joint.config import detector_setup
    from lhaaso_joint.api import config_for
    det = "km2a"; dets = DETS[det]
    lays, geos, noms = detector_setup(dets)
    truth, cons = truth_responses(det, geos, noms, 7)
    rec_t, batch_t, _ = simulate(det, 1000, 9, lays, truth, (5.5, 6.0))
    z = np.load("benchmarks/results/calib_recovery_km2a_plane.N20000.npz")
    return geos, rec_t, batch_t, z, config_for(dets, "hadron"), truth["km2a"]


def part1():
    from benchmarks.calib_recovery import reco_columns, figures
    geos, rec_t, batch_t, z, cfg, T = _setup()
    L = T._replace(**{f: z["learned." + f] for f in ("ed_gain", "md_gain", "ed_time_offset", "md_time_offset")})
    variants = {"perfect": T, "learned": L,
                "truth gains + learned offsets": T._replace(ed_time_offset=L.ed_time_offset, md_time_offset=L.md_time_offset),
                "learned gains + truth offsets": T._replace(ed_gain=L.ed_gain, md_gain=L.md_gain),
                "truth + 0.25 ns random offsets": T._replace(ed_time_offset=T.ed_time_offset + np.random.default_rng(1).normal(0, 0.25, T.ed_gain.shape))}
    e = L.ed_time_offset - T.ed_time_offset
    pos = np.asarray(geos["km2a"].ed_pos)[:, :2]
    r = np.hypot(*pos.T)
    print("offset err rms %.3f; vs r corr %.3f; mean in r<300 %.3f, r>400 %.3f" % (e.std(), np.corrcoef(e, r)[0, 1], e[r < 300].mean(), e[r > 400].mean()))
    for name, resp in variants.items():
        f = figures(reco_columns(batch_t, rec_t, geos, {"km2a": resp}, cfg), rec_t)
        print(f"{name:34s} angle68 {f['angle68_deg']:.4f}  bias {f['energy_bias_pct']:+.2f}%  conv {f['converged']:.2f}", flush=True)


def part2():
    from benchmarks.calib_recovery import reco_columns, figures
    geos, rec_t, batch_t, z, cfg, T = _setup()
    g = geos["km2a"]
    pos = np.concatenate([np.asarray(g.ed_pos), np.asarray(g.md_pos)])[:, :2] / 500.0
    A = np.column_stack([np.ones(len(pos)), pos, pos ** 2, pos[:, 0] * pos[:, 1]])
    def unquad(t):
        c = np.linalg.lstsq(A, t, rcond=None)[0]
        return t - A @ c, c
    n_ed = T.ed_gain.shape[0]
    lt = np.concatenate([z["learned.ed_time_offset"], z["learned.md_time_offset"]])
    tt = np.concatenate([T.ed_time_offset, T.md_time_offset])
    lq, cl = unquad(lt); tq, ct = unquad(tt)
    print("quadric coef learned", np.round(cl, 3), "truth", np.round(ct, 3))
    print("err rms raw %.3f, quadric removed from both %.3f" % (np.std(lt - tt), np.std(lq - tq)))
    L = T._replace(ed_gain=z["learned.ed_gain"], md_gain=z["learned.md_gain"],
                   ed_time_offset=lq[:n_ed] + A[:n_ed] @ ct, md_time_offset=lq[n_ed:] + A[n_ed:] @ ct)
    f = figures(reco_columns(batch_t, rec_t, geos, {"km2a": L}, cfg), rec_t)
    print(f"learned, quadric part replaced by the truth's: angle68 {f['angle68_deg']:.4f} bias {f['energy_bias_pct']:+.2f}%", flush=True)
    L2 = L._replace(ed_time_offset=lq[:n_ed], md_time_offset=lq[n_ed:])
    f = figures(reco_columns(batch_t, rec_t, geos, {"km2a": L2}, cfg), rec_t)
    print(f"learned, quadric part removed: angle68 {f['angle68_deg']:.4f} bias {f['energy_bias_pct']:+.2f}%", flush=True)


if __name__ == "__main__":
    part1()
    part2()
