"""Mean episode return of an agent (or of uniformly random actions) over a fixed number of episodes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._utils import resolve_device, torch_generator
from .._validation import check_scalar, error_message
from ..envs.rollout import ActorCriticPolicy, RandomPolicy, rollout


@dataclass
class EvalResult:
    """Episode returns of an evaluation; ``mean``/``std``/``sem`` summarise them."""

    returns: np.ndarray
    lengths: np.ndarray
    level_complete: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    @property
    def sem(self) -> float:
        return float(np.std(self.returns, ddof=1) / np.sqrt(len(self.returns))) if len(self.returns) > 1 else 0.0

    def summary(self) -> dict[str, Any]:
        d = {"episodes": int(len(self.returns)), "mean_return": round(self.mean, 3), "std_return": round(self.std, 3),
             "sem_return": round(self.sem, 3), "mean_length": round(float(np.mean(self.lengths)), 1)}
        if self.level_complete is not None:
            d["success_rate"] = round(float(np.mean(self.level_complete)), 3)
        return {**d, **self.info}


def evaluate(agent: torch.nn.Module | None, env, num_episodes: int = 100, seed: int = 0,
             deterministic: bool = False, device=None, *, progress: bool = True) -> EvalResult:
    """Run ``num_episodes`` full episodes with ``agent`` (or uniformly random actions if ``agent`` is None).

    ``env`` is a vectorised env (:mod:`xrl.envs.vector` interface). To avoid favouring short episodes, each of its
    ``num_envs`` environments contributes the same number of *first* episodes (``num_episodes`` must be a multiple
    of ``num_envs``). Actions are sampled from the policy (a torch generator seeded with ``seed``) unless
    ``deterministic`` (argmax); random actions come from ``np.random.default_rng(seed)``. The agent runs in eval mode
    without gradients (its modules' modes are restored). ``progress=False`` hides the progress bar (episodes done).
    """
    check_scalar("num_episodes", num_episodes, int, low=1)
    if not (hasattr(env, "num_envs") and hasattr(env, "single_action_space") and hasattr(env, "step")):
        raise TypeError(error_message("env", "a vectorised env from xrl.envs (make_vec_minatar, make_coinrun)",
                                      type(env).__name__, "wrap one game as make_vec_minatar(game, num_envs=1)"))
    n = env.num_envs
    if num_episodes % n:
        raise ValueError(f"num_episodes: expected a multiple of env.num_envs={n}, got {num_episodes}")
    quota = num_episodes // n
    if agent is None:
        policy = RandomPolicy(int(env.single_action_space.n), seed)
    else:
        device = resolve_device(device, agent)
        policy = ActorCriticPolicy(agent, torch_generator(seed, device), deterministic=deterministic, device=device)
    episodes = first_episodes(env, policy, quota, seed, progress=progress)
    return episodes_result(episodes)


def first_episodes(env, policy, quota: int, seed: int, *, progress: bool = True, env_offset: int = 0) -> list[tuple]:
    """The evaluation loop of :func:`evaluate`: ``policy`` plays ``env`` (reset with ``seed``) until each of its
    environments has finished ``quota`` episodes; returns ``(step, env_offset + env, return, length,
    level_complete or None)`` per first episode, in the order :func:`evaluate` reports them (by step, then
    environment). :func:`xrl.distributed.evaluate` runs it for each worker's share of the environments."""
    n = env.num_envs
    counts = np.zeros(n, dtype=int)
    episodes = []
    for step in rollout(env, policy, seed=seed, progress=progress, total=quota * n, unit="episode",
                        desc="evaluate"):
        info = step.info
        for i in np.flatnonzero(~np.isnan(info["episode_return"])):
            if counts[i] < quota:
                counts[i] += 1
                complete = bool(info["level_complete"][i]) if "level_complete" in info else None
                episodes.append((step.t, env_offset + int(i), info["episode_return"][i], info["episode_length"][i],
                                 complete))
        if not (counts < quota).any():
            break
    return episodes


def episodes_result(episodes: list[tuple]) -> EvalResult:
    """An :class:`EvalResult` of :func:`first_episodes`' records (in their order)."""
    complete = [e[4] for e in episodes if e[4] is not None]
    return EvalResult(np.asarray([e[2] for e in episodes], dtype=np.float64), np.asarray([e[3] for e in episodes]),
                      np.asarray(complete) if complete else None)
