"""Performance figures of a reconstructed sample against its truth: opening angles, 68%
containment resolutions and pulls. Shared by the benchmarks (``benchmarks/``) and the tests.

Inputs are the records of a simulated file (``true_*`` columns, ``joint.io.schema``) and the
output columns of a reconstruction (``reco_*``, ``reco_*_err``, ``status``; ``joint/io/columns.py``).
Angles in rad in, degrees out; cores in m; energies as log10(E/GeV).
"""
from __future__ import annotations

import numpy as np

from detectors.shower import direction

__all__ = ["angle_deg", "resolution_figures", "pull_stats"]


def angle_deg(z1, a1, z2, a2):
    """Opening angle [deg] between the directions (zenith z1, azimuth a1) and (z2, a2) [rad]."""
    n1 = np.asarray(direction(np.asarray(z1), np.asarray(a1)))
    n2 = np.asarray(direction(np.asarray(z2), np.asarray(a2)))
    return np.degrees(np.arccos(np.clip((n1 * n2).sum(-1), -1.0, 1.0)))


def resolution_figures(rec, out, select):
    """68% angular [deg] and core [m] containment, σ(log10 E), energy resolution (68% of
    |E_reco/E_true − 1|) and median bias [%] of the events ``select`` (bool mask)."""
    ang = angle_deg(out["reco_zenith"], out["reco_azimuth"], rec["true_zenith"], rec["true_azimuth"])
    core = np.hypot(out["reco_core_x"] - rec["true_core_x"], out["reco_core_y"] - rec["true_core_y"])
    de = out["reco_log10_energy"] - rec["true_log10_energy"]
    s = select
    ratio = 10 ** de[s]
    return {"n": int(s.sum()), "ang68": float(np.percentile(ang[s], 68)),
            "core68": float(np.percentile(core[s], 68)),
            "sigma_log10E": float(np.std(de[s])),
            "E_res68_pct": float(100 * np.percentile(np.abs(ratio - 1), 68)),
            "E_bias_pct": float(100 * (np.median(ratio) - 1))}


def pull_stats(rec, out, free):
    """Pulls (reco − true)/error of the converged fits per field of ``free`` (azimuth wrapped;
    the simulator's t0 is 0 at the true core, as the model's): ({field: mean, std, robust_std
    (1.4826 MAD), frac_gt4, n}, converged fraction)."""
    conv = out["status"] == 0
    res = {}
    for f in free:
        d = out[f"reco_{f}"] - rec[f"true_{f}"]
        if f == "azimuth":
            d = (d + np.pi) % (2 * np.pi) - np.pi
        p = (d / out[f"reco_{f}_err"])[conv]
        p = p[np.isfinite(p)]
        mad = 1.4826 * np.median(np.abs(p - np.median(p)))
        res[f] = {"mean": float(p.mean()), "std": float(p.std()), "robust_std": float(mad),
                  "frac_gt4": float(np.mean(np.abs(p) > 4)), "n": int(p.size)}
    return res, float(conv.mean())
