"""Batched maximum-likelihood fitter: fixed-iteration damped Newton steps, with the curvature
from Fisher scoring (the expected information, ``FitConfig.algorithm = "scoring"``: what the
reconstruction pipeline runs first, ``joint.pipeline``) or from the exact Hessian
(``"newton"``, the default of :class:`FitConfig`: any ``nll_fn``; the pipeline's last straggler
pass). The pipeline's iteration counts are ``joint.config.ReconstructionConfig`` (12 scoring +
12 scoring for the stragglers + 6 exact-Hessian); ``FitConfig.n_iter`` defaults to 25 for direct
callers.

The fitter knows nothing about detectors. It receives a per-event negative log-likelihood
``nll_fn(shower, data_one_event) -> scalar`` (pure JAX) and minimises it for a whole batch of
events at once with ``jax.jit(jax.vmap(fit_one))``.

Why this algorithm (numbers from ``PERFORMANCE.md``)
----------------------------------------------------
* **Fixed number of iterations, no ``while_loop``** (§6, §1.4). Under ``vmap`` a batched
  ``while_loop`` runs until the *slowest* member finishes, so one straggler sets the cost of the
  whole batch: optimistix ``LevenbergMarquardt`` vmapped ran at 2.3 fits/s against ~10 fits/s
  looping single events, because one event hit ``max_steps``. A fixed-iteration
  Levenberg–Marquardt (``lax.scan``, accept/reject by ``jnp.where``) ran at 73–74 fits/s on the
  same model and machine (~15x default Minuit, ~2x scipy ``least_squares``). The convergence
  census (median 5, p90 12, 95 % within 20 iterations) motivates the default
  ``n_iter = 25``; events that do not converge are *flagged* (:data:`MAX_ITER`) rather than
  allowed to hold the batch hostage; a caller may refit them in a small second pass (§6, item 3).
* **Direction cosines** (u, v) = sin θ (cos φ, sin φ) instead of (θ, φ) (§1.4): with (θ, φ)
  6 of 40 events (15 %) stalled when a step crossed the zenith; (u, v) raised the fraction
  reaching the MIGRAD minimum from 83 % to 95 % at 20 iterations. Core offsets are in units of
  100 m, t0 in 10 ns, Xmax in 100 g/cm² so that every internal coordinate is O(1).
* **Exact Hessian where scoring fails** (§1.4, last failure): the remaining
  failure there sat on the saddle (u, v) = (0, 0) that a positive-definite Fisher matrix
  converges to. The likelihood is also non-Gaussian (Poisson counts, mixtures), so we use the
  true Hessian (forward-over-reverse, one pass gives value, gradient and Hessian) and make it
  positive definite by taking the absolute values of its eigenvalues ("saddle-free Newton"):
  along a direction of negative curvature the step goes *downhill* instead of towards the
  saddle. The eigen-decomposition is taken of the Jacobi-scaled Hessian D^-1/2 H D^-1/2
  (D = diag|H|), so that the eigenvalue floor does not depend on units: without it, float32 fits
  crawled along the strongly correlated core–t0 valley (condition number ~10⁶ in the toy of
  ``tests/test_fit.py``). On top of that Marquardt damping ``A = |Ĥ| + λ diag(|Ĥ|)`` and a
  per-coordinate trust region (100 m in the core, 0.05 in u/v, 0.3 in log10 E, ...) keep steps
  sane far from the minimum. The cost per iteration is one value+gradient+Hessian evaluation (≈ p gradient
  evaluations, p the number of free parameters: the same order as the p forward passes of a
  Gauss–Newton Jacobian) plus a p×p ``eigh`` and ``solve``, negligible for a 6 000-channel model.

Each iteration evaluates value, gradient and Hessian *at the trial point*; if the trial is
accepted (finite and lower nll) they are reused for the next step, otherwise discarded. So one
iteration costs exactly one Hessian evaluation whether the step is accepted or not.

Convergence is judged by the estimated distance to the minimum ``edm = ½ gᵀ|H|⁻¹g`` (the Newton
decrement, Minuit's EDM) being below ``tol`` with a positive-definite Hessian, not by a
stalled nll, so that a fit whose λ exploded far from the minimum is not called converged.

Status codes (:attr:`FitInfo.status`, int32), in order of precedence
--------------------------------------------------------------------
* :data:`NON_FINITE` (2): the final nll, or the error of a free field, is not finite (data with
  NaN, a singular or indefinite Hessian: a parameter the data do not constrain).
* :data:`OUT_OF_BOUNDS` (3): a free parameter sits on a bound of :class:`FitConfig` (every
  trial point is projected into the bounds, so the result is always inside them).
* :data:`CONVERGED` (0): ``edm < tol`` and the Hessian is positive definite.
* :data:`MAX_ITER` (1): anything else after ``n_iter`` iterations.

Failure is a value, never an exception: one bad event does not affect its neighbours.

Internal coordinates (:func:`internal_names`, :func:`to_internal`, :func:`from_internal`)
-----------------------------------------------------------------------------------------
=================  =====================================  ==========================
internal name      definition                             trust-region radius
=================  =====================================  ==========================
core_x, core_y     (core - seed core) / 100 m             1.0  (100 m)
u, v               sin θ cos φ, sin θ sin φ               0.05 (~3°)
log10_energy       log10(E/GeV)                           0.3
xmax               Xmax / (100 g/cm²)                     1.0  (100 g/cm²)
log_muon_scale     as is                                  0.5
t0                 (t0 - seed t0) / 10 ns                 5.0  (50 ns)
=================  =====================================  ==========================

(u, v) are both free whenever ``zenith`` or ``azimuth`` is in ``FitConfig.free``. Fixed fields
are taken from the seed unchanged (bit for bit). A seed exactly at the zenith is nudged to
sin θ = 1e-4 (0.006°) because the map (u, v) -> (θ, φ) has no derivative at u = v = 0.

Bounds: zenith <= ``max_zenith`` (80°), |core_x|, |core_y| <= ``max_core`` (3 km, a square),
log10 E, Xmax and log_muon_scale within their ``*_bounds``; t0 is unbounded.

The compiled batched fitter is cached per ``(nll_fn, terms_fn, config, data_axes)``: pass the
same function object (not a fresh ``lambda``) to reuse it. :func:`trace_count` counts traces.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from detectors.shower import FIELDS, Shower, direction_cosines, from_direction_cosines
from joint.traced import disk_jit

__all__ = [
    "CONVERGED",
    "MAX_ITER",
    "NON_FINITE",
    "OUT_OF_BOUNDS",
    "STATUS_NAMES",
    "DEFAULT_FREE",
    "FitConfig",
    "FitResult",
    "FitInfo",
    "internal_names",
    "to_internal",
    "from_internal",
    "fit_events",
    "ScoringModel",
    "SolverState",
    "ALGORITHMS",
    "cramer_rao",
    "pulls",
    "trace_count",
]

#: Status codes of :attr:`FitInfo.status`.
CONVERGED = 0
MAX_ITER = 1
NON_FINITE = 2
OUT_OF_BOUNDS = 3
STATUS_NAMES = {CONVERGED: "converged", MAX_ITER: "max_iter", NON_FINITE: "non_finite",
                OUT_OF_BOUNDS: "out_of_bounds"}

#: Free fields by default: everything except Xmax (fixed unless WFCTA constrains it).
DEFAULT_FREE = ("core_x", "core_y", "zenith", "azimuth", "log10_energy", "log_muon_scale", "t0")

# internal name -> (scale, relative to the seed?, trust-region radius in internal units)
_SLOTS = {
    "core_x": (100.0, True, 1.0),
    "core_y": (100.0, True, 1.0),
    "u": (1.0, False, 0.05),
    "v": (1.0, False, 0.05),
    "log10_energy": (1.0, False, 0.3),
    "xmax": (100.0, False, 1.0),
    "log_muon_scale": (1.0, False, 0.5),
    "t0": (10.0, True, 5.0),
}
_MIN_SIN_ZENITH = 1e-4  # seeds closer to the zenith than this are nudged (see module docstring)

_TRACES = {"fit_events": 0}


def trace_count() -> int:
    """How many times the batched fitter has been traced (for no-retrace tests)."""
    return _TRACES["fit_events"]


class FitConfig(NamedTuple):
    """Static configuration of the fitter (hashable: it keys the compilation cache).

    Attributes
    ----------
    free : tuple of Shower field names that are fitted; the others stay at the seed.
    n_iter : number of damped-Newton iterations, run by every event (no early exit).
    tol : convergence threshold on edm = ½ gᵀ|H|⁻¹g [nll units]; also the nll improvement
        that counts as progress for :attr:`FitInfo.n_iter`.
    lambda0, lambda_up, lambda_down, lambda_min, lambda_max : Marquardt damping: initial value,
        factor on a rejected / accepted step, and its range.
    max_zenith : [rad] upper bound of the zenith angle.
    max_core : [m] bound on |core_x| and |core_y|.
    log10_energy_bounds, xmax_bounds [g/cm²], log_muon_scale_bounds : (low, high).
    step_scale : multiplies every trust-region radius (see the module docstring).
    algorithm : "newton" (exact Hessian of ``nll_fn``, forward-over-reverse) or "scoring"
        (Fisher scoring: ``nll_fn`` must be a :class:`ScoringModel`; the curvature is Jᵀ W J of
        its predictions, several times cheaper per iteration, docs/fitter.md).
    """

    free: tuple = DEFAULT_FREE
    n_iter: int = 25
    tol: float = 1e-3
    lambda0: float = 1e-3
    lambda_up: float = 10.0
    lambda_down: float = 0.3
    lambda_min: float = 1e-9
    lambda_max: float = 1e9
    max_zenith: float = math.radians(80.0)
    max_core: float = 3000.0
    log10_energy_bounds: tuple = (2.0, 9.0)
    xmax_bounds: tuple = (100.0, 1500.0)
    log_muon_scale_bounds: tuple = (-10.0, 5.0)
    step_scale: float = 1.0
    algorithm: str = "newton"


#: the fitter's algorithms (:attr:`FitConfig.algorithm`)
ALGORITHMS = ("newton", "scoring")


class SolverState(NamedTuple):
    """The per-event state carried through the iterations (internal coordinates, p free)."""

    theta: jnp.ndarray      # (p,) current point
    fval: jnp.ndarray       # nll at theta (+inf before the seed is evaluated)
    grad: jnp.ndarray       # (p,) gradient at theta
    hess: jnp.ndarray       # (p, p) curvature at theta (exact Hessian or expected information)
    lam: jnp.ndarray        # Marquardt damping
    last: jnp.ndarray       # int32: last iteration that improved the nll by more than tol


class FitResult(NamedTuple):
    """Fitted showers of a batch of B events.

    Attributes
    ----------
    shower : Shower, leaves (B,), canonical units.
    covariance : (B, 8, 8), order of ``detectors.shower.FIELDS``, physical units; zero rows and
        columns for fixed fields. Inverse Hessian at the minimum, propagated from the internal
        coordinates with the Jacobian of :func:`from_internal`.
    errors : (B, 8) square root of the covariance diagonal (NaN where it is negative).
    nll : (B,) negative log-likelihood at the minimum (+inf when no finite value was found; the
        covariance is then NaN).
    nll_terms : dict name -> (B,) from ``terms_fn`` at the minimum, or None.
    """

    shower: Shower
    covariance: jnp.ndarray
    errors: jnp.ndarray
    nll: jnp.ndarray
    nll_terms: Optional[dict] = None


class FitInfo(NamedTuple):
    """Diagnostics of a batch of B fits.

    Attributes
    ----------
    status : (B,) int32, one of CONVERGED, MAX_ITER, NON_FINITE, OUT_OF_BOUNDS.
    n_iter : (B,) int32, index (1 .. ``config.n_iter``) of the last accepted step that lowered
        the nll by more than ``tol`` (0: the seed was never improved on).
    grad_norm : (B,) Euclidean norm of the gradient in internal coordinates at the result.
    edm : (B,) estimated distance to the minimum, ½ gᵀ|H|⁻¹g [nll units].
    """

    status: jnp.ndarray
    n_iter: jnp.ndarray
    grad_norm: jnp.ndarray
    edm: jnp.ndarray


# ---------------------------------------------------------------------------------------------
# internal coordinates
# ---------------------------------------------------------------------------------------------

def _check_free(config: FitConfig) -> None:
    unknown = set(config.free) - set(FIELDS)
    if unknown:
        raise ValueError(f"FitConfig.free has unknown field(s) {sorted(unknown)}; valid: {FIELDS}")
    if not config.free:
        raise ValueError("FitConfig.free is empty: nothing to fit")


def internal_names(config: FitConfig) -> tuple:
    """Names of the internal coordinates for ``config``, in the order of the flat vector θ."""
    _check_free(config)
    names = []
    direction_free = "zenith" in config.free or "azimuth" in config.free
    for f in FIELDS:
        if f in ("zenith", "azimuth"):
            if direction_free and "u" not in names:
                names += ["u", "v"]
        elif f in config.free:
            names.append(f)
    return tuple(names)


def to_internal(shower: Shower, seed: Shower, config: FitConfig) -> jnp.ndarray:
    """Flat vector θ (p,) of the free internal coordinates of ``shower`` (one event).
    Core and t0 are measured from ``seed``'s."""
    vals = []
    u, v = direction_cosines(shower.zenith, shower.azimuth)
    for n in internal_names(config):
        if n == "u":
            vals.append(u)
        elif n == "v":
            vals.append(v)
        else:
            scale, relative, _ = _SLOTS[n]
            x = getattr(shower, n)
            if relative:
                x = x - getattr(seed, n)
            vals.append(x / scale)
    return jnp.stack(vals)


def from_internal(theta, seed: Shower, config: FitConfig) -> Shower:
    """The Shower (one event) for internal coordinates θ (p,); fixed fields are ``seed``'s."""
    names = internal_names(config)
    fields = seed._asdict()
    for i, n in enumerate(names):
        if n in ("u", "v"):
            continue
        scale, relative, _ = _SLOTS[n]
        x = theta[i] * scale
        fields[n] = x + getattr(seed, n) if relative else x
    if "u" in names:
        iu = names.index("u")
        fields["zenith"], fields["azimuth"] = from_direction_cosines(theta[iu], theta[iu + 1])
    return Shower(**fields)


def _physical_vector(theta, seed, config):
    return jnp.stack(list(from_internal(theta, seed, config)))


def _nudge_vertical(theta, names):
    """Move (u, v) off the exact zenith, where (θ, φ) are not differentiable."""
    if "u" not in names:
        return theta
    iu = names.index("u")
    u, v = theta[iu], theta[iu + 1]
    s = jnp.sqrt(u * u + v * v)
    small = s < _MIN_SIN_ZENITH
    s_safe = jnp.where(small, 1.0, s)
    u_new = jnp.where(small, jnp.where(s > 0, u / s_safe, 1.0) * _MIN_SIN_ZENITH, u)
    v_new = jnp.where(small, jnp.where(s > 0, v / s_safe, 0.0) * _MIN_SIN_ZENITH, v)
    return theta.at[iu].set(u_new).at[iu + 1].set(v_new)


def _box(seed, config, names, dtype):
    """Lower and upper bounds (p,) of the box-bounded internal coordinates (±inf for u, v, t0)."""
    lo, hi = [], []
    inf = jnp.asarray(jnp.inf, dtype)
    for n in names:
        if n in ("core_x", "core_y"):
            c = getattr(seed, n)
            lo.append((-config.max_core - c) / 100.0)
            hi.append((config.max_core - c) / 100.0)
        elif n == "log10_energy":
            lo.append(jnp.asarray(config.log10_energy_bounds[0], dtype))
            hi.append(jnp.asarray(config.log10_energy_bounds[1], dtype))
        elif n == "xmax":
            lo.append(jnp.asarray(config.xmax_bounds[0] / 100.0, dtype))
            hi.append(jnp.asarray(config.xmax_bounds[1] / 100.0, dtype))
        elif n == "log_muon_scale":
            lo.append(jnp.asarray(config.log_muon_scale_bounds[0], dtype))
            hi.append(jnp.asarray(config.log_muon_scale_bounds[1], dtype))
        else:
            lo.append(-inf)
            hi.append(inf)
    return jnp.stack(lo).astype(dtype), jnp.stack(hi).astype(dtype)


def _project(theta, lo, hi, names, config):
    """Project θ into the bounds; returns (θ_projected, on_bound)."""
    theta = jnp.clip(theta, lo, hi)
    on_bound = jnp.any((theta <= lo) | (theta >= hi))
    if "u" in names:
        iu = names.index("u")
        u, v = theta[iu], theta[iu + 1]
        smax = math.sin(config.max_zenith)
        s = jnp.sqrt(u * u + v * v)
        outside = s > smax
        f = jnp.where(outside, smax / jnp.where(outside, s, 1.0), 1.0)
        theta = theta.at[iu].set(u * f).at[iu + 1].set(v * f)
        on_bound = on_bound | (s >= smax * (1.0 - 1e-6))
    return theta, on_bound


# ---------------------------------------------------------------------------------------------
# the per-event solver
# ---------------------------------------------------------------------------------------------

def _jacobi(H):
    """Scale factors d (p,) with d_i = sqrt|H_ii| (1 where H_ii = 0): the fitter works with
    D^-1/2 H D^-1/2, whose diagonal is ±1, so that the eigenvalue floor and the damping do not
    depend on the units of the internal coordinates (matters in float32)."""
    dg = jnp.abs(jnp.diagonal(H))
    return jnp.sqrt(jnp.where(dg > 0, dg, 1.0))


def _abs_eig(H):
    """Eigen-decomposition of the symmetrised H with |eigenvalues| floored (positive definite)."""
    H = 0.5 * (H + H.T)
    w, Q = jnp.linalg.eigh(H)
    aw = jnp.abs(w)
    eps = jnp.finfo(H.dtype).eps
    floor = jnp.max(aw) * (10.0 * eps) + 1e-30
    return w, Q, jnp.maximum(aw, floor)


def _damped_step(g, H, lam, max_step):
    """Saddle-free Marquardt step: with the Jacobi-scaled Hessian Ĥ = D^-1/2 H D^-1/2 and
    ĝ = D^-1/2 g, solve (|Ĥ| + λ diag|Ĥ|) δ̂ = -ĝ, return δ = D^-1/2 δ̂ scaled into the
    per-coordinate trust region. Non-finite g or H give δ = 0 (the trial is then rejected)."""
    finite = jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(H))
    eye = jnp.eye(g.shape[0], dtype=g.dtype)
    H = jnp.where(finite, H, eye)
    g = jnp.where(finite, g, 0.0)
    d = _jacobi(H)
    _, Q, aw = _abs_eig(H / jnp.outer(d, d))
    Hm = (Q * aw) @ Q.T
    A = Hm + lam * jnp.diag(jnp.diag(Hm))
    step = -jnp.linalg.solve(A, g / d) / d
    mag = jnp.abs(step)
    ratio = jnp.where(mag > 0, max_step / jnp.where(mag > 0, mag, 1.0), jnp.inf)
    step = step * jnp.minimum(1.0, jnp.min(ratio))
    return jnp.where(finite & jnp.all(jnp.isfinite(step)), step, 0.0)


def _fit_one(nll_fn, terms_fn, config, data, seed):
    _TRACES["fit_events"] += 1  # Python side effect: runs once per trace
    names = internal_names(config)
    dtype = jnp.result_type(*seed)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    seed = Shower(*[jnp.asarray(x, dtype) for x in seed])
    max_step = jnp.asarray([_SLOTS[n][2] * config.step_scale for n in names], dtype)
    lo, hi = _box(seed, config, names, dtype)

    def f(theta):
        return nll_fn(from_internal(theta, seed, config), data)

    if config.algorithm == "scoring":
        def value_grad_hess(theta):
            # Fisher scoring: J = d(prediction)/dθ by forward mode (p passes of the model only),
            # gradient = Jᵀ ∂loss/∂prediction (exact), curvature = Jᵀ W J (expected information)
            def pred(t):
                out = nll_fn.predict(from_internal(t, seed, config), data)
                return out, out

            jac, prediction = jax.jacfwd(pred, has_aux=True)(theta)
            val, dpred = jax.value_and_grad(nll_fn.loss)(prediction, data)
            weights = nll_fn.weights(prediction, data)
            grad = sum(jnp.tensordot(d, j, axes=d.ndim) for d, j in
                       zip(jax.tree_util.tree_leaves(dpred), jax.tree_util.tree_leaves(jac)))
            hess = sum(jnp.einsum("...i,...,...j->ij", j, w, j) for w, j in
                       zip(jax.tree_util.tree_leaves(weights), jax.tree_util.tree_leaves(jac)))
            return val, grad, hess
    else:
        def value_grad_hess(theta):
            def grad_aux(t):
                val, grad = jax.value_and_grad(f)(t)
                return grad, (val, grad)

            hess, (val, grad) = jax.jacfwd(grad_aux, has_aux=True)(theta)
            return val, grad, hess

    theta0 = _nudge_vertical(to_internal(seed, seed, config).astype(dtype), names)
    theta0, _ = _project(theta0, lo, hi, names, config)
    p = theta0.shape[0]

    def all_finite(*xs):
        return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs]))

    def body(state: SolverState, k):
        theta, fval, grad, hess, lam, last = state
        step = _damped_step(grad, hess, lam, max_step)
        trial, _ = _project(theta + step, lo, hi, names, config)
        ft, gt, ht = (x.astype(dtype) for x in value_grad_hess(trial))
        ok = all_finite(ft, gt, ht) & ((ft < fval) | ~jnp.isfinite(fval))
        progress = ok & ((fval - ft > config.tol) | ~jnp.isfinite(fval))
        new = SolverState(
            jnp.where(ok, trial, theta),
            jnp.where(ok, ft, fval),
            jnp.where(ok, gt, grad),
            jnp.where(ok, ht, hess),
            jnp.where(k == 0, lam,
                      jnp.clip(jnp.where(ok, lam * config.lambda_down, lam * config.lambda_up),
                               config.lambda_min, config.lambda_max)).astype(dtype),
            jnp.where(progress, k, last),
        )
        return new, None

    # Iteration 0 evaluates the seed itself: with f = +inf and g = 0 its step is zero and its
    # trial is accepted whenever finite. Folding it into the scan keeps one copy of the
    # (expensive to compile) value+gradient+Hessian graph.
    state0 = SolverState(theta0, jnp.asarray(jnp.inf, dtype), jnp.zeros(p, dtype),
                         jnp.eye(p, dtype=dtype), jnp.asarray(config.lambda0, dtype),
                         jnp.asarray(0, jnp.int32))
    (theta, fval, grad, hess, _, last), _ = lax.scan(
        body, state0, jnp.arange(config.n_iter + 1, dtype=jnp.int32))

    # covariance: inverse of the exact Hessian, propagated to the physical fields
    hess_ok = jnp.all(jnp.isfinite(hess)) & jnp.all(jnp.isfinite(grad)) & jnp.isfinite(fval)
    hess_safe = jnp.where(hess_ok, hess, jnp.eye(theta.shape[0], dtype=dtype))
    d = _jacobi(hess_safe)
    w, Q, aw = _abs_eig(hess_safe / jnp.outer(d, d))
    positive = jnp.min(w) > 0
    w_safe = jnp.where(w != 0, w, jnp.nan)
    cov_internal = ((Q / w_safe) @ Q.T) / jnp.outer(d, d)
    qg = Q.T @ (jnp.where(hess_ok, grad, 0.0) / d)
    edm = jnp.where(hess_ok, 0.5 * jnp.sum(qg * qg / aw), jnp.nan)
    jac = jax.jacfwd(lambda t: _physical_vector(t, seed, config))(theta)  # (8, p)
    cov = jnp.where(hess_ok, jac @ cov_internal @ jac.T, jnp.nan)
    var = jnp.diagonal(cov)
    errors = jnp.sqrt(jnp.where(var >= 0, var, jnp.nan))
    free_mask = jnp.asarray([f in config.free or (f in ("zenith", "azimuth") and "u" in names)
                             for f in FIELDS])
    free_errors_ok = jnp.all(jnp.where(free_mask, jnp.isfinite(errors), True))

    _, on_bound = _project(theta, lo, hi, names, config)
    non_finite = ~jnp.isfinite(fval) | ~free_errors_ok | ~all_finite(theta)
    converged = positive & (edm < config.tol)
    status = jnp.where(non_finite, NON_FINITE,
                       jnp.where(on_bound, OUT_OF_BOUNDS,
                                 jnp.where(converged, CONVERGED, MAX_ITER))).astype(jnp.int32)

    shower = from_internal(theta, seed, config)
    terms = None if terms_fn is None else dict(terms_fn(shower, data))
    result = FitResult(shower=shower, covariance=cov, errors=errors, nll=fval, nll_terms=terms)
    info = FitInfo(status=status, n_iter=last, grad_norm=jnp.sqrt(jnp.sum(grad * grad)), edm=edm)
    return result, info


class ScoringModel(NamedTuple):
    """A likelihood written as ``loss(predict(shower, data), data)`` with a known expected
    information per predicted quantity, for Fisher scoring.

    predict : (shower, data) -> pytree of predictions (e.g. mean counts and times per channel)
    loss : (predictions, data) -> scalar −ln L
    weights : (predictions, data) -> pytree like the predictions: the expected information of
        each predicted number (1/variance, times the probability it is observed); 0 for
        predictions that only enter the loss as nuisances.

    Calling the model gives the nll, so it can be used wherever an ``nll_fn`` is expected. With
    ``FitConfig(algorithm="scoring")`` :func:`fit_events` replaces the exact Hessian by Jᵀ W J (J by forward mode
    through ``predict`` only), which is several times cheaper per iteration (docs/fitter.md),
    and the covariance is the inverse expected information at the minimum.
    """

    predict: Callable
    loss: Callable
    weights: Callable

    def __call__(self, shower, data):
        return self.loss(self.predict(shower, data), data)


_COMPILED: dict = {}


def _axes_key(data_axes):
    leaves, treedef = jax.tree_util.tree_flatten(data_axes, is_leaf=lambda x: x is None)
    return tuple(leaves), treedef


def fit_events(nll_fn: Callable[[Shower, Any], jnp.ndarray], data: Any, seeds: Shower,
               config: FitConfig = FitConfig(), *, terms_fn: Optional[Callable] = None,
               data_axes: Any = 0, trace_key: Optional[str] = None) -> tuple[FitResult, FitInfo]:
    """Fit a batch of B events.

    Parameters
    ----------
    nll_fn : ``nll_fn(shower, data_one_event) -> scalar``, pure JAX, for ONE event.
    data : pytree whose leaves have a leading batch axis B (per ``data_axes``).
    seeds : Shower with leaves (B,): starting values; fixed fields are copied from here.
    config : FitConfig (static).
    terms_fn : optional ``terms_fn(shower, data_one_event) -> dict[str, scalar]``, evaluated at
        the minimum (e.g. the nll per detector) and returned as ``FitResult.nll_terms``.
    data_axes : ``vmap`` in_axes for ``data`` (0, or a pytree prefix with None for leaves that
        are shared by all events).
    trace_key : a string naming everything ``nll_fn`` and ``terms_fn`` close over (e.g. the
        ``repr`` of the reconstruction configuration): the traced program is then stored on
        disk and reused by later processes (``joint.traced``); None: plain ``jax.jit``.

    Returns
    -------
    (FitResult, FitInfo), every leaf with leading axis B. Never raises for bad *values*
    (NaN data, divergent fits): see the status codes.
    """
    _check_free(config)
    if config.algorithm not in ALGORITHMS:
        raise ValueError(f"FitConfig.algorithm must be one of {ALGORITHMS}, got {config.algorithm!r}")
    if config.algorithm == "scoring" and not isinstance(nll_fn, ScoringModel):
        raise TypeError("FitConfig.algorithm='scoring' needs a joint.fit.ScoringModel "
                        f"(predict, loss, weights), got {type(nll_fn).__name__}")
    if not isinstance(seeds, Shower):
        raise TypeError(f"seeds must be a detectors.shower.Shower, got {type(seeds).__name__}")
    seeds = Shower(*[jnp.asarray(x) for x in seeds])
    shapes = {x.shape for x in seeds}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"seeds must have leaves of one shape (B,), got {sorted(shapes)}")
    key = (nll_fn, terms_fn, config, _axes_key(data_axes), trace_key)
    fn = _COMPILED.get(key)
    if fn is None:
        one = jax.vmap(partial(_fit_one, nll_fn, terms_fn, config), in_axes=(data_axes, 0))
        # the stored program's key says whether it returns nll_terms: a caller without
        # terms_fn must not get the program of one with it (same trace_key otherwise)
        fn = (jax.jit(one) if trace_key is None
              else disk_jit(one, "fit", repr((trace_key, config, _axes_key(data_axes),
                                              terms_fn is None))))
        _COMPILED[key] = fn
    return fn(data, seeds)


# ---------------------------------------------------------------------------------------------
# Cramér–Rao bound and pulls
# ---------------------------------------------------------------------------------------------

def cramer_rao(stats_fn: Callable[[Shower], list], shower: Shower,
               config: FitConfig = FitConfig()) -> jnp.ndarray:
    """Cramér–Rao bound (8, 8) for ONE event at ``shower`` (vmappable over showers).

    ``stats_fn(shower) -> [(mean, variance, weight), ...]``: arrays of the expected value of each
    observable, its variance and its weight (e.g. Poisson counts (μ, μ, 1); Gaussian times
    (t, σ², P(hit))). The Fisher information in the internal coordinates is

        I = Σ_k Σ_i w_ki (∂m_ki/∂θ)(∂m_ki/∂θ)ᵀ / var_ki,

    (variances and weights are not differentiated), and the bound I⁻¹ is propagated to the
    physical fields like :attr:`FitResult.covariance` (order of ``FIELDS``, zeros for fixed
    fields).
    """
    names = internal_names(config)
    theta0 = _nudge_vertical(to_internal(shower, shower, config), names)

    def means(theta):
        return [jnp.ravel(m) for m, _, _ in stats_fn(from_internal(theta, shower, config))]

    jacs = jax.jacfwd(means)(theta0)
    stats = stats_fn(from_internal(theta0, shower, config))
    fisher = 0.0
    for jac, (_, var, weight) in zip(jacs, stats):
        var = jnp.ravel(jnp.broadcast_to(var, jac.shape[:1]))
        weight = jnp.ravel(jnp.broadcast_to(weight, jac.shape[:1]))
        c = jnp.where(var > 0, weight / jnp.where(var > 0, var, 1.0), 0.0)
        fisher = fisher + (jac * c[:, None]).T @ jac
    cov_internal = jnp.linalg.inv(fisher)
    jac_phys = jax.jacfwd(lambda t: _physical_vector(t, shower, config))(theta0)
    return jac_phys @ cov_internal @ jac_phys.T


def pulls(result: FitResult, truth: Shower, config: Optional[FitConfig] = None) -> dict:
    """(reco - true) / error per free field, azimuth difference wrapped to (-π, π].

    Fields are those of ``config`` (zenith and azimuth both when the direction is free), or,
    without a config, those with a non-zero error in any event. Returns field -> array (B,).
    """
    idx = {f: i for i, f in enumerate(FIELDS)}
    if config is not None:
        names = internal_names(config)
        fields = [f for f in FIELDS
                  if f in config.free or (f in ("zenith", "azimuth") and "u" in names)]
    else:
        fields = [f for f in FIELDS if bool(jnp.any(result.errors[..., idx[f]] > 0))]
    out = {}
    for f in fields:
        diff = getattr(result.shower, f) - getattr(truth, f)
        if f == "azimuth":
            diff = jnp.pi - jnp.mod(jnp.pi - diff, 2.0 * jnp.pi)
        out[f] = diff / result.errors[..., idx[f]]
    return out
