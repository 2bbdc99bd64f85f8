"""Counterfactuals of many rows with a saved CFRL explainer over Ray workers, equal to one serial ``explain`` call.

Each worker rebuilds the explainer from the saved files (safetensors + JSON, read once here and shared through
Ray's object store: no pickled networks, no shared filesystem needed), calls ``predictor_factory()`` once for its
own copy of the black box, and explains chunks of whole ``batch_size`` batches. The explainer's computation is
batch by batch, and its only randomness (the retries of :class:`~xrl.counterfactual.CounterfactualRLTabular`) is
seeded per row, so every chunk's rows get what one call over all rows gives them.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .._validation import check_scalar, error_message
from ._cluster import Chunk, check_num_workers, check_serializable, connect, run_chunks, stage

__all__ = ["explain", "ExplainBatches", "SavedExplainer"]


def _explainer_classes() -> dict[str, type]:
    from ..counterfactual import CounterfactualRL, CounterfactualRLTabular

    return {"CounterfactualRL": CounterfactualRL, "CounterfactualRLTabular": CounterfactualRLTabular}


@dataclass
class SavedExplainer:
    """A saved CFRL explainer's files as bytes: read once (checked against its manifest), rebuilt anywhere.

    Attributes
    ----------
    class_name : str
        ``"CounterfactualRL"`` or ``"CounterfactualRLTabular"`` (from the save's ``config.json``).
    files : dict
        Relative path -> bytes of every file of the save.
    """

    class_name: str
    files: dict[str, bytes] = field(repr=False)

    @classmethod
    def read(cls, path: str | Path) -> "SavedExplainer":
        """Read the directory written by ``explainer.save(path)`` (``FileNotFoundError`` if missing,
        ``ValueError`` if incomplete, changed since saving, or not a CFRL explainer)."""
        from .. import io

        path = Path(path)
        io.verify_directory(path)
        if not (path / "config.json").is_file():
            raise ValueError(error_message("path", "a directory written by CounterfactualRL.save or "
                                           "CounterfactualRLTabular.save (with config.json)", str(path)))
        name = io.load_json(path / "config.json").get("class")
        if name not in _explainer_classes():
            raise ValueError(error_message("path", "a saved CounterfactualRL or CounterfactualRLTabular",
                                           f"{str(path)!r} holding {name!r}"))
        files = {f.relative_to(path).as_posix(): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}
        return cls(name, files)

    @property
    def interval_targets(self) -> bool:
        """Whether the explainer takes regression target intervals ``[low, high]`` (a tabular regression one)."""
        import json

        state = json.loads(self.files["config.json"]).get("state", {})
        regression = (state.get("task") or {}).get("regression", state.get("regression", False))
        return self.class_name == "CounterfactualRLTabular" and bool(regression)

    def load(self, predictor: Callable, *, device: Any = None, seed: int | None = None, **kwargs: Any) -> Any:
        """``{class_name}.load(<these files>, predictor, device=device, seed=seed, **kwargs)`` (the saved seed
        when ``seed`` is None)."""
        with tempfile.TemporaryDirectory(prefix="xrl-explainer-") as tmp:
            root = Path(tmp) / "explainer"
            for rel, data in self.files.items():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(data)
            extra = {} if seed is None else {"seed": seed}
            return _explainer_classes()[self.class_name].load(root, predictor, device=device, **extra, **kwargs)


def _load_explainer(saved: SavedExplainer, predictor_factory: Callable, load_kwargs_factory: Callable | None,
                    seed: int | None, device: Any) -> Any:
    """What each worker does once: its own black box, the load arguments, the explainer (errors name the step)."""
    predictor = stage("predictor_factory()", predictor_factory)
    kwargs = {} if load_kwargs_factory is None else stage("load_kwargs_factory()", load_kwargs_factory)
    if not isinstance(kwargs, Mapping):
        raise TypeError(error_message("load_kwargs_factory", "a function returning a dict of load() keyword "
                                      "arguments", f"one returning {type(kwargs).__name__}"))
    return stage(f"{saved.class_name}.load", saved.load, predictor, device=device, seed=seed, **dict(kwargs))


class _ExplainWorker:
    """A Ray actor holding one explainer and one black box."""

    def setup(self, saved: SavedExplainer, predictor_factory: Callable, load_kwargs_factory: Callable | None,
              seed: int | None, device: Any) -> None:
        self.explainer = _load_explainer(saved, predictor_factory, load_kwargs_factory, seed, device)

    def run(self, X: Any, Y_t: Any, C: Any, batch_size: int, explain_kwargs: dict) -> Any:
        return self.explainer.explain(X, Y_t, C, batch_size=batch_size, **explain_kwargs)


# --------------------------------------------------------------------------------------------- rows in, rows out
def _num_rows(X: Any) -> int:
    try:
        n = len(X)
    except TypeError as exc:
        raise TypeError(error_message("X", "rows [N, ...] (an array, a DataFrame or a list)", type(X).__name__)) \
            from exc
    if n == 0:
        raise ValueError(error_message("X", "at least one row", X))
    return n


def _rows(value: Any, start: int, stop: int) -> Any:
    return value.iloc[start:stop] if hasattr(value, "iloc") else value[start:stop]


def _targets_per_row(Y_t: Any, n: int, intervals: bool) -> bool:
    """Whether ``Y_t`` holds one target per row (cut with the rows) rather than one for all rows. Regression
    intervals are pairs ``[low, high]``: one interval is ``[2]`` or ``[1, 2]``, per row ``[N, 2]``."""
    shape = np.shape(Y_t)
    if n == 1 or len(shape) == 0 or shape[0] != n:
        return False
    return len(shape) == 2 if intervals else True


def _conditions_per_row(C: Any, n: int) -> bool:
    if C is None or isinstance(C, Mapping) or n == 1:
        return False
    if isinstance(C, (list, tuple)) and C and all(isinstance(c, Mapping) for c in C):
        return len(C) == n
    shape = np.shape(C)
    return len(shape) == 2 and shape[0] == n


def _concat(values: list[Any], key: str = "data") -> Any:
    """Row-wise concatenation of the chunks' results (numpy, pandas, torch, lists, dicts of them, None)."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _concat([v[k] for v in values], f"{key}[{k!r}]") for k in first}
    if first is None:
        return None
    if isinstance(first, np.ndarray):
        return np.concatenate(values)
    if hasattr(first, "iloc"):
        import pandas as pd

        fresh = all(isinstance(v.index, pd.RangeIndex) and v.index.start == 0 for v in values)
        return pd.concat(values, ignore_index=fresh)
    if isinstance(first, list):
        return [x for v in values for x in v]
    if hasattr(first, "detach"):
        import torch

        return torch.cat(values)
    raise TypeError(f"{key}: cannot join the workers' results of type {type(first).__name__}")  # internal


def concatenate_explanations(parts: list[Any]) -> Any:
    """Explanations of consecutive chunks of rows -> one (the first chunk's meta)."""
    from ..counterfactual import Explanation

    return Explanation(meta=parts[0].meta, data=_concat([p.data for p in parts]))


def _check_factories(predictor_factory: Any, load_kwargs_factory: Any) -> None:
    if not callable(predictor_factory):
        raise TypeError(error_message("predictor_factory", "a function with no arguments returning the black box "
                                      "(called once in each worker)", type(predictor_factory).__name__,
                                      "wrap the model: predictor_factory=lambda: load_my_model()"))
    check_serializable("predictor_factory", predictor_factory)
    if load_kwargs_factory is not None:
        if not callable(load_kwargs_factory):
            raise TypeError(error_message("load_kwargs_factory", "None or a function with no arguments returning a "
                                          "dict of load() keyword arguments", type(load_kwargs_factory).__name__))
        check_serializable("load_kwargs_factory", load_kwargs_factory)


def explain(path: str | Path, predictor_factory: Callable[[], Callable], X: Any, Y_t: Any, C: Any = None, *,
            num_workers: int, batch_size: int = 100, seed: int | None = None,
            load_kwargs_factory: Callable[[], dict] | None = None, address: str | None = None,
            chunk_size: int | None = None, device: str = "cpu", cpus_per_worker: float = 1,
            gpus_per_worker: float = 0, progress: bool = True, **explain_kwargs: Any) -> Any:
    """Counterfactuals of ``X`` with the explainer saved at ``path``, over ``num_workers`` Ray workers.

    The result equals ``cls.load(path, predictor_factory(), seed=seed, **load_kwargs_factory()).explain(X, Y_t, C,
    batch_size=batch_size, **explain_kwargs)`` (``cls``: the saved class) for any number of workers.

    Parameters
    ----------
    path : str or Path
        A directory written by ``CounterfactualRL.save`` / ``CounterfactualRLTabular.save``. Its files are read
        here and sent to the workers through Ray's object store (once), so the workers need no access to it.
    predictor_factory : callable
        ``predictor_factory()`` returns the black box; called once in each worker (a model is built where it runs,
        instead of being pickled). It must be serializable by Ray: a module-level function, or a function whose
        captured values pickle.
    X : array, DataFrame or list
        The rows to explain ``[N, ...]``, in the format ``explain`` takes.
    Y_t : array-like
        Targets, one for all rows or one per row (as in ``explain``).
    C : optional
        Conditions, as in ``explain``: one for all rows (a dict, a ``[cond_dim]`` or ``[1, cond_dim]`` array), or one
        per row (a list of ``N`` dicts, an ``[N, cond_dim]`` array).
    num_workers : int
        Ray workers (actors), each holding one explainer and one black box.
    batch_size : int, default 100
        Rows per forward pass, as in ``explain``.
    seed : int, optional
        The explainer's seed (``load(..., seed=seed)``); None keeps the saved one. It seeds the tabular explainer's
        retries (per row) and ``diversity`` sampling (per instance).
    load_kwargs_factory : callable, optional
        ``load_kwargs_factory()`` returns the keyword arguments ``load`` needs beyond the files: custom networks
        (``encoder=``, ``decoder=``, ``actor=``, ``critic=``) and custom functions (pre-/post-processing, reward);
        called once in each worker.
    address : str, optional
        ``None``: start a local Ray instance for this call and shut it down afterwards (several seconds);
        ``"auto"`` or ``"host:port"``: connect to a running cluster (``ray start --head``) and disconnect
        afterwards. If this process already called ``ray.init``, that connection is used and left open.
    chunk_size : int, optional
        Rows per unit of work, a multiple of ``batch_size`` (whole batches are what make the result independent of
        the split). Default: about four chunks per worker.
    device : str, default "cpu"
        Where each worker's explainer runs (``"cuda"`` with ``gpus_per_worker > 0``). Results equal the serial call
        on the same kind of device.
    cpus_per_worker, gpus_per_worker : float
        Ray resources reserved by each worker (fractions allowed); the cluster must hold all workers at once.
    progress : bool, default True
        A progress bar of the rows explained (updated per chunk).
    **explain_kwargs
        Passed to ``explain``: ``retries`` for the tabular explainer, and ``diversity=True`` with ``num_samples``,
        ``patience``, ``tolerance``. With ``diversity=True`` every row is explained on its own (the serial explain
        takes one row then) and a list of ``N`` Explanations is returned, the ``i``-th equal to
        ``explainer.explain(X[i:i+1], Y_t_i, C_i, batch_size, diversity=True, ...)``.

    Returns
    -------
    Explanation, or a list of Explanations with ``diversity=True``
        Rows in the order of ``X``.

    Raises
    ------
    ImportError
        Ray is not installed (``pip install "xrl[ray]"``).
    TypeError
        ``predictor_factory`` or ``load_kwargs_factory`` is not a function Ray can serialize.
    ConnectionError
        ``address`` cannot be reached.
    WorkerError
        A worker failed to build its explainer or a chunk raised (the chunk's rows and the worker's error are
        named); nothing partial is returned.

    Notes
    -----
    The equality holds when the black box's answer for a row does not depend on the other rows of its call nor on
    its earlier calls: the serial tabular explainer calls it on up to 10,000 rows at once, a worker on its chunk
    (floating-point kernels may round a row differently in another batch size, which can only change a class at an
    exact tie), and a black box accelerated on request (``accelerate=``) answers its first checked calls eagerly.
    The explainer's own accelerated encoder and decoder finish their agreement checks before its first batch, so
    they compute every batch alike in every worker.

    Examples
    --------
    >>> exp = explain("runs/mnist_cfrl", make_classifier, X_test, Y_t=np.array([3]), num_workers=2)  # doctest: +SKIP
    >>> exp.data["cf"]["X"].shape                                                                    # doctest: +SKIP
    """
    check_scalar("batch_size", batch_size, int, low=1)
    if seed is not None:
        check_scalar("seed", seed, int)
    n = _num_rows(X)
    diverse = bool(explain_kwargs.get("diversity", False))
    saved = SavedExplainer.read(path)
    _check_factories(predictor_factory, load_kwargs_factory)
    check_num_workers(num_workers)
    cut_y, cut_c = _targets_per_row(Y_t, n, saved.interval_targets), _conditions_per_row(C, n)
    if diverse:
        spans = [(i, i + 1) for i in range(n)]
    else:
        if chunk_size is None:
            batches = -(-n // batch_size)
            chunk_size = batch_size * max(1, -(-batches // (4 * num_workers)))
        check_scalar("chunk_size", chunk_size, int, low=1)
        if chunk_size % batch_size:
            raise ValueError(error_message("chunk_size", f"a multiple of batch_size={batch_size} (whole batches "
                                           "give the same result as one explain call)", chunk_size))
        spans = [(a, min(a + chunk_size, n)) for a in range(0, n, chunk_size)]
    chunks = [Chunk((_rows(X, a, b), _rows(Y_t, a, b) if cut_y else Y_t, _rows(C, a, b) if cut_c else C,
                     batch_size, explain_kwargs), f"rows {a}:{b}", b - a) for a, b in spans]
    with connect(address) as ray:
        setup = (saved, predictor_factory, load_kwargs_factory, seed, device)
        parts = run_chunks(_ExplainWorker, setup, chunks, num_workers=num_workers, cpus_per_worker=cpus_per_worker,
                           gpus_per_worker=gpus_per_worker, progress=progress, desc="explain", unit="row",
                           queue_depth=1 if diverse else 2, ray=ray)
    return parts if diverse else concatenate_explanations(parts)


class ExplainBatches:
    """Counterfactuals of a Ray dataset's batches: a callable class for ``Dataset.map_batches``.

    Each Ray Data worker builds it once (the explainer rebuilt from the saved files, ``predictor_factory()`` called
    once) and then explains batch after batch. A batch's output equals ``explainer.explain`` of the batch's rows;
    it equals one ``explain`` call over the whole dataset when every batch is a whole number of ``batch_size``
    batches (``map_batches(batch_size=k * batch_size)`` over blocks of such sizes).

    Parameters
    ----------
    explainer : str, Path or SavedExplainer
        A save directory readable by every worker, or ``SavedExplainer.read(path)`` (its bytes travel with the
        class's arguments).
    predictor_factory, load_kwargs_factory, seed, device :
        As in :func:`explain`.
    Y_t : array-like, optional
        One target for all rows; or name a column with ``target_column``.
    C : optional
        One condition for all rows (as in ``explain``).
    batch_size : int, default 100
        Rows per forward pass inside a batch.
    x_column : str, default "X"
        For ``batch_format="numpy"``: the column holding the rows ``[B, ...]``. For pandas batches (tabular
        explainers), the explainer's feature columns are read instead.
    target_column : str, optional
        A column of per-row targets.
    **explain_kwargs
        Passed to ``explain`` (e.g. ``retries``); ``diversity`` is not supported here.

    Output columns: the input's, plus ``cf_X`` (numpy batches; pandas: ``cf_<feature>`` per feature), ``orig_class``,
    ``cf_class``, ``target`` (``target_<j>`` for several columns in pandas batches) and, for tabular explainers,
    ``valid``.

    Examples
    --------
    >>> ds = ray.data.from_numpy(X_test)                       # column "data"        # doctest: +SKIP
    >>> out = ds.map_batches(ExplainBatches, fn_constructor_kwargs=dict(
    ...     explainer=SavedExplainer.read("runs/mnist_cfrl"), predictor_factory=make_classifier, Y_t=[3],
    ...     x_column="data"), batch_size=500, batch_format="numpy", concurrency=4)     # doctest: +SKIP
    """

    def __init__(self, explainer: str | Path | SavedExplainer, predictor_factory: Callable[[], Callable], *,
                 Y_t: Any = None, C: Any = None, batch_size: int = 100, seed: int | None = None,
                 load_kwargs_factory: Callable[[], dict] | None = None, device: str = "cpu",
                 x_column: str = "X", target_column: str | None = None, **explain_kwargs: Any):
        check_scalar("batch_size", batch_size, int, low=1)
        if (Y_t is None) == (target_column is None):
            raise ValueError(error_message("Y_t", "exactly one of Y_t (one target for all rows) and target_column",
                                           f"Y_t={Y_t!r}, target_column={target_column!r}"))
        if explain_kwargs.get("diversity"):
            raise ValueError(error_message("diversity", "False in ExplainBatches (a diverse explanation has its own "
                                           "number of rows)", True, "use xrl.distributed.explain(..., "
                                           "diversity=True)"))
        saved = explainer if isinstance(explainer, SavedExplainer) else SavedExplainer.read(explainer)
        self.explainer = _load_explainer(saved, predictor_factory, load_kwargs_factory, seed, device)
        self.Y_t, self.C, self.batch_size, self.explain_kwargs = Y_t, C, batch_size, explain_kwargs
        self.x_column, self.target_column = x_column, target_column

    def __call__(self, batch: Any) -> Any:
        frame = hasattr(batch, "iloc")
        if frame:
            names = getattr(getattr(self.explainer, "preprocessor", None), "feature_names_", None)
            if names is None:
                raise TypeError(error_message("batch", "numpy batches (batch_format='numpy') for an image "
                                              "explainer", "a pandas DataFrame"))
            X = batch[list(names)]
        else:
            if self.x_column not in batch:
                raise KeyError(error_message("x_column", f"a column of the batch ({sorted(batch)})", self.x_column))
            X = batch[self.x_column]
        Y_t = self.Y_t if self.target_column is None else np.asarray(batch[self.target_column])
        exp = self.explainer.explain(X, Y_t, self.C, batch_size=self.batch_size, **self.explain_kwargs)
        d = exp.data
        columns = {"orig_class": d["orig"]["class"], "cf_class": d["cf"]["class"], "target": d["target"]}
        if "valid" in d:
            columns["valid"] = d["valid"]
        if not frame:
            out = dict(batch)
            out["cf_X"] = np.asarray(d["cf"]["X"])
            out.update({k: (v[:, 0] if v.ndim == 2 and v.shape[1] == 1 else v) for k, v in columns.items()})
            return out
        out = batch.copy()
        cf = d["cf"]["X"]
        for j, name in enumerate(X.columns):
            out[f"cf_{name}"] = cf[name].to_numpy() if hasattr(cf, "iloc") else cf[:, j]
        for k, v in columns.items():
            if v.ndim == 2 and v.shape[1] > 1:
                for j in range(v.shape[1]):
                    out[f"{k}_{j}"] = v[:, j]
            else:
                out[k] = v.reshape(-1)
        return out
