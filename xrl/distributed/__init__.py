"""Scale-out on Ray (optional extra ``pip install "xrl[ray]"``): batch counterfactuals, rollouts and evaluations,
and any list of independent work items, spread over the workers of a Ray cluster.

Every function here equals its serial counterpart for the same inputs and seeds, whatever the number of workers:

- :func:`explain`: ``CounterfactualRL.load(path, predictor).explain(X, Y_t, C)`` (and the tabular explainer's), rows
  cut into chunks of whole batches, each worker rebuilding the explainer from the saved files and its black box from
  ``predictor_factory()``; :class:`ExplainBatches` does the same for ``ray.data.Dataset.map_batches``;
- :func:`collect_trajectories`, :func:`evaluate`: :func:`xrl.agents.collect_trajectories` / :func:`~xrl.agents.evaluate`
  with the environments shared out among workers (one agent copy per worker);
- :func:`map_items`: ``[function(item) for item in items]``; :func:`item_workers` keeps the workers for several such
  lists (the RL-vision interface's stages of work items).

Ray is imported, and a cluster joined or started, only when one of these functions is called: ``address=None``
starts a local Ray instance for the call and shuts it down afterwards; ``address="auto"`` (or ``"host:port"``)
joins a running cluster and leaves it running; a connection the caller opened (``ray.init``, or ``with
cluster(address):`` around several calls, which pays Ray's start-up once) is used and left open. A failing worker
raises :class:`WorkerError` naming the chunk it held; nothing partial is returned. See docs/distributed.md.
"""
from ._cluster import RAY_INSTALL_HINT, WorkerError
from ._cluster import connect as cluster
from .explain import ExplainBatches, SavedExplainer, explain
from .items import ItemWorkers, item_workers, map_items
from .rollouts import collect_trajectories, evaluate

__all__ = ["explain", "ExplainBatches", "SavedExplainer", "collect_trajectories", "evaluate", "map_items",
           "item_workers", "ItemWorkers", "cluster", "WorkerError", "RAY_INSTALL_HINT"]
