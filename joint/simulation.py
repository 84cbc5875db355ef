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

from detectors import km2a, wcda, wfcta
from detectors.primaries import sample_primaries, shower_from_truth

__all__ = ["simulate_km2a_blocks", "simulate_wcda_blocks", "simulate_records", "dense_to_jagged",
           "wcda_core_sampler", "SIMULATED_DETECTORS"]


@lru_cache(maxsize=8)
def _km2a_sim_fn(age_sigma, dead_fraction, structure=(), labels=False):
    kw = dict(structure)

    def one(key, shower, is_gamma, geometry, response, physics):
        phys = physics._replace(is_gamma=is_gamma)
        # km2a.simulate applies the hadronic structure to hadrons only (is_gamma 0)
        return km2a.simulate(key, shower, geometry, response, phys, age_sigma=age_sigma,
                             dead_fraction=dead_fraction, return_labels=labels, **kw)
    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None, None)))


def simulate_km2a_blocks(key, showers, is_gamma, geometry, response,
                         physics=km2a.DEFAULT_PHYSICS, age_sigma=0.05, dead_fraction=0.0,
                         structure=km2a.HADRON_STRUCTURE, return_labels=False):
    """Vmapped ``km2a.simulate`` for a batch of showers: (Observed with (B, n) blocks, triggered (B,)),
    and with ``return_labels`` the per-channel truth labels ((B, n_ed), (B, n_md)) bool (True: the
    kept hit is the shower's). Hadrons (is_gamma 0) get the hadronic structure ``structure``
    (``km2a.HADRON_STRUCTURE``; None: the smooth shower of the fit model)."""
    keys = jax.random.split(key, is_gamma.shape[0])
    fn = _km2a_sim_fn(float(age_sigma), float(dead_fraction),
                      tuple(sorted((structure or {}).items())), bool(return_labels))
    return fn(keys, showers, jnp.asarray(is_gamma, showers.log10_energy.dtype), geometry, response,
              physics)


def dense_to_jagged(block, ids, labels=None):
    """Dense (B, n) ChannelBlock -> (ids, times, pes) awkward arrays of the hit channels; with
    ``labels`` (B, n) also the labels of the hit channels as a jagged int8 array (4-tuple)."""
    import awkward as ak

    hit = np.asarray(block.hit)
    counts = hit.sum(1)
    rows, cols = np.nonzero(hit)
    flat_id = np.asarray(ids)[cols].astype(np.int32)
    flat_t = np.asarray(block.time, np.float64)[rows, cols]
    flat_q = np.asarray(block.signal, np.float32)[rows, cols]
    out = (ak.unflatten(flat_id, counts), ak.unflatten(flat_t, counts),
           ak.unflatten(flat_q, counts))
    if labels is None:
        return out
    flat_l = np.asarray(labels)[rows, cols].astype(np.int8)
    return out + (ak.unflatten(flat_l, counts),)


@lru_cache(maxsize=8)
def _wcda_sim_fn(age_sigma, dead_fraction, subshowers):
    sub = dict(subshowers)

    def one(key, shower, is_gamma, geometry, response, physics):
        phys = physics._replace(is_gamma=is_gamma)
        kw = {k: jnp.where(is_gamma > 0, 0.0, v) if k == "subshower_rate" else v
              for k, v in sub.items()}
        return wcda.simulate(key, shower, geometry, response, phys, age_sigma=age_sigma,
                             dead_fraction=dead_fraction, **kw)
    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None, None)))


def simulate_wcda_blocks(key, showers, is_gamma, geometry, response,
                         physics=wcda.DEFAULT_PHYSICS, age_sigma=0.05, dead_fraction=0.0,
                         subshowers=wcda.HADRON_SUBSHOWERS):
    """Vmapped ``wcda.simulate`` for a batch of showers: (Observed with (B, n) cells,
    triggered (B,)). Hadrons (is_gamma 0) get the sub-showers ``subshowers`` (None: none)."""
    keys = jax.random.split(key, is_gamma.shape[0])
    fn = _wcda_sim_fn(float(age_sigma), float(dead_fraction),
                      tuple(sorted((subshowers or {"subshower_rate": 0.0}).items())))
    return fn(keys, showers, jnp.asarray(is_gamma, showers.log10_energy.dtype), geometry, response,
              physics)


SIMULATED_DETECTORS = ("km2a", "wcda", "wfcta")


@lru_cache(maxsize=4)
def _wfcta_sim_fn(dead_fraction, physics, width_sigma, lateral_sigma):
    # physics is closed over: its n_slices fixes array shapes (static)
    def one(key, shower, is_gamma, geometry, response):
        return wfcta.simulate(key, shower, geometry, response, physics._replace(is_gamma=is_gamma),
                              dead_fraction=dead_fraction, width_sigma=width_sigma,
                              lateral_sigma=lateral_sigma)
    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None)))


def simulate_wfcta_blocks(key, showers, is_gamma, geometry, response,
                          physics=wfcta.DEFAULT_PHYSICS, dead_fraction=0.0, chunk=64,
                          width_sigma=0.05, lateral_sigma=0.1):
    """Vmapped ``wfcta.simulate`` (in chunks of ``chunk`` showers: the image model holds
    n_tel × n_slices × 32 values per event): (Observed with (B, n_tel·1024) pixels, triggered)."""
    n = is_gamma.shape[0]
    keys = jax.random.split(key, n)
    fn = _wfcta_sim_fn(float(dead_fraction), physics, float(width_sigma), float(lateral_sigma))
    g = jnp.asarray(is_gamma, showers.log10_energy.dtype)
    outs = []
    for s in range(0, n, chunk):
        sl = slice(s, s + chunk)
        outs.append(fn(keys[sl], jax.tree_util.tree_map(lambda a: a[sl], showers), g[sl],
                       geometry, response))
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *outs)


def wfcta_geometry_sampler(layout, rng, n, max_offset_deg=5.0, core_radius_m=300.0):
    """Showers the telescopes look at: the arrival direction within ``max_offset_deg`` of a
    random telescope's optical axis (uniform on the cap), the core uniform within
    ``core_radius_m`` of the telescopes' centre. Returns (zenith, azimuth, core_x, core_y)."""
    t = rng.integers(0, layout.n_tel, n)
    az, ze = layout.azimuth[t], layout.zenith[t]
    axis = np.stack([np.sin(ze) * np.cos(az), np.sin(ze) * np.sin(az), np.cos(ze)], -1)
    e1 = np.stack([-np.sin(az), np.cos(az), np.zeros_like(az)], -1)
    e2 = np.cross(axis, e1)
    cos_max = np.cos(np.radians(max_offset_deg))
    c = rng.uniform(cos_max, 1.0, n)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    sn = np.sqrt(1 - c * c)
    v = c[:, None] * axis + sn[:, None] * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)
    zen = np.arccos(np.clip(v[:, 2], -1, 1))
    azi = np.mod(np.arctan2(v[:, 1], v[:, 0]), 2 * np.pi)
    centre = layout.tel_pos[:, :2].mean(axis=0)
    r = core_radius_m * np.sqrt(rng.uniform(0, 1, n))
    a = rng.uniform(0, 2 * np.pi, n)
    return zen, azi, centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)


def wcda_core_sampler(layout, rng, n):
    """Cores uniformly on the WCDA cells: a random cell, uniform within its 5 m × 5 m."""
    i = rng.integers(0, layout.n_cells, n)
    half = 0.5 * layout.cell_size
    return (layout.cell_pos[i, 0] + rng.uniform(-half, half, n),
            layout.cell_pos[i, 1] + rng.uniform(-half, half, n))


def simulate_records(n_events, primary="proton", detectors=("km2a",), log10_energy_range=(4.0, 6.0),
                     zenith_max_deg=40.0, core_radius_m=400.0, seed=1, run=1, mjd=60000.0,
                     km2a_layout=None, response=None, model="EPOS-LHC", chunk=256,
                     keep_untriggered=False, progress=None, age_sigma=0.05, dead_fraction=0.0,
                     wcda_layout=None, wcda_response=None, cores_on="array",
                     wcda_subshowers=wcda.HADRON_SUBSHOWERS, wfcta_layout=None,
                     wfcta_response=None, wfcta_fluctuations=None, truth_hook=None,
                     wfcta_clear_fraction=1.0, km2a_structure=km2a.HADRON_STRUCTURE,
                     hit_labels=False, **primary_kwargs):
    """Sample primaries and simulate them until ``n_events`` triggered events are collected.

    detectors : which detectors to simulate (a subset of ("km2a", "wcda")); an event is kept when
        any of them triggers, and ``present_<det>`` records which did (a detector that did not
        trigger is absent from that event: its channels are invalid when read back).
    cores_on : "array" (uniform in ``core_radius_m`` around ``core_centre``, default the KM2A
        centre), "wcda" (uniform on the WCDA cells) or "wfcta" (directions within 5° of a
        telescope's axis and cores within ``core_radius_m`` of the telescopes:
        :func:`wfcta_geometry_sampler`).
    wcda_subshowers : hadronic sub-showers of the WCDA simulation (``wcda.HADRON_SUBSHOWERS``;
        None: a smooth shower).
    km2a_structure : hadronic structure of the KM2A simulation for hadrons
        (``km2a.HADRON_STRUCTURE``, docs/hadron_structure.md; None: the smooth shower of the fit
        model, as before issue 17).
    hit_labels : also return per-hit truth labels ``km2a_ed_signal`` and ``km2a_md_signal``
        (jagged int8, aligned hit by hit with ``km2a_ed_id`` / ``km2a_md_id``): 1 where the kept
        hit's charge and time come from the shower, 0 for a noise hit. In memory only (not a
        column of the ROOT files).
    wfcta_fluctuations : (σ of the profile width, σ of the lateral spread) of the WFCTA
        simulation, shower to shower; None: ``wfcta.NUISANCE_SIGMAS`` (the same numbers as the
        fit's nuisance priors, docs/nuisances.md); (0, 0) = the fit model's own shower.
    wfcta_clear_fraction : probability that WFCTA is taking data for an event (clear, moonless
        night; 1 = always); otherwise the event has no WFCTA data (``present_wfcta`` = 0).
    truth_hook : optional ``f(truth, rng) -> truth`` applied to every chunk of sampled truth
        after the core/direction samplers (e.g. directions of a point source at given event
        times); a ``time_mjd`` array it adds becomes the events' times (default: ``mjd``).

    Returns (records, n_thrown). ``records`` follows ``joint.io.schema`` (truth + hit groups).
    """
    from detectors.layout import km2a_layout as load_km2a
    from detectors.layout import wcda_layout as load_wcda

    detectors = tuple(d for d in SIMULATED_DETECTORS if d in detectors)
    if not detectors or len(detectors) != len(set(detectors)):
        raise ValueError(f"detectors must be a non-empty subset of {SIMULATED_DETECTORS}")
    if cores_on not in ("array", "wcda", "wfcta"):
        raise ValueError(f"cores_on must be 'array', 'wcda' or 'wfcta', got {cores_on!r}")
    setup = {}
    if "km2a" in detectors:
        lay = km2a_layout or load_km2a("full")
        geo = km2a.Geometry.from_layout(lay)
        setup["km2a"] = (lay, geo, response or km2a.Response.nominal(geo))
    wlay = wcda_layout or load_wcda()
    if "wcda" in detectors:
        wgeo = wcda.Geometry.from_layout(wlay)
        setup["wcda"] = (wlay, wgeo, wcda_response or wcda.Response.nominal(wgeo))
    if "wfcta" in detectors or cores_on == "wfcta":
        from detectors.layout import wfcta_layout as load_wfcta

        flay = wfcta_layout or load_wfcta()
        fgeo = wfcta.Geometry.from_layout(flay)
        setup["wfcta"] = (flay, fgeo, wfcta_response or wfcta.Response.nominal(fgeo))
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    kept, thrown = [], 0
    n_kept = 0
    while n_kept < n_events:
        truth = sample_primaries(rng, chunk, primary=primary, log10_energy_range=log10_energy_range,
                                 zenith_max_deg=zenith_max_deg, core_radius_m=core_radius_m,
                                 model=model, **primary_kwargs)
        if cores_on == "wcda":
            truth["true_core_x"], truth["true_core_y"] = wcda_core_sampler(wlay, rng, chunk)
        elif cores_on == "wfcta":
            (truth["true_zenith"], truth["true_azimuth"], truth["true_core_x"],
             truth["true_core_y"]) = wfcta_geometry_sampler(setup["wfcta"][0], rng, chunk,
                                                            core_radius_m=min(core_radius_m, 300.0))
        if truth_hook is not None:
            truth = truth_hook(truth, rng)
        showers = shower_from_truth(truth, dtype=jnp.float32)
        is_gamma = (truth["true_mass_number"] == 0).astype(np.float32)
        blocks, trig, labels = {}, {}, {}
        for d in detectors:
            key, sub = jax.random.split(key)
            _, g, r = setup[d]
            if d == "km2a":
                res = simulate_km2a_blocks(sub, showers, is_gamma, g, r, age_sigma=age_sigma,
                                           dead_fraction=dead_fraction, structure=km2a_structure,
                                           return_labels=hit_labels)
                obs, t = res[0], res[1]
                blocks["km2a_ed"], blocks["km2a_md"] = obs.ed, obs.md
                if hit_labels:
                    labels["km2a_ed"], labels["km2a_md"] = res[2]
            elif d == "wcda":
                obs, t = simulate_wcda_blocks(sub, showers, is_gamma, g, r, age_sigma=age_sigma,
                                              dead_fraction=dead_fraction, subshowers=wcda_subshowers)
                blocks["wcda"] = obs.cells
            else:
                fluct = wfcta.NUISANCE_SIGMAS if wfcta_fluctuations is None else wfcta_fluctuations
                obs, t = simulate_wfcta_blocks(sub, showers, is_gamma, g, r,
                                               dead_fraction=dead_fraction,
                                               width_sigma=fluct[0],
                                               lateral_sigma=fluct[1])
                blocks["wfcta"] = obs.pixels
            trig[d] = np.asarray(t) | keep_untriggered
            if d == "wfcta" and wfcta_clear_fraction < 1.0:
                trig[d] = trig[d] & (rng.uniform(size=chunk) < wfcta_clear_fraction)
            if len(detectors) > 1:  # a detector that did not trigger records nothing
                names = ("km2a_ed", "km2a_md") if d == "km2a" else (d,)
                for b in names:
                    blocks[b] = blocks[b]._replace(hit=np.asarray(blocks[b].hit) & trig[d][:, None])
        any_trig = np.logical_or.reduce([trig[d] for d in detectors])
        sel = np.nonzero(any_trig)[0][: n_events - n_kept]
        # thrown: only up to the last kept event of the chunk that completes the sample (the
        # primaries after it were never "thrown"), so that n_thrown is exact for effective areas
        full = n_kept + sel.size < n_events or sel.size == 0
        thrown += chunk if full else int(sel[-1]) + 1
        if sel.size:
            take = lambda b: jax.tree_util.tree_map(lambda a: np.asarray(a)[sel], b)
            kept.append(({k: v[sel] for k, v in truth.items()},
                         {b: take(v) for b, v in blocks.items()},
                         {d: trig[d][sel] for d in detectors},
                         {b: np.asarray(v)[sel] for b, v in labels.items()}))
            n_kept += sel.size
        if progress is not None:
            progress(n_kept, thrown)
        if thrown > 200 * max(n_events, 1) + 10 * chunk and n_kept == 0:
            raise RuntimeError(f"no event triggered in {thrown} thrown; energy range too low?")
    truth = {k: np.concatenate([c[0][k] for c in kept]) for k in kept[0][0]}
    n = len(truth["true_log10_energy"])
    times = np.asarray(truth.pop("time_mjd"), np.float64) if "time_mjd" in truth else \
        np.full(n, mjd, np.float64)
    records = {"run": np.full(n, run, np.int32), "event_id": np.arange(n, dtype=np.int64),
               "time_mjd": times, **truth}
    ids = {}
    if "km2a" in setup:
        ids["km2a_ed"], ids["km2a_md"] = setup["km2a"][0].ed_id, setup["km2a"][0].md_id
    if "wcda" in setup:
        ids["wcda"] = setup["wcda"][0].cell_id
    for name, cell_ids in ids.items():
        block = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *[c[1][name] for c in kept])
        lab = None
        if hit_labels and name in kept[0][3]:
            lab = np.concatenate([c[3][name] for c in kept])
        jag = dense_to_jagged(block, cell_ids, lab)
        records[f"{name}_id"], records[f"{name}_time"], records[f"{name}_pe"] = jag[:3]
        if lab is not None:
            records[f"{name}_signal"] = jag[3]
    if "wfcta" in detectors:
        import awkward as ak

        flay = setup["wfcta"][0]
        block = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *[c[1]["wfcta"] for c in kept])
        ch = np.arange(flay.n_tel * flay.n_pix)
        i, _, q = dense_to_jagged(block, ch)
        flat = ak.to_numpy(ak.flatten(i))
        counts = ak.to_numpy(ak.num(i))
        records["wfcta_tel"] = ak.unflatten(flay.tel_id[flat // flay.n_pix].astype(np.int16), counts)
        records["wfcta_pix"] = ak.unflatten((flat % flay.n_pix).astype(np.int16), counts)
        records["wfcta_pe"] = q
    if len(detectors) > 1:
        for d in detectors:
            records[f"present_{d}"] = np.concatenate([c[2][d] for c in kept]).astype(np.int8)
    return records, thrown
