"""Ray plumbing shared by every distributed job: importing Ray, connecting (and disconnecting only what was started
here), checking that user callables can travel, and running numbered chunks on a pool of actors with every failure
named after its chunk.

Nothing here starts Ray at import: a connection is made only inside :func:`connect`, which the public functions
enter when they are called.
"""
from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from .._validation import check_scalar, error_message

RAY_INSTALL_HINT = 'xrl.distributed needs Ray: pip install "xrl[ray]"'


class WorkerError(RuntimeError):
    """A worker failed: its setup raised, a chunk raised, or a worker process died. No partial result is returned.

    Attributes
    ----------
    chunk : int or None
        Index of the chunk that failed (None when a worker failed while being set up).
    what : str
        What the chunk held (``"rows 200:300"``, ``"environments 4:8"``, ``"item 3: Attribution(...)"``).
    cause : BaseException or None
        The worker's exception (also the ``__cause__``), when Ray could bring it back.
    remote_traceback : str
        The traceback as printed in the worker.
    """

    def __init__(self, message: str, *, chunk: int | None = None, what: str = "", cause: BaseException | None = None,
                 remote_traceback: str = ""):
        super().__init__(message)
        self.chunk, self.what, self.cause, self.remote_traceback = chunk, what, cause, remote_traceback


class StageError(Exception):
    """Raised inside a worker: a named step of its setup or of a chunk failed; ``original`` is the step's exception
    (kept as an argument: pickling an exception drops its ``__cause__``)."""

    def __init__(self, message: str, original: BaseException | None = None):
        super().__init__(message, original)
        self.message, self.original = message, original

    def __str__(self) -> str:
        return self.message


def import_ray() -> Any:
    """``ray``, or an ImportError that names the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"{RAY_INSTALL_HINT} (import ray failed: {exc})") from exc
    return ray


def check_num_workers(num_workers: Any, most: int | None = None, what: str = "") -> int:
    check_scalar("num_workers", num_workers, int, low=1)
    if most is not None and num_workers > most:
        raise ValueError(error_message("num_workers", f"at most {most} ({what})", num_workers,
                                       "use fewer workers, or give each more work"))
    return int(num_workers)


def check_serializable(name: str, obj: Any) -> None:
    """Fail here, with the argument's name, if Ray cannot serialize ``obj`` for its workers."""
    ray = import_ray()
    try:
        ray.cloudpickle.dumps(obj)
    except Exception as exc:  # pickling raises many types (TypeError, PicklingError, AttributeError, ...)
        raise TypeError(error_message(
            name, "an object Ray can serialize to send to its workers", f"{type(obj).__name__} ({type(exc).__name__}: "
            f"{exc})", "define it at module level or as a function that builds its objects when called (locks, open "
            "files, sockets and CUDA handles cannot travel; build them inside the function)")) from exc


def _probe(address: str, timeout: float) -> None:
    """A quick TCP check of ``host:port`` (also ``ray://host:port``): Ray itself retries an unreachable address for
    minutes before failing."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # a form Ray resolves itself ("auto", a cluster name): let ray.init judge it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"address: could not reach a Ray cluster at {address!r} ({exc}); start one with "
                              "`ray start --head` on the head node and pass the address it prints (or "
                              "address='auto' on a node of the cluster), or address=None for a local instance") \
            from exc


@contextmanager
def connect(address: str | None = None, *, connect_timeout: float = 10.0) -> Iterator[Any]:
    """Yield ``ray`` connected to a cluster, and disconnect only what was connected here (public as
    ``xrl.distributed.cluster``: several calls inside one ``with cluster(address):`` share one start-up).

    - This process already connected (``ray.init`` called by the user): that connection is used and left open;
      ``address`` must be None.
    - ``address=None``: a local Ray instance is started (``ray.init(include_dashboard=False)``) and shut down at the
      end.
    - ``address`` given (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``): this process connects to that cluster
      and disconnects at the end; the cluster keeps running.

    Examples
    --------
    >>> with cluster():                                            # doctest: +SKIP
    ...     trajectories = collect_trajectories(agent, "breakout", num_workers=2)
    ...     result = evaluate(agent, "breakout", num_workers=2)
    """
    ray = import_ray()
    if ray.is_initialized():
        if address is not None:
            raise ValueError(error_message("address", "None when this process is already connected to Ray "
                                           "(ray.init was called)", address, "drop address=, or call ray.shutdown() "
                                           "first to connect elsewhere"))
        yield ray
        return
    if address is None:
        ray.init(include_dashboard=False)
    else:
        if not isinstance(address, str) or not address:
            raise TypeError(error_message("address", "None (a local Ray instance), 'auto' or 'host:port' of a "
                                          "running cluster", address))
        _probe(address, connect_timeout)
        try:
            ray.init(address=address)
        except ConnectionError as exc:
            raise ConnectionError(f"address: could not connect to a Ray cluster at {address!r} ({exc}); start one "
                                  "with `ray start --head`, or pass address=None for a local instance") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def check_resources(ray: Any, num_workers: int, cpus_per_worker: float, gpus_per_worker: float) -> None:
    """The cluster must hold ``num_workers`` workers at once (otherwise the pool would wait forever)."""
    check_scalar("cpus_per_worker", cpus_per_worker, (int, float), low=0)
    check_scalar("gpus_per_worker", gpus_per_worker, (int, float), low=0)
    have = ray.cluster_resources()
    for kind, each in (("CPU", cpus_per_worker), ("GPU", gpus_per_worker)):
        need = num_workers * each
        if need > have.get(kind, 0.0) + 1e-9:
            raise ValueError(error_message(
                "num_workers", f"workers that fit the cluster: {num_workers} x {each} {kind} = {need:g} {kind}, "
                f"the cluster has {have.get(kind, 0.0):g}", num_workers,
                f"use fewer workers, a smaller {kind.lower()}s_per_worker, or a bigger cluster"))


@dataclass
class Chunk:
    """One unit of work: ``args`` for the worker's ``run`` method, ``what`` it holds (for errors), ``size`` (for the
    progress bar)."""

    args: tuple
    what: str
    size: int = 1


def _describe_failure(exc: BaseException) -> tuple[BaseException | None, str, str]:
    """(the worker's own exception, a one-line summary, the remote traceback) of a Ray error."""
    cause = getattr(exc, "cause", None)
    original = cause.original if isinstance(cause, StageError) else cause
    if isinstance(cause, StageError):
        summary = str(cause)
    elif cause is not None:
        summary = f"{type(cause).__name__}: {cause}"
    else:  # the worker process died (killed, out of memory) or Ray could not rebuild the exception
        summary = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(original, ImportError):
        summary += (" (the workers must be able to import every module your objects come from: install it on "
                    "every node, or ship its code with ray.init(runtime_env={'py_modules': [...]}))")
    return original, summary, str(exc)


class ActorPool:
    """``num_workers`` actors of ``worker_class``, each set up once with ``setup(*setup_args)``, that run several
    lists of chunks (:meth:`run`) before they are killed (:meth:`close`). A failure kills every actor: the pool is
    then closed and raises on further use.
    """

    def __init__(self, worker_class: type, setup_args: Sequence[Any], *, num_workers: int, cpus_per_worker: float = 1,
                 gpus_per_worker: float = 0, desc: str = "chunks", ray: Any):
        check_resources(ray, num_workers, cpus_per_worker, gpus_per_worker)
        self.ray, self.desc = ray, desc
        remote = ray.remote(worker_class).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)
        self.actors = [remote.remote() for _ in range(num_workers)]
        try:
            shared = [ray.put(arg) for arg in setup_args]  # stored once, read by every worker
            setups = {actor.setup.remote(*shared): k for k, actor in enumerate(self.actors)}
            for ref, k in setups.items():
                try:
                    ray.get(ref)
                except ray.exceptions.RayError as exc:
                    cause, summary, tb = _describe_failure(exc)
                    raise WorkerError(f"{desc}: worker {k} could not be set up: {summary}", cause=cause,
                                      remote_traceback=tb) from cause
        except BaseException:
            self.close()
            raise

    def run(self, chunks: Sequence[Chunk], *, progress: bool = True, desc: str | None = None, unit: str = "chunk",
            queue_depth: int = 1) -> list[Any]:
        """Run ``chunks`` (``run(*chunk.args)`` on whichever actor is free, up to ``queue_depth`` queued per actor:
        2 for equal chunks, so that an actor never waits for its next one; 1 for unequal work, so that no chunk
        waits behind a long one while another actor is free) and return their results in chunk order. The first
        failure kills every actor and raises :class:`WorkerError` naming the chunk; nothing partial is returned."""
        from tqdm.auto import tqdm

        if not self.actors:
            raise RuntimeError(f"{self.desc}: the workers are gone (closed, or killed after a failure)")
        ray, desc = self.ray, desc or self.desc
        results: list[Any] = [None] * len(chunks)
        bar = tqdm(total=sum(c.size for c in chunks), desc=desc, unit=unit, disable=not progress)
        try:
            pending: dict[Any, tuple[int, Any]] = {}
            queue = list(range(len(chunks)))[::-1]
            idle = list(self.actors) * queue_depth
            while queue or pending:
                while queue and idle:
                    i, actor = queue.pop(), idle.pop()
                    pending[actor.run.remote(*chunks[i].args)] = (i, actor)
                [done], _ = ray.wait(list(pending), num_returns=1)
                i, actor = pending.pop(done)
                try:
                    results[i] = ray.get(done)
                except ray.exceptions.RayError as exc:
                    cause, summary, tb = _describe_failure(exc)
                    raise WorkerError(f"{desc}: chunk {i} of {len(chunks)} ({chunks[i].what}) failed: {summary}; "
                                      "no partial result is returned", chunk=i, what=chunks[i].what, cause=cause,
                                      remote_traceback=tb) from cause
                idle.append(actor)
                bar.update(chunks[i].size)
        except BaseException:
            self.close()
            raise
        finally:
            bar.close()
        return results

    def close(self) -> None:
        """Kill the actors (also their queued chunks)."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []


def run_chunks(worker_class: type, setup_args: Sequence[Any], chunks: Sequence[Chunk], *, num_workers: int,
               cpus_per_worker: float = 1, gpus_per_worker: float = 0, progress: bool = True, desc: str = "chunks",
               unit: str = "chunk", queue_depth: int = 1, ray: Any) -> list[Any]:
    """Run ``chunks`` on ``num_workers`` actors of ``worker_class`` and return their results in chunk order.

    Each actor is created, then ``setup(*setup_args)`` runs once in it (the arguments are put in Ray's object store
    once and shared by all actors); then the chunks run as in :meth:`ActorPool.run`. The first failure (a setup or a
    chunk raising, a worker dying) kills every actor and raises :class:`WorkerError` naming the chunk; nothing
    partial is returned. The actors are killed at the end in any case.
    """
    check_resources(ray, num_workers, cpus_per_worker, gpus_per_worker)
    if not chunks:
        return []
    pool = ActorPool(worker_class, setup_args, num_workers=min(num_workers, len(chunks)),
                     cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, desc=desc, ray=ray)
    try:
        return pool.run(chunks, progress=progress, desc=desc, unit=unit, queue_depth=queue_depth)
    finally:
        pool.close()


def stage(name: str, function: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` inside a worker; an exception comes back as ``StageError("<name> raised <type>: <msg>")``
    holding the original, so that the driver's error says which step of the worker failed."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        try:  # the original travels back if it pickles; otherwise its text does
            import pickle

            pickle.dumps(exc)
            original = exc
        except Exception:
            original = None
        raise StageError(f"{name} raised {type(exc).__name__}: {exc}", original) from exc
