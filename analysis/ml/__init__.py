"""Machine learning on hits (issue 17): point clouds of hits, a DGCNN in flax nnx, training with
optax, a gradient-boosted baseline, figures of merit, and the shipped models (``models/``).

points.py    hits → fixed-size masked point clouds, relative to the fitted shower
dgcnn.py     EdgeConv / DGCNN (event head + per-hit head)
data.py      simulate → reconstruct → samples; independent seeds per split; flux weights
train.py     training loop, model card, save / load
baseline.py  gradient-boosted trees on the event variables (scikit-learn)
metrics.py   survival at fixed efficiency, Q-factor, ROC, AUC
classify.py  the shipped models applied to reco files (``lhaaso-joint classify``)

Imports jax, flax, optax and numpy (scikit-learn only in baseline.py, uproot/awkward only for
files); docs/ml.md.
"""
