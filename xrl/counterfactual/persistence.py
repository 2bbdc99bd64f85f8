"""Saving and loading CFRL explainers: safetensors + JSON in one directory, written as one transaction
(:func:`xrl.io.atomic_directory`), checked at load (:func:`xrl.io.verify_directory`), never unpickled.

Format 2: ``config.json`` (the config, the user's functions by name, what ``fit`` learned, reference networks' specs),
``weights.safetensors``, optionally ``training.safetensors`` + ``training.json`` (optimizers, RNG, replay buffer,
epoch order, learning-rate schedule, training-data fingerprint), ``tabular.json``, ``manifest.json``. Format 1 (before
the core rebuild) loads too, without its training state."""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import torch

from .. import io
from .._utils import resolve_device
from ..models._registry import build_model, model_spec
from .buffer import ReplayBuffer
from .config import COMPONENTS, FIELDS, FUNCTIONS, LISTS, PRESETS, function_name
from .ddpg import TrainingState
from .blackbox import Task


NETS = ("encoder", "decoder", "actor", "critic")


def _modules(ex: Any) -> dict[str, torch.nn.Module]:
    return dict(zip(NETS, (ex.encoder, ex.decoder, ex.components["actor"], ex.components["critic"])))


def save(ex: Any, path: Any, training_state: bool = True) -> None:
    config = {"format": f"xrl.{ex.name}", "version": 2, "class": type(ex).__name__,
              "config": dataclasses.asdict(ex.config),
              "functions": {k: v for k, v in ex._describe().items() if k in FUNCTIONS + LISTS},
              "state": {"step": ex._step, "cond_dim": ex.cond_dim, "x_shape": ex.x_shape and list(ex.x_shape),
                        "task": ex.task and dataclasses.asdict(ex.task)},
              "networks": {k: model_spec(m) for k, m in _modules(ex).items()}}
    weights, seen = {}, set()
    for k, m in _modules(ex).items():
        for name, v in io.prefixed_state(k, m).items():  # tied weights share memory: safetensors stores copies
            weights[name] = v.clone() if v.untyped_storage().data_ptr() in seen else v
            seen.add(v.untyped_storage().data_ptr())
    with io.atomic_directory(path) as tmp:
        io.save_tensors(tmp / "weights.safetensors", weights)
        if training_state and ex._training is not None:
            tensors, meta = _training_state(ex)
            io.save_tensors(tmp / "training.safetensors", tensors)
            io.save_json(tmp / "training.json", meta)
        ex._save_extra(tmp)
        io.save_json(tmp / "config.json", config)


def _training_state(ex: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state, tensors, meta = ex._training, {}, {}
    for name in ("optimizer_actor", "optimizer_critic"):
        t, meta[name] = io.optimizer_to_tensors(ex.components[name], prefix=f"{name}.")
        tensors.update(t)
    buf, meta["buffer"] = state.buffer.state()
    tensors.update({f"buffer.{k}": v for k, v in buf.items()}, **{"rng.generator": state.generator.get_state()})
    if state.perm is not None:
        tensors["data.perm"] = state.perm
    meta.update(data={"pos": state.pos, "epoch": state.epoch}, fingerprint=state.fingerprint,
                schedule={"base_lrs": state.base_lrs, "lr_steps": state.lr_steps})
    return tensors, meta


def _settings(config: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config fields, function names) of a format-1 or format-2 ``config.json``, or a clear error."""
    v1 = isinstance(config, dict) and config.get("version", 1) == 1
    keys = ("class", "params", "state", "networks") if v1 else ("class", "config", "functions", "state", "networks")
    missing = [k for k in keys if not isinstance(config, dict) or k not in config]
    if missing:
        raise ValueError(f"{path / 'config.json'}: expected the keys {list(keys)} of a saved explainer, {missing} "
                         "missing; the file is not a complete xrl save: re-save the explainer with save(path)")
    if not v1:
        return dict(config["config"]), config["functions"]
    params = config["params"]
    fields = {k: params[k] for k in FIELDS if k in params}  # format 1 ran alibi's algorithm unless it says otherwise
    fields.update({k: config.get(k, v) for k, v in PRESETS["alibi"].items()})
    return fields, {k: params.get(k) for k in (*FUNCTIONS, "postprocessing_funcs")}


def load(cls: type, path: Any, predictor: Any, device: Any, kwargs: dict[str, Any]) -> Any:
    path = Path(path)
    io.verify_directory(path)  # FileNotFoundError for a missing directory
    config = io.load_json(path / "config.json")
    fields, functions = _settings(config, path)
    if config["class"] != cls.__name__:
        raise ValueError(f"{path}: holds a {config['class']!r}, not a {cls.__name__}; load it with that class")
    for k in (*FUNCTIONS, "postprocessing_funcs"):
        if k not in kwargs and functions.get(k) not in (None, [], function_name(COMPONENTS.get(k))):
            raise ValueError(f"{k}: the saved explainer used {functions[k]!r}, which is not stored (no pickle); pass "
                             f"{k}=... to load")
    dev = resolve_device(device)
    weights = io.load_tensors(path / "weights.safetensors", dev)
    with torch.random.fork_rng(devices=[]):  # building networks draws initial weights: the global RNG comes back
        nets = {k: kwargs.pop(k) if kwargs.get(k) is not None else _build(k, config["networks"].get(k)) for k in NETS}
        ex = cls._from_saved(path, predictor, nets, {**fields, **kwargs}, dev)
        _restore_state(ex, config["state"])
        for k, m in _modules(ex).items():
            io.load_state_strict(m, io.strip_prefix(k, weights), f"{path}/weights.safetensors [{k}]")
    if (path / "training.safetensors").exists() and ex.task is not None:
        if config.get("version", 1) == 1:
            warnings.warn(f"{path}: a format-1 save; its training state (optimizers, replay buffer) is not restored, "
                          f"as it has no training-data fingerprint: fit continues from step {ex._step} with fresh "
                          "ones. Save it again with this version to resume exactly.", UserWarning, stacklevel=3)
        else:
            _restore_training(ex, io.load_tensors(path / "training.safetensors", dev),
                              io.load_json(path / "training.json"))
    return ex


def _build(name: str, spec: dict[str, Any] | None) -> torch.nn.Module:
    if not spec:
        raise ValueError(f"{name}: the saved explainer used a custom {name} network; pass {name}=<module with the "
                         "same architecture> to load")
    return build_model(spec)


def _restore_state(ex: Any, state: dict[str, Any]) -> None:
    task = state["task"] if "task" in state else state["y_dim"] and {  # format 1 kept the task's fields in state
        "y_dim": state["y_dim"], "regression": state["regression"], "y_range": state["y_range"],
        "intervals": ex._intervals and state["regression"]}
    ex.task = task and Task(**{**task, "y_range": task["y_range"] and tuple(task["y_range"])}) or None
    ex.cond_dim, ex._step = int(state["cond_dim"]), int(state["step"])
    ex.x_shape = tuple(state["x_shape"]) if state["x_shape"] else None
    if ex.task is not None:
        ex.black_box.classes = ex.task.y_dim
        ex._materialize()


def _restore_training(ex: Any, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    for name in ("optimizer_actor", "optimizer_critic"):
        io.load_optimizer(ex.components[name], tensors, meta[name], prefix=f"{name}.")
    buffer = ReplayBuffer(ex.config.replay_buffer_size)
    stored = {k[len("buffer."):]: v for k, v in tensors.items() if k.startswith("buffer.")}
    if stored:
        buffer.load_state(stored, meta["buffer"], ex.device)
    generator = torch.Generator(ex.device)
    generator.set_state(tensors["rng.generator"].cpu())
    ex._training = TrainingState(generator, buffer, meta["schedule"]["base_lrs"], meta["schedule"]["lr_steps"],
                                 meta["fingerprint"], step=ex._step, perm=tensors.get("data.perm"),
                                 pos=meta["data"]["pos"], epoch=meta["data"]["epoch"])
