"""Helpers shared by the tests: simulate a sample, reconstruct it in batches, resolution and pull
figures (``analysis.performance``, shared with ``benchmarks/``), so that the tests depend on the
installed package only.

``tests/`` is on ``sys.path`` when pytest collects (rootdir-less ``conftest.py``, the default
"prepend" import mode), so a test imports these with ``from helpers import ...``.
"""
from __future__ import annotations


from analysis.performance import angle_deg, pull_stats, resolution_figures

import awkward as ak
import numpy as np
import uproot

__all__ = ["angle_deg", "simulate_and_reconstruct", "resolution_figures", "pull_stats",
           "GROUPS", "jag", "raw_records", "set_hit", "write_raw"]

#: the ground arrays' hit groups of hand-made records (raw_records)
GROUPS = ("km2a_ed", "km2a_md", "wcda")


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


# hand-made event files (no validation), for the bad-input tests
def jag(lists, dtype):
    return ak.values_astype(ak.Array(lists), dtype)


def raw_records(n, seed=3, counts=None, wfcta=False):
    """Hand-made records of ``n`` events with 1-5 hits per group (``counts``: {group: per-event
    hit counts} overrides); ids from the full KM2A layout, WCDA cells 0-3119."""
    from detectors.layout import km2a_layout

    rng = np.random.default_rng(seed)
    lay = km2a_layout()
    ids = {"km2a_ed": lay.ed_id, "km2a_md": lay.md_id, "wcda": np.arange(3120)}
    rec = {"run": np.full(n, 5, np.int32), "event_id": np.arange(n, dtype=np.int64) + 100,
           "time_mjd": 59000.0 + np.arange(n) * 1e-3}
    counts = dict(counts or {})
    for g in GROUPS:
        c = np.asarray(counts.get(g, rng.integers(1, 6, n)))
        rec[f"{g}_id"] = ak.unflatten(rng.choice(ids[g], c.sum()).astype(np.int32), c)
        rec[f"{g}_time"] = ak.unflatten(rng.normal(5000.0, 300.0, c.sum()), c)
        rec[f"{g}_pe"] = ak.unflatten(rng.exponential(20.0, c.sum()).astype(np.float32), c)
    if wfcta:
        c = rng.integers(1, 6, n)
        rec["wfcta_tel"] = ak.unflatten(rng.integers(1, 7, c.sum()).astype(np.int16), c)
        rec["wfcta_pix"] = ak.unflatten(rng.integers(0, 1024, c.sum()).astype(np.int16), c)
        rec["wfcta_pe"] = ak.unflatten(rng.exponential(50.0, c.sum()).astype(np.float32), c)
    return rec


def set_hit(rec, branch, entry, value, hit=0, dtype=None):
    """Copy of ``rec`` with hit ``hit`` of event ``entry`` of ``branch`` set to ``value``."""
    lists = ak.to_list(rec[branch])
    lists[entry][hit] = value
    out = dict(rec)
    out[branch] = ak.Array(lists) if dtype is None else jag(lists, dtype)
    return out


def write_raw(path, rec, separate=()):
    """Write records with uproot directly (no validation): groups zipped (one counter) except
    those in ``separate`` (one counter per branch, so their lengths can disagree)."""
    branches = {k: rec[k] for k in ("run", "event_id", "time_mjd")}
    for g in GROUPS:
        fields = [k for k in rec if k.startswith(g + "_")]
        if g in separate:
            branches.update({k: rec[k] for k in fields})
        else:
            branches[g] = ak.zip({k[len(g) + 1:]: rec[k] for k in fields})
    with uproot.recreate(path) as f:
        types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype)
                 for k, v in branches.items()}
        f.mktree("events", types).extend(branches)




def wfcta_test_shower(lay, lg=6.0, xmax=650.0):
    """A float64 shower 150 m from WFCTA telescope 0, pointing 1–2° off its axis (the WFCTA
    model and nuisance tests)."""
    import jax.numpy as jnp

    from detectors.shower import Shower

    az, ze = float(lay.azimuth[0]), float(lay.zenith[0])
    core = lay.tel_pos[0, :2] + 150.0 * np.array([np.cos(az + 0.5), np.sin(az + 0.5)])
    return Shower.make(dtype=jnp.float64, core_x=float(core[0]), core_y=float(core[1]),
                       zenith=ze + 0.02, azimuth=az + 0.03, log10_energy=lg, xmax=xmax,
                       log_muon_scale=0.0, t0=0.0)
