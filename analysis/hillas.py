"""WFCTA image cleaning and Hillas parametrisation, following ctapipe's conventions.

The per-image functions (``tailcuts_clean``, ``hillas_parameters``, ``dist_alpha``,
``image_parameters``) are pure ``jax.numpy`` functions of ONE camera image with fixed shapes:
pixels are selected with boolean masks and there is no Python control flow on traced values, so
they can be ``jax.jit``-ed and ``jax.vmap``-ed over a batch of images (telescopes, events).
``neighbor_matrix`` is plain numpy (static camera configuration, computed once).

Tags: [C] confirmed by the cited source, [M] model choice / assumed value (a keyword parameter
whose default is the assumed value).

Units
-----
Images are in photoelectrons (PE) per pixel. Positions (``pix_x``, ``pix_y``, ``source_xy``) may
be in any length or angle unit: the output lengths (x, y, r, length, width, dist) come in the SAME
unit. For WFCTA use either the focal-plane positions ``camera_pixel_xy()`` [m] or the tangent-plane
angles ``wfcta_layout().pixel_angle`` = pixel_xy / f [rad]. Angles (phi, psi, alpha) are in rad.
The frame is whatever 2-D frame the pixel positions are given in: for WFCTA that of
``detectors.layout.camera_pixel_xy`` (x towards increasing azimuth, y towards increasing
elevation), which is NOT ctapipe's ``CameraFrame`` orientation; all definitions below are applied
in the given frame (and were checked against ctapipe by describing the camera to it with exactly
these coordinates, ``tests/test_hillas.py``).

Definitions (ctapipe 0.28, ``ctapipe.image.cleaning`` and ``ctapipe.image.hillas``) [C]
-------------------------------------------------------------------------------------------
Neighbours
    ctapipe's default ``CameraGeometry.neighbor_matrix`` for square pixels
    (``calc_pixel_neighbors(diagonal=False)``): the (up to) 4 pixels whose L1 distance is below
    1.5 × the nearest-neighbour distance ("edge-sharing" neighbours, 4-connectivity). With the
    1 mm gaps of the WFCTA camera (25.8 mm vs 26.8 mm across a gap) this is still exactly the
    4-neighbourhood of the 32 × 32 grid. ``diagonal=True`` gives ctapipe's 8-neighbourhood
    (L2 distance below 1.95 × nearest-neighbour distance).

Tail-cuts cleaning
    p = image ≥ picture_thresh, b = image ≥ boundary_thresh;
    picture pixels P = p & (#picture neighbours ≥ min_number_picture_neighbors), or P = p when
    keep_isolated_pixels; the mask is (b & any neighbour in P) | (P & any neighbour in b), or
    (b & any neighbour in P) | P when keep_isolated_pixels. For WFCTA we choose
    picture 10 PE and boundary 5 PE [M] (ctapipe's function defaults are 7 and 5 in units of the
    pedestal dispersion).

Hillas parameters (moments of the cleaned image, weights w_i = image_i on the mask)
    intensity (size) = Σ w_i [PE]; centroid x = Σ w x / Σ w, y likewise; r = √(x² + y²),
    phi = atan2(y, x); the weighted covariance (ddof = 0) C = Σ w (Δx, Δy)ᵀ(Δx, Δy) / Σ w has
    eigenvalues λ₋ ≤ λ₊ with length = √λ₊ and width = √λ₋ (r.m.s. along the major and minor
    axes). psi = angle of the major axis from +x towards +y, in (−π/2, π/2] (ctapipe:
    arctan(v_y / v_x) of the major eigenvector, π/2 when v_x = 0; here the equivalent closed
    form ½·atan2(2C_xy, C_xx − C_yy)). With l = Δx cos psi + Δy sin psi the longitudinal
    coordinate: skewness = ⟨l³⟩ / length³, kurtosis = ⟨l⁴⟩ / length⁴ (weighted means; the
    kurtosis is not excess-subtracted: 3 for a Gaussian profile).
    Eigenvalues: ctapipe sets |λ| ≤ float64 eps (2.2e-16, in the squared unit of the positions)
    to 0 so that rounding does not give NaN; here every λ ≤ eps (eps of the computation dtype:
    float64 under x64, else float32) is set to 0, which also covers width² < 0 beyond rounding
    (possible only with negative pixel values in the mask; ctapipe would return NaN). Identical
    to ctapipe wherever ctapipe returns a finite width.
    Not computed: ctapipe's uncertainties (length/width/psi/transverse-cog uncertainty).

Degenerate images (deviations from ctapipe, which raises or returns NaN)
    * intensity = 0 (empty mask or zero charge): ctapipe raises HillasParameterizationError;
      here every field is 0 (intensity, x, y, r, phi, length, width, psi, skewness, kurtosis),
      NaN-free, so that batches can be processed; select images with ``intensity > 0``.
    * length = 0 (e.g. one pixel): ctapipe returns psi = skewness = kurtosis = NaN; here they
      are 0.

dist and alpha (classic Hillas 1985 / Whipple image parameters; not in ctapipe) [M]
    With the reference point s (the source position in the camera frame, e.g. the (true or
    reconstructed) arrival direction projected into the camera as tangent-plane angles relative
    to the optical axis, the inverse of ``detectors.layout.pixel_directions``):
    dist = |c − s| (c the centroid); alpha = the angle between the major axis (direction
    (cos psi, sin psi)) and the line c → s, folded into [0, π/2]:
    alpha = atan2(|d × a|, |d · a|) with d = s − c, a = (cos psi, sin psi).
    alpha = 0 when dist = 0 (undefined there).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = [
    "WFCTA_PICTURE_THRESH",
    "WFCTA_BOUNDARY_THRESH",
    "HillasParameters",
    "ImageParameters",
    "neighbor_matrix",
    "tailcuts_clean",
    "hillas_parameters",
    "dist_alpha",
    "image_parameters",
]

#: Tail-cuts picture threshold for WFCTA [PE] (our choice) [M].
WFCTA_PICTURE_THRESH = 10.0
#: Tail-cuts boundary threshold for WFCTA [PE] (our choice) [M].
WFCTA_BOUNDARY_THRESH = 5.0


class HillasParameters(NamedTuple):
    """Hillas parameters of one image (a pytree of scalars; batched under ``vmap``).

    Lengths are in the unit of the pixel positions given to :func:`hillas_parameters`
    (m for focal-plane positions, rad for pixel angles); angles in rad.

    Attributes
    ----------
    intensity : total charge in the mask ("size") [PE].
    x, y : charge-weighted centroid.
    r : distance of the centroid from the camera centre, √(x² + y²).
    phi : polar angle of the centroid, atan2(y, x) [rad], in (−π, π].
    length : r.m.s. spread along the major axis, √λ₊.
    width : r.m.s. spread along the minor axis, √λ₋.
    psi : orientation of the major axis from +x towards +y [rad], in (−π/2, π/2].
    skewness : third standardised moment along the major axis (direction (cos psi, sin psi)).
    kurtosis : fourth standardised moment along the major axis (3 for a Gaussian).
    n_pixels : number of pixels in the mask (int32).
    """

    intensity: jnp.ndarray
    x: jnp.ndarray
    y: jnp.ndarray
    r: jnp.ndarray
    phi: jnp.ndarray
    length: jnp.ndarray
    width: jnp.ndarray
    psi: jnp.ndarray
    skewness: jnp.ndarray
    kurtosis: jnp.ndarray
    n_pixels: jnp.ndarray


class ImageParameters(NamedTuple):
    """Output of :func:`image_parameters` for one image.

    Attributes
    ----------
    mask : (n_pix,) bool — tail-cuts cleaning mask.
    hillas : :class:`HillasParameters` of the cleaned image.
    dist : distance centroid → reference point (unit of the pixel positions).
    alpha : angle between the major axis and the line centroid → reference point [rad],
        in [0, π/2].
    """

    mask: jnp.ndarray
    hillas: HillasParameters
    dist: jnp.ndarray
    alpha: jnp.ndarray


# --------------------------------------------------------------------------------------------
# neighbours (static, numpy)
# --------------------------------------------------------------------------------------------
def neighbor_matrix(pix_xy, pitch: float | None = None, diagonal: bool = False) -> np.ndarray:
    """Pixel adjacency matrix of a square-pixel camera, as ctapipe's default.

    Parameters
    ----------
    pix_xy : (n, 2) array
        Pixel centres (any unit, e.g. m or rad).
    pitch : float, optional
        Pixel pitch in the unit of ``pix_xy`` (25.8 mm for WFCTA in m). The thresholds scale
        with it. None: use each pixel's nearest-neighbour distance, as ctapipe's
        ``CameraGeometry.calc_pixel_neighbors`` does (identical for the WFCTA grid).
    diagonal : bool
        False (ctapipe's default ``neighbor_matrix``): 4-connectivity, neighbours at L1 distance
        < 1.5 × pitch. True: 8-connectivity, L2 distance < 1.95 × pitch (ctapipe's
        ``calc_pixel_neighbors(diagonal=True)``).

    Returns
    -------
    (n, n) bool numpy array, True where pixels i and j are neighbours (False on the diagonal).
    Robust to the 1 mm WFCTA gaps (26.8 mm < 1.5 × 25.8 mm ≤ the 51.6 mm L1 distance of
    diagonal pixels).
    """
    xy = np.asarray(pix_xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"pix_xy must have shape (n, 2), got {xy.shape}")
    d = xy[:, None, :] - xy[None, :, :]
    if diagonal:
        dist = np.hypot(d[..., 0], d[..., 1])
        radius, max_nb = 1.95, 8
    else:
        dist = np.abs(d[..., 0]) + np.abs(d[..., 1])
        radius, max_nb = 1.5, 4
    n = len(xy)
    np.fill_diagonal(dist, np.inf)
    if pitch is None:
        scale = dist.min(axis=1, keepdims=True) if n > 1 else np.ones((n, 1))
    else:
        scale = float(pitch)
    nb = dist < radius * scale
    if nb.sum(axis=1).max(initial=0) > max_nb:
        raise ValueError(f"some pixels have more than {max_nb} neighbours: is the pitch right?")
    return nb


def _count_neighbors(neighbors, flags):
    """Number of neighbours (n,) with ``flags`` set (counts are exact in float32)."""
    return jnp.asarray(neighbors, jnp.float32) @ jnp.asarray(flags, jnp.float32)


# --------------------------------------------------------------------------------------------
# cleaning
# --------------------------------------------------------------------------------------------
def tailcuts_clean(image, neighbors, picture_thresh=WFCTA_PICTURE_THRESH,
                   boundary_thresh=WFCTA_BOUNDARY_THRESH, min_number_picture_neighbors=0,
                   keep_isolated_pixels=False):
    """Two-threshold tail-cuts cleaning, same semantics as ``ctapipe.image.tailcuts_clean``.

    Parameters
    ----------
    image : (n,) array
        Pixel charges [PE].
    neighbors : (n, n) bool array
        Adjacency matrix (:func:`neighbor_matrix`).
    picture_thresh : float or (n,) array
        Pixels with charge ≥ this are picture pixels [PE]; default 10 PE [M].
    boundary_thresh : float or (n,) array
        Pixels with charge ≥ this are kept if they neighbour a picture pixel [PE]; default
        5 PE [M].
    min_number_picture_neighbors : int
        A picture pixel survives only with at least this many picture neighbours (no effect when
        ``keep_isolated_pixels``); may be traced.
    keep_isolated_pixels : bool
        If True, picture pixels are always kept; otherwise only when a neighbour is at least
        above the boundary threshold. May be traced.

    Returns
    -------
    (n,) bool mask of the pixels surviving the cleaning.
    """
    image = jnp.asarray(image)
    above_picture = image >= picture_thresh
    above_boundary = image >= boundary_thresh
    n_picture_nb = _count_neighbors(neighbors, above_picture)
    keep_isolated = jnp.asarray(keep_isolated_pixels, bool)
    in_picture = above_picture & (keep_isolated | (n_picture_nb >= min_number_picture_neighbors))
    with_picture_nb = _count_neighbors(neighbors, in_picture) > 0
    with_boundary_nb = _count_neighbors(neighbors, above_boundary) > 0
    return (above_boundary & with_picture_nb) | (in_picture & (keep_isolated | with_boundary_nb))


# --------------------------------------------------------------------------------------------
# Hillas parameters
# --------------------------------------------------------------------------------------------
def hillas_parameters(pix_x, pix_y, image, mask) -> HillasParameters:
    """Hillas (moment) parameters of the masked image, as ``ctapipe.image.hillas_parameters``.

    Parameters
    ----------
    pix_x, pix_y : (n,) arrays
        Pixel centres (m, or rad for pixel angles); the output lengths are in this unit.
    image : (n,) array
        Pixel charges [PE].
    mask : (n,) bool array
        Pixels to use (e.g. from :func:`tailcuts_clean`); the others get weight 0, which gives
        the same result as ctapipe on ``geom[mask], image[mask]``.

    Returns
    -------
    :class:`HillasParameters`. Definitions and the handling of degenerate images (all zeros
    for intensity = 0; psi = skewness = kurtosis = 0 for length = 0) in the module docstring.
    """
    pix_x = jnp.asarray(pix_x)
    pix_y = jnp.asarray(pix_y)
    image = jnp.asarray(image)
    dtype = jnp.result_type(pix_x, pix_y, image, jnp.float32)
    pix_x, pix_y, image = (a.astype(dtype) for a in (pix_x, pix_y, image))
    mask = jnp.asarray(mask, bool)

    w = jnp.where(mask, image, 0.0)
    size = jnp.sum(w)
    ok = size != 0
    inv_size = jnp.where(ok, 1.0 / jnp.where(ok, size, 1.0), 0.0)

    cog_x = jnp.sum(w * pix_x) * inv_size
    cog_y = jnp.sum(w * pix_y) * inv_size
    dx = jnp.where(mask, pix_x - cog_x, 0.0)
    dy = jnp.where(mask, pix_y - cog_y, 0.0)
    # second pass: re-centre (as np.cov does) for the last bit of precision
    dx = dx - jnp.sum(w * dx) * inv_size
    dy = dy - jnp.sum(w * dy) * inv_size
    cxx = jnp.sum(w * dx * dx) * inv_size
    cyy = jnp.sum(w * dy * dy) * inv_size
    cxy = jnp.sum(w * dx * dy) * inv_size

    # eigenvalues of the 2x2 covariance in closed form
    half_tr = 0.5 * (cxx + cyy)
    half_diff = 0.5 * (cxx - cyy)
    disc = jnp.sqrt(half_diff * half_diff + cxy * cxy)
    lam_hi = half_tr + disc
    lam_lo = half_tr - disc
    # ctapipe: |λ| ≤ eps -> 0 (rounding); here also λ < 0 -> 0
    eps = jnp.finfo(dtype).eps
    length = jnp.sqrt(jnp.where(lam_hi > eps, lam_hi, 0.0))
    width = jnp.sqrt(jnp.where(lam_lo > eps, lam_lo, 0.0))

    psi = 0.5 * jnp.arctan2(2.0 * cxy, cxx - cyy)
    psi = jnp.where(psi <= -0.5 * jnp.pi, psi + jnp.pi, psi)  # (−π/2, π/2]

    has_length = length > 0
    psi = jnp.where(has_length, psi, 0.0)
    longi = dx * jnp.cos(psi) + dy * jnp.sin(psi)
    safe_len = jnp.where(has_length, length, 1.0)
    m3 = jnp.sum(w * longi**3) * inv_size
    m4 = jnp.sum(w * longi**4) * inv_size
    skewness = jnp.where(has_length, m3 / safe_len**3, 0.0)
    kurtosis = jnp.where(has_length, m4 / safe_len**4, 0.0)

    return HillasParameters(
        intensity=size,
        x=cog_x,
        y=cog_y,
        r=jnp.hypot(cog_x, cog_y),
        phi=jnp.arctan2(cog_y, cog_x),
        length=length,
        width=width,
        psi=psi,
        skewness=skewness,
        kurtosis=kurtosis,
        n_pixels=jnp.sum(mask, dtype=jnp.int32),
    )


def dist_alpha(hillas: HillasParameters, source_xy):
    """Distance and alpha angle of an image with respect to a reference point.

    Parameters
    ----------
    hillas : :class:`HillasParameters`
        Of one image (or a batch: fields broadcast against ``source_xy[..., 0]``).
    source_xy : (2,) array
        Reference point (source position) in the camera, in the unit of the pixel positions
        used for ``hillas`` (e.g. tangent-plane angles [rad] relative to the optical axis).

    Returns
    -------
    dist : distance from the centroid to the reference point (same unit).
    alpha : angle [rad] in [0, π/2] between the major axis and the line centroid → reference
        point; 0 when dist = 0.
    """
    source_xy = jnp.asarray(source_xy)
    ddx = source_xy[..., 0] - hillas.x
    ddy = source_xy[..., 1] - hillas.y
    dist = jnp.hypot(ddx, ddy)
    cos_psi, sin_psi = jnp.cos(hillas.psi), jnp.sin(hillas.psi)
    along = jnp.abs(ddx * cos_psi + ddy * sin_psi)
    across = jnp.abs(ddx * sin_psi - ddy * cos_psi)
    alpha = jnp.arctan2(across, along)
    return dist, alpha


def image_parameters(image, pix_xy, neighbors, source_xy, **clean_kwargs) -> ImageParameters:
    """Tail-cuts cleaning + Hillas parameters + dist/alpha of one image.

    Parameters
    ----------
    image : (n,) array
        Pixel charges [PE].
    pix_xy : (n, 2) array
        Pixel centres (m or rad).
    neighbors : (n, n) bool array
        :func:`neighbor_matrix` of the camera.
    source_xy : (2,) array
        Reference point for dist/alpha, in the unit of ``pix_xy``.
    **clean_kwargs
        Passed to :func:`tailcuts_clean` (``picture_thresh``, ``boundary_thresh``,
        ``min_number_picture_neighbors``, ``keep_isolated_pixels``).

    Returns
    -------
    :class:`ImageParameters`.

    Notes
    -----
    To vmap over telescopes, bind the cleaning options first (``jax.vmap`` would map keyword
    arguments over axis 0)::

        f = functools.partial(image_parameters, picture_thresh=10.0, boundary_thresh=5.0)
        out = jax.vmap(f, in_axes=(0, None, None, 0))(images, pix_xy, neighbors, sources)
    """
    pix_xy = jnp.asarray(pix_xy)
    mask = tailcuts_clean(image, neighbors, **clean_kwargs)
    hillas = hillas_parameters(pix_xy[:, 0], pix_xy[:, 1], image, mask)
    dist, alpha = dist_alpha(hillas, source_xy)
    return ImageParameters(mask=mask, hillas=hillas, dist=dist, alpha=alpha)
