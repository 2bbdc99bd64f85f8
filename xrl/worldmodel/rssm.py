"""Discrete recurrent state-space model (DreamerV2, Hafner et al. 2021, "Mastering Atari with Discrete World Models").

State per step: a deterministic GRU state ``deter`` (h_t), and ``C`` categorical variables with ``K`` classes, kept as
logits ``logit`` [.., C*K] and a straight-through one-hot sample ``stoch`` [.., C*K]. Module and parameter names
follow the public PyTorch DreamerV2 code so its state dicts load unchanged (see `xrl.worldmodel.agent`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributions as td
from torch import nn

from .._validation import error_message


class RSSMDiscState(NamedTuple):
    """Discrete RSSM state (field order as in DreamerV2: logit, stoch, deter).

    logit : [..., C*K] categorical logits of the stochastic state
    stoch : [..., C*K] one-hot sample (straight-through: gradients reach ``logit``)
    deter : [..., D] deterministic GRU state
    """

    logit: torch.Tensor
    stoch: torch.Tensor
    deter: torch.Tensor


def stack_states(states: list[RSSMDiscState], dim: int = 0) -> RSSMDiscState:
    """Stack a list of states along a new dimension ``dim``."""
    return RSSMDiscState(*(torch.stack([getattr(s, f) for s in states], dim=dim) for f in RSSMDiscState._fields))


def detach_state(state: RSSMDiscState) -> RSSMDiscState:
    return RSSMDiscState(*(t.detach() for t in state))


def map_state(state: RSSMDiscState, fn) -> RSSMDiscState:
    """Apply ``fn`` to each field (e.g. a reshape ``[L, B, X] -> [L*B, X]``)."""
    return RSSMDiscState(*(fn(t) for t in state))


def straight_through_sample(logit: torch.Tensor, category_size: int, class_size: int,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """One-hot sample of each categorical with straight-through gradients.

    Forward value: a one-hot vector per categorical; backward: the gradient of ``softmax(logit)``
    (``sample + probs - probs.detach()``).

    Parameters
    ----------
    logit : [..., C*K] tensor
    Returns
    -------
    [..., C*K] tensor, one-hot per block of K.
    """
    shape = logit.shape
    logit = logit.reshape(*shape[:-1], category_size, class_size)  # [..., C*K] -> [..., C, K]
    probs = torch.softmax(logit, dim=-1)
    idx = torch.multinomial(probs.detach().reshape(-1, class_size), 1, generator=generator)  # [N, 1]
    onehot = torch.zeros_like(probs).reshape(-1, class_size).scatter_(1, idx, 1.0).reshape(probs.shape)
    stoch = onehot + (probs - probs.detach())  # forward: exactly one-hot
    return stoch.reshape(shape)  # [..., C, K] -> [..., C*K]


def categorical_kl(logit_p: torch.Tensor, logit_q: torch.Tensor, category_size: int, class_size: int) -> torch.Tensor:
    """KL(p || q) summed over the C categoricals; inputs [..., C*K], output [...]."""
    lp = torch.log_softmax(logit_p.reshape(*logit_p.shape[:-1], category_size, class_size), -1)
    lq = torch.log_softmax(logit_q.reshape(*logit_q.shape[:-1], category_size, class_size), -1)
    return (lp.exp() * (lp - lq)).sum(-1).sum(-1)


def kl_balance_loss(prior_logit: torch.Tensor, post_logit: torch.Tensor, category_size: int, class_size: int,
                    alpha: float = 0.8, free_nats: float = 0.0) -> torch.Tensor:
    """KL balancing (DreamerV2 eq. 2): ``alpha * KL(sg(post) || prior) + (1 - alpha) * KL(post || sg(prior))``.

    The first term trains the prior towards the posterior; the second regularises the posterior towards the prior.
    Each term is the mean over batch/time of the KL summed over categoricals, then clipped below at ``free_nats``.
    """
    lhs = categorical_kl(post_logit.detach(), prior_logit, category_size, class_size).mean()
    rhs = categorical_kl(post_logit, prior_logit.detach(), category_size, class_size).mean()
    if free_nats > 0:
        lhs = lhs.clamp(min=free_nats)
        rhs = rhs.clamp(min=free_nats)
    return alpha * lhs + (1 - alpha) * rhs


class RSSM(nn.Module):
    """Discrete RSSM with the public DreamerV2 layout.

    Parameters
    ----------
    action_size : int
    rssm_node_size : int, hidden width of the prior/posterior heads
    embedding_size : int, size of the observation embedding
    deter_size, category_size, class_size : latent sizes (D, C, K)

    Examples
    --------
    >>> rssm = RSSM(3, 32, 16, deter_size=24, category_size=4, class_size=5)
    >>> s = rssm._init_rssm_state(batch_size=2)
    >>> prior, post = rssm.rssm_observe(torch.zeros(2, 16), torch.zeros(2, 3), True, s)
    >>> tuple(post.stoch.shape), tuple(rssm.get_model_state(post).shape)
    ((2, 20), (2, 44))
    """

    def __init__(self, action_size: int, rssm_node_size: int, embedding_size: int, deter_size: int = 200,
                 category_size: int = 20, class_size: int = 20):
        super().__init__()
        self.action_size = action_size
        self.node_size = rssm_node_size
        self.embedding_size = embedding_size
        self.deter_size = deter_size
        self.category_size = category_size
        self.class_size = class_size
        self.stoch_size = category_size * class_size
        self.rnn = nn.GRUCell(deter_size, deter_size)
        self.fc_embed_state_action = nn.Sequential(nn.Linear(self.stoch_size + action_size, deter_size), nn.ELU())
        self.fc_prior = nn.Sequential(nn.Linear(deter_size, rssm_node_size), nn.ELU(),
                                      nn.Linear(rssm_node_size, self.stoch_size))
        self.fc_posterior = nn.Sequential(nn.Linear(deter_size + embedding_size, rssm_node_size), nn.ELU(),
                                          nn.Linear(rssm_node_size, self.stoch_size))
        self.generator: torch.Generator | None = None  # set by callers that want seeded sampling

    @property
    def device(self) -> torch.device:
        return self.rnn.weight_ih.device

    def _init_rssm_state(self, batch_size: int) -> RSSMDiscState:
        """All-zero state: logit/stoch [B, C*K], deter [B, D] (as in DreamerV2)."""
        z = torch.zeros(batch_size, self.stoch_size, device=self.device)
        return RSSMDiscState(z, z.clone(), torch.zeros(batch_size, self.deter_size, device=self.device))

    def get_model_state(self, state: RSSMDiscState) -> torch.Tensor:
        """``concat(deter, stoch)``: [..., D + C*K], the input of the actor, critic and heads."""
        return torch.cat((state.deter, state.stoch), dim=-1)

    def get_stoch_state(self, logit: torch.Tensor) -> torch.Tensor:
        return straight_through_sample(logit, self.category_size, self.class_size, self.generator)

    def _check(self, embed: torch.Tensor | None, prev_action: torch.Tensor, prev_state: RSSMDiscState) -> None:
        if prev_action.shape[-1] != self.action_size:
            raise ValueError(error_message("prev_action", f"a one-hot tensor [..., {self.action_size}]", prev_action,
                                           "pass one-hot actions of the model's action_size"))
        if embed is not None and embed.shape[-1] != self.embedding_size:
            raise ValueError(error_message("embed", f"a tensor [..., {self.embedding_size}]", embed,
                                           "encode observations with the matching ObsEncoder"))
        if prev_state.deter.shape[-1] != self.deter_size or prev_state.stoch.shape[-1] != self.stoch_size:
            raise ValueError(error_message("prev_rssm_state", f"deter [..., {self.deter_size}] and stoch "
                                           f"[..., {self.stoch_size}]", prev_state.deter))

    def rssm_imagine(self, prev_action: torch.Tensor, prev_rssm_state: RSSMDiscState, nonterms=True) -> RSSMDiscState:
        """One prior step ``h_t = GRU(h_{t-1}, [s_{t-1}, a_{t-1}])``, ``s_t ~ p(s_t | h_t)``.

        ``nonterms`` (bool or [B, 1] tensor) zeroes the previous state after a terminal step.
        """
        self._check(None, prev_action, prev_rssm_state)
        x = self.fc_embed_state_action(torch.cat([prev_rssm_state.stoch * nonterms, prev_action], dim=-1))
        deter = self.rnn(x, prev_rssm_state.deter * nonterms)
        logit = self.fc_prior(deter)
        return RSSMDiscState(logit, self.get_stoch_state(logit), deter)

    def rssm_observe(self, embed: torch.Tensor, prev_action: torch.Tensor, nonterm, prev_rssm_state: RSSMDiscState
                     ) -> tuple[RSSMDiscState, RSSMDiscState]:
        """Prior and posterior of one step; the posterior also sees the observation embedding ``e_t``.

        Parameters
        ----------
        embed : [B, E] observation embedding; prev_action : [B, A] one-hot; nonterm : bool or [B, 1];
        prev_rssm_state : state of the previous step.
        Returns
        -------
        (prior, posterior) : two `RSSMDiscState` sharing ``deter``.
        """
        self._check(embed, prev_action, prev_rssm_state)
        prior = self.rssm_imagine(prev_action, prev_rssm_state, nonterm)
        logit = self.fc_posterior(torch.cat([prior.deter, embed], dim=-1))
        return prior, RSSMDiscState(logit, self.get_stoch_state(logit), prior.deter)

    def rollout_observation(self, seq_len: int, embed: torch.Tensor, action: torch.Tensor, nonterms: torch.Tensor,
                            prev_rssm_state: RSSMDiscState) -> tuple[RSSMDiscState, RSSMDiscState]:
        """Filter a sequence; inputs are time-major: embed [L, B, E], action [L, B, A] (a_{t-1}), nonterms [L, B, 1].

        Returns stacked priors and posteriors, each field [L, B, X].
        """
        priors, posts = [], []
        for t in range(seq_len):
            prior, post = self.rssm_observe(embed[t], action[t] * nonterms[t], nonterms[t], prev_rssm_state)
            priors.append(prior)
            posts.append(post)
            prev_rssm_state = post
        return stack_states(priors), stack_states(posts)

    def rollout_imagination(self, horizon: int, actor: nn.Module, prev_rssm_state: RSSMDiscState):
        """Imagine ``horizon`` steps with ``actor``; returns states [H, N, X], log-probs [H, N], entropies [H, N]."""
        state = prev_rssm_state
        states, log_probs, entropies = [], [], []
        for _ in range(horizon):
            action, dist = actor(self.get_model_state(state).detach())
            state = self.rssm_imagine(action, state)
            states.append(state)
            entropies.append(dist.entropy())
            log_probs.append(dist.log_prob(torch.round(action.detach())))
        return stack_states(states), torch.stack(log_probs), torch.stack(entropies)
