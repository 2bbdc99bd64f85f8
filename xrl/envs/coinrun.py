"""procgen CoinRun (Cobbe et al., 2020) as a vectorised environment with channels-first uint8 frames.

Needs the optional extra ``pip install "xrl[coinrun]"`` (``procgen2==0.10.7``, which pins ``numpy<2``); procgen is
imported only when :func:`make_coinrun` is called.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from .._validation import check_choice, check_scalar

COINRUN_INSTALL_HINT = ('CoinRun needs the optional procgen dependency: pip install "xrl[coinrun]" '
                        "(procgen2==0.10.7 and gym3; procgen2 requires numpy<2)")


def _import_procgen():
    try:
        from procgen import ProcgenGym3Env
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(COINRUN_INSTALL_HINT) from exc
    return ProcgenGym3Env


class CoinRunVecEnv:
    """``num_envs`` CoinRun games (procgen's gym3 env) behind the :mod:`xrl.envs.vector` interface.

    Observations are ``uint8 [N, 3, 64, 64]`` (channels first; :class:`~xrl.agents.ImpalaCNN` divides uint8 input
    by 255). Actions are integers in ``[0, 15)``; ``action_names[i]`` joins procgen's key combo (``"LEFT+UP"``, with
    ``"NOOP"`` for the empty combo) and ``action_combos`` keeps the raw tuples. ``info["level_complete"]`` is True
    where the episode that just ended collected the coin; ``info["level_seed"]`` is the new level's seed.

    Parameters
    ----------
    num_envs : int, default 64
    seed : int, default 0
        procgen's ``rand_seed`` (which levels are drawn and the in-level randomness).
    distribution_mode : {"easy", "hard"}, default "easy"
    num_levels : int, default 0
        Number of distinct levels (0 = unlimited, as for evaluation on unseen levels).
    start_level : int, default 0
        First level seed.
    **procgen_kwargs
        Passed to ``ProcgenGym3Env`` (e.g. ``paint_vel_info``).
    """

    env_name = "coinrun"

    def __init__(self, num_envs: int = 64, seed: int = 0, distribution_mode: str = "easy", num_levels: int = 0,
                 start_level: int = 0, **procgen_kwargs: Any):
        check_scalar("num_envs", num_envs, int, low=1)
        check_scalar("seed", seed, int, low=0)
        check_choice("distribution_mode", distribution_mode, ("easy", "hard", "extreme", "memory", "exploration"))
        check_scalar("num_levels", num_levels, int, low=0)
        check_scalar("start_level", start_level, int, low=0)
        self._cls = _import_procgen()
        self.num_envs = num_envs
        self.seed = seed
        self.distribution_mode = distribution_mode
        self.num_levels = num_levels
        self.start_level = start_level
        self.procgen_kwargs = procgen_kwargs
        self._env = None
        self._build(seed)
        self.action_combos = [tuple(c) for c in self._env.get_combos()]
        self.action_names = ["+".join(c) if c else "NOOP" for c in self.action_combos]
        self.single_observation_space = spaces.Box(0, 255, shape=(3, 64, 64), dtype=np.uint8)
        self.single_action_space = spaces.Discrete(len(self.action_names))
        self.channel_names = ["red", "green", "blue"]

    def _build(self, seed: int) -> None:
        if self._env is not None:
            self._env.close() if hasattr(self._env, "close") else None
        self._env = self._cls(num=self.num_envs, env_name="coinrun", distribution_mode=self.distribution_mode,
                              num_levels=self.num_levels, start_level=self.start_level, rand_seed=int(seed),
                              **self.procgen_kwargs)
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._fresh = True

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return (3, 64, 64)

    @property
    def num_actions(self) -> int:
        return len(self.action_names)

    def _obs(self, ob) -> np.ndarray:
        # [N, 64, 64, 3] -> [N, 3, 64, 64]
        return np.ascontiguousarray(ob["rgb"].transpose(0, 3, 1, 2))

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start new episodes; procgen is seeded at construction, so this rebuilds it (with ``seed`` if given)."""
        if seed is not None or not self._fresh:
            self._build(self.seed if seed is None else int(seed))
        self._fresh = False
        _, ob, _ = self._env.observe()
        return self._obs(ob), {"level_seed": np.array([i["level_seed"] for i in self._env.get_info()])}

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions).reshape(-1)
        if actions.shape[0] != self.num_envs:
            raise ValueError(f"actions: expected {self.num_envs} actions (one per env), got shape {actions.shape}")
        self._fresh = False
        self._env.act(actions.astype(np.int32))
        rew, ob, first = self._env.observe()
        infos = self._env.get_info()
        rew = np.asarray(rew, dtype=np.float32)
        done = np.asarray(first, dtype=bool)
        self._returns += rew
        self._lengths += 1
        ep_ret = np.where(done, self._returns, np.nan)
        ep_len = np.where(done, self._lengths, 0)
        self._returns[done] = 0.0
        self._lengths[done] = 0
        info = {"episode_return": ep_ret, "episode_length": ep_len,
                "level_complete": np.array([bool(i.get("prev_level_complete", 0)) for i in infos]) & done,
                "level_seed": np.array([i["level_seed"] for i in infos])}
        return self._obs(ob), rew, done, np.zeros_like(done), info

    def close(self) -> None:
        self._env = None

    def __repr__(self) -> str:
        return (f"CoinRunVecEnv(num_envs={self.num_envs}, distribution_mode={self.distribution_mode!r}, "
                f"num_levels={self.num_levels}, start_level={self.start_level}, seed={self.seed})")


def make_coinrun(num_envs: int = 64, seed: int = 0, distribution_mode: str = "easy", num_levels: int = 0,
                 start_level: int = 0, **procgen_kwargs: Any) -> CoinRunVecEnv:
    """Vectorised CoinRun (see :class:`CoinRunVecEnv`); raises ImportError naming ``xrl[coinrun]`` without procgen.

    Examples
    --------
    >>> venv = make_coinrun(num_envs=2, seed=0)          # doctest: +SKIP
    >>> obs, info = venv.reset()
    >>> obs.shape, venv.action_names[:3]
    ((2, 3, 64, 64), ['LEFT+DOWN', 'LEFT', 'LEFT+UP'])
    """
    return CoinRunVecEnv(num_envs=num_envs, seed=seed, distribution_mode=distribution_mode, num_levels=num_levels,
                         start_level=start_level, **procgen_kwargs)
