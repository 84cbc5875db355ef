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
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from detectors import atmosphere
from detectors.shower import REFERENCE_HEIGHT_M, direction

__all__ = ["source_in_camera", "centroid_depth", "dist_angle", "calibrate"]


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
