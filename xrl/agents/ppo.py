"""PPO with an IMPALA CNN, written in the CleanRL style (one loop in algorithm order; Huang et al., 2022,
"The 37 Implementation Details of PPO"; Schulman et al., 2017, https://arxiv.org/abs/1707.06347).

Why our own PPO rather than Stable-Baselines3: the agents we explain must *be* the :class:`~xrl.models.ImpalaCNN`
with its stable layer names (SB3 would wrap it as ``features_extractor`` + ``mlp_extractor`` + ``action_net``), the
CoinRun env is a gym3 vector env that SB3 would need an adapter for, checkpoints must be safetensors + JSON (SB3
pickles), and one ~300-line readable loop is easier to audit and resume. SB3 policies can still be explained:
see :func:`~xrl.agents.load_sb3_policy`.

Outputs in ``output_dir``: ``progress.csv`` (one row per update), TensorBoard events (if ``tensorboard`` is
installed), and ``checkpoint/`` (``agent.safetensors`` + ``agent.json``, ``optimizer.safetensors`` +
``optimizer.json``, ``state.json``), rewritten as one transaction (:func:`xrl.io.atomic_directory`: an interruption
leaves the previous checkpoint) every ``checkpoint_every`` updates and at the end; with ``snapshot_every``, the
agent alone is also kept in ``snapshots/<global step>/`` at that interval of frames.
A run restarted with the same ``output_dir`` resumes from that checkpoint (weights, optimizer, step count and the
learning-rate schedule; environments restart with fresh episodes).
"""
from __future__ import annotations

import csv
import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .. import io
from .._utils import init_rng, resolve_device, torch_generator
from .._validation import check_scalar, error_message
from ..models.impala import ImpalaCNN
from .checkpoint import load_agent, write_agent_files
from .gae import compute_gae


@dataclass
class PPOConfig:
    """Hyperparameters of :func:`train_ppo` (defaults suit MinAtar; see ``PPOConfig.coinrun()`` for CoinRun)."""

    env_id: str = "freeway"
    """MinAtar game name (``"freeway"``, ``"breakout"``, ...) or ``"coinrun"``."""
    env_kwargs: dict = field(default_factory=dict)
    """Extra arguments for the environment (MinAtar: ``pomdp``, ``sticky_action_prob``; CoinRun:
    ``distribution_mode``, ``num_levels``, ``start_level``)."""
    total_timesteps: int = 1_000_000
    """Environment steps (frames) to train for, summed over all environments."""
    seed: int = 1
    """Seed of the network initialisation, the environments (env ``i`` gets ``seed + i``) and action sampling."""
    num_envs: int = 16
    """Number of parallel environments."""
    num_steps: int = 128
    """Steps per environment per rollout; a rollout holds ``num_envs * num_steps`` transitions."""
    learning_rate: float = 5e-4
    """Adam learning rate."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over ``total_timesteps``."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    num_minibatches: int = 8
    """Minibatches per epoch (minibatch size = ``num_envs * num_steps / num_minibatches``)."""
    update_epochs: int = 3
    """Passes over each rollout."""
    minibatch_chunk: int = 0
    """Run each minibatch's forward and backward passes in chunks of at most this many samples, accumulating the
    gradients: the same update up to float rounding, with less memory and, on CPU, less time per sample for large
    minibatches (``PPOConfig.coinrun`` uses 256 for the paper's minibatches of 2,048). 0: the whole minibatch."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    norm_reward: bool = False
    """Divide rewards by a running standard deviation of each env's discounted return (clipped to [-10, 10]), as
    OpenAI baselines' ``VecNormalize(ob=False)`` does in the Procgen paper's PPO and CleanRL's ``ppo_procgen.py``;
    the scale is that of the return accumulated *forward* from each episode's start, as in baselines. Episode
    returns in the logs stay in the environment's own units; the statistics are saved with the checkpoint. With
    CoinRun's sparse reward (10 on the last step of a won episode) that return is 0 except at a win, its standard
    deviation stays under 1 and the scaled 10 is clipped back to 10: the paper's normalisation leaves CoinRun's
    rewards as they are (kept on in ``PPOConfig.coinrun`` for fidelity to the paper)."""
    clip_coef: float = 0.2
    """PPO surrogate clipping coefficient."""
    clip_vloss: bool = True
    """Clip the value loss like the policy (as in the PPO paper's code)."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float | None = None
    """Stop an update's epochs early when the approximate KL exceeds this (None: never)."""
    channels: tuple = (16, 32, 32)
    """IMPALA block widths."""
    fc_dim: int = 256
    """Width of the IMPALA embedding layer ``embedder.fc``."""
    device: str = "cpu"
    """Torch device for the network and rollout storage."""
    channels_last: bool = False
    """Use the channels-last memory format (faster convolutions on CPU for 64x64 frames)."""
    checkpoint_every: int = 20
    """Write the resumable checkpoint every this many updates (and always at the end)."""
    snapshot_every: int = 0
    """Also keep the agent (weights and metadata, no optimizer) every this many frames in
    ``snapshots/<global step>/``, loadable with :func:`load_agent`: the resumable checkpoint is overwritten, so a run
    whose return later falls can still be evaluated, bundled or continued (``init_agent``) from its best point.
    0: no snapshots."""
    progress_bar: bool = True
    """Show a tqdm progress bar."""
    tensorboard: bool = True
    """Write TensorBoard events (skipped silently if the ``tensorboard`` package is missing)."""

    @classmethod
    def coinrun(cls, **overrides: Any) -> "PPOConfig":
        """Procgen-paper settings for CoinRun (64 envs x 256 steps, lr 5e-4, gamma 0.999, lambda 0.95,
        3 epochs, 8 minibatches, entropy 0.01, reward normalisation), easy mode on 10,000 training levels."""
        base = dict(env_id="coinrun", env_kwargs={"distribution_mode": "easy", "num_levels": 10_000,
                                                  "start_level": 0},
                    total_timesteps=25_000_000, num_envs=64, num_steps=256, learning_rate=5e-4, gamma=0.999,
                    gae_lambda=0.95, update_epochs=3, num_minibatches=8, ent_coef=0.01, norm_reward=True,
                    minibatch_chunk=256, channels_last=True, checkpoint_every=5)
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    def validate(self) -> None:
        for name in ("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "fc_dim",
                     "checkpoint_every"):
            check_scalar(name, getattr(self, name), int, low=1)
        check_scalar("snapshot_every", self.snapshot_every, int, low=0)
        check_scalar("minibatch_chunk", self.minibatch_chunk, int, low=0)
        for name in ("learning_rate", "gamma", "gae_lambda", "clip_coef", "ent_coef", "vf_coef", "max_grad_norm"):
            check_scalar(name, getattr(self, name), (int, float), low=0.0)
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError(error_message("num_minibatches", f"a divisor of num_envs * num_steps = "
                                           f"{self.num_envs * self.num_steps}", self.num_minibatches))


class RewardNormalizer:
    """Running scale of discounted returns (baselines' ``VecNormalize`` reward half; Chan's parallel variance).

    ``returns = returns * gamma * (1 - done) + reward`` per env; rewards are divided by
    ``sqrt(var(returns) + eps)`` and clipped to ``[-clip, clip]``. :meth:`state_dict` / :meth:`load_state_dict`
    carry the statistics across a resumed run (JSON-safe floats).
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        self.gamma, self.clip, self.eps = float(gamma), float(clip), float(eps)
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Scaled rewards for one step of every env (``done``: the episode ended with this reward)."""
        self.returns = self.returns * self.gamma + np.asarray(reward, dtype=np.float64)
        batch_mean, batch_var, n = float(self.returns.mean()), float(self.returns.var()), self.returns.size
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta ** 2 * self.count * n / total) / total
        self.count = total
        self.returns[np.asarray(done, dtype=bool)] = 0.0
        scaled = np.asarray(reward, dtype=np.float64) / np.sqrt(self.var + self.eps)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), float(state["count"])


@dataclass
class PPOResult:
    """What :func:`train_ppo` returns: the trained agent (eval mode), the log rows and where they were written."""

    agent: ImpalaCNN
    history: list[dict[str, float]]
    output_dir: Path | None
    global_step: int


def _resumable(ckpt: Path | None) -> bool:
    """Whether ``ckpt`` holds a complete PPO checkpoint (a save cut between its two renames is repaired first)."""
    if ckpt is None:
        return False
    try:
        io.verify_directory(ckpt)
    except FileNotFoundError:
        return False
    return (ckpt / "state.json").is_file()


def _make_env(config: PPOConfig):
    from ..envs import make_vec_env

    return make_vec_env(config.env_id, config.num_envs, seed=config.seed, **config.env_kwargs)


def _obs_tensor(obs: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(obs).to(device)


def train_ppo(config: PPOConfig, output_dir: str | Path | None = None, *, resume: bool = True, env: Any = None,
              callback: Callable[[dict[str, float]], bool | None] | None = None,
              init_agent: ImpalaCNN | None = None) -> PPOResult:
    """Train an :class:`~xrl.models.ImpalaCNN` agent with PPO.

    Parameters
    ----------
    config : PPOConfig
    output_dir : path, optional
        Where ``progress.csv``, TensorBoard events and ``checkpoint/`` go; None trains in memory only.
    resume : bool, default True
        If ``output_dir/checkpoint`` exists, continue from it (until ``config.total_timesteps``).
    env : vectorised env, optional
        An env with the :mod:`xrl.envs.vector` interface to use instead of building ``config.env_id``.
    callback : callable, optional
        Called with each update's log row; returning ``False`` stops training after that update (a checkpoint is
        written, and a later call with ``resume=True`` continues), as in Stable-Baselines3's callbacks.
    init_agent : ImpalaCNN, optional
        Start from a copy of these weights (e.g. a bundled agent) with a fresh optimizer, when no checkpoint is
        resumed; its architecture must match ``config.channels`` / ``config.fc_dim`` and the env. The frames it was
        trained on (``metadata["frames"]``, else ``metadata["global_step"]``) are added to this run's in the saved
        agents' ``metadata["frames"]`` (``global_step`` counts this run only, which drives the schedule).

    Returns
    -------
    PPOResult

    Examples
    --------
    >>> cfg = PPOConfig(env_id="breakout", total_timesteps=2048, num_envs=8, num_steps=64, progress_bar=False)
    >>> result = train_ppo(cfg)       # doctest: +SKIP
    """
    config.validate()
    device = resolve_device(config.device)
    out = Path(output_dir) if output_dir is not None else None
    venv = env if env is not None else _make_env(config)
    if venv.num_envs != config.num_envs:
        raise ValueError(error_message("env", f"a vectorised env with config.num_envs={config.num_envs} envs",
                                       venv.num_envs))
    obs_shape = tuple(venv.single_observation_space.shape)
    obs_dtype = torch.uint8 if venv.single_observation_space.dtype == np.uint8 else torch.float32
    num_actions = int(venv.single_action_space.n)

    # ---- agent and optimizer (seeded without touching the global RNG) ----------------------------------------
    with init_rng(config.seed):
        agent = ImpalaCNN(obs_shape, num_actions, channels=config.channels, fc_dim=config.fc_dim,
                          action_names=getattr(venv, "action_names", None))
    agent = agent.to(device)
    if config.channels_last:
        agent = agent.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=1e-5)
    global_step, update, init_frames = 0, 0, 0
    normalizer = RewardNormalizer(config.num_envs, config.gamma) if config.norm_reward else None
    ckpt = out / "checkpoint" if out is not None else None
    resuming = resume and _resumable(ckpt)
    if init_agent is not None and not resuming:
        io.load_state_strict(agent, {k: v.to(device) for k, v in init_agent.state_dict().items()}, "init_agent")
        meta = getattr(init_agent, "metadata", None) or {}
        init_frames = int(meta.get("frames", meta.get("global_step", 0)))
    if resuming:
        state = io.load_json(ckpt / "state.json")
        loaded = load_agent(ckpt, device=device)
        if tuple(loaded.obs_shape) != obs_shape or loaded.num_actions != num_actions:
            raise ValueError(f"{ckpt}: checkpoint is for observations {loaded.obs_shape} and {loaded.num_actions} "
                             f"actions, this env has {obs_shape} and {num_actions}; use another output_dir")
        io.load_state_strict(agent, loaded.state_dict(), str(ckpt))
        io.load_optimizer(optimizer, io.load_tensors(ckpt / "optimizer.safetensors", device),
                          io.load_json(ckpt / "optimizer.json"))
        global_step, update = int(state["global_step"]), int(state["update"])
        init_frames = int(state.get("init_frames", 0))
        if normalizer is not None and "reward_normalizer" in state:
            normalizer.load_state_dict(state["reward_normalizer"])
    generator = torch_generator(config.seed + 7919 * update, device)

    writer = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        io.save_json(out / "config.json", config.to_dict())
        if config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(out / "tensorboard"))
            except ImportError:  # pragma: no cover - optional dependency
                writer = None

    def agent_metadata() -> dict[str, Any]:
        return {"env_id": config.env_id, "env_kwargs": config.env_kwargs, "global_step": global_step,
                "frames": init_frames + global_step, "ppo_config": config.to_dict()}

    def save_snapshot(previous_step: int) -> None:
        every = config.snapshot_every
        if out is None or not every or global_step // every == previous_step // every:
            return
        with io.atomic_directory(out / "snapshots" / f"{global_step:010d}") as tmp:
            write_agent_files(tmp, agent, agent_metadata())

    def save_checkpoint() -> None:
        if ckpt is None:
            return
        with io.atomic_directory(ckpt) as tmp:  # one transaction: agent, optimizer and counters always agree
            write_agent_files(tmp, agent, agent_metadata())
            tensors, meta = io.optimizer_to_tensors(optimizer)      # keys state.<param index>.<name>
            io.save_tensors(tmp / "optimizer.safetensors", tensors)
            io.save_json(tmp / "optimizer.json", meta)
            state = {"global_step": global_step, "update": update}
            if init_frames:
                state["init_frames"] = init_frames
            if normalizer is not None:
                state["reward_normalizer"] = normalizer.state_dict()
            io.save_json(tmp / "state.json", state)

    # ---- rollout storage: time-major [T, N, ...] on the device ------------------------------------------------
    T, N = config.num_steps, config.num_envs
    obs_buf = torch.zeros((T, N, *obs_shape), dtype=obs_dtype, device=device)
    actions_buf = torch.zeros((T, N), dtype=torch.long, device=device)
    logprobs_buf = torch.zeros((T, N), device=device)
    rewards_buf = torch.zeros((T, N), device=device)
    dones_buf = torch.zeros((T, N), device=device)
    values_buf = torch.zeros((T, N), device=device)

    batch_size = T * N
    minibatch_size = batch_size // config.num_minibatches
    num_updates = max(1, config.total_timesteps // batch_size)
    next_obs_np, _ = venv.reset(seed=config.seed + update * N)
    next_obs = _obs_tensor(next_obs_np, device)
    recent_returns: deque[float] = deque(maxlen=100)
    recent_lengths: deque[int] = deque(maxlen=100)
    history: list[dict[str, float]] = []
    csv_file = None
    csv_writer = None

    from tqdm.auto import tqdm

    bar = tqdm(total=num_updates * batch_size, initial=min(global_step, num_updates * batch_size), unit="step",
               disable=not config.progress_bar, desc=f"PPO {config.env_id}")
    start = time.time()
    start_step = global_step
    try:
        while update < num_updates:
            update += 1
            # Anneal the learning rate linearly (from the *global* update index, so resuming keeps the schedule)
            if config.anneal_lr:
                optimizer.param_groups[0]["lr"] = config.learning_rate * (1.0 - (update - 1.0) / num_updates)

            # ---- 1. rollout -----------------------------------------------------------------------------------
            agent.eval()
            t_rollout = time.time()
            for step in range(T):
                global_step += N
                obs_buf[step] = next_obs
                with torch.no_grad():
                    action, logprob, _, value = agent.get_action_and_value(next_obs, generator=generator)
                values_buf[step] = value
                actions_buf[step] = action
                logprobs_buf[step] = logprob
                next_obs_np, reward, term, trunc, info = venv.step(action.cpu().numpy())
                done = np.logical_or(term, trunc)
                if normalizer is not None:
                    reward = normalizer(reward, done)
                rewards_buf[step] = torch.as_tensor(reward, device=device)
                dones_buf[step] = torch.as_tensor(done, device=device, dtype=torch.float32)
                next_obs = _obs_tensor(next_obs_np, device)
                finished = ~np.isnan(info["episode_return"])
                recent_returns.extend(info["episode_return"][finished].tolist())
                recent_lengths.extend(info["episode_length"][finished].tolist())
            rollout_time = time.time() - t_rollout

            # ---- 2. advantages (GAE) ------------------------------------------------------------------------
            with torch.no_grad():
                _, next_value = agent(next_obs)
            advantages, returns = compute_gae(rewards_buf, values_buf, dones_buf, next_value,
                                              config.gamma, config.gae_lambda)

            # ---- 3. PPO update: flatten the rollout [T, N, ...] -> [T*N, ...] ----------------------------------
            b_obs = obs_buf.reshape((-1, *obs_shape))
            if config.channels_last:
                b_obs = b_obs.contiguous(memory_format=torch.channels_last)
            b_actions = actions_buf.reshape(-1)
            b_logprobs = logprobs_buf.reshape(-1)
            b_advantages = advantages.reshape(-1)
            b_returns = returns.reshape(-1)
            b_values = values_buf.reshape(-1)

            agent.train()
            t_update = time.time()
            clipfracs = []
            chunk = config.minibatch_chunk or minibatch_size
            for _epoch in range(config.update_epochs):
                perm = torch.randperm(batch_size, generator=generator, device=device)
                for start_i in range(0, batch_size, minibatch_size):
                    mb = perm[start_i:start_i + minibatch_size]
                    mb_adv = b_advantages[mb]
                    if config.norm_adv:  # over the whole minibatch, also when it is processed in chunks
                        mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                    optimizer.zero_grad(set_to_none=True)
                    sums = torch.zeros(6, device=device)  # pg, value, entropy, old kl, kl, clipped: minibatch sums
                    for c in range(0, minibatch_size, chunk):  # gradients accumulate: the minibatch's mean loss
                        idx, adv = mb[c:c + chunk], mb_adv[c:c + chunk]
                        _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[idx], b_actions[idx])
                        logratio = newlogprob - b_logprobs[idx]
                        ratio = logratio.exp()
                        # policy loss (clipped surrogate), per sample
                        clipped_ratio = torch.clamp(ratio, 1 - config.clip_coef, 1 + config.clip_coef)
                        pg = torch.max(-adv * ratio, -adv * clipped_ratio)
                        # value loss, per sample
                        if config.clip_vloss:
                            v_clipped = b_values[idx] + torch.clamp(newvalue - b_values[idx], -config.clip_coef,
                                                                    config.clip_coef)
                            v = 0.5 * torch.max((newvalue - b_returns[idx]) ** 2, (v_clipped - b_returns[idx]) ** 2)
                        else:
                            v = 0.5 * (newvalue - b_returns[idx]) ** 2
                        loss = (pg - config.ent_coef * entropy + config.vf_coef * v).sum() / minibatch_size
                        loss.backward()
                        with torch.no_grad():
                            sums += torch.stack([pg.sum(), v.sum(), entropy.sum(), (-logratio).sum(),
                                                 ((ratio - 1) - logratio).sum(),
                                                 ((ratio - 1.0).abs() > config.clip_coef).float().sum()])
                    nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
                    optimizer.step()
                    pg_loss, v_loss, entropy_loss, old_approx_kl, approx_kl, clipped = sums / minibatch_size
                    clipfracs.append(clipped.item())
                if config.target_kl is not None and approx_kl.item() > config.target_kl:
                    break
            update_time = time.time() - t_update

            # ---- 4. logging -------------------------------------------------------------------------------------
            y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
            var_y = np.var(y_true)
            explained_var = float("nan") if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y)
            elapsed = time.time() - start
            row = {
                "global_step": global_step, "update": update, "time": elapsed,
                "charts/episodic_return": float(np.mean(recent_returns)) if recent_returns else float("nan"),
                "charts/episodic_length": float(np.mean(recent_lengths)) if recent_lengths else float("nan"),
                "charts/episodes": len(recent_returns),
                "charts/learning_rate": optimizer.param_groups[0]["lr"],
                "charts/SPS": (global_step - start_step) / max(elapsed, 1e-9),
                "charts/rollout_SPS": batch_size / max(rollout_time, 1e-9),
                "charts/update_SPS": batch_size * config.update_epochs / max(update_time, 1e-9),
                "losses/value_loss": v_loss.item(), "losses/policy_loss": pg_loss.item(),
                "losses/entropy": entropy_loss.item(), "losses/old_approx_kl": old_approx_kl.item(),
                "losses/approx_kl": approx_kl.item(), "losses/clipfrac": float(np.mean(clipfracs)),
                "losses/explained_variance": explained_var,
            }
            history.append(row)
            if out is not None:
                if csv_writer is None:
                    path = out / "progress.csv"
                    new = not path.is_file()
                    csv_file = open(path, "a", newline="")
                    csv_writer = csv.DictWriter(csv_file, fieldnames=list(row))
                    if new:
                        csv_writer.writeheader()
                csv_writer.writerow(row)
                csv_file.flush()
            if writer is not None:
                for k, v in row.items():
                    if k not in ("global_step", "update") and np.isfinite(v):
                        writer.add_scalar(k, v, global_step)
            save_snapshot(global_step - batch_size)
            stop = callback is not None and callback(row) is False
            bar.update(batch_size)
            bar.set_postfix(ret=f"{row['charts/episodic_return']:.2f}", sps=f"{row['charts/SPS']:.0f}")
            if stop:
                break
            if update % config.checkpoint_every == 0:
                save_checkpoint()
        save_checkpoint()
    finally:
        bar.close()
        if csv_file is not None:
            csv_file.close()
        if writer is not None:
            writer.close()
        if env is None:
            venv.close()
    agent.eval()
    if config.channels_last:
        agent = agent.to(memory_format=torch.contiguous_format)
    return PPOResult(agent=agent, history=history, output_dir=out, global_step=global_step)
