"""Scale-out on Ray (optional extra ``pip install "xrl[ray]"``): batch counterfactuals, rollouts and evaluations,
and any list of independent work items, spread over the workers of a Ray cluster.

Every function here equals its serial counterpart for the same inputs and seeds, whatever the number of workers:

- :func:`collect_trajectories`, :func:`evaluate`: :func:`xrl.agents.collect_trajectories` / :func:`~xrl.agents.evaluate`
  with the environments shared out among workers (one agent copy per worker);
- :func:`map_items`: ``[function(item) for item in items]`` (used by the RL-vision interface's work items).

Ray is imported, and a cluster joined or started, only when one of these functions is called: ``address=None``
starts a local Ray instance for the call and shuts it down afterwards; ``address="auto"`` (or ``"host:port"``)
joins a running cluster and leaves it running; a connection the caller opened with ``ray.init`` is used and left
open. A failing worker raises :class:`WorkerError` naming the chunk it held; nothing partial is returned.
See docs/distributed.md.
"""
from ._cluster import RAY_INSTALL_HINT, WorkerError
from .rollouts import collect_trajectories, evaluate

__all__ = ["collect_trajectories", "evaluate", "WorkerError", "RAY_INSTALL_HINT"]
