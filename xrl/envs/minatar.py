"""MinAtar games as gymnasium environments with channels-first float observations and named channels/actions.

MinAtar (Young & Tian, 2019, https://arxiv.org/abs/1903.03176) renders each game as a 10 x 10 grid of boolean object
channels. :class:`MinAtarEnv` exposes them as ``float32 [C, 10, 10]`` in {0, 1} (channels first, ready for a CNN),
keeps the game's own channel names (``channel_names``) and readable names for the game's minimal action set
(``action_names``), and puts the full object channels into ``info["objects"]`` on every reset/step, so wrappers that
hide channels (:class:`FreewayPOMDP`) still let interpretability metrics score against the ground truth.

The dynamics are MinAtar's own: ``env.unwrapped.game`` is the underlying :class:`minatar.Environment` (sticky actions
and difficulty ramping included); a seed passed to ``reset(seed=...)`` seeds it exactly like ``Environment.seed``.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .._validation import check_scalar, check_type, error_message, suggest

MINATAR_GAMES: tuple[str, ...] = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")

# MinAtar's full action map is ['n', 'l', 'u', 'r', 'd', 'f'] (minatar/environments/*.py: action_map)
_FULL_ACTION_NAMES = ("NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE")

_ALIASES = {"spaceinvaders": "space_invaders", "space-invaders": "space_invaders", "space invaders": "space_invaders"}


def _canonical_game(game: Any) -> str:
    check_type("game", game, str)
    name = game.strip().lower()
    if name.startswith("minatar/"):
        name = name.split("/", 1)[1].split("-v", 1)[0]
    name = _ALIASES.get(name, name)
    if name not in MINATAR_GAMES:
        hint = suggest(name, MINATAR_GAMES)
        raise ValueError(error_message("game", "one of " + ", ".join(map(repr, MINATAR_GAMES)), game,
                                       hint or "see xrl.envs.MINATAR_GAMES"))
    return name


# one colour per channel index (cycled); like MinAtar's own display, a cell shows its highest-index channel
_PALETTE = np.array([[255, 255, 255], [230, 60, 60], [60, 160, 230], [250, 200, 40], [120, 220, 120],
                     [200, 100, 220], [250, 140, 60], [90, 90, 200], [170, 170, 170], [40, 200, 200]], np.uint8)


def minatar_rgb(objects: np.ndarray, scale: int = 1) -> np.ndarray:
    """Colour picture of MinAtar object channels: ``[C, H, W]`` (bool/float) -> ``uint8 [H*scale, W*scale, 3]``."""
    objects = np.asarray(objects) > 0.5
    img = np.zeros((*objects.shape[1:], 3), np.uint8)
    for c in range(objects.shape[0]):
        img[objects[c]] = _PALETTE[c % len(_PALETTE)]
    return img.repeat(scale, 0).repeat(scale, 1) if scale > 1 else img


class MinAtarEnv(gym.Env):
    """One MinAtar game as a gymnasium environment.

    Parameters
    ----------
    game : str
        One of :data:`MINATAR_GAMES` (``"freeway"``, ``"breakout"``, ...).
    sticky_action_prob : float, default 0.1
        Probability that the previous action is repeated (MinAtar's default).
    difficulty_ramping : bool, default True
        MinAtar's difficulty ramping (its default).
    use_minimal_action_set : bool, default True
        Act in the game's minimal action set (freeway: NOOP, UP, DOWN); ``False`` uses all 6 MinAtar actions.
    max_episode_steps : int or None, default None
        Truncate episodes after this many steps (MinAtar itself has no limit; Freeway ends after 2,500 steps).

    Attributes
    ----------
    game : minatar.Environment
        The underlying MinAtar environment (``game.env`` is the game object, e.g. Freeway's ``move_timer``).
    action_names : list of str
        Name of each action index, e.g. ``["NOOP", "UP", "DOWN"]`` for Freeway.
    channel_names : list of str
        Name of each observation channel, e.g. ``["chicken", "car", "speed1", ...]`` for Freeway.

    Observations are ``float32 [C, 10, 10]`` in {0, 1}; ``info["objects"]`` is the same state as ``bool [C, 10, 10]``.

    Examples
    --------
    >>> env = MinAtarEnv("freeway")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, env.action_names
    ((7, 10, 10), ['NOOP', 'UP', 'DOWN'])
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, game: str = "freeway", *, sticky_action_prob: float = 0.1, difficulty_ramping: bool = True,
                 use_minimal_action_set: bool = True, max_episode_steps: int | None = None,
                 render_mode: str | None = None):
        import minatar

        self.game_name = _canonical_game(game)
        check_scalar("sticky_action_prob", sticky_action_prob, (int, float), low=0.0, high=1.0)
        check_type("difficulty_ramping", difficulty_ramping, bool)
        if max_episode_steps is not None:
            check_scalar("max_episode_steps", max_episode_steps, int, low=1)
        self.sticky_action_prob = float(sticky_action_prob)
        self.difficulty_ramping = difficulty_ramping
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.game = minatar.Environment(self.game_name, sticky_action_prob=self.sticky_action_prob,
                                        difficulty_ramping=difficulty_ramping)
        self.action_set = (list(self.game.minimal_action_set()) if use_minimal_action_set
                           else list(range(self.game.num_actions())))
        self.action_names = [_FULL_ACTION_NAMES[a] for a in self.action_set]
        channels = self.game.env.channels  # private name -> index dict; the only place MinAtar names its channels
        self.channel_names = [name for name, _ in sorted(channels.items(), key=lambda kv: kv[1])]
        h, w, c = self.game.state_shape()
        self.observation_space = spaces.Box(0.0, 1.0, shape=(c, h, w), dtype=np.float32)
        self.action_space = spaces.Discrete(len(self.action_set))
        self._steps = 0

    # -- helpers -----------------------------------------------------------------------------------------------
    def objects(self) -> np.ndarray:
        """The current object channels, ``bool [C, 10, 10]`` (channels first)."""
        return np.ascontiguousarray(np.moveaxis(self.game.state(), -1, 0))

    def _obs_info(self) -> tuple[np.ndarray, dict[str, Any]]:
        objects = self.objects()
        return objects.astype(np.float32), {"objects": objects}

    # -- gymnasium API -----------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.game.seed(int(seed))
            self.action_space.seed(int(seed))
        self.game.reset()
        self._steps = 0
        return self._obs_info()

    def step(self, action):
        a = int(action)
        if not 0 <= a < len(self.action_set):
            raise ValueError(error_message("action", f"an integer in [0, {len(self.action_set) - 1}] "
                                           f"({', '.join(self.action_names)})", action))
        reward, terminated = self.game.act(self.action_set[a])
        self._steps += 1
        truncated = bool(self.max_episode_steps is not None and self._steps >= self.max_episode_steps
                         and not terminated)
        obs, info = self._obs_info()
        return obs, float(reward), bool(terminated), truncated, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return minatar_rgb(self.objects())

    def __repr__(self) -> str:
        return (f"MinAtarEnv(game={self.game_name!r}, sticky_action_prob={self.sticky_action_prob}, "
                f"difficulty_ramping={self.difficulty_ramping}, actions={self.action_names})")


class FreewayPOMDP(gym.ObservationWrapper):
    """Freeway with only the chicken and car channels (``2 x 10 x 10``), as DreamerV2's ``freewayPOMDP``.

    DreamerV2's MinAtar wrapper (RajGhugare19/dreamerv2, ``dreamerv2/utils/wrapper.py``) keeps observation channels
    0 and 1, dropping the five ``speed*`` trail channels: the agent sees where the cars are but not their speed or
    direction, so it must infer them from history. ``info["objects"]`` still holds all 7 channels.
    """

    KEPT_CHANNELS = (0, 1)

    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = env.unwrapped
        if getattr(base, "game_name", None) != "freeway":
            raise ValueError(error_message("env", "a MinAtar freeway environment",
                                           getattr(base, "game_name", type(base).__name__)))
        self.channel_names = [base.channel_names[i] for i in self.KEPT_CHANNELS]
        _, h, w = env.observation_space.shape
        self.observation_space = spaces.Box(0.0, 1.0, shape=(len(self.KEPT_CHANNELS), h, w), dtype=np.float32)

    def observation(self, observation):
        return np.ascontiguousarray(observation[list(self.KEPT_CHANNELS)])


class OneHotAction(gym.ActionWrapper):
    """Take actions as one-hot vectors (``float32 [A]``), as DreamerV2's ``OneHotAction`` wrapper.

    ``step`` accepts a one-hot vector (its argmax is taken) or a plain integer; ``action_space`` is a
    ``Box(0, 1, (A,))`` whose ``sample()`` returns a one-hot vector.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        if not isinstance(env.action_space, spaces.Discrete):
            raise TypeError(error_message("env.action_space", "a Discrete action space", env.action_space))
        self.n = int(env.action_space.n)
        self.action_space = _OneHotSpace(self.n)

    def action(self, action):
        if np.isscalar(action) or np.ndim(action) == 0:
            return int(action)
        action = np.asarray(action)
        if action.shape != (self.n,):
            raise ValueError(error_message("action", f"a one-hot vector of shape ({self.n},) or an integer", action))
        return int(np.argmax(action))

    def __getattr__(self, name):  # channel_names / action_names of the wrapped env
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.env, name)


class _OneHotSpace(spaces.Box):
    def __init__(self, n: int):
        super().__init__(0.0, 1.0, shape=(n,), dtype=np.float32)
        self.n = n

    def sample(self, mask=None, probability=None):
        out = np.zeros(self.n, dtype=np.float32)
        out[self.np_random.integers(self.n)] = 1.0
        return out


def make_minatar(game: str = "freeway", *, pomdp: bool = False, one_hot_actions: bool = False,
                 sticky_action_prob: float = 0.1, difficulty_ramping: bool = True,
                 use_minimal_action_set: bool = True, max_episode_steps: int | None = None) -> gym.Env:
    """Build a MinAtar game, optionally as the Freeway POMDP and/or with one-hot actions.

    Parameters
    ----------
    game : str
        One of :data:`MINATAR_GAMES`; unknown names raise ``ValueError`` with close matches.
    pomdp : bool, default False
        Wrap in :class:`FreewayPOMDP` (Freeway only).
    one_hot_actions : bool, default False
        Wrap in :class:`OneHotAction`.
    sticky_action_prob, difficulty_ramping, use_minimal_action_set, max_episode_steps
        See :class:`MinAtarEnv`.

    Examples
    --------
    >>> env = make_minatar("freeway", pomdp=True)
    >>> obs, info = env.reset(seed=123)
    >>> obs.shape, info["objects"].shape, env.channel_names
    ((2, 10, 10), (7, 10, 10), ['chicken', 'car'])
    """
    env: gym.Env = MinAtarEnv(game, sticky_action_prob=sticky_action_prob, difficulty_ramping=difficulty_ramping,
                              use_minimal_action_set=use_minimal_action_set, max_episode_steps=max_episode_steps)
    if pomdp:
        if env.unwrapped.game_name != "freeway":
            raise ValueError(error_message("pomdp", "False for games other than 'freeway'", pomdp,
                                           "the POMDP variant exists only for freeway"))
        env = FreewayPOMDP(env)
    if one_hot_actions:
        env = OneHotAction(env)
    return env
