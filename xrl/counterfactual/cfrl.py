"""``CounterfactualRL``: counterfactuals with reinforcement learning (Samoilescu et al. 2021, arXiv:2106.02597), with
alibi's public API. A thin estimator over :mod:`~.config`, :mod:`~.spaces`, :mod:`~.ddpg` and :mod:`~.persistence`.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import time
from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from .. import accel
from .._utils import eval_mode, init_rng, resolve_device
from .._validation import check_is_fitted, check_type, error_message
from ..models import Actor, Critic
from . import persistence
from .blackbox import BlackBox, Task, check_float32_module, to_numpy
from .buffer import ReplayBuffer
from .config import FUNCTIONS, LISTS, ParamsView, as_int, function_name, split_options
from .ddpg import DDPG, TrainingData, TrainingState, digest
from .explanation import Explanation
from .spaces import ImageSpace, Rows

__all__ = ["CounterfactualRL", "Callback", "Postprocessing"]


class Postprocessing(ABC):
    """Post-processing of decoded counterfactuals, applied in order: ``X_cf = f(X_cf, X, C)``, on numpy arrays."""

    @abstractmethod
    def __call__(self, X_cf: Any, X: Any, C: Any) -> Any:
        ...


class Callback(ABC):
    """Training callback, called after every update with ``(step, update, model, sample, losses)``.

    ``sample`` holds numpy arrays (seed 001's keys): ``X`` (pre-processed inputs), ``Y_m``/``Y_t`` (one-hot for
    classification), ``Z``, ``Z_cf_tilde``, ``X_cf_tilde`` (its decoding, post-processed), ``C``, ``R_tilde``,
    ``Z_cf``, ``X_cf``; each is computed on first access. ``losses`` holds floats (``critic_loss``, ``actor_loss``,
    ``sparsity_loss`` or its tabular parts, ``consistency_loss``). ``model.params`` gives all parameters.
    """

    @abstractmethod
    def __call__(self, step: int, update: int, model: "CounterfactualRL", sample: dict[str, np.ndarray],
                 losses: dict[str, float]) -> None:
        ...


def _default_adam(net: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam, fused where the device has the kernel (one kernel per step for these small networks)."""
    try:
        return torch.optim.Adam(net.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(net.parameters(), lr=lr)


class CounterfactualRL:
    """Model-agnostic counterfactual generator: a DDPG actor trained in a frozen autoencoder's latent space.

    Parameters
    ----------
    predictor : callable or torch.nn.Module
        The black box, ``[N, ...] -> [N, classes]`` soft or hard labels (argmax is taken), or ``[N]``/``[N, 1]``
        values (regression: pass a ``reward_func``). Called exactly as given, from the caller's thread, never
        differentiated: a function with numpy arrays, a module with float32 tensors on ``device`` (in eval mode, each
        submodule's mode restored). Its answers are copied at once.
    encoder, decoder : torch.nn.Module
        The pre-trained autoencoder's halves (float32); the latent space should lie in ``[act_low, act_high]``.
    coeff_sparsity, coeff_consistency, latent_dim, seed
        The loss weights; the encoder's output size (may be omitted when ``actor`` is given); the seed of ``fit`` and
        of the default networks (the same seed gives the same explainer; the global RNGs are left alone).
    backend, device, progress
        Only ``"pytorch"``; where the networks and the loop live (default: the encoder's device); a bar in ``fit``.
    accelerate : {None, "channels_last", "compile"}
        Opt-in acceleration of a module black box (:mod:`xrl.accel`): channels-last convolution weights during each
        call, or ``torch.compile``; checked against eager on its first calls, eager with a warning if it disagrees.
    preset : {"xrl", "alibi"}
        The defaults of :class:`~xrl.counterfactual.config.CFRLConfig` (``"alibi"``: alibi 0.9.6's algorithm).
    **kwargs
        Any key of :data:`DEFAULT_BASE_PARAMS` or field of :class:`~xrl.counterfactual.config.CFRLConfig`
        (``train_steps``, ``all_targets``, ``lr_decay``, ...); unknown keys raise ``ValueError``.

    Examples
    --------
    >>> explainer = CounterfactualRL(predictor, ae.encoder, ae.decoder, coeff_sparsity=7.5, coeff_consistency=0,
    ...                              latent_dim=64, train_steps=2000).fit(X_train)  # doctest: +SKIP
    >>> exp = explainer.explain(X_test[:200], Y_t=np.array([2]), batch_size=100)  # doctest: +SKIP
    >>> exp.data["cf"]["class"][:5]  # doctest: +SKIP
    """

    name = "CounterfactualRL"
    _intervals = False  # regression targets are values here (intervals for the tabular explainer)

    def __init__(self, predictor: Callable, encoder: nn.Module, decoder: nn.Module, coeff_sparsity: float,
                 coeff_consistency: float, latent_dim: int | None = None, backend: str = "pytorch", seed: int = 0,
                 *, device: Any = None, progress: bool = True, accelerate: str | None = None, preset: str = "xrl",
                 **kwargs: Any) -> None:
        if not isinstance(backend, str) or backend.strip().lower() != "pytorch":
            raise ValueError(error_message("backend", "'pytorch' (xrl is PyTorch-only)", backend))
        for name, net in (("encoder", encoder), ("decoder", decoder)):
            check_type(name, net, nn.Module, "a torch.nn.Module")
            check_float32_module(name, net)
        self.config, self.components = split_options(kwargs, preset, coeff_sparsity=coeff_sparsity, seed=seed,
                                                     coeff_consistency=coeff_consistency, latent_dim=latent_dim)
        if latent_dim is None and self.components["actor"] is None:
            raise ValueError("latent_dim: expected the encoder's output size (an int), got None; it can only be "
                             "omitted when you pass your own actor")
        self.device, self.progress, self.accelerate = resolve_device(device, encoder), bool(progress), accelerate
        self.encoder, self.decoder = encoder.to(self.device), decoder.to(self.device)
        # the frozen halves run with channels-last convolution weights (checked against eager; see xrl.accel)
        self._encode = accel.accelerate(self.encoder, "channels_last", "encoder")
        self._decode = accel.accelerate(self.decoder, "channels_last", "decoder")
        self.black_box, c, cfg = BlackBox(predictor, self.device, accelerate), self.components, self.config
        with init_rng(cfg.seed):  # seeded default networks (built on the CPU); the global RNG is untouched
            c["actor"] = (c["actor"] if c["actor"] is not None else Actor(cfg.actor_hidden_dim, cfg.latent_dim))
            c["critic"] = (c["critic"] if c["critic"] is not None else Critic(cfg.critic_hidden_dim))
        c["actor"], c["critic"] = c["actor"].to(self.device), c["critic"].to(self.device)
        self.space: Any = ImageSpace(self.components, self.device)  # how rows reach the encoder and the black box
        self.task: Task | None = None  # what the black box predicts (set by fit or load)
        self.cond_dim, self.x_shape, self._step = 0, None, 0  # _step: training steps done; fit resumes from here
        self._training: TrainingState | None = None

    predictor = property(lambda self: self.black_box.predictor, doc="The user's black box, as given.")
    params = property(lambda self: ParamsView(self), doc="alibi's parameter dict (see :class:`~.config.ParamsView`).")

    @property
    def meta(self) -> dict[str, Any]:
        return {"name": self.name, "type": ["blackbox"], "explanations": ["local"], "params": self._describe()}

    def _describe(self) -> dict[str, Any]:
        """JSON-able parameters: the config, and the functions by name."""
        return {**vars(self.config), **{k: [function_name(f) for f in v] if isinstance(v, list) else function_name(v)
                                        for k, v in self.components.items() if k in FUNCTIONS + LISTS}}

    y_dim = property(lambda self: self.task and self.task.y_dim)  # what fit learned about the black box
    regression = property(lambda self: self.task and self.task.regression)
    y_range = property(lambda self: self.task and self.task.y_range)

    def reset_predictor(self, predictor: Callable) -> None:
        """Swap the black box (e.g. after reloading it), keeping the actor and critic; a predictor with another
        number of outputs than the one trained with is refused at its first call."""
        classes, self.black_box = self.black_box.classes, BlackBox(predictor, self.device, self.accelerate)
        self.black_box.classes = classes

    def fit(self, X: Any) -> "CounterfactualRL":
        """Train the actor and critic on ``X`` (the predictor's format, ``[N, ...]``, ``N >= batch_size``) up to
        ``train_steps`` steps in all: a later call, or one after :meth:`load`, continues where training stopped, on the
        same data (checked against a fingerprint). Interrupted (Ctrl-C or an error), the explainer stays at the last
        completed step, so ``save`` then ``fit`` continues exactly. ``fit_timing_`` gives the seconds spent preparing
        (the training set's labels and embeddings, once per call) and in the loop, and the loop's steps/s."""
        X, t0 = self.space.check(X, self.x_shape), time.perf_counter()
        if len(X) < self.config.batch_size:
            raise ValueError(f"X: expected at least batch_size={self.config.batch_size} rows, got {len(X)}")
        with eval_mode(self.encoder, self.decoder):  # the frozen autoencoder never trains
            data = self._training_data(X)
            state = self._training_state(data)
            t1, step0 = time.perf_counter(), state.step
            try:
                DDPG(self).run(data, state)
            finally:
                self._step, self._training, loop_s = state.step, state, time.perf_counter() - t1
                self.fit_timing_ = {"prepare_s": t1 - t0, "loop_s": loop_s, "steps": state.step - step0,
                                    "steps_per_s": (state.step - step0) / max(loop_s, 1e-9)}
        return self

    def _training_data(self, X: np.ndarray) -> TrainingData:
        """The training set's rows, embeddings and labels, computed once per ``fit``; on the first fit, the task and
        the networks' sizes."""
        rows, B, latent_dim = self.space.rows(X), self.config.batch_size, self.config.latent_dim
        Y = self._label(X, len(X), B)
        with torch.no_grad():
            Z = torch.cat([self._encode(rows.model[i:i + B]) for i in range(0, len(rows), B)])
            if Z.ndim != 2 or (latent_dim is not None and Z.shape[1] != latent_dim):
                size = Z.shape[1] if Z.ndim == 2 else tuple(Z.shape[1:])
                raise ValueError(error_message("latent_dim", f"the encoder's output size {size}", latent_dim,
                                               "the encoder must output [N, latent_dim] embeddings"))
            self.space.check_decoded(self._decode(Z[:2]), rows)
        if self.task is None:
            self.task, self.black_box.classes = Task.from_predictions(Y, self._intervals), int(Y.shape[1])
            self.x_shape, self.config = tuple(X.shape[1:]), dataclasses.replace(self.config, latent_dim=Z.shape[1])
            probe = self.space.condition(rows[:2], torch.Generator(self.device).manual_seed(0))
            self.cond_dim = 0 if probe is None else int(probe.shape[1])
        self._materialize()
        return TrainingData(rows, Z, self.task.labels(Y), digest(f"{X.shape}{X.dtype}".encode(), X).hex())

    def _training_state(self, data: TrainingData) -> TrainingState:
        if self._training is not None and self._training.fingerprint != data.fingerprint:
            raise ValueError("X: differs from the data this explainer was trained on (the saved fingerprint does not "
                             "match); pass the same training data to resume, or save(path, training_state=False) and "
                             "load it to train on new data with a fresh buffer")
        c, cfg = self.components, self.config
        return self._training or TrainingState(
            torch.Generator(self.device).manual_seed(cfg.seed), ReplayBuffer(cfg.replay_buffer_size),
            {k: [g["lr"] for g in c[f"optimizer_{k}"].param_groups] for k in ("actor", "critic")},
            cfg.lr_decay_steps or cfg.train_steps, data.fingerprint, step=self._step)

    def _materialize(self) -> None:
        """Initialise lazy layers (seeded, global RNG untouched) and build the default optimizers."""
        c, cfg = self.components, self.config
        state = torch.zeros(2, cfg.latent_dim + self.task.y_dim + self.task.target_dim + self.cond_dim,
                            device=self.device)
        with init_rng(cfg.seed + 1, self.device), torch.no_grad():
            try:
                action = c["actor"](state)
                c["critic"](torch.cat([state, action], 1))
            except RuntimeError as exc:
                raise ValueError(f"actor/critic: cannot take a state of size {state.shape[1]} (latent {cfg.latent_dim}"
                                 f" + labels {self.task.y_dim} + target {self.task.target_dim} + condition "
                                 f"{self.cond_dim}): {exc}") from exc
        if action.shape[1] != cfg.latent_dim:
            raise ValueError(f"actor: outputs {action.shape[1]} values but latent_dim is {cfg.latent_dim}")
        for net, lr in (("actor", cfg.lr_actor), ("critic", cfg.lr_critic)):
            if c[f"optimizer_{net}"] is None:
                c[f"optimizer_{net}"] = _default_adam(c[net], lr)

    def explain(self, X: Any, Y_t: Any, C: Any = None, batch_size: int = 100) -> Explanation:
        """Counterfactuals of ``X`` towards the targets ``Y_t`` (one per row, or one for all rows).

        Returns an :class:`Explanation` with ``data['orig']['X'|'class']``, ``data['cf']['X'|'class']``,
        ``data['target']`` and ``data['condition']`` (classes as ``[N, 1]`` arrays, as in alibi). The reported
        classes are what the predictor returned for the returned counterfactuals.
        """
        check_is_fitted(self, "task")
        X = self.space.check(X, self.x_shape)
        batch_size = as_int("batch_size", batch_size, 1)
        T = self.task.targets(Y_t, len(X), self.device)
        rows = self.space.rows(X)
        Cs = self.space.explain_condition(C, rows, self.cond_dim)
        Y_m = self._label(X, len(X), batch_size)
        X_cf = self._generate(rows, Y_m, T, Cs, batch_size)
        return self._explanation(X, Y_m, X_cf, self._label(X_cf, len(X), batch_size), T, Cs)

    def _label(self, X: Any, n: int, batch_size: int) -> torch.Tensor:
        """The black box's predictions for ``n`` instances ``X`` (space format), ``label_rows or batch_size`` a call."""
        step, space = self.space.label_rows or batch_size, self.space
        return torch.cat([self.black_box(space.black_box_input(X, i, min(i + step, n))) for i in range(0, n, step)])

    def _generate(self, rows: Rows, Y_m: torch.Tensor, T: torch.Tensor, C: torch.Tensor | None, batch_size: int,
                  noise: torch.Tensor | None = None) -> Any:
        """Counterfactuals of ``rows`` in the black box's input format (``noise`` added in latent space)."""
        actor, cfg, parts = self.components["actor"], self.config, []
        with torch.no_grad(), eval_mode(self.encoder, self.decoder, actor):
            self._settle_acceleration(rows[:batch_size])
            for i in range(0, len(rows), batch_size):
                sl = slice(i, i + batch_size)
                r, c = rows[sl], None if C is None else C[sl]
                Z_cf = actor(self.task.state(self._encode(r.model), self.task.labels(Y_m[sl]), T[sl], c))
                if noise is not None:
                    Z_cf = (Z_cf + noise[sl]).clamp(cfg.act_low, cfg.act_high)
                parts.append(self.space.predictor_input(self.space.counterfactual(self._decode(Z_cf), r, c)))
        return self.space.join(parts)

    def _settle_acceleration(self, probe: Rows) -> None:
        """Finish the accelerated encoder's and decoder's agreement checks on ``probe`` before any counterfactual is
        computed: checked calls return the eager answer (:mod:`xrl.accel`), so the first batches would otherwise differ
        in the last bits from later ones. Settled, every batch runs on one path, and explaining rows in pieces of whole
        batches, in any order or process (:func:`xrl.distributed.explain`), gives the same result as one call."""
        for _ in range(8):  # Accelerated.checks calls (2), or a fall-back to eager, end the checks
            if "checking" not in (getattr(self._encode, "status", None), getattr(self._decode, "status", None)):
                return
            self._decode(self._encode(probe.model))

    def _explanation(self, X: Any, Y_m: torch.Tensor, X_cf: Any, Y_cf: torch.Tensor, T: torch.Tensor,
                     C: torch.Tensor | None, **extra: Any) -> Explanation:
        cls, cf_cls, tgt = ((Y_m.reshape(-1, 1), Y_cf.reshape(-1, 1), T) if self.task.regression else
                            (Y_m.argmax(1, keepdim=True), Y_cf.argmax(1, keepdim=True), T.argmax(1, keepdim=True)))
        data = {"orig": {"X": X, "class": to_numpy(cls)}, "target": to_numpy(tgt), "condition": to_numpy(C),
                "cf": {"X": self.space.output(X_cf), "class": to_numpy(cf_cls)}, **extra}
        return Explanation(meta=copy.deepcopy(self.meta), data=data)

    def save(self, path: str | os.PathLike, training_state: bool = True) -> None:
        """Save to a directory in one transaction (the old save or the new one, never a mix), safetensors + JSON; with
        ``training_state`` also what ``fit`` needs to resume exactly. Functions and the predictor are not saved."""
        persistence.save(self, path, training_state)

    def _save_extra(self, directory: Any) -> None:
        """Files beyond the core's in a save (the tabular explainer adds ``tabular.json``)."""

    @classmethod
    def _from_saved(cls, path: Any, predictor: Callable, nets: dict[str, nn.Module], settings: dict[str, Any],
                    device: torch.device) -> "CounterfactualRL":
        return cls(predictor, nets["encoder"], nets["decoder"], device=device, actor=nets["actor"],
                   critic=nets["critic"], **settings)

    @classmethod
    def load(cls, path: str | os.PathLike, predictor: Callable, *, device: Any = None, **kwargs: Any):
        """Load an explainer saved with :meth:`save` (or by xrl's format 1); nothing is unpickled, the global RNGs are
        left alone. Pass your own networks (``encoder=``, ``decoder=``, ``actor=``, ``critic=``: the saved weights are
        loaded into them) and custom functions again (not stored: else ``ValueError``); other keyword arguments
        override saved settings (``train_steps=...`` to train further)."""
        return persistence.load(cls, path, predictor, device, kwargs)
