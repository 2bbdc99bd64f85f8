"""CFRL's training: DDPG on one-step episodes (Samoilescu et al. 2021, arXiv:2106.02597, Algorithm 1).

A state is an instance's embedding ``z``, the black box's label ``y_m``, a target ``y_t`` and a condition ``c``; the
action is a counterfactual embedding; the reward says whether the black box gives the target for its decoding. States
do not depend on actions, so the training set's embeddings and labels are computed once (``CounterfactualRL.fit``) and
the replay buffer stores row indices. :meth:`DDPG.run` is the loop, in algorithm order.
"""
from __future__ import annotations

import dataclasses
import hashlib
from contextlib import contextmanager
from collections.abc import Mapping
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import io
from .._utils import eval_mode
from ..models import Actor
from .blackbox import to_numpy
from .buffer import ReplayBuffer
from .config import get_classification_reward
from .losses import all_targets_batch
from .spaces import Rows


MAX_CHUNK_ROWS = 10_000
"""With ``update_every > 1`` the steps up to the next update share one black-box call, up to this many rows."""


class _Bar(tqdm):
    monitor_interval = 0  # tqdm's monitor is a thread: none is started behind the user's back


class TrainingData(NamedTuple):
    """What never changes during ``fit``: the training rows, their embeddings ``Z`` ``[N, latent]``, the black box's
    labels ``Y_m`` (one-hot ``[N, K]`` or values ``[N, 1]``) and a fingerprint of the data."""

    rows: Rows
    Z: torch.Tensor
    Y_m: torch.Tensor
    fingerprint: str


@dataclasses.dataclass
class TrainingState:
    """Everything a resumed ``fit`` needs to continue exactly: the RNG, the replay buffer, the epoch's row order, the
    learning-rate schedule (``base_lrs`` per optimizer, ``lr_steps`` long) and the training data's fingerprint.
    Optimizer moments live in the optimizers."""

    generator: torch.Generator
    buffer: ReplayBuffer
    base_lrs: dict[str, list[float]]
    lr_steps: int
    fingerprint: str
    step: int = 0
    perm: torch.Tensor | None = None
    pos: int = 0
    epoch: int = 0

    def next_batch(self, n: int, batch_size: int, shuffle: bool) -> torch.Tensor:
        """Row indices of the next batch; a new epoch (reshuffled) when fewer than ``batch_size`` rows are left."""
        if self.perm is None or self.pos + batch_size > n:
            gen, dev = self.generator, self.generator.device
            self.perm = torch.randperm(n, device=dev, generator=gen) if shuffle else torch.arange(n, device=dev)
            self.pos, self.epoch = 0, self.epoch + 1
        self.pos += batch_size
        return self.perm[self.pos - batch_size:self.pos]


def digest(head: bytes, *arrays: Any, size: int = 16) -> bytes:
    """BLAKE2b of ``head`` and the bytes of ``arrays`` (numpy or tensors; ``None`` skipped): the training data's
    fingerprint (``fit`` refuses to resume on other data) and the tabular explainer's per-row seeds."""
    h = hashlib.blake2b(head, digest_size=size)
    for a in arrays:
        if a is not None:
            h.update(memoryview(np.ascontiguousarray(to_numpy(a))).cast("B"))
    return h.digest()


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """No weight gradients for ``modules`` inside (inputs still get them); each parameter's flag comes back."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


_Chunk = NamedTuple("_Chunk", [("idx", torch.Tensor), ("Y_t", torch.Tensor), ("C", Any), ("Z_cf_tilde", torch.Tensor),
                               ("X_cf", Any)])  # n batches acted on, up to the black-box query


class _Undo:
    """What a chunk of steps changes, saved before it runs, so that an exception (Ctrl-C included) in the middle
    leaves the explainer exactly at the last completed step."""

    def __init__(self, state: TrainingState, nets: tuple, steps: int) -> None:
        buf, B = state.buffer, state.buffer.batch_size
        self.state, self.rng = state, state.generator.get_state()
        self.scalars = (state.step, state.perm, state.pos, state.epoch, buf.idx, buf.len, B, dict(buf.data))
        slots = [s for s in ((buf.idx + k) % buf.size for k in range(steps)) if s < buf.len]
        self.slots = [(slice(s * B, (s + 1) * B), {k: v[s * B:(s + 1) * B].clone() for k, v in buf.data.items()})
                      for s in slots]
        self.nets = nets  # ((network, its optimizer), ...) when the chunk has an update step, else ()
        self.weights = [({k: v.clone() for k, v in m.state_dict().items()}, io.optimizer_to_tensors(o))
                        for m, o in self.nets]

    def restore(self) -> None:
        state, buf = self.state, self.state.buffer
        state.step, state.perm, state.pos, state.epoch, buf.idx, buf.len, buf.batch_size, buf.data = self.scalars
        state.generator.set_state(self.rng)
        for rows, saved in self.slots:
            for k, v in saved.items():
                buf.data[k][rows] = v
        for (m, o), (weights, (tensors, meta)) in zip(self.nets, self.weights):
            m.load_state_dict(weights)
            io.load_optimizer(o, tensors, meta)


class _Sample(Mapping):
    """The callbacks' ``sample`` (seed 001's keys): numpy arrays, each computed on first access."""

    def __init__(self, **values: Any) -> None:
        self._values = values

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        if callable(value) or isinstance(value, torch.Tensor):
            value = self._values[key] = to_numpy(value() if callable(value) else value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class DDPG:
    """One ``fit`` of the explainer ``ex`` (a :class:`~xrl.counterfactual.CounterfactualRL`): its config, data space,
    task, black box, networks, optimizers, ``reward_func`` and ``callbacks``; :meth:`run` trains to ``train_steps``."""

    def __init__(self, ex: Any) -> None:
        c, cfg, task = ex.components, ex.config, ex.task
        self.ex, self.cfg, self.space, self.task = ex, cfg, ex.space, task
        self.actor, self.critic, self.reward_func = c["actor"], c["critic"], c["reward_func"]
        self.opt_actor, self.opt_critic = c["optimizer_actor"], c["optimizer_critic"]
        self.encode, self.decode = ex._encode, ex._decode
        # the reward of every target is known from the reached class only for the default classification reward
        self.all_targets = cfg.all_targets and not task.regression and self.reward_func is get_classification_reward
        self.target_cols = slice(cfg.latent_dim + task.y_dim, cfg.latent_dim + 2 * task.y_dim)
        self.penalise = cfg.saturation_penalty > 0 and type(self.actor).forward is Actor.forward

    def run(self, data: TrainingData, state: TrainingState) -> None:
        """Train from ``state.step`` to ``train_steps``; an exception undoes the unfinished steps (see ``_Undo``)."""
        cfg, rewards = self.cfg, []
        bar = _Bar(total=cfg.train_steps, initial=min(state.step, cfg.train_steps), disable=not self.ex.progress,
                   desc="CFRL fit", dynamic_ncols=True)
        with bar:
            while state.step < cfg.train_steps:
                n = self.chunk_length(state.step)
                nets = ((self.actor, self.opt_actor), (self.critic, self.opt_critic))
                undo = _Undo(state, nets if any(map(self.is_update_step, range(state.step, state.step + n))) else (), n)
                try:
                    # 1. act: fresh training rows, random targets (and conditions), noisy counterfactuals
                    chunk = self.act(data, state, n)
                    # 2. ask the black box about the noisy counterfactuals: the reward
                    rows = n * cfg.batch_size
                    Y_cf = self.ex._label(self.space.predictor_input(chunk.X_cf), rows, rows)
                    R = self.task.reward(self.reward_func, Y_cf, chunk.Y_t)
                    # 3. remember the transitions (row indices, not copies of the rows)
                    self.store(state, chunk, Y_cf, R)
                    # 4. learn: update_every updates on every update step
                    for _ in range(n):
                        for update in range(cfg.update_every if self.is_update_step(state.step) else 0):
                            self.update(data, state, state.step, update)
                        state.step += 1
                except BaseException:
                    undo.restore()
                    raise
                bar.update(n)
                rewards.append(R.mean())
                if len(rewards) == 100:
                    bar.set_postfix(reward=f"{float(torch.stack(rewards).mean()):.3f}", refresh=False)
                    rewards.clear()

    def is_update_step(self, step: int) -> bool:
        return step % self.cfg.update_every == 0 and step > self.cfg.update_after

    def chunk_length(self, step: int) -> int:
        """Steps acted on by the same actor: up to the next update step, at most ``update_every`` (and
        ``MAX_CHUNK_ROWS`` rows); with ``update_every > 1`` their black-box calls become one."""
        cfg, n = self.cfg, 1
        most = min(cfg.update_every, max(1, MAX_CHUNK_ROWS // cfg.batch_size))
        while n < most and step + n < cfg.train_steps and not self.is_update_step(step + n - 1):
            n += 1
        return n

    def act(self, data: TrainingData, state: TrainingState, n: int) -> _Chunk:
        """``n`` batches for the current actor; random numbers are drawn batch by batch, so chunking changes nothing
        that is sampled. The first ``exploration_steps`` steps act uniformly at random."""
        cfg, gen, dev = self.cfg, state.generator, data.Z.device
        idx, targets, conds, draws, explore = [], [], [], [], []
        for k in range(n):
            idx.append(state.next_batch(len(data.Z), cfg.batch_size, cfg.shuffle))
            targets.append(self.task.sample_targets(cfg.batch_size, gen, dev))
            conds.append(self.space.condition(data.rows[idx[-1]], gen))
            explore.append(state.step + k <= cfg.exploration_steps)
            shape = (cfg.batch_size, data.Z.shape[1])
            draws.append(cfg.act_low + (cfg.act_high - cfg.act_low) * torch.rand(shape, device=dev, generator=gen)
                         if explore[-1] else cfg.act_noise * torch.randn(shape, device=dev, generator=gen))
        idx, Y_t, Z_cf_tilde = torch.cat(idx), torch.cat(targets), torch.cat(draws)
        C = None if conds[0] is None else torch.cat(conds)
        with torch.no_grad():
            if not all(explore):
                with eval_mode(self.actor):
                    Z_cf = self.actor(self.task.state(data.Z[idx], data.Y_m[idx], Y_t, C))
                uniform = torch.tensor(explore, device=dev).repeat_interleave(cfg.batch_size)[:, None]
                Z_cf_tilde = torch.where(uniform, Z_cf_tilde, (Z_cf + Z_cf_tilde).clamp(cfg.act_low, cfg.act_high))
            X_cf = self.space.counterfactual(self.decode(Z_cf_tilde), data.rows[idx], C)
        return _Chunk(idx, Y_t, C, Z_cf_tilde, X_cf)

    def store(self, state: TrainingState, chunk: _Chunk, Y_cf: torch.Tensor, R: torch.Tensor) -> None:
        fields = {"idx": chunk.idx, "Y_t": chunk.Y_t, "Z_cf_tilde": chunk.Z_cf_tilde, "C": chunk.C, "R_tilde": R,
                  "reached": Y_cf.argmax(1) if self.all_targets else None}  # one buffer slot per batch
        for s in range(0, len(chunk.idx), self.cfg.batch_size):
            state.buffer.append(**{k: v[s:s + self.cfg.batch_size] for k, v in fields.items() if v is not None})

    def set_learning_rates(self, state: TrainingState, step: int) -> None:
        """Linear decay from the initial rates to ``lr_decay`` times them at ``state.lr_steps`` (then constant)."""
        if self.cfg.lr_decay != 1.0:
            scale = 1.0 - (1.0 - self.cfg.lr_decay) * min(1.0, step / state.lr_steps)
            for opt, lrs in ((self.opt_actor, state.base_lrs["actor"]), (self.opt_critic, state.base_lrs["critic"])):
                for group, lr in zip(opt.param_groups, lrs):
                    group["lr"] = lr * scale

    def update(self, data: TrainingData, state: TrainingState, step: int, update: int) -> None:
        """One DDPG update on a replayed batch: the critic regresses the reward, the actor ascends the critic while
        staying sparse (and consistent)."""
        self.set_learning_rates(state, step)
        b = state.buffer.sample(state.generator)
        rows, Z, Y_m, C = data.rows[b["idx"]], data.Z[b["idx"]], data.Y_m[b["idx"]], b.get("C")
        s = self.task.state(Z, Y_m, b["Y_t"], C)
        # critic: regress the noisy counterfactual's reward (of every target at once where that is exact)
        critic_in, R = (all_targets_batch(s, self.target_cols, b["Z_cf_tilde"], b["reached"], self.task.y_dim,
                                          state.generator) if self.all_targets
                        else (torch.cat([s, b["Z_cf_tilde"]], 1), b["R_tilde"]))
        loss_critic = F.mse_loss(self.critic(critic_in).squeeze(1), R)
        self.opt_critic.zero_grad(set_to_none=True)
        loss_critic.backward()
        self.opt_critic.step()
        # actor: maximise Q, stay near the input (sparsity) and on the autoencoder's manifold (consistency)
        with frozen(self.critic, self.ex.decoder, self.ex.encoder):
            loss, losses, Z_cf, X_cf = self.actor_loss(rows, s, C)
            self.opt_actor.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_actor.step()
        if self.ex.components["callbacks"]:
            losses = {"critic_loss": float(loss_critic.detach()), **{k: float(v) for k, v in losses.items()}}
            sample = self.sample(b, rows, Z, Y_m, C, Z_cf, X_cf)
            for cb in self.ex.components["callbacks"]:
                cb(step=step, update=update, model=self.ex, sample=sample, losses=losses)

    def actor_loss(self, rows: Rows, s: torch.Tensor, C: torch.Tensor | None) -> tuple:
        """``-Q + coeff_sparsity * sparsity (+ coeff_consistency * consistency + saturation penalty)``; also returns
        the losses (detached), the counterfactual embedding and its post-processed decoding (if computed)."""
        cfg = self.cfg
        pre = self.actor.preactivation(s) if self.penalise else None
        Z_cf = torch.tanh(pre) if pre is not None else self.actor(s)
        q = self.critic(torch.cat([s, Z_cf], 1)).squeeze(1)                        # [B]
        decoded = self.decode(Z_cf)
        weight = None if not cfg.sparsity_gate else 1.0 - cfg.sparsity_gate * (1.0 - q.detach().clamp(0.0, 1.0))
        losses = {"actor_loss": -q.mean(), **self.space.sparsity(decoded, rows, weight)}
        loss = losses["actor_loss"] + cfg.coeff_sparsity * sum(v for k, v in losses.items() if k != "actor_loss")
        if pre is not None:
            loss = loss + cfg.saturation_penalty * pre.pow(2).mean()
        X_cf, losses["consistency_loss"] = None, torch.zeros((), device=s.device)
        if cfg.coeff_consistency:  # MSE to the re-encoding of the post-processed decoding
            with torch.no_grad():
                X_cf = self.space.counterfactual(_detach(decoded), rows, C)
                target = self.encode(self.space.encoder_input(X_cf))
            losses["consistency_loss"] = F.mse_loss(Z_cf, target)
            loss = loss + cfg.coeff_consistency * losses["consistency_loss"]
        return loss, {k: v.detach() for k, v in losses.items()}, Z_cf.detach(), X_cf

    def sample(self, b: dict, rows: Rows, Z: torch.Tensor, Y_m: torch.Tensor, C: Any, Z_cf: torch.Tensor,
               X_cf: Any) -> _Sample:
        """The callbacks' view of the update's batch (model-space ``X``; counterfactuals decoded on first access)."""
        def model_space(Z_action: torch.Tensor) -> Any:
            with torch.no_grad():
                return self.space.encoder_input(self.space.counterfactual(self.decode(Z_action), rows, C))

        return _Sample(X=rows.model, Y_m=Y_m, Y_t=b["Y_t"], Z=Z, Z_cf_tilde=b["Z_cf_tilde"], C=C, R_tilde=b["R_tilde"],
                       Z_cf=Z_cf, X_cf_tilde=lambda: model_space(b["Z_cf_tilde"]),
                       X_cf=lambda: model_space(Z_cf) if X_cf is None else self.space.encoder_input(X_cf))


def _detach(x: Any) -> Any:
    return [e.detach() for e in x] if isinstance(x, (list, tuple)) else x.detach()
