"""The joint likelihood: the sum of the present detectors' nll, on the channels that matter.

Active channels
---------------
A KM2A event touches ~6400 channels, but the likelihood's information sits within a few hundred
metres of the core: far channels expect ≪ 1 particle, and their hits are noise. For speed, each
event's likelihood is evaluated on a FIXED number of channels nearest to the seed core
(``n_ed`` EDs, ``n_md`` MDs; ``detectors.registry.select_km2a``, gathered with ``lax.top_k`` inside jit, so shapes stay fixed and one
compilation serves every event). Measured on the same 256 photons at 100 TeV
(``benchmarks/fitter_choices.py``, BENCHMARKS.md): 768 EDs + 192 MDs (the default, ≈ 220 m
around the seed core) fit at 8× the speed of the full array with the same core and energy
resolution and a 15% wider 68% angular containment (0.154° vs 0.134°: far channels add timing
lever arm); 384 + 96 is another 2× faster at 0.168°. Set ``n_ed = n_md = None`` for every channel.

WCDA: the ``n_cells`` (1024) cells nearest to the seed core; WFCTA: every pixel of every
telescope.

Detector nuisances
------------------
A detector module with ``predict_event(shower, observed, geometry, response, physics)`` predicts
with its event's data (WFCTA: the profile-width and lateral-spread nuisances profiled against the
pixels under their priors; its prediction carries the priors' residuals, which its ``nll`` adds
as ½ r² and its ``information_weights`` weigh with 1): the fitter's parameter vector stays the
Shower's, and Fisher scoring's Jᵀ W J is the profiled information (docs/nuisances.md).

Data layout
-----------
Each detector's ``DetectorSpec.data`` (``KM2AData``, ``WCDAData``, ``WFCTAData`` in
``detectors.registry``) holds, for ONE event, the selected channels' geometry, response and
observations (pytrees, so a batch is the same type with a leading axis and ``vmap`` maps over
it); ``DetectorSpec.select`` builds it. The joint likelihood (``joint_model``) takes a dict
``{detector: data}`` whose keys are static: one compilation per detector combination.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp

from detectors import registry
from detectors.block import ChannelBlock
from detectors.primaries import xmax_moments
from detectors.shower import Shower
from joint.fit import ScoringModel

__all__ = ["detector_model", "joint_model", "XmaxPrior", "xmax_prior_residual"]


def _scoring(module, physics):
    """A detector module as a ScoringModel. A module with ``predict_event(shower, observed,
    geometry, response, physics)`` (WFCTA: nuisances profiled against the event's data, a
    prediction that also carries the priors' residuals) predicts with it; others with
    ``predict``."""
    event = getattr(module, "predict_event", None)
    if event is not None:
        pred = lambda s, d: event(s, d.observed, d.geometry, d.response, physics)
    else:
        pred = lambda s, d: module.predict(s, d.geometry, d.response, physics)
    return ScoringModel(
        predict=pred,
        loss=lambda e, d: module.nll(d.observed, e, d.geometry, d.response, physics),
        weights=lambda e, d: module.information_weights(e, d.geometry, d.response, physics))


@lru_cache(maxsize=32)
def detector_model(name: str, physics) -> ScoringModel:
    """One detector's likelihood (data: its ``DetectorSpec.data``) as a Fisher-scoring model."""
    return _scoring(registry.get(name).module, physics)


def _has_data(observed):
    """Whether any channel of an event's observations is valid (the detector took part)."""
    blocks = [b for b in jax.tree_util.tree_leaves(
        observed, is_leaf=lambda x: isinstance(x, ChannelBlock)) if isinstance(b, ChannelBlock)]
    return jnp.any(jnp.stack([jnp.any(b.valid) for b in blocks]))


@lru_cache(maxsize=64)
def joint_model(physics: tuple, xmax_prior: "XmaxPrior | None" = None) -> ScoringModel:
    """The joint likelihood over a dict of detector data ``{name: data}`` as one
    Fisher-scoring model: the sum of the detectors' nll (+ the optional Xmax prior, ½ r²; when a
    detector that measures Xmax takes part (``DetectorSpec.measures_xmax``: WFCTA), the prior
    applies only to events without its data, since the images measure Xmax).

    physics : tuple of (name, physics) pairs, e.g. (("km2a", KM2APhysics()), ("wcda", ...));
        hashable, so equal configurations share one compiled fitter.
    """
    models = {name: detector_model(name, phys) for name, phys in physics}
    xmax_detectors = [s.name for s in registry.specs(models) if s.measures_xmax]

    def predict(s, data):
        preds = {n: m.predict(s, data[n]) for n, m in models.items()}
        if xmax_prior is None:
            return preds, None
        r = xmax_prior_residual(s, xmax_prior)
        for n in xmax_detectors:  # the images measure Xmax: the prior only for events without them
            r = jnp.where(_has_data(data[n].observed), 0.0, r)
        return preds, r

    def loss(e, data):
        total = sum(m.loss(e[0][n], data[n]) for n, m in models.items())
        return total if e[1] is None else total + 0.5 * jnp.sum(e[1] ** 2)

    def weights(e, data):
        w = {n: m.weights(e[0][n], data[n]) for n, m in models.items()}
        return w, (None if e[1] is None else jnp.ones_like(e[1]))

    return ScoringModel(predict=predict, loss=loss, weights=weights)


class XmaxPrior(NamedTuple):
    """Gaussian prior on Xmax from the generalised-Gumbel moments of ``detectors.primaries``:
    mean and rms of the mass ``mass_number`` (0 = photon) at the shower's energy, the rms widened
    in quadrature by ``sigma_floor`` [g/cm²] (to cover a mixed composition).

    The ground arrays feel Xmax only through the lateral age, so without it energy and Xmax
    trade off; the prior (DESIGN.md: "joint_nll = sum of the detectors' nll + optional priors")
    resolves that with what is known of the primary. Defaults: photons A = 0 (rms 51 g/cm²);
    hadrons A = 4 with a 50 g/cm² floor (rms ≈ 70 g/cm², covering p to Fe).
    """

    mass_number: float = 4.0
    sigma_floor: float = 50.0
    model: str = "EPOS-LHC"


def xmax_prior_residual(shower: Shower, prior: XmaxPrior):
    """(Xmax − mean)/rms of the prior, shape (1,)."""
    mean, sd = xmax_moments(shower.log10_energy + 9.0, prior.mass_number, prior.model)
    sd = jnp.sqrt(sd * sd + prior.sigma_floor ** 2)
    return jnp.reshape((shower.xmax - mean) / sd, (1,))
