"""Simulate events of the built detectors from sampled primaries, into the records of
``joint.io.schema`` (what ``lhaaso-joint simulate`` writes).

The per-event simulators of ``detectors/`` are vmapped over chunks of showers; only triggered
events are kept (as a real array would record them), and the number thrown is returned.
"""
from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from detectors import km2a
from detectors.primaries import sample_primaries, shower_from_truth

__all__ = ["simulate_km2a_blocks", "simulate_records", "dense_to_jagged"]


@lru_cache(maxsize=8)
def _km2a_sim_fn(age_sigma, dead_fraction):
    def one(key, shower, is_gamma, geometry, response, physics):
        phys = physics._replace(is_gamma=is_gamma)
        return km2a.simulate(key, shower, geometry, response, phys, age_sigma=age_sigma,
                             dead_fraction=dead_fraction)
    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None, None)))


def simulate_km2a_blocks(key, showers, is_gamma, geometry, response,
                         physics=km2a.DEFAULT_PHYSICS, age_sigma=0.05, dead_fraction=0.0):
    """Vmapped ``km2a.simulate`` for a batch of showers: (Observed with (B, n) blocks, triggered (B,))."""
    keys = jax.random.split(key, is_gamma.shape[0])
    fn = _km2a_sim_fn(float(age_sigma), float(dead_fraction))
    return fn(keys, showers, jnp.asarray(is_gamma, showers.log10_energy.dtype), geometry, response,
              physics)


def dense_to_jagged(block, ids):
    """Dense (B, n) ChannelBlock -> (ids, times, pes) awkward arrays of the hit channels."""
    import awkward as ak

    hit = np.asarray(block.hit)
    counts = hit.sum(1)
    rows, cols = np.nonzero(hit)
    flat_id = np.asarray(ids)[cols].astype(np.int32)
    flat_t = np.asarray(block.time, np.float64)[rows, cols]
    flat_q = np.asarray(block.signal, np.float32)[rows, cols]
    return (ak.unflatten(flat_id, counts), ak.unflatten(flat_t, counts),
            ak.unflatten(flat_q, counts))


def simulate_records(n_events, primary="proton", detectors=("km2a",), log10_energy_range=(4.0, 6.0),
                     zenith_max_deg=40.0, core_radius_m=400.0, seed=1, run=1, mjd=60000.0,
                     km2a_layout=None, response=None, model="EPOS-LHC", chunk=256,
                     keep_untriggered=False, progress=None, age_sigma=0.05, dead_fraction=0.0,
                     **primary_kwargs):
    """Sample primaries and simulate them until ``n_events`` triggered events are collected.

    Returns (records, n_thrown). ``records`` follows ``joint.io.schema`` (truth + hit groups).
    """
    import awkward as ak

    from detectors.layout import km2a_layout as load_km2a

    if tuple(detectors) != ("km2a",):
        raise ValueError(f"only KM2A simulation is built so far, asked for {detectors}")
    lay = km2a_layout or load_km2a("full")
    geo = km2a.Geometry.from_layout(lay)
    resp = response or km2a.Response.nominal(geo)
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    kept, thrown = [], 0
    n_kept = 0
    while n_kept < n_events:
        truth = sample_primaries(rng, chunk, primary=primary, log10_energy_range=log10_energy_range,
                                 zenith_max_deg=zenith_max_deg, core_radius_m=core_radius_m,
                                 model=model, **primary_kwargs)
        key, sub = jax.random.split(key)
        showers = shower_from_truth(truth, dtype=jnp.float32)
        obs, trig = simulate_km2a_blocks(sub, showers, (truth["true_mass_number"] == 0).astype(np.float32),
                                         geo, resp, age_sigma=age_sigma,
                                         dead_fraction=dead_fraction)
        trig = np.asarray(trig) | keep_untriggered
        thrown += chunk
        sel = np.nonzero(trig)[0][: n_events - n_kept]
        if sel.size:
            take = lambda b: jax.tree_util.tree_map(lambda a: np.asarray(a)[sel], b)
            kept.append(({k: v[sel] for k, v in truth.items()}, take(obs.ed), take(obs.md)))
            n_kept += sel.size
        if progress is not None:
            progress(n_kept, thrown)
        if thrown > 200 * max(n_events, 1) + 10 * chunk and n_kept == 0:
            raise RuntimeError(f"no event triggered in {thrown} thrown; energy range too low?")
    truth = {k: np.concatenate([c[0][k] for c in kept]) for k in kept[0][0]}
    ed = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *[c[1] for c in kept])
    md = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *[c[2] for c in kept])
    n = len(truth["true_log10_energy"])
    records = {"run": np.full(n, run, np.int32), "event_id": np.arange(n, dtype=np.int64),
               "time_mjd": np.full(n, mjd, np.float64), **truth}
    for name, block, ids in (("km2a_ed", ed, lay.ed_id), ("km2a_md", md, lay.md_id)):
        i, t, q = dense_to_jagged(block, ids)
        records[f"{name}_id"], records[f"{name}_time"], records[f"{name}_pe"] = i, t, q
    return records, thrown
