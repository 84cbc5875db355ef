"""Gradient-boosted baseline on the event-level variables (scikit-learn).

The same event features the network joins at its head (``analysis.ml.data.EVENT_FEATURES``) plus
the classic variables (KM2A: log10(Nμ/Ne^0.86); WCDA: compactness and PINCness), given to a good off-the-shelf classifier
(``HistGradientBoostingClassifier``): the network's gain over it is what the hits add.
Hyper-parameters are fixed (not tuned on the test split); early stopping uses an internal 15%
validation fraction of the training set.
"""
from __future__ import annotations

import numpy as np

__all__ = ["baseline_features", "fit_baseline"]


def baseline_features(sample, classic="km2a") -> np.ndarray:
    """The event features and the classic variables: log10(Nμ/Ne^0.86) (KM2A), or log10
    compactness and log10 PINCness (WCDA)."""
    clean = lambda a, v: np.where(np.isfinite(a), a, v)
    if classic == "km2a":
        extra = [clean(np.asarray(sample["nmu_ne"], np.float64), -5.0)]
    else:
        extra = [clean(np.log10(np.maximum(sample["compactness"], 1e-6)), -6.0),
                 clean(np.log10(np.maximum(sample["pincness"], 1e-3)), -3.0)]
    return np.column_stack([sample["event"], *extra])


def fit_baseline(train_set, seed=0, max_iter=300, classic="km2a"):
    """A fitted ``HistGradientBoostingClassifier`` (balanced, flux-weighted classes)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    w = np.asarray(train_set["weight"], np.float64).copy()
    y = np.asarray(train_set["label"])
    for c in (0, 1):
        sel = y == c
        if sel.any():
            w[sel] *= 0.5 / w[sel].sum()
    w *= len(w) / w.sum()
    clf = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.05, max_leaf_nodes=31,
                                         early_stopping=True, validation_fraction=0.15,
                                         random_state=seed)
    clf.fit(baseline_features(train_set, classic), y, sample_weight=w)
    return clf
