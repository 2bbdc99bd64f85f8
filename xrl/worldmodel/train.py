"""Train a DreamerV2-style agent on a MinAtar game (CleanRL-style: config, seeding, the loop in algorithm order).

Run ``python -m xrl.worldmodel.train --help``. The run directory holds ``checkpoint/`` (the agent, loadable with
`DreamerAgent.load`, and ``train_state.*``: optimisers, replay buffer, counters, RNG states; written as one
transaction, so an interrupted save leaves the previous checkpoint; ``--resume`` continues exactly where the last
checkpoint left off, except that the interrupted episode restarts), ``config.json`` and ``progress.jsonl``. Runs
written before the checkpoint became one transaction (``train_state.*`` beside ``checkpoint/``) still resume.

Time alignment (Hafner et al.): step ``t`` of the buffer holds ``o_t``, the action ``a_{t-1}`` that led to it, the
reward ``r_t`` received on arriving at ``o_t``, ``term_t`` (``o_t`` is terminal) and ``first_t`` (``o_t`` follows a
reset). The reward head on the posterior state at ``t`` predicts ``r_t``; the discount head predicts ``1 - term_t``.
(The public DreamerV2 code instead pairs the state at ``t`` with the reward of the next step.)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._utils import init_rng
from ..io import (atomic_directory, load_json, load_optimizer, load_tensors, optimizer_to_tensors, save_json,
                  save_tensors, verify_directory)
from .agent import DreamerAgent, evaluate
from .config import MinAtarConfig, cpu_config
from .rssm import RSSMDiscState, detach_state, kl_balance_loss, map_state


class ReplayBuffer:
    """Circular buffer of single steps; samples windows of ``seq_len`` consecutive steps (may cross episodes).

    obs are stored as uint8 (MinAtar frames are 0/1).
    """

    def __init__(self, capacity: int, obs_shape: tuple, action_size: int):
        self.capacity = int(capacity)
        self.obs = np.zeros((self.capacity, *obs_shape), dtype=np.uint8)
        self.action = np.zeros((self.capacity, action_size), dtype=np.float32)
        self.reward = np.zeros(self.capacity, dtype=np.float32)
        self.term = np.zeros(self.capacity, dtype=bool)
        self.first = np.zeros(self.capacity, dtype=bool)
        self.ptr = 0
        self.size = 0

    def add(self, obs, prev_action, reward: float, term: bool, first: bool) -> None:
        i = self.ptr
        self.obs[i] = obs
        self.action[i] = prev_action
        self.reward[i] = reward
        self.term[i] = term
        self.first[i] = first
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, seq_len: int, rng: np.random.Generator, device) -> dict[str, torch.Tensor]:
        """Time-major batch: obs [L, B, C, H, W], action [L, B, A], reward/term/first [L, B, 1]."""
        if self.size < seq_len:
            raise RuntimeError(f"buffer holds {self.size} steps, fewer than seq_len={seq_len}")
        oldest = self.ptr if self.size == self.capacity else 0
        starts = (oldest + rng.integers(0, self.size - seq_len + 1, size=batch_size)) % self.capacity
        idx = (starts[None, :] + np.arange(seq_len)[:, None]) % self.capacity  # [L, B]
        t = lambda a: torch.as_tensor(a[idx], device=device)
        return {"obs": t(self.obs).float(), "action": t(self.action), "reward": t(self.reward).unsqueeze(-1),
                "term": t(self.term).float().unsqueeze(-1), "first": t(self.first).float().unsqueeze(-1)}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        n = self.size
        return {"buffer.obs": torch.from_numpy(np.packbits(self.obs[:n].reshape(n, -1), axis=1)),
                "buffer.action": torch.from_numpy(self.action[:n]), "buffer.reward": torch.from_numpy(self.reward[:n]),
                "buffer.term": torch.from_numpy(self.term[:n]), "buffer.first": torch.from_numpy(self.first[:n])}

    def load_state_tensors(self, t: dict[str, torch.Tensor], size: int, ptr: int) -> None:
        n = size
        flat = int(np.prod(self.obs.shape[1:]))
        self.obs[:n] = np.unpackbits(t["buffer.obs"].numpy(), axis=1)[:, :flat].reshape(n, *self.obs.shape[1:])
        self.action[:n] = t["buffer.action"].numpy()
        self.reward[:n] = t["buffer.reward"].numpy()
        self.term[:n] = t["buffer.term"].numpy()
        self.first[:n] = t["buffer.first"].numpy()
        self.size, self.ptr = size, ptr


@dataclass
class WorldModelLosses:
    """Scalar losses of one world-model update."""

    model: float
    obs: float
    reward: float
    discount: float
    kl: float
    prior_entropy: float
    posterior_entropy: float


def lambda_returns(reward: torch.Tensor, value: torch.Tensor, discount: torch.Tensor, lambda_: float) -> torch.Tensor:
    """TD(lambda) targets over an imagined trajectory.

    ``reward``, ``value``, ``discount`` are [H+1, N, 1] for states x_0..x_H (reward/discount of x_t describe arriving
    at x_t). Returns [H, N, 1]: ``R_t = r_{t+1} + g_{t+1} * ((1 - lambda) * v_{t+1} + lambda * R_{t+1})``,
    ``R_H = v_H``.
    """
    out = []
    last = value[-1]
    for t in reversed(range(reward.shape[0] - 1)):
        last = reward[t + 1] + discount[t + 1] * ((1 - lambda_) * value[t + 1] + lambda_ * last)
        out.append(last)
    return torch.stack(out[::-1])


class Trainer:
    """Optimisers and the two update steps of DreamerV2 (world model; actor and critic in imagination)."""

    def __init__(self, agent: DreamerAgent, config: MinAtarConfig):
        self.agent, self.config = agent, config
        params = lambda mods: [p for m in mods for p in m.parameters()]
        self.model_optimizer = torch.optim.Adam(params(agent.world_modules()), config.lr_model)
        self.actor_optimizer = torch.optim.Adam(agent.ActionModel.parameters(), config.lr_actor)
        self.value_optimizer = torch.optim.Adam(agent.ValueModel.parameters(), config.lr_critic)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.model_optimizer, "actor": self.actor_optimizer, "value": self.value_optimizer}

    def world_model_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, WorldModelLosses, RSSMDiscState]:
        """Loss of the world model on a time-major batch (see `ReplayBuffer.sample`); returns the posteriors too."""
        a, cfg = self.agent, self.config
        obs = batch["obs"]
        L, B = obs.shape[:2]
        nonterm = 1.0 - batch["first"]  # a reset cuts the recurrent state
        embed = a.ObsEncoder(obs)  # [L, B, C, H, W] -> [L, B, E]
        prior, post = a.RSSM.rollout_observation(L, embed, batch["action"], nonterm, a.RSSM._init_rssm_state(B))
        feat = a.RSSM.get_model_state(post)  # [L, B, D + C*K]
        obs_loss = 0.5 * (a.ObsDecoder(feat) - obs).pow(2).sum((-3, -2, -1)).mean()  # -log N(o; mu, 1) + const
        reward_loss = 0.5 * (a.RewardDecoder(feat) - batch["reward"]).pow(2).mean()
        discount_loss = F.binary_cross_entropy_with_logits(a.DiscountModel(feat), 1.0 - batch["term"])
        info = cfg.rssm_info
        kl = kl_balance_loss(prior.logit, post.logit, info.category_size, info.class_size, cfg.kl_balance,
                             cfg.free_nats)
        loss = obs_loss + cfg.reward_scale * reward_loss + cfg.discount_scale * discount_loss + cfg.kl_scale * kl
        with torch.no_grad():
            ent = lambda lg: -(torch.softmax(lg, -1) * torch.log_softmax(lg, -1)).sum(-1).sum(-1).mean().item()
            shape = (L, B, info.category_size, info.class_size)
            losses = WorldModelLosses(loss.item(), obs_loss.item(), reward_loss.item(), discount_loss.item(),
                                      kl.item(), ent(prior.logit.reshape(shape)), ent(post.logit.reshape(shape)))
        return loss, losses, post

    @torch.no_grad()
    def imagine(self, start: RSSMDiscState) -> tuple[torch.Tensor, torch.Tensor]:
        """Imagine ``horizon`` steps with the actor from start states (fields [N, X]).

        Returns model states of x_0..x_H, [H+1, N, D + C*K], and the one-hot actions a_0..a_{H-1}, [H, N, A].
        """
        a = self.agent
        feats, actions, state = [a.RSSM.get_model_state(start)], [], start
        for _ in range(self.config.horizon):
            action, _ = a.ActionModel(feats[-1])
            state = a.RSSM.rssm_imagine(action, state)
            feats.append(a.RSSM.get_model_state(state))
            actions.append(action)
        return torch.stack(feats), torch.stack(actions)

    def actor_critic_loss(self, post: RSSMDiscState) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        a, cfg = self.agent, self.config
        start = detach_state(map_state(post, lambda x: x.reshape(-1, x.shape[-1])))  # [L, B, X] -> [L*B, X]
        n = start.deter.shape[0]
        if cfg.imagine_starts is not None and cfg.imagine_starts < n:
            keep = torch.randperm(n, generator=a.RSSM.generator, device="cpu")[: cfg.imagine_starts].to(start.deter.device)
            start = map_state(start, lambda x: x[keep])  # [L*B, X] -> [imagine_starts, X]
        feats, actions = self.imagine(start)  # [H+1, N, S], [H, N, A]
        with torch.no_grad():
            reward = a.RewardDecoder(feats)
            discount = cfg.discount_ * torch.round(torch.sigmoid(a.DiscountModel(feats)))
            target_value = a.TargetValueModel(feats)
            returns = lambda_returns(reward, target_value, discount, cfg.lambda_)  # [H, N, 1]
            # weight of step t: product of discounts of x_1..x_t (x_0 is real, weight 1)
            weight = torch.cumprod(torch.cat([torch.ones_like(discount[:1]), discount[1:-1]]), 0)  # [H, N, 1]
        logits = a.ActionModel.model(feats[:-1])  # [H, N, A], gradient only into the actor
        log_prob = (torch.log_softmax(logits, -1) * actions).sum(-1, keepdim=True)
        entropy = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1, keepdim=True)
        advantage = returns - target_value[:-1]
        actor_loss = -(weight * (log_prob * advantage + cfg.actor_entropy_scale * entropy)).mean()
        value_loss = 0.5 * (weight * (a.ValueModel(feats[:-1]) - returns).pow(2)).mean()
        info = {"mean_target": returns.mean().item(), "entropy": entropy.mean().item()}
        return actor_loss, value_loss, info

    def train_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One world-model update then one actor and one critic update on the same batch."""
        cfg = self.config
        loss, losses, post = self.world_model_loss(batch)
        self.model_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model_optimizer.param_groups[0]["params"], cfg.grad_clip)
        self.model_optimizer.step()
        actor_loss, value_loss, info = self.actor_critic_loss(post)
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.value_optimizer.zero_grad(set_to_none=True)
        (actor_loss + value_loss).backward()
        torch.nn.utils.clip_grad_norm_(self.agent.ActionModel.parameters(), cfg.grad_clip)
        torch.nn.utils.clip_grad_norm_(self.agent.ValueModel.parameters(), cfg.grad_clip)
        self.actor_optimizer.step()
        self.value_optimizer.step()
        out = {f"losses/{k}": v for k, v in dataclasses.asdict(losses).items()}
        out.update({"losses/actor": actor_loss.item(), "losses/value": value_loss.item(),
                    "charts/imagined_return": info["mean_target"], "charts/policy_entropy": info["entropy"]})
        return out

    def update_target(self) -> None:
        f = self.config.slow_target_fraction
        with torch.no_grad():
            for p, tp in zip(self.agent.ValueModel.parameters(), self.agent.TargetValueModel.parameters()):
                tp.mul_(1 - f).add_(f * p)


# -- checkpoints: the agent and the training state, one transaction ------------------------------------------------
TRAIN_STATE = "train_state"


def save_training_state(run_dir: Path, agent: DreamerAgent, trainer: Trainer, buffer: ReplayBuffer,
                        counters: dict[str, Any], rng: np.random.Generator, gen: torch.Generator) -> None:
    """Checkpoint everything needed to resume into ``run_dir/checkpoint`` as one transaction
    (:func:`xrl.io.atomic_directory`): the agent (``agent.*``, loadable with `DreamerAgent.load`) and the training
    state (``train_state.*``: optimisers, replay buffer, counters, RNG states) always belong to the same step."""
    tensors, meta = buffer.state_tensors(), {}
    for name, opt in trainer.optimizers().items():
        t, m = optimizer_to_tensors(opt, prefix=f"opt.{name}.")   # keys opt.<name>.state.<param index>.<key>
        tensors.update(t)
        meta[name] = m
    tensors["torch_generator"] = gen.get_state()
    with atomic_directory(run_dir / "checkpoint") as tmp:
        agent.write_files(tmp, meta={"frames": counters["frame"], "updates": counters["updates"]})
        save_tensors(tmp / f"{TRAIN_STATE}.safetensors", tensors)
        save_json(tmp / f"{TRAIN_STATE}.json", {"counters": counters, "optimizers": meta, "buffer_size": buffer.size,
                                                "buffer_ptr": buffer.ptr, "numpy_rng": rng.bit_generator.state})


def training_state_dir(run_dir: str | Path) -> Path | None:
    """Where ``run_dir``'s training state is: ``checkpoint/`` (this version), ``run_dir`` itself (runs written
    before the checkpoint became one transaction, whose ``train_state.*`` sat beside ``checkpoint/``), or None."""
    run_dir = Path(run_dir)
    try:
        verify_directory(run_dir / "checkpoint")  # repairs a save cut between its two renames
    except FileNotFoundError:
        return None
    for folder in (run_dir / "checkpoint", run_dir):
        if (folder / f"{TRAIN_STATE}.json").is_file():
            return folder
    return None


def _load_optimizer_state(name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                          meta: dict) -> None:
    """Restore optimiser ``name``; runs saved before xrl.io's serializer used the keys ``opt.<name>.<index>.<key>``."""
    prefix = f"opt.{name}."
    if not any(k.startswith(prefix + "state.") for k in tensors):   # the old layout: convert the keys
        tensors = {prefix + "state." + k[len(prefix):]: v for k, v in tensors.items()
                   if k.startswith(prefix) and k[len(prefix):].split(".", 1)[0].isdigit()}
    load_optimizer(opt, tensors, meta, prefix=prefix)


def _log(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / "progress.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def train(config: MinAtarConfig, run_dir: str | Path, *, resume: bool = False, device: str = "cpu",
          log_every: int = 2000, max_minutes: float | None = None, progress: bool = True) -> DreamerAgent:
    """Train (or resume) an agent; returns it. See the module docstring for the run-directory layout.

    Randomness comes from ``config.seed`` only, through private generators (the network initialisation, the replay
    sampling, exploration and the latent/action sampling); the global RNGs and torch's thread count are left as they
    are (the command line sets ``--threads``). ``progress=False`` hides the progress bar (frames).
    """
    from ..envs import make_minatar

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = config
    state_dir = training_state_dir(run_dir) if resume else None
    resuming = state_dir is not None
    if resuming:  # the run's own config wins, except for the training length (so a run can be extended)
        saved_cfg = MinAtarConfig.from_dict(load_json(run_dir / "checkpoint" / "agent.json")["config"])
        cfg = dataclasses.replace(saved_cfg, train_steps=config.train_steps)
        if dataclasses.replace(config, train_steps=0).to_dict() != dataclasses.replace(cfg, train_steps=0).to_dict():
            print("resume: using the config saved in the run directory (only train_steps is taken from the "
                  "arguments)", file=sys.stderr)
    # -- seeding ---------------------------------------------------------------------------------------------------
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    with init_rng(cfg.seed):  # network initialisation, as torch.manual_seed(seed) would give, global RNG untouched
        agent = DreamerAgent(cfg)
    agent = agent.to(device)
    agent.set_generator(gen)
    trainer = Trainer(agent, cfg)
    buffer = ReplayBuffer(min(cfg.capacity, cfg.train_steps + cfg.seed_steps + 10), cfg.obs_shape, cfg.action_size)
    counters = {"frame": 0, "updates": 0, "episodes": 0, "seconds": 0.0, "returns": []}
    if resuming:
        st = load_json(state_dir / f"{TRAIN_STATE}.json")
        loaded = DreamerAgent.load(run_dir / "checkpoint", device)
        agent.load_state_dict(loaded.state_dict())
        agent.train()
        tensors = load_tensors(state_dir / f"{TRAIN_STATE}.safetensors")
        for name, opt in trainer.optimizers().items():
            _load_optimizer_state(name, opt, tensors, st["optimizers"][name])
        if st["buffer_size"] > buffer.capacity:
            raise ValueError(f"resume: the saved buffer holds {st['buffer_size']} steps, more than the capacity "
                             f"{buffer.capacity} for train_steps={cfg.train_steps}; resume with at least the same "
                             "train_steps")
        buffer.load_state_tensors(tensors, st["buffer_size"], st["buffer_ptr"])
        gen.set_state(tensors["torch_generator"])
        rng.bit_generator.state = st["numpy_rng"]
        counters = st["counters"]
        print(f"resumed at frame {counters['frame']} ({counters['updates']} updates)", flush=True)
    save_json(run_dir / "config.json", cfg.to_dict())
    env = make_minatar(cfg.env, pomdp=cfg.pomdp, one_hot_actions=True)
    A = cfg.action_size

    def new_episode():
        obs, _ = env.reset(seed=cfg.seed * 100_000 + counters["episodes"])
        buffer.add(obs, np.zeros(A, np.float32), 0.0, False, True)
        return obs, agent.RSSM._init_rssm_state(1), torch.zeros(1, A, device=device)

    total = cfg.train_steps + cfg.seed_steps
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=min(counters["frame"], total), unit="frame", disable=not progress,
               desc=f"world model {cfg.env}")
    obs, state, prev_action = new_episode()
    ep_return, t_start, t_log, frames_log = 0.0, time.time(), time.time(), counters["frame"]
    seconds0 = counters["seconds"]
    seed_probs = np.asarray(cfg.seed_action_probs or [1.0 / A] * A)
    metrics: dict[str, float] = {}
    try:
        while counters["frame"] < total:
            frame = counters["frame"]
            # -- act --------------------------------------------------------------------------------------------
            if frame < cfg.seed_steps:
                a_idx = int(rng.choice(A, p=seed_probs))
                action = F.one_hot(torch.tensor([a_idx]), A).float().to(device)
            else:
                action, state = agent.policy_step(obs, prev_action, state, True)
                eps = max(cfg.expl_min, cfg.train_noise - (frame - cfg.seed_steps) / cfg.expl_decay)
                if rng.random() < eps:
                    action = F.one_hot(torch.tensor([int(rng.integers(A))]), A).float().to(device)
            a_np = action.squeeze(0).cpu().numpy()
            obs, r, term, trunc, _ = env.step(a_np)
            buffer.add(obs, a_np, r, term, False)
            ep_return += r
            prev_action = action
            counters["frame"] = frame = frame + 1
            bar.update(1)
            if term or trunc:
                counters["episodes"] += 1
                counters["returns"] = (counters["returns"] + [ep_return])[-20:]
                _log(run_dir, {"frame": frame, "charts/episodic_return": ep_return})
                bar.set_postfix(episode=counters["episodes"], ret=f"{ep_return:.0f}")
                ep_return = 0.0
                obs, state, prev_action = new_episode()
            # -- learn ------------------------------------------------------------------------------------------
            if frame >= cfg.seed_steps:
                if frame % cfg.train_every == 0:
                    agent.train()
                    for _ in range(cfg.collect_intervals):
                        metrics = trainer.train_batch(buffer.sample(cfg.batch_size, cfg.seq_len, rng, device))
                        counters["updates"] += 1
                if frame % cfg.slow_target_update == 0:
                    trainer.update_target()
            if frame % log_every == 0:
                now = time.time()
                sps = (frame - frames_log) / max(now - t_log, 1e-9)
                t_log, frames_log = now, frame
                counters["seconds"] = seconds0 + now - t_start
                rec = {"frame": frame, "updates": counters["updates"], "charts/SPS": round(sps, 1),
                       "charts/minutes": round(counters["seconds"] / 60, 2),
                       **{k: round(v, 4) for k, v in metrics.items()}}
                _log(run_dir, rec)
                bar.write(json.dumps(rec))
            stop = max_minutes is not None and time.time() - t_start > max_minutes * 60
            if frame % cfg.save_every == 0 or frame == total or stop:
                counters["seconds"] = seconds0 + time.time() - t_start
                save_training_state(run_dir, agent, trainer, buffer, counters, rng, gen)
            if stop:
                bar.write(f"stopping after {max_minutes} minutes at frame {frame} (resume with --resume)")
                break
    finally:
        bar.close()
    agent.set_generator(None)
    return agent.eval()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train a DreamerV2-style agent on MinAtar (CPU-friendly defaults).")
    p.add_argument("--game", default="freeway")
    p.add_argument("--no-pomdp", action="store_true", help="train on the full observation")
    p.add_argument("--preset", choices=["cpu", "dreamerv2"], default="cpu",
                   help="cpu: small CPU config (cpu_config); dreamerv2: the public MinAtar defaults")
    p.add_argument("--frames", type=int, default=None, help="environment frames after the seed phase")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default="runs/worldmodel/freeway_pomdp")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=1000, help="frames between progress lines")
    p.add_argument("--max-minutes", type=float, default=None, help="checkpoint and stop after this wall time")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON", help="override config fields")
    args = p.parse_args(argv)
    from ..envs import make_minatar

    probe = make_minatar(args.game, pomdp=not args.no_pomdp)
    fields = dict(env=args.game, pomdp=not args.no_pomdp, obs_shape=probe.observation_space.shape,
                  action_size=int(probe.action_space.n), seed=args.seed)
    for item in args.set:
        k, v = item.split("=", 1)
        fields[k] = json.loads(v)
    if args.frames is not None:
        fields["train_steps"] = args.frames
    cfg = cpu_config(**fields) if args.preset == "cpu" else MinAtarConfig(**fields)
    if args.threads:
        torch.set_num_threads(args.threads)  # the command line owns the process; the library never sets this
    agent = train(cfg, args.run_dir, resume=args.resume, max_minutes=args.max_minutes, log_every=args.log_every)
    make_env = lambda: make_minatar(args.game, pomdp=not args.no_pomdp, one_hot_actions=True)
    print(json.dumps({"eval": {k: v for k, v in evaluate(agent, make_env, episodes=10, seed=10_000).items()
                               if k != "returns"}}), flush=True)


if __name__ == "__main__":
    main()
