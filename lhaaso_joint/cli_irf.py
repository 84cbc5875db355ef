"""``lhaaso-joint irf | dl3 | simulate-sky``: instrument response, DL3 export for gammapy and a
simulated sky (docs/irf.md, docs/dl3.md, docs/sky_simulation.md)."""
from __future__ import annotations

import os

from joint.io.errors import RunError

__all__ = ["add_parsers"]


def _irf_error(fn):
    def run(args):
        from analysis.irf import IRFError

        try:
            return fn(args)
        except (IRFError, FileExistsError) as err:
            raise RunError(str(err)) from None
    return run


def _libraries(args, detector, purpose):
    """(photon, proton) libraries: --library files, else simulated into --library-dir."""
    from tqdm import tqdm

    from analysis.irf_library import (IRF_SEEDS, SKY_SEEDS, library_path, load_library,
                                      save_library, simulate_library)

    given = [load_library(p) for p in (args.library or [])]
    libs = {}
    for lib, p in zip(given, args.library or []):
        if str(lib["detector"]) == detector:
            if str(lib["primary"]) in libs:
                raise RunError(f"{p}: a second {detector} {lib['primary']} library")
            libs[str(lib["primary"])] = lib
    seeds = IRF_SEEDS if purpose == "irf" else SKY_SEEDS
    for primary, n in (("gamma", args.gammas), ("proton", args.protons)):
        if primary in libs:
            continue
        path = library_path(args.library_dir, detector, primary, purpose, n)
        if os.path.exists(path):
            libs[primary] = load_library(path)
            print(f"{detector} {primary}: library {path}")
            continue
        os.makedirs(args.library_dir, exist_ok=True)
        bar = tqdm(total=n, desc=f"{detector} {primary} (simulate + reconstruct)", unit="ev")
        lib = simulate_library(detector, primary, n, seeds[(detector, primary)],
                               progress=bar.update)
        bar.close()
        save_library(path, lib)
        libs[primary] = lib
    return libs["gamma"], libs["proton"]


@_irf_error
def cmd_irf(args) -> int:
    from analysis.irf import build_irfs

    dets = [d.strip() for d in args.detectors.split(",") if d.strip()]
    for d in dets:
        if d not in ("km2a", "wcda"):
            raise RunError(f"--detectors: {d!r} is not km2a or wcda")
    outs = {d: os.path.join(args.output, f"irf_{d}.fits") for d in dets}
    for d, p in outs.items():
        if os.path.exists(p) and not args.overwrite:
            raise RunError(f"{p}: exists (use --overwrite)")
    for d in dets:
        g, p = _libraries(args, d, "irf")
        irfs = build_irfs(g, p, d)
        os.makedirs(args.output, exist_ok=True)
        irfs.write(outs[d], overwrite=args.overwrite)
        print(f"{d}: {irfs.n_types} event types ({', '.join(irfs.type_names())}), zenith bands "
              f"{list(irfs.aeff[0].axes['offset'].edges.to_value('deg'))} deg -> {outs[d]}")
    return 0


@_irf_error
def cmd_dl3(args) -> int:
    from analysis.dl3 import export_dl3

    ra, dec = args.ref
    res = export_dl3(args.reco, args.irf, args.output, (ra, dec), max_offset_deg=args.max_offset,
                     object_name=args.object, overwrite=args.overwrite, log=print)
    for name, n in res["events"].items():
        print(f"  {name}: {n} events")
    print(f"{res['transits']} transits, livetime {res['livetime_per_transit_s'] / 3600:.2f} h "
          "per transit")
    return 0


@_irf_error
def cmd_simulate_sky(args) -> int:
    import json

    from analysis.sky_sim import Source, crab_lhaaso, flare, power_law, simulate_sky, write_sky

    try:
        with open(args.sources) as f:
            spec = json.load(f)
    except (OSError, ValueError) as err:
        raise RunError(f"{args.sources}: {err}") from None
    sources = []
    for i, s in enumerate(spec.get("sources", [])):
        for k in ("name", "ra", "dec", "spectrum"):
            if k not in s:
                raise RunError(f"{args.sources}: sources[{i}]: field {k!r} missing")
        sp = s["spectrum"]
        if sp == "crab_lhaaso":
            f = crab_lhaaso()
        elif isinstance(sp, dict) and {"amplitude", "reference_tev", "index"} <= set(sp):
            f = power_law(sp["amplitude"], sp["reference_tev"], sp["index"])
        else:
            raise RunError(f"{args.sources}: sources[{i}]: field 'spectrum' must be "
                           "'crab_lhaaso' or {amplitude, reference_tev, index}")
        lc = None
        if "flare" in s:
            fl = s["flare"]
            lc = flare(fl["mjd_start"], fl["mjd_stop"], fl["factor"])
        sources.append(Source(s["name"], float(s["ra"]), float(s["dec"]), f,
                              float(s.get("sigma_deg", 0.0)), lc))
    roi = spec.get("roi")
    if roi is None or len(roi) != 3:
        raise RunError(f"{args.sources}: field 'roi' must be [ra, dec, radius] in deg")
    dets = [d.strip() for d in args.detectors.split(",") if d.strip()]
    libs = {d: _libraries(args, d, "sky") for d in dets}
    sky = simulate_sky(sources, libs, args.mjd_start, args.days, roi, seed=args.seed,
                       progress=print)
    for p in write_sky(sky, args.output, overwrite=args.overwrite):
        print(f"-> {p}")
    return 0


def add_parsers(sub):
    s = sub.add_parser("irf", help="instrument response per event type and zenith band from "
                       "simulated, reconstructed photons and protons (docs/irf.md)")
    s.add_argument("-o", "--output", required=True, help="directory for irf_<detector>.fits")
    s.add_argument("--detectors", default="km2a", help="comma list of km2a, wcda")
    s.add_argument("--gammas", type=int, default=12000, help="photons to simulate per detector")
    s.add_argument("--protons", type=int, default=12000, help="protons to simulate per detector")
    s.add_argument("--library", nargs="*", default=None, metavar="NPZ",
                   help="event libraries to use instead of simulating (analysis.irf_library)")
    s.add_argument("--library-dir", default="irf_libraries",
                   help="where simulated libraries are kept and reused")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_irf)

    s = sub.add_parser("dl3", help="GADF DL3 data store (events, GTI, responses, index "
                       "tables) for gammapy, one observation per transit and event type")
    s.add_argument("reco", nargs="+", help="reco trees with sky coordinates and times")
    s.add_argument("--irf", nargs="+", required=True, help="irf_<detector>.fits files")
    s.add_argument("--ref", nargs=2, type=float, required=True, metavar=("RA", "DEC"),
                   help="reference direction of the observations [deg]")
    s.add_argument("--max-offset", type=float, default=5.0,
                   help="events within this angle of --ref [deg]")
    s.add_argument("--object", default="", help="OBJECT keyword")
    s.add_argument("-o", "--output", required=True, help="directory of the data store")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_dl3)

    s = sub.add_parser("simulate-sky", help="sources and cosmic rays in drift scan through "
                       "the project's chain (library events reused; docs/sky_simulation.md)")
    s.add_argument("sources", help="JSON: {roi: [ra, dec, radius], sources: [{name, ra, dec, "
                   "spectrum, sigma_deg?, flare?: {mjd_start, mjd_stop, factor}}]}")
    s.add_argument("--mjd-start", type=float, default=61000.0)
    s.add_argument("--days", type=float, default=30.0, help="sidereal days")
    s.add_argument("--detectors", default="km2a", help="comma list of km2a, wcda")
    s.add_argument("--gammas", type=int, default=12000)
    s.add_argument("--protons", type=int, default=8000)
    s.add_argument("--library", nargs="*", default=None, metavar="NPZ")
    s.add_argument("--library-dir", default="irf_libraries")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-o", "--output", required=True, help="directory for sky_<detector>.root")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_simulate_sky)
