"""Helpers shared by the tests: simulate a sample, reconstruct it in batches, resolution and pull
figures (``analysis.performance``, shared with ``benchmarks/``), so that the tests depend on the
installed package only.

``tests/`` is on ``sys.path`` when pytest collects (rootdir-less ``conftest.py``, the default
"prepend" import mode), so a test imports these with ``from helpers import ...``.
"""
from __future__ import annotations


from analysis.performance import angle_deg, pull_stats, resolution_figures

__all__ = ["angle_deg", "simulate_and_reconstruct", "resolution_figures", "pull_stats"]


def simulate_and_reconstruct(primary, log10_energy, n_events, seed, hypothesis, age_sigma=0.05,
                             batch_size=256, cfg=None, zenith_max=40.0, core_radius=400.0,
                             detectors=("km2a",), cores_on="array", fit_detectors=None,
                             log10_energy_range=None, **sim_kwargs):
    """Simulate ``n_events`` triggered events of ``detectors`` at a fixed ``log10_energy`` (or
    in ``log10_energy_range``) with ``joint.simulation.simulate_records`` and reconstruct them in
    padded batches of ``batch_size`` with ``lhaaso_joint.api.reconstruct_records`` (``cfg``, or
    the default configuration of ``hypothesis`` fitting ``fit_detectors``, default the same
    detectors). Returns (records, output columns)."""
    from joint.io.schema import to_event_batch
    from joint.config import ReconstructionConfig, detector_setup
    from lhaaso_joint.api import reconstruct_records
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
    batch = to_event_batch(rec, km2a=lays.get("km2a"), wcda=lays.get("wcda"),
                           wfcta=lays.get("wfcta"), as_jax=False)
    out = reconstruct_records(batch, geos, resps, cfg, batch_size=batch_size)
    return rec, out
