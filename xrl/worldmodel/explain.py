"""Example-based explanations of a DreamerV2 latent state by NMF over its categorical activations (seed 002).

Strategy (seed 002): roll out ``B`` episodes of ``L`` steps with the agent acting on its posterior state; stack the
posterior categorical activations to ``[B, L, C, K]``; flatten to ``[B*L*C, K]`` so the factorisation is shared by all
categoricals; NMF with rank ``r``: ``X ~= W H`` with ``W [B*L*C, r]``, ``H [r, K]``; the activity of one categorical at
one step is the L2 norm over components of its per-component contributions ``W[n, j] * ||H_j||_2`` (the size of
component ``j``'s part ``W[n, j] H_j`` of the reconstruction), normalised by its maximum; the most important
observations of a rollout are the steps with the largest L2 norm of activity over the ``C`` categoricals.

Differences from the seed, on purpose:
- NMF needs non-negative data, but the seed factorises raw logits (negative almost everywhere). We factorise the
  categorical probabilities ``softmax(logit)`` (``values="probs"``, default) or the logits shifted to a zero minimum
  per categorical (``values="logits"``).
- The seed's notebook uses ``logits`` before defining it (it stacks into ``logits_list``), and its activity panel
  divides ``stoch / stoch`` (NaN wherever the one-hot sample is 0) to mask the activity; here the mask is the
  one-hot sample itself (``activity[c] * stoch[c, k]``), so there is no division and no NaN.
- The seed's ``model.W * model.H.t()`` does not broadcast for rank != K; the activity is defined as above instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._validation import check_choice, check_scalar, error_message
from .agent import DreamerAgent

__all__ = ["LatentExplanation", "GroundTruthMatch", "explain_latents", "rollout_latents", "relate_components",
           "object_features"]


@dataclass
class LatentExplanation:
    """Arrays of `explain_latents` (numpy; B rollouts, L steps, C categoricals, K classes, r components).

    Attributes
    ----------
    obs : float32 [B, L, C_obs, H, W]        observation o_t the posterior state saw
    objects : bool [B, L, C_full, H, W]       all MinAtar object channels at t (ground truth, incl. hidden ones)
    logits, probs, stoch : float32 [B, L, C, K]  posterior logits, softmax, sampled one-hot state
    deter : float32 [B, L, D]                 GRU state
    actions : int64 [B, L]                    action chosen at t (index into ``action_names``)
    has_effect : bool [B, L]                  whether that action can move the player (Freeway: ``move_timer == 0``)
    rewards : float32 [B, L]                  reward received after the action at t
    W : float32 [B*L*C, r], H : float32 [r, K]   NMF factors of the flattened activations
    activity : float32 [B, L, C]              normalised activity in [0, 1] (max 1)
    component_strength : float32 [B, L, r]    sum over categoricals of ``W[n, j] * ||H_j||`` (per-step component use)
    step_importance : float32 [B, L]          L2 norm of ``activity`` over the categoricals
    top_steps : int64 [B, top_k]              most important steps of each rollout, most important first
    entropy : float32 [B, L]                  summed entropy of the C posterior categoricals
    """

    obs: np.ndarray
    objects: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    stoch: np.ndarray
    deter: np.ndarray
    actions: np.ndarray
    has_effect: np.ndarray
    rewards: np.ndarray
    W: np.ndarray
    H: np.ndarray
    activity: np.ndarray
    component_strength: np.ndarray
    step_importance: np.ndarray
    top_steps: np.ndarray
    entropy: np.ndarray
    action_names: list[str]
    channel_names: list[str]
    object_channel_names: list[str]
    values: str = "probs"
    seed: int = 0
    nmf_seconds: float = 0.0
    rollout_seconds: float = 0.0
    reconstruction_error: float = float("nan")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(B, L, C, K)."""
        return tuple(self.logits.shape)  # type: ignore[return-value]

    def top_observations(self, rollout: int) -> list[tuple[int, np.ndarray]]:
        """``[(step, obs [C_obs, H, W]), ...]`` of one rollout, most important first."""
        return [(int(t), self.obs[rollout, t]) for t in self.top_steps[rollout]]

    def summary(self) -> dict[str, Any]:
        B, L, C, K = self.shape
        return {"batch": B, "seq_len": L, "categoricals": C, "classes": K, "rank": int(self.H.shape[0]),
                "values": self.values, "seed": self.seed, "nmf_seconds": round(self.nmf_seconds, 4),
                "rollout_seconds": round(self.rollout_seconds, 3),
                "reconstruction_error": round(self.reconstruction_error, 6),
                "returns": self.rewards.sum(1).tolist(), "top_steps": self.top_steps.tolist()}


def _game(env) -> Any:
    """The MinAtar game object (with ``move_timer`` for Freeway) behind an xrl/gymnasium env, or None."""
    base = env.unwrapped
    game = getattr(base, "game", None)
    return getattr(game, "env", None)


def _check_env(agent: DreamerAgent, env) -> None:
    """The env must match the agent: observation shape, number of actions, and one-hot actions."""
    if not (hasattr(env, "observation_space") and hasattr(env, "action_space") and hasattr(env, "step")):
        raise TypeError(error_message("env", "a gymnasium env with one-hot actions, or a zero-argument callable "
                                      "making one", type(env).__name__,
                                      "e.g. make_minatar('freeway', pomdp=True, one_hot_actions=True)"))
    shape = tuple(env.observation_space.shape)
    if shape != tuple(agent.config.obs_shape):
        raise ValueError(error_message("env", f"observations of shape {tuple(agent.config.obs_shape)} (the agent's "
                                       "obs_shape)", f"an env with observation shape {shape}",
                                       "use make_minatar(game, pomdp=...) matching the agent's config"))
    n = env.action_space.shape[0] if env.action_space.shape else int(env.action_space.n)
    if n != agent.action_size:
        raise ValueError(error_message("env", f"{agent.action_size} actions (the agent's action_size)",
                                       f"an env with {n} actions", "use the game the agent was trained on"))
    if not env.action_space.shape:
        raise ValueError(error_message("env", "one-hot actions (the agent acts with one-hot vectors)",
                                       f"an env with {type(env.action_space).__name__} actions",
                                       "make it with make_minatar(..., one_hot_actions=True)"))


def rollout_latents(agent: DreamerAgent, make_env, batch: int, seq_len: int, seed: int = 0, *,
                    progress: bool = True) -> dict[str, np.ndarray]:
    """Run ``batch`` episodes in lockstep for ``seq_len`` steps (env seeds ``seed + b``), posterior-state policy.

    ``make_env`` is a zero-argument callable returning a one-hot-action env (``make_minatar(..., one_hot_actions=True)``).
    Episodes that end early restart (seed ``seed + b + 1000 * k``) with a fresh latent state. Latent and action
    sampling use a generator seeded with ``seed``. ``progress=False`` hides the progress bar (steps).

    Returns arrays ``[B, L, ...]``: ``obs``, ``objects``, ``logits``/``stoch`` [B, L, C, K], ``deter``, ``actions``,
    ``has_effect`` (the action can move the player: Freeway's ``move_timer == 0``), ``rewards``.
    """
    from ..envs.rollout import SingleEnvs, rollout
    from .agent import DreamerPolicy

    envs = SingleEnvs([make_env() for _ in range(batch)],
                      restart_seed=lambda b, count: seed + b + 1000 * count,
                      probe=lambda env: {"move_ready": getattr(_game(env), "move_timer", 0) == 0})
    _check_env(agent, envs.envs[0])
    dev = agent.device
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    agent.set_generator(gen if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(int(seed)))
    info_sz = agent.config.rssm_info
    C, K = info_sz.category_size, info_sz.class_size
    rec: dict[str, list] = {k: [] for k in ("obs", "objects", "logits", "stoch", "deter", "actions", "has_effect",
                                             "rewards")}
    try:
        for step in rollout(envs, DreamerPolicy(agent), seed=seed, steps=seq_len, progress=progress,
                            desc="latent rollouts"):
            rec["obs"].append(step.obs)
            rec["objects"].append(np.stack([info.get("objects", o > 0) for o, info in zip(step.obs, step.obs_info)]))
            rec["logits"].append(step.extras["logit"].reshape(batch, C, K))  # [B, C*K] -> [B, C, K]
            rec["stoch"].append(step.extras["stoch"].reshape(batch, C, K))
            rec["deter"].append(step.extras["deter"])
            rec["actions"].append(step.extras["action_index"])
            rec["has_effect"].append(np.array([info["move_ready"] for info in step.obs_info]))
            rec["rewards"].append(step.rewards.astype(np.float32))
    finally:
        agent.set_generator(None)
    # lists of [B, ...] over L -> [B, L, ...]
    return {k: np.stack(v, axis=1) for k, v in rec.items()}


def explain_latents(agent: DreamerAgent, env, batch: int = 8, seq_len: int = 50, rank: int = 10, seed: int = 0, *,
                    values: str = "probs", top_k: int = 5, max_iter: int = 200, tol: float = 1e-4,
                    progress: bool = True) -> LatentExplanation:
    """Example-based explanation of the agent's categorical latents (seed 002), see the module docstring.

    Parameters
    ----------
    agent : DreamerAgent (or an `Evaluator` after ``load_model``)
    env : gymnasium env with one-hot actions, or a zero-argument callable making one (``batch`` copies are made
        with ``copy.deepcopy`` of an env, or by calling the callable).
    batch : int, default 8      number of rollouts B (env seeds ``seed, seed + 1, ...``)
    seq_len : int, default 50   steps per rollout L
    rank : int, default 10      NMF rank r, 1 <= r <= K
    seed : int, default 0       env seeds and the latent/action sampling generator
    values : {"probs", "logits"}  NMF input: softmax probabilities, or logits shifted to a zero minimum per categorical
    top_k : int, default 5      most important steps reported per rollout
    max_iter, tol               NMF stopping rule (see `xrl.nmf.NMF`)
    progress : bool, default True  show a progress bar for the rollouts

    Returns
    -------
    LatentExplanation

    Examples
    --------
    >>> from xrl.envs import make_minatar
    >>> from xrl.worldmodel import DreamerAgent, MinAtarConfig
    >>> from xrl.worldmodel.explain import explain_latents
    >>> agent = DreamerAgent(MinAtarConfig(obs_shape=(2, 10, 10), action_size=3))
    >>> env = make_minatar("freeway", pomdp=True, one_hot_actions=True)
    >>> ex = explain_latents(agent, env, batch=2, seq_len=5, rank=3, seed=0)
    >>> ex.shape, ex.activity.shape, ex.top_steps.shape
    ((2, 5, 20, 20), (2, 5, 20), (2, 5))
    """
    import copy
    import time

    from ..nmf import NMF

    agent = getattr(agent, "agent", agent)  # an Evaluator holds the agent
    if not isinstance(agent, DreamerAgent):
        raise TypeError(error_message("agent", "a DreamerAgent or a loaded Evaluator", type(agent).__name__))
    check_scalar("batch", batch, int, low=1)
    check_scalar("seq_len", seq_len, int, low=1)
    check_scalar("seed", seed, int, low=0)
    check_scalar("top_k", top_k, int, low=1)
    check_choice("values", values, ("probs", "logits"))
    K = agent.config.rssm_info.class_size
    check_scalar("rank", rank, int, low=1)
    if rank > K:
        raise ValueError(error_message("rank", f"an int in [1, {K}] (at most K, the classes per categorical)", rank,
                                       "NMF of a [B*L*C, K] matrix has at most K useful components"))
    if not (callable(env) or hasattr(env, "step")):
        raise TypeError(error_message("env", "a gymnasium env with one-hot actions, or a zero-argument callable "
                                      "making one", type(env).__name__,
                                      "e.g. make_minatar('freeway', pomdp=True, one_hot_actions=True)"))
    make_env = env if callable(env) and not hasattr(env, "step") else (lambda: copy.deepcopy(env))
    t0 = time.perf_counter()
    roll = rollout_latents(agent, make_env, batch, seq_len, seed, progress=progress)
    t_roll = time.perf_counter() - t0
    logits = roll["logits"].astype(np.float32)  # [B, L, C, K]
    B, L, C, _ = logits.shape
    z = logits - logits.max(-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    X = probs if values == "probs" else logits - logits.min(-1, keepdims=True)
    X = X.reshape(B * L * C, K)  # [B, L, C, K] -> [B*L*C, K]
    t1 = time.perf_counter()
    nmf = NMF(n_components=rank, max_iter=max_iter, tol=tol, seed=seed)
    Wm = np.asarray(nmf.fit_transform(X), dtype=np.float32)  # [B*L*C, r]
    Hm = np.asarray(nmf.components_, dtype=np.float32)  # [r, K]
    t_nmf = time.perf_counter() - t1
    contrib = Wm * np.linalg.norm(Hm, axis=1)[None, :]  # ||W[n, j] H_j||_2, [B*L*C, r]
    act = np.linalg.norm(contrib, axis=1)  # [B*L*C]
    act = act / max(float(act.max()), np.finfo(np.float32).tiny)
    activity = act.reshape(B, L, C).astype(np.float32)  # [B*L*C] -> [B, L, C]
    strength = contrib.reshape(B, L, C, rank).sum(2)  # [B, L, r]
    importance = np.linalg.norm(activity, axis=2)  # [B, L]
    k = min(top_k, L)
    top = np.argsort(-importance, axis=1, kind="stable")[:, :k]
    entropy = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(-1).sum(-1)  # [B, L]
    recon = float(np.linalg.norm(X - Wm @ Hm) / max(np.linalg.norm(X), 1e-12))
    base = env if hasattr(env, "unwrapped") else make_env()
    u = base.unwrapped
    return LatentExplanation(
        obs=roll["obs"].astype(np.float32), objects=roll["objects"].astype(bool), logits=logits,
        probs=probs.astype(np.float32), stoch=roll["stoch"].astype(np.float32), deter=roll["deter"].astype(np.float32),
        actions=roll["actions"].astype(np.int64), has_effect=roll["has_effect"].astype(bool),
        rewards=roll["rewards"].astype(np.float32), W=Wm, H=Hm, activity=activity,
        component_strength=strength.astype(np.float32), step_importance=importance.astype(np.float32),
        top_steps=top.astype(np.int64), entropy=entropy.astype(np.float32),
        action_names=list(getattr(u, "action_names", [str(i) for i in range(agent.action_size)])),
        channel_names=list(getattr(base, "channel_names", getattr(u, "channel_names", []))),
        object_channel_names=list(getattr(u, "channel_names", [])), values=values, seed=seed,
        nmf_seconds=t_nmf, rollout_seconds=t_roll, reconstruction_error=recon)


# -- ground truth ----------------------------------------------------------------------------------------------------
def object_features(objects: np.ndarray, channel_names: list[str], has_effect: np.ndarray | None = None
                    ) -> tuple[np.ndarray, list[str]]:
    """Interpretable per-step features of the MinAtar object channels.

    ``objects`` bool [B, L, C_full, H, W] -> features float32 [B, L, F] and their names. For every channel: number of
    active cells, mean row, mean column. For Freeway (channels ``chicken`` and ``car``) also: the chicken's height
    (9 - row), whether a car is in the chicken's lane, a car within 2 columns of the chicken in its lane, in the lane
    above, in the lane below, and whether the move timer lets the chicken move.
    """
    B, L, Cf, Hh, Ww = objects.shape
    o = objects.astype(np.float32)
    rows = np.arange(Hh, dtype=np.float32)[:, None]
    cols = np.arange(Ww, dtype=np.float32)[None, :]
    feats, names = [], []
    for c, name in enumerate(channel_names[:Cf]):
        n = o[:, :, c].sum((-2, -1))
        feats.append(n)
        names.append(f"{name}:count")
        with np.errstate(invalid="ignore", divide="ignore"):
            feats.append(np.nan_to_num((o[:, :, c] * rows).sum((-2, -1)) / n, nan=0.0))
            feats.append(np.nan_to_num((o[:, :, c] * cols).sum((-2, -1)) / n, nan=0.0))
        names += [f"{name}:mean_row", f"{name}:mean_col"]
    if "chicken" in channel_names and "car" in channel_names:
        ch, car = o[:, :, channel_names.index("chicken")], o[:, :, channel_names.index("car")]
        row = ch.sum(-1).argmax(-1)  # [B, L] chicken row
        col = ch.sum(-2).argmax(-1)  # [B, L] chicken column (4 in Freeway)
        lane = lambda d: np.take_along_axis(car, np.clip(row + d, 0, Hh - 1)[..., None, None], axis=2)[:, :, 0]
        near = lambda d: ((lane(d) * (np.abs(np.arange(Ww)[None, None] - col[..., None]) <= 2)).sum(-1) > 0)
        valid = lambda d: ((row + d >= 0) & (row + d < Hh)).astype(np.float32)
        feats += [(Hh - 1 - row).astype(np.float32), (lane(0).sum(-1) > 0).astype(np.float32),
                  near(0).astype(np.float32), near(-1) * valid(-1), near(1) * valid(1)]
        names += ["freeway:chicken_height", "freeway:car_in_chicken_lane", "freeway:car_near_chicken",
                  "freeway:car_near_lane_above", "freeway:car_near_lane_below"]
    if has_effect is not None:
        feats.append(has_effect.astype(np.float32))
        names.append("move_ready")
    return np.stack(feats, -1).astype(np.float32), names


@dataclass
class GroundTruthMatch:
    """Correlation of NMF components with object features over time.

    corr : float32 [r, F]  Pearson correlation over all (rollout, step) samples of ``component_strength[..., j]`` and
        feature ``f`` (0 where either is constant); feature_names : F names; best : per component the ``n_best``
        (feature, correlation) pairs with the largest absolute correlation.
    """

    corr: np.ndarray
    feature_names: list[str]
    best: list[list[tuple[str, float]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"feature_names": self.feature_names, "corr": np.round(self.corr, 4).tolist(),
                "best": [[{"feature": f, "corr": round(c, 4)} for f, c in b] for b in self.best]}


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Columns of a [N, r] against columns of b [N, F] -> [r, F]; constant columns give 0."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    den = np.outer(na, nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(den > 1e-12, (a.T @ b) / np.where(den > 1e-12, den, 1.0), 0.0)
    return c.astype(np.float32)


def relate_components(explanation: LatentExplanation, n_best: int = 3) -> GroundTruthMatch:
    """Relate each NMF component to the MinAtar object channels (see `object_features`) by correlation over time."""
    ex = explanation
    feats, names = object_features(ex.objects, ex.object_channel_names, ex.has_effect)
    B, L, r = ex.component_strength.shape
    corr = _pearson(ex.component_strength.reshape(B * L, r), feats.reshape(B * L, -1))  # [B*L, r] x [B*L, F]
    best = []
    for j in range(r):
        order = np.argsort(-np.abs(corr[j]), kind="stable")[:n_best]
        best.append([(names[i], float(corr[j, i])) for i in order])
    return GroundTruthMatch(corr, names, best)
