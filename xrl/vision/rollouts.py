"""Compare rollouts of an original and an edited agent (return, episode length, deaths by the edited object).

Episodes are paired: episode ``k`` of every agent starts from the same environment seed and uses the same
action-sampling seed, so differences come from the agents, not from luck.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from torch import nn

from xrl._validation import check_scalar, error_message
from xrl.envs.rollout import ActorCriticPolicy, SingleEnvs, rollout

__all__ = ["compare_rollouts", "freeway_collisions", "breakout_ball_lost", "EVENTS"]

EventFn = Callable[[np.ndarray, np.ndarray, int, float, bool, Any], int]


def _row(objects: np.ndarray, channel: int) -> int:
    rows = np.flatnonzero(objects[channel].any(1))
    return int(rows[0]) if len(rows) else -1


def freeway_collisions(prev_objects, objects, action, reward, terminated, env) -> int:
    """1 when the chicken was hit by a car (sent back to row 9 without scoring), else 0."""
    old, new = _row(prev_objects, 0), _row(objects, 0)
    if reward == 0 and new == 9 and 0 <= old <= 8:
        names = getattr(env.unwrapped, "action_names", None)
        moved_down = names is not None and "down" in str(names[action]).lower()
        return int(old <= 7 or not moved_down)
    return 0


def breakout_ball_lost(prev_objects, objects, action, reward, terminated, env) -> int:
    """1 when the episode ends because the ball was missed (Breakout ends on the first miss)."""
    return int(bool(terminated))


EVENTS = {"freeway": freeway_collisions, "breakout": breakout_ball_lost}


def compare_rollouts(agents: dict[str, nn.Module], env_fn: Callable[[], Any] | str = "freeway", *,
                     n_episodes: int = 50, seed: int = 0, max_steps: int = 5000, event_fn: EventFn | None = None,
                     deterministic: bool = False, device: Any = None, progress: bool = True
                     ) -> dict[str, dict[str, float]]:
    """Run ``n_episodes`` paired episodes per agent; return per agent the mean/sem of return, length and events.

    Parameters
    ----------
    agents : dict name -> agent
        Each ``agent(obs [B, C, H, W]) -> (logits, value)``, e.g. ``{"original": agent, "edited": edited}``. Each runs
        in eval mode without gradients (its modules' modes are restored).
    env_fn : callable or str
        A factory of gymnasium envs with ``info["objects"]`` (or a MinAtar game name for ``xrl.envs.make_minatar``).
    n_episodes : int, default 50
        Episode ``k`` starts from env seed ``seed + k`` and samples its actions from
        ``np.random.default_rng(seed + 10_000 + k)``, for every agent.
    max_steps : int, default 5000
        Episodes still running after this many steps are cut (``finished`` counts those that ended).
    event_fn : callable, optional
        ``(prev_objects, objects, action, reward, terminated, env) -> count`` of deaths by the edited object; default
        :data:`EVENTS` for the game when ``env_fn`` is a game name (Freeway: car collisions; Breakout: ball lost).
    deterministic : bool, default False
        Take the most probable action instead of sampling.
    progress : bool, default True
        Show a progress bar per agent (steps).
    """
    check_scalar("n_episodes", n_episodes, int, low=1)
    check_scalar("max_steps", max_steps, int, low=1)
    if not isinstance(agents, dict) or not agents:
        raise TypeError(error_message("agents", "a non-empty dict name -> agent, e.g. {'original': agent, 'edited': "
                                      "edited}", type(agents).__name__))
    if isinstance(env_fn, str):
        game = env_fn
        from xrl.envs import make_minatar
        env_fn = lambda: make_minatar(game)  # noqa: E731
        event_fn = event_fn or EVENTS.get(game)
    if not callable(env_fn):
        raise TypeError(error_message("env_fn", "a game name or a callable returning an env", type(env_fn).__name__))
    out: dict[str, dict[str, float]] = {}
    for name, agent in agents.items():
        envs = SingleEnvs([env_fn() for _ in range(n_episodes)])
        rngs = [np.random.default_rng(seed + 10_000 + k) for k in range(n_episodes)]
        policy = ActorCriticPolicy(agent, rngs=rngs, deterministic=deterministic, device=device)
        ret = np.zeros(n_episodes)
        length = np.zeros(n_episodes, dtype=int)
        events = np.zeros(n_episodes, dtype=int)
        for step in rollout(envs, policy, seed=seed, steps=max_steps, progress=progress, desc=f"rollouts {name}"):
            for k in np.flatnonzero(step.live):
                o, new_info, old_info = step.next_obs[k], step.info[k], step.obs_info[k]
                if event_fn is not None:
                    events[k] += int(event_fn(old_info.get("objects", step.obs[k]), new_info.get("objects", o),
                                              int(step.actions[k]), float(step.rewards[k]),
                                              bool(step.terminated[k]), envs.envs[k]))
                ret[k] += step.rewards[k]
                length[k] += 1
        done = ~envs.live

        def ms(x):
            x = np.asarray(x, np.float64)
            return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0
        (rm, rs), (lm, ls), (em, es) = ms(ret), ms(length), ms(events)
        out[name] = {"return_mean": rm, "return_sem": rs, "length_mean": lm, "length_sem": ls,
                     "events_mean": em, "events_sem": es, "episodes": n_episodes,
                     "finished": int(done.sum())}
    return out
