"""Compare rollouts of an original and an edited agent (return, episode length, deaths by the edited object).

Episodes are paired: episode ``k`` of every agent starts from the same environment seed and uses the same
action-sampling seed, so differences come from the agents, not from luck.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from xrl._utils import resolve_device
from xrl._validation import check_scalar, error_message

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
                     deterministic: bool = False, device: Any = None) -> dict[str, dict[str, float]]:
    """Run ``n_episodes`` paired episodes per agent; return per agent the mean/sem of return, length and events.

    Parameters
    ----------
    agents : dict name -> agent
        Each ``agent(obs [B, C, H, W]) -> (logits, value)``, e.g. ``{"original": agent, "edited": edited}``.
    env_fn : callable or str
        A factory of gymnasium envs with ``info["objects"]`` (or a MinAtar game name for ``xrl.envs.make_minatar``).
    event_fn : callable, optional
        ``(prev_objects, objects, action, reward, terminated, env) -> count`` of deaths by the edited object; default
        :data:`EVENTS` for the game when ``env_fn`` is a game name (Freeway: car collisions; Breakout: ball lost).
    """
    check_scalar("n_episodes", n_episodes, int, low=1)
    if isinstance(env_fn, str):
        game = env_fn
        from xrl.envs import make_minatar
        env_fn = lambda: make_minatar(game)  # noqa: E731
        event_fn = event_fn or EVENTS.get(game)
    if not callable(env_fn):
        raise TypeError(error_message("env_fn", "a game name or a callable returning an env", type(env_fn).__name__))
    out: dict[str, dict[str, float]] = {}
    for name, agent in agents.items():
        dev = resolve_device(device, agent)
        was_training = agent.training
        agent.eval()
        envs = [env_fn() for _ in range(n_episodes)]
        obs, objs = [], []
        for k, e in enumerate(envs):
            o, info = e.reset(seed=seed + k)
            obs.append(o)
            objs.append(info.get("objects", o))
        gens = torch.Generator().manual_seed(seed)
        rng = [np.random.default_rng(seed + 10_000 + k) for k in range(n_episodes)]
        ret = np.zeros(n_episodes)
        length = np.zeros(n_episodes, dtype=int)
        events = np.zeros(n_episodes, dtype=int)
        done = np.zeros(n_episodes, dtype=bool)
        for _t in range(max_steps):
            live = np.flatnonzero(~done)
            if len(live) == 0:
                break
            with torch.no_grad():
                logits, _ = agent(torch.from_numpy(np.stack([obs[k] for k in live])).float().to(dev))
            probs = torch.softmax(logits.float(), -1).cpu().numpy()
            for row, k in enumerate(live):
                a = int(probs[row].argmax()) if deterministic else int(rng[k].choice(len(probs[row]), p=probs[row]))
                o, r, term, trunc, info = envs[k].step(a)
                new_objs = info.get("objects", o)
                if event_fn is not None:
                    events[k] += int(event_fn(objs[k], new_objs, a, float(r), bool(term), envs[k]))
                obs[k], objs[k] = o, new_objs
                ret[k] += r
                length[k] += 1
                done[k] = term or trunc
        agent.train(was_training)
        del gens

        def ms(x):
            x = np.asarray(x, np.float64)
            return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0
        (rm, rs), (lm, ls), (em, es) = ms(ret), ms(length), ms(events)
        out[name] = {"return_mean": rm, "return_sem": rs, "length_mean": lm, "length_sem": ls,
                     "events_mean": em, "events_sem": es, "episodes": n_episodes,
                     "finished": int(done.sum())}
    return out
