"""CFRL's losses (Samoilescu et al. 2021, section 3): the critic's all-targets regression batch and the actor's
sparsity terms (the consistency loss is an MSE, in :meth:`~.ddpg.DDPG.actor_loss`). Pure functions of tensors."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

ALL_TARGETS_MAX = 32
"""With more classes than this, the all-targets critic batch holds this many random targets per transition."""


def sample_mean(elementwise: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of a per-element loss ``[B, ...]``; with ``weight`` ``[B]``, each sample's mean times its weight, averaged.

    Without weights this is the plain mean (bit-identical to ``F.l1_loss`` for ``|a - b|``)."""
    if weight is None:
        return elementwise.mean()
    return (elementwise.flatten(1).mean(1) * weight).mean()


def l1_sparsity(X_hat_cf: torch.Tensor, X: torch.Tensor, weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """L1 between the decoded counterfactual and the (pre-processed) input, as alibi's image explainer."""
    return {"sparsity_loss": sample_mean((X_hat_cf - X).abs(), weight)}


def tabular_sparsity(heads: Sequence[torch.Tensor], X: torch.Tensor, n_num: int, pad: object, weight_num: float,
                     weight_cat: float, weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """L1 on the standardised numerical head + L0 on the categorical heads (straight-through one-hot: forward the
    hard argmax, backward the softmax), each a mean over features.

    ``heads``: the decoder's ``[numerical (if n_num), logits per categorical feature...]``; ``X``: model-space rows
    ``[B, n_num + sum K]``; ``pad``: the preprocessor's ``pad_categorical`` (``[B, sum K] -> [B, n_cat, Kmax]``).
    """
    out, h = {}, int(n_num > 0)  # h: the first categorical head
    if n_num:
        out["sparsity_num_loss"] = weight_num * sample_mean((heads[0] - X[:, :n_num]).abs(), weight)
    if len(heads) > h:
        logits = pad(torch.cat(list(heads[h:]), 1), float("-inf"))             # [B, n_cat, Kmax]
        target = pad(X[:, n_num:], 0.0)
        prob = logits.softmax(-1)
        hard = F.one_hot(prob.argmax(-1), prob.shape[-1]).to(prob.dtype)
        changed = 0.5 * (hard + prob - prob.detach() - target).abs().sum(-1)   # [B, n_cat]: 1 per changed feature
        out["sparsity_cat_loss"] = weight_cat * sample_mean(changed, weight)
    return out


def all_targets_batch(state: torch.Tensor, target_cols: slice, Z_cf_tilde: torch.Tensor, reached: torch.Tensor,
                      classes: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Critic inputs and exact rewards of each replayed transition under every target class.

    With the default classification reward, the reward of target ``t`` is 1 exactly when the black box predicted
    ``t`` (``reached``), so each transition answers all targets at once. ``state`` ``[B, S]`` holds the one-hot
    target in ``target_cols``; returns ``[B * T, S + latent]`` inputs (target-major) and ``[B * T]`` rewards, ``T =
    classes`` (or ``ALL_TARGETS_MAX`` random targets beyond that many classes).
    """
    B = len(reached)
    if classes <= ALL_TARGETS_MAX:
        t = torch.arange(classes, device=state.device).repeat_interleave(B)          # [K * B], target-major
    else:  # uniform random targets: forcing the reached class in would bias the critic towards success
        t = torch.randint(0, classes, (ALL_TARGETS_MAX * B,), device=state.device, generator=generator)
    n = len(t) // B
    states = state.repeat(n, 1)                                                     # [n * B, S]
    states[:, target_cols] = F.one_hot(t, classes).to(state.dtype)
    rewards = (t == reached.repeat(n)).to(state.dtype)
    return torch.cat([states, Z_cf_tilde.repeat(n, 1)], 1), rewards
