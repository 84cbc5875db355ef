"""Training (optax), prediction, and saved models with their model card.

``train(train, val, config, task=...)`` fits a :class:`analysis.ml.dgcnn.DGCNN` with AdamW on a
cosine schedule. The loss is the flux-weighted binary cross-entropy of the event logit (plus, for
``regress``, a squared error on a regression target, and with ``hit_weight`` > 0 the binary
cross-entropy of the per-hit head on the points whose label is known). The validation loss picks
the epoch that is kept (early stopping): the test split is never looked at here.

A saved model is two files: ``NAME.npz`` (the parameters, flat, float32) and ``NAME.json`` (the
model card: architecture, event-feature standardisation, the data it was trained on, the version
of lhaaso-joint, metrics). ``load(path)`` rebuilds the network from them.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from analysis.ml.dgcnn import DGCNN, DGCNNConfig

__all__ = ["train", "predict", "save", "load", "Standardiser", "TrainedModel"]


class Standardiser:
    """Event features → (x − mean) / std with the training sample's numbers."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    @classmethod
    def fit(cls, x, weight=None):
        x = np.asarray(x, np.float64)
        m = x.mean(0)
        s = np.maximum(x.std(0), 1e-3)
        return cls(m, s)

    def __call__(self, x):
        return ((np.asarray(x, np.float32) - self.mean) / self.std).astype(np.float32)

    def to_dict(self):
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


class TrainedModel:
    """A network, its event-feature standardiser and its model card (a dict)."""

    def __init__(self, model: DGCNN, standardiser: Standardiser, card: dict):
        self.model = model
        self.standardiser = standardiser
        self.card = card
        self._fwd = nnx.jit(lambda m, p, k, e: m(p, k, e))

    def __call__(self, points, mask, event, batch_size=256):
        """(event outputs (N, n_out), per-hit probabilities (N, P)) in numpy, in fixed-size
        batches (padding the last one: one compilation per point count)."""
        n = points.shape[0]
        ev = self.standardiser(event)
        outs, hits = [], []
        for s in range(0, n, batch_size):
            sl = slice(s, min(n, s + batch_size))
            m = sl.stop - sl.start
            pad = lambda a: np.concatenate([a[sl], np.zeros((batch_size - m,) + a.shape[1:],
                                                            a.dtype)]) if m < batch_size else a[sl]
            o, h = self._fwd(self.model, jnp.asarray(pad(points)), jnp.asarray(pad(mask)),
                             jnp.asarray(pad(ev)))
            outs.append(np.asarray(o)[:m])
            hits.append(np.asarray(jax.nn.sigmoid(h))[:m])
        return np.concatenate(outs), np.concatenate(hits)


def _loss_fn(model, points, mask, event, label, weight, target, hit_label, hit_weight, n_logits,
             regress):
    out, hit_logit = model(points, mask, event)
    w = weight / jnp.maximum(jnp.sum(weight), 1e-12)
    loss = jnp.sum(w * optax.sigmoid_binary_cross_entropy(out[:, 0], label))
    if regress:
        loss = loss + jnp.sum(w * (out[:, n_logits] - target) ** 2)
    known = mask & (hit_label >= 0)
    hb = optax.sigmoid_binary_cross_entropy(hit_logit, jnp.clip(hit_label, 0, 1).astype(jnp.float32))
    hit_loss = jnp.sum(jnp.where(known, hb, 0.0)) / jnp.maximum(jnp.sum(known), 1.0)
    return loss + hit_weight * hit_loss


def _batches(n, size, rng):
    order = rng.permutation(n)
    for s in range(0, n - size + 1, size):
        yield order[s:s + size]


def train(train_set: dict, val_set: dict, config: DGCNNConfig | None = None, *, epochs=12,
          batch_size=64, learning_rate=2e-3, weight_decay=1e-4, hit_weight=0.0, regress=None,
          seed=0, time_budget_s=None, progress=True, log=print) -> TrainedModel:
    """Train a DGCNN on ``train_set`` (``analysis.ml.data`` samples: points, mask, event, label,
    weight, hit_label), keeping the epoch of lowest validation loss.

    regress : name of a column of the samples to regress on (e.g. "ln_a"), or None.
    time_budget_s : stop after the epoch that passes this wall time (the best epoch is kept).
    """
    config = config or DGCNNConfig(n_features=train_set["points"].shape[-1],
                                   n_event=train_set["event"].shape[-1],
                                   n_regress=1 if regress else 0)
    std = Standardiser.fit(train_set["event"])
    model = DGCNN(config, rngs=nnx.Rngs(seed))
    n = train_set["points"].shape[0]
    steps = max(1, epochs * (n // batch_size))
    sched = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(200, steps // 10 + 1), steps)
    opt = nnx.Optimizer(model, optax.adamw(sched, weight_decay=weight_decay), wrt=nnx.Param)
    n_logits = config.n_logits

    def arrays(s, idx):
        target = np.asarray(s[regress], np.float32)[idx] if regress else np.zeros(len(idx), np.float32)
        return (jnp.asarray(s["points"][idx]), jnp.asarray(s["mask"][idx]),
                jnp.asarray(std(s["event"][idx])), jnp.asarray(s["label"][idx], jnp.float32),
                jnp.asarray(s["weight"][idx], jnp.float32), jnp.asarray(target),
                jnp.asarray(s["hit_label"][idx]))

    @nnx.jit
    def step(model, opt, p, m, e, y, w, t, h):
        loss, grads = nnx.value_and_grad(_loss_fn)(model, p, m, e, y, w, t, h, hit_weight,
                                                   n_logits, bool(regress))
        opt.update(model, grads)
        return loss

    @nnx.jit
    def evaluate(model, p, m, e, y, w, t, h):
        return _loss_fn(model, p, m, e, y, w, t, h, hit_weight, n_logits, bool(regress))

    def val_loss():
        nv = val_set["points"].shape[0]
        tot, wsum = 0.0, 0.0
        for s in range(0, nv - batch_size + 1, batch_size):
            idx = np.arange(s, s + batch_size)
            wb = float(np.sum(val_set["weight"][idx]))
            tot += float(evaluate(model, *arrays(val_set, idx))) * wb
            wsum += wb
        return tot / max(wsum, 1e-12)

    rng = np.random.default_rng(seed)
    # training weights: each class sums to the same total (balanced classes), flux shape kept
    w = np.asarray(train_set["weight"], np.float64).copy()
    for c in (0, 1):
        sel = train_set["label"] == c
        if sel.any():
            w[sel] *= 0.5 / w[sel].sum()
    w *= n / w.sum()
    tset = dict(train_set, weight=w.astype(np.float32))
    best = (np.inf, None, -1)
    history = []
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="training", unit="epoch")
    for ep in range(epochs):
        losses = [float(step(model, opt, *arrays(tset, idx)))
                  for idx in _batches(n, batch_size, rng)]
        vl = val_loss()
        history.append({"epoch": ep, "train_loss": float(np.mean(losses)), "val_loss": vl,
                        "wall_s": time.perf_counter() - t0})
        if vl < best[0]:
            best = (vl, jax.tree_util.tree_map(np.asarray, nnx.state(model, nnx.Param)), ep)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(train=f"{history[-1]['train_loss']:.4f}", val=f"{vl:.4f}")
        if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
            break
    if bar is not None:
        bar.close()
    nnx.update(model, best[1])
    card = {"architecture": "DGCNN (EdgeConv on dynamic kNN graphs), analysis/ml/dgcnn.py",
            "config": config.to_dict(), "regress": regress, "hit_weight": hit_weight,
            "training": {"epochs_run": len(history), "best_epoch": best[2],
                         "batch_size": batch_size, "learning_rate": learning_rate,
                         "weight_decay": weight_decay, "seed": seed,
                         "n_train": int(n), "n_val": int(val_set["points"].shape[0]),
                         "wall_s": round(time.perf_counter() - t0, 1), "history": history}}
    return TrainedModel(model, std, card)


def predict(tm: TrainedModel, sample: dict, batch_size=256):
    """(event outputs, per-hit probabilities) of ``tm`` on a sample."""
    return tm(sample["points"], sample["mask"], sample["event"], batch_size=batch_size)


def _flat(state):
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {jax.tree_util.keystr(p): np.asarray(v, np.float32) for p, v in leaves}


def save(tm: TrainedModel, path, overwrite=False) -> Path:
    """Write ``path``.npz (parameters) and ``path``.json (model card); refuses to overwrite
    unless ``overwrite``."""
    from importlib.metadata import PackageNotFoundError, version

    path = Path(path).with_suffix("")
    npz, card = path.with_suffix(".npz"), path.with_suffix(".json")
    if not overwrite and (npz.exists() or card.exists()):
        raise FileExistsError(f"{npz}: exists; not overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(npz, **_flat(nnx.state(tm.model, nnx.Param)))
    c = dict(tm.card)
    c["event_standardiser"] = tm.standardiser.to_dict()
    try:
        c["lhaaso_joint_version"] = version("lhaaso-joint")
    except PackageNotFoundError:
        c["lhaaso_joint_version"] = "unknown (not installed)"
    c["weights_file"] = npz.name
    tmp = card.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(c, indent=1, default=float))
    os.replace(tmp, card)
    return card


def load(path) -> TrainedModel:
    """Rebuild a saved model from ``path`` (.json, .npz or the stem)."""
    path = Path(path).with_suffix("")
    card_path, npz = path.with_suffix(".json"), path.with_suffix(".npz")
    for p in (card_path, npz):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such model file")
    card = json.loads(card_path.read_text())
    model = DGCNN(DGCNNConfig.from_dict(card["config"]), rngs=nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    with np.load(npz) as z:
        new = []
        for p, v in leaves:
            k = jax.tree_util.keystr(p)
            if k not in z.files or z[k].shape != np.shape(v):
                raise ValueError(f"{npz}: parameter {k!r} missing or of the wrong shape")
            new.append(jnp.asarray(z[k]))
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))
    st = card["event_standardiser"]
    return TrainedModel(model, Standardiser(st["mean"], st["std"]), card)
