"""Run explanation chunks: in-process, on a local process pool, or on a Dask cluster.

A chunk is a small batch of samples for one method. Each executor sends chunks to workers that hold
the model (loaded or deserialised once per worker, torch limited to one thread), and hands every
finished chunk back to the caller as packed, checksummed cache entries, in completion order, so the
caller can persist it at once. A worker that dies has its chunks retried.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from explainkit.enums import _StrEnum
from explainkit.errors import MissingDependencyError, ParameterError

__all__ = ["Executor", "Item", "Chunk", "Failed", "compute_chunk", "run_chunks", "PRE_SPAWN_ENV", "CONNECT_TIMEOUT_S"]

# environment of Dask worker processes, set before they start: glibc returns freed memory to the OS
# (bounded worker memory over long runs) and numeric libraries use one thread per worker process
PRE_SPAWN_ENV = {"MALLOC_TRIM_THRESHOLD_": 65536, "OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1,
                 "OPENBLAS_NUM_THREADS": 1}
MAX_POOL_RESTARTS = 3
DASK_RETRIES = 3
CONNECT_TIMEOUT_S = 10      # how long `--executor dask --address` waits for the scheduler before one clear error


class Executor(_StrEnum):
    """Where chunks run."""
    LOCAL = "local"      # this process (workers=1) or a local process pool (workers>1)
    DASK = "dask"        # a Dask cluster: --address, or a LocalCluster


@dataclass
class Item:
    """One sample of a chunk: its index in the data, raw input, label, cache key, and whether it gets a section."""
    index: int
    raw: Any
    label: Any
    key: str
    render: bool = False


@dataclass
class Chunk:
    """Samples explained together by one method with one parameter set and seed."""
    method: str
    params: dict
    seed: int
    items: list = field(default_factory=list)
    view: str = "signed"
    registry: Any = None          # a private Registry (report(registry=...)); None: the process-wide one


@dataclass
class Failed:
    """An entry whose explainer raised: the reason replaces the packed cache entry (nothing is cached)."""
    reason: str


def _one_thread() -> None:
    import explainkit.models.torch_model  # noqa: F401 - load the adapters before a pickled model arrives
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def compute_chunk(model, chunk: Chunk) -> list[tuple[str, "bytes | Failed"]]:
    """Explain a chunk; returns ``(key, packed entry)`` per sample (data only: the report renders HTML).

    If the chunk fails, its items are retried one by one, so one bad input fails only its own entry:
    ``(key, Failed(reason))``. Ctrl-C and worker deaths still propagate."""
    from explainkit.reports.cache import pack

    try:
        exps = _explain(model, chunk, chunk.items)
        return [(it.key, pack(exp)) for exp, it in zip(exps, chunk.items)]
    except Exception as e:  # noqa: BLE001 - a failing explainer fails only its own entries
        if len(chunk.items) == 1:
            return [(chunk.items[0].key, Failed(_why(e)))]
    _forgive(chunk)               # the batch's failure is not held against the items retried alone
    out = []
    for it in chunk.items:
        try:
            out.append((it.key, pack(_explain(model, chunk, [it])[0])))
        except Exception as e:  # noqa: BLE001
            out.append((it.key, Failed(_why(e))))
    return out


def _explain(model, chunk: Chunk, items: list):
    from explainkit.plugins.runner import run_explainer

    samples = [model.prepare(it.raw, it.label, it.index) for it in items]
    return run_explainer(chunk.method, model, samples, seed=chunk.seed, reg=chunk.registry, **chunk.params)


def _why(e: Exception) -> str:
    from explainkit.errors import ExplainKitError
    text = e.problem if isinstance(e, ExplainKitError) else f"{type(e).__name__}: {e}"
    return " ".join(str(text).split())[:500] or type(e).__name__


def _forgive(chunk: Chunk) -> None:
    from explainkit.plugins.registry import registry
    (chunk.registry or registry()).succeeded(chunk.method)


# -- local process pool --------------------------------------------------------------------------------
_WORKER_MODEL = None


def _init_worker(model_bytes: bytes) -> None:
    """Pool initializer: load the model once per worker process, with one torch thread."""
    global _WORKER_MODEL
    _one_thread()
    import pickle  # the parent pickled its own adapter; loaded after the adapters module
    _WORKER_MODEL = pickle.loads(model_bytes)


def _pool_task(chunk: Chunk):
    return compute_chunk(_WORKER_MODEL, chunk)


def _run_pool(chunks, model_bytes, workers, on_result):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pending = dict(enumerate(chunks))
    restarts = 0
    while pending:
        ctx = mp.get_context("spawn")      # fork after torch has started threads can deadlock
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(model_bytes,))
        futs = {pool.submit(_pool_task, c): i for i, c in pending.items()}
        try:
            for fut in as_completed(futs):
                result = fut.result()
                pending.pop(futs[fut])
                on_result(result)
        except BrokenProcessPool:
            restarts += 1
            if restarts > MAX_POOL_RESTARTS:
                from explainkit.errors import ExplainKitError
                raise ExplainKitError(f"Worker processes died {restarts} times; {len(pending)} chunks left.",
                                      "check memory limits, or run with --workers 1.") from None
        finally:            # Ctrl-C or an error: drop the queued chunks instead of waiting for them
            pool.shutdown(wait=False, cancel_futures=True)


# -- Dask ---------------------------------------------------------------------------------------------
def _dask_task(model, chunk: Chunk):
    _one_thread()
    return compute_chunk(model, chunk)


def _client(address, workers):
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise MissingDependencyError("The dask executor needs dask.distributed.",
                                     "pip install 'explainkit[dask]' (or: pip install dask distributed)") from None
    if address:
        try:
            return Client(address, timeout=f"{CONNECT_TIMEOUT_S}s"), None
        except (OSError, TimeoutError) as e:
            from explainkit.errors import ExplainKitError
            raise ExplainKitError(f"Cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT_S} s "
                                  f"({type(e).__name__}).", "start the scheduler (dask scheduler) and check the "
                                  "address, or drop --address to use a local cluster.") from None
    env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **PRE_SPAWN_ENV}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        cluster = LocalCluster(n_workers=max(1, int(workers)), threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
    return Client(cluster), cluster


def _run_dask(chunks, model, workers, address, on_result, on_client=None, client=None):
    from distributed import as_completed

    own = client is None
    cluster = None
    if own:
        client, cluster = _client(address, workers)
    try:
        client.run(_one_thread)
        if on_client is not None:
            on_client(client)
        # the model travels once to each worker, not once per task
        model_f = client.scatter(model, broadcast=True, hash=False)
        futs = [client.submit(_dask_task, model_f, c, pure=False, retries=DASK_RETRIES) for c in chunks]
        for fut in as_completed(futs):
            on_result(fut.result())
            fut.release()
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()


def run_chunks(chunks: list, model, *, executor="local", workers: int = 1, address=None,
               on_result: Callable, on_client: Callable | None = None, client=None) -> None:
    """Compute every chunk and pass each finished one to ``on_result`` (in the calling process)."""
    executor = Executor.parse(executor)
    if not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers must be a positive integer; got {workers!r}.", "pass --workers 1 or more.")
    if not chunks:
        return
    if executor is Executor.DASK or client is not None:
        _run_dask(chunks, model, workers, address, on_result, on_client, client)
    elif workers == 1:
        for c in chunks:
            on_result(compute_chunk(model, c))
    else:
        import pickle
        _run_pool(chunks, pickle.dumps(model), min(workers, len(chunks)), on_result)
