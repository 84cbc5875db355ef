"""DGCNN (dynamic graph CNN; Wang et al., ACM TOG 38 (2019) 146) on padded, masked hit point clouds,
in flax nnx.

EdgeConv: for every point i and its k nearest neighbours j (in the current feature space — the
graph is rebuilt after every layer, hence "dynamic"), h_ij = act(Θ·(x_j − x_i) + Φ·x_i) (DGCNN's
one-layer edge function), and the point's new features are max_j h_ij. The first graph is built on the hit's position and time
residual (x, y, dt: the first three features of ``analysis.ml.points``), the later ones on the
learned features. Neighbours come from ``lax.top_k`` on −|x_i − x_j|² with padded points at
+∞ distance, so the shapes are fixed (P points, k neighbours) and there is no Python control
flow on traced values: one compilation per point count. When an event has fewer than k real
hits, the missing neighbours are masked out of the max.

Heads
    event : ``n_logits`` logits (γ/hadron: gammaness; composition: light vs heavy) and
        ``n_regress`` regression outputs (ln A), from the masked max- and mean-pooled point
        features joined with the event features (the fit's energy, zenith, core distance, Ne,
        Nμ, age; standardised by the caller) — "fitted event features joined at the head".
    hits : one logit per point (the probability that the hit belongs to the shower), from the
        point's own features joined with the pooled ones (a segmentation head).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["DGCNNConfig", "DGCNN", "EdgeConv", "knn"]


@dataclass(frozen=True)
class DGCNNConfig:
    """Shape of a :class:`DGCNN`. n_features: per-point features; n_event: event features;
    k: neighbours; widths: EdgeConv output widths; hidden: width of the point/global MLPs."""

    n_features: int = 7
    n_event: int = 6
    k: int = 10
    widths: tuple = (32, 32, 48)
    hidden: int = 128
    n_logits: int = 1
    n_regress: int = 0
    graph_features: int = 3

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d) -> "DGCNNConfig":
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        return cls(**d)


def knn(x, mask, k):
    """Indices (B, P, k) of each point's k nearest valid points in ``x`` (B, P, D) (itself
    included) and their mask (B, P, k): False for padding neighbours or padding points."""
    x = jax.lax.stop_gradient(x)  # the graph is a choice of neighbours, not differentiated
    sq = jnp.sum(x * x, -1)
    d2 = sq[:, :, None] + sq[:, None, :] - 2.0 * jnp.einsum("bpd,bqd->bpq", x, x)
    d2 = jnp.where(mask[:, None, :], d2, jnp.inf)
    neg, idx = jax.lax.top_k(-d2, k)
    ok = jnp.isfinite(neg) & mask[:, :, None]
    return idx, ok


def _gather(x, idx):
    """x (B, P, D), idx (B, P, k) → (B, P, k, D)."""
    return jax.vmap(lambda xb, ib: xb[ib])(x, idx)


class EdgeConv(nnx.Module):
    """EdgeConv layer with DGCNN's one-layer edge function: x_i' = max_j act(Θ·(x_j − x_i) + Φ·x_i)
    with act a leaky ReLU (slope 0.2, as DGCNN), followed by a LayerNorm.

    The edge function is linear before a monotone activation, so x_i' = act(max_j Θ·x_j +
    (Φ − Θ)·x_i): Θ·x and (Φ − Θ)·x are computed once per point and only the max over the
    gathered neighbours is per edge (no matrix product per edge)."""

    def __init__(self, d_in: int, d_out: int, *, rngs: nnx.Rngs):
        self.theta = nnx.Linear(d_in, d_out, use_bias=False, rngs=rngs)
        self.phi = nnx.Linear(d_in, d_out, rngs=rngs)
        self.norm = nnx.LayerNorm(d_out, rngs=rngs)

    def __call__(self, x, idx, ok):
        a = self.theta(x)
        b = self.phi(x) - a
        # the activation is monotone, so max_j act(a_j + b_i) = act(max_j a_j + b_i)
        amax = jnp.max(jnp.where(ok[..., None], _gather(a, idx), -jnp.inf), axis=2)
        h = jax.nn.leaky_relu(jnp.where(jnp.isfinite(amax), amax + b, 0.0), 0.2)
        return self.norm(h)


class DGCNN(nnx.Module):
    """Three EdgeConv layers on dynamic kNN graphs, an event head and a per-hit head.

    ``model(points, mask, event)`` → (event_out (B, n_logits + n_regress), hit_logit (B, P)).
    """

    def __init__(self, config: DGCNNConfig, *, rngs: nnx.Rngs):
        self.config = config
        c = config
        dims = (c.n_features,) + tuple(c.widths)
        self.convs = nnx.List([EdgeConv(dims[i], dims[i + 1], rngs=rngs)
                               for i in range(len(c.widths))])
        self.point = nnx.Linear(sum(c.widths), c.hidden, rngs=rngs)
        self.ev1 = nnx.Linear(2 * c.hidden + c.n_event, c.hidden, rngs=rngs)
        self.ev2 = nnx.Linear(c.hidden, 64, rngs=rngs)
        self.ev_out = nnx.Linear(64, c.n_logits + c.n_regress, rngs=rngs)
        self.hit1 = nnx.Linear(c.hidden + 2 * c.hidden, 64, rngs=rngs)
        self.hit_out = nnx.Linear(64, 1, rngs=rngs)

    def __call__(self, points, mask, event):
        c = self.config
        h = points
        feats = []
        idx, ok = knn(points[..., :c.graph_features], mask, c.k)
        for i, conv in enumerate(self.convs):
            if i > 0:
                idx, ok = knn(h, mask, c.k)
            h = conv(h, idx, ok)
            feats.append(h)
        p = jax.nn.gelu(self.point(jnp.concatenate(feats, -1)))
        m = mask[..., None]
        n = jnp.maximum(jnp.sum(mask, -1, keepdims=True), 1.0)
        g_max = jnp.max(jnp.where(m, p, -jnp.inf), axis=1)
        g_max = jnp.where(jnp.isfinite(g_max), g_max, 0.0)
        g_mean = jnp.sum(jnp.where(m, p, 0.0), axis=1) / n
        g = jnp.concatenate([g_max, g_mean], -1)
        e = jax.nn.gelu(self.ev1(jnp.concatenate([g, event], -1)))
        e = jax.nn.gelu(self.ev2(e))
        ev_out = self.ev_out(e)
        gb = jnp.broadcast_to(g[:, None, :], p.shape[:2] + (g.shape[-1],))
        hh = jax.nn.gelu(self.hit1(jnp.concatenate([p, gb], -1)))
        hit_logit = self.hit_out(hh)[..., 0]
        return ev_out, jnp.where(mask, hit_logit, -30.0)
