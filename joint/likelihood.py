"""The joint likelihood: the sum of the present detectors' nll, on the channels that matter.

Active channels
---------------
A KM2A event touches ~6400 channels, but the likelihood's information sits within a few hundred
metres of the core: far channels expect ≪ 1 particle, and their hits are noise. For speed, each
event's likelihood is evaluated on a FIXED number of channels nearest to the seed core
(``n_ed`` EDs, ``n_md`` MDs; gathered with ``lax.top_k`` inside jit, so shapes stay fixed and one
compilation serves every event). Measured on the same 256 photons at 100 TeV
(``benchmarks/fitter_choices.py``, BENCHMARKS.md): 768 EDs + 192 MDs (the default, ≈ 220 m
around the seed core) fit at 8× the speed of the full array with the same core and energy
resolution and a 15% wider 68% angular containment (0.154° vs 0.134°: far channels add timing
lever arm); 384 + 96 is another 2× faster at 0.168°. Set ``n_ed = n_md = None`` for every channel.

WCDA: the ``n_cells`` (1024) cells nearest to the seed core; WFCTA: every pixel of every
telescope.

Data layout
-----------
``KM2AData``, ``WCDAData``, ``WFCTAData`` hold, for ONE event, the selected channels' geometry,
response and observations (pytrees, so a batch is the same type with a leading axis and ``vmap``
maps over it). The joint likelihood (``joint_model``) takes a dict ``{detector: data}`` whose
keys are static: one compilation per detector combination.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from functools import lru_cache

from detectors import km2a, wcda, wfcta
from detectors.shower import Shower
from joint.fit import ScoringModel

__all__ = ["KM2AData", "WCDAData", "WFCTAData", "select_wfcta", "select_wcda", "wcda_model", "detector_model", "joint_model",
           "DEFAULT_N_WCDA", "XmaxPrior", "xmax_prior_residual", "select_km2a", "km2a_model", "km2a_nll", "joint_nll", "DEFAULT_N_ED", "DEFAULT_N_MD"]

DEFAULT_N_ED = 768
DEFAULT_N_MD = 192
#: WCDA cells per event (≈ 160 m × 160 m around the seed core; a 1–30 TeV shower's signal sits
#: within ~100 m)
DEFAULT_N_WCDA = 1024


class KM2AData(NamedTuple):
    geometry: km2a.Geometry
    response: km2a.Response
    observed: km2a.Observed


def _gather(tree, idx):
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def select_km2a(ed_block, md_block, core_xy, geometry: km2a.Geometry, response: km2a.Response,
                n_ed: Optional[int] = DEFAULT_N_ED, n_md: Optional[int] = DEFAULT_N_MD) -> KM2AData:
    """The ``n_ed`` EDs and ``n_md`` MDs nearest to ``core_xy`` (2,) [m] for one event.

    ed_block, md_block : ChannelBlocks over every channel of ``geometry`` ((n_ed_all,), (n_md_all,)).
    Returns a KM2AData whose arrays have the fixed shapes (n_ed,), (n_md,).
    """
    def pick(pos, n):
        if n is None or n >= pos.shape[0]:
            return jnp.arange(pos.shape[0])
        d2 = jnp.sum((jnp.asarray(pos)[:, :2] - core_xy) ** 2, axis=1)
        return jax.lax.top_k(-d2, n)[1]

    i_ed = pick(geometry.ed_pos, n_ed)
    i_md = pick(geometry.md_pos, n_md)
    geo = geometry._replace(ed_pos=jnp.asarray(geometry.ed_pos)[i_ed],
                            md_pos=jnp.asarray(geometry.md_pos)[i_md],
                            ed_live=jnp.asarray(geometry.ed_live)[i_ed],
                            md_live=jnp.asarray(geometry.md_live)[i_md])
    per_ed = ("ed_gain", "ed_time_offset", "ed_efficiency")
    per_md = ("md_gain", "md_time_offset", "md_efficiency")
    resp = response._replace(**{f: jnp.asarray(getattr(response, f))[i_ed] for f in per_ed},
                             **{f: jnp.asarray(getattr(response, f))[i_md] for f in per_md})
    obs = km2a.Observed(ed=_gather(ed_block, i_ed), md=_gather(md_block, i_md))
    return KM2AData(geo, resp, obs)


class WCDAData(NamedTuple):
    geometry: wcda.Geometry
    response: wcda.Response
    observed: wcda.Observed


#: per-cell fields of wcda.Response (gathered with the cells)
_WCDA_PER_CELL = ("efficiency", "time_offset", "pe_per_muon", "small_ratio", "switch_pe",
                  "saturation_pe", "noise_rate_hz")


def select_wcda(block, core_xy, geometry: wcda.Geometry, response: wcda.Response,
                n_cells: Optional[int] = DEFAULT_N_WCDA) -> WCDAData:
    """The ``n_cells`` WCDA cells nearest to ``core_xy`` (2,) [m] for one event (fixed shape;
    None = every cell). ``block``: ChannelBlock over every cell of ``geometry``."""
    pos = jnp.asarray(geometry.cell_pos)
    if n_cells is None or n_cells >= pos.shape[0]:
        idx = jnp.arange(pos.shape[0])
    else:
        idx = jax.lax.top_k(-jnp.sum((pos[:, :2] - core_xy) ** 2, axis=1), n_cells)[1]
    geo = geometry._replace(cell_pos=pos[idx], pond=jnp.asarray(geometry.pond)[idx],
                            cell_live=jnp.asarray(geometry.cell_live)[idx])
    resp = response._replace(**{f: jnp.asarray(getattr(response, f))[idx] for f in _WCDA_PER_CELL})
    return WCDAData(geo, resp, wcda.Observed(cells=_gather(block, idx)))


def _scoring(module, physics):
    return ScoringModel(
        predict=lambda s, d: module.predict(s, d.geometry, d.response, physics),
        loss=lambda e, d: module.nll(d.observed, e, d.geometry, d.response, physics),
        weights=lambda e, d: module.information_weights(e, d.geometry, d.response, physics))


class WFCTAData(NamedTuple):
    geometry: wfcta.Geometry
    response: wfcta.Response
    observed: wfcta.Observed


def select_wfcta(block, geometry: wfcta.Geometry, response: wfcta.Response) -> WFCTAData:
    """Every pixel of every telescope (n_tel · 1024; the image model is cheap per pixel)."""
    return WFCTAData(geometry, response, wfcta.Observed(pixels=block))


_MODULES = {"km2a": km2a, "wcda": wcda, "wfcta": wfcta}


@lru_cache(maxsize=32)
def detector_model(name: str, physics) -> ScoringModel:
    """One detector's likelihood (data: its KM2AData / WCDAData) as a Fisher-scoring model."""
    if name not in _MODULES:
        raise ValueError(f"unknown detector {name!r}; built: {sorted(_MODULES)}")
    return _scoring(_MODULES[name], physics)


@lru_cache(maxsize=32)
def wcda_model(physics: wcda.WCDAPhysics = wcda.DEFAULT_PHYSICS) -> ScoringModel:
    """WCDA likelihood of one event (WCDAData) as a Fisher-scoring model."""
    return detector_model("wcda", physics)


@lru_cache(maxsize=64)
def joint_model(physics: tuple, xmax_prior: "XmaxPrior | None" = None) -> ScoringModel:
    """The joint likelihood over a dict of detector data ``{name: KM2AData | WCDAData}`` as one
    Fisher-scoring model: the sum of the detectors' nll (+ the optional Xmax prior, ½ r²; when
    WFCTA is configured, the prior applies only to events without WFCTA data, since the images
    measure Xmax).

    physics : tuple of (name, physics) pairs, e.g. (("km2a", KM2APhysics()), ("wcda", ...));
        hashable, so equal configurations share one compiled fitter.
    """
    models = {name: detector_model(name, phys) for name, phys in physics}

    def predict(s, data):
        preds = {n: m.predict(s, data[n]) for n, m in models.items()}
        if xmax_prior is None:
            return preds, None
        r = xmax_prior_residual(s, xmax_prior)
        if "wfcta" in models:  # the images measure Xmax: the prior only for events without them
            has_images = jnp.any(data["wfcta"].observed.pixels.valid)
            r = jnp.where(has_images, 0.0, r)
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
    from detectors.primaries import xmax_moments

    mean, sd = xmax_moments(shower.log10_energy + 9.0, prior.mass_number, prior.model)
    sd = jnp.sqrt(sd * sd + prior.sigma_floor ** 2)
    return jnp.reshape((shower.xmax - mean) / sd, (1,))


@lru_cache(maxsize=32)
def km2a_model(physics: km2a.KM2APhysics = km2a.DEFAULT_PHYSICS,
               xmax_prior: XmaxPrior | None = None) -> ScoringModel:
    """KM2A likelihood of one event (KM2AData) as a Fisher-scoring model for ``joint.fit``,
    plus the optional Xmax prior (−ln of a Gaussian: ½ r²)."""
    if xmax_prior is None:
        return detector_model("km2a", physics)
    return ScoringModel(
        predict=lambda s, d: (km2a.predict(s, d.geometry, d.response, physics),
                              xmax_prior_residual(s, xmax_prior)),
        loss=lambda e, d: km2a.nll(d.observed, e[0], d.geometry, d.response, physics) + 0.5 * jnp.sum(e[1] ** 2),
        weights=lambda e, d: (km2a.information_weights(e[0], d.geometry, d.response, physics),
                              jnp.ones_like(e[1])))


def km2a_nll(shower: Shower, data: KM2AData, physics: km2a.KM2APhysics = km2a.DEFAULT_PHYSICS):
    """KM2A −ln L of one event on its selected channels."""
    e = km2a.expected(shower, data.geometry, data.response, physics)
    return km2a.nll(data.observed, e, data.geometry, data.response, physics)


def joint_nll(shower: Shower, data: dict, physics: dict | None = None):
    """(sum, {name: nll}) of the detectors present in ``data`` ({"km2a": KM2AData,
    "wcda": WCDAData}). A detector absent from ``data`` contributes nothing; the dict's keys are
    static, so each detector combination compiles once."""
    physics = physics or {}
    terms = {n: detector_model(n, physics.get(n, _MODULES[n].DEFAULT_PHYSICS))(shower, d)
             for n, d in data.items()}
    return sum(terms.values()), terms
