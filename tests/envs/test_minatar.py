"""MinAtar wrappers: same dynamics as MinAtar itself, names, POMDP, one-hot actions, vectorised stepping, errors."""
import minatar
import numpy as np
import pytest

from xrl.envs import MINATAR_GAMES, FreewayPOMDP, MinAtarEnv, OneHotAction, make_minatar, make_vec_minatar


@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_matches_minatar_dynamics_for_a_fixed_seed(game):
    env = make_minatar(game)
    ref = minatar.Environment(game)
    obs, info = env.reset(seed=123)
    ref.seed(123)
    ref.reset()
    actions = np.random.default_rng(0).integers(env.action_space.n, size=400)
    minimal = ref.minimal_action_set()
    for a in actions:
        np.testing.assert_array_equal(obs, np.moveaxis(ref.state(), -1, 0).astype(np.float32))
        np.testing.assert_array_equal(info["objects"], np.moveaxis(ref.state(), -1, 0))
        obs, reward, terminated, truncated, info = env.step(a)
        ref_reward, ref_done = ref.act(minimal[a])
        assert reward == ref_reward and terminated == ref_done and not truncated
        if terminated:
            obs, info = env.reset()
            ref.reset()


def test_observation_format_and_names():
    env = make_minatar("freeway")
    obs, info = env.reset(seed=123)
    assert obs.dtype == np.float32 and obs.shape == (7, 10, 10) and set(np.unique(obs)) <= {0.0, 1.0}
    assert env.observation_space.shape == (7, 10, 10) and env.observation_space.contains(obs)
    assert env.unwrapped.action_names == ["NOOP", "UP", "DOWN"]
    assert env.unwrapped.channel_names == ["chicken", "car", "speed1", "speed2", "speed3", "speed4", "speed5"]
    assert isinstance(env.unwrapped.game, minatar.Environment)
    assert env.unwrapped.game.env.move_timer >= 0  # seed 002 reads Freeway's move timer
    assert make_minatar("breakout").unwrapped.action_names == ["NOOP", "LEFT", "RIGHT"]
    assert make_minatar("breakout").unwrapped.channel_names == ["paddle", "ball", "trail", "brick"]
    assert len(make_minatar("seaquest", use_minimal_action_set=False).unwrapped.action_names) == 6


def test_same_seed_same_episode_and_sticky_actions_follow_the_seed():
    def run(seed):
        env = make_minatar("breakout")
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for t in range(200):
            obs, r, term, _, _ = env.step(t % 3)
            out.append(obs)
            if term:
                out.append(env.reset()[0])
        return np.stack(out)

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_freeway_pomdp_keeps_chicken_and_car_only():
    env = make_minatar("freeway", pomdp=True)
    assert isinstance(env, FreewayPOMDP)
    obs, info = env.reset(seed=1)
    assert obs.shape == (2, 10, 10) and env.observation_space.shape == (2, 10, 10)
    assert env.channel_names == ["chicken", "car"]
    assert info["objects"].shape == (7, 10, 10)  # ground truth keeps every channel
    for _ in range(50):
        obs, _, _, _, info = env.step(1)
        np.testing.assert_array_equal(obs, info["objects"][:2].astype(np.float32))
    full = make_minatar("freeway")
    full_obs, _ = full.reset(seed=1)
    np.testing.assert_array_equal(make_minatar("freeway", pomdp=True).reset(seed=1)[0], full_obs[:2])


def test_one_hot_actions_equal_integer_actions():
    a = make_minatar("freeway", pomdp=True, one_hot_actions=True)
    b = make_minatar("freeway", pomdp=True)
    assert isinstance(a, OneHotAction) and a.action_space.shape == (3,)
    assert a.channel_names == ["chicken", "car"] and a.unwrapped.action_names == ["NOOP", "UP", "DOWN"]
    oa, _ = a.reset(seed=3)
    ob, _ = b.reset(seed=3)
    sample = a.action_space.sample()
    assert sample.sum() == 1.0 and sample.shape == (3,)
    for t in range(100):
        act = t % 3
        oa, ra, ta, _, _ = a.step(np.eye(3, dtype=np.float32)[act])
        ob, rb, tb, _, _ = b.step(act)
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb and ta == tb
    with pytest.raises(ValueError, match="one-hot vector of shape"):
        a.step(np.ones(4))


def test_vectorised_env_matches_single_envs_and_autoresets():
    venv = make_vec_minatar("breakout", num_envs=3, seed=10)
    singles = [make_minatar("breakout") for _ in range(3)]
    obs, info = venv.reset()
    assert obs.shape == (3, 4, 10, 10) and info["objects"].shape == (3, 4, 10, 10)
    refs = [e.reset(seed=10 + i)[0] for i, e in enumerate(singles)]
    np.testing.assert_array_equal(obs, np.stack(refs))
    rng = np.random.default_rng(0)
    returns, finished = np.zeros(3), 0
    for _ in range(300):
        actions = rng.integers(3, size=3)
        obs, rewards, terms, truncs, info = venv.step(actions)
        for i, e in enumerate(singles):
            o, r, term, _, _ = e.step(actions[i])
            returns[i] += r
            assert rewards[i] == r and terms[i] == term
            if term:
                assert info["episode_return"][i] == returns[i]
                returns[i] = 0
                finished += 1
                o, _ = e.reset()
            else:
                assert np.isnan(info["episode_return"][i])
            np.testing.assert_array_equal(obs[i], o)
    assert finished > 0
    assert venv.action_names == ["NOOP", "LEFT", "RIGHT"]
    with pytest.raises(ValueError, match="expected 3 actions"):
        venv.step([0, 1])


def test_pomdp_vectorised_env_exposes_reduced_and_full_names():
    venv = make_vec_minatar("freeway", num_envs=2, seed=0, pomdp=True)
    obs, info = venv.reset()
    assert obs.shape == (2, 2, 10, 10) and info["objects"].shape == (2, 7, 10, 10)
    assert venv.channel_names == ["chicken", "car"] and len(venv.full_channel_names) == 7


def test_truncation():
    env = make_minatar("freeway", max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(0)[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]


def test_unknown_game_and_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match=r"game: expected one of .*did you mean 'freeway'"):
        make_minatar("freewey")
    with pytest.raises(ValueError, match="did you mean 'breakout'"):
        make_vec_minatar("breakot", num_envs=2)
    with pytest.raises(ValueError, match="sticky_action_prob"):
        MinAtarEnv("freeway", sticky_action_prob=1.5)
    with pytest.raises(ValueError, match="only for freeway"):
        make_minatar("breakout", pomdp=True)
    env = make_minatar("freeway")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action: expected an integer in \[0, 2\] \(NOOP, UP, DOWN\)"):
        env.step(7)
    assert make_minatar("MinAtar/SpaceInvaders-v1").unwrapped.game_name == "space_invaders"


def test_rgb_render():
    env = MinAtarEnv("breakout", render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.shape == (10, 10, 3) and img.dtype == np.uint8 and img.any()
