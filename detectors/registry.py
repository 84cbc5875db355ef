"""The detector registry: the one place that knows which detectors exist.

Each detector is described by one :class:`DetectorSpec`: its forward model (a module with
``Geometry``, ``Response``, ``Observed``, ``predict``, ``nll``, ``information_weights``,
``gof_counts``), the ChannelBlocks it observes and their hit branches in event files, its layout
loader, its physics, its per-event channel selection, its seed and the channel kinds the
calibration learns per channel. The joint likelihood and the pipeline (``joint``), the event-file
schema (``joint.io.schema``), the calibration (``calib``) and the conformance tests iterate over
:func:`specs`; adding a detector is one :func:`register` call (``tests/test_registry.py`` fits a
toy detector jointly with KM2A that way).

Order matters: :data:`BUILT` is the canonical order of the built detectors; a configuration's
detectors are sorted in registry order, so equal sets share one compilation.

Extension points, for what comes next (docs/architecture.md): per-detector nuisance fields and
model-uncertainty terms are fields of the detector's physics (a NamedTuple, static under jit) or
of its Response (learned by the calibration); a sparse hit format is a second ``BlockSpec`` kind
whose ``n_channels`` is the number of kept hits; per-detector observables for classifiers are
declared by the analysis layer against these names (``analysis.observables``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import km2a, wcda, wfcta

__all__ = ["BlockSpec", "DetectorSpec", "register", "unregister", "get", "specs", "names",
           "block_names", "spec_of_block", "BUILT", "KM2AData", "WCDAData", "WFCTAData",
           "select_km2a", "select_wcda", "select_wfcta", "DEFAULT_N_ED", "DEFAULT_N_MD",
           "DEFAULT_N_WCDA"]

#: KM2A channels per event in the likelihood (``joint.likelihood``: the 768 EDs and 192 MDs
#: nearest to the seed core, ≈ 220 m around it; BENCHMARKS.md "fitter choices")
DEFAULT_N_ED = 768
DEFAULT_N_MD = 192
#: WCDA cells per event (≈ 160 m × 160 m around the seed core; a 1–30 TeV shower's signal sits
#: within ~100 m)
DEFAULT_N_WCDA = 1024


@dataclass(frozen=True)
class BlockSpec:
    """One ChannelBlock of a detector and its hit branches ``{name}_{field}`` in event files.

    key : the branch whose per-event length counts the hits (``{name}_{key}``)
    fields : required hit fields {field: numpy dtype}; optional : fields that may be absent
    n_channels : layout -> number of dense channel slots
    index : (layout, {field: flat numpy array}) -> dense channel index of every hit (raises
        ValueError naming an unknown channel id)
    """

    name: str
    key: str
    fields: Mapping[str, Any]
    n_channels: Callable[[Any], int]
    index: Callable[[Any, Mapping[str, np.ndarray]], np.ndarray]
    optional: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DetectorSpec:
    """Everything the framework needs to know about one detector.

    name : registry key ("km2a"); module : the forward model (see the module docstring)
    blocks : its ChannelBlocks (BlockSpec), in the order ``select`` expects them
    layout : config string -> layout object (``detectors.layout``); ``Geometry.from_layout`` and
        ``Response.nominal`` of ``module`` make the nominal set-up
    physics : (is_gamma, settings) -> physics NamedTuple of ``module``; ``settings`` is any
        object (a ``joint.config.ReconstructionConfig``) read with ``getattr`` and defaults
    data : per-event data type (geometry, response, observed) that the likelihood reads
    select : (blocks {block name: ChannelBlock}, core_xy (2,), geometry, response, settings) ->
        ``data`` on a fixed number of channels (pure JAX, fixed shapes)
    seed : (blocks, geometry, response) -> Shower seed (pure JAX), or None (no own seed)
    core_scan : the seed is refined by the pipeline's core × energy scan (ground arrays with an
        ED-free area around their centre)
    ground : a ground array (pre-fits for WFCTA seeds, ``geometry_from``)
    seed_energy_calibrated : the seed's size → energy relation is calibrated: no energy scan of
        the seed when the detector is fitted alone (KM2A: the scan lowered the converged
        fraction from 86% to 77%, docs/wcda.md)
    measures_xmax : the detector's data pin Xmax (images): the seeds scan Xmax, and the Xmax
        prior applies only to events without its data
    channel_kinds : {kind: block name} of the per-channel calibration (dead lists, gains)
    presence : the event-file flag of the detector's participation (``present_<name>``)
    """

    name: str
    module: ModuleType
    blocks: tuple
    layout: Callable[[str], Any]
    physics: Callable[[float, Any], Any]
    data: type
    select: Callable
    seed: Optional[Callable] = None
    core_scan: bool = False
    ground: bool = False
    seed_energy_calibrated: bool = False
    measures_xmax: bool = False
    channel_kinds: Mapping[str, str] = field(default_factory=dict)

    @property
    def block_names(self) -> tuple:
        return tuple(b.name for b in self.blocks)

    @property
    def presence(self) -> str:
        return f"present_{self.name}"

    def setup(self, config: str = "full"):
        """(layout, nominal Geometry, nominal Response) for layout ``config``."""
        lay = self.layout(config)
        geo = self.module.Geometry.from_layout(lay)
        return lay, geo, self.module.Response.nominal(geo)


_REGISTRY: dict = {}


def register(spec: DetectorSpec, *, replace: bool = False) -> DetectorSpec:
    """Add ``spec`` to the registry (after the built ones, in registration order)."""
    if not replace and spec.name in _REGISTRY:
        raise ValueError(f"detector {spec.name!r} is already registered")
    taken = {b for n, s in _REGISTRY.items() if n != spec.name for b in s.block_names}
    clash = taken & set(spec.block_names)
    if clash:
        raise ValueError(f"detector {spec.name!r}: block names {sorted(clash)} already used")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a detector (tests register toy detectors and remove them again)."""
    if name in BUILT:
        raise ValueError(f"cannot remove the built detector {name!r}")
    _REGISTRY.pop(name, None)


def get(name: str) -> DetectorSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; registered: {', '.join(_REGISTRY)}") from None


def specs(names_=None) -> tuple:
    """The specs of ``names_`` (all registered ones if None), in registry order."""
    if names_ is None:
        return tuple(_REGISTRY.values())
    wanted = set(names_)
    for n in wanted:
        get(n)
    return tuple(s for n, s in _REGISTRY.items() if n in wanted)


def names() -> tuple:
    return tuple(_REGISTRY)


def block_names() -> tuple:
    """Every registered ChannelBlock name, in registry order."""
    return tuple(b for s in _REGISTRY.values() for b in s.block_names)


def spec_of_block(block: str) -> DetectorSpec:
    for s in _REGISTRY.values():
        if block in s.block_names:
            return s
    raise ValueError(f"unknown detector block {block!r}; registered: {', '.join(block_names())}")


# ------------------------------------------------------------------------------------------------
# channel selection: the per-event data of the likelihood, on fixed shapes
# ------------------------------------------------------------------------------------------------
def _gather(tree, idx):
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def _nearest(pos, core_xy, n):
    pos = jnp.asarray(pos)
    if n is None or n >= pos.shape[0]:
        return jnp.arange(pos.shape[0])
    return jax.lax.top_k(-jnp.sum((pos[:, :2] - core_xy) ** 2, axis=1), n)[1]


class KM2AData(NamedTuple):
    geometry: km2a.Geometry
    response: km2a.Response
    observed: km2a.Observed


def select_km2a(ed_block, md_block, core_xy, geometry: km2a.Geometry, response: km2a.Response,
                n_ed: Optional[int] = DEFAULT_N_ED, n_md: Optional[int] = DEFAULT_N_MD) -> KM2AData:
    """The ``n_ed`` EDs and ``n_md`` MDs nearest to ``core_xy`` (2,) [m] for one event (gathered
    with ``lax.top_k``: fixed shapes (n_ed,), (n_md,); None = every channel)."""
    i_ed = _nearest(geometry.ed_pos, core_xy, n_ed)
    i_md = _nearest(geometry.md_pos, core_xy, n_md)
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
    None = every cell)."""
    idx = _nearest(geometry.cell_pos, core_xy, n_cells)
    geo = geometry._replace(cell_pos=jnp.asarray(geometry.cell_pos)[idx],
                            pond=jnp.asarray(geometry.pond)[idx],
                            cell_live=jnp.asarray(geometry.cell_live)[idx])
    resp = response._replace(**{f: jnp.asarray(getattr(response, f))[idx] for f in _WCDA_PER_CELL})
    return WCDAData(geo, resp, wcda.Observed(cells=_gather(block, idx)))


class WFCTAData(NamedTuple):
    geometry: wfcta.Geometry
    response: wfcta.Response
    observed: wfcta.Observed


def select_wfcta(block, geometry: wfcta.Geometry, response: wfcta.Response) -> WFCTAData:
    """Every pixel of every telescope (n_tel · 1024; the image model is cheap per pixel)."""
    return WFCTAData(geometry, response, wfcta.Observed(pixels=block))


# ------------------------------------------------------------------------------------------------
# the built detectors
# ------------------------------------------------------------------------------------------------
def _km2a_layout(config="full"):
    from .layout import km2a_layout
    return km2a_layout(config)


def _wcda_layout(config="full"):
    from .layout import wcda_layout
    return wcda_layout()


def _wfcta_layout(config="full"):
    from .layout import wfcta_layout
    return wfcta_layout()


def _km2a_seed(blocks, geometry, response):
    from .seeds import km2a_seed
    return km2a_seed(blocks["km2a_ed"], blocks["km2a_md"], geometry.ed_pos, geometry.md_pos)


def _wcda_seed(blocks, geometry, response):
    from .seeds import wcda_seed
    return wcda_seed(blocks["wcda"], geometry.cell_pos, response)


def _wfcta_physics(is_gamma, settings):
    """WFCTA's fit physics: the profile-width and lateral-spread nuisances profiled under their
    priors when the settings carry ``wfcta_nuisance_sigmas`` (None: :data:`wfcta.NUISANCE_SIGMAS`;
    (0, 0) = off; ``benchmarks/common.nuisance_config`` builds such settings) and the pixels'
    model uncertainty κ (``wfcta_model_rel_sigma``, default 0).

    Settings without the field (the pipeline's ``ReconstructionConfig``): nuisances OFF. With
    them on, a KM2A+WFCTA batch of 16 reached ~12 GB in the exact-Hessian straggler pass and
    stalled the machine next to another fit (issue 16, BENCHMARKS.md), so they are opt-in until
    that pass is made cheaper."""
    if not hasattr(settings, "wfcta_nuisance_sigmas"):
        sig = (0.0, 0.0)
    else:
        sig = getattr(settings, "wfcta_nuisance_sigmas")
        sig = wfcta.NUISANCE_SIGMAS if sig is None else tuple(float(x) for x in sig)
    phys = wfcta.WFCTAPhysics(is_gamma=is_gamma, nuisance_sigmas=sig,
                              model_rel_sigma=float(getattr(settings, "wfcta_model_rel_sigma", 0.0)))
    wfcta.check_physics(phys)
    return phys


_HITS = {"id": np.int32, "time": np.float64, "pe": np.float32}

BUILT = ("km2a", "wcda", "wfcta")

register(DetectorSpec(
    name="km2a", module=km2a,
    blocks=(BlockSpec("km2a_ed", "id", _HITS, lambda lay: lay.n_ed,
                      lambda lay, h: lay.ed_index_of(h["id"])),
            BlockSpec("km2a_md", "id", _HITS, lambda lay: lay.n_md,
                      lambda lay, h: lay.md_index_of(h["id"]))),
    layout=_km2a_layout,
    physics=lambda is_gamma, s: km2a.KM2APhysics(
        is_gamma=is_gamma, compound_particles=float(getattr(s, "km2a_compound", 0.0))),
    data=KM2AData,
    select=lambda b, core, g, r, s: select_km2a(b["km2a_ed"], b["km2a_md"], core, g, r,
                                                getattr(s, "n_ed", DEFAULT_N_ED),
                                                getattr(s, "n_md", DEFAULT_N_MD)),
    seed=_km2a_seed, core_scan=True, ground=True, seed_energy_calibrated=True,
    channel_kinds={"ed": "km2a_ed", "md": "km2a_md"}))

register(DetectorSpec(
    name="wcda", module=wcda,
    blocks=(BlockSpec("wcda", "id", _HITS, lambda lay: lay.n_cells,
                      lambda lay, h: lay.index_of(h["id"])),),
    layout=_wcda_layout,
    physics=lambda is_gamma, s: wcda.WCDAPhysics(is_gamma=is_gamma),
    data=WCDAData,
    select=lambda b, core, g, r, s: select_wcda(b["wcda"], core, g, r,
                                                getattr(s, "n_wcda", DEFAULT_N_WCDA)),
    seed=_wcda_seed, ground=True,
    channel_kinds={"cell": "wcda"}))

register(DetectorSpec(
    name="wfcta", module=wfcta,
    blocks=(BlockSpec("wfcta", "tel", {"tel": np.int16, "pix": np.int16, "pe": np.float32},
                      lambda lay: lay.n_tel * lay.n_pix,
                      lambda lay, h: lay.index_of(h["tel"], h["pix"]),
                      optional={"time": np.float64}),),
    layout=_wfcta_layout,
    physics=lambda is_gamma, s: _wfcta_physics(is_gamma, s),
    data=WFCTAData,
    select=lambda b, core, g, r, s: select_wfcta(b["wfcta"], g, r), measures_xmax=True,
    channel_kinds={"pixel": "wfcta"}))
