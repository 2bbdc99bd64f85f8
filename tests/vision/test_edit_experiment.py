"""The buzzsaw edit experiment: paired levels, paired statistics, object correlations, the edit itself, figures."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("procgen")

from xrl.envs import make_coinrun, object_masks  # noqa: E402
from xrl.models.impala import ImpalaCNN  # noqa: E402
from xrl.vision.edit_experiment import (OBJECTS, EpisodeOutcomes, direction_object_correlations,  # noqa: E402
                                        paired_comparison, play_levels, plot_episode_ends, project_out_directions,
                                        run_saw_edit_experiment, save_direction_examples)


def _runner(seed: int, right_bias: float = 3.0) -> ImpalaCNN:
    """A tiny untrained CoinRun agent that mostly runs right (so its episodes end within a few hundred steps)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        agent = ImpalaCNN((3, 64, 64), 15, channels=(4, 8, 8), fc_dim=16)
    with torch.no_grad():
        agent.fc_policy.bias[7] += right_bias                           # RIGHT
        agent.fc_policy.bias[8] += right_bias - 0.5 + float(torch.rand(1, generator=g))   # RIGHT+UP
    return agent.eval()


def _outcomes(causes, lengths, seeds=None):
    causes = np.array(causes, dtype=object)
    seeds = np.arange(len(causes)) if seeds is None else np.asarray(seeds)
    return EpisodeOutcomes(seeds, np.where(causes == "success", 10.0, 0.0), np.asarray(lengths), causes)


def test_paired_comparison_numbers():
    a = _outcomes(["success", "saw", "success", "timeout"], [10, 20, 30, 1000])
    b = _outcomes(["saw", "saw", "success", "success"], [12, 20, 28, 40])
    c = paired_comparison(a, b)
    assert c["levels"] == 4
    assert c["success_rate"]["original"][0] == 0.5 and c["success_rate"]["edited"][0] == 0.5
    np.testing.assert_allclose(c["success_rate"]["original"][1], np.std([1, 0, 1, 0], ddof=1) / 2)
    # per-level differences (edited - original): success [-1, 0, 0, 1], saw [1, 0, 0, 0]
    assert c["success_rate"]["difference"][0] == 0.0
    np.testing.assert_allclose(c["success_rate"]["difference"][1], np.std([-1, 0, 0, 1], ddof=1) / 2)
    assert c["ends_by_saw"]["original"][0] == 0.25 and c["ends_by_saw"]["edited"][0] == 0.5
    np.testing.assert_allclose(c["ends_by_saw"]["difference"], [0.25, np.std([1, 0, 0, 0], ddof=1) / 2])
    assert c["ends_by_timeout"]["difference"][0] == -0.25
    assert c["episode_length"]["difference"][0] == np.mean([2, 0, -2, -960])
    assert c["saw_share_of_failures"]["original"][0] == 0.5 and c["saw_share_of_failures"]["edited"][0] == 1.0
    json.dumps(c)
    with pytest.raises(ValueError, match="edited: expected outcomes on the same 4 levels"):
        paired_comparison(a, _outcomes(b.causes, b.lengths, seeds=[9, 1, 2, 3]))


def test_play_levels_pairs_levels_across_agents():
    first = play_levels(_runner(0), 6, seed=3, num_envs=3, progress=False)
    again = play_levels(_runner(0), 6, seed=3, num_envs=3, progress=False)
    other = play_levels(_runner(1, right_bias=2.0), 6, seed=3, num_envs=3, progress=False)
    assert len(first) == 6 and first.final_frames.shape == (6, 3, 3, 64, 64)
    np.testing.assert_array_equal(first.level_seeds, other.level_seeds)    # same levels for a different agent
    assert len(set(first.level_seeds.tolist())) == 6
    np.testing.assert_array_equal(first.lengths, again.lengths)            # seeded
    assert first.causes.tolist() == again.causes.tolist()
    assert not np.array_equal(first.lengths, other.lengths)
    assert set(first.causes) <= {"success", "saw", "enemy", "lava", "timeout", "unknown"}
    # the levels are the ones procgen starts each env on, then its next ones
    _, info = make_coinrun(num_envs=3, seed=3, num_levels=0).reset()
    assert first.level_seeds[:3].tolist() == info["level_seed"].tolist()
    assert (first.success == (first.returns == 10)).all()
    # common random numbers: an episode's sampling noise is its own, so fewer levels replay the same first episodes
    short = play_levels(_runner(0), 3, seed=3, num_envs=3, progress=False, keep_frames=0)
    np.testing.assert_array_equal(short.lengths, first.lengths[:3])
    assert short.final_frames is None


def test_direction_object_correlations_find_the_object_map():
    rng = np.random.default_rng(0)
    env = make_coinrun(num_envs=64, seed=2)
    obs, _ = env.reset()
    for _ in range(25):   # run right for a while so that saws and coins come into view
        obs, *_ = env.step(np.full(64, 7) if rng.random() < 0.7 else rng.integers(15, size=64))
    masks = object_masks(obs)
    saw = torch.from_numpy(masks["saw"][:, None].astype(np.float32))
    coin = torch.from_numpy(masks["coin"][:, None].astype(np.float32))
    maps = torch.cat([F.adaptive_avg_pool2d(saw, 16), F.adaptive_avg_pool2d(coin, 16),
                      torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(0))], 1)
    fake_nmf = SimpleNamespace(observations=obs, acts_reduced=maps.permute(0, 2, 3, 1).numpy())   # [N, h, w, F]
    corr = direction_object_correlations(fake_nmf)
    assert corr.shape == (3, len(OBJECTS)) and masks["saw"].any() and masks["coin"].any()
    np.testing.assert_allclose(corr[0, OBJECTS.index("saw")], 1.0, atol=1e-6)
    np.testing.assert_allclose(corr[1, OBJECTS.index("coin")], 1.0, atol=1e-6)
    assert abs(corr[2]).max() < 0.2


@pytest.mark.slow
def test_run_saw_edit_experiment_end_to_end(tmp_path):
    agent = _runner(0)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    res = run_saw_edit_experiment(agent, features=3, num_obs=64, obs_every=4, obs_envs=16, levels=4, num_envs=4,
                                  progress=False)
    for k, v in agent.state_dict().items():                                 # the agent itself is not edited
        assert torch.equal(v, before[k])
    assert res.correlations.shape == (3, len(OBJECTS))
    assert res.direction == int(np.argmax(res.correlations[:, 0]))
    d = res.nmf.channel_dirs[res.direction] / np.linalg.norm(res.nmf.channel_dirs[res.direction])
    w = res.edited.embedder.block3.conv.weight.detach().numpy()             # [O, I, kh, kw]
    np.testing.assert_allclose(np.einsum("oihw,i->ohw", w, d), 0.0, atol=1e-5)
    assert res.edited.edit_info["next_layer"] == "embedder.block3.conv"
    np.testing.assert_array_equal(res.original_outcomes.level_seeds, res.edited_outcomes.level_seeds)
    summary = res.summary()
    json.dumps(summary)
    assert summary["comparison"]["levels"] == 4
    sheet = plot_episode_ends(res.original_outcomes.final_frames, list(res.original_outcomes.causes),
                              tmp_path / "ends.png")
    assert sheet.stat().st_size > 1000
    assert save_direction_examples(res.nmf, tmp_path / "dirs.png", num_mult=2).stat().st_size > 1000
    with pytest.raises(ValueError, match="direction: expected an NMF direction index in"):
        run_saw_edit_experiment(agent, features=2, num_obs=32, obs_every=4, obs_envs=16, levels=2, num_envs=2,
                                direction=5, progress=False)


def test_project_out_directions_removes_the_whole_span():
    agent = _runner(0)
    obs = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    dirs = np.abs(rng.normal(size=(2, 8))).astype(np.float32)              # non-negative, not orthogonal (like NMF)
    edited = project_out_directions(agent, "embedder.block2", dirs, example_obs=obs)
    w = edited.embedder.block3.conv.weight.detach().numpy()                 # [O, I, kh, kw], I = 8
    np.testing.assert_allclose(np.einsum("oihw,ki->kohw", w, dirs), 0.0, atol=1e-5)
    basis = edited.edit_info["directions"]
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-6)
    # what is orthogonal to the span goes through unchanged
    q = np.linalg.qr(np.concatenate([dirs.T, rng.normal(size=(8, 1))], 1))[0][:, 2]
    w0 = agent.embedder.block3.conv.weight.detach().numpy()
    np.testing.assert_allclose(np.einsum("oihw,i->ohw", w, q), np.einsum("oihw,i->ohw", w0, q), atol=1e-5)
    with pytest.raises(ValueError, match="directions: expected at least one non-zero direction"):
        project_out_directions(agent, "embedder.block2", np.zeros((1, 8)), example_obs=obs)


def test_plot_episode_ends_rejects_bad_input(tmp_path):
    frames = np.zeros((2, 3, 3, 64, 64), np.uint8)
    with pytest.raises(ValueError, match="labels: expected one label per episode"):
        plot_episode_ends(frames, ["saw"], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"final_frames: expected uint8 frames \[E, k, 3, H, W\]"):
        plot_episode_ends(frames[0], ["saw"] * 3, tmp_path / "x.png")
