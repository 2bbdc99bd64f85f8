"""The six rollout loops as they were before the rollout engine (xrl 2026-12, verbatim apart from names).

Kept only as the reference of ``test_rollout.py``: for a given seed, the functions built on
:func:`xrl.envs.rollout` must return exactly what these loops returned.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from xrl._utils import resolve_device, torch_generator


def agents_evaluate(agent, env, num_episodes=100, seed=0, deterministic=False, device=None):
    n = env.num_envs
    quota = num_episodes // n
    device = resolve_device(device, agent)
    gen = torch_generator(seed, device)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    counts = np.zeros(n, dtype=int)
    returns, lengths = [], []
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
    return np.asarray(returns, dtype=np.float64), np.asarray(lengths)


def _policy_step(agent, obs_np, device, generator, deterministic):
    with torch.no_grad():
        logits, value = agent(torch.from_numpy(obs_np).to(device))
    if deterministic:
        actions = logits.argmax(-1)
    else:
        actions = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=generator).squeeze(-1)
    return actions.cpu().numpy(), logits.float().cpu().numpy(), value.float().cpu().numpy()


def collect_trajectories(agent, venv, num_steps, seed, deterministic=False):
    device = resolve_device(None, agent)
    gen = torch_generator(seed, device)
    obs, info = venv.reset(seed=seed)
    N, T = venv.num_envs, num_steps
    obs_buf = np.empty((N, T, *obs.shape[1:]), dtype=obs.dtype)
    obj_buf = np.empty((N, T, *info["objects"].shape[1:]), dtype=bool)
    actions = np.empty((N, T), dtype=np.int64)
    rewards = np.empty((N, T), dtype=np.float32)
    dones = np.empty((N, T), dtype=bool)
    values = np.empty((N, T), dtype=np.float32)
    logits_buf = None
    for t in range(T):
        obs_buf[:, t] = obs
        obj_buf[:, t] = info["objects"]
        a, logits, v = _policy_step(agent, obs, device, gen, deterministic)
        if logits_buf is None:
            logits_buf = np.empty((N, T, logits.shape[-1]), dtype=np.float32)
        actions[:, t], logits_buf[:, t], values[:, t] = a, logits, v
        obs, r, term, trunc, info = venv.step(a)
        rewards[:, t] = r
        dones[:, t] = np.logical_or(term, trunc)
    return {"obs": obs_buf, "objects": obj_buf, "actions": actions, "rewards": rewards, "dones": dones,
            "values": values, "logits": logits_buf}


def sample_observations(agent, venv, num_obs, every, seed):
    device = resolve_device(None, agent)
    gen = torch_generator(seed, device)
    obs, _ = venv.reset(seed=seed)
    kept, total, step = [], 0, 0
    while total < num_obs:
        step += 1
        a, _, _ = _policy_step(agent, obs, device, gen, False)
        obs, _, _, _, _ = venv.step(a)
        if step % every == 0:
            kept.append(obs.copy())
            total += len(obs)
    return np.concatenate(kept)[:num_obs]


def compare_rollouts(agent, env_fn, n_episodes, seed, max_steps, event_fn, deterministic=False):
    dev = resolve_device(None, agent)
    envs = [env_fn() for _ in range(n_episodes)]
    obs, objs = [], []
    for k, e in enumerate(envs):
        o, info = e.reset(seed=seed + k)
        obs.append(o)
        objs.append(info.get("objects", o))
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
    return ret, length, events, done


@torch.no_grad()
def worldmodel_evaluate(agent, make_env, episodes, seed, greedy=False, parallel=100):
    g = torch.Generator(device=agent.device).manual_seed(int(seed))
    agent.set_generator(g)
    returns, A = [], agent.action_size
    try:
        for first in range(0, episodes, parallel):
            n = min(parallel, episodes - first)
            envs = [make_env() for _ in range(n)]
            obs = [e.reset(seed=seed + first + i)[0] for i, e in enumerate(envs)]
            state = agent.RSSM._init_rssm_state(n)
            action = torch.zeros(n, A, device=agent.device)
            total = np.zeros(n)
            alive = np.ones(n, dtype=bool)
            while alive.any():
                o = torch.as_tensor(np.stack(obs), dtype=torch.float32, device=agent.device)
                _, state = agent.RSSM.rssm_observe(agent.ObsEncoder(o), action, True, state)
                feat = agent.RSSM.get_model_state(state)
                if greedy:
                    action = torch.nn.functional.one_hot(agent.ActionModel.model(feat).argmax(-1), A).float()
                else:
                    action, _ = agent.ActionModel(feat)
                a_np = action.cpu().numpy()
                for i in np.flatnonzero(alive):
                    obs[i], r, term, trunc, _ = envs[i].step(a_np[i])
                    total[i] += r
                    alive[i] = not (term or trunc)
            returns += total.tolist()
    finally:
        agent.set_generator(None)
    return returns


def random_returns(env, episodes, seed):
    rng = np.random.default_rng(seed)
    returns = []
    n = env.action_space.shape[0]
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        total, done = 0.0, False
        while not done:
            a = np.zeros(n, dtype=np.float32)
            a[rng.integers(n)] = 1
            _, r, term, trunc, _ = env.step(a)
            total += r
            done = term or trunc
        returns.append(total)
    return returns


def _game(env):
    return getattr(getattr(env.unwrapped, "game", None), "env", None)


@torch.no_grad()
def rollout_latents(agent, make_env, batch, seq_len, seed=0):
    envs = [make_env() for _ in range(batch)]
    dev = agent.device
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    agent.set_generator(gen)
    info_sz = agent.config.rssm_info
    C, K, A = info_sz.category_size, info_sz.class_size, agent.action_size
    obs, objects = [], []
    for b, e in enumerate(envs):
        o, info = e.reset(seed=seed + b)
        obs.append(o)
        objects.append(info.get("objects", o > 0))
    restarts = np.zeros(batch, dtype=np.int64)
    state = agent.RSSM._init_rssm_state(batch)
    prev_action = torch.zeros(batch, A, device=dev)
    nonterm = torch.ones(batch, 1, device=dev)
    rec = {k: [] for k in ("obs", "objects", "logits", "stoch", "deter", "actions", "has_effect", "rewards")}
    try:
        for _ in range(seq_len):
            o = torch.as_tensor(np.stack(obs), dtype=torch.float32, device=dev)
            embed = agent.ObsEncoder(o)
            _, post = agent.RSSM.rssm_observe(embed, prev_action * nonterm, nonterm, state)
            action, _ = agent.ActionModel(agent.RSSM.get_model_state(post))
            a_idx = action.argmax(-1).cpu().numpy()
            rec["obs"].append(np.stack(obs))
            rec["objects"].append(np.stack(objects))
            rec["logits"].append(post.logit.reshape(batch, C, K).cpu().numpy())
            rec["stoch"].append(post.stoch.reshape(batch, C, K).cpu().numpy())
            rec["deter"].append(post.deter.cpu().numpy())
            rec["actions"].append(a_idx)
            games = [_game(e) for e in envs]
            rec["has_effect"].append(np.array([getattr(g, "move_timer", 0) == 0 for g in games]))
            rewards, nt = np.zeros(batch, np.float32), np.ones(batch, np.float32)
            for b, e in enumerate(envs):
                onehot = np.zeros(A, np.float32)
                onehot[a_idx[b]] = 1
                o_b, r, term, trunc, info = e.step(onehot)
                rewards[b] = r
                if term or trunc:
                    restarts[b] += 1
                    o_b, info = e.reset(seed=seed + b + 1000 * int(restarts[b]))
                    nt[b] = 0
                obs[b], objects[b] = o_b, info.get("objects", o_b > 0)
            rec["rewards"].append(rewards)
            state, prev_action = post, action
            nonterm = torch.as_tensor(nt, device=dev).unsqueeze(-1)
    finally:
        agent.set_generator(None)
    return {k: np.stack(v, axis=1) for k, v in rec.items()}
