"""Reconstruction on more than one machine: a Dask executor for ``joint.runner.reconstruct_files``
(``lhaaso-joint reconstruct FILES... --cluster SPEC``; docs/farm.md).

Cluster specifications (:func:`open_cluster`):

* ``local:N``        N worker processes on this machine (``distributed.LocalCluster``)
* ``tcp://HOST:PORT`` a running Dask scheduler (its workers started with ``dask worker``)
* ``htcondor:N``     N HTCondor jobs (``dask_jobqueue.HTCondorCluster``, e.g. IHEP's farm)
* ``slurm:N``        N SLURM jobs (``dask_jobqueue.SLURMCluster``)

Every worker is one process with one thread (JAX parallelises inside the process; several
threads per process would fight over the same cores and compile the same programs twice; XLA
still uses every core of the node: ``local:N`` on an N-core machine is not faster than one
process, BENCHMARKS.md issue 15, and a farm slot should be a whole node or set ``XLA_FLAGS``),
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

__all__ = ["check_cluster_spec", "open_cluster", "jobqueue_cluster", "DaskExecutor", "WORKER_ENV",
           "worker_env"]

#: environment of every worker process
WORKER_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "OMP_NUM_THREADS": "1",
              "TF_CPP_MIN_LOG_LEVEL": "2"}
#: how long a run waits for its first worker (batch jobs may queue) [s]
WORKER_WAIT_S = 6 * 3600


def worker_env() -> dict:
    """:data:`WORKER_ENV` plus the client's compilation-cache directory, so that workers share
    the programs the others compiled (``LHAASO_JOINT_CACHE_DIR``, when set)."""
    env = dict(WORKER_ENV)
    if os.environ.get("LHAASO_JOINT_CACHE_DIR"):
        env["LHAASO_JOINT_CACHE_DIR"] = os.environ["LHAASO_JOINT_CACHE_DIR"]
    return env


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


def open_cluster(spec: str, max_memory_gb: float = 3.0, log=print):
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
                               env=worker_env(), memory_limit=memory, dashboard_address=None)
    elif kind in ("tcp", "tls"):
        try:
            client = Client(spec, timeout="30s")
        except Exception as err:  # noqa: BLE001 - OSError, ValueError, TypeError for bad specs
            raise RunError(f"--cluster {spec}: no Dask scheduler answers "
                           f"({type(err).__name__}: {err})") from None
        return client, None
    elif kind in ("htcondor", "slurm"):
        import importlib.util

        if importlib.util.find_spec("dask_jobqueue") is None:
            raise RunError(f"--cluster {spec} needs dask-jobqueue: pip install "
                           "'lhaaso-joint[farm]'")
        n = _count(spec, "jobs")
        cluster = jobqueue_cluster(kind, memory)
        # adapt, not scale: jobs that end (walltime, preemption) are replaced
        cluster.adapt(minimum_jobs=n, maximum_jobs=n)
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
               job_script_prologue=[f"export {k}={v}" for k, v in worker_env().items()],
               **extra)


def _identity(x):
    return x


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
    def from_spec(cls, spec: str, max_memory_gb: float = 3.0, log=print):
        client, cluster = open_cluster(spec, max_memory_gb, log)
        return cls(client, cluster)

    def map_chunks(self, tasks, ctx):
        import uuid

        from distributed import as_completed

        from joint.runner import fit_chunk

        if not tasks:
            return
        try:  # batch jobs may queue for a while
            self.client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except Exception as err:  # noqa: BLE001 - a TimeoutError of distributed's own
            raise RunError(f"no Dask worker came up within {WORKER_WAIT_S} s ({err}); the "
                           "chunks already fitted are kept: rerun the same command") from None
        # the context as a task's result, not scattered data: if every worker holding it dies,
        # the scheduler recomputes it instead of failing every chunk that needs it
        run = uuid.uuid4().hex[:12]
        ctx_future = self.client.submit(_identity, ctx, key=f"ctx-{run}", pure=False)
        futures = {self.client.submit(fit_chunk, t, ctx_future, key=f"chunk-{run}-{t.name}",
                                      pure=False, retries=self.retries): t for t in tasks}
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
