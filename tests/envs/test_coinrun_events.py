"""How CoinRun episodes end, read from real frames of seeded procgen episodes (xrl.envs.coinrun_events).

Ground truth comes from three places: procgen's ``debug_mode=2`` builds easy levels without pits, where the only
hazard is the buzzsaw (so every early failure is a saw); the first frame of every level, where the agent stands at the
spawn point with no hazard in reach; and six seeded random-play episodes whose final frames were checked by eye
(lava pits, a slime and a ladybug in enemy pits; the ladybug shares its orange with lava).
"""
import numpy as np
import pytest

pytest.importorskip("procgen")

from xrl.envs import make_coinrun  # noqa: E402
from xrl.envs.coinrun_events import (AGENT_BOX, COINRUN_TIMEOUT, END_CAUSES, CoinRunPalette, FinalFrames,  # noqa: E402
                                     classify_episode_end, classify_episode_ends, coinrun_palette, death_cause,
                                     object_masks)


def _first_episodes(seed, envs, num_envs=32, **kwargs):
    """Random play (``default_rng(seed)``) in ``make_coinrun(num_envs, seed)``: final frames of the first episode of
    each env in ``envs`` -> {env: (frames [3, 3, 64, 64], length, return)}."""
    env = make_coinrun(num_envs=num_envs, seed=seed, **kwargs)
    obs, _ = env.reset()
    rng = np.random.default_rng(seed)
    frames = FinalFrames(num_envs, keep=3)
    out, seen = {}, np.zeros(num_envs, bool)
    while not all(e in out for e in envs):
        frames.push(obs)
        obs, _, done, _, info = env.step(rng.integers(15, size=num_envs))
        for i, last in frames.pop_finished(done):
            if not seen[i]:
                seen[i] = True
                out[i] = (last, int(info["episode_length"][i]), float(info["episode_return"][i]))
    return {e: out[e] for e in envs}


def test_palette_reads_procgen_assets():
    pal = coinrun_palette()
    bits = dict(zip(pal.groups, (1 << i for i in range(len(pal.groups)))))

    def owners(rgb):
        return int(pal.owners_of(np.array(rgb, np.uint8).reshape(1, 1, 3))[0, 0])
    assert owners((135, 164, 166)) == bits["saw"]                       # the saw blade's body colour
    assert owners((232, 106, 23)) == bits["lava"] | bits["enemy"]       # lava's orange is the ladybug's
    assert owners((255, 204, 0)) == bits["coin"] | bits["enemy"]        # the coin's yellow is the snail's shell
    assert owners((1, 2, 3)) == 0
    assert coinrun_palette() is pal                                     # read once


def test_palette_missing_assets_dir_names_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="assets_dir: expected procgen's asset folder"):
        CoinRunPalette.from_assets(tmp_path)


@pytest.mark.slow
def test_pitless_levels_die_only_on_saws():
    """debug_mode=2 removes pits (lava, pit saws and, in easy mode, every enemy): each early failure is a saw."""
    env = make_coinrun(num_envs=16, seed=5, debug_mode=2)
    obs, _ = env.reset()
    rng = np.random.default_rng(0)
    frames = FinalFrames(16, keep=3)
    verdicts = []
    while len(verdicts) < 8:
        frames.push(obs)
        obs, _, done, _, info = env.step(rng.integers(15, size=16))
        for i, last in frames.pop_finished(done):
            n, r = int(info["episode_length"][i]), float(info["episode_return"][i])
            if r == 0 and n < COINRUN_TIMEOUT:
                verdicts.append(classify_episode_end(last, n, r))
    assert verdicts == ["saw"] * len(verdicts)


def test_first_frames_show_no_hazard_in_reach():
    obs, _ = make_coinrun(num_envs=48, seed=1).reset()
    assert [death_cause(o) for o in obs] == ["unknown"] * 48
    masks = object_masks(obs)
    y0, y1, x0, x1 = AGENT_BOX
    inside = masks["agent"][:, y0:y1 + 1, x0:x1 + 1].sum((1, 2))
    assert (inside >= 6).all() and masks["agent"].sum((1, 2)).tolist() == inside.tolist()   # drawn in AGENT_BOX


@pytest.mark.slow
def test_lava_and_enemy_deaths_checked_by_eye():
    # seed 5: envs 7 lava (166 steps) and 10 a slime in an enemy pit; seed 6: env 12 a ladybug, env 26 lava
    eps = {**{(5, e): v for e, v in _first_episodes(5, [7, 10]).items()},
           **{(6, e): v for e, v in _first_episodes(6, [12, 26]).items()}}
    got = {k: classify_episode_end(*v) for k, v in eps.items()}
    assert got == {(5, 7): "lava", (5, 10): "enemy", (6, 12): "enemy", (6, 26): "lava"}
    verdict, dist = death_cause(eps[(6, 12)][0], return_distances=True)
    assert dist["enemy"] <= 1 and dist["lava"] > dist["enemy"]        # the ladybug's orange is not lava
    masks = object_masks(eps[(5, 7)][0][-1])
    assert masks["lava"].sum() > 20 and masks["enemy"].sum() == 0


def test_success_and_timeout_come_from_reward_and_length():
    obs, _ = make_coinrun(num_envs=2, seed=0).reset()
    frames = obs[:1, None].repeat(3, 1)[0]                             # [3, 3, 64, 64]
    assert classify_episode_end(frames, 57, 10.0) == "success"
    assert classify_episode_end(frames, COINRUN_TIMEOUT, 0.0) == "timeout"
    assert classify_episode_end(frames, 57, 0.0) == "unknown"          # a spawn frame shows no hazard
    out = classify_episode_ends(np.stack([frames, frames]), [57, 1000], [10.0, 0.0])
    assert out.tolist() == ["success", "timeout"] and set(out) <= set(END_CAUSES)
    # channels-last frames (procgen's own layout) give the same answer
    assert death_cause(np.moveaxis(frames, 1, -1)) == death_cause(frames)


def test_bad_inputs_raise_clear_errors():
    obs, _ = make_coinrun(num_envs=1, seed=0).reset()
    with pytest.raises(TypeError, match="frames: expected uint8 RGB frames"):
        death_cause(obs.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"frames: expected frames of shape \[\.\.\., 3, 64, 64\]"):
        death_cause(obs[:, :, :32])
    with pytest.raises(ValueError, match="length: expected a value >= 1"):
        classify_episode_end(obs, 0, 0.0)
    with pytest.raises(ValueError, match="lengths: expected 1-d arrays"):
        classify_episode_ends(obs[None], [3, 4], [0.0, 0.0])


def test_final_frames_keeps_the_last_observations_in_order():
    ff = FinalFrames(num_envs=2, keep=3)
    for t in range(5):
        ff.push(np.full((2, 1), t))
        done = np.array([t == 4, t == 1])
        got = ff.pop_finished(done)
        if t == 1:
            assert [(i, f[:, 0].tolist()) for i, f in got] == [(1, [0, 1])]   # a 2-step episode keeps 2 frames
        if t == 4:
            assert [(i, f[:, 0].tolist()) for i, f in got] == [(0, [2, 3, 4])]
    with pytest.raises(ValueError, match=r"obs: expected one observation per env \(2\)"):
        ff.push(np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"done: expected one flag per env \(2\)"):
        ff.pop_finished(np.zeros(3, bool))
    with pytest.raises(RuntimeError, match="before push"):
        FinalFrames(1).pop_finished([True])
