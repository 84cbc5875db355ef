"""Noise-hit tagging for KM2A (issue 17): which hits of an event are the shower's?

Three taggers score every hit channel (the pulse ``to_event_batch`` keeps: the largest charge
per channel) of one event at the FITTED shower; larger score = more shower-like:

* :func:`posterior_signal_probability` / :func:`signal_log_odds`: the likelihood's own posterior.
  A hit channel's likelihood (``detectors/km2a.py``, docs/km2a.md) is the mixture

      L = Pois_c(n_eff; μ_eff)(k/G) · f(t; t_exp, σ_t, T/n)  +  e^{−μ_eff} p_noise f_noise(q)/W,

  and P(shower | q, t) = L_sig / (L_sig + L_noise): the two terms are taken from
  ``km2a.channel_nll(..., log_terms=True)`` (``channel.counting_channel_log_terms``), i.e. the
  very numbers the fit sums, not a re-derivation. The prior odds are in them (p_noise from the
  singles rate × the 10 µs window, the shower's μ at the channel).
* :func:`time_window_signal`: the classic cut, hit time within [−30, +50] ns of the fitted
  front (the model's leading edge ``km2a.expected(...).ed_time``, as ``analysis.observables``'
  ``ne`` window; PHYSICS.md §2.1 step 3) and optionally r < ``r_max`` from the axis; its score
  −|Δt − centre| (−∞ beyond ``r_max``) so that the cut is exactly ``score > −half width``.
* a network (``analysis.ml.classify.hit_signal_probability``; not here: the benchmark
  ``benchmarks/noise_tagging.py`` calls it when given ``--network``).

:func:`roc` turns a score and truth labels into the signal-hit efficiency vs noise-hit
rejection curve, its AUC and the values at fixed signal efficiencies with binomial errors;
:func:`cut_point` does the same for one boolean cut. :func:`dense_labels` gives the truth label
of the pulse each channel keeps (``read_lhevent(hit_labels=True)`` labels every pulse).

Pure JAX for the per-event functions (one event, ``jax.vmap`` over the padded (B, n) blocks of
the pipeline with geometry/response broadcast); numpy for the ROC.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from detectors import km2a
from detectors.shower import FIELDS, Shower, shower_plane_coordinates

__all__ = ["signal_log_odds", "posterior_signal_probability", "time_window_signal",
           "tagged_hits", "dense_labels", "dense_hit_values", "shower_from_columns", "roc",
           "cut_point", "binomial_error", "CLASSIC_WINDOW_NS", "CLASSIC_R_MAX_M"]

#: the classic KM2A hit window around the fitted front [ns] (PHYSICS.md §2.1 step 3;
#: ``analysis.observables.km2a_observables``' ``ne``)
CLASSIC_WINDOW_NS = (-30.0, 50.0)
#: ... and the radius of that step [m] (hits < 200 m from the core)
CLASSIC_R_MAX_M = 200.0


def _is_hit(blk, live, threshold):
    """Channels the likelihood scores as hits: hit, valid, live and at or above threshold."""
    return blk.hit & blk.valid & jnp.asarray(live) & (blk.signal >= threshold)


def signal_log_odds(shower: Shower, ed, md, geometry, response, physics=km2a.DEFAULT_PHYSICS):
    """ln(L_sig / L_noise) of every KM2A channel at ``shower`` (one event: ``ed``/``md`` the
    event's dense ChannelBlocks): (ed (n_ed,), md (n_md,)), NaN where the channel is not a hit
    the likelihood scores (no hit, invalid, not live, below threshold). Saturated hits use the
    saturation tail as their signal term, as the fit does."""
    e = km2a.expected(shower, geometry, response, physics)
    obs = km2a.Observed(ed=ed, md=md)
    terms = km2a.channel_nll(obs, e, geometry, response, physics, log_terms=True)
    out = []
    for (is_hit, log_sig, log_noise, _), blk, live in zip(
            terms, (ed, md), (geometry.ed_live, geometry.md_live)):
        ok = is_hit & blk.valid & jnp.asarray(live)
        out.append(jnp.where(ok, log_sig - log_noise, jnp.nan))
    return tuple(out)


def posterior_signal_probability(shower: Shower, ed, md, geometry, response,
                                 physics=km2a.DEFAULT_PHYSICS):
    """P(shower | q, t) = L_sig / (L_sig + L_noise) of every KM2A hit at ``shower`` (the fitted
    shower of one event): (ed (n_ed,), md (n_md,)) in [0, 1], NaN where the channel is not a
    scored hit (see :func:`signal_log_odds`). In float32 it saturates at 1 for log odds
    ≳ 17: rank with :func:`signal_log_odds`."""
    return tuple(jax.nn.sigmoid(x) for x in signal_log_odds(shower, ed, md, geometry, response,
                                                           physics))


def time_window_signal(shower: Shower, ed, md, geometry, response, physics=km2a.DEFAULT_PHYSICS,
                       window=CLASSIC_WINDOW_NS, r_max=None):
    """The classic cut at ``shower`` (one event): ((keep_ed, score_ed), (keep_md, score_md)).

    Δt = hit time − the model's front time at the channel (``km2a.expected``: leading edge of
    the curved front, time offsets included); score = −|Δt − c|, c the window's centre, −∞
    beyond ``r_max`` [m] from the axis (None: no radius cut) and NaN where the channel is not a
    scored hit (as :func:`signal_log_odds`); keep = score > −(half width), i.e.
    window[0] < Δt < window[1] (and r < r_max), False where not a hit.
    """
    e = km2a.expected(shower, geometry, response, physics)
    c = 0.5 * (window[0] + window[1])
    half = 0.5 * (window[1] - window[0])
    out = []
    for blk, t_front, pos, live, thr in (
            (ed, e.ed_time, geometry.ed_pos, geometry.ed_live, response.ed_threshold_pe),
            (md, e.md_time, geometry.md_pos, geometry.md_live, response.md_threshold_pe)):
        ok = _is_hit(blk, live, thr)
        score = -jnp.abs(blk.time - t_front - c)
        if r_max is not None:
            r, _ = shower_plane_coordinates(shower, pos)
            score = jnp.where(r < r_max, score, -jnp.inf)
        score = jnp.where(ok, score, jnp.nan)
        out.append((ok & (score > -half), score))
    return tuple(out)


def tagged_hits(score, threshold):
    """Hits a score calls noise at ``threshold`` (score < threshold; NaN = no hit: False)."""
    score = np.asarray(score, np.float64)
    with np.errstate(invalid="ignore"):
        return ~np.isnan(score) & (score < threshold)


def shower_from_columns(out: Mapping, dtype=jnp.float32) -> Shower:
    """The fitted showers (B,) from a reconstruction's ``reco_<field>`` columns."""
    return Shower(**{f: jnp.asarray(np.asarray(out[f"reco_{f}"]), dtype) for f in FIELDS})


# ---------------------------------------------------------------------------------------------
# truth labels and per-pulse values on the dense blocks
# ---------------------------------------------------------------------------------------------
_NAN_SENTINEL = -1.0e300


def dense_hit_values(records: Mapping, layout, values: Mapping) -> dict:
    """Per-pulse values carried to the pulse ``to_event_batch`` keeps (the largest charge per
    channel, ties the first): ``values`` {"km2a_ed": jagged, "km2a_md": jagged} aligned with
    ``records['km2a_<x>_id']`` (NaN allowed) -> {group: (n_events, n_channels) float64, NaN
    where no pulse or where the kept pulse's value is NaN}.

    Done by ``to_event_batch`` itself (the values in place of the times), so the rule and the
    channel mapping are the pipeline's."""
    import awkward as ak

    from joint.io.schema import to_event_batch

    rec = dict(records)
    for g, v in values.items():
        # NaN values (a tagger without an opinion) pass the schema's finite-time check as a
        # sentinel and come back as NaN
        rec[f"{g}_time"] = ak.nan_to_num(ak.values_astype(ak.Array(v), np.float64), nan=_NAN_SENTINEL)
    batch = to_event_batch(rec, km2a=layout, as_jax=False)
    out = {}
    for g in values:
        t = np.asarray(batch.blocks[g].time)
        out[g] = np.where(np.asarray(batch.blocks[g].hit) & (t != _NAN_SENTINEL), t, np.nan)
    return out


def dense_labels(records: Mapping, layout) -> dict:
    """Truth label of each channel's kept pulse from ``km2a_ed_signal`` / ``km2a_md_signal``
    (``read_lhevent(hit_labels=True)`` or ``simulate_records(hit_labels=True)``):
    {"km2a_ed": (n_events, n_ed) int8, "km2a_md": ...}: 1 shower, 0 noise, −1 no pulse."""
    vals = dense_hit_values(records, layout, {g: records[f"{g}_signal"]
                                              for g in ("km2a_ed", "km2a_md")})
    return {g: np.where(np.isnan(v), -1, v).astype(np.int8) for g, v in vals.items()}


# ---------------------------------------------------------------------------------------------
# ROC
# ---------------------------------------------------------------------------------------------
def binomial_error(k, n):
    """Standard error sqrt(p(1 − p)/n) of p = k/n (NaN for n = 0), and the 68% Wilson interval
    (which stays meaningful at p = 0 or 1): (p, err, lo, hi)."""
    k = np.asarray(k, np.float64)
    n = np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        err = np.sqrt(p * (1.0 - p) / n)
        z = 1.0
        den = 1.0 + z * z / n
        mid = (p + z * z / (2 * n)) / den
        w = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return p, err, mid - w, mid + w


def _average_ranks(x):
    """Ranks 1..n of x with ties given their average rank."""
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg = ends - 0.5 * (counts - 1)
    return avg[inv]


def cut_point(keep, label) -> dict:
    """Signal efficiency and noise rejection of a boolean cut (``keep`` = called shower) over the
    labelled hits (``label`` 1 shower, 0 noise; other values ignored), with binomial errors."""
    keep = np.asarray(keep, bool).ravel()
    label = np.asarray(label).ravel()
    sig, noi = label == 1, label == 0
    k_s, n_s = int((keep & sig).sum()), int(sig.sum())
    k_n, n_n = int((~keep & noi).sum()), int(noi.sum())
    eff, eff_err, eff_lo, eff_hi = binomial_error(k_s, n_s)
    rej, rej_err, rej_lo, rej_hi = binomial_error(k_n, n_n)
    return {"eff": float(eff), "eff_err": float(eff_err), "eff_68": [float(eff_lo), float(eff_hi)],
            "rej": float(rej), "rej_err": float(rej_err), "rej_68": [float(rej_lo), float(rej_hi)],
            "n_signal": n_s, "n_noise": n_n, "signal_kept": k_s, "noise_removed": k_n,
            "noise_kept": n_n - k_n}


def roc(score, label, working_points=(0.9, 0.95, 0.98, 0.99, 0.995)) -> dict:
    """ROC of a score (larger = more shower-like) against truth labels (1 shower, 0 noise;
    entries with other labels or a NaN score are dropped; −∞ is a valid lowest score).

    Returns {"threshold", "eff", "rej"} (the curve: cut ``score >= threshold`` at every distinct
    score, from the highest), "auc" (P(score_sig > score_noise) + ½ P(tie), the Mann–Whitney
    statistic), "n_signal", "n_noise", and "working_points": per target signal efficiency the
    highest threshold reaching it, with eff / rej and their binomial errors (:func:`cut_point`).
    """
    score = np.asarray(score, np.float64).ravel()
    label = np.asarray(label).ravel()
    use = ((label == 0) | (label == 1)) & ~np.isnan(score)
    s, y = score[use], label[use] == 1
    n_s, n_n = int(y.sum()), int((~y).sum())
    out = {"n_signal": n_s, "n_noise": n_n}
    if n_s == 0 or n_n == 0:
        out.update(threshold=[], eff=[], rej=[], auc=float("nan"), working_points={})
        return out
    ranks = _average_ranks(s)
    out["auc"] = float((ranks[y].sum() - n_s * (n_s + 1) / 2.0) / (n_s * n_n))
    thr = np.unique(s)[::-1]
    # hits with score >= thr[j]: counts by searchsorted on the sorted scores
    s_sig, s_noi = np.sort(s[y]), np.sort(s[~y])
    eff = (n_s - np.searchsorted(s_sig, thr, side="left")) / n_s
    rej = np.searchsorted(s_noi, thr, side="left") / n_n
    out.update(threshold=thr, eff=eff, rej=rej)
    wps = {}
    for wp in working_points:
        j = int(np.argmax(eff >= wp - 1e-12))
        point = cut_point(s >= thr[j], y.astype(int))
        point["threshold"] = float(thr[j])
        point["target"] = float(wp)
        wps[f"{wp:g}"] = point
    out["working_points"] = wps
    return out
