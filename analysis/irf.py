"""Instrument response functions (IRFs) from reconstructed simulated events, per event type and
zenith band, for KM2A, WCDA and their joint set; the transit-averaged response of a drift-scan
observation at a given declination; the point-source sensitivity. docs/irf.md.

An **IRF set** (:class:`IRFSet`, ``lhaaso-joint irf``) holds, for every event type, the four
GADF responses written with gammapy's IRF classes, in the array's own frame: the array points at
the zenith, so the "field-of-view offset" axis of every table is the **zenith angle** of the
shower (bands :data:`ZENITH_EDGES_DEG`):

* effective area A(E_true, θ)            — :class:`gammapy.irf.EffectiveAreaTable2D` [m²]
* energy dispersion (E_true, μ, θ)        — :class:`gammapy.irf.EnergyDispersion2D`
  (μ = E_reco / E_true; ``pyirf.irf.energy_dispersion``)
* PSF (E_true, θ, r)                      — :class:`gammapy.irf.PSF3D` [sr⁻¹], a radial table
  (``pyirf.irf.psf_table``)
* background rate (E_reco, θ)             — :class:`gammapy.irf.Background2D` [s⁻¹ MeV⁻¹ sr⁻¹],
  cosmic rays (protons, flux :data:`CR_FLUX`) after the γ/hadron cut

plus the γ/hadron cut itself (a threshold on the library's ``gh_score`` per event type and
reconstructed-energy bin, set for a fixed γ efficiency :data:`GH_EFFICIENCY`).

Event types [M] (LHAASO and HAWC bin their data by the shower size or the number of hits):
KM2A by log10 Ne (:data:`EVENT_TYPE_EDGES`), WCDA by the number of cells hit. Every event type
has its own response; the joint set is the union of the KM2A and WCDA types, each event counted
once (an event of the two detectors takes the KM2A type above :data:`JOINT_KM2A_FROM_TEV`).

Low statistics and large zenith angles [M]: the hadron survival after the γ/hadron cut is
pooled over the zenith bands and smoothed in energy (a binomial maximum-likelihood logistic
fit of the survival vs log10 E_reco per event type); γ/hadron thresholds of bins with fewer than
:data:`MIN_EVENTS_CUT` photons are interpolated from their neighbours; an effective area with
fewer than :data:`MIN_EVENTS_AEFF` selected photons in a bin is set to 0 (not used) and the PSF
and energy dispersion of a (E, θ) cell with fewer than :data:`MIN_EVENTS_PSF` photons are taken
from the whole zenith range at that energy. All of this is stated in the IRF file's header.

The effective area of a zenith band is exact for the simulation's thrown area: cores thrown
uniformly on a ground area A (``area_m2``), directions isotropic through a flat detector
(cos²θ uniform), E⁻¹ — A_eff = A · Σ_selected cos θ_i / N_thrown(E bin, θ band).

Layering: numpy, astropy, pyirf and gammapy (analysis layer; not on the GPU path).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["IRFError", "IRFSet", "build_irfs", "EVENT_TYPE_EDGES", "ZENITH_EDGES_DEG",
           "GH_EFFICIENCY", "CR_FLUX", "event_type_of", "transit_fractions", "transit_response",
           "passes_gh_cut", "TransitResponse", "SIDEREAL_DAY_S", "angular_distance_deg",
           "energy_edges_tev", "JOINT_KM2A_FROM_TEV", "sensitivity_curve",
           "MIN_EVENTS_AEFF", "MIN_EVENTS_PSF", "MIN_EVENTS_CUT", "gh_thresholds", "GH_EDGES"]


class IRFError(ValueError):
    """Bad input for the instrument response (the message names file, field and entry)."""


#: event types [M]: KM2A log10(Ne) bins, WCDA bins of the number of cells hit
EVENT_TYPE_EDGES = {"km2a": (1.0, 2.0, 2.6, 6.0), "wcda": (60.0, 200.0, 600.0, 4000.0)}
#: zenith bands of the response [deg] (the drift scan's sources cross several)
ZENITH_EDGES_DEG = (0.0, 15.0, 25.0, 32.0, 38.0, 44.0, 50.0)
#: γ efficiency of the γ/hadron cut per event type and reco-energy bin [M] (LHAASO-KM2A keeps
#: most photons, WCDA-1 about half: PHYSICS.md §5.2 "≈ 50% γ acceptance")
GH_EFFICIENCY = {"km2a": 0.9, "wcda": 0.5}
#: cosmic-ray flux treated as protons [M]: PDG "Cosmic rays" (2024), eq. 30.2, the nucleon
#: intensity I_N(E) ≈ 1.8e4 (E/GeV)^−2.7 m⁻² s⁻¹ sr⁻¹ GeV⁻¹ (approximate above a few GeV)
CR_FLUX = {"norm_per_m2_s_sr_gev": 1.8e4, "index": 2.7}
#: KM2A takes the events of both detectors above this energy in the joint set [TeV] [M]
JOINT_KM2A_FROM_TEV = 25.0
MIN_EVENTS_AEFF = 3
MIN_EVENTS_PSF = 20
MIN_EVENTS_CUT = 20
SIDEREAL_DAY_S = 86164.0905
#: reconstructed-energy bins of the γ/hadron cut [dex of GeV]
CUT_BIN_DEX = 0.2


def energy_edges_tev(detector):
    """True- and reco-energy bin edges [TeV], 0.1 dex."""
    lo, hi = {"km2a": (0.5, 3.5), "wcda": (-0.5, 2.0)}[detector]
    return 10.0 ** np.round(np.arange(lo, hi + 1e-9, 0.1), 6)


def angular_distance_deg(z1, a1, z2, a2):
    c = np.sin(z1) * np.sin(z2) * np.cos(a1 - a2) + np.cos(z1) * np.cos(z2)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def event_type_of(detector, size):
    """Event type (0, 1, …) of events of ``detector`` from their size variable; −1 outside."""
    edges = np.asarray(EVENT_TYPE_EDGES[detector])
    t = np.digitize(np.asarray(size, np.float64), edges) - 1
    return np.where((t >= 0) & (t < len(edges) - 1) & np.isfinite(size), t, -1)


def _check_library(lib, detector, primary, name="library"):
    if str(lib["detector"]) != detector:
        raise IRFError(f"{name}: field 'detector' is {lib['detector']!r}, expected {detector!r}")
    if str(lib["primary"]) != primary:
        raise IRFError(f"{name}: field 'primary' is {lib['primary']!r}, expected {primary!r}")
    quality = lib["quality"] == 1
    for k, must in (("true_log10_energy", None), ("true_zenith", None),
                    ("reco_log10_energy", quality)):
        bad = ~np.isfinite(lib[k]) if must is None else ~np.isfinite(lib[k]) & must
        if bad.any():
            raise IRFError(f"{name}: field {k!r}: entry {int(np.argmax(bad))} is not finite")
    if int(lib["n_thrown"]) < len(lib["true_log10_energy"]):
        raise IRFError(f"{name}: field 'n_thrown' ({int(lib['n_thrown'])}) is below the number "
                       f"of events ({len(lib['true_log10_energy'])})")


def _thrown_fraction_energy(lib, lo_gev, hi_gev):
    """Fraction of the thrown primaries (E⁻¹) in [lo, hi) GeV."""
    a, b = float(lib["log10_energy_min"]), float(lib["log10_energy_max"])
    lo, hi = np.clip(np.log10(lo_gev), a, b), np.clip(np.log10(hi_gev), a, b)
    return np.maximum(hi - lo, 0.0) / (b - a)


def _thrown_fraction_zenith(lib, z1_deg, z2_deg):
    """Fraction of the thrown directions (cos²θ uniform up to zenith_max) in [z1, z2)."""
    zm = float(lib["zenith_max_deg"])
    c2 = lambda z: np.cos(np.radians(np.minimum(z, zm))) ** 2
    return np.maximum(c2(z1_deg) - c2(z2_deg), 0.0) / (1.0 - c2(zm))


#: bin edges of the γ/hadron thresholds: log10(E_reco/GeV)
GH_EDGES = np.round(np.arange(2.0, 7.0 + 1e-9, CUT_BIN_DEX), 6)


def gh_thresholds(reco_log10_energy, gh_score, types, sel, n_types, efficiency):
    """(edges, (n_types, n_bins) thresholds) on gh_score keeping ``efficiency`` of the photons
    ``sel`` of each type per reco-energy bin (:data:`GH_EDGES`); bins with fewer than
    :data:`MIN_EVENTS_CUT` photons interpolated from their neighbours (constant at the ends)."""
    edges = GH_EDGES
    thr = np.full((n_types, len(edges) - 1), np.nan)
    c = 0.5 * (edges[1:] + edges[:-1])
    for t in range(n_types):
        m = sel & (types == t) & np.isfinite(gh_score)
        b = np.digitize(reco_log10_energy[m], edges) - 1
        s = gh_score[m]
        for j in range(len(edges) - 1):
            v = s[b == j]
            if v.size >= MIN_EVENTS_CUT:
                thr[t, j] = np.quantile(v, 1.0 - efficiency)
        ok = np.isfinite(thr[t])
        thr[t] = np.interp(c, c[ok], thr[t, ok]) if ok.any() else -np.inf
    return edges, thr


def passes_gh_cut(gh_edges, thresholds, event_type, reco_log10_energy_gev, gh_score):
    """1 where an event passes the γ/hadron cut of its type and energy (events of type −1: 0)."""
    t = np.asarray(event_type)
    j = np.clip(np.digitize(reco_log10_energy_gev, gh_edges) - 1, 0, thresholds.shape[1] - 1)
    thr = thresholds[np.clip(t, 0, None), j]
    s = np.asarray(gh_score, np.float64)
    return (t >= 0) & np.isfinite(s) & (s >= thr)


def _smooth_survival(x, k, n, n_iter=50):
    """Hadron survival vs x (log10 E_reco) from k survivors of n per bin: a binomial maximum-
    likelihood logistic fit, logit p = a + b x (IRLS; a constant when fewer than two bins have
    events or nothing survives) [M] docs/irf.md — empty and sparse bins take the trend of the
    others instead of a noisy 0/n."""
    ok = n > 0
    k, n, x = k[ok].astype(float), n[ok].astype(float), np.asarray(x)[ok]
    p0 = (k.sum() + 0.5) / (n.sum() + 1.0)
    if ok.sum() < 2 or k.sum() < 2:
        return lambda xx: np.full(np.shape(xx), p0)
    beta = np.array([np.log(p0 / (1 - p0)), 0.0])
    X = np.stack([np.ones_like(x), x - x.mean()], 1)
    for _ in range(n_iter):
        eta = X @ beta
        p = 1 / (1 + np.exp(-eta))
        w = n * p * (1 - p) + 1e-12
        z = eta + (k - n * p) / w
        new = np.linalg.solve(X.T @ (w[:, None] * X) + 1e-9 * np.eye(2), X.T @ (w * z))
        if np.max(np.abs(new - beta)) < 1e-8:
            beta = new
            break
        beta = new
    xm = x.mean()
    return lambda xx: 1 / (1 + np.exp(-(beta[0] + beta[1] * (np.asarray(xx) - xm))))


@dataclass
class IRFSet:
    """The response of one detector set: per event type, gammapy IRF objects whose offset axis
    is the zenith angle, and the γ/hadron cut. :meth:`write` / :meth:`read` a FITS file."""
    detector: str                       # "km2a" or "wcda"
    aeff: list                          # EffectiveAreaTable2D per event type
    edisp: list                         # EnergyDispersion2D
    psf: list                           # PSF3D
    bkg: list                           # Background2D
    gh_edges: np.ndarray                # log10(E_reco/GeV) edges of the cut bins
    gh_thresholds: np.ndarray           # (n_types, n_bins)
    meta: dict = field(default_factory=dict)

    @property
    def n_types(self):
        return len(self.aeff)

    def type_names(self):
        return [f"{self.detector.upper()}_T{t}" for t in range(self.n_types)]

    def write(self, path, overwrite=False):
        from astropy.io import fits
        from astropy.table import Table

        path = str(path)
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path}: exists (use --overwrite)")
        hdus = [fits.PrimaryHDU()]
        for k, v in self.meta.items():
            hdus[0].header[k[:8].upper()] = v
        hdus[0].header["DETECTOR"] = self.detector
        hdus[0].header["NTYPES"] = self.n_types
        for t, name in enumerate(self.type_names()):
            for obj, kind in ((self.aeff[t], "AEFF"), (self.edisp[t], "EDISP"),
                              (self.psf[t], "PSF"), (self.bkg[t], "BKG")):
                h = obj.to_table_hdu()
                h.name = f"{kind}_{name}"
                hdus.append(h)
        cut = Table({"EVENT_TYPE": np.arange(self.n_types),
                     "SIZE_LO": np.asarray(EVENT_TYPE_EDGES[self.detector][:-1]),
                     "SIZE_HI": np.asarray(EVENT_TYPE_EDGES[self.detector][1:]),
                     "THRESHOLD": self.gh_thresholds})
        h = fits.table_to_hdu(cut)
        h.name = "GH_CUTS"
        h.header["E_EDGES"] = " ".join(f"{e:.3f}" for e in self.gh_edges)
        h.header["COMMENT"] = "gh_score >= THRESHOLD[bin of log10(E_reco/GeV)] passes"
        hdus.append(h)
        tmp = path + ".tmp"
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
        os.replace(tmp, path)

    @classmethod
    def read(cls, path):
        from astropy.io import fits
        from gammapy.irf import PSF3D, Background2D, EffectiveAreaTable2D, EnergyDispersion2D

        path = str(path)
        if not os.path.isfile(path):
            raise IRFError(f"{path}: no such file")
        with fits.open(path) as f:
            head = f[0].header
            if "DETECTOR" not in head or "GH_CUTS" not in f:
                raise IRFError(f"{path}: not an IRF file of lhaaso-joint irf (no DETECTOR/GH_CUTS)")
            det, n = head["DETECTOR"], int(head["NTYPES"])
            meta = {k: head[k] for k in head if k not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND",
                                                          "DETECTOR", "NTYPES", "COMMENT", "")}
            cut = f["GH_CUTS"]
            edges = np.array([float(x) for x in cut.header["E_EDGES"].split()])
            thr = np.asarray(cut.data["THRESHOLD"], np.float64).reshape(n, -1)
        names = [f"{det.upper()}_T{t}" for t in range(n)]
        rd = lambda c, k, nm: c.read(path, hdu=f"{k}_{nm}")
        return cls(det, [rd(EffectiveAreaTable2D, "AEFF", m) for m in names],
                   [rd(EnergyDispersion2D, "EDISP", m) for m in names],
                   [rd(PSF3D, "PSF", m) for m in names],
                   [rd(Background2D, "BKG", m) for m in names], edges, thr, meta)

    # -- what the events need ------------------------------------------------------------------
    def classify(self, size, reco_log10_energy_gev, gh_score):
        """(event_type, passes_cut) of events from their size, reco energy and gh_score."""
        t = event_type_of(self.detector, size)
        return t, passes_gh_cut(self.gh_edges, self.gh_thresholds, t, reco_log10_energy_gev,
                                gh_score)


def build_irfs(lib_gamma, lib_proton, detector, zenith_edges_deg=ZENITH_EDGES_DEG,
               progress=None) -> IRFSet:
    """The :class:`IRFSet` of ``detector`` from a photon and a proton library
    (``analysis.irf_library``; different seeds from any sky they will analyse)."""
    import astropy.units as u
    from astropy.table import QTable
    from gammapy.irf import PSF3D, Background2D, EffectiveAreaTable2D, EnergyDispersion2D
    from gammapy.maps import MapAxis
    from pyirf.irf import energy_dispersion, psf_table

    _check_library(lib_gamma, detector, "gamma", "photon library")
    _check_library(lib_proton, detector, "proton", "proton library")
    e_edges = energy_edges_tev(detector)
    z_edges = np.asarray(zenith_edges_deg, np.float64)
    if z_edges[-1] > float(lib_gamma["zenith_max_deg"]) + 1e-6:
        raise IRFError(f"photon library: field 'zenith_max_deg' ({float(lib_gamma['zenith_max_deg'])}) "
                       f"is below the last zenith band edge {z_edges[-1]}")
    migra = np.geomspace(0.2, 5.0, 61)
    rad = np.concatenate([[0.0], np.geomspace(0.02, 6.0, 50)])
    e_axis = MapAxis.from_edges(e_edges, unit="TeV", name="energy_true", interp="log")
    er_axis = MapAxis.from_edges(e_edges, unit="TeV", name="energy", interp="log")
    z_axis = MapAxis.from_edges(z_edges, unit="deg", name="offset")
    m_axis = MapAxis.from_edges(migra, name="migra")
    r_axis = MapAxis.from_edges(rad, unit="deg", name="rad")

    def prep(lib):
        t = event_type_of(detector, lib["size"])
        q = lib["quality"] == 1
        return t, q

    tg, qg = prep(lib_gamma)
    tp, qp = prep(lib_proton)
    gh_edges, thr = gh_thresholds(lib_gamma["reco_log10_energy"], lib_gamma["gh_score"], tg, qg,
                                  len(EVENT_TYPE_EDGES[detector]) - 1, GH_EFFICIENCY[detector])
    pass_g = qg & passes_gh_cut(gh_edges, thr, tg, lib_gamma["reco_log10_energy"], lib_gamma["gh_score"])
    pass_p_q = qp & (tp >= 0)

    eg_true = 10.0 ** (lib_gamma["true_log10_energy"] - 3.0)     # TeV
    eg_reco = 10.0 ** (lib_gamma["reco_log10_energy"] - 3.0)
    zg = np.degrees(lib_gamma["true_zenith"])
    theta = angular_distance_deg(lib_gamma["true_zenith"], lib_gamma["true_azimuth"],
                                 lib_gamma["reco_zenith"], lib_gamma["reco_azimuth"])
    # thrown per (E, θ) bin
    fe = _thrown_fraction_energy(lib_gamma, e_edges[:-1] * 1e3, e_edges[1:] * 1e3)
    fz = _thrown_fraction_zenith(lib_gamma, z_edges[:-1], z_edges[1:])
    n_thrown = float(lib_gamma["n_thrown"]) * fe[:, None] * fz[None, :]
    area = float(lib_gamma["area_m2"])

    # protons: rate weights [s⁻¹] per event (module docstring of analysis.irf_library)
    ep_reco_tev = 10.0 ** (lib_proton["reco_log10_energy"] - 3.0)
    lgp = lib_proton["true_log10_energy"]
    a_p, b_p = float(lib_proton["log10_energy_min"]), float(lib_proton["log10_energy_max"])
    e_gev = 10.0 ** lgp
    p_e = 1.0 / (e_gev * np.log(10.0) * (b_p - a_p))            # E⁻¹ density per GeV
    flux = CR_FLUX["norm_per_m2_s_sr_gev"] * e_gev ** (-CR_FLUX["index"])
    cmax2 = np.cos(np.radians(float(lib_proton["zenith_max_deg"]))) ** 2
    w_p = flux / p_e * float(lib_proton["area_m2"]) * np.pi * (1.0 - cmax2) / float(lib_proton["n_thrown"])
    zp = np.degrees(lib_proton["true_zenith"])
    # survival after the γ/hadron cut: pooled over zenith, smoothed in energy
    pass_p = pass_p_q & passes_gh_cut(gh_edges, thr, tp, lib_proton["reco_log10_energy"],
                                      lib_proton["gh_score"])
    lg_reco_p = lib_proton["reco_log10_energy"] - 3.0
    x_bins = np.log10(e_edges)
    x_c = 0.5 * (x_bins[1:] + x_bins[:-1])
    omega = 2 * np.pi * (np.cos(np.radians(z_edges[:-1])) - np.cos(np.radians(z_edges[1:])))
    de_mev = np.diff(e_edges) * 1e6

    aeff, edisp, psf, bkg, surv_info = [], [], [], [], []
    for t in range(len(EVENT_TYPE_EDGES[detector]) - 1):
        sel = pass_g & (tg == t)
        ie = np.digitize(eg_true[sel], e_edges) - 1
        iz = np.digitize(zg[sel], z_edges) - 1
        ok = (ie >= 0) & (ie < len(e_edges) - 1) & (iz >= 0) & (iz < len(z_edges) - 1)
        sum_cos = np.zeros((len(e_edges) - 1, len(z_edges) - 1))
        cnt = np.zeros_like(sum_cos)
        np.add.at(sum_cos, (ie[ok], iz[ok]), np.cos(np.radians(zg[sel][ok])))
        np.add.at(cnt, (ie[ok], iz[ok]), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where((cnt >= MIN_EVENTS_AEFF) & (n_thrown > 0), area * sum_cos / n_thrown, 0.0)
        aeff.append(EffectiveAreaTable2D(axes=[e_axis, z_axis], data=a, unit="m2"))
        ev = QTable({"true_energy": eg_true[sel] * u.TeV, "reco_energy": eg_reco[sel] * u.TeV,
                     "true_source_fov_offset": zg[sel] * u.deg, "theta": theta[sel] * u.deg})
        ev_all = QTable({"true_energy": eg_true[sel] * u.TeV, "reco_energy": eg_reco[sel] * u.TeV,
                         "true_source_fov_offset": np.full(sel.sum(), 1.0) * u.deg,
                         "theta": theta[sel] * u.deg})
        ed = energy_dispersion(ev, e_edges * u.TeV, z_edges * u.deg, migra)
        ed_all = energy_dispersion(ev_all, e_edges * u.TeV, [0.0, 90.0] * u.deg, migra)
        ps = psf_table(ev, e_edges * u.TeV, rad * u.deg, z_edges * u.deg).to_value("sr-1")
        ps_all = psf_table(ev_all, e_edges * u.TeV, rad * u.deg, [0.0, 90.0] * u.deg).to_value("sr-1")
        few = cnt < MIN_EVENTS_PSF                                   # (E, θ)
        ed = np.where(few[:, None, :], ed_all, ed)
        ps = np.where(few[:, :, None], ps_all, ps)
        edisp.append(EnergyDispersion2D(axes=[e_axis, m_axis, z_axis], data=ed))
        psf.append(PSF3D(axes=[e_axis, z_axis, r_axis], data=ps, unit="sr-1"))
        # background: rate per sr before the cut (per zenith band), × the smoothed survival
        mt = pass_p_q & (tp == t)
        ir = np.digitize(ep_reco_tev[mt], e_edges) - 1
        izp = np.digitize(zp[mt], z_edges) - 1
        okp = (ir >= 0) & (ir < len(e_edges) - 1) & (izp >= 0) & (izp < len(z_edges) - 1)
        rate = np.zeros((len(e_edges) - 1, len(z_edges) - 1))
        np.add.at(rate, (ir[okp], izp[okp]), w_p[mt][okp])
        n_before = np.histogram(lg_reco_p[mt], x_bins)[0].astype(float)
        n_after = np.histogram(lg_reco_p[mt & pass_p], x_bins)[0].astype(float)
        s = _smooth_survival(x_c, n_after, n_before)(x_c)
        b = rate * s[:, None] / omega[None, :] / de_mev[:, None]
        bkg.append(Background2D(axes=[er_axis, z_axis], data=b, unit="s-1 MeV-1 sr-1"))
        surv_info.append((int(n_before.sum()), int(n_after.sum())))
        if progress is not None:
            progress(1)
    meta = dict(creator="lhaaso-joint irf", date=datetime.date.today().isoformat(),
                ngamma=int(len(lib_gamma["true_log10_energy"])),
                nproton=int(len(lib_proton["true_log10_energy"])),
                seedg=int(lib_gamma["seed"]), seedp=int(lib_proton["seed"]),
                gheff=GH_EFFICIENCY[detector], crnorm=CR_FLUX["norm_per_m2_s_sr_gev"],
                crindex=CR_FLUX["index"], offset="zenith angle",
                hsurv=";".join(f"{a}/{b}" for a, b in surv_info))
    return IRFSet(detector, aeff, edisp, psf, bkg, gh_edges, thr, meta)


# -- drift scan: the response of a transit at a declination ---------------------------------------

def transit_fractions(dec_deg, zenith_edges_deg=ZENITH_EDGES_DEG, lat_deg=None, n=20001):
    """Fraction of a sidereal day that a source at declination ``dec_deg`` spends in each zenith
    band (geometry only: cos θ = sin φ sin δ + cos φ cos δ cos h)."""
    from joint.sky import LHAASO_SITE

    lat = np.radians(LHAASO_SITE.lat_deg if lat_deg is None else lat_deg)
    h = np.linspace(-np.pi, np.pi, n)
    d = np.radians(dec_deg)
    zen = np.degrees(np.arccos(np.clip(np.sin(lat) * np.sin(d) + np.cos(lat) * np.cos(d) * np.cos(h), -1, 1)))
    counts = np.histogram(zen, np.asarray(zenith_edges_deg))[0]
    return counts / n


@dataclass
class TransitResponse:
    """The response of one event type averaged over a transit at one declination, as gammapy
    objects with a flat offset axis (valid within ``max_offset_deg`` of the observation's
    reference direction), and the time the source spends within the zenith range [s]."""
    aeff: object
    edisp: object
    psf: object
    bkg: object
    livetime_s: float


def transit_response(irfs: IRFSet, event_type, dec_deg, max_offset_deg=6.0) -> TransitResponse:
    """Average the zenith-band response of ``event_type`` over a transit at ``dec_deg``:
    A(E) = Σ_b f_b A_b(E) / Σ_b f_b, PSF and dispersion weighted by f_b A_b(E), background by
    f_b; livetime = Σ_b f_b × a sidereal day. docs/irf.md (drift scan)."""
    from gammapy.irf import PSF3D, Background2D, EffectiveAreaTable2D, EnergyDispersion2D
    from gammapy.maps import MapAxis

    a2 = irfs.aeff[event_type]
    z_edges = a2.axes["offset"].edges.to_value("deg")
    f = transit_fractions(dec_deg, z_edges)
    if f.sum() <= 0:
        raise IRFError(f"declination {dec_deg}: never within {z_edges[-1]}° of the zenith at the site")
    off = MapAxis.from_edges([0.0, max_offset_deg / 2, max_offset_deg], unit="deg", name="offset")
    A = a2.data                                                     # (E, b) m²
    a_avg = (A * f[None, :]).sum(1) / f.sum()
    wa = A * f[None, :]
    norm = np.where(wa.sum(1) > 0, wa.sum(1), 1.0)
    ed = irfs.edisp[event_type].data                                # (E, μ, b)
    ed_avg = (ed * wa[:, None, :]).sum(2) / norm[:, None]
    ps = irfs.psf[event_type].data                                  # (E, b, r)
    ps_avg = (ps * wa[:, :, None]).sum(1) / norm[:, None]
    bk = irfs.bkg[event_type].data                                  # (E', b)
    bk_avg = (bk * f[None, :]).sum(1) / f.sum()
    e_t = a2.axes["energy_true"]
    aeff = EffectiveAreaTable2D(axes=[e_t, off], data=np.repeat(a_avg[:, None], 2, 1),
                                unit=a2.unit)
    ead = irfs.edisp[event_type]
    edisp = EnergyDispersion2D(axes=[e_t, ead.axes["migra"], off],
                               data=np.repeat(ed_avg[:, :, None], 2, 2))
    psf = PSF3D(axes=[e_t, off, irfs.psf[event_type].axes["rad"]],
                data=np.repeat(ps_avg[:, None, :], 2, 1), unit=irfs.psf[event_type].unit)
    bkg = Background2D(axes=[irfs.bkg[event_type].axes["energy"], off],
                       data=np.repeat(bk_avg[:, None], 2, 1), unit=irfs.bkg[event_type].unit)
    return TransitResponse(aeff, edisp, psf, bkg, float(f.sum() * SIDEREAL_DAY_S))


# -- sensitivity --------------------------------------------------------------------------------

def _type_counts(resp, spectrum, e_edges_tev, time_s, containment=0.68):
    """Per reconstructed-energy bin: expected photons within the 68% PSF radius (at the bin's
    true energy) and cosmic rays in the same solid angle, for ``time_s`` of transits."""
    e_t = resp.aeff.axes["energy_true"]
    et_edges = e_t.edges.to_value("TeV")
    et_c = np.sqrt(et_edges[1:] * et_edges[:-1])
    a = resp.aeff.data[:, 0]
    n_true = spectrum(et_c) * np.diff(et_edges) * 1e4 * a * time_s * containment  # cm²→m²
    mig = resp.edisp.data[:, :, 0]                                   # (E_true, μ)
    mu_edges = resp.edisp.axes["migra"].edges.value
    mu_c = np.sqrt(mu_edges[1:] * mu_edges[:-1])
    sig = np.zeros(len(e_edges_tev) - 1)
    for i in range(len(et_c)):
        if n_true[i] <= 0:
            continue
        er = et_c[i] * mu_c
        j = np.digitize(er, e_edges_tev) - 1
        ok = (j >= 0) & (j < len(sig))
        np.add.at(sig, j[ok], n_true[i] * mig[i, ok] * np.diff(mu_edges)[ok])
    # 68% radius at each reco bin's energy (the PSF at that true energy)
    import astropy.units as u

    e_c = np.sqrt(e_edges_tev[1:] * e_edges_tev[:-1])
    r68 = resp.psf.containment_radius(0.68, energy_true=e_c * u.TeV,
                                      offset=0.0 * u.deg).to_value("rad")
    omega = 2 * np.pi * (1 - np.cos(r68))
    bk = resp.bkg.data[:, 0]                                          # per MeV per sr per s
    b_edges = resp.bkg.axes["energy"].edges.to_value("TeV")
    bk_int = np.interp(np.log10(e_c), np.log10(np.sqrt(b_edges[1:] * b_edges[:-1])), bk,
                       left=0.0, right=0.0) * np.diff(e_edges_tev) * 1e6
    bkg = bk_int * omega * time_s
    return sig, bkg, np.degrees(r68)


def sensitivity_curve(type_responses, spectrum, e_edges_tev, time_s, alpha=0.2,
                      min_significance=5.0, min_signal=10.0, min_excess_over_background=0.05):
    """Point-source sensitivity: per reco-energy bin, the factor by which ``spectrum`` must be
    scaled to give ``min_significance`` (Li & Ma 1983 eq. 17, on/off ratio ``alpha``, as
    ``pyirf.sensitivity``) combining the event types of ``type_responses`` (a list of
    TransitResponse: their Li & Ma TS add, each type only where its signal is ≥ 5% of its
    background, a systematics floor), with ≥ ``min_signal`` photons. Returns (scale per bin, a dict of per-type signal and background)."""
    from pyirf.statistics import li_ma_significance

    counts = [_type_counts(r, spectrum, e_edges_tev, time_s) for r in type_responses]
    sig = np.array([c[0] for c in counts])                             # (T, E)
    bkg = np.array([c[1] for c in counts])
    scale = np.full(sig.shape[1], np.nan)
    for j in range(sig.shape[1]):
        s, b = sig[:, j], bkg[:, j]
        if s.sum() <= 0:
            continue
        # a type counts only where its excess is ≥ the background-systematics floor
        k_floor = np.where(s > 0, min_excess_over_background * b / np.where(s > 0, s, 1), np.inf)

        def ts(k):
            use = (s > 0) & (k >= k_floor)
            if not use.any():
                return 0.0
            z = li_ma_significance(k * s[use] + b[use], b[use] / alpha, alpha)
            return float(np.sum(z ** 2))

        lo, hi = 1e-8, 1e8
        for _ in range(200):
            mid = np.sqrt(lo * hi)
            if ts(mid) >= min_significance ** 2:
                hi = mid
            else:
                lo = mid
            if hi / lo < 1.0001:
                break
        scale[j] = max(hi, min_signal / s.sum())
    return scale, {"signal": sig, "background": bkg, "r68_deg": [c[2] for c in counts]}
