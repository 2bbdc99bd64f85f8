"""The DreamerV2-style agent as one module, its checkpoints, the seed's `Evaluator`, and the public-code loader.

Checkpoints are a directory with ``agent.safetensors`` (all weights, keys ``<Module>.<param>``) and ``agent.json``
(``{"config": ..., "meta": ...}``), written as one transaction with a manifest; nothing is unpickled on load.

Loading the public PyTorch DreamerV2 ``models_best.pth`` (RajGhugare19/dreamerv2)
------------------------------------------------------------------------------------
That file is a ``torch.save``d dict of 7 state dicts. Our modules use the same attribute names, so the mapping is
the identity per module (``<name>.<key>`` -> ``<name>.<key>``), checked key by key and shape by shape:

========================  ==========================================================================
file entry                our module and keys (identical names)
========================  ==========================================================================
``RSSM``                  ``RSSM``: ``rnn.{weight,bias}_{ih,hh}``, ``fc_embed_state_action.0.*``,
                          ``fc_prior.{0,2}.*``, ``fc_posterior.{0,2}.*``
``ObsEncoder``            ``ObsEncoder``: ``convolutions.{0,2,4}.*``, ``fc_1.*`` (Linear 1024 -> 200)
``ObsDecoder``            ``ObsDecoder``: ``linear.*`` (600 -> 1024), ``decoder.{0,2,4}.*``
``RewardDecoder``         ``RewardDecoder``: ``model.{0,2,4,6}.*``
``ActionModel``           ``ActionModel``: ``model.{0,2,4,6}.*``
``ValueModel``            ``ValueModel`` (also copied to ``TargetValueModel``): ``model.{0,2,4,6}.*``
``DiscountModel``         ``DiscountModel``: ``model.{0,2,4,6}.*``
========================  ==========================================================================

``RSSM``, ``ObsEncoder`` and ``ActionModel`` are required (that is what the seed's evaluator loads); the others are
loaded when present. The file holds no config: pass the `MinAtarConfig` it was trained with (the defaults, with
``obs_shape``/``action_size`` of the game). The file is read with ``torch.load(..., weights_only=True)``, which
refuses arbitrary pickled objects.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .._utils import eval_mode, init_rng
from .._validation import check_scalar, error_message
from ..io import (atomic_directory, load_json, load_state_strict, load_tensors, prefixed_state, save_json, save_tensors,
                  strip_prefix, verify_directory)
from .config import MinAtarConfig
from .networks import ActionModel, DenseModel, ObsDecoder, ObsEncoder
from .rssm import RSSM, RSSMDiscState

MODULE_NAMES = ("RSSM", "ObsEncoder", "ObsDecoder", "RewardDecoder", "ActionModel", "ValueModel", "DiscountModel")
REQUIRED_PTH_MODULES = ("RSSM", "ObsEncoder", "ActionModel")


class DreamerAgent(nn.Module):
    """All networks of the DreamerV2-style agent, under the public code's attribute names.

    Attributes: ``RSSM``, ``ObsEncoder``, ``ObsDecoder``, ``RewardDecoder`` (Normal(mean, 1) reward),
    ``DiscountModel`` (Bernoulli logit of "not terminal"), ``ActionModel`` (actor), ``ValueModel`` and
    ``TargetValueModel`` (critic and its slow copy), ``config``.

    Examples
    --------
    >>> from xrl.worldmodel import DreamerAgent, MinAtarConfig
    >>> agent = DreamerAgent(MinAtarConfig(obs_shape=(2, 10, 10), action_size=3))
    >>> state = agent.RSSM._init_rssm_state(batch_size=1)
    >>> tuple(agent.RSSM.get_model_state(state).shape)
    (1, 600)
    """

    def __init__(self, config: MinAtarConfig):
        super().__init__()
        if not isinstance(config, MinAtarConfig):
            raise TypeError(error_message("config", "a MinAtarConfig", type(config).__name__))
        self.config = config
        info = config.rssm_info
        s = config.modelstate_size
        self.ObsEncoder = ObsEncoder(config.obs_shape, config.embedding_size, config.conv_depth, config.conv_kernel)
        self.ObsDecoder = ObsDecoder(config.obs_shape, s, config.conv_depth, config.conv_kernel)
        self.RSSM = RSSM(config.action_size, config.rssm_node_size, config.embedding_size, info.deter_size,
                         info.category_size, info.class_size)
        self.RewardDecoder = DenseModel(1, s, config.node_size, config.layers)
        self.DiscountModel = DenseModel(1, s, config.node_size, config.layers)
        self.ActionModel = ActionModel(config.action_size, s, config.node_size, config.layers)
        self.ValueModel = DenseModel(1, s, config.node_size, config.layers)
        self.TargetValueModel = DenseModel(1, s, config.node_size, config.layers)
        self.TargetValueModel.load_state_dict(self.ValueModel.state_dict())
        self.TargetValueModel.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.RSSM.device

    @property
    def action_size(self) -> int:
        return self.config.action_size

    def world_modules(self) -> list[nn.Module]:
        return [self.ObsEncoder, self.RSSM, self.RewardDecoder, self.ObsDecoder, self.DiscountModel]

    def set_generator(self, generator: torch.Generator | None) -> None:
        """Use ``generator`` for latent and action sampling (seeded rollouts without touching the global RNG)."""
        self.RSSM.generator = generator
        self.ActionModel.generator = generator

    @torch.no_grad()
    def policy_step(self, obs: Any, prev_action: torch.Tensor, prev_rssm_state: RSSMDiscState, nonterm: bool = True,
                    greedy: bool = False) -> tuple[torch.Tensor, RSSMDiscState]:
        """One step of the seed's loop: embed ``obs`` [C, H, W], posterior state, action [1, A] (one-hot)."""
        obs_t = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device).unsqueeze(0)
        embed = self.ObsEncoder(obs_t)  # [1, E]
        _, post = self.RSSM.rssm_observe(embed, prev_action, nonterm, prev_rssm_state)
        model_state = self.RSSM.get_model_state(post)
        if greedy:
            logits = self.ActionModel.model(model_state)
            action = torch.nn.functional.one_hot(logits.argmax(-1), self.action_size).float()
        else:
            action, _ = self.ActionModel(model_state)
        return action, post

    # -- checkpoints ------------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, meta: Mapping[str, Any] | None = None,
             dtype: torch.dtype | None = None) -> Path:
        """Write ``agent.safetensors`` + ``agent.json`` (config and ``meta``) into ``directory`` as one transaction
        (:func:`xrl.io.atomic_directory`: an interruption leaves the previous save).

        ``dtype=torch.float16`` halves the file (weights are cast back to float32 on `load`).
        """
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            self.write_files(tmp, meta, dtype)
        return directory

    def write_files(self, directory: Path, meta: Mapping[str, Any] | None = None,
                    dtype: torch.dtype | None = None) -> None:
        """The two files of `save`, written into ``directory`` (inside a caller's transaction, e.g. the trainer's
        checkpoint that adds the training state)."""
        tensors = {}
        for name in MODULE_NAMES + ("TargetValueModel",):
            tensors.update(prefixed_state(name, getattr(self, name)))
        if dtype is not None:
            tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        save_tensors(directory / "agent.safetensors", tensors)
        save_json(directory / "agent.json", {"format": "xrl.worldmodel.DreamerAgent/1", "config": self.config.to_dict(),
                                            "meta": dict(meta or {})})

    @classmethod
    def load(cls, directory: str | os.PathLike, device: Any = "cpu") -> "DreamerAgent":
        """Inverse of `save`; strict (missing/unexpected keys and shape mismatches are errors), checks the save's
        manifest (saves made before manifests existed load as they are) and does not consume the global RNG."""
        directory = Path(directory)
        verify_directory(directory)
        doc = load_json(directory / "agent.json")
        if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
            raise ValueError(f"{directory / 'agent.json'}: expected an xrl DreamerAgent config with a 'config' entry, "
                             f"got {sorted(doc) if isinstance(doc, dict) else type(doc).__name__}; re-save the agent")
        with init_rng():  # the weights are overwritten: building must not consume the caller's RNG
            agent = cls(MinAtarConfig.from_dict(doc["config"]))
        agent.meta = doc.get("meta", {})
        tensors = {k: v.float() if v.is_floating_point() else v
                   for k, v in load_tensors(directory / "agent.safetensors").items()}
        for name in MODULE_NAMES + ("TargetValueModel",):
            load_state_strict(getattr(agent, name), strip_prefix(name, tensors), f"DreamerAgent.{name}")
        return agent.to(device).eval()

    @classmethod
    def from_dreamerv2_pth(cls, path: str | os.PathLike, config: MinAtarConfig, device: Any = "cpu") -> "DreamerAgent":
        """Load the public DreamerV2 code's ``models_*.pth`` (see the module docstring for the key mapping)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: expected an existing .pth file, got {str(path)!r} (missing)")
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: could not be read with torch.load(weights_only=True) ({exc}); only files of "
                             "plain state dicts (as DreamerV2's Trainer.save_model writes) are accepted") from exc
        if not isinstance(saved, Mapping):
            raise ValueError(error_message("path", "a dict of state dicts", type(saved).__name__))
        missing = [k for k in REQUIRED_PTH_MODULES if k not in saved]
        if missing:
            raise ValueError(f"{path}: missing state dicts {missing}; found {sorted(saved)}; expected a DreamerV2 "
                             "models_*.pth with at least " + ", ".join(REQUIRED_PTH_MODULES))
        with init_rng():  # modules missing from the file keep a fresh initialisation, drawn from a private RNG
            agent = cls(config)
        for name in MODULE_NAMES:
            if name in saved:
                load_state_strict(getattr(agent, name), saved[name], f"models_best.pth[{name!r}]")
        agent.TargetValueModel.load_state_dict(agent.ValueModel.state_dict())
        agent.meta = {"source": str(path), "loaded": [k for k in MODULE_NAMES if k in saved]}
        return agent.to(device).eval()


class Evaluator:
    """Runs an agent with the posterior state, as the seed (and DreamerV2's ``Evaluator``) does.

    ``Evaluator(config, device).load_model(config, path)`` accepts an xrl checkpoint directory (or its
    ``agent.safetensors``/``agent.json``) or a DreamerV2 ``.pth`` file. Afterwards ``RSSM``, ``ObsEncoder``,
    ``ObsDecoder``, ``ActionModel``, ``action_size`` and ``device`` are available as in the seed notebook.
    """

    def __init__(self, config: MinAtarConfig | None = None, device: Any = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.agent: DreamerAgent | None = None

    @property
    def action_size(self) -> int:
        return (self.agent.config if self.agent is not None else self.config).action_size

    def load_model(self, config: MinAtarConfig | None, model_path: str | os.PathLike) -> "Evaluator":
        p = Path(model_path)
        if p.suffix in (".pth", ".pt"):
            if config is None:
                raise ValueError(error_message("config", "a MinAtarConfig for a .pth file", None,
                                               "DreamerV2 .pth files hold no config"))
            self.agent = DreamerAgent.from_dreamerv2_pth(p, config, self.device)
        else:
            self.agent = DreamerAgent.load(p.parent if p.is_file() else p, self.device)
        self.config = self.agent.config
        return self

    def __getattr__(self, name):
        if name in MODULE_NAMES + ("TargetValueModel",):
            agent = self.__dict__.get("agent")
            if agent is None:
                raise RuntimeError("Evaluator is not loaded yet: call load_model(config, path) first")
            return getattr(agent, name)
        raise AttributeError(name)


def _stats(returns: list[float], **extra) -> dict[str, Any]:
    r = np.asarray(returns, dtype=np.float64)
    return {"mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()), "max": float(r.max()),
            "episodes": len(returns), **extra, "returns": r.tolist()}


class DreamerPolicy:
    """The posterior-state policy of a `DreamerAgent` for :func:`xrl.envs.rollout` (one-hot actions ``[N, A]``).

    Per step: embed the observations, filter the posterior ``p(s_t | h_t, e_t)`` (the recurrent state is zeroed for
    environments whose observation starts an episode), then sample the action from the actor (or take its most
    probable action, ``greedy``). Every environment's row is computed, live or not, so the sampling stream does not
    depend on when episodes end. Latent and action sampling use the agent's generator (`DreamerAgent.set_generator`).

    ``extras``: ``logit``, ``stoch`` [N, C*K] and ``deter`` [N, D] of the posterior, ``action_index`` [N].
    """

    def __init__(self, agent: DreamerAgent, greedy: bool = False):
        self.agent, self.greedy = agent, greedy
        self.state: RSSMDiscState | None = None
        self.prev_action: torch.Tensor | None = None

    def reset(self, num_envs: int) -> None:
        self.state = self.agent.RSSM._init_rssm_state(num_envs)
        self.prev_action = torch.zeros(num_envs, self.agent.action_size, device=self.agent.device)

    def __call__(self, obs: np.ndarray, live: np.ndarray, firsts: np.ndarray
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        a, dev, A = self.agent, self.agent.device, self.agent.action_size
        if self.state is None:
            self.reset(len(obs))
        with torch.no_grad(), eval_mode(a):
            o = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=dev)  # [N, C, H, W]
            nonterm = torch.as_tensor(~firsts, dtype=torch.float32, device=dev).unsqueeze(-1)  # [N, 1]
            _, post = a.RSSM.rssm_observe(a.ObsEncoder(o), self.prev_action * nonterm, nonterm, self.state)
            feat = a.RSSM.get_model_state(post)
            if self.greedy:
                action = torch.nn.functional.one_hot(a.ActionModel.model(feat).argmax(-1), A).float()
            else:
                action, _ = a.ActionModel(feat)
        self.state, self.prev_action = post, action
        extras = {"logit": post.logit.cpu().numpy(), "stoch": post.stoch.cpu().numpy(),
                  "deter": post.deter.cpu().numpy(), "action_index": action.argmax(-1).cpu().numpy()}
        return action.cpu().numpy(), extras


def evaluate(agent: DreamerAgent, make_env, episodes: int = 10, seed: int = 0, greedy: bool = False,
             parallel: int = 100, *, progress: bool = True) -> dict[str, Any]:
    """Mean return of ``agent`` over ``episodes`` episodes (env seeds ``seed, seed+1, ...``), posterior-state policy.

    ``make_env`` is a zero-argument callable returning a one-hot-action env
    (``make_minatar(..., one_hot_actions=True)``) or such an env (then copied). Up to ``parallel`` episodes run in
    lockstep with one batched forward per step (:class:`DreamerPolicy` through :func:`xrl.envs.rollout`). Latent and
    action sampling use a generator seeded with ``seed`` (never the global RNG). ``progress=False`` hides the
    progress bar (episodes done).
    """
    import copy

    from ..envs.rollout import SingleEnvs, rollout

    check_scalar("episodes", episodes, int, low=1)
    check_scalar("parallel", parallel, int, low=1)
    check_scalar("seed", seed, int)
    from .explain import _check_env

    agent = getattr(agent, "agent", agent)  # an Evaluator holds the agent
    if not isinstance(agent, DreamerAgent):
        raise TypeError(error_message("agent", "a DreamerAgent or a loaded Evaluator", type(agent).__name__))
    factory = make_env if callable(make_env) and not hasattr(make_env, "step") else (lambda: copy.deepcopy(make_env))
    agent.set_generator(torch.Generator(device=agent.device).manual_seed(int(seed)))
    returns, t0 = [], time.perf_counter()
    policy = DreamerPolicy(agent, greedy)
    try:
        for first in range(0, episodes, parallel):
            envs = SingleEnvs([factory() for _ in range(min(parallel, episodes - first))])
            _check_env(agent, envs.envs[0])
            total = np.zeros(envs.num_envs)
            for step in rollout(envs, policy, seed=seed + first, progress=progress, unit="episode",
                                total=envs.num_envs, desc=f"evaluate {first + envs.num_envs}/{episodes}"):
                total += step.rewards * step.live
            returns += total.tolist()
    finally:
        agent.set_generator(None)
    return _stats(returns, seconds=time.perf_counter() - t0)


def random_returns(env, episodes: int = 10, seed: int = 0) -> dict[str, Any]:
    """Mean return of the uniformly random policy (same env seeds as `evaluate`; one-hot actions drawn from
    ``np.random.default_rng(seed)``)."""
    from ..envs.rollout import RandomPolicy, SingleEnvs, rollout

    check_scalar("episodes", episodes, int, low=1)
    policy = RandomPolicy(env.action_space.shape[0], seed, one_hot=True)
    returns = []
    for ep in range(episodes):
        total = 0.0
        for step in rollout(SingleEnvs([env]), policy, seed=seed + ep, progress=False):
            total += step.rewards[0]
        returns.append(total)
    return _stats(returns)
