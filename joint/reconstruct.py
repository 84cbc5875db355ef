"""Reconstruction pipeline: dense events -> seeds -> batched fit -> output columns.

``reconstruct_batch`` works on one dense Event batch (in memory); ``reconstruct_files`` streams
input files (the project's schema or G4KM2A LHEvent) in chunks of ``batch_size`` events through
it and writes the ``reco`` tree, one row per input event in input order (failed fits included,
with their status). Every chunk is padded to ``batch_size`` so that one compilation serves the
whole run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from detectors import km2a
from detectors.shower import FIELDS, Shower
from joint import fit as fitmod
from joint.likelihood import (DEFAULT_N_ED, DEFAULT_N_MD, km2a_model, select_km2a,
                              xmax_prior_residual)
from joint.seeds import km2a_seed

__all__ = ["ReconstructionConfig", "reconstruct_batch", "reconstruct_files", "km2a_observables"]

#: Free fields of a KM2A fit per hypothesis. Xmax is free: the lateral age carries it, and fixing
#: it at a mean value costs energy resolution (measured: 0.16 -> 0.08 in log10 E for 100 TeV
#: photons, docs/km2a.md). For photons the muon content is not fitted (a photon shower has almost
#: no muons, the scale would run to its bound); the muon count ``nmu`` is the discriminator.
KM2A_FREE = {
    "hadron": ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "xmax", "log_muon_scale", "t0"),
    "gamma": ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "xmax", "t0"),
}
#: log_muon_scale of the photon hypothesis when not fitted: ln(0.1) (lateral.muon_number's
#: gamma_muon_fraction [M])
GAMMA_LOG_MUON_SCALE = float(np.log(0.1))


@dataclass(frozen=True)
class ReconstructionConfig:
    """Static configuration of a reconstruction run.

    hypothesis : "gamma" or "hadron": the energy-per-particle relation of the model
    free : Shower fields fitted (None: ``KM2A_FREE[hypothesis]``); fixed fields keep their seed
        (Xmax: ``xmax_fixed`` or the hypothesis' mean at the seed energy)
    n_ed, n_md : active channels per event (``joint.likelihood``); None = all
    n_iter : fixed iterations of the first pass
    refit_iter : iterations of the second pass, run only on the events the first pass left at
        MAX_ITER, compacted into sub-batches of ``REFIT_BATCH`` (64) events so that stragglers do
        not set the cost of the whole batch (PERFORMANCE.md §6, item 3); 0 disables it
    algorithm : "scoring" (Fisher scoring, default) or "newton" (exact Hessian)
    xmax_prior : add the Gaussian Xmax prior of the hypothesis (``joint.likelihood.XmaxPrior``)
    """

    hypothesis: str = "hadron"
    free: tuple | None = None
    xmax_fixed: float | None = None
    n_ed: int | None = DEFAULT_N_ED
    n_md: int | None = DEFAULT_N_MD
    n_iter: int = 12
    refit_iter: int = 12
    dtype: str = "float32"
    algorithm: str = "scoring"
    xmax_prior: bool = True

    @property
    def physics(self) -> km2a.KM2APhysics:
        if self.hypothesis not in ("gamma", "hadron"):
            raise ValueError(f"hypothesis must be 'gamma' or 'hadron', got {self.hypothesis!r}")
        return km2a.KM2APhysics(is_gamma=1.0 if self.hypothesis == "gamma" else 0.0)

    @property
    def prior(self):
        from joint.likelihood import XmaxPrior

        if not self.xmax_prior:
            return None
        return XmaxPrior(mass_number=0.0, sigma_floor=0.0) if self.hypothesis == "gamma" else XmaxPrior()

    @property
    def fit_config(self) -> fitmod.FitConfig:
        free = KM2A_FREE[self.hypothesis] if self.free is None else tuple(self.free)
        return fitmod.FitConfig(free=free, n_iter=self.n_iter)


def default_xmax(log10_energy, hypothesis):
    """Xmax used when it is not fitted: the mean of the hypothesis at the seed energy
    (photons: Greisen; hadrons: EPOS-LHC protons), g/cm²."""
    from detectors.primaries import xmax_moments

    a = 0.0 if hypothesis == "gamma" else 1.0
    return xmax_moments(jnp.asarray(log10_energy) + 9.0, a)[0]


@lru_cache(maxsize=16)
def _pipeline(cfg: ReconstructionConfig):
    physics = cfg.physics
    detector_nll = km2a_model(physics)
    if cfg.algorithm == "scoring":
        nll_fn = km2a_model(physics, cfg.prior)
    elif cfg.algorithm == "newton":
        prior = cfg.prior

        def nll_fn(shower, data):
            e = km2a.expected(shower, data.geometry, data.response, physics)
            out = km2a.nll(data.observed, e, data.geometry, data.response)
            if prior is not None:
                out = out + 0.5 * jnp.sum(xmax_prior_residual(shower, prior) ** 2)
            return out
    else:
        raise ValueError(f"algorithm must be 'scoring' or 'newton', got {cfg.algorithm!r}")

    def prepare_one(ed, md, geometry, response):
        seed = km2a_seed(ed, md, geometry.ed_pos, geometry.md_pos)
        seed = seed._replace(xmax=jnp.asarray(default_xmax(seed.log10_energy, cfg.hypothesis)
                                              if cfg.xmax_fixed is None else cfg.xmax_fixed,
                                              seed.log10_energy.dtype))
        if cfg.hypothesis == "gamma":
            seed = seed._replace(log_muon_scale=jnp.full_like(seed.log_muon_scale, GAMMA_LOG_MUON_SCALE))
        data = select_km2a(ed, md, jnp.stack([seed.core_x, seed.core_y]), geometry, response,
                           cfg.n_ed, cfg.n_md)
        return seed, data

    prepare = jax.jit(jax.vmap(prepare_one, in_axes=(0, 0, None, None)))
    terms = lambda s, d: {"km2a": detector_nll(s, d)}
    return prepare, nll_fn, terms


def nll_function(cfg: ReconstructionConfig):
    """The per-event nll ``f(shower, KM2AData)`` used by the fitter for this configuration
    (the same function object for equal configurations, so compilations are reused)."""
    return _pipeline(cfg)[1]


def prepare(batch, geometry, response, cfg: ReconstructionConfig):
    """Seeds and active-channel data of a dense batch: (seeds Shower (B,), KM2AData (B, ...))."""
    ed, md, geo, resp = _cast((batch.km2a_ed, batch.km2a_md, geometry, response), cfg)
    return _pipeline(cfg)[0](ed, md, geo, resp)


def _cast(tree, cfg):
    dt = jnp.float32 if cfg.dtype == "float32" else jnp.float64
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, dt) if np.issubdtype(np.asarray(a).dtype, np.floating)
        else jnp.asarray(a), tree)


def km2a_observables(shower, ed, md, geometry, response, physics, window=(-50.0, 100.0)):
    """KM2A observables of one event at the reconstructed shower (pure JAX):

    ne : ED particles (PE / gain) within [−30, +50] ns of the fitted front and 0–200 m
    nmu : muons (PE / gain) in MDs 40–200 m from the core within ``window`` ns of the front
          (PHYSICS.md §2.1: NuM3 [U])
    age : lateral age of the fitted model.
    """
    from detectors.shower import shower_plane_coordinates

    e = km2a.expected(shower, geometry, response, physics)
    r_ed, _ = shower_plane_coordinates(shower, geometry.ed_pos)
    r_md, _ = shower_plane_coordinates(shower, geometry.md_pos)
    dt_ed = ed.time - e.ed_time
    dt_md = md.time - e.md_time
    in_ed = ed.hit & ed.valid & (dt_ed > -30.0) & (dt_ed < 50.0) & (r_ed < 200.0)
    in_md = (md.hit & md.valid & (dt_md > window[0]) & (dt_md < window[1])
             & (r_md > 40.0) & (r_md < 200.0))
    ne = jnp.sum(jnp.where(in_ed, ed.signal / response.ed_gain, 0.0))
    nmu = jnp.sum(jnp.where(in_md, md.signal / response.md_gain, 0.0))
    return ne, nmu, e.age


def reconstruct_batch(batch, geometry: km2a.Geometry, response: km2a.Response,
                      cfg: ReconstructionConfig = ReconstructionConfig()) -> dict:
    """Reconstruct one dense Event batch (KM2A). Returns a dict of numpy output columns."""
    ed, md, geo, resp = _cast((batch.km2a_ed, batch.km2a_md, geometry, response), cfg)
    prep, nll_fn, terms = _pipeline(cfg)
    seeds, data = prep(ed, md, geo, resp)
    result, info = fitmod.fit_events(nll_fn, data, seeds, cfg.fit_config, terms_fn=terms)
    result, info = _refit_stragglers(nll_fn, terms, data, result, info, cfg)
    obs_fn = _observables_fn(cfg)
    ne, nmu, age = obs_fn(result.shower, ed, md, geo, resp)
    out = {f"reco_{f}": np.asarray(getattr(result.shower, f), np.float64) for f in FIELDS}
    err = np.asarray(result.errors, np.float64)
    for j, f in enumerate(FIELDS):
        out[f"reco_{f}_err"] = err[:, j]
    out["reco_covariance"] = np.asarray(result.covariance, np.float64).reshape(len(err), -1)
    out["nll_km2a"] = np.asarray(result.nll_terms["km2a"], np.float64)
    out["status"] = np.asarray(info.status, np.int32)
    out["n_iter"] = np.asarray(info.n_iter, np.int32)
    out["ne"] = np.asarray(ne, np.float64)
    out["nmu"] = np.asarray(nmu, np.float64)
    out["age"] = np.asarray(age, np.float64)
    for f in FIELDS:
        out[f"seed_{f}"] = np.asarray(getattr(seeds, f), np.float64)
    return out


#: size of the straggler pass's sub-batches (events left at MAX_ITER are refitted in batches of
#: this fixed size, so the pass compiles once)
REFIT_BATCH = 64


def _refit_stragglers(nll_fn, terms, data, result, info, cfg):
    """Second pass for the events left at MAX_ITER, started from where the first pass stopped."""
    status = np.asarray(info.status)
    idx = np.nonzero(status == fitmod.MAX_ITER)[0]
    if cfg.refit_iter <= 0 or idx.size == 0:
        return result, info
    config = cfg.fit_config._replace(n_iter=cfg.refit_iter)
    # fixed sub-batches of REFIT_BATCH events: one compilation for any number of stragglers
    parts = []
    for start in range(0, idx.size, REFIT_BATCH):
        chunk = idx[start:start + REFIT_BATCH]
        take = np.concatenate([chunk, np.full(REFIT_BATCH - chunk.size, chunk[0])])
        sub = lambda t: jax.tree_util.tree_map(lambda a: jnp.take(jnp.asarray(a), take, axis=0), t)
        r2, i2 = fitmod.fit_events(nll_fn, sub(data), sub(result.shower), config, terms_fn=terms)
        parts.append((chunk, r2, i2._replace(n_iter=i2.n_iter + cfg.n_iter)))

    # merge on the host (a device scatter with a varying number of indices would compile a new
    # kernel for every straggler count)
    def merge(full, which):
        def leaf(a, *bs):
            a = np.array(a)
            for (chunk, *_), b in zip(parts, bs):
                a[chunk] = np.asarray(b)[:chunk.size]
            return a
        return jax.tree_util.tree_map(leaf, full, *[p[which] for p in parts])

    return merge(result, 1), merge(info, 2)


@lru_cache(maxsize=16)
def _observables_fn(cfg):
    physics = cfg.physics
    return jax.jit(jax.vmap(lambda s, ed, md, g, r: km2a_observables(s, ed, md, g, r, physics),
                            in_axes=(0, 0, 0, None, None)))


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------
def _iter_chunks(path, layout, batch_size):
    """Yield (records_chunk) of at most batch_size events from an input file (streamed)."""
    from joint.io import file_kind, read_file
    from joint.io.schema import TREE

    kind = file_kind(path)
    if kind == "own":
        import uproot

        from joint.io.schema import read_events
        with uproot.open(path) as f:
            n = f[TREE].num_entries
        if n == 0:
            read_events(path, km2a=layout)  # raises the empty-file error
        for start in range(0, n, batch_size):
            yield read_events(path, km2a=layout, entry_start=start,
                              entry_stop=min(n, start + batch_size))
    else:
        rec = read_file(path, km2a=layout)
        n = len(rec["event_id"])
        for start in range(0, n, batch_size):
            yield {k: v[start:start + batch_size] for k, v in rec.items()}


def reconstruct_files(inputs, output, cfg: ReconstructionConfig = ReconstructionConfig(),
                      batch_size=512, layout_config="full", progress=True, log=print):
    """Reconstruct input files into ``output`` (tree ``reco``), streaming in chunks.

    Returns a summary dict (events, seconds, events/s, status counts).
    """
    import uproot
    from tqdm import tqdm

    from detectors.layout import km2a_layout
    from joint.event import pad_batch
    from joint.io.schema import TRUTH, to_event_batch

    layout = km2a_layout(layout_config)
    geometry = km2a.Geometry.from_layout(layout)
    response = km2a.Response.nominal(geometry)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".part")
    n_done, t_start = 0, time.perf_counter()
    status_counts = np.zeros(4, int)
    bar = tqdm(unit="ev", disable=not progress, desc="reconstruct")
    with uproot.recreate(tmp) as fout:
        tree = None
        for path in inputs:
            for rec in _iter_chunks(path, layout, batch_size):
                n = len(rec["event_id"])
                batch = to_event_batch(rec, km2a=layout, source=path, as_jax=False)
                padded, mask = pad_batch(batch, batch_size)
                cols = reconstruct_batch(padded, geometry, response, cfg)
                cols = {k: v[:n] for k, v in cols.items()}
                cols["run"] = np.asarray(rec["run"], np.int32)
                cols["event_id"] = np.asarray(rec["event_id"], np.int64)
                cols["time_mjd"] = np.asarray(rec["time_mjd"], np.float64)
                for t in TRUTH:
                    if t in rec:
                        cols[t] = np.asarray(rec[t], np.float64)
                if tree is None:
                    tree = fout.mktree("reco", {k: v.dtype if v.ndim == 1 else (v.dtype, v.shape[1:])
                                                for k, v in cols.items()})
                tree.extend(cols)
                status_counts += np.bincount(cols["status"], minlength=4)[:4]
                n_done += n
                bar.update(n)
                bar.set_postfix(ev_s=f"{n_done / (time.perf_counter() - t_start):.1f}")
    bar.close()
    tmp.replace(output)
    seconds = time.perf_counter() - t_start
    return {"events": n_done, "seconds": seconds, "events_per_s": n_done / max(seconds, 1e-9),
            "status_counts": status_counts.tolist()}
