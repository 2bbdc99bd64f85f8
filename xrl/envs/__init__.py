"""Environments to explain: MinAtar games (gymnasium, channels-first, named channels/actions), the Freeway POMDP,
one-hot actions, vectorised MinAtar, procgen CoinRun (optional extra ``xrl[coinrun]``), and the one rollout engine
(:func:`rollout`) every agent-playing loop of xrl is built on."""
from .coinrun import CoinRunVecEnv, make_coinrun
from .coinrun_events import FinalFrames, classify_episode_end, classify_episode_ends, death_cause, object_masks
from .minatar import MINATAR_GAMES, FreewayPOMDP, MinAtarEnv, OneHotAction, make_minatar, minatar_rgb
from .rollout import ActorCriticPolicy, RandomPolicy, RolloutStep, SingleEnvs, rollout
from .vector import VecMinAtar, make_vec_minatar

GymMinAtar, freewayPOMDP = MinAtarEnv, FreewayPOMDP   # DreamerV2's names (seed 002: freewayPOMDP(OneHotAction(...)))


def make_vec_env(env_id: str, num_envs: int, seed: int | None = 0, **kwargs):
    """``make_vec_minatar(game, ...)`` for a MinAtar game name, ``make_coinrun(...)`` for ``"coinrun"``."""
    if env_id.lower() == "coinrun":
        return make_coinrun(num_envs=num_envs, seed=0 if seed is None else seed, **kwargs)
    return make_vec_minatar(env_id, num_envs=num_envs, seed=seed, **kwargs)


__all__ = ["MINATAR_GAMES", "minatar_rgb", "MinAtarEnv", "FreewayPOMDP", "OneHotAction", "make_minatar", "VecMinAtar",
           "make_vec_minatar", "CoinRunVecEnv", "make_coinrun", "make_vec_env", "rollout", "RolloutStep", "SingleEnvs",
           "ActorCriticPolicy", "RandomPolicy", "GymMinAtar", "freewayPOMDP", "FinalFrames", "classify_episode_end",
           "classify_episode_ends", "death_cause", "object_masks"]
