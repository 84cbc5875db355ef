"""WCDA gamma/hadron discrimination variables and the rejection figure of merit.

The per-event variables (``cxpe``, ``compactness``, ``pincness``, ``combined_score``) are pure
``jax.numpy`` functions of ONE event with fixed shapes: cells are selected with boolean masks,
there is no Python control flow on traced values, so they can be ``jax.jit``-ed and
``jax.vmap``-ed over a batch of events (``n_annuli`` of ``pincness`` sets a shape and must be a
static Python int). The helpers for the figure of merit (``rejection_at_efficiency``,
``energy_matching_weights``) are plain numpy and work on whole samples.

Tags: [C] confirmed by the cited source, [M] model choice / assumed value (a keyword parameter
whose default is the assumed value).

Definitions
-----------
Common to all per-event variables: a cell is *used* when ``hit & valid``; its ground distance to
the reconstructed core is r = |(x, y)_cell − core_xy| (horizontal distance in the array frame,
heights ignored), in m. Charges are in photoelectrons (PE).

CxPE_R and compactness
    CxPE_R = the largest charge [PE] among used cells with r > R (0 when there is none);
    C = N_hit / max(CxPE_R, q_min) [1/PE], with N_hit the number of used cells (every hit, valid
    cell counts, whatever its charge). Hadronic showers deposit large charges far from the core
    (muons, sub-showers), which makes CxPE_R large and C small; gamma showers have large C.
    The floor q_min (``min_charge``, default 1 PE) avoids dividing by 0 when no cell lies
    outside R; then C = N_hit / q_min (large, gamma-like).
    Sources: definition as in HAWC (Abeysekara et al., ApJ 843 (2017) 39, arXiv:1701.01778)
    [M]; HAWC uses R = 40 m, for WCDA we assume R = 45 m [M] (``radius``). WCDA-1 selects gamma
    rays with "compactness > 10" (LHAASO Collab., Chinese Phys. C 45 (2021) 085002,
    arXiv:2101.03508) [C].

PINCness
    HAWC's "Parameter for Identifying Nuclear Cosmic rays" (ApJ 843 (2017) 39) [M]:

        P = (1/N) Σ_i (ζ_i − ⟨ζ⟩_k(i))² / σ²_ζi,   ζ_i = log10(q_i / PE),

    over used cells with q_i ≥ q_min. ⟨ζ⟩_k is the mean ζ of the used cells of the annulus
    k = floor(r / Δr) around the core (width Δr = ``annulus_width`` = 5 m, ``n_annuli`` = 40
    annuli, i.e. out to 200 m; cells further out are not used) [M]. σ_ζi is the expected
    spread of log10 of a compound-Poisson charge of variance F_i q_i (F = ``fano``, the
    variance-to-mean ratio of the charge in PE, from the detector model):

        σ_ζi = log10(e) · sqrt(F_i / q_i) ≈ 0.4343 · sqrt(F_i / q_i)    (delta method) [M].

    Cells of annuli with fewer than 2 used cells are left out (their deviation from their own
    mean is 0 by construction), N counts the cells that remain; P = 0 when N = 0.
    Our choices for WCDA [M]: the annulus binning, σ_ζ from the charge model (HAWC fitted the
    spread of gamma-ray showers), the q_min cut. For a smooth shower whose charges fluctuate
    only as the model says, E[P] ≈ 1 − 1/n_k ≈ 1 (n_k cells per annulus); clumpy hadronic
    showers give P ≫ 1. Large P = hadron-like.

Combined score (our choice) [M]
    s = log10(C) − log10(max(P, 10⁻³)); higher = more gamma-like. Both variables enter with
    equal weight in log space (the ratio C / P); the floor keeps P = 0 events finite. C = 0
    (no used cell) gives s = −inf (least gamma-like). This is the "compactness and PINCness
    combined" variable; it is a simple ordering, not an optimised classifier.

Rejection figure of merit
    ``rejection_at_efficiency``: the cut on a score that keeps a given (weighted) fraction of
    the signal, and the (weighted) fraction of the background it removes, with a binomial error
    from the effective number of background events n_eff = (Σw)² / Σw².
    ``energy_matching_weights``: per-background-event weights that make the background's
    histogram in some variable (e.g. reconstructed log10 energy) proportional to the signal's,
    so that rejections are compared at the same energy distribution.

Units: positions, core, radii m; charges PE; C in 1/PE; P, ζ, scores dimensionless.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = [
    "cxpe",
    "compactness",
    "pincness",
    "combined_score",
    "rejection_at_efficiency",
    "energy_matching_weights",
]

#: log10(e) = 1/ln(10) ≈ 0.4343: d log10(q) = LOG10_E · dq / q.
LOG10_E = float(1.0 / np.log(10.0))


def _as_float(x):
    """``x`` as a JAX floating array (keeps float32/float64, promotes integers)."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _ground_distance(pos, core_xy):
    """Horizontal distance [m] of each cell (``pos`` (n, 3) [m]) from the core (``core_xy`` (2,) [m])."""
    pos = _as_float(pos)
    core_xy = _as_float(core_xy)
    d = pos[:, :2] - core_xy[None, :2]
    return jnp.sqrt(jnp.sum(d * d, axis=-1))


def cxpe(signal, hit, valid, pos, core_xy, radius=45.0):
    """Largest charge outside a radius around the core, CxPE_R.

    Parameters
    ----------
    signal : array (n,)
        Cell charges [PE]. Values of cells not used (not hit or not valid) are ignored (may be
        NaN).
    hit, valid : bool arrays (n,)
        Hit mask and validity (live cell) mask; a cell is used when both are True.
    pos : array (n, 3)
        Cell positions in the array frame [m]; only x, y are used (ground distance).
    core_xy : array (2,)
        Reconstructed core position (x, y) [m].
    radius : float
        R [m]: only cells with ground distance r > R count. Default 45 m for WCDA [M] (HAWC:
        40 m).

    Returns
    -------
    scalar
        CxPE_R [PE]: max charge among used cells with r > R; 0 when there is no such cell.
    """
    q = _as_float(signal)
    r = _ground_distance(pos, core_xy)
    outside = jnp.asarray(hit, bool) & jnp.asarray(valid, bool) & (r > radius)
    q_max = jnp.max(jnp.where(outside, q, -jnp.inf))
    return jnp.where(jnp.any(outside), q_max, jnp.zeros_like(q_max))


def compactness(signal, hit, valid, pos, core_xy, radius=45.0, min_charge=1.0):
    """Compactness C = N_hit / max(CxPE_R, q_min) of one event.

    Parameters
    ----------
    signal : array (n,)
        Cell charges [PE] (ignored for cells not used).
    hit, valid : bool arrays (n,)
        A cell is used (counted in N_hit, eligible for CxPE_R) when ``hit & valid``.
    pos : array (n, 3)
        Cell positions in the array frame [m] (x, y used).
    core_xy : array (2,)
        Reconstructed core (x, y) [m].
    radius : float
        R [m] of CxPE_R; default 45 m for WCDA [M] (HAWC: 40 m).
    min_charge : float
        Floor q_min [PE] of CxPE_R in the denominator (default 1 PE [M]); with no used cell
        outside R, C = N_hit / q_min.

    Returns
    -------
    scalar
        C [1/PE]; large = gamma-like (WCDA-1 cut: C > 10 [C]).
    """
    used = jnp.asarray(hit, bool) & jnp.asarray(valid, bool)
    c = cxpe(signal, hit, valid, pos, core_xy, radius=radius)
    n_hit = jnp.sum(used).astype(c.dtype)
    return n_hit / jnp.maximum(c, min_charge)


def pincness(signal, hit, valid, pos, core_xy, fano, annulus_width=5.0, n_annuli=40,
             min_charge=1.0):
    """PINCness P of one event (HAWC definition with a model σ_ζ, see the module docstring).

    Parameters
    ----------
    signal : array (n,)
        Cell charges [PE]; only used cells (``hit & valid``) with q ≥ ``min_charge`` enter.
    hit, valid : bool arrays (n,)
        Hit and validity masks.
    pos : array (n, 3)
        Cell positions in the array frame [m] (x, y used).
    core_xy : array (2,)
        Reconstructed core (x, y) [m].
    fano : float or array (n,)
        Variance-to-mean ratio F of the cell charge [PE] (compound Poisson: variance = F · q),
        from the detector model; must be > 0. σ_ζ = log10(e) · sqrt(F / q).
    annulus_width : float
        Δr [m] of the annuli around the core (default 5 m [M]).
    n_annuli : int
        Number of annuli (static: sets an array shape; default 40 [M]); cells with
        floor(r / Δr) ≥ n_annuli are not used.
    min_charge : float
        q_min [PE]: cells with smaller charges are not used (default 1 PE [M]).

    Returns
    -------
    scalar
        P (dimensionless): ≈ 1 for model-like fluctuations, ≫ 1 for clumpy (hadronic) events;
        0 when no annulus has at least 2 used cells.
    """
    q = _as_float(signal)
    r = _ground_distance(pos, core_xy).astype(q.dtype)
    k = jnp.floor(r / annulus_width)
    used = (jnp.asarray(hit, bool) & jnp.asarray(valid, bool) & (q >= min_charge)
            & (k >= 0) & (k < n_annuli))
    q_safe = jnp.where(used, q, jnp.ones_like(q))
    zeta = jnp.log10(q_safe)

    # one-hot annulus membership of the used cells, shape (n, n_annuli)
    k_idx = jnp.where(used, k, -1.0).astype(jnp.int32)
    onehot = (k_idx[:, None] == jnp.arange(n_annuli)[None, :]).astype(q.dtype)
    n_k = jnp.sum(onehot, axis=0)                              # used cells per annulus
    mean_k = jnp.sum(onehot * zeta[:, None], axis=0) / jnp.maximum(n_k, 1.0)
    mean_i = onehot @ mean_k                                   # ⟨ζ⟩ of each cell's annulus
    n_i = onehot @ n_k                                         # cells in each cell's annulus

    include = used & (n_i >= 2)
    fano = jnp.broadcast_to(_as_float(fano).astype(q.dtype), q.shape)
    var_zeta = LOG10_E ** 2 * jnp.where(include, fano, 1.0) / q_safe
    chi2 = jnp.where(include, (zeta - mean_i) ** 2 / var_zeta, 0.0)
    n = jnp.sum(include).astype(q.dtype)
    return jnp.sum(chi2) / jnp.maximum(n, 1.0)


def combined_score(compactness, pincness):
    """Combined compactness-and-PINCness score (our choice [M]), higher = more gamma-like.

    s = log10(C) − log10(max(P, 10⁻³)).

    Parameters
    ----------
    compactness : array
        C [1/PE] (``compactness``); C = 0 gives s = −inf.
    pincness : array
        P (``pincness``), floored at 10⁻³.

    Returns
    -------
    array
        s (dimensionless), same shape as the broadcast inputs.
    """
    c = _as_float(compactness)
    p = _as_float(pincness)
    return jnp.log10(c) - jnp.log10(jnp.maximum(p, 1e-3))


def _weights(w, n):
    """Weights as a float64 array of length n (ones when ``w`` is None)."""
    if w is None:
        return np.ones(n)
    w = np.asarray(w, dtype=float)
    if w.shape != (n,):
        raise ValueError(f"weights have shape {w.shape}, expected ({n},)")
    return w


def rejection_at_efficiency(score_signal, score_background, efficiency=0.5,
                            weights_signal=None, weights_background=None,
                            higher_is_signal=True):
    """Cut that keeps a fraction of the signal, and the background rejection it gives.

    Events pass when score ≥ cut (``higher_is_signal``) or score ≤ cut (otherwise). The cut is
    the signal score at which the weighted signal fraction passing first reaches
    ``efficiency`` (a weighted quantile; with ties or few events the achieved
    ``signal_efficiency`` can exceed the request by up to one event's weight).

    Parameters
    ----------
    score_signal, score_background : array-like (n_s,), (n_b,)
        Discriminating score of the signal (gamma) and background (hadron) events. NaN scores
        never pass (they count in the totals).
    efficiency : float
        Requested weighted signal efficiency, in (0, 1].
    weights_signal, weights_background : array-like or None
        Per-event weights (e.g. ``energy_matching_weights``); None = 1 each.
    higher_is_signal : bool
        True when large scores are signal-like.

    Returns
    -------
    dict
        ``cut``: the cut value on the score; ``signal_efficiency``: weighted signal fraction
        passing; ``background_rejection``: weighted background fraction removed,
        1 − W_pass / W_tot; ``background_rejection_err``: binomial error
        sqrt(ε_b (1 − ε_b) / n_eff) with ε_b the background pass fraction and
        n_eff = (Σw)² / Σw² (0 when no background passes: then quote a limit from
        ``n_background_passed``); ``n_background_passed``: unweighted number of background
        events passing; ``n_background_effective``: n_eff.
    """
    if not 0.0 < efficiency <= 1.0:
        raise ValueError("efficiency must be in (0, 1]")
    s = np.asarray(score_signal, dtype=float)
    b = np.asarray(score_background, dtype=float)
    ws = _weights(weights_signal, s.size)
    wb = _weights(weights_background, b.size)
    sign = 1.0 if higher_is_signal else -1.0
    s_signed, b_signed = sign * s, sign * b          # in signed space, pass = value ≥ cut

    has_score = ~np.isnan(s_signed)
    order = np.argsort(-s_signed[has_score], kind="stable")     # most signal-like first
    s_sorted = s_signed[has_score][order]
    w_sorted = ws[has_score][order]
    w_tot_s = ws.sum()
    if s_sorted.size == 0 or w_tot_s <= 0:
        raise ValueError("no signal events with a score and positive weight")
    frac = np.cumsum(w_sorted) / w_tot_s
    # first event at which the passing fraction reaches the request (tolerance for rounding)
    i = int(np.searchsorted(frac, efficiency * (1 - 1e-12), side="left"))
    cut_signed = s_sorted[min(i, s_sorted.size - 1)]

    with np.errstate(invalid="ignore"):
        pass_s = s_signed >= cut_signed
        pass_b = b_signed >= cut_signed
    eff_s = ws[pass_s].sum() / w_tot_s
    w_tot_b = wb.sum()
    eff_b = wb[pass_b].sum() / w_tot_b if w_tot_b > 0 else np.nan
    sum_w2 = np.sum(wb ** 2)
    n_eff = w_tot_b ** 2 / sum_w2 if sum_w2 > 0 else 0.0
    err = np.sqrt(eff_b * (1.0 - eff_b) / n_eff) if n_eff > 0 else np.nan
    return dict(cut=float(sign * cut_signed), signal_efficiency=float(eff_s),
                background_rejection=float(1.0 - eff_b),
                background_rejection_err=float(err),
                n_background_passed=int(np.count_nonzero(pass_b)),
                n_background_effective=float(n_eff))


def energy_matching_weights(x_signal, x_background, bins):
    """Per-background-event weights that match the background's x-histogram to the signal's.

    With normalised histograms h_s, h_b (fractions of the events inside ``bins``), an event in
    bin j gets w_j = h_s[j] / h_b[j]; events outside the bins, or in bins where the signal is
    empty, get 0. The weighted background histogram is then N_b · h_s (N_b = number of
    background events inside the bins), i.e. proportional to the signal's. Signal bins without
    background events cannot be matched (their signal fraction is lost).

    Parameters
    ----------
    x_signal, x_background : array-like (n_s,), (n_b,)
        The matching variable (e.g. reconstructed log10(E/GeV)) of signal and background events.
    bins : array-like (m + 1,)
        Increasing bin edges (``numpy.histogram`` convention: last bin closed on the right).

    Returns
    -------
    ndarray (n_b,)
        Weights of the background events (dimensionless, ≥ 0).
    """
    xs = np.asarray(x_signal, dtype=float)
    xb = np.asarray(x_background, dtype=float)
    bins = np.asarray(bins, dtype=float)
    h_s = np.histogram(xs, bins)[0].astype(float)
    h_b = np.histogram(xb, bins)[0].astype(float)
    if h_s.sum() > 0:
        h_s /= h_s.sum()
    if h_b.sum() > 0:
        h_b /= h_b.sum()
    w_bin = np.divide(h_s, h_b, out=np.zeros_like(h_s), where=h_b > 0)

    m = bins.size - 1
    idx = np.searchsorted(bins, xb, side="right") - 1
    idx = np.where(xb == bins[-1], m - 1, idx)        # last edge belongs to the last bin
    inside = (idx >= 0) & (idx < m) & ~np.isnan(xb)
    w = np.zeros(xb.size)
    w[inside] = w_bin[idx[inside]]
    return w
