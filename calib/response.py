"""Learnable per-channel response parameters of KM2A, WCDA and WFCTA, with their degeneracies fixed.

Each detector's calibration is a small named pytree of raw parameters (``KM2AParams``,
``WCDAParams``, ``WFCTAParams``) that ``apply`` turns into the detector's ``Response`` (a
``NamedTuple._replace`` of a nominal Response), and that ``extract`` recovers from a Response:

* KM2A: ``ed_log_gain`` (n_ed,), ``md_log_gain`` (n_md,) → ``ed_gain = nominal · exp(g)``,
  ``md_gain`` likewise; ``ed_time_offset`` (n_ed,), ``md_time_offset`` (n_md,) [ns] →
  ``ed_time_offset = nominal + δt``, ``md_time_offset`` likewise.
* WCDA: ``log_efficiency`` (n,) → ``efficiency = nominal · exp(e)``; ``time_offset`` (n,) [ns] →
  ``time_offset = nominal + δt``.
* WFCTA: ``pixel_log_gain`` (n_tel, 1024) → ``pixel_gain = nominal · exp(g)``;
  ``tel_log_efficiency`` (n_tel,) → ``tel_efficiency = nominal · exp(e)``. (WFCTA's model has no
  times, so no time offsets.)

Gains and efficiencies are log-ratios to the nominal values, time offsets are additive [ns]; all
raw parameters start at 0, which gives the nominal Response exactly.

Degeneracies (docs/calibration.md)
----------------------------------
The likelihood cannot tell some directions of parameter space from a change of the shower, so
``apply`` removes them with a linear projection ``x → x − Mᵀ (W x)`` (:class:`Projection`):
for each group k of channels, the weighted mean of the raw parameter over the group's *reference*
channels (row k of W, normalised to 1) is subtracted from every member of the group (row k of M).
The projection is idempotent and its image is {x : W x = 0}; the constraint therefore holds for
*any* raw parameters, and gradients w.r.t. the raw parameters have no component along the
degenerate directions.

* Time offsets: a common shift of all offsets of a detector equals a shift of the shower's t₀,
  and a common gradient across the array (offsets a + b·x + c·y) tilts every shower by the same
  angle (it is the pointing, which showers cannot measure; the Moon shadow or a source does), so
  by default the least-squares plane of the live channels' offsets is fixed to 0
  (``time_mean="plane"``: mean and gradient; KM2A EDs and MDs together). ``time_mean="detector"``
  fixes the mean only (the default without a geometry), ``"kind"`` the ED and MD means
  separately. Measured: with the mean only, learning wandered along the gradient and the
  angular resolution after calibration stayed ×1.09 of the perfect one (BENCHMARKS.md, issue 7).
* Gains (KM2A) and cell efficiencies (WCDA): a common scale is degenerate with the energy, so the
  mean log-gain (log-efficiency) over the reference channels is fixed to 0 — by default the live
  channels of each kind (ED, MD) or of the whole of WCDA (``efficiency_mean="pond"``: per pond),
  i.e. the scale stays that of the nominal single-particle / single-muon peak; optionally a list
  of reference channels (dense indices) whose mean log-gain is 0 (one channel: that channel is
  held at its nominal gain).
* WFCTA: a pixel-gain scale per telescope is degenerate with that telescope's efficiency, so the
  mean log-gain of the live pixels of each telescope is fixed to 0 and the telescope efficiency
  carries the scale; optionally one reference telescope's efficiency is held at nominal
  (``reference_tel``), which ties the WFCTA light scale when no other detector sets the energy.

Dead channels are shifted with their group but do not enter its mean.

Flax
----
:class:`KM2ACalibration`, :class:`WCDACalibration` and :class:`WFCTACalibration` are ``flax.nnx``
modules holding the raw parameters as ``nnx.Param`` and the projections as a non-trainable
:class:`Constraint` variable; ``module(nominal)`` returns the Response. An optax loop can use
either the module (``nnx.Optimizer(module, tx, wrt=nnx.Param)``) or the plain pytrees with the
pure functions (``optax`` on ``KM2AParams`` and ``apply_km2a``).

Everything here is pure JAX (jit, vmap and grad safe); numpy only builds the static projections.
"""
from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from detectors import km2a, registry, wcda, wfcta

__all__ = ["Projection", "project", "KM2AParams", "WCDAParams", "WFCTAParams", "KM2AConstraints",
           "WCDAConstraints", "WFCTAConstraints", "km2a_constraints", "wcda_constraints",
           "wfcta_constraints", "default_constraints", "apply_km2a", "apply_wcda", "apply_wfcta",
           "extract_km2a", "extract_wcda", "extract_wfcta", "apply", "extract", "init_params",
           "project_params", "Constraint", "KM2ACalibration", "WCDACalibration",
           "WFCTACalibration", "LEARNED_FIELDS", "DETECTOR_MODULES", "detector_of",
           "DetectorCalibration", "CALIBRATIONS"]



# ---------------------------------------------------------------------------------------------
# the projection that fixes the degeneracies
# ---------------------------------------------------------------------------------------------
class Projection(NamedTuple):
    """Linear constraints ``W x = 0`` imposed by ``x → x − Mᵀ (W x)`` on a flattened parameter.

    member : (K, n) float, 0/1 — channels that group k's mean is subtracted from (disjoint groups)
    weight : (K, n) float — weights of group k's reference channels, each row summing to 1;
        the references of a group are members of it (which makes the map idempotent)

    K = 0 means no constraint. The same form holds a least-squares plane (:func:`_plane_projection`):
    rows (1, x, y) of every channel in ``member`` and the pseudo-inverse over the live channels in
    ``weight`` (W Mᵀ = I, so the map is again idempotent).
    """

    member: jnp.ndarray
    weight: jnp.ndarray


def project(x, projection: Projection):
    """Project ``x`` (any shape with ``x.size == n``) onto {x : W x = 0}; same shape as ``x``."""
    flat = jnp.reshape(x, (-1,))
    mean = projection.weight @ flat
    return jnp.reshape(flat - projection.member.T @ mean, jnp.shape(x))


def _projection(groups: Sequence[np.ndarray], references: Sequence[np.ndarray], n: int,
                what: str) -> Projection:
    """Projection from boolean (n,) member masks and reference masks per group (numpy, static)."""
    k = len(groups)
    member = np.zeros((k, n))
    weight = np.zeros((k, n))
    taken = np.zeros(n, bool)
    for i, (g, r) in enumerate(zip(groups, references)):
        g, r = np.asarray(g, bool), np.asarray(r, bool)
        if np.any(taken & g):
            raise ValueError(f"{what}: constraint groups overlap")
        if np.any(r & ~g):
            raise ValueError(f"{what}: a reference channel is outside its group")
        if not np.any(r):
            raise ValueError(f"{what}: group {i} has no live reference channel, its scale "
                             "would be undetermined")
        taken |= g
        member[i] = g
        weight[i] = r / r.sum()
    return Projection(member=member, weight=weight)


def _plane_projection(xy, live, what: str) -> Projection:
    """Projection that removes the least-squares plane a + b·x + c·y of the live channels' values
    (their mean and their gradient across the array), from every channel."""
    xy = np.asarray(xy, np.float64)[:, :2]
    live = np.asarray(live, bool)
    if live.sum() < 3:
        raise ValueError(f"{what}: a plane needs at least 3 live channels")
    c = xy[live].mean(axis=0)
    scale = max(float(np.abs(xy[live] - c).max()), 1.0)
    a = np.column_stack([np.ones(len(xy)), (xy - c) / scale])           # (n, 3)
    a_live = a * live[:, None]
    weight = np.linalg.solve(a_live.T @ a_live, a_live.T)                # (3, n), 0 on dead
    return Projection(member=a.T.copy(), weight=weight)


def _time_projection(time_mean, pos, live, n, groups_kind, what):
    """Time-offset projection: "plane" (mean and gradient over the live channels: a gradient
    across the array tilts every shower, i.e. it is the pointing, which showers cannot measure),
    "detector" (one mean) or "kind" (one mean per group of ``groups_kind``)."""
    if time_mean == "plane":
        if pos is None:
            raise ValueError(f"{what}: time_mean='plane' needs the geometry (positions)")
        return _plane_projection(pos, live, what)
    if time_mean == "detector":
        return _projection([np.ones(n, bool)], [live], n, what)
    if time_mean == "kind" and groups_kind is not None:
        return _projection(groups_kind, [live & g for g in groups_kind], n, what)
    raise ValueError(f"time_mean must be 'plane', 'detector'{' or ' + repr('kind') if groups_kind else ''}"
                     f", got {time_mean!r}")


def _mask(n: int, indices, what: str) -> np.ndarray:
    idx = np.atleast_1d(np.asarray(indices, np.int64))
    if np.any((idx < 0) | (idx >= n)):
        raise ValueError(f"{what}: reference indices must be dense channel indices in [0, {n}), "
                         f"got {idx[(idx < 0) | (idx >= n)][:10].tolist()}")
    m = np.zeros(n, bool)
    m[idx] = True
    return m


def _live(live, n: int) -> np.ndarray:
    return np.ones(n, bool) if live is None else np.asarray(live, bool).reshape(n)


def _references(live: np.ndarray, reference, what: str) -> np.ndarray:
    """Reference mask: the live channels, or the listed ones (which must be live)."""
    if reference is None:
        return live
    ref = _mask(live.shape[0], reference, what)
    if np.any(ref & ~live):
        raise ValueError(f"{what}: reference channels {np.nonzero(ref & ~live)[0][:10].tolist()} "
                         "are dead")
    return ref


# ---------------------------------------------------------------------------------------------
# KM2A
# ---------------------------------------------------------------------------------------------
class KM2AParams(NamedTuple):
    """Raw KM2A calibration parameters (all 0 → nominal).

    ed_log_gain : (n_ed,) ln(gain / nominal gain) of the EDs;  md_log_gain : (n_md,) of the MDs
    ed_time_offset, md_time_offset : (n_ed,), (n_md,) [ns] added to the nominal time offsets
    """

    ed_log_gain: jnp.ndarray
    md_log_gain: jnp.ndarray
    ed_time_offset: jnp.ndarray
    md_time_offset: jnp.ndarray


class KM2AConstraints(NamedTuple):
    """Projections of the KM2A parameters, over the concatenated (ED, MD) channels (n_ed + n_md).

    gain : K = 2 (EDs, MDs): mean log-gain over the reference channels of each kind is 0
    time : K = 3 (plane: mean and x, y gradient of the live channels' offsets 0), 1 (all live
        channels: mean 0) or 2 (EDs and MDs separately: means 0)
    """

    gain: Projection
    time: Projection


def km2a_constraints(geometry: km2a.Geometry | None = None, *, n_ed: int | None = None,
                     n_md: int | None = None, reference_ed=None, reference_md=None,
                     time_mean: str | None = None) -> KM2AConstraints:
    """KM2A degeneracy constraints.

    Parameters
    ----------
    geometry : the run period's Geometry (its ``ed_live``/``md_live`` select the channels that
        enter the means); or give ``n_ed``, ``n_md`` (all channels live)
    reference_ed, reference_md : dense channel indices (``layout.ed_index_of(ids)``) whose mean
        log-gain is held at 0; None = all live channels of that kind (the nominal scale, i.e. the
        single-particle / single-muon peak)
    time_mean : "plane" (default with a geometry: the mean AND the gradient across the array of
        the live EDs' and MDs' offsets fixed to 0 — a common gradient of the offsets tilts every
        shower by the same angle, so showers cannot measure it; the pointing is calibrated with
        the Moon shadow or a source), "detector" (one mean over all live EDs and MDs fixed to 0;
        the default without a geometry) or "kind" (ED and MD means fixed separately)
    """
    if geometry is not None:
        n_ed, n_md = int(np.shape(geometry.ed_pos)[0]), int(np.shape(geometry.md_pos)[0])
        ed_live, md_live = _live(geometry.ed_live, n_ed), _live(geometry.md_live, n_md)
    else:
        ed_live, md_live = np.ones(n_ed, bool), np.ones(n_md, bool)
    n = n_ed + n_md
    is_ed = np.arange(n) < n_ed
    live = np.concatenate([ed_live, md_live])
    ref_ed = np.concatenate([_references(ed_live, reference_ed, "KM2A ED gain"), np.zeros(n_md, bool)])
    ref_md = np.concatenate([np.zeros(n_ed, bool), _references(md_live, reference_md, "KM2A MD gain")])
    gain = _projection([is_ed, ~is_ed], [ref_ed, ref_md], n, "KM2A gain")
    pos = None if geometry is None else np.concatenate([np.asarray(geometry.ed_pos)[:, :2],
                                                         np.asarray(geometry.md_pos)[:, :2]])
    if time_mean is None:
        time_mean = "detector" if geometry is None else "plane"
    time = _time_projection(time_mean, pos, live, n, [is_ed, ~is_ed], "KM2A time offset")
    return KM2AConstraints(gain=gain, time=time)


def apply_km2a(params: KM2AParams, nominal: km2a.Response,
               constraints: KM2AConstraints | None = None) -> km2a.Response:
    """KM2A Response of the (projected) raw parameters.

    gain = nominal gain · exp(P g), time offset = nominal offset + P δt, with P the projections
    of ``constraints`` (None: :func:`km2a_constraints` with every channel live).
    """
    n_ed = int(np.shape(nominal.ed_gain)[0])
    if constraints is None:
        constraints = km2a_constraints(n_ed=n_ed, n_md=int(np.shape(nominal.md_gain)[0]))
    g = project(jnp.concatenate([params.ed_log_gain, params.md_log_gain]), constraints.gain)
    dt = project(jnp.concatenate([params.ed_time_offset, params.md_time_offset]), constraints.time)
    return nominal._replace(ed_gain=nominal.ed_gain * jnp.exp(g[:n_ed]),
                            md_gain=nominal.md_gain * jnp.exp(g[n_ed:]),
                            ed_time_offset=nominal.ed_time_offset + dt[:n_ed],
                            md_time_offset=nominal.md_time_offset + dt[n_ed:])


def extract_km2a(response: km2a.Response, nominal: km2a.Response) -> KM2AParams:
    """Raw parameters of ``response`` relative to ``nominal`` (log-ratios and offset differences,
    not projected: ``apply_km2a(extract_km2a(r, n), n) == r`` when ``r`` obeys the constraints)."""
    return KM2AParams(ed_log_gain=jnp.log(response.ed_gain / nominal.ed_gain),
                      md_log_gain=jnp.log(response.md_gain / nominal.md_gain),
                      ed_time_offset=response.ed_time_offset - nominal.ed_time_offset,
                      md_time_offset=response.md_time_offset - nominal.md_time_offset)


# ---------------------------------------------------------------------------------------------
# WCDA
# ---------------------------------------------------------------------------------------------
class WCDAParams(NamedTuple):
    """Raw WCDA calibration parameters (all 0 → nominal).

    log_efficiency : (n,) ln(efficiency / nominal efficiency) of the cells
    time_offset : (n,) [ns] added to the nominal time offsets
    """

    log_efficiency: jnp.ndarray
    time_offset: jnp.ndarray


class WCDAConstraints(NamedTuple):
    """efficiency : K = 1 (whole WCDA) or 3 (per pond);  time : K = 3 (plane over the live
    cells: mean and gradient) or 1 (mean)."""

    efficiency: Projection
    time: Projection


def wcda_constraints(geometry: wcda.Geometry | None = None, *, n: int | None = None,
                     reference_cells=None, efficiency_mean: str = "detector",
                     time_mean: str | None = None) -> WCDAConstraints:
    """WCDA degeneracy constraints.

    Parameters
    ----------
    geometry : the run period's Geometry (``cell_live``, ``pond``); or ``n`` cells, all live
    reference_cells : dense cell indices whose mean log-efficiency is held at 0 (None: all live
        cells — the nominal single-muon scale)
    efficiency_mean : "detector" (one mean over WCDA) or "pond" (one per pond: each pond's PMT
        type keeps its own nominal muon peak; needs ``geometry``)
    time_mean : "plane" (default with a geometry: mean and gradient of the live cells' offsets
        fixed, see :func:`km2a_constraints`) or "detector" (mean only; default without one)
    """
    if geometry is not None:
        n = int(np.shape(geometry.cell_pos)[0])
        live = _live(geometry.cell_live, n)
    else:
        live = np.ones(n, bool)
    ref = _references(live, reference_cells, "WCDA efficiency")
    if efficiency_mean == "detector":
        eff = _projection([np.ones(n, bool)], [ref], n, "WCDA efficiency")
    elif efficiency_mean == "pond":
        if geometry is None:
            raise ValueError("efficiency_mean='pond' needs the geometry (pond numbers)")
        pond = np.asarray(geometry.pond)
        groups = [pond == p for p in np.unique(pond)]
        eff = _projection(groups, [ref & g for g in groups], n, "WCDA efficiency (per pond)")
    else:
        raise ValueError(f"efficiency_mean must be 'detector' or 'pond', got {efficiency_mean!r}")
    if time_mean is None:
        time_mean = "detector" if geometry is None else "plane"
    pos = None if geometry is None else np.asarray(geometry.cell_pos)[:, :2]
    return WCDAConstraints(efficiency=eff,
                           time=_time_projection(time_mean, pos, live, n, None, "WCDA time offset"))


def apply_wcda(params: WCDAParams, nominal: wcda.Response,
               constraints: WCDAConstraints | None = None) -> wcda.Response:
    """WCDA Response: efficiency = nominal · exp(P e), time offset = nominal + P δt."""
    if constraints is None:
        constraints = wcda_constraints(n=int(np.shape(nominal.efficiency)[0]))
    e = project(params.log_efficiency, constraints.efficiency)
    dt = project(params.time_offset, constraints.time)
    return nominal._replace(efficiency=nominal.efficiency * jnp.exp(e),
                            time_offset=nominal.time_offset + dt)


def extract_wcda(response: wcda.Response, nominal: wcda.Response) -> WCDAParams:
    """Raw WCDA parameters of ``response`` relative to ``nominal`` (not projected)."""
    return WCDAParams(log_efficiency=jnp.log(response.efficiency / nominal.efficiency),
                      time_offset=response.time_offset - nominal.time_offset)


# ---------------------------------------------------------------------------------------------
# WFCTA
# ---------------------------------------------------------------------------------------------
class WFCTAParams(NamedTuple):
    """Raw WFCTA calibration parameters (all 0 → nominal).

    pixel_log_gain : (n_tel, 1024) ln(pixel gain / nominal)
    tel_log_efficiency : (n_tel,) ln(telescope efficiency / nominal)
    """

    pixel_log_gain: jnp.ndarray
    tel_log_efficiency: jnp.ndarray


class WFCTAConstraints(NamedTuple):
    """pixel_gain : K = n_tel over the flattened (n_tel·1024) pixels, one group per telescope;
    tel_efficiency : K = 1 (the reference telescope held at nominal) or K = 0 (free)."""

    pixel_gain: Projection
    tel_efficiency: Projection


def wfcta_constraints(geometry: wfcta.Geometry | None = None, *, n_tel: int | None = None,
                      n_pix: int = 1024, reference_tel: int | None = None) -> WFCTAConstraints:
    """WFCTA degeneracy constraints.

    Parameters
    ----------
    geometry : the run period's Geometry (``pixel_live``); or ``n_tel`` telescopes of ``n_pix``
        pixels, all live
    reference_tel : dense index of the telescope whose efficiency is held at nominal; None leaves
        the telescope efficiencies free (their scale is then set by the other detectors through
        the shower energy in a joint calibration)
    """
    if geometry is not None:
        n_tel = int(np.shape(geometry.tel_pos)[0])
        live = (np.ones((n_tel, n_pix), bool) if geometry.pixel_live is None
                else np.asarray(geometry.pixel_live, bool).reshape(n_tel, -1))
        n_pix = live.shape[1]
    else:
        live = np.ones((n_tel, n_pix), bool)
    n = n_tel * n_pix
    tel_of = np.repeat(np.arange(n_tel), n_pix)
    groups = [tel_of == t for t in range(n_tel)]
    pix = _projection(groups, [g & live.reshape(-1) for g in groups], n, "WFCTA pixel gain")
    if reference_tel is None:
        tel = Projection(member=np.zeros((0, n_tel)), weight=np.zeros((0, n_tel)))
    else:
        ref = _mask(n_tel, reference_tel, "WFCTA reference telescope")
        if ref.sum() != 1:
            raise ValueError("reference_tel must be one telescope index")
        tel = _projection([np.ones(n_tel, bool)], [ref], n_tel, "WFCTA telescope efficiency")
    return WFCTAConstraints(pixel_gain=pix, tel_efficiency=tel)


def apply_wfcta(params: WFCTAParams, nominal: wfcta.Response,
                constraints: WFCTAConstraints | None = None) -> wfcta.Response:
    """WFCTA Response: pixel gain = nominal · exp(P g), telescope efficiency = nominal · exp(P e)."""
    if constraints is None:
        n_tel, n_pix = np.shape(nominal.pixel_gain)
        constraints = wfcta_constraints(n_tel=int(n_tel), n_pix=int(n_pix))
    g = project(params.pixel_log_gain, constraints.pixel_gain)
    e = project(params.tel_log_efficiency, constraints.tel_efficiency)
    return nominal._replace(pixel_gain=nominal.pixel_gain * jnp.exp(g),
                            tel_efficiency=nominal.tel_efficiency * jnp.exp(e))


def extract_wfcta(response: wfcta.Response, nominal: wfcta.Response) -> WFCTAParams:
    """Raw WFCTA parameters of ``response`` relative to ``nominal`` (not projected)."""
    return WFCTAParams(pixel_log_gain=jnp.log(response.pixel_gain / nominal.pixel_gain),
                       tel_log_efficiency=jnp.log(response.tel_efficiency / nominal.tel_efficiency))


# ---------------------------------------------------------------------------------------------
# dispatch on the detector
# ---------------------------------------------------------------------------------------------
class DetectorCalibration(NamedTuple):
    """What the calibration knows about one detector of ``detectors.registry``: the one table
    that the rest of calib (learn, db, periods) dispatches on.

    params, constraints_type : the raw-parameter and constraint NamedTuples
    apply : (params, nominal Response, constraints or None) -> Response
    extract : (Response, nominal Response) -> raw params (not projected)
    constraints : (geometry or None, **options) -> constraints
    project : (params, constraints) -> the projected (canonical) params
    shape_kw : raw params -> the shape options of ``constraints`` without a geometry
    learned_fields : the Response fields the calibration learns (always stored in the database)
    field_blocks : raw field -> the event block whose hits constrain it (hit counts)
    """

    params: type
    constraints_type: type
    apply: Callable
    extract: Callable
    constraints: Callable
    project: Callable
    shape_kw: Callable
    learned_fields: tuple
    field_blocks: Mapping


def _project_km2a(params: KM2AParams, constraints: KM2AConstraints) -> KM2AParams:
    n_ed = params.ed_log_gain.shape[0]
    g = project(jnp.concatenate([params.ed_log_gain, params.md_log_gain]), constraints.gain)
    t = project(jnp.concatenate([params.ed_time_offset, params.md_time_offset]), constraints.time)
    return KM2AParams(g[:n_ed], g[n_ed:], t[:n_ed], t[n_ed:])


def _project_wcda(params: WCDAParams, constraints: WCDAConstraints) -> WCDAParams:
    return WCDAParams(project(params.log_efficiency, constraints.efficiency),
                      project(params.time_offset, constraints.time))


def _project_wfcta(params: WFCTAParams, constraints: WFCTAConstraints) -> WFCTAParams:
    return WFCTAParams(project(params.pixel_log_gain, constraints.pixel_gain),
                       project(params.tel_log_efficiency, constraints.tel_efficiency))


def _shape(a, axis=0) -> int:
    return int(np.shape(a)[axis])


#: The calibration of each detector, keyed by registry name (tests/test_registry.py checks the
#: keys against ``detectors.registry``).
CALIBRATIONS = {
    "km2a": DetectorCalibration(
        KM2AParams, KM2AConstraints, apply_km2a, extract_km2a, km2a_constraints, _project_km2a,
        lambda p: dict(n_ed=_shape(p.ed_log_gain), n_md=_shape(p.md_log_gain)),
        ("ed_gain", "md_gain", "ed_time_offset", "md_time_offset"),
        {"ed_log_gain": "km2a_ed", "ed_time_offset": "km2a_ed", "md_log_gain": "km2a_md",
         "md_time_offset": "km2a_md"}),
    "wcda": DetectorCalibration(
        WCDAParams, WCDAConstraints, apply_wcda, extract_wcda, wcda_constraints, _project_wcda,
        lambda p: dict(n=_shape(p.log_efficiency)), ("efficiency", "time_offset"),
        {"log_efficiency": "wcda", "time_offset": "wcda"}),
    "wfcta": DetectorCalibration(
        WFCTAParams, WFCTAConstraints, apply_wfcta, extract_wfcta, wfcta_constraints,
        _project_wfcta,
        lambda p: dict(n_tel=_shape(p.pixel_log_gain), n_pix=_shape(p.pixel_log_gain, 1)),
        ("pixel_gain", "tel_efficiency"),
        {"pixel_log_gain": "wfcta", "tel_log_efficiency": "wfcta"}),
}

#: Response fields that the calibration learns, per detector.
LEARNED_FIELDS = {d: c.learned_fields for d, c in CALIBRATIONS.items()}

#: The detector module (Geometry, Response) of each calibrated detector (from the registry).
DETECTOR_MODULES = {d: registry.get(d).module for d in CALIBRATIONS}


def detector_of(obj) -> str:
    """Registry name of the detector of a Params, Constraints or Response object."""
    for d, c in CALIBRATIONS.items():
        if isinstance(obj, (c.params, c.constraints_type, DETECTOR_MODULES[d].Response)):
            return d
    raise TypeError(f"not the params, response or constraints of a calibrated detector "
                    f"{tuple(CALIBRATIONS)}: {type(obj).__name__}")


def apply(params, nominal_response, constraints=None):
    """Response of a detector's raw ``params`` on ``nominal_response`` (the detector's
    ``apply`` of :data:`CALIBRATIONS`). Pure JAX, differentiable w.r.t. ``params``."""
    det = detector_of(params)
    if detector_of(nominal_response) != det:
        raise TypeError(f"{type(params).__name__} applied to a {det.upper()} response expected, "
                        f"got {type(nominal_response).__module__}.Response")
    return CALIBRATIONS[det].apply(params, nominal_response, constraints)


def extract(response, nominal):
    """Raw parameters (not projected) of a detector ``response`` relative to ``nominal``."""
    return CALIBRATIONS[detector_of(response)].extract(response, nominal)


def init_params(nominal_response, dtype=None):
    """All-zero raw parameters (→ the nominal Response) shaped for ``nominal_response``."""
    det = detector_of(nominal_response)
    zero = extract(nominal_response, nominal_response)
    return CALIBRATIONS[det].params(*(jnp.zeros(jnp.shape(v), dtype=dtype) for v in zero))


def default_constraints(detector: str, geometry=None, **options):
    """The constraints of ``detector`` for ``geometry`` with the given options
    (:func:`km2a_constraints`, :func:`wcda_constraints`, :func:`wfcta_constraints`)."""
    return CALIBRATIONS[detector].constraints(geometry, **options)


def project_params(params, constraints=None, nominal_response=None):
    """The canonical (projected) raw parameters: ``extract(apply(params, nominal), nominal)``
    computed directly; ``constraints`` None uses the all-live defaults (needs no nominal)."""
    cal = CALIBRATIONS[detector_of(params)]
    if constraints is None:
        constraints = cal.constraints(None, **cal.shape_kw(params))
    return cal.project(params, constraints)


# ---------------------------------------------------------------------------------------------
# flax.nnx modules
# ---------------------------------------------------------------------------------------------
class Constraint(nnx.Variable):
    """Non-trainable variable holding a detector's constraints (projections); an optimiser built
    with ``wrt=nnx.Param`` leaves it alone."""


class _Calibration(nnx.Module):
    """Abstract: a detector's raw parameters as ``nnx.Param`` + its :class:`Constraint`.

    Subclasses set ``detector`` and create one ``nnx.Param`` per field of the Params type.
    """

    detector: str = ""

    def _init(self, params, constraints):
        for name, value in zip(params._fields, params):
            setattr(self, name, nnx.Param(jnp.asarray(value)))
        self.constraints = Constraint(jax.tree.map(jnp.asarray, constraints))

    @property
    def params(self):
        """The raw parameters as the detector's Params NamedTuple (current values)."""
        cls = CALIBRATIONS[self.detector].params
        return cls(*(getattr(self, f).get_value() for f in cls._fields))

    def set_params(self, params) -> None:
        """Overwrite the raw parameters (e.g. from :func:`extract` of a stored Response)."""
        for name, value in zip(params._fields, params):
            getattr(self, name).set_value(jnp.asarray(value))

    def projected_params(self):
        """The parameters after the projection (what the Response actually uses)."""
        return project_params(self.params, self.constraints.get_value())

    def __call__(self, nominal_response):
        """The Response of the current parameters on ``nominal_response``."""
        return CALIBRATIONS[self.detector].apply(self.params, nominal_response,
                                                 self.constraints.get_value())


def _zeros_like_fields(cls, shapes, dtype):
    return cls(*(jnp.zeros(s, dtype=dtype) for s in shapes))


class KM2ACalibration(_Calibration):
    """Learnable KM2A response: ED/MD log-gains and time offsets [ns] per channel.

    ``KM2ACalibration(geometry, reference_ed=..., reference_md=..., time_mean=...)``; the options
    are those of :func:`km2a_constraints`. ``module(nominal) -> km2a.Response``.
    """

    detector = "km2a"

    def __init__(self, geometry: km2a.Geometry, *, reference_ed=None, reference_md=None,
                 time_mean: str | None = None, params: KM2AParams | None = None, dtype=None):
        n_ed, n_md = int(np.shape(geometry.ed_pos)[0]), int(np.shape(geometry.md_pos)[0])
        if params is None:
            params = _zeros_like_fields(KM2AParams, [(n_ed,), (n_md,), (n_ed,), (n_md,)], dtype)
        self._init(params, km2a_constraints(geometry, reference_ed=reference_ed,
                                            reference_md=reference_md, time_mean=time_mean))


class WCDACalibration(_Calibration):
    """Learnable WCDA response: cell log-efficiencies and time offsets [ns].

    Options as :func:`wcda_constraints`. ``module(nominal) -> wcda.Response``.
    """

    detector = "wcda"

    def __init__(self, geometry: wcda.Geometry, *, reference_cells=None,
                 efficiency_mean: str = "detector", time_mean: str | None = None,
                 params: WCDAParams | None = None, dtype=None):
        n = int(np.shape(geometry.cell_pos)[0])
        if params is None:
            params = _zeros_like_fields(WCDAParams, [(n,), (n,)], dtype)
        self._init(params, wcda_constraints(geometry, reference_cells=reference_cells,
                                            efficiency_mean=efficiency_mean, time_mean=time_mean))


class WFCTACalibration(_Calibration):
    """Learnable WFCTA response: pixel log-gains (n_tel, 1024) and telescope log-efficiencies.

    Options as :func:`wfcta_constraints`. ``module(nominal) -> wfcta.Response``.
    """

    detector = "wfcta"

    def __init__(self, geometry: wfcta.Geometry, *, reference_tel: int | None = None,
                 params: WFCTAParams | None = None, dtype=None):
        n_tel = int(np.shape(geometry.tel_pos)[0])
        n_pix = 1024 if geometry.pixel_live is None else int(np.size(geometry.pixel_live) // n_tel)
        if params is None:
            params = _zeros_like_fields(WFCTAParams, [(n_tel, n_pix), (n_tel,)], dtype)
        self._init(params, wfcta_constraints(geometry, reference_tel=reference_tel))
