"""CoinRun (procgen2) steps as a vectorised env; missing procgen gives an install hint."""
import sys

import numpy as np
import pytest

pytest.importorskip("procgen")

from xrl.envs import make_coinrun  # noqa: E402


def test_coinrun_steps_with_action_names():
    venv = make_coinrun(num_envs=2, seed=0)
    obs, info = venv.reset()
    assert obs.shape == (2, 3, 64, 64) and obs.dtype == np.uint8
    assert len(venv.action_names) == 15 and venv.num_actions == 15
    assert "NOOP" in venv.action_names and "LEFT+UP" in venv.action_names and "RIGHT" in venv.action_names
    assert venv.action_combos[venv.action_names.index("NOOP")] == ()
    rng = np.random.default_rng(0)
    for _ in range(30):
        obs, rewards, terms, truncs, info = venv.step(rng.integers(15, size=2))
        assert obs.shape == (2, 3, 64, 64) and rewards.shape == (2,) and terms.dtype == bool
        assert set(info) >= {"episode_return", "episode_length", "level_complete", "level_seed"}


def test_coinrun_is_seeded():
    a = make_coinrun(num_envs=2, seed=3)
    b = make_coinrun(num_envs=2, seed=3)
    oa, _ = a.reset()
    ob, _ = b.reset()
    np.testing.assert_array_equal(oa, ob)
    for _ in range(10):
        oa = a.step(np.array([7, 7]))[0]
        ob = b.step(np.array([7, 7]))[0]
    np.testing.assert_array_equal(oa, ob)


def test_missing_procgen_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "procgen", None)
    with pytest.raises(ImportError, match=r'pip install "xrl\[coinrun\]"'):
        make_coinrun(num_envs=1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="distribution_mode"):
        make_coinrun(num_envs=1, distribution_mode="eazy")
