"""CFRL's configuration: alibi's parameters as one typed dataclass, the functions alibi's defaults name, presets.

alibi passes every option through one ``params`` dict (``DEFAULT_BASE_PARAMS`` plus ``**kwargs``). Here the numbers
and flags live in :class:`CFRLConfig` (validated, saved as JSON) and the objects (functions, networks, optimizers) in
a components dict beside it; :class:`ParamsView` shows both as alibi's ``explainer.params``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import torch

from .._validation import check_choice, check_keys, check_scalar, check_type, error_message

__all__ = ["CFRLConfig", "DEFAULT_BASE_PARAMS", "PRESETS", "ParamsView", "identity_function",
           "generate_empty_condition", "get_classification_reward", "get_hard_distribution"]


def identity_function(X: Any) -> Any:
    """Default pre-/inverse-processor: returns its input."""
    return X


def generate_empty_condition(X: Any) -> None:
    """Default ``conditional_func``: no conditioning."""
    return None


def get_classification_reward(Y_pred: Any, Y_true: Any) -> Any:
    """Element-wise reward: 1 where ``argmax(Y_pred) == argmax(Y_true)``. Both 2-D (numpy arrays or tensors)."""
    if len(Y_pred.shape) != 2:
        raise ValueError(error_message("Y_pred", "a 2-D array of class scores [N, classes]", Y_pred))
    if len(Y_true.shape) != 2:
        raise ValueError(error_message("Y_true", "a 2-D one-hot array [N, classes]", Y_true))
    return (Y_pred.argmax(1) == Y_true.argmax(1) if isinstance(Y_pred, torch.Tensor)
            else np.argmax(Y_pred, axis=1) == np.argmax(Y_true, axis=1))


def get_hard_distribution(Y: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """One-hot encode class indices ``[N]``/``[N, 1]`` (needs ``num_classes``) or the argmax of scores ``[N, K]``."""
    Y = np.asarray(Y)
    if Y.ndim == 1 or (Y.ndim == 2 and Y.shape[1] == 1):
        if num_classes is None:
            raise ValueError("num_classes: expected an int to one-hot encode class indices, got None")
        return np.eye(num_classes, dtype=np.float32)[Y.reshape(-1).astype(np.int64)]
    if Y.ndim != 2:
        raise ValueError(error_message("Y", "a 1-D or 2-D array", Y))
    return np.eye(Y.shape[1], dtype=np.float32)[np.argmax(Y, axis=1)]


@dataclasses.dataclass
class CFRLConfig:
    """Everything numeric that decides what ``fit`` learns (alibi's ``DEFAULT_BASE_PARAMS`` keys plus xrl's own),
    checked on creation; the explainers build it from their arguments (``CounterfactualRL(..., train_steps=2000)``)."""

    coeff_sparsity: float = 0.0
    """Weight of the sparsity loss (L1 to the input; L1 + L0 for tabular data)."""
    coeff_consistency: float = 0.0
    """Weight of the consistency loss (re-encoding of the counterfactual vs its embedding); 0 skips the re-encoding."""
    latent_dim: int | None = None
    """The encoder's output size; ``None`` only with a user actor (then read from the encoder at ``fit``)."""
    seed: int = 0
    """Seeds every random choice of ``fit`` and the default networks' initialisation; the global RNGs are untouched."""
    act_noise: float = 0.1
    """Standard deviation of the Gaussian exploration noise added to the actor's output."""
    act_low: float = -1.0
    """Lowest value of each action (latent) coordinate."""
    act_high: float = 1.0
    """Highest value of each action (latent) coordinate."""
    replay_buffer_size: int = 1000
    """Replay buffer capacity, in batches (the oldest batch is replaced first)."""
    batch_size: int = 100
    """Rows per training step and per update."""
    num_workers: int = 4
    """alibi's data-loader workers: accepted and unused (the training set is pre-processed once, on the device)."""
    shuffle: bool = True
    """Reshuffle the training rows every epoch (else take them in order)."""
    exploration_steps: int = 100
    """Steps whose actions are drawn uniformly from ``[act_low, act_high]`` instead of the noisy actor."""
    update_every: int = 1
    """Steps between updates; each update step runs ``update_every`` updates (so one update per step on average)."""
    update_after: int = 10
    """Steps before the first update (the buffer fills first)."""
    train_steps: int = 100000
    """Total training steps; ``fit`` after ``load`` or an earlier ``fit`` continues up to this number."""
    lr_actor: float = 1e-3
    """Learning rate of the default actor optimizer (Adam)."""
    lr_critic: float = 1e-3
    """Learning rate of the default critic optimizer (Adam)."""
    actor_hidden_dim: int = 256
    """Hidden width of the default actor."""
    critic_hidden_dim: int = 256
    """Hidden width of the default critic."""
    all_targets: bool = True
    """Train the critic on every target class of each replayed transition (exact for the default reward, which is 1
    exactly for the class the black box predicted; beyond 32 classes, 32 random targets). ``False``: alibi's one."""
    saturation_penalty: float = 0.01
    """Weight of the mean squared pre-tanh output of the default :class:`~xrl.models.Actor` in the actor loss (0:
    alibi's loss): it keeps the policy out of tanh's flat tails, where it can stall on one constant counterfactual."""
    lr_decay: float = 1.0
    """Learning rates fall linearly to ``lr_decay`` times their initial value over ``lr_decay_steps`` (1: constant)."""
    lr_decay_steps: int | None = None
    """Length of the learning-rate schedule; ``None``: ``train_steps`` of the first ``fit``. Saved with the training
    state, so a resumed ``fit`` continues the same schedule (past its end the rates stay at the final value)."""
    sparsity_gate: float = 0.0
    """``g`` in ``[0, 1]``: each sample's sparsity term is weighted by ``1 - g + g * clip(Q, 0, 1)`` (``Q``: the
    critic's estimate that it is valid): a failing counterfactual is not pulled back before it crosses. 0: alibi's."""

    def __post_init__(self) -> None:  # dataclasses.replace(config, ...) validates too
        for field in dataclasses.fields(self):
            setattr(self, field.name, _checked(field.name, getattr(self, field.name)))
        if self.act_low >= self.act_high:
            raise ValueError(f"act_low/act_high: expected act_low < act_high, got {self.act_low} >= {self.act_high}")


# name -> (type, low, high); ints accept numpy integers, floats any real number; learning rates must be > 0
_RULES: dict[str, tuple[type, float | None, float | None]] = {
    **{k: (float, 0, None) for k in ("coeff_sparsity", "coeff_consistency", "act_noise", "saturation_penalty",
                                     "lr_actor", "lr_critic")},
    "act_low": (float, None, None), "act_high": (float, None, None), "lr_decay": (float, 0, 1),
    "sparsity_gate": (float, 0, 1),
    **{k: (int, 1, None) for k in ("latent_dim", "replay_buffer_size", "batch_size", "update_every", "train_steps",
                                   "actor_hidden_dim", "critic_hidden_dim", "lr_decay_steps")},
    **{k: (int, 0, None) for k in ("num_workers", "exploration_steps", "update_after")}, "seed": (int, None, None),
    "shuffle": (bool, None, None), "all_targets": (bool, None, None)}
FIELDS = tuple(f.name for f in dataclasses.fields(CFRLConfig))


def as_int(name: str, value: Any, low: int | None = None) -> int:
    """``value`` as a python int (numpy integers accepted; bools and floats refused), checked against ``low``."""
    check_scalar(name, value, int, low=low)
    return int(value)


def _checked(name: str, value: Any) -> Any:
    kind, low, high = _RULES[name]
    if value is None and name in ("latent_dim", "lr_decay_steps"):
        return None
    if kind is bool:
        check_type(name, value, (bool, np.bool_), "a bool")
        return bool(value)
    if kind is int:
        return as_int(name, value, low)
    check_scalar(name, value, (int, float), low=low, high=high, low_inclusive=name not in ("lr_actor", "lr_critic"))
    return float(value)


PRESETS: dict[str, dict[str, Any]] = {
    "xrl": {}, "alibi": {"all_targets": False, "saturation_penalty": 0.0, "lr_decay": 1.0, "sparsity_gate": 0.0}}
"""Named starting points for :class:`CFRLConfig`: ``"xrl"`` (the defaults above) and ``"alibi"`` (alibi 0.9.6's
algorithm: one target per transition, no saturation penalty, constant learning rates, alibi's actor loss)."""

# The objects among alibi's parameters, with their defaults (``None``: built by the explainer).
COMPONENTS: dict[str, Any] = {
    "encoder_preprocessor": identity_function, "decoder_inv_preprocessor": identity_function,
    "reward_func": get_classification_reward, "postprocessing_funcs": (), "conditional_func": generate_empty_condition,
    "callbacks": (), "actor": None, "critic": None, "optimizer_actor": None, "optimizer_critic": None}
FUNCTIONS = ("encoder_preprocessor", "decoder_inv_preprocessor", "reward_func", "conditional_func")
LISTS = ("postprocessing_funcs", "callbacks")
_REMOVED = {"pipeline": "the black box is always called from the caller's thread; drop the argument",
            "optimize_inference": "models run as given; to accelerate a module black box pass accelerate=...",
            "hindsight": "all_targets=True (the default) teaches the critic the class each counterfactual reached"}
ALIBI_FIELDS = FIELDS[FIELDS.index("act_noise"):FIELDS.index("critic_hidden_dim") + 1]  # xrl's own fields are after
DEFAULT_BASE_PARAMS: dict[str, Any] = {**{k: getattr(CFRLConfig(), k) for k in ALIBI_FIELDS}, "backend": "pytorch",
                                       **{k: list(v) if isinstance(v, tuple) else v for k, v in COMPONENTS.items()}}
"""alibi's parameter keys and defaults (``backend`` is ``"pytorch"``, the only backend here)."""


def split_options(options: dict[str, Any], preset: str = "xrl", **given: Any) -> tuple[CFRLConfig, dict[str, Any]]:
    """alibi-style keyword options (``DEFAULT_BASE_PARAMS`` keys, :class:`CFRLConfig` fields) -> (config, components).

    Unknown keys raise ``ValueError`` naming the closest valid ones; ``given``: the constructor's named arguments."""
    check_choice("preset", preset, sorted(PRESETS))
    for key in set(options) & set(_REMOVED):
        raise ValueError(f"{key}: this option was removed; {_REMOVED[key]}")
    check_keys("kwargs", options, [*FIELDS, *COMPONENTS, "backend"])
    components = {k: options.get(k, list(v) if isinstance(v, tuple) else v) for k, v in COMPONENTS.items()}
    check_components(components)
    return CFRLConfig(**{**PRESETS[preset], **{k: v for k, v in options.items() if k in FIELDS}, **given}), components


def check_components(c: dict[str, Any]) -> None:
    """Type checks for the objects among the parameters (lists are copied, so the caller's list is not shared)."""
    for k in FUNCTIONS:
        if not callable(c[k]):
            raise TypeError(error_message(k, "a callable", type(c[k]).__name__))
    for k in LISTS:
        if not isinstance(c[k], (list, tuple)) or not all(callable(f) for f in c[k]):
            raise TypeError(error_message(k, "a list of callables", c[k]))
        c[k] = list(c[k])
    for k, kind in (("actor", torch.nn.Module), ("critic", torch.nn.Module), ("optimizer_actor", torch.optim.Optimizer),
                    ("optimizer_critic", torch.optim.Optimizer)):
        check_type(k, c[k], (kind, type(None)), f"a {kind.__module__}.{kind.__name__} or None")
        if k.startswith("optimizer") and c[k] is not None and c[k[len("optimizer_"):]] is None:
            raise ValueError(f"{k}: cannot be given without {k[10:]} (an optimizer needs the network it updates)")


class ParamsView(dict):
    """alibi's ``explainer.params``: a snapshot of the config's fields, the components, the predictor, the
    autoencoder and the device; assignments write through (``params["train_steps"] = 5000`` replaces the config,
    validated; ``params["predictor"] = f`` calls ``reset_predictor``)."""

    def __init__(self, owner: Any) -> None:
        super().__init__({**vars(owner.config), **owner.components, "backend": "pytorch", "predictor": owner.predictor,
                          "encoder": owner.encoder, "decoder": owner.decoder, "device": owner.device})
        self._owner = owner

    def __setitem__(self, key: str, value: Any) -> None:
        o = self._owner
        if key in FIELDS:
            o.config = dataclasses.replace(o.config, **{key: value})
        elif key in o.components:
            check_components({**o.components, key: value})
            o.components[key] = list(value) if isinstance(value, (list, tuple)) else value
        elif key == "predictor":
            o.reset_predictor(value)
        else:
            raise KeyError(f"params: {key!r} cannot be set; the config's fields and {list(COMPONENTS)} can")
        super().__setitem__(key, value)


def function_name(f: Callable) -> str:
    return getattr(f, "__name__", type(f).__name__)
