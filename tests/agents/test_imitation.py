"""Seed 003's trajectory files (imitation's .npz: obs, acts, infos, terminal, indices) load without unpickling."""
import numpy as np
import pytest

from xrl.agents import flatten_trajectories, load_expert_trajs

LENGTHS = (5, 3, 7)


def _write(path, lengths=LENGTHS, rews=True, drop=None, **override):
    """The file imitation's types.save writes (obs one step longer per trajectory; infos pickled dicts)."""
    rng = np.random.default_rng(0)
    obs = [rng.integers(0, 256, (n + 1, 6, 6, 3), dtype=np.uint8) for n in lengths]
    acts = [rng.integers(0, 15, n) for n in lengths]
    data = {"obs": np.concatenate(obs), "acts": np.concatenate(acts),
            "infos": np.array([{"level": i} for n in lengths for i in range(n)], dtype=object),
            "terminal": np.array([True, False, True][:len(lengths)]), "indices": np.cumsum(lengths[:-1])}
    if rews:
        data["rews"] = np.concatenate([np.arange(n, dtype=np.float32) for n in lengths])
    data.update(override)
    if drop:
        data.pop(drop)
    np.savez_compressed(path, **data)
    return obs, acts


def test_trajectories_split_at_the_stored_indices(tmp_path):
    obs, acts = _write(tmp_path / "t.npz")
    trajs = load_expert_trajs(tmp_path / "t.npz", n_expert_demos=None)
    assert [len(t) for t in trajs] == list(LENGTHS)
    for t, o, a in zip(trajs, obs, acts):
        assert np.array_equal(t.obs, o) and np.array_equal(t.acts, a) and t.infos is None
    assert [t.terminal for t in trajs] == [True, False, True]
    assert np.array_equal(trajs[2].rews, np.arange(7, dtype=np.float32))
    assert len(load_expert_trajs(tmp_path / "t.npz", n_expert_demos=2)) == 2


def test_flatten_gives_transitions_and_lucid_keys(tmp_path):
    obs, acts = _write(tmp_path / "t.npz")
    tr = flatten_trajectories(load_expert_trajs(tmp_path / "t.npz"))
    assert len(tr) == sum(LENGTHS) and tr.obs.shape == (sum(LENGTHS), 6, 6, 3)
    assert np.array_equal(tr.obs[:5], obs[0][:-1]) and np.array_equal(tr.next_obs[:5], obs[0][1:])
    assert tr.dones.tolist() == [False] * 4 + [True] + [False] * 3 + [False] * 6 + [True]
    # seed 003: trajectories['observations'][0][76:84] -> channels-first frames of trajectory 0
    first = tr["observations"][1]
    assert first.shape == (3, 3, 6, 6) and np.array_equal(first, np.moveaxis(obs[1][:-1], -1, 1))
    assert [f.tolist() for f in tr["firsts"]][1] == [True, False, False]
    assert np.array_equal(tr["actions"][2], acts[2])
    with pytest.raises(KeyError, match="observations"):
        tr["obs"]


def test_the_pickled_infos_are_never_read(tmp_path, monkeypatch):
    _write(tmp_path / "t.npz")
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: real_load(*a, **{**k, "allow_pickle": False}))
    assert len(load_expert_trajs(tmp_path / "t.npz")) == 3


def test_files_without_rewards_load(tmp_path):
    _write(tmp_path / "t.npz", rews=False)
    tr = flatten_trajectories(load_expert_trajs(tmp_path / "t.npz"))
    assert tr.rews is None
    with pytest.raises(KeyError, match="no rewards"):
        tr["rewards"]


@pytest.mark.parametrize("kind,match", [
    ("missing", "expected an existing .npz"), ("dir", "HuggingFace datasets folder"),
    ("nokey", r"missing keys \['indices'\]"), ("indices", "split indices"), ("obs", "observations for"),
    ("corrupt", "corrupt or truncated"), ("count", "n_expert_demos: expected at most the 3")])
def test_bad_files_are_clear_errors(tmp_path, kind, match):
    path = tmp_path / "t.npz"
    if kind == "dir":
        path = tmp_path
    elif kind == "nokey":
        _write(path, drop="indices")
    elif kind == "indices":
        _write(path, indices=np.array([5]))
    elif kind == "obs":
        _write(path, obs=np.zeros((4, 6, 6, 3), np.uint8))
    elif kind == "corrupt":
        _write(path)
        path.write_bytes(path.read_bytes()[:100])
    elif kind == "count":
        _write(path)
    with pytest.raises(FileNotFoundError if kind == "missing" else ValueError, match=match):
        load_expert_trajs(path, n_expert_demos=5 if kind == "count" else None)
