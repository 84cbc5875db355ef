"""lhaaso-joint's user interfaces: the Python API (:mod:`lhaaso_joint.api`) and the command line
(:mod:`lhaaso_joint.cli`, ``lhaaso-joint``). They sit on top of the layers

    detectors  <-  joint (fit, pipeline, runner, io)  <-  analysis, calib  <-  lhaaso_joint

and wire them together (docs/architecture.md). Importing this package turns on JAX's persistent
compilation cache (:func:`lhaaso_joint.cache.enable_compilation_cache`).
"""
from lhaaso_joint.cache import enable_compilation_cache

enable_compilation_cache()

from lhaaso_joint.api import config_for, read_reco, reconstruct, reconstruct_files, simulate  # noqa: E402

__all__ = ["simulate", "reconstruct", "reconstruct_files", "read_reco", "config_for",
           "enable_compilation_cache"]
