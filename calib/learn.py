"""Learning a run period's detector Response from its events: optax on the summed joint nll.

The same likelihood that fits the showers (``joint.pipeline.nll_function``) is minimised over
the per-channel calibration parameters of ``calib.response`` (gains, time offsets,
efficiencies; raw parameters, degeneracies removed by the projections inside
``calib.response.apply``), alternating two steps for ``n_outer`` outer iterations:

(a) **showers**: every event is fitted with the current Response (``joint.fit.fit_events`` on
    the channels around its core, ``select_km2a`` / ``select_wcda`` / ``select_wfcta`` with the
    Response built from the parameters); the first outer iteration seeds with
    ``joint.pipeline.prepare``, later ones start from the previous fit (warm start);
(b) **response**: with the showers fixed, ``n_steps`` optax (adam) steps on the parameters
    minimise the mean nll over minibatches of ``batch_size`` usable events (jit-compiled
    ``value_and_grad`` of the vmapped per-event nll). Inside the loss the full Response is
    built from the parameters and the SAME selection as the fit gathers each event's channels
    (and with them the per-channel parameters), so the gradient reaches exactly the channels
    the event's likelihood uses.

Usable events: fit status converged or max_iter with a finite nll (``LearnConfig.use_status``).

Parameter scales: the optimiser works on ``raw / SCALES[kind]`` (log-gains and log-efficiencies
in units of 0.1, time offsets in units of 2 ns), so one learning rate suits both kinds:
``learning_rate = 0.1`` moves a log-gain by up to ~0.01 and a time offset by ~0.2 ns per step in
the first outer iteration (halved in each further one: ``lr_decay``).

A weak Gaussian prior on the raw parameters (``PRIOR_SIGMA``: 0.5 in log-gain/efficiency,
20 ns in time offset), weighted as ONE pseudo-measurement of the whole period (i.e. divided by
the number of usable events, like the mean nll), keeps channels without hits where they started
and has a negligible pull on channels with a few hits or more.

Degeneracies: a common shift of the time offsets of the channels an event uses is the event's
t0, a common log-gain shift its energy; the projections of ``calib.response`` fix the
means over all live channels. When only part of the array is illuminated (a short run, cores in
a small region), the learned parameters of the illuminated channels equal the true ones up to a
common shift within that part; :func:`response_errors` therefore reports the rms error with the
mean difference over the compared channels removed (``remove_mean=True``) next to the plain rms.

Gains from single-particle hits: the shower fit's default ED charge term
(``detectors.channel.counting_channel_nll``, a continuous Poisson in q/F with F ∝ gain) is not
a normalised density in q at small counts, and its maximum in the gain is biased there (a toy
with μ known: ML ln G ≥ +0.4 at μ = 0.3 particle, +0.13 at μ = 1, +0.01 at μ = 3; at the true
showers of the ``tests/test_calib_learn.py`` run +0.11 at 60-80 m and +0.22 at 80-120 m from
the cores). Learning therefore scores KM2A charges with the exact compound Poisson–gamma density
below ~8 particles (``LearnConfig.compound_particles``, ``KM2APhysics.compound_particles``;
``tests/test_channel_compound.py``: ML ln G within 0.015 of the truth at μ = 1). On the 64-event
test run the rms gain error of the EDs hit in ≥ 50% of the events went from 0.135 (scaled
Poisson, every channel learned) to 0.088, and ``learn_min_hits`` (keep channels with few hits at
their starting values) is no longer needed to avoid the bias. Time offsets are not affected.
Recovery versus the number of events: ``benchmarks/calib_recovery.py`` (BENCHMARKS.md, issue 7).

Structure: :func:`learn_problem` gathers what stays fixed (:class:`LearnProblem`: events,
geometry, nominal Response, constraints, settings, the compiled step); :func:`learn_init` gives
the starting :class:`LearnState` (outer iterations done, trainable parameters, optimiser state,
showers, step losses, per-iteration records); :func:`learn_step` does one outer iteration, state
in, state out. :func:`learn_response` is the driver: init (or resume), steps, checkpoints.

Checkpoints (``checkpoint=path``): after every outer iteration the LearnState is written
(:func:`save_checkpoint`: one ``.npz`` written atomically, with the trainable parameters
``params/<det>/<field>``, the flattened optimiser state ``opt/<i>``, the fitted showers
``shower/<field>`` and a JSON string ``meta`` of the outer count, the step losses, the records
and the problem's fingerprint of the events and settings; a readable copy of ``meta`` beside it,
``<path>.json``). Calling again with the same events and settings resumes after the last
finished outer iteration (:func:`load_checkpoint`, which refuses a checkpoint of other events
or settings) and gives the same result as an uninterrupted run (minibatches are drawn from
``seed`` and the outer index only).

Memory: the events are held as dense blocks over every channel (KM2A ≈ 6400 channels × 22 bytes
per event, ≈ 140 kB), so ~10⁴ events take ~1.4 GB; split a long period or cap it (``lhaaso-joint calibrate --max-events``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from calib import response as R
from calib.db import atomic_write
from detectors import registry
from detectors.shower import FIELDS, Shower
from joint import fit as fitmod
from joint.pipeline import nll_function, prepare, select_channels

__all__ = ["LearnConfig", "LearnProblem", "LearnState", "learn_problem", "learn_init",
           "learn_step", "learn_response", "save_checkpoint", "load_checkpoint", "channel_hits",
           "response_errors", "SCALES", "PRIOR_SIGMA", "param_fields"]

#: Raw-parameter fields of each detector (``calib.response`` Params classes), in order
PARAM_FIELDS = {det: c.params._fields for det, c in R.CALIBRATIONS.items()}
#: detector of each raw-parameter field name (the names are unique across detectors)
FIELD_DETECTOR = {f: det for det, fs in PARAM_FIELDS.items() for f in fs}

#: optimiser units of the raw parameters, by kind (the suffix of the field name)
SCALES = {"log": 0.1, "time_offset": 2.0}
#: σ of the weak Gaussian prior on the raw parameters, by kind
PRIOR_SIGMA = {"log": 0.5, "time_offset": 20.0}

#: dense event block of each raw-parameter field (for the hit counts)
_FIELD_BLOCK = {f: b for c in R.CALIBRATIONS.values() for f, b in c.field_blocks.items()}

_STATUS_CODES = {"converged": fitmod.CONVERGED, "max_iter": fitmod.MAX_ITER}


def _kind(field: str) -> str:
    return "time_offset" if field.endswith("time_offset") else "log"


@dataclass(frozen=True)
class LearnConfig:
    """Settings of :func:`learn_response`.

    fields : raw-parameter fields learned (``calib.response`` names, e.g. ``("ed_log_gain",
        "ed_time_offset")``); None = every field of every fitted detector. The others stay at
        their starting values (nominal, or ``init``).
    n_outer : outer iterations (shower fits + response steps)
    n_steps : optax steps per outer iteration
    batch_size : events per minibatch (fixed: one compilation; drawn without replacement from a
        permutation of the usable events, wrapping around)
    learning_rate : adam's step size in the scaled units of :data:`SCALES` in the first outer
        iteration; multiplied by ``lr_decay`` in each further one
    prior : add the weak prior of :data:`PRIOR_SIGMA`
    fit_batch_size : events per shower-fit call (padded by repeating an event)
    use_status : fit statuses whose events enter the response steps
    min_hits : a channel is "monitored" (parameter change and truth errors in the history) when
        it has at least this many hits over the events (and at least ``learn_min_hits``)
    learn_min_hits : only channels with at least this many hits over the events are learned;
        the others keep their starting values (0: every channel; with few events, channels hit
        a handful of times learn mostly noise)
    seed : seed of the minibatch draws
    compound_particles : KM2A charge model of the shower fits and the response steps (replaces
        ``cfg.km2a_compound``): charges below about this many particles are scored with the
        exact compound Poisson–gamma density, which keeps the gains of channels hit by single
        particles unbiased (0: the fit's scaled Poisson, biased there; module docstring)
    profile : Shower fields (e.g. ``("log10_energy",)``) re-optimised for every event of a
        minibatch inside each response step (``profile_steps`` damped Newton steps at the
        current response, held fixed for the gradient: the profile likelihood's gradient by the
        envelope theorem). For parameters strongly coupled to a shower field — a telescope's
        efficiency and the energy, when that telescope measures the energy better than the
        ground array — plain alternation recovers only part of the change per outer iteration
        (measured: a telescope 15% low learned as 7% low after 3 outer iterations)
    """

    fields: Optional[tuple] = None
    n_outer: int = 3
    n_steps: int = 100
    batch_size: int = 64
    learning_rate: float = 0.1
    lr_decay: float = 0.5
    prior: bool = True
    fit_batch_size: int = 256
    use_status: tuple = ("converged", "max_iter")
    min_hits: int = 20
    learn_min_hits: int = 0
    seed: int = 0
    compound_particles: float = 8.0
    profile: tuple = ()
    profile_steps: int = 3

    def fields_of(self, detectors) -> dict:
        """{detector: tuple of learned raw fields} for the fitted ``detectors``."""
        if self.fields is None:
            return {d: PARAM_FIELDS[d] for d in detectors}
        out = {}
        for f in self.fields:
            if f not in FIELD_DETECTOR:
                raise ValueError(f"unknown calibration field {f!r}; known: "
                                 f"{', '.join(FIELD_DETECTOR)}")
            d = FIELD_DETECTOR[f]
            if d not in detectors:
                raise ValueError(f"field {f!r} belongs to {d.upper()}, which is not fitted "
                                 f"(detectors {', '.join(detectors)})")
            out.setdefault(d, ())
            if f not in out[d]:
                out[d] += (f,)
        return out


def param_fields(detectors) -> dict:
    """{detector: raw-parameter field names} (all learnable fields)."""
    return {d: PARAM_FIELDS[d] for d in detectors}


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def _dtype(cfg):
    return jnp.float32 if cfg.dtype == "float32" else jnp.float64


def _cast(tree, dt):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, dt) if np.issubdtype(np.asarray(a).dtype, np.floating)
        else jnp.asarray(a), tree)


def _blocks(batch, detectors) -> dict:
    """{block name: ChannelBlock (numpy, (N, n))} of the fitted detectors."""
    out = {}
    for d in detectors:
        for b in registry.get(d).block_names:
            block = getattr(batch, b, None)
            if block is None:
                raise ValueError(f"the events have no '{b}' block but {d.upper()} is calibrated")
            out[b] = jax.tree_util.tree_map(np.asarray, block)
    return out


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], tree)


def _n_events(batch) -> int:
    return int(np.shape(batch.event_id)[0])


def channel_hits(batch, detectors=("km2a",)) -> dict:
    """{detector: {raw field: hits per channel}} over the events of ``batch`` (hit & valid;
    WFCTA pixels (n_tel, 1024), telescopes (n_tel,): pixels with a signal)."""
    out = {}
    for d in detectors:
        out[d] = {}
        for f in PARAM_FIELDS[d]:
            b = getattr(batch, _FIELD_BLOCK[f], None)
            if b is None:
                continue
            n = np.sum(np.asarray(b.hit, bool) & np.asarray(b.valid, bool), axis=0)
            if d == "wfcta":
                n = n.reshape(-1, 1024)
                if f == "tel_log_efficiency":
                    n = n.sum(axis=1)
            out[d][f] = n.astype(np.int64)
    return out


def _canonical(resps: dict, nominal: dict, constraints: dict) -> dict:
    """{det: Params} of projected raw parameters of Responses (numpy)."""
    out = {}
    for d, r in resps.items():
        p = R.project_params(R.extract(r, nominal[d]), constraints[d])
        out[d] = type(p)(*(np.asarray(v, np.float64) for v in p))
    return out


def response_errors(learned: dict, truth: dict, nominal: dict, constraints: dict | None = None,
                    masks: dict | None = None, remove_mean: bool = True) -> dict:
    """Errors of learned Responses against true ones, in the projected raw parameters.

    learned, truth, nominal : {detector: Response};  constraints : {detector: Constraints}
    (None: all channels live);  masks : {detector: {field: bool array}} of the channels compared
    (None: all). Returns {field: {"rms_error", "rms_true", "n"}}: the rms of (learned − true)
    and of the true parameter over the compared channels, both with their mean over those
    channels removed when ``remove_mean`` (the common shift that only the whole array's
    constraint fixes). Log-gains/efficiencies are log-ratios (≈ relative errors), offsets ns.
    """
    constraints = constraints or {d: R.default_constraints(d, None, **_shape_kw(d, nominal[d]))
                                  for d in learned}
    pl = _canonical(learned, nominal, constraints)
    pt = _canonical({d: truth[d] for d in learned}, nominal, constraints)
    out = {}
    for d in learned:
        for f in PARAM_FIELDS[d]:
            a, t = getattr(pl[d], f), getattr(pt[d], f)
            m = np.ones(a.shape, bool) if masks is None or f not in masks.get(d, {}) \
                else np.asarray(masks[d][f], bool)
            if not np.any(m):
                continue
            e, tt = a[m] - t[m], t[m]
            if remove_mean:
                e, tt = e - e.mean(), tt - tt.mean()
            out[f] = {"rms_error": float(np.sqrt(np.mean(e ** 2))),
                      "rms_true": float(np.sqrt(np.mean(tt ** 2))), "n": int(m.sum())}
    return out


def _shape_kw(det, nominal):
    return R.CALIBRATIONS[det].shape_kw(R.extract(nominal, nominal))


# ---------------------------------------------------------------------------------------------
# the compiled pieces (cached per configuration, so a second call does not recompile)
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _select_fn(cfg):
    return jax.jit(jax.vmap(lambda b, g, r, s: select_channels(cfg, b, g, r, s), in_axes=(0, None, None, 0)))


def _raw(trainable, frozen, masks, d, f):
    """Raw values of a learned field: the trainable ones where the channel is learned, the
    starting ones elsewhere."""
    return jnp.where(masks[d][f], trainable[d][f] * SCALES[_kind(f)], frozen[d][f])


def _build(trainable, frozen, masks, nominal, constraints, learn_fields):
    """{det: Response} from the scaled trainable parameters and the frozen raw ones."""
    out = {}
    for d, nom in nominal.items():
        vals = {}
        for f in PARAM_FIELDS[d]:
            if f in learn_fields.get(d, ()):
                vals[f] = _raw(trainable, frozen, masks, d, f)
            else:
                vals[f] = frozen[d][f]
        out[d] = R.apply(R.CALIBRATIONS[d].params(**vals), nom, constraints[d])
    return out


def _step_fn(cfg, lcfg: LearnConfig, learn_key):
    """(jitted step, optimizer), cached on what the step depends on (not n_outer, n_steps...)."""
    return _step_fn_cached(cfg, float(lcfg.learning_rate), float(lcfg.lr_decay),
                           int(lcfg.n_steps), bool(lcfg.prior), learn_key, tuple(lcfg.profile),
                           int(lcfg.profile_steps))


def _profiled(nll_fn, fields, n_steps):
    """f(shower, data) -> shower with ``fields`` moved by ``n_steps`` damped Newton steps on the
    event's nll (steps clipped to ±0.2 in each field's units; no step where the curvature is not
    positive), held fixed for gradients (stop_gradient)."""
    if not fields:
        return lambda s, d: s

    def run(shower, data):
        def f(x):
            return nll_fn(shower._replace(**{k: getattr(shower, k) + x[i]
                                            for i, k in enumerate(fields)}), data)

        x = jnp.zeros(len(fields), jnp.result_type(shower.log10_energy))
        for _ in range(n_steps):
            g = jax.grad(f)(x)
            h = jax.hessian(f)(x)
            h = h + 1e-6 * jnp.eye(len(fields), dtype=x.dtype) * jnp.maximum(jnp.trace(h), 1.0)
            dx = -jnp.linalg.solve(h, g)
            ok = jnp.all(jnp.isfinite(dx)) & jnp.all(jnp.linalg.eigvalsh(h) > 0)
            x = x + jnp.where(ok, jnp.clip(dx, -0.2, 0.2), 0.0)
        x = jax.lax.stop_gradient(x)
        return shower._replace(**{k: getattr(shower, k) + x[i] for i, k in enumerate(fields)})

    return run


@lru_cache(maxsize=8)
def _step_fn_cached(cfg, learning_rate, lr_decay, n_steps, use_prior, learn_key, profile=(),
                    profile_steps=3):
    learn_fields = dict(learn_key)
    nll_fn = nll_function(cfg)
    prof = _profiled(nll_fn, profile, profile_steps)
    # the step size of outer iteration k is learning_rate · lr_decay^k (the count lives in the
    # optimiser state, so a resumed run continues the same schedule)
    schedule = optax.exponential_decay(learning_rate, transition_steps=max(n_steps, 1),
                                       decay_rate=lr_decay, staircase=True)
    opt = optax.adam(schedule)

    def loss_fn(trainable, frozen, masks, nominal, constraints, geos, showers, blocks, weight,
                n_total):
        resps = _build(trainable, frozen, masks, nominal, constraints, learn_fields)
        def one(s, b):
            data = select_channels(cfg, b, geos, resps, s)
            return nll_fn(prof(s, data), data)

        vals = jax.vmap(one)(showers, blocks)
        vals = jnp.where(weight > 0, vals, 0.0)
        loss = jnp.sum(weight * vals) / jnp.maximum(jnp.sum(weight), 1.0)
        if use_prior:
            prior = 0.0
            for d, fs in learn_fields.items():
                for f in fs:
                    raw = _raw(trainable, frozen, masks, d, f)
                    prior = prior + 0.5 * jnp.sum((raw / PRIOR_SIGMA[_kind(f)]) ** 2)
            return loss + prior / n_total, loss
        return loss, loss

    def step(trainable, opt_state, frozen, masks, nominal, constraints, geos, showers, blocks,
             weight, n_total):
        (_, nll), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, frozen, masks, nominal, constraints, geos, showers, blocks, weight, n_total)
        updates, opt_state = opt.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, nll

    return jax.jit(step), opt


# ---------------------------------------------------------------------------------------------
# the problem (fixed while learning) and the state (what a step changes, what is checkpointed)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LearnProblem:
    """Everything that stays fixed while one period is learned (:func:`learn_problem`): the
    events, the detector model and the settings. Not checkpointed; its ``fingerprint`` is, so
    that a checkpoint is only resumed on the same problem.

    cfg, lcfg : the ``ReconstructionConfig`` of the shower fits (KM2A charge model set from
        ``lcfg.compound_particles``) and the :class:`LearnConfig`
    batch, blocks : the events, and their dense blocks of the fitted detectors (numpy)
    geometry, nominal, constraints : {detector: ...} in the fit's dtype
    frozen : {detector: {raw field: starting values}} (nominal or ``init``), the value of every
        parameter that is not learned
    learn_fields, learn_masks : {detector: learned raw fields}, {detector: {field: bool mask of
        the learned channels}} (``LearnConfig.learn_min_hits``)
    n_hits, monitored : {detector: {field: hits per channel}}, {detector: {field: bool mask}}
    base : {detector: Response} the caller started from (nominal or ``init``); the result is
        this with the learned fields replaced
    truth, truth_nominal, truth_constraints : the simulation's {detector: Response} (or None)
        and the nominal Responses and constraints (as given) it is compared in
    step, opt : the jit-compiled optimiser step and its optax transformation
    fingerprint : JSON summary of the events and settings (checked on resume)
    """

    cfg: object
    lcfg: LearnConfig
    batch: object
    blocks: dict
    geometry: dict
    nominal: dict
    constraints: dict
    frozen: dict
    learn_fields: dict
    learn_masks: dict
    n_hits: dict
    monitored: dict
    base: dict
    truth: Optional[dict]
    truth_nominal: dict
    truth_constraints: dict
    step: object
    opt: object
    fingerprint: dict

    @property
    def n_events(self) -> int:
        """Number of events of the period."""
        return _n_events(self.batch)

    def responses(self, trainable) -> dict:
        """{detector: Response} (fit dtype) of the scaled trainable parameters."""
        return _build(trainable, self.frozen, self.learn_masks, self.nominal, self.constraints,
                      self.learn_fields)

    def canonical(self, trainable) -> dict:
        """{detector: Params} of the projected raw parameters of ``trainable`` (numpy)."""
        return _canonical(self.responses(trainable), self.nominal, self.constraints)

    def result(self, state: "LearnState") -> dict:
        """{detector: Response with numpy arrays} learned so far: ``base`` with the learned
        fields of ``state`` (float64)."""
        return _numpy(self.responses(state.trainable), self.base)

    def history(self, state: "LearnState", resumed_from: int = 0) -> dict:
        """The history dict that :func:`learn_response` returns, for ``state``."""
        return {"loss": list(state.loss), "outer": list(state.records), "n_hits": self.n_hits,
                "monitored": self.monitored,
                "fields": {d: list(fs) for d, fs in self.learn_fields.items()},
                "n_events": self.n_events, "resumed_from": resumed_from}


def learn_problem(batch, geometry: dict, nominal: dict, cfg=None,
                  lcfg: LearnConfig = LearnConfig(), *, constraints: dict | None = None,
                  init: dict | None = None, truth: dict | None = None) -> LearnProblem:
    """The :class:`LearnProblem` of :func:`learn_response`'s arguments (same meaning; a KM2A-only
    run may pass the KM2A objects instead of dicts). Compiles nothing and fits nothing."""
    from joint.config import ReconstructionConfig

    cfg = cfg or ReconstructionConfig()
    if "km2a" in cfg.detectors and cfg.km2a_compound != lcfg.compound_particles:
        cfg = dataclasses.replace(cfg, km2a_compound=float(lcfg.compound_particles))
    dets = cfg.detectors
    if not isinstance(geometry, dict):
        geometry, nominal = {"km2a": geometry}, {"km2a": nominal}
        init = None if init is None or isinstance(init, dict) else {"km2a": init}
        truth = None if truth is None or isinstance(truth, dict) else {"km2a": truth}
    missing = [d for d in dets if d not in geometry or d not in nominal]
    if missing:
        raise ValueError(f"no geometry/nominal response for {missing} (detectors {dets})")
    if _n_events(batch) == 0:
        raise ValueError("calib.learn: no events to learn from")
    dt = _dtype(cfg)
    nom = _cast({d: nominal[d] for d in dets}, dt)
    constraints = {d: (constraints or {}).get(d) or R.default_constraints(d, geometry[d])
                   for d in dets}   # given ones, the defaults for the others
    learn_fields = lcfg.fields_of(dets)
    start = {d: R.init_params(nom[d], dt) if init is None or d not in init
             else _cast(R.extract(init[d], nominal[d]), dt) for d in dets}
    n_hits = channel_hits(batch, dets)
    step, opt = _step_fn(cfg, lcfg, tuple(sorted(learn_fields.items())))
    return LearnProblem(
        cfg=cfg, lcfg=lcfg, batch=batch, blocks=_blocks(batch, dets),
        geometry=_cast({d: geometry[d] for d in dets}, dt), nominal=nom,
        constraints=_cast(constraints, dt),
        frozen={d: {f: getattr(start[d], f) for f in PARAM_FIELDS[d]} for d in dets},
        learn_fields=learn_fields,
        learn_masks={d: {f: jnp.asarray(n_hits[d][f] >= lcfg.learn_min_hits) for f in fs}
                     for d, fs in learn_fields.items()},
        n_hits=n_hits,
        monitored={d: {f: (n_hits[d][f] >= lcfg.min_hits) & (n_hits[d][f] >= lcfg.learn_min_hits)
                       for f in n_hits[d]} for d in dets},
        base={d: nominal[d] if init is None or d not in init else init[d] for d in dets},
        truth=None if truth is None else {d: truth[d] for d in dets},
        truth_nominal=nominal, truth_constraints=constraints,
        step=step, opt=opt, fingerprint=_fingerprint(batch, cfg, lcfg, learn_fields))


class LearnState(NamedTuple):
    """What one :func:`learn_step` changes, and exactly what a checkpoint holds.

    outer : outer iterations done
    trainable : {detector: {learned raw field: values / SCALES[kind]}} (the optimiser's variables)
    opt_state : the optax state of ``trainable`` (its step count drives the learning-rate
        schedule, so a resumed run continues the same schedule)
    showers : Shower (N,) numpy of the last outer iteration's fits (the next fits start from
        them), None before the first
    loss : the loss of every optimiser step so far
    records : one dict per outer iteration done (:func:`learn_step`'s metrics)
    """

    outer: int
    trainable: dict
    opt_state: object
    showers: Optional[Shower]
    loss: tuple
    records: tuple


def learn_init(problem: LearnProblem) -> LearnState:
    """The state before the first outer iteration: the starting parameters (nominal or
    ``init``), a fresh optimiser state, no showers yet."""
    trainable = {d: {f: problem.frozen[d][f] / SCALES[_kind(f)] for f in fs}
                 for d, fs in problem.learn_fields.items()}
    return LearnState(outer=0, trainable=trainable, opt_state=problem.opt.init(trainable),
                      showers=None, loss=(), records=())


def _fit_all(batch, blocks, geos, resps, cfg, showers, fit_batch_size):
    """Fit every event: (Shower (N,) numpy, status (N,), nll (N,)). ``showers`` None: seeds
    from ``joint.pipeline.prepare``; else warm start from them on the channels around them."""
    nll_fn = nll_function(cfg)
    n = _n_events(batch)
    size = min(fit_batch_size, n)
    parts = []
    for start in range(0, n, size):
        real = np.arange(start, min(n, start + size))
        idx = np.concatenate([real, np.full(size - real.size, real[-1])])
        if showers is None:
            seeds, data = prepare(_take(batch, idx), geos, resps, cfg)
        else:
            seeds = _cast(Shower(*_take(tuple(showers), idx)), _dtype(cfg))
            data = _select_fn(cfg)(_cast(_take(blocks, idx), _dtype(cfg)), geos, resps, seeds)
        result, info = fitmod.fit_events(nll_fn, data, seeds, cfg.fit_config)
        parts.append((real.size, result, info))
    cat = lambda get: np.concatenate([np.asarray(get(r, i))[:k] for k, r, i in parts])
    shower = Shower(**{f: cat(lambda r, i, f=f: getattr(r.shower, f)) for f in FIELDS})
    return shower, cat(lambda r, i: i.status), cat(lambda r, i: r.nll)


def learn_step(state: LearnState, problem: LearnProblem, *, on_step=None) -> tuple[LearnState, dict]:
    """One outer iteration: (a) fit every event's Shower with the current Response (warm start
    from ``state.showers``), (b) ``lcfg.n_steps`` optimiser steps on minibatches of the usable
    events (drawn from ``lcfg.seed`` and the outer index only, so the result depends on the
    state and the problem alone). ``state`` is not changed.

    on_step : optional callable ``(outer, step index, loss)`` after each optimiser step
        (the progress bar)

    Returns (the next state, the outer iteration's record): ``outer``, ``fit_nll`` (mean nll of
    the usable fits), ``n_usable``, ``status_counts``, ``loss`` (mean step loss), ``dparam``
    {field: rms change of the projected parameter on the monitored channels}, ``fit_seconds``,
    ``step_seconds``, and with ``problem.truth`` ``errors`` (:func:`response_errors` on the
    monitored channels, common shift removed).
    """
    cfg, lcfg, outer, n = problem.cfg, problem.lcfg, state.outer, problem.n_events
    dt = _dtype(cfg)
    before = problem.canonical(state.trainable)
    t_fit = time.perf_counter()
    showers, status, fit_nll = _fit_all(problem.batch, problem.blocks, problem.geometry,
                                        problem.responses(state.trainable), cfg, state.showers,
                                        lcfg.fit_batch_size)
    usable = np.isin(status, [_STATUS_CODES[s] for s in lcfg.use_status]) & np.isfinite(fit_nll)
    for f in FIELDS:
        usable &= np.isfinite(getattr(showers, f))
    idx_ok = np.nonzero(usable)[0]
    if idx_ok.size == 0:
        raise RuntimeError(f"outer iteration {outer}: no usable shower fit "
                           f"(status counts {np.bincount(status, minlength=4).tolist()})")
    n_total = jnp.asarray(float(idx_ok.size), dt)
    b = min(lcfg.batch_size, n)
    rng = np.random.default_rng([lcfg.seed, outer])
    order = np.concatenate([rng.permutation(idx_ok)
                            for _ in range(-(-lcfg.n_steps * b // idx_ok.size) + 1)])
    sh = _cast(showers, dt)
    trainable, opt_state, losses = state.trainable, state.opt_state, []
    t_step = time.perf_counter()
    t_fit = t_step - t_fit
    for s in range(lcfg.n_steps):
        sel = order[s * b:(s + 1) * b]
        trainable, opt_state, nll = problem.step(
            trainable, opt_state, problem.frozen, problem.learn_masks, problem.nominal,
            problem.constraints, problem.geometry, jax.tree_util.tree_map(lambda a: a[sel], sh),
            _cast(_take(problem.blocks, sel), dt), jnp.ones(b, dt), n_total)
        losses.append(float(nll))
        if on_step is not None:
            on_step(outer, s, losses[-1])
    t_step = time.perf_counter() - t_step
    after = problem.canonical(trainable)
    dparam = {}
    for d, fs in problem.learn_fields.items():
        for f in fs:
            m = problem.monitored[d].get(f)
            diff = getattr(after[d], f) - getattr(before[d], f)
            diff = diff[m] if m is not None and np.any(m) else diff.reshape(-1)
            dparam[f] = float(np.sqrt(np.mean(diff ** 2)))
    rec = {"outer": outer, "fit_nll": float(np.mean(fit_nll[usable])),
           "n_usable": int(usable.sum()),
           "status_counts": np.bincount(status, minlength=4)[:4].tolist(),
           "loss": float(np.mean(losses)), "dparam": dparam,
           "fit_seconds": t_fit, "step_seconds": t_step}
    if problem.truth is not None:
        rec["errors"] = response_errors(_numpy(problem.responses(trainable), problem.base),
                                        problem.truth, problem.truth_nominal,
                                        problem.truth_constraints, masks=problem.monitored)
    return LearnState(outer=outer + 1, trainable=trainable, opt_state=opt_state, showers=showers,
                      loss=state.loss + tuple(losses), records=state.records + (rec,)), rec


# ---------------------------------------------------------------------------------------------
# checkpoints: a LearnState on disk
# ---------------------------------------------------------------------------------------------
def _fingerprint(batch, cfg, lcfg, learn_fields) -> dict:
    """Events (run, event id, time) and settings a checkpoint belongs to (not ``n_outer``: a
    resumed run may go further)."""
    h = hashlib.sha256()
    for a in (batch.run, batch.event_id, batch.time_mjd):
        h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    settings = dataclasses.asdict(lcfg)
    settings.pop("n_outer")
    return {"n_events": _n_events(batch), "events_sha256": h.hexdigest(),
            "detectors": list(cfg.detectors), "reconstruction": repr(cfg),
            "learn": json.loads(json.dumps(settings, default=list)),
            "fields": {d: list(fs) for d, fs in learn_fields.items()}}


def save_checkpoint(path, state: LearnState, problem: LearnProblem) -> None:
    """Write ``state`` to ``path`` (``.npz``, atomically): ``params/<det>/<field>`` (trainable),
    ``opt/<i>`` (the optimiser state's leaves in pytree order), ``shower/<field>`` (absent
    before the first fit) and ``meta``, a JSON string of ``outer``, ``loss``, ``records`` and
    the problem's ``fingerprint``; a readable copy of ``meta`` goes beside it (``<path>.json``)."""
    path = Path(path)
    arrays = {f"params/{d}/{f}": np.asarray(v) for d, fs in state.trainable.items()
              for f, v in fs.items()}
    for i, leaf in enumerate(jax.tree_util.tree_leaves(state.opt_state)):
        arrays[f"opt/{i}"] = np.asarray(leaf)
    if state.showers is not None:
        for f in FIELDS:
            arrays[f"shower/{f}"] = np.asarray(getattr(state.showers, f))
    text = json.dumps({"outer": state.outer, "loss": list(state.loss),
                       "records": list(state.records), "fingerprint": problem.fingerprint},
                      indent=1)
    arrays["meta"] = np.asarray(text)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())
    atomic_write(path.with_name(path.name + ".json"), (text + "\n").encode())


def load_checkpoint(path, problem: LearnProblem) -> LearnState:
    """The :class:`LearnState` saved by :func:`save_checkpoint`, for ``problem`` (whose
    :func:`learn_init` state gives the pytree structures and dtypes). ValueError naming the
    file when it was written for other events or settings (its fingerprint differs)."""
    path = Path(path)
    template = learn_init(problem)
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        saved = meta.get("fingerprint", {})
        for k, v in problem.fingerprint.items():
            if saved.get(k) != v:
                raise ValueError(f"{path}: checkpoint field 'fingerprint.{k}' does not match this "
                                 f"run ({saved.get(k)!r} vs {v!r}); remove the "
                                 "checkpoint or use the same events and settings")
        trainable = {d: {f: jnp.asarray(z[f"params/{d}/{f}"], v.dtype) for f, v in fs.items()}
                     for d, fs in template.trainable.items()}
        leaves, treedef = jax.tree_util.tree_flatten(template.opt_state)
        n_saved = sum(1 for k in z.files if k.startswith("opt/"))
        if n_saved != len(leaves):
            raise ValueError(f"{path}: 'opt' holds {n_saved} optimiser leaves, the optimiser "
                             f"has {len(leaves)} (different settings?)")
        opt_state = jax.tree_util.tree_unflatten(
            treedef, [jnp.asarray(z[f"opt/{i}"], np.asarray(l).dtype) for i, l in enumerate(leaves)])
        showers = (Shower(**{f: np.asarray(z[f"shower/{f}"]) for f in FIELDS})
                   if f"shower/{FIELDS[0]}" in z.files else None)
    return LearnState(outer=int(meta["outer"]), trainable=trainable, opt_state=opt_state,
                      showers=showers, loss=tuple(meta["loss"]), records=tuple(meta["records"]))


# ---------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------
def learn_response(batch, geometry: dict, nominal: dict, cfg=None, lcfg: LearnConfig = LearnConfig(),
                   *, constraints: dict | None = None, init: dict | None = None,
                   truth: dict | None = None, checkpoint=None, progress: bool = True,
                   log=None) -> tuple[dict, dict]:
    """Learn the Response of the detectors of ``cfg`` from the events of one period:
    :func:`learn_problem`, :func:`learn_init` (or :func:`load_checkpoint`), :func:`learn_step`
    until ``lcfg.n_outer`` outer iterations are done (:func:`save_checkpoint` after each).

    Parameters
    ----------
    batch : dense Event batch of all the events (``joint.io.schema.to_event_batch``, numpy or jax)
    geometry, nominal : {detector: Geometry}, {detector: nominal Response} (e.g.
        ``joint.config.detector_setup``); a KM2A-only run may pass the KM2A objects
    cfg : ``joint.config.ReconstructionConfig`` of the shower fits (default: KM2A, hadron)
    lcfg : :class:`LearnConfig`
    constraints : {detector: Constraints} (detectors not given: ``calib.response.
        default_constraints`` of their geometry: means over the live channels, time planes)
    init : {detector: Response} to start from (default: the nominal Response)
    truth : {detector: Response} of the simulation (tests, benchmarks): the history then has the
        rms error against it per outer iteration (:func:`response_errors` on the monitored
        channels, common shift removed)
    checkpoint : path of the checkpoint ``.npz`` (resumed when it exists; see the module doc)
    progress : tqdm bar (loss and parameter change);  log : optional ``print``-like callable

    Returns
    -------
    (responses {detector: Response with numpy arrays}, history dict) with history keys
    ``loss`` (nll of every optax step), ``outer`` (per outer iteration: ``fit_nll`` mean nll
    of the usable fits, ``n_usable``, ``status_counts``, ``loss`` mean step loss, ``dparam``
    {field: rms change of the projected parameter on the monitored channels}, and with
    ``truth`` ``errors`` {field: {"rms_error", "rms_true", "n"}}), ``n_hits``
    {detector: {field: hits per channel}}, ``monitored`` {detector: {field: bool mask}},
    ``fields``, ``n_events``, ``resumed_from`` (outer iterations found in the checkpoint).
    """
    from tqdm import tqdm

    problem = learn_problem(batch, geometry, nominal, cfg, lcfg, constraints=constraints,
                            init=init, truth=truth)
    if log is print and progress:
        log = tqdm.write  # lines above the bar instead of through it
    ckpt = None if checkpoint is None else Path(checkpoint)
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, problem)
        if log:
            log(f"resumed from {ckpt}: {state.outer} outer iteration(s), {len(state.loss)} "
                "steps done")
    else:
        state = learn_init(problem)
    resumed_from = state.outer
    bar = tqdm(total=max(lcfg.n_outer - state.outer, 0) * lcfg.n_steps, unit="step",
               disable=not progress, desc="calibrate " + "+".join(problem.cfg.detectors))

    def on_step(outer, s, loss):
        bar.update(1)
        if s % 10 == 0 or s == lcfg.n_steps - 1:
            bar.set_postfix(outer=outer, loss=f"{loss:.2f}")

    while state.outer < lcfg.n_outer:
        state, rec = learn_step(state, problem, on_step=on_step)
        bar.set_postfix(outer=rec["outer"], loss=f"{rec['loss']:.2f}",
                        **{f"d_{k}": f"{v:.3g}" for k, v in rec["dparam"].items()})
        if log:
            log(_describe(rec, problem.n_events))
        if ckpt is not None:
            save_checkpoint(ckpt, state, problem)
    bar.close()
    return problem.result(state), problem.history(state, resumed_from)


def _describe(rec: dict, n: int) -> str:
    """One log line of an outer iteration's record."""
    msg = (f"outer {rec['outer']}: {rec['n_usable']}/{n} usable fits, mean fit nll "
           f"{rec['fit_nll']:.2f}, step loss {rec['loss']:.2f} ({rec['fit_seconds']:.1f} s fits, "
           f"{rec['step_seconds']:.1f} s steps); rms change "
           + ", ".join(f"{k} {v:.3g}" for k, v in rec["dparam"].items()))
    if rec.get("errors"):
        msg += "; rms error " + ", ".join(f"{k} {v['rms_error']:.3g} (true {v['rms_true']:.3g})"
                                          for k, v in rec["errors"].items() if k in rec["dparam"])
    return msg


def _numpy(resps: dict, base: dict) -> dict:
    """``base`` Responses (the caller's nominal or ``init``, untouched) with the learned fields
    of ``resps`` as float64 numpy arrays (so that fields that are not learned compare equal to
    the nominal ones, e.g. in ``calib.db.make_entry``)."""
    return {d: base[d]._replace(**{f: np.asarray(getattr(r, f), np.float64)
                                   for f in R.LEARNED_FIELDS[d]})
            for d, r in resps.items()}
