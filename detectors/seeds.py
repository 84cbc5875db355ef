"""First guesses (seeds) for the KM2A shower fit, after LHAASO's KM2A pipeline (PHYSICS.md §2.1).

Everything here is a PURE ``jax.numpy`` function for ONE event (arrays over all channels of a
detector, shape ``(n_channels,)``), with fixed shapes, masks instead of boolean indexing and fixed
iteration counts, so that it is jit-, vmap- and (where it makes sense) grad-compatible. A batch is
seeded with :func:`seed_batch` (``jit(vmap(km2a_seed))``).

Pipeline of :func:`km2a_seed`
-----------------------------
1. **Hit selection** (:func:`densest_window`): ED charges are converted to particles (PE / 40,
   zero below 0.2 particle, PHYSICS §2.1 [U]); the hit times are sorted and, for every hit as a
   window start, the particle sum of the hits in ``[t_i, t_i + 400 ns]`` is obtained from a
   cumulative sum and ``searchsorted`` (O(n log n) instead of O(n²)); the window with the largest
   particle sum is the shower window. This rejects the random noise hits spread over the ±5 µs
   readout window (~130 noise ED hits per event in G4KM2A).
2. **Core** (:func:`optimized_centroid`): charge-weighted centroid of the ``n_top`` largest
   signals in the window, then a fixed number of Gaussian-weighted centroid iterations,
   w = q exp(−r²/2σ²), with σ shrinking geometrically from 60 m to 15 m (KM2A's "optimized
   centroid", 15 m Gaussian [U]).
3. **Direction** (:func:`plane_fit`): weighted least squares of the conical front
   t_i = t0 − ((x_i − core)·n)/c + α r_i (3-D positions, α = 0.03 m/m / c ≈ 0.1 ns/m [U],
   r_i the distance to the axis of the previous iteration) for (n_x, n_y, t0) with n_z taken
   from the previous iteration; hits within 200 m of the core and within ±``plane_time_window``
   of the core time; fixed iterations with Gaussian time weights whose σ anneals to 10 ns and
   outlier rejection |dt| > max(3σ, 30 ns) (KM2A: σ = 10 ns, |dt| > 3σ and > 30 ns [U]).
   The annealing (σ from 100 ns down) lets the first iterations start from a vertical guess.
4. **Energy** (:func:`size_energy`): N_100 = sum of ED particles within 100 m of the core (and
   within the plane-fit time cut); log10(E/GeV) = a log10(N_100) + c + b (sec θ − 1).
   The defaults a = 0.85, c = 2.73 were read off LHAASO's G4KM2A gamma sample (KM2AMCTest.root,
   53 photons at 20° zenith, 10–400 TeV, events with the core found within 15 m; a free fit gives
   a = 0.81, the median residual is 0 and its rms 0.14 dex) — a rough photon calibration;
   protons have fewer electrons at the same energy (need more, ~+0.2–0.3 dex [M]);
   b = 1.7 is a plausible attenuation of
   the size beyond the maximum (ground depth ~600 g/cm², Λ ≈ 150 g/cm²) — not calibrated.
5. ``xmax`` and ``log_muon_scale`` are constants (keyword parameters); ``t0`` is the plane fit's
   arrival time at the core (same clock as the channel times).

Degenerate input (no hits, everything masked) yields finite values: core (0, 0), vertical,
t0 = 0, and the energy of ``min_particles`` particles.

Frame and conventions: see ``detectors/shower.py`` (n points to the source; upstream channels,
larger (x − core)·n, are hit earlier: t = t0 − ((x − core)·n)/c; azimuth from +x towards +y in
[0, 2π)).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from detectors.shower import SPEED_OF_LIGHT_M_PER_NS, Shower

__all__ = [
    "ED_PE_PER_PARTICLE",
    "MD_PE_PER_MUON",
    "to_particles",
    "densest_window",
    "optimized_centroid",
    "plane_fit",
    "size_energy",
    "km2a_seed",
    "wcda_seed",
    "seed_batch",
]

#: ED charge per particle [PE] (PHYSICS §2.1 [U]).
ED_PE_PER_PARTICLE = 40.0
#: MD charge per muon [PE] (PHYSICS §2.1 [U]).
MD_PE_PER_MUON = 75.0

_BIG_TIME = 1.0e15  # sort key of channels without a (usable) hit [ns]; finite, so no inf - inf


def _safe_div(num, den, fallback):
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), fallback)


def to_particles(signal, hit, pe_per_particle=ED_PE_PER_PARTICLE, min_particles=0.2):
    """Particle numbers from charges: ``signal / pe_per_particle`` on hit channels, 0 below
    ``min_particles`` (KM2A ED: 40 PE per particle, 0 below 0.2 particle [U])."""
    n = jnp.where(hit, signal, 0.0) / pe_per_particle
    return jnp.where(n >= min_particles, n, 0.0)


def densest_window(time, weight, width=400.0):
    """The time window ``[t_start, t_start + width]`` [ns] that holds the largest summed weight.

    Parameters
    ----------
    time : (n,) [ns] — hit times (any value where ``weight`` is 0).
    weight : (n,) ≥ 0 — e.g. particle numbers; channels with weight 0 are ignored.
    width : window length [ns] (KM2A: 400 ns).

    Returns
    -------
    t_start : scalar [ns] — start of the best window (0 when no channel has weight > 0).
    in_window : (n,) bool — weight > 0 and t_start ≤ time ≤ t_start + width.
    total : scalar — summed weight in the window.

    Every used hit is tried as a window start: with the times sorted, the number of hits in
    [t_i, t_i + width] comes from ``searchsorted`` and the sum from a cumulative sum.
    """
    used = weight > 0
    key = jnp.where(used, time, _BIG_TIME)
    order = jnp.argsort(key)
    t_sorted = key[order]
    w_sorted = jnp.where(used, weight, 0.0)[order]
    csum = jnp.concatenate([jnp.zeros((1,), w_sorted.dtype), jnp.cumsum(w_sorted)])
    end = jnp.searchsorted(t_sorted, t_sorted + width, side="right")
    start = jnp.arange(t_sorted.shape[0])
    sums = csum[end] - csum[start]
    sums = jnp.where(t_sorted < _BIG_TIME, sums, -1.0)
    best = jnp.argmax(sums)
    any_used = jnp.any(used)
    t_start = jnp.where(any_used, t_sorted[best], 0.0)
    in_window = used & (time >= t_start) & (time <= t_start + width)
    return t_start, in_window, jnp.maximum(sums[best], 0.0)


def optimized_centroid(xy, weight, n_top=10, sigma_start=60.0, sigma_end=15.0, n_iter=8):
    """KM2A's optimized centroid.

    Start from the weight-weighted centroid of the ``n_top`` largest weights, then ``n_iter``
    iterations of the centroid with weights w_i exp(−r_i²/2σ²), r_i the distance to the previous
    centroid, σ shrinking geometrically from ``sigma_start`` to ``sigma_end`` [m].

    Parameters
    ----------
    xy : (n, 2) [m]; weight : (n,) ≥ 0 (0 for unused channels).

    Returns
    -------
    (2,) core [m]; (0, 0) when all weights are 0.
    """
    top_w, top_i = jax.lax.top_k(weight, n_top)
    zero = jnp.zeros((2,), xy.dtype)
    core = _safe_div(jnp.sum(xy[top_i] * top_w[:, None], axis=0), jnp.sum(top_w), zero)
    if n_iter > 1:
        sigmas = sigma_start * (sigma_end / sigma_start) ** (jnp.arange(n_iter) / (n_iter - 1.0))
    else:
        sigmas = jnp.full((max(n_iter, 0),), float(sigma_end))

    def step(c, sigma):
        d2 = jnp.sum((xy - c) ** 2, axis=-1)
        w = weight * jnp.exp(-0.5 * d2 / sigma**2)
        new = _safe_div(jnp.sum(xy * w[:, None], axis=0), jnp.sum(w), c)
        return new, None

    core, _ = jax.lax.scan(step, core, sigmas.astype(xy.dtype))
    return core


def plane_fit(pos, time, use, core, t_ref, cone_slope=0.03 / SPEED_OF_LIGHT_M_PER_NS,
              sigma_start=100.0, sigma_end=10.0, n_iter=10, n_final=3, reject_nsigma=3.0,
              reject_min=30.0, max_sin_zenith=0.995, ridge=1e-6):
    """Robust conical-front fit of the arrival direction.

    Model: t_i = t0 − ((x_i − core)·n)/c + α r_i, with n = (n_x, n_y, n_z) towards the source,
    r_i the distance of channel i from the axis (previous iteration's direction) and
    α = ``cone_slope`` [ns/m]. Each iteration solves the 3×3 weighted normal equations for
    (c t0, n_x, n_y) with n_z = sqrt(1 − n_x² − n_y²) from the previous iteration (start:
    vertical), weights w_i = exp(−dt_i²/2σ²) (dt = residual of the previous iteration, 0 at
    the start) and w_i = 0 where |dt_i| > max(reject_nsigma σ, reject_min). σ anneals
    geometrically from ``sigma_start`` to ``sigma_end`` over the first ``n_iter − n_final``
    iterations and stays at ``sigma_end`` for the last ``n_final``.

    Parameters
    ----------
    pos : (n, 3) [m, array frame]; time : (n,) [ns]; use : (n,) bool (selected hits);
    core : (2,) [m]; t_ref : scalar [ns], a rough arrival time at the core (start of t0).

    Returns
    -------
    n : (3,) unit vector towards the source; t0 : scalar [ns] (front time at the core, z = 0);
    w : (n,) final weights (0 for unused or rejected hits).
    """
    dtype = pos.dtype
    c = SPEED_OF_LIGHT_M_PER_NS
    rel = pos - jnp.concatenate([core, jnp.zeros((1,), core.dtype)])
    tt = time - t_ref  # small numbers, float32-friendly
    usef = use.astype(dtype)
    n_anneal = max(n_iter - n_final, 1)
    k = jnp.arange(n_iter, dtype=dtype)
    sig = sigma_start * (sigma_end / sigma_start) ** jnp.minimum(k / max(n_anneal - 1, 1), 1.0)
    if n_anneal == 1:
        sig = jnp.full((n_iter,), sigma_end, dtype)

    def residual(n, t0):
        along = rel @ n
        r = jnp.sqrt(jnp.maximum(jnp.sum(rel * rel, -1) - along * along, 0.0))
        model = t0 - along / c + cone_slope * r
        return tt - model, r

    def step(carry, sigma):
        n, t0, dt, first = carry
        thr = jnp.maximum(reject_nsigma * sigma, reject_min)
        w = usef * jnp.exp(-0.5 * (dt / sigma) ** 2) * (jnp.abs(dt) <= thr)
        w = jnp.where(first, usef, w)
        _, r = residual(n, t0)
        # c (t_i - alpha r_i) + z_i n_z = c t0 - x_i n_x - y_i n_y
        y = c * (tt - cone_slope * r) + rel[:, 2] * n[2]
        a = jnp.stack([jnp.ones_like(y), -rel[:, 0], -rel[:, 1]], axis=-1)
        aw = a * w[:, None]
        m = aw.T @ a
        b = aw.T @ y
        m = m + ridge * (jnp.trace(m) + 1.0) * jnp.eye(3, dtype=dtype)
        sol = jnp.linalg.solve(m, b)
        enough = jnp.sum(w) >= 3.0
        nx, ny = sol[1], sol[2]
        s2 = nx * nx + ny * ny
        scale = jnp.where(s2 > max_sin_zenith**2,
                          max_sin_zenith / jnp.sqrt(jnp.where(s2 > 0, s2, 1.0)), 1.0)
        nx, ny = nx * scale, ny * scale
        nz = jnp.sqrt(jnp.maximum(1.0 - nx * nx - ny * ny, 0.0))
        new_n = jnp.where(enough, jnp.stack([nx, ny, nz]), n)
        new_t0 = jnp.where(enough, sol[0] / c, t0)
        new_dt, _ = residual(new_n, new_t0)
        return (new_n, new_t0, new_dt, jnp.array(False)), None

    n0 = jnp.array([0.0, 0.0, 1.0], dtype)
    init = (n0, jnp.zeros((), dtype), jnp.zeros_like(tt), jnp.array(True))
    (n, t0, dt, _), _ = jax.lax.scan(step, init, sig.astype(dtype))
    thr = jnp.maximum(reject_nsigma * sigma_end, reject_min)
    w = usef * jnp.exp(-0.5 * (dt / sigma_end) ** 2) * (jnp.abs(dt) <= thr)
    return n, t0 + t_ref, w


def size_energy(n_size, zenith, slope=0.85, offset=2.73, sec_coeff=1.7, min_particles=1.0):
    """log10(E/GeV) = slope · log10(max(N, min_particles)) + offset + sec_coeff · (sec θ − 1).

    ``n_size`` is the summed ED particle number within 100 m of the core (KM2A's NpE1-like
    size; 1 m² EDs, so ~1/200 of the particles on the ground). Defaults: see the module
    docstring (photon calibration on G4KM2A at 20°, rough)."""
    sec = 1.0 / jnp.maximum(jnp.cos(zenith), 0.1)
    return slope * jnp.log10(jnp.maximum(n_size, min_particles)) + offset + sec_coeff * (sec - 1.0)


def km2a_seed(ed_block, md_block, ed_pos, md_pos=None, *,
              pe_per_particle=ED_PE_PER_PARTICLE, min_particles=0.2,
              window_ns=400.0,
              core_n_top=10, core_sigma_start=60.0, core_sigma_end=15.0, core_n_iter=8,
              plane_radius=200.0, plane_time_window=1500.0, t_ref_radius=30.0,
              cone_slope=0.03 / SPEED_OF_LIGHT_M_PER_NS, plane_sigma_start=100.0,
              plane_sigma_end=10.0, plane_n_iter=10, plane_n_final=3,
              reject_nsigma=3.0, reject_min=30.0,
              size_radius=100.0, size_time_window=(-30.0, 50.0),
              energy_slope=0.85, energy_offset=2.73, energy_sec_coeff=1.7,
              xmax=550.0, log_muon_scale=0.0, n_hits_max=512) -> Shower:
    """Seed Shower for ONE KM2A event (pure JAX; vmap it for a batch, see :func:`seed_batch`).

    Parameters
    ----------
    ed_block : ChannelBlock of the EDs, arrays (n_ed,): signal [PE], time [ns], hit, valid.
    md_block : ChannelBlock of the MDs or None — unused so far (``log_muon_scale`` is the
        constant ``log_muon_scale``); accepted so the signature is final.
    ed_pos : (n_ed, 3) [m] ED positions (array frame, z relative to 4400 m).
    md_pos : (n_md, 3) or None — unused so far.

    Keyword parameters (defaults in brackets)
    -----------------------------------------
    pe_per_particle [40 PE], min_particles [0.2]: charge → particles (PHYSICS §2.1 [U]).
    window_ns [400 ns]: length of the densest time window.
    core_n_top [10], core_sigma_start [60 m], core_sigma_end [15 m], core_n_iter [8]:
        optimized centroid, see :func:`optimized_centroid`.
    plane_radius [200 m]: hits used in the plane fit are within this ground distance of the core.
    plane_time_window [1500 ns]: ... and within ± this of the core time t_ref (charge-weighted
        mean time of the window hits within ``t_ref_radius`` [30 m] of the core; the window mean
        time when there are none). ±1500 ns covers a 200 m radius up to ~75° zenith.
    cone_slope [0.03/c ns/m], plane_sigma_start [100 ns], plane_sigma_end [10 ns],
    plane_n_iter [10], plane_n_final [3], reject_nsigma [3], reject_min [30 ns]:
        see :func:`plane_fit`.
    size_radius [100 m], size_time_window [(−30, 50) ns around the fitted cone]: particles
        counted for the size (KM2A: [−30, +50] ns of the plane [C]).
    energy_slope [0.85], energy_offset [2.73], energy_sec_coeff [1.7]: see :func:`size_energy`.
    xmax [550 g/cm²], log_muon_scale [0]: constant seeds.
    n_hits_max [512]: every step works on the ``n_hits_max`` channels with the most particles
        (``lax.top_k``; channels without a hit carry no weight in any step, and an event has
        ~150-1000 hits, noise included) — the same seeds at a fraction of the cost of sorting
        and iterating over all 5216 EDs. None: every ED.

    Returns
    -------
    Shower with scalar leaves (dtype of ``ed_block.time``/``ed_pos``).
    """
    del md_block, md_pos  # reserved for a muon-content seed
    pos = jnp.asarray(ed_pos)
    time = jnp.asarray(ed_block.time)
    dtype = jnp.result_type(pos.dtype, time.dtype, jnp.float32)
    pos = pos.astype(dtype)
    time = time.astype(dtype)
    hit = jnp.asarray(ed_block.hit) & jnp.asarray(ed_block.valid)
    part = to_particles(jnp.asarray(ed_block.signal).astype(dtype), hit, pe_per_particle,
                        min_particles)
    if n_hits_max is not None and n_hits_max < pos.shape[0]:
        keep = jax.lax.top_k(part, n_hits_max)[1]
        pos, time, part = pos[keep], time[keep], part[keep]

    # 1. densest window
    t_start, in_win, _ = densest_window(time, part, window_ns)
    w_win = jnp.where(in_win, part, 0.0)

    # 2. core
    xy = pos[:, :2]
    core = optimized_centroid(xy, w_win, core_n_top, core_sigma_start, core_sigma_end, core_n_iter)
    d_ground = jnp.sqrt(jnp.sum((xy - core) ** 2, axis=-1))

    # 3. direction
    near = in_win & (d_ground <= t_ref_radius)
    t_win_mean = _safe_div(jnp.sum(w_win * time), jnp.sum(w_win), t_start)
    w_near = jnp.where(near, part, 0.0)
    t_ref = _safe_div(jnp.sum(w_near * time), jnp.sum(w_near), t_win_mean)
    use = (part > 0) & (d_ground <= plane_radius) & (jnp.abs(time - t_ref) <= plane_time_window)
    n, t0, _ = plane_fit(pos, time, use, core, t_ref, cone_slope=cone_slope,
                         sigma_start=plane_sigma_start, sigma_end=plane_sigma_end,
                         n_iter=plane_n_iter, n_final=plane_n_final,
                         reject_nsigma=reject_nsigma, reject_min=reject_min)
    any_hit = jnp.any(part > 0)
    t0 = jnp.where(any_hit, t0, 0.0)
    zenith = jnp.arccos(jnp.clip(n[2], -1.0, 1.0))
    s2 = n[0] ** 2 + n[1] ** 2
    azimuth = jnp.where(s2 > 0,
                        jnp.mod(jnp.arctan2(jnp.where(s2 > 0, n[1], 0.0),
                                            jnp.where(s2 > 0, n[0], 1.0)), 2.0 * math.pi),
                        0.0)

    # 4. size -> energy (particles near the fitted cone, within size_radius of the core)
    rel = pos - jnp.concatenate([core, jnp.zeros((1,), dtype)])
    along = rel @ n
    r_axis = jnp.sqrt(jnp.maximum(jnp.sum(rel * rel, -1) - along * along, 0.0))
    dt = time - (t0 - along / SPEED_OF_LIGHT_M_PER_NS + cone_slope * r_axis)
    on_front = (dt >= size_time_window[0]) & (dt <= size_time_window[1])
    n_size = jnp.sum(jnp.where(on_front & (r_axis <= size_radius), part, 0.0))
    log10_energy = size_energy(n_size, zenith, energy_slope, energy_offset, energy_sec_coeff)

    return Shower(core_x=core[0], core_y=core[1], zenith=zenith, azimuth=azimuth,
                  log10_energy=log10_energy.astype(dtype), xmax=jnp.asarray(xmax, dtype),
                  log_muon_scale=jnp.asarray(log_muon_scale, dtype), t0=t0.astype(dtype))


def seed_batch(batch_event, layout, **kwargs) -> Shower:
    """Seeds for a batched Event (leading axis B): ``jit(vmap(km2a_seed))`` over the events.

    Parameters
    ----------
    batch_event : Event with a ``km2a_ed`` block of shape (B, n_ed) (``km2a_md`` optional).
    layout : KM2ALayout (``ed_pos``, ``md_pos``), or anything with those attributes.
    kwargs : keyword parameters of :func:`km2a_seed` (static: a new set recompiles).

    Returns
    -------
    Shower with leaves of shape (B,).
    """
    ed = batch_event.km2a_ed
    if ed is None:
        raise ValueError("seed_batch needs an Event with a km2a_ed block")
    fn = _batched_seed(tuple(sorted(kwargs.items())))
    ed = type(ed)(*[jnp.asarray(x) for x in ed])
    return fn(ed, jnp.asarray(layout.ed_pos))


_CACHE: dict = {}


def _batched_seed(items):
    if items not in _CACHE:
        kw = dict(items)

        def one(ed, ed_pos):
            return km2a_seed(ed, None, ed_pos, None, **kw)

        _CACHE[items] = jax.jit(jax.vmap(one, in_axes=(0, None)))
    return _CACHE[items]


#: WCDA seed: log10(E/GeV) = slope · log10(N) + offset + sec_coeff (sec θ − 1), N the
#: electromagnetic-particle equivalent (charge / (em_pe_fraction · pe_per_muon)) of the cells
#: within 100 m of the core on the front. Read off this project's own WCDA simulation of photons
#: (400 photons, 1–30 TeV, E^-1, zenith < 40°, cores on the ponds; least squares of the true
#: log10 E on log10 N and sec θ − 1: residual rms 0.15 dex) — a seed only; the pipeline then
#: scans the energy by the likelihood (``joint.pipeline.SEED_ENERGY_SCAN``).
WCDA_ENERGY_SLOPE = 0.74
WCDA_ENERGY_OFFSET = 1.21
WCDA_ENERGY_SEC_COEFF = 1.12


def wcda_seed(cells, cell_pos, response, *, em_pe_fraction=0.12, min_particles=0.25,
              window_ns=200.0, core_sigma_end=8.0, plane_radius=150.0, size_radius=100.0,
              cone_slope=0.07, energy_slope=WCDA_ENERGY_SLOPE, energy_offset=WCDA_ENERGY_OFFSET,
              energy_sec_coeff=WCDA_ENERGY_SEC_COEFF, n_hits_max=512) -> Shower:
    """Seed Shower for ONE WCDA event: :func:`km2a_seed`'s steps on the cells.

    The cell times are corrected for the PMT's charge-dependent slewing
    (``detectors.wcda.time_slewing``), charges are converted to electromagnetic-particle
    equivalents with each cell's ``em_pe_fraction · pe_per_muon`` (so ponds with different PMTs
    compare), cells below ``min_particles`` (dark-noise hits of ~1 PE) are dropped; then the
    densest 200 ns window, the optimized centroid (σ down to 8 m: cells are 5 m), the conical
    plane fit (α = 0.07 ns/m, WCDA-1 code [U]) and the size → energy relation above.
    The charge centroid lies where the axis crosses the PMTs' depth (≈ 27 m below the 4400 m
    reference of the core: 15 m sideways at 30° zenith), so the core is moved along the fitted
    axis to the reference height (and t0 with it).

    cells : ChannelBlock (n,);  cell_pos : (n, 3) [m];  response : ``detectors.wcda.Response``.
    """
    from detectors.wcda import time_slewing

    corrected = cells._replace(time=jnp.where(cells.hit, cells.time
                                              - time_slewing(cells.signal, response), 0.0))
    seed = km2a_seed(corrected, None, cell_pos, None,
                     pe_per_particle=em_pe_fraction * jnp.asarray(response.pe_per_muon),
                     min_particles=min_particles, window_ns=window_ns,
                     core_sigma_end=core_sigma_end, plane_radius=plane_radius,
                     size_radius=size_radius, cone_slope=cone_slope, energy_slope=energy_slope,
                     energy_offset=energy_offset, energy_sec_coeff=energy_sec_coeff,
                     n_hits_max=n_hits_max)
    z = jnp.mean(jnp.asarray(cell_pos)[:, 2]).astype(seed.core_x.dtype)
    tan_t = jnp.tan(jnp.minimum(seed.zenith, 1.2))
    dx, dy = -z * tan_t * jnp.cos(seed.azimuth), -z * tan_t * jnp.sin(seed.azimuth)
    # t0 at the moved core: the plane front t = t0 − ((x − core)·n)/c with x − core = (dx, dy, 0)
    n_x, n_y = jnp.sin(seed.zenith) * jnp.cos(seed.azimuth), jnp.sin(seed.zenith) * jnp.sin(seed.azimuth)
    t0 = seed.t0 - (dx * n_x + dy * n_y) / SPEED_OF_LIGHT_M_PER_NS
    return seed._replace(core_x=seed.core_x + dx, core_y=seed.core_y + dy, t0=t0)
