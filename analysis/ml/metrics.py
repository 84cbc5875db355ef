"""Figures of merit of a γ/hadron score: hadron survival at a fixed γ efficiency, Q-factor, ROC.

All weighted (flux weights); statistical errors from the effective number of events
n_eff = (Σw)² / Σw². When no hadron survives, the survival is an upper limit: 2.30 / n_eff
(90% CL, Poisson, zero events) [stated convention]. The cut is set on the γ sample of the same
bin; the error of the cut position itself is not propagated.
"""
from __future__ import annotations

import numpy as np

__all__ = ["cut_at_efficiency", "survival", "survival_table", "roc_curve", "auc",
           "ENERGY_BINS_TEV"]

#: reconstructed-energy bins of the KM2A table [TeV]
ENERGY_BINS_TEV = ((10, 25), (25, 60), (60, 100), (100, 300), (300, np.inf))


def _n_eff(w):
    w = np.asarray(w, np.float64)
    return float(w.sum() ** 2 / max((w ** 2).sum(), 1e-300)) if w.size else 0.0


def cut_at_efficiency(score_sig, efficiency, weight=None):
    """Score threshold keeping the weighted fraction ``efficiency`` of the signal (score ≥ cut)."""
    s = np.asarray(score_sig, np.float64)
    w = np.ones_like(s) if weight is None else np.asarray(weight, np.float64)
    order = np.argsort(-s)
    cw = np.cumsum(w[order]) / w.sum()
    i = int(np.searchsorted(cw, efficiency))
    return float(s[order][min(i, len(s) - 1)])


def survival(score_bkg, cut, weight=None):
    """(fraction of background with score ≥ cut, its error, is_upper_limit)."""
    s = np.asarray(score_bkg, np.float64)
    w = np.ones_like(s) if weight is None else np.asarray(weight, np.float64)
    if s.size == 0:
        return np.nan, np.nan, False
    passed = s >= cut
    f = float(w[passed].sum() / w.sum())
    n = _n_eff(w)
    if not passed.any():
        return 2.30 / n, np.nan, True
    return f, float(np.sqrt(f * (1 - f) / n + (1.0 / n) ** 2 * (f < 1.0 / n))), False


def survival_table(scores: dict, label, energy_tev, weight, bins=ENERGY_BINS_TEV,
                   efficiencies=(0.9, 0.7), higher_is_gamma=True):
    """Rows per (bin, method, efficiency): survival of hadrons, error, upper-limit flag, Q-factor
    ε_γ/√ε_p and the numbers of events. ``scores``: {method: per-event score (higher = more
    γ-like)}."""
    label = np.asarray(label)
    e = np.asarray(energy_tev, np.float64)
    w = np.asarray(weight, np.float64)
    rows = []
    for lo, hi in bins:
        inb = (e >= lo) & (e < hi)
        g, p = inb & (label == 1), inb & (label == 0)
        for name, sc in scores.items():
            sc = np.asarray(sc, np.float64)
            sc = sc if higher_is_gamma else -sc
            for eff in efficiencies:
                row = dict(bin=f"{lo:g}-{hi:g}", method=name, eff_gamma=eff,
                           n_gamma=int(g.sum()), n_proton=int(p.sum()))
                if g.sum() < 5 or p.sum() < 5:
                    row.update(survival=np.nan, error=np.nan, upper_limit=False, q=np.nan)
                else:
                    cut = cut_at_efficiency(sc[g], eff, w[g])
                    eff_real = float(w[g][sc[g] >= cut].sum() / w[g].sum())
                    f, err, ul = survival(sc[p], cut, w[p])
                    row.update(survival=f, error=err, upper_limit=ul, eff_gamma_real=eff_real,
                               q=eff_real / np.sqrt(f) if f > 0 else np.nan)
                rows.append(row)
    return rows


def roc_curve(score, label, weight=None, n=200):
    """(signal efficiency, background rejection) over ``n`` thresholds (label 1 = signal)."""
    s = np.asarray(score, np.float64)
    y = np.asarray(label).astype(bool)
    w = np.ones_like(s) if weight is None else np.asarray(weight, np.float64)
    qs = np.unique(np.quantile(s, np.linspace(0, 1, n)))
    eff = np.array([w[y & (s >= c)].sum() for c in qs]) / max(w[y].sum(), 1e-300)
    rej = np.array([w[~y & (s < c)].sum() for c in qs]) / max(w[~y].sum(), 1e-300)
    return eff, rej


def auc(score, label, weight=None):
    """Area under the ROC (probability that a random signal scores above a random background)."""
    s = np.asarray(score, np.float64)
    y = np.asarray(label).astype(bool)
    w = np.ones_like(s) if weight is None else np.asarray(weight, np.float64)
    order = np.argsort(s, kind="mergesort")
    s, y, w = s[order], y[order], w[order]
    # ties share half: rank-based with weights
    cw_bkg = np.cumsum(np.where(~y, w, 0.0))
    uniq, first = np.unique(s, return_index=True)
    last = np.r_[first[1:], len(s)] - 1
    below = np.where(first > 0, cw_bkg[first - 1], 0.0)
    tied = cw_bkg[last] - below
    pos = np.searchsorted(uniq, s)
    num = np.sum(np.where(y, w * (below[pos] + 0.5 * tied[pos]), 0.0))
    den = w[y].sum() * w[~y].sum()
    return float(num / den) if den > 0 else np.nan
