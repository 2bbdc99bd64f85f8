"""Configuration of the DreamerV2-style agent: the public MinAtar defaults and a small CPU config.

`MinAtarConfig` reproduces the hyper-parameters of the public PyTorch DreamerV2 MinAtar code (RajGhugare19/dreamerv2,
`dreamerv2/training/config.py`) with the field names the seed notebooks use (``config.seq_len``,
``config.rssm_info.category_size``, ...). `cpu_config` shrinks batch, sequence length and training length so that a
Freeway agent trains in about an hour on two CPU cores. Everything is JSON-serialisable (`to_dict` / `from_dict`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .._validation import check_keys, check_scalar, error_message


@dataclass
class RSSMInfo:
    """Sizes of the discrete RSSM latent state."""

    deter_size: int = 200
    """Size of the GRU (deterministic) state ``h_t``."""
    category_size: int = 20
    """Number of categorical variables ``C`` in the stochastic state ``s_t`` (DreamerV2's "category_size")."""
    class_size: int = 20
    """Number of classes ``K`` of each categorical variable."""

    @property
    def stoch_size(self) -> int:
        """Flattened size ``C * K`` of the one-hot stochastic state."""
        return self.category_size * self.class_size


@dataclass
class MinAtarConfig:
    """DreamerV2 MinAtar hyper-parameters (defaults = the public code's defaults).

    Parameters mirror ``dreamerv2.training.config.MinAtarConfig``; unknown keyword names raise a `ValueError`.
    ``obs_dtype``, ``action_dtype``, ``eval_render`` and ``model_dir`` are accepted for compatibility with the seed
    notebook and otherwise unused by the model code.

    Examples
    --------
    >>> cfg = MinAtarConfig(env="freeway", obs_shape=(2, 10, 10), action_size=3)
    >>> cfg.rssm_info.category_size, cfg.batch_size
    (20, 50)
    """

    env: str = "freeway"
    """MinAtar game name."""
    obs_shape: tuple = (2, 10, 10)
    """Observation shape ``(C, 10, 10)``; Freeway POMDP has 2 channels (chicken, car)."""
    action_size: int = 3
    """Number of (one-hot) actions; Freeway's minimal action set has 3 (NOOP, UP, DOWN)."""
    pomdp: bool = True
    """Train on the POMDP variant (Freeway: chicken + car channels only)."""
    obs_dtype: Any = None
    """Accepted for seed compatibility (observations are float32 here)."""
    action_dtype: Any = None
    """Accepted for seed compatibility (actions are float32 one-hot here)."""
    model_dir: str = "runs/worldmodel"
    """Directory for checkpoints written by the training script."""
    eval_episode: int = 4
    """Episodes per evaluation."""
    eval_render: bool = False
    """Accepted for seed compatibility (no on-screen rendering here)."""
    seed: int = 0
    """Seed of networks, buffer sampling, exploration and environments."""

    # buffer and training loop
    capacity: int = 1_000_000
    """Replay buffer capacity in transitions."""
    train_steps: int = 5_000_000
    """Environment frames to train for."""
    train_every: int = 50
    """Environment frames between two training phases."""
    collect_intervals: int = 5
    """Gradient updates per training phase."""
    batch_size: int = 50
    """Sequences per training batch."""
    seq_len: int = 50
    """Length of each training sequence (also the default explanation rollout length)."""
    seed_steps: int = 4000
    """Frames collected by the seed policy before training starts."""
    seed_action_probs: tuple | None = None
    """Action probabilities of the seed (data-collection) policy; ``None`` = uniform as in DreamerV2."""
    save_every: int = 100_000
    """Frames between checkpoints."""

    # latent space
    embedding_size: int = 200
    """Size of the observation embedding ``e_t``."""
    rssm_node_size: int = 200
    """Hidden size of the prior/posterior heads."""
    rssm_info: RSSMInfo = field(default_factory=RSSMInfo)
    """Sizes of the latent state."""

    # objective
    grad_clip: float = 100.0
    """Gradient-norm clip of every optimiser."""
    discount_: float = 0.99
    """Discount ``gamma``."""
    lambda_: float = 0.95
    """Lambda of the lambda-returns."""
    horizon: int = 10
    """Imagination horizon."""
    imagine_starts: int | None = None
    """Number of posterior states (of the B*L in a batch) that start imagination; ``None`` = all, as DreamerV2."""
    lr_model: float = 2e-4
    """World-model learning rate."""
    lr_actor: float = 4e-5
    """Actor learning rate."""
    lr_critic: float = 1e-4
    """Critic learning rate."""
    kl_scale: float = 0.1
    """Weight of the KL term in the world-model loss."""
    reward_scale: float = 1.0
    """Weight of the reward log-likelihood."""
    discount_scale: float = 5.0
    """Weight of the discount (non-terminal) log-likelihood."""
    kl_balance: float = 0.8
    """KL balancing ``alpha``: ``alpha * KL(sg(post) || prior) + (1 - alpha) * KL(post || sg(prior))``."""
    free_nats: float = 0.0
    """Lower bound on each KL term (0 = off, as in DreamerV2 MinAtar)."""
    slow_target_update: int = 100
    """Environment frames between copies of the critic into the target critic (DreamerV2 counts frames)."""
    slow_target_fraction: float = 1.0
    """Mixing fraction of the target-critic update (1 = hard copy)."""

    # actor, critic and heads
    node_size: int = 100
    """Hidden width of the actor, critic, reward and discount MLPs."""
    layers: int = 3
    """Hidden layers of those MLPs."""
    conv_depth: int = 16
    """Channels of the first encoder convolution (then 2x, 4x)."""
    conv_kernel: int = 3
    """Kernel size of the encoder/decoder convolutions."""
    train_noise: float = 0.4
    """Initial epsilon of epsilon-greedy exploration during training."""
    expl_min: float = 0.05
    """Final epsilon."""
    expl_decay: float = 7000.0
    """Epsilon decreases by 1/expl_decay per environment frame (DreamerV2: eps = max(min, noise - frame/decay))."""
    eval_noise: float = 0.0
    """Epsilon during evaluation."""
    actor_entropy_scale: float = 1e-3
    """Entropy bonus of the REINFORCE actor loss."""

    def __post_init__(self):
        if isinstance(self.rssm_info, dict):
            check_keys("rssm_info", self.rssm_info, [f.name for f in dataclasses.fields(RSSMInfo)])
            self.rssm_info = RSSMInfo(**self.rssm_info)
        self.obs_shape = tuple(int(s) for s in self.obs_shape)
        if len(self.obs_shape) != 3 or min(self.obs_shape) < 1:
            raise ValueError(error_message("obs_shape", "a (C, H, W) tuple of positive ints", self.obs_shape))
        if self.seed_action_probs is not None:
            self.seed_action_probs = tuple(float(p) for p in self.seed_action_probs)
            if len(self.seed_action_probs) != self.action_size or abs(sum(self.seed_action_probs) - 1) > 1e-6:
                raise ValueError(error_message("seed_action_probs", f"{self.action_size} probabilities summing to 1",
                                               self.seed_action_probs))
        for name in ("action_size", "batch_size", "seq_len", "horizon", "embedding_size", "train_every",
                     "collect_intervals", "node_size", "layers", "conv_depth", "conv_kernel"):
            check_scalar(name, getattr(self, name), int, low=1)
        check_scalar("kl_balance", self.kl_balance, (int, float), low=0, high=1)
        if self.seq_len < 2:
            raise ValueError(error_message("seq_len", "at least 2", self.seq_len))

    @property
    def modelstate_size(self) -> int:
        """Size of ``concat(deter, stoch)``."""
        return self.rssm_info.deter_size + self.rssm_info.stoch_size

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["obs_dtype"] = d["action_dtype"] = None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MinAtarConfig":
        check_keys("config", d, [f.name for f in dataclasses.fields(cls)])
        return cls(**d)


def cpu_config(**overrides) -> MinAtarConfig:
    """A small config for a Freeway POMDP agent on a few CPU cores (about an hour of training).

    Same latent sizes as DreamerV2 (deter 200, 20 x 20 categoricals, so seed code keeps working), but half the
    convolution channels (8/16/32), batch 16 x 16, imagination from 64 of the 256 posterior states, one update per
    16 frames, higher learning rates, and 7,500 seed frames collected with an UP-biased policy (NOOP/UP/DOWN with
    probabilities 0.15/0.7/0.15): Freeway's reward is sparse and a uniformly random policy almost never reaches the
    top, so an hour of CPU would otherwise see (almost) no reward. The learned agent is evaluated without any bias.
    """
    base = dict(batch_size=16, seq_len=16, train_every=16, collect_intervals=1, seed_steps=7500, imagine_starts=64,
                seed_action_probs=(0.15, 0.7, 0.15), train_steps=200_000, save_every=4000, capacity=300_000,
                conv_depth=8, lr_model=6e-4, lr_actor=3e-4, lr_critic=5e-4)
    base.update(overrides)
    return MinAtarConfig(**base)
