"""The reconstruction pipeline on dense event batches: seeds -> batched fit -> output columns,
for any combination of registered detectors (``ReconstructionConfig.detectors``).

``reconstruct_batch`` fits one dense Event batch (in memory, every event at once);
``reconstruct_records`` any number of events in fixed-size padded chunks (one compilation);
``joint.runner.reconstruct_files`` streams files through them. Everything per detector comes
from the registry (``detectors.registry``): blocks, channel selection, seeds, physics, the
goodness of fit. Per-event observables are the analysis layer's, passed in as a function.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from detectors import registry
from detectors.channel import deviance_sums
from detectors.shower import FIELDS, SPEED_OF_LIGHT_M_PER_NS, Shower
from joint import fit as fitmod
from joint.config import (CORE_SCAN_ENERGY, CORE_SCAN_OFFSETS_M, GAMMA_LOG_MUON_SCALE,
                          GROUND_GEOMETRY_FIELDS, SEED_ENERGY_SCAN, SEED_XMAX_SCAN, ReconstructionConfig, default_xmax)
from joint.traced import disk_jit
from joint.event import Event, batch_size as _n_events, pad_batch
from joint.likelihood import detector_model, joint_model

__all__ = ["reconstruct_batch", "reconstruct_records", "prepare", "nll_function",
           "select_channels", "straggler_passes", "straggler_chunks", "padded_size", "REFIT_BATCH"]


def all_finite_shower(s):
    return jnp.all(jnp.stack([jnp.isfinite(getattr(s, f)) for f in FIELDS]))


def _select(tree_a, tree_b, use_b):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(use_b, b, a), tree_a, tree_b)


def select_channels(cfg: ReconstructionConfig, blocks, geos, resps, shower):
    """The active channels of one event around ``shower``'s core, {detector: data}, for the
    detectors of ``cfg`` (each detector's ``DetectorSpec.select``; what the fit and the
    calibration use)."""
    core = jnp.stack([shower.core_x, shower.core_y])
    return {s.name: s.select(blocks, core, geos[s.name], resps[s.name], cfg)
            for s in registry.specs(cfg.detectors)}


@lru_cache(maxsize=16)
def _pipeline(cfg: ReconstructionConfig):
    phys = tuple((d, cfg.physics_of(d)) for d in cfg.detectors)
    model = joint_model(phys, cfg.prior)
    term_models = {d: detector_model(d, p) for d, p in phys}

    measures_xmax = any(s.measures_xmax for s in registry.specs(cfg.detectors))

    def terms(s, data):
        return {d: m(s, data[d]) for d, m in term_models.items()}

    def finish_seed(seed):
        seed = seed._replace(xmax=jnp.asarray(default_xmax(seed.log10_energy, cfg.hypothesis)
                                              if cfg.xmax_fixed is None else cfg.xmax_fixed,
                                              seed.log10_energy.dtype))
        if cfg.hypothesis == "gamma":
            seed = seed._replace(log_muon_scale=jnp.full_like(seed.log_muon_scale, GAMMA_LOG_MUON_SCALE))
        return seed

    def select(blocks, geos, resps, seed):
        return select_channels(cfg, blocks, geos, resps, seed)

    scan_cfg = cfg if cfg.core_scan_channels is None else dataclasses.replace(
        cfg, n_ed=cfg.core_scan_channels[0], n_md=cfg.core_scan_channels[1])

    def energy_scan(seed, datas):
        """The seed's energy (and the Xmax that goes with it) moved to the best of
        ``SEED_ENERGY_SCAN`` offsets [dex] by the model's nll summed over ``datas`` (the channel
        selections around every candidate, so that candidates compare on the same channels):
        size → energy relations are rough (hypothesis, zenith, core position), and a start far
        off in energy can run away (measured: 12–17% of KM2A+WCDA photons at 100 TeV on the
        ponds ended on the Xmax bound)."""
        alone = registry.get(cfg.detectors[0]) if len(cfg.detectors) == 1 else None
        offsets = (0.0,) if alone is not None and alone.seed_energy_calibrated else SEED_ENERGY_SCAN
        trials = [finish_seed(seed._replace(log10_energy=seed.log10_energy + d))
                  for d in offsets]
        if measures_xmax and cfg.xmax_fixed is None:  # images pin Xmax: scan it too
            trials = [t._replace(xmax=t.xmax + dx) for t in trials for dx in SEED_XMAX_SCAN]
        # one trace of the model per channel selection, vmapped over the trials (a Python loop
        # inlined 25 trials x candidates x selections: 13 min of XLA compilation for three
        # detectors)
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trials)
        values = sum(jax.vmap(lambda t, d=d: model(t, d))(stacked) for d in datas)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)
        best = jnp.argmin(values)
        pick = jax.tree_util.tree_map(lambda x: x[best], stacked)
        return pick, values[best]

    def core_scan(seed, blocks, geos, resps):
        """The seed moved to the best core × energy of the scan grid by the nll on the channels
        around the seed (t₀ moved with the core along the seed's plane front; the channels:
        ``cfg.core_scan_channels``, default the fit's)."""
        data = select_channels(scan_cfg, blocks, geos, resps, seed)
        nx = jnp.sin(seed.zenith) * jnp.cos(seed.azimuth)
        ny = jnp.sin(seed.zenith) * jnp.sin(seed.azimuth)
        trials = [finish_seed(seed._replace(
            core_x=seed.core_x + dx, core_y=seed.core_y + dy,
            t0=seed.t0 - (dx * nx + dy * ny) / SPEED_OF_LIGHT_M_PER_NS,
            log10_energy=seed.log10_energy + de))
            for dx, dy in CORE_SCAN_OFFSETS_M for de in CORE_SCAN_ENERGY]
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trials)
        values = jax.vmap(lambda t: model(t, data))(stacked)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)
        return jax.tree_util.tree_map(lambda x: x[jnp.argmin(values)], stacked)

    def prepare_one(blocks, geos, resps):
        candidates = []
        for spec in registry.specs(cfg.detectors):  # each detector's own seed is a candidate
            if spec.seed is None:
                continue
            s0 = spec.seed(blocks, geos[spec.name], resps[spec.name])
            candidates.append(core_scan(s0, blocks, geos, resps)
                              if cfg.core_scan and spec.core_scan else s0)
        if not candidates:  # no detector with a seed (WFCTA alone): geometry from the truth
            # (truth_fields), energy scanned
            z = jnp.zeros((), jax.tree_util.tree_leaves(blocks)[0].dtype)
            candidates.append(Shower(core_x=z, core_y=z, zenith=z, azimuth=z,
                                     log10_energy=z + 6.0, xmax=z + 600.0, log_muon_scale=z,
                                     t0=z))
        if "ground_seed" in blocks:  # the ground arrays' fit (NaN where it failed: raw seed)
            g = Shower(**{f: blocks["ground_seed"][f].astype(candidates[0].core_x.dtype)
                          for f in FIELDS})
            ok = all_finite_shower(g)
            candidates.insert(0, _select(candidates[0], g, ok))
            if cfg.staged:  # the staged fit: every candidate starts from (and the fit keeps)
                # the ground arrays' geometry, t0 with it (t0 stays free)
                fields = GROUND_GEOMETRY_FIELDS + ("t0",)
                candidates = [_select(c, c._replace(**{f: getattr(g, f) for f in fields}), ok)
                              for c in candidates]
        candidates = [finish_seed(c._replace(**{f: blocks["truth"][f"true_{f}"].astype(c.core_x.dtype)
                                                for f in cfg.truth_fields})) for c in candidates]
        # the active channels around each candidate's core; every candidate is scored on all
        # of them (a candidate far from the shower would otherwise select empty channels and
        # win with a small nll: measured on KM2A+WCDA protons at 1 PeV, 6 of 16 started 330-450
        # m off)
        datas = [select(blocks, geos, resps, c) for c in candidates]
        seed, value = energy_scan(candidates[0], datas)
        data = datas[0]
        for cand, cand_data in zip(candidates[1:], datas[1:]):
            cand, cand_value = energy_scan(cand, datas)
            better = cand_value < value
            seed, data = _select(seed, cand, better), _select(data, cand_data, better)
            value = jnp.minimum(value, cand_value)
        return seed, data

    prepare = disk_jit(jax.vmap(prepare_one, in_axes=(0, None, None)), "prepare", repr(cfg))
    return prepare, model, terms


def nll_function(cfg: ReconstructionConfig):
    """The per-event nll ``f(shower, {detector: data})`` used by the fitter for this
    configuration: a ``joint.fit.ScoringModel`` (the same object for equal configurations, so
    compilations are reused); ``cfg.fit_config`` says how it is minimised."""
    return _pipeline(cfg)[1]


def _normalise(batch, geometry, response, cfg, keep=None):
    """(blocks, geometries, responses) as dicts for the configured detectors. ``geometry`` and
    ``response`` are dicts {detector: ...} or, for a KM2A-only configuration, KM2A objects.
    ``keep``: a dict that receives the ground arrays' pre-fit columns as ``keep["ground"]``."""
    if not isinstance(geometry, dict):
        if len(cfg.detectors) != 1:
            raise ValueError("geometry and response must be dicts {detector: ...} for "
                             f"detectors {cfg.detectors}")
        geometry, response = {cfg.detectors[0]: geometry}, {cfg.detectors[0]: response}
    missing = [d for d in cfg.detectors if d not in geometry or d not in response]
    if missing:
        raise ValueError(f"no geometry/response given for {missing} (configured detectors "
                         f"{cfg.detectors})")
    blocks = {}
    for spec in registry.specs(cfg.detectors):
        d = spec.name
        for b in spec.block_names:
            block = getattr(batch, b, None)
            if block is None:
                raise ValueError(f"the events have no '{b}' block but the configuration fits "
                                 f"{d} (detectors={cfg.detectors})")
            blocks[b] = block
    geos = {d: geometry[d] for d in cfg.detectors}
    resps = {d: response[d] for d in cfg.detectors}
    if cfg.truth_fields:
        if cfg.geometry_from == "truth":
            truth = getattr(batch, "truth", None)
            if truth is None:
                raise ValueError(f"truth_fields={cfg.truth_fields} with geometry_from='truth' "
                                 "needs events with simulation truth")
        else:
            ground = [s.name for s in registry.specs() if s.ground]
            if cfg.geometry_from not in ground:
                raise ValueError(f"geometry_from must be 'truth' or a ground array "
                                 f"({', '.join(ground)}), got {cfg.geometry_from!r}")
            # the ground array's own fit (with its Xmax prior: the same configuration as a
            # fit of that detector alone, so the compilation is shared)
            first = dataclasses.replace(cfg, detectors=(cfg.geometry_from,), free=None,
                                        truth_fields=(), geometry_from="truth", xmax_prior=True,
                                        ground_seed=True)
            pre = reconstruct_batch(batch, geometry, response, first)
            truth = {f"true_{f}": pre[f"reco_{f}"] for f in cfg.truth_fields}
        blocks["truth"] = {f"true_{f}": truth[f"true_{f}"] for f in cfg.truth_fields}
    ground = _ground_config(cfg)
    if ground is not None:
        pre = reconstruct_batch(batch, geometry, response, ground)
        blocks["ground_seed"] = {f: pre[f"reco_{f}"] for f in FIELDS}
        if keep is not None:
            keep["ground"] = pre
    return _cast((blocks, geos, resps), cfg)


def _ground_config(cfg):
    """The configuration of the ground-array pre-fit of ``cfg`` (``ground_seed``), or None."""
    ground = tuple(s.name for s in registry.specs(cfg.detectors) if s.ground)
    others = [d for d in cfg.detectors if d not in ground]
    if not (cfg.ground_seed and ground and others):
        return None
    # ground_seed stays True (no effect without WFCTA): the configuration equals a fit of the
    # ground arrays alone, so their compilation is shared
    return dataclasses.replace(cfg, detectors=ground, free=None, xmax_prior=True)


def prepare(batch, geometry, response, cfg: ReconstructionConfig):
    """Seeds and active-channel data of a dense batch: (seeds Shower (B,), {detector: data})."""
    return _pipeline(cfg)[0](*_normalise(batch, geometry, response, cfg))


def _cast(tree, cfg):
    dt = jnp.float32 if cfg.dtype == "float32" else jnp.float64
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, dt) if np.issubdtype(np.asarray(a).dtype, np.floating)
        else jnp.asarray(a), tree)


def reconstruct_batch(batch, geometry, response,
                      cfg: ReconstructionConfig = ReconstructionConfig(),
                      observables: Callable | None = None) -> dict:
    """Reconstruct one dense Event batch with the detectors of ``cfg``. Returns a dict of numpy
    output columns (``reco_*``, ``reco_*_err``, ``reco_covariance``, ``nll`` and ``nll_<det>``,
    ``status``, ``n_iter``, ``seed_*``, the goodness of fit of each detector ``gof_<det>``
    (z-score of its charge deviance: ≈ N(0, 1) when the model describes it, large when the
    detector disagrees with the others; NaN when the event has no data from it),
    ``gof_<det>_dev`` (deviance per channel) and ``gof_<det>_n`` (channels used), and the
    columns of ``observables``).

    geometry, response : {detector: Geometry / Response} (or KM2A objects for a KM2A-only run).
    observables : None, or ``f(cfg, shower, blocks, geometries, responses) -> {column: array}``:
        per-event observables at the fitted shower, supplied by the analysis layer
        (``analysis.observables.observables``: KM2A ``ne``, ``nmu``, ``age``, core quality; WCDA
        ``wcda_nhit``, ``compactness``, ``pincness``, ...; WFCTA ``hillas_*``, ``x_dist``).
    """
    kept = {}
    blocks, geos, resps = _normalise(batch, geometry, response, cfg, keep=kept)
    prep, model, terms = _pipeline(cfg)
    seeds, data = prep(blocks, geos, resps)
    result, info = fitmod.fit_events(model, data, seeds, cfg.fit_config, terms_fn=terms,
                                     trace_key=repr(cfg))
    result, info = straggler_passes(model, terms, data, result, info, cfg)
    out = {f"reco_{f}": np.asarray(getattr(result.shower, f), np.float64) for f in FIELDS}
    err = np.asarray(result.errors, np.float64)
    for j, f in enumerate(FIELDS):
        out[f"reco_{f}_err"] = err[:, j]
    out["reco_covariance"] = np.asarray(result.covariance, np.float64).reshape(len(err), -1)
    out["nll"] = np.asarray(result.nll, np.float64)
    for d in cfg.detectors:
        out[f"nll_{d}"] = np.asarray(result.nll_terms[d], np.float64)
    out["status"] = np.asarray(info.status, np.int32)
    out["n_iter"] = np.asarray(info.n_iter, np.int32)
    if cfg.staged and "ground" in kept:
        _staged_columns(out, kept["ground"])
    for d, (dev, e_dev, v_dev, n_ch) in _gof_fn(cfg)(result.shower, data).items():
        n_ch = np.asarray(n_ch, np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"gof_{d}"] = np.where(n_ch > 0, (np.asarray(dev, np.float64) - np.asarray(e_dev))
                                       / np.sqrt(np.asarray(v_dev, np.float64)), np.nan)
            out[f"gof_{d}_dev"] = np.where(n_ch > 0, np.asarray(dev, np.float64) / n_ch, np.nan)
        out[f"gof_{d}_n"] = n_ch.astype(np.int32)
    if observables is not None:
        out.update(observables(cfg, result.shower, blocks, geos, resps))
    for f in FIELDS:
        out[f"seed_{f}"] = np.asarray(getattr(seeds, f), np.float64)
    return out


def _staged_columns(out, pre):
    """The columns of a staged fit (``ReconstructionConfig.ground_geometry``) from the ground
    arrays' pre-fit ``pre``: ``status`` converged only when both stages converged (else the
    pre-fit's status; no column of its own: ``joint.io.columns`` declares none), and the
    geometry fields' errors and
    covariance block (the joint fit held them fixed; cross terms with the other fields are
    left 0). Events whose pre-fit was not finite kept a seed's geometry: their geometry errors
    are NaN. Modifies ``out`` in place."""
    g_status = np.asarray(pre["status"], np.int32)
    out["status"] = np.where((out["status"] == fitmod.CONVERGED) & (g_status != fitmod.CONVERGED),
                             g_status, out["status"]).astype(np.int32)
    idx = [FIELDS.index(f) for f in GROUND_GEOMETRY_FIELDS]
    n_f = len(FIELDS)
    cov = out["reco_covariance"].reshape(-1, n_f, n_f).copy()
    g_cov = np.asarray(pre["reco_covariance"], np.float64).reshape(-1, n_f, n_f)
    finite = np.all(np.isfinite([pre[f"reco_{f}"] for f in GROUND_GEOMETRY_FIELDS]), axis=0)
    block = np.ix_(idx, idx)
    for b in range(cov.shape[0]):
        cov[b][block] = g_cov[b][block] if finite[b] else np.nan
    out["reco_covariance"] = cov.reshape(len(cov), -1)
    for f in GROUND_GEOMETRY_FIELDS:
        out[f"reco_{f}_err"] = np.where(finite, pre[f"reco_{f}_err"], np.nan)


#: size of the straggler pass's sub-batches (events left at MAX_ITER are refitted in batches of
#: this fixed size, or of the batch's size when smaller, so the pass compiles once per batch size)
REFIT_BATCH = 64


def straggler_passes(model, terms, data, result, info, cfg):
    """The passes after the first one, for the events it left at MAX_ITER: ``refit_iter``
    iterations of the first pass's algorithm, then ``newton_iter`` exact-Hessian iterations for
    the events still at MAX_ITER (cheap: only they pay for the Hessian)."""
    first = cfg.fit_config
    result, info = _refit_stragglers(model, terms, data, result, info,
                                     first._replace(n_iter=cfg.refit_iter), cfg.n_iter, repr(cfg))
    return _refit_stragglers(model, terms, data, result, info,
                             first._replace(n_iter=cfg.newton_iter, algorithm="newton"),
                             cfg.n_iter + cfg.refit_iter, repr(cfg))


def straggler_chunks(idx, size):
    """(event indices, padded sub-batch size) of the straggler pass: full sub-batches of
    ``size``, then the rest in one sub-batch of the next power of two ≥ 8 (≤ ``size``)."""
    out = []
    for start in range(0, idx.size, size):
        chunk = idx[start:start + size]
        out.append((chunk, size if chunk.size == size else padded_size(chunk.size, size)))
    return out


@jax.jit
def _gather(tree, idx):
    """The events ``idx`` of every leaf of ``tree`` (leading axis)."""
    return jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), tree)


def _refit_stragglers(nll_fn, terms, data, result, info, config, done_iter, trace_key=None):
    """One more pass (``config``) for the events left at MAX_ITER, started from where the last
    pass stopped (``done_iter`` iterations already spent)."""
    status = np.asarray(info.status)
    idx = np.nonzero(status == fitmod.MAX_ITER)[0]
    if config.n_iter <= 0 or idx.size == 0:
        return result, info
    # sub-batches of REFIT_BATCH events, the last one padded only to the next power of two
    # (>= 8): one compilation per size for any number of stragglers, and 66 stragglers cost
    # 64 + 8 events, not 2 x 64 (the padding was up to half the straggler compute). The gather
    # is one jitted program for the whole tree (an eager jnp.take compiled a small program per
    # leaf shape; numpy would move GPU data to the host).
    parts = []
    for chunk, size in straggler_chunks(idx, min(REFIT_BATCH, status.shape[0])):
        take = jnp.asarray(np.concatenate([chunk, np.full(size - chunk.size, chunk[0])]))
        sub_data, sub_seeds = _gather((data, result.shower), take)
        r2, i2 = fitmod.fit_events(nll_fn, sub_data, sub_seeds, config, terms_fn=terms,
                                   trace_key=trace_key)
        parts.append((chunk, r2, i2._replace(n_iter=i2.n_iter + done_iter)))

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
def _gof_fn(cfg):
    """Per detector (D, E[D], Var[D], N): the charge deviance of its channels at the fitted
    shower (``detectors.channel.deviance_sums`` over the detector's ``gof_counts``)."""
    modules = {s.name: s.module for s in registry.specs(cfg.detectors)}
    phys = {d: cfg.physics_of(d) for d in cfg.detectors}

    def one(shower, data):
        out = {}
        for d in cfg.detectors:
            dd, mod = data[d], modules[d]
            pred = mod.predict(shower, dd.geometry, dd.response, phys[d])
            sums = [deviance_sums(*c) for c in mod.gof_counts(dd.observed, pred, dd.geometry,
                                                              dd.response)]
            out[d] = tuple(sum(s[i] for s in sums) for i in range(4))
        return out
    return disk_jit(jax.vmap(one), "gof", repr(cfg))


def padded_size(n: int, batch_size: int) -> int:
    """The batch shape ``reconstruct_records`` compiles for ``n`` events in chunks of at most
    ``batch_size``: ``batch_size`` when ``n`` fills it, else the smallest power of two ≥ max(n, 8)
    (capped at ``batch_size``)."""
    if n >= batch_size:
        return batch_size
    return min(batch_size, 1 << max(3, (max(n, 1) - 1).bit_length()))


def reconstruct_records(batch: Event, geometry, response, cfg: ReconstructionConfig,
                        batch_size: int = 256, observables: Callable | None = None,
                        progress=None) -> dict:
    """:func:`reconstruct_batch` over a batch of any number of events, in chunks of
    ``batch_size`` padded to that size (one compilation for any number of events); the columns
    of the real events, in order. ``progress``: an optional callable(n_done_in_chunk).

    A batch smaller than ``batch_size`` is padded to the next of :func:`padded_size`'s sizes
    (powers of two from 8), so samples of different sizes share compiled programs."""
    n = _n_events(batch)
    size = padded_size(n, batch_size)
    parts = []
    for start in range(0, n, size):
        stop = min(n, start + size)
        chunk = jax.tree_util.tree_map(lambda a: a[start:stop], batch)
        padded, _ = pad_batch(chunk, size)
        cols = reconstruct_batch(padded, geometry, response, cfg, observables)
        parts.append({k: np.asarray(v)[:stop - start] for k, v in cols.items()})
        if progress is not None:
            progress(stop - start)
    if not parts:
        raise ValueError("reconstruct_records: the batch has no events")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
