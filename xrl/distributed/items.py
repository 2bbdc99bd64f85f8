"""Independent work items over Ray workers: ``[function(item) for item in items]``, spread out (used by the
RL-vision interface, whose layer x trajectory attributions and NMF fits are such items)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ._cluster import Chunk, check_num_workers, check_serializable, connect, run_chunks, stage

__all__ = ["map_items"]


class _ItemWorker:
    """A Ray actor: ``state = setup()`` once, then ``function(item, state)`` (or ``function(item)``) per item."""

    def setup(self, function: Callable, setup: Callable | None) -> None:
        self.function, self.has_state = function, setup is not None
        self.state = stage("setup()", setup) if setup is not None else None

    def run(self, item: Any) -> Any:
        return self.function(item, self.state) if self.has_state else self.function(item)


def _describe(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."


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
    chunks = [Chunk((item,), f"item {i}: {_describe(item)}") for i, item in enumerate(items)]
    with connect(address) as ray:
        return run_chunks(_ItemWorker, (function, setup), chunks, num_workers=num_workers,
                          cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, progress=progress,
                          desc=desc, unit="item", ray=ray)
