"""How CoinRun episodes end, read from the frames: success, a buzzsaw, an enemy, lava, or the time limit.

procgen's CoinRun (``coinrun.cpp``) ends an episode when the agent touches the coin (reward 10), a buzzsaw
(``SAW``), a walking enemy (``ENEMY``) or lava (``LAVA_TOP``/``LAVA_MID``), or when the episode reaches the time
limit (``timeout = 1000`` steps in procgen's ``Game``). In easy mode enemies and lava only appear at the bottom of
pits (pit floors hold one kind of danger: lava, a row of saws or a row of enemies); saws also stand on the ground.
The environment reports only the reward and the episode length, so :func:`classify_episode_end` tells the failures
apart from what the frames show.

How the frames are read
-----------------------
procgen draws every sprite by sampling the pixels of its asset images (Kenney's sprites, shipped inside the procgen
package) without blending, so almost every pixel of a 64 x 64 CoinRun frame has exactly the colour of some pixel of
some asset (only the soft edges of sprites are blends). :class:`CoinRunPalette` reads those assets (the
easy-mode background, the Dirt ground tiles, the beige player, crates, the coin, the two saw images, the two lava
tiles and the nine walking enemies) and records which assets use each colour. :func:`object_masks` then labels each
pixel of a frame by the object that owns its colour; colours shared by two objects are decided by their
neighbourhood (the mouse shares greys with the saw, the ladybug its orange with lava, the snail its yellow with the
coin; the grey of the saw's rim is also the grey of the ground, so it counts only where no wall is). Enemies' fading
trails (white drawn at partial opacity) are not used: the soft edges of the saw and of the agent look the same.
The palette is easy mode's (``distribution_mode="easy"``, as everywhere in xrl): the other modes draw random
backgrounds, ground themes and player colours that it does not know.

The camera follows the agent, which procgen draws at the same place in every frame (:data:`AGENT_BOX`). The
observation before the fatal step is the last one of an episode (procgen starts the next level inside the same
step), so the danger that ended a failed episode is next to the agent in that frame: one step moves the agent at
most half a tile (about 2.5 pixels) sideways and 1.5 tiles (about 7 pixels) vertically, and a saw's collision box is
a whole tile while its sprite is the lower half. :func:`death_cause` picks the hazard nearest to the agent box, with
vertical distances counted at half weight, within :data:`DANGER_REACH`.

Examples
--------
>>> from xrl.envs import make_coinrun, FinalFrames, classify_episode_end     # doctest: +SKIP
>>> env = make_coinrun(num_envs=8, seed=0); obs, _ = env.reset()
>>> frames = FinalFrames(num_envs=8, keep=3)
>>> while True:
...     frames.push(obs)
...     obs, rew, done, _, info = env.step(policy(obs))
...     for i, last in frames.pop_finished(done):
...         classify_episode_end(last, info["episode_length"][i], info["episode_return"][i])
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_scalar, error_message

__all__ = ["COINRUN_TIMEOUT", "COINRUN_GOAL_REWARD", "END_CAUSES", "HAZARDS", "AGENT_BOX", "DANGER_REACH",
           "CoinRunPalette", "coinrun_palette", "object_masks", "death_cause", "classify_episode_end",
           "classify_episode_ends", "FinalFrames"]

#: procgen's episode limit for CoinRun (``Game::timeout``): an episode that reaches it ends without reward.
COINRUN_TIMEOUT = 1000
#: Reward for touching the coin (``GOAL_REWARD`` in ``coinrun.cpp``), the only reward in CoinRun.
COINRUN_GOAL_REWARD = 10.0
#: The hazards that end a CoinRun episode early.
HAZARDS = ("saw", "enemy", "lava")
#: Every verdict of :func:`classify_episode_end`.
END_CAUSES = ("success", "saw", "enemy", "lava", "timeout", "unknown")
#: Rows ``y0..y1`` and columns ``x0..x1`` (inclusive) of the agent's body in every 64 x 64 CoinRun frame.
AGENT_BOX = (29, 34, 30, 33)
#: How far (pixels) from :data:`AGENT_BOX` a hazard can end the episode in one step: (sideways, vertically).
DANGER_REACH = (6, 12)

# asset files (relative to procgen/data/assets) of each object as drawn in easy mode (coinrun.cpp, asset_for_type)
_ENEMIES = ("slimeBlock", "slimePurple", "slimeBlue", "slimeGreen", "mouse", "snail", "ladybug", "wormGreen",
            "wormPink")
_ASSETS: dict[str, tuple[str, ...]] = {
    "background": ("platform_backgrounds/alien_bg.png",),
    "wall": ("kenney/Ground/Dirt/dirtCenter.png", "kenney/Ground/Dirt/dirtMid.png"),
    "player": tuple(f"kenney/Players/128x256/Beige/alienBeige_{s}.png" for s in ("stand", "jump", "walk1", "walk2")),
    "crate": tuple(f"kenney/Tiles/{n}.png" for n in ("boxCrate", "boxCrate_double", "boxCrate_single",
                                                     "boxCrate_warning")),
    "coin": ("kenney/Items/coinGold.png",),
    "saw": ("kenney/Enemies/sawHalf.png", "kenney/Enemies/sawHalf_move.png"),
    "lava": ("kenney/Tiles/lava.png", "kenney/Tiles/lavaTop_low.png"),
    "enemy": tuple(f"kenney/Enemies/{e}{s}.png" for e in _ENEMIES for s in ("", "_move")),
}
_GROUPS = tuple(_ASSETS)
_BIT = {g: 1 << i for i, g in enumerate(_GROUPS)}


def _procgen_assets_dir() -> Path:
    spec = importlib.util.find_spec("procgen")
    if spec is None or not spec.submodule_search_locations:
        from .coinrun import COINRUN_INSTALL_HINT

        raise ImportError("reading CoinRun frames needs procgen's sprite images; " + COINRUN_INSTALL_HINT)
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "assets"


@dataclass(frozen=True)
class CoinRunPalette:
    """Which CoinRun objects use each exact RGB colour, read from procgen's asset images.

    Attributes
    ----------
    keys : ndarray [K] int64
        Sorted colour keys ``(r << 16) | (g << 8) | b`` of the opaque pixels of all assets.
    owners : ndarray [K] int64
        Bit mask per colour of the groups (``groups[i]`` has bit ``1 << i``) whose assets contain it.
    groups : tuple of str
        ``("background", "wall", "player", "crate", "coin", "saw", "lava", "enemy")``.
    """

    keys: np.ndarray
    owners: np.ndarray
    groups: tuple[str, ...]

    @classmethod
    def from_assets(cls, assets_dir: str | Path | None = None) -> "CoinRunPalette":
        """Read the palette from ``assets_dir`` (default: the installed procgen's ``data/assets``)."""
        import matplotlib.image as mpimg

        root = Path(assets_dir) if assets_dir is not None else _procgen_assets_dir()
        owners: dict[int, int] = {}
        for group, files in _ASSETS.items():
            for rel in files:
                path = root / rel
                if not path.is_file():
                    raise FileNotFoundError(f"assets_dir: expected procgen's asset folder containing {rel}, got "
                                            f"{str(root)!r} (missing {path.name}); pass the folder "
                                            "procgen/data/assets of a procgen installation")
                img = np.asarray(mpimg.imread(path))
                img = np.round(img * 255).astype(np.int64) if img.dtype != np.uint8 else img.astype(np.int64)
                rgb = img[..., :3][img[..., 3] >= 255] if img.shape[-1] == 4 else img[..., :3].reshape(-1, 3)
                for key in np.unique((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).tolist():
                    owners[key] = owners.get(key, 0) | _BIT[group]
        keys = np.array(sorted(owners), dtype=np.int64)
        return cls(keys, np.array([owners[k] for k in keys.tolist()], dtype=np.int64), _GROUPS)

    def owners_of(self, frames: np.ndarray) -> np.ndarray:
        """Owner bit mask of every pixel of ``frames [..., H, W, 3]`` uint8 (0 for colours in no asset)."""
        f = frames.astype(np.int64)
        key = (f[..., 0] << 16) | (f[..., 1] << 8) | f[..., 2]
        idx = np.clip(np.searchsorted(self.keys, key), 0, len(self.keys) - 1)
        return np.where(self.keys[idx] == key, self.owners[idx], 0)


@functools.lru_cache(maxsize=4)
def coinrun_palette(assets_dir: str | None = None) -> CoinRunPalette:
    """The :class:`CoinRunPalette` of the installed procgen (read once, then cached)."""
    return CoinRunPalette.from_assets(assets_dir)


def _frames_hwc(name: str, frames: Any) -> np.ndarray:
    """uint8 frames ``[..., 64, 64, 3]`` from channels-first ``[..., 3, 64, 64]`` or channels-last input."""
    a = frames.detach().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if a.dtype != np.uint8:
        raise TypeError(error_message(name, "uint8 RGB frames (CoinRun observations)", a,
                                      "pass the env's observations unchanged, not scaled floats"))
    if a.ndim >= 3 and a.shape[-3:] == (3, 64, 64):
        a = np.moveaxis(a, -3, -1)
    if a.ndim < 3 or a.shape[-3:] != (64, 64, 3):
        raise ValueError(error_message(name, "frames of shape [..., 3, 64, 64] or [..., 64, 64, 3]", a))
    return a


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Per-frame dilation of ``mask [N, H, W]`` by a (2 radius + 1)^2 square."""
    from scipy.ndimage import binary_dilation

    if radius <= 0 or not mask.any():
        return mask.copy()
    return binary_dilation(mask, structure=np.ones((1, 2 * radius + 1, 2 * radius + 1), bool))


def _box_distance() -> tuple[np.ndarray, np.ndarray]:
    y0, y1, x0, x1 = AGENT_BOX
    ys, xs = np.mgrid[0:64, 0:64]
    dy = np.maximum(0, np.maximum(y0 - ys, ys - y1))
    dx = np.maximum(0, np.maximum(x0 - xs, xs - x1))
    return dx, dy


_DX, _DY = _box_distance()


def object_masks(frames: Any, *, palette: CoinRunPalette | None = None) -> dict[str, np.ndarray]:
    """Pixel masks of the saws, enemies, lava and coin in CoinRun frames.

    Parameters
    ----------
    frames : uint8 array [N, 3, 64, 64] or [N, 64, 64, 3] (a single frame without N is accepted)
        CoinRun observations as the env returns them.
    palette : CoinRunPalette, optional
        Default: :func:`coinrun_palette` of the installed procgen.

    Returns
    -------
    dict with boolean masks ``[N, 64, 64]`` (``[64, 64]`` for a single frame): ``"saw"``, ``"enemy"``, ``"lava"``,
    ``"coin"``, and ``"agent"`` (the player's own pixels).
    """
    a = _frames_hwc("frames", frames)
    single = a.ndim == 3
    a = a.reshape(-1, 64, 64, 3)
    pal = coinrun_palette() if palette is None else palette
    own = pal.owners_of(a)                                                  # [N, 64, 64] owner bits
    B = _BIT
    saw_only, enemy_only, lava_only, coin_only = (own == B[g] for g in ("saw", "enemy", "lava", "coin"))
    saw_or_enemy = own == (B["saw"] | B["enemy"])                           # greys of the saw and the mouse
    lava_or_enemy = own == (B["lava"] | B["enemy"])                         # the ladybug's orange is lava's
    coin_or_enemy = own == (B["coin"] | B["enemy"])                         # the snail's shell is the coin's yellow
    saw_and_wall = ((own & B["saw"]) != 0) & ((own & B["wall"]) != 0)       # the saw's rim greys are ground greys
    wall = ((own & B["wall"]) != 0) & ~saw_and_wall
    near_enemy = _dilate(enemy_only, 2)
    near_lava = _dilate(lava_only, 2)
    saw_core = saw_only | (saw_or_enemy & ~near_enemy)
    # a rim grey is a saw pixel next to a saw's own colours and touching no ground-only pixel
    saw = saw_core | (saw_and_wall & _dilate(saw_core, 2) & ~_dilate(wall, 1) & ~near_enemy)
    ladybug = lava_or_enemy & near_enemy & ~near_lava
    enemy = enemy_only | (saw_or_enemy & near_enemy) | ladybug | (coin_or_enemy & near_enemy)
    out = {"saw": saw, "enemy": enemy, "lava": lava_only | (lava_or_enemy & ~ladybug),
           "coin": coin_only | (coin_or_enemy & ~near_enemy), "agent": (own & B["player"]) != 0}
    return {k: v[0] for k, v in out.items()} if single else out


def _hazard_distances(masks: dict[str, np.ndarray], t: int) -> dict[str, float]:
    rx, ry = DANGER_REACH
    score = np.maximum(_DX / rx, _DY / ry)                                  # [64, 64]
    return {h: float(score[masks[h][t]].min()) if masks[h][t].any() else float("inf") for h in HAZARDS}


def death_cause(frames: Any, *, palette: CoinRunPalette | None = None,
                return_distances: bool = False) -> str | tuple[str, dict[str, float]]:
    """The hazard that ended a failed CoinRun episode: ``"saw"``, ``"enemy"``, ``"lava"`` or ``"unknown"``.

    Parameters
    ----------
    frames : uint8 array [k, 3, 64, 64] or [k, 64, 64, 3] (or one frame)
        The episode's last observations, oldest first; the last one is the frame before the fatal step.
    return_distances : bool, default False
        Also return, per hazard, its distance to the agent in units of :data:`DANGER_REACH` (inf if not seen).

    The last frame decides: the hazard with a pixel nearest to :data:`AGENT_BOX` (``max(dx / reach_x,
    dy / reach_y)``) wins if that distance is at most 1. Otherwise the earlier frames are tried, newest first
    (the hazard may be hidden behind the agent in the last frame); ``"unknown"`` if none shows a hazard in reach.
    """
    a = _frames_hwc("frames", frames).reshape(-1, 64, 64, 3)
    masks = object_masks(a, palette=palette)
    last = _hazard_distances(masks, len(a) - 1)
    verdict = "unknown"
    for t in range(len(a) - 1, -1, -1):
        dists = last if t == len(a) - 1 else _hazard_distances(masks, t)
        best = min(HAZARDS, key=lambda h: dists[h])
        if dists[best] <= 1.0:
            verdict = best
            break
    return (verdict, last) if return_distances else verdict


def classify_episode_end(frames: Any, length: int, episode_return: float, *, timeout: int = COINRUN_TIMEOUT,
                         palette: CoinRunPalette | None = None) -> str:
    """How a CoinRun episode ended: ``"success"``, ``"timeout"``, or (for other failures) :func:`death_cause`.

    Parameters
    ----------
    frames : uint8 array [k, 3, 64, 64] or [k, 64, 64, 3]
        The episode's last ``k >= 1`` observations (the last is the frame before the final step).
    length : int
        Episode length in steps (``info["episode_length"]``).
    episode_return : float
        ``info["episode_return"]``: 10 for the coin, 0 otherwise.
    timeout : int, default 1000
        procgen's step limit (:data:`COINRUN_TIMEOUT`); an episode of this length without reward timed out.

    Returns
    -------
    One of :data:`END_CAUSES`.
    """
    check_scalar("length", int(length) if isinstance(length, np.integer) else length, int, low=1)
    check_scalar("episode_return", float(episode_return), float)
    if episode_return >= COINRUN_GOAL_REWARD:
        return "success"
    if length >= timeout:
        return "timeout"
    return death_cause(frames, palette=palette)


def classify_episode_ends(frames: Any, lengths: Any, returns: Any, *, timeout: int = COINRUN_TIMEOUT,
                          palette: CoinRunPalette | None = None) -> np.ndarray:
    """:func:`classify_episode_end` for ``E`` episodes: frames ``[E, k, ...]``, lengths ``[E]``, returns ``[E]``
    -> array of ``E`` verdicts (str)."""
    lengths = np.asarray(lengths)
    returns = np.asarray(returns, dtype=np.float64)
    if lengths.shape != returns.shape or lengths.ndim != 1 or len(frames) != len(lengths):
        raise ValueError(error_message("lengths", f"1-d arrays of one entry per episode (frames has "
                                       f"{len(frames)}), with returns of the same shape", lengths))
    pal = coinrun_palette() if palette is None else palette
    return np.array([classify_episode_end(f, int(n), float(r), timeout=timeout, palette=pal)
                     for f, n, r in zip(frames, lengths, returns)], dtype=object)


class FinalFrames:
    """The last ``keep`` observations of each environment of a vectorised rollout, to read how episodes end.

    Call :meth:`push` with the observations the agent is about to act on, step the env, then
    :meth:`pop_finished` with the ``done`` flags: it yields ``(env_index, frames [k, ...])`` for every episode that
    just ended (oldest frame first; ``k = min(keep, episode length)``) and starts a new history for those envs.

    Parameters
    ----------
    num_envs : int
    keep : int, default 3
    """

    def __init__(self, num_envs: int, keep: int = 3):
        check_scalar("num_envs", num_envs, int, low=1)
        check_scalar("keep", keep, int, low=1)
        self.num_envs = num_envs
        self.keep = keep
        self._buf: np.ndarray | None = None
        self._count = np.zeros(num_envs, dtype=np.int64)
        self._pos = 0

    def push(self, obs: Any) -> None:
        """Record the observations ``[num_envs, ...]`` the agent acts on at this step."""
        obs = np.asarray(obs)
        if obs.shape[0] != self.num_envs:
            raise ValueError(error_message("obs", f"one observation per env ({self.num_envs})", obs))
        if self._buf is None:
            self._buf = np.zeros((self.keep, *obs.shape), dtype=obs.dtype)   # ring buffer [keep, N, ...]
        self._buf[self._pos % self.keep] = obs
        self._pos += 1
        self._count += 1

    def pop_finished(self, done: Any) -> list[tuple[int, np.ndarray]]:
        """``[(env, frames), ...]`` for each env whose episode ended at this step (``done[env]`` True)."""
        done = np.asarray(done, dtype=bool).reshape(-1)
        if done.shape[0] != self.num_envs:
            raise ValueError(error_message("done", f"one flag per env ({self.num_envs})", done))
        if self._buf is None:
            raise RuntimeError("FinalFrames.pop_finished called before push: push the observations first")
        out = []
        for i in np.flatnonzero(done).tolist():
            k = int(min(self.keep, self._count[i]))
            order = [(self._pos - k + j) % self.keep for j in range(k)]      # oldest first
            out.append((i, self._buf[order, i].copy()))
            self._count[i] = 0
        return out

    def __repr__(self) -> str:
        return f"FinalFrames(num_envs={self.num_envs}, keep={self.keep})"
