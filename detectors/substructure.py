"""Hadronic sub-structure of the simulated footprints, shared by the KM2A and WCDA simulations.

The fit models (``expected``) are smooth: modified NKG electromagnetic and Greisen muon
densities. Real hadron showers are patchier: electromagnetic sub-showers of energetic secondary
hadrons, muon clumps near the core, and a footprint whose density fluctuates from place to place
more than Poisson statistics allow (docs/hadron_structure.md). The functions here draw that
structure as MEAN densities (per channel) that the simulators then sample with Poisson
statistics. They are pure, jit/vmap-safe, with fixed shapes (no Python control flow on traced
values).

* :func:`subshower_particles` — WCDA's sub-shower lumps (moved here from ``detectors.wcda``):
  Poisson(rate · sqrt(E/TeV)) Gaussian lumps (at most ``n_max``) carrying together a fraction of
  a total, at distances from the core drawn from an exponential (WCDA) or from a tabulated radial
  distribution (:func:`radial_table`, KM2A: the smooth model's own, so that the mean density at
  every radius is preserved).
* :func:`lognormal_multiplier` — a mean-one log-normal field exp(σ g − ln E[e^{σ g}]) on a
  unit-variance Gaussian random field g with Gaussian covariance exp(−d²/2L²) (random Fourier
  features, ``n_modes`` plane waves; the normalisation is exact for that finite sum, so the
  multiplier averages to exactly 1 at every point).
* :func:`shower_plane_xy` — 2-D coordinates in the plane perpendicular to the shower axis.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["subshower_particles", "radial_table", "lognormal_multiplier", "gaussian_field",
           "shower_plane_xy", "N_LUMPS_MAX"]

#: slots for lumps (static shape); the Poisson number of lumps is clipped to it
N_LUMPS_MAX = 16


def shower_plane_xy(shower, positions):
    """(n, 2) coordinates [m] of ``positions`` (n, 3) in the plane through the core perpendicular
    to the axis (e1 horizontal, perpendicular to the azimuth; e2 = n × e1): distances in it are
    ``shower.shower_plane_coordinates``' r."""
    st, ct = jnp.sin(shower.zenith), jnp.cos(shower.zenith)
    sp, cp = jnp.sin(shower.azimuth), jnp.cos(shower.azimuth)
    rel_x = positions[:, 0] - shower.core_x
    rel_y = positions[:, 1] - shower.core_y
    rel_z = positions[:, 2]
    e1 = -sp * rel_x + cp * rel_y
    # e2 = n × e1 with n = (st cp, st sp, ct), e1 = (−sp, cp, 0): (−ct cp, −ct sp, st)
    e2 = -ct * cp * rel_x - ct * sp * rel_y + st * rel_z
    return jnp.stack([e1, e2], axis=-1)


def radial_table(density_fn, r_max_m, n=256, r_min_m=0.1):
    """(r_grid, cdf, total) of the radial distribution 2πr ρ(r) on a log grid up to ``r_max_m``:
    ``total`` = ∫ 2πr ρ dr (trapezoid), ``cdf`` normalised to 1. ``density_fn(r)`` may depend
    on traced values (fixed shapes)."""
    r = jnp.concatenate([jnp.zeros(1), jnp.geomspace(r_min_m, r_max_m, n - 1)])
    f = 2.0 * jnp.pi * r * density_fn(r)
    seg = 0.5 * (f[1:] + f[:-1]) * jnp.diff(r)
    cum = jnp.concatenate([jnp.zeros(1), jnp.cumsum(seg)])
    total = cum[-1]
    return r, cum / jnp.maximum(total, 1e-30), total


def subshower_particles(key, shower, xy_cells, total, rate_per_tev, fraction, radius_m, spread_m,
                        area, table=None, n_max=N_LUMPS_MAX, return_count=False):
    """Mean particles per cell from lumps: Poisson(rate · sqrt(E/TeV)) lumps (at most ``n_max``),
    together carrying ``fraction`` · ``total`` split evenly, each a 2-D Gaussian of width
    ``spread_m``, at a distance from the core drawn from an exponential of mean ``radius_m``
    (``table`` None, WCDA: ground coordinates ``xy_cells`` (n, ≥2)) or from the radial
    distribution ``table`` = :func:`radial_table` (then ``xy_cells`` should be shower-plane
    coordinates relative to the core, :func:`shower_plane_xy`, and ``radius_m`` is unused).
    ``area``: the cells' effective area (density → mean number). Returns (n,), or with
    ``return_count`` ((n,), number of lumps drawn)."""
    k1, k2, k3 = jax.random.split(key, 3)
    e_tev = 10.0 ** (shower.log10_energy - 3.0)
    n_lumps = jnp.minimum(jax.random.poisson(k1, rate_per_tev * jnp.sqrt(e_tev)), n_max)
    slot = jnp.arange(n_max)
    on = slot < n_lumps
    if table is None:
        dist = radius_m * jax.random.exponential(k2, (n_max,))
        cx0, cy0 = shower.core_x, shower.core_y
    else:
        r_grid, cdf, _ = table
        dist = jnp.interp(jax.random.uniform(k2, (n_max,)), cdf, r_grid)
        cx0, cy0 = 0.0, 0.0
    phi = jax.random.uniform(k3, (n_max,), maxval=2.0 * jnp.pi)
    cx = cx0 + dist * jnp.cos(phi)
    cy = cy0 + dist * jnp.sin(phi)
    each = fraction * total / jnp.maximum(n_lumps, 1)
    d2 = (xy_cells[:, 0, None] - cx) ** 2 + (xy_cells[:, 1, None] - cy) ** 2
    dens = each / (2.0 * jnp.pi * spread_m ** 2) * jnp.exp(-0.5 * d2 / spread_m ** 2)
    out = jnp.sum(jnp.where(on, dens, 0.0), axis=1) * area
    return (out, n_lumps) if return_count else out


def gaussian_field(key, xy, length_m, n_modes=64):
    """Unit-variance Gaussian random field at the points ``xy`` (n, 2) [m] with covariance
    exp(−d²/2L²): sqrt(2/M) Σ_m cos(k_m·x + φ_m), k_m ~ N(0, I/L²), φ_m ~ U(0, 2π)."""
    k1, k2 = jax.random.split(key)
    kvec = jax.random.normal(k1, (n_modes, 2)) / length_m
    phase = jax.random.uniform(k2, (n_modes,), maxval=2.0 * jnp.pi)
    arg = xy[:, :2] @ kvec.T.astype(xy.dtype) + phase.astype(xy.dtype)
    return jnp.sqrt(2.0 / n_modes) * jnp.sum(jnp.cos(arg), axis=1)


def lognormal_multiplier(key, xy, sigma, length_m, n_modes=64):
    """Mean-one multiplicative field exp(σ g − M ln I₀(σ sqrt(2/M))) on :func:`gaussian_field`
    g (``sigma`` scalar or (n,), ≥ 0). The normaliser is E[e^{σ g}] of the finite sum of M
    random-phase cosines (≈ e^{σ²/2}), so E[multiplier] = 1 exactly at every point; the relative
    variance is ≈ e^{σ²} − 1 and points d apart correlate as exp(σ² e^{−d²/2L²}) − 1."""
    g = gaussian_field(key, xy, length_m, n_modes)
    a = sigma * jnp.sqrt(2.0 / n_modes)
    log_norm = n_modes * jnp.log(jax.scipy.special.i0(a))
    return jnp.exp(sigma * g - log_norm)
