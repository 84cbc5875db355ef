"""Helpers shared by the tests: simulate a sample, reconstruct it in batches, resolution and pull
figures. Minimal copies of what the benchmark scripts (``benchmarks/common.py``,
``benchmarks/km2a_pulls.py``) use, so that the tests depend on the installed package only.

``tests/`` is on ``sys.path`` when pytest collects (rootdir-less ``conftest.py``, the default
"prepend" import mode), so a test imports these with ``from helpers import ...``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["angle_deg", "simulate_and_reconstruct", "resolution_figures", "pull_stats"]


def angle_deg(z1, a1, z2, a2):
    """Opening angle [deg] between the directions (zenith z1, azimuth a1) and (z2, a2) [rad]."""
    from detectors.shower import direction

    n1 = np.asarray(direction(np.asarray(z1), np.asarray(a1)))
    n2 = np.asarray(direction(np.asarray(z2), np.asarray(a2)))
    return np.degrees(np.arccos(np.clip((n1 * n2).sum(-1), -1.0, 1.0)))


def simulate_and_reconstruct(primary, log10_energy, n_events, seed, hypothesis, age_sigma=0.05,
                             batch_size=256, cfg=None, zenith_max=40.0, core_radius=400.0,
                             detectors=("km2a",), cores_on="array", fit_detectors=None,
                             log10_energy_range=None, **sim_kwargs):
    """Simulate ``n_events`` triggered events of ``detectors`` at a fixed ``log10_energy`` (or
    in ``log10_energy_range``) with ``joint.simulation.simulate_records`` and reconstruct them in
    padded batches of ``batch_size`` with ``joint.pipeline.reconstruct_batch`` (``cfg``, or
    the default configuration of ``hypothesis`` fitting ``fit_detectors``, default the same
    detectors). Returns (records, output columns)."""
    from joint.event import pad_batch
    from joint.io.schema import to_event_batch
    from joint.config import ReconstructionConfig, detector_setup
    from lhaaso_joint.api import reconstruct_batch
    from joint.simulation import simulate_records

    lays, geos, resps = detector_setup(detectors)
    rng = log10_energy_range or (log10_energy, log10_energy)
    rec, _ = simulate_records(n_events, primary=primary, log10_energy_range=rng,
                              zenith_max_deg=zenith_max, core_radius_m=core_radius, seed=seed,
                              km2a_layout=lays.get("km2a"), wcda_layout=lays.get("wcda"),
                              wfcta_layout=lays.get("wfcta"), age_sigma=age_sigma,
                              detectors=detectors, cores_on=cores_on, **sim_kwargs)
    cfg = cfg or ReconstructionConfig(hypothesis=hypothesis,
                                      detectors=tuple(fit_detectors or detectors))
    cols = []
    for start in range(0, n_events, batch_size):
        sub = {k: v[start:start + batch_size] for k, v in rec.items()}
        n = len(sub["event_id"])
        batch = to_event_batch(sub, km2a=lays.get("km2a"), wcda=lays.get("wcda"),
                               wfcta=lays.get("wfcta"), as_jax=False)
        padded, _ = pad_batch(batch, batch_size)
        out = reconstruct_batch(padded, geos, resps, cfg)
        cols.append({k: v[:n] for k, v in out.items()})
    out = {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}
    return rec, out


def resolution_figures(rec, out, select):
    """68% angular [deg] and core [m] containment, σ(log10 E), energy resolution and bias [%]
    of the events ``select`` (bool mask)."""
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
    """Pulls (reco − true)/error of the converged fits per field of ``free`` (azimuth wrapped):
    ({field: mean, std, robust_std (1.4826 MAD), frac_gt4, n}, converged fraction)."""
    conv = out["status"] == 0
    res = {}
    for f in free:
        true = rec["true_t0"] if f == "t0" else rec[f"true_{f}"]
        d = out[f"reco_{f}"] - true
        if f == "azimuth":
            d = (d + np.pi) % (2 * np.pi) - np.pi
        p = (d / out[f"reco_{f}_err"])[conv]
        p = p[np.isfinite(p)]
        mad = 1.4826 * np.median(np.abs(p - np.median(p)))
        res[f] = {"mean": float(p.mean()), "std": float(p.std()), "robust_std": float(mad),
                  "frac_gt4": float(np.mean(np.abs(p) > 4)), "n": int(p.size)}
    return res, float(conv.mean())
