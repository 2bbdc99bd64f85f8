"""THE rollout engine: a policy acting in a batch of environments, one step at a time.

Every place in xrl that plays an agent in environments (``agents.evaluate``, ``agents.collect_trajectories``,
``agents.sample_observations``, ``vision.compare_rollouts``, the world model's ``evaluate``, ``random_returns`` and
``rollout_latents``) is a short loop over :func:`rollout`, which owns the order of operations (reset with the seed,
choose actions for the live environments, step them, report the step), the stopping rules and the progress bar.

Two kinds of environment batches are accepted:

- a vectorised env of :mod:`xrl.envs.vector` (``VecMinAtar``, ``CoinRunVecEnv``): every environment is always live,
  a finished episode restarts in the same step (autoreset);
- :class:`SingleEnvs`, a list of gymnasium environments stepped in lockstep: environment ``k`` is reset with
  ``seed + k``; when its episode ends it either stops (the default: one episode per environment) or restarts with
  ``restart_seed(k, count)``.

A policy is any callable ``policy(obs [N, ...], live [N] bool, firsts [N] bool) -> (actions [N, ...], extras)``
(``extras``: a dict of per-environment arrays such as logits and values; rows of environments that are not live are
ignored), optionally with ``reset(num_envs)`` called before the first step (recurrent state). ``firsts[k]`` tells
that ``obs[k]`` is the first observation of an episode. :class:`ActorCriticPolicy` and :class:`RandomPolicy` cover
``agent(obs) -> (logits, value)`` agents; the world model's policy lives in :mod:`xrl.worldmodel.agent`.

Example
-------
>>> from xrl.envs import make_vec_minatar
>>> venv = make_vec_minatar("breakout", num_envs=2)
>>> policy = RandomPolicy(venv.single_action_space.n, seed=0)
>>> steps = [s for s in rollout(venv, policy, seed=0, steps=5, progress=False)]
>>> len(steps), steps[0].obs.shape
(5, (2, 4, 10, 10))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np
import torch

from .._utils import eval_mode, resolve_device, torch_generator
from .._validation import check_choice, check_scalar, error_message

__all__ = ["rollout", "RolloutStep", "SingleEnvs", "Policy", "ActorCriticPolicy", "RandomPolicy"]


class Policy(Protocol):
    """What :func:`rollout` calls to choose actions (see the module docstring)."""

    def __call__(self, obs: np.ndarray, live: np.ndarray, firsts: np.ndarray
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...


@dataclass
class RolloutStep:
    """One step of :func:`rollout` for ``N`` environments (rows of environments that were not ``live`` are stale).

    Attributes
    ----------
    t : int                      step index, from 0
    obs : [N, ...]               observations the actions were chosen on
    obs_info : dict or list      the info that came with ``obs`` (vectorised env: a dict of arrays; SingleEnvs: one
                                 dict per environment)
    firsts : bool [N]            ``obs[k]`` is the first observation of an episode
    live : bool [N]              environments that acted in this step
    actions : [N, ...]           the policy's actions
    extras : dict                the policy's other outputs (e.g. ``logits`` [N, A], ``values`` [N])
    rewards : [N]                reward of the step
    terminated, truncated : bool [N]
    next_obs : [N, ...]          observations after the step (after an automatic restart: the new episode's first)
    info : dict or list          the info that came with ``next_obs``
    """

    t: int
    obs: np.ndarray
    obs_info: Any
    firsts: np.ndarray
    live: np.ndarray
    actions: np.ndarray
    extras: dict[str, np.ndarray]
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_obs: np.ndarray
    info: Any

    @property
    def dones(self) -> np.ndarray:
        """Episodes that ended in this step (``terminated | truncated``, live environments only)."""
        return np.logical_or(self.terminated, self.truncated) & self.live


class SingleEnvs:
    """Gymnasium environments stepped in lockstep as one batch for :func:`rollout`.

    Parameters
    ----------
    envs : sequence of gymnasium envs
        Environment ``k`` is reset with ``seed + k`` by ``reset(seed)``.
    restart_seed : callable ``(k, count) -> int``, optional
        When given, an environment whose episode ends restarts at once with this seed (``count``: its number of
        restarts so far, from 1), and ``step`` returns the new episode's first observation and info; otherwise it
        stops (``live[k]`` becomes False) and keeps its last observation.
    probe : callable ``env -> dict``, optional
        Called after every reset and step; its entries are added to that environment's info (for state an info
        does not carry, e.g. Freeway's move timer).
    """

    def __init__(self, envs: Sequence[Any], *, restart_seed: Callable[[int, int], int] | None = None,
                 probe: Callable[[Any], dict] | None = None):
        self.envs = list(envs)
        if not self.envs:
            raise ValueError(error_message("envs", "at least one environment", envs))
        self.num_envs = len(self.envs)
        self.restart_seed = restart_seed
        self.probe = probe
        self.live = np.ones(self.num_envs, dtype=bool)
        self.restarts = np.zeros(self.num_envs, dtype=np.int64)
        self._obs: list[np.ndarray] = []
        self._infos: list[dict] = []

    def _info(self, env: Any, info: dict) -> dict:
        return {**info, **self.probe(env)} if self.probe is not None else info

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, list[dict]]:
        self._obs, self._infos = [], []
        for k, env in enumerate(self.envs):
            o, info = env.reset(seed=None if seed is None else int(seed) + k)
            self._obs.append(o)
            self._infos.append(self._info(env, info))
        self.live[:] = True
        self.restarts[:] = 0
        return np.stack(self._obs), list(self._infos)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        n = self.num_envs
        rewards = np.zeros(n, dtype=np.float64)
        terms = np.zeros(n, dtype=bool)
        truncs = np.zeros(n, dtype=bool)
        for k in np.flatnonzero(self.live):
            env = self.envs[k]
            action = actions[k]
            o, r, term, trunc, info = env.step(action.item() if np.ndim(action) == 0 else action)
            rewards[k], terms[k], truncs[k] = r, term, trunc
            if term or trunc:
                if self.restart_seed is None:
                    self.live[k] = False
                else:
                    self.restarts[k] += 1
                    o, info = env.reset(seed=int(self.restart_seed(int(k), int(self.restarts[k]))))
            self._obs[k], self._infos[k] = o, self._info(env, info)
        return np.stack(self._obs), rewards, terms, truncs, list(self._infos)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def rollout(env: Any, policy: Policy | Callable, *, seed: int | None = None, steps: int | None = None,
            progress: bool = True, total: int | None = None, unit: str = "step", desc: str = "rollout"
            ) -> Iterator[RolloutStep]:
    """Play ``policy`` in ``env`` and yield one :class:`RolloutStep` per step.

    The loop: ``policy.reset(N)`` (if it has one), ``obs = env.reset(seed=seed)``, then per step: stop if no
    environment is live or ``steps`` were made; ``actions = policy(obs, live, firsts)``; ``env.step(actions)``; yield
    the step. The caller records what it needs and may ``break`` at any time.

    Parameters
    ----------
    env : vectorised env or :class:`SingleEnvs`
    policy : callable
        See the module docstring.
    seed : int, optional
        Passed to ``env.reset`` (environment ``k`` gets ``seed + k``).
    steps : int, optional
        Stop after this many steps (default: when no environment is live; a vectorised env never stops by itself).
    progress : bool, default True
        Show a tqdm progress bar.
    total, unit, desc :
        The bar's length (default ``steps``), what it counts (``"step"``: steps; ``"episode"``: episodes finished)
        and its label.

    Yields
    ------
    RolloutStep
    """
    check_choice("unit", unit, ("step", "episode"))
    if steps is not None:
        check_scalar("steps", steps, int, low=0)
    from tqdm.auto import tqdm

    n = int(env.num_envs)
    if hasattr(policy, "reset"):
        policy.reset(n)
    obs, info = env.reset(seed=seed)
    firsts = np.ones(n, dtype=bool)
    always_live = np.ones(n, dtype=bool)
    bar_total = total if total is not None else (steps if unit == "step" else None)
    bar = tqdm(total=bar_total, disable=not progress, unit=unit, desc=desc)
    try:
        t = 0
        while steps is None or t < steps:
            live = env.live.copy() if hasattr(env, "live") else always_live
            if not live.any():
                break
            actions, extras = policy(obs, live, firsts)
            next_obs, rewards, terminated, truncated, next_info = env.step(actions)
            step = RolloutStep(t, obs, info, firsts, live, actions, extras, np.asarray(rewards),
                               np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool), next_obs,
                               next_info)
            done = step.dones
            if unit == "step":
                bar.update(1)
            elif done.any():
                count = int(done.sum())
                bar.update(count if bar.total is None else max(0, min(count, bar.total - bar.n)))
            yield step
            obs, info, firsts = next_obs, next_info, done
            t += 1
    finally:
        bar.close()


# ---- policies for agents ``agent(obs) -> (logits [B, A], value [B])`` ------------------------------------------
def _obs_tensor(obs: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Observations as a tensor: uint8 frames stay uint8 (agents scale them), other dtypes become the agent's
    floating dtype (float32 for most)."""
    t = torch.from_numpy(np.ascontiguousarray(obs))
    if t.dtype != torch.uint8 and t.dtype != dtype:
        t = t.to(dtype)
    return t.to(device)


def _agent_outputs(out: Any, rows: int, agent: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits [B, A], value [B])`` from an agent's output, or a clear error."""
    if not (isinstance(out, (tuple, list)) and len(out) >= 2 and all(isinstance(o, torch.Tensor) for o in out[:2])):
        got = type(out).__name__ if not isinstance(out, torch.Tensor) else f"one tensor of shape {tuple(out.shape)}"
        raise TypeError(error_message("agent", "a module returning (logits [B, A], value [B]) such as "
                                      "xrl's ImpalaCNN or an SB3Policy", f"{type(agent).__name__} returning {got}"))
    logits, value = out[0], out[1]
    if logits.ndim != 2 or logits.shape[0] != rows or value.reshape(-1).shape[0] != rows:
        raise ValueError(error_message("agent", f"outputs logits [{rows}, A] and value [{rows}] for {rows} "
                                       "observations", f"logits {tuple(logits.shape)}, value {tuple(value.shape)}"))
    return logits, value.reshape(-1)


@dataclass
class ActorCriticPolicy:
    """Act with an agent ``agent(obs [B, C, H, W]) -> (logits [B, A], value [B])`` (the agent is run in eval mode,
    without gradients; every submodule's mode is restored after each call).

    Actions are the most probable ones (``deterministic``), or sampled from ``softmax(logits)``: with one torch
    ``generator`` for the whole batch (``torch.multinomial``; a generator with a fresh random seed when none is
    given, never the global RNG), or, when ``rngs`` (one numpy generator per environment) is given, each
    environment from its own generator, so that an environment's actions do not depend on the others (paired
    comparisons of agents). Only live environments' observations are passed to the agent; floating-point
    observations take the agent's parameter dtype, uint8 frames stay uint8.

    ``extras``: ``logits`` float32 [N, A] and ``values`` float32 [N] (rows of live environments).
    """

    agent: torch.nn.Module
    generator: torch.Generator | None = None
    rngs: Sequence[np.random.Generator] | None = None
    deterministic: bool = False
    device: Any = None
    _device: torch.device = field(init=False, repr=False)
    _dtype: torch.dtype = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.agent, torch.nn.Module):
            raise TypeError(error_message("agent", "a torch.nn.Module returning (logits, value)",
                                          type(self.agent).__name__))
        self._device = resolve_device(self.device, self.agent)
        self._dtype = next((p.dtype for p in self.agent.parameters() if p.is_floating_point()), torch.float32)
        if self.generator is None and self.rngs is None and not self.deterministic:
            self.generator = torch_generator(None, self._device)  # never the global RNG

    def __call__(self, obs: np.ndarray, live: np.ndarray, firsts: np.ndarray
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rows = np.flatnonzero(live)
        all_live = len(rows) == len(obs)
        x = _obs_tensor(obs if all_live else obs[rows], self._device, self._dtype)
        with torch.no_grad(), eval_mode(self.agent):
            logits, value = _agent_outputs(self.agent(x), len(x), self.agent)
        logits = logits.float()
        if self.rngs is not None:
            probs = torch.softmax(logits, -1).cpu().numpy()
            chosen = probs.argmax(-1) if self.deterministic else np.array(
                [self.rngs[k].choice(len(p), p=p) for k, p in zip(rows, probs)], dtype=np.int64)
        elif self.deterministic:
            chosen = logits.argmax(-1).cpu().numpy()
        else:
            chosen = torch.multinomial(torch.softmax(logits, -1), 1, generator=self.generator).squeeze(-1)
            chosen = chosen.cpu().numpy()
        logits_np, values_np = logits.cpu().numpy(), value.float().cpu().numpy()
        if all_live:
            return chosen, {"logits": logits_np, "values": values_np}
        actions = np.zeros(len(obs), dtype=np.int64)
        logits_all = np.zeros((len(obs), logits_np.shape[-1]), dtype=np.float32)
        values_all = np.zeros(len(obs), dtype=np.float32)
        actions[rows], logits_all[rows], values_all[rows] = chosen, logits_np, values_np
        return actions, {"logits": logits_all, "values": values_all}


class RandomPolicy:
    """Uniformly random discrete actions from ``np.random.default_rng(seed)`` (one draw of ``N`` actions per step).

    ``one_hot=True`` returns one-hot float32 rows ``[N, A]`` (for envs with one-hot actions)."""

    def __init__(self, num_actions: int, seed: int | np.random.Generator | None = 0, *, one_hot: bool = False):
        check_scalar("num_actions", int(num_actions), int, low=1)
        self.num_actions = int(num_actions)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.one_hot = one_hot

    def __call__(self, obs: np.ndarray, live: np.ndarray, firsts: np.ndarray
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if self.one_hot:
            actions = np.zeros((len(obs), self.num_actions), dtype=np.float32)
            for k in range(len(obs)):  # one scalar draw per environment
                actions[k, self.rng.integers(self.num_actions)] = 1
            return actions, {}
        return self.rng.integers(self.num_actions, size=len(obs)), {}
