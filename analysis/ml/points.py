"""Hits as point clouds: fixed-size, masked arrays of hit features for the networks of ``analysis.ml``.

One event's hits become ``n_points`` points (a fixed shape: one compilation per detector set),
each with the features of :data:`KM2A_FEATURES` / :data:`WCDA_FEATURES`, a mask (False on padding)
and the channel index it came from (to scatter per-hit outputs back to the channels). When an
event has more hits than points, the hits with the largest charge are kept (``lax.top_k``); the
choice is per detector kind (``n_ed`` EDs and ``n_md`` MDs for KM2A).

Every feature is relative to the FITTED shower (the reconstruction's core, direction and front):
the network never sees the truth. Scales are fixed transforms (no fitted normalisation), so a point
cloud means the same thing whatever sample it comes from:

KM2A (one row per hit ED or MD)
    x, y      (x_hit − core_x) / 100 m, (y_hit − core_y) / 100 m  (ground, array frame)
    dt        asinh((t − t_front) / 20 ns): t_front is the fitted model's front arrival at that
              detector (``km2a.expected``), so noise (uniform over 10 µs) lies at |dt| ≫ 1
    log_q     log10(1 + q / gain): charge in particles (EDs) or muons (MDs)
    log_mu    log10(1 + μ): the fitted model's expected particles (EDs, EM + μ) or muons (MDs)
    log_r     log10(1 + r / 10 m), r the distance to the shower axis
    is_md     0 for an ED, 1 for an MD

WCDA (one row per hit cell): x, y, dt (slewing not corrected), log_q = log10(1 + q / PE per muon),
log_mu (fitted expected PE per muon), log_r, pond (0, 1, 2 → 0, 0.5, 1).

Pure ``jax.numpy`` per event, no Python control flow on traced values; ``*_points_batch`` vmap
it over a batch, jitted once per (n_ed, n_md) / n_points.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from detectors import km2a, wcda
from detectors.shower import Shower, shower_plane_coordinates

__all__ = ["KM2A_FEATURES", "WCDA_FEATURES", "PointCloud", "km2a_points", "km2a_points_batch",
           "wcda_points", "wcda_points_batch", "fitted_showers", "DT_SCALE_NS"]

KM2A_FEATURES = ("x", "y", "dt", "log_q", "log_mu", "log_r", "is_md")
WCDA_FEATURES = ("x", "y", "dt", "log_q", "log_mu", "log_r", "pond")
#: time-residual scale of the ``dt`` feature [ns] (asinh(Δt / DT_SCALE_NS))
DT_SCALE_NS = 20.0
_POS_SCALE_M = 100.0


class PointCloud(NamedTuple):
    """points (..., P, F) float32; mask (..., P) bool; channel (..., P) int32 (the channel index
    within its block; −1 on padding); kind (..., P) int8 (0 = first block (ED / WCDA cell),
    1 = second block (MD))."""

    points: jnp.ndarray
    mask: jnp.ndarray
    channel: jnp.ndarray
    kind: jnp.ndarray


def _top_hits(block, n):
    """Indices of the ``n`` hit, valid channels of largest charge (padding: mask False)."""
    used = block.hit & block.valid
    key = jnp.where(used, block.signal, -jnp.inf)
    val, idx = jax.lax.top_k(key, n)
    return idx, jnp.isfinite(val)


def _rows(shower, pos, block, idx, ok, t_front, mu, gain):
    r, _ = shower_plane_coordinates(shower, pos[idx])
    q = block.signal[idx]
    dt = block.time[idx] - t_front[idx]
    f = jnp.stack([
        (pos[idx, 0] - shower.core_x) / _POS_SCALE_M,
        (pos[idx, 1] - shower.core_y) / _POS_SCALE_M,
        jnp.arcsinh(dt / DT_SCALE_NS),
        jnp.log10(1.0 + jnp.maximum(q, 0.0) / gain),
        jnp.log10(1.0 + jnp.maximum(mu[idx], 0.0)),
        jnp.log10(1.0 + r / 10.0),
    ], axis=-1)
    return jnp.where(ok[:, None], f, 0.0)


def km2a_points(shower: Shower, ed, md, geometry: km2a.Geometry, response: km2a.Response,
                physics: km2a.KM2APhysics = km2a.DEFAULT_PHYSICS, n_ed: int = 256,
                n_md: int = 64) -> PointCloud:
    """One KM2A event (dense ED and MD ChannelBlocks) at the fitted ``shower`` → PointCloud of
    ``n_ed + n_md`` points (EDs first)."""
    e = km2a.expected(shower, geometry, response, physics)
    ied, oked = _top_hits(ed, n_ed)
    imd, okmd = _top_hits(md, n_md)
    fed = _rows(shower, geometry.ed_pos, ed, ied, oked, e.ed_time, e.ed_particles,
                jnp.broadcast_to(response.ed_gain, ed.signal.shape)[ied])
    fmd = _rows(shower, geometry.md_pos, md, imd, okmd, e.md_time, e.md_muons,
                jnp.broadcast_to(response.md_gain, md.signal.shape)[imd])
    kind = jnp.concatenate([jnp.zeros(n_ed, jnp.int8), jnp.ones(n_md, jnp.int8)])
    pts = jnp.concatenate([fed, fmd], 0)
    pts = jnp.concatenate([pts, kind[:, None].astype(pts.dtype)], -1)
    mask = jnp.concatenate([oked, okmd])
    chan = jnp.where(mask, jnp.concatenate([ied, imd]), -1).astype(jnp.int32)
    return PointCloud(pts.astype(jnp.float32), mask, chan, kind)


def wcda_points(shower: Shower, cells, geometry: wcda.Geometry, response: wcda.Response,
                physics: wcda.WCDAPhysics = wcda.DEFAULT_PHYSICS, n_points: int = 256) -> PointCloud:
    """One WCDA event (dense cell ChannelBlock) at the fitted ``shower`` → PointCloud."""
    e = wcda.expected(shower, geometry, response, physics)
    idx, ok = _top_hits(cells, n_points)
    pe_mu = jnp.broadcast_to(response.pe_per_muon, cells.signal.shape)
    f = _rows(shower, geometry.cell_pos, cells, idx, ok, e.cell_time, e.cell_pe / pe_mu, pe_mu[idx])
    pond = (geometry.pond[idx].astype(f.dtype) - 1.0) / 2.0
    pts = jnp.concatenate([f, jnp.where(ok, pond, 0.0)[:, None]], -1)
    chan = jnp.where(ok, idx, -1).astype(jnp.int32)
    return PointCloud(pts.astype(jnp.float32), ok, chan, jnp.zeros(n_points, jnp.int8))


@lru_cache(maxsize=8)
def _km2a_batch_fn(n_ed, n_md):
    def one(shower, ed, md, geometry, response):
        return km2a_points(shower, ed, md, geometry, response, n_ed=n_ed, n_md=n_md)
    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None)))


@lru_cache(maxsize=8)
def _wcda_batch_fn(n_points):
    def one(shower, cells, geometry, response):
        return wcda_points(shower, cells, geometry, response, n_points=n_points)
    return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))


def km2a_points_batch(showers: Shower, ed, md, geometry, response, n_ed=256, n_md=64) -> PointCloud:
    """:func:`km2a_points` over a batch (every leaf with a leading event axis); numpy out."""
    out = _km2a_batch_fn(int(n_ed), int(n_md))(showers, ed, md, geometry, response)
    return PointCloud(*[np.asarray(a) for a in out])


def wcda_points_batch(showers: Shower, cells, geometry, response, n_points=256) -> PointCloud:
    """:func:`wcda_points` over a batch; numpy out."""
    out = _wcda_batch_fn(int(n_points))(showers, cells, geometry, response)
    return PointCloud(*[np.asarray(a) for a in out])


def fitted_showers(columns, dtype=jnp.float32) -> Shower:
    """Batched Shower at the reconstruction (``reco_*`` columns of ``reconstruct``); events whose
    fit is not finite get a harmless placeholder (their ``status`` says so)."""
    def col(name, default):
        a = np.asarray(columns[f"reco_{name}"], np.float64)
        return np.where(np.isfinite(a), a, default)

    return Shower(core_x=jnp.asarray(col("core_x", 0.0), dtype),
                  core_y=jnp.asarray(col("core_y", 0.0), dtype),
                  zenith=jnp.asarray(col("zenith", 0.3), dtype),
                  azimuth=jnp.asarray(col("azimuth", 0.0), dtype),
                  log10_energy=jnp.asarray(col("log10_energy", 4.5), dtype),
                  xmax=jnp.asarray(col("xmax", 550.0), dtype),
                  log_muon_scale=jnp.asarray(col("log_muon_scale", 0.0), dtype),
                  t0=jnp.asarray(col("t0", 0.0), dtype))
