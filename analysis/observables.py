"""Per-event observables at the reconstructed shower, per detector: the analysis layer's
columns of the ``reco`` output (``docs/event_files.md``).

* KM2A: ``ne``, ``nmu`` (muons 40–200 m from the core, PHYSICS.md §2.1), ``age``, and where the
  core lies on the array (:func:`core_quality`: ``core_edge_distance``, ``core_ed_gap``,
  ``core_inside``);
* WCDA: ``wcda_nhit``, ``wcda_npe``, ``compactness``, ``cxpe``, ``pincness``
  (``analysis.gamma_hadron``);
* WFCTA: Hillas parameters per telescope (``analysis.hillas``), ``x_dist``, ``wfcta_size``.

:func:`observables` is the function the pipeline takes (``joint.pipeline.reconstruct_batch``'s
``observables`` argument); the API and the CLI pass it. A registered detector without an entry in
:data:`OBSERVABLES` has no observables (its fit columns are written all the same).
"""
from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from analysis.dist_xmax import centroid_depth, source_in_camera
from analysis.gamma_hadron import compactness, cxpe, pincness
from analysis.hillas import dist_alpha, hillas_parameters, neighbor_matrix, tailcuts_clean
from detectors import km2a, wcda
from detectors.layout import camera_pixel_xy
from detectors.shower import shower_plane_coordinates
from joint.traced import disk_jit

__all__ = ["observables", "OBSERVABLES", "km2a_observables", "wcda_observables", "wfcta_observables_fn",
           "wfcta_observables", "core_quality", "WCDA_TIME_WINDOW", "REFERENCE_PE_PER_MUON",
           "WFCTA_PICTURE_PE", "WFCTA_BOUNDARY_PE", "MAIN_ARRAY_RADIUS_M", "CORE_GAP_INSIDE_M"]


def km2a_observables(shower, ed, md, geometry, response, physics, window=(-50.0, 100.0)):
    """KM2A observables of one event at the reconstructed shower (pure JAX):

    ne : ED particles (PE / gain) within [−30, +50] ns of the fitted front and 0–200 m
    nmu : muons (PE / gain) in MDs 40–200 m from the core within ``window`` ns of the front
          (PHYSICS.md §2.1: NuM3 [U])
    age : lateral age of the fitted model.
    """
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


#: WCDA hits counted in ``wcda_nhit``/``wcda_npe`` lie within this window of the fitted front
#: (slewing included) [ns]
WCDA_TIME_WINDOW = (-30.0, 50.0)
#: compactness/PINCness charges are expressed in PE of a pond-1 (8-inch) PMT: q · 45 / pe_per_muon
REFERENCE_PE_PER_MUON = 45.0


def wcda_observables(shower, cells, geometry, response, physics, window=WCDA_TIME_WINDOW,
                     compactness_radius=45.0):
    """WCDA observables of one event at the reconstructed shower (pure JAX, every cell):

    wcda_nhit, wcda_npe : hit cells (and their summed charge [PE]) within ``window`` ns of the
        fitted front, time slewing included — the shower's hits, noise hits outside removed
    compactness : N_hit / CxPE_R (R = ``compactness_radius``, 45 m [M]) on those hits
    cxpe : CxPE_R [PE of a pond-1 8-inch PMT];  pincness : HAWC PINCness with the model's charge
    spread (fano) (``analysis.gamma_hadron``). Both use charges scaled to pond-1 PE
    (q · 45 / pe_per_muon), so that the 20-inch cells of ponds 2/3 compare.
    """
    e = wcda.expected(shower, geometry, response, physics)
    lag = e.cell_front_tau / jnp.maximum(cells.signal / e.cell_pe_per_particle, 1.0)
    dt = cells.time - (e.cell_time + lag + wcda.time_slewing(cells.signal, response))
    valid = cells.valid & jnp.asarray(geometry.cell_live)
    in_time = (cells.hit & valid & (dt > window[0]) & (dt < window[1])
               & (cells.signal >= response.threshold_pe))
    core = jnp.stack([shower.core_x, shower.core_y])
    nhit = jnp.sum(in_time)
    npe = jnp.sum(jnp.where(in_time, cells.signal, 0.0))
    # compactness and PINCness on charges in pond-1 (8-inch) PE, so that cells with the larger
    # PMTs of ponds 2/3 (4× the PE per particle, [M]) compare
    scale = REFERENCE_PE_PER_MUON / response.pe_per_muon
    q = cells.signal * scale
    comp = compactness(q, in_time, valid, geometry.cell_pos, core, compactness_radius)
    cx = cxpe(q, in_time, valid, geometry.cell_pos, core, compactness_radius)
    fano = jnp.where(cells.signal >= response.switch_pe,
                     e.cell_fano + (1.0 + response.spe_resolution ** 2)
                     * (1.0 / response.small_ratio - 1.0), e.cell_fano)
    pinc = pincness(q, in_time, valid, geometry.cell_pos, core, fano * scale)
    return {"wcda_nhit": nhit, "wcda_npe": npe, "compactness": comp, "cxpe": cx,
            "pincness": pinc}


#: tailcut thresholds [PE above the night-sky background] of the WFCTA image cleaning: ≈ 6σ and
#: 3σ of the background fluctuation of a pixel (sqrt(F · 15 PE) ≈ 4.2 PE) [M]
WFCTA_PICTURE_PE = 25.0
WFCTA_BOUNDARY_PE = 12.0


def wfcta_observables(shower, pixels, geometry, response, neighbors, atm=None):
    """WFCTA image parameters of one event at the (fitted or fixed) shower geometry:
    per telescope (n_tel,) the Hillas parameters of the tailcut-cleaned, background-subtracted
    image (``analysis.hillas``; angles in rad in the camera's tangent plane), Dist and alpha
    with respect to the arrival direction, and the depth on the axis the centroid points at
    (``analysis.dist_xmax.centroid_depth``); ``x_dist`` of the brightest telescope."""
    n_tel = geometry.tel_pos.shape[0]
    img = (jnp.where(pixels.valid, pixels.signal, 0.0).reshape(n_tel, -1)
           - response.nsb_pe)
    px = jnp.tile(geometry.col_x, geometry.row_y.shape[0])
    py = jnp.repeat(geometry.row_y, geometry.col_x.shape[0])

    def one(im):
        mask = tailcuts_clean(im, neighbors, WFCTA_PICTURE_PE, WFCTA_BOUNDARY_PE)
        return hillas_parameters(px, py, im, mask)

    hp = jax.vmap(one)(img)
    src = source_in_camera(shower.zenith, shower.azimuth, geometry)
    dist, alpha = jax.vmap(dist_alpha)(hp, src)
    xd = centroid_depth(jnp.stack([hp.x, hp.y], -1), shower, geometry, atm)
    best = jnp.argmax(hp.intensity)
    return {"hillas_size": hp.intensity, "hillas_x": hp.x, "hillas_y": hp.y,
            "hillas_length": hp.length, "hillas_width": hp.width, "hillas_psi": hp.psi,
            "hillas_dist": dist, "hillas_alpha": alpha, "hillas_x_dist": xd,
            "x_dist": xd[best], "wfcta_size": jnp.sum(hp.intensity)}


#: EDs farther than this from the array centre form the outer guard ring (~30 m spacing) and
#: do not bound the ED area of :func:`core_quality` (LHAASO's selections use the 575 m radius
#: of the main array, PHYSICS.md §2 / G4KM2A_Reconstruction's trigger "without guard ring" [U])
MAIN_ARRAY_RADIUS_M = 575.0
#: an ED farther than this from the core means the core is on an ED-free area (the regular
#: 15 m grid leaves at most ~11 m to the nearest ED; the area around WCDA is ~300 m across)
CORE_GAP_INSIDE_M = 25.0


def _cross2(a, b):
    """z component of the cross product of 2-D vectors (last axis)."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _convex_hull(xy):
    """Counter-clockwise convex hull (monotone chain) of (n, 2) points."""
    pts = np.unique(np.asarray(xy, np.float64), axis=0)
    if len(pts) < 3:
        return pts

    def half(points):
        h = []
        for p in points:
            while len(h) >= 2 and _cross2(h[-1] - h[-2], p - h[-2]) <= 0:
                h.pop()
            h.append(p)
        return h[:-1]

    return np.array(half(pts) + half(pts[::-1]))


def core_quality(core_x, core_y, geometry) -> dict:
    """Per-event containment flags of a KM2A core (numpy, any number of events):

    core_edge_distance [m] : signed distance from the core to the edge of the ED area (the
        convex hull of the live EDs within :data:`MAIN_ARRAY_RADIUS_M`); > 0 inside, < 0
        outside the array
    core_ed_gap [m] : distance from the core to the nearest live ED (large on the ED-free area
        around WCDA)
    core_inside : 1 when the core is inside the ED area and within :data:`CORE_GAP_INSIDE_M`
        of an ED, else 0 — the selection users apply as LHAASO does (cores on the ponds are
        reconstructed, but by the EDs around them; the joint fit with WCDA is the answer there)
    """
    pos = np.asarray(geometry.ed_pos)[:, :2]
    live = (np.ones(len(pos), bool) if geometry.ed_live is None
            else np.asarray(geometry.ed_live, bool))
    main = pos[live & (np.hypot(pos[:, 0], pos[:, 1]) <= MAIN_ARRAY_RADIUS_M)]
    hull = _convex_hull(main)
    c = np.stack([np.asarray(core_x, np.float64), np.asarray(core_y, np.float64)], -1)
    a, b = hull, np.roll(hull, -1, axis=0)
    ab = b - a
    t = np.clip(np.einsum("nkd,kd->nk", c[:, None, :] - a[None], ab) / np.sum(ab * ab, -1), 0, 1)
    d_edge = np.min(np.linalg.norm(c[:, None, :] - (a[None] + t[..., None] * ab[None]), axis=-1),
                    axis=1)
    inside = np.all(_cross2(ab[None], c[:, None, :] - a[None]) >= 0, axis=1)
    gap = np.empty(len(c))
    for i0 in range(0, len(c), 256):  # (256, n_ed) distances at a time
        blk = c[i0:i0 + 256]
        gap[i0:i0 + 256] = np.sqrt(np.min(np.sum((blk[:, None, :] - pos[live][None]) ** 2, -1), 1))
    finite = np.all(np.isfinite(c), axis=1)
    edge = np.where(finite, np.where(inside, d_edge, -d_edge), np.nan)
    gap = np.where(finite, gap, np.nan)
    return {"core_edge_distance": edge, "core_ed_gap": gap,
            "core_inside": (finite & inside & (gap <= CORE_GAP_INSIDE_M)).astype(np.int8)}


@lru_cache(maxsize=4)
def _wfcta_observables_fn(n_side):
    neighbors = jnp.asarray(neighbor_matrix(camera_pixel_xy()))
    return disk_jit(jax.vmap(lambda s, p, g, r: wfcta_observables(s, p, g, r, neighbors),
                             in_axes=(0, 0, None, None)), "obs_wfcta", repr(n_side))


def wfcta_observables_fn(n_side):
    """The batched, jitted :func:`wfcta_observables` (vmapped over events; cached per camera
    size): ``fn(showers, pixels, geometry, response)`` → per-event observables."""
    return _wfcta_observables_fn(n_side)


@lru_cache(maxsize=16)
def _wcda_observables_fn(cfg):
    physics = cfg.physics_of("wcda")
    return disk_jit(jax.vmap(lambda s, c, g, r: wcda_observables(s, c, g, r, physics),
                             in_axes=(0, 0, None, None)), "obs_wcda", repr(cfg))


@lru_cache(maxsize=16)
def _observables_fn(cfg):
    physics = cfg.physics
    return disk_jit(jax.vmap(lambda s, ed, md, g, r: km2a_observables(s, ed, md, g, r, physics),
                             in_axes=(0, 0, 0, None, None)), "obs_km2a", repr(cfg))


def _km2a_columns(cfg, shower, blocks, geos, resps) -> dict:
    ne, nmu, age = _observables_fn(cfg)(shower, blocks["km2a_ed"], blocks["km2a_md"],
                                        geos["km2a"], resps["km2a"])
    out = {"ne": np.asarray(ne, np.float64), "nmu": np.asarray(nmu, np.float64),
           "age": np.asarray(age, np.float64)}
    out.update(core_quality(np.asarray(shower.core_x, np.float64),
                            np.asarray(shower.core_y, np.float64), geos["km2a"]))
    return out


def _wcda_columns(cfg, shower, blocks, geos, resps) -> dict:
    obs = _wcda_observables_fn(cfg)(shower, blocks["wcda"], geos["wcda"], resps["wcda"])
    return {k: np.asarray(v, np.int32 if k == "wcda_nhit" else np.float64) for k, v in obs.items()}


def _wfcta_columns(cfg, shower, blocks, geos, resps) -> dict:
    obs = _wfcta_observables_fn(geos["wfcta"].col_x.shape[0])(
        shower, blocks["wfcta"], geos["wfcta"], resps["wfcta"])
    return {k: np.asarray(v, np.float64) for k, v in obs.items()}


#: per detector: f(cfg, shower (B,), blocks, geometries, responses) -> {column: (B, ...) array}
OBSERVABLES = {"km2a": _km2a_columns, "wcda": _wcda_columns, "wfcta": _wfcta_columns}


def observables(cfg, shower, blocks, geos, resps) -> dict:
    """The observables of every detector of ``cfg`` that has some (:data:`OBSERVABLES`), at the
    fitted showers of a batch."""
    out = {}
    for d in cfg.detectors:
        if d in OBSERVABLES:
            out.update(OBSERVABLES[d](cfg, shower, blocks, geos, resps))
    return out
