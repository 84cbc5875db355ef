"""Reconstruction on more than one machine: a Dask executor for ``joint.runner.reconstruct_files``
(``lhaaso-joint reconstruct FILES... --cluster SPEC``; docs/farm.md).

Cluster specifications (:func:`open_cluster`):

* ``local:N``        N worker processes on this machine (``distributed.LocalCluster``)
* ``tcp://HOST:PORT`` a running Dask scheduler (its workers started with ``dask worker``)
* ``htcondor:N``     N HTCondor jobs (``dask_jobqueue.HTCondorCluster``, e.g. IHEP's farm)
* ``slurm:N``        N SLURM jobs (``dask_jobqueue.SLURMCluster``)

Every worker is one process with one thread (JAX parallelises inside the process; several
threads per process would fight over the same cores and compile the same programs twice),
with ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (a worker on a GPU node takes only the GPU
memory it uses) and the persistent compilation cache on (``lhaaso_joint.cache``: a worker
loads the programs other workers compiled when they share the cache directory). One task is
one chunk of an input file (``joint.workdir``): its output is written by the worker to the run
directory, which must be on a file system the workers share with the client, so a task
rerun after a worker died writes the same chunk again and no event is lost or duplicated.
"""
from __future__ import annotations

import os

from joint.io.errors import RunError

__all__ = ["check_cluster_spec", "open_cluster", "jobqueue_cluster", "DaskExecutor", "WORKER_ENV"]

#: environment of every worker process
WORKER_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "OMP_NUM_THREADS": "1",
              "TF_CPP_MIN_LOG_LEVEL": "2"}


def _count(spec: str, what: str) -> int:
    kind, _, n = spec.partition(":")
    try:
        n = int(n) if n else 1
    except ValueError:
        n = 0
    if n < 1:
        raise RunError(f"--cluster {spec}: the number of {what} must be a positive integer "
                       f"(e.g. {kind}:4)")
    return n


KINDS = ("local", "tcp", "tls", "htcondor", "slurm")


def check_cluster_spec(spec: str) -> None:
    """RunError (one line) for a malformed ``--cluster`` specification; starts nothing."""
    kind = str(spec).split(":", 1)[0]
    if kind not in KINDS:
        raise RunError(f"--cluster {spec}: unknown kind {kind!r} (local:N, tcp://HOST:PORT, "
                       "htcondor:N or slurm:N)")
    if kind in ("local", "htcondor", "slurm"):
        _count(spec, "workers" if kind == "local" else "jobs")
    elif not str(spec).partition("://")[2]:
        raise RunError(f"--cluster {spec}: give the scheduler's address, e.g. tcp://HOST:8786")


def open_cluster(spec: str, max_memory_gb: float = 4.0, log=print):
    """(dask Client, cluster or None) for a ``--cluster`` specification (module docstring)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise RunError("--cluster needs dask.distributed: pip install 'lhaaso-joint[farm]'") \
            from None
    check_cluster_spec(spec)
    kind = spec.split(":", 1)[0]
    memory = f"{max(2.0, 1.5 * max_memory_gb):.1f}GB"
    if kind == "local":
        n = _count(spec, "workers")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               env=WORKER_ENV, memory_limit=memory, dashboard_address=None)
    elif kind in ("tcp", "tls"):
        cluster = None
        try:
            client = Client(spec, timeout="30s")
        except OSError as err:
            raise RunError(f"--cluster {spec}: no Dask scheduler answers ({err})") from None
        return client, None
    elif kind in ("htcondor", "slurm"):
        import importlib.util

        if importlib.util.find_spec("dask_jobqueue") is None:
            raise RunError(f"--cluster {spec} needs dask-jobqueue: pip install "
                           "'lhaaso-joint[farm]'")
        n = _count(spec, "jobs")
        cluster = jobqueue_cluster(kind, memory)
        cluster.scale(jobs=n)
        log(f"{kind}: {n} jobs requested ({memory} each); the run starts as they come up")
    else:
        raise RunError(f"--cluster {spec}: unknown kind {kind!r} (local:N, tcp://HOST:PORT, "
                       "htcondor:N or slurm:N)")
    return Client(cluster), cluster


def jobqueue_cluster(kind: str, memory: str):
    """A dask-jobqueue cluster (no jobs yet) whose jobs are one worker of one process and one
    thread with :data:`WORKER_ENV`; queue, project, GPU requests and the Python environment come
    from the site's dask-jobqueue configuration (``~/.config/dask/jobqueue.yaml``, docs/farm.md)."""
    import dask_jobqueue

    cls = dask_jobqueue.HTCondorCluster if kind == "htcondor" else dask_jobqueue.SLURMCluster
    extra = {"disk": "4GB"} if kind == "htcondor" else {}
    return cls(cores=1, processes=1, memory=memory,
               job_script_prologue=[f"export {k}={v}" for k, v in WORKER_ENV.items()], **extra)


class _CompilationCache:
    """Worker plugin: the persistent compilation cache on in every worker."""

    name = "lhaaso-joint-cache"

    def setup(self, worker):
        from lhaaso_joint.cache import enable_compilation_cache

        enable_compilation_cache()


class DaskExecutor:
    """``map_chunks`` over a Dask cluster: one task per chunk (``joint.runner.fit_chunk``),
    results yielded as they finish; a task whose worker died is rerun by the scheduler on
    another worker (``distributed.scheduler.allowed-failures``), and one that fails with an
    exception is retried ``retries`` times and then reported (the run then ends with a
    RunError after the other chunks, which are kept for the next run)."""

    def __init__(self, client, cluster=None, retries: int = 1):
        self.client, self.cluster, self.retries = client, cluster, retries
        try:
            from distributed.diagnostics.plugin import WorkerPlugin

            plugin = type("CompilationCache", (_CompilationCache, WorkerPlugin), {})()
            client.register_plugin(plugin, name=_CompilationCache.name)
        except Exception:  # noqa: BLE001 - an old distributed: workers compile themselves
            pass

    @classmethod
    def from_spec(cls, spec: str, max_memory_gb: float = 4.0, log=print):
        client, cluster = open_cluster(spec, max_memory_gb, log)
        return cls(client, cluster)

    def map_chunks(self, tasks, ctx):
        from distributed import as_completed

        from joint.runner import fit_chunk

        if not tasks:
            return
        [ctx_future] = self.client.scatter([ctx], broadcast=True, hash=False)
        futures = {self.client.submit(fit_chunk, t, ctx_future, key=f"chunk-{os.getpid()}-"
                                      f"{t.name}", pure=False, retries=self.retries): t
                   for t in tasks}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                yield task, fut.result()
            except Exception as err:  # noqa: BLE001 - reported per chunk by the runner
                yield task, err

    def describe(self) -> str:
        info = self.client.scheduler_info()
        return f"dask {info.get('address')} ({len(info.get('workers', {}))} workers)"

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
