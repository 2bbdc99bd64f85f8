"""Mean episode return of an agent (or of uniformly random actions) over a fixed number of episodes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._utils import resolve_device, torch_generator
from .._validation import check_scalar


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
             deterministic: bool = False, device=None) -> EvalResult:
    """Run ``num_episodes`` full episodes with ``agent`` (or uniformly random actions if ``agent`` is None).

    ``env`` is a vectorised env (:mod:`xrl.envs.vector` interface). To avoid favouring short episodes, each of its
    ``num_envs`` environments contributes the same number of *first* episodes (``num_episodes`` must be a multiple
    of ``num_envs``). Actions are sampled from the policy unless ``deterministic`` (argmax).
    """
    check_scalar("num_episodes", num_episodes, int, low=1)
    n = env.num_envs
    if num_episodes % n:
        raise ValueError(f"num_episodes: expected a multiple of env.num_envs={n}, got {num_episodes}")
    quota = num_episodes // n
    device = resolve_device(device, agent)
    gen = torch_generator(seed, device)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    counts = np.zeros(n, dtype=int)
    returns, lengths, complete = [], [], []
    num_actions = int(env.single_action_space.n)
    while (counts < quota).any():
        if agent is None:
            actions = rng.integers(num_actions, size=n)
        else:
            with torch.no_grad():
                logits, _ = agent(torch.from_numpy(obs).to(device))
            if deterministic:
                actions = logits.argmax(-1).cpu().numpy()
            else:
                actions = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen).squeeze(-1).cpu().numpy()
        obs, _, _, _, info = env.step(actions)
        for i in np.flatnonzero(~np.isnan(info["episode_return"])):
            if counts[i] < quota:
                counts[i] += 1
                returns.append(info["episode_return"][i])
                lengths.append(info["episode_length"][i])
                if "level_complete" in info:
                    complete.append(bool(info["level_complete"][i]))
    return EvalResult(np.asarray(returns, dtype=np.float64), np.asarray(lengths),
                      np.asarray(complete) if complete else None)
