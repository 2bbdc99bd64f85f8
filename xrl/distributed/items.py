"""Independent work items over Ray workers: ``[function(item) for item in items]``, spread out (used by the
RL-vision interface, whose layer x trajectory attributions and NMF fits are such items).

:func:`map_items` runs one list; :func:`item_workers` keeps its workers (and what their ``setup`` loaded) across
several lists, for work in stages where each stage needs the results of the one before.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from ._cluster import ActorPool, Chunk, check_num_workers, check_resources, check_serializable, connect, stage

__all__ = ["map_items", "item_workers", "ItemWorkers"]


class _ItemWorker:
    """A Ray actor: ``state = setup()`` once, then ``function(item, state)`` (or ``function(item)``) per item."""

    def setup(self, setup: Callable | None) -> None:
        self.has_state = setup is not None
        self.state = stage("setup()", setup) if setup is not None else None

    def run(self, function: Callable, item: Any) -> Any:  # function: one object-store copy per map call
        return function(item, self.state) if self.has_state else function(item)


def _describe(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."


class ItemWorkers:
    """Ray workers set up once, that map functions over lists of items (made by :func:`item_workers`)."""

    def __init__(self, pool: ActorPool, ray: Any, desc: str):
        self._pool, self._ray, self._desc = pool, ray, desc

    @property
    def num_workers(self) -> int:
        return len(self._pool.actors)

    def map(self, function: Callable, items: Sequence[Any], *, progress: bool = True,
            desc: str | None = None) -> list[Any]:
        """``[function(item, state) for item in items]`` (``function(item)`` without ``setup``) on the workers,
        results in the items' order; ``function`` travels once per call (bind data every item needs into it, e.g.
        with ``functools.partial``). Raises :class:`WorkerError` naming the item that failed; the workers are then
        gone, and further calls raise RuntimeError."""
        if not callable(function):
            raise TypeError(f"function: expected a callable, got {type(function).__name__}")
        check_serializable("function", function)
        items = list(items)
        if not items:
            return []
        ref = self._ray.put(function)
        chunks = [Chunk((ref, item), f"item {i}: {_describe(item)}") for i, item in enumerate(items)]
        return self._pool.run(chunks, progress=progress, desc=desc or self._desc, unit="item")


@contextmanager
def item_workers(*, num_workers: int, setup: Callable[[], Any] | None = None, address: str | None = None,
                 cpus_per_worker: float = 1, gpus_per_worker: float = 0,
                 desc: str = "items") -> Iterator[ItemWorkers]:
    """Start ``num_workers`` Ray workers, call ``setup()`` once in each, and yield them for several
    :meth:`ItemWorkers.map` calls; the workers are killed when the block ends (the cluster as in
    :func:`xrl.distributed.cluster`).

    Examples
    --------
    >>> with item_workers(num_workers=2, setup=load_model) as workers:        # doctest: +SKIP
    ...     fits = workers.map(fit_layer, layers)
    ...     maps = workers.map(partial(attribute, fits=fits), trajectories)
    """
    if setup is not None and not callable(setup):
        raise TypeError(f"setup: expected None or a function with no arguments, got {type(setup).__name__}")
    num_workers = check_num_workers(num_workers)
    if setup is not None:
        check_serializable("setup", setup)
    with connect(address) as ray:
        pool = ActorPool(_ItemWorker, (setup,), num_workers=num_workers, cpus_per_worker=cpus_per_worker,
                         gpus_per_worker=gpus_per_worker, desc=desc, ray=ray)
        try:
            yield ItemWorkers(pool, ray, desc)
        finally:
            pool.close()


def map_items(function: Callable, items: Sequence[Any], *, num_workers: int, setup: Callable[[], Any] | None = None,
              address: str | None = None, cpus_per_worker: float = 1, gpus_per_worker: float = 0,
              progress: bool = True, desc: str = "items") -> list[Any]:
    """``[function(item) for item in items]`` computed by ``num_workers`` Ray workers, results in the items' order.

    Parameters
    ----------
    function : callable
        ``function(item)``, or ``function(item, state)`` when ``setup`` is given. Must be serializable by Ray (a
        module-level function); items and results travel through Ray's object store (picklable values: numpy
        arrays, dataclasses, bytes).
    items : sequence
        The work items (independent of each other).
    num_workers : int
        Ray workers (actors); each handles items one at a time, in whatever order they become free.
    setup : callable, optional
        ``setup()`` is called once in each worker and its result passed to every ``function`` call there (e.g. a
        model loaded once per worker rather than once per item).
    address, cpus_per_worker, gpus_per_worker, progress :
        As in :func:`xrl.distributed.collect_trajectories`.
    desc : str
        The progress bar's label.

    Returns
    -------
    list
        One result per item, in order.

    Raises
    ------
    WorkerError
        ``setup`` or an item raised (the item's index and repr are named), or a worker died; nothing partial is
        returned.

    Examples
    --------
    >>> map_items(abs, [-1, 2, -3], num_workers=2)          # doctest: +SKIP
    [1, 2, 3]
    """
    if not callable(function):
        raise TypeError(f"function: expected a callable, got {type(function).__name__}")
    if setup is not None and not callable(setup):
        raise TypeError(f"setup: expected None or a function with no arguments, got {type(setup).__name__}")
    items = list(items)
    num_workers = check_num_workers(num_workers)
    check_serializable("function", function)
    if setup is not None:
        check_serializable("setup", setup)
    if not items:
        return []
    with connect(address) as ray:  # the workers below use this connection
        check_resources(ray, num_workers, cpus_per_worker, gpus_per_worker)
        with item_workers(num_workers=min(num_workers, len(items)), setup=setup, cpus_per_worker=cpus_per_worker,
                          gpus_per_worker=gpus_per_worker, desc=desc) as workers:
            return workers.map(function, items, progress=progress, desc=desc)
