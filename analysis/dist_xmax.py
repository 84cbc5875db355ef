"""The classic WFCTA "Dist" Xmax estimator (LHAASO, PoS(ICRC2023)407 [C]), as a baseline.

With the shower geometry known from the ground arrays, the image centroid of a Cherenkov image
points at the brightest part of the shower, near its maximum: the angular distance ("Dist")
between the centroid and the arrival direction, with the telescope's distance to the axis,
fixes the depth seen. Here that geometry is solved exactly: the ray from the telescope through
the image centroid is intersected (closest approach) with the shower axis, and the slant depth
of that point along the axis is X_dist. A linear calibration Xmax ≈ a + b·X_dist, fitted on
simulation (``calibrate``), removes the bias of light emitted after the maximum (the image
centroid lags the maximum), as LHAASO's Dist–Xmax relation does.

Pure jax.numpy for one event (vmap over events); ``calibrate`` is numpy.

The method as LHAASO uses it (issue 16; numpy, per event and telescope): :func:`telescope_features`
(Dist, the impact distance R_p of the telescope from the axis, the viewing angle, X_dist, the
ground's slant depth) at a given geometry — the KM2A fit's or the truth; :func:`image_leakage`
and :func:`quality_cuts` (size, leakage, distance of the centroid from the camera edge, [M]
values stated below); :class:`DistCalibration`: a smooth regression of Xmax in (Dist, R_p,
log size, sec θ, viewing angle, X_dist) fitted on one simulated sample and applied to another,
the telescopes of an event combined by a weighted mean with σ per R_p bin and size tercile.
``benchmarks/dist_baseline.py`` measures it; ``analysis.composition`` uses it in the composition
table.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

from detectors import atmosphere
from detectors.shower import REFERENCE_HEIGHT_M, direction

__all__ = ["source_in_camera", "centroid_depth", "dist_angle", "calibrate", "telescope_features",
           "image_leakage", "quality_cuts", "DistCalibration", "dist_xmax_event_features"]


def source_in_camera(zenith, azimuth, geometry):
    """Tangent-plane (ξ, η) [rad] of the arrival direction in each camera: (n_tel, 2)."""
    n = direction(zenith, azimuth)
    along = geometry.tel_axis @ n
    safe = jnp.where(along > 0, along, 1.0)
    return jnp.stack([geometry.tel_e_az @ n / safe, geometry.tel_e_el @ n / safe], -1)


def dist_angle(centroid_xy, zenith, azimuth, geometry):
    """Dist [rad]: angular distance between each image centroid (n_tel, 2) and the arrival
    direction (small-angle, in the tangent plane)."""
    src = source_in_camera(zenith, azimuth, geometry)
    return jnp.sqrt(jnp.sum((centroid_xy - src) ** 2, -1))


def centroid_depth(centroid_xy, shower, geometry, atm=None):
    """Slant depth [g/cm²] (n_tel,) of the point of the shower axis closest to the ray from each
    telescope through its image centroid (n_tel, 2) [rad, tangent plane]."""
    v = (geometry.tel_axis + centroid_xy[:, :1] * geometry.tel_e_az
         + centroid_xy[:, 1:] * geometry.tel_e_el)
    v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
    n = direction(shower.zenith, shower.azimuth)
    core = jnp.stack([shower.core_x, shower.core_y, jnp.zeros_like(shower.core_x)])
    w0 = core - geometry.tel_pos                          # (n_tel, 3)
    b = v @ n
    d = w0 @ n
    e = jnp.sum(v * w0, -1)
    denom = jnp.maximum(1.0 - b * b, 1e-9)
    t_axis = (b * e - d) / denom                          # distance along n from the core
    h = REFERENCE_HEIGHT_M + t_axis * n[2]
    return atmosphere.vertical_depth(h, atm) / n[2]


def calibrate(x_dist, xmax_true):
    """Least-squares (a, b) of xmax_true ≈ a + b·x_dist (numpy, finite entries only)."""
    x, y = np.asarray(x_dist, float), np.asarray(xmax_true, float)
    ok = np.isfinite(x) & np.isfinite(y)
    b, a = np.polyfit(x[ok], y[ok], 1)
    return float(a), float(b)


# ================================================================================================
# The Dist method as LHAASO uses it: features per telescope, quality cuts, a calibration per
# impact distance and viewing angle, telescopes combined (numpy; issue 16)
# ================================================================================================
#: image quality cuts [M] (LHAASO's values are not published; ours are stated here):
#: minimum cleaned image size [PE]
MIN_SIZE_PE = 300.0
#: maximum leakage (fraction of the cleaned intensity in the camera's outermost pixel ring)
MAX_LEAKAGE = 0.2
#: the centroid must lie at least this many image lengths + one pixel inside the camera edge
EDGE_LENGTHS = 1.0
#: half of the camera's field of view along ξ or η [rad]: 16 pixels of 0.515° + 3.5 gaps ≈ 8.3°
CAMERA_HALF_FOV_RAD = float(np.radians(8.3))
#: R_p bins [m] of the calibration table and of the per-telescope resolution [M]
RP_EDGES = (0.0, 60.0, 120.0, 180.0, 260.0, 400.0, 1e4)


def _np_direction(zenith, azimuth):
    z, a = np.asarray(zenith, float), np.asarray(azimuth, float)
    return np.stack([np.sin(z) * np.cos(a), np.sin(z) * np.sin(a), np.cos(z)], -1)


def telescope_features(hillas_x, hillas_y, zenith, azimuth, core_x, core_y, geometry, atm=None):
    """Per event and telescope (B, n_tel) features of the Dist method at a given geometry
    (truth or a KM2A fit), numpy:

    dist : angle [deg] between the ray through the image centroid and the arrival direction
        (LHAASO's Dist);
    rp : impact distance [m] of the telescope from the shower axis;
    view : viewing angle [deg] between the telescope's optical axis and the arrival direction;
    x_dist : slant depth [g/cm²] of the axis point closest to the centroid ray
        (:func:`centroid_depth`);
    x_ground : slant depth [g/cm²] of the observation level along the axis.
    """
    gp = np.asarray(geometry.tel_pos, float)
    ax, ea, ee = (np.asarray(a, float) for a in (geometry.tel_axis, geometry.tel_e_az,
                                                  geometry.tel_e_el))
    hx, hy = np.asarray(hillas_x, float), np.asarray(hillas_y, float)
    n = _np_direction(zenith, azimuth)                              # (B, 3)
    v = ax[None] + hx[..., None] * ea[None] + hy[..., None] * ee[None]
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)               # (B, T, 3)
    cos_d = np.clip(np.einsum("btk,bk->bt", v, n), -1.0, 1.0)
    core = np.stack([np.asarray(core_x, float), np.asarray(core_y, float),
                     np.zeros(np.shape(core_x))], -1)
    w0 = core[:, None, :] - gp[None]                                # (B, T, 3) telescope -> core
    along = np.einsum("btk,bk->bt", w0, n)
    perp = w0 - along[..., None] * n[:, None, :]
    rp = np.linalg.norm(perp, axis=-1)
    view = np.degrees(np.arccos(np.clip(np.einsum("tk,bk->bt", ax, n), -1.0, 1.0)))
    b = cos_d
    e = np.einsum("btk,btk->bt", v, w0)
    t_axis = (b * e - along) / np.maximum(1.0 - b * b, 1e-9)
    h = REFERENCE_HEIGHT_M + t_axis * n[:, None, 2]
    vd = lambda hh: np.asarray(atmosphere.vertical_depth(jnp.asarray(hh, jnp.float32), atm),
                               float)
    x_dist = vd(h) / n[:, None, 2]
    x_ground = vd(np.full(n.shape[0], REFERENCE_HEIGHT_M)) / n[:, 2]
    return {"dist": np.degrees(np.arccos(cos_d)), "rp": rp, "view": view, "x_dist": x_dist,
            "x_ground": np.broadcast_to(x_ground[:, None], rp.shape).copy()}


def image_leakage(pixels, geometry, response, n_ring=1):
    """Leakage (B, n_tel): fraction of the cleaned, background-subtracted image intensity in the
    outermost ``n_ring`` pixel rings of the camera (the same tail-cuts cleaning as
    ``analysis.observables``); 0 for an empty image. ``pixels``: the WFCTA block of an event
    batch (signal, valid: (B, n_tel·1024))."""
    import jax

    from analysis.hillas import neighbor_matrix, tailcuts_clean
    from analysis.observables import WFCTA_BOUNDARY_PE, WFCTA_PICTURE_PE
    from detectors.layout import camera_pixel_xy

    n_tel = np.asarray(geometry.tel_pos).shape[0]
    side = np.asarray(geometry.col_x).shape[0]
    neighbors = jnp.asarray(neighbor_matrix(camera_pixel_xy()))
    k = np.arange(side * side)
    i, j = k // side, k % side
    border = jnp.asarray((np.minimum(np.minimum(i, j), np.minimum(side - 1 - i, side - 1 - j))
                          < n_ring))
    nsb = jnp.asarray(response.nsb_pe)

    @jax.jit
    def one(sig, val):
        img = jnp.where(val, sig, 0.0).reshape(n_tel, -1) - nsb

        def tel(im):
            m = tailcuts_clean(im, neighbors, WFCTA_PICTURE_PE, WFCTA_BOUNDARY_PE)
            tot = jnp.sum(jnp.where(m, im, 0.0))
            edge = jnp.sum(jnp.where(m & border, im, 0.0))
            return jnp.where(tot > 0, edge / jnp.where(tot > 0, tot, 1.0), 0.0)

        return jax.vmap(tel)(img)

    f = jax.vmap(one)
    sig, val = np.asarray(pixels.signal), np.asarray(pixels.valid)
    out = [np.asarray(f(jnp.asarray(sig[a:a + 64]), jnp.asarray(val[a:a + 64])))
           for a in range(0, sig.shape[0], 64)]
    return np.concatenate(out) if out else np.zeros((0, n_tel))


def quality_cuts(size, hillas_x, hillas_y, length, leakage=None, min_size=MIN_SIZE_PE,
                 max_leakage=MAX_LEAKAGE, edge_lengths=EDGE_LENGTHS,
                 half_fov=CAMERA_HALF_FOV_RAD, pixel=float(np.radians(0.515))):
    """Boolean (B, n_tel): images kept by the quality cuts — size ≥ ``min_size`` PE, leakage ≤
    ``max_leakage`` (when given), and the centroid at least ``edge_lengths`` image lengths plus
    one pixel inside the camera edge along ξ and η (images cut by the edge lose their far end,
    which biases the centroid towards the camera centre)."""
    size = np.asarray(size, float)
    x, y, ln = (np.asarray(a, float) for a in (hillas_x, hillas_y, length))
    margin = half_fov - np.maximum(np.abs(x), np.abs(y))
    ok = np.isfinite(size) & (size >= min_size) & (margin >= edge_lengths * ln + pixel)
    if leakage is not None:
        ok &= np.asarray(leakage, float) <= max_leakage
    return ok


#: the calibration polynomial is quadratic when the sample has at least this many images per
#: coefficient, else linear (small samples, e.g. the notebook's fast mode) [M]
MIN_IMAGES_PER_COEFF = 3


def _design(f, log_size, deg=2):
    """Design matrix of the calibration: a full polynomial of degree ``deg`` in the scaled
    features u = (Dist/5°, R_p/200 m, log10(size/1000 PE), sec θ − 1.15, view/5°) plus the
    scaled geometric depth (x_dist − 600)/100 clipped at the ground, and its products with u."""
    u = [f["dist"] / 5.0, f["rp"] / 200.0, log_size - 3.0,
         f["x_ground"] / 690.0 - 1.0, f["view"] / 5.0]
    xg = (np.minimum(f["x_dist"], f["x_ground"]) - 600.0) / 100.0
    cols = [np.ones_like(u[0])]
    for a in range(len(u)):
        cols.append(u[a])
        if deg >= 2:
            for b in range(a, len(u)):
                cols.append(u[a] * u[b])
    cols.append(xg)
    cols += [xg * ua for ua in u]
    return np.stack(cols, -1)


@dataclass
class DistCalibration:
    """Xmax from Dist per telescope, calibrated on simulation, then the telescopes of an event
    combined.

    Per telescope image passing :func:`quality_cuts`: Xmax_i = P(Dist, R_p, log size, sec θ,
    viewing angle, X_dist) with P the polynomial of :func:`_design` (Dist–Xmax relation smooth in
    R_p and viewing angle, as LHAASO's per-R_p calibration), least squares with a ridge term
    ``ridge`` [M] on a calibration sample; σ_i: the r.m.s. residual of the calibration sample in
    the R_p bin (:data:`RP_EDGES`) and size tercile of the image; the event's Xmax is the
    1/σ_i²-weighted mean of its telescopes, with error (Σ 1/σ_i²)^-1/2 (images of one shower
    are correlated: the error is a lower bound). No image passing the cuts: NaN (no estimate).
    """

    coeffs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sigma_table: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    size_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rp_edges: tuple = RP_EDGES
    ridge: float = 1e-3
    n_images: int = 0
    deg: int = 2

    @classmethod
    def fit(cls, features, log_size, keep, xmax_true, ridge=1e-3, rp_edges=RP_EDGES, deg=None):
        """Fit on per-telescope ``features`` (dict of (B, T) arrays, :func:`telescope_features`),
        ``log_size`` = log10 size (B, T), ``keep`` (B, T) bool (quality cuts) and the true Xmax
        (B,) of each event. ``deg``: degree of the polynomial (None: 2, or 1 when there are
        fewer than :data:`MIN_IMAGES_PER_COEFF` images per coefficient)."""
        y = np.broadcast_to(np.asarray(xmax_true, float)[:, None], keep.shape)
        if deg is None:
            a = _design(features, log_size, 2)
            n_ok = int((keep & np.all(np.isfinite(a), -1) & np.isfinite(y)).sum())
            deg = 2 if n_ok >= MIN_IMAGES_PER_COEFF * a.shape[-1] else 1
        a = _design(features, log_size, deg)
        ok = keep & np.all(np.isfinite(a), -1) & np.isfinite(y)
        A, Y = a[ok], y[ok]
        if A.shape[0] <= A.shape[1]:
            raise ValueError(f"DistCalibration.fit: {A.shape[0]} images for {A.shape[1]} "
                             "coefficients")
        reg = ridge * A.shape[0] * np.eye(A.shape[1])
        reg[0, 0] = 0.0
        coeffs = np.linalg.solve(A.T @ A + reg, A.T @ Y)
        res = Y - A @ coeffs
        size_edges = np.percentile(log_size[ok], [100 / 3, 200 / 3])
        table = _sigma_table(features["rp"][ok], log_size[ok], res, rp_edges, size_edges)
        return cls(coeffs, table, size_edges, tuple(rp_edges), ridge, int(ok.sum()), int(deg))

    def per_telescope(self, features, log_size, keep):
        """(Xmax_i, σ_i), each (B, T); NaN where an image fails the cuts."""
        a = _design(features, log_size, self.deg)
        x = a @ self.coeffs
        ir = np.clip(np.searchsorted(self.rp_edges, features["rp"], side="right") - 1, 0,
                     len(self.rp_edges) - 2)
        isz = np.searchsorted(self.size_edges, log_size, side="right")
        s = self.sigma_table[ir, isz]
        ok = keep & np.isfinite(x) & np.isfinite(s)
        return np.where(ok, x, np.nan), np.where(ok, s, np.nan)

    def predict(self, features, log_size, keep):
        """(Xmax, error, number of images used) per event (B,)."""
        x, s = self.per_telescope(features, log_size, keep)
        w = np.where(np.isfinite(x), 1.0 / np.where(np.isfinite(s), s, 1.0) ** 2, 0.0)
        sw = w.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            xm = np.where(sw > 0, np.nansum(np.where(w > 0, w * x, 0.0), -1) / sw, np.nan)
            err = np.where(sw > 0, 1.0 / np.sqrt(sw), np.nan)
        return xm, err, (w > 0).sum(-1)


def _sigma_table(rp, log_size, res, rp_edges, size_edges, min_count=5):
    """r.m.s. residual per (R_p bin, size tercile); a cell with fewer than ``min_count`` images
    takes the r.m.s. of its R_p bin, or of all images."""
    ir = np.clip(np.searchsorted(rp_edges, rp, side="right") - 1, 0, len(rp_edges) - 2)
    isz = np.searchsorted(size_edges, log_size, side="right")
    overall = float(np.sqrt(np.mean(res ** 2)))
    t = np.full((len(rp_edges) - 1, len(size_edges) + 1), overall)
    for i in range(t.shape[0]):
        m = ir == i
        row = float(np.sqrt(np.mean(res[m] ** 2))) if m.sum() >= min_count else overall
        for j in range(t.shape[1]):
            mm = m & (isz == j)
            t[i, j] = float(np.sqrt(np.mean(res[mm] ** 2))) if mm.sum() >= min_count else row
    return t


def dist_xmax_event_features(cols, geometry, geometry_source="reco", atm=None, leakage=None):
    """Per-telescope features, log10 size and quality mask of events from per-event columns:
    ``hillas_size``, ``hillas_x``, ``hillas_y``, ``hillas_length`` (B, T) and the geometry
    ``{reco|true}_{core_x, core_y, zenith, azimuth}`` (B,). Returns (features, log_size, keep)."""
    g = geometry_source
    f = telescope_features(cols["hillas_x"], cols["hillas_y"], cols[f"{g}_zenith"],
                           cols[f"{g}_azimuth"], cols[f"{g}_core_x"], cols[f"{g}_core_y"],
                           geometry, atm)
    size = np.asarray(cols["hillas_size"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_size = np.where(size > 0, np.log10(np.where(size > 0, size, 1.0)), np.nan)
    keep = quality_cuts(size, cols["hillas_x"], cols["hillas_y"], cols["hillas_length"],
                        leakage if leakage is not None else cols.get("leakage"))
    keep &= np.all(np.isfinite(np.stack(list(f.values()), -1)), -1)
    return f, log_size, keep
